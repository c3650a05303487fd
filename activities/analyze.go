package activities

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
)

// AnalysisRequest asks a target's worker to measure a new instance for a
// while: a GET of URL+Path every Interval for For, and at the end, when
// MetricPath is set, the value of the series Metric on URL+MetricPath.
type AnalysisRequest struct {
	URL      string        `json:"url"`
	Path     string        `json:"path"`
	For      time.Duration `json:"for"`
	Interval time.Duration `json:"interval"`
	// FailureLimit stops the measuring once more requests failed (<0: never).
	FailureLimit int    `json:"failureLimit"`
	MetricPath   string `json:"metricPath,omitempty"`
	Metric       string `json:"metric,omitempty"`
}

// AnalysisResult is what the worker measured. Requests that did not answer
// 2xx in time count as failures; latencies are of every answer.
type AnalysisResult struct {
	Requests int           `json:"requests"`
	Failures int           `json:"failures"`
	P95      time.Duration `json:"p95"`
	Max      time.Duration `json:"max"`
	LastFail string        `json:"lastFail,omitempty"` // the last failure, as said
	Metric   *float64      `json:"metric,omitempty"`   // nil: not asked for
	Stopped  bool          `json:"stopped,omitempty"`  // ended early at the failure limit
}

// SuccessRatio is the share of requests answered 2xx (1 when none was made).
func (r AnalysisResult) SuccessRatio() float64 {
	if r.Requests == 0 {
		return 1
	}
	return float64(r.Requests-r.Failures) / float64(r.Requests)
}

// Analyze measures a new instance from the cloud's own worker, as its
// users there would see it, for the bake time of its wave.
func (c *Cloud) Analyze(ctx context.Context, req AnalysisRequest) (AnalysisResult, error) {
	if req.For <= 0 || req.Interval <= 0 || !strings.HasPrefix(req.Path, "/") {
		return AnalysisResult{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf("analyze: bad request (for %s, every %s, path %q)", req.For, req.Interval, req.Path), ErrTypeInvalidSpec, nil)
	}
	client := &http.Client{Timeout: 5 * time.Second}
	url := strings.TrimRight(req.URL, "/") + req.Path
	var res AnalysisResult
	var latencies []time.Duration
	end := time.Now().Add(req.For)
	for time.Now().Before(end) {
		started := time.Now()
		code, err := get(ctx, client, url)
		took := time.Since(started)
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		res.Requests++
		latencies = append(latencies, took)
		switch {
		case err != nil:
			res.Failures++
			res.LastFail = err.Error()
		case code/100 != 2:
			res.Failures++
			res.LastFail = fmt.Sprintf("%s answered %d", url, code)
		}
		if req.FailureLimit >= 0 && res.Failures > req.FailureLimit {
			res.Stopped = true
			break
		}
		activity.RecordHeartbeat(ctx, res.Requests)
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(req.Interval - min(took, req.Interval)):
		}
	}
	slices.Sort(latencies)
	if n := len(latencies); n > 0 {
		res.Max = latencies[n-1]
		res.P95 = latencies[(n*95+99)/100-1]
	}
	if req.MetricPath != "" && !res.Stopped {
		v, err := readMetric(ctx, client, strings.TrimRight(req.URL, "/")+req.MetricPath, req.Metric)
		if err != nil {
			return res, fmt.Errorf("analyze: %w", err)
		}
		res.Metric = &v
	}
	return res, nil
}

func get(ctx context.Context, client *http.Client, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode, nil
}

// readMetric reads the value of one series from a Prometheus text page.
func readMetric(ctx context.Context, client *http.Client, url, series string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return 0, fmt.Errorf("%s answered %d", url, resp.StatusCode)
	}
	return MetricValue(io.LimitReader(resp.Body, 4<<20), series)
}

// MetricValue finds a series (name with its labels as exposed) in a
// Prometheus text page.
func MetricValue(page io.Reader, series string) (float64, error) {
	sc := bufio.NewScanner(page)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) >= 2 && fields[0] == series {
			return strconv.ParseFloat(fields[1], 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("the metrics page has no series %s", series)
}
