package port

import (
	"encoding/json"
	"errors"
	"go/ast"
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
	// but not this one (their names restrict no arch).
	CauseConstraint Cause = "constraint-excludes-arch"
	// CauseCgo: the package (or what is missing from it) exists only in
	// files that import "C", and the port builds with CGO_ENABLED=0.
	CauseCgo Cause = "cgo-only"
	// CauseAssembly: a function is implemented in assembly for other arches only.
	CauseAssembly Cause = "assembly-only"
	// CauseStub: the package builds without cgo from a stub file set
	// (a !cgo file) whose behaviour differs from its cgo build.
	CauseStub Cause = "cgo-stub"
	// CauseOther: anything else (API changes, type errors).
	CauseOther Cause = "other"
)

// Package is one entry of `go list -e -deps -json`.
type Package struct {
	ImportPath     string
	Name           string
	Dir            string
	Standard       bool
	Module         *Module
	GoFiles        []string
	CgoFiles       []string
	IgnoredGoFiles []string // excluded by build constraints for the listed GOOS/GOARCH
	TestGoFiles    []string
	XTestGoFiles   []string
	Error          *struct{ Err string }
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
const ListFields = "ImportPath,Name,Dir,Standard,Module,GoFiles,CgoFiles,IgnoredGoFiles,TestGoFiles,XTestGoFiles,Error"

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
	// Files are the package's files excluded for the arch that declare
	// what is missing, or that import "C" (cgo-only).
	Files []string `json:"files,omitempty"`
	// Importers are packages of other modules whose build failed only
	// because this package lacks what they use (undefined: pkg.Name).
	Importers []string `json:"importers,omitempty"`
	Errors    []string `json:"errors"` // exactly as the compiler said
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
	qualifiedRE = regexp.MustCompile(`undefined: ([A-Za-z_]\w*)\.([A-Za-z_]\w*)`)
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

// Diagnose attributes each package's errors to its module and a cause,
// dependencies first. An undefined qualified name (undefined: pkg.Name)
// is the failure of the imported package that declares Name only in files
// excluded for the arch, and of that package's module.
func Diagnose(goos, goarch string, pkgs []Package, errs map[string][]string) Diagnosis {
	d := Diagnosis{GOOS: goos, GOARCH: goarch}
	byPath := map[string]Package{}
	for _, p := range pkgs {
		byPath[p.ImportPath] = p
	}
	problems := map[string][]problem{}
	importers := map[string][]string{}
	for _, p := range pkgs {
		for _, line := range errs[p.ImportPath] {
			pr := parseProblem(line)
			if dep, ok := declaringImport(p, pr, byPath); ok {
				problems[dep] = append(problems[dep], pr)
				if !slices.Contains(importers[dep], p.ImportPath) {
					importers[dep] = append(importers[dep], p.ImportPath)
				}
				continue
			}
			problems[p.ImportPath] = append(problems[p.ImportPath], pr)
		}
	}
	for _, p := range pkgs {
		prs, failed := problems[p.ImportPath]
		if !failed {
			continue
		}
		f := classify(goos, goarch, p, prs)
		f.Importers = importers[p.ImportPath]
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

// BuildList is what to build to see whether m's failures are gone: its
// failing packages and the packages of other modules that failed for them.
func (m ModuleFailure) BuildList() []string {
	var pkgs []string
	for _, p := range m.Packages {
		for _, q := range append([]string{p.Package}, p.Importers...) {
			if !slices.Contains(pkgs, q) {
				pkgs = append(pkgs, q)
			}
		}
	}
	return pkgs
}

// problem is one line of compiler output: the message without its
// position, and the undeclared name it is about, if any.
type problem struct {
	line, file, msg string
	qual, name      string // undefined: qual.name, or undefined: name (qual "")
}

func parseProblem(line string) problem {
	pr := problem{line: line, msg: line}
	if m := positionRE.FindStringSubmatch(line); m != nil {
		pr.file, pr.msg = m[1], m[2]
	}
	if m := qualifiedRE.FindStringSubmatch(pr.msg); m != nil {
		pr.qual, pr.name = m[1], m[2]
	} else if m := undefinedRE.FindStringSubmatch(pr.msg); m != nil {
		pr.name = m[1]
	}
	return pr
}

// declaringImport finds the package that pr's qualifier names in the file
// of p it comes from, when that package (not p) declares the name in some
// file: the package that should define it.
func declaringImport(p Package, pr problem, byPath map[string]Package) (string, bool) {
	if pr.qual == "" || pr.file == "" {
		return "", false
	}
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(p.Dir, filepath.Base(pr.file)), nil, parser.ImportsOnly)
	if err != nil {
		return "", false
	}
	for _, imp := range f.Imports {
		path := strings.Trim(imp.Path.Value, `"`)
		dep, ok := byPath[path]
		if !ok || path == p.ImportPath {
			continue
		}
		name := dep.Name
		if imp.Name != nil {
			name = imp.Name.Name
		}
		if name == pr.qual && len(declarations(dep.Dir)[pr.name]) > 0 {
			return path, true
		}
	}
	return "", false
}

func moduleDir(m Module) string {
	if m.Replace != nil && m.Replace.Dir != "" {
		return m.Replace.Dir
	}
	return m.Dir
}

func classify(goos, goarch string, p Package, prs []problem) PackageFailure {
	f := PackageFailure{Package: p.ImportPath, Dir: p.Dir}
	add := func(c Cause) {
		if !slices.Contains(f.Causes, c) {
			f.Causes = append(f.Causes, c)
		}
	}
	addFiles := func(files []string) {
		for _, file := range files {
			if !slices.Contains(f.Files, file) {
				f.Files = append(f.Files, file)
			}
		}
	}
	var decls map[string][]string // name → declaring files, read once
	for _, pr := range prs {
		f.Errors = append(f.Errors, pr.line)
		switch msg := pr.msg; {
		case strings.Contains(msg, "missing function body"):
			add(CauseAssembly)
		case excludeRE.MatchString(msg):
			if files := cgoFiles(p.Dir); len(files) > 0 {
				add(CauseCgo)
				addFiles(files)
			} else {
				add(CauseConstraint)
			}
		case strings.Contains(msg, "C compiler") || strings.HasPrefix(msg, "gcc:") || strings.HasPrefix(msg, "cgo:"):
			add(CauseCgo)
		case pr.name != "":
			if decls == nil {
				decls = declarations(p.Dir)
			}
			files := excluded(p, decls[pr.name])
			if len(files) == 0 {
				add(CauseOther)
				continue
			}
			if !slices.Contains(f.Missing, pr.name) {
				f.Missing = append(f.Missing, pr.name)
			}
			addFiles(files)
			add(causeOfFiles(p.Dir, files))
		}
	}
	if len(f.Causes) == 0 {
		add(CauseOther)
	}
	return f
}

// excluded keeps the files the go command left out for the arch, when it
// listed them (IgnoredGoFiles); files of a package listed without them
// are all kept.
func excluded(p Package, files []string) []string {
	if p.IgnoredGoFiles == nil {
		return files
	}
	var out []string
	for _, f := range files {
		if slices.Contains(p.IgnoredGoFiles, f) {
			out = append(out, f)
		}
	}
	return out
}

var generatedPrefixes = []string{"ztypes_", "zsyscall_", "zerrors_", "zsysnum_"}

// generatedRE matches the header of generated Go files: the standard
// "Code generated … DO NOT EDIT." line and cgo -godefs' older "Created by
// cgo -godefs - DO NOT EDIT".
var generatedRE = regexp.MustCompile(`(?m)^// (Code generated .*|Created by cgo -godefs.*)DO NOT EDIT`)

// causeOfFiles says why names declared only in files of dir (none of
// which is built for the target) are missing: the files are generated per
// arch, hand-written per arch (the name restricts the arch), need cgo, or
// are left out by a constraint list.
func causeOfFiles(dir string, files []string) Cause {
	for _, f := range files {
		if isGenerated(dir, f) {
			return CauseGeneratedFiles
		}
	}
	for _, f := range files {
		if fileArch(filepath.Base(f)) != "" {
			return CauseArchDecls
		}
	}
	cgo := cgoFiles(dir)
	if !slices.ContainsFunc(files, func(f string) bool { return !slices.Contains(cgo, f) }) {
		return CauseCgo
	}
	return CauseConstraint
}

// isGenerated reports whether file in dir is generated code: a z-prefixed
// per-arch table of x/sys's kind, or a file whose header says so.
func isGenerated(dir, file string) bool {
	for _, p := range generatedPrefixes {
		if strings.HasPrefix(filepath.Base(file), p) {
			return true
		}
	}
	f, err := os.Open(filepath.Join(dir, file))
	if err != nil {
		return false
	}
	defer f.Close()
	head := make([]byte, 2048)
	n, _ := io.ReadFull(f, head)
	return generatedRE.Match(head[:n])
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

// cgoFiles lists dir's non-test Go files that import "C".
func cgoFiles(dir string) []string {
	files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	fset := token.NewFileSet()
	var out []string
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			continue
		}
		if slices.ContainsFunc(f.Imports, func(imp *ast.ImportSpec) bool { return imp.Path.Value == `"C"` }) {
			out = append(out, filepath.Base(path))
		}
	}
	return out
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
