package mecapi

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/edgedrift/drift/internal/names"
)

// Names from users never make a 5xx: Unicode users work end to end (a
// workflow ID escapes them), names that would break the API's own links
// are refused with a 400 saying why; callbacks with credentials, bad ports
// or hosts beyond the allowlist are refused; requests without a token are
// 401, beyond their scope 403, and a client never sees another's
// subscriptions.
func TestBadInputGets4xxAndUnicodeUsersWork(t *testing.T) {
	r := newRig(t)
	a, b, ro, anon := r.as(r.tokenA), r.as(r.tokenB), r.as(r.tokenRO), r.as("")

	// Unicode users, end to end.
	for _, user := range []string{"zoë", "李雷"} {
		reg := a.register(user, "quartier-latin", http.StatusCreated)
		if reg.AppMobilityServiceID != "hello."+user || reg.Drift.Links["self"].Href != regPath(user) {
			t.Errorf("%s: registered %+v", user, reg)
		}
		if _, err := r.c.DescribeWorkflowExecution(ctxFor(t, time.Minute), names.SessionID(user, "hello"), ""); err != nil ||
			strings.ContainsFunc(names.SessionID(user, "hello"), func(c rune) bool { return c > 0x7e }) {
			t.Errorf("%s: workflow %q: %v", user, names.SessionID(user, "hello"), err)
		}
		var m move
		a.json("POST", regPath(user)+"/moves?wait=true", `{"region":"bastille"}`, http.StatusOK, &m)
		if m.Status != "COMPLETED" {
			t.Errorf("%s: move %+v", user, m)
		}
		a.json("GET", m.Links["self"].Href, nil, http.StatusOK, &m)
		a.json("DELETE", regPath(user), nil, http.StatusOK, nil)
	}

	// Names that are not names: a 400 naming the field and the reason.
	for name, c := range map[string]struct {
		user, param, reason string
	}{
		"dot":        {".", "deviceInformation[0].associateId.value", "path step"},
		"dot-dot":    {"..", "deviceInformation[0].associateId.value", "path step"},
		"slash":      {"a/b", "deviceInformation[0].associateId.value", "'/'"},
		"space":      {"a b", "deviceInformation[0].associateId.value", "' '"},
		"decomposed": {"zoe\u0308", "deviceInformation[0].associateId.value", "NFC"},
		"control":    {"a\u0007", "deviceInformation[0].associateId.value", "'\\a'"},
		"long":       {strings.Repeat("é", 65), "deviceInformation[0].associateId.value", "longer"},
	} {
		p, hdr := a.problem("POST", "/amsi/v1/app_mobility_services", registrationBody(c.user, r.image, "bastille"), http.StatusBadRequest)
		if !p.names(c.param) || !strings.Contains(p.Detail, c.reason) || hdr.Get("Location") != "" {
			t.Errorf("%s: %+v", name, p)
		}
	}
	for _, path := range []string{"/amsi/v1/app_mobility_services/hello..", "/amsi/v1/app_mobility_services/hello.%2E%2E/moves",
		"/amsi/v1/app_mobility_services/hello.a%2Fb", "/amsi/v1/app_mobility_services/Hello.alice", "/amsi/v1/app_mobility_services/alice"} {
		if p, _ := a.problem("GET", path, nil, http.StatusBadRequest); !p.names("appMobilityServiceId") {
			t.Errorf("%s: %+v", path, p)
		}
	}
	if p, _ := a.problem("POST", "/amsi/v1/app_mobility_services", registrationBody("alice", r.image, "atlantis"), http.StatusBadRequest); !p.names("drift.region") {
		t.Errorf("unknown region: %+v", p)
	}
	if p, _ := a.problem("POST", "/amsi/v1/app_mobility_services", registrationBody("alice", r.image, "bastille")["drift"], http.StatusBadRequest); !p.names("app") {
		t.Errorf("a body that is not a RegistrationInfo: %+v", p)
	}
	a.problem("POST", "/amsi/v1/app_mobility_services", `{"serviceConsumerId":`, http.StatusBadRequest)
	a.problem("POST", "/amsi/v1/app_mobility_services", strings.Repeat(" ", 2<<20), http.StatusRequestEntityTooLarge)
	// An image no registry has fails the start in the workflow: still 400.
	if p, _ := a.problem("POST", "/amsi/v1/app_mobility_services", registrationBody("dave", r.registry+"/nothere:v9", "bastille"), http.StatusBadRequest); !strings.Contains(p.Detail, "nothere") {
		t.Errorf("unknown image: %+v", p)
	}

	// Callbacks.
	sub := func(cb string) map[string]any {
		return map[string]any{"subscriptionType": "MobilityProcedureSubscription", "callbackReference": cb, "filterCriteria": map[string]any{}}
	}
	for cb, reason := range map[string]string{
		"http://user:secret@127.0.0.1:9/cb": "credentials",
		"http://127.0.0.1:99999/cb":         "port",
		"http://192.0.2.1/cb":               "not an allowed callback destination",
		"ftp://127.0.0.1/cb":                "http or https",
		"/relative":                         "http or https",
	} {
		p, _ := a.problem("POST", "/amsi/v1/subscriptions", sub(cb), http.StatusBadRequest)
		if !p.names("callbackReference") || !strings.Contains(p.Detail, reason) || strings.Contains(p.Detail, "secret") {
			t.Errorf("%s: %+v", cb, p)
		}
	}
	var list struct{ Subscription []any }
	a.json("GET", "/amsi/v1/subscriptions", nil, http.StatusOK, &list)
	if len(list.Subscription) != 0 {
		t.Errorf("refused subscriptions are listed: %+v", list)
	}

	// Authentication, scopes and ownership.
	anon.problem("GET", "/amsi/v1/app_mobility_services", nil, http.StatusUnauthorized)
	r.as("drift_not-a-token").problem("GET", "/amsi/v1/subscriptions", nil, http.StatusUnauthorized)
	ro.problem("POST", "/amsi/v1/subscriptions", sub("http://127.0.0.1:9/cb"), http.StatusForbidden)
	ro.problem("POST", "/amsi/v1/app_mobility_services", registrationBody("eve", r.image, "bastille"), http.StatusForbidden)
	var mine map[string]any
	hdr := a.json("POST", "/amsi/v1/subscriptions", sub("http://127.0.0.1:9/cb"), http.StatusCreated, &mine)
	href := hdr.Get("Location")
	b.problem("GET", href, nil, http.StatusNotFound)
	b.problem("DELETE", href, nil, http.StatusNotFound)
	b.problem("PUT", href, sub("http://127.0.0.1:9/cb"), http.StatusNotFound)
	b.json("GET", "/amsi/v1/subscriptions", nil, http.StatusOK, &list)
	if len(list.Subscription) != 0 {
		t.Errorf("svc-b sees svc-a's subscriptions: %+v", list)
	}
	ro.json("GET", "/amsi/v1/subscriptions", nil, http.StatusOK, &list)
	a.json("GET", href, nil, http.StatusOK, nil)
	if code, _, _ := a.do("DELETE", href, nil); code != http.StatusNoContent {
		t.Errorf("the owner's DELETE: %d", code)
	}
}
