package release

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/edgedrift/drift/internal/image"
	"github.com/edgedrift/drift/internal/registry"
)

// pushed is an index of two platforms holding this test binary (a Go
// binary with build info), pushed to a fresh registry.
func pushed(t *testing.T, repo, version string, bin []byte) (digest string, plats []PlatformImage) {
	t.Helper()
	ctx := context.Background()
	var imgs []v1.Image
	for _, arch := range []string{"amd64", "loong64"} {
		img, err := image.Build(v1.Platform{OS: "linux", Architecture: arch}, []image.File{{Path: "/app", Mode: 0o755, Data: bin}, {Path: "/VERSION", Mode: 0o644, Data: []byte(version)}}, image.Config{})
		if err != nil {
			t.Fatal(err)
		}
		d, _ := img.Digest()
		imgs = append(imgs, img)
		plats = append(plats, PlatformImage{Platform: "linux/" + arch, Digest: d.String(), Binaries: []Binary{{Path: "/app", Data: bin}, {Path: "/VERSION", Data: []byte(version)}}})
	}
	idx, err := image.Index(imgs...)
	if err != nil {
		t.Fatal(err)
	}
	pinned, err := image.Push(ctx, repo+":"+version, idx)
	if err != nil {
		t.Fatal(err)
	}
	return pinned[strings.LastIndex(pinned, "@")+1:], plats
}

func testRegistry(t *testing.T) string {
	reg, err := registry.Start(context.Background(), t.TempDir(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	return reg.Host()
}

func provenance(tests ...TestResult) Provenance {
	p := Provenance{BuildDefinition: BuildDefinition{BuildType: BuildType,
		ExternalParameters:   ExternalParameters{Source: Source{Repository: "file:///src/hello.git", Ref: "main"}},
		ResolvedDependencies: []ResourceDescriptor{{URI: "git+file:///src/hello.git@main", Digest: map[string]string{"gitCommit": "abc123"}}}},
		RunDetails: RunDetails{Builder: Builder{ID: BuilderID}, Metadata: RunMetadata{InvocationID: "pipeline/hello/r1"}}}
	for _, tr := range tests {
		p.RunDetails.Byproducts = append(p.RunDetails.Byproducts, TestByproduct(tr))
	}
	return p
}

func TestSignAndVerifyProvenanceAndSBOM(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	priv, pub := KeyFiles(dir)
	s, err := EnsureKeyPair(priv, pub)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := EnsureKeyPair(priv, pub); err != nil || KeyID(again.Public()) != KeyID(s.Public()) {
		t.Fatalf("a second EnsureKeyPair made another key (%v)", err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	repo := testRegistry(t) + "/hello"
	digest, plats := pushed(t, repo, "v1", bin)
	passed := []TestResult{{Platform: "linux/amd64", Passed: true}, {Platform: "linux/loong64", Passed: true, Emulator: "qemu-loongarch64-static"}}
	att, err := Attach(ctx, s, Release{Repo: repo, Digest: digest, Platforms: plats, Provenance: provenance(passed...), Created: time.Unix(0, 0)})
	if err != nil {
		t.Fatal(err)
	}
	if len(att.SBOMs) != 2 || att.SBOMs[0].Packages < 3 || att.Signature != repo+":"+SignatureTag(digest) {
		t.Fatalf("attached %+v", att)
	}

	policyFile := filepath.Join(dir, "policy.yaml")
	os.WriteFile(policyFile, []byte("keys: [keys/signing.pub]\nrepos: [file:///src/hello.git]\nrefs: [main]\nrequireTests: true\n"), 0o644)
	policy, err := LoadPolicy(policyFile)
	if err != nil {
		t.Fatal(err)
	}
	v, err := Verify(ctx, repo+":v1", policy)
	if err != nil {
		t.Fatal(err)
	}
	if v.Digest != digest || v.Commit != "abc123" || v.Source.Ref != "main" || len(v.Tests) != 2 || v.Key != att.Key {
		t.Fatalf("verified %+v", v)
	}

	untrusted := func(name string, p *Policy, ref string) {
		t.Helper()
		if _, err := Verify(ctx, ref, p); !errors.Is(err, ErrUntrusted) {
			t.Errorf("%s: want ErrUntrusted, got %v", name, err)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	other, _ := EnsureKeyPair(filepath.Join(dir, "other.key"), filepath.Join(dir, "other.pub"))
	otherPolicy, _ := NewPolicy([][]byte{other.PublicPEM()}, nil, nil, false)
	untrusted("another key", otherPolicy, repo+":v1")
	wrongRepo, _ := NewPolicy([][]byte{s.PublicPEM()}, []string{"file:///src/other.git"}, nil, false)
	untrusted("another source repository", wrongRepo, repo+":v1")
	wrongRef, _ := NewPolicy([][]byte{s.PublicPEM()}, nil, []string{"release"}, false)
	untrusted("another ref", wrongRef, repo+":v1")

	// Copied to another registry (as sessions stock the center), the image
	// keeps its signature and attestations.
	copied, err := image.Copy(ctx, repo+"@"+digest, testRegistry(t))
	if err != nil {
		t.Fatal(err)
	}
	if v, err := Verify(ctx, copied, policy); err != nil || v.Digest != digest {
		t.Fatalf("the copy: %+v, %v", v, err)
	}

	// An image changed after signing (another layer, so another digest) is
	// unsigned, also re-tagged under the signed tag.
	tampered, _ := pushed(t, repo, "v1", []byte("not the signed binary"))
	untrusted("tampered, by digest", policy, repo+"@"+tampered)
	untrusted("tampered, re-tagged", policy, repo+":v1")
	if _, err := Verify(ctx, repo+"@"+digest, policy); err != nil {
		t.Errorf("the signed digest itself: %v", err)
	}

	// Tests missing for a platform fail a policy that requires them.
	repo2 := repo + "-v2"
	digest2, plats2 := pushed(t, repo2, "v2", []byte("v2"))
	if _, err := Attach(ctx, s, Release{Repo: repo2, Digest: digest2, Platforms: plats2, Provenance: provenance(passed[0])}); err != nil {
		t.Fatal(err)
	}
	untrusted("loong64 untested", policy, repo2+"@"+digest2)
	lax, _ := NewPolicy([][]byte{s.PublicPEM()}, nil, nil, false)
	if _, err := Verify(ctx, repo2+"@"+digest2, lax); err != nil {
		t.Errorf("a policy without requireTests: %v", err)
	}
}

// An image drift layers at a site (an upgrade's env) is signed by no one:
// it is trusted when its base and top are and it is exactly the one laid
// over the other; one that names trusted parts but holds anything else,
// or is laid over an unsigned part, is not.
func TestALayeredImageIsTrustedAsItsSignedParts(t *testing.T) {
	ctx := context.Background()
	host := testRegistry(t)
	s, err := EnsureKeyPair(KeyFiles(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	policy, err := NewPolicy([][]byte{s.PublicPEM()}, nil, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	release := func(repo, version string, sign bool) string {
		digest, plats := pushed(t, host+"/"+repo, version, []byte(repo+version))
		if sign {
			if _, err := Attach(ctx, s, Release{Repo: host + "/" + repo, Digest: digest, Platforms: plats, Provenance: provenance()}); err != nil {
				t.Fatal(err)
			}
		}
		return host + "/" + repo + ":" + version
	}
	base, driver, unsigned := release("cinder", "26.1.0", true), release("acme", "2.0.0", true), release("rogue", "1.0.0", false)

	env, err := image.Layer(ctx, base, driver, host+"/envs:ok")
	if err != nil {
		t.Fatal(err)
	}
	if err := Trusted(ctx, env, policy); err != nil {
		t.Fatalf("the env of two signed images: %v", err)
	}
	if _, err := Verify(ctx, env, policy); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("Verify alone trusts an unsigned env: %v", err)
	}

	overRogue, err := image.Layer(ctx, base, unsigned, host+"/envs:rogue")
	if err != nil {
		t.Fatal(err)
	}
	if err := Trusted(ctx, overRogue, policy); !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), "rogue") {
		t.Fatalf("an env over an unsigned driver: want ErrUntrusted naming it, got %v", err)
	}

	// The labels of the good env on other content.
	good, err := image.Layered(ctx, base, driver)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := good.ConfigFile()
	forged, err := image.Build(v1.Platform{OS: "linux", Architecture: cf.Architecture}, []image.File{{Path: "/app", Mode: 0o755, Data: []byte("anything")}}, image.Config{Labels: cf.Config.Labels})
	if err != nil {
		t.Fatal(err)
	}
	forgedRef, err := image.Push(ctx, host+"/envs:forged", forged)
	if err != nil {
		t.Fatal(err)
	}
	if err := Trusted(ctx, forgedRef, policy); !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), "it is not") {
		t.Fatalf("an image with the labels of a trusted env: want ErrUntrusted, got %v", err)
	}
}
