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

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"go.temporal.io/sdk/temporal"

	"github.com/edgedrift/drift/internal/image"
	"github.com/edgedrift/drift/internal/pipelinespec"
)

// BuildImage makes the multi-platform OCI index of a package, daemonless,
// and returns its digest. The build is a pure function of the package, so
// Push makes the very same bytes again.
func (p *Pipeline) BuildImage(ctx context.Context, req ImageRequest) (string, error) {
	idx, err := imageOf(req)
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
	idx, err := imageOf(req)
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
		return "", err
	}
	if _, err := image.Push(ctx, repo+":"+buildTag(req.BuildKey), idx); err != nil {
		return "", err
	}
	return pinned, nil
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
	return pinned, err
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
// its artifacts at the image's root.
func imageOf(req ImageRequest) (v1.ImageIndex, error) {
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
		var layer []image.File
		for _, a := range spec.Artifacts {
			data, ok := files[packagePath(spec, pl, a)]
			if !ok {
				return nil, temporal.NewNonRetryableApplicationError(
					fmt.Sprintf("image: package %s has no %s for %s", req.Package.SHA256, a, pl), ErrTypeNoArtifact, nil)
			}
			layer = append(layer, image.File{Path: "/" + path.Base(a), Mode: 0o755, Data: data})
		}
		img, err := image.Build(v1.Platform{OS: pl.OS, Architecture: pl.Arch}, layer, image.Config{
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
