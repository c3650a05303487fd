package harness

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgedrift/drift/internal/runtime/proxy"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// Binaries builds drift and drift-worker once per test binary, into a temp
// dir that Main removes (make it the package's TestMain).
func Binaries(t testing.TB) (drift, driftWorker string) {
	t.Helper()
	buildOnce.Do(buildBinaries)
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "drift"), filepath.Join(binDir, "drift-worker")
}

// PrebuildBinaries starts building drift's binaries in the background,
// for a test with other slow things to start first; Binaries waits for it.
func PrebuildBinaries() { go buildOnce.Do(buildBinaries) }

// buildBinaries builds both binaries at once (the links overlap).
func buildBinaries() {
	if binDir, buildErr = os.MkdirTemp("", "drift-e2e-bin"); buildErr != nil {
		return
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, b := range [][2]string{{"drift", "./starter"}, {"drift-worker", "./worker"}} {
		wg.Go(func() {
			cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, b[0]), b[1])
			cmd.Dir = RepoRoot()
			if out, err := cmd.CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("build %s: %v\n%s", b[0], err, out)
			}
		})
	}
	wg.Wait()
	buildErr = errors.Join(errs...)
}

// Main runs a package's tests, then removes the binaries Binaries built
// for them; it is the TestMain of packages that start drift's binaries or
// run workers (which may start this binary again as an endpoint's proxy).
func Main(m *testing.M) {
	proxy.Main()
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// Proc is a started binary whose output is watched.
type Proc struct {
	Cmd   *exec.Cmd
	mu    sync.Mutex
	out   strings.Builder
	lines chan string
	done  chan error
}

// Start runs bin in its own process group; the test's end kills the group.
func Start(t testing.TB, bin string, args ...string) *Proc {
	t.Helper()
	return StartEnv(t, nil, bin, args...)
}

// StartEnv is Start with env (KEY=VALUE) added to the test's environment.
func StartEnv(t testing.TB, env []string, bin string, args ...string) *Proc {
	t.Helper()
	p := &Proc{Cmd: exec.Command(bin, args...), lines: make(chan string, 1024), done: make(chan error, 1)}
	if env != nil {
		p.Cmd.Env = append(os.Environ(), env...)
	}
	p.Cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	r, w := io.Pipe()
	p.Cmd.Stdout, p.Cmd.Stderr = w, w
	if err := p.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			p.mu.Lock()
			p.out.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
	}()
	go func() { p.done <- p.Cmd.Wait(); w.Close() }()
	t.Cleanup(func() {
		syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(bin), p.Output())
		}
	})
	return p
}

// Output is everything the process printed so far.
func (p *Proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// WaitFor waits until the process prints a line containing s.
func (p *Proc) WaitFor(t testing.TB, s string, timeout time.Duration) string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case line := <-p.lines:
			if strings.Contains(line, s) {
				return line
			}
		case err := <-p.done:
			p.done <- err
			t.Fatalf("process exited (%v) before printing %q:\n%s", err, s, p.Output())
		case <-deadline:
			t.Fatalf("no %q after %s:\n%s", s, timeout, p.Output())
		}
	}
}

// Wait waits for the process to exit and returns how it exited.
func (p *Proc) Wait(timeout time.Duration) (exited bool, err error) {
	select {
	case err := <-p.done:
		p.done <- err
		return true, err
	case <-time.After(timeout):
		return false, nil
	}
}

// FreePort is a free loopback TCP port.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// HTTPGet returns status, content type and body of a GET.
func HTTPGet(t testing.TB, url string) (int, string, string) {
	t.Helper()
	return httpDo(t, http.MethodGet, url)
}

// HTTPPost returns status, content type and body of a POST without a body.
func HTTPPost(t testing.TB, url string) (int, string, string) {
	t.Helper()
	return httpDo(t, http.MethodPost, url)
}

func httpDo(t testing.TB, method, url string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
}

// ProcessesUnder counts live processes whose executable lies under dir.
func ProcessesUnder(t testing.TB, dir string) int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err == nil && strings.HasPrefix(exe, dir+"/") {
			n++
		}
	}
	return n
}

// StartWorker starts the drift-worker binary against the Temporal server at
// address, without metrics and with text logs, and waits until it polls.
func StartWorker(t testing.TB, driftWorker, address string, args ...string) *Proc {
	t.Helper()
	w := Start(t, driftWorker, append([]string{"--address", address, "--metrics-addr", "", "--log-format", "text"}, args...)...)
	w.WaitFor(t, "worker polling", time.Minute)
	return w
}
