package runtime

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"
)

// healthClient is shared so readiness probes reuse connections.
var healthClient = &http.Client{Timeout: 2 * time.Second}

// WaitHTTP polls url until it answers with a status below 500, or ctx ends.
func WaitHTTP(ctx context.Context, url string) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("%w: health URL %q: %v", ErrInvalid, url, err)
		}
		resp, err := healthClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 500 {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %v (%w)", url, last, ctx.Err())
		case <-tick.C:
		}
	}
}

// HealthURL joins an endpoint and a one-service spec's health path.
func HealthURL(ep Endpoint, spec Spec) string {
	return spec.Project()[0].HealthURL(ep)
}

// HealthURL joins an endpoint of the service and its health path.
func (s Service) HealthURL(ep Endpoint) string {
	path := s.Health
	if path == "" {
		path = "/"
	}
	if path[0] != '/' {
		path = "/" + path
	}
	return ep.URL + path
}

// WaitTCP dials addr until it accepts a connection, or ctx ends.
func WaitTCP(ctx context.Context, addr string) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var d net.Dialer
	for {
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		c, err := d.DialContext(dctx, "tcp", addr)
		cancel()
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not accepting connections: %v (%w)", addr, err, ctx.Err())
		case <-tick.C:
		}
	}
}

// WaitService waits until the service answers its probe at ep: an HTTP
// health path, or (ProbeTCP) a connection to ep's host and port. Runtimes
// whose published ports accept connections before the service does (Docker's
// proxy) hand a TCP probe the service's own address.
func WaitService(ctx context.Context, svc Service, ep Endpoint) error {
	if svc.Probe == ProbeTCP {
		return WaitTCP(ctx, net.JoinHostPort(ep.Host, strconv.Itoa(ep.Port)))
	}
	return WaitHTTP(ctx, svc.HealthURL(ep))
}

// ProbeService is WaitService bounded to one quick look, for Status.
func ProbeService(ctx context.Context, svc Service, ep Endpoint) error {
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return WaitService(pctx, svc, ep)
}

// WithState returns the serving endpoint with the state endpoint of spec
// filled in from the endpoint of the state service (both given by the
// runtime); ep is returned as it is when spec declares no state.
func WithState(ep Endpoint, spec Spec, stateService Endpoint) Endpoint {
	if spec.State != nil && stateService.URL != "" {
		ep.StateURL = stateService.URL + spec.State.Path
	}
	return ep
}
