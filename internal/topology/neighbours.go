package topology

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// PolicyKind says how neighbours are chosen.
type PolicyKind string

// Policy kinds.
const (
	Adjacency      PolicyKind = "adjacency" // one hop away: parent, children, linked clouds
	WithinDistance PolicyKind = "distance"  // every cloud at distance ≤ Max
	Nearest        PolicyKind = "nearest"   // the N closest clouds
)

// Metric is how distance between clouds is measured.
type Metric string

// Metrics. The zero Metric means Latency when the topology has any known
// latency (uplink or link), else Geo.
const (
	// Latency is the shortest path in milliseconds over edges whose latency
	// is known; an edge with unknown latency cannot carry a path, and clouds
	// with no such path are not candidates.
	Latency Metric = "latency"
	// Geo is the great-circle distance in kilometres between locations; the
	// cloud measured from needs a location, and clouds without one are not
	// candidates.
	Geo Metric = "geo"
)

// Policy is a neighbour selection rule. Its text form (see ParsePolicy and
// String) is what users write on the command line.
type Policy struct {
	Kind   PolicyKind `json:"kind"`
	Max    float64    `json:"max,omitempty"`    // WithinDistance: inclusive threshold, in the metric's unit
	N      int        `json:"n,omitempty"`      // Nearest: how many
	Metric Metric     `json:"metric,omitempty"` // not for Adjacency, which counts hops
}

// Neighbour is a chosen cloud and its distance from the cloud asked about:
// hops for Adjacency (always 1), milliseconds for Latency, km for Geo.
type Neighbour struct {
	Cloud    Cloud   `json:"cloud"`
	Distance float64 `json:"distance"`
}

// ParsePolicy reads a policy written as
//
//	adjacency
//	distance<=MAX[,METRIC]   (or distance:MAX)
//	nearest:N[,METRIC]       (or nearest=N)
//
// where METRIC is latency or geo; without it the topology decides (see
// Metric). Examples: "adjacency", "distance<=12", "nearest:3,geo".
func ParsePolicy(s string) (Policy, error) {
	body, metric, hasMetric := strings.Cut(strings.TrimSpace(s), ",")
	p := Policy{Metric: Metric(strings.TrimSpace(metric))}
	if hasMetric && p.Metric == "" {
		return Policy{}, fmt.Errorf("neighbour policy %q: empty metric after ','", s)
	}
	body = strings.TrimSpace(body)
	var err error
	if arg, ok := cutAnyPrefix(body, "distance<=", "distance:"); ok {
		p.Kind = WithinDistance
		p.Max, err = strconv.ParseFloat(arg, 64)
	} else if arg, ok := cutAnyPrefix(body, "nearest:", "nearest="); ok {
		p.Kind = Nearest
		p.N, err = strconv.Atoi(arg)
	} else if body == string(Adjacency) {
		p.Kind = Adjacency
	} else {
		return Policy{}, fmt.Errorf("neighbour policy %q: want adjacency, distance<=MAX or nearest:N, optionally followed by ,latency or ,geo", s)
	}
	if err == nil {
		err = p.Validate()
	}
	if err != nil {
		return Policy{}, fmt.Errorf("neighbour policy %q: %w", s, err)
	}
	return p, nil
}

func cutAnyPrefix(s string, prefixes ...string) (string, bool) {
	for _, p := range prefixes {
		if rest, ok := strings.CutPrefix(s, p); ok {
			return rest, true
		}
	}
	return "", false
}

// String returns the policy in the syntax ParsePolicy reads.
func (p Policy) String() string {
	s := string(p.Kind)
	switch p.Kind {
	case WithinDistance:
		s += "<=" + strconv.FormatFloat(p.Max, 'g', -1, 64)
	case Nearest:
		s += ":" + strconv.Itoa(p.N)
	}
	if p.Metric != "" {
		s += "," + string(p.Metric)
	}
	return s
}

// Validate rejects unknown kinds and metrics, N < 1 for Nearest, a negative
// or non-finite Max for WithinDistance, and a metric on Adjacency.
func (p Policy) Validate() error {
	switch p.Kind {
	case Adjacency:
		if p.Metric != "" {
			return errors.New("adjacency counts hops and takes no metric")
		}
		return nil
	case WithinDistance:
		if !(p.Max >= 0) || math.IsInf(p.Max, 1) {
			return fmt.Errorf("distance threshold %v must be a finite number ≥ 0", p.Max)
		}
	case Nearest:
		if p.N < 1 {
			return fmt.Errorf("nearest needs N ≥ 1, got %d", p.N)
		}
	default:
		return fmt.Errorf("unknown policy kind %q (want adjacency, distance or nearest)", p.Kind)
	}
	return p.Metric.validate()
}

func (m Metric) validate() error {
	switch m {
	case "", Latency, Geo:
		return nil
	}
	return fmt.Errorf("unknown metric %q (want latency or geo)", m)
}

// Neighbours returns the clouds p chooses for cloudID, never cloudID
// itself, sorted by distance and then id so equal distances keep a stable
// order (Nearest keeps the first N of that order).
func (t *Topology) Neighbours(cloudID string, p Policy) ([]Neighbour, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	from, ok := t.index[cloudID]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownCloud, cloudID)
	}
	var out []Neighbour
	if p.Kind == Adjacency {
		for _, e := range t.edges[from] {
			out = append(out, Neighbour{Cloud: t.doc.Clouds[e.to], Distance: 1})
		}
	} else {
		dist, err := t.distances(from, p.Metric)
		if err != nil {
			return nil, err
		}
		for i, d := range dist {
			if i != from && d >= 0 && (p.Kind != WithinDistance || d <= p.Max) {
				out = append(out, Neighbour{Cloud: t.doc.Clouds[i], Distance: d})
			}
		}
	}
	slices.SortFunc(out, func(a, b Neighbour) int {
		return cmp.Or(cmp.Compare(a.Distance, b.Distance), strings.Compare(a.Cloud.ID, b.Cloud.ID))
	})
	if p.Kind == Nearest && len(out) > p.N {
		out = out[:p.N]
	}
	return out, nil
}

// Distance measures from cloud a to cloud b with metric m (see Metric for
// units and the zero value). It is an error when either cloud is unknown or
// the distance is (no path with known latency, a missing location).
func (t *Topology) Distance(a, b string, m Metric) (float64, error) {
	if err := m.validate(); err != nil {
		return 0, err
	}
	ia, ok := t.index[a]
	if !ok {
		return 0, fmt.Errorf("%w %q", ErrUnknownCloud, a)
	}
	ib, ok := t.index[b]
	if !ok {
		return 0, fmt.Errorf("%w %q", ErrUnknownCloud, b)
	}
	dist, err := t.distances(ia, m)
	if err != nil {
		return 0, err
	}
	if dist[ib] < 0 {
		if t.metric(m) == Geo {
			return 0, fmt.Errorf("cloud %q has no location, which the geo metric needs", b)
		}
		return 0, fmt.Errorf("no path with known latency from %q to %q", a, b)
	}
	return dist[ib], nil
}

func (t *Topology) metric(m Metric) Metric {
	switch {
	case m != "":
		return m
	case t.hasLatency:
		return Latency
	default:
		return Geo
	}
}

// distances returns the distance from cloud position from to every cloud
// under metric m, by position, with -1 where it is unknown.
func (t *Topology) distances(from int, m Metric) ([]float64, error) {
	out := make([]float64, len(t.doc.Clouds))
	if t.metric(m) == Geo {
		src := t.doc.Clouds[from].Location
		if src == nil {
			return nil, fmt.Errorf("cloud %q has no location, which the geo metric needs", t.doc.Clouds[from].ID)
		}
		for i, c := range t.doc.Clouds {
			out[i] = -1
			if c.Location != nil {
				out[i] = greatCircleKm(*src, *c.Location)
			}
		}
		return out, nil
	}
	for i, d := range t.latencies(from) {
		out[i] = -1
		if d >= 0 {
			out[i] = float64(d) / float64(time.Millisecond)
		}
	}
	return out, nil
}

// latencies runs Dijkstra from cloud position from over the edges with
// known latency, summing durations so equal paths compare exactly. Cloud
// counts are small, so the plain O(V²) form is enough. -1 marks no path.
func (t *Topology) latencies(from int) []time.Duration {
	dist := make([]time.Duration, len(t.doc.Clouds))
	for i := range dist {
		dist[i] = -1
	}
	dist[from] = 0
	done := make([]bool, len(dist))
	for {
		cur := -1
		for i, d := range dist {
			if !done[i] && d >= 0 && (cur < 0 || d < dist[cur]) {
				cur = i
			}
		}
		if cur < 0 {
			return dist
		}
		done[cur] = true
		for _, e := range t.edges[cur] {
			if d := dist[cur] + e.latency; e.latency > 0 && (dist[e.to] < 0 || d < dist[e.to]) {
				dist[e.to] = d
			}
		}
	}
}

// earthRadiusKm is the mean Earth radius.
const earthRadiusKm = 6371.0

// greatCircleKm is the haversine distance between two locations.
func greatCircleKm(a, b Location) float64 {
	rad := func(deg float64) float64 { return deg * math.Pi / 180 }
	lat1, lat2 := rad(a.Lat), rad(b.Lat)
	sinLat := math.Sin(rad(b.Lat-a.Lat) / 2)
	sinLon := math.Sin(rad(b.Lon-a.Lon) / 2)
	h := sinLat*sinLat + math.Cos(lat1)*math.Cos(lat2)*sinLon*sinLon
	return 2 * earthRadiusKm * math.Asin(math.Sqrt(math.Min(h, 1)))
}
