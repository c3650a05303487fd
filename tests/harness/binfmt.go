package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// binfmtDir is where the kernel's binfmt_misc is mounted.
const binfmtDir = "/proc/sys/fs/binfmt_misc"

// Binfmt makes the kernel run binaries of qemu's arch name (loongarch64,
// riscv64, …) under qemu-<name>-static, so the Docker Engine runs
// foreign-arch containers: it mounts binfmt_misc and registers the entry
// qemu-user-static ships in /usr/lib/binfmt.d (flags OPF: the kernel holds
// the interpreter open, so it works inside containers). Idempotent; needs
// root. The entry stays: other tests and CI register the same one.
func Binfmt(t testing.TB, name string) {
	t.Helper()
	if err := registerBinfmt(name); err != nil {
		RequireHeavy(t, fmt.Sprintf("cannot run %s binaries under emulation: %v (needs root and qemu-user-static)", name, err))
	}
}

func registerBinfmt(name string) error {
	if _, err := os.Stat(filepath.Join(binfmtDir, "register")); err != nil {
		if out, err := exec.Command("mount", "-t", "binfmt_misc", "binfmt_misc", binfmtDir).CombinedOutput(); err != nil {
			return fmt.Errorf("mount binfmt_misc: %v: %s", err, out)
		}
	}
	entry := filepath.Join(binfmtDir, "qemu-"+name)
	if _, err := os.Stat(entry); err != nil {
		conf, err := os.ReadFile(filepath.Join("/usr/lib/binfmt.d", "qemu-"+name+".conf"))
		if err != nil {
			return err
		}
		var line string
		for _, l := range strings.Split(string(conf), "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				line = l
			}
		}
		if err := os.WriteFile(filepath.Join(binfmtDir, "register"), []byte(line), 0); err != nil {
			return fmt.Errorf("register %s: %w", name, err)
		}
	}
	state, err := os.ReadFile(entry)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(string(state), "enabled") {
		return fmt.Errorf("%s is registered but %s", entry, strings.SplitN(string(state), "\n", 2)[0])
	}
	return nil
}
