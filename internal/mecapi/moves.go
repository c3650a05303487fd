package mecapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/topology"
	"github.com/edgedrift/drift/workflows"
)

// Move statuses, named as MEC 021's mobility procedure names them.
const (
	MoveTriggered = "TRIGGERED"
	MoveCompleted = "COMPLETED"
	MoveFailed    = "FAILED"
)

// MoveRequest is the body of POST …/{user}/{app}/moves.
type MoveRequest struct {
	Region string `json:"region"`
}

// Move is the move resource: one mobility procedure asked through this API.
type Move struct {
	ID       string            `json:"id"` // also the Move update's id in the session's history
	User     string            `json:"user"`
	App      string            `json:"app"`
	Region   string            `json:"region"`
	Status   string            `json:"status"` // TRIGGERED, COMPLETED or FAILED
	Cloud    string            `json:"cloud,omitempty"`
	Endpoint *runtime.Endpoint `json:"endpoint,omitempty"`
	// Warm tells whether the target was pre-deployed (COMPLETED only).
	Warm *bool `json:"warm,omitempty"`
	// SwitchTime is from the move's arrival in the session to the switch,
	// as Go duration text ("1.204s"; COMPLETED only).
	SwitchTime  string    `json:"switchTime,omitempty"`
	Reason      string    `json:"reason,omitempty"` // FAILED only
	RequestedAt time.Time `json:"requestedAt"`
	FinishedAt  time.Time `json:"finishedAt,omitzero"`
	Links       Links     `json:"_links"`
}

// moveRecord is a move and what the API knows of it.
type moveRecord struct {
	move Move
	err  error         // why it failed
	done chan struct{} // closed once the move is COMPLETED or FAILED
}

// moveStore keeps the latest moves in memory, at most max of them: when
// full, the oldest finished record goes (or the oldest of all when none has
// finished; its waiter still ends and notifies).
type moveStore struct {
	mu    sync.Mutex
	max   int
	byID  map[string]*moveRecord
	order []string // ids, oldest first
}

func newMoveStore(max int) *moveStore {
	return &moveStore{max: max, byID: map[string]*moveRecord{}}
}

func (s *moveStore) add(m Move) *moveRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := &moveRecord{move: m, done: make(chan struct{})}
	s.byID[m.ID] = rec
	s.order = append(s.order, m.ID)
	for len(s.order) > s.max {
		victim := 0
		for i, id := range s.order {
			if s.byID[id].move.Status != MoveTriggered {
				victim = i
				break
			}
		}
		delete(s.byID, s.order[victim])
		s.order = append(s.order[:victim], s.order[victim+1:]...)
	}
	return rec
}

// get returns the move if it belongs to the session.
func (s *moveStore) get(user, app, id string) (*moveRecord, Move, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.byID[id]
	if !ok || rec.move.User != user || rec.move.App != app {
		return nil, Move{}, false
	}
	return rec, rec.move, true
}

func (s *moveStore) snapshot(rec *moveRecord) (Move, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return rec.move, rec.err
}

func (s *moveStore) list(user, app string) []Move {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []Move{}
	for _, id := range s.order {
		if m := s.byID[id].move; m.User == user && m.App == app {
			out = append(out, m)
		}
	}
	return out
}

func (s *moveStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byID)
}

// finish records the outcome and wakes whoever waits for it.
func (s *moveStore) finish(rec *moveRecord, res workflows.MoveResult, err error, at time.Time) Move {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := &rec.move
	m.FinishedAt = at
	if err != nil {
		m.Status, m.Reason, rec.err = MoveFailed, workflows.RootMessage(err), err
	} else {
		ep, warm := res.Endpoint, res.Warm
		m.Status, m.Cloud, m.Endpoint, m.Warm, m.SwitchTime = MoveCompleted, res.Cloud, &ep, &warm, res.SwitchTime.String()
	}
	close(rec.done)
	return *m
}

// postMove sends the Move update and answers once the session has accepted
// it: 202 TRIGGERED, or with ?wait=true 200 once it COMPLETED.
func (a *API) postMove(w http.ResponseWriter, r *http.Request) {
	user, app, ok := pathSession(w, r)
	if !ok {
		return
	}
	wait := false
	if v := r.URL.Query().Get("wait"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			writeProblem(w, r, invalid([]InvalidParam{{Param: "wait", Reason: fmt.Sprintf("%q is not a boolean", v)}}))
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
		writeProblem(w, r, invalid([]InvalidParam{{Param: "region", Reason: "required"}}))
		return
	}
	sid := names.SessionID(user, app)
	id := newID("move-")
	ctx, cancel := a.withTimeout(r)
	defer cancel()
	h, err := a.c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: sid, UpdateID: id, UpdateName: names.MoveUpdate,
		Args: []any{req.Region}, WaitForStage: client.WorkflowUpdateStageAccepted,
	})
	if err != nil {
		writeProblem(w, r, fromError(err, sid))
		return
	}
	// A rejected update comes back completed with the validator's error:
	// Get with a done context returns an outcome already known at once,
	// and only then.
	probe, stop := context.WithCancel(ctx)
	stop()
	if p, rejected := rejection(h.Get(probe, nil), sid); rejected {
		writeProblem(w, r, p)
		return
	}
	rec := a.moves.add(Move{
		ID: id, User: user, App: app, Region: req.Region, Status: MoveTriggered, RequestedAt: time.Now().UTC(),
		Links: Links{"self": {Href: moveHref(user, app, id)}, "session": {Href: sessionHref(user, app)}},
	})
	triggered, _ := a.moves.snapshot(rec)
	if !a.background(func() { a.await(rec, h) }) {
		a.moves.finish(rec, workflows.MoveResult{}, errors.New("the API closed before the outcome was known; the session's state tells"), time.Now().UTC())
		writeProblem(w, r, problem(http.StatusServiceUnavailable, typeUnavailable, "the API is shutting down; the move goes on in the session"))
		return
	}
	w.Header().Set("Location", triggered.Links["self"].Href)
	if !wait {
		writeJSON(w, http.StatusAccepted, triggered)
		return
	}
	select {
	case <-rec.done:
	case <-ctx.Done():
		// Still running: answer as without ?wait.
		m, _ := a.moves.snapshot(rec)
		writeJSON(w, http.StatusAccepted, m)
		return
	}
	m, merr := a.moves.snapshot(rec)
	if m.Status == MoveCompleted {
		writeJSON(w, http.StatusOK, m)
		return
	}
	p := moveFailure(merr, sid)
	p.Instance = m.Links["self"].Href
	writeProblem(w, r, p)
}

// rejection tells a move the session's validator rejected (unknown region:
// 400, session exiting: 409) from one that was accepted or whose outcome is
// not known yet.
func rejection(err error, sid string) (Problem, bool) {
	var appErr *temporal.ApplicationError
	if err == nil || !errors.As(err, &appErr) || appErr.Type() == workflows.ErrTypeMoveFailed {
		return Problem{}, false
	}
	msg := appErr.Message()
	if strings.Contains(msg, topology.ErrUnknownRegion.Error()) {
		return invalid([]InvalidParam{{Param: "region", Reason: msg}}), true
	}
	return problem(http.StatusConflict, typeConflict, fmt.Sprintf("%s rejected the move: %s", sid, msg)), true
}

// moveFailure is the problem of a move that was accepted and then failed.
func moveFailure(err error, sid string) Problem {
	msg := "no outcome"
	if err != nil {
		msg = workflows.RootMessage(err)
	}
	if strings.Contains(msg, "session is exiting") {
		return problem(http.StatusConflict, typeConflict, fmt.Sprintf("%s is exiting: the move was dropped", sid))
	}
	return problem(http.StatusBadGateway, typeMoveFailed, fmt.Sprintf("move of %s failed: %s", sid, msg))
}

// await waits for the move's outcome, records it and notifies subscribers.
func (a *API) await(rec *moveRecord, h client.WorkflowUpdateHandle) {
	ctx, cancel := context.WithTimeout(a.ctx, a.opts.MoveTimeout)
	defer cancel()
	var res workflows.MoveResult
	err := h.Get(ctx, &res)
	switch {
	case a.ctx.Err() != nil:
		a.moves.finish(rec, res, errors.New("the API closed before the outcome was known; the session's state tells"), time.Now().UTC())
		return
	case err != nil && ctx.Err() != nil:
		err = fmt.Errorf("no outcome within %s; the move may still complete in the session: %w", a.opts.MoveTimeout, err)
	}
	m := a.moves.finish(rec, res, err, time.Now().UTC())
	if err != nil {
		a.log.Warn("move failed", "move", m.ID, "user", m.User, "app", m.App, "region", m.Region, "error", m.Reason)
	}
	a.notes.publish(m)
}

// background runs f unless the API is closed.
func (a *API) background(f func()) bool {
	a.bgMu.Lock()
	defer a.bgMu.Unlock()
	if a.closed {
		return false
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		f()
	}()
	return true
}

func (a *API) listMoves(w http.ResponseWriter, r *http.Request) {
	user, app, ok := pathSession(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, a.moves.list(user, app))
}

func (a *API) getMove(w http.ResponseWriter, r *http.Request) {
	user, app, ok := pathSession(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	_, m, ok := a.moves.get(user, app, id)
	if !ok {
		writeProblem(w, r, problem(http.StatusNotFound, typeNotFound, fmt.Sprintf(
			"no move %q of %s in this API process (it keeps the latest %d; the session's history in Temporal keeps them all)",
			id, names.SessionID(user, app), a.opts.MaxMoves)))
		return
	}
	writeJSON(w, http.StatusOK, m)
}
