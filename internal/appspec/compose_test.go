package appspec

import (
	"errors"
	"maps"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/edgedrift/drift/internal/runtime"
)

func TestFromComposeHelloExample(t *testing.T) {
	data, err := os.ReadFile("testdata/hello-compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := AppSpec{
		Name:     "hello",
		Image:    "127.0.0.1:5000/hello:v1",
		Port:     8080,
		Env:      map[string]string{"GREETING": "hello from drift", "LOG_LEVEL": "info"},
		Command:  []string{"/hello"},
		Health:   "/healthz",
		Replicas: 2,
		Hostname: "hello",
		Ports:    []Port{{Target: 8080, Published: "8080", HostIP: "127.0.0.1", Protocol: "tcp"}},
		Volumes:  []Volume{{Type: "volume", Source: "hello-data", Target: "/data"}},
		Networks: []string{"edge"},
	}
	for _, service := range []string{"", "hello"} {
		got, err := FromCompose(data, service)
		if err != nil {
			t.Fatalf("FromCompose(%q): %v", service, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("FromCompose(%q) =\n%#v\nwant\n%#v", service, got, want)
		}
	}
}

func TestFromCompose(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		service string
		env     map[string]string
		want    AppSpec
	}{{
		name: "short port, env list form, curl shell healthcheck, shell command",
		yaml: `
services:
  hello:
    image: 127.0.0.1:5000/hello:v1
    ports: ["8080"]
    environment:
      - GREETING=hi there
      - EMPTY=
    command: /hello -v
    healthcheck:
      test: curl -fsS http://localhost:8080/ready || exit 1
`,
		want: AppSpec{
			Name: "hello", Image: "127.0.0.1:5000/hello:v1", Port: 8080,
			Env:     map[string]string{"GREETING": "hi there", "EMPTY": ""},
			Command: []string{"/hello", "-v"}, Health: "/ready",
			Ports: []Port{{Target: 8080, Protocol: "tcp"}},
		},
	}, {
		name: "entrypoint and command join, target-only long port syntax, scale",
		yaml: `
services:
  web:
    image: registry.example/team/web@sha256:0123456789012345678901234567890123456789012345678901234567890123
    entrypoint: ["/bin/web"]
    command: ["-addr", ":9000"]
    ports:
      - target: 9000
    scale: 3
`,
		want: AppSpec{
			Name: "web", Image: "registry.example/team/web@sha256:0123456789012345678901234567890123456789012345678901234567890123",
			Port: 9000, Command: []string{"/bin/web", "-addr", ":9000"}, Replicas: 3,
			Ports: []Port{{Target: 9000, Protocol: "tcp"}},
		},
	}, {
		name: "expose only, udp skipped, health label without slash",
		yaml: `
services:
  hello:
    image: 127.0.0.1:5000/hello:v1
    ports: ["5353:5353/udp"]
    expose: ["7000", "7001-7002/tcp"]
    labels:
      drift.health: status
`,
		want: AppSpec{
			Name: "hello", Image: "127.0.0.1:5000/hello:v1", Port: 7000, Health: "/status",
			Ports: []Port{
				{Target: 5353, Published: "5353", Protocol: "udp"},
				{Target: 7000}, {Target: 7001, Protocol: "tcp"}, {Target: 7002, Protocol: "tcp"},
			},
		},
	}, {
		name: "drift.port label picks a later port; a non-HTTP healthcheck is a TCP probe",
		yaml: `
services:
  hello:
    image: 127.0.0.1:5000/hello:v1
    ports: ["9100:9100", "8080:8080"]
    labels: ["drift.port=8080"]
    healthcheck:
      test: ["CMD", "/hello", "-check"]
`,
		want: AppSpec{
			Name: "hello", Image: "127.0.0.1:5000/hello:v1", Port: 8080, Probe: runtime.ProbeTCP,
			Ports: []Port{{Target: 9100, Published: "9100", Protocol: "tcp"}, {Target: 8080, Published: "8080", Protocol: "tcp"}},
		},
	}, {
		name: "drift.port alone declares the port; a probe of another port is a TCP probe",
		yaml: `
services:
  hello:
    image: 127.0.0.1:5000/hello:v1
    labels:
      drift.port: "8080"
    healthcheck:
      test: ["CMD", "wget", "-qO-", "http://localhost:9000/metrics"]
`,
		want: AppSpec{Name: "hello", Image: "127.0.0.1:5000/hello:v1", Port: 8080, Probe: runtime.ProbeTCP},
	}, {
		name: "given variables: interpolation, defaults and environment without value",
		yaml: `
services:
  hello:
    image: 127.0.0.1:5000/hello:${TAG}
    ports: ["${PORT:-8080}"]
    environment:
      - TOKEN
      - MODE_UNUSED_DEFAULT=${MODE:-dev}
`,
		env: map[string]string{"TAG": "v2", "TOKEN": "s3cret"},
		want: AppSpec{
			Name: "hello", Image: "127.0.0.1:5000/hello:v2", Port: 8080,
			Env:   map[string]string{"TOKEN": "s3cret", "MODE_UNUSED_DEFAULT": "dev"},
			Ports: []Port{{Target: 8080, Protocol: "tcp"}},
		},
	}, {
		name: "map form without value, given",
		yaml: `
services:
  hello:
    image: 127.0.0.1:5000/hello:v1
    ports: ["8080"]
    environment:
      TOKEN:
      ESCAPED: "$$HOME"
`,
		env: map[string]string{"TOKEN": "t"},
		want: AppSpec{
			Name: "hello", Image: "127.0.0.1:5000/hello:v1", Port: 8080,
			Env:   map[string]string{"TOKEN": "t", "ESCAPED": "$HOME"},
			Ports: []Port{{Target: 8080, Protocol: "tcp"}},
		},
	}, {
		name:    "named service among several; extends in the same file; profile service by name",
		service: "api",
		yaml: `
services:
  base:
    image: 127.0.0.1:5000/base:v1
    ports: ["80"]
    environment: {FROM_BASE: "1"}
  api:
    extends: base
    image: 127.0.0.1:5000/api:v1
    ports: ["8081:8081"]
    labels: {drift.port: "8081"}
    profiles: [extra]
    hostname: api-0
    volumes: ["api-conf:/etc/api:ro"]
    networks: [back, front]
networks:
  back: {}
  front: {}
volumes:
  api-conf: {}
`,
		want: AppSpec{
			Name: "api", Image: "127.0.0.1:5000/api:v1", Port: 8081, Hostname: "api-0",
			Env:      map[string]string{"FROM_BASE": "1"},
			Ports:    []Port{{Target: 80, Protocol: "tcp"}, {Target: 8081, Published: "8081", Protocol: "tcp"}},
			Volumes:  []Volume{{Type: "volume", Source: "api-conf", Target: "/etc/api", ReadOnly: true}},
			Networks: []string{"back", "front"},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FromComposeEnv([]byte(tt.yaml), tt.service, tt.env)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got\n%#v\nwant\n%#v", got, tt.want)
			}
		})
	}
}

func TestFromComposeErrors(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		service string
		env     map[string]string
		want    []string // substrings of the error
	}{
		{"empty file", "  \n", "", nil, []string{"empty"}},
		{"not a mapping", "[1, 2]\n", "", nil, []string{"mapping"}},
		{"malformed YAML", "services:\n  hello:\n    image: x\n   ports: [8080]\n", "", nil, []string{"compose.yaml", "line 3"}},
		{"tab indentation", "services:\n  hello:\n\timage: x\n", "", nil, []string{"line 3"}},
		{"duplicate key", "services:\n  hello:\n    image: x\n    image: y\n", "", nil, []string{"line 4"}},
		{"unknown attribute", "services:\n  hello:\n    image: 127.0.0.1:5000/hello:v1\n    portz: [8080]\n", "", nil, []string{"portz"}},
		{"no services", "services: {}\n", "", nil, []string{"no service"}},
		{"no image", "services:\n  hello:\n    ports: [\"8080\"]\n", "", nil, []string{"hello", "image"}},
		{"no port", "services:\n  hello:\n    image: 127.0.0.1:5000/hello:v1\n", "", nil, []string{"no port"}},
		{"only udp ports", "services:\n  hello:\n    image: 127.0.0.1:5000/hello:v1\n    ports: [\"53:53/udp\"]\n", "", nil, []string{"no port"}},
		{"several services, no project name nor published port", "services:\n  a:\n    image: 127.0.0.1:5000/a:v1\n    expose: [\"80\"]\n  b:\n    image: 127.0.0.1:5000/b:v1\n    expose: [\"80\"]\n", "", nil, []string{"needs a top-level name:", "no service publishes a port", "drift.serve"}},
		{"unknown service", "services:\n  a:\n    image: 127.0.0.1:5000/a:v1\n    ports: [\"80\"]\n", "web", nil, []string{`no service "web"`, "it has: a"}},
		{"image without registry", "services:\n  hello:\n    image: hello:v1\n    ports: [\"8080\"]\n", "", nil, []string{"hello:v1", "registry"}},
		{"image with bad tag", "services:\n  hello:\n    image: \"127.0.0.1:5000/hello:bad tag\"\n    ports: [\"8080\"]\n", "", nil, []string{"invalid image reference"}},
		{"invalid app name", "services:\n  Hello_App:\n    image: 127.0.0.1:5000/hello:v1\n    ports: [\"8080\"]\n", "", nil, []string{`app name "Hello_App"`, "DNS-1035"}},
		{"environment without value", "services:\n  hello:\n    image: 127.0.0.1:5000/hello:v1\n    ports: [\"8080\"]\n    environment: [TOKEN, OTHER]\n", "", nil, []string{"OTHER, TOKEN have no value"}},
		{"unset variable", "services:\n  hello:\n    image: 127.0.0.1:5000/hello:${TAG}\n    ports: [\"8080\"]\n", "", nil, []string{"variable TAG is not set"}},
		{"required variable", "services:\n  hello:\n    image: 127.0.0.1:5000/hello:${TAG:?tag needed}\n    ports: [\"8080\"]\n", "", nil, []string{"tag needed"}},
		{"env_file", "services:\n  hello:\n    image: 127.0.0.1:5000/hello:v1\n    ports: [\"8080\"]\n    env_file: hello.env\n", "", nil, []string{"env_file"}},
		{"label_file", "services:\n  hello:\n    image: 127.0.0.1:5000/hello:v1\n    ports: [\"8080\"]\n    label_file: hello.labels\n", "", nil, []string{"label_file"}},
		{"include", "include: [other.yaml]\nservices:\n  hello:\n    image: 127.0.0.1:5000/hello:v1\n    ports: [\"8080\"]\n", "", nil, []string{"other.yaml", "self-contained"}},
		{"extends.file", "services:\n  hello:\n    extends: {file: base.yaml, service: base}\n    image: 127.0.0.1:5000/hello:v1\n    ports: [\"8080\"]\n", "", nil, []string{"base.yaml", "self-contained"}},
		{"drift.port not declared", "services:\n  hello:\n    image: 127.0.0.1:5000/hello:v1\n    ports: [\"8080\"]\n    labels: {drift.port: \"9090\"}\n", "", nil, []string{"drift.port=9090", "[8080]"}},
		{"drift.port not a number", "services:\n  hello:\n    image: 127.0.0.1:5000/hello:v1\n    labels: {drift.port: http}\n", "", nil, []string{`drift.port="http"`}},
		{"replicas 0", "services:\n  hello:\n    image: 127.0.0.1:5000/hello:v1\n    ports: [\"8080\"]\n    deploy: {replicas: 0}\n", "", nil, []string{"replicas is 0"}},
		{"bad health label", "services:\n  hello:\n    image: 127.0.0.1:5000/hello:v1\n    ports: [\"8080\"]\n    labels: {drift.health: \"/a b\"}\n", "", nil, []string{"health path"}},
		{"bad hostname", "services:\n  hello:\n    image: 127.0.0.1:5000/hello:v1\n    ports: [\"8080\"]\n    hostname: Hello_Host\n", "", nil, []string{"hostname"}},
		{"reserved env", "services:\n  hello:\n    image: 127.0.0.1:5000/hello:v1\n    ports: [\"8080\"]\n    environment: {DRIFT_CLOUD: x}\n", "", nil, []string{"DRIFT_CLOUD is set by drift"}},
		{"PORT differs", "services:\n  hello:\n    image: 127.0.0.1:5000/hello:v1\n    ports: [\"8080\"]\n    environment: {PORT: \"9000\"}\n", "", nil, []string{"PORT"}},
		{"undefined network", "services:\n  hello:\n    image: 127.0.0.1:5000/hello:v1\n    ports: [\"8080\"]\n    networks: [nope]\n", "", nil, []string{"nope"}},
		{"several problems at once", "services:\n  hello:\n    build: .\n    environment: [TOKEN]\n    labels: {drift.state: state}\n", "", nil, []string{"no port", "TOKEN", `drift.state="state"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := FromComposeEnv([]byte(tt.yaml), tt.service, tt.env)
			if err == nil {
				t.Fatalf("no error; got %#v", a)
			}
			t.Log(err)
			if !errors.Is(err, runtime.ErrInvalid) {
				t.Errorf("error does not wrap runtime.ErrInvalid: %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if !reflect.DeepEqual(a, AppSpec{}) {
				t.Errorf("got a non-zero AppSpec with the error: %#v", a)
			}
		})
	}
}

func TestFromComposeIgnoresHostEnvironment(t *testing.T) {
	t.Setenv("TAG", "v9")
	t.Setenv("TOKEN", "from-host")
	_, err := FromCompose([]byte("services:\n  hello:\n    image: 127.0.0.1:5000/hello:${TAG}\n    ports: [\"8080\"]\n"), "")
	if err == nil || !strings.Contains(err.Error(), "TAG") {
		t.Fatalf("host TAG was used or error unclear: %v", err)
	}
	_, err = FromCompose([]byte("services:\n  hello:\n    image: 127.0.0.1:5000/hello:v1\n    ports: [\"8080\"]\n    environment: [TOKEN]\n"), "")
	if err == nil || !strings.Contains(err.Error(), "TOKEN") {
		t.Fatalf("host TOKEN was used or error unclear: %v", err)
	}
}

func TestFromComposeEnvKeepsCallersMap(t *testing.T) {
	env := map[string]string{"TAG": "v1"}
	before := maps.Clone(env)
	if _, err := FromComposeEnv([]byte("services:\n  hello:\n    image: 127.0.0.1:5000/hello:${TAG}\n    ports: [\"8080\"]\n"), "", env); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(env, before) {
		t.Fatalf("caller's env changed: %v", env)
	}
}

func TestHealthPath(t *testing.T) {
	tests := []struct {
		test types.HealthCheckTest
		port int
		want string // "" : no HTTP probe drift can make
	}{
		{types.HealthCheckTest{"CMD", "wget", "-qO-", "http://localhost:8080/healthz"}, 8080, "/healthz"},
		{types.HealthCheckTest{"CMD", "/usr/bin/curl", "-f", "http://127.0.0.1:8080"}, 8080, "/"},
		{types.HealthCheckTest{"CMD-SHELL", "curl -f 'http://localhost/live' || exit 1"}, 8080, "/live"},
		{types.HealthCheckTest{"CMD-SHELL", "wget -q --spider http://hello:8080/a/b%20c"}, 8080, "/a/b%20c"},
		{types.HealthCheckTest{"CMD", "curl", "http://other-service:8080/healthz"}, 8080, ""},
		{types.HealthCheckTest{"CMD", "curl", "http://localhost:9000/healthz"}, 8080, ""},
		{types.HealthCheckTest{"CMD", "nc", "-z", "localhost", "8080"}, 8080, ""},
		{types.HealthCheckTest{"CMD", "echo", "http://localhost:8080/x"}, 8080, ""},
		{types.HealthCheckTest{"CMD-SHELL", "mysqladmin ping -h localhost"}, 3306, ""},
		{nil, 8080, ""},
	}
	for _, tt := range tests {
		got, ok := healthPath(tt.test, tt.port, "hello")
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("healthPath(%q, %d) = %q, %v; want %q", tt.test, tt.port, got, ok, tt.want)
		}
	}
}
