package pipelinespec

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

const wavesSpec = `
app: hello
repo: file:///tmp/hello.git
ref: main
build:
  commands: ["go build -o out/hello ."]
artifacts: [out/hello]
image:
  name: hello
  platforms: [linux/amd64]
deploy:
  health: /healthz
  targets:
    - cloud: center
    - cloud: fog-north
    - cloud: fog-south
    - cloud: edge-latin
      labels: {ring: last}
    - cloud: edge-bastille
      labels: {ring: last}
  waves:
    - name: center
      targets: [center]
      bake: 30s
      analysis:
        successRatio: 0.95
        maxLatency: 200ms
        failureLimit: 3
        metric: {path: /metrics, name: 'http_errors_total{code="500"}', max: 2}
        prometheus: {address: 'http://127.0.0.1:9090', query: 'sum(rate(errors{cloud="{{cloud}}"}[1m]))', max: 0.5}
    - name: fog
      tier: fog
      approval: true
      maxParallel: 1
    - name: edges
      labels: {ring: last}
`

func tiers(cloud string) string {
	switch {
	case cloud == "center":
		return "center"
	case strings.HasPrefix(cloud, "fog"):
		return "fog"
	}
	return "edge"
}

func TestWavesPlan(t *testing.T) {
	s, err := Parse([]byte(wavesSpec), nil)
	if err != nil {
		t.Fatal(err)
	}
	a := s.Deploy.Waves[0].Analysis
	if s.Deploy.Waves[0].Bake != 30*time.Second || a.Interval != DefaultAnalysisInterval || a.SuccessRatio != 0.95 || *a.FailureLimit != 3 || a.Metric.Name != `http_errors_total{code="500"}` {
		t.Fatalf("waves %+v, analysis %+v", s.Deploy.Waves, a)
	}
	if g := a.Prometheus; g == nil || *g.Max != 0.5 || g.Min != nil || g.QueryFor("fog-north") != `sum(rate(errors{cloud="fog-north"}[1m]))` {
		t.Fatalf("prometheus gate %+v", g)
	}
	plan, err := s.Deploy.Plan(tiers)
	if err != nil {
		t.Fatal(err)
	}
	if want := [][]int{{0}, {1, 2}, {3, 4}}; !slices.EqualFunc(plan, want, slices.Equal) {
		t.Fatalf("plan %v, want %v", plan, want)
	}
	s.Deploy.Waves = nil
	if plan, _ := s.Deploy.Plan(tiers); !slices.EqualFunc(plan, [][]int{{0, 1, 2, 3, 4}}, slices.Equal) {
		t.Errorf("without waves: %v, want one wave of every target", plan)
	}
}

func TestWavesReject(t *testing.T) {
	for _, c := range []struct{ name, from, to, want string }{
		{"two selectors", "      tier: fog\n", "      tier: fog\n      targets: [fog-north]\n", "exactly one of targets, tier or labels"},
		{"unknown target", "targets: [center]", "targets: [nowhere]", `"nowhere" is not one of deploy.targets`},
		{"analysis without bake", "      bake: 30s\n", "", "set bake"},
		{"ratio", "successRatio: 0.95", "successRatio: 1.5", "not in 0..1"},
		{"negative", "maxParallel: 1", "maxParallel: -1", "may not be negative"},
		{"same name", "name: edges", "name: fog", "wave fog is listed twice"},
		{"bad name", "name: edges", "name: '../x'", "DNS-1035"},
		{"target approval", "    - cloud: center\n", "    - cloud: center\n      approval: true\n", "approval is set per wave"},
		{"metric without name", "name: 'http_errors_total{code=\"500\"}', ", "", "metric needs a path"},
		{"prometheus credentials", "'http://127.0.0.1:9090'", "'http://admin:secret@127.0.0.1:9090'", "credentials do not belong in the spec"},
		{"prometheus address", "'http://127.0.0.1:9090'", "'127.0.0.1:9090'", "must be an http(s) URL"},
		{"prometheus without bound", ", max: 0.5}", "}", "give max, min or both"},
		{"prometheus bounds", ", max: 0.5}", ", max: 0.5, min: 1}", "min 1 is above max 0.5"},
		{"prometheus without query", `query: 'sum(rate(errors{cloud="{{cloud}}"}[1m]))', `, "", "give one PromQL expression"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(wavesSpec, c.from) {
				t.Fatalf("%q not in the spec", c.from)
			}
			_, err := Parse([]byte(strings.Replace(wavesSpec, c.from, c.to, 1)), nil)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
	s, _ := Parse([]byte(wavesSpec), nil)
	s.Deploy.Waves[2].Labels = map[string]string{"ring": "nowhere"}
	if _, err := s.Deploy.Plan(tiers); err == nil || !strings.Contains(err.Error(), "in no wave") {
		t.Errorf("a target in no wave: %v", err)
	}
	s.Deploy.Waves = append(s.Deploy.Waves, Wave{Name: "again", Tier: "fog"})
	s.Deploy.Waves[2].Labels = map[string]string{"ring": "last"}
	if _, err := s.Deploy.Plan(tiers); err == nil || !strings.Contains(err.Error(), "wave again selects no target") {
		t.Errorf("a wave of nothing: %v", err)
	}
}
