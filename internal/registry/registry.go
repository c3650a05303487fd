// Package registry runs the center cloud's image library: an embedded CNCF
// Distribution registry with filesystem storage, served over plain HTTP on
// loopback (Docker and go-containerregistry treat loopback registries as
// insecure-allowed by default), or with TLS and htpasswd users.
package registry

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd" // access controller used below
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
}

// Start serves a registry storing blobs under dir, listening on addr
// (e.g. "127.0.0.1:5000"; port 0 picks a free one).
func Start(ctx context.Context, dir, addr string) (*Server, error) {
	return StartWith(ctx, Options{Dir: dir, Addr: addr})
}

// Options configure a registry beyond storage and address.
type Options struct {
	Dir, Addr string
	// Htpasswd is an htpasswd file (bcrypt): with it, every request needs
	// one of its users (basic auth).
	Htpasswd string
	// TLS serves HTTPS with this certificate instead of plain HTTP.
	TLS *tls.Certificate
}

// StartWith serves a registry as opts say.
func StartWith(ctx context.Context, opts Options) (*Server, error) {
	dir, addr := opts.Dir, opts.Addr
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("registry storage: %w", err)
	}
	// Distribution logs through logrus' standard logger; drift's own logs
	// say what matters, so keep the registry quiet unless it fails.
	logrus.SetOutput(io.Discard)

	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	cfg := &configuration.Configuration{
		Storage: configuration.Storage{
			"filesystem": configuration.Parameters{"rootdirectory": dir},
			"delete":     configuration.Parameters{"enabled": true},
		},
	}
	cfg.HTTP.Secret = hex.EncodeToString(secret)
	if opts.Htpasswd != "" {
		cfg.Auth = configuration.Auth{"htpasswd": configuration.Parameters{"realm": "drift", "path": opts.Htpasswd}}
	}
	cfg.Log.AccessLog.Disabled = true

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("registry listen %s: %w", addr, err)
	}
	if opts.TLS != nil {
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{*opts.TLS}, MinVersion: tls.VersionTLS12})
	}
	app := handlers.NewApp(ctx, cfg)
	s := &Server{
		http: &http.Server{Handler: app, ReadHeaderTimeout: 10 * time.Second},
		ln:   ln,
		app:  app,
		done: make(chan error, 1),
	}
	go func() { s.done <- s.http.Serve(ln) }()
	return s, nil
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
