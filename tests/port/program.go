// Package port ports a real program to loong64 with PortToArch on real
// parts: the embedded Temporal server, the embedded registry, the Go
// module proxy, git and qemu-loongarch64-static.
package port

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The real case of seed 004: bolt v1.3.1 and gopsutil of March 2019 (with
// the x/sys of September 2018 it requires) do not build for loong64.
const programGoMod = `module example.com/sysfacts

go 1.21

require (
	github.com/boltdb/bolt v1.3.1
	github.com/shirou/gopsutil v0.0.0-20190323131628-2cbc9195c892
	golang.org/x/sys v0.0.0-20180909124046-d0be0721c37e
)
`

// programMain prints facts that hold on any Linux host whatever the arch
// (so amd64 and loong64 under qemu print the same), using bolt and the
// host, mem, cpu, disk and net packages of gopsutil.
const programMain = `package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/boltdb/bolt"
	"github.com/shirou/gopsutil/cpu"
	"github.com/shirou/gopsutil/disk"
	"github.com/shirou/gopsutil/host"
	"github.com/shirou/gopsutil/mem"
	"github.com/shirou/gopsutil/net"
)

func main() {
	for _, f := range facts() {
		fmt.Println(f)
	}
}

func facts() []string {
	return []string{boltFact(), hostFact(), memFact(), cpuFact(), diskFact(), netFact()}
}

// boltFact writes a value and reads it back.
func boltFact() string {
	dir, err := os.MkdirTemp("", "sysfacts")
	if err != nil {
		return "bolt: " + err.Error()
	}
	defer os.RemoveAll(dir)
	db, err := bolt.Open(filepath.Join(dir, "facts.db"), 0o600, nil)
	if err != nil {
		return "bolt: " + err.Error()
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte("facts"))
		if err != nil {
			return err
		}
		return b.Put([]byte("answer"), []byte("42"))
	})
	if err != nil {
		return "bolt: " + err.Error()
	}
	var got string
	db.View(func(tx *bolt.Tx) error {
		got = string(tx.Bucket([]byte("facts")).Get([]byte("answer")))
		return nil
	})
	return "bolt roundtrip: " + got
}

func hostFact() string {
	info, err := host.Info()
	if err != nil {
		return "host: " + err.Error()
	}
	return "host os: " + info.OS
}

func memFact() string {
	vm, err := mem.VirtualMemory()
	return fmt.Sprint("memory known: ", err == nil && vm.Total > 0)
}

func cpuFact() string {
	n, err := cpu.Counts(true)
	return fmt.Sprint("cpus known: ", err == nil && n > 0)
}

func diskFact() string {
	ps, err := disk.Partitions(true)
	return fmt.Sprint("partitions known: ", err == nil && len(ps) > 0)
}

func netFact() string {
	ifs, err := net.Interfaces()
	lo := false
	for _, i := range ifs {
		lo = lo || i.Name == "lo"
	}
	return fmt.Sprint("loopback found: ", err == nil && lo)
}
`

const programTest = `package main

import "testing"

func TestFacts(t *testing.T) {
	got := facts()
	want := []string{"bolt roundtrip: 42", "host os: linux", "memory known: true", "cpus known: true", "partitions known: true", "loopback found: true"}
	if len(got) != len(want) {
		t.Fatalf("facts %q", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("fact %d: %q, want %q", i, got[i], want[i])
		}
	}
}
`

// makeProgram writes the program as a git repository with its go.sum
// resolved from the module proxy, and returns its directory.
func makeProgram(t *testing.T) string {
	t.Helper()
	return makeModule(t, "sysfacts", map[string]string{"go.mod": programGoMod, "main.go": programMain, "main_test.go": programTest})
}

// makeModule writes files as the module name, tidied against the module
// proxy and committed in a git repository of its own, and returns its
// directory.
func makeModule(t *testing.T, name string, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for file, src := range files {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run(t, dir, nil, "go", "mod", "download", "all")
	run(t, dir, nil, "go", "mod", "tidy")
	run(t, dir, nil, "git", "init", "-q")
	run(t, dir, nil, "git", "add", "-A")
	run(t, dir, nil, "git", "-c", "user.name=test", "-c", "user.email=test@localhost", "commit", "-q", "-m", "sysfacts")
	return dir
}

// run runs a command in dir (go commands without a workspace or the
// caller's GOFLAGS, so the drift repo is never touched) and returns its
// combined output, failing the test on error.
func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	out, err := runErr(dir, env, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func runErr(dir string, env []string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=", "GOTOOLCHAIN=local")
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}
