// Package mecapi serves drift's mobility sessions to other services over
// HTTP, in the spirit of ETSI GS MEC 021 (Application Mobility Service API):
// JSON under BasePath (/amsi/v1), errors as RFC 7807 problem details.
//
//	GET    /amsi/v1/app_mobility_services                          list sessions (?all=true, ?user=, ?app=)
//	POST   /amsi/v1/app_mobility_services                          register: open a session, 201 once it serves
//	GET    /amsi/v1/app_mobility_services/{user}/{app}             the session and its State query
//	DELETE /amsi/v1/app_mobility_services/{user}/{app}             exit: 200 with the report once all is destroyed
//	GET    /amsi/v1/app_mobility_services/{user}/{app}/moves       moves asked through this API process
//	POST   /amsi/v1/app_mobility_services/{user}/{app}/moves       {region}: 202 TRIGGERED (?wait=true: 200 COMPLETED)
//	GET    /amsi/v1/app_mobility_services/{user}/{app}/moves/{id}  TRIGGERED, COMPLETED or FAILED
//	GET    /amsi/v1/subscriptions                                  list subscriptions
//	POST   /amsi/v1/subscriptions                                  {callbackReference, filter}: 201
//	GET    /amsi/v1/subscriptions/{id}
//	DELETE /amsi/v1/subscriptions/{id}                             204
//
// A session is the MobilitySession workflow session/<user>/<app>; the
// handler calls Temporal through internal/client and keeps no session
// state of its own. A move is the workflow's Move update, sent with the
// move's id as the update id: the request returns once the workflow has
// accepted it (so a move the workflow's validator rejects is answered 409 or
// 400 at once), and a goroutine waits for the outcome.
//
// Move records and subscriptions live in the memory of one API process and
// are bounded (Options.MaxMoves, Options.MaxSubscriptions): they are lost on
// restart and not shared between replicas. The durable record of every move
// is the session's own history in Temporal, where the move id is the Move
// update's id.
//
// When a move asked through this API completes or fails, a
// MobilityProcedureNotification is POSTed to the callbackReference of every
// matching subscription, from a bounded queue with a per-attempt timeout and
// a few retries with backoff, never on the request path.
//
// The API has no authentication, and callback URLs may name any http(s)
// host: serve it on loopback or behind an authenticating proxy, and in
// production restrict callbacks with Options.CheckCallback (otherwise any
// client can make the API POST to any address it can reach).
package mecapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/client"

	drift "github.com/edgedrift/drift/internal/client"

	"github.com/edgedrift/drift/internal/topology"
	"github.com/edgedrift/drift/workflows"
)

// BasePath is where the API lives; mount the handler at BasePath + "/".
const BasePath = "/amsi/v1"

// Defaults of Options.
const (
	DefaultMaxMoves         = 1000
	DefaultMaxSubscriptions = 100
	DefaultMoveTimeout      = 15 * time.Minute
	DefaultRequestTimeout   = 10 * time.Minute
	DefaultPort             = 8080 // app.port when a registration gives none, as `drift session start`
)

// Options configure the API.
type Options struct {
	// Topology is what new sessions run on (required); their regions are
	// checked against it before anything starts.
	Topology *topology.Topology
	// Neighbours is the neighbour policy of registrations that name none;
	// the zero Policy means adjacency.
	Neighbours topology.Policy
	// PreDeploy is the pre-deploy policy of registrations that name none;
	// "" means workflows.PreDeployNeighbours.
	PreDeploy string
	// Logger gets one line per failed delivery and background problem;
	// nil discards.
	Logger *slog.Logger
	// MaxMoves bounds the move records kept (oldest finished ones go
	// first); 0 means DefaultMaxMoves.
	MaxMoves int
	// MaxSubscriptions bounds the subscriptions; 0 means
	// DefaultMaxSubscriptions.
	MaxSubscriptions int
	// MoveTimeout bounds how long the API waits for a move's outcome before
	// it records the move FAILED (the move may still complete in the
	// session); 0 means DefaultMoveTimeout.
	MoveTimeout time.Duration
	// RequestTimeout bounds a blocking call made for a request (register,
	// exit, ?wait=true, queries); 0 means DefaultRequestTimeout.
	RequestTimeout time.Duration
	// CheckCallback vets a subscription's callback URL after the API has
	// checked it is an absolute http(s) URL; an error rejects the
	// subscription with 400. nil allows any host — fine on a test box, but
	// production should allow only the hosts it expects.
	CheckCallback func(*url.URL) error
	// Notify tunes notification delivery.
	Notify NotifyOptions
}

// API is the HTTP handler. Close it to stop its background work.
type API struct {
	c     client.Client
	drift *drift.Client
	opts  Options
	log   *slog.Logger
	mux   *http.ServeMux
	moves *moveStore
	subs  *subStore
	notes *notifier

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	bgMu   sync.Mutex // guards closed and wg.Add
	closed bool
	wg     sync.WaitGroup // move waiters
}

// New returns the API over c. It panics when c or opts.Topology is nil or
// the default policies are invalid: those are programming errors, which the
// caller checks from its flags before.
func New(c client.Client, opts Options) *API {
	if c == nil || opts.Topology == nil {
		panic("mecapi: New needs a Temporal client and Options.Topology")
	}
	if opts.Neighbours.Kind == "" {
		opts.Neighbours = topology.Policy{Kind: topology.Adjacency}
	}
	if err := opts.Neighbours.Validate(); err != nil {
		panic(fmt.Sprintf("mecapi: Options.Neighbours: %v", err))
	}
	if opts.PreDeploy == "" {
		opts.PreDeploy = workflows.PreDeployNeighbours
	}
	if err := checkPreDeploy(opts.PreDeploy); err != nil {
		panic(fmt.Sprintf("mecapi: Options.PreDeploy: %v", err))
	}
	opts.MaxMoves = orDefault(opts.MaxMoves, DefaultMaxMoves)
	opts.MaxSubscriptions = orDefault(opts.MaxSubscriptions, DefaultMaxSubscriptions)
	opts.MoveTimeout = orDefault(opts.MoveTimeout, DefaultMoveTimeout)
	opts.RequestTimeout = orDefault(opts.RequestTimeout, DefaultRequestTimeout)
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &API{
		c:     c,
		drift: drift.New(c), opts: opts, log: logger,
		moves:  newMoveStore(opts.MaxMoves),
		subs:   newSubStore(opts.MaxSubscriptions),
		ctx:    ctx,
		cancel: cancel,
	}
	a.notes = newNotifier(ctx, opts.Notify, a.subs, logger)
	a.routes()
	return a
}

func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// Close stops waiting for move outcomes and drops pending notifications;
// moves already accepted go on in their sessions. It waits for the
// background goroutines to end. Call it once the HTTP server has stopped;
// a move asked after Close is answered 503.
func (a *API) Close() {
	a.bgMu.Lock()
	a.closed = true
	a.bgMu.Unlock()
	a.cancel()
	a.wg.Wait()
	a.notes.wait()
}

// ServeHTTP serves the API; paths outside BasePath are 404.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mux.ServeHTTP(w, r)
}

// Paths of the resources, below BasePath.
const (
	sessionsPath      = BasePath + "/app_mobility_services"
	subscriptionsPath = BasePath + "/subscriptions"
)

func (a *API) routes() {
	a.mux = http.NewServeMux()
	route := func(pattern string, byMethod map[string]http.HandlerFunc) {
		a.mux.Handle(pattern, methods(byMethod))
	}
	route(sessionsPath, map[string]http.HandlerFunc{"GET": a.listSessions, "POST": a.register})
	route(sessionsPath+"/{user}/{app}", map[string]http.HandlerFunc{"GET": a.getSession, "DELETE": a.exitSession})
	route(sessionsPath+"/{user}/{app}/moves", map[string]http.HandlerFunc{"GET": a.listMoves, "POST": a.postMove})
	route(sessionsPath+"/{user}/{app}/moves/{id}", map[string]http.HandlerFunc{"GET": a.getMove})
	route(subscriptionsPath, map[string]http.HandlerFunc{"GET": a.listSubscriptions, "POST": a.subscribe})
	route(subscriptionsPath+"/{id}", map[string]http.HandlerFunc{"GET": a.getSubscription, "DELETE": a.unsubscribe})
	a.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, r, problem(http.StatusNotFound, typeNotFound, "no resource at "+r.URL.Path))
	})
}

// methods dispatches on the request method and answers 405 with Allow for
// the others, as problem details.
func methods(byMethod map[string]http.HandlerFunc) http.Handler {
	allowed := make([]string, 0, len(byMethod))
	for m := range byMethod {
		allowed = append(allowed, m)
	}
	sort.Strings(allowed)
	allow := strings.Join(allowed, ", ")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h, ok := byMethod[r.Method]; ok {
			h(w, r)
			return
		}
		w.Header().Set("Allow", allow)
		writeProblem(w, r, problem(http.StatusMethodNotAllowed, typeMethodNotAllowed,
			fmt.Sprintf("%s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, allow)))
	})
}

// Hrefs of the resources.

func sessionHref(user, app string) string {
	return sessionsPath + "/" + url.PathEscape(user) + "/" + url.PathEscape(app)
}

func movesHref(user, app string) string { return sessionHref(user, app) + "/moves" }

func moveHref(user, app, id string) string { return movesHref(user, app) + "/" + url.PathEscape(id) }

func subscriptionHref(id string) string { return subscriptionsPath + "/" + url.PathEscape(id) }

// newID returns prefix and 12 random hex digits.
func newID(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return prefix + hex.EncodeToString(b)
}

// withTimeout bounds a blocking call made for a request.
func (a *API) withTimeout(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), a.opts.RequestTimeout)
}
