// Package fleet is the pure logic of installs across many VMs: label
// selectors, budgets written "N" or "P%" (how many VMs at once, how many
// failures a rollout tolerates), version constraints ("1.2.3", "^1.2",
// ">= 1.2, < 2", "latest") and the drift between the version a VM should
// have and the one it has. No Temporal here.
package fleet

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	version "github.com/hashicorp/go-version"
)

// ErrInvalid marks a selector, label, budget or constraint that does not parse.
var ErrInvalid = errors.New("invalid")

// MaxLabels bounds the labels of one VM.
const MaxLabels = 32

var (
	labelKey   = regexp.MustCompile(`^[a-z0-9]([a-z0-9._/-]{0,62})$`)
	labelValue = regexp.MustCompile(`^[A-Za-z0-9._-]{0,63}$`)
)

// ValidLabels checks a VM's labels: plain keys and values, a bounded number.
// Keys are checked in order, so workflow code gets the same answer on
// replay.
func ValidLabels(labels map[string]string) error {
	if len(labels) > MaxLabels {
		return fmt.Errorf("%w labels: %d, at most %d", ErrInvalid, len(labels), MaxLabels)
	}
	for _, k := range keys(labels) {
		if err := validLabel(k, labels[k]); err != nil {
			return err
		}
	}
	return nil
}

// LabelString writes labels as "k=v,k2=v2" in key order.
func LabelString(labels map[string]string) string {
	parts := make([]string, 0, len(labels))
	for _, k := range keys(labels) {
		parts = append(parts, k+"="+labels[k])
	}
	return strings.Join(parts, ",")
}

// keys are a map's keys in order: the map's own order does not leak.
//
//workflowcheck:ignore
func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func validLabel(k, v string) error {
	if !labelKey.MatchString(k) {
		return fmt.Errorf("%w label key %q: lower-case letters, digits and . _ / -", ErrInvalid, k)
	}
	if !labelValue.MatchString(v) {
		return fmt.Errorf("%w label value %q of %s: letters, digits and . _ -", ErrInvalid, v, k)
	}
	return nil
}

// ParseLabels reads "k=v" pairs (flags, one pair each or comma-separated).
func ParseLabels(pairs []string) (map[string]string, error) {
	out := map[string]string{}
	for _, p := range pairs {
		for _, kv := range strings.Split(p, ",") {
			k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
			if !ok {
				return nil, fmt.Errorf("%w label %q: want key=value", ErrInvalid, kv)
			}
			out[k] = v
		}
	}
	return out, ValidLabels(out)
}

// Term is one condition of a selector.
type Term struct {
	Key   string `json:"key"`
	Op    string `json:"op"` // "=", "!=" or "exists"
	Value string `json:"value,omitempty"`
}

// Selector picks VMs by their labels: every term must hold. The empty
// selector (written "" or "*") picks every VM.
type Selector []Term

// ParseSelector reads "role=web,zone!=b,canary": equality, inequality and
// presence, joined by commas (and).
func ParseSelector(s string) (Selector, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "*" {
		return nil, nil
	}
	var sel Selector
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		var t Term
		if k, v, ok := strings.Cut(part, "!="); ok {
			t = Term{Key: k, Op: "!=", Value: v}
		} else if k, v, ok := strings.Cut(part, "="); ok {
			t = Term{Key: k, Op: "=", Value: v}
		} else {
			t = Term{Key: part, Op: "exists"}
		}
		t.Key, t.Value = strings.TrimSpace(t.Key), strings.TrimSpace(t.Value)
		if err := validLabel(t.Key, t.Value); err != nil {
			return nil, fmt.Errorf("selector %q: %w", s, err)
		}
		sel = append(sel, t)
	}
	return sel, nil
}

// Matches says whether labels satisfy every term.
func (s Selector) Matches(labels map[string]string) bool {
	for _, t := range s {
		v, ok := labels[t.Key]
		switch t.Op {
		case "=":
			if !ok || v != t.Value {
				return false
			}
		case "!=":
			if ok && v == t.Value {
				return false
			}
		default:
			if !ok {
				return false
			}
		}
	}
	return true
}

func (s Selector) String() string {
	if len(s) == 0 {
		return "*"
	}
	parts := make([]string, len(s))
	for i, t := range s {
		switch t.Op {
		case "exists":
			parts[i] = t.Key
		default:
			parts[i] = t.Key + t.Op + t.Value
		}
	}
	return strings.Join(parts, ",")
}

// Budget is a number of VMs, absolute ("5") or a share of the fleet ("20%").
type Budget struct {
	N       int  `json:"n"`
	Percent bool `json:"percent,omitempty"`
}

// ParseBudget reads "N" or "P%" (0 ≤ P ≤ 100).
func ParseBudget(s string) (Budget, error) {
	s = strings.TrimSpace(s)
	num, pct := strings.CutSuffix(s, "%")
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 || pct && n > 100 || n > 1_000_000 {
		return Budget{}, fmt.Errorf("%w budget %q: want a number of VMs (5) or a share of them (20%%)", ErrInvalid, s)
	}
	return Budget{N: n, Percent: pct}, nil
}

func (b Budget) String() string {
	if b.Percent {
		return strconv.Itoa(b.N) + "%"
	}
	return strconv.Itoa(b.N)
}

// Concurrency is how many of total VMs may be worked on at once: a share is
// rounded up, and at least one VM always moves.
func (b Budget) Concurrency(total int) int {
	n := b.N
	if b.Percent {
		n = (total*b.N + 99) / 100
	}
	return max(1, n)
}

// Errors is how many of total VMs may fail before a rollout stops: a share
// is rounded down (10% of 5 VMs tolerates none).
func (b Budget) Errors(total int) int {
	if b.Percent {
		return total * b.N / 100
	}
	return b.N
}

// Latest is the constraint that picks the highest version.
const Latest = "latest"

// Constraint says which versions of a package are wanted: one exact
// version, a range, or the latest.
type Constraint struct {
	raw    string
	exact  bool
	ranges version.Constraints
}

var caretTilde = regexp.MustCompile(`^([\^~])\s*v?(\d+)(?:\.(\d+))?(?:\.(\d+))?$`)

// ParseConstraint reads "1.2.3" (exactly that version, as published),
// "latest", "^1.2" (≥ 1.2, < 2), "~1.2.3" (≥ 1.2.3, < 1.3) or comparisons
// joined by commas (">= 1.2, < 2").
func ParseConstraint(s string) (Constraint, error) {
	s = strings.TrimSpace(s)
	c := Constraint{raw: s}
	switch {
	case s == "":
		return c, fmt.Errorf("%w version: empty; give one (1.2.3), a range (^1.2) or latest", ErrInvalid)
	case s == Latest:
		c.ranges, _ = version.NewConstraint(">= 0")
		return c, nil
	case !strings.ContainsAny(s, "^~<>=!, "):
		c.exact = true
		return c, nil
	}
	expr := s
	if m := caretTilde.FindStringSubmatch(s); m != nil {
		expr = expand(m[1], m[2], m[3], m[4])
	}
	r, err := version.NewConstraint(expr)
	if err != nil {
		return c, fmt.Errorf("%w version range %q: %v", ErrInvalid, s, err)
	}
	c.ranges = r
	return c, nil
}

// expand writes ^ and ~ as comparisons, the way npm and Cargo read them.
func expand(op, major, minor, patch string) string {
	num := func(s string) int { n, _ := strconv.Atoi(s); return n }
	lo := major + "." + orZero(minor) + "." + orZero(patch)
	var hi string
	switch {
	case op == "~" && minor != "":
		hi = fmt.Sprintf("%d.%d.0", num(major), num(minor)+1)
	case op == "~", num(major) > 0, minor == "":
		hi = fmt.Sprintf("%d.0.0", num(major)+1)
	case num(minor) > 0, patch == "":
		hi = fmt.Sprintf("0.%d.0", num(minor)+1)
	default:
		hi = fmt.Sprintf("0.0.%d", num(patch)+1)
	}
	return ">= " + lo + ", < " + hi
}

func orZero(s string) string {
	if s == "" {
		return "0"
	}
	return s
}

func (c Constraint) String() string { return c.raw }

// Exact says whether the constraint names one version.
func (c Constraint) Exact() bool { return c.exact }

// Allows says whether v satisfies the constraint.
func (c Constraint) Allows(v string) bool {
	if c.exact {
		return v == c.raw
	}
	pv, err := version.NewVersion(v)
	return err == nil && c.ranges.Check(pv)
}

// Choose returns the highest of versions the constraint allows.
func (c Constraint) Choose(versions []string) (string, bool) {
	var best *version.Version
	chosen := ""
	for _, v := range versions {
		if !c.Allows(v) {
			continue
		}
		if c.exact {
			return v, true
		}
		pv, _ := version.NewVersion(v)
		if best == nil || pv.GreaterThan(best) {
			best, chosen = pv, v
		}
	}
	return chosen, chosen != ""
}

// Drift says how a VM's current version of a package differs from the
// wanted constraint; "" when it complies.
func Drift(want Constraint, have string) string {
	switch {
	case have == "":
		return "missing (want " + want.raw + ")"
	case want.Allows(have):
		return ""
	}
	return "has " + have + ", want " + want.raw
}
