package pipelinespec

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Defaults of waves and their analysis.
const (
	DefaultAnalysisInterval = time.Second
	DefaultSuccessRatio     = 1.0
)

// Wave is one step of a rollout: the targets it takes (listed, of a tier
// of the topology, or carrying labels), how many deploy at once, whether
// it waits for approval, and how long its new instances bake under
// analysis before the next wave starts. A target belongs to the first
// wave that selects it.
type Wave struct {
	Name        string            `yaml:"name" json:"name"`
	Targets     []string          `yaml:"targets" json:"targets,omitempty"`
	Tier        string            `yaml:"tier" json:"tier,omitempty"`
	Labels      map[string]string `yaml:"labels" json:"labels,omitempty"`
	MaxParallel int               `yaml:"maxParallel" json:"maxParallel,omitempty"` // 0: the whole wave at once
	Approval    bool              `yaml:"approval" json:"approval,omitempty"`       // wait for Approve before the wave
	Bake        time.Duration     `yaml:"bake" json:"bake,omitempty"`               // wait (under analysis) after the wave
	Analysis    *Analysis         `yaml:"analysis" json:"analysis,omitempty"`
}

// Analysis is the gate a wave passes after it deployed: requests from each
// target's own worker for the bake time (Argo Rollouts' successCondition
// and failureLimit are the model).
type Analysis struct {
	Path         string        `yaml:"path" json:"path,omitempty"`         // default: the health path
	Interval     time.Duration `yaml:"interval" json:"interval,omitempty"` // between requests (default 1s)
	SuccessRatio float64       `yaml:"successRatio" json:"successRatio"`   // least share of 2xx answers (default 1)
	MaxLatency   time.Duration `yaml:"maxLatency" json:"maxLatency,omitempty"`
	// FailureLimit is how many failed requests are tolerated; one more
	// stops the analysis at once (nil: no limit, the ratio decides).
	FailureLimit *int            `yaml:"failureLimit" json:"failureLimit,omitempty"`
	Metric       *MetricGate     `yaml:"metric" json:"metric,omitempty"`
	Prometheus   *PrometheusGate `yaml:"prometheus" json:"prometheus,omitempty"`
}

// MetricGate bounds one metric of the instance's metrics endpoint
// (Prometheus text format), read at the end of the bake.
type MetricGate struct {
	Path string  `yaml:"path" json:"path"` // e.g. /metrics
	Name string  `yaml:"name" json:"name"` // series as exposed, e.g. http_errors_total or x{code="500"}
	Max  float64 `yaml:"max" json:"max"`
}

// PrometheusGate bounds the answer of a PromQL query, asked at the end of
// the bake from the target's worker (a site's Prometheus is usually only
// reachable there). Every sample of the answer must be within min..max;
// an answer without samples fails the gate: a query that matches nothing
// judges nothing. {{cloud}} in the query stands for the target's cloud.
type PrometheusGate struct {
	Address string   `yaml:"address" json:"address"` // e.g. http://127.0.0.1:9090
	Query   string   `yaml:"query" json:"query"`
	Max     *float64 `yaml:"max" json:"max,omitempty"`
	Min     *float64 `yaml:"min" json:"min,omitempty"`
}

// QueryFor is the query as asked for the target on cloud.
func (g PrometheusGate) QueryFor(cloud string) string {
	return strings.ReplaceAll(g.Query, "{{cloud}}", cloud)
}

// problems lists what is wrong with the gate.
func (g PrometheusGate) problems() []string {
	var p []string
	u, err := url.Parse(g.Address)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		p = append(p, fmt.Sprintf("prometheus address %q must be an http(s) URL", g.Address))
	case u.User != nil:
		// The spec is in the run's history: a password there is visible to
		// everyone who can read the run.
		p = append(p, "prometheus address: credentials do not belong in the spec (it is kept in the run's history)")
	case u.RawQuery != "" || u.Fragment != "":
		p = append(p, fmt.Sprintf("prometheus address %q: no query or fragment (the query goes in query:)", g.Address))
	}
	if strings.TrimSpace(g.Query) == "" || len(g.Query) > 4096 {
		p = append(p, "prometheus query: give one PromQL expression (at most 4096 bytes)")
	}
	switch {
	case g.Max == nil && g.Min == nil:
		p = append(p, "prometheus: give max, min or both")
	case g.Max != nil && g.Min != nil && *g.Min > *g.Max:
		p = append(p, fmt.Sprintf("prometheus: min %g is above max %g", *g.Min, *g.Max))
	}
	return p
}

// fillWaves sets the defaults of waves' analyses.
func (d *Deploy) fillWaves() {
	for i := range d.Waves {
		if a := d.Waves[i].Analysis; a != nil {
			if a.Interval == 0 {
				a.Interval = DefaultAnalysisInterval
			}
			if a.SuccessRatio == 0 {
				a.SuccessRatio = DefaultSuccessRatio
			}
		}
	}
}

// waveProblems lists what is wrong with the waves on their own (the tiers
// they name are checked by Plan, which knows the topology).
func (d Deploy) waveProblems() []string {
	var p []string
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	if len(d.Waves) == 0 {
		return nil
	}
	clouds := map[string]bool{}
	for _, t := range d.Targets {
		clouds[t.Cloud] = true
		if t.Approval {
			add("target %s: approval is set per wave when deploy.waves is used", t.Cloud)
		}
	}
	seen := map[string]bool{}
	for i, w := range d.Waves {
		name := w.Name
		if !appRE.MatchString(name) {
			add("waves[%d]: name %q must be a DNS-1035 label", i, name)
		} else if seen[name] {
			add("wave %s is listed twice", name)
		}
		seen[name] = true
		selectors := 0
		for _, set := range []bool{len(w.Targets) > 0, w.Tier != "", len(w.Labels) > 0} {
			if set {
				selectors++
			}
		}
		if selectors != 1 {
			add("wave %s: give exactly one of targets, tier or labels", name)
		}
		for _, c := range w.Targets {
			if !clouds[c] {
				add("wave %s: %q is not one of deploy.targets", name, c)
			}
		}
		if w.MaxParallel < 0 || w.Bake < 0 {
			add("wave %s: maxParallel and bake may not be negative", name)
		}
		if a := w.Analysis; a != nil {
			if w.Bake <= 0 {
				add("wave %s: an analysis runs for the bake time: set bake", name)
			}
			if a.SuccessRatio < 0 || a.SuccessRatio > 1 {
				add("wave %s: successRatio %v is not in 0..1", name, a.SuccessRatio)
			}
			if a.Interval < 0 || a.MaxLatency < 0 || a.FailureLimit != nil && *a.FailureLimit < 0 {
				add("wave %s: interval, maxLatency and failureLimit may not be negative", name)
			}
			if a.Path != "" && !pathOK(a.Path) {
				add("wave %s: analysis path %q must start with '/'", name, a.Path)
			}
			if m := a.Metric; m != nil && (!pathOK(m.Path) || m.Name == "") {
				add("wave %s: metric needs a path starting with '/' and a name", name)
			}
			if g := a.Prometheus; g != nil {
				for _, q := range g.problems() {
					add("wave %s: %s", name, q)
				}
			}
		}
	}
	return p
}

func pathOK(p string) bool { return len(p) > 0 && p[0] == '/' && len(p) <= 1024 }

// Plan assigns every target to its wave: the indices in Targets of each
// wave's targets, in the order Targets lists them. tierOf gives a cloud's
// tier. A spec without waves is one wave of every target. A target no wave
// selects, or a wave that selects none, is an error.
func (d Deploy) Plan(tierOf func(cloud string) string) ([][]int, error) {
	if len(d.Waves) == 0 {
		all := make([]int, len(d.Targets))
		for i := range all {
			all[i] = i
		}
		return [][]int{all}, nil
	}
	plan := make([][]int, len(d.Waves))
	for i, t := range d.Targets {
		w := slices.IndexFunc(d.Waves, func(w Wave) bool { return w.selects(t, tierOf(t.Cloud)) })
		if w < 0 {
			return nil, fmt.Errorf("%w: target %s is in no wave", ErrInvalid, t.Cloud)
		}
		plan[w] = append(plan[w], i)
	}
	for w, idx := range plan {
		if len(idx) == 0 {
			return nil, fmt.Errorf("%w: wave %s selects no target not taken by an earlier wave", ErrInvalid, d.Waves[w].Name)
		}
	}
	return plan, nil
}

func (w Wave) selects(t Target, tier string) bool {
	switch {
	case len(w.Targets) > 0:
		return slices.Contains(w.Targets, t.Cloud)
	case w.Tier != "":
		return w.Tier == tier
	}
	for _, k := range sortedKeys(w.Labels) {
		if t.Labels[k] != w.Labels[k] {
			return false
		}
	}
	return len(w.Labels) > 0
}
