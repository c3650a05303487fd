package workflows

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/edgedrift/drift/activities"
	"github.com/edgedrift/drift/internal/amsi"
	"github.com/edgedrift/drift/internal/appspec"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/predict"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/topology"
)

// Error types of a session's own failures.
const (
	ErrTypeInvalidSession = "InvalidSession"
	ErrTypeUnknownRegion  = "UnknownRegion"
	ErrTypeMoveFailed     = "MoveFailed"
	ErrTypeMoveRefused    = "MoveRefused" // the Move validator's: the session takes no move now (exiting, not allowed)
	// ErrTypeRegistrationConflict: a registration asked for something other
	// than what the open session was registered with.
	ErrTypeRegistrationConflict = "RegistrationConflict"
)

// Pre-deploy policies.
const (
	PreDeployNeighbours = "neighbours" // every neighbour of the serving cloud (seed behaviour)
	PreDeployPredicted  = "predicted"  // the clouds the app's mobility model expects next
	PreDeployNone       = "none"       // nothing warm: every move is cold
)

// CheckPreDeploy rejects an unknown pre-deploy policy.
func CheckPreDeploy(p string) error {
	switch p {
	case PreDeployNeighbours, PreDeployPredicted, PreDeployNone:
		return nil
	}
	return fmt.Errorf("pre-deploy policy %q: want %s, %s or %s", p, PreDeployNeighbours, PreDeployPredicted, PreDeployNone)
}

// modelRefreshEvery is how many handovers pass between reads of the app's
// model; the session's own moves count at once in between.
const modelRefreshEvery = 5

// CloudIndexInterval is the least time between two updates of the
// DriftCloud search attribute: each one is a visibility write, which costs
// about as much as the whole switch, so a burst of moves is indexed at its
// first and last switch only.
const CloudIndexInterval = 2 * time.Second

// throttleCloudIndexChange is the workflow.GetVersion change ID of that
// throttle; histories from before it upsert on every switch.
const throttleCloudIndexChange = "throttle-cloud-index"

// recentHandovers bounds the handovers kept in state (and carried over
// continue-as-new); totals count them all.
const recentHandovers = 50

// RecentMoves bounds the move records kept in state (and carried over
// continue-as-new): the oldest go first.
const RecentMoves = 200

// sessionEventsChange is the workflow.GetVersion change ID of move events
// (published to the API's subscribers) and registration expiry; histories
// from before it publish nothing.
const sessionEventsChange = "session-events"

// EventFlushInterval is the least time between two publishes of a
// session's events: a burst of moves goes out as one batch, so
// notifications cost the moves themselves next to nothing.
const EventFlushInterval = 250 * time.Millisecond

// exitFlushTimeout bounds how long an ending session waits for its last
// events to be published.
const exitFlushTimeout = 2 * time.Minute

// SessionInput opens a mobility session.
type SessionInput struct {
	User       string             `json:"user"`
	App        appspec.AppSpec    `json:"app"`
	Region     string             `json:"region"`
	Topology   *topology.Topology `json:"topology"`
	Neighbours topology.Policy    `json:"neighbours"`
	PreDeploy  string             `json:"preDeploy"`
	// Predict tunes the predicted policy (coverage, k, min observations).
	Predict predict.Options `json:"predict,omitzero"`
	// Registration is what the registrant said beyond the definition above
	// (zero when the session was opened without one, e.g. by the CLI).
	Registration Registration `json:"registration,omitzero"`
	// Resume carries the state across continue-as-new; nil on a new session.
	Resume *SessionState `json:"resume,omitempty"`
	// ScheduleToStart bounds each activity's wait for a worker on a cloud's
	// queue (0: DefaultScheduleToStart); past it the step fails with NoWorker.
	ScheduleToStart time.Duration `json:"scheduleToStart,omitempty"`
	// Pending carries the events not yet published across continue-as-new.
	Pending []amsi.Event `json:"pending,omitempty"`
	// Continuity: the app's state across moves, drain, failover.
	Continuity Continuity `json:"continuity,omitzero"`
}

// Registration is what a session is registered as beyond its definition:
// the fields of an ETSI MEC 021 RegistrationInfo that drift keeps
// (internal/amsi gives them their meaning).
type Registration struct {
	Consumer             string `json:"consumer,omitempty"` // serviceConsumerId.appInstanceId
	AssociateType        int    `json:"associateType,omitempty"`
	ServiceLevel         int    `json:"serviceLevel,omitempty"` // appMobilityServiceLevel; 0: not given
	ContextTransferState *int   `json:"contextTransferState,omitempty"`
	// ExpiryTime is seconds after RegisteredAt at which the session ends; 0:
	// never.
	ExpiryTime   uint32    `json:"expiryTime,omitempty"`
	RegisteredAt time.Time `json:"registeredAt,omitzero"`
}

// ExpiresAt is when the registration ends the session, or zero.
func (r Registration) ExpiresAt() time.Time {
	if r.ExpiryTime == 0 || r.RegisteredAt.IsZero() {
		return time.Time{}
	}
	return r.RegisteredAt.Add(time.Duration(r.ExpiryTime) * time.Second)
}

// RegisterRequest is the Register update's argument: the session as the
// registrant asks for it. A request that asks for the open session's
// definition (app, region, policies, consumer and associate type) gets that
// session; any other is a conflict.
type RegisterRequest struct {
	App          appspec.AppSpec `json:"app"`
	Region       string          `json:"region"`
	Neighbours   topology.Policy `json:"neighbours"`
	PreDeploy    string          `json:"preDeploy"`
	Registration Registration    `json:"registration,omitzero"`
}

// RegisterResult answers Register: where the session serves, and whether
// this request opened it.
type RegisterResult struct {
	MoveResult
	Created      bool         `json:"created"`
	Registration Registration `json:"registration"`
}

// Role is what a session wants of an instance.
type Role string

// Roles; an instance with no role is to be destroyed.
const (
	RoleServe Role = "serve"
	RoleWarm  Role = "warm"
)

// InstanceStatus is what is known of an instance.
type InstanceStatus string

// Instance statuses.
const (
	StatusDeploying  InstanceStatus = "deploying"
	StatusReady      InstanceStatus = "ready"
	StatusDestroying InstanceStatus = "destroying"
	StatusUnknown    InstanceStatus = "unknown" // a deploy was cancelled midway
	StatusFailed     InstanceStatus = "failed"  // deploy gave up; retried on the next plan
	StatusSkipped    InstanceStatus = "skipped" // pre-deploy refused: cloud at capacity
)

// Instance is one cloud's instance of the session.
type Instance struct {
	Cloud    string           `json:"cloud"`
	Name     string           `json:"name"`
	Role     Role             `json:"role,omitempty"`
	Status   InstanceStatus   `json:"status"`
	Endpoint runtime.Endpoint `json:"endpoint"`
	WarmAt   time.Time        `json:"warmAt,omitzero"` // when it became a ready pre-deploy
	Error    string           `json:"error,omitempty"`
	NoWorker bool             `json:"noWorker,omitempty"` // it failed because no worker polls the cloud's queue
	// Untrusted: it failed because the cloud's trust policy refused the image.
	Untrusted bool `json:"untrusted,omitempty"`
	// DrainUntil keeps an instance that served until a switch up until then.
	DrainUntil time.Time `json:"drainUntil,omitzero"`
	// Runs is the pinned image(s) it was last deployed with.
	Runs string `json:"runs,omitempty"`
}

// Handover is one switch of the serving cloud.
type Handover struct {
	MoveID     string        `json:"moveId,omitempty"`
	FromRegion string        `json:"fromRegion"`
	ToRegion   string        `json:"toRegion"`
	FromCloud  string        `json:"fromCloud"`
	ToCloud    string        `json:"toCloud"`
	Warm       bool          `json:"warm"`
	SwitchTime time.Duration `json:"switchTime"` // from the move's arrival to the switch
	At         time.Time     `json:"at"`
	Reason     string        `json:"reason,omitempty"` // a failover's: why the session left FromCloud
}

// MoveResult answers a Move update.
type MoveResult struct {
	Region     string           `json:"region"`
	Cloud      string           `json:"cloud"`
	Endpoint   runtime.Endpoint `json:"endpoint"`
	Warm       bool             `json:"warm"`
	SwitchTime time.Duration    `json:"switchTime"`
	// ContextTransferState is the MEC 021 value: amsi.ContextTransferred
	// when the app's state was carried to the new instance before the
	// switch, amsi.ContextNotTransferred when the move switched without it
	// (StateError says why); absent when the app declares no state.
	ContextTransferState *int   `json:"contextTransferState,omitempty"`
	StateError           string `json:"stateError,omitempty"`
}

// Move statuses of a MoveRecord, as ETSI MEC 021 names a mobility
// procedure's.
const (
	MoveTriggered = "TRIGGERED"
	MoveCompleted = "COMPLETED"
	MoveFailed    = "FAILED"
)

// Where a move came from.
const (
	FromUpdate = "update" // the Move update (the API, the CLI, any Temporal client); ID is the update's
	FromSignal = "signal" // the Move signal; the session names it
	// FromFailover: the session left a serving instance that was down.
	FromFailover = "failover"
)

// MoveRecord is what a session keeps of one move: its id (the Move
// update's id, or one the session gives a signalled move), where it went
// and how it ended.
type MoveRecord struct {
	ID         string           `json:"id"`
	Source     string           `json:"source"`
	Region     string           `json:"region"`
	FromCloud  string           `json:"fromCloud,omitempty"`
	ToCloud    string           `json:"toCloud"`
	Status     string           `json:"status"`
	Warm       bool             `json:"warm,omitempty"`
	SwitchTime time.Duration    `json:"switchTime,omitempty"`
	Endpoint   runtime.Endpoint `json:"endpoint,omitzero"`
	Error      string           `json:"error,omitempty"`
	ArrivedAt  time.Time        `json:"arrivedAt"`
	FinishedAt time.Time        `json:"finishedAt,omitzero"`
	// Reason: a failover's, why the session left FromCloud.
	Reason               string `json:"reason,omitempty"`
	ContextTransferState *int   `json:"contextTransferState,omitempty"`
	StateError           string `json:"stateError,omitempty"`
	// LateWrites says whether the writes the instance left behind took
	// after its state was read reached the serving instance (apps whose
	// state endpoint merges): none, carried to <cloud>, not carried: why.
	LateWrites string `json:"lateWrites,omitempty"`
}

// Totals count a whole session, across continue-as-new.
type Totals struct {
	Handovers        int           `json:"handovers"`
	Warm             int           `json:"warm"`
	Cold             int           `json:"cold"`
	FailedMoves      int           `json:"failedMoves"`
	SwitchTime       time.Duration `json:"switchTime"`       // sum over handovers
	PreDeploySeconds float64       `json:"preDeploySeconds"` // instance-seconds spent warm
	CloudsUsed       []string      `json:"cloudsUsed"`
}

// SessionState is what the State query returns and the session's report.
type SessionState struct {
	ID        string           `json:"id"`
	Phase     string           `json:"phase"` // starting, serving, exiting, ended
	Region    string           `json:"region"`
	Serving   string           `json:"serving"`
	Endpoint  runtime.Endpoint `json:"endpoint"`
	Image     string           `json:"image"` // pinned in the center registry
	Instances []Instance       `json:"instances"`
	InFlight  []string         `json:"inFlight,omitempty"`
	Handovers []Handover       `json:"handovers,omitempty"` // most recent last
	Totals    Totals           `json:"totals"`
	Plan      predict.Plan     `json:"plan"` // why the warm clouds are the ones they are
	// Moves are the latest RecentMoves moves, most recent last.
	Moves        []MoveRecord `json:"moves,omitempty"`
	Registration Registration `json:"registration,omitzero"`
	Registered   bool         `json:"registered,omitempty"` // a Register has been answered
	// Events counts the events the session has published (amsi.Event.Seq).
	Events int64 `json:"events,omitempty"`

	// Images are a compose project's images by service, pinned in the
	// center registry (Image is then empty).
	Images map[string]string `json:"images,omitempty"`

	// Down are the clouds left out after their serving instance was found
	// down, with why, until their leftovers are destroyed.
	Down map[string]string `json:"down,omitempty"`

	// Release names the release last adopted (Adopt update); its images
	// are Image or Images. AdoptedAt is when; ReplaceAfter how long the
	// session must have had no move before its serving instance is
	// replaced with it (0: DefaultReplaceAfter; <0: at the next move only).
	Release      string        `json:"release,omitempty"`
	AdoptedAt    time.Time     `json:"adoptedAt,omitzero"`
	ReplaceAfter time.Duration `json:"replaceAfter,omitempty"`
}

// MobilitySession keeps a user's app served from the cloud of the region
// they are in, pre-deployed on the neighbours of that cloud, and follows
// them on Move until Exit.
func MobilitySession(ctx workflow.Context, in SessionInput) (SessionState, error) {
	events := workflow.GetVersion(ctx, sessionEventsChange, workflow.DefaultVersion, 1) == 1
	s, err := newSession(ctx, in, events)
	if err != nil {
		return SessionState{}, err
	}
	return s.run(withScheduleToStart(ctx, in.ScheduleToStart))
}

type opKind string

const (
	opDeploy  opKind = "deploy"
	opDestroy opKind = "destroy"
)

// op is an activity in flight on one cloud; a cloud has at most one.
type op struct {
	kind     opKind
	cancel   workflow.CancelFunc
	canceled bool
}

type opResult struct {
	cloud     string
	kind      opKind
	preDeploy bool
	endpoint  runtime.Endpoint
	err       error
}

type moveRequest struct {
	id      string
	from    string // the serving cloud it left
	region  string
	cloud   string
	arrived time.Time
	started bool // a cold deploy runs for it
	initial bool // the session's first placement
	done    bool
	result  MoveResult
	err     error
	fromSig bool

	transfer    int    // transferNone, transferRunning, transferDone
	transferErr error  // why the state was not carried
	failedCloud string // a failover's: the cloud whose serving instance is down
	reason      string
	state       []byte // the state read before the switch: the base of the late writes
}

type session struct {
	in        SessionInput
	st        SessionState
	instances map[string]*Instance // by cloud
	ops       map[string]*op       // by cloud
	results   []opResult
	moves     []*moveRequest
	exit      bool
	dirty     bool // something for the main loop to look at
	signals   []workflow.ReceiveChannel
	model     predict.Model   // the app's mobility model (predicted policy)
	models    []predict.Model // snapshots read, for the main loop to take in
	logger    log.Logger

	initial *moveRequest // the first placement, until the session continues as new

	events      bool         // publish events (sessionEventsChange)
	outbox      []amsi.Event // events not yet published, in order
	adjacent    []amsi.Instance
	expiryTimer workflow.CancelFunc
	root        workflow.Context // the workflow's own context, for timers handlers start

	throttleIndex bool      // index the serving cloud at most every CloudIndexInterval
	indexed       string    // the cloud DriftCloud says serves
	indexedAt     time.Time // when it was last written
	indexWaiting  bool      // a timer will wake the main loop to index

	continuity   bool                   // carry state, drain, fail over (continuityChange)
	failoverPlan bool                   // plans keep the serving role and the user's own cloud warm after a failover
	watchAgain   bool                   // a watch lost with its worker is started again before anything is down
	exitFinal    bool                   // an exiting session plans nothing (continuityExitFinal)
	lateWritesOn bool                   // carry what the instance left behind took after the read (continuityLateWrites)
	late         map[string]*lateWrites // by the name of the instance left behind
	replaceOn    bool                   // replace a serving instance behind the release when quiet (replaceQuietly)
	spare        *spare                 // the serving instance's replacement, while it is made
	retired      map[string]*Instance   // replaced instances until destroyed, by name
	quietWake    time.Time              // when the main loop is woken to replace
	watched      string                 // the cloud whose serving instance is watched
	stopWatch    func()                 // ends that watch
	down         []downReport           // serving instances found down, for the main loop
}

func newSession(ctx workflow.Context, in SessionInput, events bool) (*session, error) {
	// A resumed session's user was checked when it began (and sessions
	// from before names.CheckUser keep the names they had).
	if err := validateSession(in, events && in.Resume == nil); err != nil {
		return nil, err
	}
	s := &session{
		in:        in,
		instances: map[string]*Instance{},
		ops:       map[string]*op{},
		late:      map[string]*lateWrites{},
		retired:   map[string]*Instance{},
		logger:    workflow.GetLogger(ctx),
		events:    events,
		outbox:    slices.Clone(in.Pending),
		stopWatch: func() {},
	}
	if in.Resume != nil {
		s.st = *in.Resume
		for i := range s.st.Instances {
			inst := s.st.Instances[i]
			s.instances[inst.Cloud] = &inst
		}
		s.adjacent = s.readyWarm()
	} else {
		s.st = SessionState{ID: workflow.GetInfo(ctx).WorkflowExecution.ID, Phase: "starting", Image: in.App.Image, Registration: in.Registration}
		s.st.Registration.RegisteredAt = workflow.Now(ctx)
		s.st.Registration.Consumer = firstOf(s.st.Registration.Consumer, in.App.Name)
		s.initial = &moveRequest{region: in.Region, cloud: s.firstCloud(in.Region), arrived: workflow.Now(ctx), initial: true}
		s.moves = append(s.moves, s.initial)
	}
	return s, nil
}

// validateSession rejects bad input before any side effect; strict checks
// the user with the rule every entry point uses.
func validateSession(in SessionInput, strict bool) error {
	if strict {
		if err := names.CheckUser(in.User); err != nil {
			return invalid(ErrTypeInvalidSession, "%v", err)
		}
	}
	switch {
	case in.User == "" || strings.ContainsAny(in.User, "/ "):
		return invalid(ErrTypeInvalidSession, "user %q must be non-empty without '/' or spaces", in.User)
	case in.Topology == nil:
		return invalid(ErrTypeInvalidSession, "no topology given")
	}
	if err := in.App.Validate(); err != nil {
		return invalid(activities.ErrTypeInvalidSpec, "app: %v", err)
	}
	if err := in.Neighbours.Validate(); err != nil {
		return invalid(ErrTypeInvalidSession, "neighbour policy: %v", err)
	}
	if err := CheckPreDeploy(in.PreDeploy); err != nil {
		return invalid(ErrTypeInvalidSession, "%v", err)
	}
	if err := in.Predict.Validate(); err != nil {
		return invalid(ErrTypeInvalidSession, "prediction: %v", err)
	}
	if err := in.Continuity.Validate(); err != nil {
		return invalid(ErrTypeInvalidSession, "continuity: %v", err)
	}
	if _, err := in.Topology.FirstCloud(in.Region); err != nil {
		return invalid(ErrTypeUnknownRegion, "%v", err)
	}
	return nil
}

func (s *session) firstCloud(region string) string {
	c, _ := s.in.Topology.FirstCloud(region)
	return c.ID
}

func (s *session) run(ctx workflow.Context) (SessionState, error) {
	if err := s.registerHandlers(ctx); err != nil {
		return SessionState{}, err
	}
	s.throttleIndex = workflow.GetVersion(ctx, throttleCloudIndexChange, workflow.DefaultVersion, 1) == 1
	v := workflow.GetVersion(ctx, continuityChange, workflow.DefaultVersion, continuityLateWrites)
	s.continuity, s.failoverPlan, s.watchAgain = v >= 1, v >= continuityFailoverPlan, v >= continuityWatchAgain
	s.exitFinal, s.lateWritesOn = v >= continuityExitFinal, v >= continuityLateWrites
	s.replaceOn = workflow.GetVersion(ctx, replaceQuietly, workflow.DefaultVersion, 1) == 1
	if err := workflow.UpsertTypedSearchAttributes(ctx,
		names.UserKey.ValueSet(s.in.User),
		names.AppKey.ValueSet(s.in.App.Name),
		names.KindKey.ValueSet("session"),
	); err != nil {
		return SessionState{}, err
	}
	if s.in.Resume == nil {
		if err := s.ensureImage(ctx); err != nil {
			return SessionState{}, err
		}
	}
	if s.in.PreDeploy == PreDeployPredicted {
		s.readModel(ctx)
	}
	s.root = ctx
	if s.events {
		workflow.Go(ctx, s.publishEvents)
		s.armExpiry()
	}
	for {
		s.applyResults(ctx)
		s.takeModels()
		s.failOver(ctx)
		if err := s.handleMoves(ctx); err != nil {
			return s.teardown(ctx, err)
		}
		if s.exit && s.st.Phase != "exiting" && !s.moveInProgress() {
			s.beginExit()
		}
		s.reconcile(ctx)
		s.replaceWhenQuiet(ctx)
		s.watch(ctx)
		s.noteAdjacent(ctx)
		s.publish(ctx)
		s.indexServing(ctx)
		if s.st.Phase == "exiting" && len(s.instances) == 0 && len(s.ops) == 0 && s.spare == nil && len(s.retired) == 0 {
			return s.teardown(ctx, nil)
		}
		if s.shouldContinueAsNew(ctx) {
			next := s.in
			state := s.snapshot()
			next.Resume = &state
			next.Pending = slices.Clone(s.outbox) // a batch in flight goes again; the subscriptions drop what they have
			return SessionState{}, workflow.NewContinueAsNewError(ctx, MobilitySession, next)
		}
		s.dirty = false
		// Wake on new work, or when the last handler has finished and the
		// session may continue as new.
		if err := workflow.Await(ctx, func() bool { return s.dirty || s.shouldContinueAsNew(ctx) }); err != nil {
			return SessionState{}, err
		}
	}
}

func (s *session) registerHandlers(ctx workflow.Context) error {
	if err := setProgressQuery(ctx, func() (SessionState, error) {
		return s.snapshot(), nil
	}, names.LegacySessionQuery); err != nil {
		return err
	}
	err := workflow.SetUpdateHandlerWithOptions(ctx, names.MoveUpdate,
		func(ctx workflow.Context, region string) (MoveResult, error) {
			m := s.enqueueMove(ctx, region, workflow.GetCurrentUpdateInfo(ctx).ID)
			if err := workflow.Await(ctx, func() bool { return m.done }); err != nil {
				return MoveResult{}, err
			}
			return m.result, m.err
		},
		workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, region string) error {
			if _, err := s.in.Topology.FirstCloud(region); err != nil {
				return invalid(ErrTypeUnknownRegion, "%v", err)
			}
			if err := s.movable(); err != nil {
				return invalid(ErrTypeMoveRefused, "%v", err)
			}
			return nil
		}},
	)
	if err != nil {
		return err
	}
	err = workflow.SetUpdateHandlerWithOptions(ctx, names.RegisterUpdate,
		func(ctx workflow.Context, req RegisterRequest) (RegisterResult, error) {
			// Only the request that came with the session's start finds it
			// unanswered and still placing itself.
			created := !s.st.Registered && s.initial != nil && !s.initial.done
			s.st.Registered = true
			if err := workflow.Await(ctx, func() bool { return s.initial == nil || s.initial.done }); err != nil {
				return RegisterResult{}, err
			}
			if s.initial != nil && s.initial.err != nil {
				return RegisterResult{}, s.initial.err
			}
			return RegisterResult{
				MoveResult:   MoveResult{Region: s.st.Region, Cloud: s.st.Serving, Endpoint: s.st.Endpoint},
				Created:      created,
				Registration: s.st.Registration,
			}, nil
		},
		workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, req RegisterRequest) error {
			if s.exit {
				return errors.New("session is exiting")
			}
			return s.sameRegistration(req)
		}},
	)
	if err != nil {
		return err
	}
	err = workflow.SetUpdateHandlerWithOptions(ctx, names.ReregisterUpdate,
		func(ctx workflow.Context, r Registration) (Registration, error) {
			reg := &s.st.Registration
			reg.ServiceLevel, reg.ContextTransferState, reg.ExpiryTime = r.ServiceLevel, r.ContextTransferState, r.ExpiryTime
			reg.RegisteredAt = workflow.Now(ctx) // an expiry time counts from the update that set it
			s.armExpiry()
			return *reg, nil
		},
		workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, r Registration) error {
			reg := s.st.Registration
			switch {
			case s.exit:
				return errors.New("session is exiting")
			case r.Consumer != reg.Consumer || r.AssociateType != reg.AssociateType:
				return temporal.NewNonRetryableApplicationError(fmt.Sprintf(
					"registered by consumer %q with associate type %d; a change asked for consumer %q, type %d",
					reg.Consumer, reg.AssociateType, r.Consumer, r.AssociateType), ErrTypeRegistrationConflict, nil)
			case r.ServiceLevel < 0 || r.ServiceLevel > amsi.MobilityWithoutConfirmation:
				return fmt.Errorf("appMobilityServiceLevel %d: want 1, 2 or 3", r.ServiceLevel)
			case r.ContextTransferState != nil && (*r.ContextTransferState < amsi.ContextNotTransferred || *r.ContextTransferState > amsi.ContextTransferred):
				return fmt.Errorf("contextTransferState %d: want 0 or 1", *r.ContextTransferState)
			}
			return nil
		}},
	)
	if err != nil {
		return err
	}
	if err := s.registerAdopt(ctx); err != nil {
		return err
	}
	moves := workflow.GetSignalChannel(ctx, names.MoveUpdate)
	exits := workflow.GetSignalChannel(ctx, names.ExitSignal)
	s.signals = []workflow.ReceiveChannel{moves, exits}
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			sel := workflow.NewSelector(ctx)
			sel.AddReceive(moves, func(c workflow.ReceiveChannel, _ bool) {
				var region string
				c.Receive(ctx, &region)
				if _, err := s.in.Topology.FirstCloud(region); err != nil {
					s.logger.Warn("ignoring Move signal", "region", region, "error", err)
					return
				}
				if err := s.movable(); err != nil && s.events {
					s.logger.Warn("ignoring Move signal", "region", region, "error", err)
					return
				}
				s.enqueueMove(ctx, region, "")
			})
			sel.AddReceive(exits, func(c workflow.ReceiveChannel, _ bool) {
				c.Receive(ctx, nil)
				s.exit = true
				s.dirty = true
			})
			sel.Select(ctx)
		}
	})
	return nil
}

// movable says why the session takes no move now, or nil.
func (s *session) movable() error {
	switch {
	case s.exit:
		return errors.New("session is exiting")
	case s.st.Registration.ServiceLevel == amsi.MobilityNotAllowed:
		return errors.New("the registration's appMobilityServiceLevel is APP_MOBILITY_NOT_ALLOWED: the session does not move")
	}
	return nil
}

// sameRegistration answers nil when req asks for the session as it was
// registered, else a RegistrationConflict naming what differs.
func (s *session) sameRegistration(req RegisterRequest) error {
	var diffs []string
	differ := func(what string, have, asked any) {
		// Deterministic: plain structs, and json sorts map keys.
		a, _ := json.Marshal(have)  //workflowcheck:ignore
		b, _ := json.Marshal(asked) //workflowcheck:ignore
		if string(a) != string(b) {
			diffs = append(diffs, fmt.Sprintf("%s %s (asked: %s)", what, a, b))
		}
	}
	differ("app", s.in.App, req.App)
	differ("region", s.in.Region, req.Region)
	differ("neighbours", s.in.Neighbours, req.Neighbours)
	differ("pre-deploy", s.in.PreDeploy, req.PreDeploy)
	differ("consumer", s.st.Registration.Consumer, firstOf(req.Registration.Consumer, req.App.Name))
	differ("associate type", s.in.Registration.AssociateType, req.Registration.AssociateType)
	if len(diffs) == 0 {
		return nil
	}
	return temporal.NewNonRetryableApplicationError(
		fmt.Sprintf("%s is open and registered with %s", s.st.ID, strings.Join(diffs, "; ")), ErrTypeRegistrationConflict, nil)
}

// enqueueMove records the move (TRIGGERED) and queues it; the main loop
// acts on it in order. id is the Move update's id; a signalled move ("")
// gets one from the session.
func (s *session) enqueueMove(ctx workflow.Context, region, id string) *moveRequest {
	m := &moveRequest{id: id, region: region, cloud: s.firstCloud(region), arrived: workflow.Now(ctx), fromSig: id == ""}
	source := FromUpdate
	if m.fromSig {
		source = FromSignal
		m.id = fmt.Sprintf("signal-%s-%d", shortID(chainID(ctx)), s.st.Events+1)
	}
	s.trigger(ctx, MoveRecord{ID: m.id, Source: source, Region: region, FromCloud: s.st.Serving, ToCloud: m.cloud, ArrivedAt: m.arrived}, s.nameOn(m.cloud))
	s.moves = append(s.moves, m)
	s.dirty = true
	return m
}

// deployRequest deploys the session's app, with its images now, as
// instance name on cloud, labelled as the session's.
func (s *session) deployRequest(cloud, name string) activities.DeployRequest {
	labels := map[string]string{runtime.LabelWorkflow: s.st.ID, runtime.LabelCloud: cloud}
	return activities.DeployRequest{Name: name, Spec: s.app().RuntimeSpec(cloud, labels)}
}

// trigger records move r as TRIGGERED and tells subscribers (instance:
// the target instance's name).
func (s *session) trigger(ctx workflow.Context, r MoveRecord, instance string) {
	r.Status = MoveTriggered
	s.record(r)
	s.emit(ctx, amsi.Event{Kind: amsi.KindMove, MoveID: r.ID, Status: amsi.MoveTriggered, Region: r.Region,
		FromCloud: r.FromCloud, ToCloud: r.ToCloud, Instance: instance, Reason: r.Reason})
}

// record keeps a move record, the latest RecentMoves of them.
func (s *session) record(r MoveRecord) {
	s.st.Moves = append(s.st.Moves, r)
	if len(s.st.Moves) > RecentMoves {
		s.st.Moves = slices.Clone(s.st.Moves[len(s.st.Moves)-RecentMoves:])
	}
}

// emit numbers an event and queues it for the subscribers.
func (s *session) emit(ctx workflow.Context, e amsi.Event) {
	s.st.Events++
	if !s.events {
		return
	}
	e.Session, e.Chain, e.Seq, e.At = s.st.ID, chainID(ctx), s.st.Events, workflow.Now(ctx)
	e.User, e.App, e.AssociateType = s.in.User, s.in.App.Name, s.st.Registration.AssociateType
	s.outbox = append(s.outbox, e)
}

// publishEvents hands the session's events to the subscriptions workflow,
// in order, in batches at most every EventFlushInterval, off the moves'
// path. A batch that cannot be published stays and goes again.
func (s *session) publishEvents(ctx workflow.Context) {
	var last time.Time
	for {
		if err := workflow.Await(ctx, func() bool { return len(s.outbox) > 0 }); err != nil {
			return
		}
		if wait := last.Add(EventFlushInterval).Sub(workflow.Now(ctx)); wait > 0 {
			if err := workflow.Sleep(ctx, wait); err != nil {
				return
			}
		}
		batch := slices.Clone(s.outbox)
		actx := central(ctx, publishOptions, fmt.Sprintf("tell subscribers of %d event(s) of %s", len(batch), s.st.ID))
		err := workflow.ExecuteActivity(actx, notifyActs.PublishSessionEvents, batch).Get(ctx, nil)
		last = workflow.Now(ctx)
		if err != nil {
			s.logger.Warn("events not published; trying again later", "events", len(batch), "error", err)
			if err := workflow.Sleep(ctx, publishPause); err != nil {
				return
			}
			continue
		}
		s.outbox = s.outbox[len(batch):]
	}
}

// noteAdjacent tells subscribers when the session's ready pre-deploys
// changed, once the session is quiet.
func (s *session) noteAdjacent(ctx workflow.Context) {
	if !s.events || s.st.Phase != "serving" || len(s.ops) > 0 {
		return
	}
	if cur := s.readyWarm(); !slices.Equal(cur, s.adjacent) {
		s.adjacent = cur
		s.emit(ctx, amsi.Event{Kind: amsi.KindAdjacent, Region: s.st.Region, ToCloud: s.st.Serving, Adjacent: cur})
	}
}

// readyWarm lists the ready pre-deploys, by cloud.
func (s *session) readyWarm() []amsi.Instance {
	out := []amsi.Instance{}
	for _, cloud := range sortedKeys(s.instances) {
		if inst := s.instances[cloud]; inst.Role == RoleWarm && inst.Status == StatusReady {
			out = append(out, amsi.Instance{Cloud: cloud, Name: inst.Name, Endpoint: inst.Endpoint})
		}
	}
	return out
}

// armExpiry (re)starts the timer that ends the session when its
// registration expires.
func (s *session) armExpiry() {
	if s.expiryTimer != nil {
		s.expiryTimer()
		s.expiryTimer = nil
	}
	at := s.st.Registration.ExpiresAt()
	if !s.events || at.IsZero() {
		return
	}
	ctx, cancel := workflow.WithCancel(s.root)
	s.expiryTimer = cancel
	workflow.Go(ctx, func(ctx workflow.Context) {
		if wait := at.Sub(workflow.Now(ctx)); wait > 0 {
			if err := workflow.Sleep(ctx, wait); err != nil {
				return // re-armed or cancelled
			}
		}
		s.logger.Info("registration expired: the session ends", "expiryTime", s.st.Registration.ExpiryTime)
		s.exit, s.dirty = true, true
	})
}

func (s *session) instanceName(cloud string) string {
	return runtime.InstanceName(s.in.App.Name, s.in.User, cloud)
}

// nameOn is the name of the session's instance on cloud: the one it holds
// (a replacement may have the other name), else the one it would deploy.
func (s *session) nameOn(cloud string) string {
	if inst := s.instances[cloud]; inst != nil {
		return inst.Name
	}
	return s.instanceName(cloud)
}

// chainID names the session's chain of runs: its first run's id.
func chainID(ctx workflow.Context) string {
	info := workflow.GetInfo(ctx)
	return firstOf(info.FirstRunID, info.WorkflowExecution.RunID)
}

// shortID is the first 12 characters of a run id: enough to tell sessions
// of one user and app apart.
func shortID(id string) string { return id[:min(len(id), 12)] }

// handleMoves serves moves in arrival order: a warm target switches at
// once; a cold one is deployed first and the queue waits for it.
func (s *session) handleMoves(ctx workflow.Context) error {
	for len(s.moves) > 0 {
		m := s.moves[0]
		if s.st.Phase == "exiting" {
			s.finishMove(ctx, m, MoveResult{}, temporal.NewNonRetryableApplicationError("session is exiting", ErrTypeMoveFailed, nil))
			continue
		}
		inst := s.instances[m.cloud]
		switch {
		case m.failedCloud != "" && m.failedCloud != s.st.Serving:
			// Another move left the instance that was down first.
			m.from = m.failedCloud
			s.finishMove(ctx, m, MoveResult{Region: s.st.Region, Cloud: s.st.Serving, Endpoint: s.st.Endpoint}, nil)
			continue
		case m.cloud == s.st.Serving && !m.initial:
			s.st.Region = m.region
			m.from = s.st.Serving
			s.finishMove(ctx, m, MoveResult{Region: m.region, Cloud: m.cloud, Endpoint: s.st.Endpoint, Warm: true}, nil)
			continue
		case inst != nil && inst.Status == StatusReady && s.ops[m.cloud] == nil:
			if s.carriesState(m) && m.transfer != transferDone {
				if m.transfer == transferNone && !s.carryLateWrites(ctx, true) {
					s.transferState(ctx, m, inst)
				}
				return nil // the state (after the late writes of an earlier move) is on its way
			}
			if m.transferErr != nil && s.in.Continuity.StatePolicy != StateSwitchWithout {
				err := temporal.NewNonRetryableApplicationError(fmt.Sprintf(
					"the app's state could not be carried to %s, so the session stays on %s: %s",
					m.cloud, s.st.Serving, RootMessage(m.transferErr)), ErrTypeMoveFailed, nil)
				s.st.Totals.FailedMoves++
				s.finishMove(ctx, m, MoveResult{ContextTransferState: m.contextState(), StateError: RootMessage(m.transferErr)}, err)
				s.plan()
				continue
			}
			s.switchTo(ctx, m, inst)
			continue
		case !m.started:
			m.started = true
			s.want(m.cloud, RoleServe)
			if inst != nil && (inst.Status == StatusFailed || inst.Status == StatusSkipped) {
				inst.Status = StatusUnknown // give a serving deploy its own try
			}
			return nil
		case inst != nil && (inst.Status == StatusFailed || inst.Status == StatusSkipped):
			typ := ErrTypeMoveFailed
			switch {
			case inst.NoWorker:
				typ = ErrTypeNoWorker
			case inst.Untrusted:
				typ = activities.ErrTypeUntrustedImage
			}
			err := temporal.NewNonRetryableApplicationError(fmt.Sprintf("cannot serve from %s: %s", m.cloud, inst.Error), typ, nil)
			s.st.Totals.FailedMoves++
			if m.initial {
				return err
			}
			s.finishMove(ctx, m, MoveResult{}, err)
			s.plan()
			continue
		default:
			return nil // its deploy is still running
		}
	}
	return nil
}

// switchTo makes inst the serving instance and re-plans the neighbours.
func (s *session) switchTo(ctx workflow.Context, m *moveRequest, inst *Instance) {
	now := workflow.Now(ctx)
	warm := !m.started
	h := Handover{MoveID: m.id, FromRegion: s.st.Region, ToRegion: m.region, FromCloud: s.st.Serving, ToCloud: m.cloud, Warm: warm, SwitchTime: now.Sub(m.arrived), At: now, Reason: m.reason}
	if !inst.WarmAt.IsZero() {
		s.st.Totals.PreDeploySeconds += now.Sub(inst.WarmAt).Seconds()
		inst.WarmAt = time.Time{}
	}
	if !m.initial {
		s.learn(ctx, h)
		s.st.Handovers = append(s.st.Handovers, h)
		if len(s.st.Handovers) > recentHandovers {
			s.st.Handovers = slices.Clone(s.st.Handovers[len(s.st.Handovers)-recentHandovers:])
		}
		s.st.Totals.Handovers++
		s.st.Totals.SwitchTime += h.SwitchTime
		if warm {
			s.st.Totals.Warm++
		} else {
			s.st.Totals.Cold++
		}
	}
	if !slices.Contains(s.st.Totals.CloudsUsed, m.cloud) {
		s.st.Totals.CloudsUsed = append(s.st.Totals.CloudsUsed, m.cloud)
	}
	m.from = s.st.Serving
	s.st.Serving, s.st.Region, s.st.Endpoint, s.st.Phase = m.cloud, m.region, inst.Endpoint, "serving"
	res := MoveResult{Region: m.region, Cloud: m.cloud, Endpoint: inst.Endpoint, Warm: warm, SwitchTime: h.SwitchTime}
	if m.transferErr != nil {
		res.StateError = RootMessage(m.transferErr)
	}
	if res.ContextTransferState = m.contextState(); res.ContextTransferState == nil && s.continuity && s.in.App.State != nil && !m.initial {
		v := amsi.ContextNotTransferred // a failover: the old instance was down
		res.ContextTransferState = &v
	}
	if res.ContextTransferState != nil {
		v := *res.ContextTransferState
		s.st.Registration.ContextTransferState = &v
	}
	s.finishMove(ctx, m, res, nil)
	s.plan()
	if m.failedCloud == "" {
		s.drain(ctx, m.from)
		s.leaveLateWrites(ctx, m)
	}
	if !s.throttleIndex {
		_ = workflow.UpsertTypedSearchAttributes(ctx, names.CloudKey.ValueSet(m.cloud))
	}
	s.logger.Info("handover", "from", h.FromCloud, "to", h.ToCloud, "warm", warm, "switch", h.SwitchTime)
}

// indexServing points the DriftCloud search attribute (the Web UI's
// "served from" filter) at the serving cloud: at once when the last write
// is older than CloudIndexInterval, otherwise when that interval is up.
func (s *session) indexServing(ctx workflow.Context) {
	if !s.throttleIndex || s.indexWaiting || s.st.Serving == "" || s.st.Serving == s.indexed {
		return
	}
	if wait := s.indexedAt.Add(CloudIndexInterval).Sub(workflow.Now(ctx)); wait > 0 {
		s.indexWaiting = true
		workflow.Go(ctx, func(ctx workflow.Context) {
			_ = workflow.Sleep(ctx, wait)
			s.indexWaiting, s.dirty = false, true
		})
		return
	}
	_ = workflow.UpsertTypedSearchAttributes(ctx, names.CloudKey.ValueSet(s.st.Serving))
	s.indexed, s.indexedAt = s.st.Serving, workflow.Now(ctx)
}

// finishMove answers the move at the head of the queue, records how it
// ended and tells subscribers (COMPLETED or FAILED).
func (s *session) finishMove(ctx workflow.Context, m *moveRequest, res MoveResult, err error) {
	m.result, m.err, m.done = res, err, true
	s.moves = s.moves[1:]
	if m.initial {
		return
	}
	if m.from == "" {
		m.from = s.st.Serving
	}
	e := amsi.Event{Kind: amsi.KindMove, MoveID: m.id, Region: m.region, FromCloud: m.from, ToCloud: m.cloud, Instance: s.nameOn(m.cloud),
		Reason: m.reason, ContextTransferState: res.ContextTransferState}
	status := MoveCompleted
	if err != nil {
		status, e.Status, e.Error = MoveFailed, amsi.MoveFailed, RootMessage(err)
	} else {
		e.Status, e.Endpoint, e.Warm, e.SwitchTime = amsi.MoveCompleted, res.Endpoint, res.Warm, res.SwitchTime
	}
	if r := s.moveRecord(m.id); r != nil {
		r.Status, r.FromCloud, r.Warm, r.SwitchTime, r.Endpoint, r.Error, r.FinishedAt =
			status, m.from, res.Warm, res.SwitchTime, res.Endpoint, e.Error, workflow.Now(ctx)
		r.ContextTransferState, r.StateError = res.ContextTransferState, res.StateError
	}
	s.emit(ctx, e)
}

func (s *session) moveInProgress() bool {
	return len(s.moves) > 0 && (s.moves[0].started || s.moves[0].transfer == transferRunning)
}

// plan sets every instance's role for the current serving cloud: serve
// there, warm on its neighbours, none elsewhere.
func (s *session) plan() {
	if s.exitFinal && s.st.Phase == "exiting" {
		return // everything goes
	}
	wanted := map[string]Role{s.st.Serving: RoleServe}
	if s.in.PreDeploy != PreDeployNone {
		opts := s.in.Predict
		opts.Mode = predict.Neighbours
		if s.in.PreDeploy == PreDeployPredicted {
			opts.Mode = predict.Predicted
		}
		plan, err := predict.PreDeployClouds(s.in.Topology, &s.model, s.in.Neighbours, s.st.Region, opts)
		if err != nil {
			s.logger.Warn("no pre-deploy plan", "region", s.st.Region, "error", err)
		}
		s.st.Plan = plan
		for _, cloud := range plan.Clouds {
			if !s.failoverPlan || cloud != s.st.Serving {
				wanted[cloud] = RoleWarm
			}
		}
		// Served elsewhere after a failover: the user's own cloud is the
		// one to go back to once it answers again.
		if own := s.firstCloud(s.st.Region); s.failoverPlan && own != s.st.Serving {
			wanted[own] = RoleWarm
		}
	}
	// A cold move in progress keeps its target.
	if s.moveInProgress() {
		wanted[s.moves[0].cloud] = RoleServe
	}
	// Clouds whose serving instance was found down get nothing new.
	for _, cloud := range sortedKeys(s.st.Down) {
		if cloud != s.st.Serving {
			delete(wanted, cloud)
		}
	}
	for _, cloud := range sortedKeys(s.instances) {
		if _, ok := wanted[cloud]; !ok {
			s.instances[cloud].Role = ""
		}
	}
	for _, cloud := range sortedKeys(wanted) {
		s.want(cloud, wanted[cloud])
		if inst := s.instances[cloud]; inst.Role == RoleWarm && (inst.Status == StatusFailed || inst.Status == StatusSkipped) {
			inst.Status = StatusUnknown // a new plan tries again
		}
	}
}

// want records the role before any activity acts on the cloud, so state
// always knows about every instance that may exist.
func (s *session) want(cloud string, role Role) {
	inst := s.instances[cloud]
	if inst == nil {
		inst = &Instance{Cloud: cloud, Name: s.instanceName(cloud), Status: StatusUnknown}
		s.instances[cloud] = inst
	}
	inst.Role = role
}

func (s *session) beginExit() {
	s.st.Phase = "exiting"
	for _, cloud := range sortedKeys(s.instances) {
		s.instances[cloud].Role = ""
	}
}

// reconcile starts at most one activity per cloud to bring each instance to
// its role, and cancels deploys nobody wants any more.
func (s *session) reconcile(ctx workflow.Context) {
	s.carryLateWrites(ctx, false)
	for _, cloud := range sortedKeys(s.instances) {
		inst := s.instances[cloud]
		if o := s.ops[cloud]; o != nil {
			if o.kind == opDeploy && inst.Role == "" && !o.canceled {
				o.canceled = true
				o.cancel()
			}
			continue
		}
		if s.late[inst.Name] != nil {
			continue // what it took after the read is carried first
		}
		switch {
		case inst.Role == "" && s.draining(ctx, inst):
			// requests in flight finish first
		case inst.Role == "":
			s.start(ctx, inst, opDestroy)
		case inst.Status == StatusUnknown:
			s.start(ctx, inst, opDeploy)
		case inst.Role == RoleWarm && inst.Status == StatusReady && s.behind(inst) && !workflow.Now(ctx).Before(inst.DrainUntil):
			s.start(ctx, inst, opDeploy) // a pre-deploy takes the adopted release
		}
	}
}

func (s *session) start(ctx workflow.Context, inst *Instance, kind opKind) {
	actx, cancel := workflow.WithCancel(ctx)
	s.ops[inst.Cloud] = &op{kind: kind, cancel: cancel}
	cloud, name := inst.Cloud, inst.Name
	if !inst.WarmAt.IsZero() {
		s.st.Totals.PreDeploySeconds += workflow.Now(ctx).Sub(inst.WarmAt).Seconds()
		inst.WarmAt = time.Time{}
	}
	inst.DrainUntil = time.Time{}
	if kind == opDestroy {
		inst.Status = StatusDestroying
		summary := fmt.Sprintf("destroy %s on %s", s.in.App.Name, cloud)
		workflow.Go(ctx, func(ctx workflow.Context) {
			err := executeOnCloud(actx, destroyOptions, cloud, summary, cloudActs.DestroyInstance, name).Get(ctx, nil)
			s.deliver(opResult{cloud: cloud, kind: kind, err: err})
		})
		return
	}
	inst.Status, inst.Runs = StatusDeploying, s.runs()
	inst.Error, inst.NoWorker, inst.Untrusted = "", false, false
	req := s.deployRequest(cloud, name)
	req.PreDeploy = inst.Role == RoleWarm
	verb := "deploy"
	if req.PreDeploy {
		verb = "pre-deploy"
	}
	summary := fmt.Sprintf("%s %s on %s", verb, s.in.App.Name, cloud)
	workflow.Go(ctx, func(ctx workflow.Context) {
		var ep runtime.Endpoint
		err := executeOnCloud(actx, deployOptions, cloud, summary, cloudActs.DeployInstance, req).Get(ctx, &ep)
		s.deliver(opResult{cloud: cloud, kind: kind, preDeploy: req.PreDeploy, endpoint: ep, err: err})
	})
}

// deliver hands an activity's outcome to the main loop.
func (s *session) deliver(r opResult) {
	s.results = append(s.results, r)
	s.dirty = true
}

func (s *session) applyResults(ctx workflow.Context) {
	for _, r := range s.results {
		delete(s.ops, r.cloud)
		inst := s.instances[r.cloud]
		switch {
		case r.kind == opDestroy && r.err == nil && inst.Role == "":
			delete(s.instances, r.cloud)
			if s.cloudBack(r.cloud) && s.failoverPlan {
				s.plan() // it may hold a warm instance again
			}
		case r.kind == opDestroy && r.err == nil:
			inst.Status = StatusUnknown // wanted again meanwhile: deploy anew
		case r.kind == opDestroy && isType(r.err, ErrTypeNoWorker) && inst.Role == "" && !s.retriesDestroy(r.cloud):
			// Nobody acts on that cloud: stop asking; Exit's sweep lists it.
			// (A cloud failed over from is asked again until it answers.)
			s.logger.Warn("instance left to the exit sweep", "cloud", r.cloud, "error", r.err)
			delete(s.instances, r.cloud)
		case r.kind == opDestroy:
			inst.Status, inst.Error = StatusUnknown, r.err.Error() // the next reconcile destroys again
		case r.err == nil:
			inst.Status, inst.Endpoint = StatusReady, r.endpoint
			if inst.Role == RoleWarm {
				inst.WarmAt = workflow.Now(ctx)
			}
		case temporal.IsCanceledError(r.err):
			inst.Status = StatusUnknown // it may exist partly; reconcile destroys it
		case r.preDeploy && inst.Role == RoleServe:
			inst.Status = StatusUnknown // a move needs it now: deploy it to serve, past capacity
		case isType(r.err, activities.ErrTypeAtCapacity):
			inst.Status, inst.Error = StatusSkipped, "cloud at capacity"
		default:
			inst.Status, inst.Error, inst.NoWorker = StatusFailed, errText(r.err), isType(r.err, ErrTypeNoWorker)
			inst.Untrusted = isType(r.err, activities.ErrTypeUntrustedImage)
		}
	}
	s.results = s.results[:0]
}

// publish refreshes what the Web UI shows.
func (s *session) publish(ctx workflow.Context) {
	var warm []string
	for _, cloud := range sortedKeys(s.instances) {
		if inst := s.instances[cloud]; inst.Role == RoleWarm && inst.Status == StatusReady {
			warm = append(warm, cloud)
		}
	}
	details := fmt.Sprintf("**%s** · %s of %s\n\nserving: **%s** (region %s) %s\n\nwarm: %s\n\nhandovers: %d (%d warm, %d cold)",
		s.st.Phase, s.in.App.Name, s.in.User, dashIfEmpty(s.st.Serving), dashIfEmpty(s.st.Region), s.st.Endpoint.URL,
		dashIfEmpty(strings.Join(warm, ", ")), s.st.Totals.Handovers, s.st.Totals.Warm, s.st.Totals.Cold)
	if ops := s.inFlight(); len(ops) > 0 {
		details += "\n\nin flight: " + strings.Join(ops, ", ")
	}
	workflow.SetCurrentDetails(ctx, details)
}

func (s *session) inFlight() []string {
	var out []string
	for _, cloud := range sortedKeys(s.ops) {
		out = append(out, string(s.ops[cloud].kind)+" "+cloud)
	}
	return out
}

func (s *session) snapshot() SessionState {
	st := s.st
	st.Instances = nil
	for _, cloud := range sortedKeys(s.instances) {
		st.Instances = append(st.Instances, *s.instances[cloud])
	}
	if s.spare != nil {
		st.Instances = append(st.Instances, *s.spare.inst)
	}
	for _, name := range sortedKeys(s.retired) {
		st.Instances = append(st.Instances, *s.retired[name])
	}
	st.InFlight = s.inFlight()
	st.Handovers = slices.Clone(s.st.Handovers)
	st.Moves = slices.Clone(s.st.Moves)
	st.Totals.CloudsUsed = slices.Clone(s.st.Totals.CloudsUsed)
	return st
}

func (s *session) shouldContinueAsNew(ctx workflow.Context) bool {
	for _, ch := range s.signals {
		if ch.Len() > 0 {
			return false // not yet taken in: it would be lost
		}
	}
	for _, cloud := range sortedKeys(s.instances) {
		if inst := s.instances[cloud]; !inst.DrainUntil.IsZero() && (inst.Role == "" || s.behind(inst)) {
			return false // its drain timer would be lost
		}
	}
	return s.st.Phase == "serving" && !s.exit && len(s.ops) == 0 && len(s.moves) == 0 && len(s.late) == 0 && s.spare == nil && len(s.retired) == 0 &&
		workflow.GetInfo(ctx).GetContinueAsNewSuggested() && workflow.AllHandlersFinished(ctx)
}

// teardown destroys every instance carrying the session's label on every
// cloud — found by listing, not only from memory — and ends the session
// with its report, or with cause when the session failed.
func (s *session) teardown(ctx workflow.Context, cause error) (SessionState, error) {
	ctx, _ = workflow.NewDisconnectedContext(ctx)
	s.stopWatch()
	s.st.Phase = "exiting"
	s.publish(ctx)
	for _, cloud := range sortedKeys(s.ops) {
		if o := s.ops[cloud]; o.kind == opDeploy && !o.canceled {
			o.canceled = true
			o.cancel()
		}
	}
	for len(s.ops) > 0 {
		if err := workflow.Await(ctx, func() bool { return len(s.results) > 0 }); err != nil {
			return SessionState{}, err
		}
		s.applyResults(ctx)
	}
	var sweeps []workflow.Future
	clouds := s.in.Topology.Clouds()
	for _, c := range clouds {
		sweeps = append(sweeps, executeOnCloud(ctx, destroyOptions, c.ID, "sweep "+s.in.App.Name+" off "+c.ID,
			cloudActs.DestroyOwned, map[string]string{runtime.LabelWorkflow: s.st.ID}))
	}
	for i, f := range sweeps {
		if err := f.Get(ctx, nil); err != nil {
			return SessionState{}, fmt.Errorf("sweep %s: %w", clouds[i].ID, err)
		}
	}
	for _, cloud := range sortedKeys(s.instances) {
		delete(s.instances, cloud)
	}
	s.st.Phase = "ended"
	s.st.Serving, s.st.Endpoint = "", runtime.Endpoint{}
	s.publish(ctx)
	s.flushEvents(ctx, cause)
	if cause != nil {
		return s.snapshot(), cause
	}
	return s.snapshot(), nil
}

// flushEvents fails the moves the session never got to (it failed) and
// waits, a bounded while, for its last events to be published.
func (s *session) flushEvents(ctx workflow.Context, cause error) {
	if !s.events {
		return
	}
	for len(s.moves) > 0 {
		s.finishMove(ctx, s.moves[0], MoveResult{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("the session ended before the move: %v", cause), ErrTypeMoveFailed, nil))
	}
	if ok, _ := workflow.AwaitWithTimeout(ctx, exitFlushTimeout, func() bool { return len(s.outbox) == 0 }); !ok {
		s.logger.Warn("the session ends with events not published", "events", len(s.outbox))
	}
}

// learn feeds a handover to the app's model: at once into the session's
// copy, durably into the app's model workflow, and now and then reads the
// model back to see what other sessions taught it.
func (s *session) learn(ctx workflow.Context, h Handover) {
	if s.in.PreDeploy != PreDeployPredicted || h.FromRegion == h.ToRegion {
		return
	}
	s.model.Observe(h.FromRegion, h.ToRegion)
	actx := central(ctx, lookupOptions, fmt.Sprintf("teach %s's model %s → %s", s.in.App.Name, h.FromRegion, h.ToRegion))
	mv := activities.RegionMove{From: h.FromRegion, To: h.ToRegion}
	workflow.Go(ctx, func(ctx workflow.Context) {
		if err := workflow.ExecuteActivity(actx, modelActs.RecordMove, s.in.App.Name, mv).Get(ctx, nil); err != nil {
			s.logger.Warn("model not taught", "error", err)
		}
	})
	if (s.st.Totals.Handovers+1)%modelRefreshEvery == 0 {
		s.readModel(ctx)
	}
}

// readModel fetches the app's model in the background; the main loop
// takes it in and re-plans.
func (s *session) readModel(ctx workflow.Context) {
	actx := central(ctx, lookupOptions, "read "+s.in.App.Name+"'s mobility model")
	workflow.Go(ctx, func(ctx workflow.Context) {
		var m predict.Model
		if err := workflow.ExecuteActivity(actx, modelActs.ModelSnapshot, s.in.App.Name).Get(ctx, &m); err != nil {
			s.logger.Warn("model not read", "error", err)
			return
		}
		s.models = append(s.models, m)
		s.dirty = true
	})
}

// takeModels adopts the newest model read and re-plans the warm clouds.
func (s *session) takeModels() {
	if len(s.models) == 0 {
		return
	}
	s.model = s.models[len(s.models)-1]
	s.models = nil
	if s.st.Serving != "" {
		s.plan()
	}
}
