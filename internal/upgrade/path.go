package upgrade

import (
	"errors"
	"fmt"
	"slices"
)

// ErrNoPath marks an upgrade the release index gives no supported path for.
var ErrNoPath = errors.New("no upgrade path")

// Hop is one supported step of an upgrade: to a later release of the same
// series, to the next series, or from a SLURP series to the next SLURP
// series, skipping the one between (OpenStack's skip-level upgrade release
// process).
type Hop struct {
	From, To             Release
	FromSeries, ToSeries string
	Skip                 bool // skips one series (SLURP N → N+2)
	// Candidates are the releases the hop may go to, in the order a redo
	// with the next candidate tries them; To is the first.
	Candidates []Release
}

func (h Hop) String() string {
	how := ""
	if h.Skip {
		how = ", SLURP"
	}
	return fmt.Sprintf("%s (%s) → %s (%s%s)", h.From.Tag, h.FromSeries, h.To.Tag, h.ToSeries, how)
}

// Path turns an upgrade from current to candidates[0] into hops. The hops
// go series by series, except that a SLURP series jumps to the next SLURP
// series when the target is at least that far. A hop that stops on the way
// goes to the newest final release of its series (its candidates: that
// series' finals above where it starts, newest first); the last hop's
// candidates are the given candidates of the target's series, in their
// order.
func (ix *Index) Path(component string, current Release, candidates []Release) ([]Hop, error) {
	if len(candidates) == 0 {
		return nil, fmt.Errorf("%w: no target", ErrNoCandidate)
	}
	target := candidates[0]
	at, to := ix.seriesOf(component, current), ix.seriesOf(component, target)
	switch {
	case at < 0:
		return nil, fmt.Errorf("%w: %s %s is in no series of the index", ErrNoPath, component, current.Tag)
	case to < 0:
		return nil, fmt.Errorf("%w: %s %s is in no series of the index", ErrNoPath, component, target.Tag)
	case to < at || !target.Version.GreaterThan(current.Version):
		return nil, fmt.Errorf("%w: %s %s is not after %s", ErrNoPath, component, target.Tag, current.Tag)
	}
	var hops []Hop
	for from := current; ; {
		next := at + 1
		if at == to {
			next = at
		} else if ix.Series[at].SLURP && at+2 <= to && ix.Series[at+2].SLURP {
			next = at + 2
		}
		hop := Hop{From: from, FromSeries: ix.Series[at].Name, ToSeries: ix.Series[next].Name, Skip: next == at+2}
		if next == to {
			for _, c := range candidates {
				if ix.seriesOf(component, c) == to && c.Version.GreaterThan(from.Version) {
					hop.Candidates = append(hop.Candidates, c)
				}
			}
		} else {
			rels, _ := Releases(ix.Series[next].Deliverables[component])
			hop.Candidates = Newer(rels, from, false)
			slices.Reverse(hop.Candidates)
		}
		if len(hop.Candidates) == 0 {
			return nil, fmt.Errorf("%w: series %s has no final release of %s to stop at", ErrNoPath, hop.ToSeries, component)
		}
		hop.To = hop.Candidates[0]
		hops = append(hops, hop)
		if next == to {
			return hops, nil
		}
		from, at = hop.To, next
	}
}

// seriesOf is the index of the series that publishes r, or -1.
func (ix *Index) seriesOf(component string, r Release) int {
	for i, s := range ix.Series {
		rels, _ := Releases(s.Deliverables[component])
		if slices.ContainsFunc(rels, func(o Release) bool { return o.Version.Equal(r.Version) }) {
			return i
		}
	}
	return -1
}
