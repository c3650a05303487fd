package image

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// ErrUnauthorized is returned when a registry refuses drift's credentials
// (or wants some and drift has none for it).
var ErrUnauthorized = errors.New("registry refused access")

// Registry access is process-wide, like a docker config: credentials and CAs
// by registry host, set once from the worker's flags. Credentials given
// here win over the docker config and its credential helpers, which are
// read next (authn.DefaultKeychain). They live only in this process: no
// reference, error or log line drift writes carries them.
var access = struct {
	sync.RWMutex
	creds map[string]authn.AuthConfig // by host:port
	tls   map[string]bool             // hosts with a CA of their own: always HTTPS
	roots *x509.CertPool              // system roots plus every CA added
}{creds: map[string]authn.AuthConfig{}, tls: map[string]bool{}}

// SetCredentials makes drift log in to host (host:port) as user.
func SetCredentials(host, user, password string) {
	access.Lock()
	defer access.Unlock()
	access.creds[host] = authn.AuthConfig{Username: user, Password: password}
}

// TrustCA adds a PEM CA that host's certificate chains to. Such a registry is
// spoken to over HTTPS even on loopback, where plain HTTP is the default.
func TrustCA(host string, caPEM []byte) error {
	access.Lock()
	defer access.Unlock()
	if access.roots == nil {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		access.roots = pool
	}
	if !access.roots.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("registry CA for %s: no PEM certificate found", host)
	}
	access.tls[host] = true
	return nil
}

// usesTLS reports whether host was given a CA of its own.
func usesTLS(host string) bool {
	access.RLock()
	defer access.RUnlock()
	return access.tls[host]
}

// Keychain is drift's: the credentials set here, then the docker config.
func Keychain() authn.Keychain { return authn.NewMultiKeychain(flagKeychain{}, authn.DefaultKeychain) }

type flagKeychain struct{}

func (flagKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	access.RLock()
	defer access.RUnlock()
	if c, ok := access.creds[r.RegistryStr()]; ok {
		return authn.FromConfig(c), nil
	}
	return authn.Anonymous, nil
}

// User is the user drift logs in to host as ("" : none set by flag).
func User(host string) string {
	access.RLock()
	defer access.RUnlock()
	return access.creds[host].Username
}

// Options are the go-containerregistry options of every registry call
// drift makes: its keychain and its TLS roots.
func Options(ctx context.Context) []remote.Option {
	return []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(Keychain()), remote.WithTransport(Transport())}
}

// Transport is the default transport with drift's TLS roots, upgrading
// requests to HTTPS for registries with a CA of their own
// (go-containerregistry speaks plain HTTP to every loopback registry).
func Transport() http.RoundTripper {
	access.RLock()
	roots := access.roots
	access.RUnlock()
	if roots == nil {
		return remote.DefaultTransport
	}
	t := remote.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	return httpsFor{t}
}

type httpsFor struct{ next http.RoundTripper }

func (h httpsFor) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && usesTLS(req.URL.Host) {
		req = req.Clone(req.Context())
		req.URL.Scheme = "https"
	}
	return h.next.RoundTrip(req)
}

// RegistryError names what went wrong with ref: ErrNotFound for a 404,
// ErrUnauthorized (naming the user, never the secret) for a 401 or 403.
func RegistryError(ref string, err error) error {
	var te *transport.Error
	if errors.As(err, &te) {
		switch te.StatusCode {
		case http.StatusNotFound:
			return fmt.Errorf("%w: %s", ErrNotFound, ref)
		case http.StatusUnauthorized, http.StatusForbidden:
			return unauthorized(ref, te.StatusCode)
		}
	}
	return fmt.Errorf("registry %s: %w", ref, err)
}

func unauthorized(ref string, status int) error {
	host := ref
	if r, err := ParseReference(ref); err == nil {
		host = r.Context().RegistryStr()
	}
	if u := User(host); u != "" {
		return fmt.Errorf("%w: %s answered %d to user %q (wrong password or no permission for %s); check --registry-user and --registry-password-file",
			ErrUnauthorized, host, status, u, ref)
	}
	return fmt.Errorf("%w: %s answered %d to %s and drift has no credentials for it; give --registry-user and --registry-password-file, or its credentials in the Docker config ($DOCKER_CONFIG; drift registry adduser writes them)",
		ErrUnauthorized, host, status, ref)
}

// AuthFor is the login drift has for ref's registry (zero: anonymous), for
// clients that pull on their own, like the Docker Engine.
func AuthFor(ref string) (authn.AuthConfig, error) {
	r, err := ParseReference(ref)
	if err != nil {
		return authn.AuthConfig{}, err
	}
	a, err := Keychain().Resolve(r.Context())
	if err != nil {
		return authn.AuthConfig{}, err
	}
	c, err := a.Authorization()
	if err != nil || c == nil {
		return authn.AuthConfig{}, err
	}
	return *c, nil
}
