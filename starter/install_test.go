package main

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgedrift/drift/internal/repo"
)

// Bad install input is refused before any connection is made.
func TestInstallAndAgentRefuseBadInput(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"install", "run", "--tenant", "acme", "--vm", "vm-1", "--address", "10.0.0.2", "--package", "hello"}, "NAME@VERSION"},
		{[]string{"install", "run", "--tenant", "acme", "--vm", "vm-1", "--address", "nowhere", "--package", "hello@1"}, "not an IP address"},
		{[]string{"install", "run", "--tenant", "acme", "--vm", "vm-1", "--address", "10.0.0.2", "--package", "../x@1"}, "package name"},
		{[]string{"agent", "--gateway", "http://169.254.169.254:8080", "--prefix", t.TempDir(), "--once"}, "link-local"},
		{[]string{"repo", "push", "x.tgz", "--name", "../x", "--version", "1", "--token-file", "/nonexistent"}, "admin token"},
		{[]string{"install", "run", "--tenant", "acme", "--select", "Role=web", "--package", "hello@1"}, "label key"},
		{[]string{"install", "run", "--tenant", "acme", "--select", "role=web", "--package", "hello@^1", "--max-errors", "lots"}, "budget"},
		{[]string{"install", "run", "--tenant", "acme", "--select", "role=web", "--package", "hello@>= x"}, "version range"},
		{[]string{"install", "run", "--tenant", "acme", "--select", "role=web", "--package", "hello@^1", "--action", "reinstall"}, "action"},
		{[]string{"install", "run", "--tenant", "Ünïcode", "--select", "role=web", "--package", "hello@^1"}, "--tenant"},
		{[]string{"install", "run", "--tenant", "acme", "--select", "*", "--package", "hello@1", "--rollout", "../r"}, "rollout name"},
		{[]string{"inventory", "add", "acme", "vm-1", "10.0.0.2", "--label", "role"}, "key=value"},
		{[]string{"inventory", "desire", "--tenant", "acme", "--package", "hello"}, "NAME@RANGE"},
		{[]string{"agent", "--gateway", "http://127.0.0.1:18080", "--prefix", t.TempDir(), "--trust", "/nonexistent.pub", "--once"}, "--trust"},
	} {
		_, err := run(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
}

func TestRepoCommands(t *testing.T) {
	dir := t.TempDir()
	srv, err := repo.New(repo.Options{Dir: filepath.Join(dir, "store"), AdminToken: "tok", Secret: []byte("s")})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	hs := httptest.NewServer(srv)
	defer hs.Close()
	token := filepath.Join(dir, "token")
	os.WriteFile(token, []byte("tok\n"), 0o600)
	pkg := filepath.Join(dir, "hello.tgz")
	os.WriteFile(pkg, []byte("not really a tarball"), 0o600)
	flags := []string{"--repo", hs.URL, "--token-file", token}

	out, err := run(t, append([]string{"repo", "push", pkg, "--name", "hello", "--version", "1.0.0", "--tenants", "acme,globex"}, flags...)...)
	if err != nil || !strings.Contains(out, "pushed hello@1.0.0 (linux/amd64)") {
		t.Fatalf("push: %v\n%s", err, out)
	}
	out, err = run(t, append([]string{"repo", "ls"}, flags...)...)
	if err != nil || !strings.Contains(out, "acme,globex") {
		t.Fatalf("ls: %v\n%s", err, out)
	}
	if _, err := run(t, append([]string{"repo", "push", pkg, "--name", "other", "--version", "1"}, flags...)...); err == nil || !strings.Contains(err.Error(), "public=true or tenants") {
		t.Fatalf("push without visibility: %v", err)
	}
	if out, err := run(t, append([]string{"repo", "rm", "hello", "1.0.0"}, flags...)...); err != nil || !strings.Contains(out, "removed") {
		t.Fatalf("rm: %v\n%s", err, out)
	}
	out, err = run(t, append([]string{"repo", "ls", "--json"}, flags...)...)
	if err != nil || strings.TrimSpace(out) != "[]" {
		t.Fatalf("ls after rm: %v\n%s", err, out)
	}
}
