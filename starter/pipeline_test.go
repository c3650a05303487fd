package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Bad specs are refused before anything connects to Temporal.
func TestPipelineRunRejectsBadInputLocally(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("app: hello\nrepo: x\n"), 0o644)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"pipeline", "run"}, "-f SPEC is required"},
		{[]string{"pipeline", "run", "-f", filepath.Join(t.TempDir(), "none.yaml")}, "no such file"},
		{[]string{"pipeline", "run", "-f", bad}, "build.commands is empty"},
		{[]string{"pipeline", "run", "-f", "../deploy/examples/pipeline.yaml", "-t", bad}, "topology"},
		{[]string{"pipeline", "approve", "hello"}, "accepts 2 arg(s)"},
	} {
		_, err := run(t, append(c.args, "--address", "127.0.0.1:1")...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("drift %v: %v, want %q", c.args, err, c.want)
		}
	}
}

func TestAbsRepo(t *testing.T) {
	wd, _ := os.Getwd()
	for in, want := range map[string]string{
		"https://example.com/a.git": "https://example.com/a.git",
		"git@example.com:a.git":     "git@example.com:a.git",
		"file:///srv/a.git":         "file:///srv/a.git",
		"repos/a.git":               filepath.Join(wd, "repos/a.git"),
	} {
		if got, err := absRepo(in); err != nil || got != want {
			t.Errorf("absRepo(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
