package release

import (
	"encoding/base64"
	"encoding/json"
	"fmt"

	"github.com/edgedrift/drift/internal/image"
)

// Media types and annotations of cosign's storage in the registry.
const (
	SimpleSigningMediaType = "application/vnd.dev.cosign.simplesigning.v1+json"
	SignatureAnnotation    = "dev.cosignproject.cosign/signature"
	DSSEMediaType          = "application/vnd.dsse.envelope.v1+json"
	PredicateAnnotation    = "predicateType"
	InTotoPayloadType      = "application/vnd.in-toto+json"
	StatementType          = "https://in-toto.io/Statement/v1"
	ProvenanceType         = "https://slsa.dev/provenance/v1"
	SPDXType               = "https://spdx.dev/Document"
)

// SignatureTag and AttestationTag name an image's cosign tags.
var (
	SignatureTag   = image.SignatureTag
	AttestationTag = image.AttestationTag
)

// simpleSigning is the payload cosign signs for an image.
type simpleSigning struct {
	Critical struct {
		Identity struct {
			DockerReference string `json:"docker-reference"`
		} `json:"identity"`
		Image struct {
			DockerManifestDigest string `json:"docker-manifest-digest"`
		} `json:"image"`
		Type string `json:"type"`
	} `json:"critical"`
	Optional map[string]string `json:"optional"`
}

const simpleSigningType = "cosign container image signature"

func simpleSigningPayload(repo, digest string) []byte {
	var p simpleSigning
	p.Critical.Identity.DockerReference = repo
	p.Critical.Image.DockerManifestDigest = digest
	p.Critical.Type = simpleSigningType
	b, _ := json.Marshal(p)
	return b
}

// Envelope is a DSSE envelope.
type Envelope struct {
	PayloadType string        `json:"payloadType"`
	Payload     string        `json:"payload"` // base64
	Signatures  []EnvelopeSig `json:"signatures"`
}

// EnvelopeSig is one signature of an envelope.
type EnvelopeSig struct {
	KeyID string `json:"keyid"`
	Sig   string `json:"sig"` // base64
}

// PAE is DSSE's pre-authentication encoding, what is actually signed.
func PAE(payloadType string, payload []byte) []byte {
	return fmt.Appendf(nil, "DSSEv1 %d %s %d %s", len(payloadType), payloadType, len(payload), payload)
}

func sealStatement(s *Signer, statement any) ([]byte, error) {
	payload, err := json.Marshal(statement)
	if err != nil {
		return nil, err
	}
	sig, err := s.Sign(PAE(InTotoPayloadType, payload))
	if err != nil {
		return nil, err
	}
	return json.Marshal(Envelope{PayloadType: InTotoPayloadType, Payload: base64.StdEncoding.EncodeToString(payload),
		Signatures: []EnvelopeSig{{Sig: base64.StdEncoding.EncodeToString(sig)}}})
}
