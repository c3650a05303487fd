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
