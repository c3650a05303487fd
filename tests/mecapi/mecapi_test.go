// Package mecapi drives a mobility session through the HTTP API on real
// parts: the embedded Temporal server, the embedded registry, the example
// app's image and an in-process worker running every cloud's instances as
// local processes. Callbacks go to a loopback server.
package mecapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/api/serviceerror"

	"github.com/edgedrift/drift/internal/mecapi"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/tests/harness"
	"github.com/edgedrift/drift/workflows"
)

const sessions = mecapi.BasePath + "/app_mobility_services"

func TestSessionThroughTheAPI(t *testing.T) {
	_, c := harness.Temporal(t, "")
	reg := harness.Registry(t)
	image := harness.HelloImage(t, reg, "v1")
	topo := harness.ExampleTopology(t)
	ws := harness.Workers(t, c, topo, reg.Host(), nil)
	id := names.SessionID("alice", "hello")

	api := mecapi.New(c, mecapi.Options{Topology: topo})
	srv := httptest.NewServer(api)
	t.Cleanup(func() {
		srv.Close()
		api.Close()
	})
	h := &httpClient{t: t, base: srv.URL}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// Bad input is answered before anything starts.
	appJSON := fmt.Sprintf(`{"name":"hello","image":%q,"port":8080,"health":"/healthz"}`, image)
	p := h.problem("POST", sessions, `{"user":"alice","app":`+appJSON+`,"region":"atlantis"}`, http.StatusBadRequest)
	if p.Type != "urn:drift:amsi:unknown-region" || p.InvalidParams[0].Param != "region" || !strings.Contains(p.Detail, "quartier-latin") {
		t.Errorf("unknown region: %+v", p)
	}
	p = h.problem("POST", sessions, `{"user":"alice","app":{"name":"hello","image":"hello","port":0},"region":"bastille"}`, http.StatusBadRequest)
	if p.InvalidParams[0].Param != "app.image" {
		t.Errorf("bad image: %+v", p)
	}
	h.problem("POST", sessions, `{"user":"alice","app":`+appJSON+`,"region":"bastille","neighbours":"closest"}`, http.StatusBadRequest)
	var nf *serviceerror.NotFound
	if _, err := c.DescribeWorkflowExecution(ctx, id, ""); !errors.As(err, &nf) {
		t.Fatalf("a session exists after bad registrations: %v", err)
	}
	// An image no registry has fails the start in the workflow: still 400,
	// naming the field, and the failed session is not open.
	p = h.problem("POST", sessions, `{"user":"dave","app":{"name":"hello","image":"`+reg.Host()+`/nothere:v9"},"region":"bastille"}`, http.StatusBadRequest)
	if len(p.InvalidParams) != 1 || p.InvalidParams[0].Param != "app.image" || !strings.Contains(p.Detail, "not found") {
		t.Errorf("unknown image: %+v", p)
	}
	h.problem("GET", sessions+"/dave/hello", "", http.StatusNotFound)
	// Unknown sessions are 404.
	h.problem("GET", sessions+"/alice/hello", "", http.StatusNotFound)
	h.problem("POST", sessions+"/alice/hello/moves", `{"region":"bastille"}`, http.StatusNotFound)
	h.problem("DELETE", sessions+"/alice/hello", "", http.StatusNotFound)

	// Subscribe a loopback callback, and one for another user.
	cb := newCallback(t)
	var sub mecapi.Subscription
	h.json("POST", mecapi.BasePath+"/subscriptions", fmt.Sprintf(`{"callbackReference":%q,"filter":{"user":"alice","app":"hello"}}`, cb.srv.URL+"/moves"), http.StatusCreated, &sub)
	other := newCallback(t)
	h.json("POST", mecapi.BasePath+"/subscriptions", fmt.Sprintf(`{"callbackReference":%q,"filter":{"user":"bob"}}`, other.srv.URL), http.StatusCreated, nil)

	// Register: 201 once the app serves in the region's first cloud.
	var s mecapi.Session
	resp := h.json("POST", sessions, `{"user":"alice","app":`+appJSON+`,"region":"quartier-latin","neighbours":"adjacency","preDeploy":"neighbours"}`, http.StatusCreated, &s)
	if s.ID != id || s.Cloud != "edge-latin" || s.Region != "quartier-latin" || s.Endpoint == nil || resp.Header.Get("Location") != sessions+"/alice/hello" {
		t.Fatalf("registered %+v, Location %q", s, resp.Header.Get("Location"))
	}
	expectServes(t, s.Endpoint.URL, "edge-latin")
	p = h.problem("POST", sessions, `{"user":"alice","app":`+appJSON+`,"region":"bastille"}`, http.StatusConflict)
	if !strings.Contains(p.Detail, "already open") {
		t.Errorf("second registration: %+v", p)
	}

	// It is listed (visibility lags a little).
	waitFor(t, ctx, "the session in the list", func() bool {
		var list []mecapi.Session
		h.json("GET", sessions+"?user=alice", "", http.StatusOK, &list)
		return len(list) == 1 && list[0].ID == id && list[0].Status == "Running" && list[0].App == "hello"
	})

	// A warm move: 202 TRIGGERED, then COMPLETED, then a notification.
	settle(t, ctx, h)
	var m mecapi.Move
	resp = h.json("POST", sessions+"/alice/hello/moves", `{"region":"montparnasse"}`, http.StatusAccepted, &m)
	if m.Status != mecapi.MoveTriggered || m.Region != "montparnasse" || resp.Header.Get("Location") != m.Links["self"].Href {
		t.Fatalf("move answered %+v", m)
	}
	waitFor(t, ctx, "the move to complete", func() bool {
		h.json("GET", m.Links["self"].Href, "", http.StatusOK, &m)
		if m.Status == mecapi.MoveFailed {
			t.Fatalf("move failed: %s", m.Reason)
		}
		return m.Status == mecapi.MoveCompleted
	})
	if m.Cloud != "edge-montparnasse" || m.Warm == nil || !*m.Warm || m.Endpoint == nil || m.SwitchTime == "" {
		t.Errorf("warm move %+v", m)
	}
	expectServes(t, m.Endpoint.URL, "edge-montparnasse")
	n := cb.wait(t, 1)[0]
	if n.NotificationType != mecapi.NotificationType || n.SubscriptionID != sub.ID || n.MoveID != m.ID || n.User != "alice" || n.App != "hello" ||
		n.Status != mecapi.MoveCompleted || n.Region != "montparnasse" || n.Cloud != "edge-montparnasse" || n.Endpoint == nil ||
		n.Endpoint.URL != m.Endpoint.URL || n.Warm == nil || !*n.Warm || n.SwitchTime != m.SwitchTime || n.TimeStamp.IsZero() {
		t.Errorf("notification %+v", n)
	}

	// A cold move with ?wait=true answers 200 COMPLETED with the endpoint.
	settle(t, ctx, h)
	h.json("POST", sessions+"/alice/hello/moves?wait=true", `{"region":"la-defense"}`, http.StatusOK, &m)
	if m.Status != mecapi.MoveCompleted || m.Cloud != "fog-north" || m.Warm == nil || *m.Warm || m.Endpoint == nil {
		t.Errorf("cold move %+v", m)
	}
	expectServes(t, m.Endpoint.URL, "fog-north")
	if n := cb.wait(t, 2)[1]; n.MoveID != m.ID || n.Cloud != "fog-north" || *n.Warm {
		t.Errorf("second notification %+v", n)
	}
	// The session's validator rejects an unknown region: 400 at once.
	p = h.problem("POST", sessions+"/alice/hello/moves", `{"region":"atlantis"}`, http.StatusBadRequest)
	if p.Type != "urn:drift:amsi:unknown-region" {
		t.Errorf("move to an unknown region: %+v", p)
	}
	var moves []mecapi.Move
	if h.json("GET", sessions+"/alice/hello/moves", "", http.StatusOK, &moves); len(moves) != 2 {
		t.Errorf("moves %+v", moves)
	}

	// State is the workflow's State query.
	h.json("GET", sessions+"/alice/hello", "", http.StatusOK, &s)
	if s.Phase != "serving" || s.Cloud != "fog-north" || s.Region != "la-defense" || s.State == nil ||
		s.State.Totals.Handovers != 2 || s.State.Totals.Warm != 1 || !strings.Contains(s.Image, "@sha256:") {
		t.Errorf("state %+v", s)
	}

	// DELETE ends the session; a move asked while it exits is rejected.
	type result struct {
		resp *http.Response
		s    mecapi.Session
	}
	exited := make(chan result, 1)
	go func() {
		var rep mecapi.Session
		resp := h.json("DELETE", sessions+"/alice/hello", "", http.StatusOK, &rep)
		exited <- result{resp, rep}
	}()
	waitFor(t, ctx, "the session to exit", func() bool {
		resp, body := h.do("GET", sessions+"/alice/hello", "")
		var cur mecapi.Session
		json.Unmarshal(body, &cur)
		return resp.StatusCode == http.StatusNotFound || cur.Phase == "exiting"
	})
	resp, body := h.do("POST", sessions+"/alice/hello/moves", `{"region":"bastille"}`)
	switch resp.StatusCode {
	case http.StatusConflict:
		if !strings.Contains(string(body), "exiting") {
			t.Errorf("409 without the reason: %s", body)
		}
	case http.StatusNotFound:
		t.Log("the session ended before the move was asked: 404")
	default:
		t.Errorf("move while exiting: %d %s", resp.StatusCode, body)
	}
	res := <-exited
	if rep := res.s; rep.Phase != "ended" || rep.State == nil || rep.State.Totals.Handovers != 2 || len(rep.State.Instances) != 0 ||
		strings.Join(rep.State.Totals.CloudsUsed, ",") != "edge-latin,edge-montparnasse,fog-north" {
		t.Errorf("report %+v", rep)
	}
	h.problem("GET", sessions+"/alice/hello", "", http.StatusNotFound)
	h.problem("DELETE", sessions+"/alice/hello", "", http.StatusNotFound)
	h.problem("POST", sessions+"/alice/hello/moves", `{"region":"bastille"}`, http.StatusNotFound)

	// Nothing is left on any cloud, and nobody else heard of alice's moves.
	for cloud, rt := range ws.Runtimes {
		if left, err := rt.List(ctx, nil); err != nil || len(left) > 0 {
			t.Errorf("%s still has %v (%v)", cloud, left, err)
		}
	}
	if got := other.all(); len(got) != 0 {
		t.Errorf("bob's callback heard %d notifications", len(got))
	}
	if got := cb.all(); len(got) != 2 {
		t.Errorf("alice's callback heard %d notifications, want 2", len(got))
	}
}

// settle waits until the session serves with nothing in flight, so the
// next move finds its neighbours warm.
func settle(t *testing.T, ctx context.Context, h *httpClient) {
	t.Helper()
	waitFor(t, ctx, "the session to settle", func() bool {
		var s mecapi.Session
		h.json("GET", sessions+"/alice/hello", "", http.StatusOK, &s)
		if s.State == nil || s.Phase != "serving" || len(s.State.InFlight) > 0 {
			return false
		}
		for _, in := range s.State.Instances {
			if in.Status != workflows.StatusReady {
				return false
			}
		}
		return true
	})
}

func waitFor(t *testing.T, ctx context.Context, what string, ok func() bool) {
	t.Helper()
	for ctx.Err() == nil {
		if ok() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

type httpClient struct {
	t    *testing.T
	base string
}

func (h *httpClient) do(method, path, body string) (*http.Response, []byte) {
	h.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, h.base+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return resp, b
}

// json calls the API, expects status and decodes the answer into v.
func (h *httpClient) json(method, path, body string, status int, v any) *http.Response {
	h.t.Helper()
	resp, b := h.do(method, path, body)
	if resp.StatusCode != status {
		h.t.Fatalf("%s %s: %d, want %d: %s", method, path, resp.StatusCode, status, b)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			h.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return resp
}

// problem calls the API and expects an RFC 7807 answer with status.
func (h *httpClient) problem(method, path, body string, status int) mecapi.Problem {
	h.t.Helper()
	resp, b := h.do(method, path, body)
	var p mecapi.Problem
	if resp.StatusCode != status || resp.Header.Get("Content-Type") != "application/problem+json" || json.Unmarshal(b, &p) != nil ||
		p.Status != status || p.Type == "" || p.Title == "" || p.Detail == "" {
		h.t.Fatalf("%s %s: %d %s, want a %d problem: %s", method, path, resp.StatusCode, resp.Header.Get("Content-Type"), status, b)
	}
	return p
}

// callback is a loopback receiver of notifications.
type callback struct {
	mu  sync.Mutex
	got []mecapi.Notification
	srv *httptest.Server
}

func newCallback(t *testing.T) *callback {
	cb := &callback{}
	cb.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var n mecapi.Notification
		if err := json.NewDecoder(r.Body).Decode(&n); err != nil {
			t.Errorf("notification is not JSON: %v", err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		cb.mu.Lock()
		cb.got = append(cb.got, n)
		cb.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(cb.srv.Close)
	return cb
}

func (cb *callback) all() []mecapi.Notification {
	cb.mu.Lock()
	defer cb.mu.Unlock()
	return append([]mecapi.Notification(nil), cb.got...)
}

func (cb *callback) wait(t *testing.T, n int) []mecapi.Notification {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if got := cb.all(); len(got) >= n {
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("fewer than %d notifications arrived", n)
	return nil
}

func expectServes(t *testing.T, url, cloud string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("%s endpoint %s: %v", cloud, url, err)
	}
	defer resp.Body.Close()
	var body struct{ App, Cloud string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Cloud != cloud || body.App != "hello" {
		t.Fatalf("%s endpoint answered %+v (%v)", cloud, body, err)
	}
}

// sweep destroys anything of the session still on any cloud.
