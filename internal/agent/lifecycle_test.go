package agent

import (
	"context"
	"crypto/ed25519"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/edgedrift/drift/internal/repo"
)

// versions builds one package per version; each has bin/tool saying its
// version, an install hook, and a health check that fails when the
// version's name says so.
func versions(t *testing.T, vs ...string) (map[string][]byte, map[string]repo.Package) {
	blobs, pkgs := map[string][]byte{}, map[string]repo.Package{}
	for _, v := range vs {
		blobs[v] = tarGz(t,
			file{name: "bin/tool", body: "tool " + v + "\n"},
			file{name: "share/doc/README", body: v},
			file{name: "install.sh", body: "echo hook $DRIFT_ACTION $DRIFT_PREVIOUS\n"},
			file{name: "health.sh", body: "case \"$(cat bin/tool)\" in *bad*) echo unhealthy; exit 1;; esac\n"})
		pkgs[v] = signedPackage(blobs[v], v, "install.sh", "health.sh")
	}
	return blobs, pkgs
}

func do(t *testing.T, a *Agent, action, strategy string, p repo.Package) repo.Report {
	t.Helper()
	return a.Install(context.Background(), repo.Instruction{ID: action + p.Version, Action: action, Strategy: strategy, Package: p})
}

func live(t *testing.T, a *Agent) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(a.Prefix, "tool", "current", "bin", "tool"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func onDisk(t *testing.T, a *Agent) []string {
	t.Helper()
	entries, _ := os.ReadDir(filepath.Join(a.Prefix, "tool"))
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// Install adds a version beside the live one; update in place switches and
// removes the old; a failing health check leaves the live version live and
// nothing of the new one; replace uninstalls first.
func TestLifecycleAB(t *testing.T) {
	blobs, pkgs := versions(t, "1.0.0", "1.1.0", "1.2.0-bad", "2.0.0")
	g := &fakeGateway{blobs: blobs}
	a := newAgent(t, g)

	if r := do(t, a, repo.ActionInstall, "", pkgs["1.0.0"]); !r.OK || r.Current != "1.0.0" || !strings.Contains(r.HookOutput, "hook install") {
		t.Fatalf("install: %+v", r)
	}
	if r := do(t, a, repo.ActionInstall, "", pkgs["1.1.0"]); !r.OK || r.Current != "1.1.0" || !strings.Contains(r.HookOutput, "hook install 1.0.0") {
		t.Fatalf("second install: %+v", r)
	}
	if got := onDisk(t, a); !slices.Equal(got, []string{"1.0.0", "1.1.0", "current"}) {
		t.Fatalf("install keeps both: %v", got)
	}
	if live(t, a) != "tool 1.1.0" {
		t.Fatalf("live %q", live(t, a))
	}

	r := do(t, a, repo.ActionUpdate, repo.StrategyInPlace, pkgs["1.2.0-bad"])
	if r.OK || r.Current != "1.1.0" || !strings.Contains(r.Error, "health check health.sh") || !strings.Contains(r.Error, "1.1.0 stays live") || r.Transient {
		t.Fatalf("unhealthy update: %+v", r)
	}
	if live(t, a) != "tool 1.1.0" || slices.Contains(onDisk(t, a), "1.2.0-bad") {
		t.Fatalf("after a failed health check: live %q, on disk %v", live(t, a), onDisk(t, a))
	}

	r = do(t, a, repo.ActionUpdate, repo.StrategyInPlace, pkgs["2.0.0"])
	if !r.OK || r.Current != "2.0.0" || r.Removed != 8 {
		t.Fatalf("update in place: %+v", r)
	}
	if got := onDisk(t, a); !slices.Equal(got, []string{"2.0.0", "current"}) {
		t.Fatalf("update leaves %v", got)
	}
	if len(r.Installed) != 1 || r.Installed[0].Version != "2.0.0" || !slices.Equal(r.Installed[0].Versions, []string{"2.0.0"}) {
		t.Fatalf("inventory %+v", r.Installed)
	}
	fetched := g.fetched
	if r := do(t, a, repo.ActionUpdate, repo.StrategyInPlace, pkgs["2.0.0"]); !r.OK || g.fetched != fetched {
		t.Fatalf("the live version again: %+v, fetched %d more", r, g.fetched-fetched)
	}

	r = do(t, a, repo.ActionUpdate, repo.StrategyReplace, pkgs["1.0.0"])
	if !r.OK || r.Current != "1.0.0" || r.Removed != 4 || !slices.Equal(onDisk(t, a), []string{"1.0.0", "current"}) {
		t.Fatalf("replace: %+v on disk %v", r, onDisk(t, a))
	}
}

// Uninstall removes exactly the files the agent unpacked: what a hook or a
// user made stays, and is named.
func TestUninstallRemovesExactlyWhatWasInstalled(t *testing.T) {
	blobs, pkgs := versions(t, "1.0.0", "1.1.0")
	a := newAgent(t, &fakeGateway{blobs: blobs})
	do(t, a, repo.ActionInstall, "", pkgs["1.0.0"])
	do(t, a, repo.ActionInstall, "", pkgs["1.1.0"])
	mine := filepath.Join(a.Prefix, "tool", "1.1.0", "share", "notes.txt")
	if err := os.WriteFile(mine, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	beside := filepath.Join(a.Prefix, "other.txt")
	os.WriteFile(beside, []byte("not drift's"), 0o644)

	r := do(t, a, repo.ActionUninstall, "", repo.Package{Ref: repo.Ref{Name: "tool", Version: "1.0.0", Platform: "linux/amd64"}})
	if !r.OK || r.Removed != 4 || r.Current != "1.1.0" || live(t, a) != "tool 1.1.0" {
		t.Fatalf("uninstall of the old version: %+v", r)
	}
	r = do(t, a, repo.ActionUninstall, "", repo.Package{Ref: repo.Ref{Name: "tool", Platform: "linux/amd64"}})
	if !r.OK || r.Removed != 4 || r.Current != "" || len(r.Installed) != 0 || !strings.Contains(r.HookOutput, "tool/1.1.0/share/notes.txt") {
		t.Fatalf("uninstall: %+v", r)
	}
	if got := installed(t, a.Prefix); !slices.Equal(got, []string{beside, mine}) {
		t.Fatalf("left %v", got)
	}
	if _, err := os.Lstat(filepath.Join(a.Prefix, "tool", "current")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("current link left: %v", err)
	}
	if r := do(t, a, repo.ActionUninstall, "", repo.Package{Ref: repo.Ref{Name: "tool", Platform: "linux/amd64"}}); !r.OK || r.Removed != 0 {
		t.Fatalf("uninstall of nothing: %+v", r)
	}
}

// Only what a trusted key signed is fetched and unpacked.
func TestUnsignedOrTamperedPackagesAreRefused(t *testing.T) {
	blob := tarGz(t, file{name: "bin/tool", body: "x"})
	good := signedPackage(blob, "1", "", "")
	_, other, _ := ed25519.GenerateKey(nil)
	for name, p := range map[string]repo.Package{
		"unsigned": func() repo.Package { p := good; p.Signatures = nil; return p }(),
		"untrusted key": func() repo.Package {
			p := good
			p.Signatures = []repo.Signature{repo.SignPackage(other, repo.ByPublisher, p)}
			return p
		}(),
		"hook added":   func() repo.Package { p := good; p.Hook = "bin/tool"; return p }(),
		"another blob": func() repo.Package { p := good; p.SHA256 = digestOf([]byte("evil")); return p }(),
		"garbage signature": func() repo.Package {
			p := good
			p.Signatures = []repo.Signature{{KeyID: good.Signatures[0].KeyID, By: repo.ByRepository, Sig: "!!"}}
			return p
		}(),
	} {
		t.Run(name, func(t *testing.T) {
			g := &fakeGateway{blob: blob, announce: good.SHA256}
			a := newAgent(t, g)
			r := a.Install(context.Background(), repo.Instruction{ID: "i", Package: p})
			if r.OK || r.Transient || !strings.Contains(r.Error, "not signed by a trusted key") || !strings.Contains(r.Error, "nothing installed") {
				t.Fatalf("report %+v", r)
			}
			if g.fetched != 0 {
				t.Fatalf("fetched %d blobs of an unverified package", g.fetched)
			}
			if got := installed(t, a.Prefix); len(got) != 0 {
				t.Fatalf("installed %v", got)
			}
		})
	}
	// A body longer than the signed size is cut and refused.
	g := &fakeGateway{blob: append(append([]byte{}, blob...), 'x'), announce: good.SHA256}
	a := newAgent(t, g)
	if r := a.Install(context.Background(), repo.Instruction{ID: "i", Package: good}); r.OK || !strings.Contains(r.Error, "signed entry says") {
		t.Fatalf("longer body: %+v", r)
	}
}

// The agent registers once, from its source address, with what it has;
// without a trusted key it does not start.
func TestRegistersOnFirstContact(t *testing.T) {
	blobs, pkgs := versions(t, "1.0.0")
	g := &fakeGateway{blobs: blobs}
	a := newAgent(t, g)
	do(t, a, repo.ActionInstall, "", pkgs["1.0.0"])
	a.Name, a.Labels, a.Source = "vm-7", map[string]string{"role": "web"}, "127.0.0.7"
	if err := a.Check(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := a.Once(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if len(g.registrations) != 1 {
		t.Fatalf("registered %d times", len(g.registrations))
	}
	reg := g.registrations[0]
	if reg.Name != "vm-7" || reg.Labels["role"] != "web" || len(reg.Installed) != 1 || reg.Installed[0].Version != "1.0.0" {
		t.Fatalf("registration %+v", reg)
	}
	if last := g.remotes[len(g.remotes)-1]; last != "127.0.0.7" {
		t.Fatalf("connected from %s", last)
	}
	if err := (&Agent{Gateway: "http://127.0.0.1:1", Prefix: t.TempDir()}).Check(); !errors.Is(err, ErrNoTrust) {
		t.Fatalf("no trusted key: %v", err)
	}
}

// A registration the inventory refuses (409, 400) is not sent again every
// round; one that could not be delivered (503) is.
func TestRefusedRegistrationIsNotRepeated(t *testing.T) {
	for code, want := range map[int]int{http.StatusConflict: 1, http.StatusBadRequest: 1, http.StatusServiceUnavailable: 3} {
		g := &fakeGateway{registerCode: code}
		a := newAgent(t, g)
		a.Name = "vm-7"
		for i := 0; i < 3; i++ {
			if _, err := a.Once(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		if len(g.registrations) != want {
			t.Errorf("%d: registered %d times, want %d", code, len(g.registrations), want)
		}
	}
}
