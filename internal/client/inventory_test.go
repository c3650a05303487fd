package client

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/edgedrift/drift/internal/repo"
)

// An inventory that does not answer says what is missing and what to run,
// and is a repo.ErrUnavailable, so the repository answers 503.
func TestUnansweredNamesWhatToRun(t *testing.T) {
	err := error(&Unanswered{Workflow: "inventory/acme", Wait: InventoryWait, Err: context.DeadlineExceeded})
	if !errors.Is(err, repo.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("%v is not ErrUnavailable", err)
	}
	for _, want := range []string{"inventory/acme", "30s", `queue "drift"`, "drift dev", "drift-worker"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not say %q", err, want)
		}
	}
}

// Bad tenants are refused before any call.
func TestInventoryCallsCheckTheTenant(t *testing.T) {
	c := New(nil)
	if _, err := c.Inventory(context.Background(), "../x"); !errors.Is(err, repo.ErrInvalid) {
		t.Fatalf("inventory of ../x: %v", err)
	}
	if err := c.Forget(context.Background(), "Ünïcode", "vm-1"); !errors.Is(err, repo.ErrInvalid) {
		t.Fatalf("forget in Ünïcode: %v", err)
	}
}
