package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestFlagsDefaultToEnvironment(t *testing.T) {
	t.Setenv("TEMPORAL_ADDRESS", "temporal.example:7233")
	t.Setenv("TEMPORAL_NAMESPACE", "edge")
	t.Setenv("TEMPORAL_API_KEY", "k")
	var tc Temporal
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	tc.BindFlags(fs)
	if err := fs.Parse([]string{"--namespace", "other"}); err != nil {
		t.Fatal(err)
	}
	if tc.Address != "temporal.example:7233" || tc.Namespace != "other" || tc.APIKey != "k" {
		t.Fatalf("got %+v", tc)
	}
	opts, err := tc.ClientOptions(nil)
	if err != nil {
		t.Fatal(err)
	}
	if opts.ConnectionOptions.TLS == nil || opts.Credentials == nil {
		t.Fatal("an API key must imply TLS and credentials")
	}
}

func TestPlainConnectionHasNoTLS(t *testing.T) {
	opts, err := Temporal{Address: "127.0.0.1:7233", Namespace: "default"}.ClientOptions(nil)
	if err != nil || opts.ConnectionOptions.TLS != nil || opts.HostPort != "127.0.0.1:7233" {
		t.Fatalf("opts=%+v err=%v", opts, err)
	}
}

func TestTLSFiles(t *testing.T) {
	dir := t.TempDir()
	cert, key := selfSigned(t, dir)
	opts, err := Temporal{TLSCert: cert, TLSKey: key, TLSCA: cert, TLSServerName: "temporal"}.ClientOptions(nil)
	if err != nil {
		t.Fatal(err)
	}
	tc := opts.ConnectionOptions.TLS
	if tc == nil || len(tc.Certificates) != 1 || tc.RootCAs == nil || tc.ServerName != "temporal" {
		t.Fatalf("tls = %+v", tc)
	}

	for _, c := range []struct {
		t    Temporal
		want string
	}{
		{Temporal{TLSCert: cert}, "go together"},
		{Temporal{TLSCert: cert, TLSKey: filepath.Join(dir, "none")}, "client certificate"},
		{Temporal{TLSCA: filepath.Join(dir, "none")}, "CA bundle"},
		{Temporal{TLSCA: key}, "no PEM certificate"},
	} {
		if _, err := c.t.ClientOptions(nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err %v, want %q", c.t, err, c.want)
		}
	}
}

func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "temporal"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, DNSNames: []string{"temporal"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	return certFile, keyFile
}
