package activities

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/edgedrift/drift/internal/amsi"
	"github.com/edgedrift/drift/internal/names"
)

// Error types of notification delivery.
const (
	// ErrTypeCallbackRefused: the callback answered a 4xx other than 408 or
	// 429, or its URL is unusable; no retry can fix it.
	ErrTypeCallbackRefused = "CallbackRefused"
)

// NotificationHeader carries a notification's id (also in its body's
// drift.notificationId): the same on every attempt, for receivers to
// de-duplicate.
const NotificationHeader = "X-Drift-Notification-Id"

// SubscriptionsInput starts (or continues) the namespace's subscriptions
// workflow.
type SubscriptionsInput struct {
	Book amsi.Book `json:"book"`
}

// Notifier publishes sessions' events to the subscriptions workflow and
// delivers its notifications to callbacks.
type Notifier struct {
	Client client.Client
	// HTTP sends notifications; nil means one with a 10 s timeout that
	// follows no redirect.
	HTTP *http.Client
}

// PublishSessionEvents hands a session's events, in order, to the
// subscriptions workflow, starting it on first use.
func (n *Notifier) PublishSessionEvents(ctx context.Context, events []amsi.Event) error {
	_, err := n.Client.SignalWithStartWorkflow(ctx, names.SubscriptionsID, names.EventsSignal, events,
		SubscriptionsStart(), names.SubscriptionsWorkflow, SubscriptionsInput{})
	return err
}

// SubscriptionsStart is how the subscriptions workflow is started, by
// whoever needs it first (a session's events, the API's first subscription).
func SubscriptionsStart() client.StartWorkflowOptions {
	return client.StartWorkflowOptions{
		ID:            names.SubscriptionsID,
		TaskQueue:     names.TaskQueue,
		StaticSummary: "the mobility API's subscriptions: which session events each subscriber hears of, and their delivery",
	}
}

// DeliverNotifications POSTs a subscriber's due notifications to its
// callback, in order, one request each, and returns how many were
// delivered. A 2xx answer delivers one; a network error, a timeout, 408,
// 429 or a 5xx is retried (by the activity's retry policy; an attempt
// resumes after the last delivered, which it heartbeats); any other answer
// is final. Once some went out, a failure ends the batch early instead, and
// so does too little time left for another request: the rest goes in the
// next one.
func (n *Notifier) DeliverNotifications(ctx context.Context, batch []amsi.Send) (int, error) {
	done := 0
	if activity.HasHeartbeatDetails(ctx) {
		_ = activity.GetHeartbeatDetails(ctx, &done)
	}
	deadline := activity.GetInfo(ctx).Deadline
	for i := done; i < len(batch); i++ {
		if i > done && time.Until(deadline) < n.httpClient().Timeout+time.Second {
			return i, nil
		}
		if err := n.post(ctx, batch[i]); err != nil {
			if i > 0 {
				return i, nil
			}
			return 0, err
		}
		activity.RecordHeartbeat(ctx, i+1)
	}
	return len(batch), nil
}

// post sends one notification.
func (n *Notifier) post(ctx context.Context, s amsi.Send) error {
	u, err := url.Parse(s.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.User != nil {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("callback %q is not a usable http(s) URL", s.URL), ErrTypeCallbackRefused, nil)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL, bytes.NewReader(s.Body))
	if err != nil {
		return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeCallbackRefused, nil)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "drift-amsi")
	req.Header.Set(NotificationHeader, s.NotificationID)
	resp, err := n.httpClient().Do(req)
	if err != nil {
		return fmt.Errorf("%s to %s: %w", s.Type, u.Redacted(), err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		return nil
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests, code >= 500:
		return fmt.Errorf("%s to %s: callback answered %s", s.Type, u.Redacted(), resp.Status)
	default:
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("%s to %s: callback answered %s", s.Type, u.Redacted(), resp.Status), ErrTypeCallbackRefused, nil)
	}
}

var defaultNotifyHTTP = &http.Client{
	Timeout:       10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func (n *Notifier) httpClient() *http.Client {
	if n.HTTP != nil {
		return n.HTTP
	}
	return defaultNotifyHTTP
}
