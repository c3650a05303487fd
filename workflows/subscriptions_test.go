package workflows

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/edgedrift/drift/activities"
	"github.com/edgedrift/drift/internal/amsi"
	"github.com/edgedrift/drift/internal/names"
)

// callbacks fakes the subscribers' endpoints: what each URL received, and
// which answer nothing.
type callbacks struct {
	mu      sync.Mutex
	got     map[string][]amsi.Send
	dead    map[string]bool
	batches []int // the size of each delivery asked for
	takes   int   // when > 0, a delivery takes at most this many (its time ran out)
}

func (c *callbacks) deliver(_ context.Context, batch []amsi.Send) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.batches = append(c.batches, len(batch))
	if c.takes > 0 && len(batch) > c.takes {
		batch = batch[:c.takes]
	}
	for _, s := range batch {
		if c.dead[s.URL] {
			return 0, fmt.Errorf("dial %s: connection refused", s.URL)
		}
		c.got[s.URL] = append(c.got[s.URL], s)
	}
	return len(batch), nil
}

func (c *callbacks) lines(url string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, s := range c.got[url] {
		var n struct {
			NotificationType string
			MobilityStatus   int
			Drift            amsi.Notice
		}
		_ = json.Unmarshal(s.Body, &n)
		out = append(out, strings.TrimSpace(fmt.Sprintf("%s %s %s", n.NotificationType, n.Drift.MoveID, n.Drift.Status)))
	}
	return out
}

type subsTest struct {
	testsuite.WorkflowTestSuite
	env *testsuite.TestWorkflowEnvironment
	cb  *callbacks
	t   *testing.T
	n   int
}

func newSubsTest(t *testing.T) *subsTest {
	st := &subsTest{t: t, cb: &callbacks{got: map[string][]amsi.Send{}, dead: map[string]bool{}}}
	st.env = st.NewTestWorkflowEnvironment()
	st.env.RegisterActivity(&activities.Notifier{})
	st.env.OnActivity(notifyActs.DeliverNotifications, mock.Anything, mock.Anything).Return(st.cb.deliver)
	return st
}

func (st *subsTest) at(d time.Duration, fn func()) { st.env.RegisterDelayedCallback(fn, d) }

func (st *subsTest) update(name string, arg any, check func(any, error)) {
	st.n++
	st.env.UpdateWorkflow(name, fmt.Sprint(name, st.n), &testsuite.TestUpdateCallback{
		OnReject: func(err error) { check(nil, err) }, OnAccept: func() {},
		OnComplete: func(res any, err error) { check(res, err) },
	}, arg)
}

func (st *subsTest) subscribe(id, owner string, sub amsi.Subscription) {
	st.update(names.SubscribeUpdate, SubscribeRequest{ID: id, Owner: owner, Subscription: sub}, func(_ any, err error) {
		if err != nil {
			st.t.Errorf("subscribe %s: %v", id, err)
		}
	})
}

func (st *subsTest) list() map[string]amsi.Subscription {
	v, err := st.env.QueryWorkflow(names.SubscriptionsQuery)
	if err != nil {
		st.t.Fatal(err)
	}
	var infos []SubscriptionInfo
	if err := v.Get(&infos); err != nil {
		st.t.Fatal(err)
	}
	out := map[string]amsi.Subscription{}
	for _, in := range infos {
		out[in.ID] = in.Subscription
	}
	return out
}

func mobility(url string, statuses ...int) amsi.Subscription {
	return amsi.Subscription{SubscriptionType: amsi.MobilityProcedureSubscription, CallbackReference: url,
		FilterCriteria: amsi.FilterCriteria{MobilityStatus: statuses}}
}

func events(chain string, from int64, moves ...string) []amsi.Event {
	var out []amsi.Event
	for i, m := range moves {
		id, status, _ := strings.Cut(m, ":")
		st := map[string]int{"T": amsi.MoveTriggered, "C": amsi.MoveCompleted, "F": amsi.MoveFailed}[status]
		out = append(out, amsi.Event{Session: "session/alice/hello", Chain: chain, Seq: from + int64(i), User: "alice", App: "hello",
			Kind: amsi.KindMove, MoveID: id, Status: st})
	}
	return out
}

// Every subscriber hears what it subscribed to, in order, once; a
// subscriber that does not answer is suspended and delays nobody; a PUT
// resumes it with what it missed; DELETE is for the owner only.
func TestSubscriptionsDeliverInOrderAndIsolateDeadSubscribers(t *testing.T) {
	st := newSubsTest(t)
	st.cb.dead["http://dead"] = true
	st.at(0, func() {
		st.subscribe("live", "svc-a", mobility("http://live", 1, 2, 3))
		st.subscribe("dead", "svc-b", mobility("http://dead", 1, 2, 3))
		st.subscribe("done", "svc-a", mobility("http://done", 2))
	})
	st.at(time.Second, func() {
		st.env.SignalWorkflow(names.EventsSignal, events("c1", 1, "m1:T", "m1:C"))
		st.env.SignalWorkflow(names.EventsSignal, events("c1", 1, "m1:T", "m1:C", "m2:T")) // sent again, and one more
	})
	st.at(10*time.Minute, func() {
		subs := st.list()
		if d := subs["dead"].Drift; d.Status != amsi.Suspended || d.Failed != 1 || !strings.Contains(d.LastError, "connection refused") || d.Pending != 3 {
			t.Errorf("dead subscriber %+v", d)
		}
		if d := subs["live"].Drift; d.Status != amsi.Active || d.Delivered != 3 || d.Pending != 0 {
			t.Errorf("live subscriber %+v", d)
		}
		st.cb.dead["http://dead"] = false
		st.update(names.UnsubscribeUpdate, UnsubscribeRequest{ID: "dead", Owner: "svc-a"}, func(_ any, err error) {
			if !isErrType(err, ErrTypeNoSuchSubscription) {
				t.Errorf("another client deleted a subscription: %v", err)
			}
		})
		st.update(names.ResubscribeUpdate, SubscribeRequest{ID: "dead", Owner: "svc-b", Subscription: mobility("http://dead", 1, 2, 3)}, func(_ any, err error) {
			if err != nil {
				t.Errorf("resubscribe: %v", err)
			}
		})
	})
	st.at(20*time.Minute, func() {
		st.update(names.UnsubscribeUpdate, UnsubscribeRequest{ID: "dead", Owner: "svc-b"}, func(_ any, err error) {
			if err != nil {
				t.Errorf("unsubscribe: %v", err)
			}
		})
	})
	st.at(21*time.Minute, func() {
		if subs := st.list(); len(subs) != 2 || subs["dead"].SubscriptionType != "" {
			t.Errorf("subscriptions after DELETE %v", subs)
		}
		st.env.CancelWorkflow()
	})
	st.env.ExecuteWorkflow(MobilitySubscriptions, activities.SubscriptionsInput{})
	want := []string{"MobilityProcedureNotification m1 TRIGGERED", "MobilityProcedureNotification m1 COMPLETED", "MobilityProcedureNotification m2 TRIGGERED"}
	for url, w := range map[string][]string{"http://live": want, "http://dead": want, "http://done": want[1:2]} {
		if got := st.cb.lines(url); !slices.Equal(got, w) {
			t.Errorf("%s got %q, want %q", url, got, w)
		}
	}
	// One event has one notification id per subscription.
	if ids := st.cb.got["http://live"]; len(ids) != 3 || ids[0].NotificationID == st.cb.got["http://dead"][0].NotificationID {
		t.Errorf("notification ids not per subscription: %v", ids)
	}
}

// A test notification goes first; an expired subscription gets its
// ExpiryNotification and is gone.
func TestSubscriptionTestAndExpiryNotifications(t *testing.T) {
	st := newSubsTest(t)
	start := st.env.Now()
	st.at(0, func() {
		sub := mobility("http://cb", 1)
		sub.RequestTestNotification = true
		sub.ExpiryDeadline = amsi.Stamp(start.Add(time.Hour))
		st.subscribe("s1", "svc", sub)
	})
	st.at(time.Minute, func() { st.env.SignalWorkflow(names.EventsSignal, events("c1", 1, "m1:T")) })
	st.at(2*time.Hour, func() {
		if subs := st.list(); len(subs) != 0 {
			t.Errorf("expired subscription still listed: %+v", subs)
		}
		st.env.SignalWorkflow(names.EventsSignal, events("c1", 2, "m2:T"))
	})
	st.at(3*time.Hour, func() { st.env.CancelWorkflow() })
	st.env.ExecuteWorkflow(MobilitySubscriptions, activities.SubscriptionsInput{})
	want := []string{"TestNotification", "MobilityProcedureNotification m1 TRIGGERED", "ExpiryNotification"}
	if got := st.cb.lines("http://cb"); !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// What is due goes in batches of at most amsi.MaxBatch; a delivery that
// took only part of its batch goes on from there, in order, with nothing
// twice.
func TestSubscriptionsDeliverInBoundedBatches(t *testing.T) {
	st := newSubsTest(t)
	st.cb.takes = 7
	var moves []string
	var want []string
	for i := range 3 * amsi.MaxBatch {
		moves = append(moves, fmt.Sprintf("m%d:T", i))
		want = append(want, fmt.Sprintf("MobilityProcedureNotification m%d TRIGGERED", i))
	}
	st.at(0, func() { st.subscribe("s", "svc", mobility("http://cb", 1)) })
	st.at(time.Second, func() { st.env.SignalWorkflow(names.EventsSignal, events("c1", 1, moves...)) })
	st.at(time.Hour, func() {
		if d := st.list()["s"].Drift; d.Delivered != int64(len(want)) || d.Pending != 0 {
			t.Errorf("subscriber %+v", d)
		}
		st.env.CancelWorkflow()
	})
	st.env.ExecuteWorkflow(MobilitySubscriptions, activities.SubscriptionsInput{})
	if got := st.cb.lines("http://cb"); !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	for _, n := range st.cb.batches {
		if n > amsi.MaxBatch {
			t.Errorf("a delivery of %d notifications (at most %d)", n, amsi.MaxBatch)
		}
	}
}

// Continue-as-new carries the subscriptions, their cursors and the events
// some subscriber still waits for.
func TestSubscriptionsContinueAsNewCarriesTheBook(t *testing.T) {
	st := newSubsTest(t)
	st.cb.dead["http://dead"] = true
	st.at(0, func() {
		st.subscribe("live", "svc", mobility("http://live", 1))
		st.subscribe("dead", "svc", mobility("http://dead", 1))
	})
	st.at(time.Second, func() { st.env.SignalWorkflow(names.EventsSignal, events("c1", 1, "m1:T", "m2:T")) })
	st.at(10*time.Minute, func() { st.env.SignalWorkflow(names.EventsSignal, events("c1", 3, "m3:T")) })
	st.at(11*time.Minute, func() {
		st.env.SetContinueAsNewSuggested(true)
		st.env.SignalWorkflow(names.EventsSignal, events("c1", 3, "m3:T")) // wakes it; seen before
	})
	st.env.ExecuteWorkflow(MobilitySubscriptions, activities.SubscriptionsInput{})
	var can *workflow.ContinueAsNewError
	if err := st.env.GetWorkflowError(); !errors.As(err, &can) {
		t.Fatalf("want continue-as-new, got %v", err)
	}
	var next activities.SubscriptionsInput
	if err := decodePayloads(can, &next); err != nil {
		t.Fatal(err)
	}
	b := next.Book
	dead := b.Find("dead")
	if len(b.Subscribers) != 2 || dead == nil || dead.Status != amsi.Suspended || b.Pending(dead) != 3 || len(b.Seen) != 1 || b.Seen[0].Seq != 3 {
		t.Fatalf("carried book %+v", b)
	}
}

func TestSubscribeRejectsBadRequests(t *testing.T) {
	st := newSubsTest(t)
	st.at(0, func() {
		for name, req := range map[string]SubscribeRequest{
			"no owner":     {ID: "x", Subscription: mobility("http://cb", 1)},
			"bad status":   {ID: "y", Owner: "svc", Subscription: mobility("http://cb", 9)},
			"no callback":  {ID: "z", Owner: "svc", Subscription: mobility("", 1)},
			"unknown type": {ID: "w", Owner: "svc", Subscription: amsi.Subscription{SubscriptionType: "Other", CallbackReference: "http://cb"}},
		} {
			st.update(names.SubscribeUpdate, req, func(_ any, err error) {
				var appErr *temporal.ApplicationError
				if !errors.As(err, &appErr) || appErr.Type() != ErrTypeInvalidSubscription {
					t.Errorf("%s: %v", name, err)
				}
			})
		}
	})
	st.at(time.Minute, func() {
		if subs := st.list(); len(subs) != 0 {
			t.Errorf("bad requests made %v", subs)
		}
		st.env.CancelWorkflow()
	})
	st.env.ExecuteWorkflow(MobilitySubscriptions, activities.SubscriptionsInput{})
}
