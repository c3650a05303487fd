package client

import (
	"context"
	"fmt"

	"go.temporal.io/api/enums/v1"
	temporalclient "go.temporal.io/sdk/client"

	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/workflows"
)

// StartPort starts porting in.Repo to in.Arch under the readable ID
// port/<name>/<arch>; a port of the same repo and arch still running is
// joined rather than started twice.
func (c *Client) StartPort(ctx context.Context, in workflows.PortInput) (Run, error) {
	arch := in.Arch
	if arch == "" {
		arch = names.DefaultPortArch
	}
	return c.Temporal.ExecuteWorkflow(ctx, temporalclient.StartWorkflowOptions{
		ID:                       names.PortID(in.Repo, arch),
		TaskQueue:                names.TaskQueue,
		WorkflowIDConflictPolicy: enums.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		StaticSummary:            fmt.Sprintf("port %s to linux/%s", in.Repo, arch),
		StaticDetails:            fmt.Sprintf("repo **%s** ref %q · packages %v · tests of %v", in.Repo, in.Ref, in.Packages, in.TestModules),
	}, workflows.PortToArch, in)
}

// PortReport reads a port's report: the live one while it runs, its result
// (or the report its failure carries, with the error) once it has ended.
func (c *Client) PortReport(ctx context.Context, id string) (workflows.PortReport, error) {
	return Read[workflows.PortReport](ctx, c, id)
}
