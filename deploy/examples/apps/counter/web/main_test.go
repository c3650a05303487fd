package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestAsksTheStore(t *testing.T) {
	count := 0
	store := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method + " " + r.URL.Path {
		case "POST /incr":
			count++
		case "GET /state":
		default:
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(map[string]int{"count": count})
	}))
	defer store.Close()
	mux := newMux(store.URL, "edge-test")
	for _, tc := range []struct {
		method, path string
		want         float64
	}{{"POST", "/count", 1}, {"POST", "/count", 2}, {"GET", "/", 2}} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		var got map[string]any
		if err := json.NewDecoder(rec.Body).Decode(&got); err != nil || rec.Code != 200 {
			t.Fatalf("%s %s: %d %v", tc.method, tc.path, rec.Code, err)
		}
		if got["app"] != "counter" || got["cloud"] != "edge-test" || got["count"] != tc.want {
			t.Errorf("%s %s = %v, want count %v", tc.method, tc.path, got, tc.want)
		}
	}
}

func TestStoreDownIsABadGateway(t *testing.T) {
	store := httptest.NewServer(http.NotFoundHandler())
	store.Close()
	rec := httptest.NewRecorder()
	newMux(store.URL, "").ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != http.StatusBadGateway {
		t.Errorf("store down: %d, want 502", rec.Code)
	}
}
