package install

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgedrift/drift/internal/gateway"
	"github.com/edgedrift/drift/internal/repo"
	"github.com/edgedrift/drift/tests/harness"
)

// loadEnv is a network with a repository holding one package of size
// bytes, and acme's gateway pair in the tenant namespace.
type loadEnv struct {
	n          *network
	nd         *node
	sum        string
	viaGateway string // blob URL through the gateway (from the VM)
	direct     string // blob URL on the management network (from the node)
	vm, onMgmt *http.Client
}

func newLoadEnv(t *testing.T, size int) *loadEnv {
	t.Helper()
	n := newNetwork(t)
	nd := startRepo(t, n, nil, int64(size)+1)
	mgmt, err := gateway.NewManagement(gateway.ManagementOptions{Repo: nd.RepoURL, Secret: nd.Secret, RPS: 100000, Burst: 100000})
	if err != nil {
		t.Fatal(err)
	}
	gwNode, err := gateway.NewNode(t.TempDir(), mgmt, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gwNode.Close() })
	if _, err := gwNode.Ensure(gateway.PairConfig{Tenant: "acme", Netns: n.Tenant}); err != nil {
		t.Fatal(err)
	}
	blob := make([]byte, size)
	rand.Read(blob)
	s := sha256.Sum256(blob)
	sum := hex.EncodeToString(s[:])
	ref := repo.Ref{Name: "load", Version: "1", Platform: "linux/amd64"}
	if _, err := nd.Admin.Push(context.Background(), ref, sum, bytes.NewReader(blob), repo.PushOptions{Tenants: []string{"acme"}}); err != nil {
		t.Fatal(err)
	}
	path := "/v1/packages/load/1/linux/amd64/blob"
	return &loadEnv{n: n, nd: nd, sum: sum, viaGateway: gw + path, direct: nd.RepoURL + path, vm: httpIn(n.VM),
		onMgmt: &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 512}}}
}

// round is count concurrent downloads.
type round struct {
	Wall    time.Duration
	Latency []time.Duration
	Bytes   int64
	Errors  []string
}

func (r round) perSecond() float64 { return float64(len(r.Latency)) / r.Wall.Seconds() }
func (r round) mibPerSecond() float64 {
	return float64(r.Bytes) / (1 << 20) / r.Wall.Seconds()
}

// download runs count concurrent downloads, checking each body's sha256.
func (e *loadEnv) download(hc *http.Client, url string, admin bool, count int) round {
	var (
		mu    sync.Mutex
		wg    sync.WaitGroup
		r     round
		start = time.Now()
	)
	for i := 0; i < count; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			n, err := e.fetch(hc, url, admin)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				r.Errors = append(r.Errors, err.Error())
				return
			}
			r.Bytes += n
			r.Latency = append(r.Latency, time.Since(t0))
		}()
	}
	wg.Wait()
	r.Wall = time.Since(start)
	return r
}

func (e *loadEnv) fetch(hc *http.Client, url string, admin bool) (int64, error) {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if admin {
		req.Header.Set("Authorization", "Bearer "+e.nd.Token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("status %d", resp.StatusCode)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		return n, err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != e.sum || resp.Header.Get(repo.HeaderSHA256) != e.sum {
		return n, fmt.Errorf("sha256 %s, want %s", got, e.sum)
	}
	return n, nil
}

// 200 concurrent downloads from the VM through the gateway pair all
// arrive intact; the same load straight to the repository runs beside it
// for comparison.
func TestLoadThroughGateways(t *testing.T) {
	const count, size = 200, 256 << 10
	e := newLoadEnv(t, size)
	via := e.download(e.vm, e.viaGateway, false, count)
	if len(via.Errors) > 0 || len(via.Latency) != count {
		t.Fatalf("%d of %d downloads through the gateways failed: %v", len(via.Errors), count, via.Errors[:min(5, len(via.Errors))])
	}
	direct := e.download(e.onMgmt, e.direct, true, count)
	if len(direct.Errors) > 0 {
		t.Fatalf("direct downloads failed: %v", direct.Errors[:min(5, len(direct.Errors))])
	}
	t.Logf("%d × %d KiB: gateways %.0f req/s (%.1f MiB/s, p99 %s), direct %.0f req/s (%.1f MiB/s, p99 %s)",
		count, size>>10, via.perSecond(), via.mibPerSecond(), harness.Percentile(via.Latency, 0.99), direct.perSecond(), direct.mibPerSecond(), harness.Percentile(direct.Latency, 0.99))
}

// TestInstallBench measures downloads through the gateway pair against
// direct ones, side by side in one run (make bench-install).
func TestInstallBench(t *testing.T) {
	if os.Getenv("DRIFT_BENCH") != "1" {
		t.Skip("set DRIFT_BENCH=1 (make bench-install)")
	}
	started := time.Now()
	const count, rounds = 200, 5
	var b strings.Builder
	fmt.Fprintf(&b, "# Install: downloads through the gateway pair vs direct\n\n")
	fmt.Fprintf(&b, "`%s`, %s, %d cores (%s), load average before: %s.\n\n", os.Getenv("DRIFT_BENCH_COMMAND"), started.UTC().Format(time.RFC3339), goruntime.NumCPU(), goruntime.Version(), harness.LoadAvg())
	fmt.Fprintf(&b, "Each round: %d concurrent downloads of one package, sha256 checked on every body. Gateway path: VM namespace → tenant gateway (169.254.169.254:8080 in the tenant namespace) → unix socket → management gateway (signs the tenant) → repository in the management namespace. Direct: network node → repository on the management veth with the admin token. Rounds alternate gateway/direct; medians of %d rounds.\n\n", count, rounds)
	fmt.Fprintf(&b, "| package | path | req/s | MiB/s | p50 | p99 | errors | gateway/direct |\n|---|---|---:|---:|---:|---:|---:|---:|\n")
	for _, size := range []int{16 << 10, 1 << 20} {
		e := newLoadEnv(t, size)
		var via, direct []round
		for i := 0; i < rounds; i++ {
			via = append(via, e.download(e.vm, e.viaGateway, false, count))
			direct = append(direct, e.download(e.onMgmt, e.direct, true, count))
		}
		mv, md := median(via), median(direct)
		for _, row := range []struct {
			path string
			r    round
			all  []round
		}{{"gateway pair", mv, via}, {"direct", md, direct}} {
			ratio := ""
			if row.path == "gateway pair" {
				ratio = fmt.Sprintf("%.2f", mv.perSecond()/md.perSecond())
			}
			fmt.Fprintf(&b, "| %d KiB | %s | %.0f | %.1f | %s | %s | %d | %s |\n", size>>10, row.path, row.r.perSecond(), row.r.mibPerSecond(),
				harness.Percentile(row.r.Latency, 0.5).Round(time.Microsecond*100), harness.Percentile(row.r.Latency, 0.99).Round(time.Microsecond*100), errorsIn(row.all), ratio)
		}
		if n := errorsIn(via) + errorsIn(direct); n > 0 {
			t.Errorf("%d downloads failed", n)
		}
	}
	fmt.Fprintf(&b, "\nLoad average after: %s. The machine is shared (2 cores, other engineers' tests running): absolute figures move with it, the ratio measured side by side less so.\n", harness.LoadAvg())
	t.Log("\n" + b.String())
	if path := os.Getenv("DRIFT_BENCH_REPORT"); path != "" {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func median(rs []round) round {
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b round) int { return int(a.Wall - b.Wall) })
	return s[len(s)/2]
}

func errorsIn(rs []round) int {
	n := 0
	for _, r := range rs {
		n += len(r.Errors)
	}
	return n
}
