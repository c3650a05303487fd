package mecapi

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/edgedrift/drift/internal/amsi"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/workflows"
)

// MoveRequest is the body of POST …/moves.
type MoveRequest struct {
	Region string `json:"region"`
}

// Move is drift's move resource: one move of a session, whatever started
// it (this API, the CLI, a Signal). It is the session's own record, so any
// API process answers for it, after any restart.
type Move struct {
	MoveID               string `json:"moveId"` // the Move update's id, or the session's for a signalled move
	AppMobilityServiceID string `json:"appMobilityServiceId"`
	Source               string `json:"source"` // update or signal
	Region               string `json:"region"`
	// MobilityStatus is MEC 021's: 1 TRIGGERED, 2 COMPLETED, 3 FAILED.
	MobilityStatus int               `json:"mobilityStatus"`
	Status         string            `json:"status"`
	FromCloud      string            `json:"fromCloud,omitempty"`
	ToCloud        string            `json:"toCloud"`
	Endpoint       *runtime.Endpoint `json:"endpoint,omitempty"` // COMPLETED only
	Warm           *bool             `json:"warm,omitempty"`     // COMPLETED only: the target was pre-deployed
	// SwitchTime is from the move's arrival in the session to the switch, as
	// Go duration text ("1.204s"; COMPLETED only).
	SwitchTime  string                   `json:"switchTime,omitempty"`
	Error       string                   `json:"error,omitempty"` // FAILED only
	RequestedAt time.Time                `json:"requestedAt"`
	FinishedAt  time.Time                `json:"finishedAt,omitzero"`
	Links       map[string]amsi.LinkType `json:"_links"`
}

var mobilityStatus = map[string]int{workflows.MoveTriggered: amsi.MoveTriggered, workflows.MoveCompleted: amsi.MoveCompleted, workflows.MoveFailed: amsi.MoveFailed}

func moveOf(user, app string, m workflows.MoveRecord) Move {
	id := amsi.RegistrationID(user, app)
	out := Move{
		MoveID: m.ID, AppMobilityServiceID: id, Source: m.Source, Region: m.Region,
		MobilityStatus: mobilityStatus[m.Status], Status: m.Status, FromCloud: m.FromCloud, ToCloud: m.ToCloud,
		Error: m.Error, RequestedAt: m.ArrivedAt, FinishedAt: m.FinishedAt,
		Links: map[string]amsi.LinkType{"self": {Href: amsi.MoveHref(id, m.ID)}, "appMobilityService": {Href: amsi.RegistrationHref(id)}},
	}
	if m.Status == workflows.MoveCompleted {
		ep, warm := m.Endpoint, m.Warm
		out.Endpoint, out.Warm, out.SwitchTime = &ep, &warm, m.SwitchTime.String()
	}
	return out
}

// postMove sends the Move update and answers once the session has taken
// it up, with the move as it is then: 202 while it is TRIGGERED, 200 once
// it COMPLETED or FAILED (the body says which; a warm move is often done
// at once); ?wait=true waits for the end. A region the session does not know is 400; a
// session that takes no move now (exiting, mobility not allowed) is 409.
func (a *API) postMove(w http.ResponseWriter, r *http.Request) {
	user, app, ok := pathRegistration(w, r)
	if !ok {
		return
	}
	wait := false
	if v := r.URL.Query().Get("wait"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			writeProblem(w, r, invalid([]amsi.FieldError{{Param: "wait", Reason: fmt.Sprintf("%q is not a boolean", v)}}))
			return
		}
		wait = b
	}
	var req MoveRequest
	if p := decode(w, r, &req); p != nil {
		writeProblem(w, r, *p)
		return
	}
	if strings.TrimSpace(req.Region) == "" {
		writeProblem(w, r, invalid([]amsi.FieldError{{Param: "region", Reason: "required"}}))
		return
	}
	sid := names.SessionID(user, app)
	id := newID("move-")
	ctx, cancel := a.withTimeout(r)
	defer cancel()
	h, err := a.drift.AskMove(ctx, user, app, id, req.Region)
	if err != nil {
		writeProblem(w, r, fromError(err, sid))
		return
	}
	loc := amsi.MoveHref(amsi.RegistrationID(user, app), id)
	w.Header().Set("Location", loc)
	if wait {
		_ = h.Get(ctx, nil) // the record tells how it ended
	}
	st, _, ok := a.record(w, r, user, app)
	if !ok {
		return
	}
	m, found := findMove(st, id)
	if !found { // taken up, so recorded: only a session past RecentMoves newer moves forgets it
		m = workflows.MoveRecord{ID: id, Source: workflows.FromUpdate, Region: req.Region, Status: workflows.MoveTriggered, ArrivedAt: time.Now().UTC()}
	}
	status := http.StatusAccepted // still running
	if m.Status != workflows.MoveTriggered {
		status = http.StatusOK // done already: a warm move often is
	}
	writeJSON(w, status, moveOf(user, app, m))
}

func findMove(st workflows.SessionState, id string) (workflows.MoveRecord, bool) {
	for i := len(st.Moves) - 1; i >= 0; i-- {
		if st.Moves[i].ID == id {
			return st.Moves[i], true
		}
	}
	return workflows.MoveRecord{}, false
}

func (a *API) listMoves(w http.ResponseWriter, r *http.Request) {
	user, app, ok := pathRegistration(w, r)
	if !ok {
		return
	}
	st, _, ok := a.record(w, r, user, app)
	if !ok {
		return
	}
	out := []Move{}
	for _, m := range st.Moves {
		out = append(out, moveOf(user, app, m))
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) getMove(w http.ResponseWriter, r *http.Request) {
	user, app, ok := pathRegistration(w, r)
	if !ok {
		return
	}
	st, _, ok := a.record(w, r, user, app)
	if !ok {
		return
	}
	id := r.PathValue("moveId")
	m, found := findMove(st, id)
	if !found {
		writeProblem(w, r, problem(http.StatusNotFound, typeNotFound, fmt.Sprintf(
			"%s has no move %q among its latest %d", names.SessionID(user, app), id, workflows.RecentMoves)))
		return
	}
	writeJSON(w, http.StatusOK, moveOf(user, app, m))
}
