package release

import (
	"bytes"
	"debug/buildinfo"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Statement is an in-toto v1 statement.
type Statement[P any] struct {
	Type          string    `json:"_type"`
	Subject       []Subject `json:"subject"`
	PredicateType string    `json:"predicateType"`
	Predicate     P         `json:"predicate"`
}

// Subject is what a statement is about.
type Subject struct {
	Name   string            `json:"name"`
	Digest map[string]string `json:"digest"`
}

func subject(repo, digest string) Subject {
	algo, hex, _ := strings.Cut(digest, ":")
	return Subject{Name: repo, Digest: map[string]string{algo: hex}}
}

// SPDX is the part of an SPDX 2.3 JSON document drift writes.
type SPDX struct {
	Version       string         `json:"spdxVersion"`
	DataLicense   string         `json:"dataLicense"`
	ID            string         `json:"SPDXID"`
	Name          string         `json:"name"`
	Namespace     string         `json:"documentNamespace"`
	CreationInfo  SPDXCreation   `json:"creationInfo"`
	Packages      []SPDXPackage  `json:"packages"`
	Relationships []SPDXRelation `json:"relationships"`
}

// SPDXCreation says who made the document.
type SPDXCreation struct {
	Created  string   `json:"created"`
	Creators []string `json:"creators"`
}

// SPDXPackage is one Go module (or the binary's main module).
type SPDXPackage struct {
	ID               string       `json:"SPDXID"`
	Name             string       `json:"name"`
	Version          string       `json:"versionInfo,omitempty"`
	DownloadLocation string       `json:"downloadLocation"`
	Checksums        []SPDXSum    `json:"checksums,omitempty"`
	ExternalRefs     []SPDXExtRef `json:"externalRefs,omitempty"`
	Comment          string       `json:"comment,omitempty"`
}

// SPDXSum is a package checksum.
type SPDXSum struct {
	Algorithm string `json:"algorithm"`
	Value     string `json:"checksumValue"`
}

// SPDXExtRef is a package URL.
type SPDXExtRef struct {
	Category string `json:"referenceCategory"`
	Type     string `json:"referenceType"`
	Locator  string `json:"referenceLocator"`
}

// SPDXRelation relates two elements.
type SPDXRelation struct {
	Element string `json:"spdxElementId"`
	Type    string `json:"relationshipType"`
	Related string `json:"relatedSpdxElement"`
}

// Binary is one file of a platform image.
type Binary struct {
	Path string // in the image
	Data []byte
}

// SBOM writes the SPDX document of one platform image: each Go binary's
// main module and the modules its own build info lists (files that are
// not Go binaries are listed as plain files). created is fixed by the
// caller so the same image gives the same document.
func SBOM(image, platform string, bins []Binary, created time.Time) (SPDX, error) {
	doc := SPDX{Version: "SPDX-2.3", DataLicense: "CC0-1.0", ID: "SPDXRef-DOCUMENT",
		Name:         image + " " + platform,
		Namespace:    "https://github.com/edgedrift/drift/sbom/" + strings.NewReplacer(":", "-", "@", "/", "/", "-").Replace(image) + "/" + strings.ReplaceAll(platform, "/", "-"),
		CreationInfo: SPDXCreation{Created: created.UTC().Format(time.RFC3339), Creators: []string{"Tool: drift"}}}
	seen := map[string]bool{}
	add := func(p SPDXPackage, from string) {
		if !seen[p.ID] {
			seen[p.ID] = true
			doc.Packages = append(doc.Packages, p)
		}
		doc.Relationships = append(doc.Relationships, SPDXRelation{Element: from, Type: "CONTAINS", Related: p.ID})
	}
	for _, b := range bins {
		info, err := buildinfo.Read(bytes.NewReader(b.Data))
		if err != nil { // not a Go binary: list the file itself
			add(SPDXPackage{ID: spdxID("file", b.Path), Name: b.Path, DownloadLocation: "NOASSERTION"}, doc.ID)
			continue
		}
		main := SPDXPackage{ID: spdxID("bin", b.Path), Name: b.Path, Version: info.Main.Version, DownloadLocation: "NOASSERTION",
			Comment: fmt.Sprintf("Go binary of %s, built with %s for %s", info.Main.Path, info.GoVersion, platform)}
		add(main, doc.ID)
		mods := append(info.Deps[:0:0], info.Deps...)
		sort.Slice(mods, func(i, j int) bool { return mods[i].Path < mods[j].Path })
		for _, m := range mods {
			if m.Replace != nil {
				m = m.Replace
			}
			p := SPDXPackage{ID: spdxID("mod", m.Path+"@"+m.Version), Name: m.Path, Version: m.Version, DownloadLocation: "NOASSERTION",
				ExternalRefs: []SPDXExtRef{{Category: "PACKAGE-MANAGER", Type: "purl", Locator: "pkg:golang/" + m.Path + "@" + m.Version}}}
			if strings.HasPrefix(m.Sum, "h1:") {
				p.Comment = "go.sum " + m.Sum
			}
			add(p, main.ID)
		}
		stdlib := SPDXPackage{ID: spdxID("go", info.GoVersion), Name: "stdlib", Version: info.GoVersion, DownloadLocation: "NOASSERTION",
			ExternalRefs: []SPDXExtRef{{Category: "PACKAGE-MANAGER", Type: "purl", Locator: "pkg:golang/stdlib@" + strings.TrimPrefix(info.GoVersion, "go")}}}
		add(stdlib, main.ID)
	}
	return doc, nil
}

// spdxID makes an SPDX identifier: letters, digits, '.' and '-' only.
func spdxID(kind, s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	return "SPDXRef-" + kind + "-" + b.String()
}

// Provenance is an SLSA v1 provenance predicate.
type Provenance struct {
	BuildDefinition BuildDefinition `json:"buildDefinition"`
	RunDetails      RunDetails      `json:"runDetails"`
}

// BuildDefinition says what was built from what.
type BuildDefinition struct {
	BuildType            string               `json:"buildType"`
	ExternalParameters   ExternalParameters   `json:"externalParameters"`
	InternalParameters   map[string]string    `json:"internalParameters,omitempty"`
	ResolvedDependencies []ResourceDescriptor `json:"resolvedDependencies"`
}

// ExternalParameters are the inputs a user controls: the source and the
// pipeline spec's build part.
type ExternalParameters struct {
	Source Source `json:"source"`
	Spec   any    `json:"spec"`
}

// Source is the repository and ref a pipeline built.
type Source struct {
	Repository string `json:"repository"`
	Ref        string `json:"ref"`
}

// ResourceDescriptor is SLSA's reference to an artifact.
type ResourceDescriptor struct {
	URI         string            `json:"uri,omitempty"`
	Name        string            `json:"name,omitempty"`
	Digest      map[string]string `json:"digest,omitempty"`
	Annotations map[string]any    `json:"annotations,omitempty"`
}

// RunDetails say who built it and how it went.
type RunDetails struct {
	Builder    Builder              `json:"builder"`
	Metadata   RunMetadata          `json:"metadata"`
	Byproducts []ResourceDescriptor `json:"byproducts,omitempty"`
}

// Builder is the drift worker that ran the build.
type Builder struct {
	ID      string            `json:"id"`
	Version map[string]string `json:"version,omitempty"`
}

// RunMetadata names the run.
type RunMetadata struct {
	InvocationID string    `json:"invocationId"`
	StartedOn    time.Time `json:"startedOn,omitzero"`
	FinishedOn   time.Time `json:"finishedOn,omitzero"`
}

// BuildType is the buildType of drift's pipeline provenance.
const BuildType = "https://github.com/edgedrift/drift/pipeline/v1"

// BuilderID is the builder.id of drift's workers.
const BuilderID = "https://github.com/edgedrift/drift/drift-worker"

// TestResult is one platform's test run, as the provenance records it.
type TestResult struct {
	Platform string   `json:"platform"`
	Passed   bool     `json:"passed"`
	Emulator string   `json:"emulator,omitempty"` // e.g. qemu-loongarch64-static; "" : native
	Commands []string `json:"commands"`
}

// TestByproduct is how a test result appears in the provenance's byproducts.
func TestByproduct(r TestResult) ResourceDescriptor {
	return ResourceDescriptor{Name: "test " + r.Platform, Annotations: map[string]any{
		"passed": r.Passed, "emulator": r.Emulator, "commands": r.Commands}}
}
