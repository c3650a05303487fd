package port

import (
	"slices"

	"golang.org/x/mod/semver"
)

// Candidates are the published versions newer than current, oldest first.
func Candidates(current string, published []string) []string {
	var out []string
	for _, v := range published {
		if semver.IsValid(v) && semver.Compare(v, current) > 0 {
			out = append(out, v)
		}
	}
	slices.SortFunc(out, semver.Compare)
	return out
}

// LowestBuilding finds the oldest of candidates (oldest first) for which
// builds holds, taking support for an arch, once added, to stay: the newest
// is tried first, so a module no version of which builds costs one try, then
// a binary search narrows down to the lowest.
func LowestBuilding(candidates []string, builds func(version string) (bool, error)) (string, bool, error) {
	if len(candidates) == 0 {
		return "", false, nil
	}
	newest := len(candidates) - 1
	ok, err := builds(candidates[newest])
	if err != nil || !ok {
		return "", false, err
	}
	lo, hi := 0, newest // candidates[hi] builds
	for lo < hi {
		mid := (lo + hi) / 2
		ok, err := builds(candidates[mid])
		if err != nil {
			return "", false, err
		}
		if ok {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return candidates[hi], true, nil
}
