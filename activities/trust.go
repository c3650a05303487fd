package activities

import (
	"context"
	"errors"
	"fmt"

	"go.temporal.io/sdk/temporal"

	"github.com/edgedrift/drift/internal/image"
	"github.com/edgedrift/drift/internal/release"
)

// checkTrust verifies ref against a site's policy (nil: none) before
// anything of it runs on cloud.
func checkTrust(ctx context.Context, policy *release.Policy, cloud, ref string) error {
	if policy == nil {
		return nil
	}
	err := release.Trusted(ctx, ref, policy)
	switch {
	case errors.Is(err, release.ErrUntrusted):
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("cloud %s refuses to run it: %v", cloud, err), ErrTypeUntrustedImage, nil)
	case errors.Is(err, image.ErrNotFound):
		return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeUnknownImage, nil)
	}
	return registryError(err)
}
