package activities

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
)

// AnalysisRequest asks a target's worker to measure a new instance for a
// while: a GET of URL+Path every Interval for For, and at the end, when
// MetricPath is set, the value of the series Metric on URL+MetricPath, and
// when PromAddress is set, the answer of Prometheus there to PromQuery.
type AnalysisRequest struct {
	URL      string        `json:"url"`
	Path     string        `json:"path"`
	For      time.Duration `json:"for"`
	Interval time.Duration `json:"interval"`
	// FailureLimit stops the measuring once more requests failed (<0: never).
	FailureLimit int    `json:"failureLimit"`
	MetricPath   string `json:"metricPath,omitempty"`
	Metric       string `json:"metric,omitempty"`
	PromAddress  string `json:"promAddress,omitempty"`
	PromQuery    string `json:"promQuery,omitempty"`
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
	// Prom is Prometheus' answer to the query (nil: not asked for).
	Prom *PromAnswer `json:"prom,omitempty"`
}

// PromAnswer is what Prometheus answered to an instant query: its samples,
// or why there are none.
type PromAnswer struct {
	Samples []PromSample `json:"samples,omitempty"`
	Error   string       `json:"error,omitempty"`
}

// PromSample is one sample: its series' labels as Prometheus prints them
// and its value as sent ("0.25", "NaN", "+Inf": JSON has no NaN).
type PromSample struct {
	Series string `json:"series"`
	Value  string `json:"value"`
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
	if req.PromAddress != "" && !res.Stopped {
		res.Prom = askPrometheus(ctx, req.PromAddress, req.PromQuery)
	}
	return res, nil
}

// promAttempts is how often a query is asked before its failure is the
// answer: a Prometheus restarting is not a failed release, and the bake
// is not measured again for it.
const promAttempts = 3

// askPrometheus asks an instant query of the Prometheus HTTP API.
func askPrometheus(ctx context.Context, address, query string) *PromAnswer {
	var a *PromAnswer
	for attempt := range promAttempts {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return &PromAnswer{Error: ctx.Err().Error()}
			case <-time.After(time.Second):
			}
		}
		var retry bool
		if a, retry = queryOnce(ctx, address, query); !retry {
			break
		}
	}
	return a
}

// queryOnce asks once; retry says whether asking again may help (the
// server was not reached or failed, rather than refused the query).
func queryOnce(ctx context.Context, address, query string) (a *PromAnswer, retry bool) {
	u := strings.TrimRight(address, "/") + "/api/v1/query?" + url.Values{"query": {query}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return &PromAnswer{Error: err.Error()}, false
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return &PromAnswer{Error: err.Error()}, true
	}
	defer resp.Body.Close()
	var body struct {
		Status    string `json:"status"`
		ErrorType string `json:"errorType"`
		Error     string `json:"error"`
		Data      struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&body); err != nil {
		return &PromAnswer{Error: fmt.Sprintf("Prometheus answered %s, not its API's JSON: %v", resp.Status, err)}, resp.StatusCode >= 500
	}
	if body.Status != "success" {
		return &PromAnswer{Error: fmt.Sprintf("Prometheus refused the query (%s): %s", body.ErrorType, body.Error)}, resp.StatusCode >= 500
	}
	samples, err := promSamples(body.Data.ResultType, body.Data.Result)
	if err != nil {
		return &PromAnswer{Error: err.Error()}, false
	}
	return &PromAnswer{Samples: samples}, false
}

// promSamples reads an instant query's result: a vector, or a scalar.
func promSamples(kind string, result json.RawMessage) ([]PromSample, error) {
	value := func(v [2]any) string { s, _ := v[1].(string); return s }
	switch kind {
	case "scalar":
		var v [2]any
		if err := json.Unmarshal(result, &v); err != nil {
			return nil, err
		}
		return []PromSample{{Series: "scalar", Value: value(v)}}, nil
	case "vector":
		var vec []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		}
		if err := json.Unmarshal(result, &vec); err != nil {
			return nil, err
		}
		out := make([]PromSample, 0, len(vec))
		for _, s := range vec {
			var labels []string
			for _, k := range slices.Sorted(maps.Keys(s.Metric)) {
				labels = append(labels, fmt.Sprintf("%s=%q", k, s.Metric[k]))
			}
			out = append(out, PromSample{Series: "{" + strings.Join(labels, ", ") + "}", Value: value(s.Value)})
		}
		return out, nil
	}
	return nil, fmt.Errorf("the query gave a %s; the gate judges an instant vector or a scalar", kind)
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
