// Package kube starts a real Kubernetes control plane for tests: Debian's
// etcd, kube-apiserver, kube-controller-manager and kube-scheduler built from
// k8s.io/kubernetes (tests/kube/tools, by build.sh), and kwok, which plays the
// kubelet of fake nodes with its "fast" Stages. Everything listens on
// 127.0.0.1 on free ports and lives in one temp dir.
//
// Per test:
//
//	c := kube.Start(t)                  // stopped by t.Cleanup
//	c.Clientset.AppsV1().Deployments(…)
//
// Shared by the tests of a package (much faster than one cluster per test):
//
//	func TestMain(m *testing.M) { os.Exit(kube.RunShared(m)) }
//	func TestX(t *testing.T)   { c := kube.Shared(t); … }
//
// or, with full control, New + (*Cluster).Stop.
//
// On fake nodes pods never run anything: kwok marks them Running and Ready,
// so tests prove API behaviour (apply, rollout, labels, deletion), not that
// an image serves.
//
// # The real node
//
// WithRealNode adds a node whose pods really run (c.Real, node
// "drift-real-node", label drift.test/real-node=true): kubelet and
// kube-proxy from the same tools module, on a second containerd (Debian's
// 1.6) with its own root, state and socket, pods on a bridge of their own
// (10.244.X.0/24, picked free; the cluster's Service range is then
// 10.97.X.0/24, routed to that bridge). Its sandbox image (PauseImage) is built here
// from ./pause, since nothing can be pulled from outside; app images are
// imported (RealNode.ImportImage, for imagePullPolicy Never) or pulled over
// plain HTTP from a registry on loopback (WithInsecureRegistry or
// RealNode.TrustRegistry). Needs root, containerd, runc, iptables and the CNI
// plugins in /usr/lib/cni.
//
// Choosing nodes: WithRealNode alone makes no fake node, so every pod (drift's
// own Deployments included, which carry no scheduling hints) lands on the
// real one. With WithNodes(n) as well, the fake nodes carry the taint
// FakeNodeTaint=fake:NoSchedule: pods without a toleration go to the real
// node, and scale tests put pods on fakes with that toleration and
// nodeSelector type=kwok. The real node has no kwok annotation, so kwok
// leaves it alone.
//
// Reaching pods from the test (the host): a pod IP (http://<podIP>:<port>),
// a Service's ClusterIP (http://<clusterIP>:<port>, the endpoint drift's
// Kubernetes runtime returns; kube-proxy's iptables rules route it from the
// host), or a NodePort on the node's IP (http://<c.Real.IP>:<nodePort>; only
// that address, not loopback). None is reachable from other machines.
//
// Stop deletes the node's pods through the API, stops kube-proxy, kubelet
// and containerd, kills what is left, and undoes what they did to the host:
// mounts, network namespaces, the cgroup tree, the bridge, KUBE-/CNI-
// iptables chains, sysctls kubelet sets, log links; RealNode.Leftovers lists
// anything that remains (and Stop fails then).
//
// When the harness cannot run (binaries missing and not buildable, etcd or
// the real node's prerequisites not installed) the test fails, or skips when
// DRIFT_SKIP_HEAVY=1.
package kube

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/edgedrift/drift/tests/internal/proc"
)

// NodeAnnotation is the annotation that hands a Node to this harness's kwok.
const NodeAnnotation = "kwok.x-k8s.io/node"

// FakeNodeTaint (NoSchedule, value "fake") is on the fake nodes of a cluster
// that also has a real node: scale tests that want the fakes tolerate it
// and select the label type=kwok.
const FakeNodeTaint = NodeAnnotation

// Cluster is a running control plane with fake nodes.
type Cluster struct {
	Kubeconfig string               // path of a kubeconfig for the cluster (admin token)
	RESTConfig *rest.Config         // the same, for client-go
	Clientset  kubernetes.Interface // built from RESTConfig
	Dir        string               // etcd data, certs, kubeconfig, component logs
	Server     string               // https://127.0.0.1:PORT
	Nodes      []string             // names of the fake nodes
	Real       *RealNode            // the node that runs pods for real (WithRealNode), else nil

	procs  []*proc.Proc
	ownDir bool // Dir was made by New and is removed by a clean Stop
	// hostLock is held while the real node runs (lockHost).
	hostLock *os.File
	stopMu   sync.Mutex
	stopped  bool
	stopErr  error
}

// Option changes how a cluster is started.
type Option func(*options)

type options struct {
	nodes                int
	cpu, memory, pods    string
	dir                  string
	logf                 func(format string, args ...any)
	startTimeout         time.Duration
	controllerManagerArg []string
	realNode             bool
	registries           []string
}

// WithNodes sets the number of fake nodes (default 1, or 0 WithRealNode),
// named kwok-node-0, ….
func WithNodes(n int) Option { return func(o *options) { o.nodes = n } }

// WithRealNode adds a node whose pods really run (see RealNode): the
// cluster's Real. Its fake nodes, if any (WithNodes), are then tainted
// FakeNodeTaint, so pods land on the real node unless they tolerate that.
func WithRealNode() Option { return func(o *options) { o.realNode = true } }

// WithInsecureRegistry lets the real node pull from registries at host:port
// on loopback over plain HTTP (RealNode.TrustRegistry adds more later).
func WithInsecureRegistry(hosts ...string) Option {
	return func(o *options) { o.registries = append(o.registries, hosts...) }
}

// WithNodeResources sets each fake node's allocatable cpu, memory and pods
// (defaults "32", "256Gi", "110").
func WithNodeResources(cpu, memory, pods string) Option {
	return func(o *options) { o.cpu, o.memory, o.pods = cpu, memory, pods }
}

// WithDir puts the cluster's files in dir instead of a new temp dir (Stop
// then leaves it in place).
func WithDir(dir string) Option { return func(o *options) { o.dir = dir } }

// WithLogf receives the harness's progress messages.
func WithLogf(logf func(format string, args ...any)) Option {
	return func(o *options) { o.logf = logf }
}

// WithStartTimeout bounds the start once the binaries are there (default 2m).
func WithStartTimeout(d time.Duration) Option { return func(o *options) { o.startTimeout = d } }

// WithControllerManagerArgs appends flags to kube-controller-manager's.
func WithControllerManagerArgs(args ...string) Option {
	return func(o *options) { o.controllerManagerArg = append(o.controllerManagerArg, args...) }
}

// Start starts a cluster for t and stops it when t ends, failing t if a
// component is still running then. If the harness cannot run here, t fails,
// or skips when DRIFT_SKIP_HEAVY=1.
func Start(t testing.TB, opts ...Option) *Cluster {
	t.Helper()
	opts = append([]Option{WithDir(t.TempDir()), WithLogf(t.Logf)}, opts...)
	c, err := New(context.Background(), opts...)
	if err != nil {
		failOrSkip(t, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kube: component logs (tail):\n%s", c.LogTail(30))
		}
		if err := c.Stop(); err != nil {
			t.Errorf("kube: %v", err)
		}
	})
	return c
}

func failOrSkip(t testing.TB, err error) {
	t.Helper()
	if errors.Is(err, ErrUnavailable) && os.Getenv(EnvSkipHeavy) == "1" {
		t.Skipf("%s=1: %v", EnvSkipHeavy, err)
	}
	t.Fatalf("kube: %v", err)
}

var shared struct {
	mu      sync.Mutex
	inMain  bool
	started bool
	cluster *Cluster
	err     error
}

// RunShared runs a package's tests (call it from TestMain) and stops the
// cluster that Shared started, if any. It returns m.Run's exit code, or 1 if
// the cluster left a process running.
func RunShared(m *testing.M) int {
	shared.mu.Lock()
	shared.inMain = true
	shared.mu.Unlock()
	code := m.Run()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if c := shared.cluster; c != nil {
		if err := c.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "kube: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// Shared returns the package's shared cluster, starting it on first use with
// opts (later calls' opts are ignored). TestMain must run the tests through
// RunShared, which stops it. A failed start fails (or, when the harness cannot
// run and DRIFT_SKIP_HEAVY=1, skips) every test that asks for it.
func Shared(t testing.TB, opts ...Option) *Cluster {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.inMain {
		t.Fatal("kube.Shared needs TestMain to run the tests with kube.RunShared (or use kube.Start)")
	}
	if !shared.started {
		shared.started = true
		logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
		shared.cluster, shared.err = New(context.Background(), append([]Option{WithLogf(logf)}, opts...)...)
	}
	if shared.err != nil {
		failOrSkip(t, shared.err)
	}
	return shared.cluster
}

// New starts a cluster and waits until its nodes are Ready and untainted. The
// caller must Stop it. Errors wrapping ErrUnavailable mean the harness cannot
// run here.
func New(ctx context.Context, opts ...Option) (*Cluster, error) {
	o := options{nodes: -1, cpu: "32", memory: "256Gi", pods: "110", startTimeout: 2 * time.Minute}
	for _, opt := range opts {
		opt(&o)
	}
	if o.logf == nil {
		o.logf = func(string, ...any) {}
	}
	if o.nodes == -1 {
		o.nodes = 1
		if o.realNode {
			o.nodes = 0
		}
	}
	if o.nodes < 1 && !o.realNode {
		return nil, fmt.Errorf("kube: need at least one node, not %d", o.nodes)
	}
	for _, q := range []string{o.cpu, o.memory, o.pods} {
		if _, err := resource.ParseQuantity(q); err != nil {
			return nil, fmt.Errorf("kube: node resources: %w", err)
		}
	}
	bins, err := FindBinaries(o.logf)
	if err != nil {
		return nil, err
	}

	c := &Cluster{Dir: o.dir}
	if c.Dir == "" {
		if c.Dir, err = os.MkdirTemp("", "drift-kube-"); err != nil {
			return nil, err
		}
		c.ownDir = true
	}
	if o.realNode {
		if c.hostLock, err = lockHost(ctx, o.logf); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, o.startTimeout)
	defer cancel()
	began := time.Now()
	if o.realNode {
		// The real node's start includes a kubelet's first sync.
		o.startTimeout += 2 * time.Minute
	}
	if err := c.start(ctx, bins, o); err != nil {
		logs := c.LogTail(30)
		if stopErr := c.Stop(); stopErr != nil {
			err = errors.Join(err, stopErr)
		}
		return nil, fmt.Errorf("kube: start in %s: %w\ncomponent logs (tail):\n%s", c.Dir, err, logs)
	}
	nodes := fmt.Sprintf("%d fake node(s)", len(c.Nodes))
	if c.Real != nil {
		nodes += " and a real one"
	}
	o.logf("kube: cluster up at %s with %s in %s (files in %s)", c.Server, nodes, time.Since(began).Round(time.Millisecond), c.Dir)
	return c, nil
}

func (c *Cluster) start(ctx context.Context, bins Binaries, o options) error {
	if o.realNode {
		if err := c.newRealNode(ctx, o); err != nil {
			return err
		}
	}
	ports, err := proc.FreePorts(6)
	if err != nil {
		return err
	}
	etcdPort, peerPort, apiPort, cmPort, schedPort, kwokPort := ports[0], ports[1], ports[2], ports[3], ports[4], ports[5]
	env := childEnv(c.Dir)
	lo := func(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

	// etcd
	etcdURL := "http://" + lo(etcdPort)
	peerURL := "http://" + lo(peerPort)
	p, err := proc.Start(c.Dir, "etcd", bins.Etcd, env,
		"--name=drift",
		"--data-dir="+filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=drift="+peerURL,
		"--log-level=warn")
	if err != nil {
		return err
	}
	c.procs = append(c.procs, p)
	if err := c.waitHTTP(ctx, p, etcdURL+"/health", "", func(body string) bool { return strings.Contains(body, `"true"`) }); err != nil {
		return err
	}
	o.logf("kube: etcd up on %s", etcdURL)

	// credentials: service-account keys and a static admin token
	saKey, saPub := filepath.Join(c.Dir, "sa.key"), filepath.Join(c.Dir, "sa.pub")
	if err := writeServiceAccountKeys(saKey, saPub); err != nil {
		return err
	}
	token, err := randomHex(24)
	if err != nil {
		return err
	}
	tokens := filepath.Join(c.Dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(token+",admin,admin,system:masters\n"), 0o600); err != nil {
		return err
	}

	// kube-apiserver
	c.Server = "https://" + lo(apiPort)
	p, err = proc.Start(c.Dir, "kube-apiserver", bins.APIServer, env,
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port="+strconv.Itoa(apiPort),
		"--cert-dir="+filepath.Join(c.Dir, "certs"),
		"--token-auth-file="+tokens,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file="+saPub,
		"--service-account-signing-key-file="+saKey,
		"--service-cluster-ip-range="+c.serviceCIDR(),
		"--endpoint-reconciler-type=none",
		// Logs and exec go to a node's kubelet at its InternalIP: the real
		// node's name resolves nowhere.
		"--kubelet-preferred-address-types=InternalIP",
		// WatchList (beta, on in 1.34) turns every legacy watch from
		// resourceVersion 0 into a watch-list, which needs etcd's
		// RequestWatchProgress: Debian's etcd 3.4.23 lacks it, so such
		// watches fail, and kwok (which always watches from 0) would see
		// changes only when it relists, tens of seconds late.
		"--feature-gates=WatchList=false",
		"--profiling=false")
	if err != nil {
		return err
	}
	c.procs = append(c.procs, p)
	if err := c.waitHTTP(ctx, p, c.Server+"/readyz", token, func(body string) bool { return strings.TrimSpace(body) == "ok" }); err != nil {
		return err
	}
	o.logf("kube: kube-apiserver ready on %s", c.Server)

	// kubeconfig and clients
	c.Kubeconfig = filepath.Join(c.Dir, "kubeconfig")
	if err := writeKubeconfig(c.Kubeconfig, c.Server, token); err != nil {
		return err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return fmt.Errorf("load kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = 100, 200
	c.RESTConfig = cfg
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	c.Clientset = cs

	// kube-controller-manager: every controller but nodeipam (no pod CIDRs
	// here); node-lifecycle clears the not-ready taint once kwok reports Ready.
	cmArgs := []string{
		"--kubeconfig=" + c.Kubeconfig,
		"--authentication-kubeconfig=" + c.Kubeconfig,
		"--authorization-kubeconfig=" + c.Kubeconfig,
		"--service-account-private-key-file=" + saKey,
		"--leader-elect=false",
		"--bind-address=127.0.0.1", "--secure-port=" + strconv.Itoa(cmPort),
		"--controllers=*,-nodeipam",
		"--authentication-skip-lookup",
		"--profiling=false",
	}
	p, err = proc.Start(c.Dir, "kube-controller-manager", bins.ControllerManager, env, append(cmArgs, o.controllerManagerArg...)...)
	if err != nil {
		return err
	}
	c.procs = append(c.procs, p)

	// kube-scheduler
	p, err = proc.Start(c.Dir, "kube-scheduler", bins.Scheduler, env,
		"--kubeconfig="+c.Kubeconfig,
		"--authentication-kubeconfig="+c.Kubeconfig,
		"--authorization-kubeconfig="+c.Kubeconfig,
		"--leader-elect=false",
		"--authentication-skip-lookup",
		"--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(schedPort),
		"--profiling=false")
	if err != nil {
		return err
	}
	c.procs = append(c.procs, p)

	// kwok: the kubelet of the nodes annotated kwok.x-k8s.io/node=fake
	p, err = proc.Start(c.Dir, "kwok", bins.Kwok, env,
		"--kubeconfig="+c.Kubeconfig,
		"--config="+bins.Stages,
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector="+NodeAnnotation+"=fake",
		// kwok renews each node's Lease; without it the node-lifecycle
		// controller marks the node (and its pods) unready every 50s until
		// kwok's node-initialize Stage sets it Ready again.
		"--node-lease-duration-seconds=40",
		"--server-address="+lo(kwokPort))
	if err != nil {
		return err
	}
	c.procs = append(c.procs, p)

	for _, hc := range []struct {
		p   *proc.Proc
		url string
	}{
		{c.procs[2], "https://" + lo(cmPort) + "/healthz"},
		{c.procs[3], "https://" + lo(schedPort) + "/healthz"},
		{c.procs[4], "http://" + lo(kwokPort) + "/healthz"},
	} {
		if err := c.waitHTTP(ctx, hc.p, hc.url, "", func(body string) bool { return strings.TrimSpace(body) == "ok" }); err != nil {
			return err
		}
	}
	o.logf("kube: kube-controller-manager, kube-scheduler and kwok healthy")

	for i := 0; i < o.nodes; i++ {
		name := fmt.Sprintf("kwok-node-%d", i)
		if err := c.createNode(ctx, name, o); err != nil {
			return err
		}
		c.Nodes = append(c.Nodes, name)
	}
	if o.realNode {
		if err := c.startRealNode(ctx, bins, o); err != nil {
			return err
		}
	}
	return c.WaitNodesReady(ctx)
}

// serviceCIDR is the cluster's Service IP range: the real node's own, which
// its host routes to its bridge, or one no packet ever leaves for.
func (c *Cluster) serviceCIDR() string {
	if c.Real != nil {
		return c.Real.ServiceCIDR
	}
	return "10.96.0.0/16"
}

// createNode registers a fake node for kwok to manage.
func (c *Cluster) createNode(ctx context.Context, name string, o options) error {
	res := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse(o.cpu),
		corev1.ResourceMemory: resource.MustParse(o.memory),
		corev1.ResourcePods:   resource.MustParse(o.pods),
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{NodeAnnotation: "fake"},
			Labels: map[string]string{
				"type":                   "kwok",
				"kubernetes.io/hostname": name,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
			},
		},
		Status: corev1.NodeStatus{Allocatable: res, Capacity: res.DeepCopy()},
	}
	if o.realNode {
		node.Spec.Taints = []corev1.Taint{{Key: FakeNodeTaint, Value: "fake", Effect: corev1.TaintEffectNoSchedule}}
	}
	_, err := c.Clientset.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create node %s: %w", name, err)
	}
	return nil
}

// WaitNodesReady waits until every node of the cluster is Ready, carries no
// NoSchedule or NoExecute taint but the harness's own, and has a Lease
// (kwok's or kubelet's heartbeat).
func (c *Cluster) WaitNodesReady(ctx context.Context) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	names := c.Nodes
	if c.Real != nil {
		names = append(append([]string(nil), names...), c.Real.Name)
	}
	var why string
	for {
		why = ""
		for _, name := range names {
			n, err := c.Clientset.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				why = err.Error()
				break
			}
			if w := nodeNotReady(n); w != "" {
				why = name + ": " + w
				break
			}
			// kwok's heartbeat: without a Lease the node goes unready after 50s.
			if _, err := c.Clientset.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, name, metav1.GetOptions{}); err != nil {
				why = name + ": no lease: " + err.Error()
				break
			}
		}
		if why == "" {
			return nil
		}
		if err := c.anyExited(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("nodes not ready: %s (%w)", why, ctx.Err())
		case <-tick.C:
		}
	}
}

func nodeNotReady(n *corev1.Node) string {
	ready := false
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
			ready = true
		}
	}
	if !ready {
		return "not Ready"
	}
	for _, taint := range n.Spec.Taints {
		if taint.Key == FakeNodeTaint {
			continue
		}
		if taint.Effect == corev1.TaintEffectNoSchedule || taint.Effect == corev1.TaintEffectNoExecute {
			return "tainted " + taint.ToString()
		}
	}
	return ""
}

// waitHTTP polls url until ok(body) holds for a 200 answer, failing early if p exits.
func (c *Cluster) waitHTTP(ctx context.Context, p *proc.Proc, url, token string, ok func(string) bool) error {
	client := &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, Proxy: nil},
	}
	defer client.CloseIdleConnections()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	last := "no answer yet"
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err == nil {
			buf := make([]byte, 4096)
			n, _ := resp.Body.Read(buf)
			resp.Body.Close()
			body := string(buf[:n])
			if resp.StatusCode == http.StatusOK && ok(body) {
				return nil
			}
			last = fmt.Sprintf("%s: %s", resp.Status, proc.Tail(body, 5))
		} else {
			last = err.Error()
		}
		if done, werr := p.Exited(); done {
			return fmt.Errorf("%s exited (%v) before %s answered; last: %s", p.Name, werr, url, last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %s not ready: %s (%w)", p.Name, url, last, ctx.Err())
		case <-tick.C:
		}
	}
}

// anyExited reports a component that has exited.
func (c *Cluster) anyExited() error {
	all := c.procs
	if c.Real != nil {
		all = append(append([]*proc.Proc(nil), all...), c.Real.procs...)
	}
	for _, p := range all {
		if done, err := p.Exited(); done {
			return fmt.Errorf("%s exited: %v", p.Name, err)
		}
	}
	return nil
}

// Check reports an error if any component has exited.
func (c *Cluster) Check() error { return c.anyExited() }

// LogTail returns the last n lines of each component's log.
func (c *Cluster) LogTail(n int) string {
	var b strings.Builder
	for _, p := range c.procs {
		fmt.Fprintf(&b, "==> %s (%s) <==\n%s\n", p.Name, p.LogPath, p.LogTail(n))
	}
	if c.Real != nil {
		b.WriteString(c.Real.logTail(n))
	}
	return b.String()
}

// Stop stops every component (SIGTERM, then SIGKILL), newest first, and
// reports an error if any process is still alive afterwards. The real node
// goes first, while the API still answers: its pods are deleted, then its
// programs stopped and what they did to the host undone. A clean Stop
// removes the cluster's dir when New made it. Stop is idempotent.
func (c *Cluster) Stop() error {
	c.stopMu.Lock()
	defer c.stopMu.Unlock()
	if c.stopped {
		return c.stopErr
	}
	c.stopped = true
	var errs []error
	if c.Real != nil {
		errs = append(errs, c.stopRealNode())
	}
	if c.hostLock != nil {
		c.hostLock.Close() // releases the lock
	}
	// kwok, scheduler and controller-manager together; then the apiserver; then etcd.
	var clients []*proc.Proc
	var core []*proc.Proc
	for _, p := range c.procs {
		if p.Name == "etcd" || p.Name == "kube-apiserver" {
			core = append(core, p)
		} else {
			clients = append(clients, p)
		}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, p := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.Stop(); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for i := len(core) - 1; i >= 0; i-- {
		if err := core[i].Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	c.stopErr = errors.Join(errs...)
	if c.stopErr == nil && c.ownDir {
		if err := os.RemoveAll(c.Dir); err != nil {
			c.stopErr = err
		}
	}
	return c.stopErr
}

// childEnv is the environment of every component: HOME is the cluster's dir
// (so nothing reads or writes the user's ~/.kube or ~/.kwok), no KUBECONFIG.
func childEnv(dir string) []string {
	var extra []string
	if goruntime.GOARCH != "amd64" {
		extra = append(extra, "ETCD_UNSUPPORTED_ARCH="+goruntime.GOARCH)
	}
	return proc.Env(dir, []string{"KUBECONFIG"}, extra...)
}

func writeServiceAccountKeys(keyPath, pubPath string) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})
	if err := os.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	return os.WriteFile(pubPath, pubPEM, 0o644)
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

func writeKubeconfig(path, server, token string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["drift-kube"] = &clientcmdapi.Cluster{Server: server, InsecureSkipTLSVerify: true}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["drift-kube"] = &clientcmdapi.Context{Cluster: "drift-kube", AuthInfo: "admin"}
	cfg.CurrentContext = "drift-kube"
	return clientcmd.WriteToFile(*cfg, path)
}

// CountLabelled counts the Deployments, Services or Pods (kind) in every
// namespace that match the label selector.
func (c *Cluster) CountLabelled(t testing.TB, ctx context.Context, kind, selector string) int {
	t.Helper()
	opts := metav1.ListOptions{LabelSelector: selector}
	var n int
	var err error
	switch kind {
	case "deployments":
		l, e := c.Clientset.AppsV1().Deployments("").List(ctx, opts)
		err, n = e, len(l.Items)
	case "services":
		l, e := c.Clientset.CoreV1().Services("").List(ctx, opts)
		err, n = e, len(l.Items)
	case "pods":
		l, e := c.Clientset.CoreV1().Pods("").List(ctx, opts)
		err, n = e, len(l.Items)
	default:
		t.Fatalf("CountLabelled: unknown kind %q", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	return n
}
