package demo

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/edgedrift/drift/deploy/examples"
	"github.com/edgedrift/drift/internal/git"
)

// HelloFiles is the hello app's source as its own repository holds it.
func HelloFiles() (map[string][]byte, error) {
	return appFiles(examples.HelloSource, "apps/hello", "hello")
}

// CounterFiles is the counter app's source as its own repository holds
// it: web/ and store/, and its compose file.
func CounterFiles() (map[string][]byte, error) {
	return appFiles(examples.CounterSource, "apps/counter", "counter")
}

// appFiles is the example app under dir of src, at paths relative to dir,
// with a go.mod making it a module of its own (in drift's tree it is part
// of the drift module).
func appFiles(src fs.ReadFileFS, dir, name string) (map[string][]byte, error) {
	files := map[string][]byte{"go.mod": []byte("module example.com/" + name + "\n\ngo 1.26\n")}
	err := fs.WalkDir(src, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := src.ReadFile(p)
		files[strings.TrimPrefix(p, dir+"/")] = b
		return err
	})
	return files, err
}

// GitRepo commits files on branch main of a new repository in dir/work and
// pushes it to the bare repository dir/<name>.git (its origin), which it
// returns: what a pipeline clones. Anything in dir before is replaced.
func GitRepo(ctx context.Context, dir, name string, files map[string][]byte) (string, error) {
	work, bare := filepath.Join(dir, "work"), filepath.Join(dir, name+".git")
	for _, d := range []string{work, bare} {
		if err := os.RemoveAll(d); err != nil {
			return "", err
		}
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		return "", err
	}
	for p, b := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(work, p)), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(work, p), b, 0o644); err != nil {
			return "", err
		}
	}
	if _, err := git.Run(ctx, dir, "init", "-q", "--bare", bare); err != nil {
		return "", err
	}
	for _, args := range [][]string{
		{"init", "-q", "-b", "main"},
		{"remote", "add", "origin", bare},
	} {
		if _, err := git.Run(ctx, work, args...); err != nil {
			return "", err
		}
	}
	return bare, CommitAndPush(ctx, work, "drift example app")
}

// CommitAndPush commits everything in the work tree and pushes main.
func CommitAndPush(ctx context.Context, work, message string) error {
	if _, err := git.Commit(ctx, work, message, false); err != nil {
		return err
	}
	_, err := git.Run(ctx, work, "push", "-q", "origin", "main")
	return err
}
