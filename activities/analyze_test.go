package activities

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/sdk/testsuite"
)

// A release that answers 500 to every third request: the worker counts a
// third of failures, stops at the failure limit when one is set, and reads
// the metrics page at the end.
func TestAnalyzeCountsFailuresAndReadsAMetric(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" {
			fmt.Fprintf(w, "# HELP x\nhttp_errors_total{code=\"500\"} %d\nhttp_errors_total 1\n", n.Load()/3)
			return
		}
		if n.Add(1)%3 == 0 {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		w.Write([]byte("ok"))
	}))
	defer srv.Close()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	cloud := &Cloud{ID: "fog-north"}
	env.RegisterActivity(cloud)
	req := AnalysisRequest{URL: srv.URL, Path: "/", For: 600 * time.Millisecond, Interval: 20 * time.Millisecond, FailureLimit: -1, MetricPath: "/metrics", Metric: `http_errors_total{code="500"}`}
	v, err := env.ExecuteActivity(cloud.Analyze, req)
	if err != nil {
		t.Fatal(err)
	}
	var res AnalysisResult
	v.Get(&res)
	if res.Requests < 10 || res.Failures != res.Requests/3 || res.Stopped || res.Metric == nil || *res.Metric != float64(res.Failures) || !strings.Contains(res.LastFail, "answered 500") {
		t.Fatalf("result %+v", res)
	}
	if r := res.SuccessRatio(); r < 0.6 || r > 0.7 {
		t.Errorf("success ratio %v, want 2/3", r)
	}

	req.FailureLimit, req.For = 1, time.Minute
	start := time.Now()
	v, err = env.ExecuteActivity(cloud.Analyze, req)
	if err != nil {
		t.Fatal(err)
	}
	v.Get(&res)
	if !res.Stopped || res.Failures != 2 || time.Since(start) > 10*time.Second {
		t.Errorf("with failure limit 1: %+v after %v, want stopped at the second failure", res, time.Since(start))
	}

	req.Path = "healthz"
	if _, err := env.ExecuteActivity(cloud.Analyze, req); err == nil || !strings.Contains(err.Error(), ErrTypeInvalidSpec) {
		t.Errorf("a path without '/': %v", err)
	}
}

func TestMetricValue(t *testing.T) {
	page := "# TYPE up gauge\nup 1\nlatency_seconds{quantile=\"0.95\"} 0.25\n"
	if v, err := MetricValue(strings.NewReader(page), `latency_seconds{quantile="0.95"}`); err != nil || v != 0.25 {
		t.Errorf("got %v %v", v, err)
	}
	if _, err := MetricValue(strings.NewReader(page), "down"); err == nil {
		t.Error("a missing series was found")
	}
	_ = context.Background()
}

// The answers of Prometheus' query API as the gate reads them: vectors
// (labels sorted, values as sent, NaN included), scalars, a refused query
// (not asked again), a range result (refused), a server failing once.
func TestAskPrometheus(t *testing.T) {
	var asked atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := asked.Add(1)
		q := r.URL.Query().Get("query")
		switch {
		case r.URL.Path != "/api/v1/query":
			http.NotFound(w, r)
		case q == "flaky" && n == 1:
			http.Error(w, "starting", http.StatusServiceUnavailable)
		case q == "flaky" || q == "vector":
			fmt.Fprint(w, `{"status":"success","data":{"resultType":"vector","result":[`+
				`{"metric":{"job":"hello","cloud":"fog-north"},"value":[1.5,"0.25"]},{"metric":{},"value":[1.5,"NaN"]}]}}`)
		case q == "scalar":
			fmt.Fprint(w, `{"status":"success","data":{"resultType":"scalar","result":[1.5,"2"]}}`)
		case q == "range":
			fmt.Fprint(w, `{"status":"success","data":{"resultType":"matrix","result":[]}}`)
		default:
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"status":"error","errorType":"bad_data","error":"parse error: unexpected end of input"}`)
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	want := []PromSample{{`{cloud="fog-north", job="hello"}`, "0.25"}, {"{}", "NaN"}}
	if a := askPrometheus(ctx, srv.URL, "vector"); a.Error != "" || !slices.Equal(a.Samples, want) {
		t.Errorf("vector: %+v", a)
	}
	asked.Store(0)
	if a := askPrometheus(ctx, srv.URL+"/", "flaky"); a.Error != "" || len(a.Samples) != 2 || asked.Load() != 2 {
		t.Errorf("a server failing once: %+v after %d asks", a, asked.Load())
	}
	if a := askPrometheus(ctx, srv.URL, "scalar"); a.Error != "" || !slices.Equal(a.Samples, []PromSample{{"scalar", "2"}}) {
		t.Errorf("scalar: %+v", a)
	}
	if a := askPrometheus(ctx, srv.URL, "range"); !strings.Contains(a.Error, "gave a matrix") {
		t.Errorf("range: %+v", a)
	}
	asked.Store(0)
	if a := askPrometheus(ctx, srv.URL, "sum(("); !strings.Contains(a.Error, "refused the query (bad_data): parse error") || asked.Load() != 1 {
		t.Errorf("bad query: %+v after %d asks", a, asked.Load())
	}
}
