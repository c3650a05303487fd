package topology

import (
	"errors"
	"strings"
	"testing"
)

// TestValidateProblems breaks one rule per case and expects exactly that
// problem, so each check is shown to fire and not to drag others along.
func TestValidateProblems(t *testing.T) {
	const center = "  - {id: c, tier: center}\n"
	cases := []struct {
		name, doc, want string
	}{
		{"no clouds", "name: empty\n", "no clouds"},
		{"empty file", "", "no clouds"},
		{"missing id", "clouds:\n  - {tier: center}\n", "cloud #1: missing id"},
		{"malformed id", "clouds:\n  - {id: Fog_1, tier: center}\n", `cloud "Fog_1": id must be a DNS label`},
		{"id ending in dash", "clouds:\n  - {id: fog-, tier: center}\n", `cloud "fog-": id must be a DNS label`},
		{"id too long", "clouds:\n  - {id: " + strings.Repeat("a", 64) + ", tier: center}\n", "id must be a DNS label"},
		{"duplicate id", "clouds:\n" + center + "  - {id: f, tier: fog, parent: c}\n  - {id: f, tier: edge, parent: c}\n", `cloud "f": duplicate id (clouds #2 and #3)`},
		{"unknown tier", "clouds:\n" + center + "  - {id: f, tier: core, parent: c}\n", `cloud "f": unknown tier "core" (want center, fog or edge)`},
		{"missing tier", "clouds:\n" + center + "  - {id: f, parent: c}\n", `cloud "f": unknown tier ""`},
		{"unknown parent", "clouds:\n" + center + "  - {id: fog-9, tier: fog, parent: nope}\n", `cloud "fog-9": unknown parent "nope"`},
		{"parent cycle", "clouds:\n" + center + "  - {id: a, tier: fog, parent: b}\n  - {id: b, tier: edge, parent: a}\n", "parent cycle: a → b → a"},
		{"own parent", "clouds:\n" + center + "  - {id: a, tier: fog, parent: a}\n", "parent cycle: a → a"},
		{"center with parent", "clouds:\n" + center + "  - {id: c2, tier: center, parent: c}\n", `cloud "c2": a center cloud has no parent (got "c")`},
		{"no center", "clouds:\n  - {id: f, tier: fog}\n", "no center cloud"},
		{"negative capacity", "clouds:\n  - {id: c, tier: center, capacity: -1}\n", `cloud "c": negative capacity -1`},
		{"negative uplink", "clouds:\n" + center + "  - {id: f, tier: fog, parent: c, uplink: -2ms}\n", `cloud "f": negative uplink -2ms`},
		{"uplink without parent", "clouds:\n" + center + "  - {id: f, tier: fog, uplink: 2ms}\n", `cloud "f": uplink 2ms without a parent`},
		{"latitude out of range", "clouds:\n  - {id: c, tier: center, location: {lat: 91, lon: 0}}\n", `cloud "c": location (91, 0) out of range`},
		{"longitude out of range", "clouds:\n  - {id: c, tier: center, location: {lat: 0, lon: -181}}\n", `cloud "c": location (0, -181) out of range`},
		{"unknown arch", "clouds:\n  - {id: c, tier: center, arch: z80}\n", `cloud "c": unknown arch "z80"`},
		{"unknown runtime kind", "clouds:\n  - {id: c, tier: center, runtime: {kind: lxc}}\n", `cloud "c": runtime: invalid input: unknown runtime kind "lxc"`},
		{"kubernetes without kubeconfig", "clouds:\n  - {id: c, tier: center, runtime: {kind: kubernetes}}\n", `cloud "c": runtime: invalid input: kubernetes runtime needs a kubeconfig`},
		{"region to missing cloud", "clouds:\n" + center + "regions:\n  paris-north: edge-1\n", `region "paris-north": unknown cloud "edge-1"`},
		{"empty region name", "clouds:\n" + center + "regions:\n  \"\": c\n", `empty region name (mapped to "c")`},
		{"link to unknown cloud", "clouds:\n" + center + "links:\n  - {a: c, b: nope}\n", `link #1 (c, nope): unknown cloud "nope"`},
		{"self-link", "clouds:\n" + center + "links:\n  - {a: c, b: c, latency: 1ms}\n", "link #1 (c, c): self-link"},
		{"negative latency", "clouds:\n" + center + "  - {id: f, tier: fog}\nlinks:\n  - {a: c, b: f, latency: -3ms}\n", "link #1 (c, f): negative latency -3ms"},
		{"link doubling a parent edge", "clouds:\n" + center + "  - {id: f, tier: fog, parent: c}\nlinks:\n  - {a: c, b: f}\n", "link #1 (c, f): duplicate edge"},
		{"link given twice", "clouds:\n" + center + "  - {id: f, tier: fog}\nlinks:\n  - {a: c, b: f}\n  - {a: f, b: c}\n", "link #2 (f, c): duplicate edge"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc))
			var verr *ValidationError
			if !errors.As(err, &verr) {
				t.Fatalf("Parse error = %v, want a *ValidationError", err)
			}
			if len(verr.Problems) != 1 || !strings.Contains(verr.Problems[0], tc.want) {
				t.Fatalf("problems = %q, want exactly one containing %q", verr.Problems, tc.want)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	doc := `
clouds:
  - {id: c, tier: center}
  - {id: fog-9, tier: fog, parent: nope}
  - {id: e, tier: edge, parent: c, capacity: -5}
  - {id: e, tier: edge, parent: c}
regions:
  r: gone
links:
  - {a: c, b: c}
`
	_, err := Parse([]byte(doc))
	var verr *ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("Parse error = %v, want a *ValidationError", err)
	}
	want := []string{
		`cloud "e": negative capacity -5 (0 means unlimited)`,
		`cloud "e": duplicate id (clouds #3 and #4)`,
		`cloud "fog-9": unknown parent "nope"`,
		`region "r": unknown cloud "gone"`,
		`link #1 (c, c): self-link`,
	}
	if strings.Join(verr.Problems, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(verr.Problems, "\n"), strings.Join(want, "\n"))
	}
	wantMsg := "topology invalid: 5 problems:\n - " + strings.Join(want, "\n - ")
	if err.Error() != wantMsg {
		t.Errorf("Error() =\n%s\nwant\n%s", err, wantMsg)
	}
}
