package workflows

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/edgedrift/drift/activities"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/upgrade"
)

// An upgrade answers names.ProgressQuery with its UpgradeProgress, also once it
// ended.

// Version policies.
const (
	PolicyPlatform = "platform" // the latest release series of the development platform
	PolicyDriver   = "driver"   // the lowest release the upgraded driver accepts
)

// Error types of ComponentUpgrade.
const (
	ErrTypeInvalidUpgrade   = "InvalidUpgrade"
	ErrTypeInvalidIndex     = "InvalidIndex"
	ErrTypeUnknownComponent = "UnknownComponent"
	ErrTypeNotNewer         = "NotNewer"    // no target above the current version
	ErrTypeNoCandidate      = "NoCandidate" // nothing published fits what the driver needs
	ErrTypeUpgradeFailed    = "UpgradeFailed"
)

// Bounds of the redo loop.
const (
	maxAttempts       = 10
	defaultAttempts   = 3
	defaultBackoff    = 5 * time.Second
	maxBackoff        = 5 * time.Minute
	defaultVerifyMode = activities.VerifyHTTP
)

// ComponentSpec is the platform component being upgraded. Its releases are
// images in Repository tagged with the release strings of the index.
type ComponentSpec struct {
	Name       string            `json:"name"`       // e.g. cinder
	Repository string            `json:"repository"` // e.g. 127.0.0.1:5000/kolla/cinder
	Version    string            `json:"version"`    // running now, e.g. 24.2.0
	Port       int               `json:"port"`
	Health     string            `json:"health"`
	Env        map[string]string `json:"env,omitempty"`
	// ErrorFormat is how the component words a driver mismatch at start-up
	// (placeholders {driver} {driver_version} {component} {constraint}
	// {version}); "" is upgrade.DefaultErrorFormat.
	ErrorFormat string `json:"errorFormat,omitempty"`
}

// RelatedSpec is the service started beside the component in each env to
// prove it works: it loads the driver, and Verify exercises it.
type RelatedSpec struct {
	Name   string            `json:"name"` // e.g. cinder-volume
	Env    map[string]string `json:"env,omitempty"`
	Health string            `json:"health"`
	Verify string            `json:"verify,omitempty"` // POST path making a real call through the driver
}

// DriverSpec is the third-party driver and where its upgraded build lives.
type DriverSpec struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Image   string `json:"image"` // plugin image, layered onto the release
}

// UpgradeInput starts a ComponentUpgrade.
type UpgradeInput struct {
	Cloud     string        `json:"cloud"`
	Component ComponentSpec `json:"component"`
	Related   RelatedSpec   `json:"related"`
	Driver    DriverSpec    `json:"driver"`
	Policy    string        `json:"policy"`           // platform | driver
	Target    string        `json:"target,omitempty"` // pins the version (platform policy)
	Index     string        `json:"index"`            // release index YAML (series → component → tags)
	// Prerelease lets release candidates be targets.
	Prerelease bool `json:"prerelease,omitempty"`
	// Attempts bounds the updates tried (default 3); Backoff is the first
	// wait between them (default 5s), doubled each time.
	Attempts int           `json:"attempts,omitempty"`
	Backoff  time.Duration `json:"backoff,omitempty"`
	// NextCandidate makes each redo try the next candidate version.
	NextCandidate bool `json:"nextCandidate,omitempty"`
	// Verify is activities.VerifyHTTP (default) or VerifyRollout.
	Verify string `json:"verify,omitempty"`
	// ScheduleToStart bounds each activity's wait for a worker on a cloud's
	// queue (0: DefaultScheduleToStart); past it the step fails with NoWorker.
	ScheduleToStart time.Duration `json:"scheduleToStart,omitempty"`
}

// EnvState is one environment of the component: its instances run one
// version side by side with every other env.
type EnvState struct {
	Name      string             `json:"name"`
	Version   string             `json:"version"`
	Image     string             `json:"image,omitempty"`
	Instances []string           `json:"instances"`
	Endpoints []runtime.Endpoint `json:"endpoints,omitempty"` // same order as Instances
}

// Attempt statuses.
const (
	AttemptDeploying = "deploying"
	AttemptVerifying = "verifying"
	AttemptPassed    = "passed"
	AttemptFailed    = "failed"
)

// Attempt is one update: a fresh env at a version, verified.
type Attempt struct {
	N            int                      `json:"n"`
	Version      string                   `json:"version"`
	Env          EnvState                 `json:"env"`
	Status       string                   `json:"status"`
	Error        string                   `json:"error,omitempty"`
	Verification *activities.Verification `json:"verification,omitempty"`
	Started      time.Time                `json:"started"`
	Ended        time.Time                `json:"ended,omitzero"`
}

// UpgradeProgress is what the Progress query returns and the report.
type UpgradeProgress struct {
	ID         string   `json:"id"`
	Phase      string   `json:"phase"` // finding, probing, attempt N, switching, done, failed
	Cloud      string   `json:"cloud"`
	Component  string   `json:"component"`
	Policy     string   `json:"policy"`
	Current    string   `json:"current"`
	Series     string   `json:"series,omitempty"` // platform policy: the latest series
	Candidates []string `json:"candidates"`
	Skipped    []string `json:"skipped,omitempty"` // published tags that are not versions
	// Driver policy: what the probe of the current version printed and meant.
	Probe       string               `json:"probe,omitempty"`
	DriverError *upgrade.DriverError `json:"driverError,omitempty"`
	Serving     EnvState             `json:"serving"`
	Retired     string               `json:"retired,omitempty"` // the env switched away from
	Attempts    []Attempt            `json:"attempts"`
	Error       string               `json:"error,omitempty"` // why it failed
}

// ComponentUpgrade moves a component to a newer version without touching
// anything else on its cloud: each attempt starts a new env beside the
// running one, verifies it and either switches to it or drops it; the old
// env serves until a new one has passed, and keeps serving if none does.
func ComponentUpgrade(ctx workflow.Context, in UpgradeInput) (UpgradeProgress, error) {
	u := newUpgradeRun(ctx, in)
	// Progress answers from the start, so even a rejected upgrade says why.
	if err := setProgressQuery(ctx, func() (UpgradeProgress, error) { return u.snapshot(), nil }); err != nil {
		return UpgradeProgress{}, err
	}
	if err := u.validate(); err != nil {
		return u.fail(ctx, err)
	}
	return u.run(withScheduleToStart(ctx, in.ScheduleToStart))
}

type upgradeRun struct {
	in         UpgradeInput
	st         UpgradeProgress
	current    upgrade.Release
	published  []upgrade.Release
	candidates []upgrade.Release
}

func newUpgradeRun(ctx workflow.Context, in UpgradeInput) *upgradeRun {
	if in.Attempts == 0 {
		in.Attempts = defaultAttempts
	}
	if in.Backoff == 0 {
		in.Backoff = defaultBackoff
	}
	if in.Verify == "" {
		in.Verify = defaultVerifyMode
	}
	if in.Component.ErrorFormat == "" {
		in.Component.ErrorFormat = upgrade.DefaultErrorFormat
	}
	u := &upgradeRun{in: in, st: UpgradeProgress{
		ID: workflow.GetInfo(ctx).WorkflowExecution.ID, Phase: "finding", Cloud: in.Cloud,
		Component: in.Component.Name, Policy: in.Policy, Current: in.Component.Version,
	}}
	return u
}

// validate rejects bad input before any side effect, and chooses the
// platform policy's candidates, which need nothing but the index.
func (u *upgradeRun) validate() error {
	in := u.in
	c := in.Component
	switch {
	case in.Cloud == "" || strings.ContainsAny(in.Cloud, "/ "):
		return invalid(ErrTypeInvalidUpgrade, "cloud %q must be non-empty without '/' or spaces", in.Cloud)
	case runtime.ValidateName(c.Name) != nil || runtime.ValidateName(in.Related.Name) != nil:
		return invalid(ErrTypeInvalidUpgrade, "component %q and related service %q must be DNS labels", c.Name, in.Related.Name)
	case c.Repository == "" || c.Port < 1 || c.Port > 65535:
		return invalid(ErrTypeInvalidUpgrade, "component %s needs an image repository and a port in 1..65535", c.Name)
	case in.Policy != PolicyPlatform && in.Policy != PolicyDriver:
		return invalid(ErrTypeInvalidUpgrade, "version policy %q: want %s or %s", in.Policy, PolicyPlatform, PolicyDriver)
	case in.Policy == PolicyDriver && in.Target != "":
		return invalid(ErrTypeInvalidUpgrade, "a target version pins the platform policy; the driver policy derives its own")
	case in.Attempts < 1 || in.Attempts > maxAttempts || in.Backoff < 0:
		return invalid(ErrTypeInvalidUpgrade, "attempts %d must be in 1..%d and backoff ≥ 0", in.Attempts, maxAttempts)
	case in.Verify != activities.VerifyHTTP && in.Verify != activities.VerifyRollout:
		return invalid(ErrTypeInvalidUpgrade, "verify mode %q: want %s or %s", in.Verify, activities.VerifyHTTP, activities.VerifyRollout)
	case in.Driver.Image == "" && (in.Policy == PolicyDriver || in.Driver.Name != ""):
		return invalid(ErrTypeInvalidUpgrade, "driver %q needs the image of its upgraded build", in.Driver.Name)
	}
	if _, err := upgrade.CompileErrorFormat(c.ErrorFormat); err != nil {
		return invalid(ErrTypeInvalidUpgrade, "%v", err)
	}
	var err error
	if u.current, err = upgrade.ParseRelease(c.Version); err != nil {
		return invalid(ErrTypeInvalidUpgrade, "current version of %s: %v", c.Name, err)
	}
	// Deterministic: same bytes, same index or error (yaml's reflection is
	// all workflowcheck objects to).
	ix, err := upgrade.ParseIndex([]byte(in.Index)) //workflowcheck:ignore
	if err != nil {
		return invalid(ErrTypeInvalidIndex, "%v", err)
	}
	if u.published, u.st.Skipped, err = ix.Published(c.Name); err != nil {
		return invalid(ErrTypeUnknownComponent, "%v", err)
	}
	switch {
	case in.Target != "":
		t, err := upgrade.Pinned(u.published, u.current, in.Target)
		if err != nil {
			return invalid(choiceErrType(err), "target %s of %s: %v", in.Target, c.Name, err)
		}
		u.setCandidates(t)
	case in.Policy == PolicyPlatform:
		series, cands, err := upgrade.PlatformCandidates(ix, c.Name, u.current, in.Prerelease)
		if err != nil {
			return invalid(choiceErrType(err), "%v", err)
		}
		u.st.Series = series
		u.setCandidates(cands...)
	}
	return nil
}

func choiceErrType(err error) string {
	switch {
	case errors.Is(err, upgrade.ErrNotNewer):
		return ErrTypeNotNewer
	case errors.Is(err, upgrade.ErrNoCandidate):
		return ErrTypeNoCandidate
	case errors.Is(err, upgrade.ErrUnknownComponent):
		return ErrTypeUnknownComponent
	}
	return ErrTypeInvalidUpgrade
}

func (u *upgradeRun) setCandidates(rels ...upgrade.Release) {
	u.candidates = rels
	u.st.Candidates = nil
	for _, r := range rels {
		u.st.Candidates = append(u.st.Candidates, r.Tag)
	}
}

func (u *upgradeRun) run(ctx workflow.Context) (UpgradeProgress, error) {
	if err := workflow.UpsertTypedSearchAttributes(ctx,
		names.AppKey.ValueSet(u.in.Component.Name),
		names.CloudKey.ValueSet(u.in.Cloud),
		names.KindKey.ValueSet("upgrade"),
	); err != nil {
		return UpgradeProgress{}, err
	}
	u.publish(ctx)
	if err := u.findServing(ctx); err != nil {
		return u.fail(ctx, err)
	}
	if u.in.Policy == PolicyDriver {
		if err := u.probeDriver(ctx); err != nil {
			return u.fail(ctx, err)
		}
	}
	for n := 1; n <= u.in.Attempts; n++ {
		if n > 1 {
			if err := workflow.Sleep(ctx, u.backoff(n)); err != nil {
				return u.fail(ctx, err)
			}
		}
		if u.attempt(ctx, n) {
			return u.switchTo(ctx)
		}
	}
	return u.fail(ctx, temporal.NewNonRetryableApplicationError(
		fmt.Sprintf("%s stays at %s on %s: %d attempt(s) failed, last: %s", u.in.Component.Name, u.current.Tag, u.in.Cloud,
			len(u.st.Attempts), u.st.Attempts[len(u.st.Attempts)-1].Error), ErrTypeUpgradeFailed, nil, u.snapshot()))
}

// findServing finds the running env: the instances on the cloud labelled
// with the component, all of one env, at the current version.
func (u *upgradeRun) findServing(ctx workflow.Context) error {
	c := u.in.Component
	var found []runtime.Instance
	summary := fmt.Sprintf("find the running env of %s on %s", c.Name, u.in.Cloud)
	if err := executeOnCloud(ctx, lookupOptions, u.in.Cloud, summary, cloudActs.ListInstances, map[string]string{activities.LabelComponent: c.Name}).Get(ctx, &found); err != nil {
		return err
	}
	if len(found) == 0 {
		return invalid(ErrTypeUnknownComponent, "no env of %s runs on %s", c.Name, u.in.Cloud)
	}
	env := EnvState{Name: found[0].Labels[activities.LabelEnv], Version: found[0].Labels[activities.LabelVersion], Image: found[0].Image}
	for _, in := range found {
		if in.Labels[activities.LabelEnv] != env.Name {
			return invalid(ErrTypeInvalidUpgrade, "%s runs in more than one env on %s (%s, %s): finish or clean up the other first",
				c.Name, u.in.Cloud, env.Name, in.Labels[activities.LabelEnv])
		}
		env.Instances = append(env.Instances, in.Name)
		env.Endpoints = append(env.Endpoints, in.Endpoint)
	}
	if env.Version != runtime.LabelValue(c.Version) {
		return invalid(ErrTypeInvalidUpgrade, "%s on %s runs %s, not %s", c.Name, u.in.Cloud, env.Version, c.Version)
	}
	env.Version = c.Version
	u.st.Serving = env
	return nil
}

// probeDriver loads the upgraded driver into an env of the current version,
// reads the related service's start-up error and picks the releases that
// satisfy the constraint it names, lowest first.
func (u *upgradeRun) probeDriver(ctx workflow.Context) error {
	u.st.Phase = "probing"
	u.publish(ctx)
	env := u.newEnv(u.current, "probe")
	env.Instances = env.Instances[1:] // the related service alone loads the driver
	var out string
	err := u.loadDriver(ctx, &env, u.current)
	if err == nil {
		spec := u.spec(env, u.in.Related.Name, u.in.Related.Env, u.in.Related.Health)
		summary := fmt.Sprintf("probe: start %s %s with driver %s %s", u.in.Related.Name, u.current.Tag, u.in.Driver.Name, u.in.Driver.Version)
		derr := executeOnCloud(ctx, probeOptions, u.in.Cloud, summary, cloudActs.DeployInstance, activities.DeployRequest{Name: env.Instances[0], Spec: spec}).Get(ctx, nil)
		if derr != nil {
			out = message(derr)
		}
	}
	u.destroyEnv(ctx, env.Name, "drop the probe env of "+u.in.Component.Name)
	if err != nil {
		return err
	}
	u.st.Probe = out
	if out == "" {
		return invalid(ErrTypeNotNewer, "driver %s %s starts with %s %s: no upgrade needed", u.in.Driver.Name, u.in.Driver.Version, u.in.Component.Name, u.current.Tag)
	}
	de, constraint, found, err := upgrade.ParseDriverError(u.in.Component.ErrorFormat, out)
	switch {
	case err != nil:
		return invalid(ErrTypeNoCandidate, "%v", err)
	case !found:
		return invalid(ErrTypeNoCandidate, "%s %s failed to start with driver %s, but not with an error in the format %q: %s",
			u.in.Related.Name, u.current.Tag, u.in.Driver.Name, u.in.Component.ErrorFormat, out)
	}
	u.st.DriverError = &de
	cands := upgrade.Satisfying(u.published, u.current, constraint, u.in.Prerelease)
	if len(cands) == 0 {
		return invalid(ErrTypeNoCandidate, "no published %s release above %s satisfies %q (driver %s %s)", u.in.Component.Name, u.current.Tag, de.Constraint, de.Driver, de.DriverVersion)
	}
	u.setCandidates(cands...)
	return nil
}

// attempt makes a fresh env at the attempt's version, verifies it and drops
// it when it fails. It reports whether the env passed.
func (u *upgradeRun) attempt(ctx workflow.Context, n int) bool {
	target := u.candidates[0]
	if u.in.NextCandidate {
		target = u.candidates[min(n-1, len(u.candidates)-1)]
	}
	u.st.Phase = fmt.Sprintf("attempt %d", n)
	// Recorded before anything is deployed: state always knows every env.
	u.st.Attempts = append(u.st.Attempts, Attempt{N: n, Version: target.Tag, Env: u.newEnv(target, fmt.Sprintf("a%d", n)),
		Status: AttemptDeploying, Started: workflow.Now(ctx)})
	a := &u.st.Attempts[len(u.st.Attempts)-1]
	u.publish(ctx)
	err := u.deployEnv(ctx, a, target)
	if err == nil {
		a.Status = AttemptVerifying
		u.publish(ctx)
		err = u.verify(ctx, a)
	}
	a.Ended = workflow.Now(ctx)
	if err == nil {
		a.Status = AttemptPassed
		return true
	}
	a.Status, a.Error = AttemptFailed, message(err)
	u.destroyEnv(ctx, a.Env.Name, fmt.Sprintf("drop failed attempt %d (%s %s)", n, u.in.Component.Name, target.Tag))
	u.publish(ctx)
	return false
}

func (u *upgradeRun) deployEnv(ctx workflow.Context, a *Attempt, target upgrade.Release) error {
	if err := u.loadDriver(ctx, &a.Env, target); err != nil {
		return err
	}
	c, r := u.in.Component, u.in.Related
	specs := []runtime.Spec{u.spec(a.Env, c.Name, c.Env, c.Health), u.spec(a.Env, r.Name, r.Env, r.Health)}
	for i, name := range a.Env.Instances {
		var ep runtime.Endpoint
		summary := fmt.Sprintf("attempt %d: start %s %s beside the running env", a.N, name, target.Tag)
		if err := executeOnCloud(ctx, envDeployOptions, u.in.Cloud, summary, cloudActs.DeployInstance, activities.DeployRequest{Name: name, Spec: specs[i]}).Get(ctx, &ep); err != nil {
			return err
		}
		a.Env.Endpoints = append(a.Env.Endpoints, ep)
	}
	return nil
}

func (u *upgradeRun) verify(ctx workflow.Context, a *Attempt) error {
	c, r := u.in.Component, u.in.Related
	req := activities.EnvVerifyRequest{Mode: u.in.Verify, Targets: []activities.VerifyTarget{
		{Instance: a.Env.Instances[0], Endpoint: a.Env.Endpoints[0], Health: c.Health},
		{Instance: a.Env.Instances[1], Endpoint: a.Env.Endpoints[1], Health: r.Health, Verify: r.Verify},
	}}
	var v activities.Verification
	summary := fmt.Sprintf("attempt %d: verify %s %s and driver %s", a.N, c.Name, a.Version, u.in.Driver.Name)
	if err := executeOnCloud(ctx, envVerifyOptions, u.in.Cloud, summary, upgradeActs.VerifyEnv, req).Get(ctx, &v); err != nil {
		return err
	}
	a.Verification = &v
	if !v.Passed {
		var failed []string
		for _, ch := range v.Checks {
			if !ch.OK {
				failed = append(failed, ch.Name+": "+ch.Detail)
			}
		}
		return errors.New("verification failed: " + strings.Join(failed, "; "))
	}
	return nil
}

// switchTo makes the passed env the serving one and retires the old.
func (u *upgradeRun) switchTo(ctx workflow.Context) (UpgradeProgress, error) {
	a := u.st.Attempts[len(u.st.Attempts)-1]
	old := u.st.Serving
	u.st.Phase = "switching"
	u.st.Serving, u.st.Retired = a.Env, old.Name
	u.publish(ctx)
	u.destroyEnv(ctx, old.Name, fmt.Sprintf("retire %s %s (env %s)", u.in.Component.Name, old.Version, old.Name))
	u.st.Phase = "done"
	u.publish(ctx)
	workflow.GetLogger(ctx).Info("upgraded", "component", u.in.Component.Name, "from", old.Version, "to", a.Version, "attempts", a.N)
	return u.snapshot(), nil
}

// fail ends the upgrade with the old env serving and no attempt env left.
func (u *upgradeRun) fail(ctx workflow.Context, err error) (UpgradeProgress, error) {
	u.st.Phase, u.st.Error = "failed", message(err)
	u.publish(ctx)
	return UpgradeProgress{}, err
}

func (u *upgradeRun) backoff(n int) time.Duration {
	d := u.in.Backoff << (n - 2)
	if d > maxBackoff || d < 0 {
		d = maxBackoff
	}
	return d
}

// newEnv names an env at a version: the component's instance first, then
// the related service's.
func (u *upgradeRun) newEnv(r upgrade.Release, suffix string) EnvState {
	c, rel := u.in.Component.Name, u.in.Related.Name
	return EnvState{
		Name:      runtime.InstanceName(c, r.Tag, suffix),
		Version:   r.Tag,
		Image:     u.in.Component.Repository + ":" + r.Tag,
		Instances: []string{runtime.InstanceName(c, r.Tag, suffix), runtime.InstanceName(rel, r.Tag, suffix)},
	}
}

// loadDriver sets env.Image to the release with the driver layered in.
func (u *upgradeRun) loadDriver(ctx workflow.Context, env *EnvState, r upgrade.Release) error {
	d := u.in.Driver
	if d.Image == "" {
		return nil
	}
	req := activities.LoadDriverRequest{
		Base:   env.Image,
		Driver: d.Image,
		To:     u.in.Component.Repository + "-drivers:" + runtime.LabelValue(r.Tag+"-"+d.Name+"-"+d.Version),
	}
	summary := fmt.Sprintf("load driver %s %s into %s %s", d.Name, d.Version, u.in.Component.Name, r.Tag)
	return executeOnCloud(ctx, lookupOptions, u.in.Cloud, summary, upgradeActs.LoadDriver, req).Get(ctx, &env.Image)
}

func (u *upgradeRun) spec(env EnvState, service string, extra map[string]string, health string) runtime.Spec {
	return runtime.Spec{
		Image: env.Image, Port: u.in.Component.Port, Env: extra, Health: health,
		Labels: map[string]string{
			runtime.LabelWorkflow: u.st.ID, runtime.LabelCloud: u.in.Cloud,
			activities.LabelComponent: u.in.Component.Name, activities.LabelEnv: env.Name, activities.LabelVersion: env.Version,
		},
	}
}

// destroyEnv removes every instance labelled with the env, found by
// listing, so a half-made env goes too. It retries until it succeeds.
func (u *upgradeRun) destroyEnv(ctx workflow.Context, env, summary string) {
	ctx, _ = workflow.NewDisconnectedContext(ctx)
	sel := map[string]string{activities.LabelComponent: u.in.Component.Name, activities.LabelEnv: env}
	if err := executeOnCloud(ctx, destroyOptions, u.in.Cloud, summary, cloudActs.DestroyOwned, sel).Get(ctx, nil); err != nil {
		workflow.GetLogger(ctx).Error("env not destroyed", "env", env, "error", err)
	}
}

func (u *upgradeRun) publish(ctx workflow.Context) {
	details := fmt.Sprintf("**%s** · %s on %s (%s policy)\n\nserving: **%s** (env %s)\n\ncandidates: %s",
		u.st.Phase, u.in.Component.Name, u.in.Cloud, u.in.Policy, dashIfEmpty(u.st.Serving.Version), dashIfEmpty(u.st.Serving.Name),
		dashIfEmpty(strings.Join(u.st.Candidates, ", ")))
	for _, a := range u.st.Attempts {
		details += fmt.Sprintf("\n\nattempt %d: %s → %s", a.N, a.Version, a.Status)
		if a.Error != "" {
			details += " (" + a.Error + ")"
		}
	}
	workflow.SetCurrentDetails(ctx, details)
}

func (u *upgradeRun) snapshot() UpgradeProgress {
	st := u.st
	st.Attempts = append([]Attempt(nil), u.st.Attempts...)
	return st
}

// message is an error's own text: an application error's message without
// Temporal's "(type: …, retryable: …)" suffix, which would garble a
// start-up error read line by line.
func message(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr.Message()
	}
	return RootMessage(err)
}
