package port

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/format"
	"go/parser"
	"go/token"
	"slices"
	"strconv"
	"strings"
)

// successors maps archived modules to the module that continues them
// under another path with the same API: a port may rewrite the imports.
var successors = map[string]string{
	"github.com/boltdb/bolt":  "go.etcd.io/bbolt",
	"github.com/coreos/bbolt": "go.etcd.io/bbolt",
}

// Successor is the module that continues path, if drift knows one.
func Successor(path string) (string, bool) {
	s, ok := successors[path]
	return s, ok
}

// pureGo names pure-Go replacements for modules whose packages need cgo.
var pureGo = map[string][]string{
	"github.com/mattn/go-sqlite3": {"modernc.org/sqlite", "github.com/glebarez/go-sqlite"},
	"github.com/DataDog/zstd":     {"github.com/klauspost/compress/zstd"},
	"github.com/valyala/gozstd":   {"github.com/klauspost/compress/zstd"},
	"github.com/cloudflare/golz4": {"github.com/pierrec/lz4/v4"},
	"github.com/google/gopacket":  {"github.com/google/gopacket/pcapgo (its pure-Go reader and Linux capture)"},
	"github.com/mattn/go-oci8":    {"github.com/sijms/go-ora/v2"},
}

// Alternatives are the pure-Go replacements drift knows for a module that
// needs cgo (none: an empty list).
func Alternatives(path string) []string { return slices.Clone(pureGo[path]) }

// CgoAdvice says what a module that needs cgo asks of a person: which of
// its packages and files import "C", and the pure-Go alternatives drift
// knows, or what else can be done when it knows none.
func CgoAdvice(m ModuleFailure, arch string) string {
	var where []string
	for _, p := range m.Packages {
		if !slices.Contains(p.Causes, CauseCgo) && !slices.Contains(p.Causes, CauseStub) {
			continue
		}
		w := p.Package
		if len(p.Files) > 0 {
			w += " (" + strings.Join(p.Files, ", ") + ")"
		}
		where = append(where, w)
	}
	msg := fmt.Sprintf("%s needs cgo: %s import \"C\", and the port builds with CGO_ENABLED=0 (no C cross compiler for linux/%s)",
		m.Path, strings.Join(where, "; "), arch)
	if alt := Alternatives(m.Path); len(alt) > 0 {
		return msg + "; pure-Go alternatives: " + strings.Join(alt, ", ")
	}
	return msg + "; drift knows no pure-Go alternative: replace it, or build with CGO_ENABLED=1 and a C cross compiler for linux/" + arch
}

// RewriteImports moves a Go file's imports of module from (and its
// packages) to module to. The root package keeps the name it had (name)
// through an alias, since a successor's package may be named otherwise
// (bolt → bbolt). It reports whether the file changed.
func RewriteImports(src []byte, from, to, name string) ([]byte, bool, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "", src, parser.ParseComments)
	if err != nil {
		return nil, false, err
	}
	changed := false
	for _, imp := range f.Imports {
		path := strings.Trim(imp.Path.Value, `"`)
		rest, ok := strings.CutPrefix(path, from)
		if !ok || rest != "" && !strings.HasPrefix(rest, "/") {
			continue
		}
		imp.Path.Value = strconv.Quote(to + rest)
		if rest == "" && imp.Name == nil {
			imp.Name = ast.NewIdent(name)
		}
		changed = true
	}
	if !changed {
		return src, false, nil
	}
	var out bytes.Buffer
	if err := format.Node(&out, fset, f); err != nil {
		return nil, false, err
	}
	return out.Bytes(), true, nil
}
