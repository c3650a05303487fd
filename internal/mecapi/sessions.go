package mecapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"unicode"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"

	"github.com/edgedrift/drift/internal/appspec"
	drift "github.com/edgedrift/drift/internal/client"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/topology"
	"github.com/edgedrift/drift/workflows"
)

// Registration is the body of POST /app_mobility_services.
type Registration struct {
	User   string     `json:"user"`
	App    AppRequest `json:"app"`
	Region string     `json:"region"`
	// Neighbours is a policy as `drift session start --policy` reads it:
	// adjacency, distance<=D[,latency|geo], nearest:N[,latency|geo]; ""
	// for the API's default.
	Neighbours string `json:"neighbours,omitempty"`
	// PreDeploy is neighbours or none; "" for the API's default.
	PreDeploy string `json:"preDeploy,omitempty"`
}

// AppRequest is the app of a registration: an image serving HTTP on a port
// (name, image, port — default 8080 —, health), or a compose file's text
// and the service in it ("" for its only one). Health, when set, overrides
// the compose file's.
type AppRequest struct {
	Name    string `json:"name,omitempty"`
	Image   string `json:"image,omitempty"`
	Port    int    `json:"port,omitempty"`
	Health  string `json:"health,omitempty"`
	Compose string `json:"compose,omitempty"`
	Service string `json:"service,omitempty"`
}

// Session is the session resource.
type Session struct {
	ID       string            `json:"id"` // the workflow id, session/<user>/<app>
	User     string            `json:"user"`
	App      string            `json:"app"`
	Image    string            `json:"image,omitempty"`
	Phase    string            `json:"phase,omitempty"`  // starting, serving, exiting, ended
	Status   string            `json:"status,omitempty"` // list only: the workflow's execution status
	Region   string            `json:"region,omitempty"`
	Cloud    string            `json:"cloud,omitempty"` // the serving cloud
	Endpoint *runtime.Endpoint `json:"endpoint,omitempty"`
	// State is the workflow's State query (GET) or its final report
	// (DELETE), as the workflow writes it: durations in nanoseconds.
	State *workflows.SessionState `json:"state,omitempty"`
	Links Links                   `json:"_links"`
}

// Links are a resource's related resources, by relation.
type Links map[string]Link

// Link is one related resource; Href is a path on this API.
type Link struct {
	Href string `json:"href"`
}

func sessionLinks(user, app string) Links {
	return Links{"self": {Href: sessionHref(user, app)}, "moves": {Href: movesHref(user, app)}}
}

func fromState(user, app string, st workflows.SessionState) Session {
	s := Session{
		ID: names.SessionID(user, app), User: user, App: app, Image: st.Image, Phase: st.Phase,
		Region: st.Region, Cloud: st.Serving, State: &st, Links: sessionLinks(user, app),
	}
	if st.Endpoint.URL != "" {
		ep := st.Endpoint
		s.Endpoint = &ep
	}
	return s
}

// register opens a session and answers 201 once the app serves.
func (a *API) register(w http.ResponseWriter, r *http.Request) {
	var reg Registration
	if p := decode(w, r, &reg); p != nil {
		writeProblem(w, r, *p)
		return
	}
	open, bad := a.parseRegistration(reg)
	if len(bad) > 0 {
		writeProblem(w, r, invalid(bad))
		return
	}
	id := names.SessionID(open.User, open.App.Name)
	what := id
	ctx, cancel := a.withTimeout(r)
	defer cancel()
	// OpenSession moves an open session instead of failing: registering
	// twice is a conflict, not a silent move.
	desc, err := a.c.DescribeWorkflowExecution(ctx, id, "")
	var notFound *serviceerror.NotFound
	switch {
	case err == nil && desc.GetWorkflowExecutionInfo().GetStatus() == enums.WORKFLOW_EXECUTION_STATUS_RUNNING:
		writeProblem(w, r, problem(http.StatusConflict, typeConflict,
			fmt.Sprintf("%s is already open; POST %s to move it or DELETE %s to end it", what, movesHref(open.User, open.App.Name), sessionHref(open.User, open.App.Name))))
		return
	case err != nil && !asErr(err, &notFound):
		writeProblem(w, r, fromError(err, what))
		return
	}
	res, err := a.drift.OpenSession(ctx, open)
	if err != nil {
		writeProblem(w, r, a.startProblem(r, id, err))
		return
	}
	ep := res.Endpoint
	s := Session{
		ID: id, User: open.User, App: open.App.Name, Image: open.App.Image, Phase: "serving",
		Region: res.Region, Cloud: res.Cloud, Endpoint: &ep, Links: sessionLinks(open.User, open.App.Name),
	}
	w.Header().Set("Location", s.Links["self"].Href)
	writeJSON(w, http.StatusCreated, s)
}

// startProblem explains a failed start: when the session ended before it
// served, its failure is the reason, not the missing update.
func (a *API) startProblem(r *http.Request, id string, err error) Problem {
	what := id
	ctx, cancel := a.withTimeout(r)
	defer cancel()
	if desc, derr := a.c.DescribeWorkflowExecution(ctx, id, ""); derr == nil &&
		desc.GetWorkflowExecutionInfo().GetStatus() != enums.WORKFLOW_EXECUTION_STATUS_RUNNING {
		if werr := a.c.GetWorkflow(ctx, id, "").Get(ctx, nil); werr != nil {
			p := fromError(werr, what+" failed to start")
			if p.Status == http.StatusNotFound {
				p = problem(http.StatusBadGateway, typeSessionFailed, fmt.Sprintf("%s failed to start: %s", what, workflows.RootMessage(werr)))
			}
			return p
		}
	}
	return fromError(err, what)
}

// parseRegistration checks everything a registration says before anything
// starts, and reports every bad field.
func (a *API) parseRegistration(reg Registration) (drift.Open, []InvalidParam) {
	var bad []InvalidParam
	add := func(param, format string, args ...any) {
		bad = append(bad, InvalidParam{Param: param, Reason: fmt.Sprintf(format, args...)})
	}
	if reason := checkUser(reg.User); reason != "" {
		add("user", "%s", reason)
	}
	spec, appBad := parseApp(reg.App)
	bad = append(bad, appBad...)
	if reg.Region == "" {
		add("region", "required")
	} else if _, err := a.opts.Topology.FirstCloud(reg.Region); err != nil {
		add("region", "%v", err)
	}
	policy := a.opts.Neighbours
	if reg.Neighbours != "" {
		p, err := topology.ParsePolicy(reg.Neighbours)
		if err != nil {
			add("neighbours", "%v", err)
		}
		policy = p
	}
	preDeploy := a.opts.PreDeploy
	if reg.PreDeploy != "" {
		if err := checkPreDeploy(reg.PreDeploy); err != nil {
			add("preDeploy", "%v", err)
		}
		preDeploy = reg.PreDeploy
	}
	return drift.Open{
		User: reg.User, App: spec, Region: reg.Region, Topology: a.opts.Topology,
		Neighbours: policy, PreDeploy: preDeploy,
	}, bad
}

// parseApp builds the AppSpec from either form, naming the fields at fault.
func parseApp(in AppRequest) (appspec.AppSpec, []InvalidParam) {
	var bad []InvalidParam
	add := func(param, format string, args ...any) {
		bad = append(bad, InvalidParam{Param: param, Reason: fmt.Sprintf(format, args...)})
	}
	var spec appspec.AppSpec
	switch {
	case in.Compose != "":
		if in.Name != "" || in.Image != "" || in.Port != 0 {
			add("app", "give either compose (with service) or name, image and port, not both")
			return spec, bad
		}
		s, err := appspec.FromCompose([]byte(in.Compose), in.Service)
		if err != nil {
			add("app.compose", "%v", err)
			return spec, bad
		}
		spec = s
	case in.Service != "":
		add("app.service", "only with app.compose")
		return spec, bad
	default:
		if in.Name == "" {
			add("app.name", "required (or give app.compose)")
		} else if err := runtime.ValidateName(in.Name); err != nil {
			add("app.name", "%q must be a DNS-1035 label (a-z, 0-9, '-', start with a letter, at most 63 characters)", in.Name)
		}
		if strings.TrimSpace(in.Image) == "" {
			add("app.image", "required: a full reference with registry and tag or digest, e.g. 127.0.0.1:5000/hello:v1")
		}
		if in.Port == 0 {
			in.Port = DefaultPort
		}
		if in.Port < 1 || in.Port > 65535 {
			add("app.port", "%d is not in 1..65535", in.Port)
		}
		if len(bad) > 0 {
			return spec, bad
		}
		spec = appspec.AppSpec{Name: in.Name, Image: in.Image, Port: in.Port}
	}
	if in.Health != "" {
		spec.Health = in.Health
	}
	if err := spec.Validate(); err != nil {
		msg := err.Error()
		param := "app"
		switch {
		case strings.Contains(msg, "health path"):
			param = "app.health"
		case in.Compose != "":
			param = "app.compose"
		case strings.Contains(msg, "image"):
			param = "app.image"
		}
		add(param, "%s", msg)
	}
	return spec, bad
}

// checkUser says what is wrong with a user name, or "".
func checkUser(user string) string {
	switch {
	case user == "":
		return "required"
	case len(user) > 200:
		return "longer than 200 bytes"
	case strings.ContainsAny(user, "/ "):
		return fmt.Sprintf("%q may not hold '/' or spaces", user)
	case strings.IndexFunc(user, unicode.IsControl) >= 0:
		return fmt.Sprintf("%q holds a control character", user)
	}
	return ""
}

func checkPreDeploy(p string) error {
	if err := workflows.CheckPreDeploy(p); err != nil {
		return err
	}
	return nil
}

// asErr is errors.As.
func asErr[T error](err error, target *T) bool { return errors.As(err, target) }

// requireOpen answers nil when the session's workflow is running, else a
// 404 problem (it never existed, or it has ended).
func (a *API) requireOpen(ctx context.Context, id string) *Problem {
	desc, err := a.c.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		p := fromError(err, id)
		return &p
	}
	if st := desc.GetWorkflowExecutionInfo().GetStatus(); st != enums.WORKFLOW_EXECUTION_STATUS_RUNNING {
		p := problem(http.StatusNotFound, typeNotFound, fmt.Sprintf("%s has ended (%s); its history stays in Temporal", id, st))
		return &p
	}
	return nil
}

// pathSession reads {user} and {app}; a bad one is a 400 naming it.
func pathSession(w http.ResponseWriter, r *http.Request) (user, app string, ok bool) {
	user, app = r.PathValue("user"), r.PathValue("app")
	var bad []InvalidParam
	if reason := checkUser(user); reason != "" {
		bad = append(bad, InvalidParam{Param: "user", Reason: reason})
	}
	if err := runtime.ValidateName(app); err != nil {
		bad = append(bad, InvalidParam{Param: "app", Reason: fmt.Sprintf("%q is not an app name (a DNS-1035 label)", app)})
	}
	if len(bad) > 0 {
		writeProblem(w, r, invalid(bad))
		return "", "", false
	}
	return user, app, true
}

// getSession answers the session's State query, for open sessions only.
func (a *API) getSession(w http.ResponseWriter, r *http.Request) {
	user, app, ok := pathSession(w, r)
	if !ok {
		return
	}
	id := names.SessionID(user, app)
	ctx, cancel := a.withTimeout(r)
	defer cancel()
	if p := a.requireOpen(ctx, id); p != nil {
		writeProblem(w, r, *p)
		return
	}
	st, err := a.drift.Session(ctx, user, app)
	if err != nil {
		writeProblem(w, r, fromError(err, id))
		return
	}
	writeJSON(w, http.StatusOK, fromState(user, app, st))
}

// exitSession ends the session and answers its report once every instance
// is destroyed.
func (a *API) exitSession(w http.ResponseWriter, r *http.Request) {
	user, app, ok := pathSession(w, r)
	if !ok {
		return
	}
	id := names.SessionID(user, app)
	ctx, cancel := a.withTimeout(r)
	defer cancel()
	rep, err := a.drift.Exit(ctx, user, app)
	if err != nil {
		writeProblem(w, r, fromError(err, id))
		return
	}
	writeJSON(w, http.StatusOK, fromState(user, app, rep))
}

// listSessions lists sessions from Temporal's visibility, newest first.
func (a *API) listSessions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	all := false
	if v := q.Get("all"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			writeProblem(w, r, invalid([]InvalidParam{{Param: "all", Reason: fmt.Sprintf("%q is not a boolean", v)}}))
			return
		}
		all = b
	}
	ctx, cancel := a.withTimeout(r)
	defer cancel()
	sums, err := a.drift.Sessions(ctx, all)
	if err != nil {
		writeProblem(w, r, fromError(err, "list of sessions"))
		return
	}
	out := []Session{}
	for _, s := range sums {
		if (q.Get("user") != "" && s.User != q.Get("user")) || (q.Get("app") != "" && s.App != q.Get("app")) {
			continue
		}
		out = append(out, Session{ID: s.ID, User: s.User, App: s.App, Cloud: s.Cloud, Status: s.Status, Links: sessionLinks(s.User, s.App)})
	}
	writeJSON(w, http.StatusOK, out)
}
