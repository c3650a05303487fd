package mecapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/tests/harness"
)

// Every resource of ETSI MEC 021 v2.2.1 that drift covers, posted and read
// back in the spec's own shapes (field names from the spec, not from
// drift's code), and every answer and notification checked against the
// OpenAPI document the API serves.
func TestConformanceOfResourcesAndNotifications(t *testing.T) {
	r := newRig(t)
	a := r.as(r.tokenA)
	spec := loadOpenAPI(t, a)
	cb := newReceiver(t, false)
	user := "10.20.30.40" // an associateId of type UE_IPv4_ADDRESS

	// RegistrationInfo: POST → 201 with appMobilityServiceId assigned.
	body := registrationBody(user, r.image, "quartier-latin")
	body["expiryTime"] = 3600
	var reg registration
	code, hdr, raw := a.do("POST", "/amsi/v1/app_mobility_services", body)
	if code != http.StatusCreated || json.Unmarshal(raw, &reg) != nil {
		t.Fatalf("POST RegistrationInfo: %d %s", code, raw)
	}
	spec.check(t, "RegistrationInfo", raw)
	id := "hello." + user
	if reg.AppMobilityServiceID != id || hdr.Get("Location") != regPath(user) || reg.ServiceConsumerID.AppInstanceID != "hello" ||
		len(reg.DeviceInformation) != 1 || reg.DeviceInformation[0].AssociateID != (associateID{1, user}) ||
		reg.DeviceInformation[0].AppMobilityServiceLevel != 3 || reg.DeviceInformation[0].ContextTransferState == nil ||
		reg.ExpiryTime != 3600 || reg.Drift.Serving != "edge-latin" || reg.Drift.Endpoint == nil {
		t.Fatalf("registered %s (Location %q)", raw, hdr.Get("Location"))
	}

	// Subscriptions of both kinds, with the spec's filters.
	adjSub := map[string]any{
		"subscriptionType": "AdjacentAppInfoSubscription", "callbackReference": cb.url("/adjacent"),
		"requestTestNotification": true, "filterCriteria": map[string]any{"appInstanceId": "hello"},
	}
	var adj map[string]any
	a.json("POST", "/amsi/v1/subscriptions", adjSub, http.StatusCreated, &adj)
	moveSub := map[string]any{
		"subscriptionType": "MobilityProcedureSubscription", "callbackReference": cb.url("/moves"),
		"filterCriteria": map[string]any{"appInstanceId": "hello", "associateId": []any{map[string]any{"type": 1, "value": user}}, "mobilityStatus": []int{1, 2, 3}},
		"expiryDeadline": map[string]any{"seconds": time.Now().Add(time.Hour).Unix(), "nanoSeconds": 0},
	}
	var mv map[string]any
	code, hdr, raw = a.do("POST", "/amsi/v1/subscriptions", moveSub)
	if code != http.StatusCreated || json.Unmarshal(raw, &mv) != nil {
		t.Fatalf("POST MobilityProcedureSubscription: %d %s", code, raw)
	}
	spec.check(t, "Subscription", raw)
	moveHref := hdr.Get("Location")
	if self := dig(mv, "_links", "self", "href"); self != moveHref || !strings.HasPrefix(moveHref, "/amsi/v1/subscriptions/") ||
		fmt.Sprint(dig(mv, "filterCriteria", "mobilityStatus")) != "[1 2 3]" || dig(mv, "callbackReference") != cb.url("/moves") {
		t.Errorf("subscription %s", raw)
	}
	// Without mobilityStatus the spec's default, TRIGGERED, is used and shown.
	var dflt map[string]any
	a.json("POST", "/amsi/v1/subscriptions", map[string]any{"subscriptionType": "MobilityProcedureSubscription",
		"callbackReference": cb.url("/default"), "filterCriteria": map[string]any{}}, http.StatusCreated, &dflt)
	if fmt.Sprint(dig(dflt, "filterCriteria", "mobilityStatus")) != "[1]" {
		t.Errorf("default mobilityStatus %v", dig(dflt, "filterCriteria", "mobilityStatus"))
	}
	// A short-lived one: its ExpiryNotification comes, then it is gone.
	deadline := time.Now().Add(3 * time.Second)
	var short map[string]any
	a.json("POST", "/amsi/v1/subscriptions", map[string]any{"subscriptionType": "MobilityProcedureSubscription",
		"callbackReference": cb.url("/short"), "filterCriteria": map[string]any{},
		"expiryDeadline": map[string]any{"seconds": deadline.Unix(), "nanoSeconds": deadline.Nanosecond()}}, http.StatusCreated, &short)

	// SubscriptionLinkList, whole and by type.
	var list map[string]any
	code, _, raw = a.do("GET", "/amsi/v1/subscriptions", nil)
	if code != 200 || json.Unmarshal(raw, &list) != nil {
		t.Fatalf("GET subscriptions: %d %s", code, raw)
	}
	spec.check(t, "SubscriptionLinkList", raw)
	if links, _ := list["subscription"].([]any); len(links) != 4 || dig(list, "_links", "self", "href") != "/amsi/v1/subscriptions" {
		t.Errorf("link list %s", raw)
	}
	a.json("GET", "/amsi/v1/subscriptions?subscriptionType=adj_app_info", nil, 200, &list)
	if links, _ := list["subscription"].([]any); len(links) != 1 || dig(links[0], "subscriptionType") != "AdjacentAppInfoSubscription" ||
		dig(links[0], "href") != dig(adj, "_links", "self", "href") {
		t.Errorf("adj_app_info list %v", list)
	}
	// GET and PUT one subscription (PUT carries _links as the spec says).
	var got map[string]any
	a.json("GET", moveHref, nil, 200, &got)
	if dig(got, "drift", "status") != "ACTIVE" {
		t.Errorf("GET subscription %v", got)
	}
	got["filterCriteria"].(map[string]any)["mobilityStatus"] = []int{1, 2, 3}
	delete(got, "drift")
	a.json("PUT", moveHref, got, 200, &got)

	// The test notification arrives before anything else.
	cb.await(t, time.Minute, "the TestNotification", func(rs []received) bool {
		return slices.ContainsFunc(rs, func(n received) bool { return n.n.NotificationType == "TestNotification" })
	})

	// A move: 202 TRIGGERED, then MobilityProcedureNotification 1 and 2,
	// and the adjacent instances of the new place.
	a.settle(user)
	var m move
	code, hdr, raw = a.do("POST", regPath(user)+"/moves", `{"region":"bastille"}`)
	if json.Unmarshal(raw, &m) != nil || hdr.Get("Location") != m.Links["self"].Href || m.Region != "bastille" ||
		!(code == http.StatusAccepted && m.MobilityStatus == 1 && m.Status == "TRIGGERED" || code == http.StatusOK && m.MobilityStatus == 2 && m.Status == "COMPLETED") {
		t.Fatalf("move answered %d %s", code, raw)
	}
	spec.check(t, "Move", raw)
	got2 := cb.await(t, time.Minute, "TRIGGERED and COMPLETED of the move", func(rs []received) bool {
		n := moveNotes(rs, m.MoveID)
		return len(n["TRIGGERED"]) > 0 && len(n["COMPLETED"]) > 0
	})
	for _, n := range got2 {
		spec.check(t, n.n.NotificationType, n.raw)
		if n.header != n.n.Drift.NotificationID || n.header == "" {
			t.Errorf("notification id header %q, body %q", n.header, n.n.Drift.NotificationID)
		}
	}
	done := moveNotes(got2, m.MoveID)["COMPLETED"][0].n
	if done.MobilityStatus != 2 || done.AssociateID[0] != (associateID{1, user}) || done.TargetAppInfo == nil ||
		done.TargetAppInfo.AppInstanceID == "" || done.TargetAppInfo.CommInterface == nil || done.TargetAppInfo.CommInterface.IPAddresses[0].Port == 0 ||
		done.Links.Subscription.Href != moveHref || done.Drift.AppMobilityServiceID != id {
		t.Errorf("COMPLETED notification %+v", done)
	}
	a.settle(user)
	adjNotes := cb.await(t, time.Minute, "an AdjacentAppInfoNotification after the move", func(rs []received) bool {
		for _, n := range rs {
			if n.n.NotificationType == "AdjacentAppInfoNotification" && slices.ContainsFunc(n.n.AdjacentAppInfo, func(a struct {
				AppInstanceID string `json:"appInstanceId"`
			}) bool {
				return strings.Contains(a.AppInstanceID, "edge-latin")
			}) {
				return true
			}
		}
		return false
	})
	_ = adjNotes

	// GET /queries/adjacent_app_instances: the ready neighbours.
	var adjacent []map[string]any
	code, _, raw = a.do("GET", "/amsi/v1/queries/adjacent_app_instances?appMobilityServiceId="+id, nil)
	if code != 200 || json.Unmarshal(raw, &adjacent) != nil || len(adjacent) == 0 {
		t.Fatalf("adjacent instances: %d %s", code, raw)
	}
	for _, in := range adjacent {
		b, _ := json.Marshal(in)
		spec.check(t, "AdjacentAppInstanceInfo", b)
		if dig(in, "appDId") != "hello" || dig(in, "mecHostInformation", "hostName") == nil {
			t.Errorf("adjacent instance %s", b)
		}
	}

	// The registration list, one registration, and a PUT that reports the
	// context transferred and shortens the expiry.
	var regs []map[string]any
	a.json("GET", "/amsi/v1/app_mobility_services", nil, 200, &regs)
	if len(regs) != 1 || dig(regs[0], "appMobilityServiceId") != id {
		t.Errorf("registrations %v", regs)
	}
	code, _, raw = a.do("GET", regPath(user), nil)
	spec.check(t, "RegistrationInfo", raw)
	put := registrationBody(user, r.image, "quartier-latin")
	put["appMobilityServiceId"] = id
	put["deviceInformation"].([]any)[0].(map[string]any)["contextTransferState"] = 1
	put["expiryTime"] = 7200
	var after registration
	a.json("PUT", regPath(user), put, 200, &after)
	if s := after.DeviceInformation[0].ContextTransferState; s == nil || *s != 1 || after.ExpiryTime != 7200 || after.Drift.CurrentRegion != "bastille" {
		t.Errorf("after PUT %+v", after)
	}

	// The short-lived subscription expired: ExpiryNotification, then 404.
	exp := cb.await(t, time.Minute, "the ExpiryNotification", func(rs []received) bool {
		return slices.ContainsFunc(rs, func(n received) bool { return n.n.NotificationType == "ExpiryNotification" })
	})
	for _, n := range exp {
		if n.n.NotificationType == "ExpiryNotification" {
			spec.check(t, "ExpiryNotification", n.raw)
			if n.n.Links.Subscription.Href != dig(short, "_links", "self", "href") {
				t.Errorf("expiry for %s", n.n.Links.Subscription.Href)
			}
		}
	}
	waitFor(t, time.Minute, "the expired subscription to go", func() bool {
		code, _, _ := a.do("GET", dig(short, "_links", "self", "href").(string), nil)
		return code == http.StatusNotFound
	})
	// DELETE a subscription: 204, then 404.
	code, _, _ = a.do("DELETE", dig(dflt, "_links", "self", "href").(string), nil)
	if code != http.StatusNoContent {
		t.Errorf("DELETE subscription: %d", code)
	}
	a.problem("GET", dig(dflt, "_links", "self", "href").(string), nil, http.StatusNotFound)

	// deregister_task: 204 once the session ended; the registration is gone.
	code, _, raw = a.do("POST", regPath(user)+"/deregister_task", nil)
	if code != http.StatusNoContent {
		t.Fatalf("deregister_task: %d %s", code, raw)
	}
	a.problem("GET", regPath(user), nil, http.StatusNotFound)
	var report registration
	a.json("DELETE", regPath(user), nil, http.StatusOK, &report)
	if report.Drift.State == nil || report.Drift.State.Phase != "ended" || report.Drift.State.Totals.Handovers != 1 {
		t.Errorf("report %+v", report.Drift.State)
	}
	// make record-histories keeps this run's subscriptions workflow, and
	// beside it the session (registered, moved, ended through the API), for
	// the replay test.
	if path := os.Getenv("DRIFT_RECORD_HISTORY"); path != "" {
		ctx := ctxFor(t, time.Minute)
		harness.RecordHistory(t, ctx, r.c, names.SubscriptionsID, path)
		harness.RecordHistory(t, ctx, r.c, names.SessionID(user, "hello"), filepath.Join(filepath.Dir(path), "mobility-session-api.json"))
	}
}

func dig(v any, path ...string) any {
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// openAPI is the document the API serves, to check answers against.
type openAPI struct {
	Components struct {
		Schemas map[string]schema
	}
}

type schema struct {
	Ref                  string `json:"$ref"`
	Type                 string
	Properties           map[string]schema
	Required             []string
	Items                *schema
	AdditionalProperties *schema
}

func loadOpenAPI(t *testing.T, a *outsider) *openAPI {
	var doc openAPI
	code, hdr, raw := a.do("GET", "/amsi/v1/openapi.json", nil)
	if code != 200 || hdr.Get("Content-Type") != "application/json" || json.Unmarshal(raw, &doc) != nil || len(doc.Components.Schemas) == 0 {
		t.Fatalf("GET openapi.json: %d %s", code, raw[:min(len(raw), 200)])
	}
	if !strings.Contains(string(raw), `"openapi": "3.0.3"`) {
		t.Errorf("not an OpenAPI 3 document")
	}
	return &doc
}

// check fails the test for every field of raw the schema does not
// declare, and every required one it lacks.
func (d *openAPI) check(t *testing.T, name string, raw []byte) {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	s, ok := d.Components.Schemas[name]
	if !ok {
		t.Fatalf("the OpenAPI document has no schema %s", name)
	}
	d.walk(t, name, s, v)
}

func (d *openAPI) walk(t *testing.T, at string, s schema, v any) {
	t.Helper()
	if s.Ref != "" {
		d.walk(t, at, d.Components.Schemas[strings.TrimPrefix(s.Ref, "#/components/schemas/")], v)
		return
	}
	switch val := v.(type) {
	case map[string]any:
		if s.Type != "object" {
			t.Errorf("%s: an object where the document says %s", at, s.Type)
			return
		}
		if s.Properties == nil {
			if s.AdditionalProperties != nil {
				for k, x := range val {
					d.walk(t, at+"."+k, *s.AdditionalProperties, x)
				}
			}
			return
		}
		for k, x := range val {
			p, ok := s.Properties[k]
			if !ok {
				t.Errorf("%s.%s is not in the OpenAPI document", at, k)
				continue
			}
			d.walk(t, at+"."+k, p, x)
		}
		for _, k := range s.Required {
			if _, ok := val[k]; !ok {
				t.Errorf("%s lacks %s, required by the OpenAPI document", at, k)
			}
		}
	case []any:
		if s.Type != "array" || s.Items == nil {
			t.Errorf("%s: an array where the document says %s", at, s.Type)
			return
		}
		for i, x := range val {
			d.walk(t, fmt.Sprintf("%s[%d]", at, i), *s.Items, x)
		}
	case string:
		if s.Type != "string" {
			t.Errorf("%s: a string where the document says %s", at, s.Type)
		}
	case float64:
		if s.Type != "integer" && s.Type != "number" {
			t.Errorf("%s: a number where the document says %s", at, s.Type)
		}
	case bool:
		if s.Type != "boolean" {
			t.Errorf("%s: a boolean where the document says %s", at, s.Type)
		}
	}
}
