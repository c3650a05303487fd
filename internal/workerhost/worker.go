// Package workerhost hosts drift's workers: which queues a process polls,
// which runtime acts for each cloud, metrics, shutdown, and the whole
// development stack of `drift dev`. The drift-worker binary and the drift
// CLI are thin layers over it.
package workerhost

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/uber-go/tally/v4"
	tallyprom "github.com/uber-go/tally/v4/prometheus"
	"go.temporal.io/sdk/client"
	sdktally "go.temporal.io/sdk/contrib/tally"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/worker"

	"github.com/edgedrift/drift/activities"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/release"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/runtime/open"
	"github.com/edgedrift/drift/internal/topology"
	"github.com/edgedrift/drift/workflows"
)

// WorkerOptions say what a worker serves.
type WorkerOptions struct {
	Topology *topology.Topology
	Clouds   []string // cloud queues to poll (ids from Topology)
	Central  bool     // poll the `drift` queue: workflows and central activities
	DataDir  string   // process runtimes keep their state under DataDir/process/<cloud>
	Registry string   // the center registry (host:port) images are kept in
	// RuntimeFor overrides a cloud's runtime config (drift dev picks by tier);
	// nil uses the topology's.
	RuntimeFor func(topology.Cloud) runtime.Config
	// Runtimes gives ready-made runtimes by cloud id (benchmarks, tests);
	// clouds not in it are opened from their config.
	Runtimes map[string]runtime.Runtime
	// Install makes the worker a network node (gateway pairs, install
	// instructions); nil: it is none.
	Install *InstallConfig
	Logger  *slog.Logger // also logs every activity's start and end
	Metrics *Metrics     // nil: no per-queue metrics
	// Signer signs what the central pipeline pushes (nil: unsigned).
	Signer *release.Signer
	// Trust is the site's trust policy every cloud of this worker verifies
	// images against before it deploys them (nil: no check).
	Trust *release.Policy
}

// Workers are the running pollers of one process.
type Workers struct {
	workers  []worker.Worker
	Runtimes map[string]runtime.Runtime // by cloud id
	Routers  map[string]runtime.Router  // by cloud id: where its stable endpoints are kept
	Install  *activities.Install        // the network node's, when it is one
}

// StartWorkers validates opts, opens each cloud's runtime and starts one
// poller per queue. Nothing is polled unless everything opened.
func StartWorkers(c client.Client, opts WorkerOptions) (*Workers, error) {
	if !opts.Central && len(opts.Clouds) == 0 && opts.Install == nil {
		return nil, errors.New("worker polls nothing: give clouds or the central queue")
	}
	ws := &Workers{Runtimes: map[string]runtime.Runtime{}, Routers: map[string]runtime.Router{}}
	wopts := worker.Options{}
	if opts.Logger != nil {
		wopts.Interceptors = []interceptor.WorkerInterceptor{&activityLog{logger: opts.Logger, metrics: opts.Metrics}}
	}
	for _, id := range opts.Clouds {
		cloud, ok := opts.Topology.Cloud(id)
		if !ok {
			return nil, fmt.Errorf("%w: %q is not in the topology", topology.ErrUnknownCloud, id)
		}
		if rt, ok := opts.Runtimes[id]; ok {
			ws.Runtimes[id] = rt
			continue
		}
		cfg := cloud.Runtime
		if opts.RuntimeFor != nil {
			cfg = opts.RuntimeFor(cloud)
		}
		rt, err := open.Runtime(id, cfg, opts.DataDir)
		if err != nil {
			return nil, fmt.Errorf("cloud %s: %w", id, err)
		}
		ws.Runtimes[id] = rt
	}
	if opts.Central {
		if opts.Registry == "" {
			return nil, errors.New("the central queue needs the center registry's address")
		}
		w := worker.New(c, names.TaskQueue, wopts)
		w.RegisterWorkflow(workflows.MobilitySession)
		w.RegisterWorkflow(workflows.AppModel)
		w.RegisterWorkflow(workflows.MobilitySubscriptions)
		w.RegisterWorkflow(workflows.ComponentUpgrade)
		w.RegisterWorkflow(workflows.InstallSoftware)
		w.RegisterWorkflow(workflows.InstallFleet)
		w.RegisterWorkflow(workflows.Inventory)
		w.RegisterWorkflow(workflows.PortToArch)
		w.RegisterWorkflow(workflows.Pipeline)
		w.RegisterWorkflow(workflows.PipelineWave)
		w.RegisterWorkflow(workflows.PipelineUndeploy)
		w.RegisterWorkflow(workflows.PipelineRollback)
		w.RegisterActivity(&activities.Images{Center: opts.Registry})
		w.RegisterActivity(&activities.Pipeline{Center: opts.Registry, DataDir: opts.DataDir, Signer: opts.Signer})
		w.RegisterActivity(&activities.Models{Client: c})
		w.RegisterActivity(&activities.Notifier{Client: c})
		w.RegisterActivity(&activities.Sessions{Client: c})
		w.RegisterActivity(&activities.Port{WorkDir: filepath.Join(opts.DataDir, "port"), Registry: opts.Registry})
		ws.workers = append(ws.workers, w)
	}
	for _, id := range opts.Clouds {
		router, err := open.Router(id, ws.Runtimes[id], opts.DataDir)
		if err != nil {
			return nil, fmt.Errorf("cloud %s: %w", id, err)
		}
		ws.Routers[id] = router
	}
	for _, id := range opts.Clouds {
		cloud, _ := opts.Topology.Cloud(id)
		w := worker.New(c, names.CloudQueue(id), wopts)
		w.RegisterActivity(&activities.Cloud{ID: id, Runtime: ws.Runtimes[id], Capacity: cloud.Capacity, Arch: cloud.Arch, Trust: opts.Trust})
		w.RegisterActivity(&activities.Upgrade{Cloud: id, Runtime: ws.Runtimes[id], Router: ws.Routers[id], HTTP: &http.Client{Timeout: time.Minute}, Trust: opts.Trust})
		ws.workers = append(ws.workers, w)
	}
	if opts.Install != nil {
		acts, err := newInstall(*opts.Install)
		if err != nil {
			return nil, err
		}
		ws.Install = acts
		w := worker.New(c, names.NodeQueue(opts.Install.Node), wopts)
		w.RegisterActivity(acts)
		ws.workers = append(ws.workers, w)
	}
	for i, w := range ws.workers {
		if err := w.Start(); err != nil {
			for _, started := range ws.workers[:i] {
				started.Stop()
			}
			ws.closeNode()
			return nil, err
		}
	}
	return ws, nil
}

// Stop stops polling and waits for running activities to finish.
func (ws *Workers) Stop() {
	for _, w := range ws.workers {
		w.Stop()
	}
	ws.closeNode()
}

// closeNode stops the network node's gateway pairs.
func (ws *Workers) closeNode() {
	if ws.Install != nil {
		ws.Install.Node.Close()
	}
}

// Metrics collects the SDK's worker metrics and Go runtime metrics for a
// Prometheus scrape.
type Metrics struct {
	Handler  client.MetricsHandler
	registry *prometheus.Registry
	closer   interface{ Close() error }
	queues   queueMetrics
}

// NewMetrics makes a metrics sink to pass in client.Options.MetricsHandler.
func NewMetrics() *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reporter := tallyprom.NewReporter(tallyprom.Options{Registerer: reg})
	scope, closer := tally.NewRootScope(tally.ScopeOptions{
		CachedReporter:  reporter,
		Separator:       tallyprom.DefaultSeparator,
		SanitizeOptions: &sdktally.PrometheusSanitizeOptions,
		Prefix:          "drift_worker",
	}, time.Second)
	return &Metrics{Handler: sdktally.NewMetricsHandler(scope), registry: reg, closer: closer, queues: newQueueMetrics(reg)}
}

// Serve answers on addr until ctx ends: /metrics; /healthz (liveness: the
// process serves HTTP); /readyz (readiness: 200 when ready passes, 503 with
// the reason otherwise). No authentication: serve them on loopback or a
// network only the cluster's probes and scrapers reach.
func (m *Metrics) Serve(ctx context.Context, addr string, logger *slog.Logger, ready func(context.Context) error) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("metrics listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		rctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		if err := ready(rctx); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
		m.closer.Close()
	}()
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			logger.Error("metrics server stopped", "err", err)
		}
	}()
	return ln.Addr().String(), nil
}
