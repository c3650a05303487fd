package predict

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/edgedrift/drift/internal/topology"
)

// WalkOptions shape the synthetic user Walk simulates. The zero value is a
// plain random-waypoint walk: every destination uniformly random, routes
// always the straightest. DefaultWalkOptions is a user who moves with
// purpose.
type WalkOptions struct {
	// Places is how many favourite regions (home, work, …) the user has,
	// drawn at random per walk and ranked. Destinations are favourites,
	// except with probability Wander, picked with weight 1/rank — the
	// first favourite the most, as visit frequencies fall with rank in
	// studies of human mobility. 0, or at least as many as the topology
	// has located regions, makes every region an equally likely
	// destination.
	Places int `json:"places,omitempty"`
	// Wander is the probability that a new destination is any region
	// rather than a favourite one.
	Wander float64 `json:"wander,omitempty"`
	// Detour is the probability that a step goes to one of the Nearby
	// regions nearest the current one, at random, instead of along the
	// route to the destination.
	Detour float64 `json:"detour,omitempty"`
	// Nearby is how many nearest regions a detour picks from; 0 means 3.
	Nearby int `json:"nearby,omitempty"`
}

// DefaultWalkOptions is a user with three favourite regions who rarely
// wanders off or detours.
func DefaultWalkOptions() WalkOptions {
	return WalkOptions{Places: 3, Wander: 0.05, Detour: 0.05, Nearby: 3}
}

// routeStretch bounds how far a routing step may lead off the straight
// line: a next region n is "in the direction" of destination d from the
// current region c when |cn| + |nd| ≤ routeStretch·|cd|.
const routeStretch = 1.3

// Walk simulates a user moving over topo's regions and returns the regions
// visited: the start, then one region per step, steps+1 in all, each
// different from the one before. A region's position is its first cloud's
// location; regions whose first cloud has no location are never visited,
// and with fewer than two located regions (or steps < 0) the walk is nil.
//
// The user picks a destination (see WalkOptions) and moves toward it region
// by region: each step goes to the region nearest to the current one among
// those that are closer to the destination and roughly in its direction
// (the destination itself always qualifies), so a far destination is
// reached through the regions on the way. On arrival the user picks the next
// destination. With probability Detour a step is a detour instead.
//
// All randomness comes from a PCG generator seeded with seed, so a seed
// always gives the same walk over the same topology.
func Walk(topo *topology.Topology, seed uint64, steps int, opts WalkOptions) []string {
	w := newWalker(topo, seed, opts)
	if w == nil || steps < 0 {
		return nil
	}
	cur := w.rng.IntN(len(w.names))
	dest := w.destination(cur)
	out := make([]string, 0, steps+1)
	out = append(out, w.names[cur])
	for range steps {
		cur = w.step(cur, dest)
		out = append(out, w.names[cur])
		if cur == dest {
			dest = w.destination(cur)
		}
	}
	return out
}

// Walks returns n walks with seeds seed, seed+1, …, seed+n-1.
func Walks(topo *topology.Topology, seed uint64, n, steps int, opts WalkOptions) [][]string {
	out := make([][]string, 0, n)
	for i := range n {
		out = append(out, Walk(topo, seed+uint64(i), steps, opts))
	}
	return out
}

type walker struct {
	names     []string    // located regions, sorted
	dist      [][]float64 // km between regions, by index
	nearest   [][]int     // per region, the others nearest first
	favourite []int
	opts      WalkOptions
	rng       *rand.Rand
}

func newWalker(topo *topology.Topology, seed uint64, opts WalkOptions) *walker {
	w := &walker{opts: opts, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	var locs []topology.Location
	for _, r := range topo.RegionNames() {
		c, err := topo.FirstCloud(r)
		if err != nil || c.Location == nil {
			continue
		}
		w.names = append(w.names, r)
		locs = append(locs, *c.Location)
	}
	n := len(w.names)
	if n < 2 {
		return nil
	}
	w.dist = make([][]float64, n)
	w.nearest = make([][]int, n)
	for i := range n {
		w.dist[i] = make([]float64, n)
		for j := range n {
			w.dist[i][j] = haversineKm(locs[i], locs[j])
		}
	}
	for i := range n {
		for j := range n {
			if j != i {
				w.nearest[i] = append(w.nearest[i], j)
			}
		}
		slices.SortStableFunc(w.nearest[i], func(a, b int) int {
			return cmp.Or(cmp.Compare(w.dist[i][a], w.dist[i][b]), strings.Compare(w.names[a], w.names[b]))
		})
	}
	if opts.Places > 0 && opts.Places < n {
		w.favourite = w.rng.Perm(n)[:opts.Places] // in rank order
	}
	return w
}

// destination picks where the user heads next from region cur.
func (w *walker) destination(cur int) int {
	if len(w.favourite) > 0 && (w.opts.Wander <= 0 || w.rng.Float64() >= w.opts.Wander) {
		// Favourites by weight 1/rank, the current region left out.
		total := 0.0
		for rank, f := range w.favourite {
			if f != cur {
				total += 1 / float64(rank+1)
			}
		}
		if total > 0 {
			x := w.rng.Float64() * total
			last := -1
			for rank, f := range w.favourite {
				if f == cur {
					continue
				}
				last = f
				if x -= 1 / float64(rank+1); x < 0 {
					return f
				}
			}
			return last // rounding
		}
	}
	d := w.rng.IntN(len(w.names) - 1)
	if d >= cur {
		d++
	}
	return d
}

// step moves one region from cur toward dest (≠ cur).
func (w *walker) step(cur, dest int) int {
	if w.opts.Detour > 0 && w.rng.Float64() < w.opts.Detour {
		nearby := w.opts.Nearby
		if nearby <= 0 {
			nearby = 3
		}
		near := w.nearest[cur][:min(nearby, len(w.nearest[cur]))]
		return near[w.rng.IntN(len(near))]
	}
	d := w.dist
	for _, n := range w.nearest[cur] { // nearest first, so the first that qualifies
		if n == dest || (d[n][dest] < d[cur][dest] && d[cur][n]+d[n][dest] <= routeStretch*d[cur][dest]) {
			return n
		}
	}
	return dest // unreachable: dest itself qualifies
}

// haversineKm is the great-circle distance between two locations.
func haversineKm(a, b topology.Location) float64 {
	const earthRadiusKm = 6371.0
	rad := func(deg float64) float64 { return deg * math.Pi / 180 }
	sinLat := math.Sin(rad(b.Lat-a.Lat) / 2)
	sinLon := math.Sin(rad(b.Lon-a.Lon) / 2)
	h := sinLat*sinLat + math.Cos(rad(a.Lat))*math.Cos(rad(b.Lat))*sinLon*sinLon
	return 2 * earthRadiusKm * math.Asin(math.Sqrt(math.Min(h, 1)))
}
