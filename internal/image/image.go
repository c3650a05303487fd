// Package image builds OCI images without a daemon and moves them between
// registries, with go-containerregistry. Builds are reproducible: the same
// files and config always give the same digest (fixed timestamps, sorted
// entries, no build host details).
package image

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// File is one file of an image's single layer.
type File struct {
	Path string // absolute path inside the image, e.g. /app/hello
	Mode int64  // permission bits, e.g. 0o755
	Data []byte
}

// Config is the runtime configuration of an image.
type Config struct {
	Entrypoint []string
	Cmd        []string
	Env        []string // KEY=VALUE
	Ports      []int    // exposed TCP ports
	WorkingDir string
	Labels     map[string]string
}

// Build makes a FROM-scratch image for one platform holding files in one layer.
func Build(platform v1.Platform, files []File, cfg Config) (v1.Image, error) {
	return BuildOn(nil, platform, files, cfg)
}

// BuildOn lays files in one layer over base (nil: scratch). The base's
// config is kept, cfg's entrypoint, cmd and working dir replace it when
// set, and its env, ports and labels are added.
func BuildOn(base v1.Image, platform v1.Platform, files []File, cfg Config) (v1.Image, error) {
	layerTar, err := tarFiles(files)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img := base
	if img == nil {
		img = mutate.MediaType(empty.Image, types.OCIManifestSchema1)
		img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	}
	if img, err = mutate.AppendLayers(img, layer); err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = platform.OS, platform.Architecture, platform.Variant
	c := cf.Config
	if base == nil {
		c = v1.Config{}
	}
	if len(cfg.Entrypoint) > 0 || base == nil {
		c.Entrypoint = cfg.Entrypoint
	}
	if len(cfg.Cmd) > 0 || base == nil {
		c.Cmd = cfg.Cmd
	}
	if cfg.WorkingDir != "" || base == nil {
		c.WorkingDir = cfg.WorkingDir
	}
	c.Env = append(c.Env, cfg.Env...)
	if len(cfg.Labels) > 0 && c.Labels == nil {
		c.Labels = map[string]string{}
	}
	for k, v := range cfg.Labels {
		c.Labels[k] = v
	}
	if len(cfg.Ports) > 0 && c.ExposedPorts == nil {
		c.ExposedPorts = map[string]struct{}{}
	}
	for _, p := range cfg.Ports {
		c.ExposedPorts[strconv.Itoa(p)+"/tcp"] = struct{}{}
	}
	cf.Config = c
	return mutate.ConfigFile(img, cf)
}

// Index joins single-platform images into one multi-platform OCI index.
func Index(images ...v1.Image) (v1.ImageIndex, error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	adds := make([]mutate.IndexAddendum, 0, len(images))
	for _, img := range images {
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, err
		}
		adds = append(adds, mutate.IndexAddendum{
			Add: img,
			Descriptor: v1.Descriptor{
				MediaType: types.OCIManifestSchema1,
				Platform:  &v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant},
			},
		})
	}
	return mutate.AppendManifests(idx, adds...), nil
}

// Pushable is an image or an index.
type Pushable interface {
	Digest() (v1.Hash, error)
}

// Push writes an image or index to ref (repo:tag) and returns the reference
// by digest (repo@sha256:…), which is what deployments should use.
func Push(ctx context.Context, ref string, what Pushable) (string, error) {
	r, err := ParseReference(ref)
	if err != nil {
		return "", err
	}
	switch v := what.(type) {
	case v1.ImageIndex:
		err = remote.WriteIndex(r, v, Options(ctx)...)
	case v1.Image:
		err = remote.Write(r, v, Options(ctx)...)
	default:
		return "", fmt.Errorf("cannot push %T", what)
	}
	if err != nil {
		return "", fmt.Errorf("push: %w", RegistryError(ref, err))
	}
	d, err := what.Digest()
	if err != nil {
		return "", err
	}
	return r.Context().Digest(d.String()).String(), nil
}

// ParseReference parses an image reference strictly (no implicit docker.io,
// an explicit tag or digest), allowing plain HTTP only for loopback
// registries without a CA of their own (TrustCA). It is drift's one image-reference policy: every place that
// takes a reference (app specs, runtimes, registries) goes through it.
func ParseReference(ref string) (name.Reference, error) {
	opts := []name.Option{name.StrictValidation}
	if host, _, _ := strings.Cut(ref, "/"); IsLoopback(host) && !usesTLS(host) {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		return nil, fmt.Errorf("invalid image reference %q: %w", ref, err)
	}
	return r, nil
}

// IsLoopback reports whether a registry host[:port] is on this machine
// (localhost, 127.0.0.0/8, ::1, with or without a port).
func IsLoopback(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// tarFiles writes files (and their parent directories) as a tar with fixed
// owners and timestamps, sorted by path, so equal input gives equal bytes.
func tarFiles(files []File) ([]byte, error) {
	sorted := append([]File(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for _, f := range sorted {
		p := path.Clean("/" + f.Path)
		if p == "/" || slices.Contains(strings.Split(f.Path, "/"), "..") {
			return nil, fmt.Errorf("invalid image file path %q", f.Path)
		}
		for _, d := range parents(p) {
			if dirs[d] {
				continue
			}
			dirs[d] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d[1:] + "/", Mode: 0o755, Format: tar.FormatPAX}); err != nil {
				return nil, err
			}
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: p[1:], Mode: f.Mode, Size: int64(len(f.Data)), Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// parents lists the directories above p, outermost first ("/a/b/c" → /a, /a/b).
func parents(p string) []string {
	var out []string
	for d := path.Dir(p); d != "/"; d = path.Dir(d) {
		out = append([]string{d}, out...)
	}
	return out
}
