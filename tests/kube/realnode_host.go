package kube

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/edgedrift/drift/tests/internal/proc"
)

// The host state kubelet, kube-proxy and the CNI plugins may change.
var watchedSysctls = []string{
	"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
	"net/ipv4/ip_forward", "net/ipv4/conf/all/route_localnet",
	"net/netfilter/nf_conntrack_max", "net/netfilter/nf_conntrack_tcp_timeout_established",
	"net/netfilter/nf_conntrack_tcp_timeout_close_wait", "net/netfilter/nf_conntrack_tcp_be_liberal",
}

// Host dirs the node's programs create when missing; removed again if they
// did not exist before and are empty. kubelet's device-plugin socket is at a
// fixed path, whatever its root dir.
const devicePluginSocket = "/var/lib/kubelet/device-plugins/kubelet.sock"

var hostDirs = []string{"/var/log/containers", "/var/log/pods", "/var/lib/kubelet/device-plugins", "/var/lib/kubelet", "/var/lib/cni/results", "/var/lib/cni", "/run/containerd/s", "/run/containerd"}

type hostState struct {
	sysctls map[string]string
	chains  map[string]map[string]bool // "iptables/nat" → chains
	dirs    map[string]bool            // hostDirs that existed
}

// snapshotHost records the host state the real node may change.
func snapshotHost() hostState {
	h := hostState{sysctls: map[string]string{}, chains: iptablesChains(), dirs: map[string]bool{}}
	for _, s := range watchedSysctls {
		if b, err := os.ReadFile("/proc/sys/" + s); err == nil {
			h.sysctls[s] = strings.TrimSpace(string(b))
		}
	}
	for _, d := range hostDirs {
		_, err := os.Stat(d)
		h.dirs[d] = err == nil
	}
	return h
}

// iptablesChains lists the chains of every table, per family: "iptables/nat" → names.
func iptablesChains() map[string]map[string]bool {
	out := map[string]map[string]bool{}
	for _, fam := range []string{"iptables", "ip6tables"} {
		dump, err := exec.Command(fam + "-save").Output()
		if err != nil {
			continue // the family is not there; nothing can change in it
		}
		table := ""
		for _, line := range strings.Split(string(dump), "\n") {
			switch {
			case strings.HasPrefix(line, "*"):
				table = fam + "/" + line[1:]
				if out[table] == nil {
					out[table] = map[string]bool{}
				}
			case strings.HasPrefix(line, ":") && table != "":
				out[table][strings.Fields(line[1:])[0]] = true
			}
		}
	}
	return out
}

// ours reports whether chain is one kube-proxy or a CNI plugin makes.
func ours(chain string) bool {
	return strings.HasPrefix(chain, "KUBE-") || strings.HasPrefix(chain, "CNI-")
}

// cleanHost undoes what the node's programs did to the host, given that
// they have all stopped: leftover processes, mounts (network namespaces
// included), cgroups, the bridge, iptables chains, sysctls, log links, CNI state.
func (n *RealNode) cleanHost() []error {
	var errs []error
	// Shims and container processes that outlived containerd.
	if left, err := proc.In(n.Dir); err == nil {
		for _, l := range left {
			var pid int
			if _, err := fmt.Sscan(l, &pid); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	n.killCgroupProcs()
	// Pods' network namespaces, shm and rootfs mounts, volumes: deepest
	// first, lazily, so a busy mount still goes from the namespace.
	mounts := mountsUnder(n.Dir)
	sort.Sort(sort.Reverse(sort.StringSlice(mounts)))
	for _, m := range mounts {
		if out, err := exec.Command("umount", "-l", m).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("umount %s: %v: %s", m, err, bytes.TrimSpace(out)))
		}
	}
	errs = append(errs, n.removeCgroups()...)
	if _, err := net.InterfaceByName(n.Bridge); err == nil {
		if out, err := exec.Command("ip", "link", "del", n.Bridge).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("ip link del %s: %v: %s", n.Bridge, err, out))
		}
	}
	if exec.Command("iptables", n.forwardRule("-C")...).Run() == nil {
		if out, err := exec.Command("iptables", n.forwardRule("-D")...).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("iptables %s: %v: %s", strings.Join(n.forwardRule("-D"), " "), err, out))
		}
	}
	errs = append(errs, n.restoreIptables()...)
	for s, v := range n.host.sysctls {
		if b, err := os.ReadFile("/proc/sys/" + s); err == nil && strings.TrimSpace(string(b)) != v {
			if err := os.WriteFile("/proc/sys/"+s, []byte(v), 0o644); err != nil {
				errs = append(errs, fmt.Errorf("restore %s=%s: %w", s, v, err))
			}
		}
	}
	for _, link := range n.logLinks() {
		errs = append(errs, os.Remove(link))
	}
	results, _ := filepath.Glob("/var/lib/cni/results/drift-" + n.Bridge + "-*")
	for _, r := range results {
		errs = append(errs, os.Remove(r))
	}
	if !n.host.dirs[filepath.Dir(devicePluginSocket)] {
		_ = os.Remove(devicePluginSocket)
	}
	for _, d := range hostDirs { // in order: children before parents
		if !n.host.dirs[d] {
			_ = syscall.Rmdir(d) // only if empty
		}
	}
	return errs
}

// restoreIptables deletes the KUBE-/CNI- chains that appeared since the
// snapshot, and every rule that jumps to them.
func (n *RealNode) restoreIptables() []error {
	var errs []error
	for _, fam := range []string{"iptables", "ip6tables"} {
		dump, err := exec.Command(fam + "-save").Output()
		if err != nil {
			continue
		}
		var script strings.Builder
		table, tableNew, tableRules := "", []string{}, []string{}
		flush := func() {
			if table == "" || len(tableNew) == 0 {
				return
			}
			fmt.Fprintf(&script, "*%s\n", table)
			for _, r := range tableRules {
				fmt.Fprintf(&script, "-D %s\n", r)
			}
			for _, c := range tableNew {
				fmt.Fprintf(&script, "-F %s\n", c)
			}
			for _, c := range tableNew {
				fmt.Fprintf(&script, "-X %s\n", c)
			}
			script.WriteString("COMMIT\n")
		}
		isNew := map[string]bool{}
		for _, line := range strings.Split(string(dump), "\n") {
			switch {
			case strings.HasPrefix(line, "*"):
				flush()
				table, tableNew, tableRules, isNew = line[1:], nil, nil, map[string]bool{}
			case strings.HasPrefix(line, ":"):
				c := strings.Fields(line[1:])[0]
				if ours(c) && !n.host.chains[fam+"/"+table][c] {
					tableNew = append(tableNew, c)
					isNew[c] = true
				}
			case strings.HasPrefix(line, "-A "):
				f := strings.Fields(line)
				// Rules in old chains that lead to a new one; new chains are flushed whole.
				if isNew[f[1]] {
					continue
				}
				for i := 2; i+1 < len(f); i++ {
					if (f[i] == "-j" || f[i] == "-g") && isNew[f[i+1]] {
						tableRules = append(tableRules, strings.TrimPrefix(line, "-A "))
						break
					}
				}
			}
		}
		flush()
		if script.Len() == 0 {
			continue
		}
		cmd := exec.Command(fam+"-restore", "--noflush", "-w")
		cmd.Stdin = strings.NewReader(script.String())
		if out, err := cmd.CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("%s-restore: %v: %s\n%s", fam, err, out, script.String()))
		}
	}
	return errs
}

// cgroupDirs are the node's cgroup root in every mounted hierarchy.
func (n *RealNode) cgroupDirs() []string {
	var dirs []string
	for _, m := range mountinfo() {
		if m.fstype == "cgroup" || m.fstype == "cgroup2" {
			d := filepath.Join(m.point, n.cgroupRoot)
			if _, err := os.Stat(d); err == nil {
				dirs = append(dirs, d)
			}
		}
	}
	return dirs
}

// makeCgroupRoot makes the node's cgroup root in every hierarchy: kubelet
// requires it to exist and makes the kubepods tree under it.
func (n *RealNode) makeCgroupRoot() error {
	for _, m := range mountinfo() {
		if m.fstype != "cgroup" && m.fstype != "cgroup2" {
			continue
		}
		d := filepath.Join(m.point, n.cgroupRoot)
		if err := os.Mkdir(d, 0o755); err != nil && !os.IsExist(err) {
			return err
		}
		if m.fstype == "cgroup2" {
			// Children get the controllers the parent hands down.
			b, err := os.ReadFile(filepath.Join(m.point, "cgroup.controllers"))
			if err != nil {
				return err
			}
			var enable []string
			for _, c := range strings.Fields(string(b)) {
				enable = append(enable, "+"+c)
			}
			// Best effort: in a hybrid setup (cgroup2 beside v1, as on
			// this machine kind) kubelet does not use this hierarchy.
			_ = os.WriteFile(filepath.Join(d, "cgroup.subtree_control"), []byte(strings.Join(enable, " ")), 0o644)
		}
	}
	return nil
}

// killCgroupProcs kills what still runs in the node's cgroups: only pods'
// processes live there.
func (n *RealNode) killCgroupProcs() {
	for _, d := range n.cgroupDirs() {
		_ = filepath.WalkDir(d, func(p string, e os.DirEntry, err error) error {
			if err != nil || e.IsDir() || e.Name() != "cgroup.procs" {
				return nil
			}
			b, _ := os.ReadFile(p)
			for _, f := range strings.Fields(string(b)) {
				var pid int
				if _, err := fmt.Sscan(f, &pid); err == nil && pid > 1 {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			return nil
		})
	}
}

// removeCgroups removes the node's cgroup tree, leaves first.
func (n *RealNode) removeCgroups() []error {
	var errs []error
	for _, d := range n.cgroupDirs() {
		var all []string
		_ = filepath.WalkDir(d, func(p string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				all = append(all, p)
			}
			return nil
		})
		sort.Sort(sort.Reverse(sort.StringSlice(all)))
		for _, p := range all {
			if err := syscall.Rmdir(p); err != nil && !os.IsNotExist(err) {
				errs = append(errs, fmt.Errorf("rmdir %s: %w", p, err))
			}
		}
	}
	return errs
}

// logLinks are kubelet's links in /var/log/containers to this node's logs.
func (n *RealNode) logLinks() []string {
	entries, _ := os.ReadDir("/var/log/containers")
	var out []string
	for _, e := range entries {
		p := filepath.Join("/var/log/containers", e.Name())
		if t, err := os.Readlink(p); err == nil && strings.HasPrefix(t, n.Dir+"/") {
			out = append(out, p)
		}
	}
	return out
}

// Leftovers lists what the node has left on the host: processes, mounts,
// cgroups, the bridge, iptables chains, changed
// sysctls, log links. Empty once the cluster has stopped cleanly.
func (n *RealNode) Leftovers() []string {
	var left []string
	if ps, err := proc.In(n.Dir); err == nil && len(ps) > 0 {
		left = append(left, "processes: "+strings.Join(ps, ", "))
	}
	if ms := mountsUnder(n.Dir); len(ms) > 0 {
		left = append(left, "mounts: "+strings.Join(ms, ", "))
	}
	if ds := n.cgroupDirs(); len(ds) > 0 {
		left = append(left, "cgroups: "+strings.Join(ds, ", "))
	}
	if _, err := net.InterfaceByName(n.Bridge); err == nil {
		left = append(left, "bridge "+n.Bridge)
	}
	if exec.Command("iptables", n.forwardRule("-C")...).Run() == nil {
		left = append(left, "iptables rule "+strings.Join(n.forwardRule("-A")[1:], " "))
	}
	for table, chains := range iptablesChains() {
		for c := range chains {
			if ours(c) && !n.host.chains[table][c] {
				left = append(left, "chain "+table+"/"+c)
			}
		}
	}
	for s, v := range n.host.sysctls {
		if b, err := os.ReadFile("/proc/sys/" + s); err == nil && strings.TrimSpace(string(b)) != v {
			left = append(left, fmt.Sprintf("sysctl %s=%s (was %s)", s, strings.TrimSpace(string(b)), v))
		}
	}
	if ls := n.logLinks(); len(ls) > 0 {
		left = append(left, "log links: "+strings.Join(ls, ", "))
	}
	// kubelet's own dirs, if it made them (another node on this host could, too).
	for _, d := range []string{"/var/log/containers", "/var/log/pods", "/var/lib/kubelet"} {
		if _, err := os.Stat(d); err == nil && !n.host.dirs[d] {
			left = append(left, "dir "+d)
		}
	}
	return left
}

type mount struct{ point, fstype string }

// mountinfo lists this process's mounts.
func mountinfo() []mount {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []mount
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root point options [optional...] - fstype source superoptions
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields, pf := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 5 || len(pf) < 1 {
			continue
		}
		out = append(out, mount{point: unescapeMount(fields[4]), fstype: pf[0]})
	}
	return out
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space, …).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%o", &c); err == nil {
				b.WriteByte(c)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func mountsUnder(dir string) []string {
	var out []string
	for _, m := range mountinfo() {
		if strings.HasPrefix(m.point, dir+"/") {
			out = append(out, m.point)
		}
	}
	return out
}

// hostLockWait bounds how long a real node waits for another one's test.
const hostLockWait = 30 * time.Minute

// lockHost takes the host's real-node lock, waiting while another test's
// real node runs: kube-proxy owns the host's KUBE-* iptables chains (it
// rewrites them whole and drops chains it does not know) and a node's
// teardown restores the host as it found it, so two real nodes at once
// break each other's Services. Closing the file releases it, as does the
// process's end.
func lockHost(ctx context.Context, logf func(string, ...any)) (*os.File, error) {
	path := filepath.Join(os.TempDir(), "drift-kube-real-node.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, hostLockWait)
	defer cancel()
	for waited := false; ; waited = true {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if !waited {
			logf("kube: another test's real node runs on this host; waiting for it (%s)", path)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("kube: another real node held %s for %s (one real node per host: kube-proxy owns the host's iptables chains): %w", path, hostLockWait, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}
