package activities

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/runtime/runtimetest"
)

func TestVerifyEnvHTTP(t *testing.T) {
	driverOK := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/healthz":
			w.Write([]byte(`{"version":"28.0.0"}`))
		case r.Method == http.MethodPost && r.URL.Path == "/verify" && driverOK:
			w.Write([]byte(`{"created":true,"deleted":true}`))
		default:
			http.Error(w, `{"error":"create volume: backend unreachable"}`, http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	ep := runtime.Endpoint{URL: srv.URL}
	req := EnvVerifyRequest{Mode: VerifyHTTP, Targets: []VerifyTarget{
		{Instance: "cinder", Endpoint: ep, Health: "/healthz"},
		{Instance: "cinder-volume", Endpoint: ep, Health: "/healthz", Verify: "/verify"},
	}}
	u := &Upgrade{}
	v, err := u.VerifyEnv(context.Background(), req)
	if err != nil || !v.Passed || len(v.Checks) != 3 || !strings.Contains(v.Checks[2].Detail, `"deleted":true`) {
		t.Fatalf("passing env: %+v, %v", v, err)
	}
	driverOK = false
	v, err = u.VerifyEnv(context.Background(), req)
	if err != nil || v.Passed || v.Checks[2].OK || !strings.Contains(v.Checks[2].Detail, "backend unreachable") || !v.Checks[0].OK {
		t.Fatalf("failing driver: %+v, %v", v, err)
	}
	srv.Close()
	if v, err = u.VerifyEnv(context.Background(), req); err != nil || v.Passed || v.Checks[0].OK {
		t.Fatalf("unreachable env: %+v, %v", v, err)
	}
}

func TestVerifyEnvRollout(t *testing.T) {
	rt := runtimetest.NewInstant("fog-1")
	if _, err := rt.Deploy(context.Background(), "cinder-a1", runtime.Spec{Image: "registry.test/cinder:28.0.0", Port: 8080}); err != nil {
		t.Fatal(err)
	}
	u := &Upgrade{Runtime: rt}
	v, err := u.VerifyEnv(context.Background(), EnvVerifyRequest{Mode: VerifyRollout, Targets: []VerifyTarget{
		{Instance: "cinder-a1", Verify: "/verify"}, {Instance: "cinder-volume-a1", Verify: "/verify"},
	}})
	if err != nil || v.Passed || !v.Checks[0].OK || v.Checks[1].OK || len(v.Checks) != 2 {
		t.Fatalf("rollout: %+v, %v", v, err)
	}
}
