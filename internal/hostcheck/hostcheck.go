// Package hostcheck owns grpctap's rule against DNS rebinding, shared by
// the web inspector and the gRPC-Web bridge: a page on a hostile domain
// whose DNS answer is switched to 127.0.0.1 reaches a loopback listener
// with its own name in the Host header, so a loopback listener serves only
// requests naming it by a loopback name (or by a name the user allowed).
package hostcheck

import (
	"errors"
	"fmt"
	"net"
	"strings"
)

// Name returns the host part of a Host header ("Example.com:8080" →
// "example.com", "[::1]:80" → "::1"), lower-case, without a trailing dot.
func Name(hostport string) string {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	return strings.TrimSuffix(strings.ToLower(host), ".")
}

// Loopback reports whether a Host header names this machine's loopback:
// localhost, 127.0.0.0/8 or ::1, with or without a port.
func Loopback(hostport string) bool {
	host := Name(hostport)
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// IPLiteral reports whether a Host header is an IP address rather than a
// name: DNS rebinding needs a name, so an address cannot carry it.
func IPLiteral(hostport string) bool {
	return net.ParseIP(Name(hostport)) != nil
}

// LoopbackAddr reports whether a listener's or connection's local address
// is a loopback one.
func LoopbackAddr(a net.Addr) bool {
	tcp, ok := a.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// ParseName checks a host name given by the user (a flag value) and
// returns it as Name would: a name or address, without scheme, port or path.
func ParseName(s string) (string, error) {
	if s == "" {
		return "", errors.New("empty host name")
	}
	if strings.ContainsAny(s, "/@ ") || strings.Contains(s, "://") {
		return "", fmt.Errorf("host %q is not a bare name (no scheme, port or path)", s)
	}
	if _, _, err := net.SplitHostPort(s); err == nil {
		return "", fmt.Errorf("host %q has a port: give the name alone, every port of it is allowed", s)
	}
	return Name(s), nil
}
