package activities

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/edgedrift/drift/internal/image"
	"github.com/edgedrift/drift/internal/pipelinespec"
	"github.com/edgedrift/drift/internal/release"
)

// BuildImage makes the multi-platform OCI index of a package, daemonless,
// and returns its digest. The build is a pure function of the package, so
// Push makes the very same bytes again.
func (p *Pipeline) BuildImage(ctx context.Context, req ImageRequest) (string, error) {
	idx, err := imageOf(ctx, req)
	if err != nil {
		return "", err
	}
	d, err := idx.Digest()
	return d.String(), err
}

// Push sends the package's image to the center registry under the run's tag
// and under build-<key>, which marks the build as tested and reusable.
func (p *Pipeline) Push(ctx context.Context, req ImageRequest) (string, error) {
	stop := heartbeat(ctx)
	defer stop()
	idx, err := imageOf(ctx, req)
	if err != nil {
		return "", err
	}
	d, err := idx.Digest()
	if err != nil {
		return "", err
	}
	if req.Digest != "" && d.String() != req.Digest {
		return "", temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("push: image rebuilt from package %s has digest %s, not %s", req.Package.SHA256, d, req.Digest), ErrTypeInvalidImage, nil)
	}
	spec, err := imageSpec(req)
	if err != nil {
		return "", err
	}
	repo := p.repository(spec.Name)
	pinned, err := image.Push(ctx, repo+":"+req.Tag, idx)
	if err != nil {
		return "", registryError(err)
	}
	if req.DeferBuildTag {
		return pinned, nil
	}
	if _, err := image.Push(ctx, repo+":"+buildTag(req.BuildKey), idx); err != nil {
		return "", registryError(err)
	}
	return pinned, nil
}

// AttestRequest signs a pushed image and attaches what it is made of and how.
type AttestRequest struct {
	Image   ImageRequest         `json:"image"`
	Pinned  string               `json:"pinned"` // the pushed index, repo@sha256:…
	Commit  string               `json:"commit"`
	Run     string               `json:"run"` // the workflow ID, the provenance's invocation
	Started time.Time            `json:"started"`
	Tests   []release.TestResult `json:"tests"`
}

// Attest signs the pushed index and attaches an SPDX SBOM per platform and
// an SLSA v1 provenance (cosign's formats, next to the image), then writes
// the build-<key> tag, so a reused build is always a signed one. Without a
// signing key it attaches nothing and says so: drift never fakes a signature.
func (p *Pipeline) Attest(ctx context.Context, req AttestRequest) (release.Attached, error) {
	stop := heartbeat(ctx)
	defer stop()
	idx, err := imageOf(ctx, req.Image)
	if err != nil {
		return release.Attached{}, err
	}
	d, err := idx.Digest()
	if err != nil {
		return release.Attached{}, err
	}
	repo, digest, _ := strings.Cut(req.Pinned, "@")
	if d.String() != digest {
		return release.Attached{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("attest: image rebuilt from package %s has digest %s, not the pushed %s", req.Image.Package.SHA256, d, digest), ErrTypeInvalidImage, nil)
	}
	var att release.Attached
	if p.Signer != nil {
		r, err := p.release(ctx, req, idx, repo, digest)
		if err != nil {
			return release.Attached{}, err
		}
		if att, err = release.Attach(ctx, p.Signer, r); err != nil {
			return release.Attached{}, registryError(err)
		}
	}
	if _, err := image.Push(ctx, repo+":"+buildTag(req.Image.BuildKey), idx); err != nil {
		return release.Attached{}, registryError(err)
	}
	return att, nil
}

// release describes the index for its SBOMs and provenance.
func (p *Pipeline) release(ctx context.Context, req AttestRequest, idx v1.ImageIndex, repo, digest string) (release.Release, error) {
	files, err := readPackage(req.Image.Package)
	if err != nil {
		return release.Release{}, err
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return release.Release{}, err
	}
	spec := req.Image.Spec
	img, err := imageSpec(req.Image)
	if err != nil {
		return release.Release{}, err
	}
	r := release.Release{Repo: repo, Digest: digest, Created: req.Started}
	prov := &r.Provenance
	prov.BuildDefinition = release.BuildDefinition{
		BuildType: release.BuildType,
		ExternalParameters: release.ExternalParameters{
			Source: release.Source{Repository: spec.Repo, Ref: spec.Ref},
			Spec:   map[string]any{"build": spec.Build, "test": spec.Test, "artifacts": img.Artifacts, "image": img},
		},
		InternalParameters: map[string]string{"buildKey": req.Image.BuildKey},
		ResolvedDependencies: []release.ResourceDescriptor{{URI: "git+" + spec.Repo + "@" + spec.Ref,
			Digest: map[string]string{"gitCommit": req.Commit, "gitTree": req.Image.Tree}}},
	}
	host, _ := os.Hostname()
	prov.RunDetails.Builder = release.Builder{ID: release.BuilderID, Version: map[string]string{"host": host}}
	if activity.IsActivity(ctx) {
		prov.RunDetails.Builder.Version["queue"] = activity.GetInfo(ctx).TaskQueue
	}
	prov.RunDetails.Metadata = release.RunMetadata{InvocationID: req.Run, StartedOn: req.Started.UTC(), FinishedOn: time.Now().UTC().Truncate(time.Second)}
	prov.RunDetails.Byproducts = append(prov.RunDetails.Byproducts, release.ResourceDescriptor{Name: "package", Digest: map[string]string{"sha256": req.Image.Package.SHA256}})
	for _, d := range m.Manifests {
		pl := d.Platform.OS + "/" + d.Platform.Architecture
		pi := release.PlatformImage{Platform: pl, Digest: d.Digest.String()}
		for _, a := range img.Artifacts {
			pi.Binaries = append(pi.Binaries, release.Binary{Path: "/" + path.Base(a), Data: files[packagePath(img, pipelinespec.Platform{OS: d.Platform.OS, Arch: d.Platform.Architecture}, a)]})
		}
		r.Platforms = append(r.Platforms, pi)
		prov.RunDetails.Byproducts = append(prov.RunDetails.Byproducts, release.ResourceDescriptor{Name: "image " + pl, Digest: map[string]string{"sha256": d.Digest.Hex}})
	}
	for _, t := range req.Tests {
		prov.RunDetails.Byproducts = append(prov.RunDetails.Byproducts, release.TestByproduct(t))
	}
	return r, nil
}

// FindBuild returns the pushed image of an earlier run with the same build
// key, pinned by digest, or "" when there is none. The center registry is
// where this memory lives: a build-<key> tag is written only after the
// run's tests passed and its image was pushed, it survives every worker,
// and it can never point at an image the registry no longer has.
func (p *Pipeline) FindBuild(ctx context.Context, imageName, key string) (string, error) {
	pinned, err := image.Resolve(ctx, p.repository(imageName)+":"+buildTag(key))
	if errors.Is(err, image.ErrNotFound) {
		return "", nil
	}
	return pinned, registryError(err)
}

// repository is the image repository a spec's image name stands for: a name
// without a registry host lives in the center registry.
func (p *Pipeline) repository(name string) string { return pipelinespec.InRegistry(name, p.Center) }

func buildTag(key string) string { return "build-" + key[:40] }

// imageSpec is the image of the spec the request names.
func imageSpec(req ImageRequest) (pipelinespec.Image, error) {
	for _, img := range req.Spec.ImageSpecs() {
		if img.Service == req.Service {
			return img, nil
		}
	}
	return pipelinespec.Image{}, temporal.NewNonRetryableApplicationError(
		fmt.Sprintf("image: the spec has no image for service %q", req.Service), ErrTypeInvalidSpec, nil)
}

// imageOf builds the image index of one image of a package: per platform,
// its artifacts at the image's root, over the image's base.
func imageOf(ctx context.Context, req ImageRequest) (v1.ImageIndex, error) {
	spec, err := imageSpec(req)
	if err != nil {
		return nil, err
	}
	files, err := readPackage(req.Package)
	if err != nil {
		return nil, err
	}
	var imgs []v1.Image
	for _, pl := range req.Spec.Platforms() {
		if !spec.Has(pl) {
			continue
		}
		base, err := baseImage(ctx, spec.Base, v1.Platform{OS: pl.OS, Architecture: pl.Arch})
		if err != nil {
			return nil, err
		}
		var layer []image.File
		for _, a := range spec.Artifacts {
			data, ok := files[packagePath(spec, pl, a)]
			if !ok {
				return nil, temporal.NewNonRetryableApplicationError(
					fmt.Sprintf("image: package %s has no %s for %s", req.Package.SHA256, a, pl), ErrTypeNoArtifact, nil)
			}
			layer = append(layer, image.File{Path: "/" + path.Base(a), Mode: 0o755, Data: data})
		}
		img, err := image.BuildOn(base, v1.Platform{OS: pl.OS, Architecture: pl.Arch}, layer, image.Config{
			Entrypoint: spec.Entrypoint, Env: spec.Env, Ports: spec.Ports,
			// Nothing of the run (commit, time) goes in: the digest is a
			// function of the artifacts, so the same source gives the same digest.
			Labels: map[string]string{"drift.app": req.Spec.App},
		})
		if err != nil {
			return nil, err
		}
		imgs = append(imgs, img)
	}
	return image.Index(imgs...)
}

// baseImage is the image a platform's artifacts are laid over (nil: scratch).
func baseImage(ctx context.Context, base string, pl v1.Platform) (v1.Image, error) {
	switch base {
	case "", pipelinespec.BaseScratch:
		return nil, nil
	case pipelinespec.BaseDrift:
		files, err := image.HostBaseFiles()
		if err != nil {
			return nil, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeInvalidImage, err)
		}
		return image.Build(pl, files, image.Config{})
	}
	img, err := image.PlatformImage(ctx, base, pl)
	switch {
	case errors.Is(err, image.ErrNotFound):
		return nil, temporal.NewNonRetryableApplicationError("image.base: "+err.Error(), ErrTypeUnknownImage, err)
	case errors.Is(err, image.ErrUnauthorized):
		return nil, registryError(err)
	case errors.Is(err, image.ErrNoPlatform):
		return nil, temporal.NewNonRetryableApplicationError("image.base: "+err.Error(), ErrTypeWrongPlatform, err)
	}
	return img, err
}

// readPackage reads a package after checking its sha256.
func readPackage(pkg Package) (map[string][]byte, error) {
	data, err := os.ReadFile(pkg.Path)
	if err != nil {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("package %s is gone: %v", pkg.Path, err), ErrTypeNoArtifact, err)
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != pkg.SHA256 {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("package %s does not match its sha256", pkg.Path), ErrTypeNoArtifact, nil)
	}
	gz, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(gz)
	files := map[string][]byte{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return files, nil
		}
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return nil, err
		}
		files[hdr.Name] = b
	}
}
