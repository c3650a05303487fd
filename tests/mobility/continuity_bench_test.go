package mobility

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"go.temporal.io/sdk/client"

	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/topology"
	"github.com/edgedrift/drift/tests/harness"
	"github.com/edgedrift/drift/workflows"
)

// streamer POSTs /count at the current endpoint every interval, following
// the endpoint it is given, and keeps every answer.
type streamer struct {
	url  atomic.Pointer[string]
	mu   sync.Mutex
	hits []hit
}

type hit struct {
	at      time.Time // when the answer came
	url     string    // where the request went
	ok      bool
	count   int
	version string
}

func (s *streamer) follow(url string) { s.url.Store(&url) }

func (s *streamer) run(ctx context.Context, every time.Duration) {
	hc := &http.Client{Timeout: 2 * time.Second} // slow is a gap, not a failure
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		go func(url string) {
			h := hit{url: url}
			if resp, err := hc.Post(url+"/count", "", nil); err == nil {
				var body struct {
					Count   int
					Version string
				}
				h.ok = resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&body) == nil
				h.count, h.version = body.Count, body.Version
				resp.Body.Close()
			}
			h.at = time.Now()
			s.mu.Lock()
			s.hits = append(s.hits, h)
			s.mu.Unlock()
		}(*s.url.Load())
	}
}

// answers counts the client's successful and failed requests so far.
func (s *streamer) answers() (ok, failed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range s.hits {
		if h.ok {
			ok++
		} else {
			failed++
		}
	}
	return ok, failed
}

// notHeld is how many increments the client saw acknowledged that the
// count at ep (read once the stream is over) does not hold.
func (s *streamer) notHeld(t *testing.T, ep runtime.Endpoint) int {
	ok, _ := s.answers()
	return max(0, ok-readCount(t, ep))
}

// window is what the client saw around one move: its failed requests, the
// longest time without a successful answer (and whether it spanned the
// moment the client followed the new endpoint), and the answers of the new
// instance (target) whose count fell below the count before the move (state
// lost: a reset; a late answer of an instance the client left is not
// counted).
type window struct {
	failed, lost int
	gap          time.Duration
	gapAtSwitch  bool
}

func (s *streamer) window(from, followed, to time.Time, target string) window {
	s.mu.Lock()
	hits := slices.Clone(s.hits)
	s.mu.Unlock()
	slices.SortFunc(hits, func(a, b hit) int { return a.at.Compare(b.at) })
	w := window{}
	before, last := 0, from
	for _, h := range hits {
		switch {
		case h.at.Before(from):
			if h.ok {
				before = max(before, h.count)
			}
			continue
		case h.at.After(to):
			continue
		case !h.ok:
			w.failed++
			continue
		}
		if d := h.at.Sub(last); d > w.gap {
			w.gap, w.gapAtSwitch = d, !followed.Before(last) && !followed.After(h.at)
		}
		last = h.at
		if h.url == target && h.count < before {
			w.lost++
		}
	}
	if d := to.Sub(last); d > w.gap {
		w.gap, w.gapAtSwitch = d, !followed.Before(last)
	}
	return w
}

// modeResult sums one mode's moves. Writes lost: increments the client saw
// acknowledged that the final count does not hold.
type modeResult struct {
	name                            string
	moves, failed, lost, writesLost int
	atSwitch                        int // moves whose longest gap spanned the client's switch
	gaps                            []time.Duration
}

func (r *modeResult) add(w window) {
	r.moves++
	r.failed += w.failed
	r.lost += w.lost
	r.gaps = append(r.gaps, w.gap)
	if w.gapAtSwitch {
		r.atSwitch++
	}
}

func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

const (
	benchEvery = 20 * time.Millisecond // 50 requests a second
	benchTail  = time.Second           // watched after each move
)

// TestContinuityBench streams 50 requests a second at the counter app in
// three modes side by side, at once, on one Docker Engine: warm (the
// user commutes between edge-latin and edge-bastille, each the other's
// nearest neighbour and pre-deployed; state carried, make before break),
// cold (nothing pre-deployed, a round of four edge clouds: deploy, carry,
// switch, drain) and reactive (the seed's prior art, done straight on the
// runtime: destroy, then deploy). Beside them a client streams at an
// instance that never moves, cut into windows as long as a warm move's: the
// machine's own gaps. Then the warm session's serving instance is killed a
// few times and the failover timed. DRIFT_BENCH_MOVES sets the moves per
// mode (default 100).
func TestContinuityBench(t *testing.T) {
	if os.Getenv("DRIFT_BENCH") == "" {
		t.Skip("a benchmark: make bench-continuity")
	}
	if f := flag.Lookup("test.parallel"); f == nil || atoi(f.Value.String()) < 2 {
		t.Fatal("cold and reactive run side by side: go test -parallel 2 or more (make bench-continuity does)")
	}
	moves := 100
	if v, err := strconv.Atoi(os.Getenv("DRIFT_BENCH_MOVES")); err == nil {
		moves = v
	}
	failovers := max(3, moves/10)
	docker := harness.Docker(t)
	_, c := harness.Temporal(t, "")
	reg := harness.Registry(t)
	web, store := harness.CounterImages(t, reg, "v1")
	topo := harness.ExampleTopology(t)
	ws, _ := dockerWorkers(t, c, topo, reg.Host(), allClouds(topo, ""), true)
	app := counterApp(t, web, store)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	var ids []string
	for _, user := range []string{"bench-warm", "bench-cold", "bench-reactive", "bench-still"} {
		ids = append(ids, names.SessionID(user, "counter"))
	}
	t.Cleanup(func() { sweepSessions(t, ws.Runtimes, ids) })

	// The instance that never moves, and its client.
	stillLabels := map[string]string{runtime.LabelWorkflow: names.SessionID("bench-still", "counter")}
	stillName := runtime.InstanceName("counter", "bench-still", "fog-south")
	stillEP, err := ws.Runtimes["fog-south"].Deploy(ctx, stillName, app.RuntimeSpec("fog-south", stillLabels))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ws.Runtimes["fog-south"].Destroy(context.Background(), stillName) })
	still := &streamer{}
	still.follow(stillEP.URL)
	sctx, stopStill := context.WithCancel(ctx)
	go still.run(sctx, benchEvery)
	time.Sleep(time.Second)
	began := time.Now()

	var mu sync.Mutex
	results := map[string]modeResult{}
	var failoverTimes []time.Duration
	var warmWindow time.Duration // a warm move's mean window
	keep := func(r modeResult) {
		mu.Lock()
		defer mu.Unlock()
		results[r.name] = r
	}
	// Warm runs first, on its own beside the still client: the goal is
	// about its gaps, and the machine's own (the still client's) are
	// measured at the same time. Cold and reactive, which deploy on every
	// move, then run side by side.
	t.Run("warm", func(t *testing.T) {
		in := workflows.SessionInput{User: "bench-warm", App: app, Region: "quartier-latin", Topology: topo,
			Neighbours: topology.Policy{Kind: topology.Nearest, N: 1, Metric: topology.Geo}, PreDeploy: workflows.PreDeployNeighbours}
		r, fo, spent := sessionMoves(t, ctx, c, in, []string{"bastille", "quartier-latin"}, moves, func(id string, s *streamer) []time.Duration {
			var out []time.Duration
			for range failovers {
				waitWarm(t, ctx, c, id)
				st, _ := state(ctx, c, id)
				killInstance(t, ctx, docker, runtime.InstanceName("counter", "bench-warm", st.Serving))
				killed := time.Now()
				next, _ := waitFailover(t, ctx, c, id, st.Serving, failoverBound)
				s.follow(next.Endpoint.URL)
				for deadline := time.Now().Add(failoverBound); s.firstOK(killed) == 0; time.Sleep(5 * time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatalf("no answer from %s %s after the failover", next.Serving, failoverBound)
					}
				}
				out = append(out, s.firstOK(killed))
			}
			return out
		})
		r.name = "warm"
		keep(r)
		mu.Lock()
		failoverTimes, warmWindow = fo, spent/time.Duration(max(1, r.moves))
		mu.Unlock()
	})
	ended := time.Now()
	stopStill()
	if t.Failed() {
		t.FailNow()
	}
	t.Run("cold and reactive", func(t *testing.T) {
		t.Run("cold", func(t *testing.T) {
			t.Parallel()
			in := workflows.SessionInput{User: "bench-cold", App: app, Region: "quartier-latin", Topology: topo,
				Neighbours: topology.Policy{Kind: topology.Adjacency}, PreDeploy: workflows.PreDeployNone}
			r, _, _ := sessionMoves(t, ctx, c, in, []string{"bastille", "montmartre", "montparnasse", "quartier-latin"}, moves, nil)
			r.name = "cold"
			keep(r)
		})
		t.Run("reactive", func(t *testing.T) {
			t.Parallel()
			r := reactive(t, ctx, ws.Runtimes, app.RuntimeSpec, moves)
			keep(r)
		})
	})
	if t.Failed() {
		t.FailNow()
	}
	// The still client's gaps, in windows as long as a warm move's.
	base := modeResult{name: "no move (same machine, during warm)"}
	for from := began; from.Add(warmWindow).Before(ended); from = from.Add(warmWindow) {
		base.add(still.window(from, time.Time{}, from.Add(warmWindow), stillEP.URL))
	}

	table := continuityTable([]modeResult{results["warm"], results["cold"], results["reactive"], base}, failoverTimes, time.Since(began))
	fmt.Println(table)
	if path := os.Getenv("DRIFT_BENCH_REPORT"); path != "" {
		if err := os.WriteFile(path, []byte(table), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := ws.Runtimes["fog-south"].Destroy(ctx, stillName); err != nil {
		t.Fatal(err)
	}
}

// sweepSessions reports and destroys whatever the sessions ids (by their
// workflow label) left on any runtime, whether the test passed or failed.
func sweepSessions(t *testing.T, rts map[string]runtime.Runtime, ids []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for cloud, rt := range rts {
		for _, id := range ids {
			left, err := rt.List(ctx, map[string]string{runtime.LabelWorkflow: id})
			if err != nil || len(left) > 0 {
				t.Errorf("%s still holds %v (%v)", cloud, left, err)
			}
			for _, in := range left {
				if err := rt.Destroy(ctx, in.Name); err != nil {
					t.Errorf("destroy %s on %s: %v", in.Name, cloud, err)
				}
			}
		}
	}
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

// sessionMoves opens a session of in, streams at it, moves it through
// regions in turn moves times, runs then (if any) with the session's id
// and client, and exits. A cold session's next target must hold nothing of
// it (a draining instance would make the move warm). It returns the moves,
// what then returned, and the time the moves took.
func sessionMoves(t *testing.T, ctx context.Context, c client.Client, in workflows.SessionInput, regions []string, moves int, then func(string, *streamer) []time.Duration) (modeResult, []time.Duration, time.Duration) {
	id := names.SessionID(in.User, "counter")
	run := startSession(t, ctx, c, id, in)
	cold := in.PreDeploy == workflows.PreDeployNone
	if !cold {
		waitWarm(t, ctx, c, id)
	}
	st, _ := state(ctx, c, id)
	s := &streamer{}
	s.follow(st.Endpoint.URL)
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	go s.run(sctx, benchEvery)
	time.Sleep(time.Second)
	r, last := modeResult{}, st.Endpoint
	began := time.Now()
	for i := range moves {
		region := regions[i%len(regions)]
		if cold {
			waitGone(t, ctx, c, id, region, in.Topology)
		}
		from := time.Now()
		res := move(t, ctx, c, id, region)
		s.follow(res.Endpoint.URL)
		followed := time.Now()
		time.Sleep(benchTail)
		w := s.window(from, followed, time.Now(), res.Endpoint.URL)
		t.Logf("%s move %d to %s: warm %v, answered in %s, failed %d, lost %d, gap %s (at the switch: %v), context %v",
			in.User, i, res.Cloud, res.Warm, followed.Sub(from).Round(time.Millisecond), w.failed, w.lost, w.gap.Round(time.Millisecond), w.gapAtSwitch,
			res.ContextTransferState != nil && *res.ContextTransferState == 1)
		if res.Warm == cold {
			t.Errorf("%s move %d: warm %v", in.User, i, res.Warm)
		}
		r.add(w)
		last = res.Endpoint
	}
	spent := time.Since(began)
	// The stream ends with the moves; once the last move's late writes are
	// carried, the count must hold every increment acknowledged.
	stop()
	time.Sleep(3 * time.Second) // its last answers (a request is bounded by 2 s)
	settledMoves(t, ctx, c, id, 1)
	r.writesLost = s.notHeld(t, last)
	var out []time.Duration
	if then != nil {
		s = &streamer{}
		s.follow(last.URL)
		go s.run(ctx, benchEvery)
		out = then(id, s)
	}
	if err := c.SignalWorkflow(ctx, id, "", names.ExitSignal, nil); err != nil {
		t.Fatal(err)
	}
	if err := run.Get(ctx, nil); err != nil {
		t.Fatal(err)
	}
	return r, out, spent
}

// waitGone waits until the session holds no instance on region's cloud.
func waitGone(t *testing.T, ctx context.Context, c client.Client, id, region string, topo *topology.Topology) {
	t.Helper()
	cl, err := topo.FirstCloud(region)
	if err != nil {
		t.Fatal(err)
	}
	cloud := cl.ID
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		st, err := state(ctx, c, id)
		if err == nil && !slices.ContainsFunc(st.Instances, func(in workflows.Instance) bool { return in.Cloud == cloud }) {
			return
		}
	}
	t.Fatalf("%s still holds an instance on %s after a minute", id, cloud)
}

// firstOK is how long after t the first successful answer came (0: none yet).
func (s *streamer) firstOK(t time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	best := time.Duration(0)
	for _, h := range s.hits {
		if h.ok && h.at.After(t) && (best == 0 || h.at.Sub(t) < best) {
			best = h.at.Sub(t)
		}
	}
	return best
}

// killInstance kills the containers of an instance.
func killInstance(t *testing.T, ctx context.Context, docker interface {
	ContainerList(context.Context, container.ListOptions) ([]container.Summary, error)
	ContainerKill(context.Context, string, string) error
}, name string) {
	t.Helper()
	cs, err := docker.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", runtime.LabelInstance+"="+runtime.LabelValue(name)))})
	if err != nil || len(cs) == 0 {
		t.Fatalf("containers of %s: %d (%v)", name, len(cs), err)
	}
	for _, ct := range cs {
		if err := docker.ContainerKill(ctx, ct.ID, "KILL"); err != nil {
			t.Fatal(err)
		}
	}
}

// reactive is the seed's prior art, straight on the runtimes: each move
// destroys the serving instance, then deploys on the target; no state is
// carried.
func reactive(t *testing.T, ctx context.Context, rts map[string]runtime.Runtime, spec func(string, map[string]string) runtime.Spec, moves int) modeResult {
	labels := map[string]string{runtime.LabelWorkflow: names.SessionID("bench-reactive", "counter")}
	clouds := []string{"edge-bastille", "edge-latin"}
	name := func(cloud string) string { return runtime.InstanceName("counter", "bench-reactive", cloud) }
	serving := "edge-latin"
	ep, err := rts[serving].Deploy(ctx, name(serving), spec(serving, labels))
	if err != nil {
		t.Fatal(err)
	}
	s := &streamer{}
	s.follow(ep.URL)
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	go s.run(sctx, benchEvery)
	time.Sleep(time.Second)
	r := modeResult{name: "reactive"}
	for i := range moves {
		target := clouds[i%2]
		from := time.Now()
		if err := rts[serving].Destroy(ctx, name(serving)); err != nil {
			t.Fatal(err)
		}
		if ep, err = rts[target].Deploy(ctx, name(target), spec(target, labels)); err != nil {
			t.Fatal(err)
		}
		serving = target
		s.follow(ep.URL)
		followed := time.Now()
		time.Sleep(benchTail)
		r.add(s.window(from, followed, time.Now(), ep.URL))
	}
	stop()
	time.Sleep(3 * time.Second)
	r.writesLost = s.notHeld(t, ep)
	if err := rts[serving].Destroy(ctx, name(serving)); err != nil {
		t.Fatal(err)
	}
	return r
}

func continuityTable(results []modeResult, failovers []time.Duration, took time.Duration) string {
	var b strings.Builder
	cmd := os.Getenv("DRIFT_BENCH_COMMAND")
	fmt.Fprintf(&b, "# Continuity: a client that follows its app across moves\n\n")
	fmt.Fprintf(&b, "`%s`, %s; warm ran first on its own, then cold and reactive side by side; %s in all. ", cmd, time.Now().UTC().Format("2006-01-02 15:04 UTC"), took.Round(time.Second))
	fmt.Fprintf(&b, "The two-service counter app (deploy/examples/apps/counter) on one Docker Engine; in each mode a client POSTs /count 50 times a second at the endpoint each move returns. "+
		"Warm: the user commutes between edge-latin and edge-bastille, each the other's nearest neighbour (nearest:1,geo), pre-deployed; the count is carried before the switch and the old instance drains. "+
		"Cold: nothing pre-deployed, a round of four edge clouds; the target is deployed, the count carried, then the switch. "+
		"Reactive (the seed's prior art): the serving instance is destroyed, then the target deployed, straight on the runtime. "+
		"The last row is a client streaming at an instance that never moves while the warm mode ran, cut into windows as long as a warm move's: the gaps of the machine itself.\n\n")
	fmt.Fprintf(&b, "Per move the window runs from the move's request to 1 s after its answer. Gap: the longest time without a successful answer; at switch: moves whose longest gap spans the moment the client followed the new endpoint. "+
		"State lost: answers of the new instance whose count fell below the count seen before the move (a reset). "+
		"Writes lost: increments the client saw acknowledged that the count does not hold once the moves are over (and the last move's late writes carried).\n\n")
	fmt.Fprintf(&b, "| mode | moves | failed requests | longest gap p50 | longest gap p99 | gap at switch | state lost (answers) | writes lost |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
	gap := map[string]time.Duration{}
	for _, r := range results {
		gap[r.name] = pct(r.gaps, 0.99)
		fmt.Fprintf(&b, "| %s | %d | %d | %s | %s | %d | %d | %d |\n", r.name, r.moves, r.failed,
			pct(r.gaps, 0.5).Round(time.Millisecond), pct(r.gaps, 0.99).Round(time.Millisecond), r.atSwitch, r.lost, r.writesLost)
	}
	if gap["warm"] > 0 {
		fmt.Fprintf(&b, "\nReactive/warm p99 gap ratio: %.1f×.\n", float64(gap["reactive"])/float64(gap["warm"]))
	}
	for _, r := range results {
		if r.name != "warm" {
			continue
		}
		verdict := func(ok bool) string {
			if ok {
				return "met"
			}
			return "NOT met"
		}
		fmt.Fprintf(&b, "\nGoal (warm): zero failed requests — %s (%d); p99 gap ≤ 2 request intervals (40 ms) — %s (%s); no state lost — %s (%d answers saw a reset; %d writes lost).\n",
			verdict(r.failed == 0), r.failed, verdict(pct(r.gaps, 0.99) <= 2*benchEvery), pct(r.gaps, 0.99).Round(time.Millisecond), verdict(r.lost == 0 && r.writesLost == 0), r.lost, r.writesLost)
		still := results[len(results)-1] // the client of the instance that never moves
		fmt.Fprintf(&b, "\nThe machine's own floor, measured at the same time: a client of an instance that never moves saw a longest gap of %s p50, %s p99 in windows as long.\n",
			pct(still.gaps, 0.5).Round(time.Millisecond), pct(still.gaps, 0.99).Round(time.Millisecond))
		if r.moves < 100 {
			fmt.Fprintf(&b, "\nThis run made %d moves per mode, below the issue's ≥100: a shortened run (DRIFT_BENCH_MOVES).\n", r.moves)
		}
	}
	fmt.Fprintf(&b, "\nFailover (the warm session's serving containers killed → first successful answer, client following the session's endpoint), %d kills: p50 %s, p99 %s.\n",
		len(failovers), pct(failovers, 0.5).Round(time.Millisecond), pct(failovers, 0.99).Round(time.Millisecond))
	return b.String()
}
