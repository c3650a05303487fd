package workerhost

import (
	"strings"
	"testing"

	"github.com/edgedrift/drift/deploy/examples"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/topology"
)

func TestStartWorkersRejectsBadOptionsBeforePolling(t *testing.T) {
	topo, err := topology.Parse(examples.Topology)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		opts WorkerOptions
		want string
	}{
		{WorkerOptions{Topology: topo}, "polls nothing"},
		{WorkerOptions{Topology: topo, Clouds: []string{"edge-mars"}}, `"edge-mars" is not in the topology`},
		{WorkerOptions{Topology: topo, Central: true, DataDir: t.TempDir()}, "center registry"},
		{WorkerOptions{Topology: topo, Clouds: []string{"edge-latin"}, RuntimeFor: func(topology.Cloud) runtime.Config {
			return runtime.Config{Kind: runtime.KindKubernetes}
		}}, "kubeconfig"},
	} {
		// No client: every case must fail before a worker is made.
		if _, err := StartWorkers(nil, c.opts); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want %q", c.opts, err, c.want)
		}
	}
}

func TestQueuesNameTheirCloudAndWorkersWhatTheyPoll(t *testing.T) {
	for queue, want := range map[string]string{"drift": "central", "drift.cloud.edge-2": "edge-2", "drift.node.n1": "drift.node.n1"} {
		if got := cloudOf(queue); got != want {
			t.Errorf("cloudOf(%q) = %q, want %q", queue, got, want)
		}
	}
	if id := defaultIdentity(false, []string{"fog-1", "fog-2"}, ""); !strings.HasPrefix(id, "fog-1+fog-2@") {
		t.Errorf("site identity %q", id)
	}
	if id := defaultIdentity(true, []string{"center"}, ""); !strings.HasPrefix(id, "central+center@") {
		t.Errorf("central identity %q", id)
	}
}
