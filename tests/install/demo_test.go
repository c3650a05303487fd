package install

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgedrift/drift/tests/harness"
)

// nobody is the unprivileged user the demo runs as when the tests run as
// root.
const nobody = 65534

// `drift dev --demo=install` is one command without root: the stack, four
// agents on loopback, a signed package and two fleet rollouts with an
// error budget (the agent that trusts no signer fails the first within its
// budget and stops the second), then the inventory.
func TestDevInstallDemoWithoutRoot(t *testing.T) {
	drift, _ := harness.Binaries(t)
	// A directory of its own that the unprivileged user can read and write.
	dir, err := os.MkdirTemp("", "drift-install-demo-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin, dataDir := filepath.Join(dir, "drift"), filepath.Join(dir, "data")
	body, err := os.ReadFile(drift)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, body, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := []string{bin, "dev", "--demo=install", "--data-dir", dataDir, "--fog-runtime", "process",
		"--demo-listen", fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))}
	for _, flag := range []string{"--port", "--ui-port", "--registry-port", "--api-port", "--repo-port", "--gateway-port"} {
		cmd = append(cmd, flag, fmt.Sprint(harness.FreePort(t)))
	}
	if os.Geteuid() == 0 {
		for _, p := range []string{dir, dataDir} {
			if err := os.Chown(p, nobody, nobody); err != nil {
				t.Fatal(err)
			}
		}
		os.Chmod(dir, 0o755)
		cmd = append([]string{"setpriv", fmt.Sprintf("--reuid=%d", nobody), fmt.Sprintf("--regid=%d", nobody), "--clear-groups"}, cmd...)
	}
	dev := harness.StartEnv(t, []string{"HOME=" + dir}, cmd[0], cmd[1:]...)
	dev.WaitFor(t, "drift dev is up", 5*time.Minute)
	if uid := processUID(t, dev.Cmd.Process.Pid); uid == 0 {
		t.Fatal("the demo runs as root")
	}
	dev.WaitFor(t, "Press Ctrl-C to stop.", 10*time.Minute)
	out := dev.Output()
	t.Log(out)
	for _, want := range []string{
		"published greeter@1.0.0 (linux/amd64), signed by publisher ", "published greeter@1.1.0 (linux/amd64), signed by publisher ",
		"4 agents registered from 127.0.0.11-14 with role=web; demo-vm-3 trusts no key that signed greeter",
		"done — install greeter@1.0.0 (linux/amd64) on 4 VMs (role=web): 3 succeeded, 1 failed, 0 skipped",
		"stopped — update greeter@1.1.0 (linux/amd64) on 4 VMs (role=web): 2 succeeded, 1 failed, 1 skipped",
		"refused: greeter@1.0.0 (linux/amd64): not signed by a trusted key",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	// What each VM has live, as the inventory says and on disk.
	for vm, want := range map[string]string{"demo-vm-1": "1.1.0", "demo-vm-2": "1.1.0", "demo-vm-3": "", "demo-vm-4": "1.0.0"} {
		have := "-"
		if want != "" {
			have = "greeter@" + want
		}
		if !regexp.MustCompile(vm + `\s+127\.0\.0\.\d+\s+role=web\s+` + regexp.QuoteMeta(have) + "\n").MatchString(out) {
			t.Errorf("the inventory does not show %s with %s", vm, have)
		}
		if got := live(filepath.Join(dataDir, "install-demo", "vms", vm)); got != want {
			t.Errorf("%s: live %q, want %q", vm, got, want)
		}
	}

	syscall.Kill(dev.Cmd.Process.Pid, syscall.SIGINT)
	if exited, err := dev.Wait(30 * time.Second); !exited || err != nil {
		t.Fatalf("drift dev after SIGINT: exited=%v err=%v", exited, err)
	}
	if n := harness.ProcessesUnder(t, dir); n != 0 {
		t.Errorf("%d processes of the demo still run", n)
	}
}

// processUID is the real user id process pid runs as.
func processUID(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" {
			var uid int
			fmt.Sscan(f[1], &uid)
			return uid
		}
	}
	t.Fatal("no Uid in /proc status")
	return -1
}
