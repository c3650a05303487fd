package upgrade

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"

	"gopkg.in/yaml.v3"
)

// ErrBadIndex marks a release index that cannot be used.
var ErrBadIndex = errors.New("malformed release index")

// ErrUnknownComponent marks a component the index does not list.
var ErrUnknownComponent = errors.New("unknown component")

// Index is a release index in the style of OpenStack's deliverables: release
// series, oldest first, each listing the versions published per component.
type Index struct {
	Series []Series `yaml:"series"`
}

// Series is one release series (caracal, dalmatian, …).
type Series struct {
	Name    string `yaml:"name"`
	Release string `yaml:"release,omitempty"` // e.g. 2024.1
	// SLURP marks a series an upgrade may skip-level from, to the next
	// SLURP series (N → N+2).
	SLURP        bool                `yaml:"slurp,omitempty"`
	Deliverables map[string][]string `yaml:"deliverables"` // component → published tags
}

// ParseIndex reads and checks an index: known fields only, at least one
// series, unique non-empty series names, every component with ≥1 tag. The
// same bytes always give the same index or the same error, so workflows may
// call it.
func ParseIndex(b []byte) (*Index, error) {
	var ix Index
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&ix); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadIndex, err)
	}
	if len(ix.Series) == 0 {
		return nil, fmt.Errorf("%w: no series", ErrBadIndex)
	}
	seen := map[string]bool{}
	for i, s := range ix.Series {
		if s.Name == "" || seen[s.Name] {
			return nil, fmt.Errorf("%w: series %d: missing or repeated name %q", ErrBadIndex, i, s.Name)
		}
		seen[s.Name] = true
		comps := slices.Sorted(maps.Keys(s.Deliverables)) // the first bad one is always the same
		for _, comp := range comps {
			tags := s.Deliverables[comp]
			if comp == "" || len(tags) == 0 || slices.Contains(tags, "") {
				return nil, fmt.Errorf("%w: series %s: component %q needs non-empty tags", ErrBadIndex, s.Name, comp)
			}
		}
	}
	return &ix, nil
}

// Published lists every version of component across all series, ascending,
// with the tags that are not versions.
func (ix *Index) Published(component string) (rels []Release, skipped []string, err error) {
	var tags []string
	for _, s := range ix.Series {
		tags = append(tags, s.Deliverables[component]...)
	}
	if len(tags) == 0 {
		return nil, nil, fmt.Errorf("%w: %q is in no series of the index", ErrUnknownComponent, component)
	}
	rels, skipped = Releases(tags)
	return rels, skipped, nil
}

// Latest returns the latest series that has a usable release of component
// (a final one unless pre), with those releases ascending.
func (ix *Index) Latest(component string, pre bool) (string, []Release, error) {
	for i := len(ix.Series) - 1; i >= 0; i-- {
		rels, _ := Releases(ix.Series[i].Deliverables[component])
		rels = slices.DeleteFunc(rels, func(r Release) bool { return r.Prerelease() && !pre })
		if len(rels) > 0 {
			return ix.Series[i].Name, rels, nil
		}
	}
	return "", nil, fmt.Errorf("%w: %q has no release in the index", ErrUnknownComponent, component)
}

// PlatformCandidates is what the platform policy tries: the newest release
// of the latest series first, then, for redo with the next candidate, the
// other releases above current, newest first.
func PlatformCandidates(ix *Index, component string, current Release, pre bool) (string, []Release, error) {
	series, latest, err := ix.Latest(component, pre)
	if err != nil {
		return "", nil, err
	}
	target := latest[len(latest)-1]
	if !target.Version.GreaterThan(current.Version) {
		return series, nil, fmt.Errorf("%w: %s's latest release %s (%s) ≤ current %s", ErrNotNewer, component, target.Tag, series, current.Tag)
	}
	all, _, _ := ix.Published(component)
	newer := Newer(all, current, pre)
	slices.Reverse(newer)
	newer = slices.DeleteFunc(newer, func(r Release) bool { return r.Version.GreaterThan(target.Version) })
	return series, newer, nil
}
