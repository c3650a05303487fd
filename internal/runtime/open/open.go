// Package open connects to a cloud's runtime by its kind: the Docker
// Engine, a Kubernetes cluster or local processes. It sits beside the
// runtimes because it imports each of them.
package open

import (
	"path/filepath"

	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/runtime/docker"
	"github.com/edgedrift/drift/internal/runtime/kubernetes"
	"github.com/edgedrift/drift/internal/runtime/process"
	"github.com/edgedrift/drift/internal/runtime/proxy"
)

// Runtime connects to a cloud's runtime; an empty kind is the process
// runtime with its state under dataDir/process/<cloud>.
func Runtime(cloud string, cfg runtime.Config, dataDir string) (runtime.Runtime, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	switch cfg.Kind {
	case runtime.KindDocker:
		return docker.New(cfg, cloud)
	case runtime.KindKubernetes:
		return kubernetes.New(cfg, cloud)
	default:
		if cfg.Dir == "" {
			cfg.Dir = filepath.Join(dataDir, "process", cloud)
		}
		return process.New(cfg, cloud)
	}
}

// Router is where a cloud keeps its stable endpoints: the runtime itself
// when it is a runtime.Router (Kubernetes: a Service per endpoint), else
// proxy processes with their state under dataDir/endpoints/<cloud>.
func Router(cloud string, rt runtime.Runtime, dataDir string) (runtime.Router, error) {
	if r, ok := rt.(runtime.Router); ok {
		return r, nil
	}
	return proxy.New(filepath.Join(dataDir, "endpoints", cloud), cloud, rt)
}
