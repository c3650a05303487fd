package workflows

import (
	"path/filepath"
	"testing"

	"go.temporal.io/sdk/worker"
)

// Histories recorded from real runs (make record-histories) must replay
// against the current code: a change that breaks them needs
// workflow.GetVersion.
func TestReplayRecordedHistories(t *testing.T) {
	files, err := filepath.Glob("testdata/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no recorded histories in testdata (%v)", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			r.RegisterWorkflow(MobilitySession)
			r.RegisterWorkflow(AppModel)
			r.RegisterWorkflow(MobilitySubscriptions)
			r.RegisterWorkflow(ComponentUpgrade)
			r.RegisterWorkflow(InstallSoftware)
			r.RegisterWorkflow(InstallFleet)
			r.RegisterWorkflow(Inventory)
			r.RegisterWorkflow(PortToArch)
			r.RegisterWorkflow(Pipeline)
			r.RegisterWorkflow(PipelineWave)
			r.RegisterWorkflow(PipelineUndeploy)
			r.RegisterWorkflow(PipelineRollback)
			if err := r.ReplayWorkflowHistoryFromJSONFile(nil, f); err != nil {
				t.Fatal(err)
			}
		})
	}
}
