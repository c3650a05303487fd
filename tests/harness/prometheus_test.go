package harness

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// build.sh builds the version the tools module requires; the harness looks
// for it under that version's cache dir.
func TestPrometheusVersionMatchesTheToolsModule(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(RepoRoot(), "tests", "prometheus", "tools", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "require github.com/prometheus/prometheus " + PrometheusVersion + "\n"; !strings.Contains(string(b), want) {
		t.Errorf("tests/prometheus/tools/go.mod does not say %q", strings.TrimSpace(want))
	}
}
