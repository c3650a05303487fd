package activities

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"go.temporal.io/sdk/temporal"

	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/runtime/runtimetest"
)

func deploy(c *Cloud, name string, preDeploy bool) error {
	_, err := c.DeployInstance(context.Background(), DeployRequest{Name: name, Spec: runtime.Spec{Image: "registry.test/x:1", Port: 80}, PreDeploy: preDeploy})
	return err
}

func errType(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr.Type()
	}
	return ""
}

func TestCapacityRefusesOnlyPreDeploys(t *testing.T) {
	c := &Cloud{ID: "edge-1", Runtime: runtimetest.NewInstant("edge-1"), Capacity: 2}
	if err := deploy(c, "a", true); err != nil {
		t.Fatal(err)
	}
	if err := deploy(c, "b", false); err != nil {
		t.Fatal(err)
	}
	err := deploy(c, "c", true)
	if errType(err) != ErrTypeAtCapacity {
		t.Fatalf("third instance on a cloud of 2: %v", err)
	}
	if err := deploy(c, "a", true); err != nil {
		t.Fatalf("redeploying an existing instance takes no new place: %v", err)
	}
	if err := deploy(c, "d", false); err != nil {
		t.Fatalf("serving must win over capacity: %v", err)
	}
}

func TestBadInputIsNotRetried(t *testing.T) {
	rt := runtimetest.NewInstant("edge-1")
	c := &Cloud{ID: "edge-1", Runtime: rt}
	failWith := func(err error) {
		rt.OnDeploy = func(context.Context, string, runtime.Spec) error { return err }
	}
	failWith(fmt.Errorf("%w: the engine refuses the spec", runtime.ErrInvalid))
	if err := deploy(c, "a", false); errType(err) != ErrTypeInvalidSpec {
		t.Fatalf("invalid spec: %v", err)
	}
	failWith(errors.New("engine down"))
	if err := deploy(c, "a", false); err == nil || errType(err) != "" {
		t.Fatalf("an engine failure must stay retryable: %v", err)
	}
}

func TestDestroyOwnedSweepsBySelector(t *testing.T) {
	rt := runtimetest.NewInstant("edge-1")
	c := &Cloud{ID: "edge-1", Runtime: rt}
	for name, wf := range map[string]string{"a": "session/x/web", "b": "session/x/web", "c": "session/y/web"} {
		if _, err := c.DeployInstance(context.Background(), DeployRequest{Name: name, Spec: runtime.Spec{Image: "registry.test/x:1", Port: 80, Labels: map[string]string{runtime.LabelWorkflow: wf}}}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := c.DestroyOwned(context.Background(), map[string]string{runtime.LabelWorkflow: "session/x/web"})
	if err != nil || n != 2 {
		t.Fatalf("destroyed %d (%v), want 2", n, err)
	}
	left, _ := rt.List(context.Background(), nil)
	if len(left) != 1 || left[0].Name != "c" {
		t.Fatalf("left %v, want only c", left)
	}
}
