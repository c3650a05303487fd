// Package config is how every drift process reaches Temporal: flags and
// TEMPORAL_* environment variables, TLS, API keys, and the namespace set-up
// drift's workflows need.
package config

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/pflag"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
)

// Temporal is how to reach a Temporal cluster.
type Temporal struct {
	Address       string
	Namespace     string
	TLSCert       string // client certificate file (mTLS)
	TLSKey        string
	TLSCA         string // CA bundle to verify the server
	TLSServerName string
	TLS           bool // TLS with system roots and no client certificate (e.g. with an API key)
	APIKey        string
}

// EnvOr returns the environment variable's value, or def when it is unset
// or empty.
func EnvOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// BindFlags registers the connection flags, defaulting to TEMPORAL_* env vars.
func (t *Temporal) BindFlags(fs *pflag.FlagSet) {
	fs.StringVar(&t.Address, "address", EnvOr("TEMPORAL_ADDRESS", "127.0.0.1:7233"), "Temporal frontend host:port (env TEMPORAL_ADDRESS)")
	fs.StringVar(&t.Namespace, "namespace", EnvOr("TEMPORAL_NAMESPACE", "default"), "Temporal namespace (env TEMPORAL_NAMESPACE)")
	fs.StringVar(&t.TLSCert, "tls-cert", os.Getenv("TEMPORAL_TLS_CERT"), "client certificate for mTLS (env TEMPORAL_TLS_CERT)")
	fs.StringVar(&t.TLSKey, "tls-key", os.Getenv("TEMPORAL_TLS_KEY"), "client key for mTLS (env TEMPORAL_TLS_KEY)")
	fs.StringVar(&t.TLSCA, "tls-ca", os.Getenv("TEMPORAL_TLS_CA"), "CA bundle that signs the server certificate (env TEMPORAL_TLS_CA)")
	fs.StringVar(&t.TLSServerName, "tls-server-name", os.Getenv("TEMPORAL_TLS_SERVER_NAME"), "server name to verify (env TEMPORAL_TLS_SERVER_NAME)")
	fs.BoolVar(&t.TLS, "tls", os.Getenv("TEMPORAL_TLS") == "true", "use TLS even without a client certificate (env TEMPORAL_TLS)")
	fs.StringVar(&t.APIKey, "api-key", os.Getenv("TEMPORAL_API_KEY"), "API key (env TEMPORAL_API_KEY); implies TLS")
}

// tlsConfig builds the TLS settings, or nil for a plain connection.
func (t Temporal) tlsConfig() (*tls.Config, error) {
	if !t.TLS && t.APIKey == "" && t.TLSCert == "" && t.TLSCA == "" {
		return nil, nil
	}
	cfg := &tls.Config{ServerName: t.TLSServerName, MinVersion: tls.VersionTLS12}
	if (t.TLSCert == "") != (t.TLSKey == "") {
		return nil, fmt.Errorf("--tls-cert and --tls-key go together")
	}
	if t.TLSCert != "" {
		pair, err := tls.LoadX509KeyPair(t.TLSCert, t.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("load client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	if t.TLSCA != "" {
		pem, err := os.ReadFile(t.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("read CA bundle: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA bundle %s holds no PEM certificate", t.TLSCA)
		}
	}
	return cfg, nil
}

// ClientOptions turns the settings into SDK client options.
func (t Temporal) ClientOptions(logger *slog.Logger) (client.Options, error) {
	tlsCfg, err := t.tlsConfig()
	if err != nil {
		return client.Options{}, err
	}
	opts := client.Options{
		HostPort:          t.Address,
		Namespace:         t.Namespace,
		ConnectionOptions: client.ConnectionOptions{TLS: tlsCfg},
	}
	if t.APIKey != "" {
		opts.Credentials = client.NewAPIKeyStaticCredentials(t.APIKey)
	}
	if logger != nil {
		opts.Logger = sdklog.NewStructuredLogger(logger)
	}
	return opts, nil
}

// Dial connects to Temporal and checks that the server answers.
func (t Temporal) Dial(ctx context.Context, logger *slog.Logger) (client.Client, error) {
	opts, err := t.ClientOptions(logger)
	if err != nil {
		return nil, err
	}
	return t.DialWith(ctx, opts)
}

// DialWith connects with options made by ClientOptions and then adjusted
// (e.g. a metrics handler added).
func (t Temporal) DialWith(ctx context.Context, opts client.Options) (client.Client, error) {
	c, err := client.DialContext(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("connect to Temporal at %s (namespace %s): %w", t.Address, t.Namespace, err)
	}
	return c, nil
}
