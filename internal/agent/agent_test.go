package agent

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/edgedrift/drift/internal/netns"
	"github.com/edgedrift/drift/internal/repo"
)

type file struct {
	name, body string
	typ        byte
	link       string
}

func tarGz(t *testing.T, files ...file) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, f := range files {
		typ := f.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o755, Size: int64(len(f.body)), Typeflag: typ, Linkname: f.link})
		tw.Write([]byte(f.body))
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

func TestUnpackRefusesEscapes(t *testing.T) {
	for name, f := range map[string]file{
		"dotdot":   {name: "../x", body: "x"},
		"deep":     {name: "a/../../x", body: "x"},
		"absolute": {name: "/tmp/x", body: "x"},
		"symlink":  {name: "l", typ: tar.TypeSymlink, link: "/etc/passwd"},
		"hardlink": {name: "h", typ: tar.TypeLink, link: "../x"},
		"device":   {name: "d", typ: tar.TypeChar},
	} {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			archive := filepath.Join(root, "p.tgz")
			os.WriteFile(archive, tarGz(t, file{name: "ok", body: "ok"}, f), 0o600)
			dir := filepath.Join(root, "a", "b")
			os.MkdirAll(dir, 0o755)
			if _, err := Unpack(archive, dir); err == nil {
				t.Fatal("accepted")
			}
			for _, p := range []string{filepath.Join(root, "x"), filepath.Join(root, "a", "x")} {
				if _, err := os.Lstat(p); err == nil {
					t.Fatalf("%s written outside the install dir", p)
				}
			}
		})
	}
}

// fakeGateway serves packages (blob for any version, or blobs by version)
// and records what the agent sent.
type fakeGateway struct {
	blob          []byte
	announce      string
	blobs         map[string][]byte // by version
	mu            sync.Mutex
	reports       []repo.Report
	registrations []repo.Registration
	fetched       int
	remotes       []string
	registerCode  int // answer to /v1/register (0: 200)
}

func (g *fakeGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	defer g.mu.Unlock()
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	g.remotes = append(g.remotes, host)
	switch {
	case strings.HasSuffix(r.URL.Path, "/blob"):
		g.fetched++
		blob, announce := g.blob, g.announce
		if b, ok := g.blobs[strings.Split(r.URL.Path, "/")[4]]; ok {
			blob, announce = b, digestOf(b)
		}
		w.Header().Set(repo.HeaderSHA256, announce)
		w.Write(blob)
	case r.URL.Path == "/v1/reports":
		var rep repo.Report
		json.NewDecoder(r.Body).Decode(&rep)
		g.reports = append(g.reports, rep)
		w.WriteHeader(http.StatusAccepted)
	case r.URL.Path == "/v1/register":
		var reg repo.Registration
		json.NewDecoder(r.Body).Decode(&reg)
		g.registrations = append(g.registrations, reg)
		if g.registerCode != 0 {
			http.Error(w, "vm-7 is at 10.0.0.2", g.registerCode)
		}
	case r.URL.Path == "/v1/instructions":
		w.Write([]byte("[]"))
	default:
		http.NotFound(w, r)
	}
}

// testKey is the key the test agents trust.
var testKey = func() ed25519.PrivateKey {
	_, k, _ := ed25519.GenerateKey(rand.Reader)
	return k
}()

// signedPackage is version of tool with blob's digest, signed by testKey.
func signedPackage(blob []byte, version, hook, health string) repo.Package {
	p := repo.Package{Ref: repo.Ref{Name: "tool", Version: version, Platform: "linux/amd64"}, SHA256: digestOf(blob), Size: int64(len(blob)), Hook: hook, Health: health}
	p.Signatures = []repo.Signature{repo.SignPackage(testKey, repo.ByRepository, p)}
	return p
}

func instruction(blob []byte, hook string) repo.Instruction {
	return repo.Instruction{ID: "i#1", Package: signedPackage(blob, "1", hook, "")}
}

func newAgent(t *testing.T, g *fakeGateway) *Agent {
	hs := httptest.NewServer(g)
	t.Cleanup(hs.Close)
	a := &Agent{Gateway: hs.URL, Prefix: filepath.Join(t.TempDir(), "prefix"), Trusted: []ed25519.PublicKey{testKey.Public().(ed25519.PublicKey)}}
	if err := a.Check(); err != nil {
		t.Fatal(err)
	}
	return a
}

func installed(t *testing.T, prefix string) []string {
	var out []string
	filepath.WalkDir(prefix, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.Contains(p, "/.drift/") {
			out = append(out, p)
		}
		return nil
	})
	return out
}

func TestInstallRunsHook(t *testing.T) {
	blob := tarGz(t, file{name: "bin/tool", body: "#!/bin/sh\n"}, file{name: "setup.sh", body: "echo done > \"$DRIFT_PREFIX/proof\"\n"})
	in := instruction(blob, "setup.sh")
	a := newAgent(t, &fakeGateway{blob: blob, announce: in.Package.SHA256})
	rep := a.Install(context.Background(), in)
	if !rep.OK || rep.Files != 2 || rep.Dir != filepath.Join(a.Prefix, "tool", "1") || rep.Current != "1" {
		t.Fatalf("report %+v", rep)
	}
	if b, _ := os.ReadFile(filepath.Join(a.Prefix, "proof")); string(b) != "done\n" {
		t.Fatalf("hook proof %q", b)
	}
}

func TestChecksumMismatchInstallsNothing(t *testing.T) {
	blob := tarGz(t, file{name: "bin/tool", body: "x"})
	in := instruction(blob, "")
	tampered := append([]byte{}, blob...)
	tampered[len(tampered)/2] ^= 0xff
	for name, g := range map[string]*fakeGateway{
		"announced digest matches the pin, body does not": {blob: tampered, announce: in.Package.SHA256},
		"body and announced digest agree, pin does not":   {blob: tampered, announce: digestOf(tampered)},
	} {
		t.Run(name, func(t *testing.T) {
			a := newAgent(t, g)
			rep := a.Install(context.Background(), in)
			if rep.OK || !strings.Contains(rep.Error, "sha256 mismatch") || !rep.Transient {
				t.Fatalf("report %+v", rep)
			}
			if got := installed(t, a.Prefix); len(got) != 0 {
				t.Fatalf("installed %v", got)
			}
		})
	}
}

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestFailingHookRemovesThePackage(t *testing.T) {
	blob := tarGz(t, file{name: "bin/tool", body: "x"}, file{name: "setup.sh", body: "exit 3\n"})
	in := instruction(blob, "setup.sh")
	a := newAgent(t, &fakeGateway{blob: blob, announce: in.Package.SHA256})
	rep := a.Install(context.Background(), in)
	if rep.OK || rep.Transient || !strings.Contains(rep.Error, "exit status 3") {
		t.Fatalf("report %+v", rep)
	}
	if got := installed(t, a.Prefix); len(got) != 0 {
		t.Fatalf("left %v", got)
	}
}

// In the host's namespace the agent refuses the metadata address before
// sending anything.
func TestAgentRefusesLinkLocalGatewayOnHost(t *testing.T) {
	a := &Agent{Gateway: "http://169.254.169.254:8080", Prefix: t.TempDir(), Trusted: []ed25519.PublicKey{testKey.Public().(ed25519.PublicKey)}}
	if err := a.Check(); !errors.Is(err, netns.ErrHostLinkLocal) {
		t.Fatalf("check: %v", err)
	}
	if _, err := a.Once(context.Background()); !errors.Is(err, netns.ErrHostLinkLocal) {
		t.Fatalf("once: %v", err)
	}
}
