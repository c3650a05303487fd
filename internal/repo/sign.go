package repo

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Every package's index entry is signed with Ed25519: by the repository
// always, and by its publisher when the upload carried a signature. A VM's
// agent installs only what a key it trusts signed, so a repository or
// gateway that is taken over cannot make VMs run code of its choosing.

// Who signed.
const (
	ByRepository = "repository"
	ByPublisher  = "publisher"
)

// ErrUntrusted: no signature of a trusted key verifies.
var ErrUntrusted = errors.New("not signed by a trusted key")

// Signature is one Ed25519 signature of a package's statement.
type Signature struct {
	KeyID string `json:"keyId"` // KeyID of the signing key
	By    string `json:"by"`    // ByRepository or ByPublisher
	Sig   string `json:"sig"`   // base64
}

// Statement is what a signature covers: everything that decides what a VM
// runs (name, version, platform, the blob's sha256 and size, the hook and
// the health check), one field a line.
func Statement(p Package) []byte {
	var b strings.Builder
	b.WriteString("drift-package-v1\n")
	for _, kv := range [][2]string{
		{"name", p.Name}, {"version", p.Version}, {"platform", p.Platform}, {"sha256", p.SHA256},
		{"size", strconv.FormatInt(p.Size, 10)}, {"hook", p.Hook}, {"health", p.Health},
	} {
		b.WriteString(kv[0] + "=" + kv[1] + "\n")
	}
	return []byte(b.String())
}

// KeyID names a public key: the first 8 bytes of its sha256, in hex.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// SignPackage signs p's statement.
func SignPackage(key ed25519.PrivateKey, by string, p Package) Signature {
	return Signature{KeyID: KeyID(key.Public().(ed25519.PublicKey)), By: by, Sig: base64.StdEncoding.EncodeToString(ed25519.Sign(key, Statement(p)))}
}

// SignedBy says whether p carries a signature by key's ID.
func (p Package) SignedBy(pub ed25519.PublicKey) bool {
	id := KeyID(pub)
	for _, s := range p.Signatures {
		if s.KeyID == id {
			return true
		}
	}
	return false
}

// Verify returns nil when a signature on p by one of trusted verifies, and
// an ErrUntrusted error saying what was found otherwise.
func Verify(p Package, trusted []ed25519.PublicKey) error {
	byID := map[string]ed25519.PublicKey{}
	ids := make([]string, len(trusted))
	for i, k := range trusted {
		ids[i] = KeyID(k)
		byID[ids[i]] = k
	}
	seen := []string{}
	for _, s := range p.Signatures {
		k, ok := byID[s.KeyID]
		if !ok {
			seen = append(seen, fmt.Sprintf("%s key %s: not trusted", s.By, s.KeyID))
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(s.Sig)
		if err == nil && ed25519.Verify(k, Statement(p), sig) {
			return nil
		}
		seen = append(seen, fmt.Sprintf("%s key %s: does not verify", s.By, s.KeyID))
	}
	if len(seen) == 0 {
		seen = append(seen, "no signature")
	}
	return fmt.Errorf("%s: %w (%s; trusted keys: %s)", p.Ref, ErrUntrusted, strings.Join(seen, "; "), strings.Join(ids, ", "))
}

// GenerateKey writes a new Ed25519 key to file (PKCS#8 PEM, 0600) and its
// public key to file.pub (PKIX PEM), and returns the key. An existing file
// is never overwritten.
func GenerateKey(file string) (ed25519.PrivateKey, error) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	err = pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	return key, os.WriteFile(file+".pub", PublicKeyPEM(pub), 0o644)
}

// PublicKeyPEM encodes a public key as PKIX PEM.
func PublicKeyPEM(pub ed25519.PublicKey) []byte {
	der, _ := x509.MarshalPKIXPublicKey(pub)
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// ParsePrivateKey reads an Ed25519 key from PKCS#8 PEM.
func ParsePrivateKey(data []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("signing key: not a PEM PRIVATE KEY")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, errors.New("signing key: not Ed25519")
	}
	return key, nil
}

// ParsePublicKeys reads every PKIX PEM Ed25519 public key in data.
func ParsePublicKeys(data []byte) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "PUBLIC KEY" {
			continue
		}
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("public key: %w", err)
		}
		pub, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, errors.New("public key: not Ed25519")
		}
		keys = append(keys, pub)
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM PUBLIC KEY found")
	}
	return keys, nil
}

// LoadPublicKeys reads the public keys in files.
func LoadPublicKeys(files ...string) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		k, err := ParsePublicKeys(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		keys = append(keys, k...)
	}
	return keys, nil
}
