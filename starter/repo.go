package main

import (
	"crypto/ed25519"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/spf13/cobra"
	temporalclient "go.temporal.io/sdk/client"

	"github.com/edgedrift/drift/internal/client"
	"github.com/edgedrift/drift/internal/config"
	"github.com/edgedrift/drift/internal/repo"
	"github.com/edgedrift/drift/internal/workerhost"
)

// repoFlags reach a repository as its admin.
type repoFlags struct {
	url, tokenFile string
}

func (f *repoFlags) bind(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&f.url, "repo", config.EnvOr("DRIFT_REPO", "http://127.0.0.1:8700"), "software repository URL (env DRIFT_REPO)")
	cmd.PersistentFlags().StringVar(&f.tokenFile, "token-file", config.EnvOr("DRIFT_REPO_TOKEN_FILE", filepath.Join(defaultDataDir(), "repo-token")), "file holding the admin token (env DRIFT_REPO_TOKEN_FILE; drift dev writes it)")
}

func (f *repoFlags) client() (*repo.Client, error) {
	token, err := workerhost.ReadSecret(f.tokenFile)
	if err != nil {
		return nil, fmt.Errorf("admin token: %w", err)
	}
	return &repo.Client{URL: f.url, Token: token}, nil
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
	cmd.AddCommand(newRepoServeCommand(g), newRepoPushCommand(g, &rf), newRepoListCommand(g, &rf), newRepoRemoveCommand(g, &rf), newRepoKeygenCommand(g))
	return cmd
}

func newRepoPushCommand(g *globals, rf *repoFlags) *cobra.Command {
	var push struct {
		name, version, platform, hook, health, sign string
		public                                      bool
		tenants                                     []string
	}
	cmd := &cobra.Command{
		Use:   "push FILE --name N --version V [--platform linux/amd64] (--public | --tenants a,b) [--hook install.sh] [--health check.sh] [--sign KEY]",
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
			o := repo.PushOptions{Public: push.public, Tenants: push.tenants, Hook: push.hook, Health: push.health}
			if push.sign != "" {
				data, err := os.ReadFile(push.sign)
				if err != nil {
					return fmt.Errorf("--sign: %w", err)
				}
				if o.Publisher, err = repo.ParsePrivateKey(data); err != nil {
					return fmt.Errorf("--sign %s: %w", push.sign, err)
				}
			}
			p, err := c.PushFile(cmd.Context(), ref, args[0], o)
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), p, func(w io.Writer) {
				fmt.Fprintf(w, "pushed %s: %d bytes, sha256 %s, %s, signed by %s\n", p.Ref, p.Size, p.SHA256, visibility(p), signers(p))
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&push.name, "name", "", "package name")
	fl.StringVar(&push.version, "version", "", "package version")
	fl.StringVar(&push.platform, "platform", "linux/amd64", "os/arch")
	fl.StringVar(&push.hook, "hook", "", "install hook inside the package, run with sh after unpacking")
	fl.StringVar(&push.health, "health", "", "health check inside the package, run with sh after the hook; the version goes live only when it passes")
	fl.StringVar(&push.sign, "sign", "", "sign the upload with this publisher key (drift repo keygen); agents may trust it instead of the repository's")
	fl.BoolVar(&push.public, "public", false, "every tenant may install it")
	fl.StringSliceVar(&push.tenants, "tenants", nil, "only these tenant networks may install it")
	return cmd
}

func newRepoListCommand(g *globals, rf *repoFlags) *cobra.Command {
	return &cobra.Command{
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
				fmt.Fprintln(tw, "NAME\tVERSION\tPLATFORM\tSIZE\tSHA256\tVISIBLE TO\tSIGNED BY")
				for _, p := range ps {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", p.Name, p.Version, p.Platform, p.Size, p.SHA256[:12], visibility(p), signers(p))
				}
				tw.Flush()
			})
		},
	}
}

func newRepoRemoveCommand(g *globals, rf *repoFlags) *cobra.Command {
	return &cobra.Command{
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
}

// signers names who signed an entry: "repository 1a2b…, publisher 3c4d…".
func signers(p repo.Package) string {
	var s []string
	for _, sig := range p.Signatures {
		s = append(s, sig.By+" "+sig.KeyID)
	}
	return dash(strings.Join(s, ", "))
}

func newRepoKeygenCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "keygen FILE",
		Short: "Make an Ed25519 publisher key (FILE, 0600) and its public key (FILE.pub) for agents to trust",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			key, err := repo.GenerateKey(args[0])
			if err != nil {
				return err
			}
			id := repo.KeyID(key.Public().(ed25519.PublicKey))
			return g.print(cmd.OutOrStdout(), map[string]string{"keyId": id, "public": args[0] + ".pub"}, func(w io.Writer) {
				fmt.Fprintf(w, "key %s in %s; give agents --trust %s.pub\n", id, args[0], args[0])
			})
		},
	}
}

func visibility(p repo.Package) string {
	if p.Public {
		return "everyone"
	}
	return strings.Join(p.Tenants, ",")
}

func newRepoServeCommand(g *globals) *cobra.Command {
	cfg := workerhost.RepoConfig{MaxBlob: repo.DefaultMaxBlob}
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
			c, err := temporalclient.NewLazyClient(opts)
			if err != nil {
				return err
			}
			defer c.Close()
			srv, ln, err := workerhost.StartRepo(cfg, client.New(c))
			if err != nil {
				return err
			}
			defer srv.Close()
			g.print(cmd.OutOrStdout(), map[string]string{"url": "http://" + ln.Addr().String(), "dir": cfg.Dir}, func(w io.Writer) {
				fmt.Fprintf(w, "repository serving http://%s (store %s)\n", ln.Addr(), cfg.Dir)
			})
			return workerhost.ServeHTTP(ctx, ln, srv)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&cfg.Dir, "dir", filepath.Join(defaultDataDir(), "repo"), "store directory (blobs and the bbolt index)")
	fl.StringVar(&cfg.Listen, "listen", "127.0.0.1:8700", "address to serve on")
	fl.StringVar(&cfg.Netns, "netns", "", "serve inside this network namespace (the management network's)")
	fl.StringVar(&cfg.TokenFile, "token-file", filepath.Join(defaultDataDir(), "repo-token"), "admin token file")
	fl.StringVar(&cfg.SecretFile, "secret-file", filepath.Join(defaultDataDir(), "gateway-secret"), "secret shared with the management gateway")
	fl.StringVar(&cfg.SigningKeyFile, "signing-key-file", filepath.Join(defaultDataDir(), workerhost.SigningKeyFile),
		"Ed25519 key every index entry is signed with, created when missing ($"+workerhost.SigningKeyEnv+" overrides it); agents trust FILE.pub")
	fl.Int64Var(&cfg.MaxBlob, "max-blob", repo.DefaultMaxBlob, "largest package in bytes")
	return cmd
}
