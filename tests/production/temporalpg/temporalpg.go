// Package temporalpg runs Temporal as production runs it, for drift's
// production-shape tests: a standalone temporal-server (built from
// go.temporal.io/server by ../build.sh) on a PostgreSQL server of the test's
// own (Debian's postgresql), with its schema set up by the server's own
// temporal-sql-tool. Everything listens on 127.0.0.1 on free ports, keeps its
// files in one dir, and is stopped when the test ends.
//
//	c := temporalpg.Start(t)            // stopped by t.Cleanup, which also proves nothing is left
//	c.Address                           // frontend gRPC, for drift's --address
//	c.RestartServer(ctx)                // or StopServer / StartServer, Postgres.Stop / Postgres.Start
//
// The cluster is bare: it has only the "temporal-system" namespace, which the
// server makes for itself. temporal-server v1.32.1 does not create a "default"
// namespace (the dev server and the docker auto-setup script do that, not the
// server), nor any custom search attribute: the product's `drift setup` must
// register both, and tests of it run against exactly this. Tests that only
// need a namespace call RegisterNamespace.
//
// The server's outbound extras stay off: no version check (it would call
// Temporal's servers), no trace exporter, no metrics listener, no pprof.
//
// When the harness cannot run here (binaries missing and not buildable,
// PostgreSQL not installed) the test fails, or skips when DRIFT_SKIP_HEAVY=1.
package temporalpg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/edgedrift/drift/tests/harness"
	"github.com/edgedrift/drift/tests/internal/proc"
)

// SystemNamespace is the namespace the server makes for itself.
const SystemNamespace = "temporal-system"

// Cluster is a running Temporal server on its PostgreSQL.
type Cluster struct {
	Address     string    // frontend gRPC, 127.0.0.1:PORT (the same across restarts)
	HTTPAddress string    // frontend HTTP API, 127.0.0.1:PORT
	Dir         string    // config, logs and PostgreSQL's data
	Config      string    // path of the server's config YAML
	Postgres    *Postgres // the persistence and visibility store

	bins    Binaries
	logf    func(format string, args ...any)
	timeout time.Duration
	ownDir  bool

	mu     sync.Mutex
	server *proc.Proc // nil when stopped

	stopOnce func() error
}

// Option changes how a cluster is started.
type Option func(*options)

type options struct {
	dir          string
	logf         func(format string, args ...any)
	startTimeout time.Duration
}

// WithDir puts the cluster's files in dir instead of a new temp dir (Stop
// then leaves it in place). When the test runs as root, PostgreSQL runs as
// the postgres user, which must be able to reach dir.
func WithDir(dir string) Option { return func(o *options) { o.dir = dir } }

// WithLogf receives the harness's progress messages.
func WithLogf(logf func(format string, args ...any)) Option {
	return func(o *options) { o.logf = logf }
}

// WithStartTimeout bounds each start of PostgreSQL + schema + server once
// the binaries are there (default 2m).
func WithStartTimeout(d time.Duration) Option { return func(o *options) { o.startTimeout = d } }

// Start starts a cluster for t. When t ends it stops it, prints the tail of
// each component's log if t failed, and fails t if a process is left. If the
// harness cannot run here, t fails, or skips when DRIFT_SKIP_HEAVY=1.
func Start(t testing.TB, opts ...Option) *Cluster {
	t.Helper()
	opts = append([]Option{WithDir(t.TempDir()), WithLogf(t.Logf)}, opts...)
	c, err := New(context.Background(), opts...)
	if errors.Is(err, ErrUnavailable) {
		harness.RequireHeavy(t, err.Error())
	}
	if err != nil {
		t.Fatalf("temporalpg: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("temporalpg: component logs (tail):\n%s", c.LogTail(40))
		}
		if err := c.Stop(); err != nil {
			t.Errorf("temporalpg: %v", err)
		}
		if left, err := proc.In(c.Dir); err != nil || len(left) > 0 {
			t.Errorf("temporalpg: processes left in %s: %v (%v)", c.Dir, left, err)
		}
	})
	return c
}

// New starts PostgreSQL, sets up Temporal's two databases and starts the
// server, waiting until its frontend answers. The caller must Stop it.
// Errors wrapping ErrUnavailable mean the harness cannot run here.
func New(ctx context.Context, opts ...Option) (*Cluster, error) {
	o := options{startTimeout: 2 * time.Minute}
	for _, opt := range opts {
		opt(&o)
	}
	if o.logf == nil {
		o.logf = func(string, ...any) {}
	}
	bins, err := FindBinaries(o.logf)
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: o.dir, bins: bins, logf: o.logf, timeout: o.startTimeout}
	c.stopOnce = sync.OnceValue(c.stop)
	if c.Dir == "" {
		if c.Dir, err = os.MkdirTemp("", "drift-temporalpg-"); err != nil {
			return nil, err
		}
		c.ownDir = true
	}
	began := time.Now()
	if err := c.start(ctx); err != nil {
		logs := c.LogTail(30)
		if stopErr := c.Stop(); stopErr != nil {
			err = errors.Join(err, stopErr)
		}
		return nil, fmt.Errorf("temporalpg: start in %s: %w\ncomponent logs (tail):\n%s", c.Dir, err, logs)
	}
	o.logf("temporalpg: temporal-server %s on PostgreSQL %s up at %s in %s (files in %s)",
		ServerVersion, c.Postgres.Addr(), c.Address, time.Since(began).Round(time.Millisecond), c.Dir)
	return c, nil
}

func (c *Cluster) start(ctx context.Context) error {
	// PostgreSQL; the gRPC ports of frontend, history, matching, worker;
	// the frontend's HTTP port.
	ports, err := proc.FreePorts(6)
	if err != nil {
		return err
	}
	// Membership ports go into a SMALLINT column (cluster_membership.rpc_port):
	// above 32767 the server dies with "value out of range for type smallint".
	members, err := proc.FreePortsBelow(4, 32768)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if c.Postgres, err = initPostgres(sctx, c.Dir, ports[0], c.bins); err != nil {
		return err
	}
	if err := c.Postgres.Start(sctx); err != nil {
		return err
	}
	c.logf("temporalpg: PostgreSQL ready on %s", c.Postgres.Addr())
	if err := c.setupSchema(sctx); err != nil {
		return err
	}
	c.logf("temporalpg: schemas of temporal and temporal_visibility set up")
	lo := func(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }
	c.Address, c.HTTPAddress = lo(ports[1]), lo(ports[5])
	c.Config = filepath.Join(c.Dir, "temporal.yaml")
	if err := c.writeConfig(ports[1:5], ports[5], members); err != nil {
		return err
	}
	return c.StartServer(ctx)
}

// setupSchema creates and migrates Temporal's databases with the server's
// own tool, as an operator would; the schemas are embedded in the tool.
func (c *Cluster) setupSchema(ctx context.Context) error {
	pg := c.Postgres
	for _, db := range []struct{ name, schema string }{
		{"temporal", "postgresql/v12/temporal"},
		{"temporal_visibility", "postgresql/v12/visibility"},
	} {
		for _, args := range [][]string{
			{"create-database"},
			{"setup-schema", "-v", "0.0"},
			{"update-schema", "--schema-name", db.schema},
		} {
			all := append([]string{"--plugin", "postgres12", "--ep", pg.Host, "-p", strconv.Itoa(pg.Port), "-u", pg.User, "--db", db.name}, args...)
			cmd := exec.CommandContext(ctx, c.bins.SQLTool, all...)
			cmd.Dir = c.Dir
			// The password goes by environment, not on a command line.
			cmd.Env = proc.Env(c.Dir, []string{"SQL_HOST", "SQL_PORT", "SQL_USER", "SQL_DATABASE", "SQL_PLUGIN"}, "SQL_PASSWORD="+pg.Password)
			if err := proc.Run(cmd, filepath.Join(c.Dir, "temporal-sql-tool.log")); err != nil {
				return err
			}
		}
	}
	return nil
}

var configTemplate = template.Must(template.New("temporal.yaml").Parse(`# temporal-server config written by tests/production/temporalpg
log:
  stdout: true
  level: warn
persistence:
  defaultStore: default
  visibilityStore: visibility
  numHistoryShards: 4
  datastores:
{{- range .Stores}}
    {{.Name}}:
      sql:
        pluginName: postgres12
        databaseName: {{.DB}}
        connectAddr: "{{$.PG}}"
        connectProtocol: tcp
        user: "{{$.User}}"
        password: "{{$.Password}}"
        maxConns: {{.Conns}}
        maxIdleConns: {{.Conns}}
        maxConnLifetime: 1h
{{- end}}
global:
  membership:
    maxJoinDuration: 30s
    broadcastAddress: 127.0.0.1
services:
{{- range .Services}}
  {{.Name}}:
    rpc:
      grpcPort: {{.GRPC}}
      membershipPort: {{.Membership}}
      {{- if .HTTP}}
      httpPort: {{.HTTP}}
      {{- end}}
      bindOnIP: 127.0.0.1
{{- end}}
clusterMetadata:
  enableGlobalNamespace: false
  failoverVersionIncrement: 10
  masterClusterName: active
  currentClusterName: active
  clusterInformation:
    active:
      enabled: true
      initialFailoverVersion: 1
      rpcName: frontend
      rpcAddress: {{.Frontend}}
dcRedirectionPolicy:
  policy: noop
dynamicConfigClient:
  filepath: "{{.DynamicConfig}}"
  pollInterval: 10s
`))

// dynamicConfig turns off the server's periodic call home (its version check).
const dynamicConfig = `frontend.enableServerVersionCheck:
  - value: false
`

// writeConfig writes the server's config: grpc and membership hold the
// ports of frontend, history, matching and worker, in that order.
func (c *Cluster) writeConfig(grpc []int, http int, membership []int) error {
	dc := filepath.Join(c.Dir, "dynamicconfig.yaml")
	if err := os.WriteFile(dc, []byte(dynamicConfig), 0o600); err != nil {
		return err
	}
	type service struct {
		Name                   string
		GRPC, Membership, HTTP int
	}
	var services []service
	for i, name := range []string{"frontend", "history", "matching", "worker"} {
		services = append(services, service{Name: name, GRPC: grpc[i], Membership: membership[i]})
	}
	services[0].HTTP = http
	f, err := os.OpenFile(c.Config, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	err = configTemplate.Execute(f, map[string]any{
		"PG": c.Postgres.Addr(), "User": c.Postgres.User, "Password": c.Postgres.Password,
		"Services": services, "Frontend": c.Address, "DynamicConfig": dc,
		"Stores": []struct {
			Name, DB string
			Conns    int
		}{{"default", "temporal", 10}, {"visibility", "temporal_visibility", 2}},
	})
	return errors.Join(err, f.Close())
}

// StartServer starts temporal-server on the cluster's config and waits until
// its frontend answers for the system namespace. The address stays the same
// across restarts.
func (c *Cluster) StartServer(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.server != nil {
		if done, _ := c.server.Exited(); !done {
			return fmt.Errorf("temporal-server already running (pid %d)", c.server.Pid())
		}
	}
	env := proc.Env(c.Dir, []string{"TEMPORAL_ADDRESS", "TEMPORAL_SERVICES"},
		"OTEL_TRACES_EXPORTER=none", "TEMPORAL_VERSION_CHECK_DISABLED=1")
	p, err := proc.Start(c.Dir, "temporal-server", c.bins.Server, env,
		"--config-file", c.Config, "--allow-no-auth", "start")
	if err != nil {
		return err
	}
	c.server = p
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	began := time.Now()
	last := errors.New("no answer yet")
	for {
		if last = c.ping(ctx); last == nil {
			c.logf("temporalpg: temporal-server (pid %d) answers on %s after %s", p.Pid(), c.Address, time.Since(began).Round(time.Millisecond))
			return nil
		}
		if done, werr := p.Exited(); done {
			return fmt.Errorf("temporal-server exited (%v) before its frontend answered; last: %v", werr, last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("temporal-server's frontend %s not ready: %v (%w)", c.Address, last, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// ping asks the frontend for the system namespace, which needs persistence.
func (c *Cluster) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	nc, err := client.NewNamespaceClient(c.clientOptions(SystemNamespace))
	if err != nil {
		return err
	}
	defer nc.Close()
	_, err = nc.Describe(ctx, SystemNamespace)
	return err
}

// StopServer stops temporal-server (SIGTERM, a graceful shutdown; SIGKILL
// after 10s) and waits until it has exited. PostgreSQL keeps running.
func (c *Cluster) StopServer() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.server == nil {
		return nil
	}
	began := time.Now()
	err := c.server.Stop()
	c.logf("temporalpg: temporal-server (pid %d) stopped in %s", c.server.Pid(), time.Since(began).Round(time.Millisecond))
	c.server = nil
	return err
}

// RestartServer is StopServer then StartServer.
func (c *Cluster) RestartServer(ctx context.Context) error {
	if err := c.StopServer(); err != nil {
		return err
	}
	return c.StartServer(ctx)
}

// ServerRunning reports whether the temporal-server process is alive.
func (c *Cluster) ServerRunning() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.server == nil {
		return false
	}
	done, _ := c.server.Exited()
	return !done
}

// Check reports an error if the server or PostgreSQL is not running.
func (c *Cluster) Check() error {
	var errs []error
	if !c.ServerRunning() {
		errs = append(errs, errors.New("temporal-server is not running"))
	}
	if c.Postgres == nil || !c.Postgres.Running() {
		errs = append(errs, errors.New("postgres is not running"))
	}
	return errors.Join(errs...)
}

func (c *Cluster) clientOptions(namespace string) client.Options {
	return client.Options{
		HostPort:  c.Address,
		Namespace: namespace,
		// The SDK's default logger writes to stderr; tests read the server's log instead.
		Logger: sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler)),
	}
}

// Dial connects a Temporal SDK client to the cluster for namespace. The
// caller closes it.
func (c *Cluster) Dial(ctx context.Context, namespace string) (client.Client, error) {
	return client.DialContext(ctx, c.clientOptions(namespace))
}

// RegisterNamespace registers namespace (retention 1 day) unless it exists,
// and waits until the frontend describes it.
func (c *Cluster) RegisterNamespace(ctx context.Context, namespace string) error {
	nc, err := client.NewNamespaceClient(c.clientOptions(namespace))
	if err != nil {
		return err
	}
	defer nc.Close()
	err = nc.Register(ctx, &workflowservice.RegisterNamespaceRequest{
		Namespace:                        namespace,
		WorkflowExecutionRetentionPeriod: durationpb.New(24 * time.Hour),
	})
	var exists *serviceerror.NamespaceAlreadyExists
	if err != nil && !errors.As(err, &exists) {
		return fmt.Errorf("register namespace %s: %w", namespace, err)
	}
	for {
		_, err := nc.Describe(ctx, namespace)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("namespace %s not visible: %v (%w)", namespace, err, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Namespaces lists the names of the cluster's namespaces.
func (c *Cluster) Namespaces(ctx context.Context) ([]string, error) {
	cl, err := c.Dial(ctx, SystemNamespace)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	var names []string
	var token []byte
	for {
		resp, err := cl.WorkflowService().ListNamespaces(ctx, &workflowservice.ListNamespacesRequest{PageSize: 100, NextPageToken: token})
		if err != nil {
			return nil, err
		}
		for _, ns := range resp.Namespaces {
			names = append(names, ns.GetNamespaceInfo().GetName())
		}
		if token = resp.NextPageToken; len(token) == 0 {
			return names, nil
		}
	}
}

// LogTail returns the last n lines of each component's log.
func (c *Cluster) LogTail(n int) string {
	var b strings.Builder
	logs := []string{filepath.Join(c.Dir, "temporal-server.log"), filepath.Join(c.Dir, "temporal-sql-tool.log")}
	if c.Postgres != nil {
		logs = append(logs, c.Postgres.LogPath(), filepath.Join(c.Postgres.dir, "initdb.log"), filepath.Join(c.Postgres.dir, "psql.log"))
	}
	for _, l := range logs {
		if _, err := os.Stat(l); err == nil {
			fmt.Fprintf(&b, "==> %s <==\n%s\n", l, proc.FileTail(l, n))
		}
	}
	return b.String()
}

// Stop stops the server, then PostgreSQL, and reports an error if either is
// still alive. A clean Stop removes the cluster's dir when New made it. Stop
// is idempotent.
func (c *Cluster) Stop() error { return c.stopOnce() }

func (c *Cluster) stop() error {
	errs := []error{c.StopServer()}
	if c.Postgres != nil {
		errs = append(errs, c.Postgres.Stop(), c.Postgres.cleanup())
	}
	err := errors.Join(errs...)
	if err == nil && c.ownDir {
		err = os.RemoveAll(c.Dir)
	}
	return err
}
