package release

import (
	"context"
	"crypto/ecdsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"gopkg.in/yaml.v3"

	"github.com/edgedrift/drift/internal/image"
)

// ErrUntrusted is returned when an image fails a site's trust policy.
var ErrUntrusted = errors.New("untrusted image")

// Policy is what a site trusts: images signed by one of Keys whose
// provenance names one of Repos (and Refs), and, with RequireTests, whose
// every platform passed its tests. Empty Repos or Refs allow any.
type Policy struct {
	Keys         []string `yaml:"keys" json:"keys"` // PEM public key files, relative to the policy file
	Repos        []string `yaml:"repos" json:"repos"`
	Refs         []string `yaml:"refs" json:"refs"`
	RequireTests bool     `yaml:"requireTests" json:"requireTests"`

	keys []*ecdsa.PublicKey
}

// LoadPolicy reads a YAML policy and its keys.
func LoadPolicy(file string) (*Policy, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("trust policy: %w", err)
	}
	var p Policy
	if err := yaml.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("trust policy %s: %w", file, err)
	}
	for i, k := range p.Keys {
		if !filepath.IsAbs(k) {
			p.Keys[i] = filepath.Join(filepath.Dir(file), k)
		}
	}
	return &p, p.load()
}

// NewPolicy is a policy trusting the given PEM public keys.
func NewPolicy(keys [][]byte, repos, refs []string, requireTests bool) (*Policy, error) {
	p := &Policy{Repos: repos, Refs: refs, RequireTests: requireTests}
	for _, k := range keys {
		pub, err := ParsePublicKey(k)
		if err != nil {
			return nil, err
		}
		p.keys = append(p.keys, pub)
	}
	if len(p.keys) == 0 {
		return nil, errors.New("trust policy: no keys")
	}
	return p, nil
}

func (p *Policy) load() error {
	for _, f := range p.Keys {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("trust policy key: %w", err)
		}
		k, err := ParsePublicKey(b)
		if err != nil {
			return fmt.Errorf("trust policy key %s: %w", f, err)
		}
		p.keys = append(p.keys, k)
	}
	if len(p.keys) == 0 {
		return errors.New("trust policy: no keys")
	}
	return nil
}

// Verified is what a verification found.
type Verified struct {
	Digest  string       `json:"digest"`
	Key     string       `json:"key"`
	Source  Source       `json:"source"`
	Commit  string       `json:"commit"`
	Builder string       `json:"builder"`
	Tests   []TestResult `json:"tests"`
}

// Verify checks ref (by tag or digest) against the policy: a signature by a
// trusted key over its digest, and a signed provenance whose source and
// tests the policy accepts. A failure of trust wraps ErrUntrusted; other
// errors are the registry's.
func Verify(ctx context.Context, ref string, p *Policy) (Verified, error) {
	r, err := image.ParseReference(ref)
	if err != nil {
		return Verified{}, err
	}
	desc, err := remote.Get(r, image.Options(ctx)...)
	if err != nil {
		return Verified{}, image.RegistryError(ref, err)
	}
	v := Verified{Digest: desc.Digest.String()}
	if d, ok := r.(name.Digest); ok && d.DigestStr() != v.Digest {
		return v, untrusted(ref, "the registry serves %s for it", v.Digest)
	}
	repo := r.Context()
	if err := p.checkSignature(ctx, repo, &v); err != nil {
		return v, err
	}
	prov, err := p.provenance(ctx, repo, v.Digest)
	if err != nil {
		return v, err
	}
	v.Source = prov.BuildDefinition.ExternalParameters.Source
	v.Builder = prov.RunDetails.Builder.ID
	for _, d := range prov.BuildDefinition.ResolvedDependencies {
		v.Commit = d.Digest["gitCommit"]
	}
	for _, b := range prov.RunDetails.Byproducts {
		if t, ok := testOf(b); ok {
			v.Tests = append(v.Tests, t)
		}
	}
	if len(p.Repos) > 0 && !slices.Contains(p.Repos, v.Source.Repository) {
		return v, untrusted(ref, "it was built from %s, and the policy trusts only %s", v.Source.Repository, strings.Join(p.Repos, ", "))
	}
	if len(p.Refs) > 0 && !slices.Contains(p.Refs, v.Source.Ref) {
		return v, untrusted(ref, "it was built from ref %s, and the policy trusts only %s", v.Source.Ref, strings.Join(p.Refs, ", "))
	}
	if p.RequireTests {
		if err := testsPassed(ctx, desc, v.Tests); err != nil {
			return v, untrusted(ref, "%v", err)
		}
	}
	return v, nil
}

// Trusted is Verify for every image a site runs, also those drift layers
// at the site itself (image.Layer: an upgrade's env, a release with a
// driver added). No one signs those: one is trusted when both images it
// names are, and laying one over the other again gives this very image.
func Trusted(ctx context.Context, ref string, p *Policy) error {
	_, err := Verify(ctx, ref, p)
	if !errors.Is(err, ErrUntrusted) {
		return err
	}
	base, top, layered, lerr := image.LayeredFrom(ctx, ref)
	if lerr != nil || !layered {
		return err
	}
	for _, part := range []string{base, top} {
		if _, err := Verify(ctx, part, p); err != nil {
			return fmt.Errorf("%s is made of an image that is not trusted: %w", ref, err)
		}
	}
	again, err := image.Layered(ctx, base, top)
	if err != nil {
		return err
	}
	want, err := again.Digest()
	if err != nil {
		return err
	}
	pinned, err := image.Resolve(ctx, ref)
	if err != nil {
		return err
	}
	if !strings.HasSuffix(pinned, "@"+want.String()) {
		return untrusted(ref, "it says it is %s laid over %s, and it is not", top, base)
	}
	return nil
}

func untrusted(ref, format string, args ...any) error {
	return fmt.Errorf("%w %s: %s", ErrUntrusted, ref, fmt.Sprintf(format, args...))
}

// checkSignature finds a simple-signing layer over the digest signed by a
// trusted key.
func (p *Policy) checkSignature(ctx context.Context, repo name.Repository, v *Verified) error {
	ref := repo.Tag(SignatureTag(v.Digest))
	layers, err := artifactLayers(ctx, ref)
	if err != nil {
		return err
	}
	for _, l := range layers {
		if l.mediaType != SimpleSigningMediaType {
			continue
		}
		var ss simpleSigning
		if json.Unmarshal(l.data, &ss) != nil || ss.Critical.Image.DockerManifestDigest != v.Digest || ss.Critical.Type != simpleSigningType {
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(l.annotations[SignatureAnnotation])
		if err != nil {
			continue
		}
		if k := p.keyFor(l.data, sig); k != nil {
			v.Key = KeyID(k)
			return nil
		}
	}
	return untrusted(repo.Digest(v.Digest).String(), "no signature by a trusted key (looked in %s)", ref)
}

// provenance returns the signed SLSA provenance about the digest.
func (p *Policy) provenance(ctx context.Context, repo name.Repository, digest string) (Provenance, error) {
	ref := repo.Tag(AttestationTag(digest))
	layers, err := artifactLayers(ctx, ref)
	if err != nil {
		return Provenance{}, err
	}
	for _, l := range layers {
		if l.mediaType != DSSEMediaType || l.annotations[PredicateAnnotation] != ProvenanceType {
			continue
		}
		env, payload, err := decodeEnvelope(l.data)
		if err != nil || env.PayloadType != InTotoPayloadType {
			continue
		}
		signed := false
		for _, s := range env.Signatures {
			sig, err := base64.StdEncoding.DecodeString(s.Sig)
			if err == nil && p.keyFor(PAE(env.PayloadType, payload), sig) != nil {
				signed = true
			}
		}
		var st Statement[Provenance]
		if !signed || json.Unmarshal(payload, &st) != nil || st.PredicateType != ProvenanceType {
			continue
		}
		algo, hex, _ := strings.Cut(digest, ":")
		for _, s := range st.Subject {
			if s.Digest[algo] == hex {
				return st.Predicate, nil
			}
		}
	}
	return Provenance{}, untrusted(repo.Digest(digest).String(), "no provenance about it signed by a trusted key (looked in %s)", ref)
}

func (p *Policy) keyFor(data, sig []byte) *ecdsa.PublicKey {
	for _, k := range p.keys {
		if verifySig([]*ecdsa.PublicKey{k}, data, sig) {
			return k
		}
	}
	return nil
}

type layer struct {
	mediaType   string
	annotations map[string]string
	data        []byte
}

// artifactLayers reads a .sig or .att manifest's layers; a missing one is
// untrusted, not an error of the registry.
func artifactLayers(ctx context.Context, ref name.Reference) ([]layer, error) {
	img, err := remote.Image(ref, image.Options(ctx)...)
	if err != nil {
		var te *transport.Error
		if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
			return nil, untrusted(ref.Context().String(), "%s does not exist: not signed, or changed after signing", ref)
		}
		return nil, image.RegistryError(ref.String(), err)
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	var out []layer
	for _, d := range m.Layers {
		l, err := img.LayerByDigest(d.Digest)
		if err != nil {
			return nil, err
		}
		rc, err := l.Compressed() // checked against its digest while read
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(io.LimitReader(rc, 16<<20))
		rc.Close()
		if err != nil {
			return nil, err
		}
		out = append(out, layer{mediaType: string(d.MediaType), annotations: d.Annotations, data: b})
	}
	return out, nil
}

func testOf(b ResourceDescriptor) (TestResult, bool) {
	platform, ok := strings.CutPrefix(b.Name, "test ")
	if !ok {
		return TestResult{}, false
	}
	t := TestResult{Platform: platform}
	t.Passed, _ = b.Annotations["passed"].(bool)
	t.Emulator, _ = b.Annotations["emulator"].(string)
	return t, true
}

// testsPassed checks every platform of the image has a passed test result.
func testsPassed(ctx context.Context, desc *remote.Descriptor, tests []TestResult) error {
	platforms := []string{}
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return err
		}
		m, err := idx.IndexManifest()
		if err != nil {
			return err
		}
		for _, d := range m.Manifests {
			if d.Platform != nil {
				platforms = append(platforms, platformString(d.Platform))
			}
		}
	}
	for _, pl := range platforms {
		ok := slices.ContainsFunc(tests, func(t TestResult) bool { return t.Platform == pl && t.Passed })
		if !ok {
			return fmt.Errorf("its provenance records no passed tests for %s", pl)
		}
	}
	return nil
}

func platformString(p *v1.Platform) string { return p.OS + "/" + p.Architecture }
