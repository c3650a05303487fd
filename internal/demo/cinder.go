package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	goruntime "runtime"
	"runtime/debug"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/edgedrift/drift/deploy/examples"
	"github.com/edgedrift/drift/internal/image"
)

// The example component (deploy/examples/cinder): where it serves, what it
// answers, where its data and its tools are inside its image.
const (
	CinderPort   = 8080
	CinderHealth = "/healthz"
	CinderVerify = "/verify"
	// CinderData is its data dir; an env mounts the component's volume there.
	CinderData = "/var/lib/component"
	// CinderManage is the command of its tools: upgrade check, db sync, …
	CinderManage = "/usr/bin/component"
	// CinderVolumes lists volumes (GET, JSON array with "id"); a volume's
	// data is at CinderVolumes/{id}/data.
	CinderVolumes = "/v1/volumes"
)

// Driver is a driver plugin's declaration, as the component reads it.
type Driver struct {
	Name       string            `json:"name"`
	Version    string            `json:"version"`
	Components map[string]string `json:"components"` // component → version constraint
	Dir        string            `json:"dir"`
}

// cinderDeps are the modules the component imports; it is built with the
// versions this program was built with.
var cinderDeps = []string{"go.etcd.io/bbolt", "github.com/hashicorp/go-version", "golang.org/x/sys"}

// CinderBinary compiles the example component statically for this host
// with the Go toolchain, as a module of its own in a temp dir (its source
// is embedded in drift).
func CinderBinary(ctx context.Context) ([]byte, error) {
	dir, err := os.MkdirTemp("", "drift-cinder")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	gomod := "module example.com/cinder\n\ngo 1.26\n"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			for _, want := range cinderDeps {
				if d.Path == want {
					gomod += "require " + d.Path + " " + d.Version + "\n"
				}
			}
		}
	}
	files := map[string][]byte{"go.mod": []byte(gomod)}
	err = fs.WalkDir(examples.CinderSource, "cinder", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(p, "_test.go") {
			return err
		}
		files[path.Base(p)], err = examples.CinderSource.ReadFile(p)
		return err
	})
	if err != nil {
		return nil, err
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return nil, err
		}
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", "component", ".")
	cmd.Dir = dir
	// -mod=mod completes go.mod and go.sum from the module cache (or the
	// module proxy) for this throwaway module.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOWORK=off", "GOSUMDB=off", "GOFLAGS=-mod=mod -buildvcs=false")
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build the example component: %v\n%s", err, b)
	}
	return os.ReadFile(filepath.Join(dir, "component"))
}

// CinderRelease pushes <registry>/<repo>:<tag> holding the binary and the
// release file of that version of component, and returns it by digest.
func CinderRelease(ctx context.Context, registry, repo, component, tag string, binary []byte) (string, error) {
	rel, _ := json.Marshal(map[string]any{
		"component": component, "version": tag,
		// Each release brings its own dependency libraries.
		"libs": map[string]string{"os-brick": libVersion(tag)},
	})
	img, err := image.Build(hostPlatform(), []image.File{
		{Path: CinderManage, Mode: 0o755, Data: binary},
		{Path: "/etc/component/release.json", Mode: 0o644, Data: rel},
	}, image.Config{Entrypoint: []string{CinderManage}, Ports: []int{CinderPort}, WorkingDir: "/"})
	if err != nil {
		return "", err
	}
	return image.Push(ctx, registry+"/"+repo+":"+tag, img)
}

// CinderReleases pushes one image per tag and returns the repository.
func CinderReleases(ctx context.Context, registry, repo, component string, tags []string, binary []byte) (string, error) {
	for _, tag := range tags {
		if _, err := CinderRelease(ctx, registry, repo, component, tag, binary); err != nil {
			return "", err
		}
	}
	return registry + "/" + repo, nil
}

// DriverImage pushes a plugin image holding d's declaration, tagged with its
// version, and returns its tag reference.
func DriverImage(ctx context.Context, registry string, d Driver) (string, error) {
	if d.Dir == "" {
		d.Dir = "/var/lib/component/backends/" + d.Name
	}
	decl, _ := json.Marshal(d)
	img, err := image.Build(hostPlatform(), []image.File{
		{Path: "/etc/component/drivers/" + d.Name + ".json", Mode: 0o644, Data: decl},
	}, image.Config{})
	if err != nil {
		return "", err
	}
	ref := registry + "/" + path.Join("drivers", d.Name) + ":" + d.Version
	if _, err := image.Push(ctx, ref, img); err != nil {
		return "", err
	}
	return ref, nil
}

func hostPlatform() v1.Platform { return v1.Platform{OS: "linux", Architecture: goruntime.GOARCH} }

// libVersion derives a per-release library version (os-brick 6.<major>.0).
func libVersion(tag string) string {
	major, _, _ := strings.Cut(tag, ".")
	return "6." + major + ".0"
}
