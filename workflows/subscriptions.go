package workflows

import (
	"fmt"
	"net/url"
	"slices"

	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/edgedrift/drift/activities"
	"github.com/edgedrift/drift/internal/amsi"
	"github.com/edgedrift/drift/internal/names"
)

// Error types of subscription changes.
const (
	ErrTypeNoSuchSubscription   = "NoSuchSubscription"
	ErrTypeInvalidSubscription  = "InvalidSubscription"
	ErrTypeTooManySubscriptions = "TooManySubscriptions"
)

// SubscribeRequest adds (Subscribe) or replaces (Resubscribe) a
// subscription. ID is the API's, also the update's id, so a retried request
// makes one subscription; Owner is the API client it belongs to.
type SubscribeRequest struct {
	ID           string            `json:"id"`
	Owner        string            `json:"owner"`
	Subscription amsi.Subscription `json:"subscription"`
}

// UnsubscribeRequest removes a subscription of Owner.
type UnsubscribeRequest struct {
	ID    string `json:"id"`
	Owner string `json:"owner"`
}

// SubscriptionInfo is a subscription as the Subscriptions query tells it:
// the resource with its delivery state, and whose it is.
type SubscriptionInfo struct {
	ID           string            `json:"id"`
	Owner        string            `json:"owner"`
	Subscription amsi.Subscription `json:"subscription"`
}

// MobilitySubscriptions keeps the mobility API's subscriptions (one
// workflow per namespace, names.SubscriptionsID) and delivers to them what
// every session publishes, whatever moved it: sessions signal their events
// in order (activities.Notifier.PublishSessionEvents), the book (amsi.Book)
// decides which subscription hears of what, and each subscription has its
// own delivery coroutine running one DeliverNotifications activity at a
// time (what is due, up to amsi.MaxBatch) with its own retries, so a
// subscriber that does not answer delays only itself. A delivery that fails after every retry suspends its
// subscription (a PUT resumes it); subscriptions end at their
// expiryDeadline after an ExpiryNotification. It continues as new when its
// history grows, carrying the book; a delivery in flight then goes again
// (deliveries are at least once, and carry an id to de-duplicate by).
func MobilitySubscriptions(ctx workflow.Context, in activities.SubscriptionsInput) error {
	w := &subscriptions{book: in.Book, stops: map[string]func(){}, logger: workflow.GetLogger(ctx)}
	return w.run(ctx)
}

type subscriptions struct {
	root   workflow.Context // delivery loops and timers live as long as the run
	book   amsi.Book
	stops  map[string]func() // cancels a subscriber's delivery loop and expiry timer
	logger log.Logger
}

func (w *subscriptions) run(ctx workflow.Context) error {
	w.root = ctx
	for _, s := range w.book.Subscribers { // before any handler can add one
		w.start(s)
	}
	if err := w.registerHandlers(ctx); err != nil {
		return err
	}
	if err := workflow.UpsertTypedSearchAttributes(ctx, names.KindKey.ValueSet(names.KindSubscriptions)); err != nil {
		return err
	}
	events := workflow.GetSignalChannel(ctx, names.EventsSignal)
	for {
		var batch []amsi.Event
		for events.ReceiveAsync(&batch) {
			w.book.Add(batch)
			batch = nil
		}
		w.details(ctx)
		if events.Len() == 0 && workflow.GetInfo(ctx).GetContinueAsNewSuggested() && workflow.AllHandlersFinished(ctx) {
			return workflow.NewContinueAsNewError(ctx, MobilitySubscriptions, activities.SubscriptionsInput{Book: w.book})
		}
		if err := workflow.Await(ctx, func() bool {
			return events.Len() > 0 || (workflow.GetInfo(ctx).GetContinueAsNewSuggested() && workflow.AllHandlersFinished(ctx))
		}); err != nil {
			return err
		}
	}
}

func (w *subscriptions) registerHandlers(ctx workflow.Context) error {
	list := func() ([]SubscriptionInfo, error) {
		out := []SubscriptionInfo{}
		for _, s := range w.book.Subscribers {
			out = append(out, SubscriptionInfo{ID: s.ID, Owner: s.Owner, Subscription: w.book.View(s)})
		}
		return out, nil
	}
	if err := setProgressQuery(ctx, list, names.SubscriptionsQuery); err != nil {
		return err
	}
	err := workflow.SetUpdateHandlerWithOptions(ctx, names.SubscribeUpdate,
		func(ctx workflow.Context, req SubscribeRequest) (SubscriptionInfo, error) {
			s := w.book.Find(req.ID)
			if s == nil {
				s = &amsi.Subscriber{ID: req.ID, Owner: req.Owner, Subscription: req.Subscription, CreatedAt: workflow.Now(ctx)}
				w.book.Subscribe(s)
				w.start(s)
			}
			return SubscriptionInfo{ID: s.ID, Owner: s.Owner, Subscription: w.book.View(s)}, nil
		},
		workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, req SubscribeRequest) error {
			if s := w.book.Find(req.ID); s != nil {
				if s.Owner != req.Owner {
					return temporal.NewNonRetryableApplicationError(fmt.Sprintf("subscription %s exists", req.ID), ErrTypeInvalidSubscription, nil)
				}
				return nil // the same request again
			}
			if len(w.book.Subscribers) >= amsi.MaxSubscriptions {
				return temporal.NewNonRetryableApplicationError(fmt.Sprintf(
					"the namespace holds %d subscriptions, the most it keeps; delete some first", amsi.MaxSubscriptions), ErrTypeTooManySubscriptions, nil)
			}
			return checkSubscription(ctx, req)
		}},
	)
	if err != nil {
		return err
	}
	err = workflow.SetUpdateHandlerWithOptions(ctx, names.ResubscribeUpdate,
		func(ctx workflow.Context, req SubscribeRequest) (SubscriptionInfo, error) {
			s := w.book.Find(req.ID)
			s.Subscription = req.Subscription
			if req.Subscription.RequestTestNotification {
				s.Special = append(s.Special, amsi.TestNotification)
			}
			w.book.Resume(s)
			w.stop(s.ID)
			w.start(s)
			return SubscriptionInfo{ID: s.ID, Owner: s.Owner, Subscription: w.book.View(s)}, nil
		},
		workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, req SubscribeRequest) error {
			s := w.book.Find(req.ID)
			switch {
			case s == nil || s.Owner != req.Owner:
				return noSuchSubscription(req.ID)
			case s.Status == amsi.Expired:
				return temporal.NewNonRetryableApplicationError(fmt.Sprintf("subscription %s has expired", req.ID), ErrTypeNoSuchSubscription, nil)
			case s.Subscription.SubscriptionType != req.Subscription.SubscriptionType:
				return temporal.NewNonRetryableApplicationError(fmt.Sprintf("subscription %s is a %s; it stays one",
					req.ID, s.Subscription.SubscriptionType), ErrTypeInvalidSubscription, nil)
			}
			return checkSubscription(ctx, req)
		}},
	)
	if err != nil {
		return err
	}
	return workflow.SetUpdateHandlerWithOptions(ctx, names.UnsubscribeUpdate,
		func(ctx workflow.Context, req UnsubscribeRequest) error {
			w.stop(req.ID)
			w.book.Remove(req.ID)
			return nil
		},
		workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, req UnsubscribeRequest) error {
			if s := w.book.Find(req.ID); s == nil || s.Owner != req.Owner {
				return noSuchSubscription(req.ID)
			}
			return nil
		}},
	)
}

func noSuchSubscription(id string) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf("no subscription %s", id), ErrTypeNoSuchSubscription, nil)
}

// checkSubscription rejects a malformed request (the API checks it
// before; this keeps the book sound whoever calls).
func checkSubscription(ctx workflow.Context, req SubscribeRequest) error {
	sub := req.Subscription
	if req.ID == "" || req.Owner == "" {
		return temporal.NewNonRetryableApplicationError("a subscription needs an id and an owner", ErrTypeInvalidSubscription, nil)
	}
	if bad := amsi.CheckSubscription(&sub, workflow.Now(ctx)); len(bad) > 0 {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: %s", bad[0].Param, bad[0].Reason), ErrTypeInvalidSubscription, nil)
	}
	return nil
}

// start runs s's delivery loop and its expiry timer.
func (w *subscriptions) start(s *amsi.Subscriber) {
	ctx, cancel := workflow.WithCancel(w.root)
	w.stops[s.ID] = cancel
	workflow.Go(ctx, func(ctx workflow.Context) { w.deliver(ctx, s) })
	if d := s.Subscription.ExpiryDeadline; d != nil && s.Status != amsi.Expired {
		workflow.Go(ctx, func(ctx workflow.Context) {
			if wait := d.Time().Sub(workflow.Now(ctx)); wait > 0 {
				if err := workflow.Sleep(ctx, wait); err != nil {
					return
				}
			}
			if w.book.Find(s.ID) == s {
				w.logger.Info("subscription expired", "subscription", s.ID)
				w.book.Expire(s)
			}
		})
	}
}

// stop ends s's delivery loop and timer; an activity in flight is
// cancelled.
func (w *subscriptions) stop(id string) {
	if cancel, ok := w.stops[id]; ok {
		cancel()
		delete(w.stops, id)
	}
}

// deliver sends s what is due to it, in order, a batch at a time.
func (w *subscriptions) deliver(ctx workflow.Context, s *amsi.Subscriber) {
	gone := func() bool { return ctx.Err() != nil || w.book.Find(s.ID) != s }
	for {
		if err := workflow.Await(ctx, func() bool { return gone() || w.book.Due(s) }); err != nil || gone() {
			return
		}
		batch := w.book.Next(s, workflow.Now(ctx))
		actx := central(ctx, deliverOptions, fmt.Sprintf("%d notification(s) for %s to %s", len(batch), s.ID, callbackHost(s.Subscription.CallbackReference)))
		var n int
		err := workflow.ExecuteActivity(actx, notifyActs.DeliverNotifications, batch).Get(ctx, &n)
		if gone() {
			return
		}
		if err != nil {
			w.logger.Warn("notification not delivered", "subscription", s.ID, "notification", batch[0].NotificationID, "error", err)
			w.book.Failed(s, batch[0], RootMessage(err))
		} else {
			w.book.Delivered(s, batch[:min(n, len(batch))], workflow.Now(ctx))
		}
		if s.Status == amsi.Expired && len(s.Special) == 0 {
			w.stop(s.ID)
			w.book.Remove(s.ID)
			return
		}
	}
}

// callbackHost is what an activity summary names of a callback.
func callbackHost(u string) string {
	if p, err := url.Parse(u); err == nil && p.Host != "" {
		return p.Host
	}
	return "its callback"
}

// details tells the Web UI how the subscriptions fare.
func (w *subscriptions) details(ctx workflow.Context) {
	var active, suspended []string
	var delivered, failed int64
	for _, s := range w.book.Subscribers {
		delivered += s.Delivered
		failed += s.Failed
		if s.Status == amsi.Suspended {
			suspended = append(suspended, s.ID)
		} else {
			active = append(active, s.ID)
		}
	}
	slices.Sort(suspended)
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("**%d subscriptions** (%d active, %d suspended%s)\n\nevents kept: %d · delivered: %d · given up: %d",
		len(w.book.Subscribers), len(active), len(suspended), listIfAny(suspended), len(w.book.Events), delivered, failed))
}

func listIfAny(ids []string) string {
	if len(ids) == 0 {
		return ""
	}
	return ": " + fmt.Sprint(ids)
}
