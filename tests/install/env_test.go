package install

import (
	"bytes"
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
	"github.com/edgedrift/drift/internal/demo"
	"github.com/edgedrift/drift/internal/netns"
	"github.com/edgedrift/drift/internal/repo"
	"github.com/edgedrift/drift/internal/workerhost"
	"github.com/edgedrift/drift/tests/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// network is one test's namespaces, all named drift-inst-<id>-…:
//
//	vm<i>   10.201.x.y/32 and fe80::2:<i>/64, a route to 169.254.169.254 and
//	        nothing else; its veth's far end is on the tenant's bridge
//	tenant  bridge br0 with 169.254.169.254/32 and fe80::a9fe:a9fe/64 (the
//	        tenant gateway listens there)
//	mgmt    10.202.N.2/24, the repository; the host (network node) is 10.202.N.1
//
// The tenant namespace also holds the far end of an unaddressed, down veth
// whose near end stays on the host: it disappears only when the namespace
// is really gone (no socket left holding it), which destroy checks.
type network struct {
	id                   string
	VM, Tenant, Mgmt     string // namespace names (VM: the first VM's)
	VMAddr               string // the first VM's address
	VMs                  []vm
	RepoHost, NodeOnMgmt string
	hostLink, canary     string
	mgLink               string // the management namespace's end
}

// vm is one VM namespace on the tenant network.
type vm struct {
	Name  string // its name in the inventory (vm-<i>)
	NS    string
	Addr  string
	Addr6 string // link-local, on Link
	Link  string
}

// newNetwork creates the namespaces, the bridge, one VM and the veths; the
// test's end deletes them and fails if any of them is left.
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
		id: id, Tenant: "drift-inst-" + id + "-tn", Mgmt: "drift-inst-" + id + "-mg",
		hostLink: "drift-m" + id + "a", canary: "drift-t" + id + "a",
	}
	subnet := fmt.Sprintf("10.202.%d", 1+int(b[0])%250)
	n.RepoHost, n.NodeOnMgmt = subnet+".2", subnet+".1"
	t.Cleanup(func() { n.destroy(t) })
	mgLink := "drift-m" + id + "b"
	n.mgLink = mgLink
	ipBatch(t, "", "netns add "+n.Tenant, "netns add "+n.Mgmt,
		"link add "+n.canary+" type veth peer name drift-t"+id+"b netns "+n.Tenant,
		// Network node (the host) ↔ management network.
		"link add "+n.hostLink+" type veth peer name "+mgLink+" netns "+n.Mgmt,
		"addr add "+n.NodeOnMgmt+"/24 dev "+n.hostLink, "link set "+n.hostLink+" up")
	ipBatch(t, n.Tenant, "link set lo up", "link add br0 type bridge", "link set br0 addrgenmode none", "link set br0 up",
		"addr add 169.254.169.254/32 dev br0", "addr add fe80::a9fe:a9fe/64 dev br0 nodad", "route add 10.201.0.0/16 dev br0")
	ipBatch(t, n.Mgmt, "link set lo up", "link set "+mgLink+" up", "addr add "+n.RepoHost+"/24 dev "+mgLink)
	first := n.addVMs(t, 1)[0]
	n.VM, n.VMAddr = first.NS, first.Addr
	return n
}

// addVMs attaches count more VMs to the tenant network; each reaches only
// 169.254.169.254 (and fe80::a9fe:a9fe on its link).
func (n *network) addVMs(t *testing.T, count int) []vm {
	t.Helper()
	var host, tenant []string
	added := make([]vm, 0, count)
	for k := 0; k < count; k++ {
		i := len(n.VMs) + 1
		v := vm{Name: fmt.Sprintf("vm-%d", i), NS: fmt.Sprintf("drift-inst-%s-vm%d", n.id, i),
			Addr: fmt.Sprintf("10.201.%d.%d", i/250, i%250+2), Addr6: fmt.Sprintf("fe80::2:%x", i), Link: fmt.Sprintf("drift-v%s%03da", n.id, i)}
		peer := strings.TrimSuffix(v.Link, "a") + "b"
		host = append(host, "netns add "+v.NS, "link add "+v.Link+" netns "+v.NS+" type veth peer name "+peer+" netns "+n.Tenant)
		tenant = append(tenant, "link set "+peer+" master br0", "link set "+peer+" up")
		n.VMs = append(n.VMs, v)
		added = append(added, v)
	}
	ipBatch(t, "", host...)
	ipBatch(t, n.Tenant, tenant...)
	for _, v := range added {
		ipBatch(t, v.NS, "link set lo up", "link set "+v.Link+" addrgenmode none", "link set "+v.Link+" up",
			"addr add "+v.Addr+"/32 dev "+v.Link, "addr add "+v.Addr6+"/64 dev "+v.Link+" nodad",
			"route add 169.254.169.254/32 dev "+v.Link)
	}
	return added
}

// ipBatch runs ip commands (one a line) in namespace ns ("" : the host's).
func ipBatch(t *testing.T, ns string, lines ...string) {
	t.Helper()
	args := []string{"-batch", "-"}
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	cmd := exec.Command("ip", args...)
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// namespaces are every namespace of the network.
func (n *network) namespaces() []string {
	out := []string{n.Tenant, n.Mgmt}
	for _, v := range n.VMs {
		out = append(out, v.NS)
	}
	return out
}

// destroy deletes the namespaces (their veths go with them) and proves
// nothing of this test is left: no process inside them, no namespace, no
// veth (the host ends vanish only once their namespaces are freed).
func (n *network) destroy(t *testing.T) {
	var del []string
	for _, ns := range n.namespaces() {
		for _, pid := range processesIn(ns) {
			t.Errorf("process %d still runs in %s", pid, ns)
			syscall.Kill(pid, syscall.SIGKILL)
		}
		del = append(del, "netns del "+ns)
	}
	cmd := exec.Command("ip", "-force", "-batch", "-")
	cmd.Stdin = strings.NewReader(strings.Join(del, "\n") + "\n")
	cmd.Run()
	deadline := time.Now().Add(30 * time.Second)
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
	KeyFile    string // the repository's signing key; agents trust KeyFile.pub
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
	nd.KeyFile = filepath.Join(dir, "signing.key")
	key, err := repo.GenerateKey(nd.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := repo.New(repo.Options{Dir: filepath.Join(dir, "store"), AdminToken: "admin-" + n.id, Secret: nd.Secret, SigningKey: key,
		MaxBlob: maxBlob, Report: drift.New(c).Signaler(), Register: drift.New(c).Registrar(), Logger: slog.Default()})
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
		Secret: nd.Secret, SocketDir: t.TempDir(), CacheDir: t.TempDir(), RPS: 5000, VMRPS: 1000}
}

// startWorker runs an in-process worker: central queue and network node.
func startWorker(t *testing.T, c client.Client, nd *node) *workerhost.Workers {
	t.Helper()
	return startWorkerWith(t, c, nd.installConfig(t))
}

// startWorkerWith runs an in-process worker that is the network node cfg
// says.
func startWorkerWith(t *testing.T, c client.Client, cfg *workerhost.InstallConfig) *workerhost.Workers {
	t.Helper()
	ws, err := workerhost.StartWorkers(c, workerhost.WorkerOptions{Central: true, Registry: "unused.invalid:5000", Install: cfg})
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
	files := make([]demo.File, len(entries))
	for i, e := range entries {
		files[i] = demo.File{Name: e.name, Body: e.body}
	}
	blob, err := demo.Package(files...)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(blob)
	return blob, hex.EncodeToString(sum[:])
}

// push uploads a package as the admin.
func (nd *node) push(t *testing.T, ref repo.Ref, o repo.PushOptions, entries ...entry) repo.Package {
	t.Helper()
	blob, sum := tarGz(t, entries...)
	o.Size = int64(len(blob))
	p, err := nd.Admin.Push(context.Background(), ref, sum, bytes.NewReader(blob), o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// agentArgs are `drift agent`'s arguments for a VM of the network, trusting
// the repository's key.
func (nd *node) agentArgs(prefix string, extra ...string) []string {
	return append([]string{"agent", "--gateway", "http://169.254.169.254:8080", "--prefix", prefix, "--trust", nd.KeyFile + ".pub"}, extra...)
}

// runAgent runs `drift agent --once` inside the first VM's namespace.
func runAgent(t *testing.T, n *network, nd *node, prefix string) string {
	t.Helper()
	driftBin, _ := harness.Binaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.VM, driftBin}, nd.agentArgs(prefix, "--once")...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("agent: %v\n%s", err, out)
	}
	return string(out)
}

// startAgent runs `drift agent` in v's namespace, registering as v.Name,
// until the test ends; env (KEY=VALUE) is added to its environment.
func startAgent(t *testing.T, nd *node, v vm, env []string, extra ...string) (*harness.Proc, string) {
	t.Helper()
	driftBin, _ := harness.Binaries(t)
	prefix := filepath.Join(t.TempDir(), v.Name)
	args := nd.agentArgs(prefix, append([]string{"--name", v.Name, "--every", "500ms"}, extra...)...)
	return harness.StartEnv(t, env, "ip", append([]string{"netns", "exec", v.NS, driftBin}, args...)...), prefix
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
