package activities

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/edgedrift/drift/internal/runtime"
)

func isStateRefused(err error) bool {
	var app *temporal.ApplicationError
	return asApp(err, &app) && app.Type() == ErrTypeStateRefused && app.NonRetryable()
}

func asApp(err error, app **temporal.ApplicationError) bool {
	a, ok := err.(*temporal.ApplicationError)
	*app = a
	return ok
}

// State is read and written over HTTP; non-2xx answers and states over the
// limit are refused for good.
func TestStateReadAndWrite(t *testing.T) {
	var mu sync.Mutex
	state, patched := `{"count":3}`, ""
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.URL.Path == "/broken":
			http.Error(w, "store on fire\nmore", http.StatusInternalServerError)
		case r.Method == http.MethodPut:
			b, _ := io.ReadAll(r.Body)
			state = string(b)
		case r.Method == http.MethodPatch:
			b, _ := io.ReadAll(r.Body)
			patched = r.Header.Get("Content-Type") + " " + string(b)
		default:
			io.WriteString(w, state)
		}
	}))
	defer srv.Close()
	c := &Cloud{ID: "edge"}
	ctx := context.Background()
	got, err := c.ReadState(ctx, ReadStateRequest{URL: srv.URL + "/state", Limit: 100})
	if err != nil || string(got) != `{"count":3}` {
		t.Fatalf("read %q %v", got, err)
	}
	if err := c.WriteState(ctx, WriteStateRequest{URL: srv.URL + "/state", State: []byte(`{"count":4}`)}); err != nil || state != `{"count":4}` {
		t.Fatalf("write: %v, state %q", err, state)
	}
	if _, err := c.ReadState(ctx, ReadStateRequest{URL: srv.URL + "/state", Limit: 5}); !isStateRefused(err) || !strings.Contains(err.Error(), "limit of 5 bytes") {
		t.Errorf("over the limit: %v", err)
	}
	if _, err := c.ReadState(ctx, ReadStateRequest{URL: srv.URL + "/broken", Limit: 100}); !isStateRefused(err) || !strings.Contains(err.Error(), "500 Internal Server Error: store on fire") {
		t.Errorf("non-2xx read: %v", err)
	}
	if err := c.WriteState(ctx, WriteStateRequest{URL: srv.URL + "/broken", State: []byte("{}")}); !isStateRefused(err) {
		t.Errorf("non-2xx write: %v", err)
	}
	late := MergeStateRequest{URL: srv.URL + "/state", Base: []byte(`{"count":4}`), Final: []byte(`{"count":9}`)}
	if err := c.MergeState(ctx, late); err != nil || patched != `application/json {"base":{"count":4},"final":{"count":9}}` {
		t.Errorf("merge: %v, sent %q", err, patched)
	}
	late.URL = srv.URL + "/broken"
	if err := c.MergeState(ctx, late); !isStateRefused(err) || !strings.Contains(err.Error(), "PATCH") {
		t.Errorf("non-2xx merge: %v", err)
	}
	late.URL, late.Final = srv.URL+"/state", []byte("count=9")
	if err := c.MergeState(ctx, late); !isStateRefused(err) || !strings.Contains(err.Error(), "not JSON") {
		t.Errorf("a state that is not JSON: %v", err)
	}
}

// A watch ends with InstanceDown after its failures in a row, and with nil
// when its span is over.
func TestWatchInstance(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	c := &Cloud{ID: "edge"}
	ep := runtime.Endpoint{URL: srv.URL}
	req := WatchRequest{Instance: "i", Service: runtime.Service{Health: "/healthz"}, Endpoint: ep, Every: 20 * time.Millisecond, Failures: 2, For: 200 * time.Millisecond}
	if err := c.WatchInstance(context.Background(), req); err != nil {
		t.Fatalf("a healthy instance: %v", err)
	}
	srv.Close()
	start := time.Now()
	err := c.WatchInstance(context.Background(), req)
	if !IsInstanceDown(err) || time.Since(start) > 5*time.Second {
		t.Fatalf("a dead instance: %v after %s", err, time.Since(start))
	}
}
