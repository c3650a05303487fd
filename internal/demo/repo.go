package demo

import (
	"context"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"github.com/edgedrift/drift/deploy/examples"
	"github.com/edgedrift/drift/internal/git"
)

// HelloGoMod makes the example app a module of its own in its repository
// (in drift's tree it is a package of the drift module).
const HelloGoMod = "module example.com/hello\n\ngo 1.26\n"

// HelloFiles is the example app's source as its own repository holds it.
func HelloFiles() (map[string][]byte, error) {
	files := map[string][]byte{"go.mod": []byte(HelloGoMod)}
	err := fs.WalkDir(examples.HelloSource, "apps/hello", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := examples.HelloSource.ReadFile(p)
		files[path.Base(p)] = b
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
