package proxy

import (
	"strings"
	"testing"
)

func TestCheckTarget(t *testing.T) {
	for _, ok := range []string{
		"127.0.0.1:9000", "api.internal:443", "[::1]:9000", ":9000", "localhost:https",
		"unix:/tmp/backend.sock", "unix:///tmp/backend.sock", "unix:relative.sock", "unix-abstract:grpc",
		"dns:///api.internal:443", "dns://8.8.8.8/api.internal:443", "passthrough:///127.0.0.1:9000",
	} {
		if err := CheckTarget(ok); err != nil {
			t.Errorf("CheckTarget(%q) = %v, want nil", ok, err)
		}
	}
	for _, tc := range []struct{ target, want string }{
		{"http://127.0.0.1:9101", `give host:port (127.0.0.1:9101)`},
		{"https://api.internal:443/", `give host:port (api.internal:443, with TLS)`},
		{"127.0.0.1", `has no port: give host:port, e.g. 127.0.0.1:9000`},
		{"dns:///api.internal", `has no port`},
		{"not an addr", `has spaces`},
		{"::1:9000", `is not host:port`},
		{"127.0.0.1:port", `is not a port number`},
		{"127.0.0.1:70000", `is not a port number`},
		{"unix:", `names no socket`},
		{"ftp://x:1", `unknown scheme "ftp"`},
		{"dns:api.internal:443", `write dns:///host:port`},
		{"", `empty backend address`},
	} {
		err := CheckTarget(tc.target)
		if err == nil {
			t.Errorf("CheckTarget(%q) = nil, want an error", tc.target)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CheckTarget(%q) = %v, want it to say %q", tc.target, err, tc.want)
		}
		if tc.target != "" && !strings.Contains(err.Error(), tc.target) {
			t.Errorf("CheckTarget(%q) = %v, want it to name the address", tc.target, err)
		}
	}
}
