package activities

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
)

// VerifyRequest asks a target's worker whether an endpoint answers.
type VerifyRequest struct {
	URL    string        `json:"url"`
	Health string        `json:"health"`
	Within time.Duration `json:"within"` // keep asking this long
}

// Verify GETs the endpoint's health path from the cloud's own worker until
// it answers 2xx or the time is up.
func (c *Cloud) Verify(ctx context.Context, req VerifyRequest) (string, error) {
	url := strings.TrimRight(req.URL, "/") + req.Health
	deadline := time.Now().Add(req.Within)
	client := &http.Client{Timeout: 5 * time.Second}
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return "", temporal.NewNonRetryableApplicationError("verify: "+err.Error(), ErrTypeInvalidSpec, err)
		}
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				return fmt.Sprintf("%s answered %d", url, resp.StatusCode), nil
			}
			last = fmt.Sprintf("%s answered %d: %s", url, resp.StatusCode, strings.TrimSpace(string(body)))
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return "", temporal.NewNonRetryableApplicationError("verify: "+last, ErrTypeNotServing, err)
		}
		if activity.IsActivity(ctx) {
			activity.RecordHeartbeat(ctx, last)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}
