package image

import (
	"context"
	"fmt"
	goruntime "runtime"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// Labels of an image Layer made: the two images it was made of, pinned by
// the digest their registry gave (an index's, when they are indexes: what
// a signature covers), so a site can check both and make it again.
const (
	LabelLayeredBase = "drift.layered.base"
	LabelLayeredTop  = "drift.layered.top"
)

// Layer stacks the layers of top (e.g. a driver plugin built FROM scratch)
// over base (a component release), the way Kolla adds plugins to a service
// image, pushes the result to to (repo:tag) and returns it by digest. The
// base's config (entrypoint, env) is kept; both are read for this host's
// platform when they are indexes.
func Layer(ctx context.Context, base, top, to string) (string, error) {
	img, err := Layered(ctx, base, top)
	if err != nil {
		return "", err
	}
	return Push(ctx, to, img)
}

// Layered is the image Layer pushes. It is a function of the two pinned
// images only, so the same base and top always give the same digest.
func Layered(ctx context.Context, base, top string) (v1.Image, error) {
	platform := v1.Platform{OS: "linux", Architecture: goruntime.GOARCH}
	read := func(ref string) (v1.Image, string, error) {
		pinned, err := Resolve(ctx, ref)
		if err != nil {
			return nil, "", err
		}
		img, err := PlatformImage(ctx, pinned, platform)
		return img, pinned, err
	}
	b, pinnedBase, err := read(base)
	if err != nil {
		return nil, err
	}
	t, pinnedTop, err := read(top)
	if err != nil {
		return nil, err
	}
	layers, err := t.Layers()
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(b, layers...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg := cf.Config
	labels := map[string]string{LabelLayeredBase: pinnedBase, LabelLayeredTop: pinnedTop}
	for k, v := range cfg.Labels {
		if _, ours := labels[k]; !ours {
			labels[k] = v
		}
	}
	cfg.Labels = labels
	return mutate.Config(img, cfg)
}

// LayeredFrom reads the two images a Layer image says it was made of; ok is
// false for any other image.
func LayeredFrom(ctx context.Context, ref string) (base, top string, ok bool, err error) {
	img, err := PlatformImage(ctx, ref, v1.Platform{OS: "linux", Architecture: goruntime.GOARCH})
	if err != nil {
		return "", "", false, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return "", "", false, fmt.Errorf("config of %s: %w", ref, err)
	}
	base, top = cf.Config.Labels[LabelLayeredBase], cf.Config.Labels[LabelLayeredTop]
	return base, top, base != "" && top != "", nil
}
