// Package mecapi serves drift's mobility sessions to other services over
// HTTP: the Application Mobility Service API of ETSI GS MEC 021 v2.2.1
// (internal/amsi holds its data model), JSON under /amsi/v1, errors as RFC
// 7807 problem details, every request authenticated by a bearer token.
//
// The API keeps nothing of its own: a registration is the MobilitySession
// workflow session/<user>/<app> (opened by its Register update, so
// concurrent registrations make one session), a move is the session's Move
// update sent with the move's id and recorded in the session, and
// subscriptions with their delivery state live in the MobilitySubscriptions
// workflow. Any number of API processes serve the same state, and a
// restarted one has lost nothing.
//
// Routes (each needs the scope named): see routes below and the OpenAPI
// document served at /amsi/v1/openapi.json.
package mecapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/edgedrift/drift/internal/amsi"
	drift "github.com/edgedrift/drift/internal/client"
	"github.com/edgedrift/drift/internal/topology"
	"github.com/edgedrift/drift/workflows"
)

// BasePath is where the API lives.
const BasePath = amsi.BasePath

// Defaults of Options.
const (
	DefaultRequestTimeout = 10 * time.Minute
	DefaultPort           = 8080 // app.port when a registration gives none, as `drift session start`
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
	// Tokens say who may call (required): every request needs a bearer
	// token from them.
	Tokens *Tokens
	// Callbacks say where notifications may go; the zero value allows
	// loopback only.
	Callbacks CallbackPolicy
	// RequestTimeout bounds a blocking call made for a request (register,
	// exit, ?wait=true, queries); 0 means DefaultRequestTimeout.
	RequestTimeout time.Duration
	// Logger gets a line per request that failed on the server's side; nil
	// discards.
	Logger *slog.Logger
}

// API is the HTTP handler.
type API struct {
	c     client.Client
	drift *drift.Client
	opts  Options
	log   *slog.Logger
	mux   *http.ServeMux
}

// New returns the API over c. It panics when c, opts.Topology or
// opts.Tokens is nil or a default policy is invalid: those are programming
// errors, which the caller checks from its flags before.
func New(c client.Client, opts Options) *API {
	if c == nil || opts.Topology == nil || opts.Tokens == nil {
		panic("mecapi: New needs a Temporal client, Options.Topology and Options.Tokens")
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
	if err := workflows.CheckPreDeploy(opts.PreDeploy); err != nil {
		panic(fmt.Sprintf("mecapi: Options.PreDeploy: %v", err))
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = DefaultRequestTimeout
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	a := &API{c: c, drift: drift.New(c), opts: opts, log: logger}
	a.mux = http.NewServeMux()
	byPattern := map[string]map[string]route{}
	var patterns []string
	for _, rt := range a.routes() {
		if byPattern[rt.Path] == nil {
			byPattern[rt.Path] = map[string]route{}
			patterns = append(patterns, rt.Path)
		}
		byPattern[rt.Path][rt.Method] = rt
	}
	for _, p := range patterns {
		a.mux.Handle(p, a.methods(byPattern[p]))
	}
	a.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, r, problem(http.StatusNotFound, typeNotFound, "no resource at "+r.URL.Path))
	})
	return a
}

// ServeHTTP serves the API; paths outside BasePath are 404.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// route is one operation: a method on a path, the scope it needs, what it
// does (the OpenAPI summary) and the statuses it answers.
type route struct {
	Method, Path, Scope, Summary string
	Statuses                     []int
	Request, Response            any // the bodies' Go types, for the OpenAPI document
	Query                        []string
	handle                       http.HandlerFunc
}

// Paths of the resources.
const (
	registrationPath  = amsi.RegistrationsPath + "/{appMobilityServiceId}"
	deregisterPath    = registrationPath + "/deregister_task"
	movesPath         = registrationPath + "/moves"
	movePath          = movesPath + "/{moveId}"
	subscriptionsPath = amsi.SubscriptionsPath
	subscriptionPath  = subscriptionsPath + "/{subscriptionId}"
	openAPIPath       = BasePath + "/openapi.json"
)

func (a *API) routes() []route {
	r, w := ScopeRead, ScopeWrite
	return []route{
		{"GET", openAPIPath, r, "this API's OpenAPI 3 document", []int{200}, nil, nil, nil, serveOpenAPI},
		{"GET", amsi.RegistrationsPath, r, "list the open registrations (sessions)", []int{200, 400}, nil, []amsi.RegistrationInfo{}, []string{"user", "app"}, a.listRegistrations},
		{"POST", amsi.RegistrationsPath, w, "register: open the session, or find the open one (200) when it asks for the same; 409 when it conflicts", []int{200, 201, 400, 409}, amsi.RegistrationInfo{}, amsi.RegistrationInfo{}, nil, a.register},
		{"GET", registrationPath, r, "the registration and its session's state", []int{200, 400, 404}, nil, amsi.RegistrationInfo{}, nil, a.getRegistration},
		{"PUT", registrationPath, w, "change the registration: service level, context transfer state, expiry time", []int{200, 400, 404, 409}, amsi.RegistrationInfo{}, amsi.RegistrationInfo{}, nil, a.putRegistration},
		{"DELETE", registrationPath, w, "deregister: end the session; answers its report, again on a retry (drift: 200 with the report, where MEC says 204)", []int{200, 400, 404}, nil, amsi.RegistrationInfo{}, nil, a.deleteRegistration},
		{"POST", deregisterPath, w, "deregister: end the session (204 once everything is destroyed; again on a retry)", []int{204, 400, 404}, nil, nil, nil, a.deregisterTask},
		{"GET", movesPath, r, "drift: the latest moves of the session, by whatever started them", []int{200, 400, 404}, nil, []Move{}, nil, a.listMoves},
		{"POST", movesPath, w, "drift: move the session's user to a region (202 while TRIGGERED, 200 once COMPLETED or FAILED; ?wait=true waits for that)", []int{200, 202, 400, 404, 409}, MoveRequest{}, Move{}, []string{"wait"}, a.postMove},
		{"GET", movePath, r, "drift: one move, from any API process, after any restart", []int{200, 400, 404}, nil, Move{}, nil, a.getMove},
		{"GET", subscriptionsPath, r, "the caller's subscriptions", []int{200, 400}, nil, amsi.SubscriptionLinkList{}, []string{"subscriptionType"}, a.listSubscriptions},
		{"POST", subscriptionsPath, w, "subscribe: MobilityProcedureSubscription or AdjacentAppInfoSubscription", []int{201, 400, 409}, amsi.Subscription{}, amsi.Subscription{}, nil, a.subscribe},
		{"GET", subscriptionPath, r, "one of the caller's subscriptions, with its delivery state", []int{200, 404}, nil, amsi.Subscription{}, nil, a.getSubscription},
		{"PUT", subscriptionPath, w, "replace one of the caller's subscriptions; resumes a suspended one", []int{200, 400, 404}, amsi.Subscription{}, amsi.Subscription{}, nil, a.putSubscription},
		{"DELETE", subscriptionPath, w, "cancel one of the caller's subscriptions", []int{204, 404}, nil, nil, nil, a.deleteSubscription},
		{"GET", amsi.AdjacentPath, r, "the ready pre-deployed instances of a session (drift: ?appMobilityServiceId= names it)", []int{200, 400, 404}, nil, []amsi.AdjacentAppInstanceInfo{}, []string{"appMobilityServiceId"}, a.adjacent},
	}
}

// methods authenticates, checks the route's scope and dispatches on the
// method, answering 405 with Allow for the others.
func (a *API) methods(byMethod map[string]route) http.Handler {
	allowed := make([]string, 0, len(byMethod))
	for m := range byMethod {
		allowed = append(allowed, m)
	}
	sort.Strings(allowed)
	allow := strings.Join(allowed, ", ")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		caller, ok := a.authenticate(w, r)
		if !ok {
			return
		}
		rt, ok := byMethod[r.Method]
		if !ok {
			w.Header().Set("Allow", allow)
			writeProblem(w, r, problem(http.StatusMethodNotAllowed, typeMethodNotAllowed,
				fmt.Sprintf("%s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, allow)))
			return
		}
		if !caller.Can(rt.Scope) {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="drift-amsi", error="insufficient_scope", scope=%q`, rt.Scope))
			writeProblem(w, r, problem(http.StatusForbidden, typeForbidden,
				fmt.Sprintf("client %s lacks the %s scope %s %s needs", caller.Client, rt.Scope, r.Method, r.URL.Path)))
			return
		}
		rt.handle(w, r.WithContext(withCaller(r.Context(), caller)))
	})
}

// authenticate reads the bearer token; without a known one the request is
// answered 401.
func (a *API) authenticate(w http.ResponseWriter, r *http.Request) (Caller, bool) {
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	token = strings.TrimSpace(token)
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="drift-amsi"`)
		writeProblem(w, r, problem(http.StatusUnauthorized, typeUnauthorized, "this API needs a bearer token: Authorization: Bearer <token> (drift api token add makes one)"))
		return Caller{}, false
	}
	c, ok := a.opts.Tokens.Lookup(token)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="drift-amsi", error="invalid_token"`)
		writeProblem(w, r, problem(http.StatusUnauthorized, typeUnauthorized, "the bearer token is not one this API knows"))
		return Caller{}, false
	}
	return c, true
}

// newID returns prefix and 16 random hex digits.
func newID(prefix string) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return prefix + hex.EncodeToString(b)
}

// withTimeout bounds a blocking call made for a request.
func (a *API) withTimeout(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), a.opts.RequestTimeout)
}
