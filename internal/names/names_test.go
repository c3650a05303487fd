package names

import "testing"

func TestQueuesAndIDs(t *testing.T) {
	for got, want := range map[string]string{
		CloudQueue("edge-1"):                      "drift.cloud.edge-1",
		NodeQueue("network"):                      "drift.node.network",
		SessionID("alice", "hello"):               "session/alice/hello",
		PipelineID("hello", "r1"):                 "pipeline/hello/r1",
		PortID("https://git.example/app.git", ""): "port/app/loong64",
		PortID("/src/sysfacts/", "riscv64"):       "port/sysfacts/riscv64",
		PortID("/", "arm64"):                      "port/module/arm64",
		InventoryID("acme"):                       "inventory/acme",
		FleetVMID("acme", "r1", "vm-1"):           "fleet/acme/r1/vm-1",
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}

func TestEveryKeyIsRegistered(t *testing.T) {
	for _, k := range []interface{ GetName() string }{UserKey, AppKey, CloudKey, KindKey} {
		if _, ok := SearchAttributes[k.GetName()]; !ok {
			t.Errorf("%s is set by workflows but not registered", k.GetName())
		}
	}
}
