package runtimetest_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/runtime/runtimetest"
)

func TestInstantConforms(t *testing.T) {
	rt := runtimetest.NewInstant("edge-1")
	runtimetest.Conformance(t, rt, runtimetest.Case{
		Image: "127.0.0.1:5000/hello:v1", Image2: "127.0.0.1:5000/hello:v2",
		Web: "127.0.0.1:5000/counter-web:v1", Store: "127.0.0.1:5000/counter-store:v1",
		Cloud: "edge-1", Serves: false,
		// The records are Instant's backend.
		Leftovers: func(*testing.T) []string {
			if n := rt.Len(); n > 0 {
				return []string{fmt.Sprintf("%d records", n)}
			}
			return nil
		},
	})
}

func TestInstantCountsAndRefusals(t *testing.T) {
	ctx := context.Background()
	rt := runtimetest.NewInstant("inst-a")
	spec := runtime.Spec{Image: "127.0.0.1:5000/hello:v1", Port: 8080}
	for range 2 {
		runtimetest.Deploy(t, rt, "hello-alice-inst-a", spec, time.Second)
	}
	if _, err := rt.Deploy(ctx, "Bad_Name", spec); !errors.Is(err, runtime.ErrInvalid) {
		t.Errorf("bad name: %v, want ErrInvalid", err)
	}
	other := spec
	other.Labels = map[string]string{runtime.LabelCloud: "inst-b"}
	if _, err := rt.Deploy(ctx, "hello-bob-inst-a", other); !errors.Is(err, runtime.ErrInvalid) {
		t.Errorf("another cloud's label: %v, want ErrInvalid", err)
	}
	if rt.Len() != 1 {
		t.Errorf("%d instances, want 1", rt.Len())
	}
	for range 2 {
		if err := rt.Destroy(ctx, "hello-alice-inst-a"); err != nil {
			t.Fatal(err)
		}
	}
	if d, x := rt.Counts(); d != 2 || x != 2 || rt.Len() != 0 {
		t.Errorf("counts: %d deploys, %d destroys, %d instances; want 2, 2, 0", d, x, rt.Len())
	}
}

func TestInstantOnDeployFailsAndHolds(t *testing.T) {
	ctx := context.Background()
	rt := runtimetest.NewInstant("edge-1")
	spec := runtime.Spec{Image: "127.0.0.1:5000/hello:v1", Port: 8080}
	down := errors.New("engine down")
	release := make(chan struct{})
	rt.OnDeploy = func(ctx context.Context, name string, _ runtime.Spec) error {
		switch name {
		case "broken":
			return down
		case "slow":
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}

	if _, err := rt.Deploy(ctx, "broken", spec); !errors.Is(err, down) {
		t.Errorf("Deploy(broken) = %v, want the injected error", err)
	}
	if st := runtimetest.Status(t, rt, "broken"); st.Exists {
		t.Errorf("a failed deploy was recorded: %+v", st)
	}
	if _, err := rt.Deploy(ctx, "Broken", spec); !errors.Is(err, runtime.ErrInvalid) {
		t.Errorf("a bad name must be refused before OnDeploy: %v", err)
	}

	done := make(chan error, 1)
	go func() {
		_, err := rt.Deploy(ctx, "slow", spec)
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("held deploy returned before its release: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	if rt.Len() != 0 {
		t.Error("a held deploy is recorded before it returns")
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if d, _ := rt.Counts(); d != 1 || rt.Len() != 1 {
		t.Errorf("%d deploys counted, %d instances; want the released one only", d, rt.Len())
	}
}
