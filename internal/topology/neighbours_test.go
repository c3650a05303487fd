package topology

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
)

// Expected geo distances, from the spherical law of cosines rather than the
// haversine formula the code uses.
var (
	deg1 = 6371 * math.Pi / 180 // 1° of arc: along the equator or a meridian
	deg2 = 2 * deg1
	// (1,1) to (0,0) or to (0,2): cos d = cos²(1°).
	diag = 6371 * math.Acos(math.Cos(math.Pi/180)*math.Cos(math.Pi/180))
	// (1,1) to (0,-1): cos d = cos(1°)·cos(2°).
	e2f2 = 6371 * math.Acos(math.Cos(math.Pi/180)*math.Cos(2*math.Pi/180))
	// (1,1) to (0,-2): cos d = cos(1°)·cos(3°).
	e2e3 = 6371 * math.Acos(math.Cos(math.Pi/180)*math.Cos(3*math.Pi/180))
)

// want is a neighbour list written as "id=distance".
type want []string

func (w want) check(t *testing.T, got []Neighbour) {
	t.Helper()
	if len(got) != len(w) {
		t.Fatalf("got %v, want %v", format(got), w)
	}
	for i, n := range got {
		id, d, _ := strings.Cut(w[i], "=")
		var dist float64
		fmt.Sscan(d, &dist)
		if n.Cloud.ID != id || math.Abs(n.Distance-dist) > 1e-6 {
			t.Fatalf("got %v, want %v", format(got), w)
		}
	}
}

func format(ns []Neighbour) []string {
	var out []string
	for _, n := range ns {
		out = append(out, fmt.Sprintf("%s=%.9g", n.Cloud.ID, n.Distance))
	}
	return out
}

func km(id string, d float64) string { return fmt.Sprintf("%s=%.12g", id, d) }

func TestNeighbours(t *testing.T) {
	topo := mustParse(t, small)
	cases := []struct {
		from   string
		policy Policy
		want   want
	}{
		// Adjacency: parent, children and links; 1 hop each, so ordered by id.
		{"c", Policy{Kind: Adjacency}, want{"f1=1", "f2=1"}},
		{"f1", Policy{Kind: Adjacency}, want{"c=1", "e1=1", "e2=1"}},
		{"e2", Policy{Kind: Adjacency}, want{"e3=1", "f1=1"}},
		{"e4", Policy{Kind: Adjacency}, want{"f2=1"}},

		// Latency: shortest paths in ms; e4's uplink is unknown, so e4 is
		// never reached. Ties (f1/f2, e1/e3) are ordered by id.
		{"c", Policy{Kind: WithinDistance, Max: 12, Metric: Latency}, want{"f1=10", "f2=10", "e1=12", "e3=12"}},
		{"c", Policy{Kind: WithinDistance, Max: 11.9, Metric: Latency}, want{"f1=10", "f2=10"}},
		{"c", Policy{Kind: WithinDistance, Max: 0, Metric: Latency}, nil},
		{"c", Policy{Kind: Nearest, N: 3, Metric: Latency}, want{"f1=10", "f2=10", "e1=12"}},
		{"c", Policy{Kind: Nearest, N: 10, Metric: Latency}, want{"f1=10", "f2=10", "e1=12", "e3=12", "e2=14"}},
		// From e1 the link e2–e3 beats going through c: e3 = 2+4+5, f2 = 2+4+5+2.
		{"e1", Policy{Kind: Nearest, N: 10, Metric: Latency}, want{"f1=2", "e2=6", "e3=11", "c=12", "f2=13"}},
		{"e1", Policy{Kind: WithinDistance, Max: 11, Metric: Latency}, want{"f1=2", "e2=6", "e3=11"}},
		{"e4", Policy{Kind: Nearest, N: 3, Metric: Latency}, nil},
		// The zero metric is latency here, since the topology has latencies.
		{"e1", Policy{Kind: Nearest, N: 2}, want{"f1=2", "e2=6"}},

		// Geo: great-circle km; e4 has no location, so it is never chosen.
		{"c", Policy{Kind: WithinDistance, Max: 150, Metric: Geo}, want{km("f1", deg1), km("f2", deg1)}},
		{"c", Policy{Kind: WithinDistance, Max: 160, Metric: Geo}, want{km("f1", deg1), km("f2", deg1), km("e2", diag)}},
		{"c", Policy{Kind: Nearest, N: 10, Metric: Geo}, want{km("f1", deg1), km("f2", deg1), km("e2", diag), km("e1", deg2), km("e3", deg2)}},
		// c and e1 are equally far from e2; the cut at N=2 keeps c by id.
		{"e2", Policy{Kind: Nearest, N: 2, Metric: Geo}, want{km("f1", deg1), km("c", diag)}},
		{"e2", Policy{Kind: Nearest, N: 6, Metric: Geo}, want{km("f1", deg1), km("c", diag), km("e1", diag), km("f2", e2f2), km("e3", e2e3)}},
	}
	for _, tc := range cases {
		t.Run(tc.from+"/"+tc.policy.String(), func(t *testing.T) {
			got, err := topo.Neighbours(tc.from, tc.policy)
			if err != nil {
				t.Fatal(err)
			}
			tc.want.check(t, got)
		})
	}
}

func TestNeighboursDefaultGeo(t *testing.T) {
	// Without any latency, the zero metric measures great circles.
	topo := mustParse(t, `
clouds:
  - {id: c, tier: center, location: {lat: 0, lon: 0}}
  - {id: a, tier: edge, parent: c, location: {lat: 0, lon: 2}}
  - {id: b, tier: edge, parent: c, location: {lat: 1, lon: 0}}
`)
	got, err := topo.Neighbours("c", Policy{Kind: Nearest, N: 5})
	if err != nil {
		t.Fatal(err)
	}
	want{km("b", deg1), km("a", deg2)}.check(t, got)
}

func TestNeighboursErrors(t *testing.T) {
	topo := mustParse(t, small)
	if _, err := topo.Neighbours("zz", Policy{Kind: Adjacency}); !errors.Is(err, ErrUnknownCloud) {
		t.Errorf("unknown cloud: %v, want ErrUnknownCloud", err)
	}
	if _, err := topo.Neighbours("c", Policy{Kind: Nearest}); err == nil || !strings.Contains(err.Error(), "N ≥ 1") {
		t.Errorf("invalid policy: %v", err)
	}
	if _, err := topo.Neighbours("e4", Policy{Kind: Nearest, N: 1, Metric: Geo}); err == nil || !strings.Contains(err.Error(), `cloud "e4" has no location`) {
		t.Errorf("geo from a cloud without location: %v", err)
	}
}

func TestDistance(t *testing.T) {
	topo := mustParse(t, small)
	cases := []struct {
		a, b    string
		m       Metric
		want    float64
		wantErr string
	}{
		{"e1", "f2", Latency, 13, ""},
		{"f2", "e1", "", 13, ""},
		{"c", "c", Latency, 0, ""},
		{"c", "e2", Geo, diag, ""},
		{"c", "e4", Latency, 0, `no path with known latency from "c" to "e4"`},
		{"c", "e4", Geo, 0, `cloud "e4" has no location`},
		{"e4", "c", Geo, 0, `cloud "e4" has no location`},
		{"c", "zz", Latency, 0, `unknown cloud "zz"`},
		{"zz", "c", Latency, 0, `unknown cloud "zz"`},
		{"c", "f1", "hops", 0, `unknown metric "hops"`},
	}
	for _, tc := range cases {
		got, err := topo.Distance(tc.a, tc.b, tc.m)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Distance(%s, %s, %q) error = %v, want %q", tc.a, tc.b, tc.m, err, tc.wantErr)
			}
			continue
		}
		if err != nil || math.Abs(got-tc.want) > 1e-6 {
			t.Errorf("Distance(%s, %s, %q) = %v, %v; want %v", tc.a, tc.b, tc.m, got, err, tc.want)
		}
	}
	if _, err := topo.Distance("c", "zz", Latency); !errors.Is(err, ErrUnknownCloud) {
		t.Errorf("unknown cloud error %v does not wrap ErrUnknownCloud", err)
	}
}

func TestParsePolicy(t *testing.T) {
	good := []struct {
		in   string
		want Policy
	}{
		{"adjacency", Policy{Kind: Adjacency}},
		{"distance<=12", Policy{Kind: WithinDistance, Max: 12}},
		{" distance:12 ", Policy{Kind: WithinDistance, Max: 12}},
		{"distance<=0", Policy{Kind: WithinDistance}},
		{"distance<=2.5,geo", Policy{Kind: WithinDistance, Max: 2.5, Metric: Geo}},
		{"nearest:3", Policy{Kind: Nearest, N: 3}},
		{"nearest=3,latency", Policy{Kind: Nearest, N: 3, Metric: Latency}},
		{"nearest:1, geo", Policy{Kind: Nearest, N: 1, Metric: Geo}},
	}
	for _, tc := range good {
		got, err := ParsePolicy(tc.in)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParsePolicy(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			continue
		}
		if back, err := ParsePolicy(got.String()); err != nil || back != got {
			t.Errorf("String %q does not parse back: %+v, %v", got.String(), back, err)
		}
	}

	bad := []struct{ in, want string }{
		{"", "want adjacency, distance<=MAX or nearest:N"},
		{"adjacent", "want adjacency"},
		{"distance", "want adjacency"},
		{"nearest", "want adjacency"},
		{"distance<=", "invalid syntax"},
		{"distance<=abc", "invalid syntax"},
		{"distance<=-1", "must be a finite number ≥ 0"},
		{"distance<=NaN", "must be a finite number ≥ 0"},
		{"distance<=Inf", "must be a finite number ≥ 0"},
		{"nearest:0", "N ≥ 1"},
		{"nearest:-2", "N ≥ 1"},
		{"nearest:1.5", "invalid syntax"},
		{"nearest:3,", "empty metric"},
		{"nearest:3,hops", `unknown metric "hops"`},
		{"adjacency,geo", "takes no metric"},
	}
	for _, tc := range bad {
		_, err := ParsePolicy(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParsePolicy(%q) error = %v, want it to contain %q", tc.in, err, tc.want)
		}
	}
}

func TestPolicyValidate(t *testing.T) {
	for _, p := range []Policy{
		{},
		{Kind: "closest", N: 1},
		{Kind: Nearest, N: 0},
		{Kind: WithinDistance, Max: -0.5},
		{Kind: WithinDistance, Max: math.Inf(1)},
		{Kind: Nearest, N: 1, Metric: "hops"},
		{Kind: Adjacency, Metric: Latency},
	} {
		if err := p.Validate(); err == nil {
			t.Errorf("Validate(%+v) accepted an invalid policy", p)
		}
	}
}
