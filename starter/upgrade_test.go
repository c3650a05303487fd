package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Missing flags and a malformed index are refused before any connection.
func TestUpgradeCommandRejectsBadInput(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "index.yaml")
	os.WriteFile(bad, []byte("series: [\n"), 0o644)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"upgrade", "run", "--cloud", "fog-north"}, "--component, --repository, --version and --related are required"},
		{[]string{"upgrade", "run", "--cloud", "fog-north", "--component", "cinder", "--repository", "r/cinder", "--version", "24.2.0",
			"--related", "cinder-volume", "--index", bad}, "malformed release index"},
		{[]string{"upgrade", "status", "--cloud", "fog-north"}, "--cloud and --component are required"},
	} {
		if _, err := run(t, c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
}

// --path prints the hops of the shipped index without starting anything.
func TestUpgradePathPrintsHops(t *testing.T) {
	out, err := run(t, "upgrade", "run", "--cloud", "fog-north", "--component", "cinder", "--repository", "r/cinder", "--version", "24.2.0",
		"--related", "cinder-volume", "--path")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"cinder 24.2.0 → 28.0.0 in 2 hop(s)", "1. 24.2.0 (caracal) → 26.1.0 (epoxy, SLURP)", "2. 26.1.0 (epoxy) → 28.0.0 (gazpacho, SLURP)"} {
		if !strings.Contains(out, want) {
			t.Errorf("--path lacks %q:\n%s", want, out)
		}
	}
	out, err = run(t, "upgrade", "run", "--cloud", "fog-north", "--component", "cinder", "--repository", "r/cinder", "--version", "25.0.0",
		"--related", "cinder-volume", "--target", "26.0.0", "--path")
	if err != nil || !strings.Contains(out, "1. 25.0.0 (dalmatian) → 26.0.0 (epoxy)\n") {
		t.Errorf("--target 26.0.0 --path: %v\n%s", err, out)
	}
	if _, err := run(t, "upgrade", "run", "--cloud", "fog-north", "--component", "cinder", "--repository", "r/cinder", "--version", "24.2.0",
		"--related", "cinder-volume", "--policy", "driver", "--path"); err == nil || !strings.Contains(err.Error(), "driver policy") {
		t.Errorf("--path with the driver policy: %v", err)
	}
}

// Promote and rollback need who decides, before any connection.
func TestUpgradeDecisionsNeedWho(t *testing.T) {
	for _, verb := range []string{"promote", "rollback"} {
		if _, err := run(t, "upgrade", verb, "--cloud", "fog-north", "--component", "cinder"); err == nil || !strings.Contains(err.Error(), "--who is required") {
			t.Errorf("%s without --who: %v", verb, err)
		}
		if _, err := run(t, "upgrade", verb, "--who", "bob"); err == nil || !strings.Contains(err.Error(), "--cloud and --component") {
			t.Errorf("%s without --cloud: %v", verb, err)
		}
	}
}
