// Package proxy keeps stable endpoints on clouds that have none of their
// own (Docker hosts, boxes running processes): one small reverse proxy
// process per endpoint, on a loopback port that never changes, sending to
// one instance's endpoint at a time. A Kubernetes cloud uses a Service
// instead (the kubernetes runtime is its own runtime.Router).
//
// The proxy is drift's own executable started again: a program that may
// run proxies calls Main first thing (drift, drift-worker and the test
// binaries that run workers do). It runs in its own session, so it outlives
// the worker that started it, and its state lives in one directory per
// endpoint:
//
//	<dir>/<name>/route.json    what it should send to: instance, backend URL, port, labels, generation
//	<dir>/<name>/applied.json  what it sends to now (written by the proxy): generation, pid
//	<dir>/<name>/log           its log
//
// A switch rewrites route.json and signals the proxy (SIGHUP), which swaps
// the backend in one atomic store: requests under way finish on the old
// backend, every later one goes to the new. Route returns once applied.json
// shows the new generation. A proxy found dead is started again on the
// same port.
package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/edgedrift/drift/internal/runtime"
)

// envDir names the endpoint directory a proxy process serves.
const envDir = "DRIFT_PROXY_DIR"

// argv0 starts the command line of every proxy process, which is how Unroute
// knows a recorded pid is still the proxy.
const argv0 = "drift-proxy"

// route is route.json.
type route struct {
	Name       string            `json:"name"`
	Instance   string            `json:"instance"`
	Backend    string            `json:"backend"`
	Port       int               `json:"port"`
	Labels     map[string]string `json:"labels,omitempty"`
	Generation int               `json:"generation"`
}

// applied is applied.json.
type applied struct {
	Generation int `json:"generation"`
	PID        int `json:"pid"`
}

// Router is a runtime.Router of proxy processes in a directory, sending to
// the instances of rt.
type Router struct {
	dir   string
	cloud string
	rt    runtime.Runtime
	mu    sync.Mutex
}

var _ runtime.Router = (*Router)(nil)

// New returns a router keeping its endpoints under dir.
func New(dir, cloud string, rt runtime.Runtime) (*Router, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("endpoints: %w", err)
	}
	return &Router{dir: dir, cloud: cloud, rt: rt}, nil
}

// Route points endpoint name at instance, starting its proxy when needed.
func (r *Router) Route(ctx context.Context, name, instance string, labels map[string]string) (runtime.Route, error) {
	if err := runtime.ValidateName(name); err != nil {
		return runtime.Route{}, err
	}
	st, err := r.rt.Status(ctx, instance)
	if err != nil {
		return runtime.Route{}, err
	}
	if !st.Exists || st.Endpoint.URL == "" {
		return runtime.Route{}, fmt.Errorf("%w: route %s: instance %s has no endpoint (%s)", runtime.ErrInvalid, name, instance, st.Message)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	dir := filepath.Join(r.dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return runtime.Route{}, err
	}
	rt, _ := readJSON[route](filepath.Join(dir, "route.json"))
	if rt.Port == 0 {
		if rt.Port, err = freePort(); err != nil {
			return runtime.Route{}, err
		}
	}
	l := runtime.OwnedLabels(name, labels)
	delete(l, runtime.LabelInstance)
	l[runtime.LabelEndpoint] = name
	if r.cloud != "" {
		l[runtime.LabelCloud] = runtime.LabelValue(r.cloud)
	}
	rt = route{Name: name, Instance: instance, Backend: st.Endpoint.URL, Port: rt.Port, Labels: l, Generation: rt.Generation + 1}
	if err := writeJSON(filepath.Join(dir, "route.json"), rt); err != nil {
		return runtime.Route{}, err
	}
	pid := alive(dir)
	if pid > 0 {
		err = syscall.Kill(pid, syscall.SIGHUP)
	}
	if pid == 0 || err != nil {
		if err := start(dir); err != nil {
			return runtime.Route{}, err
		}
	}
	if err := waitApplied(ctx, dir, rt.Generation); err != nil {
		return runtime.Route{}, fmt.Errorf("route %s: %w; log:\n%s", name, err, tail(filepath.Join(dir, "log")))
	}
	return rt.public(), nil
}

func (rt route) public() runtime.Route {
	return runtime.Route{Name: rt.Name, Instance: rt.Instance, Labels: rt.Labels, Endpoint: runtime.Endpoint{
		URL: "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(rt.Port)), Host: "127.0.0.1", Port: rt.Port}}
}

// Routes lists the endpoints whose labels match selector.
func (r *Router) Routes(ctx context.Context, selector map[string]string) ([]runtime.Route, error) {
	ents, err := os.ReadDir(r.dir)
	if err != nil {
		return nil, err
	}
	sel := runtime.Selector(selector)
	out := []runtime.Route{}
	for _, e := range ents {
		rt, err := readJSON[route](filepath.Join(r.dir, e.Name(), "route.json"))
		if err == nil && runtime.Matches(rt.Labels, sel) {
			out = append(out, rt.public())
		}
	}
	return out, nil
}

// Unroute stops the endpoint's proxy and removes its directory.
func (r *Router) Unroute(ctx context.Context, name string) error {
	if err := runtime.ValidateName(name); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	dir := filepath.Join(r.dir, name)
	if pid := alive(dir); pid > 0 {
		syscall.Kill(pid, syscall.SIGTERM)
		for alive(dir) > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return os.RemoveAll(dir)
}

// alive is the pid of the proxy serving dir, or 0 when none runs.
func alive(dir string) int {
	a, err := readJSON[applied](filepath.Join(dir, "applied.json"))
	if err != nil || a.PID <= 0 {
		return 0
	}
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(a.PID), "cmdline"))
	if err != nil || string(cmdline) != argv0+"\x00"+dir+"\x00" {
		return 0
	}
	return a.PID
}

// start starts the proxy process of dir in its own session.
func start(dir string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(dir, "log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := &exec.Cmd{Path: exe, Args: []string{argv0, dir}, Env: []string{envDir + "=" + dir}, Dir: dir,
		Stdout: logf, Stderr: logf, SysProcAttr: &syscall.SysProcAttr{Setsid: true}}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start proxy: %w", err)
	}
	go cmd.Wait() // reap it if it ends while this process lives
	return nil
}

func waitApplied(ctx context.Context, dir string, gen int) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		a, _ := readJSON[applied](filepath.Join(dir, "applied.json"))
		if a.Generation >= gen && alive(dir) > 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the proxy did not take generation %d: %w", gen, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Main serves as a proxy and exits when this process was started as one;
// otherwise it returns at once.
func Main() {
	dir := os.Getenv(envDir)
	if dir == "" || len(os.Args) != 2 || os.Args[0] != argv0 {
		return
	}
	if err := serve(dir); err != nil {
		fmt.Fprintln(os.Stderr, "drift-proxy:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// serve proxies to the backend route.json names, swapping it on SIGHUP,
// until SIGTERM.
func serve(dir string) error {
	var backend atomic.Pointer[url.URL]
	load := func() (route, error) {
		rt, err := readJSON[route](filepath.Join(dir, "route.json"))
		if err != nil {
			return rt, err
		}
		u, err := url.Parse(rt.Backend)
		if err != nil {
			return rt, err
		}
		backend.Store(u)
		return rt, writeJSON(filepath.Join(dir, "applied.json"), applied{Generation: rt.Generation, PID: os.Getpid()})
	}
	hup := make(chan os.Signal, 1)
	term := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
	rt, err := readJSON[route](filepath.Join(dir, "route.json"))
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(rt.Port)))
	if err != nil {
		return err
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 64
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(backend.Load())
			pr.Out.Host = pr.In.Host
		},
		Transport: transport,
	}
	if _, err := load(); err != nil {
		return err
	}
	srv := &http.Server{Handler: proxy, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	fmt.Printf("%s serving %s on %s\n", time.Now().UTC().Format(time.RFC3339), rt.Name, ln.Addr())
	for {
		select {
		case <-hup:
			rt, err := load()
			if err != nil {
				fmt.Println("reload:", err)
				continue
			}
			fmt.Printf("%s %s → %s (%s, generation %d)\n", time.Now().UTC().Format(time.RFC3339), rt.Name, rt.Instance, rt.Backend, rt.Generation)
		case <-term:
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return srv.Shutdown(ctx)
		}
	}
}

func readJSON[T any](path string) (T, error) {
	var v T
	b, err := os.ReadFile(path)
	if err == nil {
		err = json.Unmarshal(b, &v)
	}
	return v, err
}

// writeJSON replaces a file atomically.
func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(path string) string {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "(no log)"
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-10):], "\n")
}
