package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/edgedrift/drift/internal/app"
	"github.com/edgedrift/drift/internal/config"
	"github.com/edgedrift/drift/internal/install"
	"github.com/edgedrift/drift/internal/netns"
	"github.com/edgedrift/drift/internal/repo"
)

// repoFlags reach a repository as its admin.
type repoFlags struct {
	url, tokenFile string
}

func (f *repoFlags) bind(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&f.url, "repo", envOr("DRIFT_REPO", "http://127.0.0.1:8700"), "software repository URL (env DRIFT_REPO)")
	cmd.PersistentFlags().StringVar(&f.tokenFile, "token-file", envOr("DRIFT_REPO_TOKEN_FILE", filepath.Join(defaultDataDir(), "repo-token")), "file holding the admin token (env DRIFT_REPO_TOKEN_FILE; drift dev writes it)")
}

func (f *repoFlags) client() (*repo.Client, error) {
	token, err := app.ReadSecret(f.tokenFile)
	if err != nil {
		return nil, fmt.Errorf("admin token: %w", err)
	}
	return &repo.Client{URL: f.url, Token: token}, nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func newRepoCommand(g *globals) *cobra.Command {
	var rf repoFlags
	cmd := &cobra.Command{
		Use:   "repo",
		Short: "Serve the software repository, and push, list and remove packages",
		Long: `The software repository lives on the management network. Tenant VMs reach it
only through the gateway pair of their network, which signs their identity;
the admin uses its token. Packages are .tar.gz files, named by name, version
and platform, checked against their sha256 on upload and on install.`,
	}
	rf.bind(cmd)

	var push struct {
		name, version, platform, hook string
		public                        bool
		tenants                       []string
	}
	pushCmd := &cobra.Command{
		Use:   "push FILE --name N --version V [--platform linux/amd64] (--public | --tenants a,b) [--hook install.sh]",
		Short: "Upload a package (.tar.gz)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := rf.client()
			if err != nil {
				return err
			}
			ref := repo.Ref{Name: push.name, Version: push.version, Platform: push.platform}
			if err := ref.Validate(); err != nil {
				return err
			}
			p, err := c.PushFile(cmd.Context(), ref, args[0], repo.PushOptions{Public: push.public, Tenants: push.tenants, Hook: push.hook})
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), p, func(w io.Writer) {
				fmt.Fprintf(w, "pushed %s: %d bytes, sha256 %s, %s\n", p.Ref, p.Size, p.SHA256, visibility(p))
			})
		},
	}
	fl := pushCmd.Flags()
	fl.StringVar(&push.name, "name", "", "package name")
	fl.StringVar(&push.version, "version", "", "package version")
	fl.StringVar(&push.platform, "platform", "linux/amd64", "os/arch")
	fl.StringVar(&push.hook, "hook", "", "install hook inside the package, run with sh after unpacking")
	fl.BoolVar(&push.public, "public", false, "every tenant may install it")
	fl.StringSliceVar(&push.tenants, "tenants", nil, "only these tenant networks may install it")

	ls := &cobra.Command{
		Use:   "ls",
		Short: "List packages",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := rf.client()
			if err != nil {
				return err
			}
			ps, err := c.List(cmd.Context())
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), ps, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tVERSION\tPLATFORM\tSIZE\tSHA256\tVISIBLE TO")
				for _, p := range ps {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", p.Name, p.Version, p.Platform, p.Size, p.SHA256[:12], visibility(p))
				}
				tw.Flush()
			})
		},
	}

	rm := &cobra.Command{
		Use:   "rm NAME VERSION [PLATFORM]",
		Short: "Remove a package",
		Args:  cobra.RangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := rf.client()
			if err != nil {
				return err
			}
			ref := repo.Ref{Name: args[0], Version: args[1], Platform: "linux/amd64"}
			if len(args) == 3 {
				ref.Platform = args[2]
			}
			if err := ref.Validate(); err != nil {
				return err
			}
			if err := c.Delete(cmd.Context(), ref); err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), map[string]any{"removed": ref}, func(w io.Writer) { fmt.Fprintf(w, "removed %s\n", ref) })
		},
	}
	cmd.AddCommand(newRepoServeCommand(g), pushCmd, ls, rm)
	return cmd
}

func visibility(p repo.Package) string {
	if p.Public {
		return "everyone"
	}
	return strings.Join(p.Tenants, ",")
}

func newRepoServeCommand(g *globals) *cobra.Command {
	var o struct {
		dir, listen, ns, tokenFile, secretFile string
		maxBlob                                int64
	}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the software repository on the management network",
		Long: `serve runs the repository until interrupted. Reports of tenant VMs are
delivered to their install workflows as signals, so it needs the Temporal
connection flags. Token and secret files are created with random values when
missing; give the secret file to the network node's worker
(drift-worker --gateway-secret-file).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			logger, err := g.logger()
			if err != nil {
				return err
			}
			opts, err := g.temporal.ClientOptions(logger)
			if err != nil {
				return err
			}
			c, err := client.NewLazyClient(opts)
			if err != nil {
				return err
			}
			defer c.Close()
			srv, ln, err := startRepo(o.dir, o.ns, o.listen, o.tokenFile, o.secretFile, o.maxBlob, c)
			if err != nil {
				return err
			}
			defer srv.Close()
			g.print(cmd.OutOrStdout(), map[string]string{"url": "http://" + ln.Addr().String(), "dir": o.dir}, func(w io.Writer) {
				fmt.Fprintf(w, "repository serving http://%s (store %s)\n", ln.Addr(), o.dir)
			})
			return serveHTTP(ctx, ln, srv)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.dir, "dir", filepath.Join(defaultDataDir(), "repo"), "store directory (blobs and the bbolt index)")
	fl.StringVar(&o.listen, "listen", "127.0.0.1:8700", "address to serve on")
	fl.StringVar(&o.ns, "netns", "", "serve inside this network namespace (the management network's)")
	fl.StringVar(&o.tokenFile, "token-file", filepath.Join(defaultDataDir(), "repo-token"), "admin token file")
	fl.StringVar(&o.secretFile, "secret-file", filepath.Join(defaultDataDir(), "gateway-secret"), "secret shared with the management gateway")
	fl.Int64Var(&o.maxBlob, "max-blob", repo.DefaultMaxBlob, "largest package in bytes")
	return cmd
}

// startRepo opens the repository and its listener (inside ns when given).
func startRepo(dir, ns, listen, tokenFile, secretFile string, maxBlob int64, c client.Client) (*repo.Server, net.Listener, error) {
	token, err := app.EnsureSecret(tokenFile)
	if err != nil {
		return nil, nil, err
	}
	secret, err := app.EnsureSecret(secretFile)
	if err != nil {
		return nil, nil, err
	}
	srv, err := repo.New(repo.Options{Dir: dir, AdminToken: token, Secret: []byte(secret), MaxBlob: maxBlob, Report: install.Signaler(c)})
	if err != nil {
		return nil, nil, err
	}
	ln, err := netns.Listen(ns, listen)
	if err != nil {
		srv.Close()
		return nil, nil, err
	}
	return srv, ln, nil
}

// startDevRepo serves the software repository on loopback for drift dev and
// returns the network node's install config that goes with it.
func startDevRepo(ctx context.Context, f devFlags, c client.Client, logger *slog.Logger) (string, *app.InstallConfig, func(), error) {
	tokenFile, secretFile := filepath.Join(f.dataDir, "repo-token"), filepath.Join(f.dataDir, "gateway-secret")
	srv, ln, err := startRepo(filepath.Join(f.dataDir, "repo"), "", net.JoinHostPort("127.0.0.1", strconv.Itoa(f.repoPort)), tokenFile, secretFile, repo.DefaultMaxBlob, c)
	if err != nil {
		return "", nil, nil, fmt.Errorf("repository: %w", err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- serveHTTP(sctx, ln, srv) }()
	stop := func() { cancel(); <-done; srv.Close() }
	token, _ := app.ReadSecret(tokenFile)
	secret, _ := app.ReadSecret(secretFile)
	url := "http://" + ln.Addr().String()
	return url, &app.InstallConfig{Node: config.DefaultNetworkNode, Repo: url, Token: token, Secret: []byte(secret),
		SocketDir: filepath.Join(f.dataDir, "gateways"), Logger: logger}, stop, nil
}
