package amsi

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edgedrift/drift/internal/runtime"
)

var t0 = time.Date(2026, 11, 24, 16, 0, 0, 0, time.UTC)

func moveEvent(chain string, seq int64, user, app string, status int) Event {
	return Event{Session: "session/" + user + "/" + app, Chain: chain, Seq: seq, At: t0.Add(time.Duration(seq) * time.Second),
		User: user, App: app, Kind: KindMove, MoveID: fmt.Sprintf("m%d", seq), Status: status, Region: "bastille",
		FromCloud: "edge-latin", ToCloud: "edge-bastille", Instance: "hello-" + user + "-edge-bastille",
		Endpoint: runtime.Endpoint{URL: "http://127.0.0.1:9000", Host: "127.0.0.1", Port: 9000}, Warm: true, SwitchTime: time.Millisecond}
}

func subscriber(id string, f FilterCriteria) *Subscriber {
	sub := Subscription{SubscriptionType: MobilityProcedureSubscription, CallbackReference: "http://127.0.0.1:1/" + id, FilterCriteria: f}
	if bad := CheckSubscription(&sub, t0); len(bad) > 0 {
		panic(fmt.Sprint(bad))
	}
	return &Subscriber{ID: id, Owner: "svc", Subscription: sub, CreatedAt: t0}
}

// drain delivers everything due to s and returns the notification bodies.
func drain(b *Book, s *Subscriber) []MobilityProcedureNotificationBody {
	var out []MobilityProcedureNotificationBody
	for b.Due(s) {
		sent := b.Next(s, t0)
		for _, send := range sent {
			var n MobilityProcedureNotificationBody
			if err := json.Unmarshal(send.Body, &n); err != nil {
				panic(err)
			}
			out = append(out, n)
		}
		b.Delivered(s, sent, t0)
	}
	return out
}

func TestEachSubscriberHearsWhatItsFilterSaysInOrder(t *testing.T) {
	var b Book
	all := subscriber("all", FilterCriteria{MobilityStatus: []int{1, 2, 3}})
	alice := subscriber("alice", FilterCriteria{AssociateID: []AssociateID{{Type: 1, Value: "alice"}}, MobilityStatus: []int{MoveCompleted}})
	otherApp := subscriber("other", FilterCriteria{AppInstanceID: "web", MobilityStatus: []int{1, 2, 3}})
	dflt := subscriber("default", FilterCriteria{}) // TRIGGERED only, as the spec says
	for _, s := range []*Subscriber{all, alice, otherApp, dflt} {
		b.Subscribe(s)
	}
	b.Add([]Event{moveEvent("c1", 1, "alice", "hello", MoveTriggered), moveEvent("c1", 2, "alice", "hello", MoveCompleted)})
	b.Add([]Event{moveEvent("c2", 1, "bob", "hello", MoveTriggered), moveEvent("c2", 2, "bob", "hello", MoveFailed)})
	// A batch published again adds nothing.
	if n := b.Add([]Event{moveEvent("c1", 1, "alice", "hello", MoveTriggered), moveEvent("c1", 2, "alice", "hello", MoveCompleted)}); n != 0 {
		t.Fatalf("a repeated batch added %d events", n)
	}
	got := func(s *Subscriber) string {
		var parts []string
		for _, n := range drain(&b, s) {
			parts = append(parts, fmt.Sprintf("%s/%s:%d", n.Drift.User, n.Drift.MoveID, n.MobilityStatus))
		}
		return strings.Join(parts, " ")
	}
	for s, want := range map[*Subscriber]string{
		all:      "alice/m1:1 alice/m2:2 bob/m1:1 bob/m2:3",
		alice:    "alice/m2:2",
		otherApp: "",
		dflt:     "alice/m1:1 bob/m1:1",
	} {
		if g := got(s); g != want {
			t.Errorf("%s heard %q, want %q", s.ID, g, want)
		}
	}
	if len(b.Events) != 0 {
		t.Errorf("%d events kept after every subscriber had them", len(b.Events))
	}
}

func TestNotificationShapes(t *testing.T) {
	var b Book
	s := subscriber("s1", FilterCriteria{MobilityStatus: []int{2}})
	s.Subscription.RequestTestNotification = true
	b.Subscribe(s)
	b.Add([]Event{moveEvent("c1", 1, "alice", "hello", MoveCompleted)})
	batch := b.Next(s, t0)
	if len(batch) != 2 {
		t.Fatalf("due: %d notifications, want the test one and the move", len(batch))
	}
	test := batch[0]
	if test.Type != TestNotification || !strings.Contains(string(test.Body), `"notificationType":"TestNotification"`) ||
		!strings.Contains(string(test.Body), `"_links":{"subscription":{"href":"/amsi/v1/subscriptions/s1"}}`) {
		t.Fatalf("test notification %s", test.Body)
	}
	b.Delivered(s, batch[:1], t0)
	send := b.Next(s, t0)[0]
	again := b.Next(s, t0)[0]
	if send.NotificationID != again.NotificationID || send.NotificationID == test.NotificationID {
		t.Errorf("notification ids %q, %q, test %q", send.NotificationID, again.NotificationID, test.NotificationID)
	}
	var n map[string]any
	if err := json.Unmarshal(send.Body, &n); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"notificationType":                     `"MobilityProcedureNotification"`,
		"mobilityStatus":                       `2`,
		"associateId":                          `[{"type":0,"value":"alice"}]`,
		"timeStamp":                            fmt.Sprintf(`{"nanoSeconds":0,"seconds":%d}`, t0.Add(time.Second).Unix()),
		"targetAppInfo":                        `{"appInstanceId":"hello-alice-edge-bastille","commInterface":{"ipAddresses":[{"host":"127.0.0.1","port":9000}]}}`,
		"_links":                               `{"subscription":{"href":"/amsi/v1/subscriptions/s1"}}`,
		"drift.notificationId":                 `"` + send.NotificationID + `"`,
		"drift.appMobilityServiceId":           `"hello.alice"`,
		"drift.status":                         `"COMPLETED"`,
		"drift.warm":                           `true`,
		"drift._links.move.href":               `"/amsi/v1/app_mobility_services/hello.alice/moves/m1"`,
		"drift._links.appMobilityService.href": `"/amsi/v1/app_mobility_services/hello.alice"`,
	}
	for path, w := range want {
		var v any = n
		for _, k := range strings.Split(path, ".") {
			v = v.(map[string]any)[k]
		}
		if g, _ := json.Marshal(v); string(g) != w {
			t.Errorf("%s = %s, want %s", path, g, w)
		}
	}
}

func TestSuspendedOrSlowSubscribersLoseOnlyTheirOwn(t *testing.T) {
	var b Book
	live := subscriber("live", FilterCriteria{MobilityStatus: []int{1, 2, 3}})
	dead := subscriber("dead", FilterCriteria{MobilityStatus: []int{1, 2, 3}})
	b.Subscribe(live)
	b.Subscribe(dead)
	b.Add([]Event{moveEvent("c", 1, "alice", "hello", MoveTriggered)})
	b.Failed(dead, b.Next(dead, t0)[0], "connection refused")
	if dead.Status != Suspended || b.Due(dead) {
		t.Fatalf("dead subscriber %+v still due", dead)
	}
	for i := int64(2); i <= MaxEvents+10; i++ {
		b.Add([]Event{moveEvent("c", i, "alice", "hello", MoveTriggered)})
		drain(&b, live)
	}
	if live.Delivered != MaxEvents+10 || live.Undelivered != 0 {
		t.Errorf("live subscriber: delivered %d, undelivered %d", live.Delivered, live.Undelivered)
	}
	if len(b.Events) > MaxEvents {
		t.Errorf("%d events kept, bound %d", len(b.Events), MaxEvents)
	}
	if dead.Undelivered != 10 {
		t.Errorf("dead subscriber lost %d, want 10", dead.Undelivered)
	}
	b.Resume(dead)
	if got := len(drain(&b, dead)); got != MaxEvents {
		t.Errorf("resumed subscriber got %d, want the %d kept", got, MaxEvents)
	}
}

func TestExpiryAndCheck(t *testing.T) {
	var b Book
	s := subscriber("s", FilterCriteria{})
	s.Subscription.ExpiryDeadline = Stamp(t0.Add(time.Minute))
	b.Subscribe(s)
	b.Expire(s)
	b.Add([]Event{moveEvent("c", 1, "alice", "hello", MoveTriggered)})
	send := b.Next(s, t0.Add(time.Minute))[0]
	if send.Type != ExpiryNotification || !strings.Contains(string(send.Body), fmt.Sprintf(`"expiryDeadline":{"seconds":%d`, t0.Add(time.Minute).Unix())) {
		t.Fatalf("expiry notification %s", send.Body)
	}
	b.Delivered(s, []Send{send}, t0)
	if b.Due(s) {
		t.Error("an expired subscription still hears of events")
	}

	bad := Subscription{SubscriptionType: AdjacentAppInfoSubscription, WebsockNotifConfig: json.RawMessage(`{}`),
		FilterCriteria: FilterCriteria{MobilityStatus: []int{7}, AppInstanceID: "Bad_App"}, ExpiryDeadline: Stamp(t0.Add(-time.Second))}
	var params []string
	for _, e := range CheckSubscription(&bad, t0) {
		params = append(params, e.Param)
	}
	if got := strings.Join(params, ","); got != "filterCriteria.mobilityStatus,filterCriteria.appInstanceId,websockNotifConfig,callbackReference,expiryDeadline" {
		t.Errorf("bad fields %s", got)
	}
}

func TestRegistrationIDs(t *testing.T) {
	for _, c := range []struct{ user, app string }{{"alice", "hello"}, {"zoë", "web"}, {"bob.smith", "a-1"}} {
		u, a, err := ParseRegistrationID(RegistrationID(c.user, c.app))
		if err != nil || u != c.user || a != c.app {
			t.Errorf("round trip of %v: %q %q %v", c, u, a, err)
		}
	}
	for _, id := range []string{"hello", "hello..", "hello.", "Hello.alice", "hello.a/b"} {
		if _, _, err := ParseRegistrationID(id); err == nil {
			t.Errorf("%q accepted", id)
		}
	}
	if got := RegistrationHref("hello.zoë"); got != "/amsi/v1/app_mobility_services/hello.zo%C3%AB" {
		t.Errorf("href %s", got)
	}
}
