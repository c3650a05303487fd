package kube

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"

	"github.com/edgedrift/drift/tests/internal/proc"
)

// Versions of the control plane this harness runs. KubernetesVersion must
// match the k8s.io/kubernetes requirement in tools/go.mod (a test checks it);
// KwokVersion must match KWOK_VERSION in build.sh.
const (
	KubernetesVersion = "v1.34.4"
	KwokVersion       = "v0.7.0"
)

// Environment variables the harness reads.
const (
	// EnvBin names a directory holding the binaries and the Stages file,
	// instead of the cache dir; build.sh builds into it when it is incomplete.
	EnvBin = "DRIFT_KUBE_BIN"
	// EnvCache is the root of drift's build cache (default $HOME/.cache/drift).
	EnvCache = "DRIFT_CACHE"
	// EnvSkipHeavy=1 turns "the harness cannot run here" from a failure into a skip.
	EnvSkipHeavy = "DRIFT_SKIP_HEAVY"
)

// StagesFile is the name, in the bin dir, of kwok's "fast" Stages joined into
// one multi-document YAML by build.sh.
const StagesFile = "kwok-stages-fast.yaml"

// ErrUnavailable marks errors that mean the harness cannot run on this
// machine (binaries missing and not buildable, etcd not installed), as opposed
// to a control plane that was started and misbehaved.
var ErrUnavailable = errors.New("kubernetes test harness unavailable")

var builtBinaries = []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kwok"}

// Binaries are the paths of everything the harness runs.
type Binaries struct {
	Etcd, APIServer, ControllerManager, Scheduler, Kwok string
	Kubelet, KubeProxy                                  string // for the real node (WithRealNode)
	Stages                                              string // kwok Stages YAML
}

// BinDir is where build.sh puts the binaries: $DRIFT_KUBE_BIN, else
// ${DRIFT_CACHE:-$HOME/.cache/drift}/kube-<KubernetesVersion>/bin.
func BinDir() string {
	if d := os.Getenv(EnvBin); d != "" {
		return d
	}
	return filepath.Join(proc.CacheRoot(), "kube-"+KubernetesVersion, "bin")
}

// BuildScript is the path of tests/kube/build.sh in this source tree.
func BuildScript() string {
	return filepath.Join(sourceDir(), "build.sh")
}

func sourceDir() string {
	_, file, _, _ := goruntime.Caller(0)
	return filepath.Dir(file)
}

// FindBinaries locates the control-plane binaries, running build.sh when any
// is missing (minutes when cold). logf, if not nil, receives progress. Errors
// that mean the harness cannot run here wrap ErrUnavailable.
func FindBinaries(logf func(format string, args ...any)) (Binaries, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	dir := BinDir()
	if err := proc.Build(BuildScript(), EnvBin, dir, missingIn, func(format string, args ...any) { logf("kube: "+format, args...) }); err != nil {
		return Binaries{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	etcd := filepath.Join(dir, "etcd")
	if !proc.IsExecutable(etcd) {
		p, err := exec.LookPath("etcd")
		if err != nil {
			return Binaries{}, fmt.Errorf("%w: etcd not found in %s or on PATH (apt-get install -y etcd-server)", ErrUnavailable, dir)
		}
		etcd = p
	}
	return Binaries{
		Etcd:              etcd,
		APIServer:         filepath.Join(dir, "kube-apiserver"),
		ControllerManager: filepath.Join(dir, "kube-controller-manager"),
		Scheduler:         filepath.Join(dir, "kube-scheduler"),
		Kwok:              filepath.Join(dir, "kwok"),
		Kubelet:           filepath.Join(dir, "kubelet"),
		KubeProxy:         filepath.Join(dir, "kube-proxy"),
		Stages:            filepath.Join(dir, StagesFile),
	}, nil
}

func missingIn(dir string) []string {
	var missing []string
	for _, b := range builtBinaries {
		if !proc.IsExecutable(filepath.Join(dir, b)) {
			missing = append(missing, b)
		}
	}
	if st, err := os.Stat(filepath.Join(dir, StagesFile)); err != nil || st.Size() == 0 {
		missing = append(missing, StagesFile)
	}
	// build.sh records what it built; a dir filled by other means has no records.
	return append(missing, proc.StampsDiffer(dir, map[string]string{".kubernetes-version": KubernetesVersion, ".kwok-version": KwokVersion})...)
}
