package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/edgedrift/drift/internal/repo"
)

// The prefix holds each package as PREFIX/<name>/<version>/… with
// PREFIX/<name>/current → <version>, the live one. A version is unpacked
// beside the live one and current flips (one rename) only once its hook
// and health check pass, so a failure leaves the previous version live.
// The agent keeps, per package, which versions it installed and their
// files (PREFIX/.drift/packages/<name>.json), so an uninstall removes
// exactly those files and nothing else.

// currentLink is the name of the link to the live version.
const currentLink = "current"

// manifest is what the agent installed of one package.
type manifest struct {
	Name     string                    `json:"name"`
	Current  string                    `json:"current,omitempty"`
	Versions map[string]installedFiles `json:"versions"`
}

type installedFiles struct {
	SHA256 string   `json:"sha256"`
	Files  []string `json:"files"` // relative to the version's dir
}

func (a *Agent) manifestPath(name string) string {
	return filepath.Join(a.stateDir(), "packages", name+".json")
}

func (a *Agent) packageDir(name string) string { return filepath.Join(a.Prefix, name) }

func (a *Agent) versionDir(name, version string) string {
	return filepath.Join(a.Prefix, name, version)
}

// load returns the package's manifest (empty when nothing is installed).
func (a *Agent) load(name string) (manifest, error) {
	m := manifest{Name: name, Versions: map[string]installedFiles{}}
	data, err := os.ReadFile(a.manifestPath(name))
	if errors.Is(err, os.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("manifest of %s: %w", name, err)
	}
	if m.Versions == nil {
		m.Versions = map[string]installedFiles{}
	}
	return m, nil
}

// save writes the manifest atomically, or removes it when nothing is left.
func (a *Agent) save(m manifest) error {
	path := a.manifestPath(m.Name)
	if len(m.Versions) == 0 {
		err := os.Remove(path)
		if errors.Is(err, os.ErrNotExist) {
			err = nil
		}
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// flip points current at version (one rename), or removes it for "".
func (a *Agent) flip(name, version string) error {
	link := filepath.Join(a.packageDir(name), currentLink)
	if version == "" {
		err := os.Remove(link)
		if errors.Is(err, os.ErrNotExist) {
			err = nil
		}
		return err
	}
	tmp := filepath.Join(a.packageDir(name), ".current.tmp")
	os.Remove(tmp)
	if err := os.Symlink(version, tmp); err != nil {
		return err
	}
	return os.Rename(tmp, link)
}

// removeVersion deletes exactly the files the agent unpacked for version,
// then the directories they leave empty; anything else (what a hook made)
// stays and is returned.
func (a *Agent) removeVersion(name, version string, files []string) (removed int, kept []string) {
	dir := a.versionDir(name, version)
	dirs := map[string]bool{}
	for _, f := range files {
		p := filepath.Join(dir, f)
		if err := os.Remove(p); err == nil {
			removed++
		}
		for d := filepath.Dir(p); d != dir && strings.HasPrefix(d, dir); d = filepath.Dir(d) {
			dirs[d] = true
		}
	}
	byDepth := make([]string, 0, len(dirs)+1)
	for d := range dirs {
		byDepth = append(byDepth, d)
	}
	sort.Slice(byDepth, func(i, j int) bool { return len(byDepth[i]) > len(byDepth[j]) })
	for _, d := range append(byDepth, dir) {
		os.Remove(d) // only empty ones go
	}
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(a.Prefix, p)
			kept = append(kept, rel)
		}
		return nil
	})
	return removed, kept
}

// removePackageDir removes PREFIX/<name> once nothing of it is left.
func (a *Agent) removePackageDir(name string) {
	os.Remove(a.packageDir(name))
}

// Inventory lists what the agent installed: per package, the current
// version and every version on disk.
func (a *Agent) Inventory() ([]repo.Installed, error) {
	out := []repo.Installed{} // empty, not null: "nothing installed" is news too
	entries, err := os.ReadDir(filepath.Join(a.stateDir(), "packages"))
	if errors.Is(err, os.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		m, err := a.load(name)
		if err != nil {
			return nil, err
		}
		in := repo.Installed{Name: name, Version: m.Current}
		for v := range m.Versions {
			in.Versions = append(in.Versions, v)
		}
		slices.Sort(in.Versions)
		out = append(out, in)
	}
	return out, nil
}
