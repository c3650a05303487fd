package image

import (
	"context"
	"errors"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// ErrNotFound is returned when a registry does not have the image.
var ErrNotFound = errors.New("image not found")

// Resolve returns ref pinned by digest (repo@sha256:…), as the registry has it.
func Resolve(ctx context.Context, ref string) (string, error) {
	r, err := ParseReference(ref)
	if err != nil {
		return "", err
	}
	desc, err := remote.Head(r, Options(ctx)...)
	if err != nil {
		return "", RegistryError(ref, err)
	}
	return r.Context().Digest(desc.Digest.String()).String(), nil
}

// Copy puts the image (or whole index) at src into the registry host dst
// under the same repository path, with its signatures and attestations
// (cosign's .sig and .att tags), and returns it pinned by digest there.
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
	pinned, err := copyOne(ctx, from, to)
	if err != nil {
		return "", err
	}
	digest := pinned[strings.LastIndex(pinned, "@")+1:]
	for _, tag := range []string{SignatureTag(digest), AttestationTag(digest)} {
		_, err := copyOne(ctx, from.Context().Tag(tag), to.Context().Tag(tag))
		if err != nil && !errors.Is(err, ErrNotFound) {
			return "", err
		}
	}
	return pinned, nil
}

// SignatureTag and AttestationTag are where cosign keeps an image's
// signatures and attestations: sha256:<hex> → sha256-<hex>.sig / .att.
func SignatureTag(digest string) string   { return strings.Replace(digest, ":", "-", 1) + ".sig" }
func AttestationTag(digest string) string { return strings.Replace(digest, ":", "-", 1) + ".att" }

func copyOne(ctx context.Context, from, to name.Reference) (string, error) {
	desc, err := remote.Get(from, Options(ctx)...)
	if err != nil {
		return "", RegistryError(from.String(), err)
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

// Platforms lists the os/arch pairs ref provides: each entry of an index,
// or the one of a single image.
func Platforms(ctx context.Context, ref string) ([]string, error) {
	r, err := ParseReference(ref)
	if err != nil {
		return nil, err
	}
	desc, err := remote.Get(r, Options(ctx)...)
	if err != nil {
		return nil, RegistryError(ref, err)
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
