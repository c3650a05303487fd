package pipeline

import (
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"

	drift "github.com/edgedrift/drift/internal/client"
	"github.com/edgedrift/drift/internal/pipelinespec"
	"github.com/edgedrift/drift/tests/harness"
	"github.com/edgedrift/drift/workflows"
)

// A wave gated by a Prometheus query, as an operator would write one: a
// real Prometheus scrapes the canary (fog-north, Docker) while it bakes,
// and the gate asks it for the share of 500s of / on that cloud. v1
// passes. v2 answers 500 to every second request: its HTTP analysis alone
// would pass (success ratio ≥ 0.3), the query's answer (about 0.5, want
// ≤ 0.1) fails the wave, the canary goes back to v1 and the second wave's
// target is never touched.
func TestAPrometheusQueryGatesAWave(t *testing.T) {
	c, topo, ws, spec, _ := recoveryEnv(t)
	prom := harness.StartPrometheus(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()

	spec.Image.Platforms = []string{"linux/amd64"}
	spec.Deploy.Targets = []pipelinespec.Target{{Cloud: dockerCloud, Verify: pipelinespec.VerifyHTTP}, {Cloud: "edge-latin", Verify: pipelinespec.VerifyHTTP}}
	most := 0.1
	gate := &pipelinespec.PrometheusGate{Address: prom.URL, Max: &most,
		Query: `sum(rate(hello_requests_total{cloud="{{cloud}}",code="500"}[8s])) / sum(rate(hello_requests_total{cloud="{{cloud}}"}[8s]))`}
	spec.Deploy.Waves = []pipelinespec.Wave{
		// Long enough for Prometheus to learn the target and scrape it
		// (every second) well within the query's 8 s range.
		{Name: "canary", Targets: []string{dockerCloud}, Bake: 15 * time.Second,
			Analysis: &pipelinespec.Analysis{Path: "/", Interval: 50 * time.Millisecond, SuccessRatio: 0.3, Prometheus: gate}},
		{Name: "rest", Targets: []string{"edge-latin"}},
	}

	// Prometheus learns the canary's endpoint from the run's progress, as
	// a service discovery of the operator's would.
	release := func(spec pipelinespec.Spec, name string) (workflows.PipelineProgress, error) {
		d := drift.New(c)
		wr, err := d.StartPipeline(ctx, workflows.PipelineInput{Run: name, Spec: spec, Topology: topo})
		if err != nil {
			t.Fatal(err)
		}
		scraped := ""
		return drift.Follow(ctx, d, wr, 200*time.Millisecond, func(pr workflows.PipelineProgress) {
			for _, tp := range pr.Targets {
				if u, err := url.Parse(tp.Endpoint.URL); err == nil && tp.Cloud == dockerCloud && u.Host != "" && u.Host != scraped {
					prom.SetTargets(t, map[string]map[string]string{u.Host: {"cloud": tp.Cloud}})
					t.Logf("%s: Prometheus scrapes %s (%s, %s)", name, u.Host, tp.Status, pr.Waves[0].Status)
					scraped = u.Host
				}
			}
		})
	}

	v1, err := release(spec, "v1")
	if err != nil {
		t.Fatalf("v1: %v", err)
	}
	if an := v1.Waves[0].Analysis; len(an) != 1 || !an[0].Passed || an[0].Prom == nil || len(an[0].Prom.Samples) != 1 || an[0].Prom.Samples[0].Value != "0" {
		t.Fatalf("v1's canary analysis %+v, want passed with the query answering 0", an)
	}
	t.Logf("v1 passed: %s", v1.Waves[0].Analysis[0].Verdict)
	edgeURL := v1.Targets[1].Endpoint.URL

	bad := spec
	bad.Build.Commands = []string{strings.Replace(spec.Build.Commands[0], "-X main.version=pipeline", "-X main.version=pipeline -X main.failEvery=2", 1)}
	if bad.Build.Commands[0] == spec.Build.Commands[0] {
		t.Fatal("could not add the failEvery flag to the build")
	}
	v2, err := release(bad, "v2")
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) || ae.Type() != workflows.ErrTypeRolledBack || !strings.Contains(ae.Message(), "wave canary failed") || !strings.Contains(ae.Message(), "want ≤ 0.1") {
		t.Fatalf("v2: %v, want RolledBack at the canary's Prometheus gate", err)
	}
	t.Logf("v2 failed as it should: %s", ae.Message())
	if path := os.Getenv("DRIFT_RECORD_HISTORY"); path != "" {
		harness.RecordHistory(t, ctx, c, v2.ID, path)
		// and the canary wave's child workflow beside it
		harness.RecordHistory(t, ctx, c, v2.ID+"/wave/canary/release", filepath.Join(filepath.Dir(path), "pipeline-wave-child.json"))
	}
	an := v2.Waves[0].Analysis
	if len(an) != 1 || an[0].Passed || an[0].SuccessRatio() < 0.3 || an[0].Prom == nil || len(an[0].Prom.Samples) != 1 {
		t.Fatalf("v2's canary analysis %+v, want the HTTP analysis passing and the query failing", an)
	}
	if share, _ := strconv.ParseFloat(an[0].Prom.Samples[0].Value, 64); share < 0.3 || share > 0.7 {
		t.Errorf("the query answered %v, want about half of the requests failing", share)
	}
	st, err := ws.Runtimes[dockerCloud].Status(ctx, v2.Targets[0].Instance)
	if err != nil || !st.Ready || st.Image != v1.Image {
		t.Errorf("the canary runs %+v (%v), want v1 %s", st, err, v1.Image)
	}
	if got := actsOn(t, ctx, c, v2.ID, "edge-latin"); strings.Contains(got, "DeployInstance") {
		t.Errorf("v2 touched edge-latin of wave 2: %s", got)
	}
	if st, _ := ws.Runtimes["edge-latin"].Status(ctx, workflows.PipelineInstance("hello")); st.Endpoint.URL != edgeURL || st.Image != v1.Image {
		t.Errorf("edge-latin runs %+v, v1 left %s", st, edgeURL)
	}
}
