package port

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Require is one requirement of a go.mod.
type Require struct {
	Path     string `json:"path"`
	Version  string `json:"version"`
	Indirect bool   `json:"indirect,omitempty"`
}

// GoMod is what a port reads of a go.mod: its requirements and where
// replaces point (module path → local dir or path@version).
type GoMod struct {
	Requires []Require         `json:"requires"`
	Replaces map[string]string `json:"replaces,omitempty"`
}

// ParseGoModJSON reads the output of `go mod edit -json`.
func ParseGoModJSON(b []byte) (GoMod, error) {
	var raw struct {
		Require []struct {
			Path, Version string
			Indirect      bool
		}
		Replace []struct {
			Old struct{ Path string }
			New struct{ Path, Version string }
		}
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return GoMod{}, fmt.Errorf("go mod edit -json: %w", err)
	}
	var g GoMod
	for _, r := range raw.Require {
		g.Requires = append(g.Requires, Require{Path: r.Path, Version: r.Version, Indirect: r.Indirect})
	}
	for _, r := range raw.Replace {
		if g.Replaces == nil {
			g.Replaces = map[string]string{}
		}
		to := r.New.Path
		if r.New.Version != "" {
			to += "@" + r.New.Version
		}
		g.Replaces[r.Old.Path] = to
	}
	return g, nil
}

// ModuleChange is a module whose requirement a port changed, as go.mod
// ends after minimal version selection and tidying.
type ModuleChange struct {
	Path     string `json:"path"`
	Before   string `json:"before,omitempty"` // "": added
	After    string `json:"after,omitempty"`  // "": removed
	Indirect bool   `json:"indirect,omitempty"`
	Replace  string `json:"replace,omitempty"` // where a new replace points
}

// ModuleChanges lists every module whose required version or replace
// differs between two go.mod files, by path.
func ModuleChanges(before, after GoMod) []ModuleChange {
	version := func(g GoMod) map[string]Require {
		m := map[string]Require{}
		for _, r := range g.Requires {
			m[r.Path] = r
		}
		return m
	}
	b, a := version(before), version(after)
	var paths []string
	for p := range b {
		paths = append(paths, p)
	}
	for p := range a {
		if _, ok := b[p]; !ok {
			paths = append(paths, p)
		}
	}
	for p := range after.Replaces {
		if !slices.Contains(paths, p) {
			paths = append(paths, p)
		}
	}
	slices.Sort(paths)
	var out []ModuleChange
	for _, p := range paths {
		c := ModuleChange{Path: p, Before: b[p].Version, After: a[p].Version, Indirect: a[p].Indirect}
		if after.Replaces[p] != before.Replaces[p] {
			c.Replace = after.Replaces[p]
		}
		if c.Before != c.After || c.Replace != "" {
			out = append(out, c)
		}
	}
	return out
}

// Run is how one run of a program ended.
type Run struct {
	Exit     int    `json:"exit"`               // exit code; -1 when killed
	TimedOut bool   `json:"timedOut,omitempty"` // still running at the time limit (then killed)
	Output   string `json:"output,omitempty"`   // stdout and stderr
}

func (r Run) String() string {
	if r.TimedOut {
		return "still running at the time limit"
	}
	return fmt.Sprintf("exit %d", r.Exit)
}

// CompareRuns judges a program's run under emulation against two runs of
// the host build: the ends must match (exit code, or both still running
// at the limit) and, when the host's two runs printed the same
// (deterministic output) and ended by themselves, so must the output.
func CompareRuns(host1, host2, target Run) (same, deterministic bool, why string) {
	deterministic = host1.Output == host2.Output && host1.Exit == host2.Exit && !host1.TimedOut && !host2.TimedOut
	switch {
	case host1.TimedOut != target.TimedOut || !host1.TimedOut && host1.Exit != target.Exit:
		return false, deterministic, fmt.Sprintf("host: %s; %s", host1, describe(target))
	case deterministic && host1.Output != target.Output:
		return false, true, "output differs: " + firstDifference(host1.Output, target.Output)
	case deterministic:
		return true, true, fmt.Sprintf("%s and the same output as the host", host1)
	}
	return true, false, fmt.Sprintf("%s as on the host (output varies between host runs, not compared)", host1)
}

func describe(r Run) string {
	s := "emulated: " + r.String()
	if out := strings.TrimSpace(r.Output); out != "" {
		s += ": " + lastLine(out)
	}
	return s
}

// firstDifference shows the first line where want and got differ.
func firstDifference(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < max(len(w), len(g)); i++ {
		var a, b string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			b = g[i]
		}
		if a != b {
			return fmt.Sprintf("line %d: host %q, emulated %q", i+1, a, b)
		}
	}
	return "same lines"
}

func lastLine(s string) string {
	lines := strings.Split(s, "\n")
	return lines[len(lines)-1]
}
