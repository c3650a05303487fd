package proc

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Build makes sure dir holds what a harness runs: when missing(dir) names
// anything, it runs the harness's build script (bash) with binEnv=dir, which
// builds into dir (minutes when cold), and checks again. logf receives
// progress. The error says what is missing and why it could not be built.
func Build(script, binEnv, dir string, missing func(dir string) []string, logf func(format string, args ...any)) error {
	m := missing(dir)
	if len(m) == 0 {
		return nil
	}
	if _, err := os.Stat(script); err != nil {
		return fmt.Errorf("%s lacks %s and %s is not there to build them: %v", dir, strings.Join(m, ", "), script, err)
	}
	logf("%s lacks %s; running %s (a cold build takes minutes)", dir, strings.Join(m, ", "), script)
	cmd := exec.Command("bash", script)
	cmd.Env = append(os.Environ(), binEnv+"="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s failed: %v\n%s", script, err, Tail(string(out), 40))
	}
	logf("%s", strings.TrimSpace(Tail(string(out), 8)))
	if m := missing(dir); len(m) > 0 {
		return fmt.Errorf("%s still lacks %s after %s", dir, strings.Join(m, ", "), filepath.Base(script))
	}
	return nil
}

// IsExecutable reports whether p is a regular file with an execute bit.
func IsExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// StampsDiffer lists, for each stamp file in dir that a build script wrote,
// the version wanted when the file names another one. A dir filled by other
// means has no stamps and passes.
func StampsDiffer(dir string, want map[string]string) []string {
	var out []string
	for stamp, v := range want {
		if b, err := os.ReadFile(filepath.Join(dir, stamp)); err == nil && strings.TrimSpace(string(b)) != v {
			out = append(out, fmt.Sprintf("%s (built for %s)", v, strings.TrimSpace(string(b))))
		}
	}
	return out
}
