package process

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	goruntime "runtime"
	"strings"

	ggcrname "github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/edgedrift/drift/internal/image"
	"github.com/edgedrift/drift/internal/runtime"
)

// imagesDir holds unpacked images, one directory per (digest, arch):
// rootfs/ (the flattened filesystem) and config.json (the image config).
// Its name starts with a dot, which no instance name can.
const imagesDir = ".images"

// cachedImage is an image unpacked in the cache.
type cachedImage struct {
	Digest string        // digest the reference resolved to
	Rootfs string        // <dir>/.images/<key>/rootfs
	Config v1.ConfigFile // the platform image's config
}

// platform is the image platform the process runtime runs: this host's.
func platform() v1.Platform {
	return v1.Platform{OS: "linux", Architecture: goruntime.GOARCH}
}

// image returns ref unpacked in the cache, fetching and unpacking it on a
// miss. A reference by digest that is cached needs no registry at all; a tag
// costs one manifest request. Loopback registries are spoken to over plain
// HTTP, every other one over HTTPS (image.ParseReference).
func (r *Runtime) image(ctx context.Context, ref string) (*cachedImage, error) {
	nref, err := image.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", runtime.ErrInvalid, err)
	}
	if d, ok := nref.(ggcrname.Digest); ok {
		if img, err := r.cached(d.DigestStr()); err == nil {
			return img, nil
		}
	}
	plat := platform()
	desc, err := remote.Get(nref, append(image.Options(ctx), remote.WithPlatform(plat))...)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", ref, err)
	}
	digest := desc.Digest.String()
	if img, err := r.cached(digest); err == nil {
		return img, nil
	}
	img, err := desc.Image()
	if err != nil {
		return nil, fmt.Errorf("fetch %s for %s/%s: %w", ref, plat.OS, plat.Architecture, err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("fetch %s: config: %w", ref, err)
	}
	if cfg.OS != "" && cfg.OS != plat.OS || cfg.Architecture != "" && cfg.Architecture != plat.Architecture {
		return nil, fmt.Errorf("%w: image %s is for %s/%s, this host runs %s/%s", runtime.ErrInvalid, ref, cfg.OS, cfg.Architecture, plat.OS, plat.Architecture)
	}

	base := filepath.Join(r.dir, imagesDir)
	if err := os.MkdirAll(base, 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(base, ".tmp-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp) // no-op once renamed
	rootfs := filepath.Join(tmp, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		return nil, err
	}
	rc := mutate.Extract(img)
	err = extractTar(rc, rootfs)
	rc.Close()
	if err != nil {
		return nil, fmt.Errorf("unpack %s: %w", ref, err)
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(tmp, "config.json"), b, 0o644); err != nil {
		return nil, err
	}
	final := filepath.Join(base, cacheKey(digest))
	if err := os.Rename(tmp, final); err != nil {
		// Another deploy unpacked the same image first: use its copy.
		if img, cerr := r.cached(digest); cerr == nil {
			return img, nil
		}
		return nil, fmt.Errorf("unpack %s: %w", ref, err)
	}
	return &cachedImage{Digest: digest, Rootfs: filepath.Join(final, "rootfs"), Config: *cfg}, nil
}

// cached returns the cached image for digest, or an error when it is not
// (completely) there: an entry only appears by rename once complete.
func (r *Runtime) cached(digest string) (*cachedImage, error) {
	dir := filepath.Join(r.dir, imagesDir, cacheKey(digest))
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, err
	}
	var cfg v1.ConfigFile
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, err
	}
	return &cachedImage{Digest: digest, Rootfs: filepath.Join(dir, "rootfs"), Config: cfg}, nil
}

// cacheKey names a cache entry: the digest (algorithm-hex) and the platform,
// since one index digest unpacks differently per architecture.
func cacheKey(digest string) string {
	return strings.ReplaceAll(digest, ":", "-") + "-" + goruntime.GOARCH
}

// extractTar unpacks a tar stream (a flattened image filesystem) into dir
// without ever writing outside it:
//   - entries with absolute names or ".." components are errors;
//   - a symlink with an absolute target is rewritten relative to its own
//     directory, so it keeps pointing inside dir (the image's "/" is dir)
//     instead of at the host; a relative target that climbs out of dir is
//     an error;
//   - hard links must name an entry inside dir;
//   - every write goes through an os.Root, which refuses to follow a
//     symlink out of dir;
//   - setuid, setgid and sticky bits and group/other write bits are dropped;
//     devices and FIFOs are skipped.
func extractTar(r io.Reader, dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		name, err := entryName(hdr.Name)
		if err != nil {
			return err
		}
		if name == "." {
			continue
		}
		parent := path.Dir(name)
		if parent != "." {
			if err := root.MkdirAll(parent, 0o755); err != nil {
				return fmt.Errorf("%s: %w", hdr.Name, err)
			}
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if fi, err := root.Lstat(name); err == nil && fi.IsDir() {
				continue
			}
			if err := removeEntry(root, name); err != nil {
				return err
			}
			if err := root.Mkdir(name, 0o755); err != nil {
				return fmt.Errorf("%s: %w", hdr.Name, err)
			}
		case tar.TypeReg:
			if err := removeEntry(root, name); err != nil {
				return err
			}
			f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fs.FileMode(hdr.Mode)&0o755)
			if err != nil {
				return fmt.Errorf("%s: %w", hdr.Name, err)
			}
			_, err = io.CopyN(f, tr, hdr.Size)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("%s: %w", hdr.Name, err)
			}
		case tar.TypeSymlink:
			target, err := linkTarget(name, hdr.Linkname)
			if err != nil {
				return err
			}
			if err := removeEntry(root, name); err != nil {
				return err
			}
			if err := root.Symlink(target, name); err != nil {
				return fmt.Errorf("%s: %w", hdr.Name, err)
			}
		case tar.TypeLink:
			old, err := entryName(hdr.Linkname)
			if err != nil || old == "." {
				return fmt.Errorf("%w: hard link %s -> %q leaves the image root", errUnsafe, hdr.Name, hdr.Linkname)
			}
			if err := removeEntry(root, name); err != nil {
				return err
			}
			if err := root.Link(old, name); err != nil {
				return fmt.Errorf("%s: %w", hdr.Name, err)
			}
		default:
			// Devices, FIFOs and the like: a process has no use for them.
		}
	}
}

// errUnsafe marks archive entries that would write outside the image root.
var errUnsafe = errors.New("unsafe archive entry")

// entryName cleans an archive path, rejecting absolute ones and ".." parts.
func entryName(n string) (string, error) {
	if n == "" || strings.HasPrefix(n, "/") || strings.Contains(n, "\\") {
		return "", fmt.Errorf("%w: %q is not a relative path", errUnsafe, n)
	}
	for _, part := range strings.Split(n, "/") {
		if part == ".." {
			return "", fmt.Errorf("%w: %q has a '..' element", errUnsafe, n)
		}
	}
	return path.Clean(n), nil
}

// linkTarget returns the target to give a symlink at name (relative to the
// root) so that it stays inside the root.
func linkTarget(name, target string) (string, error) {
	if target == "" {
		return "", fmt.Errorf("%w: symlink %s has no target", errUnsafe, name)
	}
	linkDir := path.Dir(name)
	if path.IsAbs(target) {
		// "/x" in an image means <root>/x: point there relatively.
		rel, err := filepath.Rel("/"+linkDir, path.Clean(target))
		if err != nil {
			return "", fmt.Errorf("%w: symlink %s -> %s: %v", errUnsafe, name, target, err)
		}
		return filepath.ToSlash(rel), nil
	}
	resolved := path.Join(linkDir, target)
	if resolved == ".." || strings.HasPrefix(resolved, "../") {
		return "", fmt.Errorf("%w: symlink %s -> %s leaves the image root", errUnsafe, name, target)
	}
	return target, nil
}

// removeEntry removes a non-directory entry so it can be replaced.
func removeEntry(root *os.Root, name string) error {
	fi, err := root.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return root.RemoveAll(name)
	}
	return root.Remove(name)
}

// linkTree makes dst a copy of the directory tree src using hard links for
// files (a real copy when linking fails, e.g. across filesystems), so every
// instance has its own rootfs and its processes can be told apart by path.
func linkTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		out := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(out, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, out)
		case d.Type().IsRegular():
			if err := os.Link(p, out); err == nil {
				return nil
			}
			return copyFile(p, out)
		}
		return nil
	})
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// resolveIn resolves p, a path inside the image (absolute, or relative to
// cwd inside the image), to a host path under rootfs, following symlinks the
// way they would resolve if rootfs were "/": never above rootfs.
func resolveIn(rootfs, cwd, p string) (string, error) {
	if !path.IsAbs(p) {
		p = path.Join("/", cwd, p)
	}
	parts := strings.Split(strings.TrimPrefix(path.Clean(p), "/"), "/")
	cur := "/" // resolved so far, inside the image
	links := 0
	for len(parts) > 0 {
		part := parts[0]
		parts = parts[1:]
		switch part {
		case "", ".":
			continue
		case "..":
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, part)
		fi, err := os.Lstat(filepath.Join(rootfs, filepath.FromSlash(next)))
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		if links++; links > 40 {
			return "", fmt.Errorf("%s: too many levels of symbolic links", p)
		}
		target, err := os.Readlink(filepath.Join(rootfs, filepath.FromSlash(next)))
		if err != nil {
			return "", err
		}
		if path.IsAbs(target) {
			cur = "/"
		}
		parts = append(strings.Split(target, "/"), parts...)
	}
	return filepath.Join(rootfs, filepath.FromSlash(cur)), nil
}

// defaultPath is the search path for a command name when the image sets none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// lookPath finds argv0 inside rootfs: a name with a slash is a path (relative
// to workdir); a bare name is searched in the image's PATH.
func lookPath(rootfs, workdir, argv0, imagePath string) (string, error) {
	var candidates []string
	if strings.Contains(argv0, "/") {
		candidates = []string{argv0}
	} else {
		if imagePath == "" {
			imagePath = defaultPath
		}
		for _, d := range strings.Split(imagePath, ":") {
			if path.IsAbs(d) {
				candidates = append(candidates, path.Join(d, argv0))
			}
		}
	}
	for _, c := range candidates {
		host, err := resolveIn(rootfs, workdir, c)
		if err != nil {
			continue
		}
		fi, err := os.Stat(host)
		if err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return host, nil
		}
	}
	return "", fmt.Errorf("%w: executable %q not found in the image", runtime.ErrInvalid, argv0)
}
