package activities

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/edgedrift/drift/internal/runtime"
)

// Error types of a session's continuity activities.
const (
	// ErrTypeStateRefused: a state endpoint answered non-2xx, or the state
	// is over the session's limit. Retrying cannot fix it.
	ErrTypeStateRefused = "StateRefused"
	// ErrTypeInstanceDown: the serving instance stopped answering its probe.
	ErrTypeInstanceDown = "InstanceDown"
	// ErrTypeWorkerGone: the worker running a watch stopped.
	ErrTypeWorkerGone = "WorkerGone"
	// ErrTypeWatchEnded: the session cancelled the watch.
	ErrTypeWatchEnded = "WatchEnded"
)

// stateClient reaches state endpoints; each call bounds itself by its context.
var stateClient = &http.Client{}

// ReadStateRequest names the state endpoint to read and the most bytes taken.
type ReadStateRequest struct {
	URL   string `json:"url"`
	Limit int64  `json:"limit"`
}

// ReadState GETs an instance's state from its state endpoint, from the
// worker of the instance's cloud. A state over the limit or a non-2xx answer
// is refused (non-retryable).
func (c *Cloud) ReadState(ctx context.Context, req ReadStateRequest) ([]byte, error) {
	r, err := http.NewRequestWithContext(ctx, http.MethodGet, req.URL, nil)
	if err != nil {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("state URL %q: %v", req.URL, err), ErrTypeInvalidSpec, nil)
	}
	resp, err := stateClient.Do(r)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, req.Limit+1))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("GET %s answered %s: %s", req.URL, resp.Status, firstLine(body)), ErrTypeStateRefused, nil)
	}
	if int64(len(body)) > req.Limit {
		return nil, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("the state at %s is over the session's limit of %d bytes", req.URL, req.Limit), ErrTypeStateRefused, nil)
	}
	return body, nil
}

// WriteStateRequest is a state to PUT into an instance's state endpoint.
type WriteStateRequest struct {
	URL   string `json:"url"`
	State []byte `json:"state"`
}

// WriteState PUTs a state read from another instance into this cloud's
// instance; a non-2xx answer is refused (non-retryable).
func (c *Cloud) WriteState(ctx context.Context, req WriteStateRequest) error {
	r, err := http.NewRequestWithContext(ctx, http.MethodPut, req.URL, bytes.NewReader(req.State))
	if err != nil {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("state URL %q: %v", req.URL, err), ErrTypeInvalidSpec, nil)
	}
	r.Header.Set("Content-Type", "application/json")
	return sendState(r)
}

// MergeStateRequest is the late writes of an instance left behind, for
// the instance serving now: the state read from it before the switch
// (Base) and at the end of its drain (Final).
type MergeStateRequest struct {
	URL   string `json:"url"`
	Base  []byte `json:"base"`
	Final []byte `json:"final"`
}

// MergeState PATCHes {"base": Base, "final": Final} into this cloud's
// serving instance, whose app adds what the old one took after Base. Both
// must be JSON (the state endpoint's own form); a non-2xx answer is
// refused (non-retryable).
func (c *Cloud) MergeState(ctx context.Context, req MergeStateRequest) error {
	if !json.Valid(req.Base) || !json.Valid(req.Final) {
		return temporal.NewNonRetryableApplicationError("the state is not JSON: it cannot be sent as {base, final}", ErrTypeStateRefused, nil)
	}
	body, _ := json.Marshal(map[string]json.RawMessage{"base": req.Base, "final": req.Final})
	r, err := http.NewRequestWithContext(ctx, http.MethodPatch, req.URL, bytes.NewReader(body))
	if err != nil {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("state URL %q: %v", req.URL, err), ErrTypeInvalidSpec, nil)
	}
	r.Header.Set("Content-Type", "application/json")
	return sendState(r)
}

// sendState sends a PUT or PATCH of a state; a non-2xx answer is refused.
func sendState(r *http.Request) error {
	resp, err := stateClient.Do(r)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("%s %s answered %s: %s", r.Method, r.URL, resp.Status, firstLine(body)), ErrTypeStateRefused, nil)
	}
	return nil
}

func firstLine(b []byte) string {
	line, _, _ := bytes.Cut(bytes.TrimSpace(b), []byte("\n"))
	return string(line[:min(len(line), 200)])
}

// WatchRequest is a serving instance to watch.
type WatchRequest struct {
	Instance string           `json:"instance"`
	Service  runtime.Service  `json:"service"`
	Endpoint runtime.Endpoint `json:"endpoint"`
	Every    time.Duration    `json:"every"`    // between probes
	Failures int              `json:"failures"` // consecutive failed probes that mean down
	For      time.Duration    `json:"for"`      // then return nil: the session watches anew
}

// WatchInstance probes the serving instance from its cloud's worker every
// req.Every, heartbeating each time (so a worker that is gone shows as a
// heartbeat timeout), until req.Failures probes in a row fail (an
// InstanceDown error) or req.For has passed (nil).
func (c *Cloud) WatchInstance(ctx context.Context, req WatchRequest) error {
	deadline := time.Now().Add(req.For)
	failed := 0
	var last error
	for time.Now().Before(deadline) {
		if activity.IsActivity(ctx) {
			activity.RecordHeartbeat(ctx, failed)
		}
		if last = probeOnce(ctx, req.Service, req.Endpoint); last == nil {
			failed = 0
		} else if ctx.Err() == nil {
			failed++
		}
		if failed >= max(req.Failures, 1) {
			return temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("%s on %s stopped answering: %v", req.Endpoint.URL, c.ID, last), ErrTypeInstanceDown, nil)
		}
		select {
		case <-ctx.Done():
			if temporal.IsCanceledError(context.Cause(ctx)) {
				// The session cancelled the watch (a new serving instance,
				// or the end): expected, so not logged as an error.
				return temporal.NewApplicationErrorWithOptions("the session ended the watch of "+req.Instance, ErrTypeWatchEnded,
					temporal.ApplicationErrorOptions{Category: temporal.ApplicationErrorCategoryBenign})
			}
			return temporal.NewApplicationError(fmt.Sprintf("the worker of cloud %s stopped watching: %v", c.ID, ctx.Err()), ErrTypeWorkerGone)
		case <-time.After(req.Every):
		}
	}
	return nil
}

// probeTimeout bounds one probe of a watch.
const probeTimeout = time.Second

// probeOnce asks the service once whether it answers: GET of its health
// path below 500, or (runtime.ProbeTCP) a connection.
func probeOnce(ctx context.Context, svc runtime.Service, ep runtime.Endpoint) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	if svc.Probe == runtime.ProbeTCP {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ep.Host, strconv.Itoa(ep.Port)))
		if err == nil {
			c.Close()
		}
		return err
	}
	r, err := http.NewRequestWithContext(ctx, http.MethodGet, svc.HealthURL(ep), nil)
	if err != nil {
		return err
	}
	resp, err := stateClient.Do(r)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode >= 500 {
		return fmt.Errorf("status %s", resp.Status)
	}
	return nil
}

// IsInstanceDown reports whether err says the instance stopped answering.
func IsInstanceDown(err error) bool {
	var app *temporal.ApplicationError
	return errors.As(err, &app) && app.Type() == ErrTypeInstanceDown
}
