package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	goruntime "runtime"
	"slices"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"go.temporal.io/sdk/client"

	"github.com/edgedrift/drift/internal/appspec"
	drift "github.com/edgedrift/drift/internal/client"
	"github.com/edgedrift/drift/internal/image"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/runtime/open"
	"github.com/edgedrift/drift/internal/runtime/runtimetest"
	"github.com/edgedrift/drift/internal/topology"
	"github.com/edgedrift/drift/internal/workerhost"
	"github.com/edgedrift/drift/workflows"
)

// benchEnv is DRIFT_BENCH: the long measurements run only when it is 1
// (`make bench` sets it).
const benchEnv = "DRIFT_BENCH"

func requireBench(t testing.TB) {
	t.Helper()
	if os.Getenv(benchEnv) != "1" {
		t.Skipf("set %s=1 (make bench) to run the measurements", benchEnv)
	}
}

// benchTopology pairs clouds of one runtime each: two fog clouds on Docker,
// two edge clouds running processes and two edge clouds on the bench-only
// instant runtime. Each pair is joined by a 1 ms link, so with the policy
// nearest:1 a cloud's one neighbour is its pair, and a session moving
// between the pair's regions is warm on every move when it pre-deploys.
// The center takes the central queue's sweeps; nothing is deployed there.
const benchTopology = `
name: bench
clouds:
  - {id: center, tier: center}
  - {id: fog-a, tier: fog, parent: center, uplink: 10ms, runtime: {kind: docker}}
  - {id: fog-b, tier: fog, parent: center, uplink: 10ms, runtime: {kind: docker}}
  - {id: edge-a, tier: edge, parent: fog-a, uplink: 5ms, runtime: {kind: process}}
  - {id: edge-b, tier: edge, parent: fog-b, uplink: 5ms, runtime: {kind: process}}
  - {id: inst-a, tier: edge, parent: fog-a, uplink: 5ms}
  - {id: inst-b, tier: edge, parent: fog-b, uplink: 5ms}
regions:
  fa: fog-a
  fb: fog-b
  ea: edge-a
  eb: edge-b
  ia: inst-a
  ib: inst-b
links:
  - {a: fog-a, b: fog-b, latency: 1ms}
  - {a: edge-a, b: edge-b, latency: 1ms}
  - {a: inst-a, b: inst-b, latency: 1ms}
`

// instantClouds of benchTopology run on runtimetest.Instant runtimes.
var instantClouds = []string{"center", "inst-a", "inst-b"}

// scaleTopology is what the sessions-held measurement and the quick smoke
// test run on: only instant clouds.
const scaleTopology = `
name: bench-scale
clouds:
  - {id: center, tier: center}
  - {id: inst-a, tier: edge, parent: center, uplink: 5ms}
  - {id: inst-b, tier: edge, parent: center, uplink: 5ms}
regions:
  ia: inst-a
  ib: inst-b
links:
  - {a: inst-a, b: inst-b, latency: 1ms}
`

// nearestOne is the neighbour policy of every bench session.
var nearestOne = topology.Policy{Kind: topology.Nearest, N: 1}

// pairs are the two regions a session moves between, by runtime.
var pairs = map[string][2]string{
	runtime.KindDocker:      {"fa", "fb"},
	runtime.KindProcess:     {"ea", "eb"},
	runtimetest.KindInstant: {"ia", "ib"},
}

func parseTopology(t testing.TB, doc string) *topology.Topology {
	t.Helper()
	topo, err := topology.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

// env is a worker process's view: a client, the topology and the workers
// serving every cloud of it, the instant ones on runtimetest.Instant runtimes.
type env struct {
	c        client.Client
	topo     *topology.Topology
	ws       *workerhost.Workers
	instants map[string]*runtimetest.Instant
	timed    map[string]*timed // the real runtimes, by cloud
	spec     appspec.AppSpec
}

// timed is a real runtime whose Deploy calls are timed.
type timed struct {
	runtime.Runtime
	mu      sync.Mutex
	deploys []time.Duration
}

func (r *timed) Deploy(ctx context.Context, name string, spec runtime.Spec) (runtime.Endpoint, error) {
	start := time.Now()
	ep, err := r.Runtime.Deploy(ctx, name, spec)
	if err == nil {
		r.mu.Lock()
		r.deploys = append(r.deploys, time.Since(start))
		r.mu.Unlock()
	}
	return ep, err
}

// take returns the Deploy times recorded since the last take.
func (r *timed) take() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.deploys
	r.deploys = nil
	return out
}

// deployTimes takes the Deploy times recorded on clouds (none for instant
// ones).
func (e *env) deployTimes(clouds ...string) []time.Duration {
	var out []time.Duration
	for _, id := range clouds {
		if rt := e.timed[id]; rt != nil {
			out = append(out, rt.take()...)
		}
	}
	return out
}

// startEnv starts one worker process's pollers for every cloud of topo and
// the central queue, the clouds named in instant on Instant runtimes and the
// others on the runtime their topology entry declares (process runtimes
// keep their state under dataDir).
func startEnv(t testing.TB, c client.Client, topo *topology.Topology, instant []string, registry, imageRef, dataDir string) *env {
	t.Helper()
	e := &env{c: c, topo: topo, instants: map[string]*runtimetest.Instant{}}
	rts := map[string]runtime.Runtime{}
	var clouds []string
	for _, cl := range topo.Clouds() {
		clouds = append(clouds, cl.ID)
		if slices.Contains(instant, cl.ID) {
			e.instants[cl.ID] = runtimetest.NewInstant(cl.ID)
			rts[cl.ID] = e.instants[cl.ID]
			continue
		}
		// Real runtimes are opened the way the worker opens them, and
		// wrapped to time their Deploy calls.
		rt, err := open.Runtime(cl.ID, cl.Runtime, dataDir)
		if err != nil {
			t.Fatalf("cloud %s: %v", cl.ID, err)
		}
		if e.timed == nil {
			e.timed = map[string]*timed{}
		}
		e.timed[cl.ID] = &timed{Runtime: rt}
		rts[cl.ID] = e.timed[cl.ID]
	}
	ws, err := workerhost.StartWorkers(c, workerhost.WorkerOptions{
		Topology: topo, Clouds: clouds, Central: true, DataDir: dataDir,
		Registry: registry, Runtimes: rts,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ws.Stop()
		for _, rt := range e.timed {
			if cl, ok := rt.Runtime.(interface{ Close() error }); ok {
				cl.Close()
			}
		}
	})
	e.ws = ws
	spec, err := appspec.FromImage("hello", imageRef, 8080)
	if err != nil {
		t.Fatal(err)
	}
	spec.Health = "/healthz"
	e.spec = spec
	return e
}

// open starts a session for user in region and returns once it serves.
func (e *env) open(ctx context.Context, user, region, preDeploy string) (workflows.MoveResult, error) {
	o := drift.Open{User: user, App: e.spec, Region: region, Topology: e.topo, Neighbours: nearestOne, PreDeploy: preDeploy}
	if first, err := e.topo.FirstCloud(region); err == nil && e.instants[first.ID] != nil {
		// An instant instance has no address a probe could reach: watched,
		// it would be failed over after a few seconds and the next move
		// would be cold.
		o.Continuity.NoFailover = true
	}
	if preDeploy == workflows.PreDeployNone {
		// A cold move deploys its target: no instance the session left is
		// kept draining for the next move to come back to.
		o.Continuity.Drain = -1
	}
	res, err := drift.New(e.c).OpenSession(ctx, o)
	return res.MoveResult, err
}

// quiet waits until the session serves with nothing in flight and every
// instance it holds ready: what a warm move needs, and what makes a cold
// move start from a clean slate.
func (e *env) quiet(ctx context.Context, user string) (workflows.SessionState, error) {
	for {
		st, err := drift.New(e.c).Session(ctx, user, e.spec.Name)
		if err != nil {
			return st, err
		}
		ready := st.Phase == "serving" && len(st.InFlight) == 0
		for _, in := range st.Instances {
			ready = ready && in.Status == workflows.StatusReady
		}
		if ready {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("session of %s never settled: %w (last state: phase %s, in flight %v)", user, ctx.Err(), st.Phase, st.InFlight)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// sample is one move as the client saw it and as the workflow reported it.
type sample struct {
	Client time.Duration // Move update sent → result received
	Switch time.Duration // the workflow's own SwitchTime
	Warm   bool
}

// move moves the session and times the Move update from the client.
func (e *env) move(ctx context.Context, user, region string) (sample, workflows.MoveResult, error) {
	start := time.Now()
	res, err := drift.New(e.c).Move(ctx, user, e.spec.Name, region)
	elapsed := time.Since(start)
	if err != nil {
		return sample{}, res, err
	}
	want, _ := e.topo.FirstCloud(region)
	if res.Cloud != want.ID {
		return sample{}, res, fmt.Errorf("move of %s to %s served from %s, want %s", user, region, res.Cloud, want.ID)
	}
	return sample{Client: elapsed, Switch: res.SwitchTime, Warm: res.Warm}, res, nil
}

// exit ends the session and returns its report.
func (e *env) exit(ctx context.Context, user string) (workflows.SessionState, error) {
	return drift.New(e.c).Exit(ctx, user, e.spec.Name)
}

// series is one (runtime, mode) column of the handover table.
type series struct {
	Runtime string
	Mode    string // warm or cold
	Moves   []sample
	// Mismatched counts moves whose Warm flag was not the mode's (a warm
	// move that had to deploy, or a cold one that found an instance).
	Mismatched int
	Report     workflows.Totals
	// Deploys are the runtime's own Deploy times during the counted moves
	// (the cold session's deploys; the warm session deploys nothing then).
	Deploys []time.Duration
}

func (s series) clients() []time.Duration {
	return pick(s.Moves, func(m sample) time.Duration { return m.Client })
}
func (s series) switches() []time.Duration {
	return pick(s.Moves, func(m sample) time.Duration { return m.Switch })
}

func pick(ms []sample, f func(sample) time.Duration) []time.Duration {
	out := make([]time.Duration, len(ms))
	for i, m := range ms {
		out[i] = f(m)
	}
	return out
}

// measureHandovers opens two sessions on the pair of clouds of kind, one
// pre-deploying to neighbours (every move warm) and one pre-deploying
// nothing (every move cold), and moves them back and forth side by side:
// warmup+n moves each, alternating warm and cold, each from a quiet
// session. The first warmup moves are not counted.
func (e *env) measureHandovers(ctx context.Context, kind string, warmup, n int) (warm, cold series, err error) {
	regions := pairs[kind]
	warm = series{Runtime: kind, Mode: "warm"}
	cold = series{Runtime: kind, Mode: "cold"}
	users := map[*series]string{&warm: "hw-" + kind, &cold: "hc-" + kind}
	policy := map[*series]string{&warm: workflows.PreDeployNeighbours, &cold: workflows.PreDeployNone}
	order := []*series{&warm, &cold}
	for _, s := range order {
		if _, err := e.open(ctx, users[s], regions[0], policy[s]); err != nil {
			return warm, cold, err
		}
	}
	defer func() {
		// Exit even when a move failed, so nothing outlives the bench.
		xctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		for _, s := range order {
			rep, xerr := e.exit(xctx, users[s])
			s.Report = rep.Totals
			err = errors.Join(err, xerr)
		}
	}()
	var pairClouds []string
	for _, r := range regions {
		cl, _ := e.topo.FirstCloud(r)
		pairClouds = append(pairClouds, cl.ID)
	}
	for i := range warmup + n {
		if i == warmup {
			e.deployTimes(pairClouds...) // forget the warm-up's
		}
		region := regions[(i+1)%2]
		for _, s := range order {
			for _, u := range users {
				if _, err := e.quiet(ctx, u); err != nil {
					return warm, cold, err
				}
			}
			m, _, err := e.move(ctx, users[s], region)
			if err != nil {
				return warm, cold, err
			}
			if i < warmup {
				continue
			}
			if m.Warm != (s.Mode == "warm") {
				s.Mismatched++
			}
			s.Moves = append(s.Moves, m)
		}
	}
	// Every deploy of the counted moves was the cold session's; one made by
	// the warm session would show as a mismatched move.
	cold.Deploys = e.deployTimes(pairClouds...)
	return warm, cold, nil
}

// rate is a count of updates completed in an elapsed wall time.
type rate struct {
	Count   int
	Elapsed time.Duration
	CPU     cpuUse // how busy the machine was meanwhile
}

func (r rate) PerSec() float64 { return float64(r.Count) / r.Elapsed.Seconds() }

func (r rate) add(o rate) rate { return rate{Count: r.Count + o.Count, Elapsed: r.Elapsed + o.Elapsed} }

// drive runs clients goroutines that each call do perClient times in a row,
// all released at once, and returns the wall time until the last finished.
func drive(ctx context.Context, clients, perClient int, do func(ctx context.Context, client, i int) error) (rate, error) {
	var wg sync.WaitGroup
	errs := make([]error, clients)
	release := make(chan struct{})
	for cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-release
			for i := range perClient {
				if err := do(ctx, cl, i); err != nil {
					errs[cl] = err
					return
				}
			}
		}()
	}
	cpu := readCPU()
	start := time.Now()
	close(release)
	wg.Wait()
	elapsed := time.Since(start)
	return rate{Count: clients * perClient, Elapsed: elapsed, CPU: cpu.until(readCPU(), goruntime.NumCPU())}, errors.Join(errs...)
}

// tinyImage pushes a one-file image to the registry at host and returns it
// pinned by digest: enough for the instant runtime, which runs nothing, and
// for the session's EnsureImage step, which finds it in the center registry.
func tinyImage(t testing.TB, host string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	img, err := image.Build(v1.Platform{OS: "linux", Architecture: "amd64"},
		[]image.File{{Path: "/hello", Mode: 0o755, Data: []byte("#!/bin/false\n")}},
		image.Config{Entrypoint: []string{"/hello"}, Ports: []int{8080}})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := image.Push(ctx, host+"/bench-tiny:v1", img)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}
