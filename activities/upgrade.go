package activities

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/edgedrift/drift/internal/image"
	"github.com/edgedrift/drift/internal/release"
	"github.com/edgedrift/drift/internal/runtime"
)

// Labels of a component's environments: every instance of an env carries
// the component, the env's name and the version it runs, and which of the
// env's services it is.
const (
	LabelComponent = "drift.component"
	LabelEnv       = "drift.env"
	LabelVersion   = "drift.version"
	LabelService   = "drift.service"
)

// Verify modes: what a verification can reach on a cloud.
const (
	VerifyHTTP    = "http"    // health of both services and a real call through the driver
	VerifyRollout = "rollout" // only that the runtime reports every instance ready (clusters the worker cannot reach, e.g. kwok)
)

// Upgrade acts on the cloud hosting a component; it is registered on that
// cloud's queue next to Cloud.
type Upgrade struct {
	Cloud   string
	Runtime runtime.Runtime
	Router  runtime.Router // the cloud's stable endpoints
	HTTP    *http.Client
	// Trust is the site's policy (nil: none): the release and the driver an
	// env is layered of, and every task's image, must pass it.
	Trust *release.Policy
}

// LoadDriverRequest layers a driver's build over a component release.
type LoadDriverRequest struct {
	Base   string // component release image, repo:tag
	Driver string // driver plugin image
	To     string // where the env image goes, repo:tag
}

// LoadDriver builds the env image: the release with the driver added, in the
// registry, pinned by digest.
func (u *Upgrade) LoadDriver(ctx context.Context, req LoadDriverRequest) (string, error) {
	for _, part := range []string{req.Base, req.Driver} {
		if err := checkTrust(ctx, u.Trust, u.Cloud, part); err != nil {
			return "", err
		}
	}
	ref, err := image.Layer(ctx, req.Base, req.Driver, req.To)
	if errors.Is(err, image.ErrNotFound) {
		return "", temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeUnknownImage, err)
	}
	return ref, err
}

// VerifyTarget is one service of an env to check.
type VerifyTarget struct {
	Instance string           `json:"instance"`
	Endpoint runtime.Endpoint `json:"endpoint"`
	Health   string           `json:"health"`
	Verify   string           `json:"verify,omitempty"` // POST path exercising the driver; "" = none
}

// EnvVerifyRequest checks a whole env.
type EnvVerifyRequest struct {
	Mode    string         `json:"mode"`
	Targets []VerifyTarget `json:"targets"`
	// Data, when set, wants the sample listed and readable, byte for byte,
	// through the first target.
	Data *DataSample `json:"data,omitempty"`
}

// Check is one verification step's or precheck's outcome.
type Check struct {
	Name    string `json:"name"` // e.g. "cinder health", "cinder-volume driver"
	OK      bool   `json:"ok"`
	Detail  string `json:"detail"`
	Warning bool   `json:"warning,omitempty"` // passed, with something to look at
}

// Verification is every check of an env; it passed when all did.
type Verification struct {
	Mode   string  `json:"mode"`
	Passed bool    `json:"passed"`
	Checks []Check `json:"checks"`
}

// VerifyEnv checks the env's services. Failed checks are a result, not an
// error: the workflow decides to redo.
func (u *Upgrade) VerifyEnv(ctx context.Context, req EnvVerifyRequest) (Verification, error) {
	stop := heartbeat(ctx)
	defer stop()
	v := Verification{Mode: req.Mode, Passed: true}
	add := func(name string, err error, ok string) {
		c := Check{Name: name, OK: err == nil, Detail: ok}
		if err != nil {
			c.Detail, v.Passed = err.Error(), false
		}
		v.Checks = append(v.Checks, c)
	}
	for _, t := range req.Targets {
		if req.Mode == VerifyRollout {
			st, err := u.Runtime.Status(ctx, t.Instance)
			if err == nil && !st.Ready {
				err = fmt.Errorf("not ready: %s", st.Message)
			}
			add(t.Instance+" rollout", err, "ready on "+u.Runtime.Kind())
			continue
		}
		body, err := u.settle(ctx, runtime.HealthURL(t.Endpoint, runtime.Spec{Health: t.Health}))
		add(t.Instance+" health", err, body)
		if t.Verify != "" {
			body, err := u.call(ctx, http.MethodPost, runtime.HealthURL(t.Endpoint, runtime.Spec{Health: t.Verify}))
			add(t.Instance+" driver", err, body)
		}
	}
	if d := req.Data; d != nil && req.Mode == VerifyHTTP && len(req.Targets) > 0 {
		detail, err := u.checkSample(ctx, req.Targets[0].Endpoint, *d)
		add(req.Targets[0].Instance+" data", err, detail)
	}
	return v, nil
}

// settleTime bounds how long a new env's endpoint may refuse connections
// before it answers (a cluster's proxies catch up with a new Service).
const settleTime = 30 * time.Second

// settle GETs url until it is reached (an answer, whatever its status) or
// settleTime passed, and returns the last call's outcome.
func (u *Upgrade) settle(ctx context.Context, url string) (string, error) {
	deadline := time.Now().Add(settleTime)
	for {
		body, err := u.call(ctx, http.MethodGet, url)
		var status *statusError
		if err == nil || errors.As(err, &status) || time.Now().After(deadline) || ctx.Err() != nil {
			return body, err
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// statusError is an answer other than 2xx.
type statusError struct{ msg string }

func (e *statusError) Error() string { return e.msg }

// call makes one request and wants a 2xx answer; the body is the detail
// (its first 2 KiB).
func (u *Upgrade) call(ctx context.Context, method, url string) (string, error) {
	body, err := u.fetch(ctx, method, url, 2048)
	return strings.TrimSpace(string(body)), err
}

// fetch makes one request and wants a 2xx answer; it returns up to limit
// bytes of the body.
func (u *Upgrade) fetch(ctx context.Context, method, url string, limit int64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return nil, err
	}
	client := u.HTTP
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if resp.StatusCode/100 != 2 {
		return nil, &statusError{fmt.Sprintf("%s %s: %s: %s", method, url, resp.Status, bytes.TrimSpace(b[:min(len(b), 512)]))}
	}
	return b, err
}
