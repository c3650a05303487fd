package port

import (
	"go/build"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fixturePackages lists the packages of testdata/build-loong64.txt, each
// pointing at a fixture directory shaped like the real package.
func fixturePackages(t *testing.T) ([]Package, string) {
	t.Helper()
	abs, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	bolt := &Module{Path: "github.com/boltdb/bolt", Version: "v1.3.1"}
	xsys := &Module{Path: "golang.org/x/sys", Version: "v0.0.0-20180909124046-d0be0721c37e"}
	main := &Module{Path: "example.com/sysfacts", Main: true}
	pkgs := []Package{
		{ImportPath: "golang.org/x/sys/unix", Dir: filepath.Join(abs, "unix"), Module: xsys},
		{ImportPath: "github.com/boltdb/bolt", Dir: filepath.Join(abs, "bolt"), Module: bolt},
		{ImportPath: "example.com/sysfacts/pagesize", Dir: filepath.Join(abs, "pagesize"), Module: main},
		{ImportPath: "example.com/sysfacts/asm", Dir: filepath.Join(abs, "asm"), Module: main},
		{ImportPath: "example.com/sysfacts/cgo", Dir: filepath.Join(abs, "cgo"), Module: main},
		{ImportPath: "example.com/sysfacts", Dir: abs, Module: main},
	}
	out, err := os.ReadFile("testdata/build-loong64.txt")
	if err != nil {
		t.Fatal(err)
	}
	return pkgs, strings.ReplaceAll(string(out), "/work/fixture", abs)
}

func TestParseBuildOutputGroupsErrorsByPackage(t *testing.T) {
	pkgs, out := fixturePackages(t)
	errs := ParseBuildOutput(out, pkgs)
	want := map[string]int{
		"github.com/boltdb/bolt":        11,
		"golang.org/x/sys/unix":         4,
		"example.com/sysfacts/pagesize": 1,
		"example.com/sysfacts/asm":      1,
		"example.com/sysfacts/cgo":      1,
	}
	if len(errs) != len(want) {
		t.Fatalf("packages %v, want %v", keys(errs), keys(want))
	}
	for pkg, n := range want {
		if len(errs[pkg]) != n {
			t.Errorf("%s: %d errors, want %d: %q", pkg, len(errs[pkg]), n, errs[pkg])
		}
	}
	if got := errs["golang.org/x/sys/unix"][2]; !strings.HasSuffix(got, "sockcmsg_unix.go:43:9: undefined: Cmsghdr") {
		t.Errorf("errors must be kept as the compiler wrote them, got %q", got)
	}
}

func TestDiagnoseAttributesEachFailureToModuleAndCause(t *testing.T) {
	pkgs, out := fixturePackages(t)
	d := Diagnose("linux", "loong64", pkgs, ParseBuildOutput(out, pkgs))
	if d.OK() {
		t.Fatal("diagnosis says the build passes")
	}
	// Dependencies first, in go list -deps order.
	var order []string
	for _, m := range d.Modules {
		order = append(order, m.Path)
	}
	if !slices.Equal(order, []string{"golang.org/x/sys", "github.com/boltdb/bolt", "example.com/sysfacts"}) {
		t.Fatalf("modules %v", order)
	}
	cases := []struct {
		pkg     string
		causes  []Cause
		missing []string
	}{
		{"golang.org/x/sys/unix", []Cause{CauseGeneratedFiles, CauseOther}, []string{"_CPU_SETSIZE", "Cmsghdr"}},
		{"github.com/boltdb/bolt", []Cause{CauseArchDecls}, []string{"maxMapSize", "brokenUnaligned", "maxAllocSize"}},
		{"example.com/sysfacts/pagesize", []Cause{CauseConstraint}, []string{"PageSize"}},
		{"example.com/sysfacts/asm", []Cause{CauseAssembly}, nil},
		{"example.com/sysfacts/cgo", []Cause{CauseCgo}, nil},
	}
	for _, c := range cases {
		t.Run(c.pkg, func(t *testing.T) {
			f := findPackage(t, d, c.pkg)
			if !slices.Equal(f.Causes, c.causes) {
				t.Errorf("causes %v, want %v", f.Causes, c.causes)
			}
			if !slices.Equal(f.Missing, c.missing) {
				t.Errorf("missing %v, want %v", f.Missing, c.missing)
			}
		})
	}
	bolt, _ := d.Module("github.com/boltdb/bolt")
	if bolt.Version != "v1.3.1" || bolt.Main || !slices.Equal(bolt.Causes, []Cause{CauseArchDecls}) {
		t.Errorf("bolt module %+v", bolt)
	}
	if main, _ := d.Module("example.com/sysfacts"); !main.Main || len(main.Packages) != 3 {
		t.Errorf("main module %+v", main)
	}
}

func TestCgoErrorsWithoutPackageAreCgo(t *testing.T) {
	out, err := os.ReadFile("testdata/gcc-loong64.txt")
	if err != nil {
		t.Fatal(err)
	}
	pkgs := []Package{{ImportPath: "runtime/cgo", Standard: true}}
	d := Diagnose("linux", "loong64", pkgs, ParseBuildOutput(string(out), pkgs))
	if len(d.Modules) != 1 || d.Modules[0].Path != "std" || !slices.Equal(d.Modules[0].Causes, []Cause{CauseCgo}) {
		t.Fatalf("diagnosis %+v", d)
	}
}

func TestDonorsShareWordSizeByteOrderAndSyscallTable(t *testing.T) {
	ps := []Platform{
		{GOOS: "linux", GOARCH: "amd64", FirstClass: true}, {GOOS: "linux", GOARCH: "arm64", FirstClass: true},
		{GOOS: "linux", GOARCH: "riscv64"}, {GOOS: "linux", GOARCH: "loong64"}, {GOOS: "linux", GOARCH: "386", FirstClass: true},
		{GOOS: "linux", GOARCH: "mips64"}, {GOOS: "linux", GOARCH: "s390x"}, {GOOS: "linux", GOARCH: "ppc64le"},
		{GOOS: "darwin", GOARCH: "arm64", FirstClass: true},
	}
	donors, err := Donors(build.Default.GOROOT, "linux", "loong64", ps)
	if err != nil {
		t.Fatal(err)
	}
	// arm64 and riscv64 share loong64's generic syscall table; amd64 and
	// ppc64le are 64-bit little-endian too but further off; 32-bit (386)
	// and big-endian (mips64, s390x) arches never donate.
	if len(donors) != 4 || !slices.Contains(donors[:2], "arm64") || !slices.Contains(donors[:2], "riscv64") {
		t.Fatalf("donors %v", donors)
	}
	for _, bad := range []string{"386", "mips64", "s390x", "loong64"} {
		if slices.Contains(donors, bad) {
			t.Errorf("%s must not donate to loong64: %v", bad, donors)
		}
	}
	big, err := BigEndianArches(build.Default.GOROOT)
	if err != nil || !big["s390x"] || !big["mips64"] || big["loong64"] || big["arm64"] {
		t.Errorf("big-endian arches %v (%v)", big, err)
	}
}

func TestPlanArchFilesDerivesBoltsLoong64FileFromADonor(t *testing.T) {
	dir := copyFixture(t, "bolt")
	// riscv64 has no bolt file, so the next donor, arm64, gives it.
	files, unresolved, err := PlanArchFiles(dir, "linux", "loong64", []string{"riscv64", "arm64", "amd64"}, []string{"maxMapSize", "brokenUnaligned", "maxAllocSize"})
	if err != nil || len(unresolved) > 0 {
		t.Fatalf("unresolved %v, err %v", unresolved, err)
	}
	if len(files) != 1 || files[0].Name != "bolt_loong64.go" || files[0].From != "bolt_arm64.go" || files[0].Donor != "arm64" || files[0].Edit {
		t.Fatalf("files %+v", files)
	}
	src := string(files[0].Content)
	for _, want := range []string{"//go:build loong64\n", "const maxMapSize = 0xFFFFFFFFFFFF", "const maxAllocSize = 0x7FFFFFFF", "var brokenUnaligned = false", "DO NOT EDIT"} {
		if !strings.Contains(src, want) {
			t.Errorf("bolt_loong64.go lacks %q:\n%s", want, src)
		}
	}
	if strings.Contains(src, "+build") {
		t.Errorf("the donor's constraint must be replaced:\n%s", src)
	}
	writeAndExpectBuilt(t, dir, files[0], "loong64")
	if matches(dir, "bolt_loong64.go", "linux", "amd64") {
		t.Error("the generated file must not build for other arches")
	}
}

func TestPlanArchFilesCopiesGeneratedTypesFromTheBestDonor(t *testing.T) {
	dir := copyFixture(t, "unix")
	files, unresolved, err := PlanArchFiles(dir, "linux", "loong64", []string{"arm64", "riscv64"}, []string{"_CPU_SETSIZE", "Cmsghdr"})
	if err != nil || len(unresolved) > 0 || len(files) != 1 {
		t.Fatalf("files %+v unresolved %v err %v", files, unresolved, err)
	}
	f := files[0]
	if f.Name != "ztypes_linux_loong64.go" || f.From != "ztypes_linux_arm64.go" || !slices.Equal(f.Missing, []string{"_CPU_SETSIZE", "Cmsghdr"}) {
		t.Fatalf("file %+v", f)
	}
	if !strings.Contains(string(f.Content), "//go:build loong64 && linux\n") {
		t.Errorf("constraint not retargeted:\n%s", f.Content)
	}
	writeAndExpectBuilt(t, dir, f, "loong64")
}

func TestPlanArchFilesWidensAConstraintListThatOmitsTheArch(t *testing.T) {
	dir := copyFixture(t, "pagesize")
	files, unresolved, err := PlanArchFiles(dir, "linux", "loong64", []string{"riscv64", "arm64"}, []string{"PageSize"})
	if err != nil || len(unresolved) > 0 || len(files) != 1 {
		t.Fatalf("files %+v unresolved %v err %v", files, unresolved, err)
	}
	f := files[0]
	if f.Name != "page.go" || !f.Edit || !strings.HasPrefix(string(f.Content), "//go:build amd64 || arm64 || loong64\n") {
		t.Fatalf("file %+v:\n%s", f, f.Content)
	}
	writeAndExpectBuilt(t, dir, f, "loong64")
	if !matches(dir, "page.go", "linux", "amd64") {
		t.Error("widening must keep the arches it had")
	}
}

func TestPlanArchFilesReportsNamesNoDonorDeclares(t *testing.T) {
	dir := copyFixture(t, "bolt")
	_, unresolved, err := PlanArchFiles(dir, "linux", "loong64", []string{"riscv64"}, []string{"maxMapSize"})
	if err != nil || !slices.Equal(unresolved, []string{"maxMapSize"}) {
		t.Fatalf("unresolved %v, err %v", unresolved, err)
	}
}

func TestCandidatesAreNewerVersionsOldestFirst(t *testing.T) {
	got := Candidates("v0.0.0-20180909124046-d0be0721c37e", []string{"v0.2.0", "v0.1.0", "v0.10.0", "junk"})
	if !slices.Equal(got, []string{"v0.1.0", "v0.2.0", "v0.10.0"}) {
		t.Fatalf("candidates %v", got)
	}
	if got := Candidates("v1.3.1", []string{"v1.3.1", "v1.2.0"}); len(got) != 0 {
		t.Fatalf("no newer version, got %v", got)
	}
}

func TestLowestBuildingTriesTheNewestFirstThenBisects(t *testing.T) {
	versions := []string{"v0.1.0", "v0.2.0", "v0.3.0", "v0.4.0", "v0.5.0", "v0.6.0", "v0.7.0"}
	cases := []struct {
		name      string
		firstGood int // index of the first version that builds; -1: none
		want      string
		maxTries  int
	}{
		{"all build", 0, "v0.1.0", 4},
		{"support added midway", 4, "v0.5.0", 4},
		{"only the newest", 6, "v0.7.0", 4},
		{"none builds: one try", -1, "", 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var tried []string
			v, ok, err := LowestBuilding(versions, func(v string) (bool, error) {
				tried = append(tried, v)
				i := slices.Index(versions, v)
				return c.firstGood >= 0 && i >= c.firstGood, nil
			})
			if err != nil || v != c.want || ok != (c.want != "") {
				t.Fatalf("got %q %v %v", v, ok, err)
			}
			if tried[0] != "v0.7.0" || len(tried) > c.maxTries {
				t.Errorf("tried %v", tried)
			}
		})
	}
}

func TestArchFacts(t *testing.T) {
	if !KnownArch("loong64") || !KnownArch("riscv64") || KnownArch("z80") {
		t.Error("KnownArch")
	}
	if WordSize("loong64") != 8 || WordSize("386") != 4 {
		t.Error("WordSize")
	}
	if Emulator("loong64") != "qemu-loongarch64-static" || Emulator("arm64") != "qemu-aarch64-static" || Emulator("riscv64") != "qemu-riscv64-static" {
		t.Error("Emulator")
	}
	ps, err := ParsePlatforms([]byte(`[{"GOOS":"linux","GOARCH":"loong64","CgoSupported":true,"FirstClass":false}]`))
	if err != nil || !Supports(ps, "linux", "loong64") || Supports(ps, "linux", "z80") {
		t.Errorf("platforms %v %v", ps, err)
	}
}

func findPackage(t *testing.T, d Diagnosis, pkg string) PackageFailure {
	t.Helper()
	for _, m := range d.Modules {
		for _, p := range m.Packages {
			if p.Package == pkg {
				return p
			}
		}
	}
	t.Fatalf("%s not in the diagnosis", pkg)
	return PackageFailure{}
}

func copyFixture(t *testing.T, name string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("testdata", name))); err != nil {
		t.Fatal(err)
	}
	return dir
}

// writeAndExpectBuilt writes f and checks the go command's matcher now
// builds it for arch.
func writeAndExpectBuilt(t *testing.T, dir string, f ArchFile, arch string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, f.Name), f.Content, 0o644); err != nil {
		t.Fatal(err)
	}
	if !matches(dir, f.Name, "linux", arch) {
		t.Errorf("%s is not built for linux/%s:\n%s", f.Name, arch, f.Content)
	}
}

func keys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
