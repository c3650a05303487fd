package image

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Where the build host keeps what drift's own base holds.
const (
	hostCACerts  = "/etc/ssl/certs/ca-certificates.crt"
	hostZoneinfo = "/usr/share/zoneinfo"
)

// HostBaseFiles are the files of drift's base: the build host's CA bundle
// (at the path Go's crypto/x509 reads first on Linux) and its tzdata, so a
// static Go app can make TLS calls and load time zones. Leap-second
// ("right/") zones are left out.
func HostBaseFiles() ([]File, error) {
	ca, err := os.ReadFile(hostCACerts)
	if err != nil {
		return nil, fmt.Errorf("drift base: the build host has no CA bundle (apt-get install ca-certificates): %w", err)
	}
	files := []File{{Path: hostCACerts, Mode: 0o644, Data: ca}}
	err = filepath.WalkDir(hostZoneinfo, func(p string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.IsDir() && d.Name() == "right":
			return filepath.SkipDir
		case !d.Type().IsRegular():
			return nil // directories are made by the layer; links left out
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files = append(files, File{Path: p, Mode: 0o644, Data: b})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("drift base: the build host's tzdata (apt-get install tzdata): %w", err)
	}
	return files, nil
}

// ErrNoPlatform is returned when an image has no build for a platform.
var ErrNoPlatform = errors.New("no image for the platform")

// PlatformImage reads the platform's image of ref (an index's entry, or a
// single image that must be for that platform).
func PlatformImage(ctx context.Context, ref string, platform v1.Platform) (v1.Image, error) {
	r, err := ParseReference(ref)
	if err != nil {
		return nil, err
	}
	img, err := remote.Image(r, append(Options(ctx), remote.WithPlatform(platform))...)
	if err != nil {
		return nil, RegistryError(ref, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, RegistryError(ref, err)
	}
	if cf.OS != platform.OS || cf.Architecture != platform.Architecture {
		return nil, fmt.Errorf("%w: %s has no %s/%s image (it is %s/%s)", ErrNoPlatform, ref, platform.OS, platform.Architecture, cf.OS, cf.Architecture)
	}
	return img, nil
}
