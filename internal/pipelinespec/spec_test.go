package pipelinespec

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgedrift/drift/deploy/examples"
)

const valid = `
app: hello
repo: file:///tmp/hello.git
ref: main
build:
  env: {CGO_ENABLED: "0"}
  commands: ["go build -o out/hello ."]
test:
  commands: ["go test ./..."]
artifacts: [out/hello]
image:
  name: hello
  platforms: [linux/amd64, linux/loong64]
deploy:
  health: /healthz
  targets:
    - cloud: fog-north
    - cloud: edge-latin
      approval: true
      verify: ready
`

func TestParseFillsDefaults(t *testing.T) {
	s, err := Parse([]byte(valid), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Image.Entrypoint; len(got) != 1 || got[0] != "/hello" {
		t.Errorf("entrypoint %v, want [/hello]", got)
	}
	if s.Deploy.App.Name != "hello" || s.Deploy.App.Port != 8080 || s.Deploy.App.Health != "/healthz" {
		t.Errorf("app %+v", s.Deploy.App)
	}
	if s.Deploy.RolloutTimeout != DefaultRolloutTimeout || s.Deploy.ApprovalTimeout != DefaultApprovalTimeout {
		t.Errorf("timeouts %v %v", s.Deploy.RolloutTimeout, s.Deploy.ApprovalTimeout)
	}
	if s.Deploy.Targets[0].Verify != VerifyHTTP || s.Deploy.Targets[1].Verify != VerifyReady {
		t.Errorf("verify %+v", s.Deploy.Targets)
	}
	if !s.NeedsApproval() {
		t.Error("a target asks for approval")
	}
	if got := s.Platforms(); len(got) != 2 || got[1] != (Platform{"linux", "loong64"}) {
		t.Errorf("platforms %v", got)
	}
}

func TestParseRejects(t *testing.T) {
	cases := []struct {
		name, from, to, want string
	}{
		{"unknown field", "ref: main", "ref: main\nbranch: x", "field branch not found"},
		{"missing repo", "repo: file:///tmp/hello.git", "repo: ''", "repo is missing"},
		{"option as repo", "repo: file:///tmp/hello.git", "repo: --upload-pack=x", "may not start with '-'"},
		{"bad ref", "ref: main", "ref: 'a b'", `ref "a b"`},
		{"no build", `commands: ["go build -o out/hello ."]`, "commands: []", "build.commands is empty"},
		{"bad app", "app: hello", "app: Hello_World", `app "Hello_World"`},
		{"artifact outside", "artifacts: [out/hello]", "artifacts: [../hello]", "inside the checkout"},
		{"absolute artifact", "artifacts: [out/hello]", "artifacts: [/bin/sh]", "inside the checkout"},
		{"image with tag", "name: hello", "name: hello:v1", "without tag or digest"},
		{"invalid image name", "name: hello", "name: 'Hello World'", `image.name "Hello World"`},
		{"base without registry", "name: hello", "name: hello\n  base: debian:12", `image.base "debian:12"`},
		{"base without tag", "name: hello", "name: hello\n  base: 127.0.0.1:5000/base", `image.base "127.0.0.1:5000/base"`},
		{"bad platform", "linux/loong64]", "loong64]", `platform "loong64"`},
		{"no targets", "  targets:\n    - cloud: fog-north\n    - cloud: edge-latin\n      approval: true\n      verify: ready\n", "  targets: []\n", "deploy.targets is empty"},
		{"twice", "cloud: edge-latin", "cloud: fog-north", "target fog-north is listed twice"},
		{"bad verify", "verify: ready", "verify: ping", `verify "ping"`},
		{"bad env", "CGO_ENABLED", "1X", `bad variable name "1X"`},
		{"compose unreadable", "deploy:\n", "deploy:\n  compose: c.yaml\n", "cannot be read here"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(valid, c.from) {
				t.Fatalf("test case does not apply: %q not in the spec", c.from)
			}
			_, err := Parse([]byte(strings.Replace(valid, c.from, c.to, 1)), nil)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an ErrInvalid mentioning %q", err, c.want)
			}
		})
	}
}

func TestComposeIsTheOrchestrationInfo(t *testing.T) {
	dir := t.TempDir()
	compose := `services:
  hello:
    image: placeholder.invalid/hello:v1
    ports: ["9090:9090"]
    environment: {GREETING: bonjour}
    healthcheck:
      test: ["CMD", "wget", "-q", "http://localhost:9090/ready"]
`
	spec := strings.Replace(valid, "  health: /healthz\n", "  compose: compose.yaml\n  env: {EXTRA: \"1\"}\n", 1)
	os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(compose), 0o644)
	os.WriteFile(filepath.Join(dir, "pipeline.yaml"), []byte(spec), 0o644)
	s, err := Load(filepath.Join(dir, "pipeline.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	app := s.Deploy.App
	if app.Port != 9090 || app.Health != "/ready" || app.Env["GREETING"] != "bonjour" || app.Env["EXTRA"] != "1" {
		t.Fatalf("app from compose %+v", app)
	}
	if s.Image.Ports[0] != 9090 {
		t.Errorf("image ports %v, want the compose port", s.Image.Ports)
	}
}

func TestBuildKey(t *testing.T) {
	s, err := Parse([]byte(valid), nil)
	if err != nil {
		t.Fatal(err)
	}
	k := s.BuildKey("tree1")
	if k != s.BuildKey("tree1") {
		t.Fatal("the key is not stable")
	}
	if k == s.BuildKey("tree2") {
		t.Error("another tree gives the same key")
	}
	changed := s
	changed.Build.Commands = []string{"go build -race -o out/hello ."}
	if k == changed.BuildKey("tree1") {
		t.Error("another build command gives the same key")
	}
	moved := s
	moved.Deploy.Targets = nil
	moved.Deploy.RolloutTimeout = time.Hour
	if k != moved.BuildKey("tree1") {
		t.Error("deploy settings change the build key")
	}
}

func TestExampleSpecIsValid(t *testing.T) {
	s, err := Parse(examples.Pipeline, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.App != "hello" || len(s.Image.Platforms) != 2 {
		t.Fatalf("example spec %+v", s)
	}
}
