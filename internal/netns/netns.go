// Package netns opens sockets inside named network namespaces (the ones
// `ip netns add` makes under /var/run/netns) without moving the process,
// and guards link-local addresses: in the host's own namespace
// 169.254.169.254 belongs to the machine's provider, so drift never binds or
// dials a link-local address there.
package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Dir is where `ip netns` keeps its named namespaces.
const Dir = "/var/run/netns"

// namePattern is what drift accepts as a namespace name.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// ErrHostLinkLocal refuses a link-local address in the host's namespace.
var ErrHostLinkLocal = errors.New("refusing a link-local address in the host's network namespace (it belongs to the machine's provider); use a namespace of your own")

// IsLinkLocal reports whether ip is link-local (169.254.0.0/16, fe80::/10).
func IsLinkLocal(ip net.IP) bool {
	return ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast()
}

// InHostNamespace reports whether the calling thread may be in the host's
// network namespace. It answers false only when the thread's namespace is
// one of the named namespaces under Dir (made by `ip netns add`) and is not
// PID 1's; anything it cannot read counts as the host: the guard fails
// closed.
func InHostNamespace() bool {
	self, err := nsID("/proc/thread-self/ns/net")
	if err != nil {
		return true
	}
	// PID 1's namespace is the host's where it can be read (sandboxes may
	// forbid it); a named namespace equal to it is the host's too.
	if host, err := nsID("/proc/1/ns/net"); err == nil && host == self {
		return true
	}
	named, err := os.ReadDir(Dir)
	if err != nil {
		return true
	}
	for _, e := range named {
		if id, err := nsID(filepath.Join(Dir, e.Name())); err == nil && id == self {
			return false
		}
	}
	return true
}

func nsID(path string) ([2]uint64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return [2]uint64{}, err
	}
	st := fi.Sys().(*syscall.Stat_t)
	return [2]uint64{uint64(st.Dev), st.Ino}, nil
}

// CheckAddr refuses a link-local host in addr ("host:port") while the
// calling thread is in the host's namespace, unless allow says the caller
// knows better (a real VM, whose link-local range is its own).
func CheckAddr(addr string, allow bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	// A zone ("fe80::1%eth0") names the interface; the address is still
	// link-local, so the zone is cut before the address is judged.
	ip := net.ParseIP(StripZone(host))
	if ip == nil || !IsLinkLocal(ip) || allow {
		return nil
	}
	if InHostNamespace() {
		return fmt.Errorf("%s: %w", addr, ErrHostLinkLocal)
	}
	return nil
}

// StripZone removes an IPv6 zone ("%eth0") from an address.
func StripZone(host string) string {
	addr, _, _ := strings.Cut(host, "%")
	return addr
}

func fileID(f *os.File) [2]uint64 {
	fi, err := f.Stat()
	if err != nil {
		return [2]uint64{}
	}
	st := fi.Sys().(*syscall.Stat_t)
	return [2]uint64{uint64(st.Dev), st.Ino}
}

// Path is the file of a named namespace; the name must be plain.
func Path(name string) (string, error) {
	if !namePattern.MatchString(name) {
		return "", fmt.Errorf("network namespace name %q is not plain", name)
	}
	return filepath.Join(Dir, name), nil
}

// Do runs fn on a thread that has entered the named namespace ("" runs it
// where the caller is). Sockets fn creates stay in that namespace.
func Do(name string, fn func() error) error {
	if name == "" {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		return fn()
	}
	path, err := Path(name)
	if err != nil {
		return err
	}
	target, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("network namespace %s: %w", name, err)
	}
	defer target.Close()
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter network namespace %s: %w", name, err)
	}
	// A named namespace that is the caller's own (the host's, attached
	// under a name) is no namespace of drift's: refuse it.
	fnErr := fmt.Errorf("network namespace %s is the caller's own namespace", name)
	if here, err := nsID("/proc/thread-self/ns/net"); err == nil && here != fileID(orig) {
		fnErr = fn()
	}
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays locked, so Go retires it with the goroutine
		// instead of reusing a thread in the wrong namespace.
		return fmt.Errorf("leave network namespace %s: %w", name, err)
	}
	runtime.UnlockOSThread()
	return fnErr
}

// Control is a net.Dialer / net.ListenConfig Control hook that applies
// CheckAddr to the resolved address, so a host name that resolves to a
// link-local address is caught too.
func Control(allow bool) func(network, address string, c syscall.RawConn) error {
	return func(_, address string, _ syscall.RawConn) error { return CheckAddr(address, allow) }
}

// Listen opens a TCP listener on addr inside the named namespace ("" = the
// caller's). A link-local addr is refused in the host's namespace.
func Listen(name, addr string) (net.Listener, error) {
	var ln net.Listener
	err := Do(name, func() error {
		if err := CheckAddr(addr, false); err != nil { // before any socket exists
			return err
		}
		var err error
		ln, err = (&net.ListenConfig{Control: Control(false)}).Listen(context.Background(), "tcp", addr)
		return err
	})
	return ln, err
}

// Dialer dials TCP from inside the named namespace ("" = the caller's);
// its DialContext fits http.Transport. Link-local targets are refused in
// the host's namespace.
func Dialer(name string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var conn net.Conn
		err := Do(name, func() error {
			if err := CheckAddr(addr, false); err != nil { // before any socket exists
				return err
			}
			var err error
			conn, err = (&net.Dialer{Control: Control(false)}).DialContext(ctx, network, addr)
			return err
		})
		return conn, err
	}
}

// Holding lists the interfaces of the named namespace ("" = the caller's)
// that carry ip.
func Holding(name string, ip net.IP) ([]string, error) {
	var out []string
	err := Do(name, func() error {
		ifaces, err := net.Interfaces()
		if err != nil {
			return err
		}
		for _, ifc := range ifaces {
			addrs, err := ifc.Addrs()
			if err != nil {
				continue
			}
			for _, a := range addrs {
				if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
					out = append(out, ifc.Name)
				}
			}
		}
		return nil
	})
	return out, err
}
