// Package release makes what lets a site trust an image: an SPDX SBOM of
// every platform's Go binaries, an in-toto SLSA v1 provenance statement, and
// signatures, all stored next to the image the way cosign stores them (tags
// sha256-<hex>.sig and .att in the image's repository), so cosign and
// policy engines read them; and it verifies them against a site's policy.
// The envelopes (simple signing, DSSE) are written here: the sigstore Go
// modules need a newer Go than drift's pinned toolchain.
package release

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Signer signs with an ECDSA P-256 key (cosign's default kind).
type Signer struct{ key *ecdsa.PrivateKey }

// Sign signs sha256(data), ASN.1 encoded, as cosign does.
func (s *Signer) Sign(data []byte) ([]byte, error) {
	sum := sha256.Sum256(data)
	return ecdsa.SignASN1(rand.Reader, s.key, sum[:])
}

// Public is the verification key.
func (s *Signer) Public() crypto.PublicKey { return &s.key.PublicKey }

// KeyFiles are where `drift dev` keeps its key pair in its data dir.
func KeyFiles(dataDir string) (private, public string) {
	dir := filepath.Join(dataDir, "keys")
	return filepath.Join(dir, "signing.key"), filepath.Join(dir, "signing.pub")
}

// EnsureKeyPair returns the signer in private, writing a new P-256 key pair
// (PKCS#8 private 0600, PKIX public) when there is none yet.
func EnsureKeyPair(private, public string) (*Signer, error) {
	if _, err := os.Stat(private); err == nil {
		return LoadSigner(private)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(private), 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(public, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(private, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	return &Signer{key: key}, nil
}

// LoadSigner reads a PEM private key (PKCS#8 or SEC 1) from file.
func LoadSigner(file string) (*Signer, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	return ParseSigner(b)
}

// ParseSigner parses a PEM private key, e.g. from DRIFT_SIGNING_KEY.
func ParseSigner(pemBytes []byte) (*Signer, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("signing key: no PEM block")
	}
	if k, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
		return &Signer{key: k}, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	ec, ok := k.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, errors.New("signing key: want an ECDSA P-256 key")
	}
	return &Signer{key: ec}, nil
}

// ParsePublicKey parses a PEM PKIX ECDSA public key (cosign.pub's format).
func ParsePublicKey(pemBytes []byte) (*ecdsa.PublicKey, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("public key: no PEM block")
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	ec, ok := k.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("public key: %T is not ECDSA", k)
	}
	return ec, nil
}

// verifySig checks an ASN.1 ECDSA signature over sha256(data) with any key.
func verifySig(keys []*ecdsa.PublicKey, data, sig []byte) bool {
	sum := sha256.Sum256(data)
	for _, k := range keys {
		if ecdsa.VerifyASN1(k, sum[:], sig) {
			return true
		}
	}
	return false
}

func marshalPublic(pub any) ([]byte, error) { return x509.MarshalPKIXPublicKey(pub) }

func pemPublic(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }
