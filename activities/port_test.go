package activities

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestCopyModuleMakesAWritableReplaceTarget(t *testing.T) {
	cache := filepath.Join(t.TempDir(), "bolt@v1.3.1")
	if err := os.MkdirAll(filepath.Join(cache, "cmd"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"db.go", "cmd/main.go"} {
		if err := os.WriteFile(filepath.Join(cache, f), []byte("package x\n"), 0o444); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(filepath.Join(cache, "cmd"), 0o555) // as in the module cache
	t.Cleanup(func() { os.Chmod(filepath.Join(cache, "cmd"), 0o755) })

	dst := filepath.Join(t.TempDir(), "third_party", "github.com", "boltdb", "bolt")
	if err := copyModule(cache, dst, "github.com/boltdb/bolt"); err != nil {
		t.Fatal(err)
	}
	mod, err := os.ReadFile(filepath.Join(dst, "go.mod"))
	if err != nil || string(mod) != "module github.com/boltdb/bolt\n" {
		t.Fatalf("go.mod %q (%v)", mod, err)
	}
	if err := os.WriteFile(filepath.Join(dst, "cmd", "bolt_loong64.go"), []byte("package x\n"), 0o644); err != nil {
		t.Fatalf("the copy must be writable: %v", err)
	}
	// A second patch round copies afresh.
	if err := copyModule(cache, dst, "github.com/boltdb/bolt"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dst, "cmd", "bolt_loong64.go")); !os.IsNotExist(err) {
		t.Errorf("stale file kept: %v", err)
	}
}

func TestRestoreModFilesUndoesATriedUpgrade(t *testing.T) {
	dir, snapshot := t.TempDir(), filepath.Join(t.TempDir(), "gomod.json")
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module a\n"), 0o644)
	saved, err := saveModFiles(dir, snapshot)
	if err != nil {
		t.Fatal(err)
	}
	tryUpgrade := func() {
		os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module a\nrequire b v2\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "go.sum"), []byte("b v2 h1:x\n"), 0o644)
	}
	expectOriginal := func() {
		t.Helper()
		if mod, _ := os.ReadFile(filepath.Join(dir, "go.mod")); string(mod) != "module a\n" {
			t.Errorf("go.mod %q", mod)
		}
		if _, err := os.Stat(filepath.Join(dir, "go.sum")); !os.IsNotExist(err) {
			t.Errorf("go.sum should be gone: %v", err)
		}
	}
	tryUpgrade()
	if err := saved.restore(); err != nil {
		t.Fatal(err)
	}
	expectOriginal()

	// The worker dies mid-try: the retried activity starts from the snapshot.
	tryUpgrade()
	if _, err := saveModFiles(dir, snapshot); err != nil {
		t.Fatal(err)
	}
	expectOriginal()
	if err := saved.done(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(snapshot); !os.IsNotExist(err) {
		t.Errorf("snapshot kept after done: %v", err)
	}
}

// A run ends by itself or is killed at its limit with its process group;
// it runs as ./<name> in a fresh directory, with PORT=0.
func TestRunProgramIsBounded(t *testing.T) {
	ctx := context.Background()
	r, _, err := runProgram(ctx, "", "/bin/sh", []string{"-c", `echo "$0 $PORT"; exit 3`}, 5*time.Second)
	if err != nil || r.Exit != 3 || r.TimedOut || r.Output != "./sh 0\n" {
		t.Fatalf("run %+v (%v)", r, err)
	}
	start := time.Now()
	r, took, err := runProgram(ctx, "", "/bin/sh", []string{"-c", "sleep 30 & sleep 30"}, 300*time.Millisecond)
	if err != nil || !r.TimedOut || took > 5*time.Second || time.Since(start) > 5*time.Second {
		t.Fatalf("run %+v after %s (%v)", r, took, err)
	}
	if got := emulatedLimit(10*time.Second, time.Second, false); got != 20*time.Second {
		t.Errorf("emulated limit %s", got)
	}
}
