package forward

import (
	"fmt"
	"net"
	"net/netip"
	"path"
	"strconv"
	"strings"
)

// Resolve maps the hosts CONNECT asks for to the addresses grpctap dials
// instead, as curl's --resolve does. Keys are lower-case host names,
// optionally with ":PORT" to match that port only.
type Resolve map[string]resolveTo

type resolveTo struct {
	addr string // an IP address or host name
	port string // "" keeps the port CONNECT asked for
}

// Parse adds one "HOST=ADDR" mapping: ADDR is an IP address or a
// host name, and the port stays the one CONNECT asked for; "HOST=ADDR:PORT"
// replaces the port too. "HOST:PORT=..." applies to that port only.
func (r Resolve) Parse(s string) error {
	host, to, ok := strings.Cut(s, "=")
	host, to = strings.ToLower(strings.TrimSpace(host)), strings.TrimSpace(to)
	if !ok || host == "" || to == "" {
		return fmt.Errorf("resolve %q: want HOST=ADDR or HOST=ADDR:PORT, e.g. backend.test=127.0.0.1", s)
	}
	key := strings.TrimSuffix(host, ".")
	if h, p, err := net.SplitHostPort(host); err == nil {
		if !validPort(p) {
			return fmt.Errorf("resolve %q: %q is not a port", s, p)
		}
		key = strings.TrimSuffix(h, ".") + ":" + p
	}
	rt := resolveTo{addr: to}
	if h, p, err := net.SplitHostPort(to); err == nil {
		if !validPort(p) {
			return fmt.Errorf("resolve %q: %q is not a port", s, p)
		}
		rt = resolveTo{addr: h, port: p}
	}
	rt.addr = strings.Trim(rt.addr, "[]")
	if rt.addr == "" || strings.ContainsAny(rt.addr, "/ ") {
		return fmt.Errorf("resolve %q: %q is not an address or host name", s, to)
	}
	if prev, ok := r[key]; ok && prev != rt {
		return fmt.Errorf("resolve %q: %s is mapped twice", s, key)
	}
	r[key] = rt
	return nil
}

// Addr returns the address to dial for a CONNECT to host:port.
func (r Resolve) Addr(host, port string) string {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	rt, ok := r[h+":"+port]
	if !ok {
		rt, ok = r[h]
	}
	if !ok {
		return net.JoinHostPort(host, port)
	}
	if rt.port != "" {
		port = rt.port
	}
	return net.JoinHostPort(rt.addr, port)
}

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n > 0 && n < 1<<16
}

// Ports is a set of TCP ports; nil allows every port.
type Ports []portRange

type portRange struct{ lo, hi int }

// ParsePorts reads a comma-separated list of ports and ranges
// ("443,8443,9000-9100"); "" or "any" is nil, every port.
func ParsePorts(s string) (Ports, error) {
	s = strings.TrimSpace(s)
	if s == "" || strings.EqualFold(s, "any") {
		return nil, nil
	}
	var out Ports
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		if !isRange {
			hi = lo
		}
		if !validPort(lo) || !validPort(hi) {
			return nil, fmt.Errorf("ports %q: %q is not a port or a range of ports (e.g. 443,9000-9100)", s, part)
		}
		l, _ := strconv.Atoi(lo)
		h, _ := strconv.Atoi(hi)
		if l > h {
			return nil, fmt.Errorf("ports %q: range %q runs backwards", s, part)
		}
		out = append(out, portRange{l, h})
	}
	return out, nil
}

// Allows reports whether port is in the set.
func (ps Ports) Allows(port int) bool {
	if ps == nil {
		return true
	}
	for _, r := range ps {
		if port >= r.lo && port <= r.hi {
			return true
		}
	}
	return false
}

// String is the set as ParsePorts reads it.
func (ps Ports) String() string {
	if ps == nil {
		return "any"
	}
	parts := make([]string, len(ps))
	for i, r := range ps {
		parts[i] = strconv.Itoa(r.lo)
		if r.hi != r.lo {
			parts[i] += "-" + strconv.Itoa(r.hi)
		}
	}
	return strings.Join(parts, ",")
}

// ParseAllow reads a CIDR ("10.0.0.0/8", "fd00::/8") or a single address.
func ParseAllow(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
	}
	return netip.Prefix{}, fmt.Errorf("allow %q: want a CIDR (10.0.0.0/8) or an IP address", s)
}

// CheckGlob checks a host pattern as --no-intercept takes it
// ("*.googleapis.com"; the syntax of path.Match).
func CheckGlob(glob string) error {
	if _, err := path.Match(strings.ToLower(glob), ""); err != nil || strings.TrimSpace(glob) == "" {
		return fmt.Errorf("host pattern %q: want a name with * and ? wildcards, e.g. *.googleapis.com", glob)
	}
	return nil
}

// matchHost reports whether host matches any of the patterns.
func matchHost(globs []string, host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, g := range globs {
		if ok, _ := path.Match(strings.ToLower(g), host); ok {
			return true
		}
	}
	return false
}
