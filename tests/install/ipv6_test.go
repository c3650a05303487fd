package install

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/edgedrift/drift/internal/netns"
	"github.com/edgedrift/drift/tests/harness"
	"github.com/edgedrift/drift/workflows"
)

// The tenant gateway also answers on Neutron's IPv6 metadata address,
// fe80::a9fe:a9fe, port 8080, inside the tenant namespace: a VM reaches it
// on its link and is known there by its own IPv6 address; the management
// namespace cannot reach it, and in the host's namespace drift refuses the
// address before any socket exists. An agent registers and installs over
// it.
func TestIPv6MetadataAddress(t *testing.T) {
	n := newNetwork(t)
	_, c := harness.Temporal(t, "")
	nd := startRepo(t, n, c, 1<<20)
	startWorker(t, c, nd)
	nd.pushGreeter(t, "1.0.0")
	pair := placeGateway(t, c, n, nd)
	if len(pair.Addresses6) != 1 || pair.Addresses6[0] != "[fe80::a9fe:a9fe%br0]:8080" {
		t.Fatalf("IPv6 addresses of the tenant gateway: %v", pair.Addresses6)
	}
	v := n.VMs[0]
	metadata6 := "http://[fe80::a9fe:a9fe%25" + v.Link + "]:8080"

	resp, err := httpIn(v.NS).Get(metadata6 + "/v1/packages")
	if err != nil {
		t.Fatalf("the VM cannot reach [fe80::a9fe:a9fe]:8080: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "greeter") {
		t.Fatalf("from the VM: %d %s", resp.StatusCode, body)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if conn, err := netns.Dialer(n.Mgmt)(ctx, "tcp", "[fe80::a9fe:a9fe%"+n.mgLink+"]:8080"); err == nil {
		conn.Close()
		t.Fatal("the management namespace reached the tenant's IPv6 metadata address")
	}
	for _, zone := range []string{"lo", n.hostLink} {
		_, err := netns.Dialer("")(ctx, "tcp", "[fe80::a9fe:a9fe%"+zone+"]:8080")
		if !errors.Is(err, netns.ErrHostLinkLocal) {
			t.Fatalf("host namespace, zone %s: %v, want the link-local refusal", zone, err)
		}
	}
	if _, err := netns.Listen("", "[fe80::a9fe:a9fe%lo]:8080"); !errors.Is(err, netns.ErrHostLinkLocal) {
		t.Fatalf("listen in the host namespace: %v", err)
	}

	_, prefix := startAgent(t, nd, v, nil, "--gateway", metadata6, "--label", "stack=v6")
	view := waitInventory(t, c, "the VM registered over IPv6", func(iv workflows.InventoryView) bool {
		return len(iv.VMs) == 1 && iv.VMs[0].Address == v.Addr6
	})
	if ip := net.ParseIP(view.VMs[0].Address); ip == nil || ip.To4() != nil {
		t.Fatalf("registered as %q", view.VMs[0].Address)
	}
	p, err := rollout(t, c, workflows.Rollout{Rollout: "over-ipv6", Selector: "stack=v6", Package: "greeter", Version: "latest"})
	if err != nil || p.Counts.Succeeded != 1 || live(prefix) != "1.0.0" {
		t.Fatalf("install over IPv6: %v %+v, live %q", err, p.VMs, live(prefix))
	}
}
