package config

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/edgedrift/drift/internal/image"
)

// RegistryLogin is how a drift process logs in to the center registry
// beyond the docker config and its credential helpers, which are always
// read: a user with a password from a file or DRIFT_REGISTRY_PASSWORD
// (never a flag value, which process listings show), and a CA for a
// registry whose certificate the system does not trust.
type RegistryLogin struct {
	User         string
	PasswordFile string
	CA           string
}

// BindFlags registers the registry login flags.
func (r *RegistryLogin) BindFlags(fs *pflag.FlagSet) {
	fs.StringVar(&r.User, "registry-user", os.Getenv("DRIFT_REGISTRY_USER"), "user to log in to the registry as (env DRIFT_REGISTRY_USER)")
	fs.StringVar(&r.PasswordFile, "registry-password-file", os.Getenv("DRIFT_REGISTRY_PASSWORD_FILE"), "file holding the registry password (env DRIFT_REGISTRY_PASSWORD_FILE, or the password itself in DRIFT_REGISTRY_PASSWORD)")
	fs.StringVar(&r.CA, "registry-ca", os.Getenv("DRIFT_REGISTRY_CA"), "PEM CA the registry's certificate chains to (env DRIFT_REGISTRY_CA); the registry is then spoken to over HTTPS")
}

// Apply makes this process use the login for host (host:port).
func (r RegistryLogin) Apply(host string) error {
	if r.CA != "" {
		pem, err := os.ReadFile(r.CA)
		if err != nil {
			return fmt.Errorf("--registry-ca: %w", err)
		}
		if err := image.TrustCA(host, pem); err != nil {
			return fmt.Errorf("--registry-ca: %w", err)
		}
	}
	if r.User == "" {
		return nil
	}
	password := os.Getenv("DRIFT_REGISTRY_PASSWORD")
	if r.PasswordFile != "" {
		b, err := os.ReadFile(r.PasswordFile)
		if err != nil {
			return fmt.Errorf("--registry-password-file: %w", err)
		}
		password = strings.TrimSpace(string(b))
	}
	if password == "" {
		return fmt.Errorf("--registry-user %s needs --registry-password-file or DRIFT_REGISTRY_PASSWORD", r.User)
	}
	image.SetCredentials(host, r.User, password)
	return nil
}
