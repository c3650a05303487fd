package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"go.temporal.io/api/enums/v1"

	"github.com/edgedrift/drift/activities"
	"github.com/edgedrift/drift/internal/amsi"
)

// continuityChange is the workflow.GetVersion change ID under which a
// session carries the app's state across a move, drains the old serving
// instance, and watches the serving instance to fail over; histories from
// before it do none of these.
const continuityChange = "state-drain-failover"

// continuityFailoverPlan is continuityChange's version from which a plan
// never demotes the serving instance to warm (a failover serves from a
// neighbour of the user's region), keeps the user's own cloud warm while
// served elsewhere, and re-plans when a cloud failed over from is back.
const continuityFailoverPlan = 2

// continuityWatchAgain is continuityChange's version from which a watch
// lost with its worker (heartbeat timeout, worker stopping) is started
// again before anything is declared down: only a probe that fails, or no
// worker taking the new watch within the bound, means down. A busy worker
// that misses one heartbeat no longer fails a healthy instance over.
const continuityWatchAgain = 3

// continuityExitFinal is continuityChange's version from which an exiting
// session never plans again. Before it, a failed-over cloud whose leftovers
// were destroyed during the exit re-planned: the serving and warm clouds
// got roles back and were deployed again, and the exit never ended.
const continuityExitFinal = 4

// watchAgainAfter is how long a watch must have run before a lost one is
// started again rather than taken as down.
const watchAgainAfter = time.Minute

// State policies: what a move does when the app's state cannot be carried.
const (
	StateFailMove      = "fail-move"            // the move fails; the old instance keeps serving
	StateSwitchWithout = "switch-without-state" // the move switches, and says the context was not transferred
)

// Continuity defaults and bounds.
const (
	DefaultDrain        = 3 * time.Second
	DefaultStateLimit   = 256 << 10
	MaxStateLimit       = 1 << 20 // the state passes through the session's history
	DefaultStateTimeout = 10 * time.Second
	DefaultWatchEvery   = time.Second
	DefaultWatchBound   = 4 * time.Second
	watchFailures       = 2               // probes in a row that mean down
	watchFor            = 5 * time.Minute // one watch activity's span
)

// Continuity is how a session keeps its user served across moves and
// failures. The zero value takes the defaults.
type Continuity struct {
	// StatePolicy is StateFailMove ("": default) or StateSwitchWithout.
	StatePolicy string `json:"statePolicy,omitempty"`
	// StateLimit is the most bytes of state carried (0: DefaultStateLimit).
	StateLimit int64 `json:"stateLimit,omitempty"`
	// StateTimeout bounds reading, and writing, the state (0: default).
	StateTimeout time.Duration `json:"stateTimeout,omitempty"`
	// Drain is how long the old serving instance stays up after a switch
	// before it is destroyed (0: DefaultDrain; negative: none).
	Drain time.Duration `json:"drain,omitempty"`
	// WatchEvery is the serving instance's probe period (0: default).
	WatchEvery time.Duration `json:"watchEvery,omitempty"`
	// WatchBound is the most a probe waits for its cloud's worker to take
	// it, and to hear from it (0: DefaultWatchBound).
	WatchBound time.Duration `json:"watchBound,omitempty"`
	// NoFailover turns the watch off.
	NoFailover bool `json:"noFailover,omitempty"`
}

// Validate rejects settings no session can run with.
func (c Continuity) Validate() error {
	switch {
	case c.StatePolicy != "" && c.StatePolicy != StateFailMove && c.StatePolicy != StateSwitchWithout:
		return fmt.Errorf("state policy %q: want %s or %s", c.StatePolicy, StateFailMove, StateSwitchWithout)
	case c.StateLimit < 0 || c.StateLimit > MaxStateLimit:
		return fmt.Errorf("state limit %d bytes: want 1 to %d", c.StateLimit, MaxStateLimit)
	case c.StateTimeout < 0 || c.WatchEvery < 0 || c.WatchBound < 0:
		return errors.New("state timeout, watch period and watch bound must not be negative")
	}
	return nil
}

func (c Continuity) withDefaults() Continuity {
	orDefault := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	orDefault(&c.StateTimeout, DefaultStateTimeout)
	orDefault(&c.Drain, DefaultDrain)
	orDefault(&c.WatchEvery, DefaultWatchEvery)
	orDefault(&c.WatchBound, DefaultWatchBound)
	if c.StateLimit == 0 {
		c.StateLimit = DefaultStateLimit
	}
	return c
}

// Where a move's context stands.
const (
	transferNone = iota
	transferRunning
	transferDone
)

// stateOptions reads or writes a state: bounded by the session's timeout,
// a refusal is final.
func stateOptions(timeout time.Duration) workflow.ActivityOptions {
	return workflow.ActivityOptions{
		StartToCloseTimeout:    timeout,
		ScheduleToCloseTimeout: timeout,
		RetryPolicy:            retry(3, time.Second, activities.ErrTypeStateRefused, activities.ErrTypeInvalidSpec),
	}
}

// carriesState says whether move m carries the app's state before it
// switches: sessions under continuityChange, of an app with a state
// endpoint, leaving a serving instance that is up.
func (s *session) carriesState(m *moveRequest) bool {
	from := s.instances[s.st.Serving]
	return s.continuity && !m.initial && m.failedCloud == "" && s.in.App.State != nil &&
		from != nil && from.Status == StatusReady
}

// transferState reads the state from the serving instance (from its
// cloud's worker) and writes it into to (from its own); the main loop then
// switches, or fails the move, by policy.
func (s *session) transferState(ctx workflow.Context, m *moveRequest, to *Instance) {
	from := s.instances[s.st.Serving]
	m.transfer = transferRunning
	c := s.continuityOptions()
	fromCloud, fromURL, toCloud, toURL := from.Cloud, from.Endpoint.StateURL, to.Cloud, to.Endpoint.StateURL
	workflow.Go(ctx, func(ctx workflow.Context) {
		var err error
		m.state, err = s.copyState(ctx, c, fromCloud, fromURL, toCloud, toURL)
		m.transfer, m.transferErr, s.dirty = transferDone, err, true
	})
}

// copyState reads the state at fromURL (from fromCloud's worker) and
// writes it to toURL (from toCloud's); it returns the state carried.
func (s *session) copyState(ctx workflow.Context, c Continuity, fromCloud, fromURL, toCloud, toURL string) ([]byte, error) {
	if fromURL == "" || toURL == "" {
		return nil, temporal.NewNonRetryableApplicationError("an instance has no state endpoint", activities.ErrTypeStateRefused, nil)
	}
	var state []byte
	read := executeOnCloud(ctx, stateOptions(c.StateTimeout), fromCloud, "read the state of "+s.in.App.Name+" on "+fromCloud,
		cloudActs.ReadState, activities.ReadStateRequest{URL: fromURL, Limit: c.StateLimit})
	if err := read.Get(ctx, &state); err != nil {
		return nil, err
	}
	return state, executeOnCloud(ctx, stateOptions(c.StateTimeout), toCloud, "write the state of "+s.in.App.Name+" on "+toCloud,
		cloudActs.WriteState, activities.WriteStateRequest{URL: toURL, State: state}).Get(ctx, nil)
}

// contextState is the MEC contextTransferState of move m: nil when it
// carried no state.
func (m *moveRequest) contextState() *int {
	if m.transfer != transferDone {
		return nil
	}
	v := amsi.ContextTransferred
	if m.transferErr != nil {
		v = amsi.ContextNotTransferred
	}
	return &v
}

func (s *session) continuityOptions() Continuity { return s.in.Continuity.withDefaults() }

// drain keeps the instance that served until now up for the drain period
// (requests in flight finish), then wakes the main loop to destroy it, or
// to redeploy it with the adopted release when it stays warm.
func (s *session) drain(ctx workflow.Context, cloud string) {
	inst := s.instances[cloud]
	d := s.continuityOptions().Drain
	if !s.continuity || inst == nil || (inst.Role != "" && !s.behind(inst)) || d <= 0 {
		return
	}
	inst.DrainUntil = workflow.Now(ctx).Add(d)
	workflow.Go(s.root, func(ctx workflow.Context) {
		_ = workflow.Sleep(ctx, d)
		s.dirty = true
	})
}

// draining says whether inst is kept up after a switch.
func (s *session) draining(ctx workflow.Context, inst *Instance) bool {
	return inst.Role == "" && s.st.Phase != "exiting" && workflow.Now(ctx).Before(inst.DrainUntil)
}

// watchOptions: one watch of the serving instance on its cloud's queue. A
// worker that does not take it (its schedule-to-start is the bound too), or
// stops heartbeating, within the bound means the cloud is gone; nothing is
// retried (the session decides).
func watchOptions(bound time.Duration) workflow.ActivityOptions {
	return workflow.ActivityOptions{
		StartToCloseTimeout: watchFor + bound,
		HeartbeatTimeout:    bound,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 1},
	}
}

// watch keeps one watch on the serving instance: a new serving instance
// gets a new one; a report of it down goes to the main loop.
func (s *session) watch(ctx workflow.Context) {
	c := s.continuityOptions()
	if !s.continuity || c.NoFailover || s.st.Phase != "serving" || s.watched == s.st.Serving {
		return
	}
	s.stopWatch()
	inst := s.instances[s.st.Serving]
	if inst == nil || inst.Status != StatusReady {
		return
	}
	s.watched = inst.Cloud
	wctx, cancel := workflow.WithCancel(ctx)
	s.stopWatch = cancel
	req := activities.WatchRequest{
		Instance: inst.Name, Service: s.app().RuntimeSpec(inst.Cloud, nil).ServeService(), Endpoint: inst.Endpoint,
		Every: c.WatchEvery, Failures: watchFailures, For: watchFor,
	}
	cloud := inst.Cloud
	wctx = withScheduleToStart(wctx, c.WatchBound)
	workflow.Go(wctx, func(ctx workflow.Context) {
		var rewatched time.Time // when a lost watch was last started again
		for {
			err := executeOnCloud(ctx, watchOptions(c.WatchBound), cloud, "watch "+s.in.App.Name+" on "+cloud,
				cloudActs.WatchInstance, req).Get(ctx, nil)
			if ctx.Err() != nil {
				return // a new serving instance, or the end
			}
			if now := workflow.Now(ctx); s.watchAgain && lostWatch(err) && now.Sub(rewatched) > watchAgainAfter {
				s.logger.Warn("watch lost with its worker: watching again", "cloud", cloud, "error", err)
				rewatched = now
				continue
			}
			if err != nil {
				s.down = append(s.down, downReport{cloud: cloud, why: whyDown(cloud, c.WatchBound, err)})
				s.dirty = true
				return
			}
		}
	})
}

type downReport struct{ cloud, why string }

// lostWatch says whether a watch ended with its worker (silent, or
// stopping) rather than with a verdict on the instance.
func lostWatch(err error) bool {
	var timeout *temporal.TimeoutError
	return isType(err, activities.ErrTypeWorkerGone) ||
		errors.As(err, &timeout) && timeout.TimeoutType() == enums.TIMEOUT_TYPE_HEARTBEAT
}

// whyDown says in words why the watch of cloud's instance ended.
func whyDown(cloud string, bound time.Duration, err error) string {
	var timeout *temporal.TimeoutError
	switch {
	case activities.IsInstanceDown(err), isType(err, activities.ErrTypeWorkerGone):
		return RootMessage(err)
	case isType(err, ErrTypeNoWorker):
		return fmt.Sprintf("no worker of cloud %s took the probe within %s", cloud, bound)
	case errors.As(err, &timeout) && timeout.TimeoutType() == enums.TIMEOUT_TYPE_HEARTBEAT:
		return fmt.Sprintf("the worker of cloud %s went silent for %s", cloud, bound)
	}
	return fmt.Sprintf("the watch of cloud %s failed: %s", cloud, RootMessage(err))
}

// failOver takes the reports of serving instances down: the session
// switches to the best ready warm instance, or deploys on the best other
// cloud, as a move of its own that subscribers hear of; the dead cloud is
// left out of plans until its leftovers are destroyed.
func (s *session) failOver(ctx workflow.Context) {
	for _, d := range s.down {
		if d.cloud != s.st.Serving || s.st.Phase != "serving" {
			continue // an instance no longer serving
		}
		if s.st.Down == nil {
			s.st.Down = map[string]string{}
		}
		s.st.Down[d.cloud] = d.why
		if inst := s.instances[d.cloud]; inst != nil {
			inst.Role, inst.Error = "", d.why // destroyed when its cloud answers again
		}
		target := s.failoverTarget(d.cloud)
		if target == "" {
			s.logger.Error("serving instance down and no cloud to fail over to", "cloud", d.cloud, "why", d.why)
			continue
		}
		s.logger.Warn("failing over", "from", d.cloud, "to", target, "why", d.why)
		m := &moveRequest{region: s.st.Region, cloud: target, arrived: workflow.Now(ctx), failedCloud: d.cloud, reason: "failover: " + d.why}
		m.id = fmt.Sprintf("failover-%s-%d", shortID(chainID(ctx)), s.st.Events+1)
		s.trigger(ctx, MoveRecord{ID: m.id, Source: FromFailover, Region: m.region, FromCloud: d.cloud, ToCloud: target, ArrivedAt: m.arrived, Reason: m.reason}, s.nameOn(target))
		// It goes first, unless a cold deploy is already under way.
		at := 0
		if s.moveInProgress() {
			at = 1
		}
		s.moves = append(s.moves[:at], append([]*moveRequest{m}, s.moves[at:]...)...)
	}
	s.down = nil
}

// failoverTarget is the first ready warm instance in plan order, else the
// first cloud of the plan, else of the topology, that is not down.
func (s *session) failoverTarget(dead string) string {
	usable := func(cloud string) bool { return cloud != dead && !s.isDown(cloud) }
	for _, cloud := range s.st.Plan.Clouds {
		if inst := s.instances[cloud]; usable(cloud) && inst != nil && inst.Status == StatusReady && s.ops[cloud] == nil {
			return cloud
		}
	}
	for _, cloud := range sortedKeys(s.instances) {
		if inst := s.instances[cloud]; usable(cloud) && inst.Status == StatusReady && s.ops[cloud] == nil {
			return cloud
		}
	}
	for _, cloud := range s.st.Plan.Clouds {
		if usable(cloud) {
			return cloud
		}
	}
	for _, c := range s.in.Topology.Clouds() {
		if usable(c.ID) {
			return c.ID
		}
	}
	return ""
}

// isDown says whether the session failed over from cloud and has not yet
// destroyed what it left there.
func (s *session) isDown(cloud string) bool { _, down := s.st.Down[cloud]; return down }

// retriesDestroy says whether a destroy on cloud that no worker took is
// asked again: while serving, on a cloud failed over from (its leftovers
// must go when it is back); on exit the sweep lists what is left.
func (s *session) retriesDestroy(cloud string) bool {
	return s.isDown(cloud) && s.st.Phase == "serving"
}

// cloudBack notes that a cloud left out after a failover answered again
// (its leftovers were destroyed), and says whether it was left out.
func (s *session) cloudBack(cloud string) bool {
	if _, ok := s.st.Down[cloud]; !ok {
		return false
	}
	delete(s.st.Down, cloud)
	s.logger.Info("cloud back after a failover: its leftovers are gone", "cloud", cloud)
	return true
}
