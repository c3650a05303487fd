package image

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// ErrNotFound is returned when a registry does not have the image.
var ErrNotFound = errors.New("image not found")

// Resolve returns ref pinned by digest (repo@sha256:…), as the registry has it.
func Resolve(ctx context.Context, ref string) (string, error) {
	r, err := ParseReference(ref)
	if err != nil {
		return "", err
	}
	desc, err := remote.Head(r, remote.WithContext(ctx), withAuth)
	if err != nil {
		return "", notFound(ref, err)
	}
	return r.Context().Digest(desc.Digest.String()).String(), nil
}

// Copy puts the image (or whole index) at src into the registry host dst
// under the same repository path, and returns it pinned by digest there.
// Copying what is already there is cheap: blobs that exist are skipped.
func Copy(ctx context.Context, src, dst string) (string, error) {
	from, err := ParseReference(src)
	if err != nil {
		return "", err
	}
	to, err := ParseReference(dst + "/" + from.Context().RepositoryStr() + ":" + tagOf(from.Identifier()))
	if err != nil {
		return "", err
	}
	desc, err := remote.Get(from, remote.WithContext(ctx), withAuth)
	if err != nil {
		return "", notFound(src, err)
	}
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return "", err
		}
		return Push(ctx, to.String(), idx)
	}
	img, err := desc.Image()
	if err != nil {
		return "", err
	}
	return Push(ctx, to.String(), img)
}

// tagOf keeps a tag; a digest-pinned source gets the tag "pinned" so the
// copy is listed, and is still returned by digest.
func tagOf(identifier string) string {
	if len(identifier) > 7 && identifier[:7] == "sha256:" {
		return "pinned"
	}
	return identifier
}

// notFound wraps registry 404s in ErrNotFound.
func notFound(ref string, err error) error {
	var te *transport.Error
	if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
		return fmt.Errorf("%w: %s", ErrNotFound, ref)
	}
	return fmt.Errorf("fetch %s: %w", ref, err)
}

// Platforms lists the os/arch pairs ref provides: each entry of an index,
// or the one of a single image.
func Platforms(ctx context.Context, ref string) ([]string, error) {
	r, err := ParseReference(ref)
	if err != nil {
		return nil, err
	}
	desc, err := remote.Get(r, remote.WithContext(ctx))
	if err != nil {
		return nil, notFound(ref, err)
	}
	if !desc.MediaType.IsIndex() {
		img, err := desc.Image()
		if err != nil {
			return nil, err
		}
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, err
		}
		return []string{cf.OS + "/" + cf.Architecture}, nil
	}
	idx, err := desc.ImageIndex()
	if err != nil {
		return nil, err
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, d := range m.Manifests {
		if d.Platform != nil {
			out = append(out, d.Platform.OS+"/"+d.Platform.Architecture)
		}
	}
	return out, nil
}
