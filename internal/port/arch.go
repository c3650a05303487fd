// Package port holds the pure logic of porting a Go module to another
// GOARCH: reading build failures, choosing versions and generating the
// missing arch files of a dependency from a compatible donor arch.
package port

import (
	"encoding/json"
	"fmt"
	"go/types"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// KnownArch reports whether the gc toolchain knows arch (go/types keeps
// the sizes of every GOARCH the compiler supports).
func KnownArch(arch string) bool { return types.SizesFor("gc", arch) != nil }

// WordSize is arch's pointer size in bytes (0 for an unknown arch).
func WordSize(arch string) int64 {
	s := types.SizesFor("gc", arch)
	if s == nil {
		return 0
	}
	return s.Sizeof(types.Typ[types.Uintptr])
}

// Platform is one GOOS/GOARCH pair of `go tool dist list -json`.
type Platform struct {
	GOOS       string
	GOARCH     string
	FirstClass bool
}

// ParsePlatforms reads the output of `go tool dist list -json`.
func ParsePlatforms(distList []byte) ([]Platform, error) {
	var ps []Platform
	if err := json.Unmarshal(distList, &ps); err != nil {
		return nil, fmt.Errorf("go tool dist list: %w", err)
	}
	return ps, nil
}

// Supports reports whether goos/goarch is one of ps.
func Supports(ps []Platform, goos, goarch string) bool {
	return slices.ContainsFunc(ps, func(p Platform) bool { return p.GOOS == goos && p.GOARCH == goarch })
}

var bigEndianRE = regexp.MustCompile(`const BigEndian = ([^\n]*)== 1`)

// BigEndianArches reads the big-endian arches from the toolchain's own
// internal/goarch (its BigEndian constant ORs IsXxx flags).
func BigEndianArches(goroot string) (map[string]bool, error) {
	src, err := os.ReadFile(filepath.Join(goroot, "src", "internal", "goarch", "goarch.go"))
	if err != nil {
		return nil, err
	}
	m := bigEndianRE.FindSubmatch(src)
	if m == nil {
		return nil, fmt.Errorf("no BigEndian constant in internal/goarch")
	}
	big := map[string]bool{}
	for _, term := range strings.Split(string(m[1]), "|") {
		big[strings.ToLower(strings.TrimPrefix(strings.TrimSpace(term), "Is"))] = true
	}
	return big, nil
}

var sysnumRE = regexp.MustCompile(`(?m)^\s*(SYS_\w+)\s*=\s*(\d+)`)

// syscallNumbers reads the syscall table the standard library keeps for
// goos/arch (nil when it has none).
func syscallNumbers(goroot, goos, arch string) map[string]string {
	src, err := os.ReadFile(filepath.Join(goroot, "src", "syscall", "zsysnum_"+goos+"_"+arch+".go"))
	if err != nil {
		return nil
	}
	nums := map[string]string{}
	for _, m := range sysnumRE.FindAllStringSubmatch(string(src), -1) {
		nums[m[1]] = m[2]
	}
	return nums
}

// Donors ranks the arches whose generated and arch-specific files can
// stand in for target's: same word size and byte order, then the most
// syscall numbers shared with target in the standard library's tables
// (kernel ABI kinship: loong64 shares the generic table of arm64 and
// riscv64, not amd64's), then first-class ports, then by name.
func Donors(goroot, goos, target string, ps []Platform) ([]string, error) {
	big, err := BigEndianArches(goroot)
	if err != nil {
		return nil, err
	}
	targetNums := syscallNumbers(goroot, goos, target)
	type cand struct {
		arch       string
		shared     int
		firstClass bool
	}
	var cands []cand
	for _, p := range ps {
		if p.GOOS != goos || p.GOARCH == target || WordSize(p.GOARCH) != WordSize(target) || big[p.GOARCH] != big[target] {
			continue
		}
		c := cand{arch: p.GOARCH, firstClass: p.FirstClass}
		for name, n := range syscallNumbers(goroot, goos, p.GOARCH) {
			if targetNums[name] == n {
				c.shared++
			}
		}
		cands = append(cands, c)
	}
	slices.SortFunc(cands, func(a, b cand) int {
		switch {
		case a.shared != b.shared:
			return b.shared - a.shared
		case a.firstClass != b.firstClass:
			if a.firstClass {
				return -1
			}
			return 1
		}
		return strings.Compare(a.arch, b.arch)
	})
	donors := make([]string, len(cands))
	for i, c := range cands {
		donors[i] = c.arch
	}
	return donors, nil
}

// qemuNames maps a GOARCH to the name of its qemu user-mode emulator where
// the two differ.
var qemuNames = map[string]string{
	"386": "i386", "amd64": "x86_64", "arm64": "aarch64", "loong64": "loongarch64",
	"mipsle": "mipsel", "mips64le": "mips64el", "ppc64": "ppc64", "wasm": "",
}

// Emulator is the qemu user-mode binary that runs linux/arch programs.
func Emulator(arch string) string {
	name, ok := qemuNames[arch]
	if !ok {
		name = arch
	}
	if name == "" {
		return ""
	}
	return "qemu-" + name + "-static"
}
