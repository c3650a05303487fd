package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestHealthzWaitsForReadyAfter(t *testing.T) {
	mux := newMux(time.Now(), time.Hour)
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("healthz before ready: %d", rec.Code)
	}
	rec = httptest.NewRecorder()
	newMux(time.Now(), 0).ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("healthz when ready: %d", rec.Code)
	}
}

func TestRootSaysWhoServes(t *testing.T) {
	t.Setenv("DRIFT_CLOUD", "edge-test")
	rec := httptest.NewRecorder()
	newMux(time.Now(), 0).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	var got map[string]any
	if err := json.NewDecoder(rec.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got["app"] != "hello" || got["cloud"] != "edge-test" {
		t.Fatalf("got %v", got)
	}
}

func TestFailEveryFailsAShareOfRequests(t *testing.T) {
	defer func(v string) { failEvery = v }(failEvery)
	failEvery = "3"
	mux := newMux(time.Now(), 0)
	failed := 0
	for range 9 {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		if rec.Code == http.StatusInternalServerError {
			failed++
		}
	}
	if failed != 3 {
		t.Fatalf("%d of 9 requests failed, want 3", failed)
	}
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if body := rec.Body.String(); !strings.Contains(body, "hello_requests_total{code=\"200\"} 6\n") || !strings.Contains(body, "hello_requests_total{code=\"500\"} 3\n") {
		t.Fatalf("metrics after 6 answers and 3 failures:\n%s", body)
	}
}
