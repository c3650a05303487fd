package upgrade

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/edgedrift/drift/deploy/examples"
)

func tags(rels []Release) []string {
	var out []string
	for _, r := range rels {
		out = append(out, r.Tag)
	}
	return out
}

func TestParseRelease(t *testing.T) {
	for _, c := range []struct {
		tag, norm string // norm "" = not a version
	}{
		{"25.0.0", "25.0.0"},
		{"v25.1.0", "25.1.0"},
		{"25.0.0.0rc1", "25.0.0-rc.1"},
		{"25.0.0rc2", "25.0.0-rc.2"},
		{"25.0.0-rc.10", "25.0.0-rc.10"},
		{"26.0.0.0b3", "26.0.0-b.3"},
		{"26.0.0.0alpha1", "26.0.0-a.1"},
		{"2014.1.1", "2014.1.1"},
		{"2024.2-eol", ""},
		{"caracal-eol", ""},
		{"stable/2024.1", ""},
		{"latest", ""},
		{"25.0.0-acme-2.0.0", ""},
		{"", ""},
	} {
		r, err := ParseRelease(c.tag)
		if c.norm == "" {
			if !errors.Is(err, ErrNotVersion) {
				t.Errorf("%q: got %v, %v; want not a version", c.tag, r.Version, err)
			}
			continue
		}
		if err != nil || r.Version.String() != c.norm || r.Tag != c.tag {
			t.Errorf("%q: got %v (tag %q), %v; want %s", c.tag, r.Version, r.Tag, err, c.norm)
		}
	}
}

func TestReleasesOrderAndSkip(t *testing.T) {
	rels, skipped := Releases([]string{"25.0.0", "2024.2-eol", "25.0.0.0rc10", "25.0.0.0rc2", "24.2.0", "25.0.0.0b1", "v25.0.0"})
	if got, want := tags(rels), []string{"24.2.0", "25.0.0.0b1", "25.0.0.0rc2", "25.0.0.0rc10", "25.0.0"}; !slices.Equal(got, want) {
		t.Errorf("order %v, want %v", got, want)
	}
	if !slices.Equal(skipped, []string{"2024.2-eol"}) {
		t.Errorf("skipped %v", skipped)
	}
}

func mustRelease(t *testing.T, s string) Release {
	t.Helper()
	r, err := ParseRelease(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func cinderIndex(t *testing.T) *Index {
	t.Helper()
	ix, err := ParseIndex(examples.Releases)
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

func TestPlatformCandidates(t *testing.T) {
	ix := cinderIndex(t)
	for _, c := range []struct {
		current string
		pre     bool
		series  string
		want    []string
		err     error
	}{
		{"24.2.0", false, "gazpacho", []string{"28.0.0", "27.0.0", "26.1.0", "26.0.0", "25.1.0", "25.0.0"}, nil},
		{"27.0.0", false, "gazpacho", []string{"28.0.0"}, nil},
		{"27.0.0", true, "gazpacho", []string{"28.0.0", "28.0.0.0rc1"}, nil},
		{"28.0.0.0rc1", false, "gazpacho", []string{"28.0.0"}, nil},
		{"28.0.0", false, "gazpacho", nil, ErrNotNewer},
		{"29.0.0", false, "gazpacho", nil, ErrNotNewer},
	} {
		series, got, err := PlatformCandidates(ix, "cinder", mustRelease(t, c.current), c.pre)
		if !errors.Is(err, c.err) || series != c.series || !slices.Equal(tags(got), c.want) {
			t.Errorf("from %s (pre %v): %s %v %v; want %s %v %v", c.current, c.pre, series, tags(got), err, c.series, c.want, c.err)
		}
	}
	if _, _, err := PlatformCandidates(ix, "nova", mustRelease(t, "1.0.0"), false); !errors.Is(err, ErrUnknownComponent) {
		t.Errorf("nova: %v, want unknown component", err)
	}
}

func TestLatestSkipsSeriesWithOnlyCandidates(t *testing.T) {
	ix, err := ParseIndex([]byte("series:\n- name: a\n  deliverables: {x: [1.0.0]}\n- name: b\n  deliverables: {x: [2.0.0.0rc1, b-eol]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s, rels, _ := ix.Latest("x", false); s != "a" || !slices.Equal(tags(rels), []string{"1.0.0"}) {
		t.Errorf("finals: %s %v", s, tags(rels))
	}
	if s, rels, _ := ix.Latest("x", true); s != "b" || !slices.Equal(tags(rels), []string{"2.0.0.0rc1"}) {
		t.Errorf("with pre-releases: %s %v", s, tags(rels))
	}
}

func TestPinned(t *testing.T) {
	rels, _, err := cinderIndex(t).Published("cinder")
	if err != nil {
		t.Fatal(err)
	}
	cur := mustRelease(t, "25.0.0")
	if r, err := Pinned(rels, cur, "26.1.0"); err != nil || r.Tag != "26.1.0" {
		t.Errorf("26.1.0: %v %v", r, err)
	}
	for target, want := range map[string]error{"25.0.0": ErrNotNewer, "24.2.0": ErrNotNewer, "25.0.0.0rc1": ErrNotNewer,
		"26.5.0": ErrNoCandidate, "2024.2-eol": ErrNotVersion} {
		if _, err := Pinned(rels, cur, target); !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", target, err, want)
		}
	}
}

func TestParseIndexRejects(t *testing.T) {
	for name, doc := range map[string]string{
		"not yaml":        "series: [",
		"no series":       "series: []",
		"unknown field":   "series:\n- name: a\n  deliverable: {x: [1.0.0]}\n",
		"repeated series": "series:\n- name: a\n  deliverables: {x: [1.0.0]}\n- name: a\n  deliverables: {x: [2.0.0]}\n",
		"unnamed series":  "series:\n- deliverables: {x: [1.0.0]}\n",
		"no tags":         "series:\n- name: a\n  deliverables: {x: []}\n",
		"versions as map": "series:\n- name: a\n  deliverables: {x: {v: 1}}\n",
	} {
		if _, err := ParseIndex([]byte(doc)); !errors.Is(err, ErrBadIndex) {
			t.Errorf("%s: %v, want ErrBadIndex", name, err)
		}
	}
}

func TestParseDriverError(t *testing.T) {
	output := "starting cinder-volume 24.2.0\n" +
		"driver acme 2.0.0 requires cinder >= 26.0.0, < 28.0.0, running 24.2.0\n" +
		"exiting\n"
	de, c, found, err := ParseDriverError(DefaultErrorFormat, output)
	if err != nil || !found {
		t.Fatalf("found %v, %v", found, err)
	}
	want := DriverError{Driver: "acme", DriverVersion: "2.0.0", Component: "cinder", Constraint: ">= 26.0.0, < 28.0.0", Running: "24.2.0"}
	if de != want {
		t.Errorf("got %+v, want %+v", de, want)
	}
	rels, _, _ := cinderIndex(t).Published("cinder")
	got := Satisfying(rels, mustRelease(t, "24.2.0"), c, false)
	if !slices.Equal(tags(got), []string{"26.0.0", "26.1.0", "27.0.0"}) {
		t.Errorf("satisfying %v", tags(got))
	}

	// A component with its own wording, constraint last on the line, behind a log prefix.
	format := "ERROR [{driver}] needs {component} version {constraint}"
	de, c, found, err = ParseDriverError(format, "2026-11-24T10:00:00Z ERROR [acme] needs cinder version ~> 25.0\n")
	if err != nil || !found || de.Constraint != "~> 25.0" || de.Driver != "acme" {
		t.Fatalf("custom format: %+v %v %v", de, found, err)
	}
	if got := Satisfying(rels, mustRelease(t, "24.2.0"), c, false); !slices.Equal(tags(got), []string{"25.0.0", "25.1.0"}) {
		t.Errorf("~> 25.0 gives %v", tags(got))
	}

	if _, _, found, err := ParseDriverError(DefaultErrorFormat, "container exited with code 2\npanic: boom\n"); found || err != nil {
		t.Errorf("unrelated output: found %v, %v", found, err)
	}
	if _, _, found, err := ParseDriverError(DefaultErrorFormat, "driver acme 2.0.0 requires cinder newer please, running 24.2.0"); !found || err == nil {
		t.Errorf("garbled constraint: found %v, %v; want an error", found, err)
	}
	for _, bad := range []string{"driver {driver} failed", "needs {constraint} and {constraint}", "needs {constraint} on {host}"} {
		if _, err := CompileErrorFormat(bad); !errors.Is(err, ErrBadFormat) || !strings.Contains(err.Error(), bad) {
			t.Errorf("format %q: %v", bad, err)
		}
	}
}

func hopStrings(hops []Hop) []string {
	var out []string
	for _, h := range hops {
		out = append(out, h.String()+" "+strings.Join(tags(h.Candidates), ","))
	}
	return out
}

func TestPath(t *testing.T) {
	ix := cinderIndex(t)
	for _, c := range []struct {
		current string
		cands   []string
		want    []string
	}{
		// SLURP to SLURP, twice: 24 → 28 is two verified hops.
		{"24.2.0", []string{"28.0.0", "27.0.0"}, []string{
			"24.2.0 (caracal) → 26.1.0 (epoxy, SLURP) 26.1.0,26.0.0",
			"26.1.0 (epoxy) → 28.0.0 (gazpacho, SLURP) 28.0.0"}},
		// A non-SLURP series goes one series at a time.
		{"25.0.0", []string{"28.0.0"}, []string{
			"25.0.0 (dalmatian) → 26.1.0 (epoxy) 26.1.0,26.0.0",
			"26.1.0 (epoxy) → 28.0.0 (gazpacho, SLURP) 28.0.0"}},
		{"24.2.0", []string{"25.1.0", "25.0.0"}, []string{"24.2.0 (caracal) → 25.1.0 (dalmatian) 25.1.0,25.0.0"}},
		// The last hop keeps the policy's order (the driver policy: lowest first).
		{"24.2.0", []string{"26.0.0", "26.1.0", "27.0.0"}, []string{"24.2.0 (caracal) → 26.0.0 (epoxy, SLURP) 26.0.0,26.1.0"}},
		{"26.0.0", []string{"27.0.0"}, []string{"26.0.0 (epoxy) → 27.0.0 (flamingo) 27.0.0"}},
		{"24.0.0", []string{"24.2.0"}, []string{"24.0.0 (caracal) → 24.2.0 (caracal) 24.2.0"}},
	} {
		var cands []Release
		for _, tag := range c.cands {
			cands = append(cands, mustRelease(t, tag))
		}
		hops, err := ix.Path("cinder", mustRelease(t, c.current), cands)
		if got := hopStrings(hops); err != nil || !slices.Equal(got, c.want) {
			t.Errorf("%s → %v: %q, %v; want %q", c.current, c.cands, got, err, c.want)
		}
	}
	for name, c := range map[string]struct{ current, target string }{
		"unpublished current": {"23.0.0", "28.0.0"},
		"backwards":           {"26.0.0", "24.2.0"},
		"same":                {"26.0.0", "26.0.0"},
	} {
		if _, err := ix.Path("cinder", mustRelease(t, c.current), []Release{mustRelease(t, c.target)}); !errors.Is(err, ErrNoPath) {
			t.Errorf("%s: %v, want ErrNoPath", name, err)
		}
	}
	// A series without a final release cannot be stopped at.
	gap, err := ParseIndex([]byte("series:\n- {name: a, deliverables: {x: [1.0.0]}}\n- {name: b, deliverables: {x: [2.0.0.0rc1]}}\n- {name: c, deliverables: {x: [3.0.0]}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gap.Path("x", mustRelease(t, "1.0.0"), []Release{mustRelease(t, "3.0.0")}); !errors.Is(err, ErrNoPath) || !strings.Contains(err.Error(), "series b") {
		t.Errorf("gap: %v", err)
	}
}
