package fleet

import (
	"errors"
	"strings"
	"testing"
)

func TestSelector(t *testing.T) {
	web := map[string]string{"role": "web", "zone": "a", "canary": ""}
	db := map[string]string{"role": "db", "zone": "b"}
	for _, c := range []struct {
		sel       string
		web, db   bool
		canonical string
	}{
		{"", true, true, "*"},
		{"*", true, true, "*"},
		{"role=web", true, false, "role=web"},
		{" role = web , zone=a ", true, false, "role=web,zone=a"},
		{"zone!=a", false, true, "zone!=a"},
		{"canary", true, false, "canary"},
		{"role=web,zone=b", false, false, "role=web,zone=b"},
		{"missing!=x", true, true, "missing!=x"},
	} {
		s, err := ParseSelector(c.sel)
		if err != nil {
			t.Fatalf("%q: %v", c.sel, err)
		}
		if s.Matches(web) != c.web || s.Matches(db) != c.db || s.String() != c.canonical {
			t.Errorf("%q: web %v db %v %q", c.sel, s.Matches(web), s.Matches(db), s.String())
		}
	}
	for _, bad := range []string{"Role=web", "role=we b", "role=../x", "=web", strings.Repeat("k", 70) + "=v", "role=wéb"} {
		if _, err := ParseSelector(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q accepted: %v", bad, err)
		}
	}
}

func TestLabels(t *testing.T) {
	l, err := ParseLabels([]string{"role=web,zone=a", "tier=1"})
	if err != nil || len(l) != 3 || l["tier"] != "1" {
		t.Fatalf("%v %v", l, err)
	}
	for _, bad := range [][]string{{"role"}, {"ROLE=x"}, {"role=x y"}} {
		if _, err := ParseLabels(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("%v accepted", bad)
		}
	}
	many := map[string]string{}
	for i := 0; i <= MaxLabels; i++ {
		many[strings.Repeat("k", i+1)] = "v"
	}
	if err := ValidLabels(many); !errors.Is(err, ErrInvalid) {
		t.Error("too many labels accepted")
	}
}

func TestBudget(t *testing.T) {
	for _, c := range []struct {
		in                string
		total, conc, errs int
	}{
		{"0", 10, 1, 0},
		{"5", 200, 5, 5},
		{"10%", 200, 20, 20},
		{"10%", 5, 1, 0},
		{"25%", 7, 2, 1},
		{"100%", 3, 3, 3},
		{"0%", 10, 1, 0},
	} {
		b, err := ParseBudget(c.in)
		if err != nil {
			t.Fatalf("%q: %v", c.in, err)
		}
		if b.Concurrency(c.total) != c.conc || b.Errors(c.total) != c.errs || b.String() != c.in {
			t.Errorf("%q of %d: concurrency %d errors %d", c.in, c.total, b.Concurrency(c.total), b.Errors(c.total))
		}
	}
	for _, bad := range []string{"", "-1", "101%", "ten", "5%%", "1e3"} {
		if _, err := ParseBudget(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestConstraintChoose(t *testing.T) {
	versions := []string{"0.9.0", "1.0.0", "1.2.0", "1.2.7", "1.10.0", "2.0.0", "2.1.0-rc.1", "nightly"}
	for _, c := range []struct{ constraint, want string }{
		{"latest", "2.0.0"},
		{"1.2.0", "1.2.0"},
		{"nightly", "nightly"},
		{"^1.2", "1.10.0"},
		{"^1.2.3", "1.10.0"},
		{"~1.2", "1.2.7"},
		{"~1.2.3", "1.2.7"},
		{"^0.9", "0.9.0"},
		{">= 1.0, < 1.2", "1.0.0"},
		{"< 1", "0.9.0"},
		{"3.0.0", ""},
		{"^3", ""},
		{"1.2", ""}, // exact: 1.2 is not published
	} {
		k, err := ParseConstraint(c.constraint)
		if err != nil {
			t.Fatalf("%q: %v", c.constraint, err)
		}
		got, ok := k.Choose(versions)
		if got != c.want || ok != (c.want != "") {
			t.Errorf("%q chose %q, want %q", c.constraint, got, c.want)
		}
	}
	for _, bad := range []string{"", ">= x", "^a.b"} {
		if _, err := ParseConstraint(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q accepted: %v", bad, err)
		}
	}
}

func TestCaretAndTildeOfZeroVersions(t *testing.T) {
	for _, c := range []struct {
		constraint string
		in, out    []string
	}{
		{"^0.2.3", []string{"0.2.3", "0.2.9"}, []string{"0.3.0", "0.2.2"}},
		{"^0.0.3", []string{"0.0.3"}, []string{"0.0.4"}},
		{"^0", []string{"0.5.0"}, []string{"1.0.0"}},
		{"~1", []string{"1.9.0"}, []string{"2.0.0"}},
	} {
		k, _ := ParseConstraint(c.constraint)
		for _, v := range c.in {
			if !k.Allows(v) {
				t.Errorf("%s should allow %s", c.constraint, v)
			}
		}
		for _, v := range c.out {
			if k.Allows(v) {
				t.Errorf("%s should not allow %s", c.constraint, v)
			}
		}
	}
}

func TestDrift(t *testing.T) {
	k, _ := ParseConstraint("^1.2")
	if d := Drift(k, "1.3.0"); d != "" {
		t.Errorf("compliant: %q", d)
	}
	if d := Drift(k, ""); d != "missing (want ^1.2)" {
		t.Errorf("missing: %q", d)
	}
	if d := Drift(k, "1.0.0"); d != "has 1.0.0, want ^1.2" {
		t.Errorf("old: %q", d)
	}
}
