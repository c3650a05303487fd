package release

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/edgedrift/drift/internal/image"
)

// Release is a pushed image index and what it is made of.
type Release struct {
	Repo       string // repository, e.g. host:port/hello
	Digest     string // the index's digest
	Platforms  []PlatformImage
	Provenance Provenance
	Created    time.Time // the SBOMs' creation time
}

// PlatformImage is one entry of the index.
type PlatformImage struct {
	Platform string // os/arch
	Digest   string // its manifest's digest
	Binaries []Binary
}

// Attached says what Attach stored next to an image.
type Attached struct {
	Signature    string     `json:"signature"`    // the .sig tag
	Attestations string     `json:"attestations"` // the .att tag
	SBOMs        []SBOMInfo `json:"sboms"`
	Key          string     `json:"key"` // sha256 of the signing public key (PKIX DER)
}

// SBOMInfo summarises one platform's SBOM.
type SBOMInfo struct {
	Platform string `json:"platform"`
	Packages int    `json:"packages"`
	Format   string `json:"format"`
}

// Attach signs the index and stores its SBOM (one SPDX statement per
// platform) and provenance attestations, each a signed DSSE envelope, as
// cosign does.
func Attach(ctx context.Context, s *Signer, r Release) (Attached, error) {
	out := Attached{Key: KeyID(&s.key.PublicKey)}
	payload := simpleSigningPayload(r.Repo, r.Digest)
	sig, err := s.Sign(payload)
	if err != nil {
		return out, err
	}
	sigImg, err := artifact(mutate.Addendum{Layer: static.NewLayer(payload, SimpleSigningMediaType),
		Annotations: map[string]string{SignatureAnnotation: base64.StdEncoding.EncodeToString(sig)}})
	if err != nil {
		return out, err
	}
	out.Signature = r.Repo + ":" + SignatureTag(r.Digest)
	if _, err = image.Push(ctx, out.Signature, sigImg); err != nil {
		return out, err
	}

	var layers []mutate.Addendum
	add := func(predicateType string, st any) error {
		env, err := sealStatement(s, st)
		if err != nil {
			return err
		}
		layers = append(layers, mutate.Addendum{Layer: static.NewLayer(env, DSSEMediaType), Annotations: map[string]string{PredicateAnnotation: predicateType}})
		return nil
	}
	index := subject(r.Repo, r.Digest)
	for _, p := range r.Platforms {
		doc, err := SBOM(r.Repo+"@"+r.Digest, p.Platform, p.Binaries, r.Created)
		if err != nil {
			return out, err
		}
		st := Statement[SPDX]{Type: StatementType, Subject: []Subject{index, subject(r.Repo, p.Digest)}, PredicateType: SPDXType, Predicate: doc}
		if err := add(SPDXType, st); err != nil {
			return out, err
		}
		out.SBOMs = append(out.SBOMs, SBOMInfo{Platform: p.Platform, Packages: len(doc.Packages), Format: "SPDX-2.3"})
	}
	prov := Statement[Provenance]{Type: StatementType, Subject: []Subject{index}, PredicateType: ProvenanceType, Predicate: r.Provenance}
	if err := add(ProvenanceType, prov); err != nil {
		return out, err
	}
	attImg, err := artifact(layers...)
	if err != nil {
		return out, err
	}
	out.Attestations = r.Repo + ":" + AttestationTag(r.Digest)
	_, err = image.Push(ctx, out.Attestations, attImg)
	return out, err
}

// artifact is an OCI image of the given layers with an empty config, the
// shape of cosign's .sig and .att manifests.
func artifact(layers ...mutate.Addendum) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	return mutate.Append(img, layers...)
}

// KeyID names a public key: sha256 of its PKIX DER, hex.
func KeyID(pub any) string {
	der, err := marshalPublic(pub)
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%x", sha256Sum(der))
}

// PublicPEM is the PEM of the signer's public key (cosign.pub's format).
func (s *Signer) PublicPEM() []byte {
	der, _ := marshalPublic(&s.key.PublicKey)
	return pemPublic(der)
}

// decodeEnvelope reads a DSSE envelope and its in-toto statement.
func decodeEnvelope(b []byte) (Envelope, []byte, error) {
	var env Envelope
	if err := json.Unmarshal(b, &env); err != nil {
		return env, nil, fmt.Errorf("attestation is not a DSSE envelope: %w", err)
	}
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return env, nil, fmt.Errorf("attestation payload: %w", err)
	}
	return env, payload, nil
}
