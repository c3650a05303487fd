package activities

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"go.temporal.io/sdk/temporal"

	"github.com/edgedrift/drift/internal/appspec"
	"github.com/edgedrift/drift/internal/git"
	"github.com/edgedrift/drift/internal/image"
	"github.com/edgedrift/drift/internal/port"
)

// Error types of porting; none is retried.
const (
	ErrTypeNotGoModule = "NotGoModule" // the source has no go.mod
	ErrTypeUnknownArch = "UnknownArch" // the toolchain cannot target linux/<arch>
)

// A port's cross-build that fails after diagnosis said it would pass is
// ErrTypeBuildFailed, as a pipeline's failed build is.

// Port fetches, diagnoses, fixes, builds, tests and images Go modules for
// another GOARCH. Every module is worked on under WorkDir/<workflow>, on
// this worker's disk, so a PortToArch's activities all run on one worker.
type Port struct {
	WorkDir  string // where modules are fetched and patched
	Registry string // center registry host:port images are pushed to
}

// PortSource is a fetched module ready to work on.
type PortSource struct {
	Dir    string `json:"dir"`    // the module's root (a git work tree)
	Module string `json:"module"` // module path from go.mod
	Base   string `json:"base"`   // commit the port starts from
	Arch   string `json:"arch"`
	// GoMod is go.mod as the port found it, to say what changed.
	GoMod *port.GoMod `json:"goMod,omitempty"`
	// Service is the HTTP service a compose file at the root declares.
	Service *PortComposeService `json:"service,omitempty"`
}

// PortComposeService is what a module's compose file says of its service.
type PortComposeService struct {
	File   string `json:"file"`
	Port   int    `json:"port,omitempty"`
	Health string `json:"health,omitempty"`
	Error  string `json:"error,omitempty"` // why the file gives no service
}

// composeFiles are the names a compose file may have at a module's root.
var composeFiles = []string{"compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml"}

// PortFetchInput names what to fetch.
type PortFetchInput struct {
	ID   string `json:"id"`   // workflow id: names the work dir
	Repo string `json:"repo"` // git URL or local path
	Ref  string `json:"ref,omitempty"`
	Arch string `json:"arch"`
}

// PortBranch is the branch the port's changes are committed on.
func PortBranch(arch string) string { return "drift/port-" + arch }

// PortFetch checks the toolchain can target linux/<arch>, then clones (or
// copies) the module into a fresh work dir on a new branch.
func (a *Port) PortFetch(ctx context.Context, in PortFetchInput) (PortSource, error) {
	stop := heartbeat(ctx)
	defer stop()
	out, err := goOutput(ctx, "", nil, "tool", "dist", "list", "-json")
	if err != nil {
		return PortSource{}, err
	}
	platforms, err := port.ParsePlatforms([]byte(out))
	if err != nil {
		return PortSource{}, err
	}
	if !port.Supports(platforms, "linux", in.Arch) {
		return PortSource{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf("go cannot build for linux/%s", in.Arch), ErrTypeUnknownArch, nil)
	}
	dir := filepath.Join(a.WorkDir, strings.ReplaceAll(in.ID, "/", "_"), "src")
	if err := os.RemoveAll(filepath.Dir(dir)); err != nil {
		return PortSource{}, err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return PortSource{}, err
	}
	if err := fetchSource(ctx, in.Repo, in.Ref, dir); err != nil {
		return PortSource{}, err
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		return PortSource{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s is not a Go module: no go.mod at its root", in.Repo), ErrTypeNotGoModule, nil)
	}
	modJSON, err := goOutput(ctx, dir, nil, "mod", "edit", "-json")
	if err != nil {
		return PortSource{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: unreadable go.mod: %v", in.Repo, err), ErrTypeNotGoModule, nil)
	}
	var mod struct{ Module struct{ Path string } }
	if err := json.Unmarshal([]byte(modJSON), &mod); err != nil {
		return PortSource{}, err
	}
	goMod, err := port.ParseGoModJSON([]byte(modJSON))
	if err != nil {
		return PortSource{}, err
	}
	if _, err := git.Run(ctx, dir, "checkout", "-q", "-B", PortBranch(in.Arch)); err != nil {
		return PortSource{}, err
	}
	base, err := git.Run(ctx, dir, "rev-parse", "HEAD")
	if err != nil {
		return PortSource{}, err
	}
	return PortSource{Dir: dir, Module: mod.Module.Path, Base: base, Arch: in.Arch, GoMod: &goMod, Service: composeService(dir)}, nil
}

// composeService reads the first compose file at the module's root.
func composeService(dir string) *PortComposeService {
	for _, name := range composeFiles {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			continue
		}
		s := &PortComposeService{File: name}
		app, err := appspec.FromCompose(data, "")
		if err != nil {
			s.Error = err.Error()
			return s
		}
		s.Port, s.Health = app.Port, app.Health
		return s
	}
	return nil
}

// fetchSource fetches repo at ref into dir; a local directory that is not
// a git repository is copied and committed so the port can branch from it.
func fetchSource(ctx context.Context, repo, ref, dir string) error {
	if st, err := os.Stat(repo); err == nil && st.IsDir() {
		if _, err := os.Stat(filepath.Join(repo, ".git")); err != nil {
			if err := os.CopyFS(dir, os.DirFS(repo)); err != nil {
				return err
			}
			if _, err := git.Run(ctx, dir, "init", "-q"); err != nil {
				return err
			}
			_, err := git.Commit(ctx, dir, "drift port: snapshot of "+repo, true)
			return err
		}
	}
	commit, err := git.Fetch(ctx, nil, dir, repo, ref)
	if err != nil {
		return fetchError("fetch", repo, ref, err)
	}
	_, err = git.Run(ctx, dir, "checkout", "-q", commit)
	return err
}

// PortDiagnoseInput names the packages to build.
type PortDiagnoseInput struct {
	Source   PortSource `json:"source"`
	Packages []string   `json:"packages"`
}

// PortDiagnose builds the packages for linux/<arch> and attributes every
// failure to its module and cause.
func (a *Port) PortDiagnose(ctx context.Context, in PortDiagnoseInput) (port.Diagnosis, error) {
	stop := heartbeat(ctx)
	defer stop()
	return diagnose(ctx, in.Source, in.Packages)
}

func diagnose(ctx context.Context, src PortSource, pkgs []string) (port.Diagnosis, error) {
	env := targetEnv(src.Arch)
	listed, err := goOutput(ctx, src.Dir, env, append([]string{"list", "-e", "-deps", "-json=" + port.ListFields}, pkgs...)...)
	if err != nil {
		return port.Diagnosis{}, err
	}
	packages, err := port.ReadPackages(strings.NewReader(listed))
	if err != nil {
		return port.Diagnosis{}, err
	}
	out, buildErr := goCmd(ctx, src.Dir, env, append([]string{"build", "-o", os.DevNull}, pkgs...)...)
	if buildErr == nil {
		return port.Diagnosis{GOOS: "linux", GOARCH: src.Arch}, nil
	}
	var exitErr *exec.ExitError
	if !errors.As(buildErr, &exitErr) {
		return port.Diagnosis{}, buildErr
	}
	errs := port.ParseBuildOutput(out, packages)
	if len(errs) == 0 {
		// A failure that names no package (go.mod, toolchain) is the main module's.
		errs[packages[len(packages)-1].ImportPath] = strings.Split(strings.TrimSpace(out), "\n")
	}
	return port.Diagnose("linux", src.Arch, packages, errs), nil
}

// PortFixInput names a failing module to fix.
type PortFixInput struct {
	Source   PortSource         `json:"source"`
	Packages []string           `json:"packages"` // the port's packages (host checks)
	Module   port.ModuleFailure `json:"module"`
}

// PortUpgrade is the outcome of trying newer versions of a module.
type PortUpgrade struct {
	From    string   `json:"from"`
	Version string   `json:"version,omitempty"` // "" when none fits
	Tried   []string `json:"tried,omitempty"`
	Reason  string   `json:"reason,omitempty"`
}

// hostTries bounds how many versions above the lowest building one are
// tried when the lowest breaks the host build or tests.
const hostTries = 3

// PortUpgrade moves the module to the lowest published version that builds
// for the arch and keeps the host build and tests green, or leaves go.mod
// as it was.
func (a *Port) PortUpgrade(ctx context.Context, in PortFixInput) (PortUpgrade, error) {
	stop := heartbeat(ctx)
	defer stop()
	res := PortUpgrade{From: in.Module.Version}
	if in.Module.Main || in.Module.Replaced || in.Module.Version == "" {
		res.Reason = "not a versioned dependency"
		return res, nil
	}
	out, err := goOutput(ctx, in.Source.Dir, nil, "list", "-m", "-versions", "-json", in.Module.Path)
	if err != nil {
		res.Reason = "no published versions: " + err.Error()
		return res, nil
	}
	var listed struct{ Versions []string }
	if err := json.Unmarshal([]byte(out), &listed); err != nil {
		return res, err
	}
	candidates := port.Candidates(in.Module.Version, listed.Versions)
	if len(candidates) == 0 {
		res.Reason = "no published version newer than " + in.Module.Version
		return res, nil
	}
	saved, err := saveModFiles(in.Source.Dir, filepath.Join(filepath.Dir(in.Source.Dir), "gomod-before-upgrade.json"))
	if err != nil {
		return res, err
	}
	defer saved.done()
	pkgs := in.Module.BuildList()
	buildsFor := func(v string) (bool, error) {
		if !slices.Contains(res.Tried, v) {
			res.Tried = append(res.Tried, v)
		}
		if err := saved.restore(); err != nil {
			return false, err
		}
		if _, err := goCmd(ctx, in.Source.Dir, nil, "get", in.Module.Path+"@"+v); err != nil {
			return false, nil
		}
		_, err := goCmd(ctx, in.Source.Dir, targetEnv(in.Source.Arch), append([]string{"build", "-o", os.DevNull}, pkgs...)...)
		return err == nil, ctx.Err()
	}
	lowest, ok, err := port.LowestBuilding(candidates, buildsFor)
	if err != nil {
		return res, errors.Join(err, saved.restore())
	}
	if !ok {
		res.Reason = fmt.Sprintf("no version up to %s builds for %s", candidates[len(candidates)-1], in.Source.Arch)
		return res, saved.restore()
	}
	start := slices.Index(candidates, lowest)
	for _, v := range candidates[start:min(len(candidates), start+hostTries)] {
		if ok, err := buildsFor(v); err != nil || !ok {
			continue
		}
		if err := hostGreen(ctx, in.Source.Dir, in.Packages); err != nil {
			res.Reason += fmt.Sprintf("%s breaks the host: %v; ", v, err)
			continue
		}
		res.Version, res.Reason = v, ""
		return res, nil
	}
	return res, saved.restore()
}

// hostGreen builds and tests the port's packages for the host.
func hostGreen(ctx context.Context, dir string, pkgs []string) error {
	if out, err := goCmd(ctx, dir, nil, append([]string{"build", "-o", os.DevNull}, pkgs...)...); err != nil {
		return fmt.Errorf("host build: %s", lastLines(out, 5))
	}
	if out, err := goCmd(ctx, dir, nil, append([]string{"test", "-vet=off", "-count=1"}, pkgs...)...); err != nil {
		return fmt.Errorf("host tests: %s", lastLines(out, 5))
	}
	return nil
}

// PortPatch is the outcome of patching a local copy of a module.
type PortPatch struct {
	Dir        string          `json:"dir,omitempty"`     // the copy, relative to the module root
	Replace    string          `json:"replace,omitempty"` // the go.mod replace directive
	Donors     []string        `json:"donors"`
	Files      []port.ArchFile `json:"files,omitempty"`
	Unresolved []string        `json:"unresolved,omitempty"`
	Errors     []string        `json:"errors,omitempty"` // what still fails (copy reverted)
	Reason     string          `json:"reason,omitempty"` // why no patch works
	Stat       string          `json:"stat,omitempty"`   // diff stat of the copy against the module
}

// patchRounds bounds regeneration: a donor file may need more donor files.
const patchRounds = 3

// PortPatch copies the module under third_party/, generates its missing
// arch files from a donor arch, points a replace at the copy and rebuilds;
// if the module still fails, the copy and the replace are removed.
func (a *Port) PortPatch(ctx context.Context, in PortFixInput) (PortPatch, error) {
	stop := heartbeat(ctx)
	defer stop()
	src, mod := in.Source, in.Module
	goroot, err := goOutput(ctx, "", nil, "env", "GOROOT")
	if err != nil {
		return PortPatch{}, err
	}
	dist, err := goOutput(ctx, "", nil, "tool", "dist", "list", "-json")
	if err != nil {
		return PortPatch{}, err
	}
	platforms, err := port.ParsePlatforms([]byte(dist))
	if err != nil {
		return PortPatch{}, err
	}
	res := PortPatch{}
	if res.Donors, err = port.Donors(strings.TrimSpace(goroot), "linux", src.Arch, platforms); err != nil {
		return res, err
	}
	if mod.Main {
		res.Reason = "it is the module being ported: its own code needs changing"
		return res, nil
	}
	if onlyCgo(mod) {
		res.Reason = "no file derived from another arch replaces C: " + port.CgoAdvice(mod, src.Arch)
		return res, nil
	}
	rel := filepath.Join("third_party", filepath.FromSlash(mod.Path))
	copyDir := filepath.Join(src.Dir, rel)
	if !mod.Replaced {
		if err := copyModule(mod.Dir, copyDir, mod.Path); err != nil {
			return res, err
		}
		res.Replace = mod.Path + " => ./" + filepath.ToSlash(rel)
		if _, err := goCmd(ctx, src.Dir, nil, "mod", "edit", "-replace", mod.Path+"=./"+filepath.ToSlash(rel)); err != nil {
			return res, err
		}
	}
	res.Dir = filepath.ToSlash(rel)
	pkgs := mod.BuildList()
	failing := mod.Packages
	for round := 0; round < patchRounds && len(failing) > 0; round++ {
		wrote := 0
		res.Unresolved = nil
		for _, p := range failing {
			dir := filepath.Join(copyDir, filepath.FromSlash(strings.TrimPrefix(strings.TrimPrefix(p.Package, mod.Path), "/")))
			files, unresolved, err := port.PlanArchFiles(dir, "linux", src.Arch, res.Donors, p.Missing)
			if err != nil {
				return res, err
			}
			res.Unresolved = append(res.Unresolved, unresolved...)
			for _, f := range files {
				if err := os.WriteFile(filepath.Join(dir, f.Name), f.Content, 0o644); err != nil {
					return res, err
				}
				f.Name = filepath.ToSlash(filepath.Join(rel, strings.TrimPrefix(dir, copyDir), f.Name))
				res.Files = append(res.Files, f)
				wrote++
			}
		}
		d, err := diagnose(ctx, src, pkgs)
		if err != nil {
			return res, err
		}
		failed, _ := d.Module(mod.Path)
		failing = failed.Packages
		if wrote == 0 {
			break
		}
	}
	if len(failing) == 0 {
		res.Stat, err = git.DiffStat(ctx, mod.Dir, copyDir)
		return res, err
	}
	for _, p := range failing {
		res.Errors = append(res.Errors, p.Errors...)
	}
	res.Reason = "the files derived from donor arches do not make it build"
	if len(res.Files) == 0 {
		res.Reason = fmt.Sprintf("no donor arch (%s) declares what is missing: %s", strings.Join(res.Donors, ", "), strings.Join(res.Unresolved, ", "))
	}
	if !mod.Replaced {
		if _, err := goCmd(ctx, src.Dir, nil, "mod", "edit", "-dropreplace", mod.Path); err != nil {
			return res, err
		}
		res.Replace = ""
	}
	res.Files = nil
	return res, os.RemoveAll(copyDir)
}

// onlyCgo reports whether every failing package of m fails for cgo alone.
func onlyCgo(m port.ModuleFailure) bool {
	return !slices.ContainsFunc(m.Packages, func(p port.PackageFailure) bool {
		return !slices.Equal(p.Causes, []port.Cause{port.CauseCgo})
	})
}

// copyModule copies a module from the read-only module cache to dst
// (os.CopyFS makes the copy writable), with a go.mod naming it if it has
// none: a replace target needs one.
func copyModule(from, dst, path string) error {
	if err := os.RemoveAll(dst); err != nil {
		return err
	}
	if err := os.CopyFS(dst, os.DirFS(from)); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dst, "go.mod")); err == nil {
		return nil
	}
	return os.WriteFile(filepath.Join(dst, "go.mod"), port.ModuleFile(path), 0o644)
}

// PortCommitInput says what to commit.
type PortCommitInput struct {
	Source  PortSource `json:"source"`
	Message string     `json:"message"`
	// Tidy runs go mod tidy first and reports every module whose
	// requirement changed.
	Tidy bool `json:"tidy,omitempty"`
}

// PortCommit is the port's change set.
type PortCommit struct {
	Branch string `json:"branch"`
	Commit string `json:"commit"`
	Patch  string `json:"patch"` // file holding `git diff base..branch`
	Stat   string `json:"stat"`
	// Tidy is what go mod tidy said ("" when it was not run).
	Tidy string `json:"tidy,omitempty"`
	// Modules are the requirements that changed, as go.mod ends.
	Modules []port.ModuleChange `json:"modules,omitempty"`
}

// PortCommit tidies go.mod and go.sum (tidy covers every platform, the
// host's and the target's), commits the work tree on the port branch and
// writes the change set as a patch next to it.
func (a *Port) PortCommit(ctx context.Context, in PortCommitInput) (PortCommit, error) {
	stop := heartbeat(ctx)
	defer stop()
	dir := in.Source.Dir
	var res PortCommit
	if in.Tidy {
		res.Tidy = "go.mod and go.sum tidy"
		if out, err := goCmd(ctx, dir, nil, "mod", "tidy", "-e"); err != nil {
			res.Tidy = "go mod tidy failed: " + lastLines(out, 5)
		}
		modJSON, err := goOutput(ctx, dir, nil, "mod", "edit", "-json")
		if err != nil {
			return res, err
		}
		after, err := port.ParseGoModJSON([]byte(modJSON))
		if err != nil {
			return res, err
		}
		if in.Source.GoMod != nil {
			res.Modules = port.ModuleChanges(*in.Source.GoMod, after)
		}
	}
	head, err := git.Commit(ctx, dir, in.Message, true)
	if err != nil {
		return PortCommit{}, err
	}
	patch := filepath.Join(filepath.Dir(dir), "port-"+in.Source.Arch+".patch")
	if _, err := git.Run(ctx, dir, "diff", "--binary", "--output="+patch, in.Source.Base, "HEAD"); err != nil {
		return PortCommit{}, err
	}
	stat, err := git.Run(ctx, dir, "diff", "--shortstat", in.Source.Base, "HEAD")
	if err != nil {
		return PortCommit{}, err
	}
	res.Branch, res.Commit, res.Patch, res.Stat = PortBranch(in.Source.Arch), head, patch, stat
	return res, nil
}

// PortBinary is one cross-built command.
type PortBinary struct {
	Name string `json:"name"`
	Path string `json:"path"`
	Size int64  `json:"size"`
}

// PortBuild cross-builds the packages with CGO_ENABLED=0 and returns the
// commands it produced.
func (a *Port) PortBuild(ctx context.Context, in PortDiagnoseInput) ([]PortBinary, error) {
	stop := heartbeat(ctx)
	defer stop()
	out := filepath.Join(filepath.Dir(in.Source.Dir), "bin-"+in.Source.Arch)
	if err := os.RemoveAll(out); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	if msg, err := goCmd(ctx, in.Source.Dir, targetEnv(in.Source.Arch), append([]string{"build", "-trimpath", "-o", out + "/"}, in.Packages...)...); err != nil {
		return nil, temporal.NewNonRetryableApplicationError("cross-build failed: "+lastLines(msg, 20), ErrTypeBuildFailed, nil)
	}
	entries, err := os.ReadDir(out)
	if err != nil {
		return nil, err
	}
	var bins []PortBinary
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			return nil, err
		}
		bins = append(bins, PortBinary{Name: e.Name(), Path: filepath.Join(out, e.Name()), Size: info.Size()})
	}
	return bins, nil
}

// PortImageInput says which binaries go into the image.
type PortImageInput struct {
	Name     string       `json:"name"` // repository in the center registry
	Arch     string       `json:"arch"`
	Binaries []PortBinary `json:"binaries"`
}

// PortImage builds a FROM-scratch linux/<arch> image holding the binaries
// under /app (the first is the entrypoint) and pushes it to the center
// registry as <name>:<arch>.
func (a *Port) PortImage(ctx context.Context, in PortImageInput) (string, error) {
	stop := heartbeat(ctx)
	defer stop()
	if len(in.Binaries) == 0 {
		return "", temporal.NewNonRetryableApplicationError("no binary to put in an image", ErrTypeBuildFailed, nil)
	}
	var files []image.File
	for _, b := range in.Binaries {
		data, err := os.ReadFile(b.Path)
		if err != nil {
			return "", err
		}
		files = append(files, image.File{Path: "/app/" + b.Name, Mode: 0o755, Data: data})
	}
	img, err := image.Build(v1.Platform{OS: "linux", Architecture: in.Arch}, files,
		image.Config{Entrypoint: []string{"/app/" + in.Binaries[0].Name}, Labels: map[string]string{"drift.port.arch": in.Arch}})
	if err != nil {
		return "", err
	}
	return image.Push(ctx, a.Registry+"/"+in.Name+":"+in.Arch, img)
}

// targetEnv is the environment of a cross-build for linux/<arch>.
func targetEnv(arch string) []string {
	return []string{"GOOS=linux", "GOARCH=" + arch, "CGO_ENABLED=0"}
}

// goCmd runs the go command in dir with the machine's module cache, never
// a workspace or the caller's GOFLAGS, and returns its combined output
// (build errors come on stderr).
func goCmd(ctx context.Context, dir string, env []string, args ...string) (string, error) {
	return runGo(ctx, dir, env, true, args...)
}

// goOutput is goCmd for commands whose stdout is data (JSON, a path):
// their stderr ("go: downloading …") is only kept for errors.
func goOutput(ctx context.Context, dir string, env []string, args ...string) (string, error) {
	return runGo(ctx, dir, env, false, args...)
}

func runGo(ctx context.Context, dir string, env []string, combined bool, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=", "GOTOOLCHAIN=local")
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if combined {
		cmd.Stderr = &stdout
	}
	err := cmd.Run()
	if err != nil {
		all := stdout.String() + stderr.String()
		return all, fmt.Errorf("go %s: %w: %s", strings.Join(args, " "), err, lastLines(all, 10))
	}
	return stdout.String(), nil
}

// modFiles is a saved go.mod/go.sum pair, kept on disk too until done so
// that a retry after a crash mid-try starts from the same go.mod.
type modFiles struct {
	dir       string `json:"-"`
	snapshot  string `json:"-"`
	Mod, Sum  []byte
	SumExists bool
}

// saveModFiles saves dir's go.mod and go.sum to snapshot, or, if a crashed
// attempt left a snapshot, restores that one.
func saveModFiles(dir, snapshot string) (*modFiles, error) {
	m := &modFiles{dir: dir, snapshot: snapshot}
	if b, err := os.ReadFile(snapshot); err == nil {
		if err := json.Unmarshal(b, m); err != nil {
			return nil, err
		}
		return m, m.restore()
	}
	var err error
	if m.Mod, err = os.ReadFile(filepath.Join(dir, "go.mod")); err != nil {
		return nil, err
	}
	m.Sum, err = os.ReadFile(filepath.Join(dir, "go.sum"))
	m.SumExists = err == nil
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return m, os.WriteFile(snapshot, b, 0o644)
}

func (m *modFiles) restore() error {
	if err := os.WriteFile(filepath.Join(m.dir, "go.mod"), m.Mod, 0o644); err != nil {
		return err
	}
	if !m.SumExists {
		return os.RemoveAll(filepath.Join(m.dir, "go.sum"))
	}
	return os.WriteFile(filepath.Join(m.dir, "go.sum"), m.Sum, 0o644)
}

// done forgets the snapshot: go.mod is as the attempt means to leave it.
func (m *modFiles) done() error { return os.RemoveAll(m.snapshot) }

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// PortSuccessorInput asks whether moving a module to the module that
// continues it makes the port build and keeps the host green.
type PortSuccessorInput struct {
	Source   PortSource `json:"source"`
	Packages []string   `json:"packages"`
	Module   string     `json:"module"`
	// Apply keeps a rewrite that works in the work tree; otherwise it is
	// tried in a scratch copy and only reported.
	Apply bool `json:"apply,omitempty"`
}

// PortSuccessor is the outcome of moving a module to its successor.
type PortSuccessor struct {
	Successor string   `json:"successor"`
	Version   string   `json:"version,omitempty"` // "" when no version works
	Tried     []string `json:"tried,omitempty"`
	Files     []string `json:"files,omitempty"` // rewritten, relative to the module root
	Applied   bool     `json:"applied,omitempty"`
	Reason    string   `json:"reason,omitempty"`
}

// PortSuccessor rewrites the main module's imports of an archived module
// to the module that continues it (keeping the package name), drops the
// old module's patched copy, and looks for the lowest version of the
// successor with which the port cross-builds and the host build and tests
// stay green, as an upgrade does.
func (a *Port) PortSuccessor(ctx context.Context, in PortSuccessorInput) (PortSuccessor, error) {
	stop := heartbeat(ctx)
	defer stop()
	succ, ok := port.Successor(in.Module)
	res := PortSuccessor{Successor: succ}
	if !ok {
		res.Reason = "drift knows no module that continues " + in.Module
		return res, nil
	}
	dir := in.Source.Dir
	if !in.Apply {
		dir = filepath.Join(filepath.Dir(in.Source.Dir), "successor")
		if err := os.RemoveAll(dir); err != nil {
			return res, err
		}
		if err := os.CopyFS(dir, os.DirFS(in.Source.Dir)); err != nil {
			return res, err
		}
		defer os.RemoveAll(dir)
	}
	saved, err := saveModFiles(dir, dir+".gomod.json")
	if err != nil {
		return res, err
	}
	defer saved.done()
	name, _ := goOutput(ctx, dir, targetEnv(in.Source.Arch), "list", "-e", "-f", "{{.Name}}", in.Module)
	if name = strings.TrimSpace(name); name == "" {
		name = path.Base(in.Module)
	}
	originals, err := rewriteImports(dir, in.Module, succ, name)
	if err != nil {
		return res, err
	}
	for f := range originals {
		res.Files = append(res.Files, f)
	}
	slices.Sort(res.Files)
	if len(originals) == 0 {
		res.Reason = "the module's own code does not import " + in.Module + ": its importers would need the rewrite"
		return res, nil
	}
	undo := func() error {
		for f, b := range originals {
			if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
				return err
			}
		}
		return saved.restore()
	}
	out, err := goOutput(ctx, dir, nil, "list", "-m", "-versions", "-json", succ)
	var listed struct{ Versions []string }
	if err == nil {
		err = json.Unmarshal([]byte(out), &listed)
	}
	candidates := port.Candidates("v0.0.0", listed.Versions)
	if err != nil || len(candidates) == 0 {
		res.Reason = fmt.Sprintf("no published version of %s (%v)", succ, err)
		return res, undo()
	}
	buildsFor := func(v string) (bool, error) {
		if !slices.Contains(res.Tried, v) {
			res.Tried = append(res.Tried, v)
		}
		if err := saved.restore(); err != nil {
			return false, err
		}
		for _, args := range [][]string{{"mod", "edit", "-dropreplace", in.Module}, {"get", succ + "@" + v}, {"mod", "tidy", "-e"}} {
			if _, err := goCmd(ctx, dir, nil, args...); err != nil {
				return false, ctx.Err()
			}
		}
		_, err := goCmd(ctx, dir, targetEnv(in.Source.Arch), append([]string{"build", "-o", os.DevNull}, in.Packages...)...)
		return err == nil, ctx.Err()
	}
	lowest, ok, err := port.LowestBuilding(candidates, buildsFor)
	if err != nil || !ok {
		res.Reason = fmt.Sprintf("no version of %s up to %s builds for %s", succ, candidates[len(candidates)-1], in.Source.Arch)
		return res, errors.Join(err, undo())
	}
	start := slices.Index(candidates, lowest)
	for _, v := range candidates[start:min(len(candidates), start+hostTries)] {
		if ok, err := buildsFor(v); err != nil || !ok {
			continue
		}
		if err := hostGreen(ctx, dir, in.Packages); err != nil {
			res.Reason += fmt.Sprintf("%s breaks the host: %v; ", v, err)
			continue
		}
		res.Version, res.Reason, res.Applied = v, "", in.Apply
		if in.Apply {
			return res, os.RemoveAll(filepath.Join(dir, "third_party", filepath.FromSlash(in.Module)))
		}
		return res, nil
	}
	return res, undo()
}

// rewriteImports rewrites the imports of from to to in the module's own
// Go files (not third_party, vendor or testdata) and returns the original
// content of each file it changed, by path relative to dir.
func rewriteImports(dir, from, to, name string) (map[string][]byte, error) {
	originals := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case "third_party", "vendor", "testdata", ".git":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") {
			return nil
		}
		src, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out, changed, err := port.RewriteImports(src, from, to, name)
		if err != nil || !changed {
			return nil // a file that does not parse is not the port's to fix
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		originals[filepath.ToSlash(rel)] = src
		return os.WriteFile(p, out, 0o644)
	})
	return originals, err
}
