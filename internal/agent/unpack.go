package agent

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// maxUnpacked bounds what one package may write.
const maxUnpacked = 1 << 30

// Unpack extracts a .tar.gz into dir and returns the files it wrote,
// relative to dir. Only regular files and directories are taken; absolute
// names, "..", links and devices refuse the whole package, so nothing lands
// outside dir.
func Unpack(archive, dir string) ([]string, error) {
	f, err := os.Open(archive)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("package is not gzip: %w", err)
	}
	tr := tar.NewReader(gz)
	var files []string
	total := int64(0)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files, nil
		}
		if err != nil {
			return files, fmt.Errorf("package archive: %w", err)
		}
		name := filepath.Clean(h.Name)
		if filepath.IsAbs(h.Name) || name == ".." || strings.HasPrefix(name, "../") {
			return files, fmt.Errorf("package entry %q leaves the install dir", h.Name)
		}
		target := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return files, err
			}
		case tar.TypeReg:
			total += h.Size
			if total > maxUnpacked {
				return files, fmt.Errorf("package unpacks to over %d bytes", maxUnpacked)
			}
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return files, err
			}
			out, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, os.FileMode(h.Mode)&0o755|0o600)
			if err != nil {
				return files, err
			}
			_, err = io.Copy(out, io.LimitReader(tr, h.Size))
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return files, err
			}
			files = append(files, name)
		default:
			return files, fmt.Errorf("package entry %q: only files and directories are installed", h.Name)
		}
	}
}
