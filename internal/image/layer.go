package image

import (
	"context"
	goruntime "runtime"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Layer stacks the layers of top (e.g. a driver plugin built FROM scratch)
// over base (a component release), the way Kolla adds plugins to a service
// image, pushes the result to to (repo:tag) and returns it by digest. The
// base's config (entrypoint, env) is kept; both are read for this host's
// platform when they are indexes.
func Layer(ctx context.Context, base, top, to string) (string, error) {
	platform := v1.Platform{OS: "linux", Architecture: goruntime.GOARCH}
	read := func(ref string) (v1.Image, error) {
		r, err := ParseReference(ref)
		if err != nil {
			return nil, err
		}
		img, err := remote.Image(r, append(Options(ctx), remote.WithPlatform(platform))...)
		if err != nil {
			return nil, RegistryError(ref, err)
		}
		return img, nil
	}
	b, err := read(base)
	if err != nil {
		return "", err
	}
	t, err := read(top)
	if err != nil {
		return "", err
	}
	layers, err := t.Layers()
	if err != nil {
		return "", err
	}
	img, err := mutate.AppendLayers(b, layers...)
	if err != nil {
		return "", err
	}
	return Push(ctx, to, img)
}
