package mecapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/edgedrift/drift/deploy/examples"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/topology"
	"github.com/edgedrift/drift/workflows"
)

// fakeClient fakes the few Temporal calls a test sets; any other call
// panics through the nil embedded interface, so a test that sets none
// proves the API made no call at all.
type fakeClient struct {
	client.Client
	describe func(id string) (*workflowservice.DescribeWorkflowExecutionResponse, error)
	update   func(o client.UpdateWorkflowOptions) (client.WorkflowUpdateHandle, error)
	signal   func(id, name string) error
}

func (f *fakeClient) DescribeWorkflowExecution(_ context.Context, id, _ string) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
	if f.describe == nil {
		panic("unexpected DescribeWorkflowExecution " + id)
	}
	return f.describe(id)
}

func (f *fakeClient) UpdateWorkflow(_ context.Context, o client.UpdateWorkflowOptions) (client.WorkflowUpdateHandle, error) {
	if f.update == nil {
		panic("unexpected UpdateWorkflow " + o.WorkflowID)
	}
	return f.update(o)
}

func (f *fakeClient) SignalWorkflow(_ context.Context, id, _, name string, _ any) error {
	if f.signal == nil {
		panic("unexpected SignalWorkflow " + id)
	}
	return f.signal(id, name)
}

func running(string) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
	return &workflowservice.DescribeWorkflowExecutionResponse{WorkflowExecutionInfo: &workflowpb.WorkflowExecutionInfo{
		Status: enums.WORKFLOW_EXECUTION_STATUS_RUNNING,
	}}, nil
}

func notFound(string) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
	return nil, serviceerror.NewNotFound("workflow not found")
}

// fakeHandle mimics the SDK's update handles: an outcome known when the
// update was accepted comes back even on a done context; otherwise Get
// waits for outcome.
type fakeHandle struct {
	id        string
	immediate bool
	outcome   chan outcome
}

type outcome struct {
	res workflows.MoveResult
	err error
}

func (h *fakeHandle) WorkflowID() string { return "" }
func (h *fakeHandle) RunID() string      { return "" }
func (h *fakeHandle) UpdateID() string   { return h.id }
func (h *fakeHandle) Get(ctx context.Context, v any) error {
	var o outcome
	switch {
	case h.immediate:
		o = <-h.outcome
		h.outcome <- o // stays known
	case ctx.Err() != nil:
		return ctx.Err()
	default:
		select {
		case o = <-h.outcome:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if o.err == nil && v != nil {
		*v.(*workflows.MoveResult) = o.res
	}
	return o.err
}

func newTestAPI(t *testing.T, c client.Client, opts Options) (*API, *httptest.Server) {
	t.Helper()
	topo, err := topology.Parse(examples.Topology)
	if err != nil {
		t.Fatal(err)
	}
	opts.Topology = topo
	if opts.Notify.Backoff == 0 {
		opts.Notify.Backoff = 10 * time.Millisecond
	}
	a := New(c, opts)
	srv := httptest.NewServer(a)
	t.Cleanup(func() {
		srv.Close()
		a.Close()
	})
	return a, srv
}

func do(t *testing.T, method, u, body string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// expectProblem checks an RFC 7807 answer and returns it.
func expectProblem(t *testing.T, resp *http.Response, body []byte, status int) Problem {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d: %s", resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("content type %q, want application/problem+json", ct)
	}
	var p Problem
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("problem is not JSON: %v: %s", err, body)
	}
	if p.Status != status || p.Type == "" || p.Title == "" || p.Detail == "" {
		t.Fatalf("incomplete problem %+v", p)
	}
	return p
}

const goodApp = `{"name":"hello","image":"127.0.0.1:5000/hello:v1","port":8080,"health":"/healthz"}`

func TestRegisterRejectsBadInputBeforeAnyCall(t *testing.T) {
	_, srv := newTestAPI(t, &fakeClient{}, Options{})
	compose := "services:\\n  web:\\n    image: 127.0.0.1:5000/hello:v1\\n    ports: [\\\"8080\\\"]\\n"
	for _, c := range []struct {
		name, body, param, typ string
	}{
		{"empty body", ``, "body", typeInvalidParameter},
		{"not JSON", `{"user":`, "body", typeInvalidParameter},
		{"not an object", `[1]`, "body", typeInvalidParameter},
		{"trailing data", `{"user":"alice","app":` + goodApp + `,"region":"bastille"} {}`, "body", typeInvalidParameter},
		{"unknown field", `{"usr":"alice"}`, "usr", typeInvalidParameter},
		{"wrong type", `{"user":"alice","app":{"name":"hello","image":"127.0.0.1:5000/hello:v1","port":"80"},"region":"bastille"}`, "app.port", typeInvalidParameter},
		{"no user", `{"app":` + goodApp + `,"region":"bastille"}`, "user", typeInvalidParameter},
		{"user with slash", `{"user":"a/b","app":` + goodApp + `,"region":"bastille"}`, "user", typeInvalidParameter},
		{"no region", `{"user":"alice","app":` + goodApp + `}`, "region", typeInvalidParameter},
		{"unknown region", `{"user":"alice","app":` + goodApp + `,"region":"atlantis"}`, "region", typeUnknownRegion},
		{"no app name", `{"user":"alice","app":{"image":"127.0.0.1:5000/hello:v1"},"region":"bastille"}`, "app.name", typeInvalidParameter},
		{"bad app name", `{"user":"alice","app":{"name":"Hello_1","image":"127.0.0.1:5000/hello:v1"},"region":"bastille"}`, "app.name", typeInvalidParameter},
		{"no image", `{"user":"alice","app":{"name":"hello"},"region":"bastille"}`, "app.image", typeInvalidParameter},
		{"short image", `{"user":"alice","app":{"name":"hello","image":"hello"},"region":"bastille"}`, "app.image", typeInvalidParameter},
		{"bad port", `{"user":"alice","app":{"name":"hello","image":"127.0.0.1:5000/hello:v1","port":70000},"region":"bastille"}`, "app.port", typeInvalidParameter},
		{"bad health", `{"user":"alice","app":{"name":"hello","image":"127.0.0.1:5000/hello:v1","health":"healthz"},"region":"bastille"}`, "app.health", typeInvalidParameter},
		{"compose and image", `{"user":"alice","app":{"compose":"` + compose + `","image":"127.0.0.1:5000/hello:v1"},"region":"bastille"}`, "app", typeInvalidParameter},
		{"bad compose", `{"user":"alice","app":{"compose":"services: [\\n"},"region":"bastille"}`, "app.compose", typeInvalidParameter},
		{"service without compose", `{"user":"alice","app":{"service":"web"},"region":"bastille"}`, "app.service", typeInvalidParameter},
		{"bad policy", `{"user":"alice","app":` + goodApp + `,"region":"bastille","neighbours":"nearest:0"}`, "neighbours", typeInvalidParameter},
		{"bad pre-deploy", `{"user":"alice","app":` + goodApp + `,"region":"bastille","preDeploy":"all"}`, "preDeploy", typeInvalidParameter},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, body := do(t, "POST", srv.URL+sessionsPath, c.body)
			p := expectProblem(t, resp, body, http.StatusBadRequest)
			if p.Type != c.typ {
				t.Errorf("type %q, want %q", p.Type, c.typ)
			}
			var params []string
			for _, ip := range p.InvalidParams {
				params = append(params, ip.Param)
			}
			if len(params) == 0 || params[0] != c.param {
				t.Errorf("invalid params %v, want %s first: %s", params, c.param, body)
			}
		})
	}
	// A project refused by drift's compose reading: the reason says what.
	two := "name: shop\\nservices:\\n  web:\\n    image: 127.0.0.1:5000/web:v1\\n    ports: [\\\"8080:8080\\\"]\\n"
	for _, c := range []struct{ name, compose, says string }{
		{"unsupported field", two + "    privileged: true\\n  db:\\n    image: 127.0.0.1:5000/db:v1\\n    expose: [\\\"5432\\\"]\\n", "field services.web.privileged is not supported"},
		{"cyclic depends_on", two + "    depends_on: [db]\\n  db:\\n    image: 127.0.0.1:5000/db:v1\\n    expose: [\\\"5432\\\"]\\n    depends_on: [web]\\n", "cycle"},
		{"one published port twice", two + "  db:\\n    image: 127.0.0.1:5000/db:v1\\n    ports: [\\\"8080:5432\\\"]\\n", "both publish port 8080/tcp"},
		{"images the pipeline builds", "name: shop\\nservices:\\n  web:\\n    build: ./web\\n    ports: [\\\"8080:8080\\\"]\\n  db:\\n    image: 127.0.0.1:5000/db:v1\\n    expose: [\\\"5432\\\"]\\n", "release it through a pipeline"},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, body := do(t, "POST", srv.URL+sessionsPath, `{"user":"alice","app":{"compose":"`+c.compose+`"},"region":"bastille"}`)
			p := expectProblem(t, resp, body, http.StatusBadRequest)
			if len(p.InvalidParams) != 1 || p.InvalidParams[0].Param != "app.compose" || !strings.Contains(p.InvalidParams[0].Reason, c.says) {
				t.Errorf("invalid params %+v, want app.compose saying %q", p.InvalidParams, c.says)
			}
		})
	}
	// Every problem at once.
	resp, body := do(t, "POST", srv.URL+sessionsPath, `{"user":"","app":{"name":"hello","image":"127.0.0.1:5000/hello:v1"},"region":"atlantis","preDeploy":"x"}`)
	if p := expectProblem(t, resp, body, http.StatusBadRequest); len(p.InvalidParams) != 3 {
		t.Errorf("want user, region and preDeploy named: %+v", p.InvalidParams)
	}
	// A compose app in good order reaches Temporal: here, the fake's
	// Describe, which finds the session open.
	_, srv = newTestAPI(t, &fakeClient{describe: running}, Options{})
	resp, body = do(t, "POST", srv.URL+sessionsPath, `{"user":"alice","app":{"compose":"`+compose+`"},"region":"bastille"}`)
	if p := expectProblem(t, resp, body, http.StatusConflict); !strings.Contains(p.Detail, "session/alice/web is already open") {
		t.Errorf("detail %q", p.Detail)
	}
}

func TestUnknownSessionIs404(t *testing.T) {
	fc := &fakeClient{
		describe: notFound,
		update: func(client.UpdateWorkflowOptions) (client.WorkflowUpdateHandle, error) {
			return nil, serviceerror.NewNotFound("workflow not found for ID: session/nobody/hello")
		},
		signal: func(string, string) error { return serviceerror.NewNotFound("workflow execution already completed") },
	}
	_, srv := newTestAPI(t, fc, Options{})
	base := srv.URL + sessionsPath + "/nobody/hello"
	for _, c := range []struct{ method, url, body string }{
		{"GET", base, ""},
		{"DELETE", base, ""},
		{"POST", base + "/moves", `{"region":"bastille"}`},
		{"GET", base + "/moves/move-000000000000", ""},
		{"GET", srv.URL + subscriptionsPath + "/sub-000000000000", ""},
		{"DELETE", srv.URL + subscriptionsPath + "/sub-000000000000", ""},
		{"GET", srv.URL + BasePath + "/nothing-here", ""},
	} {
		resp, body := do(t, c.method, c.url, c.body)
		p := expectProblem(t, resp, body, http.StatusNotFound)
		if p.Type != typeNotFound {
			t.Errorf("%s %s: type %q", c.method, c.url, p.Type)
		}
	}
	// An ended session is not there any more either.
	fc.describe = func(string) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
		return &workflowservice.DescribeWorkflowExecutionResponse{WorkflowExecutionInfo: &workflowpb.WorkflowExecutionInfo{
			Status: enums.WORKFLOW_EXECUTION_STATUS_COMPLETED,
		}}, nil
	}
	resp, body := do(t, "GET", base, "")
	if p := expectProblem(t, resp, body, http.StatusNotFound); !strings.Contains(p.Detail, "has ended") {
		t.Errorf("detail %q", p.Detail)
	}
}

func TestPathsMethodsAndQueries(t *testing.T) {
	_, srv := newTestAPI(t, &fakeClient{}, Options{})
	resp, body := do(t, "PUT", srv.URL+sessionsPath+"/alice/hello", "")
	expectProblem(t, resp, body, http.StatusMethodNotAllowed)
	if allow := resp.Header.Get("Allow"); allow != "DELETE, GET" {
		t.Errorf("Allow %q", allow)
	}
	resp, body = do(t, "GET", srv.URL+sessionsPath+"/a%2Fb/hello", "")
	if p := expectProblem(t, resp, body, http.StatusBadRequest); p.InvalidParams[0].Param != "user" {
		t.Errorf("params %+v", p.InvalidParams)
	}
	resp, body = do(t, "GET", srv.URL+sessionsPath+"/alice/Not_An_App", "")
	if p := expectProblem(t, resp, body, http.StatusBadRequest); p.InvalidParams[0].Param != "app" {
		t.Errorf("params %+v", p.InvalidParams)
	}
	resp, body = do(t, "POST", srv.URL+sessionsPath+"/alice/hello/moves?wait=maybe", `{"region":"bastille"}`)
	if p := expectProblem(t, resp, body, http.StatusBadRequest); p.InvalidParams[0].Param != "wait" {
		t.Errorf("params %+v", p.InvalidParams)
	}
	resp, body = do(t, "POST", srv.URL+sessionsPath+"/alice/hello/moves", `{}`)
	if p := expectProblem(t, resp, body, http.StatusBadRequest); p.InvalidParams[0].Param != "region" {
		t.Errorf("params %+v", p.InvalidParams)
	}
	resp, body = do(t, "GET", srv.URL+sessionsPath+"?all=sometimes", "")
	expectProblem(t, resp, body, http.StatusBadRequest)
	resp, body = do(t, "POST", srv.URL+subscriptionsPath, strings.Repeat(" ", maxBody+1))
	expectProblem(t, resp, body, http.StatusRequestEntityTooLarge)
}

func TestRejectedMovesAnswerAtOnce(t *testing.T) {
	var reject string
	fc := &fakeClient{update: func(o client.UpdateWorkflowOptions) (client.WorkflowUpdateHandle, error) {
		if o.WaitForStage != client.WorkflowUpdateStageAccepted || o.UpdateName != names.MoveUpdate || o.UpdateID == "" {
			return nil, fmt.Errorf("unexpected update options %+v", o)
		}
		h := &fakeHandle{id: o.UpdateID, immediate: true, outcome: make(chan outcome, 1)}
		// What the SDK gives back for a validator's plain error.
		h.outcome <- outcome{err: temporal.NewApplicationError(reject, "errorString")}
		return h, nil
	}}
	a, srv := newTestAPI(t, fc, Options{})
	reject = "session is exiting"
	resp, body := do(t, "POST", srv.URL+sessionsPath+"/alice/hello/moves", `{"region":"bastille"}`)
	if p := expectProblem(t, resp, body, http.StatusConflict); !strings.Contains(p.Detail, "session is exiting") {
		t.Errorf("detail %q", p.Detail)
	}
	reject = `unknown region "atlantis" (known: bastille, la-defense)`
	resp, body = do(t, "POST", srv.URL+sessionsPath+"/alice/hello/moves", `{"region":"atlantis"}`)
	if p := expectProblem(t, resp, body, http.StatusBadRequest); p.Type != typeUnknownRegion || p.InvalidParams[0].Param != "region" {
		t.Errorf("problem %+v", p)
	}
	if n := a.moves.len(); n != 0 {
		t.Errorf("%d move records kept for rejected moves", n)
	}
}

// callbacks is a loopback receiver of notifications.
type callbacks struct {
	mu     sync.Mutex
	got    []Notification
	status []int // answers to give, then 204
	hits   int
	srv    *httptest.Server
}

func newCallbacks(t *testing.T, status ...int) *callbacks {
	cb := &callbacks{status: status}
	cb.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cb.mu.Lock()
		defer cb.mu.Unlock()
		cb.hits++
		if len(cb.status) > 0 {
			code := cb.status[0]
			cb.status = cb.status[1:]
			w.WriteHeader(code)
			return
		}
		var n Notification
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || json.NewDecoder(r.Body).Decode(&n) != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		cb.got = append(cb.got, n)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(cb.srv.Close)
	return cb
}

func (cb *callbacks) wait(t *testing.T, n int) []Notification {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		cb.mu.Lock()
		got := append([]Notification(nil), cb.got...)
		cb.mu.Unlock()
		if len(got) >= n {
			return got
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("fewer than %d notifications arrived", n)
	return nil
}

func (cb *callbacks) count() (hits, got int) {
	cb.mu.Lock()
	defer cb.mu.Unlock()
	return cb.hits, len(cb.got)
}

func subscribe(t *testing.T, base, callback, filter string) Subscription {
	t.Helper()
	resp, body := do(t, "POST", base+subscriptionsPath, fmt.Sprintf(`{"callbackReference":%q,"filter":%s}`, callback, filter))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("subscribe: %d %s", resp.StatusCode, body)
	}
	var sub Subscription
	if err := json.Unmarshal(body, &sub); err != nil || sub.ID == "" || resp.Header.Get("Location") != sub.Links["self"].Href {
		t.Fatalf("subscription %s (%v), Location %q", body, err, resp.Header.Get("Location"))
	}
	return sub
}

func TestMoveTriggeredThenCompletedAndNotified(t *testing.T) {
	var mu sync.Mutex
	handles := map[string]*fakeHandle{}
	fc := &fakeClient{update: func(o client.UpdateWorkflowOptions) (client.WorkflowUpdateHandle, error) {
		mu.Lock()
		defer mu.Unlock()
		h := &fakeHandle{id: o.UpdateID, outcome: make(chan outcome, 1)}
		handles[o.UpdateID] = h
		return h, nil
	}}
	a, srv := newTestAPI(t, fc, Options{})
	alice, bob := newCallbacks(t), newCallbacks(t)
	sub := subscribe(t, srv.URL, alice.srv.URL+"/notify", `{"user":"alice"}`)
	subscribe(t, srv.URL, bob.srv.URL, `{"user":"bob","app":"hello"}`)

	resp, body := do(t, "POST", srv.URL+sessionsPath+"/alice/hello/moves", `{"region":"bastille"}`)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("move: %d %s", resp.StatusCode, body)
	}
	var m Move
	if err := json.Unmarshal(body, &m); err != nil || m.Status != MoveTriggered || m.Region != "bastille" || m.ID == "" {
		t.Fatalf("move %s (%v)", body, err)
	}
	if loc := resp.Header.Get("Location"); loc != sessionsPath+"/alice/hello/moves/"+m.ID {
		t.Fatalf("Location %q", loc)
	}
	resp, body = do(t, "GET", srv.URL+resp.Header.Get("Location"), "")
	if json.Unmarshal(body, &m); resp.StatusCode != http.StatusOK || m.Status != MoveTriggered {
		t.Fatalf("before the outcome: %d %s", resp.StatusCode, body)
	}
	// Another session's path does not show it.
	resp, body = do(t, "GET", srv.URL+sessionsPath+"/bob/hello/moves/"+m.ID, "")
	expectProblem(t, resp, body, http.StatusNotFound)

	mu.Lock()
	handles[m.ID].outcome <- outcome{res: workflows.MoveResult{
		Region: "bastille", Cloud: "edge-bastille", Warm: true, SwitchTime: 1500 * time.Microsecond,
		Endpoint: runtime.Endpoint{URL: "http://127.0.0.1:1234", Host: "127.0.0.1", Port: 1234},
	}}
	mu.Unlock()
	n := alice.wait(t, 1)[0]
	if n.NotificationType != NotificationType || n.SubscriptionID != sub.ID || n.MoveID != m.ID || n.User != "alice" ||
		n.App != "hello" || n.Status != MoveCompleted || n.Cloud != "edge-bastille" || n.Region != "bastille" ||
		n.Warm == nil || !*n.Warm || n.SwitchTime != "1.5ms" || n.Endpoint == nil || n.Endpoint.Port != 1234 ||
		n.TimeStamp.IsZero() || n.Links["move"].Href != m.Links["self"].Href {
		t.Errorf("notification %+v", n)
	}
	resp, body = do(t, "GET", srv.URL+m.Links["self"].Href, "")
	if json.Unmarshal(body, &m); resp.StatusCode != http.StatusOK || m.Status != MoveCompleted || m.Cloud != "edge-bastille" || m.FinishedAt.IsZero() {
		t.Fatalf("after the outcome: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, "GET", srv.URL+sessionsPath+"/alice/hello/moves", "")
	var list []Move
	if json.Unmarshal(body, &list); resp.StatusCode != http.StatusOK || len(list) != 1 || list[0].ID != m.ID {
		t.Fatalf("moves: %d %s", resp.StatusCode, body)
	}

	// ?wait=true answers with the outcome.
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, body := do(t, "POST", srv.URL+sessionsPath+"/alice/hello/moves?wait=true", `{"region":"montmartre"}`)
		var m Move
		if json.Unmarshal(body, &m); resp.StatusCode != http.StatusOK || m.Status != MoveCompleted || m.Cloud != "edge-montmartre" || *m.Warm {
			t.Errorf("move ?wait=true: %d %s", resp.StatusCode, body)
		}
	}()
	for a.moves.len() < 2 {
		time.Sleep(time.Millisecond)
	}
	mu.Lock()
	for id, h := range handles {
		if id != m.ID {
			h.outcome <- outcome{res: workflows.MoveResult{Region: "montmartre", Cloud: "edge-montmartre", SwitchTime: time.Second}}
		}
	}
	mu.Unlock()
	<-done
	alice.wait(t, 2)
	time.Sleep(50 * time.Millisecond) // a wrong delivery would have come by now
	if hits, _ := bob.count(); hits != 0 {
		t.Errorf("bob's subscription got %d notifications of alice's moves", hits)
	}
}

func TestFailedMoveIsReportedAndNotified(t *testing.T) {
	fc := &fakeClient{update: func(o client.UpdateWorkflowOptions) (client.WorkflowUpdateHandle, error) {
		h := &fakeHandle{id: o.UpdateID, outcome: make(chan outcome, 1)}
		h.outcome <- outcome{err: temporal.NewNonRetryableApplicationError("cannot serve from edge-bastille: image gone", workflows.ErrTypeMoveFailed, nil)}
		return h, nil
	}}
	_, srv := newTestAPI(t, fc, Options{})
	cb := newCallbacks(t)
	subscribe(t, srv.URL, cb.srv.URL, `{}`)
	resp, body := do(t, "POST", srv.URL+sessionsPath+"/alice/hello/moves?wait=1", `{"region":"bastille"}`)
	p := expectProblem(t, resp, body, http.StatusBadGateway)
	if p.Type != typeMoveFailed || !strings.Contains(p.Detail, "image gone") || !strings.HasPrefix(p.Instance, sessionsPath+"/alice/hello/moves/move-") {
		t.Errorf("problem %+v", p)
	}
	resp, body = do(t, "GET", srv.URL+p.Instance, "")
	var m Move
	if json.Unmarshal(body, &m); resp.StatusCode != http.StatusOK || m.Status != MoveFailed || !strings.Contains(m.Reason, "image gone") {
		t.Errorf("failed move %d %s", resp.StatusCode, body)
	}
	n := cb.wait(t, 1)[0]
	if n.Status != MoveFailed || !strings.Contains(n.Reason, "image gone") || n.Warm != nil {
		t.Errorf("notification %+v", n)
	}
}

func TestNotificationsRetryWithBackoff(t *testing.T) {
	var mu sync.Mutex
	var pending []*fakeHandle
	fc := &fakeClient{update: func(o client.UpdateWorkflowOptions) (client.WorkflowUpdateHandle, error) {
		mu.Lock()
		defer mu.Unlock()
		h := &fakeHandle{id: o.UpdateID, outcome: make(chan outcome, 1)}
		pending = append(pending, h)
		return h, nil
	}}
	_, srv := newTestAPI(t, fc, Options{Notify: NotifyOptions{Retries: 2, Backoff: 20 * time.Millisecond}})
	flaky := newCallbacks(t, 503, 500)     // succeeds on the third attempt
	rude := newCallbacks(t, 400)           // a final answer: no retry
	down := newCallbacks(t, 500, 500, 500) // fails every attempt
	subscribe(t, srv.URL, flaky.srv.URL, `{}`)
	subscribe(t, srv.URL, rude.srv.URL, `{}`)
	subscribe(t, srv.URL, down.srv.URL, `{}`)
	start := time.Now()
	resp, body := do(t, "POST", srv.URL+sessionsPath+"/alice/hello/moves", `{"region":"bastille"}`)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	mu.Lock()
	pending[0].outcome <- outcome{res: workflows.MoveResult{Region: "bastille", Cloud: "edge-bastille"}}
	mu.Unlock()
	flaky.wait(t, 1)
	if d := time.Since(start); d < 60*time.Millisecond {
		t.Errorf("three attempts in %s: no backoff (20ms, then 40ms)", d)
	}
	time.Sleep(200 * time.Millisecond)
	if hits, _ := rude.count(); hits != 1 {
		t.Errorf("a 400 was retried: %d attempts", hits)
	}
	if hits, got := down.count(); hits != 3 || got != 0 {
		t.Errorf("down callback: %d attempts, %d delivered; want 3 and 0", hits, got)
	}
}

func TestSubscriptions(t *testing.T) {
	_, srv := newTestAPI(t, &fakeClient{}, Options{
		MaxSubscriptions: 2,
		CheckCallback: func(u *url.URL) error {
			if u.Hostname() == "forbidden.example" {
				return errors.New("not on the allow list")
			}
			return nil
		},
	})
	for _, c := range []struct{ body, param string }{
		{`{}`, "callbackReference"},
		{`{"callbackReference":"/relative"}`, "callbackReference"},
		{`{"callbackReference":"ftp://127.0.0.1/x"}`, "callbackReference"},
		{`{"callbackReference":"http://"}`, "callbackReference"},
		{`{"callbackReference":"http://forbidden.example/cb"}`, "callbackReference"},
		{`{"callbackReference":"http://127.0.0.1:1/cb","subscriptionType":"Other"}`, "subscriptionType"},
		{`{"callbackReference":"http://127.0.0.1:1/cb","filter":{"user":"a b"}}`, "filter.user"},
		{`{"callbackReference":"http://127.0.0.1:1/cb","filter":{"app":"A"}}`, "filter.app"},
		{`{"callbackReference":"http://127.0.0.1:1/cb","filter":{"region":"x"}}`, "region"}, // encoding/json names the field, not its path
	} {
		resp, body := do(t, "POST", srv.URL+subscriptionsPath, c.body)
		if p := expectProblem(t, resp, body, http.StatusBadRequest); p.InvalidParams[0].Param != c.param {
			t.Errorf("%s: params %+v, want %s", c.body, p.InvalidParams, c.param)
		}
	}
	a := subscribe(t, srv.URL, "http://127.0.0.1:1/a", `{"app":"hello"}`)
	b := subscribe(t, srv.URL, "https://127.0.0.1:1/b", `{}`)
	if a.SubscriptionType != SubscriptionType || a.Filter.App != "hello" {
		t.Errorf("subscription %+v", a)
	}
	resp, body := do(t, "POST", srv.URL+subscriptionsPath, `{"callbackReference":"http://127.0.0.1:1/c"}`)
	expectProblem(t, resp, body, http.StatusServiceUnavailable)
	resp, body = do(t, "GET", srv.URL+subscriptionsPath, "")
	var list []Subscription
	if json.Unmarshal(body, &list); resp.StatusCode != http.StatusOK || len(list) != 2 || list[0].ID != a.ID || list[1].ID != b.ID {
		t.Fatalf("list: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, "GET", srv.URL+a.Links["self"].Href, "")
	var got Subscription
	if json.Unmarshal(body, &got); resp.StatusCode != http.StatusOK || got.CallbackReference != a.CallbackReference {
		t.Fatalf("get: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, "DELETE", srv.URL+a.Links["self"].Href, "")
	if resp.StatusCode != http.StatusNoContent || len(body) != 0 {
		t.Fatalf("delete: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, "DELETE", srv.URL+a.Links["self"].Href, "")
	expectProblem(t, resp, body, http.StatusNotFound)
	subscribe(t, srv.URL, "http://127.0.0.1:1/c", `{}`) // room again
}

func TestMoveRecordsAreBounded(t *testing.T) {
	s := newMoveStore(3)
	var recs []*moveRecord
	for i := range 4 {
		recs = append(recs, s.add(Move{ID: fmt.Sprint(i), User: "u", App: "a", Status: MoveTriggered}))
	}
	// All in flight: the oldest goes.
	if _, _, ok := s.get("u", "a", "0"); ok || s.len() != 3 {
		t.Fatalf("len %d, oldest kept %v", s.len(), ok)
	}
	s.finish(recs[2], workflows.MoveResult{}, nil, time.Now())
	s.add(Move{ID: "4", User: "u", App: "a", Status: MoveTriggered})
	// The oldest finished one goes before older ones in flight.
	if _, _, ok := s.get("u", "a", "2"); ok {
		t.Error("finished move 2 kept over the ones in flight")
	}
	if _, _, ok := s.get("u", "a", "1"); !ok {
		t.Error("move 1 in flight evicted before finished move 2")
	}
	// Its waiter can still finish an evicted record.
	s.finish(recs[0], workflows.MoveResult{}, errors.New("x"), time.Now())
	var ids []string
	for _, m := range s.list("u", "a") {
		ids = append(ids, m.ID)
	}
	if strings.Join(ids, ",") != "1,3,4" {
		t.Errorf("kept %v, want 1,3,4", ids)
	}
}

func TestCloseEndsWaitersWithoutNotifying(t *testing.T) {
	fc := &fakeClient{update: func(o client.UpdateWorkflowOptions) (client.WorkflowUpdateHandle, error) {
		return &fakeHandle{id: o.UpdateID, outcome: make(chan outcome)}, nil // never ends
	}}
	topo, _ := topology.Parse(examples.Topology)
	a := New(fc, Options{Topology: topo})
	srv := httptest.NewServer(a)
	cb := newCallbacks(t)
	subscribe(t, srv.URL, cb.srv.URL, `{}`)
	resp, body := do(t, "POST", srv.URL+sessionsPath+"/alice/hello/moves", `{"region":"bastille"}`)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	srv.Close()
	closed := make(chan struct{})
	go func() { a.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	if hits, _ := cb.count(); hits != 0 {
		t.Errorf("%d notifications after Close", hits)
	}
	var m Move
	json.Unmarshal(body, &m)
	if _, got, _ := a.moves.get("alice", "hello", m.ID); got.Status != MoveFailed {
		t.Errorf("move after Close: %+v", got)
	}
}

func TestDecodeNamesNestedFields(t *testing.T) {
	r := httptest.NewRequest("POST", "/", bytes.NewReader([]byte(`{"user":"a","app":{"name":"x","port":true}}`)))
	var reg Registration
	p := decode(httptest.NewRecorder(), r, &reg)
	if p == nil || p.InvalidParams[0].Param != "app.port" || !strings.Contains(p.InvalidParams[0].Reason, "want a JSON number, got bool") {
		t.Fatalf("problem %+v", p)
	}
}
