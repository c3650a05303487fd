package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	goruntime "runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgedrift/drift/internal/devstack"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/runtime/runtimetest"
	"github.com/edgedrift/drift/workflows"
)

// serverEnv makes the test binary a Temporal server (and registry) instead
// of running tests: the sessions-held measurement runs the server in a
// process of its own so the worker's memory can be measured alone.
const serverEnv = "DRIFT_BENCH_SERVER_DIR"

// serveTemporal runs the dev stack (Temporal on SQLite + registry, no UI)
// in dir, prints "ready <temporal> <registry>" and serves until stdin
// closes (the parent ends it, or died).
func serveTemporal(dir string) int {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	stack, err := devstack.Start(context.Background(), devstack.Options{DataDir: dir, UIPort: -1, RegistryPort: 0, Logger: logger})
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench server:", err)
		return 1
	}
	fmt.Printf("ready %s %s\n", stack.Address(), stack.RegistryHost())
	_, _ = io.Copy(io.Discard, os.Stdin)
	stack.Stop()
	return 0
}

// server is the separate server process.
type server struct {
	cmd      *exec.Cmd
	stdin    io.Closer
	Address  string
	Registry string
}

// startServer runs this test binary as a server process on dir; it stops
// when the test ends.
func startServer(t testing.TB, dir string) *server {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), serverEnv+"="+dir)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, stdin: stdin}
	t.Cleanup(s.stop)
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "ready ") {
				lines <- sc.Text()
			}
		}
		close(lines)
	}()
	select {
	case line, ok := <-lines:
		f := strings.Fields(line)
		if !ok || len(f) != 3 {
			t.Fatalf("bench server did not start (%q)", line)
		}
		s.Address, s.Registry = f[1], f[2]
	case <-time.After(2 * time.Minute):
		t.Fatal("bench server did not start within 2 minutes")
	}
	return s
}

// stop closes the server's stdin and waits for it, killing it (by its own
// pid) if it does not stop within 30 s.
func (s *server) stop() {
	s.stdin.Close()
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
}

// Pid is the server process's id.
func (s *server) Pid() int { return s.cmd.Process.Pid }

// memory is one reading of a process's memory.
type memory struct {
	Heap       uint64 // live Go heap after a full GC (HeapAlloc)
	Stacks     uint64 // goroutine stacks (StackInuse)
	Goroutines int
	RSS        uint64 // resident set size from /proc
}

// Live is heap plus stacks: what the worker holds for its sessions.
func (m memory) Live() uint64 { return m.Heap + m.Stacks }

// readMemory collects garbage and reads this process's memory.
func readMemory() memory {
	for range 3 {
		goruntime.GC()
	}
	debug.FreeOSMemory()
	var ms goruntime.MemStats
	goruntime.ReadMemStats(&ms)
	return memory{Heap: ms.HeapAlloc, Stacks: ms.StackInuse, Goroutines: goruntime.NumGoroutine(), RSS: rss("self")}
}

// rss reads VmRSS of /proc/<pid>/status in bytes (0 when unknown).
func rss(pid string) uint64 {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) == 2 && f[1] == "kB" {
				n, _ := strconv.ParseUint(f[0], 10, 64)
				return n * 1024
			}
		}
	}
	return 0
}

// heldPoint is the memory with some number of sessions open.
type heldPoint struct {
	Sessions  int
	OpenTime  time.Duration // to open the sessions added since the last point
	Opened    int           // sessions added since the last point
	Worker    memory
	ServerRSS uint64
}

// held is the result of the sessions-held measurement.
type held struct {
	Baseline       heldPoint
	Points         []heldPoint
	InstantRecord  float64 // bytes the instant runtime keeps per instance
	CacheSize      int     // the SDK's sticky workflow cache size in effect
	Concurrency    int
	Note           string // why the levels differ from the ones asked, if they do
	WarmupSessions int
}

// perSession is the worker's live memory per open session at p.
func (h held) perSession(p heldPoint) float64 {
	return (float64(p.Worker.Live()) - float64(h.Baseline.Worker.Live())) / float64(p.Sessions)
}

// measureHeld opens sessions on instant clouds, pre-deploying nothing, up
// to each level in turn, and reads the worker's memory once they all serve.
// The Temporal server and registry run in a separate process so the
// worker's own memory is what this process holds. A level whose opening
// would take longer than budget at the rate seen so far is replaced by
// fallback (and noted).
func measureHeld(t *testing.T, levels []int, fallback int, budget time.Duration) held {
	srv := startServer(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), budget+10*time.Minute)
	defer cancel()
	c := dial(t, srv.Address) // closed after the workers stop, before the server
	ref := tinyImage(t, srv.Registry)
	topo := parseTopology(t, scaleTopology)
	e := startEnv(t, c, topo, []string{"center", "inst-a", "inst-b"}, srv.Registry, ref, t.TempDir())
	h := held{CacheSize: 10000, Concurrency: 32, WarmupSessions: 50}

	// Warm the worker, client and server up with sessions that then exit,
	// so the baseline holds every pool and cache that does not grow with
	// the number of sessions.
	if err := openSessions(ctx, e, "warm", 0, h.WarmupSessions, h.Concurrency); err != nil {
		t.Fatal(err)
	}
	for i := range h.WarmupSessions {
		if _, err := e.exit(ctx, fmt.Sprintf("warm%05d", i)); err != nil {
			t.Fatal(err)
		}
	}

	// What the instant runtime itself keeps per instance: measured on a
	// throwaway runtime holding as many records as a session's instance.
	{
		before := readMemory()
		scratch := runtimetest.NewInstant("inst-a")
		const n = 2000
		for i := range n {
			name := runtime.InstanceName("hello", fmt.Sprintf("u%05d", i), "inst-a")
			spec := e.spec.RuntimeSpec("inst-a", map[string]string{runtime.LabelWorkflow: names.SessionID(fmt.Sprintf("u%05d", i), "hello"), runtime.LabelCloud: "inst-a"})
			spec.Image = ref
			if _, err := scratch.Deploy(ctx, name, spec); err != nil {
				t.Fatal(err)
			}
		}
		after := readMemory()
		h.InstantRecord = (float64(after.Heap) - float64(before.Heap)) / n
		goruntime.KeepAlive(scratch)
	}

	h.Baseline = heldPoint{Worker: readMemory(), ServerRSS: rss(strconv.Itoa(srv.Pid()))}
	open := 0
	var spent time.Duration
	for li, level := range levels {
		if li > 0 && open > 0 {
			projected := time.Duration(float64(spent) / float64(open) * float64(level))
			if projected > budget && fallback > open && fallback < level {
				h.Note = fmt.Sprintf("%d sessions were not opened: at the rate seen for the first %d (%.0f/s) they would take about %s, over the %s budget; measured %d instead",
					level, open, float64(open)/spent.Seconds(), projected.Round(time.Second), budget, fallback)
				level = fallback
			}
		}
		start := time.Now()
		if err := openSessions(ctx, e, "u", open, level, h.Concurrency); err != nil {
			t.Fatalf("opening sessions %d..%d: %v", open, level, err)
		}
		took := time.Since(start)
		spent += took
		if got := e.instants["inst-a"].Len(); got != level {
			t.Fatalf("%d sessions open but inst-a holds %d instances", level, got)
		}
		p := heldPoint{Sessions: level, Opened: level - open, OpenTime: took, Worker: readMemory(), ServerRSS: rss(strconv.Itoa(srv.Pid()))}
		open = level
		h.Points = append(h.Points, p)
		t.Logf("%d sessions open (+%d in %s): worker heap %d MiB, stacks %d MiB, %d goroutines, %.1f KiB/session",
			level, p.Opened, took.Round(time.Millisecond), p.Worker.Heap>>20, p.Worker.Stacks>>20, p.Worker.Goroutines, h.perSession(p)/1024)
	}
	// Spot-check that sessions serve and are quiet.
	for _, i := range []int{0, open / 2, open - 1} {
		st, err := e.quiet(ctx, fmt.Sprintf("u%05d", i))
		if err != nil || st.Serving != "inst-a" {
			t.Fatalf("session u%05d: serving %q, %v", i, st.Serving, err)
		}
	}
	// The sessions are not exited one by one: the server process and its
	// SQLite file are discarded when the test ends, and the instant runtime
	// holds nothing real.
	return h
}

// openSessions opens sessions prefix<from>…prefix<to-1> in region ia with
// conc concurrent callers; each returns once its session serves.
func openSessions(ctx context.Context, e *env, prefix string, from, to, conc int) error {
	var next atomic.Int64
	next.Store(int64(from))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= to {
					return
				}
				mu.Lock()
				failed := first != nil
				mu.Unlock()
				if failed {
					return
				}
				if _, err := e.open(ctx, fmt.Sprintf("%s%05d", prefix, i), "ia", workflows.PreDeployNone); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}
