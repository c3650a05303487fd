// Package e2e drives the built drift and drift-worker binaries as a user
// would: real processes, real Temporal, real signals.
package e2e

import (
	"bufio"
	"context"
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

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/edgedrift/drift/internal/config"
	"github.com/edgedrift/drift/tests/harness"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds drift and drift-worker once per test run.
func binaries(t *testing.T) (drift, driftWorker string) {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "drift-e2e-bin")
		if buildErr != nil {
			return
		}
		for name, pkg := range map[string]string{"drift": "./starter", "drift-worker": "./worker"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, name), pkg)
			cmd.Dir = harness.RepoRoot()
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("build %s: %v\n%s", name, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "drift"), filepath.Join(binDir, "drift-worker")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// proc is a started binary whose output is watched.
type proc struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	out   strings.Builder
	lines chan string
	done  chan error
}

func start(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), lines: make(chan string, 1024), done: make(chan error, 1)}
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	r, w := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = w, w
	if err := p.cmd.Start(); err != nil {
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
	go func() { p.done <- p.cmd.Wait(); w.Close() }()
	t.Cleanup(func() {
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(bin), p.output())
		}
	})
	return p
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// waitFor waits until the process prints a line containing s.
func (p *proc) waitFor(t *testing.T, s string, timeout time.Duration) string {
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
			t.Fatalf("process exited (%v) before printing %q:\n%s", err, s, p.output())
		case <-deadline:
			t.Fatalf("no %q after %s:\n%s", s, timeout, p.output())
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func httpGet(t *testing.T, url string) (int, string, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
}

// waitForGo blocks until signalled: a workflow that must outlive a crash.
func waitForGo(ctx workflow.Context) (string, error) {
	var who string
	workflow.GetSignalChannel(ctx, "go").Receive(ctx, &who)
	return "released by " + who, nil
}

// `drift dev` serves Temporal, the UI and the registry; after a SIGKILL and
// a restart on the same data dir, a workflow started before the kill is
// still running and completes.
func TestDevSurvivesKill(t *testing.T) {
	drift, _ := binaries(t)
	dataDir := t.TempDir()
	port, uiPort, regPort := freePort(t), freePort(t), freePort(t)
	args := []string{"dev", "--data-dir", dataDir, "--port", fmt.Sprint(port), "--ui-port", fmt.Sprint(uiPort),
		"--registry-port", fmt.Sprint(regPort), "--fog-runtime", "process"}
	dev := start(t, drift, args...)
	dev.waitFor(t, "drift dev is up", 2*time.Minute)

	if code, ctype, body := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/", uiPort)); code != 200 || !strings.HasPrefix(ctype, "text/html") || !strings.Contains(body, "<html") {
		t.Fatalf("UI: %d %s", code, ctype)
	}
	if code, _, body := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/v2/", regPort)); code != 200 {
		t.Fatalf("registry /v2/: %d %s", code, body)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tc := config.Temporal{Address: fmt.Sprintf("127.0.0.1:%d", port), Namespace: "default"}
	c, err := tc.Dial(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "e2e/kill", TaskQueue: "e2e"}, waitForGo)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()

	if err := syscall.Kill(-dev.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-dev.done
	dev = start(t, drift, args...)
	dev.waitFor(t, "drift dev is up", 2*time.Minute)

	c, err = tc.Dial(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	desc, err := c.DescribeWorkflowExecution(ctx, run.GetID(), run.GetRunID())
	if err != nil {
		t.Fatalf("workflow lost across kill: %v", err)
	}
	if s := desc.GetWorkflowExecutionInfo().GetStatus().String(); s != "Running" {
		t.Fatalf("status after restart = %s", s)
	}
	w := worker.New(c, "e2e", worker.Options{})
	w.RegisterWorkflow(waitForGo)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if err := c.SignalWorkflow(ctx, run.GetID(), "", "go", "e2e"); err != nil {
		t.Fatal(err)
	}
	var got string
	if err := c.GetWorkflow(ctx, run.GetID(), run.GetRunID()).Get(ctx, &got); err != nil || got != "released by e2e" {
		t.Fatalf("result %q, %v", got, err)
	}

	// Ctrl-C stops it cleanly.
	syscall.Kill(dev.cmd.Process.Pid, syscall.SIGINT)
	select {
	case err := <-dev.done:
		if err != nil {
			t.Fatalf("drift dev exited with %v after SIGINT", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("drift dev did not stop on SIGINT")
	}
}
