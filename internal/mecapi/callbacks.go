package mecapi

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// CallbackPolicy says where notifications may go. Its zero value allows
// loopback only.
type CallbackPolicy struct {
	rules []allowRule
}

// allowRule is one --callback-allow entry.
type allowRule struct {
	loopback bool
	prefix   netip.Prefix // an address range
	host     string       // a host name, or ".example.com" for any name below it
	port     int          // 0: any
}

// ParseCallbackAllow reads --callback-allow entries: "loopback" (127/8,
// ::1, localhost), an address or CIDR range (10.1.0.0/16), a host name
// (hooks.example.com) or every name below a domain (*.example.com), each
// with an optional :port. No entries means loopback.
func ParseCallbackAllow(entries []string) (CallbackPolicy, error) {
	var p CallbackPolicy
	for _, e := range entries {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		var r allowRule
		hostPart := e
		if h, port, err := net.SplitHostPort(e); err == nil {
			n, perr := strconv.Atoi(port)
			if perr != nil || n < 1 || n > 65535 {
				return p, fmt.Errorf("--callback-allow %q: port %q is not in 1..65535", e, port)
			}
			hostPart, r.port = h, n
		}
		switch {
		case hostPart == "loopback":
			r.loopback = true
		case strings.Contains(hostPart, "/"):
			pre, err := netip.ParsePrefix(hostPart)
			if err != nil {
				return p, fmt.Errorf("--callback-allow %q: %v", e, err)
			}
			r.prefix = pre.Masked()
		default:
			if a, err := netip.ParseAddr(hostPart); err == nil {
				r.prefix = netip.PrefixFrom(a, a.BitLen())
			} else if name, ok := strings.CutPrefix(hostPart, "*."); ok && validHostName(name) {
				r.host = "." + strings.ToLower(name)
			} else if validHostName(hostPart) {
				r.host = strings.ToLower(hostPart)
			} else {
				return p, fmt.Errorf("--callback-allow %q: want loopback, an address, a CIDR range, a host name or *.domain", e)
			}
		}
		p.rules = append(p.rules, r)
	}
	return p, nil
}

func validHostName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || strings.HasPrefix(label, "-") || strings.HasSuffix(label, "-") {
			return false
		}
		for _, r := range label {
			if !(r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
				return false
			}
		}
	}
	return true
}

// Check says why a callback URL is refused, or nil: it must be an
// absolute http(s) URL without credentials or fragment, with a port in
// 1..65535, to an allowed destination.
func (p CallbackPolicy) Check(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return fmt.Errorf("not a URL: %v", err)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%q: want an absolute http or https URL", raw)
	case u.User != nil:
		return fmt.Errorf("%s: credentials in a callback URL are refused (they would be shown to whoever reads the subscription)", u.Redacted())
	case u.Fragment != "" || u.RawFragment != "":
		return fmt.Errorf("%q: a callback URL has no fragment", raw)
	case u.Hostname() == "":
		return fmt.Errorf("%q names no host", raw)
	}
	port := 80
	if u.Scheme == "https" {
		port = 443
	}
	if ps := u.Port(); ps != "" {
		n, err := strconv.Atoi(ps)
		if err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q: port %s is not in 1..65535", raw, ps)
		}
		port = n
	} else if strings.HasSuffix(u.Host, ":") {
		return fmt.Errorf("%q: empty port", raw)
	}
	host := strings.ToLower(u.Hostname())
	addr, err := netip.ParseAddr(host)
	isAddr := err == nil
	addr = addr.Unmap()
	rules := p.rules
	if len(rules) == 0 {
		rules = []allowRule{{loopback: true}}
	}
	for _, r := range rules {
		if r.port != 0 && r.port != port {
			continue
		}
		switch {
		case r.loopback && (host == "localhost" || isAddr && addr.IsLoopback()):
			return nil
		case r.prefix.IsValid() && isAddr && r.prefix.Contains(addr):
			return nil
		case r.host != "" && !isAddr && (host == r.host || strings.HasPrefix(r.host, ".") && strings.HasSuffix(host, r.host)):
			return nil
		}
	}
	return fmt.Errorf("%s is not an allowed callback destination (drift api --callback-allow; the default is loopback only)", net.JoinHostPort(host, strconv.Itoa(port)))
}
