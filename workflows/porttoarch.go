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
)

// Error types of a port.
const (
	ErrTypeInvalidPort = "InvalidPort" // bad input to PortToArch
	ErrTypePortFailed  = "PortFailed"  // the port ended needing a human; details hold the report
)

// maxFixRounds bounds diagnose → fix rounds; each fixes or gives up on
// one module, so it only matters for pathological builds.
const maxFixRounds = 20

// PortInput asks for a Go module to be ported to an arch.
type PortInput struct {
	Repo     string   `json:"repo"`           // git URL or local path
	Ref      string   `json:"ref,omitempty"`  // branch, tag or commit (git only)
	Arch     string   `json:"arch,omitempty"` // GOARCH; default loong64
	Packages []string `json:"packages,omitempty"`
	// TestModules are dependencies whose tests also run under emulation
	// (the port's own module always does).
	TestModules []string `json:"testModules,omitempty"`
	SkipTests   bool     `json:"skipTests,omitempty"`
	SkipImage   bool     `json:"skipImage,omitempty"`
	Image       string   `json:"image,omitempty"` // repository in the center registry; default port/<name>
}

// Fixes applied to a module.
const (
	FixUpgrade = "upgrade"
	FixPatch   = "patch"
	FixHuman   = "needs-human"
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
}

// StepTime is how long a step of the port took.
type StepTime struct {
	Step    string        `json:"step"`
	Elapsed time.Duration `json:"elapsed"`
}

// Port statuses.
const (
	PortRunning     = "running"
	PortDone        = "ported"
	PortNeedsHuman  = "needs-human"
	PortTestsFailed = "tests-failed"
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
}

// PortToArch ports a Go module to linux/<arch>: diagnose what fails, fix
// each failing dependency (upgrade, else patched copy + replace, else
// report it for a human), cross-build, test under qemu and push an image.
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
	if err := p.fixAll(ctx); err != nil {
		return p.report, err
	}
	if err := p.step(ctx, "build", "cross-build for linux/"+p.in.Arch, func(actx workflow.Context) error {
		return workflow.ExecuteActivity(actx, portActs.PortBuild, p.diagnoseInput()).Get(ctx, &p.report.Binaries)
	}); err != nil {
		return p.report, err
	}
	if !p.in.SkipTests {
		if err := p.test(ctx); err != nil {
			return p.report, err
		}
	}
	if !p.in.SkipImage {
		if err := p.step(ctx, "image", "build and push the linux/"+p.in.Arch+" image", func(actx workflow.Context) error {
			in := activities.PortImageInput{Name: p.in.Image, Arch: p.in.Arch, Binaries: p.report.Binaries}
			return workflow.ExecuteActivity(actx, portActs.PortImage, in).Get(ctx, &p.report.Image)
		}); err != nil {
			return p.report, err
		}
	}
	p.report.Status, p.report.Step = PortDone, "done"
	p.publish(ctx)
	return p.report, nil
}

// fixAll diagnoses, fixes the first failing module not yet worked on and
// diagnoses again, until the build passes or every failing module has
// been given up on; the changes are then committed on the port branch.
func (p *porting) fixAll(ctx workflow.Context) error {
	tried := map[string]bool{}
	var stuck []string // modules still failing after every fix
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
			break
		}
		tried[d.Modules[i].Path] = true
		if err := p.fix(ctx, d.Modules[i]); err != nil {
			return err
		}
	}
	if err := p.step(ctx, "commit", "commit the port on "+activities.PortBranch(p.in.Arch), func(actx workflow.Context) error {
		in := activities.PortCommitInput{Source: p.src, Message: p.commitMessage()}
		return workflow.ExecuteActivity(actx, portActs.PortCommit, in).Get(ctx, &p.report.Change)
	}); err != nil {
		return err
	}
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
	var patch activities.PortPatch
	if err := p.step(ctx, "patch", "patch a local copy of "+m.Path+" for "+p.in.Arch, func(actx workflow.Context) error {
		return workflow.ExecuteActivity(actx, portActs.PortPatch, in).Get(ctx, &patch)
	}); err != nil {
		return err
	}
	mr.Patch = &patch
	if patch.Reason == "" && len(patch.Files) > 0 {
		mr.Fix = FixPatch
		mr.Verification = fmt.Sprintf("%s rebuilt for linux/%s from %s with %d generated file(s)", strings.Join(mr.Packages, ", "), p.in.Arch, patch.Dir, len(patch.Files))
	} else {
		mr.Fix = FixHuman
		mr.Verification = "upgrade: " + up.Reason + "; patch: " + patch.Reason
	}
	p.report.Modules = append(p.report.Modules, mr)
	return nil
}

// needsHuman records the modules still failing, with their errors, and
// returns their paths.
func (p *porting) needsHuman(d port.Diagnosis) []string {
	var names []string
	for _, m := range d.Modules {
		names = append(names, m.Path)
		if !slices.ContainsFunc(p.report.Modules, func(r ModuleReport) bool { return r.Path == m.Path }) {
			mr := ModuleReport{Path: m.Path, Version: m.Version, Causes: m.Causes, Fix: FixHuman, Verification: "still fails after every fix"}
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

// test runs the port's own tests and those of the requested dependencies
// under emulation; any failure ends the port with the report.
func (p *porting) test(ctx workflow.Context) error {
	modules := []string{p.src.Module}
	for _, m := range p.in.TestModules {
		if !slices.Contains(modules, m) {
			modules = append(modules, m)
		}
	}
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

// step runs one step with its activity summary, shows it in the UI and
// records how long it took.
func (p *porting) step(ctx workflow.Context, name, summary string, f func(actx workflow.Context) error) error {
	p.report.Step = summary
	p.publish(ctx)
	start := workflow.Now(ctx)
	err := f(central(ctx, portOptions, summary))
	elapsed := workflow.Now(ctx).Sub(start)
	if i := slices.IndexFunc(p.report.Steps, func(s StepTime) bool { return s.Step == name }); i >= 0 {
		p.report.Steps[i].Elapsed += elapsed
	} else {
		p.report.Steps = append(p.report.Steps, StepTime{Step: name, Elapsed: elapsed})
	}
	return err
}

func (p *porting) publish(ctx workflow.Context) {
	fixed := 0
	for _, m := range p.report.Modules {
		if m.Fix != FixHuman {
			fixed++
		}
	}
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("**%s** → linux/%s: %s\n\nstep: %s; modules fixed: %d of %d worked on",
		p.in.Repo, p.in.Arch, p.report.Status, p.report.Step, fixed, len(p.report.Modules)))
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
