package client

import (
	"context"
	"fmt"
	"time"

	"go.temporal.io/api/enums/v1"
	temporalclient "go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/edgedrift/drift/internal/gateway"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/repo"
	"github.com/edgedrift/drift/workflows"
)

// InventoryWait bounds every call into a tenant's inventory.
const InventoryWait = 30 * time.Second

// Unanswered is a workflow that did not answer within its bound: nothing
// polls its queue, or the server is not there.
type Unanswered struct {
	Workflow string
	Wait     time.Duration
	Err      error
}

func (e *Unanswered) Error() string {
	return fmt.Sprintf("%s did not answer within %s: is a worker polling queue %q? run `drift dev`, or `drift-worker` against this Temporal (%v)",
		e.Workflow, e.Wait, names.TaskQueue, e.Err)
}

// Unwrap makes it repo.ErrUnavailable, so the repository answers 503.
func (e *Unanswered) Unwrap() []error { return []error{e.Err, repo.ErrUnavailable} }

// inventoryStart starts tenant's inventory unless it runs.
func inventoryStart(tenant string) temporalclient.StartWorkflowOptions {
	return temporalclient.StartWorkflowOptions{
		ID:                       names.InventoryID(tenant),
		TaskQueue:                names.TaskQueue,
		WorkflowIDConflictPolicy: enums.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		StaticSummary:            fmt.Sprintf("VMs of tenant %s: labels, packages, desired state and rollouts", tenant),
		TypedSearchAttributes:    temporal.NewSearchAttributes(names.KindKey.ValueSet(names.KindInventory)),
	}
}

// signalInventory sends signal name to tenant's inventory, starting it
// when it does not run yet; bounded like every call into it.
func (c *Client) signalInventory(ctx context.Context, tenant, name string, arg any) error {
	if err := repo.ValidTenant(tenant); err != nil {
		return err
	}
	id := names.InventoryID(tenant)
	ctx, cancel := context.WithTimeout(ctx, InventoryWait)
	defer cancel()
	_, err := c.Temporal.SignalWithStartWorkflow(ctx, id, name, arg, inventoryStart(tenant), workflows.Inventory, workflows.InventoryInput{Tenant: tenant})
	switch {
	case err != nil && ctx.Err() != nil:
		return &Unanswered{Workflow: id, Wait: InventoryWait, Err: err}
	case err != nil:
		return fmt.Errorf("inventory of %s: %w", tenant, err)
	}
	return nil
}

// recordInstalled tells tenant's inventory what a VM's agent has now.
func (c *Client) recordInstalled(ctx context.Context, tenant string, in workflows.VMInstalled) error {
	return c.signalInventory(ctx, tenant, names.InstalledSignal, in)
}

// Announce records a VM its agent registered: a signal, so a whole fleet
// may register at once (updates to one workflow are served a few at a
// time); what the inventory cannot take shows among its refusals.
func (c *Client) Announce(ctx context.Context, tenant string, reg workflows.VMRegistration) error {
	if err := workflows.CheckRegistration(reg); err != nil {
		return fmt.Errorf("%v: %w", err, repo.ErrInvalid)
	}
	return c.signalInventory(ctx, tenant, names.RegisterSignal, reg)
}

// updateInventory sends update name to tenant's inventory, starting the
// inventory when it does not run yet, and waits (bounded) for its result.
func updateInventory[T any](ctx context.Context, c *Client, tenant, name, updateID string, arg any) (T, error) {
	var out T
	if err := repo.ValidTenant(tenant); err != nil {
		return out, err
	}
	id := names.InventoryID(tenant)
	ctx, cancel := context.WithTimeout(ctx, InventoryWait)
	defer cancel()
	start := c.Temporal.NewWithStartWorkflowOperation(inventoryStart(tenant), workflows.Inventory, workflows.InventoryInput{Tenant: tenant})
	h, err := c.Temporal.UpdateWithStartWorkflow(ctx, temporalclient.UpdateWithStartWorkflowOptions{
		StartWorkflowOperation: start,
		UpdateOptions: temporalclient.UpdateWorkflowOptions{
			UpdateID: updateID, UpdateName: name, Args: []any{arg}, WaitForStage: temporalclient.WorkflowUpdateStageCompleted,
		},
	})
	if err == nil {
		err = h.Get(ctx, &out)
	}
	if err != nil && ctx.Err() != nil {
		return out, &Unanswered{Workflow: id, Wait: InventoryWait, Err: err}
	}
	return out, err
}

// Register declares (adds, moves or relabels) a VM of tenant, as the
// admin, and answers with it or why not.
func (c *Client) Register(ctx context.Context, tenant string, reg workflows.VMRegistration) (workflows.VMRecord, error) {
	return updateInventory[workflows.VMRecord](ctx, c, tenant, names.DeclareUpdate, "", reg)
}

// Forget drops a VM from tenant's inventory.
func (c *Client) Forget(ctx context.Context, tenant, vm string) error {
	_, err := updateInventory[any](ctx, c, tenant, names.ForgetUpdate, "", vm)
	return err
}

// PlaceGateway says where tenant's gateway pair runs and starts it.
func (c *Client) PlaceGateway(ctx context.Context, tenant string, p workflows.Placement) (gateway.Pair, error) {
	return updateInventory[gateway.Pair](ctx, c, tenant, names.GatewayUpdate, "", p)
}

// StartRollout starts a rollout to the VMs of tenant r's selector picks
// and returns it; a rollout of the same name is that one (the update is
// idempotent by name).
func (c *Client) StartRollout(ctx context.Context, tenant string, r workflows.Rollout) (Run, error) {
	if r.Rollout == "" {
		r.Rollout = "r-" + time.Now().UTC().Format("20060102-150405")
	}
	if err := workflows.CheckRollout(r); err != nil {
		return nil, err
	}
	id, err := updateInventory[string](ctx, c, tenant, names.RolloutUpdate, "rollout/"+r.Rollout, r)
	if err != nil {
		return nil, err
	}
	return c.Temporal.GetWorkflow(ctx, id, ""), nil
}

// Desire sets (or with d.Remove drops) a package's desired state in
// tenant's inventory and returns the rollout it started ("" for none).
func (c *Client) Desire(ctx context.Context, tenant string, d workflows.Desire) (string, error) {
	return updateInventory[string](ctx, c, tenant, names.DesireUpdate, "", d)
}

// Inventory reads tenant's inventory: VMs, packages, desired state, drift.
func (c *Client) Inventory(ctx context.Context, tenant string) (workflows.InventoryView, error) {
	if err := repo.ValidTenant(tenant); err != nil {
		return workflows.InventoryView{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, InventoryWait)
	defer cancel()
	v, err := query[workflows.InventoryView](ctx, c, names.InventoryID(tenant))
	if err != nil && ctx.Err() != nil {
		return v, &Unanswered{Workflow: names.InventoryID(tenant), Wait: InventoryWait, Err: err}
	}
	return v, err
}

// RolloutProgress reads a rollout: live while it runs, its result (or the
// report its failure carries) once it has ended.
func (c *Client) RolloutProgress(ctx context.Context, tenant, rollout string) (workflows.FleetProgress, error) {
	id := names.FleetID(tenant, rollout)
	ctx, cancel := context.WithTimeout(ctx, InventoryWait)
	defer cancel()
	p, err := Read[workflows.FleetProgress](ctx, c, id)
	switch {
	case err != nil && p.ID != "":
		return p, nil // it failed; its report says how
	case err != nil && ctx.Err() != nil:
		return p, &Unanswered{Workflow: id, Wait: InventoryWait, Err: err}
	}
	return p, err
}

// Registrar records VMs that register through the gateways in their
// tenant's inventory (Announce).
func (c *Client) Registrar() repo.RegisterFunc {
	return func(ctx context.Context, r repo.Registration) error {
		return c.Announce(ctx, r.Tenant, workflows.VMRegistration{Name: r.Name, Address: r.Client, Labels: r.Labels, Installed: r.Installed})
	}
}
