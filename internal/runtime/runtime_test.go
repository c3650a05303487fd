package runtime

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

var labelValueRE = regexp.MustCompile(`^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$`)

func TestInstanceName(t *testing.T) {
	cases := map[string][]string{
		"session-alice-web-edge-1": {"session", "alice", "web", "edge-1"},
		"":                         {"Session/Alice", "Web App", "edge_1"},
		"long":                     {strings.Repeat("x", 80), "edge-1"},
		"digits":                   {"42", "edge"},
	}
	seen := map[string]bool{}
	for want, parts := range cases {
		got := InstanceName(parts...)
		if err := ValidateName(got); err != nil {
			t.Errorf("InstanceName(%q) = %q: %v", parts, got, err)
		}
		if got != InstanceName(parts...) {
			t.Errorf("InstanceName(%q) not stable", parts)
		}
		if want == "session-alice-web-edge-1" && got != want {
			t.Errorf("clean parts changed: %q", got)
		}
		if seen[got] {
			t.Errorf("collision on %q", got)
		}
		seen[got] = true
	}
	// Inputs that sanitise alike must still get different names.
	if InstanceName("a/b", "c") == InstanceName("a-b", "c") {
		t.Error("a/b and a-b collide")
	}
}

func TestValidateName(t *testing.T) {
	for name, ok := range map[string]bool{"web": true, "a-1": true, "": false, "1abc": false, "Web": false, "a_b": false, "a-": false, strings.Repeat("a", 64): false} {
		err := ValidateName(name)
		if (err == nil) != ok {
			t.Errorf("ValidateName(%q) = %v", name, err)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("error does not wrap ErrInvalid: %v", err)
		}
	}
}

func TestLabelValue(t *testing.T) {
	for _, in := range []string{"session/alice/web", "plain", "-edge-", strings.Repeat("z", 100), "///", ""} {
		got := LabelValue(in)
		if len(got) > 63 || !labelValueRE.MatchString(got) {
			t.Errorf("LabelValue(%q) = %q is not a valid label value", in, got)
		}
	}
	if LabelValue("plain") != "plain" {
		t.Error("valid value changed")
	}
	if LabelValue("a/b") == LabelValue("a-b") {
		t.Error("distinct values collide")
	}
}

func TestSelectorMatchesOwnedLabels(t *testing.T) {
	labels := OwnedLabels("web-1", map[string]string{LabelWorkflow: "session/alice/web", LabelCloud: "edge-1"})
	if labels[LabelOwned] != "true" || labels[LabelInstance] != "web-1" {
		t.Fatalf("labels = %v", labels)
	}
	if !Matches(labels, Selector(map[string]string{LabelWorkflow: "session/alice/web"})) {
		t.Error("selector by raw workflow id does not match")
	}
	if !Matches(labels, Selector(nil)) {
		t.Error("nil selector must match every owned instance")
	}
	if Matches(labels, Selector(map[string]string{LabelCloud: "edge-2"})) {
		t.Error("other cloud matched")
	}
	if Matches(map[string]string{LabelCloud: "edge-1"}, Selector(nil)) {
		t.Error("unowned instance matched")
	}
}

func TestForeignAndScopeToCloud(t *testing.T) {
	own := map[string]string{LabelOwned: "true", LabelCloud: "fog-1"}
	if why := Foreign("container", own, "fog-1"); why != "" {
		t.Errorf("own container called foreign: %s", why)
	}
	for _, l := range []map[string]string{nil, {LabelCloud: "fog-1"}, {LabelOwned: "true", LabelCloud: "fog-2"}} {
		if Foreign("container", l, "fog-1") == "" {
			t.Errorf("labels %v taken as fog-1's", l)
		}
	}
	if Foreign("container", map[string]string{LabelOwned: "true", LabelCloud: "any"}, "") != "" {
		t.Error("a runtime without a cloud refused a drift container")
	}

	sel, ok := ScopeToCloud(Selector(nil), "fog-1")
	if !ok || sel[LabelCloud] != "fog-1" || sel[LabelOwned] != "true" {
		t.Errorf("ScopeToCloud(nil) = %v, %v", sel, ok)
	}
	if !Matches(own, sel) {
		t.Error("the scoped selector misses the runtime's own instance")
	}
	if _, ok := ScopeToCloud(Selector(map[string]string{LabelCloud: "fog-2"}), "fog-1"); ok {
		t.Error("a selector for another cloud was accepted")
	}
	if sel, ok := ScopeToCloud(Selector(nil), ""); !ok || sel[LabelCloud] != "" {
		t.Errorf("a runtime without a cloud scoped its selector: %v", sel)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []struct {
		cfg Config
		ok  bool
	}{
		{Config{}, true},
		{Config{Kind: KindDocker}, true},
		{Config{Kind: KindKubernetes}, false},
		{Config{Kind: KindKubernetes, Kubeconfig: "/k"}, true},
		{Config{Kind: "vm"}, false},
	} {
		if err := c.cfg.Validate(); (err == nil) != c.ok {
			t.Errorf("%+v: %v", c.cfg, err)
		}
	}
}

func TestWaitHTTP(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			t.Errorf("probed %s", r.URL.Path)
		}
		if calls.Add(1) < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	url := HealthURL(Endpoint{URL: srv.URL}, Spec{Health: "healthz"})
	if err := WaitHTTP(ctx, url); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 3 {
		t.Fatalf("ready after %d probes, want 3", calls.Load())
	}

	short, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	srv.Close()
	if err := WaitHTTP(short, url); err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("closed server: %v", err)
	}
}
