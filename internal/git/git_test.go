package git

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A real repository: fetch finds its commit, a missing ref or repository
// is told apart from other failures.
func TestFetchClassifiesWhatIsMissing(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	if _, err := Run(ctx, src, "init", "-q", "-b", "main"); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(src, "a.txt"), []byte("a\n"), 0o644)
	commit, err := Commit(ctx, src, "first", false)
	if err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	got, err := Fetch(ctx, &log, filepath.Join(t.TempDir(), "a"), src, "main")
	if err != nil || got != commit {
		t.Fatalf("fetch main = %s, %v; want %s", got, err, commit)
	}
	if got, err := Fetch(ctx, nil, filepath.Join(t.TempDir(), "b"), src, ""); err != nil || got != commit {
		t.Fatalf("fetch HEAD = %s, %v; want %s", got, err, commit)
	}
	if _, err := Fetch(ctx, nil, filepath.Join(t.TempDir(), "c"), src, "nope"); !errors.Is(err, ErrNoRef) {
		t.Errorf("missing ref: %v", err)
	}
	if _, err := Fetch(ctx, nil, filepath.Join(t.TempDir(), "d"), filepath.Join(t.TempDir(), "none.git"), "main"); !errors.Is(err, ErrNoRepo) {
		t.Errorf("missing repository: %v", err)
	}
	// Nothing listens on port 1: retryable, neither class.
	_, err = Fetch(ctx, nil, filepath.Join(t.TempDir(), "e"), "http://127.0.0.1:1/x.git", "main")
	if err == nil || errors.Is(err, ErrNoRepo) || errors.Is(err, ErrNoRef) {
		t.Errorf("refused connection: %v", err)
	}
}

func TestIsLocalPath(t *testing.T) {
	for repo, want := range map[string]bool{
		"https://example.com/a.git": false, "git@example.com:a.git": false, "file:///srv/a.git": false,
		"repos/a.git": true, "/srv/a": true,
	} {
		if IsLocalPath(repo) != want {
			t.Errorf("IsLocalPath(%q) != %v", repo, want)
		}
	}
}

func TestDiffStatComparesDirectories(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	for _, d := range []string{a, b} {
		if err := os.WriteFile(filepath.Join(d, "x.go"), []byte("package x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if s, err := DiffStat(context.Background(), a, b); err != nil || s != "" {
		t.Fatalf("equal dirs: %q %v", s, err)
	}
	if err := os.WriteFile(filepath.Join(b, "x_loong64.go"), []byte("package x\n\nconst y = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if s, err := DiffStat(context.Background(), a, b); err != nil || s != "1 file changed, 3 insertions(+)" {
		t.Fatalf("stat %q %v", s, err)
	}
}
