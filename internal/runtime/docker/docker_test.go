package docker

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/go-connections/nat"

	"github.com/edgedrift/drift/internal/runtime"
)

// These tests need no engine: New does not connect, and bad input is
// rejected before any call to it.

func newRuntime(t *testing.T, cloud string) *Runtime {
	t.Helper()
	// An address nothing listens on: any call that reached the engine
	// would fail with a connection error, not ErrInvalid.
	r, err := New(runtime.Config{Kind: runtime.KindDocker, Host: "unix:///nonexistent/docker.sock"}, cloud)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestNewRejectsOtherKinds(t *testing.T) {
	if _, err := New(runtime.Config{Kind: runtime.KindKubernetes}, "x"); !errors.Is(err, runtime.ErrInvalid) {
		t.Fatalf("New with kind kubernetes: %v", err)
	}
}

func TestBadInputIsInvalidBeforeAnyCall(t *testing.T) {
	r := newRuntime(t, "fog-1")
	good := runtime.Spec{Image: "127.0.0.1:5000/hello:v1", Port: 8080}
	cases := map[string]struct {
		name string
		spec func(runtime.Spec) runtime.Spec
	}{
		"bad name":      {"Web_1", func(s runtime.Spec) runtime.Spec { return s }},
		"long name":     {"a123456789012345678901234567890123456789012345678901234567890123", func(s runtime.Spec) runtime.Spec { return s }},
		"empty image":   {"web", func(s runtime.Spec) runtime.Spec { s.Image = " "; return s }},
		"bad image":     {"web", func(s runtime.Spec) runtime.Spec { s.Image = "Hello World"; return s }},
		"port 0":        {"web", func(s runtime.Spec) runtime.Spec { s.Port = 0; return s }},
		"port 65536":    {"web", func(s runtime.Spec) runtime.Spec { s.Port = 65536; return s }},
		"env key":       {"web", func(s runtime.Spec) runtime.Spec { s.Env = map[string]string{"": "x"}; return s }},
		"empty command": {"web", func(s runtime.Spec) runtime.Spec { s.Command = []string{""}; return s }},
		"health":        {"web", func(s runtime.Spec) runtime.Spec { s.Health = "/a b"; return s }},
		"owned label":   {"web", labelled(runtime.LabelOwned, "false")},
		"instance":      {"web", labelled(runtime.LabelInstance, "api")},
		"other cloud":   {"web", labelled(runtime.LabelCloud, "fog-2")},
	}
	for what, c := range cases {
		if _, err := r.Deploy(context.Background(), c.name, c.spec(good)); !errors.Is(err, runtime.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", what, err)
		}
	}
	for _, call := range []func() error{
		func() error { _, err := r.Status(context.Background(), "Bad"); return err },
		func() error { return r.Destroy(context.Background(), "Bad") },
	} {
		if err := call(); !errors.Is(err, runtime.ErrInvalid) {
			t.Errorf("bad name: %v", err)
		}
	}
	// And a valid spec does reach for the engine.
	if _, err := r.Deploy(context.Background(), "web", good); err == nil || errors.Is(err, runtime.ErrInvalid) {
		t.Errorf("valid spec: %v, want an engine error", err)
	}
}

func labelled(k, v string) func(runtime.Spec) runtime.Spec {
	return func(s runtime.Spec) runtime.Spec {
		s.Labels = map[string]string{k: v}
		return s
	}
}

func TestLabelsAndHash(t *testing.T) {
	r := newRuntime(t, "fog 1") // sanitised like every label value
	spec := runtime.Spec{Image: "127.0.0.1:5000/hello:v1", Port: 8080, Labels: map[string]string{runtime.LabelWorkflow: "session/ann/web"}}
	labels, err := runtime.ValidateSpec("web", r.cloud, spec)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		runtime.LabelOwned:    "true",
		runtime.LabelInstance: "web",
		runtime.LabelCloud:    runtime.LabelValue("fog 1"),
		runtime.LabelWorkflow: runtime.LabelValue("session/ann/web"),
	}
	for k, v := range want {
		if labels[k] != v {
			t.Errorf("label %s=%q, want %q", k, labels[k], v)
		}
	}
	h := runtime.SpecHash(spec, labels)
	if h != runtime.SpecHash(spec, labels) {
		t.Fatal("hash is not stable")
	}
	for what, change := range map[string]func(*runtime.Spec){
		"image":   func(s *runtime.Spec) { s.Image += "x" },
		"port":    func(s *runtime.Spec) { s.Port++ },
		"env":     func(s *runtime.Spec) { s.Env = map[string]string{"A": "1"} },
		"command": func(s *runtime.Spec) { s.Command = []string{"/x"} },
		"health":  func(s *runtime.Spec) { s.Health = "/healthz" },
	} {
		s := spec
		change(&s)
		if runtime.SpecHash(s, labels) == h {
			t.Errorf("changing the %s kept the hash", what)
		}
	}
	if runtime.SpecHash(spec, map[string]string{"a": "b"}) == h {
		t.Error("changing the labels kept the hash")
	}

	pub := publicLabels(map[string]string{LabelSpec: "h", LabelImage: "i", LabelPort: "1", LabelHealth: "/", "drift.owned": "true"})
	if len(pub) != 1 || pub["drift.owned"] != "true" {
		t.Errorf("publicLabels = %v", pub)
	}
}

func TestEnvironPortWins(t *testing.T) {
	env := environ(runtime.Service{Port: 8080, Env: map[string]string{"PORT": "1", "B": "2", "A": "1"}})
	if !slices.Equal(env, []string{"A=1", "B=2", "PORT=8080"}) {
		t.Fatalf("environ = %v", env)
	}
}

func TestEndpointOfOnlyLoopback(t *testing.T) {
	ns := &container.NetworkSettings{}
	ns.Ports = nat.PortMap{
		"8080/tcp": {{HostIP: "0.0.0.0", HostPort: "1111"}, {HostIP: "127.0.0.1", HostPort: "32768"}},
		"9090/tcp": {{HostIP: "0.0.0.0", HostPort: "2222"}},
	}
	ep, err := endpointOf(ns, 8080)
	if err != nil || ep.URL != "http://127.0.0.1:32768" || ep.Port != 32768 || ep.Host != "127.0.0.1" {
		t.Fatalf("endpointOf 8080 = %+v, %v", ep, err)
	}
	if _, err := endpointOf(ns, 9090); err == nil {
		t.Error("a port published off loopback was used")
	}
	if _, err := endpointOf(nil, 8080); err == nil {
		t.Error("nil settings gave an endpoint")
	}
}
