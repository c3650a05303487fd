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
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgedrift/drift/internal/gateway"
	"github.com/edgedrift/drift/internal/repo"
	"github.com/edgedrift/drift/internal/workerhost"
	"github.com/edgedrift/drift/tests/harness"
	"github.com/edgedrift/drift/workflows"
)

// loadEnv is a network with a repository holding one package of size
// bytes, and two gateway pairs for acme in the tenant namespace: the
// node's as it runs (with its blob cache) on :8080, and one without a
// cache on :8090.
type loadEnv struct {
	n          *network
	nd         *node
	sum        string
	viaGateway string // blob URL through the gateway pair (from the VM)
	viaNoCache string // the same through the pair without a cache
	direct     string // blob URL on the management network (from the node)
	vm, onMgmt *http.Client
}

func newLoadEnv(t *testing.T, size int) *loadEnv {
	t.Helper()
	n := newNetwork(t)
	nd := startRepo(t, n, nil, int64(size)+1)
	for _, pair := range []struct{ cache, listen string }{{t.TempDir(), ""}, {"", "169.254.169.254:8090"}} {
		mgmt, err := gateway.NewManagement(gateway.ManagementOptions{Repo: nd.RepoURL, Secret: nd.Secret, RPS: 100000, Burst: 100000,
			VMRPS: 100000, VMBurst: 100000, CacheDir: pair.cache})
		if err != nil {
			t.Fatal(err)
		}
		gwNode, err := gateway.NewNode(t.TempDir(), mgmt, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { gwNode.Close() })
		if _, err := gwNode.Ensure(gateway.PairConfig{Tenant: "acme", Netns: n.Tenant, Listen: pair.listen}); err != nil {
			t.Fatal(err)
		}
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
	return &loadEnv{n: n, nd: nd, sum: sum, viaGateway: gw + path, viaNoCache: "http://169.254.169.254:8090" + path, direct: nd.RepoURL + path, vm: httpIn(n.VM),
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

// TestInstallBench (make bench-install) measures, side by side in one run,
// downloads through the gateway pair (with and without its blob cache)
// against direct ones, and a fleet install of one package to 200 VMs with
// and without the cache.
func TestInstallBench(t *testing.T) {
	if os.Getenv("DRIFT_BENCH") != "1" {
		t.Skip("set DRIFT_BENCH=1 (make bench-install)")
	}
	started := time.Now()
	var b strings.Builder
	fmt.Fprintf(&b, "# Install: downloads through the gateway pair vs direct; a fleet install to 200 VMs\n\n")
	fmt.Fprintf(&b, "`%s`, %s, %d cores (%s), load average before: %s.\n\n", os.Getenv("DRIFT_BENCH_COMMAND"), started.UTC().Format(time.RFC3339), goruntime.NumCPU(), goruntime.Version(), harness.LoadAvg())
	downloadBench(t, &b)
	fleetBench(t, &b)
	fmt.Fprintf(&b, "\nLoad average after: %s; %s in all. The machine is shared (2 cores, other engineers' builds and tests running): absolute figures move with it, ratios measured side by side less so.\n",
		harness.LoadAvg(), time.Since(started).Round(time.Second))
	t.Log("\n" + b.String())
	if path := os.Getenv("DRIFT_BENCH_REPORT"); path != "" {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// downloadBench: rounds of concurrent downloads through each path,
// alternating, medians.
func downloadBench(t *testing.T, b *strings.Builder) {
	const count, rounds = 200, 5
	fmt.Fprintf(b, "## Downloads\n\nEach round: %d concurrent downloads of one package, sha256 checked on every body. Gateway pair: VM namespace → tenant gateway (169.254.169.254:8080 in the tenant namespace) → unix socket → management gateway (signs the tenant, asks the repository whether the tenant may see the package, serves the blob from its cache by sha256, with sendfile(2) into the socket) → repository in the management namespace. Without cache: the same pair proxying the blob from the repository. Direct: network node → repository on the management veth with the admin token. Rounds alternate the three paths; medians of %d rounds.\n\n", count, rounds)
	fmt.Fprintf(b, "| package | path | req/s | MiB/s | p50 | p99 | errors | ÷ direct |\n|---|---|---:|---:|---:|---:|---:|---:|\n")
	for _, size := range []int{16 << 10, 1 << 20} {
		e := newLoadEnv(t, size)
		paths := []struct {
			name   string
			hc     *http.Client
			url    string
			admin  bool
			rounds []round
		}{{name: "gateway pair (cache)", hc: e.vm, url: e.viaGateway}, {name: "gateway pair, no cache", hc: e.vm, url: e.viaNoCache}, {name: "direct", hc: e.onMgmt, url: e.direct, admin: true}}
		for i := 0; i < rounds; i++ {
			for k := range paths {
				paths[k].rounds = append(paths[k].rounds, e.download(paths[k].hc, paths[k].url, paths[k].admin, count))
			}
		}
		direct := median(paths[2].rounds)
		for _, p := range paths {
			r := median(p.rounds)
			ratio := ""
			if p.name != "direct" {
				ratio = fmt.Sprintf("%.2f", r.perSecond()/direct.perSecond())
			}
			fmt.Fprintf(b, "| %d KiB | %s | %.0f | %.1f | %s | %s | %d | %s |\n", size>>10, p.name, r.perSecond(), r.mibPerSecond(),
				harness.Percentile(r.Latency, 0.5).Round(time.Microsecond*100), harness.Percentile(r.Latency, 0.99).Round(time.Microsecond*100), errorsIn(p.rounds), ratio)
			if n := errorsIn(p.rounds); n > 0 {
				t.Errorf("%s: %d downloads failed", p.name, n)
			}
		}
	}
}

// fleetBench installs one package on 200 VMs, each a namespace on the
// tenant's bridge with its own `drift agent` process, first through the
// node as it runs (with its cache), then through a node without one, and
// counts what crosses the management network.
func fleetBench(t *testing.T, b *strings.Builder) {
	const vms, size = 200, 1 << 20
	n := newNetwork(t)
	n.addVMs(t, vms-1)
	_, c := harness.Temporal(t, "")
	nd := startRepo(t, n, c, 2*size)
	runs := []struct {
		name, version string
		cache         bool
	}{{"with the gateway cache", "1.0.0", true}, {"without cache", "2.0.0", false}, {"with the gateway cache, again", "3.0.0", true}, {"without cache, again", "4.0.0", false}}
	for _, run := range runs {
		payload := make([]byte, size)
		rand.Read(payload)
		nd.push(t, repo.Ref{Name: "bulk", Version: run.version, Platform: "linux/amd64"}, repo.PushOptions{Tenants: []string{"acme"}, Hook: "install.sh"},
			entry{"data.bin", string(payload)}, entry{"install.sh", "#!/bin/sh\ntest -s data.bin\n"})
	}
	node := func(cache bool) (*workerhost.Workers, func()) {
		cfg := nd.installConfig(t)
		if !cache {
			cfg.CacheDir = ""
		}
		ws, err := workerhost.StartWorkers(c, workerhost.WorkerOptions{Central: true, Registry: "unused.invalid:5000", Install: cfg})
		if err != nil {
			t.Fatal(err)
		}
		var once sync.Once
		stop := func() { once.Do(ws.Stop) }
		t.Cleanup(stop)
		return ws, stop
	}
	ws, stop := node(true)
	placeGateway(t, c, n, nd)
	agentsStarted := time.Now()
	for _, v := range n.VMs {
		startAgent(t, nd, v, nil, "--label", "role=web", "--every", "2s")
	}
	registered(t, c, n.VMs...)
	joined := time.Since(agentsStarted)

	fmt.Fprintf(b, "\n## Fleet install to %d VMs\n\n%d VM namespaces on the tenant network's bridge, each running its own `drift agent` process (polling every 2 s); they registered in the inventory through the gateway pair in %s. One rollout per row, in the order of the rows (each mode twice, alternating, so neither gains from going first or last): `--select role=web`, a %d KiB package (a new version each row), at most 50 VMs at once, one InstallSoftware child workflow per VM, on the embedded Temporal server (SQLite). Per VM: its child workflow's start to close. Bytes: both directions on the network node's end of the management veth during the rollout.\n\n",
		vms, vms, joined.Round(time.Second), size>>10)
	fmt.Fprintf(b, "| run | VMs ok | total | per VM p50 | per VM p99 | management network | blobs the gateway fetched |\n|---|---:|---:|---:|---:|---:|---:|\n")
	cached := true
	for _, run := range runs {
		if run.cache != cached {
			stop()
			ws, stop = node(run.cache)
			placeGateway(t, c, n, nd)
			cached = run.cache
		}
		before := mgmtBytes(t, n)
		start := time.Now()
		// 200 VMs on a shared 2-core machine: minutes, not the tests' 5.
		p, err := rolloutWithin(t, c, workflows.Rollout{Rollout: strings.NewReplacer(", ", "-", " ", "-").Replace(run.name), Selector: "role=web", Package: "bulk", Version: run.version, MaxConcurrency: "50"}, 20*time.Minute)
		total := time.Since(start)
		crossed := mgmtBytes(t, n) - before
		if err != nil || p.Counts.Succeeded != vms {
			t.Errorf("%s: %v %+v", run.name, err, p.Counts)
		}
		var per []time.Duration
		for _, vm := range p.VMs {
			d, err := c.DescribeWorkflowExecution(context.Background(), vm.Workflow, "")
			if err != nil {
				t.Fatal(err)
			}
			info := d.GetWorkflowExecutionInfo()
			per = append(per, info.GetCloseTime().AsTime().Sub(info.GetStartTime().AsTime()))
		}
		fetched := "— (no cache)"
		if cache := ws.Install.Node.Cache(); cache != nil {
			st := cache.Stats()
			fetched = fmt.Sprintf("%s (%d fill, %d hits)", mib(float64(st.Fetched)), st.Misses, st.Hits)
		}
		fmt.Fprintf(b, "| %s | %d | %s | %s | %s | %s | %s |\n", run.name, p.Counts.Succeeded, total.Round(100*time.Millisecond),
			harness.Percentile(per, 0.5).Round(10*time.Millisecond), harness.Percentile(per, 0.99).Round(10*time.Millisecond), mib(float64(crossed)), fetched)
	}
}

// mgmtBytes is what crossed the network node's end of the management veth
// so far, both ways.
func mgmtBytes(t *testing.T, n *network) int64 {
	t.Helper()
	var total int64
	for _, dir := range []string{"rx_bytes", "tx_bytes"} {
		b, err := os.ReadFile("/sys/class/net/" + n.hostLink + "/statistics/" + dir)
		if err != nil {
			t.Fatal(err)
		}
		v, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		total += v
	}
	return total
}

func mib(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }

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
