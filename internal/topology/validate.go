package topology

import (
	"fmt"
	"go/types"
	"maps"
	"regexp"
	"slices"
	"strings"
)

// ValidationError lists every problem found in a topology, so one edit of
// the file can fix them all.
type ValidationError struct {
	Problems []string
}

func (e *ValidationError) Error() string {
	noun := "problems"
	if len(e.Problems) == 1 {
		noun = "problem"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "topology invalid: %d %s:", len(e.Problems), noun)
	for _, p := range e.Problems {
		b.WriteString("\n - ")
		b.WriteString(p)
	}
	return b.String()
}

// idRE accepts DNS labels (RFC 1123), since cloud ids end up in task queue,
// namespace and instance names.
var idRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// problems checks the document (rules in Parse's comment) and returns every
// problem, grouped by kind in a stable order.
func (d *document) problems() []string {
	var out []string
	add := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	if len(d.Clouds) == 0 {
		add("no clouds")
	}

	pos := map[string]int{}                // id → 1-based position of its first cloud
	names := make([]string, len(d.Clouds)) // how problems name each cloud
	centers := 0
	for i, c := range d.Clouds {
		names[i] = fmt.Sprintf("cloud %q", c.ID)
		if c.ID == "" {
			names[i] = fmt.Sprintf("cloud #%d", i+1)
		}
		name := names[i]
		switch {
		case c.ID == "":
			add("%s: missing id", name)
		case !idRE.MatchString(c.ID):
			add("%s: id must be a DNS label (a-z, 0-9 and '-', not at either end, at most 63 characters)", name)
		case pos[c.ID] > 0:
			add("%s: duplicate id (clouds #%d and #%d)", name, pos[c.ID], i+1)
		default:
			pos[c.ID] = i + 1
		}
		switch c.Tier {
		case Center:
			centers++
			if c.Parent != "" {
				add("%s: a center cloud has no parent (got %q)", name, c.Parent)
			}
		case Fog, Edge:
		default:
			add("%s: unknown tier %q (want center, fog or edge)", name, c.Tier)
		}
		if c.Capacity < 0 {
			add("%s: negative capacity %d (0 means unlimited)", name, c.Capacity)
		}
		if c.Uplink < 0 {
			add("%s: negative uplink %v", name, c.Uplink)
		}
		if c.Uplink != 0 && c.Parent == "" {
			add("%s: uplink %v without a parent", name, c.Uplink)
		}
		if l := c.Location; l != nil && (l.Lat < -90 || l.Lat > 90 || l.Lon < -180 || l.Lon > 180) {
			add("%s: location (%g, %g) out of range (lat -90..90, lon -180..180)", name, l.Lat, l.Lon)
		}
		if c.Arch != "" && types.SizesFor("gc", c.Arch) == nil {
			add("%s: unknown arch %q (a GOARCH such as amd64, arm64, loong64)", name, c.Arch)
		}
		if err := c.Runtime.Validate(); err != nil {
			add("%s: runtime: %v", name, err)
		}
	}
	if len(d.Clouds) > 0 && centers == 0 {
		add("no center cloud (the root of the hierarchy must have tier center)")
	}

	// Parents, with each pair of connected clouds recorded for the link checks.
	parent := map[string]string{}
	connected := map[[2]string]bool{}
	for i, c := range d.Clouds {
		if c.Parent == "" || c.Tier == Center {
			continue
		}
		if pos[c.Parent] == 0 {
			add("%s: unknown parent %q", names[i], c.Parent)
			continue
		}
		parent[c.ID] = c.Parent
		connected[pair(c.ID, c.Parent)] = true
	}
	out = append(out, cycles(d.Clouds, parent)...)

	for _, r := range slices.Sorted(maps.Keys(d.Regions)) {
		id := d.Regions[r]
		if strings.TrimSpace(r) == "" {
			add("empty region name (mapped to %q)", id)
		}
		if pos[id] == 0 {
			add("region %q: unknown cloud %q", r, id)
		}
	}

	for i, l := range d.Links {
		name := fmt.Sprintf("link #%d (%s, %s)", i+1, l.A, l.B)
		for _, end := range []string{l.A, l.B} {
			if pos[end] == 0 {
				add("%s: unknown cloud %q", name, end)
			}
		}
		if l.A == l.B {
			add("%s: self-link", name)
		}
		if l.Latency < 0 {
			add("%s: negative latency %v", name, l.Latency)
		}
		if connected[pair(l.A, l.B)] {
			add("%s: duplicate edge (these clouds are already connected)", name)
		}
		connected[pair(l.A, l.B)] = true
	}
	return out
}

// cycles reports each parent cycle once, as the walk that closes it.
func cycles(clouds []Cloud, parent map[string]string) []string {
	const (
		onWalk = 1
		done   = 2
	)
	state := map[string]int{}
	var out []string
	for _, c := range clouds {
		var walk []string
		id := c.ID
		for id != "" && state[id] == 0 {
			state[id] = onWalk
			walk = append(walk, id)
			id = parent[id]
		}
		if id != "" && state[id] == onWalk {
			loop := append(walk[slices.Index(walk, id):], id)
			out = append(out, fmt.Sprintf("parent cycle: %s", strings.Join(loop, " → ")))
		}
		for _, w := range walk {
			state[w] = done
		}
	}
	return out
}

// pair is the order-independent key of an edge.
func pair(a, b string) [2]string {
	if a > b {
		a, b = b, a
	}
	return [2]string{a, b}
}
