package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/edgedrift/drift/internal/registry"
)

func newRegistryCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "registry",
		Short: "The center cloud's image registry (CNCF Distribution)",
	}
	cmd.AddCommand(newRegistryServeCommand(g), newRegistryAddUserCommand(g))
	return cmd
}

func newRegistryServeCommand(g *globals) *cobra.Command {
	var o registry.Options
	cmd := &cobra.Command{
		Use:   "serve --addr HOST:PORT --data-dir DIR [--htpasswd FILE] [--tls-cert F --tls-key F]",
		Short: "Serve the embedded Distribution registry standalone, as drift dev does, until interrupted",
		Long: `serve runs the image registry drift dev embeds, on its own: blobs on the
filesystem under --data-dir, or any storage a Distribution config file names
(--config; --data-dir then overrides its storage). --htpasswd makes every
request authenticate with basic auth (bcrypt entries, as htpasswd -B writes);
workers and the CLI then read credentials from the Docker config file
($DOCKER_CONFIG/config.json). Without --tls-cert/--tls-key it speaks plain
HTTP, which image clients accept only from a loopback address.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if o.Dir == "" && o.Config == "" {
				return fmt.Errorf("--data-dir or --config is required")
			}
			if o.Htpasswd == "" && o.Config == "" {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning: no --htpasswd: anyone who reaches", o.Addr, "may push and pull")
			}
			srv, err := registry.Serve(ctx, o)
			if err != nil {
				return err
			}
			info := map[string]any{"url": srv.URL(), "host": srv.Host(), "dataDir": o.Dir, "auth": o.Htpasswd != ""}
			if err := g.print(cmd.OutOrStdout(), info, func(w io.Writer) {
				fmt.Fprintf(w, "registry serving %s (storage %s, auth %v)\n", srv.URL(), firstOf(o.Dir, o.Config), o.Htpasswd != "")
			}); err != nil {
				srv.Close()
				return err
			}
			<-ctx.Done()
			return srv.Close()
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Addr, "addr", "127.0.0.1:5000", "address to listen on")
	f.StringVar(&o.Dir, "data-dir", "", "filesystem storage root")
	f.StringVar(&o.Config, "config", "", "Distribution config.yml (storage, auth, …)")
	f.StringVar(&o.TLSCert, "tls-cert", "", "serve HTTPS with this certificate")
	f.StringVar(&o.TLSKey, "tls-key", "", "and this key")
	f.StringVar(&o.Htpasswd, "htpasswd", "", "bcrypt htpasswd file: every request authenticates")
	f.StringVar(&o.Realm, "realm", "drift", "basic-auth realm")
	return cmd
}

func newRegistryAddUserCommand(g *globals) *cobra.Command {
	var htpasswd, dockerConfig, host string
	cmd := &cobra.Command{
		Use:   "adduser NAME --htpasswd FILE --docker-config DIR --registry HOST:PORT < PASSWORD",
		Short: "Let NAME in: its bcrypt entry in the registry's htpasswd file, its credentials in a Docker config",
		Long: `adduser reads the password from standard input (never from the command line),
sets NAME's bcrypt entry in the htpasswd file drift registry serve --htpasswd
reads, and the registry's credentials in DIR/config.json, the Docker config
file drift-worker and drift read (point DOCKER_CONFIG at DIR). Both files are
written 0600; other entries in them are kept.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if htpasswd == "" || dockerConfig == "" || host == "" {
				return fmt.Errorf("--htpasswd, --docker-config and --registry are required")
			}
			b, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), 4096))
			if err != nil {
				return err
			}
			password := strings.TrimRight(string(b), "\r\n")
			if err := registry.AddUser(htpasswd, dockerConfig, host, args[0], password); err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), map[string]string{"user": args[0], "registry": host}, func(w io.Writer) {
				fmt.Fprintf(w, "%s may use %s (htpasswd %s, Docker config %s)\n", args[0], host, htpasswd, dockerConfig)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&htpasswd, "htpasswd", "", "htpasswd file of the registry")
	f.StringVar(&dockerConfig, "docker-config", os.Getenv("DOCKER_CONFIG"), "Docker config dir to hold the credentials (env DOCKER_CONFIG)")
	f.StringVar(&host, "registry", os.Getenv("DRIFT_REGISTRY"), "the registry's host:port (env DRIFT_REGISTRY)")
	return cmd
}
