// Package predict learns where a mobility session's user goes next and
// chooses the clouds to pre-deploy to. It is pure, deterministic logic meant
// to run inside workflow code: no goroutines, no clock, no global random
// source, and no map iteration whose order could reach a result — every
// collection is kept or returned in a sorted order.
//
// The pieces:
//   - Model, a first-order Markov model of region → region handovers;
//   - PreDeployClouds, which turns the model (or, while it is cold, the
//     topology's neighbour policy) into the set of clouds to pre-deploy;
//   - Walk, a seeded synthetic mobility generator over a topology's regions;
//   - Evaluate, which replays walks and compares both ways of choosing.
package predict

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Model is a first-order Markov model of a user's moves between regions: for
// every region it counts the handovers to each next region. The zero Model
// is empty and ready to use.
//
// Probabilities are the plain maximum-likelihood estimates count/total, with
// no additive smoothing: smoothing needs the set of all regions (which the
// model does not own and the topology may change), and it only spreads mass
// over regions never seen, which a coverage threshold below 1 would either
// skip or have to pay for. The unseen case is handled instead by the cold
// rule of Predict: below a minimum number of observations callers fall back
// to the topology's neighbours.
//
// Memory is bounded by the regions seen: at most R×R counts over R regions.
// Use Retain to drop regions that left the topology.
//
// Model encodes to JSON as {"from":{"to":count,…},…} with keys sorted, so a
// model can live in workflow state and travel between workflows. Copying a
// Model value shares its storage; use Clone for an independent copy.
type Model struct {
	rows []row // sorted by from
}

type row struct {
	from  string
	to    []count // sorted by region
	total int
}

type count struct {
	region string
	n      int
}

// Transition is one observed next region and its estimated probability.
type Transition struct {
	To          string  `json:"to"`
	Count       int     `json:"count"`
	Probability float64 `json:"probability"`
}

// Observe records a handover from region from to region to. A move to the
// same region, or with an empty name, is not a handover and is ignored.
func (m *Model) Observe(from, to string) {
	m.add(from, to, 1)
}

func (m *Model) add(from, to string, n int) {
	if from == "" || to == "" || from == to || n <= 0 {
		return
	}
	i, ok := slices.BinarySearchFunc(m.rows, from, func(r row, k string) int { return strings.Compare(r.from, k) })
	if !ok {
		m.rows = slices.Insert(m.rows, i, row{from: from})
	}
	r := &m.rows[i]
	j, ok := slices.BinarySearchFunc(r.to, to, func(c count, k string) int { return strings.Compare(c.region, k) })
	if !ok {
		r.to = slices.Insert(r.to, j, count{region: to})
	}
	r.to[j].n += n
	r.total += n
}

// Merge adds every count of other to m, as if m had observed other's moves
// too. other is not changed; m may be other's copy or other itself.
func (m *Model) Merge(other Model) {
	other = other.Clone() // m and other may share storage
	for _, r := range other.rows {
		for _, c := range r.to {
			m.add(r.from, c.region, c.n)
		}
	}
}

// Clone returns a copy of m that shares no storage with it.
func (m Model) Clone() Model {
	out := Model{rows: make([]row, len(m.rows))}
	for i, r := range m.rows {
		out.rows[i] = row{from: r.from, to: slices.Clone(r.to), total: r.total}
	}
	return out
}

// Retain drops every count from or to a region not in regions, e.g. after a
// region left the topology.
func (m *Model) Retain(regions []string) {
	keep := func(r string) bool { return slices.Contains(regions, r) }
	m.rows = slices.DeleteFunc(m.rows, func(r row) bool { return !keep(r.from) })
	for i := range m.rows {
		r := &m.rows[i]
		r.to = slices.DeleteFunc(r.to, func(c count) bool { return !keep(c.region) })
		r.total = 0
		for _, c := range r.to {
			r.total += c.n
		}
	}
	m.rows = slices.DeleteFunc(m.rows, func(r row) bool { return r.total == 0 })
}

// Regions returns the regions moves have been observed from, sorted.
func (m Model) Regions() []string {
	out := make([]string, len(m.rows))
	for i, r := range m.rows {
		out[i] = r.from
	}
	return out
}

// Observations is the number of handovers observed from region from.
func (m Model) Observations(from string) int {
	if r := m.row(from); r != nil {
		return r.total
	}
	return 0
}

func (m Model) row(from string) *row {
	i, ok := slices.BinarySearchFunc(m.rows, from, func(r row, k string) int { return strings.Compare(r.from, k) })
	if !ok {
		return nil
	}
	return &m.rows[i]
}

// Transitions returns the regions observed after from, most likely first;
// equal probabilities are ordered by region name. It is nil for a region
// never moved from.
func (m Model) Transitions(from string) []Transition {
	r := m.row(from)
	if r == nil {
		return nil
	}
	out := make([]Transition, len(r.to))
	for i, c := range r.to {
		out[i] = Transition{To: c.region, Count: c.n, Probability: float64(c.n) / float64(r.total)}
	}
	// Counts share a denominator, so ordering by count orders by
	// probability exactly, without rounding.
	slices.SortStableFunc(out, func(a, b Transition) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), strings.Compare(a.To, b.To))
	})
	return out
}

// coverageSlack absorbs rounding when cumulative probabilities are compared
// with a coverage target (0.1+0.2+0.7 is not exactly 1).
const coverageSlack = 1e-9

// Predict returns the most likely next regions after from: the shortest
// prefix of Transitions(from) whose cumulative probability reaches coverage,
// cut to at most k regions (k ≤ 0: no cap). Coverage ≥ 1 asks for every
// region seen; coverage ≤ 0 for none.
//
// cold is true, and regions nil, when fewer than minObservations moves (and
// always when no move at all) have been observed from from: the model knows
// too little, and callers should fall back to all neighbours.
func (m Model) Predict(from string, coverage float64, k int, minObservations int) (regions []string, cold bool) {
	n := m.Observations(from)
	if n == 0 || n < minObservations {
		return nil, true
	}
	regions = []string{}
	cum := 0.0
	for _, t := range m.Transitions(from) {
		if cum >= coverage-coverageSlack || (k > 0 && len(regions) >= k) {
			break
		}
		regions = append(regions, t.To)
		cum += t.Probability
	}
	return regions, false
}

// MarshalJSON encodes m as {"from":{"to":count,…},…}, keys sorted.
func (m Model) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, r := range m.rows {
		if i > 0 {
			b.WriteByte(',')
		}
		writeJSONString(&b, r.from)
		b.WriteString(":{")
		for j, c := range r.to {
			if j > 0 {
				b.WriteByte(',')
			}
			writeJSONString(&b, c.region)
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(c.n))
		}
		b.WriteByte('}')
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func writeJSONString(b *bytes.Buffer, s string) {
	data, _ := json.Marshal(s) // a string always encodes
	b.Write(data)
}

// UnmarshalJSON decodes what MarshalJSON writes (null is the empty model).
// Negative counts, counts to the same region and empty names are errors.
func (m *Model) UnmarshalJSON(data []byte) error {
	var doc map[string]map[string]int
	if err := json.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("predict model: %w", err)
	}
	out := Model{}
	for _, from := range slices.Sorted(maps.Keys(doc)) {
		next := doc[from]
		for _, to := range slices.Sorted(maps.Keys(next)) {
			n := next[to]
			switch {
			case from == "" || to == "":
				return fmt.Errorf("predict model: empty region name")
			case from == to:
				return fmt.Errorf("predict model: move from %q to itself", from)
			case n < 0:
				return fmt.Errorf("predict model: negative count %d from %q to %q", n, from, to)
			case out.Observations(from) > math.MaxInt-n:
				return fmt.Errorf("predict model: counts from %q overflow", from)
			}
			out.add(from, to, n)
		}
	}
	*m = out
	return nil
}
