package workflows

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/edgedrift/drift/activities"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/port"
	"github.com/edgedrift/drift/internal/runtime"
)

// Error types of a port.
const (
	ErrTypeInvalidPort = "InvalidPort" // bad input to PortToArch
	ErrTypePortFailed  = "PortFailed"  // the port ended needing a human; details hold the report
)

// maxFixRounds bounds diagnose → fix rounds; each fixes or gives up on
// one module, so it only matters for pathological builds.
const maxFixRounds = 20

// portRunsTheProgram is the change that made a port run the program (not
// only its tests), bound and parallelise the tests, tidy, leave cgo-only
// modules unpatched and deploy services. Ports started before it replay
// its old commands.
const portRunsTheProgram = "port-runs-the-program"

// PortInput asks for a Go module to be ported to an arch.
type PortInput struct {
	Repo     string   `json:"repo"`           // git URL or local path
	Ref      string   `json:"ref,omitempty"`  // branch, tag or commit (git only)
	Arch     string   `json:"arch,omitempty"` // GOARCH; default loong64
	Packages []string `json:"packages,omitempty"`
	// TestModules are dependencies whose tests also run under emulation
	// (the port's own module always does).
	TestModules []string `json:"testModules,omitempty"`
	SkipTests   bool     `json:"skipTests,omitempty"` // skips the tests only: the program still runs
	SkipImage   bool     `json:"skipImage,omitempty"`
	Image       string   `json:"image,omitempty"` // repository in the center registry; default port/<name>
	// Smoke are the runs of the ported commands compared with the host
	// build; default: each command without arguments.
	Smoke []activities.PortSmoke `json:"smoke,omitempty"`
	// RunTimeout bounds a smoke run on the host (default 10s; emulated
	// runs get ten times the host's time on top).
	RunTimeout time.Duration `json:"runTimeout,omitempty"`
	// TestTimeout bounds each package's test binary under emulation
	// (default 10m); TestParallel is how many run at once (default: the
	// worker's cores).
	TestTimeout  time.Duration `json:"testTimeout,omitempty"`
	TestParallel int           `json:"testParallel,omitempty"`
	// Service deploys the ported image on a cloud of the arch and checks
	// it answers HTTP (a compose file in the module gives the port too).
	Service *PortService `json:"service,omitempty"`
}

// PortService is where and how a ported service is deployed.
type PortService struct {
	Cloud  string `json:"cloud,omitempty"`  // a cloud whose arch is the port's
	Port   int    `json:"port,omitempty"`   // HTTP port inside the container; default from the compose file
	Health string `json:"health,omitempty"` // path answered when ready; default /
}

// Fixes applied to a module.
const (
	FixUpgrade   = "upgrade"
	FixPatch     = "patch"
	FixHuman     = "needs-human"
	FixSuccessor = "successor" // imports moved to the module that continues it
)

// ModuleReport says what was wrong with a module, what was done about it
// and how that was checked.
type ModuleReport struct {
	Path         string                  `json:"path"`
	Version      string                  `json:"version,omitempty"`
	Causes       []port.Cause            `json:"causes"`
	Packages     []string                `json:"packages"`
	Errors       []string                `json:"errors"` // as the compiler said, before the fix
	Fix          string                  `json:"fix"`
	Upgrade      *activities.PortUpgrade `json:"upgrade,omitempty"`
	Patch        *activities.PortPatch   `json:"patch,omitempty"`
	Verification string                  `json:"verification"`
	// Final is the version go.mod ends at after every fix and tidying
	// (minimal version selection may raise it above the one chosen).
	Final  string `json:"final,omitempty"`
	Advice string `json:"advice,omitempty"` // what a person can do
	// Successor is the move to the module that continues an archived one:
	// the fix when nothing else worked, else verified and offered.
	Successor *activities.PortSuccessor `json:"successor,omitempty"`
}

// PortCheck is one check the port ran and what it showed.
type PortCheck struct {
	Check  string `json:"check"`
	OK     bool   `json:"ok"`
	Result string `json:"result"`
}

// PortServiceReport is the ported service running on a cloud.
type PortServiceReport struct {
	Cloud    string           `json:"cloud"`
	Instance string           `json:"instance"`
	Endpoint runtime.Endpoint `json:"endpoint"`
	Verified string           `json:"verified,omitempty"`
}

// StepTime is how long a step of the port took.
type StepTime struct {
	Step    string        `json:"step"`
	Elapsed time.Duration `json:"elapsed"`
}

// Port statuses.
const (
	PortRunning       = "running"
	PortDone          = "ported"
	PortNeedsHuman    = "needs-human"
	PortTestsFailed   = "tests-failed"
	PortRunFailed     = "run-failed"     // the program behaves differently under emulation
	PortServiceFailed = "service-failed" // the deployed service did not answer
	PortFailedStatus  = "failed"         // a step failed; the message says which
)

// PortReport is the Report query's answer and PortToArch's result.
type PortReport struct {
	ID       string                   `json:"id"`
	Repo     string                   `json:"repo"`
	Module   string                   `json:"module,omitempty"`
	Arch     string                   `json:"arch"`
	Status   string                   `json:"status"`
	Step     string                   `json:"step"`
	Initial  *port.Diagnosis          `json:"initial,omitempty"` // what failed before any fix
	Modules  []ModuleReport           `json:"modules,omitempty"`
	Change   *activities.PortCommit   `json:"change,omitempty"`
	Binaries []activities.PortBinary  `json:"binaries,omitempty"`
	Tests    []activities.PortTestRun `json:"tests,omitempty"`
	Image    string                   `json:"image,omitempty"` // pushed, by digest
	Steps    []StepTime               `json:"steps,omitempty"`
	Source   *activities.PortSource   `json:"source,omitempty"`
	// Runs are the ported commands run under emulation against the host.
	Runs  []activities.PortRunCheck `json:"runs,omitempty"`
	Stubs []port.Stub               `json:"stubs,omitempty"`
	// Checks are every check run, in order, with its result.
	Checks   []PortCheck        `json:"checks,omitempty"`
	Warnings []string           `json:"warnings,omitempty"`
	Service  *PortServiceReport `json:"service,omitempty"`
}

// PortToArch ports a Go module to linux/<arch>: diagnose what fails, fix
// each failing dependency (upgrade, else patched copy + replace, else the
// module that continues it, else report it for a human), tidy and commit,
// cross-build, run the program under qemu against its host build, run
// the tests under qemu, push an image and, for a service, deploy it on a
// cloud of the arch and check it answers.
func PortToArch(ctx workflow.Context, in PortInput) (PortReport, error) {
	p, err := newPorting(ctx, in)
	if err != nil {
		return PortReport{}, err
	}
	return p.run(ctx)
}

type porting struct {
	in     PortInput
	report PortReport
	src    activities.PortSource
	v2     bool // runs the program, bounded parallel tests, tidy, services
}

func newPorting(ctx workflow.Context, in PortInput) (*porting, error) {
	if in.Arch == "" {
		in.Arch = names.DefaultPortArch
	}
	if len(in.Packages) == 0 {
		in.Packages = []string{"./..."}
	}
	if err := validatePort(in); err != nil {
		return nil, err
	}
	if in.Image == "" {
		in.Image = "port/" + strings.ToLower(names.RepoName(in.Repo))
	}
	return &porting{in: in, report: PortReport{
		ID: workflow.GetInfo(ctx).WorkflowExecution.ID, Repo: in.Repo, Arch: in.Arch, Status: PortRunning, Step: "starting",
	}}, nil
}

// validatePort rejects bad input before any side effect.
func validatePort(in PortInput) error {
	switch {
	case strings.TrimSpace(in.Repo) == "":
		return invalid(ErrTypeInvalidPort, "no repo given: a git URL or a local path")
	case !port.KnownArch(in.Arch):
		return invalid(activities.ErrTypeUnknownArch, "unknown GOARCH %q", in.Arch)
	case slices.Contains(in.Packages, ""):
		return invalid(ErrTypeInvalidPort, "empty package pattern")
	case slices.Contains(in.TestModules, ""):
		return invalid(ErrTypeInvalidPort, "empty test module path")
	case in.RunTimeout < 0 || in.TestTimeout < 0 || in.TestParallel < 0:
		return invalid(ErrTypeInvalidPort, "negative run timeout, test timeout or test parallelism")
	case slices.ContainsFunc(in.Smoke, func(s activities.PortSmoke) bool { return slices.Contains(s.Args, "") && len(s.Args) == 1 }):
		return invalid(ErrTypeInvalidPort, "a smoke run with one empty argument")
	}
	if s := in.Service; s != nil {
		switch {
		case s.Port < 0 || s.Port > 65535:
			return invalid(ErrTypeInvalidPort, "service port %d is not in 1..65535", s.Port)
		case s.Cloud != "" && runtime.ValidateName(s.Cloud) != nil:
			return invalid(ErrTypeInvalidPort, "service cloud %q is not a cloud id", s.Cloud)
		case strings.ContainsAny(s.Health, " ?#\x00") || s.Health != "" && !strings.HasPrefix(s.Health, "/"):
			return invalid(ErrTypeInvalidPort, "service health path %q must start with / and hold no spaces, ? or #", s.Health)
		case in.SkipImage:
			return invalid(ErrTypeInvalidPort, "a service is deployed from the port's image: drop --skip-image")
		}
	}
	return nil
}

func (p *porting) run(ctx workflow.Context) (PortReport, error) {
	if err := setProgressQuery(ctx, func() (PortReport, error) { return p.report, nil }, names.LegacyPortQuery); err != nil {
		return PortReport{}, err
	}
	if err := workflow.UpsertTypedSearchAttributes(ctx,
		names.AppKey.ValueSet(names.RepoName(p.in.Repo)),
		names.KindKey.ValueSet("port"),
	); err != nil {
		return PortReport{}, err
	}
	p.v2 = workflow.GetVersion(ctx, portRunsTheProgram, workflow.DefaultVersion, 1) == 1
	if err := p.step(ctx, "fetch", "fetch "+p.in.Repo, func(actx workflow.Context) error {
		in := activities.PortFetchInput{ID: p.report.ID, Repo: p.in.Repo, Ref: p.in.Ref, Arch: p.in.Arch}
		if err := workflow.ExecuteActivity(actx, portActs.PortFetch, in).Get(ctx, &p.src); err != nil {
			return err
		}
		p.report.Module, p.report.Source = p.src.Module, &p.src
		return nil
	}); err != nil {
		return p.report, err
	}
	err := p.afterFetch(ctx)
	if err != nil && p.v2 && !isType(err, ErrTypePortFailed) {
		// Whatever failed, the report so far goes with the error.
		err = p.fail(ctx, PortFailedStatus, fmt.Sprintf("%s: %s", p.report.Step, errText(err)))
	}
	if err != nil {
		return p.report, err
	}
	p.report.Status, p.report.Step = PortDone, "done"
	p.publish(ctx)
	return p.report, nil
}

// afterFetch is the port from diagnosis to the running service.
func (p *porting) afterFetch(ctx workflow.Context) error {
	if err := p.fixAll(ctx); err != nil {
		return err
	}
	if err := p.step(ctx, "build", "cross-build for linux/"+p.in.Arch, func(actx workflow.Context) error {
		return workflow.ExecuteActivity(actx, portActs.PortBuild, p.diagnoseInput()).Get(ctx, &p.report.Binaries)
	}); err != nil {
		return err
	}
	p.check("cross-build for linux/"+p.in.Arch, true, fmt.Sprintf("%d command(s)", len(p.report.Binaries)))
	if p.v2 {
		if err := p.verify(ctx); err != nil {
			return err
		}
	}
	if !p.in.SkipTests {
		test := p.testPackages
		if !p.v2 {
			test = p.test
		}
		if err := test(ctx); err != nil {
			return err
		}
	}
	if p.in.SkipImage {
		return nil
	}
	if p.v2 && len(p.report.Binaries) == 0 {
		p.warn("no main package: no command to put in an image")
		return nil
	}
	if err := p.step(ctx, "image", "build and push the linux/"+p.in.Arch+" image", func(actx workflow.Context) error {
		in := activities.PortImageInput{Name: p.in.Image, Arch: p.in.Arch, Binaries: p.report.Binaries}
		return workflow.ExecuteActivity(actx, portActs.PortImage, in).Get(ctx, &p.report.Image)
	}); err != nil {
		return err
	}
	p.check("image", true, p.report.Image)
	if p.v2 {
		return p.service(ctx)
	}
	return nil
}

// fixAll diagnoses, fixes the first failing module not yet worked on and
// diagnoses again, until the build passes or every failing module has
// been given up on; the changes are then committed on the port branch.
func (p *porting) fixAll(ctx workflow.Context) error {
	tried := map[string]bool{}
	moved := map[string]bool{} // modules whose successor was tried
	var stuck []string         // modules still failing after every fix
	for round := 0; round < maxFixRounds; round++ {
		var d port.Diagnosis
		if err := p.step(ctx, "diagnose", "diagnose the build for linux/"+p.in.Arch, func(actx workflow.Context) error {
			return workflow.ExecuteActivity(actx, portActs.PortDiagnose, p.diagnoseInput()).Get(ctx, &d)
		}); err != nil {
			return err
		}
		if p.report.Initial == nil {
			p.report.Initial = &d
		}
		if d.OK() {
			break
		}
		i := slices.IndexFunc(d.Modules, func(m port.ModuleFailure) bool { return !tried[m.Path] })
		if i < 0 {
			stuck = p.needsHuman(d)
			if p.v2 {
				applied, err := p.moveToSuccessors(ctx, stuck, moved)
				if err != nil {
					return err
				}
				if applied {
					stuck = nil
					continue
				}
			}
			break
		}
		tried[d.Modules[i].Path] = true
		if err := p.fix(ctx, d.Modules[i]); err != nil {
			return err
		}
	}
	if p.v2 && len(stuck) == 0 {
		if err := p.offerSuccessors(ctx); err != nil {
			return err
		}
	}
	if err := p.step(ctx, "commit", "tidy and commit the port on "+activities.PortBranch(p.in.Arch), func(actx workflow.Context) error {
		in := activities.PortCommitInput{Source: p.src, Message: p.commitMessage(), Tidy: p.v2}
		return workflow.ExecuteActivity(actx, portActs.PortCommit, in).Get(ctx, &p.report.Change)
	}); err != nil {
		return err
	}
	if c := p.report.Change; c.Tidy != "" {
		p.check("go mod tidy", !strings.HasPrefix(c.Tidy, "go mod tidy failed"), c.Tidy)
	}
	p.finalVersions()
	if len(stuck) > 0 {
		return p.fail(ctx, PortNeedsHuman, fmt.Sprintf("%s does not build for linux/%s; needs a human: %s", p.in.Repo, p.in.Arch, strings.Join(stuck, ", ")))
	}
	return nil
}

// fix tries, in order, an upgrade and a patched copy of one module; when
// neither builds it is left for a human with its errors.
func (p *porting) fix(ctx workflow.Context, m port.ModuleFailure) error {
	mr := ModuleReport{Path: m.Path, Version: m.Version, Causes: m.Causes}
	for _, pkg := range m.Packages {
		mr.Packages = append(mr.Packages, pkg.Package)
		mr.Errors = append(mr.Errors, pkg.Errors...)
	}
	in := activities.PortFixInput{Source: p.src, Packages: p.in.Packages, Module: m}
	var up activities.PortUpgrade
	if err := p.step(ctx, "upgrade", "find a version of "+m.Path+" that builds for "+p.in.Arch, func(actx workflow.Context) error {
		return workflow.ExecuteActivity(actx, portActs.PortUpgrade, in).Get(ctx, &up)
	}); err != nil {
		return err
	}
	mr.Upgrade = &up
	if up.Version != "" {
		mr.Fix = FixUpgrade
		mr.Verification = fmt.Sprintf("%s@%s rebuilt for linux/%s; host build and tests green", m.Path, up.Version, p.in.Arch)
		p.report.Modules = append(p.report.Modules, mr)
		return nil
	}
	if p.v2 && slices.Contains(m.Causes, port.CauseCgo) {
		// No file derived from another arch stands in for C code.
		mr.Fix, mr.Advice = FixHuman, port.CgoAdvice(m, p.in.Arch)
		mr.Verification = "upgrade: " + up.Reason + "; not patched: cgo-only"
		p.report.Modules = append(p.report.Modules, mr)
		return nil
	}
	var patch activities.PortPatch
	if err := p.step(ctx, "patch", "patch a local copy of "+m.Path+" for "+p.in.Arch, func(actx workflow.Context) error {
		return workflow.ExecuteActivity(actx, portActs.PortPatch, in).Get(ctx, &patch)
	}); err != nil {
		return err
	}
	mr.Patch = &patch
	if patch.Reason == "" && len(patch.Files) > 0 {
		mr.Fix = FixPatch
		mr.Verification = fmt.Sprintf("%s rebuilt for linux/%s from %s with %d generated or widened file(s)", strings.Join(m.BuildList(), ", "), p.in.Arch, patch.Dir, len(patch.Files))
	} else {
		mr.Fix = FixHuman
		mr.Verification = "upgrade: " + up.Reason + "; patch: " + patch.Reason
	}
	p.report.Modules = append(p.report.Modules, mr)
	return nil
}

// successor tries moving module to the module that continues it, in the
// work tree (apply) or in a scratch copy.
func (p *porting) successor(ctx workflow.Context, module string, apply bool) (activities.PortSuccessor, error) {
	var res activities.PortSuccessor
	err := p.step(ctx, "successor", "move "+module+" to the module that continues it", func(actx workflow.Context) error {
		in := activities.PortSuccessorInput{Source: p.src, Packages: p.in.Packages, Module: module, Apply: apply}
		return workflow.ExecuteActivity(actx, portActs.PortSuccessor, in).Get(ctx, &res)
	})
	return res, err
}

// moveToSuccessors moves each stuck module that has a known successor to
// it, once; it reports whether any move worked (the build is then
// diagnosed again).
func (p *porting) moveToSuccessors(ctx workflow.Context, stuck []string, moved map[string]bool) (bool, error) {
	applied := false
	for _, path := range stuck {
		if _, ok := port.Successor(path); !ok || moved[path] {
			continue
		}
		moved[path] = true
		res, err := p.successor(ctx, path, true)
		if err != nil {
			return false, err
		}
		i := slices.IndexFunc(p.report.Modules, func(m ModuleReport) bool { return m.Path == path })
		mr := &p.report.Modules[i]
		mr.Successor = &res
		if res.Version == "" {
			mr.Verification += "; successor " + res.Successor + ": " + res.Reason
			continue
		}
		applied = true
		mr.Fix = FixSuccessor
		mr.Verification = fmt.Sprintf("imports moved to %s@%s in %s; cross-builds for linux/%s, host build and tests green", res.Successor, res.Version, strings.Join(res.Files, ", "), p.in.Arch)
	}
	return applied, nil
}

// offerSuccessors verifies, in a scratch copy, the move of each patched
// module that has a known successor, and offers it in the advice: the
// patch keeps the port going, the move fixes it upstream.
func (p *porting) offerSuccessors(ctx workflow.Context) error {
	for i := range p.report.Modules {
		mr := &p.report.Modules[i]
		if _, ok := port.Successor(mr.Path); !ok || mr.Fix != FixPatch {
			continue
		}
		res, err := p.successor(ctx, mr.Path, false)
		if err != nil {
			return err
		}
		mr.Successor = &res
		if res.Version == "" {
			mr.Advice = fmt.Sprintf("%s is archived; %s continues it, but moving to it did not verify: %s", mr.Path, res.Successor, res.Reason)
			continue
		}
		mr.Advice = fmt.Sprintf("%s is archived; %s@%s continues it: moving to it (imports in %s) was verified in a scratch copy (cross-builds for linux/%s, host build and tests green) and fixes this without a patched copy",
			mr.Path, res.Successor, res.Version, strings.Join(res.Files, ", "), p.in.Arch)
	}
	return nil
}

// finalVersions records, for each upgraded module, the version go.mod
// ends at after every fix and tidying.
func (p *porting) finalVersions() {
	for i, m := range p.report.Modules {
		for _, c := range p.report.Change.Modules {
			if c.Path == m.Path && m.Fix == FixUpgrade {
				p.report.Modules[i].Final = c.After
			}
		}
	}
}

// needsHuman records the modules still failing, with their errors, and
// returns their paths.
func (p *porting) needsHuman(d port.Diagnosis) []string {
	var names []string
	for _, m := range d.Modules {
		names = append(names, m.Path)
		if !slices.ContainsFunc(p.report.Modules, func(r ModuleReport) bool { return r.Path == m.Path }) {
			mr := ModuleReport{Path: m.Path, Version: m.Version, Causes: m.Causes, Fix: FixHuman, Verification: "still fails after every fix"}
			if p.v2 && slices.Contains(m.Causes, port.CauseCgo) {
				mr.Advice = port.CgoAdvice(m, p.in.Arch)
			}
			for _, pkg := range m.Packages {
				mr.Packages = append(mr.Packages, pkg.Package)
				mr.Errors = append(mr.Errors, pkg.Errors...)
			}
			p.report.Modules = append(p.report.Modules, mr)
		}
	}
	return names
}

// fail ends the port with status; the error carries the report.
func (p *porting) fail(ctx workflow.Context, status, msg string) error {
	p.report.Status, p.report.Step = status, msg
	p.publish(ctx)
	return temporal.NewNonRetryableApplicationError(msg, ErrTypePortFailed, nil, p.report)
}

// test is the test step of ports started before portRunsTheProgram: one
// activity runs every package's tests in turn, and no tests is a failure.
func (p *porting) test(ctx workflow.Context) error {
	modules := p.testModules()
	if err := p.step(ctx, "test", "run tests of "+strings.Join(modules, ", ")+" under qemu for "+p.in.Arch, func(actx workflow.Context) error {
		in := activities.PortTestInput{Source: p.src, Modules: modules}
		return workflow.ExecuteActivity(actx, portActs.PortTest, in).Get(ctx, &p.report.Tests)
	}); err != nil {
		return err
	}
	var failed []string
	for _, r := range p.report.Tests {
		if !r.Passed {
			failed = append(failed, r.Package)
		}
	}
	switch {
	case len(p.report.Tests) == 0:
		return p.fail(ctx, PortTestsFailed, "no tests ran for linux/"+p.in.Arch)
	case len(failed) > 0:
		return p.fail(ctx, PortTestsFailed, fmt.Sprintf("tests fail for linux/%s: %s", p.in.Arch, strings.Join(failed, ", ")))
	}
	return nil
}

// testModules are the port's own module and the requested dependencies.
func (p *porting) testModules() []string {
	modules := []string{p.src.Module}
	for _, m := range p.in.TestModules {
		if !slices.Contains(modules, m) {
			modules = append(modules, m)
		}
	}
	return modules
}

// step runs one step with its activity summary, shows it in the UI and
// records how long it took.
func (p *porting) step(ctx workflow.Context, name, summary string, f func(actx workflow.Context) error) error {
	return p.timed(ctx, name, summary, func() error { return f(central(ctx, portOptions, summary)) })
}

// took adds elapsed to the step's time.
func (p *porting) took(name string, elapsed time.Duration) {
	if i := slices.IndexFunc(p.report.Steps, func(s StepTime) bool { return s.Step == name }); i >= 0 {
		p.report.Steps[i].Elapsed += elapsed
	} else {
		p.report.Steps = append(p.report.Steps, StepTime{Step: name, Elapsed: elapsed})
	}
}

// check records a check and its result.
func (p *porting) check(name string, ok bool, result string) {
	p.report.Checks = append(p.report.Checks, PortCheck{Check: name, OK: ok, Result: result})
}

// warn records something the report must say without failing the port.
func (p *porting) warn(msg string) { p.report.Warnings = append(p.report.Warnings, msg) }

func (p *porting) publish(ctx workflow.Context) {
	fixed := 0
	for _, m := range p.report.Modules {
		if m.Fix != FixHuman {
			fixed++
		}
	}
	details := fmt.Sprintf("**%s** → linux/%s: %s\n\nstep: %s; modules fixed: %d of %d worked on",
		p.in.Repo, p.in.Arch, p.report.Status, p.report.Step, fixed, len(p.report.Modules))
	for _, t := range p.report.Tests {
		if t.Status != "" && t.Status != activities.TestQueued {
			details += fmt.Sprintf("\n- %s: %s %s", t.Package, t.Status, dashIfEmpty(durationString(t.Elapsed)))
		}
	}
	workflow.SetCurrentDetails(ctx, details)
}

func durationString(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.Round(time.Millisecond).String()
}

func (p *porting) diagnoseInput() activities.PortDiagnoseInput {
	return activities.PortDiagnoseInput{Source: p.src, Packages: p.in.Packages}
}

func (p *porting) commitMessage() string {
	lines := []string{"drift: port to linux/" + p.in.Arch, ""}
	for _, m := range p.report.Modules {
		switch m.Fix {
		case FixUpgrade:
			lines = append(lines, fmt.Sprintf("%s: upgrade %s → %s (%s)", m.Path, m.Version, m.Upgrade.Version, port.JoinCauses(m.Causes)))
		case FixPatch:
			lines = append(lines, fmt.Sprintf("%s: patched copy in %s (%s)", m.Path, m.Patch.Dir, port.JoinCauses(m.Causes)))
		default:
			lines = append(lines, fmt.Sprintf("%s: needs a human (%s)", m.Path, port.JoinCauses(m.Causes)))
		}
	}
	return strings.Join(lines, "\n")
}

// verify runs the ported commands under emulation against the host build
// and lists the dependencies that compile a stub without cgo: a command
// that ends or prints differently fails the port, and blames the stubs
// when there are any.
func (p *porting) verify(ctx workflow.Context) error {
	if len(p.report.Binaries) == 0 {
		p.warn("no main package: no command to run under emulation")
		return nil
	}
	var v activities.PortVerification
	if err := p.step(ctx, "verify", "run the ported commands under qemu and on the host", func(actx workflow.Context) error {
		in := activities.PortVerifyInput{Source: p.src, Packages: p.in.Packages, Binaries: p.report.Binaries, Smoke: p.in.Smoke, Timeout: p.in.RunTimeout}
		return workflow.ExecuteActivity(actx, portActs.PortVerify, in).Get(ctx, &v)
	}); err != nil {
		return err
	}
	p.report.Runs, p.report.Stubs = v.Runs, v.Stubs
	if v.HostBuild != "" {
		p.warn(v.HostBuild)
	}
	var differ []string
	for _, r := range v.Runs {
		name := strings.Join(append([]string{r.Binary}, r.Args...), " ")
		p.check("run "+name+" under "+port.Emulator(p.in.Arch)+" vs the host", r.Same, r.Verdict)
		if !r.Same {
			differ = append(differ, name+" ("+r.Verdict+")")
		}
	}
	if len(differ) == 0 {
		for _, s := range v.Stubs {
			p.warn(fmt.Sprintf("%s compiles %s without cgo instead of %s; the runs show no difference", s.Package, strings.Join(s.StubFiles, ", "), strings.Join(s.CgoFiles, ", ")))
		}
		return nil
	}
	msg := fmt.Sprintf("the ported program runs differently under emulation: %s", strings.Join(differ, "; "))
	if len(v.Stubs) == 0 {
		return p.fail(ctx, PortRunFailed, msg)
	}
	var blamed []string
	for _, s := range v.Stubs {
		blamed = append(blamed, s.Package)
		p.report.Modules = append(p.report.Modules, stubReport(s, differ, p.in.Arch))
	}
	return p.fail(ctx, PortNeedsHuman, msg+"; built without cgo, "+strings.Join(blamed, ", ")+" compile(s) a stub")
}

// stubReport is the report of a module whose stub changes what the
// program does.
func stubReport(s port.Stub, differ []string, arch string) ModuleReport {
	f := port.PackageFailure{Package: s.Package, Causes: []port.Cause{port.CauseStub}, Files: s.CgoFiles}
	return ModuleReport{
		Path: s.Module, Version: s.Version, Causes: f.Causes, Packages: []string{s.Package}, Errors: differ, Fix: FixHuman,
		Verification: fmt.Sprintf("cross-builds, but without cgo it compiles %s instead of %s, and the program runs differently", strings.Join(s.StubFiles, ", "), strings.Join(s.CgoFiles, ", ")),
		Advice:       port.CgoAdvice(port.ModuleFailure{Path: s.Module, Packages: []port.PackageFailure{f}}, arch),
	}
}

// testPackages lists the test packages of the port's module and the
// requested ones, then runs each package's test binary under emulation as
// its own activity, as many at once as the worker has cores (or
// TestParallel), each bounded by TestTimeout; the Report query shows each
// package's status and duration as it goes. No tests is a warning.
func (p *porting) testPackages(ctx workflow.Context) error {
	modules := p.testModules()
	var plan activities.PortTestPlan
	if err := p.step(ctx, "test", "list the tests of "+strings.Join(modules, ", ")+" for linux/"+p.in.Arch, func(actx workflow.Context) error {
		return workflow.ExecuteActivity(actx, portActs.PortTestList, activities.PortTestInput{Source: p.src, Modules: modules}).Get(ctx, &plan)
	}); err != nil {
		return err
	}
	p.report.Tests = plan.Runs
	limit := p.in.TestTimeout
	if limit == 0 {
		limit = activities.DefaultTestTimeout
	}
	parallel := p.in.TestParallel
	if parallel == 0 {
		parallel = max(1, plan.Cores)
	}
	opts := portOptions
	opts.StartToCloseTimeout = limit + portOptions.StartToCloseTimeout // compile, then run
	start := workflow.Now(ctx)
	sel := workflow.NewSelector(ctx)
	running := 0
	next := 0
	for {
		for ; running < parallel && next < len(p.report.Tests); next++ {
			t := &p.report.Tests[next]
			if t.Status != activities.TestQueued {
				continue
			}
			t.Status = activities.TestRunning
			in := activities.PortTestPackageInput{Source: p.src, Run: *t, ModFile: plan.ModFile, Timeout: limit}
			f := workflow.ExecuteActivity(central(ctx, opts, "test "+t.Package+" under "+port.Emulator(p.in.Arch)), portActs.PortTestPackage, in)
			sel.AddFuture(f, func(f workflow.Future) {
				var r activities.PortTestRun
				if err := f.Get(ctx, &r); err != nil {
					r = *t
					r.Status, r.Output = activities.TestFailed, RootMessage(err)
				}
				*t = r
				running--
			})
			running++
		}
		p.report.Step = fmt.Sprintf("run tests under %s (%d at a time, each at most %s)", port.Emulator(p.in.Arch), parallel, limit)
		p.publish(ctx)
		if running == 0 {
			break
		}
		sel.Select(ctx)
	}
	p.took("test", workflow.Now(ctx).Sub(start))
	ran, passed := 0, 0
	var failed []string
	for _, t := range p.report.Tests {
		switch t.Status {
		case activities.TestPassed:
			ran, passed = ran+1, passed+1
		case activities.TestTimedOut:
			ran++
			failed = append(failed, t.Package+" (timed out after "+limit.String()+")")
		case activities.TestFailed:
			ran++
			failed = append(failed, t.Package)
		case activities.TestSkipped:
			p.warn(t.Package + ": " + t.Note)
		}
	}
	if ran == 0 {
		p.warn("no tests ran for linux/" + p.in.Arch + ": only the run of the program checks it")
		return nil
	}
	p.check("tests under "+port.Emulator(p.in.Arch), len(failed) == 0, fmt.Sprintf("%d of %d packages passed", passed, ran))
	if len(failed) > 0 {
		return p.fail(ctx, PortTestsFailed, fmt.Sprintf("tests fail for linux/%s: %s", p.in.Arch, strings.Join(failed, ", ")))
	}
	return nil
}

// service deploys the ported image on a cloud of the arch and checks that
// it answers HTTP through the cloud's runtime, when the module is a
// service: an HTTP port in the input or in its compose file. The cloud's
// deploy refuses an image without its platform.
func (p *porting) service(ctx workflow.Context) error {
	var svc PortService
	if p.in.Service != nil {
		svc = *p.in.Service
	}
	if c := p.src.Service; c != nil {
		if c.Error != "" {
			p.warn(c.File + ": " + c.Error)
		}
		if svc.Port == 0 {
			svc.Port = c.Port
		}
		if svc.Health == "" {
			svc.Health = c.Health
		}
	}
	if svc.Port == 0 {
		return nil
	}
	if svc.Cloud == "" {
		p.warn(fmt.Sprintf("a service (port %d), not deployed: give a cloud of arch %s (--cloud)", svc.Port, p.in.Arch))
		return nil
	}
	health := svc.Health
	if health == "" {
		health = "/"
	}
	sr := &PortServiceReport{Cloud: svc.Cloud, Instance: runtime.InstanceName("port", names.RepoName(p.in.Repo), p.in.Arch)}
	p.report.Service = sr
	spec := runtime.Spec{Image: p.report.Image, Port: svc.Port, Health: svc.Health,
		Labels: map[string]string{runtime.LabelWorkflow: p.report.ID, runtime.LabelCloud: svc.Cloud}}
	err := p.timed(ctx, "service", "deploy "+sr.Instance+" on "+svc.Cloud+" and check it answers", func() error {
		ctx := withScheduleToStart(ctx, portServiceScheduleToStart)
		summary := "deploy the ported " + p.report.Module + " on " + svc.Cloud
		if err := executeOnCloud(ctx, portDeployOptions, svc.Cloud, summary, cloudActs.DeployInstance, activities.DeployRequest{Name: sr.Instance, Spec: spec}).Get(ctx, &sr.Endpoint); err != nil {
			return err
		}
		opts := targetVerifyOptions
		opts.StartToCloseTimeout = 3 * time.Minute
		summary = "verify " + sr.Endpoint.URL + health + " answers"
		return executeOnCloud(ctx, opts, svc.Cloud, summary, cloudActs.Verify, activities.VerifyRequest{URL: sr.Endpoint.URL, Health: health, Within: 2 * time.Minute}).Get(ctx, &sr.Verified)
	})
	p.check("service on "+svc.Cloud, err == nil, firstOfString(sr.Verified, errText(err)))
	if err != nil {
		return p.fail(ctx, PortServiceFailed, fmt.Sprintf("the ported service on %s: %s", svc.Cloud, errText(err)))
	}
	return nil
}

// timed runs f as the named step, shown in the UI, and records its time.
func (p *porting) timed(ctx workflow.Context, name, summary string, f func() error) error {
	p.report.Step = summary
	p.publish(ctx)
	start := workflow.Now(ctx)
	err := f()
	p.took(name, workflow.Now(ctx).Sub(start))
	return err
}

func firstOfString(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
