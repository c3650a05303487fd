package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// run executes the CLI in-process and returns stdout and the error main would print.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestTopologyCommands(t *testing.T) {
	out, err := run(t, "topology", "validate")
	if err != nil || !strings.Contains(out, "7 clouds, 6 regions") {
		t.Fatalf("validate example: %v\n%s", err, out)
	}
	out, err = run(t, "topology", "neighbours", "--region", "quartier-latin", "--policy", "nearest:2", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Cloud      string
		Neighbours []struct{ Cloud struct{ ID string } }
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("--json output is not JSON: %v\n%s", err, out)
	}
	if res.Cloud != "edge-latin" || len(res.Neighbours) != 2 {
		t.Fatalf("neighbours = %+v", res)
	}
	out, err = run(t, "topology", "show", "--json")
	if err != nil || !json.Valid([]byte(out)) {
		t.Fatalf("show --json: %v\n%s", err, out)
	}
}

func TestBadInputGivesOneClearError(t *testing.T) {
	dir := t.TempDir()
	malformed := filepath.Join(dir, "bad.yaml")
	os.WriteFile(malformed, []byte("clouds: [\n"), 0o644)
	invalid := filepath.Join(dir, "invalid.yaml")
	os.WriteFile(invalid, []byte("clouds:\n- {id: a, tier: edge, parent: nope}\nregions: {r: b}\n"), 0o644)

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"topology", "show", "-f", filepath.Join(dir, "missing.yaml")}, "no such file"},
		{[]string{"topology", "validate", "-f", malformed}, "line 1"},
		{[]string{"topology", "validate", "-f", invalid}, `unknown parent "nope"`},
		{[]string{"topology", "neighbours", "edge-nowhere"}, `unknown cloud "edge-nowhere"`},
		{[]string{"topology", "neighbours", "--region", "atlantis"}, `unknown region "atlantis"`},
		{[]string{"topology", "neighbours", "edge-latin", "--policy", "closest"}, "closest"},
		{[]string{"dev", "--fog-runtime", "vm"}, "--fog-runtime"},
		{[]string{"--log-level", "loud", "dev"}, "--log-level"},
	} {
		_, err := run(t, c.args...)
		if err == nil {
			t.Errorf("%v: no error", c.args)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %q does not say %q", c.args, err, c.want)
		}
		if strings.Contains(err.Error(), "goroutine ") {
			t.Errorf("%v: stack trace in error", c.args)
		}
	}
	// The invalid topology reports every problem at once.
	_, err := run(t, "topology", "validate", "-f", invalid)
	if err == nil || !strings.Contains(err.Error(), `region "r"`) {
		t.Errorf("not every problem reported: %v", err)
	}
}

func TestVersionJSON(t *testing.T) {
	out, err := run(t, "version", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var v versionInfo
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Go == "" || v.Platform == "" {
		t.Fatalf("version --json = %q (%v)", out, err)
	}
}

// Every command appears once in help: no two siblings share a name or an
// alias, at any level.
func TestCommandNamesAreUnique(t *testing.T) {
	var walk func(cmd *cobra.Command)
	walk = func(cmd *cobra.Command) {
		seen := map[string]string{}
		for _, sub := range cmd.Commands() {
			for _, name := range append([]string{sub.Name()}, sub.Aliases...) {
				if other, dup := seen[name]; dup {
					t.Errorf("%q: %q is both %s and %s", cmd.CommandPath(), name, other, sub.Use)
				}
				seen[name] = sub.Use
			}
			walk(sub)
		}
	}
	walk(newRootCommand())
}

func TestHelpListsEveryCommandOnce(t *testing.T) {
	out, err := run(t, "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"dev", "pipeline", "session", "api", "upgrade", "port", "install", "inventory", "repo", "agent", "topology", "version"} {
		if n := strings.Count(out, "\n  "+name+" "); n != 1 {
			t.Errorf("drift --help lists %q %d times:\n%s", name, n, out)
		}
	}
}

func TestPortRefusesBadArchBeforeConnecting(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"port", "run", ".", "--arch", ""}, "--arch is empty"},
		{[]string{"port", "run", ".", "--arch", "z80"}, `"z80" is not a GOARCH`},
		{[]string{"port", "report", ".", "--arch", "z80"}, `"z80" is not a GOARCH`},
	} {
		// An unreachable address: refusing must not need a connection.
		out, err := run(t, append(c.args, "--address", "127.0.0.1:1")...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("drift %v: %v, want %q", c.args, err, c.want)
		}
		if strings.Contains(out, "for linux/") {
			t.Errorf("drift %v printed a report header for a port that never started:\n%s", c.args, out)
		}
	}
}
