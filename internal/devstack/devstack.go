// Package devstack runs drift's development stack in one process: a Temporal
// server persisted in a SQLite file, the Temporal Web UI and the center
// cloud's image registry. Temporal documents embedding as fit for
// development and tests; production points drift at a real cluster.
package devstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	uiserver "github.com/temporalio/ui-server/v2/server"
	uiconfig "github.com/temporalio/ui-server/v2/server/config"
	uioptions "github.com/temporalio/ui-server/v2/server/server_options"
	"go.temporal.io/server/common/authorization"
	"go.temporal.io/server/common/cluster"
	tconfig "go.temporal.io/server/common/config"
	"go.temporal.io/server/common/dynamicconfig"
	tlog "go.temporal.io/server/common/log"
	"go.temporal.io/server/common/membership/static"
	sqliteplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	"go.temporal.io/server/common/primitives"
	sqliteschema "go.temporal.io/server/schema/sqlite"
	"go.temporal.io/server/temporal"

	"github.com/edgedrift/drift/internal/config"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/registry"
)

// Options configure the stack. Zero ports pick free ones (tests); drift dev
// passes 7233, 8233 and 5000. A negative UIPort or RegistryPort disables that part.
type Options struct {
	DataDir      string
	Host         string // listen address, default 127.0.0.1
	Port         int    // Temporal gRPC frontend
	UIPort       int
	RegistryPort int
	Namespace    string // default "default"
	// Temporal, when its Address is set, is an existing cluster to use
	// instead of the embedded server; Start sets its namespace up for drift.
	Temporal config.Temporal
	Logger   *slog.Logger
}

// Stack is a running dev stack.
type Stack struct {
	opts     Options
	server   temporal.Server
	ui       *uiserver.Server
	registry *registry.Server
	address  string
	uiURL    string
	// held are the ports the caller chose, listened on from the start until
	// their part binds them, so that picking free ports for Temporal's
	// internal services cannot hand one of them out meanwhile.
	held map[int]net.Listener
}

const clusterName = "active"

// Start brings the stack up; the SQLite file is created with its schema on
// first start and reused afterwards, so history survives restarts.
func Start(ctx context.Context, opts Options) (*Stack, error) {
	if opts.DataDir == "" {
		return nil, errors.New("devstack: data dir is required")
	}
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if opts.Namespace == "" {
		opts.Namespace = "default"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := os.MkdirAll(opts.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("devstack: data dir: %w", err)
	}
	s := &Stack{opts: opts, held: map[int]net.Listener{}}
	defer s.releaseAll()
	ports := []int{opts.UIPort, opts.RegistryPort}
	if opts.Temporal.Address == "" {
		ports = append(ports, opts.Port)
	}
	for _, port := range ports {
		if err := s.hold(port); err != nil {
			return nil, err
		}
	}
	var err error
	if opts.Temporal.Address != "" {
		s.address = opts.Temporal.Address
	} else if s.address, err = s.startTemporal(); err != nil {
		return nil, err
	}
	if err := s.setup(ctx); err != nil {
		s.Stop()
		return nil, err
	}
	if opts.UIPort >= 0 {
		if err := s.startUI(); err != nil {
			s.Stop()
			return nil, err
		}
	}
	if opts.RegistryPort >= 0 {
		addr := net.JoinHostPort(opts.Host, strconv.Itoa(opts.RegistryPort))
		s.release(opts.RegistryPort)
		if s.registry, err = registry.Start(ctx, filepath.Join(opts.DataDir, "registry"), addr); err != nil {
			s.Stop()
			return nil, err
		}
	}
	return s, nil
}

// Address is the Temporal frontend's host:port.
func (s *Stack) Address() string { return s.address }

// Namespace is the namespace created for drift.
func (s *Stack) Namespace() string { return s.opts.Namespace }

// Temporal is how to reach the stack's Temporal: the embedded server, or
// the existing cluster it was given.
func (s *Stack) Temporal() config.Temporal {
	if s.opts.Temporal.Address != "" {
		t := s.opts.Temporal
		t.Namespace = s.opts.Namespace
		return t
	}
	return config.Temporal{Address: s.address, Namespace: s.opts.Namespace}
}

// UIURL is the Web UI's address ("" when disabled).
func (s *Stack) UIURL() string { return s.uiURL }

// RegistryHost is the registry's host:port ("" when disabled).
func (s *Stack) RegistryHost() string {
	if s.registry == nil {
		return ""
	}
	return s.registry.Host()
}

// Stop shuts every part down; it is safe on a partly started stack.
func (s *Stack) Stop() {
	if s.registry != nil {
		s.registry.Close()
	}
	if s.ui != nil {
		s.ui.Stop()
	}
	if s.server != nil {
		s.server.Stop()
	}
}

func (s *Stack) startTemporal() (string, error) {
	host := s.opts.Host
	ports, err := freePorts(host, 5)
	if err != nil {
		return "", err
	}
	frontend := s.opts.Port
	if frontend == 0 {
		frontend = ports[4]
	} else {
		s.release(frontend)
	}
	httpPort := ports[3]
	sqlCfg, err := s.sqlite()
	if err != nil {
		return "", err
	}

	addr := func(p int) string { return net.JoinHostPort(host, strconv.Itoa(p)) }
	service := func(grpc, http int) tconfig.Service {
		return tconfig.Service{RPC: tconfig.RPC{GRPCPort: grpc, HTTPPort: http, BindOnIP: host}}
	}
	cfg := &tconfig.Config{
		Global: tconfig.Global{Membership: tconfig.Membership{MaxJoinDuration: 30 * time.Second, BroadcastAddress: host}},
		Persistence: tconfig.Persistence{
			DefaultStore:     "sqlite",
			VisibilityStore:  "sqlite",
			NumHistoryShards: 1,
			DataStores:       map[string]tconfig.DataStore{"sqlite": {SQL: sqlCfg}},
		},
		ClusterMetadata: &cluster.Config{
			EnableGlobalNamespace:    false,
			FailoverVersionIncrement: 10,
			MasterClusterName:        clusterName,
			CurrentClusterName:       clusterName,
			ClusterInformation: map[string]cluster.ClusterInformation{clusterName: {
				Enabled:                true,
				InitialFailoverVersion: 1,
				RPCAddress:             addr(frontend),
				HTTPAddress:            addr(httpPort),
			}},
		},
		DCRedirectionPolicy: tconfig.DCRedirectionPolicy{Policy: "noop"},
		Services: map[string]tconfig.Service{
			"frontend": service(frontend, httpPort),
			"history":  service(ports[0], 0),
			"matching": service(ports[1], 0),
			"worker":   service(ports[2], 0),
		},
		PublicClient: tconfig.PublicClient{HostPort: addr(frontend)},
	}
	cfg.Archival.History.State = "disabled"
	cfg.Archival.Visibility.State = "disabled"
	cfg.NamespaceDefaults.Archival.History.State = "disabled"
	cfg.NamespaceDefaults.Archival.Visibility.State = "disabled"

	// The server logs a lot at info level; keep its log in the data dir.
	logger := tlog.NewZapLogger(tlog.BuildZapLogger(tlog.Config{
		Level:      "warn",
		OutputFile: filepath.Join(s.opts.DataDir, "temporal.log"),
	}))
	authorizer, err := authorization.GetAuthorizerFromConfig(&cfg.Global.Authorization)
	if err != nil {
		return "", err
	}
	claimMapper, err := authorization.GetClaimMapperFromConfig(&cfg.Global.Authorization, logger)
	if err != nil {
		return "", err
	}
	dyn := dynamicconfig.StaticClient{
		// Let the UI and CLI list workflows freely on a dev box.
		dynamicconfig.FrontendMaxNamespaceVisibilityRPSPerInstance.Key(): 100,
	}
	s.server, err = temporal.NewServer(
		temporal.WithConfig(cfg),
		temporal.ForServices(temporal.DefaultServices),
		temporal.WithStaticHosts(map[primitives.ServiceName]static.Hosts{
			primitives.FrontendService: static.SingleLocalHost(addr(frontend)),
			primitives.HistoryService:  static.SingleLocalHost(addr(ports[0])),
			primitives.MatchingService: static.SingleLocalHost(addr(ports[1])),
			primitives.WorkerService:   static.SingleLocalHost(addr(ports[2])),
		}),
		temporal.WithLogger(logger),
		temporal.WithAuthorizer(authorizer),
		temporal.WithClaimMapper(func(*tconfig.Config) authorization.ClaimMapper { return claimMapper }),
		temporal.WithDynamicConfigClient(dyn),
	)
	if err != nil {
		return "", fmt.Errorf("devstack: temporal server: %w", err)
	}
	if err := s.server.Start(); err != nil {
		s.server = nil
		return "", fmt.Errorf("devstack: start temporal server: %w", err)
	}
	return addr(frontend), nil
}

// sqlite returns the persistence config, creating the schema and namespace
// on a new file.
func (s *Stack) sqlite() (*tconfig.SQL, error) {
	file := filepath.Join(s.opts.DataDir, "temporal.db")
	cfg := &tconfig.SQL{
		PluginName:        sqliteplugin.PluginName,
		DatabaseName:      file,
		ConnectAttributes: map[string]string{"mode": "rwc", "_journal_mode": "WAL", "_busy_timeout": "10000"},
	}
	if _, err := os.Stat(file); errors.Is(err, os.ErrNotExist) {
		if err := sqliteschema.SetupSchema(cfg); err != nil {
			return nil, fmt.Errorf("devstack: sqlite schema: %w", err)
		}
	}
	ns, err := sqliteschema.NewNamespaceConfig(clusterName, s.opts.Namespace, false, names.SearchAttributes)
	if err != nil {
		return nil, err
	}
	if err := sqliteschema.CreateNamespaces(cfg, ns); err != nil {
		return nil, fmt.Errorf("devstack: namespace: %w", err)
	}
	return cfg, nil
}

// setup makes the namespace ready for drift: on an existing cluster as
// drift setup does, on the embedded one for data dirs made before an
// attribute existed.
func (s *Stack) setup(ctx context.Context) error {
	t := s.Temporal()
	c, err := t.Dial(ctx, nil)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = t.Setup(ctx, c, 7*24*time.Hour)
	return err
}

func (s *Stack) startUI() error {
	port := s.opts.UIPort
	if port == 0 {
		p, err := freePorts(s.opts.Host, 1)
		if err != nil {
			return err
		}
		port = p[0]
	} else {
		s.release(port) // held since Start: the UI server exits the process when it cannot listen
	}
	s.ui = uiserver.NewServer(uioptions.WithConfigProvider(&uiconfig.Config{
		Host:                s.opts.Host,
		Port:                port,
		TemporalGRPCAddress: s.address,
		EnableUI:            true,
		DefaultNamespace:    s.opts.Namespace,
		CORS:                uiconfig.CORS{CookieInsecure: true},
		HideLogs:            true,
		DisableNewsFetch:    true,
	}))
	go func() {
		if err := s.ui.Start(); err != nil {
			s.opts.Logger.Error("web UI stopped", "err", err)
		}
	}()
	addr := net.JoinHostPort(s.opts.Host, strconv.Itoa(port))
	s.uiURL = "http://" + addr
	// Start returns only when the UI stops, so wait here until it listens.
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if conn, err := net.Dial("tcp", addr); err == nil {
			return conn.Close()
		}
	}
	return fmt.Errorf("devstack: web UI did not listen on %s", addr)
}

// freePorts asks the kernel for n distinct free TCP ports on host.
func freePorts(host string, n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, fmt.Errorf("devstack: free port: %w", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// hold listens on a port the caller chose (> 0), failing with a clear
// message when it is taken.
func (s *Stack) hold(port int) error {
	if port <= 0 {
		return nil
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(s.opts.Host, strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("devstack: port %d on %s is not free (is another drift dev running?): %w", port, s.opts.Host, err)
	}
	s.held[port] = ln
	return nil
}

// release frees a held port for its part to bind.
func (s *Stack) release(port int) {
	if ln, ok := s.held[port]; ok {
		ln.Close()
		delete(s.held, port)
	}
}

func (s *Stack) releaseAll() {
	for port := range s.held {
		s.release(port)
	}
}
