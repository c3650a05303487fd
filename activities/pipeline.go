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
	"os"
	"os/exec"
	"path"
	"path/filepath"
	goruntime "runtime"
	"sort"
	"strings"

	"go.temporal.io/sdk/temporal"

	"github.com/edgedrift/drift/internal/pipelinespec"
	"github.com/edgedrift/drift/internal/release"
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
	// Signer signs what the pipeline pushes (nil: images stay unsigned,
	// and sites with a trust policy refuse them).
	Signer *release.Signer
}

// Error types of pipeline steps; none is retried.
const (
	ErrTypeBuildFailed = "BuildFailed" // a build command failed
	ErrTypeTestFailed  = "TestFailed"  // a test command failed
	ErrTypeNoArtifact  = "NoArtifact"  // the build did not make an artifact
	ErrTypeNotServing  = "NotServing"  // a deployed endpoint did not answer in time
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
	// Tests are the test step's results, one per platform tested.
	Tests []release.TestResult `json:"tests,omitempty"`
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

// ImageRequest makes or pushes an image of a package.
type ImageRequest struct {
	Spec pipelinespec.Spec `json:"spec"`
	// Service names the image of images: to make ("": the one image).
	Service  string  `json:"service,omitempty"`
	Package  Package `json:"package"`
	Tree     string  `json:"tree"`
	BuildKey string  `json:"buildKey"`
	Tag      string  `json:"tag"`    // the run's tag
	Digest   string  `json:"digest"` // expected digest (Push)
	// DeferBuildTag leaves the build-<key> tag to Attest, which writes it
	// once the image is signed.
	DeferBuildTag bool `json:"deferBuildTag,omitempty"`
}

// logTailLines is how many lines of a step's log travel in its result.
const logTailLines = 20

func (p *Pipeline) runDir(r RunRef) string {
	return filepath.Join(p.DataDir, "pipeline", "runs", r.App, r.Run)
}

func (p *Pipeline) logFile(r RunRef, step string) string {
	return filepath.Join(p.DataDir, "pipeline", "logs", r.App, r.Run, step+".log")
}

// openStep opens step's log, stops what an attempt on a dead worker left
// running and makes sure the checkout is there. A nil log means it could
// not open; otherwise the caller closes it.
func (p *Pipeline) openStep(ctx context.Context, req StepRequest, step string) (*stepLog, string, error) {
	lg, err := openLog(p.logFile(req.Ref, step))
	if err != nil {
		return nil, "", err
	}
	p.reapLeftovers(req.Ref, lg)
	src, err := p.ensureCheckout(ctx, lg, req.Ref, req.Spec.Repo, req.Checkout)
	return lg, src, err
}

// Build runs the build commands once per image platform (GOOS and GOARCH
// set) and keeps each platform's artifacts in out/<os>-<arch> (one image)
// or out/<service>/<os>-<arch> (images:).
func (p *Pipeline) Build(ctx context.Context, req StepRequest) (StepLogs, error) {
	stop := heartbeat(ctx)
	defer stop()
	lg, src, err := p.openStep(ctx, req, "build")
	if lg == nil {
		return StepLogs{}, err
	}
	defer lg.Close()
	if err != nil {
		return lg.logs(), err
	}
	for _, pl := range req.Spec.Platforms() {
		env := mergeEnv(req.Spec.Build.Env, map[string]string{"GOOS": pl.OS, "GOARCH": pl.Arch, "DRIFT_COMMIT": req.Checkout.Commit})
		if err := lg.runAll(ctx, src, env, req.Spec.Build.Commands, pl.String(), "build for "+pl.String(), ErrTypeBuildFailed); err != nil {
			return lg.logs(), err
		}
		n := 0
		for _, img := range req.Spec.ImageSpecs() {
			if !img.Has(pl) {
				continue
			}
			out := filepath.Join(p.runDir(req.Ref), "out", img.Service, pl.OS+"-"+pl.Arch)
			if err := os.MkdirAll(out, 0o755); err != nil {
				return lg.logs(), err
			}
			for _, a := range img.Artifacts {
				data, err := os.ReadFile(filepath.Join(src, filepath.FromSlash(a)))
				if err != nil {
					return lg.logs(), temporal.NewNonRetryableApplicationError(
						fmt.Sprintf("build for %s made no artifact %s: %v", pl, a, err), ErrTypeNoArtifact, err)
				}
				if err := os.WriteFile(filepath.Join(out, path.Base(a)), data, 0o755); err != nil {
					return lg.logs(), err
				}
				n++
			}
		}
		fmt.Fprintf(lg, "built %d artifact(s) for %s\n", n, pl)
	}
	return lg.logs(), nil
}

// Test runs the test commands once per image platform: natively for the
// build host's, under qemu-<arch>-static for the others (GOARCH set, Go's
// tests run through the emulator by GOFLAGS=-exec=…, other commands find it
// in DRIFT_EMULATOR). The first platform that fails stops the step; the
// results travel with the logs into the provenance.
func (p *Pipeline) Test(ctx context.Context, req StepRequest) (StepLogs, error) {
	stop := heartbeat(ctx)
	defer stop()
	lg, src, err := p.openStep(ctx, req, "test")
	if lg == nil {
		return StepLogs{}, err
	}
	defer lg.Close()
	if err != nil {
		return lg.logs(), err
	}
	var results []release.TestResult
	for _, pl := range req.Spec.Platforms() {
		drift := map[string]string{"DRIFT_COMMIT": req.Checkout.Commit, "GOOS": pl.OS, "GOARCH": pl.Arch}
		emulator := ""
		if pl.OS != goruntime.GOOS || pl.Arch != goruntime.GOARCH {
			if emulator, err = Emulator(pl.Arch); err != nil {
				return lg.logs(), lg.failed(ErrTypeTestFailed, "test for "+pl.String(), err)
			}
			drift["DRIFT_EMULATOR"] = emulator
			drift["GOFLAGS"] = strings.TrimSpace(req.Spec.Test.Env["GOFLAGS"] + " -exec=" + emulator)
		}
		err := lg.runAll(ctx, src, mergeEnv(req.Spec.Test.Env, drift), req.Spec.Test.Commands, pl.String(), "test for "+pl.String(), ErrTypeTestFailed)
		results = append(results, release.TestResult{Platform: pl.String(), Passed: err == nil, Emulator: emulator, Commands: req.Spec.Test.Commands})
		if err != nil {
			logs := lg.logs()
			logs.Tests = results
			var ae *temporal.ApplicationError
			if errors.As(err, &ae) {
				return logs, temporal.NewNonRetryableApplicationError(ae.Message(), ae.Type(), err, logs)
			}
			return logs, err
		}
	}
	logs := lg.logs()
	logs.Tests = results
	return logs, nil
}

// qemuArch is qemu's name of each GOARCH it emulates.
var qemuArch = map[string]string{"amd64": "x86_64", "386": "i386", "arm64": "aarch64", "arm": "arm", "loong64": "loongarch64",
	"riscv64": "riscv64", "ppc64le": "ppc64le", "ppc64": "ppc64", "s390x": "s390x", "mips64le": "mips64el", "mips64": "mips64"}

// Emulator finds qemu-<arch>-static for a GOARCH on PATH.
func Emulator(goarch string) (string, error) {
	q, ok := qemuArch[goarch]
	if !ok {
		return "", fmt.Errorf("no qemu emulator is known for GOARCH %s", goarch)
	}
	name := "qemu-" + q + "-static"
	if _, err := exec.LookPath(name); err != nil {
		return "", fmt.Errorf("%s is not installed on the build worker (apt-get install qemu-user-static): %w", name, err)
	}
	return name, nil
}

// Package writes every image's artifacts of every platform into one
// reproducible tar.gz (entries <os>-<arch>/<file> for the one image,
// <service>/<os>-<arch>/<file> for images:, fixed owners and times), kept
// by its sha256; the built files are removed once packaged.
func (p *Pipeline) Package(ctx context.Context, r RunRef, spec pipelinespec.Spec) (Package, error) {
	out := filepath.Join(p.runDir(r), "out")
	var buf bytes.Buffer
	gz, _ := gzip.NewWriterLevel(&buf, gzip.DefaultCompression) // zero header: no name, no time
	tw := tar.NewWriter(gz)
	for _, img := range spec.ImageSpecs() {
		for _, pl := range spec.Platforms() {
			if !img.Has(pl) {
				continue
			}
			for _, a := range img.Artifacts {
				entry := packagePath(img, pl, a)
				data, err := os.ReadFile(filepath.Join(out, filepath.FromSlash(entry)))
				if err != nil {
					return Package{}, temporal.NewNonRetryableApplicationError(
						fmt.Sprintf("package: artifact %s for %s is missing (build again): %v", a, pl, err), ErrTypeNoArtifact, err)
				}
				hdr := &tar.Header{Typeflag: tar.TypeReg, Name: entry, Mode: 0o755, Size: int64(len(data)), Format: tar.FormatPAX}
				if err := tw.WriteHeader(hdr); err != nil {
					return Package{}, err
				}
				if _, err := tw.Write(data); err != nil {
					return Package{}, err
				}
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

// packagePath is where an artifact of an image for a platform is, under
// out/ and in the package.
func packagePath(img pipelinespec.Image, pl pipelinespec.Platform, artifact string) string {
	return path.Join(img.Service, pl.OS+"-"+pl.Arch, path.Base(artifact))
}

// Cleanup removes the run's checkout; logs and packages stay.
func (p *Pipeline) Cleanup(ctx context.Context, r RunRef) error {
	return os.RemoveAll(filepath.Join(p.runDir(r), "src"))
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
