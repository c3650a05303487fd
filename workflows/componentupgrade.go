package workflows

import (
	"errors"
	"fmt"
	"path"
	"slices"
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
	// Prechecks, each failing before the side effects of its hop.
	ErrTypeNoUpgradePath      = "NoUpgradePath"      // the index gives no supported path to the target
	ErrTypeNoCapacity         = "NoCapacity"         // the cloud has no room for a second env
	ErrTypeUpgradeCheckFailed = "UpgradeCheckFailed" // the target release's upgrade check failed on the live data
	ErrTypeDriverUnsupported  = "DriverUnsupported"  // the driver refuses the hop's release
	// A switch held by a promotion gate that nobody promoted in time.
	ErrTypePromotionTimeout = "PromotionTimeout"
	// The contract migration after the rollback window failed.
	ErrTypeContractFailed = "ContractFailed"
)

// Bounds of the redo loop, the drain, the promotion gate and the window.
const (
	maxAttempts        = 10
	defaultAttempts    = 3
	defaultBackoff     = 5 * time.Second
	maxBackoff         = 5 * time.Minute
	defaultVerifyMode  = activities.VerifyHTTP
	defaultDrain       = 10 * time.Second
	maxDrain           = 10 * time.Minute
	defaultGateTimeout = time.Hour
	maxWait            = 30 * 24 * time.Hour // of a gate or a window
	defaultSample      = 20
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
	// Data is the component's state, shared by its envs; none: a component
	// without data (no checks, migrations or data verification).
	Data DataSpec `json:"data,omitzero"`
}

// DataSpec is where a component keeps its data and the tools that check
// and migrate it, in the manner of cinder-status and cinder-manage. Each
// runs as a one-shot task in the image of the release it upgrades to, with
// the volume mounted: Manage + "upgrade check" (exit 0 success, 1 warning,
// 2 failure), + "db sync" (expand the schema; the running release keeps
// working), + "db online_data_migrations" (rows, in batches), + "db
// contract" (after the rollback window: drop what older releases read).
type DataSpec struct {
	Volume string   `json:"volume"` // e.g. cinder-data
	Path   string   `json:"path"`   // where envs mount it
	Manage []string `json:"manage"` // the component's tool in its image
	// List is the GET path listing the component's volumes (a JSON array of
	// objects with an "id"; List/{id}/data reads one): Sample of them are
	// read before the upgrade and must read back the same through every
	// new env. "" verifies no data.
	List   string `json:"list,omitempty"`
	Sample int    `json:"sample,omitempty"` // default 20
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
	// Drain is how long an env keeps serving the requests under way after
	// the endpoint left it, before it is stopped (default 10s).
	Drain time.Duration `json:"drain,omitempty"`
	// Window keeps the env upgraded from, stopped, this long after the
	// last switch: a Rollback update within it switches back; after it the
	// contract migration runs and that env is retired. 0: at once.
	Window time.Duration `json:"window,omitempty"`
	// Gate holds every switch until a Promote update (who, why), at most
	// GateTimeout (default 1h), after which the hop fails with
	// PromotionTimeout.
	Gate        bool          `json:"gate,omitempty"`
	GateTimeout time.Duration `json:"gateTimeout,omitempty"`
	// ScheduleToStart bounds each activity's wait for a worker on a cloud's
	// queue (0: DefaultScheduleToStart); past it the step fails with NoWorker.
	ScheduleToStart time.Duration `json:"scheduleToStart,omitempty"`
}

// Decision is who promoted or rolled back an upgrade, and why.
type Decision struct {
	Who  string    `json:"who"`
	Why  string    `json:"why,omitempty"`
	When time.Time `json:"when,omitzero"`
}

// Hop statuses.
const (
	HopPending  = "pending"
	HopChecking = "checking"
	HopUpgrade  = "upgrading"
	HopSwitched = "switched"
	HopFailed   = "failed"
)

// HopState is one hop of the upgrade path and what happened to it.
type HopState struct {
	N          int      `json:"n"`
	From       string   `json:"from"`
	To         string   `json:"to"`
	FromSeries string   `json:"fromSeries"`
	ToSeries   string   `json:"toSeries"`
	Skip       bool     `json:"skip,omitempty"` // a SLURP skip-level hop
	Candidates []string `json:"candidates"`
	Status     string   `json:"status"`
	// Checks are the hop's prechecks, in order: path, capacity, upgrade
	// check, driver.
	Checks   []activities.Check `json:"checks"`
	Env      string             `json:"env,omitempty"` // the env it switched to
	Switched time.Time          `json:"switched,omitzero"`
	Error    string             `json:"error,omitempty"`
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
	Hop          int                      `json:"hop,omitempty"`
	Version      string                   `json:"version"`
	Env          EnvState                 `json:"env"`
	Status       string                   `json:"status"`
	Error        string                   `json:"error,omitempty"`
	Migration    []activities.Check       `json:"migration,omitempty"` // db sync, online data migrations
	Verification *activities.Verification `json:"verification,omitempty"`
	Started      time.Time                `json:"started"`
	Ended        time.Time                `json:"ended,omitzero"`
}

// UpgradeProgress is what the Progress query returns and the report.
type UpgradeProgress struct {
	ID         string   `json:"id"`
	Phase      string   `json:"phase"` // finding, probing, prechecks, hop i/n: attempt N, awaiting promotion, switching, window, rolling back, rolled back, contracting, done, failed
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
	// Target is where the upgrade goes; Hops the path there.
	Target string     `json:"target,omitempty"`
	Hops   []HopState `json:"hops,omitempty"`
	// Endpoint is the component's stable endpoint.
	Endpoint *runtime.Route `json:"endpoint,omitempty"`
	// Kept is the env upgraded from, stopped, until the window ends.
	Kept       *EnvState              `json:"kept,omitempty"`
	WindowEnds time.Time              `json:"windowEnds,omitzero"`
	Sample     *activities.DataSample `json:"sample,omitempty"` // the data read before the upgrade
	Promotions []Decision             `json:"promotions,omitempty"`
	Rollback   *Decision              `json:"rollback,omitempty"`
	Contract   *activities.Check      `json:"contract,omitempty"`
}

// ComponentUpgrade moves a component to a newer version without touching
// anything else on its cloud, hop by hop along the release series. Each hop
// is checked before its side effects (path, capacity, the target release's
// upgrade check on the live data, the driver); each attempt of a hop
// migrates the shared data (expand: the running release keeps working),
// starts a new env beside the serving one and verifies it, with the data
// read before the upgrade; then the component's stable endpoint switches
// to it, held by an optional promotion gate. The env upgraded from is kept,
// stopped, for a rollback window; after it the contract migration runs and
// that env is retired.
func ComponentUpgrade(ctx workflow.Context, in UpgradeInput) (UpgradeProgress, error) {
	u := newUpgradeRun(ctx, in)
	// Progress answers from the start, so even a rejected upgrade says why.
	if err := setProgressQuery(ctx, func() (UpgradeProgress, error) { return u.snapshot(), nil }); err != nil {
		return UpgradeProgress{}, err
	}
	if err := u.handleDecisions(ctx); err != nil {
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
	index      *upgrade.Index
	published  []upgrade.Release
	candidates []upgrade.Release
	hops       []upgrade.Hop
	// Decisions the handlers enqueued for the main loop.
	promoted   bool
	rollbackTo *Decision
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
	if in.Drain == 0 {
		in.Drain = defaultDrain
	}
	if in.Gate && in.GateTimeout == 0 {
		in.GateTimeout = defaultGateTimeout
	}
	if in.Component.Data.Sample == 0 {
		in.Component.Data.Sample = defaultSample
	}
	u := &upgradeRun{in: in, st: UpgradeProgress{
		ID: workflow.GetInfo(ctx).WorkflowExecution.ID, Phase: "finding", Cloud: in.Cloud,
		Component: in.Component.Name, Policy: in.Policy, Current: in.Component.Version,
	}}
	return u
}

// Phases a decision waits for.
const (
	phaseGate   = "awaiting promotion"
	phaseWindow = "window"
)

// handleDecisions takes Promote while a switch waits at the gate and
// Rollback within the window; both only enqueue for the main loop.
func (u *upgradeRun) handleDecisions(ctx workflow.Context) error {
	validate := func(phase string) func(workflow.Context, Decision) error {
		return func(_ workflow.Context, d Decision) error {
			switch {
			case strings.TrimSpace(d.Who) == "":
				return errors.New("say who decides (who)")
			case u.st.Phase != phase:
				return fmt.Errorf("%s is %s, not %s", u.st.ID, u.st.Phase, phase)
			case phase == phaseWindow && u.rollbackTo != nil:
				return errors.New("a rollback is under way")
			}
			return nil
		}
	}
	err := workflow.SetUpdateHandlerWithOptions(ctx, names.PromoteUpdate, func(ctx workflow.Context, d Decision) (UpgradeProgress, error) {
		d.When = workflow.Now(ctx)
		u.st.Promotions = append(u.st.Promotions, d)
		u.promoted = true
		return u.snapshot(), nil
	}, workflow.UpdateHandlerOptions{Validator: validate(phaseGate)})
	if err != nil {
		return err
	}
	// Rollback returns once the old env serves again.
	return workflow.SetUpdateHandlerWithOptions(ctx, names.RollbackUpdate, func(ctx workflow.Context, d Decision) (UpgradeProgress, error) {
		d.When = workflow.Now(ctx)
		u.rollbackTo = &d
		err := workflow.Await(ctx, func() bool { return u.st.Phase == phaseRolledBack || u.st.Phase == "failed" })
		return u.snapshot(), err
	}, workflow.UpdateHandlerOptions{Validator: validate(phaseWindow)})
}

// validate rejects bad input before any side effect, and chooses the
// platform policy's candidates, which need nothing but the index.
func (u *upgradeRun) validate() error {
	in := u.in
	c := in.Component
	d := c.Data
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
	case in.Drain < 0 || in.Drain > maxDrain || in.Window < 0 || in.Window > maxWait || in.GateTimeout < 0 || in.GateTimeout > maxWait:
		return invalid(ErrTypeInvalidUpgrade, "drain %s must be in 0..%s, window %s and gate timeout %s in 0..%s", in.Drain, maxDrain, in.Window, in.GateTimeout, maxWait)
	case d.Volume != "" && (runtime.ValidateName(d.Volume) != nil || !path.IsAbs(d.Path) || path.Clean(d.Path) != d.Path || len(d.Manage) == 0 || d.Manage[0] == ""):
		return invalid(ErrTypeInvalidUpgrade, "data volume %q needs a DNS-label name, an absolute clean mount path (%q) and the component's tool (%q)", d.Volume, d.Path, d.Manage)
	case d.Volume == "" && (d.Path != "" || len(d.Manage) > 0 || d.List != ""):
		return invalid(ErrTypeInvalidUpgrade, "data of %s: a mount path, tool or list path needs a volume", c.Name)
	case d.List != "" && (!strings.HasPrefix(d.List, "/") || strings.ContainsAny(d.List, " ?#\t\r\n")) || d.Sample < 0 || d.Sample > 1000:
		return invalid(ErrTypeInvalidUpgrade, "data list path %q must be a path, and the sample (%d) in 0..1000", d.List, d.Sample)
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
	u.index = ix
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
	case errors.Is(err, upgrade.ErrNoPath):
		return ErrTypeNoUpgradePath
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
	// Upgrades started before hops went to the target in one step.
	if workflow.GetVersion(ctx, "upgrade-hops", workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return u.runOneStep(ctx)
	}
	if err := u.plan(); err != nil {
		return u.fail(ctx, err)
	}
	var hopErr error
	for i := range u.st.Hops {
		if hopErr = u.hop(ctx, i); hopErr != nil {
			break
		}
	}
	return u.finish(ctx, hopErr)
}

// runOneStep is the upgrade as it was before hops, kept for the histories
// of that time: attempts to the first candidate, the old env retired at
// once.
func (u *upgradeRun) runOneStep(ctx workflow.Context) (UpgradeProgress, error) {
	for n := 1; n <= u.in.Attempts; n++ {
		if n > 1 {
			if err := workflow.Sleep(ctx, u.backoff(n)); err != nil {
				return u.fail(ctx, err)
			}
		}
		if a := u.attempt(ctx, nil, u.candidates, n); a.Status == AttemptPassed {
			old := u.st.Serving
			u.st.Phase = "switching"
			u.st.Serving, u.st.Retired = a.Env, old.Name
			u.publish(ctx)
			u.destroyEnv(ctx, old.Name, fmt.Sprintf("retire %s %s (env %s)", u.in.Component.Name, old.Version, old.Name))
			u.st.Phase = "done"
			u.publish(ctx)
			return u.snapshot(), nil
		}
	}
	return u.fail(ctx, u.failedErr())
}

// plan turns the upgrade into hops along the index's series.
func (u *upgradeRun) plan() error {
	hops, err := u.index.Path(u.in.Component.Name, u.current, u.candidates)
	if err != nil {
		return invalid(choiceErrType(err), "%v", err)
	}
	u.hops = hops
	u.st.Target = hops[len(hops)-1].To.Tag
	for i, h := range hops {
		hs := HopState{N: i + 1, From: h.From.Tag, To: h.To.Tag, FromSeries: h.FromSeries, ToSeries: h.ToSeries, Skip: h.Skip, Status: HopPending}
		for _, c := range h.Candidates {
			hs.Candidates = append(hs.Candidates, c.Tag)
		}
		u.st.Hops = append(u.st.Hops, hs)
	}
	return nil
}

// hop checks one hop, then upgrades to it: attempts until one passes, and
// the switch. A failed hop leaves the env it started from serving.
func (u *upgradeRun) hop(ctx workflow.Context, i int) error {
	h, hop := &u.st.Hops[i], u.hops[i]
	h.Status = HopChecking
	u.st.Phase = fmt.Sprintf("hop %d/%d: prechecks", h.N, len(u.hops))
	u.publish(ctx)
	if err := u.precheck(ctx, h, hop); err != nil {
		h.Status, h.Error = HopFailed, message(err)
		return err
	}
	if i == 0 {
		if err := u.firstSideEffects(ctx); err != nil {
			h.Status, h.Error = HopFailed, message(err)
			return err
		}
	}
	h.Status = HopUpgrade
	for n := 1; n <= u.in.Attempts; n++ {
		if n > 1 {
			if err := workflow.Sleep(ctx, u.backoff(n)); err != nil {
				return err
			}
		}
		a := u.attempt(ctx, h, hop.Candidates, n)
		if a.Status != AttemptPassed {
			continue
		}
		if err := u.promotion(ctx, h, a); err != nil {
			h.Status, h.Error = HopFailed, message(err)
			return err
		}
		u.switchTo(ctx, h, a)
		return nil
	}
	err := u.failedErr()
	h.Status, h.Error = HopFailed, message(err)
	return err
}

func (u *upgradeRun) failedErr() error {
	last := u.st.Attempts[len(u.st.Attempts)-1]
	return temporal.NewNonRetryableApplicationError(
		fmt.Sprintf("%s stays at %s on %s: %d attempt(s) failed, last: %s", u.in.Component.Name, u.st.Serving.Version, u.in.Cloud,
			len(u.st.Attempts), last.Error), ErrTypeUpgradeFailed, nil, u.snapshot())
}

// precheck runs the hop's checks, each reported: the path, room for a
// second env and, for a component with data, the hop's release's upgrade
// check on the live data, which also says whether the driver works with it.
// The first failed check fails the hop, typed and not retried.
func (u *upgradeRun) precheck(ctx workflow.Context, h *HopState, hop upgrade.Hop) error {
	c := u.in.Component
	h.Checks = []activities.Check{{Name: "path", OK: true, Detail: hop.String()}}
	var room int
	if err := executeOnCloud(ctx, lookupOptions, u.in.Cloud, fmt.Sprintf("hop %d: room for a second env of %s on %s", h.N, c.Name, u.in.Cloud), cloudActs.Room).Get(ctx, &room); err != nil {
		return err
	}
	need := 2 // the new env: the component and its related service
	roomCheck := activities.Check{Name: "capacity", OK: room < 0 || room >= need, Detail: fmt.Sprintf("%d free for %d instances", room, need)}
	if room < 0 {
		roomCheck.Detail = "no limit"
	}
	h.Checks = append(h.Checks, roomCheck)
	if c.Data.Volume != "" {
		env := u.newEnv(hop.To, "check")
		if err := u.loadDriver(ctx, &env, hop.To); err != nil {
			return err
		}
		res, err := u.task(ctx, env, "upgrade-check", fmt.Sprintf("hop %d: upgrade check of %s %s on the live data", h.N, c.Name, hop.To.Tag), "upgrade", "check")
		if err != nil {
			return err
		}
		h.Checks = append(h.Checks, activities.Check{Name: "upgrade check", OK: res.ExitCode <= 1, Warning: res.ExitCode == 1,
			Detail: fmt.Sprintf("exit %d: %s", res.ExitCode, res.Output)})
		driver := activities.Check{Name: "driver", OK: true, Detail: fmt.Sprintf("no driver refuses %s %s", c.Name, hop.To.Tag)}
		if de, _, found, _ := upgrade.ParseDriverError(c.ErrorFormat, res.Output); found {
			driver.OK, driver.Detail = false, fmt.Sprintf("driver %s %s requires %s %s", de.Driver, de.DriverVersion, c.Name, de.Constraint)
		}
		h.Checks = append(h.Checks, driver)
	}
	u.publish(ctx)
	types := map[string]string{"capacity": ErrTypeNoCapacity, "upgrade check": ErrTypeUpgradeCheckFailed, "driver": ErrTypeDriverUnsupported}
	var failed []string
	typ := ""
	for _, ch := range h.Checks {
		if !ch.OK {
			failed = append(failed, ch.Name+": "+failureLines(ch.Detail))
			// A driver's refusal is the cause of the upgrade check's failure.
			if typ == "" || ch.Name == "driver" {
				typ = types[ch.Name]
			}
		}
	}
	if typ != "" {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("hop %d (%s) fails its prechecks: %s", h.N, hop, strings.Join(failed, "; ")),
			typ, nil, u.snapshot())
	}
	return nil
}

// firstSideEffects puts the stable endpoint in front of the serving env
// (where it was not already) and reads the sample of the data every new
// env must read back.
func (u *upgradeRun) firstSideEffects(ctx workflow.Context) error {
	if err := u.route(ctx, u.st.Serving, "stable endpoint of %s → %s (serving %s)"); err != nil {
		return err
	}
	d := u.in.Component.Data
	if d.List == "" || u.in.Verify != activities.VerifyHTTP {
		return nil
	}
	var s activities.DataSample
	req := activities.SampleRequest{Endpoint: u.st.Serving.Endpoints[0], List: d.List, N: d.Sample}
	if err := executeOnCloud(ctx, lookupOptions, u.in.Cloud, fmt.Sprintf("sample %d volumes of %s before the upgrade", d.Sample, u.in.Component.Name), upgradeActs.SampleData, req).Get(ctx, &s); err != nil {
		return err
	}
	u.st.Sample = &s
	return nil
}

// route points the component's stable endpoint at env's component instance.
func (u *upgradeRun) route(ctx workflow.Context, env EnvState, summary string) error {
	c := u.in.Component
	req := activities.RouteRequest{Name: c.Name, Instance: env.Instances[0], Labels: map[string]string{
		activities.LabelComponent: c.Name, runtime.LabelWorkflow: u.st.ID}}
	var r runtime.Route
	if err := executeOnCloud(ctx, routeOptions, u.in.Cloud, fmt.Sprintf(summary, c.Name, env.Name, env.Version), upgradeActs.RouteEndpoint, req).Get(ctx, &r); err != nil {
		return err
	}
	u.st.Endpoint = &r
	return nil
}

// findServing finds the running env: the instances on the cloud labelled
// with the component, all of one env, at the current version; the
// component's own instance first.
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
	slices.SortStableFunc(found, func(a, b runtime.Instance) int {
		return boolRank(a.Labels[activities.LabelService] != c.Name) - boolRank(b.Labels[activities.LabelService] != c.Name)
	})
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

func boolRank(b bool) int {
	if b {
		return 1
	}
	return 0
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

// attempt makes a fresh env at the attempt's version — with data, after
// migrating the shared data to it — verifies it and drops it when it fails.
// h is nil for an upgrade from before hops.
func (u *upgradeRun) attempt(ctx workflow.Context, h *HopState, cands []upgrade.Release, n int) Attempt {
	target := cands[0]
	if u.in.NextCandidate {
		target = cands[min(n-1, len(cands)-1)]
	}
	u.st.Phase = fmt.Sprintf("attempt %d", n)
	hopN := 0
	if h != nil {
		hopN = h.N
		u.st.Phase = fmt.Sprintf("hop %d/%d: attempt %d", h.N, len(u.hops), n)
	}
	// Recorded before anything is deployed: state always knows every env.
	u.st.Attempts = append(u.st.Attempts, Attempt{N: n, Hop: hopN, Version: target.Tag, Env: u.newEnv(target, fmt.Sprintf("a%d", n)),
		Status: AttemptDeploying, Started: workflow.Now(ctx)})
	a := &u.st.Attempts[len(u.st.Attempts)-1]
	u.publish(ctx)
	err := u.loadDriver(ctx, &a.Env, target)
	if err == nil && u.in.Component.Data.Volume != "" {
		err = u.migrate(ctx, a)
	}
	if err == nil {
		err = u.deployEnv(ctx, a, target)
	}
	if err == nil {
		a.Status = AttemptVerifying
		u.publish(ctx)
		err = u.verify(ctx, a)
	}
	a.Ended = workflow.Now(ctx)
	if err == nil {
		a.Status = AttemptPassed
		return *a
	}
	a.Status, a.Error = AttemptFailed, message(err)
	u.destroyEnv(ctx, a.Env.Name, fmt.Sprintf("drop failed attempt %d (%s %s)", n, u.in.Component.Name, target.Tag))
	u.publish(ctx)
	return *a
}

// migrate runs the release's schema migration on the shared data: db sync
// (expand) and the online data migrations. The serving env keeps working
// on the expanded schema.
func (u *upgradeRun) migrate(ctx workflow.Context, a *Attempt) error {
	for _, step := range [][]string{{"db", "sync"}, {"db", "online_data_migrations"}} {
		what := strings.Join(step, " ")
		res, err := u.task(ctx, a.Env, strings.Join(step, "-"), fmt.Sprintf("attempt %d: %s of %s %s", a.N, what, u.in.Component.Name, a.Version), step...)
		if err != nil {
			return err
		}
		a.Migration = append(a.Migration, activities.Check{Name: what, OK: res.ExitCode == 0, Detail: fmt.Sprintf("exit %d: %s", res.ExitCode, lastLine(res.Output))})
		if res.ExitCode != 0 {
			return fmt.Errorf("%s exited %d: %s", what, res.ExitCode, lastLine(res.Output))
		}
	}
	return nil
}

// task runs the component's tool with args in env's image, on the data.
func (u *upgradeRun) task(ctx workflow.Context, env EnvState, step, summary string, args ...string) (runtime.TaskResult, error) {
	c := u.in.Component
	spec := runtime.Spec{Image: env.Image, Port: c.Port, Env: c.Env, Volumes: u.volumes(),
		Command: append(slices.Clone(c.Data.Manage), args...),
		Labels:  map[string]string{runtime.LabelWorkflow: u.st.ID, runtime.LabelCloud: u.in.Cloud}}
	var res runtime.TaskResult
	err := executeOnCloud(ctx, taskOptions, u.in.Cloud, summary, upgradeActs.RunTask, activities.TaskRequest{Name: runtime.InstanceName(env.Name, step), Spec: spec}).Get(ctx, &res)
	return res, err
}

func (u *upgradeRun) deployEnv(ctx workflow.Context, a *Attempt, target upgrade.Release) error {
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
	req := activities.EnvVerifyRequest{Mode: u.in.Verify, Data: u.st.Sample, Targets: []activities.VerifyTarget{
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

// promotion holds a passed env at the gate until a Promote update, or fails
// the hop (dropping the env) when none comes in time.
func (u *upgradeRun) promotion(ctx workflow.Context, h *HopState, a Attempt) error {
	if !u.in.Gate {
		return nil
	}
	u.promoted = false
	u.st.Phase = phaseGate
	u.publish(ctx)
	ok, err := workflow.AwaitWithTimeout(ctx, u.in.GateTimeout, func() bool { return u.promoted })
	if err == nil && !ok {
		err = temporal.NewNonRetryableApplicationError(fmt.Sprintf("hop %d: %s %s passed its checks but nobody promoted it within %s (drift upgrade promote)",
			h.N, u.in.Component.Name, a.Version, u.in.GateTimeout), ErrTypePromotionTimeout, nil)
	}
	if err != nil {
		u.destroyEnv(ctx, a.Env.Name, fmt.Sprintf("drop %s %s: not promoted", u.in.Component.Name, a.Version))
	}
	return err
}

// switchTo points the stable endpoint at the passed env, lets the env it
// left drain, then keeps it stopped when it is the env the upgrade started
// from (for a rollback) or retires it when it was a hop's on the way.
func (u *upgradeRun) switchTo(ctx workflow.Context, h *HopState, a Attempt) {
	prev := u.st.Serving
	u.st.Phase = "switching"
	u.publish(ctx)
	if err := u.route(ctx, a.Env, "switch the stable endpoint of %s to %s (%s)"); err != nil {
		// routeOptions retry until the cloud answers; only a cancelled
		// upgrade gets here.
		workflow.GetLogger(ctx).Error("switch failed", "error", err)
	}
	u.st.Serving = a.Env
	h.Status, h.Env, h.Switched = HopSwitched, a.Env.Name, workflow.Now(ctx)
	u.publish(ctx)
	if err := workflow.Sleep(ctx, u.in.Drain); err != nil {
		workflow.GetLogger(ctx).Error("drain cut short", "error", err)
	}
	if u.st.Kept != nil {
		u.destroyEnv(ctx, prev.Name, fmt.Sprintf("retire %s %s (env %s, a hop on the way)", u.in.Component.Name, prev.Version, prev.Name))
		return
	}
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	if err := executeOnCloud(dctx, destroyOptions, u.in.Cloud, fmt.Sprintf("keep %s %s (env %s) stopped for a rollback", u.in.Component.Name, prev.Version, prev.Name), upgradeActs.KeepEnv, u.envSelector(prev.Name)).Get(dctx, nil); err != nil {
		workflow.GetLogger(ctx).Error("old env not stopped", "env", prev.Name, "error", err)
	}
	u.st.Kept = &prev
}

// finish ends the upgrade once its hops are done or one failed: without a
// switch nothing changed; otherwise the window for a rollback, then the
// contract migration and the retirement of the env upgraded from.
func (u *upgradeRun) finish(ctx workflow.Context, hopErr error) (UpgradeProgress, error) {
	if u.st.Kept == nil {
		if hopErr == nil {
			hopErr = errors.New("no hop switched")
		}
		return u.fail(ctx, hopErr)
	}
	if u.in.Window > 0 {
		u.st.Phase, u.st.WindowEnds = phaseWindow, workflow.Now(ctx).Add(u.in.Window)
		u.publish(ctx)
		if _, err := workflow.AwaitWithTimeout(ctx, u.in.Window, func() bool { return u.rollbackTo != nil }); err != nil {
			return u.fail(ctx, err)
		}
		if u.rollbackTo != nil {
			return u.rollBack(ctx)
		}
	}
	kept := *u.st.Kept
	if u.in.Component.Data.Volume != "" {
		u.st.Phase = "contracting"
		u.publish(ctx)
		res, err := u.task(ctx, u.st.Serving, "db-contract", fmt.Sprintf("db contract with %s %s: %s %s can no longer run after it", u.in.Component.Name, u.st.Serving.Version, u.in.Component.Name, kept.Version), "db", "contract")
		u.st.Contract = &activities.Check{Name: "db contract", OK: err == nil && res.ExitCode == 0, Detail: fmt.Sprintf("exit %d: %s", res.ExitCode, lastLine(res.Output))}
		if err == nil && res.ExitCode != 0 {
			err = temporal.NewNonRetryableApplicationError(fmt.Sprintf("db contract of %s %s exited %d (env %s kept, stopped): %s",
				u.in.Component.Name, u.st.Serving.Version, res.ExitCode, kept.Name, lastLine(res.Output)), ErrTypeContractFailed, nil)
		}
		if err != nil {
			return u.fail(ctx, err)
		}
	}
	u.destroyEnv(ctx, kept.Name, fmt.Sprintf("retire %s %s (env %s)", u.in.Component.Name, kept.Version, kept.Name))
	u.st.Kept, u.st.Retired = nil, kept.Name
	if hopErr != nil {
		return u.fail(ctx, hopErr)
	}
	u.st.Phase = "done"
	u.publish(ctx)
	workflow.GetLogger(ctx).Info("upgraded", "component", u.in.Component.Name, "from", kept.Version, "to", u.st.Serving.Version, "hops", len(u.hops))
	return u.snapshot(), nil
}

const phaseRolledBack = "rolled back"

// rollBack starts the kept env again, switches the endpoint back to it and
// retires the env it left, after the drain. The data keeps the expanded
// schema, which the old release reads: no contract ran.
func (u *upgradeRun) rollBack(ctx workflow.Context) (UpgradeProgress, error) {
	kept, left := *u.st.Kept, u.st.Serving
	u.st.Phase, u.st.Rollback = "rolling back", u.rollbackTo
	u.publish(ctx)
	var eps map[string]runtime.Endpoint
	if err := executeOnCloud(ctx, envDeployOptions, u.in.Cloud, fmt.Sprintf("roll back: start %s %s (env %s) again", u.in.Component.Name, kept.Version, kept.Name), upgradeActs.RestoreEnv, u.envSelector(kept.Name)).Get(ctx, &eps); err != nil {
		return u.fail(ctx, err)
	}
	for i, name := range kept.Instances {
		kept.Endpoints[i] = eps[name]
	}
	if err := u.route(ctx, kept, "roll back the stable endpoint of %s to %s (%s)"); err != nil {
		return u.fail(ctx, err)
	}
	u.st.Serving, u.st.Kept = kept, nil
	u.publish(ctx)
	if err := workflow.Sleep(ctx, u.in.Drain); err != nil {
		workflow.GetLogger(ctx).Error("drain cut short", "error", err)
	}
	u.destroyEnv(ctx, left.Name, fmt.Sprintf("retire %s %s (env %s): rolled back", u.in.Component.Name, left.Version, left.Name))
	u.st.Retired = left.Name
	u.st.Phase = phaseRolledBack
	u.publish(ctx)
	// The Rollback update answers once it sees this phase.
	err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) })
	return u.snapshot(), err
}

// fail ends the upgrade with the env it stopped at serving and no attempt
// env left.
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
		Base:   u.in.Component.Repository + ":" + r.Tag,
		Driver: d.Image,
		To:     u.in.Component.Repository + "-drivers:" + runtime.LabelValue(r.Tag+"-"+d.Name+"-"+d.Version),
	}
	summary := fmt.Sprintf("load driver %s %s into %s %s", d.Name, d.Version, u.in.Component.Name, r.Tag)
	return executeOnCloud(ctx, lookupOptions, u.in.Cloud, summary, upgradeActs.LoadDriver, req).Get(ctx, &env.Image)
}

func (u *upgradeRun) spec(env EnvState, service string, extra map[string]string, health string) runtime.Spec {
	return runtime.Spec{
		Image: env.Image, Port: u.in.Component.Port, Env: extra, Health: health, Volumes: u.volumes(),
		Labels: map[string]string{
			runtime.LabelWorkflow: u.st.ID, runtime.LabelCloud: u.in.Cloud, activities.LabelService: service,
			activities.LabelComponent: u.in.Component.Name, activities.LabelEnv: env.Name, activities.LabelVersion: env.Version,
		},
	}
}

// volumes are what every env and task of the component mounts.
func (u *upgradeRun) volumes() []runtime.Volume {
	d := u.in.Component.Data
	if d.Volume == "" {
		return nil
	}
	return []runtime.Volume{{Name: d.Volume, Path: d.Path, Labels: map[string]string{activities.LabelComponent: u.in.Component.Name}}}
}

func (u *upgradeRun) envSelector(env string) map[string]string {
	return map[string]string{activities.LabelComponent: u.in.Component.Name, activities.LabelEnv: env}
}

// destroyEnv removes every instance labelled with the env, found by
// listing, so a half-made env goes too. It retries until it succeeds.
func (u *upgradeRun) destroyEnv(ctx workflow.Context, env, summary string) {
	ctx, _ = workflow.NewDisconnectedContext(ctx)
	if err := executeOnCloud(ctx, destroyOptions, u.in.Cloud, summary, cloudActs.DestroyOwned, u.envSelector(env)).Get(ctx, nil); err != nil {
		workflow.GetLogger(ctx).Error("env not destroyed", "env", env, "error", err)
	}
}

func (u *upgradeRun) publish(ctx workflow.Context) {
	details := fmt.Sprintf("**%s** · %s on %s (%s policy)\n\nserving: **%s** (env %s)\n\ncandidates: %s",
		u.st.Phase, u.in.Component.Name, u.in.Cloud, u.in.Policy, dashIfEmpty(u.st.Serving.Version), dashIfEmpty(u.st.Serving.Name),
		dashIfEmpty(strings.Join(u.st.Candidates, ", ")))
	for _, h := range u.st.Hops {
		details += fmt.Sprintf("\n\nhop %d: %s → %s (%s → %s) %s", h.N, h.From, h.To, h.FromSeries, h.ToSeries, h.Status)
	}
	for _, a := range u.st.Attempts {
		details += fmt.Sprintf("\n\nattempt %d: %s → %s", a.N, a.Version, a.Status)
		if a.Error != "" {
			details += " (" + a.Error + ")"
		}
	}
	if u.st.Kept != nil {
		details += fmt.Sprintf("\n\nkept (stopped) for a rollback: %s %s", u.st.Kept.Name, u.st.Kept.Version)
	}
	workflow.SetCurrentDetails(ctx, details)
}

func (u *upgradeRun) snapshot() UpgradeProgress {
	st := u.st
	st.Attempts = append([]Attempt(nil), u.st.Attempts...)
	st.Hops = slices.Clone(u.st.Hops)
	for i := range st.Hops {
		st.Hops[i].Checks = slices.Clone(st.Hops[i].Checks)
	}
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

// failureLines are the lines of a check's output that say "fail", or its
// first line.
func failureLines(s string) string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if strings.Contains(strings.ToLower(l), "fail") {
			out = append(out, strings.Join(strings.Fields(l), " "))
		}
	}
	if len(out) == 0 {
		line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
		return line
	}
	return strings.Join(out, " / ")
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	return s[strings.LastIndexByte(s, '\n')+1:]
}
