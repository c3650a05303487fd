package activities

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/edgedrift/drift/internal/amsi"
)

// A batch goes in order with each notification's id; a failure before any
// delivery fails the attempt (retryable or not, as the answer says), a
// failure after some ends the batch with what went out, and a retried
// attempt resumes after what its heartbeat says was delivered.
func TestDeliverNotificationsBatch(t *testing.T) {
	var mu sync.Mutex
	var got []string
	answer := map[string]int{} // notification id → status; 204 otherwise
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(NotificationHeader)
		mu.Lock()
		defer mu.Unlock()
		code := answer[id]
		if code == 0 {
			code = http.StatusNoContent
			got = append(got, id)
		}
		w.WriteHeader(code)
	}))
	defer srv.Close()
	batch := []amsi.Send{{URL: srv.URL, NotificationID: "a"}, {URL: srv.URL, NotificationID: "b"}, {URL: srv.URL, NotificationID: "c"}}

	var ts testsuite.WorkflowTestSuite
	run := func(heartbeat *int) (int, error) {
		env := ts.NewTestActivityEnvironment()
		env.RegisterActivity(&Notifier{HTTP: &http.Client{Timeout: time.Second}})
		if heartbeat != nil {
			env.SetHeartbeatDetails(*heartbeat)
		}
		v, err := env.ExecuteActivity((&Notifier{}).DeliverNotifications, batch)
		if err != nil {
			return 0, err
		}
		var n int
		if err := v.Get(&n); err != nil {
			t.Fatal(err)
		}
		return n, nil
	}
	reset := func(status map[string]int) {
		mu.Lock()
		defer mu.Unlock()
		got, answer = nil, status
	}

	if n, err := run(nil); err != nil || n != 3 || len(got) != 3 || got[0] != "a" || got[2] != "c" {
		t.Fatalf("all answered: %d, %v, got %v", n, err, got)
	}
	reset(map[string]int{"b": http.StatusServiceUnavailable})
	if n, err := run(nil); err != nil || n != 1 || len(got) != 1 {
		t.Fatalf("second unavailable: %d, %v, got %v", n, err, got)
	}
	reset(map[string]int{"a": http.StatusServiceUnavailable})
	var appErr *temporal.ApplicationError
	if n, err := run(nil); err == nil || n != 0 || (errors.As(err, &appErr) && appErr.NonRetryable()) {
		t.Fatalf("first unavailable: %d, %v (want a retryable error)", n, err)
	}
	reset(map[string]int{"a": http.StatusNotFound})
	if _, err := run(nil); !errors.As(err, &appErr) || appErr.Type() != ErrTypeCallbackRefused {
		t.Fatalf("first refused: %v (want %s)", err, ErrTypeCallbackRefused)
	}
	reset(nil)
	two := 2
	if n, err := run(&two); err != nil || n != 3 || len(got) != 1 || got[0] != "c" {
		t.Fatalf("resumed after 2: %d, %v, got %v", n, err, got)
	}
}
