package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/edgedrift/drift/internal/amsi"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/workflows"
)

// counterApp serves the counter app's API over a count of its own, as
// one instance of the app does.
func counterApp(t *testing.T, count *int) runtime.Endpoint {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			*count++
		}
		json.NewEncoder(w).Encode(map[string]any{"app": "counter", "count": *count})
	}))
	t.Cleanup(srv.Close)
	return runtime.Endpoint{URL: srv.URL}
}

// The walk's counter check says "survived" only when the count it reads
// after a move is the one the user saw before it.
func TestCounterCheckChecks(t *testing.T) {
	ctx := context.Background()
	var shared, fresh int
	first, moved := counterApp(t, &shared), counterApp(t, &shared)
	empty := counterApp(t, &fresh)
	c := &counterCheck{}
	if got := c.opened(ctx, first); got != "counted to 3" {
		t.Errorf("opened: %q", got)
	}
	if got := c.moved(ctx, moved); got != "counter 3: survived the handover, counted to 4" {
		t.Errorf("a move that kept the state: %q", got)
	}
	if got := c.moved(ctx, empty); got != "counter 0: did NOT survive the handover (it was 4), counted to 1" {
		t.Errorf("a move that lost the state: %q", got)
	}
	if got := c.moved(ctx, runtime.Endpoint{URL: "http://127.0.0.1:1"}); !strings.HasPrefix(got, "cannot read the counter here") {
		t.Errorf("an endpoint that does not answer: %q", got)
	}
	if got := c.summary(); got != "counter survived 1 of 3 handovers (1 could not be checked from here)" {
		t.Errorf("summary %q", got)
	}
	all := &counterCheck{moves: 2, survived: 2}
	if got := all.summary(); got != "counter survived every handover (2 of 2)" {
		t.Errorf("summary %q", got)
	}
}

// A move's line says whether the app's state went with it.
func TestContextNote(t *testing.T) {
	yes, no := amsi.ContextTransferred, amsi.ContextNotTransferred
	for _, c := range []struct {
		res  workflows.MoveResult
		want string
	}{
		{workflows.MoveResult{}, ""},
		{workflows.MoveResult{ContextTransferState: &yes}, ", state carried"},
		{workflows.MoveResult{ContextTransferState: &no, StateError: "GET x answered 500"}, ", state NOT carried: GET x answered 500"},
	} {
		if got := contextNote(c.res); got != c.want {
			t.Errorf("%+v: %q, want %q", c.res, got, c.want)
		}
	}
}
