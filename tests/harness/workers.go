package harness

import (
	"context"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/edgedrift/drift/deploy/examples"
	"github.com/edgedrift/drift/internal/release"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/topology"
	"github.com/edgedrift/drift/internal/workerhost"
)

// ExampleTopology is deploy/examples/topology.yaml.
func ExampleTopology(t testing.TB) *topology.Topology {
	t.Helper()
	topo, err := topology.Parse(examples.Topology)
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

// Workers starts an in-process worker for the central queue and every
// cloud of topo, with runtimeFor choosing each cloud's runtime (nil: local
// processes everywhere). When the test ends, anything drift-owned still on
// any cloud fails the test and is destroyed, then the worker stops.
//
// The central pipeline signs with a key of the test's own; edit may change
// the options (a trust policy, another key) before the workers start.
func Workers(t testing.TB, c client.Client, topo *topology.Topology, registry string, runtimeFor func(topology.Cloud) runtime.Config, edit ...func(*workerhost.WorkerOptions)) *workerhost.Workers {
	t.Helper()
	if runtimeFor == nil {
		runtimeFor = func(topology.Cloud) runtime.Config { return runtime.Config{Kind: runtime.KindProcess} }
	}
	var clouds []string
	for _, cl := range topo.Clouds() {
		clouds = append(clouds, cl.ID)
	}
	signer, err := release.EnsureKeyPair(release.KeyFiles(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	opts := workerhost.WorkerOptions{
		Topology: topo, Clouds: clouds, Central: true, DataDir: t.TempDir(), Registry: registry, RuntimeFor: runtimeFor, Signer: signer,
	}
	for _, e := range edit {
		e(&opts)
	}
	ws, err := workerhost.StartWorkers(c, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ws.Stop)
	t.Cleanup(func() { expectNothingLeft(t, ws) }) // runs before ws.Stop
	return ws
}

// expectNothingLeft fails the test for, and removes, every drift-owned
// instance, stable endpoint and volume still on any cloud.
func expectNothingLeft(t testing.TB, ws *workerhost.Workers) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for cloud, rt := range ws.Runtimes {
		found, err := rt.List(ctx, nil)
		if err != nil {
			t.Errorf("list %s: %v", cloud, err)
			continue
		}
		for _, in := range found {
			t.Errorf("left on %s: %s", cloud, in.Name)
			rt.Destroy(ctx, in.Name)
		}
		routes, err := ws.Routers[cloud].Routes(ctx, nil)
		if err != nil {
			t.Errorf("endpoints of %s: %v", cloud, err)
		}
		for _, r := range routes {
			t.Errorf("endpoint left on %s: %s", cloud, r.Name)
			ws.Routers[cloud].Unroute(ctx, r.Name)
		}
		if st, ok := rt.(runtime.Stateful); ok {
			vols, err := st.Volumes(ctx, nil)
			if err != nil {
				t.Errorf("volumes of %s: %v", cloud, err)
			}
			for _, v := range vols {
				t.Errorf("volume left on %s: %s", cloud, v.Name)
				st.RemoveVolume(ctx, v.Name)
			}
		}
	}
}
