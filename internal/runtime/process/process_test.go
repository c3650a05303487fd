package process

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edgedrift/drift/internal/runtime"
)

type entry struct {
	name, link string
	typ        byte
	mode       int64
	body       string
}

func tarOf(t *testing.T, entries ...entry) *bytes.Reader {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: e.mode, Size: int64(len(e.body))}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return bytes.NewReader(buf.Bytes())
}

// sandbox returns a root to extract into and an "outside" directory next to
// it that must stay empty.
func sandbox(t *testing.T) (root, outside string) {
	base := t.TempDir()
	root = filepath.Join(base, "rootfs")
	outside = filepath.Join(base, "outside")
	for _, d := range []string{root, outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return root, outside
}

func assertEmpty(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		t.Fatalf("%s was written to: %v", dir, ents)
	}
}

func TestExtractTarUnpacksFilesDirsAndLinks(t *testing.T) {
	root, _ := sandbox(t)
	err := extractTar(tarOf(t,
		entry{name: "./", typ: tar.TypeDir, mode: 0o755},
		entry{name: "bin/", typ: tar.TypeDir, mode: 0o755},
		entry{name: "bin/app", typ: tar.TypeReg, mode: 0o4777, body: "#!app"},
		entry{name: "usr/bin/tool", typ: tar.TypeReg, mode: 0o755, body: "tool"}, // parent not listed
		entry{name: "app", typ: tar.TypeSymlink, link: "bin/app"},
		entry{name: "etc/abs", typ: tar.TypeSymlink, link: "/usr/bin/tool"},
		entry{name: "hard", typ: tar.TypeLink, link: "bin/app"},
		entry{name: "dev/null", typ: tar.TypeChar},
	), root)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "app"))
	if err != nil || string(b) != "#!app" {
		t.Fatalf("app via symlink: %q, %v", b, err)
	}
	fi, err := os.Stat(filepath.Join(root, "bin/app"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&(os.ModeSetuid|0o022) != 0 || fi.Mode().Perm() != 0o755 {
		t.Errorf("bin/app mode %v: setuid and group/other write must be dropped", fi.Mode())
	}
	if target, _ := os.Readlink(filepath.Join(root, "etc/abs")); target != "../usr/bin/tool" {
		t.Errorf("absolute symlink rewritten to %q, want ../usr/bin/tool", target)
	}
	if b, err := os.ReadFile(filepath.Join(root, "etc/abs")); err != nil || string(b) != "tool" {
		t.Errorf("etc/abs: %q, %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "hard")); err != nil || string(b) != "#!app" {
		t.Errorf("hard link: %q, %v", b, err)
	}
	if _, err := os.Lstat(filepath.Join(root, "dev/null")); err == nil {
		t.Errorf("device node was created")
	}
}

func TestExtractTarRejectsEscapes(t *testing.T) {
	cases := map[string][]entry{
		"dot-dot name":        {{name: "../evil", typ: tar.TypeReg, body: "x"}},
		"inner dot-dot name":  {{name: "a/../../evil", typ: tar.TypeReg, body: "x"}},
		"absolute name":       {{name: "/evil", typ: tar.TypeReg, body: "x"}},
		"relative link out":   {{name: "a/link", typ: tar.TypeSymlink, link: "../../outside"}},
		"hard link dot-dot":   {{name: "hard", typ: tar.TypeLink, link: "../outside/f"}},
		"hard link absolute":  {{name: "hard", typ: tar.TypeLink, link: "/etc/passwd"}},
		"symlink then escape": {{name: "up", typ: tar.TypeSymlink, link: ".."}, {name: "up/evil", typ: tar.TypeReg, body: "x"}},
	}
	for name, entries := range cases {
		t.Run(name, func(t *testing.T) {
			root, outside := sandbox(t)
			err := extractTar(tarOf(t, entries...), root)
			if err == nil {
				t.Fatal("extraction succeeded")
			}
			assertEmpty(t, outside)
			if _, err := os.Stat(filepath.Join(filepath.Dir(root), "evil")); err == nil {
				t.Fatal("file written next to the root")
			}
		})
	}
}

// An absolute symlink means "inside the image", so writing through it lands
// inside the root, never on the host path it names.
func TestExtractTarAbsoluteSymlinkStaysInside(t *testing.T) {
	root, outside := sandbox(t)
	inner := strings.TrimPrefix(outside, "/")
	err := extractTar(tarOf(t,
		entry{name: inner + "/", typ: tar.TypeDir, mode: 0o755},
		entry{name: "escape", typ: tar.TypeSymlink, link: outside},
		entry{name: "escape/pwned", typ: tar.TypeReg, body: "x"},
	), root)
	if err != nil {
		t.Fatal(err)
	}
	assertEmpty(t, outside)
	if _, err := os.Stat(filepath.Join(root, inner, "pwned")); err != nil {
		t.Fatalf("file did not land inside the root: %v", err)
	}

	// Without that directory in the image the link dangles: an error, and
	// still nothing outside.
	root, outside = sandbox(t)
	err = extractTar(tarOf(t,
		entry{name: "escape", typ: tar.TypeSymlink, link: outside},
		entry{name: "escape/pwned", typ: tar.TypeReg, body: "x"},
	), root)
	if err == nil {
		t.Fatal("write through a dangling link succeeded")
	}
	assertEmpty(t, outside)
}

func TestResolveInStaysInRoot(t *testing.T) {
	root, _ := sandbox(t)
	if err := extractTar(tarOf(t,
		entry{name: "usr/bin/app", typ: tar.TypeReg, mode: 0o755, body: "x"},
		entry{name: "bin", typ: tar.TypeSymlink, link: "usr/bin"},
	), root); err != nil {
		t.Fatal(err)
	}
	// Links the extractor would refuse, made by hand: resolution still
	// clamps at the root, as if the root were "/".
	if err := os.Symlink("../../../../..", filepath.Join(root, "usr/bin/up")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/../../..", filepath.Join(root, "abs")); err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{
		"/bin/app":             "usr/bin/app",
		"app":                  "usr/bin/app", // relative to cwd /usr/bin
		"/usr/bin/up/bin/app":  "usr/bin/app",
		"/abs/usr/bin/app":     "usr/bin/app",
		"../../../../bin/app":  "usr/bin/app",
		"/usr/bin/../../../..": "",
	} {
		got, err := resolveIn(root, "/usr/bin", in)
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if got != filepath.Join(root, want) {
			t.Errorf("%s resolved to %s, want %s", in, got, filepath.Join(root, want))
		}
	}
	got, err := lookPath(root, "/", "app", "/nowhere:/bin")
	if err != nil || got != filepath.Join(root, "usr/bin/app") {
		t.Errorf("lookPath app = %q, %v", got, err)
	}
	if _, err := lookPath(root, "/", "missing", ""); !errors.Is(err, runtime.ErrInvalid) {
		t.Errorf("lookPath missing: %v", err)
	}
}

func TestParseStat(t *testing.T) {
	// The command name may hold spaces and parentheses.
	line := "4242 (we ird) (x)) S 1 4240 4240 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 3 0 987654 1000 10 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	st, err := parseStat(line)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != 'S' || st.PGID != 4240 || st.StartTicks != 987654 {
		t.Fatalf("parsed %+v", st)
	}
	for _, bad := range []string{"", "1 (x) S 1", "1 x S 1 2 3"} {
		if _, err := parseStat(bad); err == nil {
			t.Errorf("parseStat(%q) succeeded", bad)
		}
	}
}

func TestRunningTellsReusedPidApart(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	var once sync.Once
	reap := func() { once.Do(func() { cmd.Wait() }) }
	t.Cleanup(func() { cmd.Process.Kill(); reap() })
	st, err := readStat(pid)
	if err != nil {
		t.Fatal(err)
	}
	if !running(pid, st.StartTicks) {
		t.Fatal("live process not running")
	}
	if running(pid, st.StartTicks+1) {
		t.Fatal("a different start time (a reused pid) was taken for the recorded process")
	}
	cmd.Process.Kill()
	// Until reaped it is a zombie, which has exited.
	deadline := time.Now().Add(5 * time.Second)
	for running(pid, st.StartTicks) {
		if time.Now().After(deadline) {
			t.Fatal("killed process still running")
		}
		time.Sleep(10 * time.Millisecond)
	}
	reap()
	if running(pid, st.StartTicks) || running(0, 0) || running(-1, 0) {
		t.Fatal("reaped process still running")
	}
}

func TestRecordRoundTripAndValidation(t *testing.T) {
	dir := t.TempDir()
	if rec, err := readRecord(dir); rec != nil || err != nil {
		t.Fatalf("missing record: %v, %v", rec, err)
	}
	rec := &record{Name: "web", PID: 42, StartTicks: 7, Started: time.Now().UTC().Truncate(time.Second), Port: 31000,
		Image: "127.0.0.1:5000/hello:v1", Digest: "sha256:abc", Labels: map[string]string{"drift.owned": "true"},
		SpecHash: "0123", Argv: []string{"/hello"}}
	if err := writeRecord(dir, rec); err != nil {
		t.Fatal(err)
	}
	got, err := readRecord(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != rec.Name || got.PID != 42 || got.StartTicks != 7 || !got.Started.Equal(rec.Started) || got.Port != 31000 || got.Labels["drift.owned"] != "true" {
		t.Fatalf("round trip: %+v", got)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("temporary files left: %v", ents)
	}
	if err := writeRecord(dir, &record{Name: "web"}); err == nil {
		t.Fatal("invalid record written")
	}
	if err := os.WriteFile(filepath.Join(dir, recordFile), []byte(`{"name":"web","pid":1`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readRecord(dir); err == nil {
		t.Fatal("torn record accepted")
	}
}

func TestEnvironAndHash(t *testing.T) {
	env := environ([]string{"PATH=/bin", "PORT=8080", "A=image"}, map[string]string{"A": "spec", "B": "b", "PORT": "1"})
	want := []string{"PATH=/bin", "A=spec", "B=b"}
	if strings.Join(env, " ") != strings.Join(want, " ") {
		t.Fatalf("environ = %q, want %q", env, want)
	}
	s := runtime.Spec{Image: "x", Port: 80, Env: map[string]string{"A": "1"}}
	h1 := runtime.SpecHash(s, map[string]string{"a": "b"})
	s.Env = map[string]string{"A": "2"}
	if h1 == runtime.SpecHash(s, map[string]string{"a": "b"}) {
		t.Fatal("env change kept the hash")
	}
}

func TestValidateAndNew(t *testing.T) {
	if _, err := New(runtime.Config{}, "c"); !errors.Is(err, runtime.ErrInvalid) {
		t.Fatalf("New without dir: %v", err)
	}
	r, err := New(runtime.Config{Dir: t.TempDir()}, "edge-1")
	if err != nil {
		t.Fatal(err)
	}
	good := runtime.Spec{Image: "127.0.0.1:5000/hello:v1", Port: 8080}
	labels, err := runtime.ValidateSpec("web", r.cloud, good)
	if err != nil {
		t.Fatal(err)
	}
	if labels[runtime.LabelCloud] != "edge-1" || labels[runtime.LabelOwned] != "true" || labels[runtime.LabelInstance] != "web" {
		t.Fatalf("labels %v", labels)
	}
	bad := map[string]func(*runtime.Spec) string{
		"name":        func(*runtime.Spec) string { return "Bad_Name" },
		"empty image": func(s *runtime.Spec) string { s.Image = ""; return "web" },
		"bad image":   func(s *runtime.Spec) string { s.Image = "UPPER CASE::x"; return "web" },
		"no registry": func(s *runtime.Spec) string { s.Image = "hello:v1"; return "web" },
		"no tag":      func(s *runtime.Spec) string { s.Image = "127.0.0.1:5000/hello"; return "web" },
		"port 0":      func(s *runtime.Spec) string { s.Port = 0; return "web" },
		"port big":    func(s *runtime.Spec) string { s.Port = 70000; return "web" },
		"env key":     func(s *runtime.Spec) string { s.Env = map[string]string{"A=B": "x"}; return "web" },
		"owned label": func(s *runtime.Spec) string { s.Labels = map[string]string{runtime.LabelOwned: "no"}; return "web" },
		"other cloud": func(s *runtime.Spec) string { s.Labels = map[string]string{runtime.LabelCloud: "edge-2"}; return "web" },
	}
	for what, mutate := range bad {
		s := good
		name := mutate(&s)
		if _, err := runtime.ValidateSpec(name, r.cloud, s); !errors.Is(err, runtime.ErrInvalid) {
			t.Errorf("%s: %v", what, err)
		}
		if _, err := r.Deploy(context.Background(), name, s); !errors.Is(err, runtime.ErrInvalid) {
			t.Errorf("Deploy %s: %v", what, err)
		}
	}
	ents, _ := os.ReadDir(r.Dir())
	if len(ents) != 0 {
		t.Fatalf("invalid deploys left %v", ents)
	}
}

// stop signals only what is verifiably the instance's: a record whose pid
// was reused by an unrelated process leaves that process alone.
func TestStopSparesReusedPid(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	reaped := make(chan struct{})
	go func() { cmd.Wait(); close(reaped) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-reaped })
	st, err := readStat(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	stale := &record{Name: "web", PID: cmd.Process.Pid, StartTicks: st.StartTicks - 1}
	if err := stop(stale, t.TempDir(), time.Second); err != nil {
		t.Fatal(err)
	}
	if !running(cmd.Process.Pid, st.StartTicks) {
		t.Fatal("an unrelated process with the recorded pid was killed")
	}
	live := &record{Name: "web", PID: cmd.Process.Pid, StartTicks: st.StartTicks}
	if err := stop(live, t.TempDir(), time.Second); err != nil {
		t.Fatal(err)
	}
	if running(cmd.Process.Pid, st.StartTicks) {
		t.Fatal("recorded process survived stop")
	}
}

// The per-name lock excludes across Runtimes even while Destroy removes the
// lock file.
func TestLockExcludesWhileFilesAreRemoved(t *testing.T) {
	dir := t.TempDir()
	var inside, clashes atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		r, err := New(runtime.Config{Dir: dir}, "")
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				unlock, err := r.lock(context.Background(), "web")
				if err != nil {
					t.Error(err)
					return
				}
				if inside.Add(1) > 1 {
					clashes.Add(1)
				}
				time.Sleep(100 * time.Microsecond)
				inside.Add(-1)
				unlock(j%2 == 0)
			}
		}()
	}
	wg.Wait()
	if n := clashes.Load(); n != 0 {
		t.Fatalf("the lock was held twice at once %d times", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	r, _ := New(runtime.Config{Dir: dir}, "")
	unlock, err := r.lock(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	defer unlock(true)
	if _, err := r.lock(ctx, "web"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second lock while held: %v", err)
	}
}

// A project's services find each other and their volumes through their
// environment: peers' "<service>:<declared port>" and mount paths are
// rewritten to where they are on this host.
func TestPeerEnv(t *testing.T) {
	spec := runtime.Spec{
		Services: []runtime.Service{
			{Name: "web", Port: 8080, Env: map[string]string{
				"STORE_URL": "http://store:8081/x",
				"BOTH":      "store:8081,store:8081",
				"LONGER":    "restore:8081 store.example:8081",
				"OTHERPORT": "store:80812 store:9000",
				"SELF":      "web:8080",
				"DATA":      "/data",
			}},
			{Name: "store", Port: 8081, Mounts: []runtime.Mount{{Volume: "counter-data", Path: "/data"}}, Env: map[string]string{
				"DATA_DIR": "/data",
				"SUB":      "/data/sub",
				"NOT":      "/database",
			}},
		},
		InstanceVolumes: []string{"counter-data"},
	}
	ports := map[string]int{"web": 41000, "store": 42000}
	vol := func(v string) string { return "/srv/drift/inst/volumes/" + v }
	web := PeerEnv(spec.Services[0], spec, ports, vol)
	for k, want := range map[string]string{
		"STORE_URL": "http://127.0.0.1:42000/x",
		"BOTH":      "127.0.0.1:42000,127.0.0.1:42000",
		"LONGER":    "restore:8081 store.example:8081",
		"OTHERPORT": "store:80812 store:9000",
		"SELF":      "127.0.0.1:41000",
		"DATA":      "/data", // web mounts nothing
	} {
		if web[k] != want {
			t.Errorf("web %s = %q, want %q", k, web[k], want)
		}
	}
	store := PeerEnv(spec.Services[1], spec, ports, vol)
	for k, want := range map[string]string{
		"DATA_DIR": "/srv/drift/inst/volumes/counter-data",
		"SUB":      "/srv/drift/inst/volumes/counter-data/sub",
		"NOT":      "/database",
	} {
		if store[k] != want {
			t.Errorf("store %s = %q, want %q", k, store[k], want)
		}
	}
	if spec.Services[0].Env["STORE_URL"] != "http://store:8081/x" {
		t.Error("PeerEnv changed the spec")
	}
}
