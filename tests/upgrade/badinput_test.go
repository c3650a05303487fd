package upgrade

import (
	"errors"
	"strings"
	"testing"

	"go.temporal.io/sdk/temporal"

	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/workflows"
)

// Bad input ends an upgrade on a real server before anything is deployed,
// with an error that says what was wrong and is not retried.
func TestBadInputDeploysNothing(t *testing.T) {
	r := newRig(t, "upgrade-fog", runtime.Config{Kind: runtime.KindProcess})
	oldDriver := r.driver(t, "1.0.0", ">= 24.0.0, < 26.0.0", "")
	r.install(t, "cinder", r.repo, "24.2.0", oldDriver, true)
	for _, c := range []struct {
		name      string
		edit      func(*workflows.UpgradeInput)
		typ, says string
	}{
		{"target not newer", func(in *workflows.UpgradeInput) { in.Target = "24.0.0" }, workflows.ErrTypeNotNewer, "24.0.0 ≤ 24.2.0"},
		{"unknown component", func(in *workflows.UpgradeInput) { in.Component.Name = "manila" }, workflows.ErrTypeUnknownComponent, "manila"},
		{"malformed index", func(in *workflows.UpgradeInput) { in.Index = "series:\n  - name: caracal\n    deliverabels: {}\n" }, workflows.ErrTypeInvalidIndex, "deliverabels"},
		{"not running on the cloud", func(in *workflows.UpgradeInput) { in.Cloud = "upgrade-edge" }, workflows.ErrTypeUnknownComponent, "no env of cinder runs on upgrade-edge"},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := r.cinderInput(workflows.PolicyPlatform, "3.0.0", oldDriver)
			c.edit(&in)
			res, err := r.run(t, in)
			var appErr *temporal.ApplicationError
			if !errors.As(err, &appErr) || appErr.Type() != c.typ || !appErr.NonRetryable() || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("error %v, want non-retryable %s saying %q", err, c.typ, c.says)
			}
			if res.Phase != "failed" || !strings.Contains(res.Error, c.says) || len(res.Attempts) != 0 {
				t.Errorf("progress %+v", res)
			}
			if envs := r.envsOf(t, "cinder"); len(envs) != 1 || len(envs[prodEnv]) != 2 {
				t.Errorf("cinder envs %v after bad input", envs)
			}
		})
	}
}
