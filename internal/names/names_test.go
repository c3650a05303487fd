package names

import (
	"strings"
	"testing"
)

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

func TestUsers(t *testing.T) {
	for _, ok := range []string{"alice", "bob.smith", "zoë", "李雷", "u-1_2~x@y+z", "2001:db8::1", "10.0.0.7"} {
		if err := CheckUser(ok); err != nil {
			t.Errorf("CheckUser(%q) = %v", ok, err)
		}
	}
	for user, why := range map[string]string{
		"":                        "required",
		".":                       "path step",
		"..":                      "path step",
		"a/b":                     `'/'`,
		"a%2Fb":                   `'%'`,
		"a b":                     `' '`,
		"a\x00":                   `'\x00'`,
		"zoe\u0308":               "NFC",
		"\xff":                    "UTF-8",
		"a?b":                     `'?'`,
		string(make([]byte, 129)): "longer",
	} {
		err := CheckUser(user)
		if err == nil || !strings.Contains(err.Error(), why) {
			t.Errorf("CheckUser(%q) = %v, want an error saying %s", user, err, why)
		}
	}
	if got := SessionID("zoë", "hello"); got != "session/zo%C3%AB/hello" {
		t.Errorf("SessionID = %q", got)
	}
	for i := 0; i < len(SessionID("李雷", "hello")); i++ {
		if c := SessionID("李雷", "hello")[i]; c < 0x20 || c > 0x7e {
			t.Fatalf("non-ASCII byte %x in a workflow ID", c)
		}
	}
}
