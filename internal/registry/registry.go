// Package registry runs the center cloud's image library: an embedded CNCF
// Distribution registry with filesystem storage (or any storage its config
// file names). drift dev serves it over plain HTTP on loopback (Docker and
// go-containerregistry treat loopback registries as insecure-allowed);
// standalone (drift registry serve) it takes TLS and htpasswd basic auth.
package registry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd" // basic auth from an htpasswd file
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem" // storage driver used below
	"github.com/sirupsen/logrus"
)

// Server is a running registry.
type Server struct {
	http *http.Server
	ln   net.Listener
	app  *handlers.App
	done chan error
	tls  bool
}

// Options say how a standalone registry serves (drift registry serve).
type Options struct {
	Addr   string // host:port to listen on
	Dir    string // filesystem storage root ("" : the config file's storage)
	Config string // a Distribution config.yml (storage, auth, …); "" : filesystem under Dir
	// TLSCert and TLSKey serve HTTPS; without them plain HTTP, which image
	// clients accept only on loopback.
	TLSCert, TLSKey string
	// Htpasswd is a bcrypt htpasswd file: clients authenticate (basic auth)
	// for every request. Realm names it in the challenge.
	Htpasswd, Realm string
}

// Start serves a registry storing blobs under dir, listening on addr
// (e.g. "127.0.0.1:5000"; port 0 picks a free one), plain HTTP, no auth.
func Start(ctx context.Context, dir, addr string) (*Server, error) {
	return Serve(ctx, Options{Addr: addr, Dir: dir})
}

// Serve starts a registry as opts say.
func Serve(ctx context.Context, opts Options) (*Server, error) {
	// Distribution logs through logrus' standard logger; drift's own logs
	// say what matters, so keep the registry quiet unless it fails.
	logrus.SetOutput(io.Discard)
	cfg, err := configure(opts)
	if err != nil {
		return nil, err
	}
	if (opts.TLSCert == "") != (opts.TLSKey == "") {
		return nil, errors.New("registry: --tls-cert and --tls-key go together")
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("registry listen %s: %w", opts.Addr, err)
	}
	app := handlers.NewApp(ctx, cfg)
	s := &Server{
		http: &http.Server{Handler: app, ReadHeaderTimeout: 10 * time.Second},
		ln:   ln,
		app:  app,
		done: make(chan error, 1),
		tls:  opts.TLSCert != "",
	}
	go func() {
		if s.tls {
			s.done <- s.http.ServeTLS(ln, opts.TLSCert, opts.TLSKey)
			return
		}
		s.done <- s.http.Serve(ln)
	}()
	return s, nil
}

// configure builds Distribution's configuration: from the config file when
// given, else filesystem storage under Dir; the flags' auth on top.
func configure(opts Options) (*configuration.Configuration, error) {
	cfg := &configuration.Configuration{}
	if opts.Config != "" {
		f, err := os.Open(opts.Config)
		if err != nil {
			return nil, fmt.Errorf("registry config: %w", err)
		}
		defer f.Close()
		if cfg, err = configuration.Parse(f); err != nil {
			return nil, fmt.Errorf("registry config %s: %w", opts.Config, err)
		}
	}
	if opts.Dir != "" {
		if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("registry storage: %w", err)
		}
		cfg.Storage = configuration.Storage{
			"filesystem": configuration.Parameters{"rootdirectory": opts.Dir},
			"delete":     configuration.Parameters{"enabled": true},
		}
	}
	if cfg.Storage.Type() == "" {
		return nil, errors.New("registry: no storage: give a data dir or a config file with storage")
	}
	if opts.Htpasswd != "" {
		// Checked here: Distribution panics on an auth file it cannot read.
		if _, err := os.Stat(opts.Htpasswd); err != nil {
			return nil, fmt.Errorf("registry htpasswd: %w", err)
		}
		realm := opts.Realm
		if realm == "" {
			realm = "drift"
		}
		cfg.Auth = configuration.Auth{"htpasswd": configuration.Parameters{"realm": realm, "path": opts.Htpasswd}}
	}
	if cfg.HTTP.Secret == "" {
		secret := make([]byte, 16)
		if _, err := rand.Read(secret); err != nil {
			return nil, err
		}
		cfg.HTTP.Secret = hex.EncodeToString(secret)
	}
	cfg.Log.AccessLog.Disabled = true
	return cfg, nil
}

// URL is the registry's base URL.
func (s *Server) URL() string {
	if s.tls {
		return "https://" + s.Host()
	}
	return "http://" + s.Host()
}

// Host is the registry's host:port, the prefix of every image it holds.
func (s *Server) Host() string { return s.ln.Addr().String() }

// Close stops serving and releases the storage driver.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.http.Shutdown(ctx)
	if serveErr := <-s.done; !errors.Is(serveErr, http.ErrServerClosed) {
		err = errors.Join(err, serveErr)
	}
	return errors.Join(err, s.app.Shutdown())
}
