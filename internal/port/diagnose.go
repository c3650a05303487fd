package port

import (
	"encoding/json"
	"errors"
	"go/build"
	"go/parser"
	"go/token"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// Cause is why a package does not build for the target arch.
type Cause string

// Causes of a failure, from what `go build` says and the package's files.
const (
	// CauseArchDecls: names the package declares only in files for other
	// arches (bolt's maxMapSize in bolt_<arch>.go).
	CauseArchDecls Cause = "missing-arch-declarations"
	// CauseGeneratedFiles: names declared in generated per-arch files
	// (ztypes_*, zsyscall_*, zerrors_*, zsysnum_*) that have no copy for it.
	CauseGeneratedFiles Cause = "missing-generated-files"
	// CauseConstraint: the declaring files' build constraints list arches
	// but not this one.
	CauseConstraint Cause = "constraint-omits-arch"
	// CauseCgo: the package needs cgo, and there is no cross C compiler.
	CauseCgo Cause = "cgo-without-cross-compiler"
	// CauseAssembly: a function is implemented in assembly for other arches only.
	CauseAssembly Cause = "assembly-without-arch"
	// CauseOther: anything else (API changes, type errors).
	CauseOther Cause = "other"
)

// Package is one entry of `go list -e -deps -json`.
type Package struct {
	ImportPath string
	Dir        string
	Standard   bool
	Module     *Module
	Error      *struct{ Err string }
}

// Module is a package's module as `go list` reports it.
type Module struct {
	Path    string
	Version string
	Dir     string
	Main    bool
	Replace *Module
}

// ListFields are the `go list -json=` fields ReadPackages needs.
const ListFields = "ImportPath,Dir,Standard,Module,Error"

// ReadPackages decodes the JSON stream of `go list -e -deps -json`, in
// its order (dependencies before their importers).
func ReadPackages(r io.Reader) ([]Package, error) {
	var pkgs []Package
	dec := json.NewDecoder(r)
	for {
		var p Package
		err := dec.Decode(&p)
		if errors.Is(err, io.EOF) {
			return pkgs, nil
		}
		if err != nil {
			return nil, err
		}
		pkgs = append(pkgs, p)
	}
}

// PackageFailure is one package that does not build for the arch.
type PackageFailure struct {
	Package string   `json:"package"`
	Dir     string   `json:"dir"`
	Causes  []Cause  `json:"causes"`
	Missing []string `json:"missing,omitempty"` // undeclared names
	Errors  []string `json:"errors"`            // exactly as the compiler said
}

// ModuleFailure gathers a module's failing packages.
type ModuleFailure struct {
	Path     string           `json:"path"`
	Version  string           `json:"version,omitempty"`
	Dir      string           `json:"dir"`
	Main     bool             `json:"main,omitempty"`
	Replaced bool             `json:"replaced,omitempty"` // already points at a patched copy
	Causes   []Cause          `json:"causes"`
	Packages []PackageFailure `json:"packages"`
}

// Diagnosis is what keeps a build for GOOS/GOARCH from succeeding, per
// module, dependencies first.
type Diagnosis struct {
	GOOS    string          `json:"goos"`
	GOARCH  string          `json:"goarch"`
	Modules []ModuleFailure `json:"modules,omitempty"`
}

// OK reports whether everything built.
func (d Diagnosis) OK() bool { return len(d.Modules) == 0 }

// Module finds a failing module by path.
func (d Diagnosis) Module(path string) (ModuleFailure, bool) {
	i := slices.IndexFunc(d.Modules, func(m ModuleFailure) bool { return m.Path == path })
	if i < 0 {
		return ModuleFailure{}, false
	}
	return d.Modules[i], true
}

var (
	headerRE    = regexp.MustCompile(`^# (\S*)`)
	excludeRE   = regexp.MustCompile(`build constraints exclude all Go files in (\S+)`)
	undefinedRE = regexp.MustCompile(`undefined(?::| array length) ([A-Za-z_]\w*)\b(?:$|[^.])`)
	positionRE  = regexp.MustCompile(`^(\S+?\.go):\d+(?::\d+)?: (.*)$`)
)

// ParseBuildOutput groups the errors of `go build`/`go vet`/`go test`
// output by package import path. Load errors without a "# pkg" header
// ("build constraints exclude all Go files in DIR") are keyed by the
// package whose Dir is DIR.
func ParseBuildOutput(out string, pkgs []Package) map[string][]string {
	byDir := map[string]string{}
	for _, p := range pkgs {
		byDir[p.Dir] = p.ImportPath
	}
	errs := map[string][]string{}
	current := ""
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimRight(line, "\r")
		if m := headerRE.FindStringSubmatch(line); m != nil {
			current = strings.TrimSuffix(strings.Trim(m[1], "[]"), "_test")
			continue
		}
		if m := excludeRE.FindStringSubmatch(line); m != nil {
			if pkg, ok := byDir[filepath.Clean(m[1])]; ok {
				errs[pkg] = append(errs[pkg], line)
				continue
			}
		}
		if current == "" || strings.TrimSpace(line) == "" || strings.HasPrefix(line, "go: downloading ") || strings.HasPrefix(line, "FAIL") || strings.HasPrefix(line, "ok ") {
			continue
		}
		errs[current] = append(errs[current], strings.TrimSpace(line))
	}
	return errs
}

// Diagnose attributes each package's errors to its module and a cause.
// workDir resolves the relative file names the go command prints.
func Diagnose(goos, goarch string, pkgs []Package, errs map[string][]string) Diagnosis {
	d := Diagnosis{GOOS: goos, GOARCH: goarch}
	for _, p := range pkgs {
		lines, failed := errs[p.ImportPath]
		if !failed {
			continue
		}
		f := classify(goos, goarch, p, lines)
		mod := Module{Path: "std"}
		if p.Module != nil {
			mod = *p.Module
		}
		i := slices.IndexFunc(d.Modules, func(m ModuleFailure) bool { return m.Path == mod.Path })
		if i < 0 {
			d.Modules = append(d.Modules, ModuleFailure{Path: mod.Path, Version: mod.Version, Main: mod.Main, Replaced: mod.Replace != nil, Dir: moduleDir(mod)})
			i = len(d.Modules) - 1
		}
		m := &d.Modules[i]
		m.Packages = append(m.Packages, f)
		for _, c := range f.Causes {
			if !slices.Contains(m.Causes, c) {
				m.Causes = append(m.Causes, c)
			}
		}
	}
	return d
}

func moduleDir(m Module) string {
	if m.Replace != nil && m.Replace.Dir != "" {
		return m.Replace.Dir
	}
	return m.Dir
}

func classify(goos, goarch string, p Package, lines []string) PackageFailure {
	f := PackageFailure{Package: p.ImportPath, Dir: p.Dir, Errors: lines}
	add := func(c Cause) {
		if !slices.Contains(f.Causes, c) {
			f.Causes = append(f.Causes, c)
		}
	}
	var decls map[string][]string // name → declaring files, read once
	for _, line := range lines {
		msg := line
		if m := positionRE.FindStringSubmatch(line); m != nil {
			msg = m[2]
		}
		switch {
		case strings.Contains(msg, "missing function body"):
			add(CauseAssembly)
		case excludeRE.MatchString(msg):
			if usesCgo(p.Dir) {
				add(CauseCgo)
			} else {
				add(CauseConstraint)
			}
		case strings.Contains(msg, "C compiler") || strings.HasPrefix(msg, "gcc:") || strings.HasPrefix(msg, "cgo:"):
			add(CauseCgo)
		case undefinedRE.MatchString(msg):
			name := undefinedRE.FindStringSubmatch(msg)[1]
			if decls == nil {
				decls = declarations(p.Dir)
			}
			files := decls[name]
			if len(files) == 0 {
				add(CauseOther)
				continue
			}
			if !slices.Contains(f.Missing, name) {
				f.Missing = append(f.Missing, name)
			}
			add(causeOfFiles(files))
		}
	}
	if len(f.Causes) == 0 {
		add(CauseOther)
	}
	return f
}

var generatedPrefixes = []string{"ztypes_", "zsyscall_", "zerrors_", "zsysnum_"}

// causeOfFiles says why names declared only in files (none of which is
// built for the target) are missing.
func causeOfFiles(files []string) Cause {
	for _, f := range files {
		for _, p := range generatedPrefixes {
			if strings.HasPrefix(filepath.Base(f), p) {
				return CauseGeneratedFiles
			}
		}
	}
	for _, f := range files {
		if fileArch(filepath.Base(f)) != "" {
			return CauseArchDecls
		}
	}
	return CauseConstraint
}

// fileArch is the GOARCH a file name is restricted to (x_linux_arm64.go
// → arm64), or "" when its name restricts no arch.
func fileArch(name string) string {
	name = strings.TrimSuffix(strings.TrimSuffix(name, ".go"), "_test")
	parts := strings.Split(name, "_")
	if len(parts) < 2 {
		return ""
	}
	if last := parts[len(parts)-1]; KnownArch(last) {
		return last
	}
	return ""
}

// declarations maps each top-level name declared in dir's non-test Go
// files (for any arch) to the files declaring it.
func declarations(dir string) map[string][]string {
	decls := map[string][]string{}
	files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	fset := token.NewFileSet()
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			continue
		}
		for _, name := range topLevelNames(f) {
			decls[name] = append(decls[name], filepath.Base(path))
		}
	}
	return decls
}

func usesCgo(dir string) bool {
	files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	fset := token.NewFileSet()
	for _, path := range files {
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			continue
		}
		for _, imp := range f.Imports {
			if imp.Path.Value == `"C"` {
				return true
			}
		}
	}
	return false
}

// matches reports whether file in dir is built for goos/goarch without cgo.
func matches(dir, file, goos, goarch string) bool {
	ctx := build.Default
	ctx.GOOS, ctx.GOARCH, ctx.CgoEnabled = goos, goarch, false
	ok, err := ctx.MatchFile(dir, file)
	return err == nil && ok
}

// exists reports whether path exists.
func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// JoinCauses lists causes for people: "a, b".
func JoinCauses(cs []Cause) string {
	s := make([]string, len(cs))
	for i, c := range cs {
		s[i] = string(c)
	}
	return strings.Join(s, ", ")
}
