package mecapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"go.temporal.io/api/serviceerror"

	"github.com/edgedrift/drift/internal/amsi"
	"github.com/edgedrift/drift/internal/appspec"
	drift "github.com/edgedrift/drift/internal/client"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/topology"
	"github.com/edgedrift/drift/workflows"
)

// register opens the session (201), or answers for the open one: 200 when
// the request asks for it as it was registered, 409 with its Location when
// it conflicts. Concurrent requests make one session (the Register update,
// serialized by the session).
func (a *API) register(w http.ResponseWriter, r *http.Request) {
	var info amsi.RegistrationInfo
	if p := decode(w, r, &info); p != nil {
		writeProblem(w, r, *p)
		return
	}
	open, bad := a.parseRegistration(info)
	if len(bad) > 0 {
		writeProblem(w, r, invalid(bad))
		return
	}
	id := amsi.RegistrationID(open.User, open.App.Name)
	ctx, cancel := a.withTimeout(r)
	defer cancel()
	res, err := a.drift.OpenSession(ctx, open)
	if err != nil {
		p := fromError(err, names.SessionID(open.User, open.App.Name))
		if p.Status == http.StatusConflict {
			w.Header().Set("Location", amsi.RegistrationHref(id))
		}
		writeProblem(w, r, p)
		return
	}
	out := registrationInfo(open.User, open.App.Name, res.Registration)
	out.Drift.App, out.Drift.Region = info.Drift.App, open.Region
	out.Drift.Neighbours, out.Drift.PreDeploy = open.Neighbours.String(), open.PreDeploy
	out.Drift.Phase, out.Drift.Serving, out.Drift.Current = "serving", res.Cloud, res.Region
	ep := res.Endpoint
	out.Drift.Endpoint = &ep
	w.Header().Set("Location", amsi.RegistrationHref(id))
	status := http.StatusOK
	if res.Created {
		status = http.StatusCreated
	}
	writeJSON(w, status, out)
}

// parseRegistration checks everything a registration says before anything
// starts, and reports every bad field.
func (a *API) parseRegistration(info amsi.RegistrationInfo) (drift.Open, []amsi.FieldError) {
	var bad []amsi.FieldError
	add := func(param, format string, args ...any) {
		bad = append(bad, amsi.FieldError{Param: param, Reason: fmt.Sprintf(format, args...)})
	}
	if info.AppMobilityServiceID != "" {
		add("appMobilityServiceId", "assigned by drift: absent in a POST")
	}
	consumer := info.ServiceConsumerID
	switch {
	case consumer.MepID != "":
		add("serviceConsumerId.mepId", "drift registers app instances: give serviceConsumerId.appInstanceId")
	case consumer.AppInstanceID == "":
		add("serviceConsumerId.appInstanceId", "required: the app's name")
	case runtime.ValidateName(consumer.AppInstanceID) != nil:
		add("serviceConsumerId.appInstanceId", "%q is not an app name (a DNS-1035 label: a-z, 0-9, '-', starting with a letter, at most 63)", consumer.AppInstanceID)
	}
	reg, user := a.parseDevice(info, add)
	ext := info.Drift
	if ext == nil {
		ext = &amsi.Registration{}
		add("drift", "required: drift.app (the app to serve) and drift.region (where the user is)")
	}
	var spec appspec.AppSpec
	if ext.App == nil {
		add("drift.app", "required: {name, image, port, health} or {compose, service}")
	} else {
		app := *ext.App
		if app.Name == "" && app.Compose == "" {
			app.Name = consumer.AppInstanceID
		}
		var appBad []amsi.FieldError
		spec, appBad = parseApp(app)
		bad = append(bad, appBad...)
		if len(appBad) == 0 && consumer.AppInstanceID != "" && spec.Name != consumer.AppInstanceID {
			add("drift.app.name", "%q is not serviceConsumerId.appInstanceId %q", spec.Name, consumer.AppInstanceID)
		}
	}
	if ext.Region == "" {
		add("drift.region", "required")
	} else if _, err := a.opts.Topology.FirstCloud(ext.Region); err != nil {
		add("drift.region", "%v", err)
	}
	policy := a.opts.Neighbours
	if ext.Neighbours != "" {
		p, err := topology.ParsePolicy(ext.Neighbours)
		if err != nil {
			add("drift.neighbours", "%v", err)
		}
		policy = p
	}
	preDeploy := a.opts.PreDeploy
	if ext.PreDeploy != "" {
		if err := workflows.CheckPreDeploy(ext.PreDeploy); err != nil {
			add("drift.preDeploy", "%v", err)
		}
		preDeploy = ext.PreDeploy
	}
	reg.Consumer, reg.ExpiryTime = consumer.AppInstanceID, info.ExpiryTime
	return drift.Open{
		User: user, App: spec, Region: ext.Region, Topology: a.opts.Topology,
		Neighbours: policy, PreDeploy: preDeploy, Registration: reg,
	}, bad
}

// parseDevice reads the one device a registration serves: its associateId
// value is the session's user.
func (a *API) parseDevice(info amsi.RegistrationInfo, add func(param, format string, args ...any)) (workflows.Registration, string) {
	var reg workflows.Registration
	switch len(info.DeviceInformation) {
	case 0:
		add("deviceInformation", "required: drift serves one device per registration, named by deviceInformation[0].associateId")
		return reg, ""
	case 1:
	default:
		add("deviceInformation", "%d devices: drift serves one device per registration; register each one", len(info.DeviceInformation))
		return reg, ""
	}
	dev := info.DeviceInformation[0]
	if t := dev.AssociateID.Type; t < amsi.TypeUser || t > amsi.TypeGTPTEID {
		add("deviceInformation[0].associateId.type", "%d is not an associateId type (1 UE_IPv4_ADDRESS, 2 UE_IPV6_ADDRESS, 3 NATED_IP_ADDRESS, 4 GTP_TEID; 0: a drift user name)", t)
	}
	if err := names.CheckUser(dev.AssociateID.Value); err != nil {
		add("deviceInformation[0].associateId.value", "%v", err)
	}
	if l := dev.AppMobilityServiceLevel; l < 0 || l > amsi.MobilityWithoutConfirmation {
		add("deviceInformation[0].appMobilityServiceLevel", "%d: want 1 (NOT_ALLOWED), 2 (WITH_CONFIRMATION) or 3 (WITHOUT_CONFIRMATION)", l)
	}
	if c := dev.ContextTransferState; c != nil && (*c < amsi.ContextNotTransferred || *c > amsi.ContextTransferred) {
		add("deviceInformation[0].contextTransferState", "%d: want 0 (NOT_TRANSFERRED) or 1 (USER_CONTEXT_TRANSFER_COMPLETED)", *c)
	}
	reg.AssociateType, reg.ServiceLevel, reg.ContextTransferState = dev.AssociateID.Type, dev.AppMobilityServiceLevel, dev.ContextTransferState
	return reg, dev.AssociateID.Value
}

// registrationInfo is the registration resource of user's session of app.
func registrationInfo(user, app string, reg workflows.Registration) amsi.RegistrationInfo {
	id := amsi.RegistrationID(user, app)
	return amsi.RegistrationInfo{
		AppMobilityServiceID: id,
		ServiceConsumerID:    amsi.ServiceConsumerID{AppInstanceID: firstOf(reg.Consumer, app)},
		DeviceInformation: []amsi.DeviceInformation{{
			AssociateID:             amsi.AssociateID{Type: reg.AssociateType, Value: user},
			AppMobilityServiceLevel: reg.ServiceLevel,
			ContextTransferState:    reg.ContextTransferState,
		}},
		ExpiryTime: reg.ExpiryTime,
		Drift: &amsi.Registration{
			User: user, Session: names.SessionID(user, app), ExpiresAt: reg.ExpiresAt(),
			Links: map[string]amsi.LinkType{"self": {Href: amsi.RegistrationHref(id)}, "moves": {Href: amsi.MovesHref(id)}},
		},
	}
}

// fromState is the registration resource as the session's state tells it;
// withState adds that state.
func fromState(user, app string, st workflows.SessionState, withState bool) amsi.RegistrationInfo {
	out := registrationInfo(user, app, st.Registration)
	d := out.Drift
	d.Phase, d.Serving, d.Current, d.Image = st.Phase, st.Serving, st.Region, st.Image
	if st.Endpoint.URL != "" {
		ep := st.Endpoint
		d.Endpoint = &ep
	}
	if withState {
		d.State, _ = json.Marshal(st)
	}
	return out
}

func firstOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// pathRegistration reads {appMobilityServiceId}; a bad one is a 400
// saying why.
func pathRegistration(w http.ResponseWriter, r *http.Request) (user, app string, ok bool) {
	user, app, err := amsi.ParseRegistrationID(r.PathValue("appMobilityServiceId"))
	if err != nil {
		writeProblem(w, r, invalid([]amsi.FieldError{{Param: "appMobilityServiceId", Reason: err.Error()}}))
		return "", "", false
	}
	return user, app, true
}

// record reads the session's state (running) or report (ended); a session
// that never was is a 404.
func (a *API) record(w http.ResponseWriter, r *http.Request, user, app string) (workflows.SessionState, bool, bool) {
	ctx, cancel := a.withTimeout(r)
	defer cancel()
	st, ended, err := a.drift.SessionRecord(ctx, user, app)
	if err != nil {
		writeProblem(w, r, fromError(err, names.SessionID(user, app)))
		return st, false, false
	}
	return st, ended, true
}

func (a *API) getRegistration(w http.ResponseWriter, r *http.Request) {
	user, app, ok := pathRegistration(w, r)
	if !ok {
		return
	}
	st, ended, ok := a.record(w, r, user, app)
	if !ok {
		return
	}
	if ended {
		writeProblem(w, r, problem(http.StatusNotFound, typeNotFound, fmt.Sprintf(
			"%s has ended (deregistered or expired); DELETE %s answers its report", names.SessionID(user, app), amsi.RegistrationHref(amsi.RegistrationID(user, app)))))
		return
	}
	writeJSON(w, http.StatusOK, fromState(user, app, st, true))
}

// putRegistration changes what PUT may change: the device's service level
// and context transfer state, and the expiry time (counted from the PUT).
// The consumer and the device must stay; drift's own fields are read-only.
func (a *API) putRegistration(w http.ResponseWriter, r *http.Request) {
	user, app, ok := pathRegistration(w, r)
	if !ok {
		return
	}
	var info amsi.RegistrationInfo
	if p := decode(w, r, &info); p != nil {
		writeProblem(w, r, *p)
		return
	}
	var bad []amsi.FieldError
	add := func(param, format string, args ...any) {
		bad = append(bad, amsi.FieldError{Param: param, Reason: fmt.Sprintf(format, args...)})
	}
	id := amsi.RegistrationID(user, app)
	if info.AppMobilityServiceID != "" && info.AppMobilityServiceID != id {
		add("appMobilityServiceId", "%q is not this registration's (%q)", info.AppMobilityServiceID, id)
	}
	if info.ServiceConsumerID.AppInstanceID == "" {
		add("serviceConsumerId.appInstanceId", "required")
	}
	reg, devUser := a.parseDevice(info, add)
	if devUser != "" && devUser != user {
		add("deviceInformation[0].associateId.value", "%q is not this registration's device (%q): register it anew", devUser, user)
	}
	if len(bad) > 0 {
		writeProblem(w, r, invalid(bad))
		return
	}
	reg.Consumer, reg.ExpiryTime = info.ServiceConsumerID.AppInstanceID, info.ExpiryTime
	ctx, cancel := a.withTimeout(r)
	defer cancel()
	if _, err := a.drift.Reregister(ctx, user, app, reg); err != nil {
		writeProblem(w, r, fromError(err, names.SessionID(user, app)))
		return
	}
	st, _, ok := a.record(w, r, user, app)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, fromState(user, app, st, false))
}

// deleteRegistration ends the session and answers its report once every
// instance is destroyed; asked again, it answers the same report.
func (a *API) deleteRegistration(w http.ResponseWriter, r *http.Request) {
	if user, app, rep, ok := a.exit(w, r); ok {
		writeJSON(w, http.StatusOK, fromState(user, app, rep, true))
	}
}

// deregisterTask is MEC 021's deregister_task: DELETE answering 204.
func (a *API) deregisterTask(w http.ResponseWriter, r *http.Request) {
	if _, _, _, ok := a.exit(w, r); ok {
		w.WriteHeader(http.StatusNoContent)
	}
}

func (a *API) exit(w http.ResponseWriter, r *http.Request) (string, string, workflows.SessionState, bool) {
	user, app, ok := pathRegistration(w, r)
	if !ok {
		return "", "", workflows.SessionState{}, false
	}
	ctx, cancel := a.withTimeout(r)
	defer cancel()
	rep, err := a.drift.Exit(ctx, user, app)
	if err != nil {
		writeProblem(w, r, fromError(err, names.SessionID(user, app)))
		return "", "", rep, false
	}
	return user, app, rep, true
}

// listRegistrations lists the open sessions (from Temporal's visibility,
// which lags a little), each with its state.
func (a *API) listRegistrations(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if p := unsupportedQuery(q, "user", "app"); p != nil {
		writeProblem(w, r, *p)
		return
	}
	ctx, cancel := a.withTimeout(r)
	defer cancel()
	sums, err := a.drift.Sessions(ctx, false)
	if err != nil {
		writeProblem(w, r, fromError(err, "the list of sessions"))
		return
	}
	var keep []drift.SessionSummary
	for _, s := range sums {
		if (q.Get("user") == "" || s.User == q.Get("user")) && (q.Get("app") == "" || s.App == q.Get("app")) {
			keep = append(keep, s)
		}
	}
	out := make([]*amsi.RegistrationInfo, len(keep))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i, s := range keep {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			st, err := a.drift.Session(ctx, s.User, s.App)
			if err == nil {
				info := fromState(s.User, s.App, st, false)
				out[i] = &info
			}
		}()
	}
	wg.Wait()
	list := []amsi.RegistrationInfo{}
	for _, info := range out {
		if info != nil { // ended since visibility listed it
			list = append(list, *info)
		}
	}
	writeJSON(w, http.StatusOK, list)
}

// unsupportedQuery answers 400 for query parameters other than allowed
// (MEC 011's filter, fields, … are not supported).
func unsupportedQuery(q map[string][]string, allowed ...string) *Problem {
	var bad []amsi.FieldError
	for k := range q {
		ok := false
		for _, a := range allowed {
			ok = ok || k == a
		}
		if !ok {
			bad = append(bad, amsi.FieldError{Param: k, Reason: fmt.Sprintf("not supported (drift takes %s)", strings.Join(allowed, ", "))})
		}
	}
	if len(bad) == 0 {
		return nil
	}
	p := invalid(bad)
	return &p
}

func isNotFound(err error) bool {
	var nf *serviceerror.NotFound
	return errors.As(err, &nf)
}
