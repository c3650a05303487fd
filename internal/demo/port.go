package demo

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"

	"github.com/edgedrift/drift/deploy/examples"
)

// PortName is the example module's repository name.
const PortName = "sysinfo"

// PortRepo puts the porting example (deploy/examples/port/_sysinfo) in a
// git repository under dir, with its go.sum resolved against the Go
// module proxy (`go mod tidy`), and returns the bare repository a port
// fetches.
func PortRepo(ctx context.Context, dir string) (string, error) {
	files := map[string][]byte{}
	err := fs.WalkDir(examples.PortDemo, "port/_sysinfo", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := examples.PortDemo.ReadFile(p)
		name := path.Base(p)
		if name == "go.mod.txt" {
			name = "go.mod"
		}
		files[name] = b
		return err
	})
	if err != nil {
		return "", err
	}
	tidy := filepath.Join(dir, "tidy")
	if err := os.RemoveAll(tidy); err != nil {
		return "", err
	}
	if err := os.MkdirAll(tidy, 0o755); err != nil {
		return "", err
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(tidy, name), b, 0o644); err != nil {
			return "", err
		}
	}
	cmd := exec.CommandContext(ctx, "go", "mod", "tidy")
	cmd.Dir = tidy
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=", "GOTOOLCHAIN=local")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go mod tidy in the porting example: %v\n%s", err, out)
	}
	for _, name := range []string{"go.mod", "go.sum"} {
		if files[name], err = os.ReadFile(filepath.Join(tidy, name)); err != nil {
			return "", err
		}
	}
	if err := os.RemoveAll(tidy); err != nil {
		return "", err
	}
	return GitRepo(ctx, dir, PortName, files)
}
