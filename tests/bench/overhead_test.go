package bench

import (
	"context"
	"fmt"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/runtime/runtimetest"
	"github.com/edgedrift/drift/workflows"
)

// The no-op baseline: a workflow whose Update handler returns at once.
const (
	noopQueue    = "bench-noop"
	noopWorkflow = "BenchNoop"
	noopUpdate   = "Noop"
	noopExit     = "Exit"
)

// benchNoop answers Noop updates with their argument until signalled to
// exit. It is the least a workflow can do per Update: the round trip
// through the server and one workflow task. With upsert set (a diagnostic,
// not the baseline) the handler also upserts the DriftCloud search
// attribute on every update, as sessions did before they throttled it.
func benchNoop(ctx workflow.Context, upsert bool) (int, error) {
	n := 0
	if err := workflow.SetUpdateHandler(ctx, noopUpdate, func(ctx workflow.Context, region string) (string, error) {
		n++
		if upsert {
			if err := workflow.UpsertTypedSearchAttributes(ctx, names.CloudKey.ValueSet(region)); err != nil {
				return "", err
			}
		}
		return region, nil
	}); err != nil {
		return 0, err
	}
	workflow.GetSignalChannel(ctx, noopExit).Receive(ctx, nil)
	if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
		return n, err
	}
	return n, nil
}

// overhead is the result of the orchestration-overhead measurement.
type overhead struct {
	Clients, PerClient, Rounds int
	// Per round. Every counted move was warm.
	Mobility, Noop []rate
	// NoopUpsert is the diagnostic: no-op updates that also upsert a
	// search attribute.
	NoopUpsert []rate
}

func (o overhead) total(rs []rate) rate {
	var t rate
	for _, r := range rs {
		t = t.add(r)
	}
	return t
}

// Ratio is the mobility rate over the no-op rate, over all rounds.
func (o overhead) Ratio() float64 {
	return o.total(o.Mobility).PerSec() / o.total(o.Noop).PerSec()
}

// measureOverhead compares warm Move updates of clients sessions on the
// instant clouds with no-op updates of as many no-op workflows, driven the
// same way: clients goroutines, one per workflow, each sending perClient
// updates in a row. Each round runs no-op, no-op with upsert and
// mobility, in an order rotated every round, so drift of the machine hits
// all alike; each kind is preceded by a short uncounted warm-up of the
// same kind.
func (e *env) measureOverhead(ctx context.Context, clients, perClient, rounds int) (res overhead, err error) {
	res = overhead{Clients: clients, PerClient: perClient, Rounds: rounds}
	w := worker.New(e.c, noopQueue, worker.Options{})
	w.RegisterWorkflowWithOptions(benchNoop, workflow.RegisterOptions{Name: noopWorkflow})
	if err := w.Start(); err != nil {
		return res, err
	}
	defer w.Stop()

	regions := pairs[runtimetest.KindInstant]
	users := make([]string, clients)
	var noops, upserts []client.WorkflowRun
	for i := range clients {
		users[i] = fmt.Sprintf("ov-%d", i)
		if _, err := e.open(ctx, users[i], regions[0], workflows.PreDeployNeighbours); err != nil {
			return res, err
		}
		for _, upsert := range []bool{false, true} {
			id := fmt.Sprintf("bench-noop/%d", i)
			if upsert {
				id = fmt.Sprintf("bench-noop-upsert/%d", i)
			}
			run, err := e.c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
				ID: id, TaskQueue: noopQueue, StaticSummary: "no-op Update baseline",
			}, noopWorkflow, upsert)
			if err != nil {
				return res, err
			}
			if upsert {
				upserts = append(upserts, run)
			} else {
				noops = append(noops, run)
			}
		}
	}
	defer func() {
		xctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		for i := range clients {
			if _, xerr := e.exit(xctx, users[i]); xerr != nil && err == nil {
				err = xerr
			}
		}
		for _, run := range append(noops, upserts...) {
			xerr := e.c.SignalWorkflow(xctx, run.GetID(), "", noopExit, nil)
			if xerr == nil {
				xerr = run.Get(xctx, nil)
			}
			if xerr != nil && err == nil {
				err = xerr
			}
		}
	}()
	for _, u := range users {
		if _, err := e.quiet(ctx, u); err != nil {
			return res, err
		}
	}

	// Each session is at regions[0] and has its pair warm; moves alternate,
	// so every one is warm and none starts an activity. A cold move fails
	// the measurement.
	pos := make([]int, clients) // each index is touched by one goroutine at a time
	mobility := func(ctx context.Context, cl, i int) error {
		pos[cl]++
		m, _, err := e.move(ctx, users[cl], regions[pos[cl]%2])
		if err != nil {
			return err
		}
		if !m.Warm {
			return fmt.Errorf("move %d of %s was cold", pos[cl], users[cl])
		}
		return nil
	}
	update := func(runs []client.WorkflowRun) func(ctx context.Context, cl, i int) error {
		return func(ctx context.Context, cl, i int) error {
			h, err := e.c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
				WorkflowID: runs[cl].GetID(), UpdateName: noopUpdate,
				Args: []any{regions[i%2]}, WaitForStage: client.WorkflowUpdateStageCompleted,
			})
			if err != nil {
				return err
			}
			var out string
			return h.Get(ctx, &out)
		}
	}
	kinds := []struct {
		name string
		do   func(ctx context.Context, cl, i int) error
		into *[]rate
	}{
		{"no-op", update(noops), &res.Noop},
		{"no-op with upsert", update(upserts), &res.NoopUpsert},
		{"mobility", mobility, &res.Mobility},
	}
	for r := range rounds {
		// Rotate the order each round, so none of the kinds always runs
		// first (or last) in a round.
		for j := range kinds {
			k := kinds[(j+r)%len(kinds)]
			if _, err := drive(ctx, clients, 5, k.do); err != nil {
				return res, fmt.Errorf("%s warm-up: %w", k.name, err)
			}
			r, err := drive(ctx, clients, perClient, k.do)
			if err != nil {
				return res, fmt.Errorf("%s: %w", k.name, err)
			}
			*k.into = append(*k.into, r)
		}
	}
	return res, nil
}
