package runtimes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/runtime/process"
	"github.com/edgedrift/drift/internal/runtime/runtimetest"
	"github.com/edgedrift/drift/tests/harness"
)

func TestProcess(t *testing.T) {
	reg := harness.Registry(t)
	v1 := harness.HelloImage(t, reg, "v1")
	v2 := harness.HelloImage(t, reg, "v2")
	web, store := harness.CounterImages(t, reg, "v1")

	cloud := runtimetest.UniqueName("edge")
	prefix := runtimetest.UniqueName("pr")
	dir := t.TempDir()
	rt := newProcess(t, dir, cloud)
	spec := runtime.Spec{Image: v1, Port: 8080, Health: "/healthz", Env: map[string]string{"DRIFT_CLOUD": cloud}}

	t.Cleanup(func() {
		// Last line of defence: report and kill anything still running
		// from the state directory.
		for _, pid := range processesUnder(t, dir) {
			t.Errorf("process %d left running under %s", pid, dir)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})

	t.Run("conformance", func(t *testing.T) {
		runtimetest.Conformance(t, rt, runtimetest.Case{
			Image: v1, Image2: v2, Version: "v1", Version2: "v2", Web: web, Store: store,
			Cloud: cloud, Prefix: prefix + "-c", Serves: true,
			Leftovers: func(t *testing.T) []string { return leftovers(t, dir) },
		})
	})

	t.Run("a new runtime on the same dir takes over", func(t *testing.T) {
		name := prefix + "-restart"
		first := newProcess(t, dir, cloud)
		destroyAtEnd(t, first, name)
		ep := runtimetest.Deploy(t, first, name, spec, time.Minute)
		pid := recordedPID(t, dir, name)

		// The worker restarts: a new Runtime on the same directory.
		second := newProcess(t, dir, cloud)
		in, ok := runtimetest.Find(runtimetest.List(t, second, map[string]string{runtime.LabelCloud: cloud}), name)
		if !ok || !in.Ready || in.Endpoint != ep || in.Image != v1 {
			t.Fatalf("the new runtime lists %+v (found %v), want ready at %s", in, ok, ep.URL)
		}
		if st := runtimetest.Status(t, second, name); !st.Ready || st.Endpoint != ep {
			t.Errorf("the new runtime's Status: %+v", st)
		}
		if again := runtimetest.Deploy(t, second, name, spec, time.Minute); again != ep || recordedPID(t, dir, name) != pid {
			t.Errorf("the new runtime's Deploy of the same spec restarted it: %+v pid %d -> %+v", ep, pid, again)
		}
		if err := second.Destroy(context.Background(), name); err != nil {
			t.Fatal(err)
		}
		if alive(pid) {
			t.Errorf("pid %d still alive after Destroy", pid)
		}
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("instance directory left: %v", err)
		}
		if err := runtimetest.Get(ep.URL+"/healthz", nil); err == nil {
			t.Errorf("%s still answers", ep.URL)
		}
		if left := leftovers(t, dir); len(left) != 0 {
			t.Errorf("left behind: %v", left)
		}
	})

	t.Run("an instance outlives the worker that started it", func(t *testing.T) {
		name := prefix + "-orphan"
		destroyAtEnd(t, rt, name)
		// Run this test binary as a short-lived worker that deploys and exits.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		worker := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestProcessWorkerHelper$", "-test.v")
		worker.Env = append(os.Environ(), "DRIFT_HELPER_DIR="+dir, "DRIFT_HELPER_CLOUD="+cloud,
			"DRIFT_HELPER_NAME="+name, "DRIFT_HELPER_IMAGE="+v1)
		out, err := worker.CombinedOutput()
		if err != nil {
			t.Fatalf("worker: %v\n%s", err, out)
		}
		pid := recordedPID(t, dir, name)
		if !alive(pid) {
			t.Fatalf("instance process %d died with its worker", pid)
		}
		in, ok := runtimetest.Find(runtimetest.List(t, rt, nil), name)
		if !ok || !in.Ready || !strings.Contains(string(out), "ENDPOINT "+in.Endpoint.URL+"\n") {
			t.Fatalf("after the worker exited, List gives %+v (found %v); worker said:\n%s", in, ok, out)
		}
		runtimetest.ExpectServes(t, in.Endpoint, cloud, "v1")
		if err := rt.Destroy(ctx, name); err != nil {
			t.Fatal(err)
		}
		waitGone(t, pid)
		if left := leftovers(t, dir); len(left) != 0 {
			t.Errorf("left behind: %v", left)
		}
	})

	t.Run("concurrent deploys make one process", func(t *testing.T) {
		name := prefix + "-race"
		destroyAtEnd(t, rt, name)
		runtimetest.DeployConcurrently(t, name, spec, newProcess(t, dir, cloud), newProcess(t, dir, cloud), rt)
		if pids := processesUnder(t, filepath.Join(dir, name)); len(pids) != 1 {
			t.Errorf("processes of %s: %v, want one", name, pids)
		}
	})

	t.Run("a crashed process is started again by Deploy", func(t *testing.T) {
		name := prefix + "-crash"
		destroyAtEnd(t, rt, name)
		runtimetest.Deploy(t, rt, name, spec, time.Minute)
		pid := recordedPID(t, dir, name)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitGone(t, pid)
		if st := runtimetest.Status(t, rt, name); !st.Exists || st.Ready {
			t.Errorf("crashed: Status = %+v, want exists, not ready", st)
		}
		if in, _ := runtimetest.Find(runtimetest.List(t, rt, nil), name); in.Ready {
			t.Errorf("crashed: List says ready")
		}
		ep := runtimetest.Deploy(t, rt, name, spec, time.Minute)
		if recordedPID(t, dir, name) == pid {
			t.Error("same pid recorded after restart")
		}
		runtimetest.ExpectServes(t, ep, cloud, "v1")
	})

	t.Run("a failed deploy leaves nothing", func(t *testing.T) {
		name := prefix + "-broken"
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		bad := spec
		bad.Command = []string{"/no-such-binary"}
		_, err := rt.Deploy(ctx, name, bad)
		if err == nil {
			t.Fatal("Deploy of a command that is not in the image succeeded")
		}
		t.Logf("error, as wanted: %v", err)
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("instance directory left: %v", err)
		}
		// The same name with a command that exists (the entrypoint, given
		// explicitly) deploys fine.
		good := spec
		good.Command = []string{"/hello"}
		runtimetest.Deploy(t, rt, name, good, time.Minute)
		if err := rt.Destroy(ctx, name); err != nil {
			t.Fatal(err)
		}
		if _, err := rt.Deploy(ctx, name, runtime.Spec{Image: reg.Host() + "/no-such-image:v0", Port: 8080}); err == nil || errors.Is(err, runtime.ErrInvalid) {
			t.Errorf("Deploy of a missing image: %v", err)
		}
		if left := leftovers(t, dir); len(left) != 0 {
			t.Errorf("left behind: %v", left)
		}
	})

	t.Run("images are cached by digest", func(t *testing.T) {
		// Reach the registry through a proxy that counts requests.
		var hits atomic.Int64
		target, _ := url.Parse("http://" + reg.Host())
		rp := httputil.NewSingleHostReverseProxy(target)
		proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			rp.ServeHTTP(w, r)
		}))
		t.Cleanup(proxy.Close)
		ref := strings.Replace(v1, reg.Host(), strings.TrimPrefix(proxy.URL, "http://"), 1)
		cacheDir := t.TempDir()
		cached := newProcess(t, cacheDir, cloud)
		name := prefix + "-cache"
		destroyAtEnd(t, cached, name)

		s := spec
		s.Image = ref
		runtimetest.Deploy(t, cached, name, s, time.Minute)
		if hits.Load() == 0 {
			t.Fatal("the image was not fetched through the proxy")
		}
		if err := cached.Destroy(context.Background(), name); err != nil {
			t.Fatal(err)
		}
		fetched := hits.Load()
		ep := runtimetest.Deploy(t, cached, name, s, time.Minute)
		if hits.Load() != fetched {
			t.Errorf("redeploying a cached digest made %d registry requests", hits.Load()-fetched)
		}
		runtimetest.ExpectServes(t, ep, cloud, "v1")
		if err := cached.Destroy(context.Background(), name); err != nil {
			t.Fatal(err)
		}
		if left := leftovers(t, cacheDir); len(left) != 0 {
			t.Errorf("left behind: %v", left)
		}
	})

	t.Run("project", func(t *testing.T) {
		// The counter app's services are two processes: web finds the
		// store at the address drift gave it in STORE_URL, and the store
		// keeps its count in the volume's directory, which a redeploy keeps.
		name := prefix + "-proj"
		destroyAtEnd(t, rt, name)
		spec := runtimetest.CounterSpec(t, web, store, cloud, nil)
		ep := runtimetest.Deploy(t, rt, name, spec, time.Minute)
		for i := 1; i <= 2; i++ {
			if code, _, body := harness.HTTPPost(t, ep.URL+"/count"); code != 200 || !strings.Contains(body, fmt.Sprintf(`"count":%d`, i)) {
				t.Fatalf("POST /count: %d %s", code, body)
			}
		}
		state := filepath.Join(dir, name, "volumes", "counter-data", "state.json")
		if b, err := os.ReadFile(state); err != nil || string(b) != `{"count":2}` {
			t.Errorf("%s: %q, %v", state, b, err)
		}
		var rec struct {
			Procs []struct {
				Service string `json:"service"`
				PID     int    `json:"pid"`
				Port    int    `json:"port"`
			} `json:"procs"`
		}
		b, err := os.ReadFile(filepath.Join(dir, name, "instance.json"))
		if err != nil || json.Unmarshal(b, &rec) != nil || len(rec.Procs) != 2 || rec.Procs[0].Service != "store" || rec.Procs[1].Service != "web" {
			t.Fatalf("instance.json (store started first): %s, %v", b, err)
		}
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", rec.Procs[1].PID))
		if want := fmt.Sprintf("STORE_URL=http://127.0.0.1:%d\x00", rec.Procs[0].Port); err != nil || !strings.Contains(string(env), want) {
			t.Errorf("web's environment lacks %q (%v)", want, err)
		}
		if err := rt.Destroy(context.Background(), name); err != nil {
			t.Fatal(err)
		}
		for _, p := range rec.Procs {
			waitGone(t, p.PID)
		}
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("instance directory (with its volume) left: %v", err)
		}
	})

	t.Run("a failed project keeps its volume until Destroy", func(t *testing.T) {
		name := prefix + "-projfail"
		destroyAtEnd(t, rt, name)
		spec := runtimetest.CounterSpec(t, web, store, cloud, nil)
		spec.Services[0].Command = []string{"/no-such-binary"} // web cannot start; store can
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := rt.Deploy(ctx, name, spec); err == nil {
			t.Fatal("Deploy of a project whose web cannot start succeeded")
		}
		if pids := processesUnder(t, filepath.Join(dir, name)); len(pids) != 0 {
			t.Errorf("processes %v run after a failed deploy", pids)
		}
		ents, _ := os.ReadDir(filepath.Join(dir, name))
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		if !slices.Equal(names, []string{"instance.json", "volumes"}) {
			t.Errorf("after a failed deploy the instance holds %v, want its record and volumes", names)
		}
		if st := runtimetest.Status(t, rt, name); !st.Exists || st.Ready {
			t.Errorf("Status after a failed deploy: %+v, want exists (its volume), not ready", st)
		}
		if got := runtimetest.Names(t, rt, map[string]string{runtime.LabelInstance: name}); !slices.Equal(got, []string{name}) {
			t.Errorf("List finds %v, want [%s]", got, name)
		}
		if err := rt.Destroy(ctx, name); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("after Destroy: %v", err)
		}
	})

	if left := leftovers(t, dir); len(left) != 0 {
		t.Errorf("left behind: %v", left)
	}
}

// TestProcessWorkerHelper is not a test on its own: "an instance outlives
// the worker that started it" runs the test binary with DRIFT_HELPER_* set
// to play a worker that deploys one instance and exits.
func TestProcessWorkerHelper(t *testing.T) {
	dir := os.Getenv("DRIFT_HELPER_DIR")
	if dir == "" {
		t.Skip("only run by TestProcess as a worker process")
	}
	rt := newProcess(t, dir, os.Getenv("DRIFT_HELPER_CLOUD"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ep, err := rt.Deploy(ctx, os.Getenv("DRIFT_HELPER_NAME"), runtime.Spec{
		Image: os.Getenv("DRIFT_HELPER_IMAGE"), Port: 8080, Health: "/healthz",
		Env: map[string]string{"DRIFT_CLOUD": os.Getenv("DRIFT_HELPER_CLOUD")},
	})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("ENDPOINT %s\n", ep.URL)
}

func newProcess(t *testing.T, dir, cloud string) *process.Runtime {
	t.Helper()
	rt, err := process.New(runtime.Config{Kind: runtime.KindProcess, Dir: dir}, cloud)
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

// leftovers lists instance directories and processes left under dir.
func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Errorf("read %s: %v", dir, err)
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".") { // .images and .locks are the runtime's own
			out = append(out, "dir "+e.Name())
		}
	}
	for _, pid := range processesUnder(t, dir) {
		out = append(out, fmt.Sprintf("pid %d", pid))
	}
	return out
}

// processesUnder scans /proc for processes whose executable or working
// directory is under dir.
func processesUnder(t *testing.T, dir string) []int {
	t.Helper()
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		for _, link := range []string{"exe", "cwd"} {
			target, err := os.Readlink(filepath.Join("/proc", e.Name(), link))
			if err == nil && (target == dir || strings.HasPrefix(target, dir+"/")) {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

func recordedPID(t *testing.T, dir, name string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name, "instance.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		PID int `json:"pid"`
	}
	if err := json.Unmarshal(b, &rec); err != nil || rec.PID <= 0 {
		t.Fatalf("instance.json: pid %d, %v", rec.PID, err)
	}
	return rec.PID
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || !strings.HasPrefix(strings.TrimSpace(s[i+1:]), "Z")
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d still alive", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
