package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func do(t *testing.T, h http.Handler, method, path, body string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
	return rec.Code, strings.TrimSpace(rec.Body.String())
}

func TestStateSurvivesARestart(t *testing.T) {
	dir := t.TempDir()
	s, err := open(dir)
	if err != nil {
		t.Fatal(err)
	}
	h := s.mux()
	for _, want := range []string{`{"count":1}`, `{"count":2}`} {
		if code, body := do(t, h, "POST", "/incr", ""); code != 200 || body != want {
			t.Fatalf("incr: %d %s, want %s", code, body, want)
		}
	}
	again, err := open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if code, body := do(t, again.mux(), "GET", "/state", ""); code != 200 || body != `{"count":2}` {
		t.Fatalf("after a restart: %d %s", code, body)
	}
}

func TestPutReplacesTheState(t *testing.T) {
	s, err := open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := s.mux()
	if code, body := do(t, h, "PUT", "/state", `{"count":41}`); code != 200 || body != `{"count":41}` {
		t.Fatalf("put: %d %s", code, body)
	}
	if code, _ := do(t, h, "PUT", "/state", `{"cart":[]}`); code != http.StatusBadRequest {
		t.Errorf("a state of another shape: %d, want 400", code)
	}
	if code, body := do(t, h, "POST", "/incr", ""); code != 200 || body != `{"count":42}` {
		t.Fatalf("incr after put: %d %s", code, body)
	}
}
