package appspec

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/edgedrift/drift/internal/runtime"
)

const (
	webImage   = "127.0.0.1:5000/counter-web@sha256:1111111111111111111111111111111111111111111111111111111111111111"
	storeImage = "127.0.0.1:5000/counter-store@sha256:2222222222222222222222222222222222222222222222222222222222222222"
)

// The two-service example app is a project: both services in file order,
// the store's named volume and state endpoint, web as the service users
// reach (it publishes the port).
func TestFromComposeCounterExample(t *testing.T) {
	data, err := os.ReadFile("../../deploy/examples/apps/counter/compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got, err := FromCompose(data, "")
	if err != nil {
		t.Fatal(err)
	}
	want := AppSpec{
		Name: "counter",
		Services: []Service{{
			Name: "web", Port: 8080, Health: "/healthz", Build: true,
			Env:       map[string]string{"STORE_URL": "http://store:8081"},
			Ports:     []Port{{Target: 8080, Published: "8080", HostIP: "127.0.0.1", Protocol: "tcp"}},
			DependsOn: []string{"store"},
		}, {
			Name: "store", Port: 8081, Health: "/healthz", Build: true,
			Env:     map[string]string{"DATA_DIR": "/data"},
			Ports:   []Port{{Target: 8081}},
			Volumes: []Volume{{Type: "volume", Source: "counter-data", Target: "/data"}},
		}},
		Serve: "web",
		State: &runtime.State{Service: "store", Path: "/state", Merge: true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got\n%#v\nwant\n%#v", got, want)
	}
	if err := got.Validate(); err == nil || !strings.Contains(err.Error(), "release it through a pipeline") {
		t.Errorf("a project whose images the pipeline makes is not deployable yet: %v", err)
	}

	app := got.WithImages(map[string]string{"web": webImage, "store": storeImage})
	if err := app.Validate(); err != nil {
		t.Fatal(err)
	}
	spec := app.RuntimeSpec("edge-1", map[string]string{runtime.LabelWorkflow: "session/alice/counter"})
	wantSpec := runtime.Spec{
		Services: []runtime.Service{{
			Name: "web", Image: webImage, Port: 8080, Health: "/healthz", DependsOn: []string{"store"},
			Env: map[string]string{"STORE_URL": "http://store:8081", EnvCloud: "edge-1", EnvApp: "counter"},
		}, {
			Name: "store", Image: storeImage, Port: 8081, Health: "/healthz",
			Env:    map[string]string{"DATA_DIR": "/data", EnvCloud: "edge-1", EnvApp: "counter"},
			Mounts: []runtime.Mount{{Volume: "counter-data", Path: "/data"}},
		}},
		InstanceVolumes: []string{"counter-data"},
		Serve:           "web",
		State:           &runtime.State{Service: "store", Path: "/state", Merge: true},
		Labels:          map[string]string{runtime.LabelWorkflow: "session/alice/counter", runtime.LabelCloud: "edge-1", LabelApp: "counter"},
	}
	if !reflect.DeepEqual(spec, wantSpec) {
		t.Fatalf("RuntimeSpec:\n%#v\nwant\n%#v", spec, wantSpec)
	}
	if _, err := runtime.ValidateSpec("counter-alice-edge-1", "edge-1", spec); err != nil {
		t.Errorf("the runtimes refuse it: %v", err)
	}
	if !reflect.DeepEqual(app.Images(), map[string]string{"web": webImage, "store": storeImage}) {
		t.Errorf("Images() = %v", app.Images())
	}
	spec.Services[0].Env["STORE_URL"] = "changed"
	if app.Services[0].Env["STORE_URL"] != "http://store:8081" {
		t.Error("the AppSpec changed through its RuntimeSpec")
	}
}

// One service with a named volume or a state endpoint needs the project
// form of the runtime spec; without them it stays in the one-service form.
func TestRuntimeSpecForms(t *testing.T) {
	plain := AppSpec{Name: "hello", Image: "127.0.0.1:5000/hello:v1", Port: 8080}
	if s := plain.RuntimeSpec("fog-1", nil); s.IsProject() || s.Image != plain.Image {
		t.Errorf("a plain app: %#v", s)
	}
	withVolume := plain
	withVolume.Volumes = []Volume{{Type: "volume", Source: "data", Target: "/data"}}
	s := withVolume.RuntimeSpec("fog-1", nil)
	if !s.IsProject() || s.Serve != "hello" || len(s.Services) != 1 || s.Services[0].Name != "hello" ||
		!reflect.DeepEqual(s.InstanceVolumes, []string{"data"}) || !reflect.DeepEqual(s.Services[0].Mounts, []runtime.Mount{{Volume: "data", Path: "/data"}}) {
		t.Errorf("an app with a named volume: %#v", s)
	}
	if _, err := runtime.ValidateSpec("hello-1", "fog-1", s); err != nil {
		t.Error(err)
	}
	withState := plain
	withState.State = &runtime.State{Service: "hello", Path: "/state"}
	if s := withState.RuntimeSpec("fog-1", nil); !s.IsProject() || s.State == nil || s.State.Service != "hello" {
		t.Errorf("an app with a state endpoint: %#v", s)
	}
	tcp := plain
	tcp.Probe = runtime.ProbeTCP
	if s := tcp.RuntimeSpec("fog-1", nil); !s.IsProject() || s.Services[0].Probe != runtime.ProbeTCP {
		t.Errorf("an app probed over TCP: %#v", s)
	}
	// Volumes of other kinds, held by specs from before projects, are not applied.
	old := plain
	old.Volumes = []Volume{{Type: "bind", Source: "./conf", Target: "/etc/x"}}
	if s := old.RuntimeSpec("fog-1", nil); s.IsProject() {
		t.Errorf("a bind mount from an old spec made a project: %#v", s)
	}
}

// Every field drift cannot honour is refused with its name, before any
// side effect; extension fields are not.
func TestFromComposeRefusesUnsupportedFields(t *testing.T) {
	base := "name: shop\nservices:\n  web:\n    image: 127.0.0.1:5000/web:v1\n    ports: [\"8080:8080\"]\n"
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"privileged", base + "    privileged: true\n", []string{"field services.web.privileged is not supported", "no privileged service"}},
		{"container_name", base + "    container_name: web\n", []string{"services.web.container_name", "instances never collide"}},
		{"user", base + "    user: \"1000\"\n", []string{"field services.web.user is not supported"}},
		{"network_mode", base + "    network_mode: host\n", []string{"services.web.network_mode"}},
		{"cap_add and devices at once", base + "    cap_add: [NET_ADMIN]\n    devices: [\"/dev/kvm\"]\n", []string{"services.web.cap_add", "services.web.devices"}},
		{"deploy.resources", base + "    deploy:\n      replicas: 2\n      resources: {limits: {cpus: \"0.5\"}}\n", []string{"field services.web.deploy.resources is not supported"}},
		{"network aliases", base + "    networks:\n      front: {aliases: [www]}\nnetworks:\n  front: {}\n", []string{"services.web.networks.front.aliases"}},
		{"secrets", base + "secrets:\n  key: {file: ./key}\n", []string{"field secrets is not supported", "no secret store"}},
		{"configs", base + "configs:\n  c: {content: x}\n", []string{"field configs is not supported"}},
		{"volume driver", base + "    volumes: [\"data:/data\"]\nvolumes:\n  data: {driver: nfs}\n", []string{"field volumes.data.driver is not supported"}},
		{"external volume", base + "    volumes: [\"data:/data\"]\nvolumes:\n  data: {external: true}\n", []string{"volumes.data.external", "removes them with it"}},
		{"external network", base + "    networks: [front]\nnetworks:\n  front: {external: true}\n", []string{"networks.front.external"}},
		{"set through an anchor", "name: shop\nx-base: &base\n  privileged: true\nservices:\n  web:\n    <<: *base\n    image: 127.0.0.1:5000/web:v1\n    ports: [\"8080\"]\n", []string{"services.web.privileged"}},
		{"bind mount", base + "    volumes: [\"./conf:/etc/web\"]\n", []string{`bind mount of "./conf" at /etc/web is not supported`}},
		{"anonymous volume", base + "    volumes: [\"/scratch\"]\n", []string{"anonymous volume at /scratch"}},
		{"tmpfs mount", base + "    volumes: [{type: tmpfs, target: /tmp}]\n", []string{"tmpfs mount"}},
		{"a job dependency", "name: shop\nservices:\n  web:\n    image: 127.0.0.1:5000/web:v1\n    ports: [\"8080:8080\"]\n    depends_on: {migrate: {condition: service_completed_successfully}}\n  migrate:\n    image: 127.0.0.1:5000/migrate:v1\n    expose: [\"1\"]\n", []string{"condition service_completed_successfully is not supported"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := FromCompose([]byte(tt.yaml), "")
			if !errors.Is(err, runtime.ErrInvalid) {
				t.Fatalf("got %#v, %v; want an error wrapping runtime.ErrInvalid", a, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	ext := base + "    x-team: payments\n    deploy: {replicas: 2, x-note: fine}\nx-owner: ops\n"
	a, err := FromCompose([]byte(ext), "")
	if err != nil || a.Replicas != 2 {
		t.Errorf("extension fields: %#v, %v", a, err)
	}
}

// Mistakes in a project are refused with what is wrong.
func TestFromComposeProjectErrors(t *testing.T) {
	two := func(web, store string) string {
		return "name: shop\nservices:\n  web:\n    image: 127.0.0.1:5000/web:v1\n" + web + "  store:\n    image: 127.0.0.1:5000/store:v1\n" + store
	}
	tests := []struct {
		name, yaml, service string
		want                []string
	}{
		{"cyclic depends_on", two("    ports: [\"8080:8080\"]\n    depends_on: [store]\n", "    expose: [\"8081\"]\n    depends_on: [web]\n"), "", []string{"cycle"}},
		{"two services on one published port", two("    ports: [\"8080:8080\"]\n", "    ports: [\"8080:9000\"]\n"), "", []string{"services web and store both publish port 8080/tcp"}},
		{"overlapping published ranges", two("    ports: [\"127.0.0.1:8000-8010:8000-8010\"]\n", "    ports: [\"8005:9000\"]\n"), "", []string{"both publish port 8005/tcp"}},
		{"state label not a path", two("    ports: [\"8080:8080\"]\n", "    expose: [\"8081\"]\n    labels: {drift.state: \"state?all\"}\n"), "", []string{`label drift.state="state?all" must be an HTTP path`}},
		{"state label twice", two("    ports: [\"8080:8080\"]\n    labels: {drift.state: /s}\n", "    expose: [\"8081\"]\n    labels: {drift.state: /state}\n"), "", []string{"drift.state is set on web and store"}},
		{"merge label not true", two("    ports: [\"8080:8080\"]\n", "    expose: [\"8081\"]\n    labels: {drift.state: /state, drift.state.merge: \"yes\"}\n"), "", []string{`drift.state.merge="yes": want "true"`}},
		{"merge label without state", two("    ports: [\"8080:8080\"]\n    labels: {drift.state.merge: \"true\"}\n", "    expose: [\"8081\"]\n    labels: {drift.state: /state}\n"), "", []string{`service "web": label drift.state.merge is set without drift.state`}},
		{"serve label not true", two("    ports: [\"8080:8080\"]\n    labels: {drift.serve: \"yes\"}\n", "    expose: [\"8081\"]\n"), "", []string{`drift.serve="yes"`}},
		{"serve label twice", two("    ports: [\"8080:8080\"]\n    labels: {drift.serve: \"true\"}\n", "    ports: [\"8081:8081\"]\n    labels: {drift.serve: \"true\"}\n"), "", []string{"drift.serve is set on web and store"}},
		{"one service named out of a project it depends on", two("    ports: [\"8080:8080\"]\n    depends_on: [store]\n", "    expose: [\"8081\"]\n"), "web", []string{"depends on store: deploy the whole project"}},
		{"no name", strings.TrimPrefix(two("    ports: [\"8080:8080\"]\n", "    expose: [\"8081\"]\n"), "name: shop\n"), "", []string{"needs a top-level name"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := FromCompose([]byte(tt.yaml), tt.service)
			if !errors.Is(err, runtime.ErrInvalid) {
				t.Fatalf("got %#v, %v; want an error wrapping runtime.ErrInvalid", a, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	// The labelled service is the one users reach, published or not.
	a, err := FromCompose([]byte(two("    ports: [\"8080:8080\"]\n", "    expose: [\"8081\"]\n    labels: {drift.serve: \"true\"}\n")), "")
	if err != nil || a.Serve != "store" {
		t.Errorf("drift.serve on store: %#v, %v", a, err)
	}
}

// A project built by hand (or decoded from JSON) is checked like one read
// from compose.
func TestValidateProject(t *testing.T) {
	good := func() AppSpec {
		return AppSpec{Name: "shop", Serve: "web", State: &runtime.State{Service: "store", Path: "/state"}, Services: []Service{
			{Name: "web", Image: webImage, Port: 8080, DependsOn: []string{"store"}},
			{Name: "store", Image: storeImage, Port: 8081},
		}}
	}
	if err := good().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(*AppSpec)
		want string
	}{
		{"cycle", func(a *AppSpec) { a.Services[1].DependsOn = []string{"web"} }, "cycle"},
		{"unknown dependency", func(a *AppSpec) { a.Services[0].DependsOn = []string{"db"} }, `depends on "db"`},
		{"state on a missing service", func(a *AppSpec) { a.State.Service = "db" }, `state names service "db"`},
		{"state path", func(a *AppSpec) { a.State.Path = "no-slash" }, `state path "no-slash"`},
		{"serve unknown", func(a *AppSpec) { a.Serve = "front" }, `serve names "front"`},
		{"both forms", func(a *AppSpec) { a.Image = webImage }, "one-service form must be empty"},
		{"duplicate service", func(a *AppSpec) { a.Services[1].Name = "web" }, `service "web" is listed twice`},
		{"service image", func(a *AppSpec) { a.Services[1].Image = "store:v1" }, "service store: "},
		{"published twice", func(a *AppSpec) {
			a.Services[0].Ports = []Port{{Target: 8080, Published: "80"}}
			a.Services[1].Ports = []Port{{Target: 8081, Published: "80"}}
		}, "both publish port 80/tcp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := good()
			tc.edit(&a)
			if err := a.Validate(); !errors.Is(err, runtime.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v, want an ErrInvalid with %q", err, tc.want)
			}
		})
	}
}

func TestProjectJSONRoundTrip(t *testing.T) {
	data, err := os.ReadFile("../../deploy/examples/apps/counter/compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	a, err := FromCompose(data, "")
	if err != nil {
		t.Fatal(err)
	}
	a = a.WithImages(map[string]string{"web": webImage, "store": storeImage})
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	var back AppSpec
	if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(a, back) {
		t.Fatalf("round trip (%v): %s ->\n%#v", err, b, back)
	}
	// The JSON of a session started before projects is the one-service form.
	var old AppSpec
	if err := json.Unmarshal([]byte(`{"name":"hello","image":"127.0.0.1:5000/hello:v1","port":8080,"health":"/healthz"}`), &old); err != nil {
		t.Fatal(err)
	}
	if old.IsProject() || old.Validate() != nil || old.RuntimeSpec("edge-1", nil).IsProject() {
		t.Errorf("an old spec: %#v", old)
	}
}

// The seed's application as people write it: a web front, an app server
// and a database, with published and exposed ports, both environment
// forms, healthchecks of every shape, depends_on with conditions, named
// volumes, networks, hostnames and restart policies. drift takes it whole:
// start order from depends_on, HTTP probes where the healthcheck asks a
// URL of the service and TCP probes for the rest, the volumes per
// instance, the front as the service users reach.
func TestFromComposeThreeTierApp(t *testing.T) {
	const file = `
name: shop
x-restart: &restart
  restart: unless-stopped
services:
  front:
    <<: *restart
    image: 127.0.0.1:5000/shop/nginx:1.25
    hostname: www
    ports: ["80:8080"]
    depends_on:
      app: {condition: service_healthy}
    networks: [edge, back]
    healthcheck:
      test: ["CMD-SHELL", "curl -fsS http://localhost:8080/ || exit 1"]
      interval: 10s
      retries: 3
  app:
    <<: *restart
    image: 127.0.0.1:5000/shop/tomcat:9
    expose: ["8080"]
    environment:
      - JDBC_URL=jdbc:mysql://db:3306/shop
      - JAVA_OPTS=-Xmx256m
    depends_on:
      db:
        condition: service_healthy
        restart: true
    networks: [back]
    volumes:
      - type: volume
        source: uploads
        target: /usr/local/tomcat/webapps/uploads
    deploy:
      replicas: 2
    healthcheck:
      test: ["CMD", "wget", "-q", "--spider", "http://localhost:8080/health"]
  db:
    <<: *restart
    image: 127.0.0.1:5000/shop/mysql:8.0
    environment:
      MYSQL_DATABASE: shop
      MYSQL_ROOT_PASSWORD: ${DB_PASSWORD:-change-me}
    expose: ["3306"]
    networks: [back]
    volumes: ["db-data:/var/lib/mysql", "uploads:/srv/uploads:ro"]
    healthcheck:
      test: ["CMD-SHELL", "mysqladmin ping -h localhost"]
      start_period: 30s
networks:
  edge: {}
  back: {}
volumes:
  db-data: {}
  uploads:
`
	a, err := FromCompose([]byte(file), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
	if a.Name != "shop" || a.Serve != "front" || a.State != nil || len(a.Services) != 3 {
		t.Fatalf("project %#v", a)
	}
	front, app, db := a.Services[0], a.Services[1], a.Services[2]
	for _, c := range []struct {
		what      string
		got, want any
	}{
		{"front", []any{front.Name, front.Port, front.Health, front.Probe, front.Hostname, front.DependsOn, front.Networks}, []any{"front", 8080, "/", "", "www", []string{"app"}, []string{"back", "edge"}}},
		{"front ports", front.Ports, []Port{{Target: 8080, Published: "80", Protocol: "tcp"}}},
		{"app", []any{app.Name, app.Port, app.Health, app.Replicas, app.DependsOn}, []any{"app", 8080, "/health", 2, []string{"db"}}},
		{"app env", app.Env, map[string]string{"JDBC_URL": "jdbc:mysql://db:3306/shop", "JAVA_OPTS": "-Xmx256m"}},
		{"db", []any{db.Name, db.Port, db.Health, db.Probe, db.DependsOn}, []any{"db", 3306, "", runtime.ProbeTCP, []string(nil)}},
		{"db env", db.Env, map[string]string{"MYSQL_DATABASE": "shop", "MYSQL_ROOT_PASSWORD": "change-me"}},
		{"db volumes", db.Volumes, []Volume{{Type: "volume", Source: "db-data", Target: "/var/lib/mysql"}, {Type: "volume", Source: "uploads", Target: "/srv/uploads", ReadOnly: true}}},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: got %#v, want %#v", c.what, c.got, c.want)
		}
	}

	spec := a.RuntimeSpec("fog-1", nil)
	if _, err := runtime.ValidateSpec("shop-alice-fog-1", "fog-1", spec); err != nil {
		t.Fatalf("the runtimes refuse it: %v", err)
	}
	if !reflect.DeepEqual(spec.InstanceVolumes, []string{"uploads", "db-data"}) {
		t.Errorf("volumes %v, want one per named volume, in the order the services mount them", spec.InstanceVolumes)
	}
	order, err := runtime.StartOrder(spec.Services)
	if err != nil {
		t.Fatal(err)
	}
	var started []string
	for _, s := range order {
		started = append(started, s.Name)
	}
	if !reflect.DeepEqual(started, []string{"db", "app", "front"}) {
		t.Errorf("start order %v, want the database first and the front last", started)
	}
	if m := spec.Services[2].Mounts; !reflect.DeepEqual(m, []runtime.Mount{{Volume: "db-data", Path: "/var/lib/mysql"}, {Volume: "uploads", Path: "/srv/uploads", ReadOnly: true}}) {
		t.Errorf("db mounts %v", m)
	}
}
