package mecapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/edgedrift/drift/internal/runtime"
)

// The one subscription and notification type of the API.
const (
	SubscriptionType = "MobilityProcedureSubscription"
	NotificationType = "MobilityProcedureNotification"
)

// SubscriptionRequest is the body of POST /subscriptions.
type SubscriptionRequest struct {
	SubscriptionType  string `json:"subscriptionType,omitempty"` // "" or MobilityProcedureSubscription
	CallbackReference string `json:"callbackReference"`          // absolute http(s) URL
	Filter            Filter `json:"filter"`
}

// Filter picks the moves a subscription hears of; an empty field matches
// every value.
type Filter struct {
	User string `json:"user,omitempty"`
	App  string `json:"app,omitempty"`
}

func (f Filter) matches(user, app string) bool {
	return (f.User == "" || f.User == user) && (f.App == "" || f.App == app)
}

// Subscription is the subscription resource.
type Subscription struct {
	ID                string `json:"id"`
	SubscriptionType  string `json:"subscriptionType"`
	CallbackReference string `json:"callbackReference"`
	Filter            Filter `json:"filter"`
	Links             Links  `json:"_links"`
}

// Notification is what a callback receives when a move asked through this
// API completes or fails.
type Notification struct {
	NotificationType string            `json:"notificationType"` // MobilityProcedureNotification
	SubscriptionID   string            `json:"subscriptionId"`
	MoveID           string            `json:"moveId"`
	User             string            `json:"user"`
	App              string            `json:"app"`
	Status           string            `json:"status"` // COMPLETED or FAILED
	Region           string            `json:"region"`
	Cloud            string            `json:"cloud,omitempty"`
	Endpoint         *runtime.Endpoint `json:"endpoint,omitempty"`
	Warm             *bool             `json:"warm,omitempty"`
	SwitchTime       string            `json:"switchTime,omitempty"`
	Reason           string            `json:"reason,omitempty"`
	TimeStamp        time.Time         `json:"timeStamp"`
	Links            Links             `json:"_links"` // subscription, move, session
}

// subStore keeps the subscriptions in memory, at most max.
type subStore struct {
	mu    sync.Mutex
	max   int
	byID  map[string]Subscription
	order []string
}

func newSubStore(max int) *subStore { return &subStore{max: max, byID: map[string]Subscription{}} }

func (s *subStore) add(sub Subscription) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.byID) >= s.max {
		return false
	}
	s.byID[sub.ID] = sub
	s.order = append(s.order, sub.ID)
	return true
}

func (s *subStore) get(id string) (Subscription, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub, ok := s.byID[id]
	return sub, ok
}

func (s *subStore) remove(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.byID[id]; !ok {
		return false
	}
	delete(s.byID, id)
	for i, o := range s.order {
		if o == id {
			s.order = append(s.order[:i], s.order[i+1:]...)
			break
		}
	}
	return true
}

// list returns the subscriptions matching keep, oldest first.
func (s *subStore) list(keep func(Subscription) bool) []Subscription {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []Subscription{}
	for _, id := range s.order {
		if sub := s.byID[id]; keep == nil || keep(sub) {
			out = append(out, sub)
		}
	}
	return out
}

func (a *API) subscribe(w http.ResponseWriter, r *http.Request) {
	var req SubscriptionRequest
	if p := decode(w, r, &req); p != nil {
		writeProblem(w, r, *p)
		return
	}
	var bad []InvalidParam
	add := func(param, format string, args ...any) {
		bad = append(bad, InvalidParam{Param: param, Reason: fmt.Sprintf(format, args...)})
	}
	if req.SubscriptionType != "" && req.SubscriptionType != SubscriptionType {
		add("subscriptionType", "%q: want %s", req.SubscriptionType, SubscriptionType)
	}
	if reason := a.checkCallback(req.CallbackReference); reason != "" {
		add("callbackReference", "%s", reason)
	}
	if req.Filter.User != "" {
		if reason := checkUser(req.Filter.User); reason != "" {
			add("filter.user", "%s", reason)
		}
	}
	if req.Filter.App != "" {
		if err := runtime.ValidateName(req.Filter.App); err != nil {
			add("filter.app", "%q is not an app name (a DNS-1035 label)", req.Filter.App)
		}
	}
	if len(bad) > 0 {
		writeProblem(w, r, invalid(bad))
		return
	}
	id := newID("sub-")
	sub := Subscription{
		ID: id, SubscriptionType: SubscriptionType, CallbackReference: req.CallbackReference, Filter: req.Filter,
		Links: Links{"self": {Href: subscriptionHref(id)}},
	}
	if !a.subs.add(sub) {
		writeProblem(w, r, problem(http.StatusServiceUnavailable, typeLimit,
			fmt.Sprintf("this API process holds at most %d subscriptions; DELETE one first", a.opts.MaxSubscriptions)))
		return
	}
	w.Header().Set("Location", sub.Links["self"].Href)
	writeJSON(w, http.StatusCreated, sub)
}

// checkCallback says what is wrong with a callback URL, or "".
func (a *API) checkCallback(ref string) string {
	if ref == "" {
		return "required"
	}
	u, err := url.Parse(ref)
	switch {
	case err != nil:
		return fmt.Sprintf("not a URL: %v", err)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Sprintf("%q: want an absolute http or https URL", ref)
	case u.Host == "" || u.Hostname() == "":
		return fmt.Sprintf("%q names no host", ref)
	}
	if a.opts.CheckCallback != nil {
		if err := a.opts.CheckCallback(u); err != nil {
			return fmt.Sprintf("%q is not allowed: %v", ref, err)
		}
	}
	return ""
}

func (a *API) listSubscriptions(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.subs.list(nil))
}

func (a *API) getSubscription(w http.ResponseWriter, r *http.Request) {
	sub, ok := a.subs.get(r.PathValue("id"))
	if !ok {
		writeProblem(w, r, problem(http.StatusNotFound, typeNotFound, fmt.Sprintf("no subscription %q in this API process", r.PathValue("id"))))
		return
	}
	writeJSON(w, http.StatusOK, sub)
}

func (a *API) unsubscribe(w http.ResponseWriter, r *http.Request) {
	if !a.subs.remove(r.PathValue("id")) {
		writeProblem(w, r, problem(http.StatusNotFound, typeNotFound, fmt.Sprintf("no subscription %q in this API process", r.PathValue("id"))))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// NotifyOptions tune notification delivery.
type NotifyOptions struct {
	// Timeout bounds one POST to a callback; 0 means 5s.
	Timeout time.Duration
	// Retries after a failed first attempt (network error, 408, 429, 5xx;
	// other answers are final); 0 means 3, negative means none.
	Retries int
	// Backoff is the wait before the first retry, doubled before each next
	// one; 0 means 500ms.
	Backoff time.Duration
	// Queue bounds the notifications waiting for a sender; when it is full
	// new ones are dropped and logged. 0 means 256.
	Queue int
	// Workers is how many notifications are sent at once; 0 means 4.
	Workers int
	// Client sends them; nil means one that follows no redirect.
	Client *http.Client
}

// delivery is one notification for one subscription.
type delivery struct {
	subID    string
	callback string
	body     []byte
}

// notifier sends notifications from a bounded queue, off the request path.
type notifier struct {
	opts  NotifyOptions
	subs  *subStore
	log   *slog.Logger
	ctx   context.Context
	queue chan delivery
	wg    sync.WaitGroup
}

func newNotifier(ctx context.Context, opts NotifyOptions, subs *subStore, log *slog.Logger) *notifier {
	opts.Timeout = orDefault(opts.Timeout, 5*time.Second)
	opts.Backoff = orDefault(opts.Backoff, 500*time.Millisecond)
	opts.Queue = orDefault(opts.Queue, 256)
	opts.Workers = orDefault(opts.Workers, 4)
	switch {
	case opts.Retries == 0:
		opts.Retries = 3
	case opts.Retries < 0:
		opts.Retries = 0
	}
	if opts.Client == nil {
		opts.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	n := &notifier{opts: opts, subs: subs, log: log, ctx: ctx, queue: make(chan delivery, opts.Queue)}
	for range opts.Workers {
		n.wg.Add(1)
		go n.run()
	}
	return n
}

// wait returns once the workers have stopped (the context is done).
func (n *notifier) wait() { n.wg.Wait() }

// publish queues a notification of m for every matching subscription; it
// never blocks.
func (n *notifier) publish(m Move) {
	subs := n.subs.list(func(s Subscription) bool { return s.Filter.matches(m.User, m.App) })
	for _, sub := range subs {
		body, err := json.Marshal(Notification{
			NotificationType: NotificationType, SubscriptionID: sub.ID, MoveID: m.ID,
			User: m.User, App: m.App, Status: m.Status, Region: m.Region, Cloud: m.Cloud,
			Endpoint: m.Endpoint, Warm: m.Warm, SwitchTime: m.SwitchTime, Reason: m.Reason,
			TimeStamp: m.FinishedAt,
			Links: Links{
				"subscription": {Href: subscriptionHref(sub.ID)},
				"move":         m.Links["self"],
				"session":      m.Links["session"],
			},
		})
		if err != nil {
			n.log.Error("encode notification", "error", err)
			continue
		}
		select {
		case n.queue <- delivery{subID: sub.ID, callback: sub.CallbackReference, body: body}:
		default:
			n.log.Warn("notification queue full: dropped", "subscription", sub.ID, "move", m.ID)
		}
	}
}

func (n *notifier) run() {
	defer n.wg.Done()
	for {
		select {
		case <-n.ctx.Done():
			return
		case d := <-n.queue:
			n.deliver(d)
		}
	}
}

// deliver POSTs d with retries and backoff, and gives up when the
// subscription is deleted meanwhile.
func (n *notifier) deliver(d delivery) {
	backoff := n.opts.Backoff
	for attempt := 0; ; attempt++ {
		if _, ok := n.subs.get(d.subID); !ok {
			return
		}
		retry, err := n.post(d)
		if err == nil {
			return
		}
		if !retry || attempt >= n.opts.Retries {
			n.log.Warn("notification not delivered", "subscription", d.subID, "callback", d.callback, "attempts", attempt+1, "error", err)
			return
		}
		t := time.NewTimer(backoff)
		select {
		case <-n.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff *= 2
	}
}

// post sends one attempt; retry says whether another may succeed.
func (n *notifier) post(d delivery) (retry bool, err error) {
	ctx, cancel := context.WithTimeout(n.ctx, n.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.callback, bytes.NewReader(d.body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "drift-amsi")
	resp, err := n.opts.Client.Do(req)
	if err != nil {
		return n.ctx.Err() == nil, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return false, nil
	case resp.StatusCode == http.StatusRequestTimeout, resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode >= 500:
		return true, fmt.Errorf("callback answered %s", resp.Status)
	}
	return false, fmt.Errorf("callback answered %s", resp.Status)
}
