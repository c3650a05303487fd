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

// PATCH adds what an instance left behind took after its state was read:
// 10 read, 13 at the end of its drain, so 3 more here.
func TestPatchAddsTheLateWrites(t *testing.T) {
	s, err := open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := s.mux()
	do(t, h, "PUT", "/state", `{"count":10}`)
	do(t, h, "POST", "/incr", "") // the new instance's own write
	if code, body := do(t, h, "PATCH", "/state", `{"base":{"count":10},"final":{"count":13}}`); code != 200 || body != `{"count":14}` {
		t.Fatalf("patch: %d %s, want 14", code, body)
	}
	for _, bad := range []string{`{"base":{"count":13},"final":{"count":10}}`, `{"base":{"count":1},"last":{"count":2}}`, `not json`} {
		if code, _ := do(t, h, "PATCH", "/state", bad); code != http.StatusBadRequest {
			t.Errorf("patch %s: %d, want 400", bad, code)
		}
	}
	if _, body := do(t, h, "GET", "/state", ""); body != `{"count":14}` {
		t.Errorf("after refused patches: %s", body)
	}
}
