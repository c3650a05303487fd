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

// The counter example releases a compose project: one image per service
// with a build section, the deploy from the compose file.
func TestCounterSpecIsAProject(t *testing.T) {
	s, err := Parse(examples.CounterPipeline, examples.ReadFile)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Deploy.App.IsProject() || s.Deploy.App.Name != "counter" || len(s.Deploy.App.Services) != 2 {
		t.Fatalf("deploy app %+v", s.Deploy.App)
	}
	imgs := s.ImageSpecs()
	if len(imgs) != 2 || imgs[0].Service != "web" || imgs[1].Service != "store" ||
		imgs[0].Entrypoint[0] != "/web" || imgs[1].Entrypoint[0] != "/store" || imgs[0].Ports[0] != 8080 || imgs[1].Ports[0] != 8081 {
		t.Errorf("images %+v", imgs)
	}
	if got := s.Platforms(); len(got) != 2 || got[0] != (Platform{"linux", "amd64"}) || got[1] != (Platform{"linux", "loong64"}) {
		t.Errorf("platforms %v (each once)", got)
	}
	one, err := Parse(examples.Pipeline, nil)
	if err != nil {
		t.Fatal(err)
	}
	if imgs := one.ImageSpecs(); len(imgs) != 1 || imgs[0].Service != "" || imgs[0].Name != "hello" || imgs[0].Artifacts[0] != "out/hello" {
		t.Errorf("the one-image form's ImageSpecs %+v", imgs)
	}
	if s.BuildKey("t") == one.BuildKey("t") {
		t.Error("two specs, one build key")
	}
}

// The build key of a one-image spec is what it was before images: existed,
// so earlier builds are still found and reused.
func TestOneImageBuildKeyUnchanged(t *testing.T) {
	s, err := Parse(examples.Pipeline, nil)
	if err != nil {
		t.Fatal(err)
	}
	// From the code of c946075.
	if got := s.BuildKey("4b825dc642cb6eb9a060e54bf8d69288fbee4904"); got != "0374d3691183025c3d81df1ce9c88f73720f2572362ffbac7571ea6f4cadfdda" {
		t.Errorf("BuildKey = %s", got)
	}
}

func TestProjectSpecRejects(t *testing.T) {
	files := func(compose string) func(string) ([]byte, error) {
		return func(string) ([]byte, error) { return []byte(compose), nil }
	}
	counter := string(examples.CounterPipeline)
	compose := string(examples.CounterCompose)
	cases := []struct {
		name, spec, compose, want string
	}{
		{"a build service without an image", strings.Replace(counter, "  - service: store\n    name: counter-store\n    artifacts: [out/store]\n    platforms: [linux/amd64, linux/loong64]\n", "", 1), compose,
			"compose service store has a build section but no image under images:"},
		{"an image for no service", strings.Replace(counter, "service: store", "service: db", 1), compose,
			"images: service db is not a service of the compose file"},
		{"a service listed twice", strings.Replace(counter, "service: store", "service: web", 1), compose, "service web is listed twice"},
		{"both forms", strings.Replace(counter, "images:\n", "artifacts: [out/web]\nimages:\n", 1), compose, "exclude each other"},
		{"deploy overrides", strings.Replace(counter, "  rolloutTimeout: 2m\n", "  rolloutTimeout: 2m\n  health: /x\n", 1), compose, "set per service in the compose file"},
		{"an image without artifacts", strings.Replace(counter, "    artifacts: [out/store]\n", "", 1), compose, "images[store]: artifacts is empty"},
		{"a project released as one image", `
app: counter
repo: file:///tmp/counter.git
ref: main
build: {commands: ["go build ./..."]}
artifacts: [out/web]
image: {name: counter, platforms: [linux/amd64]}
deploy:
  compose: compose.yaml
  targets: [{cloud: fog-north}]
`, compose, "list one image per service with a build section under images:"},
		{"a cyclic compose file", counter, strings.Replace(compose, "    expose: [\"8081\"]\n", "    expose: [\"8081\"]\n    depends_on: [web]\n", 1), "cycle"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.spec), files(c.compose))
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an ErrInvalid mentioning %q", err, c.want)
			}
		})
	}
}
