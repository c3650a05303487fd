package kube

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/edgedrift/drift/internal/image"
	"github.com/edgedrift/drift/tests/internal/proc"
)

// RealNodeLabel (value "true") marks the node whose pods really run.
const RealNodeLabel = "drift.test/real-node"

// PauseImage is the sandbox image the real node's containerd runs for every
// pod; the harness builds it from ./pause and imports it.
const PauseImage = "drift.test/pause:1"

// RealNode is a Kubernetes node that runs pods for real: kubelet on a
// containerd of its own (Debian's, with CRI), pods on a bridge of its own,
// kube-proxy in iptables mode for Services. Everything it makes on the host
// (bridge, routes, cgroups, iptables chains, sysctls, mounts) is undone when
// the cluster stops.
type RealNode struct {
	Name        string // node name, labelled RealNodeLabel=true
	IP          string // the node's InternalIP: the bridge's own address, reachable from this host
	PodCIDR     string // pods get addresses from it, on the bridge
	ServiceCIDR string // the cluster's Service IPs, routed to the bridge
	Bridge      string // the bridge's name
	Containerd  string // containerd's socket (ctr -a …; the CRI endpoint)
	Dir         string // containerd's and kubelet's state, CNI config, logs

	cgroupRoot string
	registries []string
	procs      []*proc.Proc // containerd, kubelet, kube-proxy
	host       hostState    // what the host looked like before
}

func (n *RealNode) ctr(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "ctr", append([]string{"-a", n.Containerd, "-n", "k8s.io"}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// newRealNode checks the real node's prerequisites, picks its networks and
// makes its bridge, before the control plane starts: the apiserver gets the
// node's own Service range.
func (c *Cluster) newRealNode(ctx context.Context, o options) error {
	for _, tool := range []string{"containerd", "containerd-shim-runc-v2", "runc", "ctr", "ip", "iptables", "iptables-save", "iptables-restore"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%w: the real node needs %s (apt-get install -y docker.io iptables iproute2)", ErrUnavailable, tool)
		}
	}
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		return fmt.Errorf("%w: the real node needs the CNI plugins in /usr/lib/cni (apt-get install -y containernetworking-plugins)", ErrUnavailable)
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: the real node needs root (bridge, cgroups, mounts)", ErrUnavailable)
	}
	id, err := randomHex(4)
	if err != nil {
		return err
	}
	n := &RealNode{
		Name:       "drift-real-node",
		Bridge:     "dk-" + id,
		Dir:        filepath.Join(c.Dir, "node"),
		cgroupRoot: "/drift-kube-" + id,
		registries: o.registries,
	}
	// A unix socket path has at most 107 bytes; containerd adds ".ttrpc".
	n.Containerd = filepath.Join(n.Dir, "containerd.sock")
	if len(n.Containerd) > 90 {
		return fmt.Errorf("cluster dir %s too deep for containerd's socket; use WithDir with a shorter one", c.Dir)
	}
	x, err := freeSubnets()
	if err != nil {
		return err
	}
	n.PodCIDR = fmt.Sprintf("10.244.%d.0/24", x)
	n.ServiceCIDR = fmt.Sprintf("10.97.%d.0/24", x)
	n.IP = fmt.Sprintf("10.244.%d.1", x)
	n.host = snapshotHost()
	c.Real = n
	// The bridge exists (with the node's address) before any pod, so kubelet
	// can take that address as the node's IP and the host reaches pods.
	// Service IPs are routed to it too: kube-proxy's rules rewrite them to
	// pod IPs, and until they do, nothing leaves the host for them.
	for _, args := range [][]string{
		{"link", "add", "name", n.Bridge, "type", "bridge"},
		{"addr", "add", n.IP + "/24", "dev", n.Bridge},
		{"link", "set", n.Bridge, "up"},
		{"route", "add", n.ServiceCIDR, "dev", n.Bridge, "src", n.IP},
	} {
		if out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	if out, err := exec.CommandContext(ctx, "iptables", n.forwardRule("-I")...).CombinedOutput(); err != nil {
		return fmt.Errorf("iptables %s: %v: %s", strings.Join(n.forwardRule("-I"), " "), err, out)
	}
	return os.MkdirAll(n.Dir, 0o755)
}

// forwardRule is the iptables command (op -I, -D or -C) for the rule that
// lets packets from the node's bridge back out through it. A pod reaching
// another through a Service's ClusterIP goes to the host, is rewritten to
// the other pod's IP and routed back out the bridge: Docker's engine sets
// the FORWARD policy to DROP, and kube-proxy only lets masqueraded or
// established traffic through, so without this rule the first packet is
// dropped (Docker has the same rule for docker0).
func (n *RealNode) forwardRule(op string) []string {
	return []string{"-w", op, "FORWARD", "-i", n.Bridge, "-o", n.Bridge, "-m", "comment", "--comment", "drift real node " + n.Bridge, "-j", "ACCEPT"}
}

// startRealNode brings up containerd, kubelet and kube-proxy as node
// "drift-real-node" of c, and waits until they answer.
func (c *Cluster) startRealNode(ctx context.Context, bins Binaries, o options) error {
	n := c.Real
	if err := n.writeConfigs(); err != nil {
		return err
	}

	ports, err := proc.FreePorts(4)
	if err != nil {
		return err
	}
	kubeletPort, kubeletHealthz, proxyHealthz, proxyMetrics := ports[0], ports[1], ports[2], ports[3]
	env := childEnv(n.Dir)

	p, err := proc.Start(n.Dir, "containerd", "containerd", env, "--config", filepath.Join(n.Dir, "containerd.toml"))
	if err != nil {
		return err
	}
	n.procs = append(n.procs, p)
	if err := waitFor(ctx, p, "containerd's CRI", func() error {
		_, err := n.ctr(ctx, "plugins", "ls", "id==cri")
		return err
	}); err != nil {
		return err
	}
	if err := n.importPause(ctx); err != nil {
		return err
	}
	o.logf("kube: containerd up on %s, %s imported", n.Containerd, PauseImage)

	if err := n.writeKubeletConfig(kubeletPort, kubeletHealthz); err != nil {
		return err
	}
	if err := n.makeCgroupRoot(); err != nil {
		return fmt.Errorf("cgroup root %s: %w", n.cgroupRoot, err)
	}
	p, err = proc.Start(n.Dir, "kubelet", bins.Kubelet, env,
		"--config="+filepath.Join(n.Dir, "kubelet.yaml"),
		"--kubeconfig="+c.Kubeconfig,
		"--root-dir="+filepath.Join(n.Dir, "kubelet"),
		"--cert-dir="+filepath.Join(n.Dir, "kubelet-pki"),
		"--hostname-override="+n.Name,
		"--node-ip="+n.IP,
		"--node-labels="+RealNodeLabel+"=true")
	if err != nil {
		return err
	}
	n.procs = append(n.procs, p)
	if err := c.waitHTTP(ctx, p, fmt.Sprintf("http://127.0.0.1:%d/healthz", kubeletHealthz), "", func(b string) bool { return strings.TrimSpace(b) == "ok" }); err != nil {
		return err
	}
	// kubelet only warns about fields it does not know, and then uses
	// host-wide defaults (/var/log/pods, …) instead of this node's dirs.
	if log := p.LogTail(1000); strings.Contains(log, "unknown field") {
		return fmt.Errorf("kubelet does not understand %s:\n%s", filepath.Join(n.Dir, "kubelet.yaml"), proc.Tail(log, 20))
	}

	p, err = proc.Start(n.Dir, "kube-proxy", bins.KubeProxy, env,
		"--kubeconfig="+c.Kubeconfig,
		"--hostname-override="+n.Name,
		"--proxy-mode=iptables",
		"--cluster-cidr="+n.PodCIDR,
		// NodePorts on the bridge address only: none on loopback (which
		// would need route_localnet) or on the host's real interfaces.
		"--nodeport-addresses="+n.PodCIDR,
		fmt.Sprintf("--healthz-bind-address=127.0.0.1:%d", proxyHealthz),
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", proxyMetrics),
		// Leave the host's conntrack table settings and OOM scores alone.
		"--conntrack-max-per-core=0", "--conntrack-tcp-timeout-established=0", "--conntrack-tcp-timeout-close-wait=0",
		"--oom-score-adj=0")
	if err != nil {
		return err
	}
	n.procs = append(n.procs, p)
	if err := c.waitHTTP(ctx, p, fmt.Sprintf("http://127.0.0.1:%d/healthz", proxyHealthz), "", func(string) bool { return true }); err != nil {
		return err
	}
	o.logf("kube: kubelet and kube-proxy up for node %s (IP %s, pods %s on %s)", n.Name, n.IP, n.PodCIDR, n.Bridge)
	return nil
}

// freeSubnets picks X for the node's pods (10.244.X.0/24) and Services
// (10.97.X.0/24) such that no interface or route of the host uses either,
// so two real nodes (or a node and the host's networks) never clash.
func freeSubnets() (int, error) {
	out, err := exec.Command("ip", "-4", "route", "show", "table", "all").Output()
	if err != nil {
		return 0, fmt.Errorf("ip route: %v", err)
	}
	used := string(out)
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			used += " " + a.String()
		}
	}
	for _, wide := range []string{"10.0.0.0/8", "10.244.0.0/16", "10.97.0.0/16"} {
		if strings.Contains(used, wide) {
			return 0, fmt.Errorf("the host routes %s; no room for the real node's networks", wide)
		}
	}
	b := make([]byte, 1)
	for range 64 {
		if _, err := rand.Read(b); err != nil {
			return 0, err
		}
		if !strings.Contains(used, fmt.Sprintf("10.244.%d.", b[0])) && !strings.Contains(used, fmt.Sprintf("10.97.%d.", b[0])) {
			return int(b[0]), nil
		}
	}
	return 0, errors.New("no free 10.244.X.0/24 and 10.97.X.0/24 for the real node")
}

// writeConfigs writes the CNI network, containerd's config and one
// hosts.toml per plain-HTTP registry.
func (n *RealNode) writeConfigs() error {
	for _, d := range []string{"cni", "certs.d", "pod-logs", "volume-plugins"} {
		if err := os.MkdirAll(filepath.Join(n.Dir, d), 0o755); err != nil {
			return err
		}
	}
	conflist := map[string]any{
		"cniVersion": "0.4.0",
		"name":       "drift-" + n.Bridge,
		"plugins": []any{
			map[string]any{
				"type": "bridge", "bridge": n.Bridge,
				// The bridge already has the gateway address; the plugin
				// then leaves ip_forward and masquerading alone.
				"isGateway": false, "ipMasq": false, "hairpinMode": true,
				"ipam": map[string]any{
					"type": "host-local", "subnet": n.PodCIDR, "gateway": n.IP,
					"routes":  []any{map[string]any{"dst": "0.0.0.0/0", "gw": n.IP}},
					"dataDir": filepath.Join(n.Dir, "cni-ipam"),
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
			map[string]any{"type": "loopback"},
		},
	}
	b, err := json.MarshalIndent(conflist, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(n.Dir, "cni", "10-drift.conflist"), b, 0o644); err != nil {
		return err
	}
	for _, host := range n.registries {
		if err := n.TrustRegistry(host); err != nil {
			return err
		}
	}
	// A second containerd beside any other on the host: every path its own.
	toml := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[plugins."io.containerd.internal.v1.opt"]
  path = %[5]q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[6]q
  # This machine kind refuses negative oom_score_adj, which kubelet asks
  # for the sandbox; without this every sandbox fails to start.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # Pods' network namespaces under the state dir, not the host's /var/run/netns.
  netns_mounts_under_state_dir = true

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = %[7]q

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = %[8]q
  max_conf_num = 1

# Read at every pull, so registries can be added while the node runs.
[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = %[9]q
`, filepath.Join(n.Dir, "containerd", "root"), filepath.Join(n.Dir, "containerd", "state"),
		n.Containerd, n.Containerd+".ttrpc", filepath.Join(n.Dir, "containerd", "opt"),
		PauseImage, filepath.Join(n.Dir, "runc"), filepath.Join(n.Dir, "cni"), filepath.Join(n.Dir, "certs.d"))
	return os.WriteFile(filepath.Join(n.Dir, "containerd.toml"), []byte(toml), 0o644)
}

// TrustRegistry lets the node pull from the registry at host (host:port,
// on loopback) over plain HTTP. It takes effect at the next pull.
func (n *RealNode) TrustRegistry(host string) error {
	if _, _, err := net.SplitHostPort(host); err != nil || !image.IsLoopback(host) {
		return fmt.Errorf("registry %q: want a loopback host:port (%v)", host, err)
	}
	dir := filepath.Join(n.Dir, "certs.d", host)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	toml := fmt.Sprintf("server = %[1]q\n\n[host.%[1]q]\n  capabilities = [\"pull\", \"resolve\"]\n", "http://"+host)
	return os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(toml), 0o644)
}

func (n *RealNode) writeKubeletConfig(port, healthz int) error {
	cfg := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# On the node's bridge address (this host only), where the API server
# reaches it for pods' logs and exec.
address: %s
port: %d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %d
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
cgroupDriver: cgroupfs
# Pods' cgroups under a root of this node's own, removed at the end.
cgroupRoot: %s
failCgroupV1: false
failSwapOn: false
clusterDNS: []
clusterDomain: cluster.local
containerRuntimeEndpoint: unix://%s
podLogsDir: %s
volumePluginDir: %s
# No iptables chains of kubelet's own on the host.
makeIPTablesUtilChains: false
serializeImagePulls: false
# A shared test machine's disk is not this node's to guard.
evictionHard:
  memory.available: "1%%"
  nodefs.available: "1%%"
  nodefs.inodesFree: "1%%"
  imagefs.available: "1%%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
`, n.IP, port, healthz, n.cgroupRoot, n.Containerd, filepath.Join(n.Dir, "pod-logs"), filepath.Join(n.Dir, "volume-plugins"))
	return os.WriteFile(filepath.Join(n.Dir, "kubelet.yaml"), []byte(cfg), 0o644)
}

// importPause builds the sandbox program, makes it a FROM-scratch image and
// imports it as PauseImage.
func (n *RealNode) importPause(ctx context.Context) error {
	bin := filepath.Join(n.Dir, "pause")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, ".")
	cmd.Dir = filepath.Join(sourceDir(), "pause")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goruntime.GOARCH)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build pause: %v\n%s", err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	img, err := image.Build(v1.Platform{OS: "linux", Architecture: goruntime.GOARCH},
		[]image.File{{Path: "/pause", Mode: 0o755, Data: data}}, image.Config{Entrypoint: []string{"/pause"}})
	if err != nil {
		return err
	}
	return n.ImportImage(ctx, img, PauseImage)
}

// ImportImage puts img into the node's containerd as ref (repo:tag), for
// pods with imagePullPolicy Never or IfNotPresent. The image must be for
// the node's platform (linux/GOARCH).
func (n *RealNode) ImportImage(ctx context.Context, img v1.Image, ref string) error {
	tag, err := name.NewTag(ref, name.StrictValidation)
	if err != nil {
		return err
	}
	dir := filepath.Join(n.Dir, "images")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "image-*.tar")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := errors.Join(tarball.Write(tag, img, f), f.Close()); err != nil {
		return fmt.Errorf("write %s: %w", ref, err)
	}
	_, err = n.ctr(ctx, "images", "import", f.Name())
	return err
}

// waitFor polls check until it succeeds, failing early if p exits.
func waitFor(ctx context.Context, p *proc.Proc, what string, check func() error) error {
	for {
		err := check()
		if err == nil {
			return nil
		}
		if done, werr := p.Exited(); done {
			return fmt.Errorf("%s exited (%v) before %s answered; last: %v", p.Name, werr, what, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %v (%w)", what, err, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// drain cordons the node and deletes its pods, waiting until kubelet has
// stopped them and released their volumes and network namespaces.
func (c *Cluster) drainRealNode(ctx context.Context) error {
	n := c.Real
	cs := c.Clientset.CoreV1()
	patch := []byte(`{"spec":{"unschedulable":true}}`)
	if _, err := cs.Nodes().Patch(ctx, n.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("cordon %s: %w", n.Name, err)
	}
	sel := metav1.ListOptions{FieldSelector: "spec.nodeName=" + n.Name}
	grace := int64(1)
	for {
		pods, err := cs.Pods("").List(ctx, sel)
		if err != nil {
			return err
		}
		if len(pods.Items) == 0 {
			return nil
		}
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil {
				_ = cs.Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &grace})
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pods still on %s: %d (%w)", n.Name, len(pods.Items), ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// stopRealNode takes the node down: pods first (while the API is there),
// then kube-proxy and kubelet, whatever containers are left, containerd;
// then it undoes what they did to the host.
func (c *Cluster) stopRealNode() error {
	n := c.Real
	var errs []error
	if c.Clientset != nil && len(n.procs) >= 2 {
		if done, _ := n.procs[1].Exited(); !done {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			if err := c.drainRealNode(ctx); err != nil {
				errs = append(errs, fmt.Errorf("drain: %w", err))
			}
			cancel()
		}
	}
	for i := len(n.procs) - 1; i >= 1; i-- { // kube-proxy, kubelet
		errs = append(errs, n.procs[i].Stop())
	}
	if len(n.procs) > 0 {
		n.killContainers()
		errs = append(errs, n.procs[0].Stop())
	}
	errs = append(errs, n.cleanHost()...)
	if left := n.Leftovers(); len(left) > 0 {
		errs = append(errs, fmt.Errorf("real node left: %s", strings.Join(left, "; ")))
	}
	return errors.Join(errs...)
}

// killContainers kills and deletes every task and container still in
// containerd (kubelet is gone; nothing else would).
func (n *RealNode) killContainers() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := n.ctr(ctx, "containers", "ls", "-q")
	if err != nil {
		return
	}
	for _, id := range strings.Fields(out) {
		_, _ = n.ctr(ctx, "tasks", "kill", "-s", "SIGKILL", id)
		_, _ = n.ctr(ctx, "tasks", "delete", "-f", id)
		_, _ = n.ctr(ctx, "containers", "delete", id)
	}
}

// logTail returns the last lines of the node's components' logs.
func (n *RealNode) logTail(lines int) string {
	var b strings.Builder
	for _, p := range n.procs {
		fmt.Fprintf(&b, "==> %s (%s) <==\n%s\n", p.Name, p.LogPath, p.LogTail(lines))
	}
	return b.String()
}
