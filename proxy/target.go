package proxy

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// TargetForms names the backend addresses CheckTarget accepts, for error
// messages.
const TargetForms = "host:port (127.0.0.1:9000, api.internal:443, [::1]:9000), unix:/path/to.sock or dns:///host:port"

// CheckTarget reports whether target is a backend address the proxy can
// dial: host:port, unix:PATH (also unix:///PATH), unix-abstract:NAME, or
// dns:[//AUTHORITY]/host:port and passthrough:///host:port. A port is
// required: gRPC would quietly dial 443 without one. The error names the
// target and the accepted forms.
func CheckTarget(target string) error {
	if target == "" {
		return fmt.Errorf("empty backend address: want %s", TargetForms)
	}
	if strings.ContainsAny(target, " \t\r\n") {
		return fmt.Errorf("backend address %q has spaces: want %s", target, TargetForms)
	}
	for _, p := range []string{"unix:", "unix-abstract:"} {
		if path, ok := strings.CutPrefix(target, p); ok {
			if strings.Trim(path, "/") == "" {
				return fmt.Errorf("backend address %q names no socket: want %s", target, TargetForms)
			}
			return nil
		}
	}
	scheme, rest, hasScheme := strings.Cut(target, "://")
	if hasScheme {
		switch strings.ToLower(scheme) {
		case "http", "https", "grpc", "grpcs", "h2c":
			hint := ""
			if strings.EqualFold(scheme, "https") || strings.EqualFold(scheme, "grpcs") {
				hint = ", with TLS"
			}
			return fmt.Errorf("backend address %q has a URL scheme: give host:port (%s%s); want %s",
				target, strings.TrimSuffix(rest, "/"), hint, TargetForms)
		case "dns", "passthrough":
			u, err := url.Parse(target)
			if err != nil {
				return fmt.Errorf("backend address %q: %v; want %s", target, err, TargetForms)
			}
			return checkHostPort(target, strings.TrimPrefix(u.Path, "/"))
		}
		return fmt.Errorf("backend address %q: unknown scheme %q; want %s", target, scheme, TargetForms)
	}
	if scheme, _, ok := strings.Cut(target, ":"); ok && (scheme == "dns" || scheme == "passthrough") {
		return fmt.Errorf("backend address %q: write %s:///host:port; want %s", target, scheme, TargetForms)
	}
	return checkHostPort(target, target)
}

// checkHostPort checks the host:port part hp of target.
func checkHostPort(target, hp string) error {
	if hp == "" {
		return fmt.Errorf("backend address %q names no host: want %s", target, TargetForms)
	}
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		if ae := (*net.AddrError)(nil); errors.As(err, &ae) && ae.Err == "missing port in address" {
			return fmt.Errorf("backend address %q has no port: give host:port, e.g. %s", target, net.JoinHostPort(strings.Trim(hp, "[]"), "9000"))
		}
		return fmt.Errorf("backend address %q is not host:port: want %s", target, TargetForms)
	}
	if port == "" {
		return fmt.Errorf("backend address %q has no port: want %s", target, TargetForms)
	}
	if strings.ContainsAny(host, "/?#@") {
		return fmt.Errorf("backend address %q is not host:port: want %s", target, TargetForms)
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("backend address %q: port %q is not a port number: want %s", target, port, TargetForms)
	}
	return nil
}
