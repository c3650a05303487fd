package activities

import (
	"context"
	"errors"

	"go.temporal.io/sdk/temporal"

	"github.com/edgedrift/drift/internal/image"
)

// Images keeps the center cloud's registry (the image center) stocked.
type Images struct {
	Center string // registry host:port
}

// EnsureImage makes sure the image is in the center registry, copying it
// there when it lives elsewhere, and returns it pinned by digest so every
// cloud runs exactly the same bytes.
func (a *Images) EnsureImage(ctx context.Context, ref string) (string, error) {
	r, err := image.ParseReference(ref)
	if err != nil {
		return "", temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeInvalidImage, err)
	}
	var pinned string
	if r.Context().RegistryStr() == a.Center {
		pinned, err = image.Resolve(ctx, ref)
	} else {
		pinned, err = image.Copy(ctx, ref, a.Center)
	}
	if errors.Is(err, image.ErrNotFound) {
		return "", temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeUnknownImage, err)
	}
	return pinned, err
}
