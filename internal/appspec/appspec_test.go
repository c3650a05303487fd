package appspec

import (
	"encoding/json"
	"errors"
	"maps"
	"reflect"
	"strings"
	"testing"

	"github.com/edgedrift/drift/internal/runtime"
)

func TestFromImage(t *testing.T) {
	got, err := FromImage("hello", "127.0.0.1:5000/hello:v1", 8080)
	if err != nil {
		t.Fatal(err)
	}
	if want := (AppSpec{Name: "hello", Image: "127.0.0.1:5000/hello:v1", Port: 8080}); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v, want %#v", got, want)
	}

	bad := []struct {
		name, image string
		port        int
		want        string
	}{
		{"Hello", "127.0.0.1:5000/hello:v1", 8080, "app name"},
		{"", "127.0.0.1:5000/hello:v1", 8080, "app name"},
		{"1hello", "127.0.0.1:5000/hello:v1", 8080, "app name"},
		{"hello", "", 8080, "no image"},
		{"hello", "hello:v1", 8080, "registry"},
		{"hello", "127.0.0.1:5000/Hello:v1", 8080, "invalid image reference"},
		{"hello", "127.0.0.1:5000/hello:v1", 0, "port 0"},
		{"hello", "127.0.0.1:5000/hello:v1", 65536, "port 65536"},
	}
	for _, b := range bad {
		a, err := FromImage(b.name, b.image, b.port)
		if err == nil || !errors.Is(err, runtime.ErrInvalid) || !strings.Contains(err.Error(), b.want) {
			t.Errorf("FromImage(%q, %q, %d) = %#v, %v; want an ErrInvalid mentioning %q", b.name, b.image, b.port, a, err, b.want)
		}
	}
}

func TestValidate(t *testing.T) {
	good := AppSpec{
		Name: "hello", Image: "127.0.0.1:5000/hello:v1", Port: 8080,
		Env: map[string]string{"A": "1", "PORT": "8080"}, Command: []string{"/hello", ""},
		Health: "/healthz", Replicas: 2, Hostname: "hello-0",
		Ports:    []Port{{Target: 8080, Protocol: "tcp"}, {Target: 53, Protocol: "udp"}},
		Volumes:  []Volume{{Type: "volume", Source: "data", Target: "/data"}},
		Networks: []string{"edge"},
	}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		mutate func(*AppSpec)
		want   string
	}{
		{"name", func(a *AppSpec) { a.Name = "hello_world" }, "app name"},
		{"image", func(a *AppSpec) { a.Image = "127.0.0.1:5000/hello:bad tag" }, "invalid image reference"},
		{"port", func(a *AppSpec) { a.Port = -1 }, "port -1"},
		{"replicas", func(a *AppSpec) { a.Replicas = -1 }, "replicas -1"},
		{"env key", func(a *AppSpec) { a.Env = map[string]string{"A=B": "x"} }, "bad environment variable name"},
		{"env NUL", func(a *AppSpec) { a.Env = map[string]string{"A": "x\x00"} }, "NUL"},
		{"env reserved", func(a *AppSpec) { a.Env = map[string]string{EnvApp: "x"} }, "DRIFT_APP is set by drift"},
		{"env PORT", func(a *AppSpec) { a.Env = map[string]string{"PORT": "80"} }, "PORT"},
		{"command", func(a *AppSpec) { a.Command = []string{"", "x"} }, "bad command"},
		{"health", func(a *AppSpec) { a.Health = "healthz" }, "health path"},
		{"health query", func(a *AppSpec) { a.Health = "/h?x=1" }, "health path"},
		{"hostname", func(a *AppSpec) { a.Hostname = "a.b" }, "hostname"},
		{"declared port", func(a *AppSpec) { a.Ports = []Port{{Target: 0}} }, "declared port 0"},
		{"declared protocol", func(a *AppSpec) { a.Ports = []Port{{Target: 80, Protocol: "http"}} }, "protocol"},
		{"volume", func(a *AppSpec) { a.Volumes = []Volume{{Type: "volume", Source: "data"}} }, "no target"},
		{"network", func(a *AppSpec) { a.Networks = []string{""} }, "network"},
	}
	for _, tt := range tests {
		a := good.clone()
		tt.mutate(&a)
		err := a.Validate()
		if err == nil || !errors.Is(err, runtime.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Validate() = %v; want an ErrInvalid mentioning %q", tt.name, err, tt.want)
		}
	}

	// every problem is reported at once
	err := AppSpec{Name: "X", Port: 0, Health: "x"}.Validate()
	for _, w := range []string{"app name", "no image", "port 0", "health path"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("Validate() = %v; want it to mention %q", err, w)
		}
	}
}

func TestRuntimeSpec(t *testing.T) {
	a := AppSpec{
		Name: "hello", Image: "127.0.0.1:5000/hello:v1", Port: 8080,
		Env: map[string]string{"GREETING": "hi"}, Command: []string{"/hello"},
		Health: "/healthz", Replicas: 2, Hostname: "hello",
	}
	keep := a.clone()
	labels := map[string]string{runtime.LabelWorkflow: "session/ann", runtime.LabelCloud: "stale", "team": "x"}
	keepLabels := maps.Clone(labels)

	got := a.RuntimeSpec("fog-1", labels)
	want := runtime.Spec{
		Image:    "127.0.0.1:5000/hello:v1",
		Port:     8080,
		Env:      map[string]string{"GREETING": "hi", EnvCloud: "fog-1", EnvApp: "hello"},
		Command:  []string{"/hello"},
		Replicas: 2,
		Labels:   map[string]string{runtime.LabelWorkflow: "session/ann", runtime.LabelCloud: "fog-1", LabelApp: "hello", "team": "x"},
		Health:   "/healthz",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got\n%#v\nwant\n%#v", got, want)
	}
	if !maps.Equal(labels, keepLabels) {
		t.Errorf("caller's labels changed: %v", labels)
	}
	// the result shares nothing with the AppSpec
	got.Env["GREETING"] = "changed"
	got.Command[0] = "changed"
	if !reflect.DeepEqual(a, keep) {
		t.Errorf("AppSpec changed through its RuntimeSpec: %#v", a)
	}

	// nil maps are fine
	s := AppSpec{Name: "hello", Image: "127.0.0.1:5000/hello:v1", Port: 8080}.RuntimeSpec("edge-1", nil)
	if len(s.Env) != 2 || s.Env[EnvCloud] != "edge-1" || s.Labels[runtime.LabelCloud] != "edge-1" || s.Labels[LabelApp] != "hello" || s.Command != nil {
		t.Errorf("RuntimeSpec from a bare spec = %#v", s)
	}
}

func TestWithImage(t *testing.T) {
	a := AppSpec{
		Name: "hello", Image: "127.0.0.1:5000/hello:v1", Port: 8080,
		Env: map[string]string{"A": "1"}, Command: []string{"/hello"},
		Ports: []Port{{Target: 8080}}, Volumes: []Volume{{Type: "volume", Target: "/d"}}, Networks: []string{"n"},
	}
	keep := a.clone()
	digest := "127.0.0.1:5001/hello@sha256:0123456789012345678901234567890123456789012345678901234567890123"
	b := a.WithImage(digest)
	if b.Image != digest || b.Validate() != nil {
		t.Fatalf("WithImage: %#v, %v", b, b.Validate())
	}
	b.Env["A"] = "2"
	b.Command[0] = "x"
	b.Ports[0].Target = 1
	b.Volumes[0].Target = "/x"
	b.Networks[0] = "x"
	if !reflect.DeepEqual(a, keep) {
		t.Errorf("original changed through the copy: %#v", a)
	}
}

func TestJSONRoundTrip(t *testing.T) {
	a := AppSpec{
		Name: "hello", Image: "127.0.0.1:5000/hello:v1", Port: 8080,
		Env: map[string]string{"A": "1"}, Command: []string{"/hello"}, Health: "/healthz",
		Replicas: 2, Hostname: "hello",
		Ports:    []Port{{Target: 8080, Published: "8080", HostIP: "127.0.0.1", Protocol: "tcp"}},
		Volumes:  []Volume{{Type: "bind", Source: "./d", Target: "/d", ReadOnly: true}},
		Networks: []string{"edge"},
	}
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	var back AppSpec
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, back) {
		t.Fatalf("round trip: %s ->\n%#v", b, back)
	}
	b, _ = json.Marshal(AppSpec{Name: "hello", Image: "127.0.0.1:5000/hello:v1", Port: 8080})
	if string(b) != `{"name":"hello","image":"127.0.0.1:5000/hello:v1","port":8080}` {
		t.Errorf("minimal JSON = %s", b)
	}
}
