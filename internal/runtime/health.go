package runtime

import (
	"context"
	"fmt"
	"net/http"
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

// HealthURL joins an endpoint and a spec's health path.
func HealthURL(ep Endpoint, spec Spec) string {
	path := spec.Health
	if path == "" {
		path = "/"
	}
	if path[0] != '/' {
		path = "/" + path
	}
	return ep.URL + path
}
