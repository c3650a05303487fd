package predict

import (
	"encoding/json"
	"math"
	"reflect"
	"slices"
	"testing"
)

// observe records moves written as pairs: from, to, from, to, …
func observe(m *Model, n int, from, to string) {
	for range n {
		m.Observe(from, to)
	}
}

func TestModelCountsAndOrder(t *testing.T) {
	var m Model
	observe(&m, 3, "a", "c")
	observe(&m, 1, "a", "b")
	observe(&m, 3, "a", "d") // ties with c: by name
	observe(&m, 1, "b", "a")
	m.Observe("a", "a") // not a move
	m.Observe("", "a")
	m.Observe("a", "")

	if got := m.Observations("a"); got != 7 {
		t.Errorf("Observations(a) = %d, want 7", got)
	}
	if got := m.Observations("zzz"); got != 0 {
		t.Errorf("Observations(zzz) = %d, want 0", got)
	}
	want := []Transition{{"c", 3, 3.0 / 7}, {"d", 3, 3.0 / 7}, {"b", 1, 1.0 / 7}}
	if got := m.Transitions("a"); !reflect.DeepEqual(got, want) {
		t.Errorf("Transitions(a) = %v, want %v", got, want)
	}
	if got := m.Transitions("c"); got != nil {
		t.Errorf("Transitions(c) = %v, want nil", got)
	}
	if got := m.Regions(); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("Regions = %v", got)
	}
	sum := 0.0
	for _, tr := range m.Transitions("a") {
		sum += tr.Probability
	}
	if math.Abs(sum-1) > 1e-12 {
		t.Errorf("probabilities sum to %v", sum)
	}
}

func TestPredict(t *testing.T) {
	var m Model
	observe(&m, 5, "home", "work") // 0.5
	observe(&m, 3, "home", "gym")  // 0.3
	observe(&m, 1, "home", "shop") // 0.1
	observe(&m, 1, "home", "aunt") // 0.1, before shop by name
	observe(&m, 2, "work", "home") // 2 observations only
	cases := []struct {
		name     string
		from     string
		coverage float64
		k, min   int
		want     []string
		cold     bool
	}{
		{"top one covers", "home", 0.5, 0, 1, []string{"work"}, false},
		{"just above", "home", 0.51, 0, 1, []string{"work", "gym"}, false},
		{"exact sum despite rounding", "home", 0.9, 0, 1, []string{"work", "gym", "aunt"}, false},
		{"all", "home", 1, 0, 1, []string{"work", "gym", "aunt", "shop"}, false},
		{"above one is all", "home", 2, 0, 1, []string{"work", "gym", "aunt", "shop"}, false},
		{"k caps", "home", 1, 2, 1, []string{"work", "gym"}, false},
		{"k larger than needed", "home", 0.5, 3, 1, []string{"work"}, false},
		{"zero coverage", "home", 0, 0, 1, []string{}, false},
		{"enough observations", "work", 0.9, 0, 2, []string{"home"}, false},
		{"too few observations", "work", 0.9, 0, 3, nil, true},
		{"never seen", "gym", 0.9, 0, 0, nil, true},
	}
	for _, c := range cases {
		got, cold := m.Predict(c.from, c.coverage, c.k, c.min)
		if cold != c.cold || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: Predict(%s, %v, %d, %d) = %q, %v; want %q, %v", c.name, c.from, c.coverage, c.k, c.min, got, cold, c.want, c.cold)
		}
	}
}

func TestMerge(t *testing.T) {
	var a, b Model
	observe(&a, 2, "x", "y")
	observe(&a, 1, "y", "x")
	observe(&b, 3, "x", "y")
	observe(&b, 4, "x", "z")
	observe(&b, 1, "z", "x")
	before := b.Clone()

	a.Merge(b)
	want := []Transition{{"y", 5, 5.0 / 9}, {"z", 4, 4.0 / 9}}
	if got := a.Transitions("x"); !reflect.DeepEqual(got, want) {
		t.Errorf("merged Transitions(x) = %v, want %v", got, want)
	}
	if a.Observations("y") != 1 || a.Observations("z") != 1 {
		t.Errorf("merged rows: y %d, z %d; want 1, 1", a.Observations("y"), a.Observations("z"))
	}
	if !reflect.DeepEqual(b, before) {
		t.Error("Merge changed its argument")
	}

	// Merging a model with itself doubles it.
	a.Merge(a)
	if got := a.Observations("x"); got != 18 {
		t.Errorf("self-merge: Observations(x) = %d, want 18", got)
	}
	// Merging into the zero model copies.
	var z Model
	z.Merge(b)
	if !reflect.DeepEqual(z.Transitions("x"), b.Transitions("x")) {
		t.Error("merge into the zero model differs")
	}
}

func TestCloneIsIndependent(t *testing.T) {
	var m Model
	m.Observe("a", "b")
	c := m.Clone()
	c.Observe("a", "b")
	c.Observe("a", "c")
	if m.Observations("a") != 1 {
		t.Errorf("changing a clone changed the original: %v", m.Transitions("a"))
	}
}

func TestRetain(t *testing.T) {
	var m Model
	observe(&m, 2, "a", "b")
	observe(&m, 1, "a", "gone")
	observe(&m, 1, "gone", "a")
	observe(&m, 1, "b", "gone")
	m.Retain([]string{"a", "b"})
	if got := m.Regions(); !slices.Equal(got, []string{"a"}) {
		t.Errorf("Regions after Retain = %v, want [a]", got)
	}
	if got := m.Transitions("a"); !reflect.DeepEqual(got, []Transition{{"b", 2, 1}}) {
		t.Errorf("Transitions(a) after Retain = %v", got)
	}
}

func TestModelJSON(t *testing.T) {
	var m Model
	observe(&m, 2, "quartier-latin", "montparnasse")
	observe(&m, 1, "quartier-latin", "bastille")
	observe(&m, 4, "bastille", "le-marais")
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"bastille":{"le-marais":4},"quartier-latin":{"bastille":1,"montparnasse":2}}`
	if string(data) != want {
		t.Errorf("Marshal = %s, want %s", data, want)
	}
	var back Model
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, m) {
		t.Errorf("round trip: %+v, want %+v", back, m)
	}

	// Inside a struct, by value and by pointer, and empty.
	type state struct {
		Model  Model  `json:"model"`
		Shared *Model `json:"shared"`
		Empty  Model  `json:"empty"`
	}
	data, err = json.Marshal(state{Model: m, Shared: &m})
	if err != nil {
		t.Fatal(err)
	}
	var s state
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s.Model, m) || !reflect.DeepEqual(*s.Shared, m) || len(s.Empty.Regions()) != 0 {
		t.Errorf("struct round trip: %s → %+v", data, s)
	}
	if err := json.Unmarshal([]byte(`null`), &back); err != nil || len(back.Regions()) != 0 {
		t.Errorf("null: %v, %v", err, back.Regions())
	}

	for _, bad := range []string{
		`{"a":{"b":-1}}`,
		`{"a":{"a":1}}`,
		`{"":{"a":1}}`,
		`{"a":{"":1}}`,
		`{"a":{"b":1.5}}`,
		`[1]`,
	} {
		if err := json.Unmarshal([]byte(bad), &back); err == nil {
			t.Errorf("Unmarshal(%s) accepted", bad)
		}
	}
	// Zero counts carry nothing.
	if err := json.Unmarshal([]byte(`{"a":{"b":0}}`), &back); err != nil || back.Observations("a") != 0 {
		t.Errorf(`{"a":{"b":0}}: %v, %d observations`, err, back.Observations("a"))
	}
}
