package appspec

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net/url"
	pathpkg "path"
	"slices"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/template"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/edgedrift/drift/internal/runtime"
)

const (
	// composeFilename names the in-memory compose file in error messages.
	composeFilename = "compose.yaml"
	// composeProject is the compose project name drift loads files under.
	composeProject = "drift"
)

// FromCompose reads a compose file into an AppSpec, as Kompose would. With
// service "" it reads the whole project: a file of one service gives the
// one-service form, one of several the project form (named by the file's
// top-level name:). Naming a service reads that service alone, which may
// then depend on no other.
//
// Per service it reads: image (a full reference; may be missing when the
// service has a build section, which a pipeline fills in), the service
// port (the first TCP port of ports:/expose: in file order, or the
// drift.port label), environment (list or map form), entrypoint + command,
// the readiness probe (the URL path of a wget/curl healthcheck or the
// drift.health label; any other healthcheck becomes a TCP probe),
// deploy.replicas or scale, depends_on, named volumes, networks and
// hostname as declared, and the labels drift.serve and drift.state. Fields
// drift cannot honour are refused by name (see Fields).
//
// No variable is available: a ${VAR} or an environment entry without a
// value is an error (see FromComposeEnv). Every error wraps
// runtime.ErrInvalid.
func FromCompose(data []byte, service string) (AppSpec, error) {
	return FromComposeEnv(data, service, nil)
}

// FromComposeEnv is FromCompose with env as the only variables available,
// both for ${VAR} interpolation and for environment entries written without
// a value. The host environment and the filesystem are never read: include,
// extends.file, env_file and label_file are errors.
func FromComposeEnv(data []byte, service string, env map[string]string) (AppSpec, error) {
	project, err := loadCompose(data, env)
	if err != nil {
		return AppSpec{}, err
	}
	raw, err := readRaw(data)
	if err != nil {
		return AppSpec{}, err
	}
	if bad := raw.unsupported(); len(bad) > 0 {
		return AppSpec{}, fmt.Errorf("%w: compose file: %s", runtime.ErrInvalid, strings.Join(bad, "; "))
	}
	picked, err := pickServices(project, raw.order, service)
	if err != nil {
		return AppSpec{}, err
	}
	var (
		problems []string
		services []Service
		labels   = map[string]types.Labels{}
	)
	for _, s := range picked {
		svc, p := fromService(s, env)
		if service != "" && len(svc.DependsOn) > 0 {
			p = append(p, fmt.Sprintf("depends on %s: deploy the whole project (name no service)", strings.Join(svc.DependsOn, ", ")))
		}
		for _, msg := range p {
			problems = append(problems, fmt.Sprintf("service %q: %s", s.Name, msg))
		}
		services = append(services, svc)
		labels[s.Name] = s.Labels
	}
	var a AppSpec
	if len(services) == 1 {
		s := services[0]
		a = AppSpec{
			Name: s.Name, Image: s.Image, Port: s.Port, Env: s.Env, Command: s.Command, Health: s.Health, Probe: s.Probe,
			Replicas: s.Replicas, Hostname: s.Hostname, Ports: s.Ports, Volumes: s.Volumes, Networks: s.Networks, Build: s.Build,
		}
	} else {
		a = AppSpec{Name: raw.name, Services: services}
		if raw.name == "" {
			problems = append(problems, "a project of several services needs a top-level name: (the app name)")
		}
	}
	serve, state, p := projectLabels(services, labels)
	problems = append(problems, p...)
	if a.IsProject() {
		a.Serve = serve
	}
	a.State = state
	if len(problems) == 0 {
		problems = a.withBuildPlaceholders().problems()
	}
	if len(problems) > 0 {
		return AppSpec{}, fmt.Errorf("%w: compose file: %s", runtime.ErrInvalid, strings.Join(problems, "; "))
	}
	return a, nil
}

// withBuildPlaceholders fills the image of every service that a pipeline
// builds and that has none yet, so the rest of it can be validated.
func (a AppSpec) withBuildPlaceholders() AppSpec {
	images := map[string]string{}
	for _, s := range a.Project() {
		if s.Build && s.Image == "" {
			images[s.Name] = "registry.invalid/" + s.Name + ":build"
		}
	}
	return a.WithImages(images)
}

// projectLabels reads drift.serve and drift.state from the services'
// labels: the service users reach (labelled, else the first that publishes
// a port, else the only one) and the state endpoint.
func projectLabels(services []Service, labels map[string]types.Labels) (serve string, state *runtime.State, problems []string) {
	var firstPublished string
	for _, s := range services {
		l := labels[s.Name]
		if v, ok := l[LabelServe]; ok {
			switch {
			case v != "true":
				problems = append(problems, fmt.Sprintf("service %q: label %s=%q: want \"true\" on the service users reach", s.Name, LabelServe, v))
			case serve != "":
				problems = append(problems, fmt.Sprintf("label %s is set on %s and %s: users reach one service", LabelServe, serve, s.Name))
			default:
				serve = s.Name
			}
		}
		if v, ok := l[LabelState]; ok {
			switch {
			case !healthRE.MatchString(v):
				problems = append(problems, fmt.Sprintf("service %q: label %s=%q must be an HTTP path (start with '/', no spaces, '?' or '#')", s.Name, LabelState, v))
			case state != nil:
				problems = append(problems, fmt.Sprintf("label %s is set on %s and %s: an app has one state endpoint", LabelState, state.Service, s.Name))
			default:
				state = &runtime.State{Service: s.Name, Path: v}
			}
		}
		if v, ok := l[LabelStateMerge]; ok {
			switch {
			case v != "true":
				problems = append(problems, fmt.Sprintf("service %q: label %s=%q: want \"true\" (the state endpoint takes PATCH {base, final})", s.Name, LabelStateMerge, v))
			case l[LabelState] == "":
				problems = append(problems, fmt.Sprintf("service %q: label %s is set without %s on the same service", s.Name, LabelStateMerge, LabelState))
			case state != nil && state.Service == s.Name:
				state.Merge = true
			}
		}
		if firstPublished == "" && slices.ContainsFunc(s.Ports, func(p Port) bool { return p.Published != "" }) {
			firstPublished = s.Name
		}
	}
	switch {
	case serve != "":
	case firstPublished != "":
		serve = firstPublished
	case len(services) == 1:
		serve = services[0].Name
	default:
		problems = append(problems, fmt.Sprintf("no service publishes a port: label the one users reach with %s: \"true\"", LabelServe))
	}
	return serve, state, problems
}

// loadCompose parses and validates data with compose-go, deterministically:
// variables come from env only and nothing outside data is read.
func loadCompose(data []byte, env map[string]string) (*types.Project, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("%w: compose file is empty", runtime.ErrInvalid)
	}
	environment := types.Mapping{}
	maps.Copy(environment, env) // the loader adds to it; keep the caller's map intact
	details := types.ConfigDetails{
		WorkingDir:  ".",
		ConfigFiles: []types.ConfigFile{{Filename: composeFilename, Content: data}},
		Environment: environment,
	}
	project, err := loader.LoadWithContext(context.Background(), details, func(o *loader.Options) {
		o.SetProjectName(composeProject, true)
		o.ResolvePaths = false          // keep paths as declared
		o.SkipResolveEnvironment = true // env_file would read files; rejected below
		o.SkipResolveLabels = true      // label_file likewise
		o.ResourceLoaders = append([]loader.ResourceLoader{noFiles{}}, o.ResourceLoaders...)
		if o.Interpolate != nil {
			o.Interpolate.Substitute = strictSubstitute
		}
	})
	if err != nil {
		if strings.HasSuffix(err.Error(), " false schema") { // compose-go's text for an unknown attribute
			return nil, fmt.Errorf("%w: compose file: %w (not an attribute of the compose specification)", runtime.ErrInvalid, err)
		}
		return nil, fmt.Errorf("%w: compose file: %w", runtime.ErrInvalid, err)
	}
	return project, nil
}

// noFiles stands before compose-go's local file loader so that include,
// extends.file and remote references fail instead of reading anything.
type noFiles struct{}

func (noFiles) Accept(string) bool { return true }

func (noFiles) Load(_ context.Context, p string) (string, error) {
	return "", fmt.Errorf("refers to %q: drift reads one self-contained compose file (no include, extends.file or remote resources)", p)
}

func (noFiles) Dir(p string) string { return pathpkg.Dir(p) }

// strictSubstitute interpolates like compose does, except that a variable
// that is not set (and has no default) is an error instead of "".
func strictSubstitute(tmpl string, mapping template.Mapping) (string, error) {
	return template.SubstituteWithOptions(tmpl, mapping,
		template.WithoutLogging,
		template.WithReplacementFunction(func(s string, m template.Mapping, cfg *template.Config) (string, error) {
			v, applied, err := template.DefaultReplacementAppliedFunc(s, m, cfg)
			if err == nil && !applied {
				name := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(s, "$"), "{"), "}")
				return "", fmt.Errorf("variable %s is not set (drift does not read the host environment: give it a value or a default like ${%s:-value})", name, name)
			}
			return v, err
		}))
}

// pickServices returns the named service, or every service of the
// project in file order when name is "".
func pickServices(p *types.Project, order []string, name string) ([]types.ServiceConfig, error) {
	all := make(map[string]types.ServiceConfig, len(p.Services)+len(p.DisabledServices))
	maps.Copy(all, p.DisabledServices) // behind a profile: still deployable by name
	maps.Copy(all, p.Services)
	if name != "" {
		s, ok := all[name]
		if !ok {
			return nil, fmt.Errorf("%w: compose file has no service %q (it has: %s)", runtime.ErrInvalid, name, strings.Join(slices.Sorted(maps.Keys(all)), ", "))
		}
		return []types.ServiceConfig{s}, nil
	}
	// The project is what compose starts with no profile given.
	var out []types.ServiceConfig
	for _, n := range order {
		if s, ok := p.Services[n]; ok {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: compose file declares no service (outside profiles)", runtime.ErrInvalid)
	}
	return out, nil
}

// fromService maps a loaded compose service; the problems found are
// reported together.
func fromService(s types.ServiceConfig, env map[string]string) (Service, []string) {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	a := Service{Name: s.Name, Image: s.Image, Hostname: s.Hostname, Build: s.Build != nil}
	if s.Image == "" && s.Build == nil {
		bad("no image:")
	}
	if len(s.EnvFiles) > 0 {
		bad("env_file is not supported (drift reads only the compose file): move the variables under environment:")
	}
	if len(s.LabelFiles) > 0 {
		bad("label_file is not supported (drift reads only the compose file): move the labels under labels:")
	}

	for _, p := range s.Ports {
		a.Ports = append(a.Ports, Port{Target: int(p.Target), Published: p.Published, HostIP: p.HostIP, Protocol: p.Protocol})
	}
	for _, e := range s.Expose {
		ports, err := parseExpose(e)
		if err != nil {
			bad("%v", err)
		}
		a.Ports = append(a.Ports, ports...)
	}
	if port, err := servicePort(a.Ports, s.Labels); err != nil {
		bad("%v", err)
	} else {
		a.Port = port
	}

	var missing []string
	for _, k := range slices.Sorted(maps.Keys(s.Environment)) {
		v := s.Environment[k]
		if v == nil {
			given, ok := env[k]
			if !ok {
				missing = append(missing, k)
				continue
			}
			v = &given
		}
		if a.Env == nil {
			a.Env = map[string]string{}
		}
		a.Env[k] = *v
	}
	if len(missing) > 0 {
		bad("environment variable(s) %s have no value in the file and none was given", strings.Join(missing, ", "))
	}

	if len(s.Entrypoint) > 0 {
		a.Command = append(slices.Clone([]string(s.Entrypoint)), s.Command...)
	} else if len(s.Command) > 0 {
		a.Command = slices.Clone([]string(s.Command))
	}

	if h, ok := s.Labels[LabelHealth]; ok {
		a.Health = h
		if h != "" && !strings.HasPrefix(h, "/") {
			a.Health = "/" + h
		}
	} else if hc := s.HealthCheck; hc != nil && !hc.Disable && len(hc.Test) > 0 && hc.Test[0] != "NONE" && hc.Test[0] != "none" {
		// drift runs no command in the service (its image may hold none):
		// an HTTP probe of the service itself is made by drift, anything
		// else becomes "the port accepts connections".
		if path, ok := healthPath(hc.Test, a.Port, s.Name, s.Hostname); ok {
			a.Health = path
		} else {
			a.Probe = runtime.ProbeTCP
		}
	}

	switch {
	case s.Deploy != nil && s.Deploy.Replicas != nil:
		a.Replicas = *s.Deploy.Replicas
	case s.Scale != nil:
		a.Replicas = *s.Scale
	}
	if (s.Deploy != nil && s.Deploy.Replicas != nil && *s.Deploy.Replicas == 0) || (s.Scale != nil && *s.Scale == 0) {
		bad("replicas is 0: drift runs at least one instance of the app it is asked to deploy")
	}

	for _, v := range s.Volumes {
		switch {
		case v.Type != types.VolumeTypeVolume:
			bad("volumes: %s mount of %q at %s is not supported: drift runs instances on other machines than yours; use a named volume (declared under the top-level volumes:)", v.Type, v.Source, v.Target)
		case v.Source == "":
			bad("volumes: anonymous volume at %s is not supported: name it (and declare it under the top-level volumes:) so every instance gets its own", v.Target)
		}
		a.Volumes = append(a.Volumes, Volume{Type: v.Type, Source: v.Source, Target: v.Target, ReadOnly: v.ReadOnly})
	}
	for _, n := range slices.Sorted(maps.Keys(s.Networks)) {
		if n != "default" {
			a.Networks = append(a.Networks, n)
		}
	}
	for _, d := range slices.Sorted(maps.Keys(s.DependsOn)) {
		if c := s.DependsOn[d].Condition; c == types.ServiceConditionCompletedSuccessfully {
			bad("depends_on: %s: condition %s is not supported: drift runs services, not jobs", d, c)
		}
		a.DependsOn = append(a.DependsOn, d)
	}
	return a, problems
}

// parseExpose reads one expose: entry, "8080", "8080/tcp" or "8080-8082/udp".
func parseExpose(e string) ([]Port, error) {
	spec, proto, _ := strings.Cut(e, "/")
	lo, hi, isRange := strings.Cut(spec, "-")
	first, err1 := strconv.Atoi(lo)
	last, err2 := first, error(nil)
	if isRange {
		last, err2 = strconv.Atoi(hi)
	}
	if err1 != nil || err2 != nil || first < 1 || last > 65535 || last < first || last-first > 1000 {
		return nil, fmt.Errorf("expose entry %q is not a port or port range", e)
	}
	ports := make([]Port, 0, last-first+1)
	for p := first; p <= last; p++ {
		ports = append(ports, Port{Target: p, Protocol: proto})
	}
	return ports, nil
}

// servicePort chooses the HTTP port: the drift.port label when set (it must
// be one of the declared ports, if any are declared), else the first TCP port.
func servicePort(ports []Port, labels types.Labels) (int, error) {
	var tcp []int
	for _, p := range ports {
		if p.Protocol == "" || p.Protocol == "tcp" {
			tcp = append(tcp, p.Target)
		}
	}
	if v, ok := labels[LabelPort]; ok {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 1 || n > 65535 {
			return 0, fmt.Errorf("label %s=%q is not a port number", LabelPort, v)
		}
		if len(tcp) > 0 && !slices.Contains(tcp, n) {
			return 0, fmt.Errorf("label %s=%d names none of the service's TCP ports %v", LabelPort, n, tcp)
		}
		return n, nil
	}
	if len(tcp) == 0 {
		return 0, fmt.Errorf("no port: declare the HTTP port under ports: or expose:, or set label %s", LabelPort)
	}
	return tcp[0], nil
}

// healthPath takes the path of the URL a wget or curl healthcheck probes on
// the service itself (localhost, or its own name) at port; ok is false when
// the test is no such probe.
func healthPath(test types.HealthCheckTest, port int, selfNames ...string) (path string, ok bool) {
	if len(test) == 0 {
		return "", false
	}
	var args []string
	switch test[0] {
	case "CMD":
		args = test[1:]
	case "CMD-SHELL":
		args = strings.Fields(strings.Join(test[1:], " "))
	default:
		args = test
	}
	tool := slices.IndexFunc(args, func(a string) bool {
		b := pathpkg.Base(strings.Trim(a, `'"`))
		return b == "wget" || b == "curl"
	})
	if tool < 0 {
		return "", false
	}
	for _, a := range args[tool+1:] {
		u, err := url.Parse(strings.Trim(a, `'"`))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
			continue
		}
		switch host := u.Hostname(); {
		case host == "localhost" || host == "127.0.0.1" || host == "::1" || host == "0.0.0.0" || host != "" && slices.Contains(selfNames, host):
		default:
			continue
		}
		if u.Port() != "" && u.Port() != strconv.Itoa(port) {
			return "", false // probes another port than the one drift checks
		}
		if p := u.EscapedPath(); p != "" {
			return p, true
		}
		return "/", true
	}
	return "", false
}
