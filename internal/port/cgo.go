package port

import "slices"

// Stub is a package that builds differently with cgo off: without cgo it
// compiles StubFiles (a !cgo file set, often functions that only return an
// error), with cgo it compiles CgoFiles instead. A cross-build with
// CGO_ENABLED=0 succeeds and only running the program tells whether the
// stub matters.
type Stub struct {
	Package   string   `json:"package"`
	Module    string   `json:"module"`
	Version   string   `json:"version,omitempty"`
	StubFiles []string `json:"stubFiles,omitempty"` // built only without cgo
	CgoFiles  []string `json:"cgoFiles"`            // built only with cgo
	// CgoOnly: without cgo nothing of the package builds.
	CgoOnly bool `json:"cgoOnly,omitempty"`
}

// CgoSplit compares the same packages listed for the target with cgo on
// and with cgo off, and returns the non-standard ones that build
// differently: stubs and cgo-only packages. The standard library's cgo
// variants (net, os/user) have pure-Go twins and are left out.
func CgoSplit(on, off []Package) []Stub {
	byPath := map[string]Package{}
	for _, p := range on {
		byPath[p.ImportPath] = p
	}
	var out []Stub
	for _, p := range off {
		c, ok := byPath[p.ImportPath]
		if !ok || p.Standard || len(c.CgoFiles) == 0 {
			continue
		}
		s := Stub{Package: p.ImportPath, CgoFiles: c.CgoFiles, CgoOnly: len(p.GoFiles) == 0}
		if p.Module != nil {
			s.Module, s.Version = p.Module.Path, p.Module.Version
		}
		for _, f := range p.GoFiles {
			if !slices.Contains(c.GoFiles, f) {
				s.StubFiles = append(s.StubFiles, f)
			}
		}
		out = append(out, s)
	}
	return out
}

// TestsNeedCgo reports whether a package's tests cannot run without cgo:
// listed with cgo off it has no Go files at all (a cgo-only package), or
// no test files while with cgo on it has some. The files that need cgo
// are returned to say so.
func TestsNeedCgo(on, off Package) (bool, []string) {
	tests := func(p Package) []string { return append(slices.Clone(p.TestGoFiles), p.XTestGoFiles...) }
	cgoOnly := len(off.GoFiles) == 0 && len(on.CgoFiles) > 0
	testsOnlyWithCgo := len(tests(off)) == 0 && len(tests(on)) > 0
	if !cgoOnly && !testsOnlyWithCgo {
		return false, nil
	}
	files := slices.Clone(on.CgoFiles)
	for _, f := range tests(on) {
		if !slices.Contains(tests(off), f) {
			files = append(files, f)
		}
	}
	return true, files
}
