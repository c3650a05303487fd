// Package upgrade is the pure logic of component upgrades: which release
// strings are versions, which version to upgrade to, what the release index
// says and what a driver's start-up error asks for. No Temporal here.
package upgrade

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	version "github.com/hashicorp/go-version"
)

// ErrNotVersion marks a tag that is not a release version (e.g. 2024.2-eol).
var ErrNotVersion = errors.New("not a release version")

// Release is one published version: the tag exactly as published (the image
// tag) and its normalised version.
type Release struct {
	Tag     string
	Version *version.Version
}

func (r Release) String() string { return r.Tag }

// Prerelease reports whether r is an alpha, beta or release candidate.
func (r Release) Prerelease() bool { return r.Version.Prerelease() != "" }

// releaseRE accepts numeric releases with an optional alpha/beta/rc suffix in
// OpenStack (25.0.0.0rc1), PEP 440 (25.0.0rc1) or semver (25.0.0-rc.1) style.
// Anything else — eol/eom tags, branch names, "latest" — is not a version.
var releaseRE = regexp.MustCompile(`^v?(\d+(?:\.\d+)*)(?:[-.]?(a|b|rc|alpha|beta)\.?(\d+))?$`)

var preShort = map[string]string{"a": "a", "alpha": "a", "b": "b", "beta": "b", "rc": "rc"}

// ParseRelease normalises a release string. OpenStack's pbr writes a
// pre-release of 25.0.0 as 25.0.0.0rc1; it becomes 25.0.0-rc.1, which sorts
// before 25.0.0 and after 24.x. Numeric pre-release parts sort numerically
// (rc.2 < rc.10).
func ParseRelease(tag string) (Release, error) {
	m := releaseRE.FindStringSubmatch(strings.TrimSpace(tag))
	if m == nil {
		return Release{}, fmt.Errorf("%w: %q", ErrNotVersion, tag)
	}
	num, pre, n := m[1], m[2], m[3]
	norm := num
	if pre != "" {
		if segs := strings.Split(num, "."); len(segs) == 4 && segs[3] == "0" {
			norm = strings.Join(segs[:3], ".") // pbr's extra .0 before the suffix
		}
		norm += "-" + preShort[pre] + "." + n
	}
	v, err := version.NewVersion(norm)
	if err != nil {
		return Release{}, fmt.Errorf("%w: %q: %v", ErrNotVersion, tag, err)
	}
	return Release{Tag: tag, Version: v}, nil
}

// Releases parses tags and returns the versions among them in ascending
// order (one per version: the first tag wins) and the tags that are not.
func Releases(tags []string) (rels []Release, skipped []string) {
	for _, t := range tags {
		r, err := ParseRelease(t)
		if err != nil {
			skipped = append(skipped, t)
			continue
		}
		if !slices.ContainsFunc(rels, func(o Release) bool { return o.Version.Equal(r.Version) }) {
			rels = append(rels, r)
		}
	}
	slices.SortStableFunc(rels, func(a, b Release) int { return a.Version.Compare(b.Version) })
	return rels, skipped
}

// Errors of version choice; callers map them to workflow error types.
var (
	ErrNotNewer    = errors.New("target is not newer than the current version")
	ErrNoCandidate = errors.New("no published version fits")
)

// Newer returns the releases above current, ascending; pre-releases only
// when pre is set.
func Newer(rels []Release, current Release, pre bool) []Release {
	var out []Release
	for _, r := range rels {
		if r.Version.GreaterThan(current.Version) && (pre || !r.Prerelease()) {
			out = append(out, r)
		}
	}
	return out
}

// Pinned checks an explicitly asked target: a published release above current.
func Pinned(rels []Release, current Release, target string) (Release, error) {
	t, err := ParseRelease(target)
	if err != nil {
		return Release{}, err
	}
	if !t.Version.GreaterThan(current.Version) {
		return Release{}, fmt.Errorf("%w: %s ≤ %s", ErrNotNewer, t.Tag, current.Tag)
	}
	for _, r := range rels {
		if r.Version.Equal(t.Version) {
			return r, nil
		}
	}
	return Release{}, fmt.Errorf("%w: %s is not published", ErrNoCandidate, target)
}

// Satisfying returns the releases above current that meet constraint,
// lowest first: the driver policy upgrades no further than the driver needs.
func Satisfying(rels []Release, current Release, constraint version.Constraints, pre bool) []Release {
	var out []Release
	for _, r := range Newer(rels, current, pre) {
		if constraint.Check(r.Version) {
			out = append(out, r)
		}
	}
	return out
}
