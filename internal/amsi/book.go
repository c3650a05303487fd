package amsi

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/runtime"
)

// Bounds of a Book: what it carries across continue-as-new stays well
// inside Temporal's payload limit.
const (
	MaxSubscriptions = 500  // subscriptions of a namespace
	MaxEvents        = 1000 // events kept for subscribers that are behind
	maxChains        = 2000 // sessions whose last event number is remembered
)

// Book is every subscription of a namespace, the events not yet delivered
// to all of them, and how far each subscriber got: the state of the
// MobilitySubscriptions workflow, carried across continue-as-new.
//
// The events form one log; each subscriber has a cursor into it and is
// always positioned at the next event it hears of (or at the end), so what
// is due to it is plain to see. Deliveries to one subscriber go in log
// order, one at a time; a subscriber that is behind (suspended, or slow)
// never holds up another. The log is trimmed below the slowest cursor and
// kept at MaxEvents: a subscriber so far behind that an event it hears of
// is trimmed counts it as undelivered.
type Book struct {
	Subscribers []*Subscriber `json:"subscribers,omitempty"`
	Events      []Event       `json:"events,omitempty"`
	First       int64         `json:"first"` // the log position of Events[0]
	// Seen is the last event number taken from each recent session chain,
	// most recently updated last: a batch sent again (a retried publish, a
	// session that continued as new before its publish completed) adds
	// nothing twice.
	Seen []Mark `json:"seen,omitempty"`
}

// Mark is the last event number taken from one session chain.
type Mark struct {
	Chain string `json:"chain"`
	Seq   int64  `json:"seq"`
}

// Subscriber is one subscription and its delivery state.
type Subscriber struct {
	ID           string       `json:"id"`
	Owner        string       `json:"owner"` // the API client that made it
	Subscription Subscription `json:"subscription"`
	Status       string       `json:"status"`
	Cursor       int64        `json:"cursor"` // log position of the next event due
	// Special are notifications due before any event: a TestNotification,
	// an ExpiryNotification.
	Special     []string  `json:"special,omitempty"`
	Delivered   int64     `json:"delivered"`
	Failed      int64     `json:"failed"`
	Undelivered int64     `json:"undelivered"`
	LastError   string    `json:"lastError,omitempty"`
	CreatedAt   time.Time `json:"createdAt"`
	DeliveredAt time.Time `json:"deliveredAt,omitzero"`
}

// End is the log position after the last event.
func (b *Book) End() int64 { return b.First + int64(len(b.Events)) }

// Find returns the subscriber with id, or nil.
func (b *Book) Find(id string) *Subscriber {
	for _, s := range b.Subscribers {
		if s.ID == id {
			return s
		}
	}
	return nil
}

// Subscribe adds s, hearing of events from now on; a TestNotification
// goes first when asked for.
func (b *Book) Subscribe(s *Subscriber) {
	s.Status, s.Cursor = Active, b.End()
	if s.Subscription.RequestTestNotification {
		s.Special = append(s.Special, TestNotification)
	}
	b.Subscribers = append(b.Subscribers, s)
}

// Remove drops the subscriber with id; it reports whether there was one.
func (b *Book) Remove(id string) bool {
	n := len(b.Subscribers)
	b.Subscribers = slices.DeleteFunc(b.Subscribers, func(s *Subscriber) bool { return s.ID == id })
	b.trim()
	return len(b.Subscribers) < n
}

// Add appends the events not seen before, in order, and moves every
// subscriber waiting at the end to the first new event it hears of. It
// returns how many were new.
func (b *Book) Add(events []Event) int {
	added := 0
	for _, e := range events {
		if b.seen(e.Chain) >= e.Seq {
			continue
		}
		b.mark(e.Chain, e.Seq)
		b.Events = append(b.Events, e)
		added++
	}
	for _, s := range b.Subscribers {
		b.skip(s)
	}
	b.trim()
	return added
}

func (b *Book) seen(chain string) int64 {
	for i := len(b.Seen) - 1; i >= 0; i-- {
		if b.Seen[i].Chain == chain {
			return b.Seen[i].Seq
		}
	}
	return 0
}

func (b *Book) mark(chain string, seq int64) {
	b.Seen = slices.DeleteFunc(b.Seen, func(m Mark) bool { return m.Chain == chain })
	b.Seen = append(b.Seen, Mark{Chain: chain, Seq: seq})
	if len(b.Seen) > maxChains {
		b.Seen = slices.Clone(b.Seen[len(b.Seen)-maxChains:])
	}
}

// skip moves s past the events it does not hear of.
func (b *Book) skip(s *Subscriber) {
	for s.Cursor < b.End() && !s.Hears(b.Events[s.Cursor-b.First]) {
		s.Cursor++
	}
}

// trim drops the events every subscriber is past, and the oldest beyond
// MaxEvents, counting those a subscriber still awaited as undelivered.
func (b *Book) trim() {
	low := b.End()
	for _, s := range b.Subscribers {
		low = min(low, s.Cursor)
	}
	low = max(low, b.End()-MaxEvents)
	if low <= b.First {
		return
	}
	for _, s := range b.Subscribers {
		for ; s.Cursor < low; s.Cursor++ {
			if s.Hears(b.Events[s.Cursor-b.First]) {
				s.Undelivered++
			}
		}
		b.skip(s)
	}
	b.Events = slices.Clone(b.Events[low-b.First:])
	b.First = low
}

// Due reports whether something waits for s to be delivered.
func (b *Book) Due(s *Subscriber) bool {
	return len(s.Special) > 0 || (s.Status == Active && s.Cursor < b.End())
}

// Pending counts what waits for s.
func (b *Book) Pending(s *Subscriber) int64 {
	n := int64(len(s.Special))
	for p := s.Cursor; p < b.End(); p++ {
		if s.Hears(b.Events[p-b.First]) {
			n++
		}
	}
	return n
}

// Send is one notification to deliver: the activity's input.
type Send struct {
	Subscription   string          `json:"subscription"`
	URL            string          `json:"url"`
	NotificationID string          `json:"notificationId"`
	Type           string          `json:"type"` // the notificationType
	Body           json.RawMessage `json:"body"`
	// Position is the event's log position (-1 for a special notification).
	Position int64 `json:"position"`
}

// MaxBatch bounds the notifications one delivery takes to a subscriber.
const MaxBatch = 20

// Next is what is due to s (Due must hold), in order, at most MaxBatch
// notifications, built at now.
func (b *Book) Next(s *Subscriber, now time.Time) []Send {
	var out []Send
	for _, kind := range s.Special {
		out = append(out, b.special(s, kind, now))
	}
	if s.Status != Active {
		return out
	}
	for p := s.Cursor; p < b.End() && len(out) < MaxBatch; p++ {
		e := b.Events[p-b.First]
		if !s.Hears(e) {
			continue
		}
		id := notificationID(s.ID, e.ID())
		send := Send{Subscription: s.ID, URL: s.Subscription.CallbackReference, NotificationID: id, Position: p}
		switch e.Kind {
		case KindAdjacent:
			send.Type = AdjacentAppInfoNotification
			send.Body = mustJSON(adjacentNotification(s, e, id))
		default:
			send.Type = MobilityProcedureNotification
			send.Body = mustJSON(moveNotification(s, e, id))
		}
		out = append(out, send)
	}
	return out
}

// Delivered records that sent (a prefix of what Next gave) reached s.
func (b *Book) Delivered(s *Subscriber, sent []Send, at time.Time) {
	for _, send := range sent {
		s.Delivered++
		s.DeliveredAt = at
		s.LastError = ""
		if send.Position < 0 {
			s.Special = s.Special[1:]
		} else if send.Position >= s.Cursor {
			s.Cursor = send.Position + 1
		}
	}
	b.skip(s)
	b.trim()
}

// Failed records that send could not reach s after every retry: s is
// suspended until a PUT resumes it (a test or expiry notification is given
// up instead).
func (b *Book) Failed(s *Subscriber, send Send, why string) {
	s.Failed++
	s.LastError = why
	if send.Position < 0 {
		s.Special = s.Special[1:]
		return
	}
	s.Status = Suspended
	b.trim()
}

// Resume makes a suspended subscriber active again.
func (b *Book) Resume(s *Subscriber) {
	if s.Status == Suspended {
		s.Status = Active
	}
	b.skip(s)
}

// Expire marks s expired: only its ExpiryNotification is still due.
func (b *Book) Expire(s *Subscriber) {
	s.Status = Expired
	s.Special = append(s.Special, ExpiryNotification)
	b.trim()
}

// View is the subscription as the API shows it, with its delivery state.
func (b *Book) View(s *Subscriber) Subscription {
	sub := s.Subscription
	sub.Links = &SubscriptionLinks{Self: LinkType{Href: SubscriptionHref(s.ID)}}
	sub.Drift = &Delivery{
		Status: s.Status, Delivered: s.Delivered, Failed: s.Failed, Undelivered: s.Undelivered,
		Pending: b.Pending(s), LastError: s.LastError, CreatedAt: s.CreatedAt, DeliveredAt: s.DeliveredAt,
	}
	return sub
}

// Hears reports whether the subscription is told of e.
func (s *Subscriber) Hears(e Event) bool {
	f := s.Subscription.FilterCriteria
	switch {
	case s.Status == Expired:
		return false
	case e.Kind == KindMove && s.Subscription.SubscriptionType != MobilityProcedureSubscription,
		e.Kind == KindAdjacent && s.Subscription.SubscriptionType != AdjacentAppInfoSubscription:
		return false
	case f.AppInstanceID != "" && f.AppInstanceID != e.App:
		return false
	case len(f.AssociateID) > 0 && !slices.ContainsFunc(f.AssociateID, func(a AssociateID) bool { return a.Value == e.User }):
		return false
	case e.Kind == KindMove && !slices.Contains(f.MobilityStatus, e.Status):
		return false
	}
	return true
}

// notificationID is the same for every attempt to deliver one event to
// one subscription.
func notificationID(sub, event string) string {
	sum := sha256.Sum256([]byte(sub + "\x00" + event))
	return "n-" + hex.EncodeToString(sum[:12])
}

// mustJSON encodes the plain structs of notifications: the same value
// gives the same bytes (json's reflection is what workflowcheck objects to).
//
//workflowcheck:ignore
func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("amsi: encode %T: %v", v, err)) // only plain structs are encoded
	}
	return b
}

func links(sub string) NotificationLinks {
	return NotificationLinks{Subscription: LinkType{Href: SubscriptionHref(sub)}}
}

func associate(e Event) []AssociateID {
	return []AssociateID{{Type: e.AssociateType, Value: e.User}}
}

// commInterface is where ep answers, or nil when it names no host.
func commInterface(ep runtime.Endpoint) *CommunicationInterface {
	if ep.Host == "" {
		return nil
	}
	return &CommunicationInterface{IPAddresses: []IPAddress{{Host: ep.Host, Port: ep.Port}}}
}

func moveNotification(s *Subscriber, e Event, id string) MobilityProcedureNotificationBody {
	reg := RegistrationID(e.User, e.App)
	n := MobilityProcedureNotificationBody{
		NotificationType: MobilityProcedureNotification,
		TimeStamp:        Stamp(e.At),
		AssociateID:      associate(e),
		MobilityStatus:   e.Status,
		Links:            links(s.ID),
		Drift: Notice{
			NotificationID: id, AppMobilityServiceID: reg, User: e.User, App: e.App, MoveID: e.MoveID,
			Status: StatusName(e.Status), Region: e.Region, FromCloud: e.FromCloud, ToCloud: e.ToCloud,
			Error: e.Error, Reason: e.Reason, ContextTransferState: e.ContextTransferState,
			Links: map[string]LinkType{"move": {Href: MoveHref(reg, e.MoveID)}, "appMobilityService": {Href: RegistrationHref(reg)}},
		},
	}
	if e.Status == MoveCompleted {
		warm := e.Warm
		n.Drift.Warm, n.Drift.SwitchTime, n.Drift.Endpoint = &warm, e.SwitchTime.String(), e.Endpoint.URL
		n.TargetAppInfo = &TargetAppInfo{AppInstanceID: e.Instance, CommInterface: commInterface(e.Endpoint)}
	} else if e.Instance != "" {
		n.TargetAppInfo = &TargetAppInfo{AppInstanceID: e.Instance}
	}
	return n
}

func adjacentNotification(s *Subscriber, e Event, id string) AdjacentAppInfoNotificationBody {
	reg := RegistrationID(e.User, e.App)
	n := AdjacentAppInfoNotificationBody{
		NotificationType: AdjacentAppInfoNotification,
		TimeStamp:        Stamp(e.At),
		AssociateID:      associate(e),
		AdjacentAppInfo:  []AdjacentAppInfo{},
		Links:            links(s.ID),
		Drift: Notice{NotificationID: id, AppMobilityServiceID: reg, User: e.User, App: e.App,
			Links: map[string]LinkType{"appMobilityService": {Href: RegistrationHref(reg)}}},
	}
	for _, in := range e.Adjacent {
		info := AdjacentAppInfo{AppInstanceID: in.Name}
		if ci := commInterface(in.Endpoint); ci != nil {
			info.CommInterface = []CommunicationInterface{*ci}
		}
		n.AdjacentAppInfo = append(n.AdjacentAppInfo, info)
	}
	return n
}

func (b *Book) special(s *Subscriber, kind string, now time.Time) Send {
	id := notificationID(s.ID, kind)
	send := Send{Subscription: s.ID, URL: s.Subscription.CallbackReference, NotificationID: id, Type: kind, Position: -1}
	switch kind {
	case ExpiryNotification:
		var deadline TimeStamp
		if s.Subscription.ExpiryDeadline != nil {
			deadline = *s.Subscription.ExpiryDeadline
		}
		send.Body = mustJSON(ExpiryNotificationBody{NotificationType: kind, TimeStamp: Stamp(now), Links: links(s.ID),
			ExpiryDeadline: deadline, Drift: Notice{NotificationID: id}})
	default:
		send.Body = mustJSON(TestNotificationBody{NotificationType: TestNotification, Links: links(s.ID), Drift: Notice{NotificationID: id}})
	}
	return send
}

// CheckSubscription says what is wrong with a subscription request, field
// by field, and fills in the defaults (mobilityStatus [TRIGGERED]). The
// callback's destination is the API's to allow; the expiry deadline is
// checked against now.
func CheckSubscription(s *Subscription, now time.Time) []FieldError {
	var bad []FieldError
	add := func(param, format string, args ...any) {
		bad = append(bad, FieldError{Param: param, Reason: fmt.Sprintf(format, args...)})
	}
	f := &s.FilterCriteria
	switch s.SubscriptionType {
	case MobilityProcedureSubscription:
		if len(f.MobilityStatus) == 0 {
			f.MobilityStatus = []int{MoveTriggered}
		}
		for i, st := range f.MobilityStatus {
			if st < MoveTriggered || st > MoveFailed {
				add(fmt.Sprintf("filterCriteria.mobilityStatus[%d]", i), "%d is not a mobility status: 1 (TRIGGERED), 2 (COMPLETED) or 3 (FAILED)", st)
			}
		}
		slices.Sort(f.MobilityStatus)
		f.MobilityStatus = slices.Compact(f.MobilityStatus)
		for i, a := range f.AssociateID {
			if a.Type < TypeUser || a.Type > maxAssociateIDTyp {
				add(fmt.Sprintf("filterCriteria.associateId[%d].type", i), "%d is not an associateId type (0..4)", a.Type)
			}
			if err := names.CheckUser(a.Value); err != nil {
				add(fmt.Sprintf("filterCriteria.associateId[%d].value", i), "%v", err)
			}
		}
	case AdjacentAppInfoSubscription:
		if len(f.AssociateID) > 0 {
			add("filterCriteria.associateId", "not a filter of %s (only appInstanceId)", AdjacentAppInfoSubscription)
		}
		if len(f.MobilityStatus) > 0 {
			add("filterCriteria.mobilityStatus", "not a filter of %s (only appInstanceId)", AdjacentAppInfoSubscription)
		}
	case "":
		add("subscriptionType", "required: %s or %s", MobilityProcedureSubscription, AdjacentAppInfoSubscription)
	default:
		add("subscriptionType", "%q: want %s or %s", s.SubscriptionType, MobilityProcedureSubscription, AdjacentAppInfoSubscription)
	}
	if f.AppInstanceID != "" && runtime.ValidateName(f.AppInstanceID) != nil {
		add("filterCriteria.appInstanceId", "%q is not an app name (a DNS-1035 label)", f.AppInstanceID)
	}
	if len(s.WebsockNotifConfig) > 0 {
		add("websockNotifConfig", "not supported: drift delivers notifications over HTTP to callbackReference")
	}
	if s.CallbackReference == "" {
		add("callbackReference", "required")
	}
	if d := s.ExpiryDeadline; d != nil && !d.Time().After(now) {
		add("expiryDeadline", "%s is not in the future", d.Time().Format(time.RFC3339))
	}
	s.Links, s.Drift = nil, nil // answers, not requests
	return bad
}
