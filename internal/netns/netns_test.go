package netns

import (
	"os"
	"os/exec"
	"testing"
)

// The test process runs in the host's namespace: a link-local address is
// refused there before any socket exists, so nothing is sent or bound.
func TestLinkLocalRefusedInHostNamespace(t *testing.T) {
	if !InHostNamespace() {
		t.Fatal("the test process should be in the host's namespace")
	}
	for _, addr := range []string{"169.254.169.254:80", "169.254.169.254:8080", "[fe80::1]:80", "[fe80::a9fe:a9fe%lo]:8080", "[fe80::a9fe:a9fe%eth0]:8080"} {
		if err := CheckAddr(addr, false); err == nil {
			t.Errorf("%s allowed in the host's namespace", addr)
		}
		if _, err := Listen("", addr); err == nil {
			t.Errorf("listen on %s allowed in the host's namespace", addr)
		}
		if _, err := Dialer("")(t.Context(), "tcp", addr); err == nil {
			t.Errorf("dial to %s allowed in the host's namespace", addr)
		}
	}
	// The dial/listen hook sees resolved addresses, so a host name that
	// resolves to the metadata address is refused as well.
	for _, resolved := range []string{"169.254.169.254:80", "[fe80::a9fe:a9fe%2]:8080"} {
		if err := Control(false)("tcp", resolved, nil); err == nil {
			t.Errorf("the resolved address %s passed the dial hook", resolved)
		}
	}
	if err := CheckAddr("169.254.169.254:80", true); err != nil {
		t.Errorf("explicit allow (a real VM) refused: %v", err)
	}
	for _, addr := range []string{"127.0.0.1:8080", "10.0.0.1:80"} {
		if err := CheckAddr(addr, false); err != nil {
			t.Errorf("%s refused: %v", addr, err)
		}
	}
}

// Inside a namespace of our own, the metadata address may be bound.
func TestLinkLocalAllowedInOwnNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root (CI runs as root) to create a network namespace")
	}
	name := "drift-netns-unit"
	exec.Command("ip", "netns", "del", name).Run()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	defer func() {
		exec.Command("ip", "netns", "del", name).Run()
		if _, err := os.Stat(Dir + "/" + name); err == nil {
			t.Errorf("namespace %s left", name)
		}
	}()
	for _, args := range [][]string{{"-n", name, "link", "set", "lo", "up"}, {"-n", name, "addr", "add", "169.254.169.254/32", "dev", "lo"}} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	ln, err := Listen(name, "169.254.169.254:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Write([]byte("ok"))
			c.Close()
		}
	}()
	conn, err := Dialer(name)(t.Context(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, 2)
	if _, err := conn.Read(buf); err != nil || string(buf) != "ok" {
		t.Fatalf("read %q %v", buf, err)
	}
	if !InHostNamespace() {
		t.Fatal("the calling thread did not come back to the host's namespace")
	}
}
