package install

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	drift "github.com/edgedrift/drift/internal/client"
	"github.com/edgedrift/drift/internal/netns"
	"github.com/edgedrift/drift/internal/repo"
	"github.com/edgedrift/drift/internal/workerhost"
	"github.com/edgedrift/drift/tests/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// network is one test's namespaces, all named drift-inst-<id>-…:
//
//	vm      10.201.0.2/32, a route to 169.254.169.254 and nothing else
//	tenant  169.254.169.254/32 (the tenant gateway listens there)
//	mgmt    10.202.N.2/24, the repository; the host (network node) is 10.202.N.1
//
// The tenant namespace also holds the far end of an unaddressed, down veth
// whose near end stays on the host: it disappears only when the namespace
// is really gone (no socket left holding it), which destroy checks.
type network struct {
	id                   string
	VM, Tenant, Mgmt     string // namespace names
	VMAddr               string
	RepoHost, NodeOnMgmt string
	hostLink, canary     string
}

// newNetwork creates the namespaces and veths; the test's end deletes them
// and fails if any of them is left.
func newNetwork(t *testing.T) *network {
	t.Helper()
	if os.Geteuid() != 0 {
		harness.RequireHeavy(t, "network namespaces need root (CI runs as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		harness.RequireHeavy(t, "iproute2 is missing: apt-get install -y iproute2")
	}
	b := make([]byte, 2)
	rand.Read(b)
	id := hex.EncodeToString(b)
	n := &network{
		id: id, VM: "drift-inst-" + id + "-vm", Tenant: "drift-inst-" + id + "-tn", Mgmt: "drift-inst-" + id + "-mg",
		VMAddr: "10.201.0.2", hostLink: "drift-m" + id + "a", canary: "drift-t" + id + "a",
	}
	subnet := fmt.Sprintf("10.202.%d", 1+int(b[0])%250)
	n.RepoHost, n.NodeOnMgmt = subnet+".2", subnet+".1"
	t.Cleanup(func() { n.destroy(t) })
	vmLink, tnLink, mgLink := "drift-v"+id+"a", "drift-v"+id+"b", "drift-m"+id+"b"
	for _, args := range [][]string{
		{"netns", "add", n.VM}, {"netns", "add", n.Tenant}, {"netns", "add", n.Mgmt},
		// VM ↔ tenant network: the VM reaches 169.254.169.254 only.
		{"link", "add", vmLink, "netns", n.VM, "type", "veth", "peer", "name", tnLink, "netns", n.Tenant},
		{"-n", n.VM, "link", "set", "lo", "up"}, {"-n", n.VM, "link", "set", vmLink, "up"},
		{"-n", n.VM, "addr", "add", n.VMAddr + "/32", "dev", vmLink},
		{"-n", n.VM, "route", "add", "169.254.169.254/32", "dev", vmLink},
		{"-n", n.Tenant, "link", "set", "lo", "up"}, {"-n", n.Tenant, "link", "set", tnLink, "up"},
		{"-n", n.Tenant, "addr", "add", "169.254.169.254/32", "dev", tnLink},
		{"-n", n.Tenant, "route", "add", n.VMAddr + "/32", "dev", tnLink},
		{"link", "add", n.canary, "type", "veth", "peer", "name", "drift-t" + id + "b", "netns", n.Tenant},
		// Network node (the host) ↔ management network.
		{"link", "add", n.hostLink, "type", "veth", "peer", "name", mgLink, "netns", n.Mgmt},
		{"addr", "add", n.NodeOnMgmt + "/24", "dev", n.hostLink}, {"link", "set", n.hostLink, "up"},
		{"-n", n.Mgmt, "link", "set", "lo", "up"}, {"-n", n.Mgmt, "link", "set", mgLink, "up"},
		{"-n", n.Mgmt, "addr", "add", n.RepoHost + "/24", "dev", mgLink},
	} {
		ip(t, args...)
	}
	return n
}

func ip(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// destroy deletes the namespaces (their veths go with them) and proves
// nothing of this test is left: no process inside them, no namespace, no
// veth (the host ends vanish only once their namespaces are freed).
func (n *network) destroy(t *testing.T) {
	for _, ns := range []string{n.VM, n.Tenant, n.Mgmt} {
		for _, pid := range processesIn(ns) {
			t.Errorf("process %d still runs in %s", pid, ns)
			syscall.Kill(pid, syscall.SIGKILL)
		}
		exec.Command("ip", "netns", "del", ns).Run()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := n.leftovers()
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("left behind: %v", left)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (n *network) leftovers() []string {
	var left []string
	out, _ := exec.Command("ip", "netns", "list").CombinedOutput()
	links, _ := exec.Command("ip", "-o", "link", "show").CombinedOutput()
	for _, line := range strings.Split(string(out)+string(links), "\n") {
		if strings.Contains(line, "drift-inst-"+n.id) || strings.Contains(line, "drift-v"+n.id) || strings.Contains(line, "drift-m"+n.id) || strings.Contains(line, "drift-t"+n.id) {
			left = append(left, strings.TrimSpace(line))
		}
	}
	return left
}

// processesIn lists the processes whose network namespace is ns.
func processesIn(ns string) []int {
	target, err := os.Stat(filepath.Join(netns.Dir, ns))
	if err != nil {
		return nil
	}
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if fi, err := os.Stat(filepath.Join("/proc", e.Name(), "ns", "net")); err == nil && os.SameFile(fi, target) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// httpIn is an HTTP client whose connections start inside namespace ns.
func httpIn(ns string) *http.Client {
	return &http.Client{Timeout: time.Minute, Transport: &http.Transport{DialContext: netns.Dialer(ns), MaxIdleConnsPerHost: 512, MaxConnsPerHost: 0}}
}

// node is the repository in the management namespace plus a worker that is
// the network node (central queue and drift.node.<id>).
type node struct {
	Repo       *repo.Server
	RepoURL    string
	Admin      *repo.Client
	Secret     []byte
	Node       string
	Token      string
	TokenFile  string
	SecretFile string
	Dir        string
}

// startRepo serves a repository inside the management namespace; reports
// are signalled through c.
func startRepo(t *testing.T, n *network, c client.Client, maxBlob int64) *node {
	t.Helper()
	dir := t.TempDir()
	nd := &node{Node: "node-" + n.id, Token: "admin-" + n.id, Secret: []byte("secret-" + n.id), Dir: dir,
		TokenFile: filepath.Join(dir, "token"), SecretFile: filepath.Join(dir, "secret")}
	os.WriteFile(nd.TokenFile, []byte("admin-"+n.id), 0o600)
	os.WriteFile(nd.SecretFile, nd.Secret, 0o600)
	srv, err := repo.New(repo.Options{Dir: filepath.Join(dir, "store"), AdminToken: "admin-" + n.id, Secret: nd.Secret,
		MaxBlob: maxBlob, Report: drift.New(c).Signaler(), Logger: slog.Default()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := netns.Listen(n.Mgmt, net.JoinHostPort(n.RepoHost, "8700"))
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close(); srv.Close() })
	nd.Repo, nd.RepoURL = srv, "http://"+ln.Addr().String()
	nd.Admin = &repo.Client{URL: nd.RepoURL, Token: "admin-" + n.id}
	return nd
}

// installConfig makes a worker the test's network node.
func (nd *node) installConfig(t *testing.T) *workerhost.InstallConfig {
	return &workerhost.InstallConfig{Node: nd.Node, Repo: nd.RepoURL, Token: nd.Token,
		Secret: nd.Secret, SocketDir: t.TempDir(), RPS: 1000}
}

// startWorker runs an in-process worker: central queue and network node.
func startWorker(t *testing.T, c client.Client, nd *node) *workerhost.Workers {
	t.Helper()
	ws, err := workerhost.StartWorkers(c, workerhost.WorkerOptions{Central: true, Registry: "unused.invalid:5000", Install: nd.installConfig(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ws.Stop)
	return ws
}

// entry is one file of a test package.
type entry struct{ name, body string }

// tarGz builds a .tar.gz package and returns it with its sha256.
func tarGz(t *testing.T, entries ...entry) ([]byte, string) {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o755, Size: int64(len(e.body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(e.body))
	}
	tw.Close()
	gz.Close()
	sum := sha256.Sum256(buf.Bytes())
	return buf.Bytes(), hex.EncodeToString(sum[:])
}

// push uploads a package as the admin.
func (nd *node) push(t *testing.T, ref repo.Ref, o repo.PushOptions, entries ...entry) repo.Package {
	t.Helper()
	blob, sum := tarGz(t, entries...)
	p, err := nd.Admin.Push(context.Background(), ref, sum, bytes.NewReader(blob), o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// runAgent runs `drift agent --once` inside the VM namespace.
func runAgent(t *testing.T, n *network, prefix string) string {
	t.Helper()
	driftBin, _ := harness.Binaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", n.VM, driftBin, "agent", "--gateway", "http://169.254.169.254:8080", "--prefix", prefix, "--once").CombinedOutput()
	if err != nil {
		t.Fatalf("agent: %v\n%s", err, out)
	}
	return string(out)
}

// waitPhase waits until the install reaches phase.
func waitPhase(t *testing.T, c client.Client, id, phase string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for ctx.Err() == nil {
		if st, err := drift.New(c).InstallStatus(ctx, id); err == nil && st.Phase == phase {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s never reached %s", id, phase)
}

// filesUnder lists the regular files under dir, relative to it.
func filesUnder(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	return out
}
