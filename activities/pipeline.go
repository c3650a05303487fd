package activities

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/edgedrift/drift/internal/image"
	"github.com/edgedrift/drift/internal/pipelinespec"
)

// Pipeline runs a pipeline's central steps on a build worker: git, the
// build and test commands, packaging and the image center. Each run works
// in <DataDir>/pipeline/runs/<app>/<run>: src/ is the checkout (removed by
// Cleanup), out/<os>-<arch>/ the built files (removed once packaged).
// Packages are kept by content in <DataDir>/pipeline/artifacts, step logs in
// <DataDir>/pipeline/logs/<app>/<run>/<step>.log.
type Pipeline struct {
	Center  string // center registry host:port
	DataDir string
}

// Error types of pipeline steps; none is retried.
const (
	ErrTypeUnknownRepo = "UnknownRepo" // git cannot read the repository
	ErrTypeUnknownRef  = "UnknownRef"  // the repository has no such branch, tag or commit
	ErrTypeBuildFailed = "BuildFailed" // a build command failed
	ErrTypeTestFailed  = "TestFailed"  // a test command failed
	ErrTypeNoArtifact  = "NoArtifact"  // the build did not make an artifact
)

// RunRef names a run's directories.
type RunRef struct {
	App string `json:"app"`
	Run string `json:"run"`
}

// Checkout is the source a run builds.
type Checkout struct {
	Commit   string   `json:"commit"`   // exact commit the ref pointed at
	Tree     string   `json:"tree"`     // git tree hash: the source content
	BuildKey string   `json:"buildKey"` // tree + build spec (pipelinespec.Spec.BuildKey)
	Log      StepLogs `json:"log"`
}

// StepLogs say where a step's log is and end with its last lines.
type StepLogs struct {
	File string   `json:"file"`
	Tail []string `json:"tail,omitempty"`
}

// Package is the compressed artifact of a run.
type Package struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// StepRequest is what the build and test steps need.
type StepRequest struct {
	Ref      RunRef            `json:"ref"`
	Spec     pipelinespec.Spec `json:"spec"`
	Checkout Checkout          `json:"checkout"`
}

// ImageRequest makes or pushes the image of a package.
type ImageRequest struct {
	Spec     pipelinespec.Spec `json:"spec"`
	Package  Package           `json:"package"`
	Tree     string            `json:"tree"`
	BuildKey string            `json:"buildKey"`
	Tag      string            `json:"tag"`    // the run's tag
	Digest   string            `json:"digest"` // expected digest (Push)
}

// logTailLines is how many lines of a step's log travel in its result.
const logTailLines = 20

func (p *Pipeline) runDir(r RunRef) string {
	return filepath.Join(p.DataDir, "pipeline", "runs", r.App, r.Run)
}

func (p *Pipeline) logFile(r RunRef, step string) string {
	return filepath.Join(p.DataDir, "pipeline", "logs", r.App, r.Run, step+".log")
}

// Clone fetches the spec's ref shallowly with the real git and records the
// exact commit and tree it found, and the build key of that tree.
func (p *Pipeline) Clone(ctx context.Context, r RunRef, spec pipelinespec.Spec) (Checkout, error) {
	stop := heartbeat(ctx)
	defer stop()
	src := filepath.Join(p.runDir(r), "src")
	if err := os.RemoveAll(src); err != nil {
		return Checkout{}, err
	}
	lg, err := openLog(p.logFile(r, "clone"))
	if err != nil {
		return Checkout{}, err
	}
	defer lg.Close()
	if err := fetch(ctx, lg, src, spec.Repo, spec.Ref); err != nil {
		return Checkout{}, err
	}
	ids, err := gitOut(ctx, src, "rev-parse", "FETCH_HEAD^{commit}", "FETCH_HEAD^{tree}")
	if err != nil {
		return Checkout{}, err
	}
	commit, tree, _ := strings.Cut(ids, "\n")
	fmt.Fprintf(lg, "fetched %s (tree %s)\n", commit, tree)
	return Checkout{Commit: commit, Tree: tree, BuildKey: spec.BuildKey(tree), Log: lg.logs()}, nil
}

// fetch makes dir a git repository holding the one commit ref (a branch, tag
// or commit) names in repo, without its history; nothing is checked out
// until a step needs the files (a reused build never does).
func fetch(ctx context.Context, lg *stepLog, dir, repo, ref string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if isLocalPath(repo) {
		abs, err := filepath.Abs(repo)
		if err != nil {
			return err
		}
		repo = "file://" + abs // local paths ignore --depth; file:// honours it
	}
	for _, args := range [][]string{
		{"init", "-q"},
		{"fetch", "-q", "--depth", "1", "--no-tags", "--", repo, ref},
	} {
		if err := lg.run(ctx, dir, nil, "git", args...); err != nil {
			return classifyGit(repo, ref, lg.tailText(), err)
		}
	}
	return nil
}

func isLocalPath(repo string) bool {
	return !strings.Contains(repo, "://") && !strings.Contains(strings.SplitN(repo, "/", 2)[0], ":")
}

// classifyGit tells a missing repository or ref (no retry helps) from a
// failure worth retrying, from what git said.
func classifyGit(repo, ref, out string, err error) error {
	low := strings.ToLower(out)
	switch {
	case strings.Contains(low, "couldn't find remote ref"), strings.Contains(low, "not our ref"),
		strings.Contains(low, "unadvertised object"), strings.Contains(low, "no such ref"):
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("clone: %s has no ref %q", repo, ref), ErrTypeUnknownRef, err)
	case strings.Contains(low, "does not appear to be a git repository"), strings.Contains(low, "repository not found"),
		strings.Contains(low, "does not exist"), strings.Contains(low, "not found"):
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("clone: no git repository at %s", repo), ErrTypeUnknownRepo, err)
	}
	return fmt.Errorf("clone %s %s: %w: %s", repo, ref, err, out)
}

// ensureCheckout checks the run's commit out, fetching it again when the
// repository is gone (another build worker, or a resumed run after Cleanup).
func (p *Pipeline) ensureCheckout(ctx context.Context, lg *stepLog, r RunRef, repo string, co Checkout) (string, error) {
	src := filepath.Join(p.runDir(r), "src")
	if head, err := gitOut(ctx, src, "rev-parse", "HEAD"); err == nil && head == co.Commit {
		return src, nil
	}
	if _, err := gitOut(ctx, src, "cat-file", "-e", co.Commit+"^{commit}"); err != nil {
		os.RemoveAll(src)
		fmt.Fprintf(lg, "fetching %s again at %s\n", repo, co.Commit)
		if err := fetch(ctx, lg, src, repo, co.Commit); err != nil {
			return "", err
		}
	}
	if err := lg.run(ctx, src, nil, "git", "checkout", "-q", "--detach", co.Commit); err != nil {
		return "", fmt.Errorf("checkout %s: %w: %s", co.Commit, err, lg.tailText())
	}
	return src, nil
}

// Build runs the build commands once per image platform (GOOS and GOARCH
// set) and keeps each platform's artifacts in out/<os>-<arch>.
func (p *Pipeline) Build(ctx context.Context, req StepRequest) (StepLogs, error) {
	stop := heartbeat(ctx)
	defer stop()
	lg, err := openLog(p.logFile(req.Ref, "build"))
	if err != nil {
		return StepLogs{}, err
	}
	defer lg.Close()
	p.reapLeftovers(req.Ref, lg)
	src, err := p.ensureCheckout(ctx, lg, req.Ref, req.Spec.Repo, req.Checkout)
	if err != nil {
		return lg.logs(), err
	}
	for _, pl := range req.Spec.Platforms() {
		env := mergeEnv(req.Spec.Build.Env, map[string]string{"GOOS": pl.OS, "GOARCH": pl.Arch, "DRIFT_COMMIT": req.Checkout.Commit})
		for _, c := range req.Spec.Build.Commands {
			fmt.Fprintf(lg, "[%s] $ %s\n", pl, c)
			if err := lg.run(ctx, src, env, "sh", "-c", c); err != nil {
				if ctx.Err() != nil {
					return lg.logs(), ctx.Err()
				}
				return lg.logs(), lg.failed(ErrTypeBuildFailed, fmt.Sprintf("build for %s: %q failed", pl, c), err)
			}
		}
		out := filepath.Join(p.runDir(req.Ref), "out", pl.OS+"-"+pl.Arch)
		if err := os.MkdirAll(out, 0o755); err != nil {
			return lg.logs(), err
		}
		for _, a := range req.Spec.Artifacts {
			data, err := os.ReadFile(filepath.Join(src, filepath.FromSlash(a)))
			if err != nil {
				return lg.logs(), temporal.NewNonRetryableApplicationError(
					fmt.Sprintf("build for %s made no artifact %s: %v", pl, a, err), ErrTypeNoArtifact, err)
			}
			if err := os.WriteFile(filepath.Join(out, path.Base(a)), data, 0o755); err != nil {
				return lg.logs(), err
			}
		}
	}
	fmt.Fprintf(lg, "built %d artifact(s) for %s\n", len(req.Spec.Artifacts), strings.Join(req.Spec.Image.Platforms, ", "))
	return lg.logs(), nil
}

// Test runs the test commands on the build host; a failure carries the
// test output and is not retried.
func (p *Pipeline) Test(ctx context.Context, req StepRequest) (StepLogs, error) {
	stop := heartbeat(ctx)
	defer stop()
	lg, err := openLog(p.logFile(req.Ref, "test"))
	if err != nil {
		return StepLogs{}, err
	}
	defer lg.Close()
	p.reapLeftovers(req.Ref, lg)
	src, err := p.ensureCheckout(ctx, lg, req.Ref, req.Spec.Repo, req.Checkout)
	if err != nil {
		return lg.logs(), err
	}
	env := mergeEnv(req.Spec.Test.Env, map[string]string{"DRIFT_COMMIT": req.Checkout.Commit})
	for _, c := range req.Spec.Test.Commands {
		fmt.Fprintf(lg, "$ %s\n", c)
		if err := lg.run(ctx, src, env, "sh", "-c", c); err != nil {
			if ctx.Err() != nil {
				return lg.logs(), ctx.Err()
			}
			return lg.logs(), lg.failed(ErrTypeTestFailed, fmt.Sprintf("test: %q failed", c), err)
		}
	}
	return lg.logs(), nil
}

// Package writes every platform's artifacts into one reproducible tar.gz
// (entries <os>-<arch>/<file>, fixed owners and times), kept by its sha256;
// the built files are removed once packaged.
func (p *Pipeline) Package(ctx context.Context, r RunRef, spec pipelinespec.Spec) (Package, error) {
	out := filepath.Join(p.runDir(r), "out")
	var buf bytes.Buffer
	gz, _ := gzip.NewWriterLevel(&buf, gzip.DefaultCompression) // zero header: no name, no time
	tw := tar.NewWriter(gz)
	for _, pl := range spec.Platforms() {
		dir := pl.OS + "-" + pl.Arch
		for _, a := range spec.Artifacts {
			data, err := os.ReadFile(filepath.Join(out, dir, path.Base(a)))
			if err != nil {
				return Package{}, temporal.NewNonRetryableApplicationError(
					fmt.Sprintf("package: artifact %s for %s is missing (build again): %v", a, pl, err), ErrTypeNoArtifact, err)
			}
			hdr := &tar.Header{Typeflag: tar.TypeReg, Name: dir + "/" + path.Base(a), Mode: 0o755, Size: int64(len(data)), Format: tar.FormatPAX}
			if err := tw.WriteHeader(hdr); err != nil {
				return Package{}, err
			}
			if _, err := tw.Write(data); err != nil {
				return Package{}, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return Package{}, err
	}
	if err := gz.Close(); err != nil {
		return Package{}, err
	}
	sum := sha256.Sum256(buf.Bytes())
	pkg := Package{SHA256: hex.EncodeToString(sum[:]), Size: int64(buf.Len())}
	pkg.Path = filepath.Join(p.DataDir, "pipeline", "artifacts", pkg.SHA256+".tar.gz")
	if err := writeAtomic(pkg.Path, buf.Bytes()); err != nil {
		return Package{}, err
	}
	return pkg, os.RemoveAll(out)
}

// BuildImage makes the multi-platform OCI index of a package, daemonless,
// and returns its digest. The build is a pure function of the package, so
// Push makes the very same bytes again.
func (p *Pipeline) BuildImage(ctx context.Context, req ImageRequest) (string, error) {
	idx, err := imageOf(req)
	if err != nil {
		return "", err
	}
	d, err := idx.Digest()
	return d.String(), err
}

// Push sends the package's image to the center registry under the run's tag
// and under build-<key>, which marks the build as tested and reusable.
func (p *Pipeline) Push(ctx context.Context, req ImageRequest) (string, error) {
	stop := heartbeat(ctx)
	defer stop()
	idx, err := imageOf(req)
	if err != nil {
		return "", err
	}
	d, err := idx.Digest()
	if err != nil {
		return "", err
	}
	if req.Digest != "" && d.String() != req.Digest {
		return "", temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("push: image rebuilt from package %s has digest %s, not %s", req.Package.SHA256, d, req.Digest), ErrTypeInvalidImage, nil)
	}
	repo := p.repository(req.Spec.Image.Name)
	pinned, err := image.Push(ctx, repo+":"+req.Tag, idx)
	if err != nil {
		return "", err
	}
	if _, err := image.Push(ctx, repo+":"+buildTag(req.BuildKey), idx); err != nil {
		return "", err
	}
	return pinned, nil
}

// FindBuild returns the pushed image of an earlier run with the same build
// key, pinned by digest, or "" when there is none. The center registry is
// where this memory lives: a build-<key> tag is written only after the
// run's tests passed and its image was pushed, it survives every worker,
// and it can never point at an image the registry no longer has.
func (p *Pipeline) FindBuild(ctx context.Context, imageName, key string) (string, error) {
	pinned, err := image.Resolve(ctx, p.repository(imageName)+":"+buildTag(key))
	if errors.Is(err, image.ErrNotFound) {
		return "", nil
	}
	return pinned, err
}

// Cleanup removes the run's checkout; logs and packages stay.
func (p *Pipeline) Cleanup(ctx context.Context, r RunRef) error {
	return os.RemoveAll(filepath.Join(p.runDir(r), "src"))
}

// repository is the image repository a spec's image name stands for: a name
// without a registry host lives in the center registry.
func (p *Pipeline) repository(name string) string { return pipelinespec.InRegistry(name, p.Center) }

func buildTag(key string) string { return "build-" + key[:40] }

// imageOf builds the image index of a package: per platform, the artifacts
// at the image's root.
func imageOf(req ImageRequest) (v1.ImageIndex, error) {
	files, err := readPackage(req.Package)
	if err != nil {
		return nil, err
	}
	spec := req.Spec
	var imgs []v1.Image
	for _, pl := range spec.Platforms() {
		var layer []image.File
		for _, a := range spec.Artifacts {
			data, ok := files[pl.OS+"-"+pl.Arch+"/"+path.Base(a)]
			if !ok {
				return nil, temporal.NewNonRetryableApplicationError(
					fmt.Sprintf("image: package %s has no %s for %s", req.Package.SHA256, a, pl), ErrTypeNoArtifact, nil)
			}
			layer = append(layer, image.File{Path: "/" + path.Base(a), Mode: 0o755, Data: data})
		}
		img, err := image.Build(v1.Platform{OS: pl.OS, Architecture: pl.Arch}, layer, image.Config{
			Entrypoint: spec.Image.Entrypoint, Env: spec.Image.Env, Ports: spec.Image.Ports,
			// Nothing of the run (commit, time) goes in: the digest is a
			// function of the artifacts, so the same source gives the same digest.
			Labels: map[string]string{"drift.app": spec.App},
		})
		if err != nil {
			return nil, err
		}
		imgs = append(imgs, img)
	}
	return image.Index(imgs...)
}

// readPackage reads a package after checking its sha256.
func readPackage(pkg Package) (map[string][]byte, error) {
	data, err := os.ReadFile(pkg.Path)
	if err != nil {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("package %s is gone: %v", pkg.Path, err), ErrTypeNoArtifact, err)
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != pkg.SHA256 {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("package %s does not match its sha256", pkg.Path), ErrTypeNoArtifact, nil)
	}
	gz, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(gz)
	files := map[string][]byte{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return files, nil
		}
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return nil, err
		}
		files[hdr.Name] = b
	}
}

// VerifyRequest asks a target's worker whether an endpoint answers.
type VerifyRequest struct {
	URL    string        `json:"url"`
	Health string        `json:"health"`
	Within time.Duration `json:"within"` // keep asking this long
}

// Verify GETs the endpoint's health path from the cloud's own worker until
// it answers 2xx or the time is up.
func (c *Cloud) Verify(ctx context.Context, req VerifyRequest) (string, error) {
	url := strings.TrimRight(req.URL, "/") + req.Health
	deadline := time.Now().Add(req.Within)
	client := &http.Client{Timeout: 5 * time.Second}
	var last string
	for {
		resp, err := client.Get(url)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				return fmt.Sprintf("%s answered %d", url, resp.StatusCode), nil
			}
			last = fmt.Sprintf("%s answered %d: %s", url, resp.StatusCode, strings.TrimSpace(string(body)))
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return "", temporal.NewNonRetryableApplicationError("verify: "+last, ErrTypeNotServing, err)
		}
		if activity.IsActivity(ctx) {
			activity.RecordHeartbeat(ctx, last)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// ErrTypeNotServing: a deployed endpoint did not answer in time.
const ErrTypeNotServing = "NotServing"

// stepLog appends a step's output to its log file and keeps the tail.
type stepLog struct {
	mu    sync.Mutex
	f     *os.File
	file  string
	tail  []string
	part  string
	pgids string // file recording the running command's process group
}

func openLog(file string) (*stepLog, error) {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(file, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(f, "--- %s\n", time.Now().UTC().Format(time.RFC3339))
	return &stepLog{f: f, file: file}, nil
}

func (l *stepLog) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lines := strings.Split(l.part+string(b), "\n")
	l.part = lines[len(lines)-1]
	l.tail = append(l.tail, lines[:len(lines)-1]...)
	if len(l.tail) > logTailLines {
		l.tail = l.tail[len(l.tail)-logTailLines:]
	}
	return l.f.Write(b)
}

func (l *stepLog) Close() error { return l.f.Close() }

func (l *stepLog) logs() StepLogs {
	l.mu.Lock()
	defer l.mu.Unlock()
	tail := append([]string(nil), l.tail...)
	if l.part != "" {
		tail = append(tail, l.part)
	}
	return StepLogs{File: l.file, Tail: tail}
}

// failed is a step's non-retryable failure: the message ends with the
// output's tail, and the details carry the step's logs for Progress.
func (l *stepLog) failed(typ, msg string, err error) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: %v\n%s", msg, err, l.tailText()), typ, err, l.logs())
}

func (l *stepLog) tailText() string { return strings.Join(l.logs().Tail, "\n") }

// run runs a command with its output in the log. The command's process
// group dies with it, and with the worker (Pdeathsig), so a killed worker
// leaves no build running.
func (l *stepLog) run(ctx context.Context, dir string, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = l, l
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if err := cmd.Start(); err != nil {
		return err
	}
	if l.pgids != "" {
		os.WriteFile(l.pgids, []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
		defer os.Remove(l.pgids)
	}
	return cmd.Wait()
}

// reapLeftovers kills what a step's commands left running when their worker
// died: Pdeathsig ends the shell, not what the shell started. Before the
// step runs again, every process still in the recorded process group and
// working in this run's dir is killed.
func (p *Pipeline) reapLeftovers(r RunRef, lg *stepLog) {
	lg.pgids = filepath.Join(p.runDir(r), "running.pgid")
	b, err := os.ReadFile(lg.pgids)
	if err != nil {
		return
	}
	defer os.Remove(lg.pgids)
	pgid, err := strconv.Atoi(string(b))
	if err != nil || pgid <= 1 {
		return
	}
	procs, _ := os.ReadDir("/proc")
	for _, e := range procs {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
		if g, err := syscall.Getpgid(pid); err == nil && g == pgid && strings.HasPrefix(cwd, p.runDir(r)+"/") {
			fmt.Fprintf(lg, "killing %d, left running by an earlier attempt\n", pid)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func gitOut(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	b, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(b)), nil
}

// mergeEnv lists the step's variables then drift's (sorted, drift's last win).
func mergeEnv(step, drift map[string]string) []string {
	var out []string
	for _, m := range []map[string]string{step, drift} {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			out = append(out, k+"="+m[k])
		}
	}
	return out
}

func writeAtomic(file string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, file)
}

// ReadLog returns a step's whole log under dataDir (for the CLI).
func ReadLog(dataDir string, r RunRef, step string) ([]byte, error) {
	return os.ReadFile((&Pipeline{DataDir: dataDir}).logFile(r, step))
}
