package harness

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/edgedrift/drift/tests/internal/proc"
)

// PrometheusVersion is the server tests/prometheus/build.sh builds; it must
// match tests/prometheus/tools/go.mod (build.sh reads it from there).
const PrometheusVersion = "v0.316.0"

// Prometheus is a real Prometheus server on a loopback port, scraping the
// targets a test gives it every scrapeEvery through file-based discovery.
type Prometheus struct {
	URL     string // http://127.0.0.1:port
	targets string // the file_sd file
	proc    *Proc
}

const scrapeEvery = time.Second

// StartPrometheus builds Prometheus once (tests/prometheus/build.sh, cached
// under ~/.cache/drift) and starts it with job "app", whose targets
// SetTargets writes. The test's end kills it and removes its data.
func StartPrometheus(t testing.TB) *Prometheus {
	t.Helper()
	dir := filepath.Join(proc.CacheRoot(), "prometheus-"+PrometheusVersion, "bin")
	script := filepath.Join(RepoRoot(), "tests", "prometheus", "build.sh")
	missing := func(dir string) []string {
		if proc.IsExecutable(filepath.Join(dir, "prometheus")) {
			return proc.StampsDiffer(dir, map[string]string{".prometheus-version": PrometheusVersion})
		}
		return []string{"prometheus"}
	}
	if err := proc.Build(script, "DRIFT_PROMETHEUS_BIN", dir, missing, t.Logf); err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	p := &Prometheus{targets: filepath.Join(work, "targets.json")}
	if err := os.WriteFile(p.targets, []byte("[]"), 0o644); err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf(`global: {scrape_interval: %s, evaluation_interval: %s}
scrape_configs:
  - job_name: app
    file_sd_configs: [{files: [%q], refresh_interval: 1s}]
`, scrapeEvery, scrapeEvery, p.targets)
	if err := os.WriteFile(filepath.Join(work, "prometheus.yml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	port := FreePort(t)
	p.URL = "http://127.0.0.1:" + strconv.Itoa(port)
	p.proc = Start(t, filepath.Join(dir, "prometheus"),
		"--config.file="+filepath.Join(work, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(work, "data"),
		"--web.listen-address=127.0.0.1:"+strconv.Itoa(port))
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		if resp, err := http.Get(p.URL + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus not ready at %s after a minute:\n%s", p.URL, p.proc.Output())
		}
	}
	t.Cleanup(func() {
		_ = p.proc.Cmd.Process.Kill()
		if exited, _ := p.proc.Wait(10 * time.Second); !exited {
			t.Errorf("Prometheus (pid %d) still runs after it was killed", p.proc.Cmd.Process.Pid)
		}
	})
	return p
}

// SetTargets makes Prometheus scrape each host:port with the given labels
// (file-based discovery: it reads the file within its refresh interval).
func (p *Prometheus) SetTargets(t testing.TB, targets map[string]map[string]string) {
	t.Helper()
	type group struct {
		Targets []string          `json:"targets"`
		Labels  map[string]string `json:"labels"`
	}
	groups := []group{}
	for hostport, labels := range targets {
		groups = append(groups, group{Targets: []string{hostport}, Labels: labels})
	}
	b, _ := json.Marshal(groups)
	tmp := p.targets + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p.targets); err != nil {
		t.Fatal(err)
	}
}
