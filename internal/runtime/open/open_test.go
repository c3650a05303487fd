package open

import (
	"errors"
	"testing"

	"github.com/edgedrift/drift/internal/runtime"
)

func TestRuntimeByKind(t *testing.T) {
	dir := t.TempDir()
	for kind, want := range map[string]string{"": runtime.KindProcess, runtime.KindProcess: runtime.KindProcess, runtime.KindDocker: runtime.KindDocker} {
		rt, err := Runtime("edge-1", runtime.Config{Kind: kind}, dir)
		if err != nil || rt.Kind() != want {
			t.Errorf("kind %q: %v %v", kind, rt, err)
		}
	}
	if _, err := Runtime("edge-1", runtime.Config{Kind: "vm"}, dir); !errors.Is(err, runtime.ErrInvalid) {
		t.Errorf("unknown kind: %v", err)
	}
}
