package runtime

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestObjectName(t *testing.T) {
	if got := ObjectName("hello-alice-edge-1", ""); got != "hello-alice-edge-1" {
		t.Errorf("the one-service form's objects are named after the instance, got %q", got)
	}
	seen := map[string][2]string{}
	for _, p := range [][2]string{
		{"a", "b-c"}, {"a-b", "c"}, {"web", "store"}, {"web", "Store_Data"},
		{strings.Repeat("x", 63), "store"}, {strings.Repeat("x", 63), "web"},
		{"a", "../x"}, {"a", "日本語"}, {"a", strings.Repeat("z", 300)}, {"a", "Data.Volume_1"},
	} {
		got := ObjectName(p[0], p[1])
		if err := ValidateName(got); err != nil {
			t.Errorf("ObjectName(%q, %q) = %q: %v", p[0], p[1], got, err)
		}
		if got != ObjectName(p[0], p[1]) {
			t.Errorf("ObjectName(%q, %q) not stable", p[0], p[1])
		}
		if q, ok := seen[got]; ok {
			t.Errorf("ObjectName%q and ObjectName%q collide on %q", q, p, got)
		}
		seen[got] = p
	}
	if got := ObjectName("counter-alice-edge-1", "store"); !strings.HasPrefix(got, "counter-alice-edge-1-store-") {
		t.Errorf("ObjectName keeps the readable parts: %q", got)
	}
}

func TestStartOrder(t *testing.T) {
	svc := func(name string, deps ...string) Service { return Service{Name: name, DependsOn: deps} }
	names := func(ss []Service) []string {
		var out []string
		for _, s := range ss {
			out = append(out, s.Name)
		}
		return out
	}
	for _, tc := range []struct {
		in   []Service
		want []string
		err  string
	}{
		{in: []Service{svc("web", "store"), svc("store")}, want: []string{"store", "web"}},
		{in: []Service{svc("a"), svc("b"), svc("c")}, want: []string{"a", "b", "c"}},
		{in: []Service{svc("web", "api", "db"), svc("api", "db", "cache"), svc("db"), svc("cache")}, want: []string{"db", "cache", "api", "web"}},
		{in: []Service{svc("a", "b"), svc("b", "c"), svc("c", "a")}, err: "depends_on has a cycle: a → b → c → a"},
		{in: []Service{svc("a", "a")}, err: "cycle: a → a"},
		{in: []Service{svc("web", "nope")}, err: `service "web" depends on "nope", which is not a service`},
	} {
		got, err := StartOrder(tc.in)
		if tc.err != "" {
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("StartOrder(%v) = %v, %v; want an ErrInvalid with %q", names(tc.in), names(got), err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(names(got), tc.want) {
			t.Errorf("StartOrder(%v) = %v, %v; want %v", names(tc.in), names(got), err, tc.want)
		}
	}
}

// project is a valid two-service spec the cases below break one way each.
func project() Spec {
	return Spec{
		Services: []Service{
			{Name: "web", Image: "127.0.0.1:5000/web:v1", Port: 8080, Health: "/healthz", DependsOn: []string{"store"}},
			{Name: "store", Image: "127.0.0.1:5000/store:v1", Port: 8081, Mounts: []Mount{{Volume: "data", Path: "/data"}}},
		},
		InstanceVolumes: []string{"data"},
		Serve:           "web",
		State:           &State{Service: "store", Path: "/state"},
	}
}

func TestValidateSpecProjects(t *testing.T) {
	if _, err := ValidateSpec("counter", "edge-1", project()); err != nil {
		t.Fatalf("valid project: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*Spec)
		want string
	}{
		{"cycle", func(s *Spec) { s.Services[1].DependsOn = []string{"web"} }, "cycle: web → store → web"},
		{"unknown dependency", func(s *Spec) { s.Services[0].DependsOn = []string{"db"} }, `depends on "db"`},
		{"duplicate service", func(s *Spec) { s.Services[1].Name = "web" }, `service "web" is declared twice`},
		{"bad service name", func(s *Spec) { s.Services[1].Name = "Store_1" }, `service name "Store_1"`},
		{"service without image", func(s *Spec) { s.Services[1].Image = "" }, "service store: empty image reference"},
		{"service port", func(s *Spec) { s.Services[0].Port = 0 }, "service web: port 0"},
		{"probe", func(s *Spec) { s.Services[1].Probe = "exec" }, `probe "exec"`},
		{"undeclared volume", func(s *Spec) { s.InstanceVolumes = nil }, `mounts volume "data", which the spec does not declare`},
		{"relative mount", func(s *Spec) { s.Services[1].Mounts[0].Path = "data" }, `at "data"`},
		{"mount at root", func(s *Spec) { s.Services[1].Mounts[0].Path = "/" }, `at "/"`},
		{"bad volume name", func(s *Spec) { s.InstanceVolumes = []string{"../x"}; s.Services[1].Mounts = nil }, `volume name "../x"`},
		{"serve unknown", func(s *Spec) { s.Serve = "front" }, `serve names "front"`},
		{"state unknown service", func(s *Spec) { s.State.Service = "db" }, `state names service "db"`},
		{"state path", func(s *Spec) { s.State.Path = "state?x=1" }, `state path "state?x=1"`},
		{"both forms", func(s *Spec) { s.Image = "127.0.0.1:5000/web:v1" }, "belong to the one-service form"},
		{"project fields without services", func(s *Spec) { s.Services = nil; s.Image, s.Port = "127.0.0.1:5000/web:v1", 8080 }, "belong to the project form"},
		{"service label", func(s *Spec) { s.Labels = map[string]string{LabelService: "web"} }, "drift.project-service is set by the runtime"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := project()
			tc.edit(&s)
			_, err := ValidateSpec("counter", "edge-1", s)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an ErrInvalid with %q", err, tc.want)
			}
		})
	}
}

// A workflow started before projects hands the one-service JSON it always
// did to a new worker: it still decodes, is the one-service form and hashes
// as it did.
func TestOldSpecJSONIsTheOneServiceForm(t *testing.T) {
	old := `{"image":"127.0.0.1:5000/hello:v1","port":8080,"env":{"DRIFT_CLOUD":"edge-1"},"labels":{"drift.workflow":"session/alice/hello"},"health":"/healthz"}`
	var s Spec
	if err := json.Unmarshal([]byte(old), &s); err != nil {
		t.Fatal(err)
	}
	if s.IsProject() {
		t.Fatal("an old spec is read as a project")
	}
	want := []Service{{Image: "127.0.0.1:5000/hello:v1", Port: 8080, Env: map[string]string{"DRIFT_CLOUD": "edge-1"}, Health: "/healthz"}}
	if got := s.Project(); !reflect.DeepEqual(got, want) {
		t.Errorf("Project() = %+v, want %+v", got, want)
	}
	if _, err := ValidateSpec("hello-alice-edge-1", "edge-1", s); err != nil {
		t.Errorf("old spec: %v", err)
	}
	// The hash of this spec before projects existed (from the code of
	// c946075): a worker that upgrades reuses the instances it finds.
	labels := OwnedLabels("hello-alice-edge-1", s.Labels)
	if got := SpecHash(s, labels); got != "7e2656600d261b61" {
		t.Errorf("SpecHash of a one-service spec changed: %s", got)
	}
	if got := s.ServeService(); got.Image != s.Image {
		t.Errorf("ServeService of the one-service form: %+v", got)
	}
}
