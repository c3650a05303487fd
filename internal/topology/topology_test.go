package topology

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/edgedrift/drift/deploy/examples"
)

// small is the hand-built topology the tests compute answers for:
//
//	            c (0,0)
//	     10ms /        \ 10ms
//	   f1 (0,1)          f2 (0,-1)
//	 2ms /   \ 4ms    2ms /   \ (unknown)
//	e1 (0,2)  e2 (1,1)  e3 (0,-2)  e4 (no location)
//
// plus a link e2–e3 of 5ms.
const small = `
name: small
clouds:
  - {id: c, tier: center, location: {lat: 0, lon: 0}}
  - {id: f1, tier: fog, parent: c, uplink: 10ms, location: {lat: 0, lon: 1}}
  - {id: f2, tier: fog, parent: c, uplink: 10ms, location: {lat: 0, lon: -1}}
  - {id: e1, tier: edge, parent: f1, uplink: 2ms, location: {lat: 0, lon: 2}, capacity: 3}
  - {id: e2, tier: edge, parent: f1, uplink: 4ms, location: {lat: 1, lon: 1}}
  - {id: e3, tier: edge, parent: f2, uplink: 2ms, location: {lat: 0, lon: -2}}
  - {id: e4, tier: edge, parent: f2}
regions:
  north: e1
  south: e3
  downtown: c
links:
  - {a: e2, b: e3, latency: 5ms}
`

func mustParse(t *testing.T, doc string) *Topology {
	t.Helper()
	topo, err := Parse([]byte(doc))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return topo
}

func ids(cs []Cloud) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.ID)
	}
	return out
}

func TestParseFields(t *testing.T) {
	topo := mustParse(t, small)
	if topo.Name() != "small" {
		t.Errorf("Name = %q", topo.Name())
	}
	if got, want := ids(topo.Clouds()), []string{"c", "f1", "f2", "e1", "e2", "e3", "e4"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Clouds = %v, want file order %v", got, want)
	}
	e1, ok := topo.Cloud("e1")
	want := Cloud{ID: "e1", Tier: Edge, Parent: "f1", Location: &Location{Lat: 0, Lon: 2}, Capacity: 3, Uplink: 2 * time.Millisecond}
	if !ok || !reflect.DeepEqual(e1, want) {
		t.Errorf("Cloud(e1) = %+v, %v; want %+v", e1, ok, want)
	}
	if _, ok := topo.Cloud("nope"); ok {
		t.Error("Cloud(nope) found")
	}
	if c := topo.Center(); c.ID != "c" {
		t.Errorf("Center = %q", c.ID)
	}
	if got := ids(topo.Children("f2")); !reflect.DeepEqual(got, []string{"e3", "e4"}) {
		t.Errorf("Children(f2) = %v", got)
	}
	if got := topo.Children("e1"); got != nil {
		t.Errorf("Children(e1) = %v, want none", got)
	}
	if got := topo.Children(""); got != nil {
		t.Errorf("Children(\"\") = %v, want none (roots are not children of anything)", got)
	}
	if got := topo.RegionNames(); !reflect.DeepEqual(got, []string{"downtown", "north", "south"}) {
		t.Errorf("RegionNames = %v", got)
	}
}

func TestFirstCloud(t *testing.T) {
	topo := mustParse(t, small)
	for region, want := range map[string]string{"north": "e1", "south": "e3", "downtown": "c"} {
		c, err := topo.FirstCloud(region)
		if err != nil || c.ID != want {
			t.Errorf("FirstCloud(%s) = %q, %v; want %q", region, c.ID, err, want)
		}
	}
	_, err := topo.FirstCloud("atlantis")
	if !errors.Is(err, ErrUnknownRegion) {
		t.Fatalf("FirstCloud(atlantis) error = %v, want ErrUnknownRegion", err)
	}
	if want := `unknown region "atlantis" (known: downtown, north, south)`; err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		name, doc, want string
	}{
		{"malformed yaml", "name: x\nclouds:\n  - id: [c\n", "line"},
		{"unknown top-level field", "name: x\nzones: {}\n", "field zones not found"},
		{"unknown cloud field", "clouds:\n  - {id: c, tier: center, colour: red}\n", "line 2: field colour not found"},
		{"unknown runtime field", "clouds:\n  - {id: c, tier: center, runtime: {kind: docker, hots: x}}\n", "field hots not found"},
		{"bad duration", "clouds:\n  - {id: c, tier: center}\n  - {id: f, tier: fog, parent: c, uplink: soon}\n", "line 3"},
		{"duration without unit", "clouds:\n  - {id: c, tier: center}\n  - {id: f, tier: fog, parent: c, uplink: 8}\n", "time.Duration"},
		{"duplicate region", "clouds:\n  - {id: c, tier: center}\nregions:\n  r: c\n  r: c\n", `"r" already defined`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse error = %v, want it to contain %q", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "parse topology: ") {
				t.Errorf("error %q does not say what failed to parse", err)
			}
			var verr *ValidationError
			if errors.As(err, &verr) {
				t.Errorf("decode error reported as a ValidationError: %v", err)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(good, []byte(small), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("clouds:\n  - {id: c, tier: center, capacity: -1}\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	if topo, err := Load(good); err != nil || topo.Name() != "small" {
		t.Errorf("Load(good) = %v, %v", topo, err)
	}

	missing := filepath.Join(dir, "missing.yaml")
	_, err := Load(missing)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("Load(missing) error = %v, want a not-exist error naming the file", err)
	}

	_, err = Load(bad)
	var verr *ValidationError
	if !errors.As(err, &verr) || !strings.HasPrefix(err.Error(), bad+": topology invalid: 1 problem:") {
		t.Errorf("Load(bad) error = %v, want a ValidationError prefixed by the file name", err)
	}
}

func TestJSONRoundTrip(t *testing.T) {
	topo := mustParse(t, small)
	data, err := json.Marshal(topo)
	if err != nil {
		t.Fatal(err)
	}
	var back Topology
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	if !reflect.DeepEqual(back.Clouds(), topo.Clouds()) || !reflect.DeepEqual(back.RegionNames(), topo.RegionNames()) {
		t.Errorf("round trip changed the topology:\n%s", data)
	}
	p := Policy{Kind: Nearest, N: 3}
	n1, _ := topo.Neighbours("e1", p)
	n2, err := back.Neighbours("e1", p)
	if err != nil || !reflect.DeepEqual(n1, n2) {
		t.Errorf("neighbours after round trip = %v, %v; want %v", n2, err, n1)
	}

	// A topology embedded by value marshals too, not as {}.
	wrapped, err := json.Marshal(struct{ T Topology }{*topo})
	if err != nil || !strings.Contains(string(wrapped), `"id":"e4"`) {
		t.Errorf("value marshal = %s, %v", wrapped, err)
	}

	var invalid Topology
	err = json.Unmarshal([]byte(`{"clouds":[{"id":"c","tier":"core"}]}`), &invalid)
	var verr *ValidationError
	if !errors.As(err, &verr) {
		t.Errorf("Unmarshal of an invalid topology = %v, want a ValidationError", err)
	}
}

func TestExampleTopology(t *testing.T) {
	loaded, err := Load("../../deploy/examples/topology.yaml")
	if err != nil {
		t.Fatal(err)
	}
	embedded, err := Parse(examples.Topology)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(loaded.Clouds(), embedded.Clouds()) {
		t.Error("embedded topology differs from the file")
	}
	tiers := map[Tier]int{}
	for _, c := range loaded.Clouds() {
		tiers[c.Tier]++
		if c.Runtime.Kind != "" {
			t.Errorf("cloud %s sets runtime %q; the example leaves runtimes to drift dev", c.ID, c.Runtime.Kind)
		}
	}
	if want := (map[Tier]int{Center: 1, Fog: 2, Edge: 4}); !reflect.DeepEqual(tiers, want) {
		t.Errorf("tiers = %v, want %v", tiers, want)
	}
	if n := len(loaded.RegionNames()); n != 6 {
		t.Errorf("%d regions, want 6", n)
	}

	// The answers the file's header promises for edge-latin.
	for policy, want := range map[string][]string{
		"adjacency":     {"edge-bastille", "edge-montparnasse", "fog-south"},
		"distance<=5":   {"edge-montparnasse", "edge-bastille", "fog-south", "fog-north"},
		"nearest:2":     {"edge-montparnasse", "edge-bastille"},
		"nearest:2,geo": {"edge-bastille", "edge-montparnasse"},
	} {
		p, err := ParsePolicy(policy)
		if err != nil {
			t.Fatal(err)
		}
		ns, err := loaded.Neighbours("edge-latin", p)
		var got []string
		for _, n := range ns {
			got = append(got, n.Cloud.ID)
		}
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s from edge-latin = %v, %v; want %v", policy, got, err, want)
		}
	}
}

func TestCloudArch(t *testing.T) {
	topo, err := Parse([]byte("clouds:\n  - {id: c, tier: center}\n  - {id: fog-loong, tier: fog, parent: c, arch: loong64, runtime: {kind: docker}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := topo.Cloud("fog-loong"); c.Arch != "loong64" {
		t.Errorf("arch %q", c.Arch)
	}
	if c, _ := topo.Cloud("c"); c.Arch != "" {
		t.Errorf("a cloud without arch: %q", c.Arch)
	}
}
