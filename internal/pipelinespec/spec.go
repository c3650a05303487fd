// Package pipelinespec reads and checks a pipeline spec: where the source
// is (git URL + ref), how to build and test it, which files to package,
// the image to make of them and where to deploy it. The deploy part may
// name a compose file as the orchestration info (read with appspec); when
// it is a project, images: lists one image per service with a build
// section, all built, tested and pushed by the same run.
//
// The package is pure logic: it reads only the files it is handed.
package pipelinespec

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"gopkg.in/yaml.v3"

	"github.com/edgedrift/drift/internal/appspec"
	"github.com/edgedrift/drift/internal/names"
)

// ErrInvalid marks every problem of a spec.
var ErrInvalid = errors.New("invalid pipeline spec")

// Defaults.
const (
	DefaultRolloutTimeout  = 2 * time.Minute
	DefaultApprovalTimeout = time.Hour
	DefaultPort            = 8080
)

// Verification modes of a target.
const (
	VerifyHTTP  = "http"  // GET the endpoint's health path from the target's worker (default)
	VerifyReady = "ready" // trust the runtime's readiness (a cluster whose services the worker cannot reach)
)

// Spec is one pipeline. It travels in workflow input, so it is plain data.
type Spec struct {
	App       string   `yaml:"app" json:"app"`             // DNS-1035 label; names the workflow and instances
	Repo      string   `yaml:"repo" json:"repo"`           // git URL (https://, ssh, file://) or local path
	Ref       string   `yaml:"ref" json:"ref"`             // branch, tag or commit
	Build     Step     `yaml:"build" json:"build"`         // run once per image platform with GOOS/GOARCH set
	Test      Step     `yaml:"test" json:"test"`           // run once on the build host; a failure stops the run
	Artifacts []string `yaml:"artifacts" json:"artifacts"` // files (relative to the checkout) to package per platform
	Image     Image    `yaml:"image" json:"image"`
	// Images is the form for a compose project: one image per service with
	// a build section, each with its own artifacts. Artifacts and Image
	// are then empty.
	Images []Image `yaml:"images" json:"images,omitempty"`
	Deploy Deploy  `yaml:"deploy" json:"deploy"`
}

// Step is a list of shell commands and their environment.
type Step struct {
	Commands []string          `yaml:"commands" json:"commands,omitempty"`
	Env      map[string]string `yaml:"env" json:"env,omitempty"`
	Timeout  time.Duration     `yaml:"timeout" json:"timeout,omitempty"` // 0: 20 minutes
}

// Image says how the packaged artifacts become an OCI image.
type Image struct {
	// Service is the compose service the image is for (images: only).
	Service string `yaml:"service" json:"service,omitempty"`
	// Name is a repository, e.g. hello or 127.0.0.1:5000/team/hello; without
	// a registry host it goes to the center registry.
	Name string `yaml:"name" json:"name"`
	// Artifacts are the image's files (images: only; the one-image form
	// lists them at the top).
	Artifacts  []string `yaml:"artifacts" json:"artifacts,omitempty"`
	Entrypoint []string `yaml:"entrypoint" json:"entrypoint,omitempty"` // default: /<first artifact's file name>
	Env        []string `yaml:"env" json:"env,omitempty"`               // KEY=VALUE baked into the image
	Ports      []int    `yaml:"ports" json:"ports,omitempty"`
	Platforms  []string `yaml:"platforms" json:"platforms"` // e.g. linux/amd64, linux/loong64
	// Base is what the artifacts are laid over: scratch (default), drift (a
	// base drift makes of the build host's CA certificates and tzdata, for
	// apps that make TLS calls or use time zones) or an image reference
	// (pin it by digest: the build key knows only the reference).
	Base string `yaml:"base" json:"base,omitempty"`
}

// Bases drift makes itself.
const (
	BaseScratch = "scratch"
	BaseDrift   = "drift"
)

// Deploy is the requirement info handed to the clouds.
type Deploy struct {
	Compose         string            `yaml:"compose" json:"-"`         // compose file (relative to the spec file)
	Service         string            `yaml:"service" json:"-"`         // its service (default: the only one)
	Port            int               `yaml:"port" json:"port"`         // HTTP port (default: compose's, else 8080)
	Health          string            `yaml:"health" json:"health"`     // HTTP path answered when ready
	Env             map[string]string `yaml:"env" json:"env"`           // extra environment
	Replicas        int               `yaml:"replicas" json:"replicas"` // Kubernetes replicas
	Targets         []Target          `yaml:"targets" json:"targets"`
	RolloutTimeout  time.Duration     `yaml:"rolloutTimeout" json:"rolloutTimeout"`
	ApprovalTimeout time.Duration     `yaml:"approvalTimeout" json:"approvalTimeout"`
	// Waves roll the release out a part of the targets at a time (none: one
	// wave of every target, each rolled back alone when it fails).
	Waves []Wave `yaml:"waves" json:"waves,omitempty"`
	// Sessions are the users whose mobility sessions of the app adopt the
	// release once every target runs it ("*": every open one); a failed
	// rollout leaves them as they were.
	Sessions []string `yaml:"sessions" json:"sessions,omitempty"`
	// SessionsReplaceAfter is how long such a session must have had no
	// move before its serving instance is replaced with the release (0:
	// the sessions' default; negative: only at its next move).
	SessionsReplaceAfter time.Duration `yaml:"sessionsReplaceAfter" json:"sessionsReplaceAfter,omitempty"`
	// App is the orchestration info every target runs (image set per run):
	// from the compose file when given, else from the fields above.
	App appspec.AppSpec `yaml:"-" json:"app"`
}

// AllSessions in deploy.sessions names every open session of the app.
const AllSessions = "*"

// Target is one cloud to deploy to.
type Target struct {
	Cloud    string `yaml:"cloud" json:"cloud"`
	Approval bool   `yaml:"approval" json:"approval,omitempty"` // wait for Approve before deploying here
	Verify   string `yaml:"verify" json:"verify,omitempty"`     // http (default) or ready
	// Labels are the target's own, for waves that select by label.
	Labels map[string]string `yaml:"labels" json:"labels,omitempty"`
}

// Platform is an OS/architecture pair.
type Platform struct{ OS, Arch string }

func (p Platform) String() string { return p.OS + "/" + p.Arch }

// ParsePlatform reads "linux/amd64".
func ParsePlatform(s string) (Platform, error) {
	os, arch, ok := strings.Cut(s, "/")
	if !ok || !tokenRE.MatchString(os) || !tokenRE.MatchString(arch) {
		return Platform{}, fmt.Errorf("platform %q: want os/arch, e.g. linux/amd64", s)
	}
	return Platform{os, arch}, nil
}

// Load reads a spec file; a compose file it names is read relative to it.
func Load(file string) (Spec, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return Spec{}, err
	}
	return Parse(data, func(p string) ([]byte, error) {
		if !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(file), p)
		}
		return os.ReadFile(p)
	})
}

// Parse reads a spec, fills defaults and validates it. readFile reads the
// compose file the spec names (nil: a compose file is an error).
func Parse(data []byte, readFile func(string) ([]byte, error)) (Spec, error) {
	var s Spec
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		return Spec{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if s.Deploy.Compose != "" {
		if readFile == nil {
			return Spec{}, fmt.Errorf("%w: compose file %q cannot be read here", ErrInvalid, s.Deploy.Compose)
		}
		b, err := readFile(s.Deploy.Compose)
		if err != nil {
			return Spec{}, fmt.Errorf("%w: compose file: %v", ErrInvalid, err)
		}
		app, err := appspec.FromCompose(b, s.Deploy.Service)
		if err != nil {
			return Spec{}, fmt.Errorf("%w: compose file %s: %v", ErrInvalid, s.Deploy.Compose, err)
		}
		s.Deploy.App = app
	}
	s.fill()
	if err := s.Validate(); err != nil {
		return Spec{}, err
	}
	return s, nil
}

// fill sets defaults and derives the app's orchestration info.
func (s *Spec) fill() {
	d := &s.Deploy
	if d.RolloutTimeout == 0 {
		d.RolloutTimeout = DefaultRolloutTimeout
	}
	if d.ApprovalTimeout == 0 {
		d.ApprovalTimeout = DefaultApprovalTimeout
	}
	d.fillWaves()
	for i := range d.Targets {
		if d.Targets[i].Verify == "" {
			d.Targets[i].Verify = VerifyHTTP
		}
	}
	if len(s.Image.Entrypoint) == 0 && len(s.Artifacts) > 0 {
		s.Image.Entrypoint = []string{"/" + path.Base(s.Artifacts[0])}
	}
	if len(s.Images) > 0 {
		ports := map[string]int{}
		for _, svc := range d.App.Project() {
			ports[svc.Name] = svc.Port
		}
		for i := range s.Images {
			img := &s.Images[i]
			if len(img.Entrypoint) == 0 && len(img.Artifacts) > 0 {
				img.Entrypoint = []string{"/" + path.Base(img.Artifacts[0])}
			}
			if len(img.Ports) == 0 && ports[img.Service] != 0 {
				img.Ports = []int{ports[img.Service]}
			}
		}
		return
	}
	if d.App.Name == "" { // no compose file
		d.App.Name = s.App
		d.App.Port = DefaultPort
		if len(s.Image.Ports) > 0 {
			d.App.Port = s.Image.Ports[0]
		}
	}
	// Fields written in the spec win over the compose file's.
	if d.Port != 0 {
		d.App.Port = d.Port
	}
	if d.Health != "" {
		d.App.Health = d.Health
	}
	if d.Replicas != 0 {
		d.App.Replicas = d.Replicas
	}
	if len(d.Env) > 0 {
		env := map[string]string{}
		for k, v := range d.App.Env {
			env[k] = v
		}
		for k, v := range d.Env {
			env[k] = v
		}
		d.App.Env = env
	}
	if len(s.Image.Ports) == 0 {
		s.Image.Ports = []int{d.App.Port}
	}
}

var (
	appRE   = regexp.MustCompile(`^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$`)
	tokenRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]*$`)
	envRE   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// ValidApp says whether app is a name an app's pipeline may have: a
// DNS-1035 label of at most 40 characters.
func ValidApp(app string) bool { return appRE.MatchString(app) }

// Validate reports every problem of the spec in one error wrapping ErrInvalid.
func (s Spec) Validate() error {
	var p []string
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	if !ValidApp(s.App) {
		add("app %q must be a DNS-1035 label of at most 40 characters", s.App)
	}
	if strings.TrimSpace(s.Repo) == "" {
		add("repo is missing")
	} else if strings.HasPrefix(s.Repo, "-") {
		add("repo %q may not start with '-'", s.Repo)
	}
	if strings.TrimSpace(s.Ref) == "" || strings.HasPrefix(s.Ref, "-") || strings.ContainsAny(s.Ref, " \t\n~^:?*[\\") {
		add("ref %q is not a git branch, tag or commit", s.Ref)
	}
	if len(s.Build.Commands) == 0 {
		add("build.commands is empty")
	}
	for _, st := range []struct {
		name string
		step Step
	}{{"build", s.Build}, {"test", s.Test}} {
		for _, k := range sortedKeys(st.step.Env) {
			if !envRE.MatchString(k) {
				add("%s.env: bad variable name %q", st.name, k)
			}
		}
		if st.step.Timeout < 0 {
			add("%s.timeout is negative", st.name)
		}
	}
	if len(s.Images) == 0 {
		one := s.Image
		one.Artifacts = s.Artifacts
		for _, msg := range imageProblems(one) {
			add("%s", msg)
		}
	} else {
		if len(s.Artifacts) > 0 || s.Image.Name != "" || len(s.Image.Platforms) > 0 || len(s.Image.Entrypoint) > 0 || len(s.Image.Env) > 0 || s.Image.Base != "" {
			add("images: and the one-image form (artifacts:, image:) exclude each other")
		}
		services, names := map[string]bool{}, map[string]bool{}
		for i, img := range s.Images {
			switch {
			case img.Service == "":
				add("images[%d] names no service", i)
			case services[img.Service]:
				add("images: service %s is listed twice", img.Service)
			}
			if names[img.Name] && img.Name != "" {
				add("images: two images are named %s", img.Name)
			}
			services[img.Service], names[img.Name] = true, true
			for _, msg := range imageProblems(img) {
				add("images[%s]: %s", img.Service, msg)
			}
		}
	}
	if len(s.Deploy.Targets) == 0 {
		add("deploy.targets is empty")
	}
	clouds := map[string]bool{}
	for _, t := range s.Deploy.Targets {
		if t.Cloud == "" {
			add("a target has no cloud")
		}
		if clouds[t.Cloud] {
			add("target %s is listed twice", t.Cloud)
		}
		clouds[t.Cloud] = true
		if !slices.Contains([]string{VerifyHTTP, VerifyReady}, t.Verify) {
			add("target %s: verify %q: want %s or %s", t.Cloud, t.Verify, VerifyHTTP, VerifyReady)
		}
	}
	if s.Deploy.RolloutTimeout < 0 || s.Deploy.ApprovalTimeout < 0 {
		add("deploy timeouts must be positive")
	}
	for _, u := range s.Deploy.Sessions {
		if err := names.CheckUser(u); u != AllSessions && err != nil {
			add("deploy.sessions: %v", err)
		}
	}
	for _, msg := range s.Deploy.waveProblems() {
		add("deploy: %s", msg)
	}
	for _, msg := range s.deployProblems() {
		add("deploy: %s", msg)
	}
	if len(p) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalid, strings.Join(p, "; "))
	}
	return nil
}

// imageProblems lists what is wrong with one image and its artifacts.
func imageProblems(img Image) []string {
	var p []string
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	if len(img.Artifacts) == 0 {
		add("artifacts is empty")
	}
	seen := map[string]bool{}
	for _, a := range img.Artifacts {
		clean := path.Clean(a)
		if a == "" || path.IsAbs(a) || clean == "." || clean == ".." || strings.HasPrefix(clean, "../") {
			add("artifact %q must be a file path inside the checkout", a)
		}
		if seen[path.Base(clean)] {
			add("two artifacts are named %q in the image", path.Base(clean))
		}
		seen[path.Base(clean)] = true
	}
	if img.Name == "" {
		add("image.name is missing")
	} else if strings.ContainsAny(img.Name, "@") || strings.Count(path.Base(img.Name), ":") > 0 {
		add("image.name %q must be a repository without tag or digest (the run sets the tag)", img.Name)
	} else if _, err := name.NewRepository(InRegistry(img.Name, "center.invalid"), name.StrictValidation); err != nil {
		add("image.name %q: %v", img.Name, err)
	}
	if len(img.Platforms) == 0 {
		add("image.platforms is empty")
	}
	if b := img.Base; b != "" && b != BaseScratch && b != BaseDrift {
		if _, err := name.ParseReference(b, name.StrictValidation); err != nil {
			add("image.base %q: want scratch, drift or an image reference with its registry, tag or digest (%v)", b, err)
		}
	}
	plats := map[string]bool{}
	for _, pl := range img.Platforms {
		if _, err := ParsePlatform(pl); err != nil {
			add("%v", err)
		}
		if plats[pl] {
			add("platform %s is listed twice", pl)
		}
		plats[pl] = true
	}
	for _, port := range img.Ports {
		if port < 1 || port > 65535 {
			add("image port %d is not in 1..65535", port)
		}
	}
	for _, kv := range img.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || !envRE.MatchString(k) {
			add("image.env %q must be KEY=VALUE", kv)
		}
	}
	return p
}

// deployProblems lists what is wrong with the app the targets run, with
// the images the run makes standing in for the real ones.
func (s Spec) deployProblems() []string {
	var p []string
	app := s.Deploy.App
	if len(s.Images) == 0 {
		if app.IsProject() {
			return []string{fmt.Sprintf("the compose file is a project of %d services: list one image per service with a build section under images:", len(app.Services))}
		}
		app.Image = "registry.invalid/placeholder:v" // the run sets the image
	} else {
		d := s.Deploy
		if d.Port != 0 || d.Health != "" || d.Replicas != 0 || len(d.Env) > 0 {
			p = append(p, "port, health, replicas and env are set per service in the compose file when images: is used")
		}
		built := map[string]bool{}
		placeholders := map[string]string{}
		for _, img := range s.Images {
			built[img.Service] = true
			placeholders[img.Service] = "registry.invalid/" + img.Service + ":v" // the run sets them
		}
		for _, svc := range app.Project() {
			if svc.Build && !built[svc.Name] {
				p = append(p, fmt.Sprintf("compose service %s has a build section but no image under images:", svc.Name))
			}
			delete(built, svc.Name)
		}
		for _, img := range s.Images {
			if built[img.Service] {
				p = append(p, fmt.Sprintf("images: service %s is not a service of the compose file", img.Service))
			}
		}
		app = app.WithImages(placeholders)
	}
	if err := app.Validate(); err != nil {
		p = append(p, err.Error())
	}
	return p
}

// ImageSpecs lists the images a run makes, in both forms: the one image
// (with the top-level artifacts; Service empty), or images:.
func (s Spec) ImageSpecs() []Image {
	if len(s.Images) > 0 {
		return s.Images
	}
	one := s.Image
	one.Artifacts = s.Artifacts
	return []Image{one}
}

// InRegistry is the repository an image name stands for: a name without a
// registry host (a first part with '.' or ':', or localhost) lives in
// the registry given.
func InRegistry(image, registry string) string {
	first, _, found := strings.Cut(image, "/")
	if found && (strings.ContainsAny(first, ".:") || first == "localhost") {
		return image
	}
	return registry + "/" + image
}

// Platforms parses the platforms of a valid spec's images: each once, in
// the order they are first listed. A build runs once per platform.
func (s Spec) Platforms() []Platform {
	var out []Platform
	for _, img := range s.ImageSpecs() {
		for _, p := range img.Platforms {
			if pl, _ := ParsePlatform(p); !slices.Contains(out, pl) {
				out = append(out, pl)
			}
		}
	}
	return out
}

// Has reports whether the image is built for platform pl.
func (img Image) Has(pl Platform) bool { return slices.Contains(img.Platforms, pl.String()) }

// NeedsApproval reports whether any target waits for approval.
func (s Spec) NeedsApproval() bool {
	return slices.ContainsFunc(s.Deploy.Targets, func(t Target) bool { return t.Approval })
}

// BuildKey identifies what a build produces from a source tree: the tree's
// git hash and everything of the spec that shapes the image. Two runs with
// the same key make the same image, so the second can reuse the first's.
func (s Spec) BuildKey(tree string) string {
	// Images is left out when empty, so a one-image spec keeps the key it
	// had before images: existed and its earlier builds are reused.
	b, _ := json.Marshal(struct {
		Tree      string   `json:"tree"`
		Build     Step     `json:"build"`
		Test      Step     `json:"test"`
		Artifacts []string `json:"artifacts"`
		Image     Image    `json:"image"`
		Images    []Image  `json:"images,omitempty"`
	}{tree, s.Build, s.Test, s.Artifacts, s.Image, s.Images})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// sortedKeys ranges over a map in key order, so problems are reported in
// the same order every time (Validate runs in workflow code).
//
//workflowcheck:ignore
func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
