package headers

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/metadata"
)

// TestPolicy is the policy as one table: for a header of each class, on
// each path, whether it passes (P) or is left out (-). The proxy, replay,
// collections, the mock, the composer and grpcurl commands all ask
// Passes, so this table is what each of them does.
func TestPolicy(t *testing.T) {
	paths := []Path{ProxyRequest, ProxyResponse, Replay, Mock, Composer, Grpcurl}
	rows := []struct {
		key   string
		class Class
		want  string // one letter per path, in the order of paths
	}{
		{"x-trace", Ordinary, "PPPPPP"},
		{"authorization", Ordinary, "PPPPPP"}, // redaction is another matter: see TestResendLeavesOutRedacted
		{":authority", Pseudo, "------"},
		{"", Pseudo, "------"},
		{"connection", HopByHop, "----P-"},
		{"te", HopByHop, "----P-"},
		{"proxy-anything", HopByHop, "----P-"},
		{"Keep-Alive", HopByHop, "----P-"},
		{"grpctap-origin", Label, "-P-P--"},
		{"x-client-grpctap-origin", ClientLabel, "PP-PP-"},
		{"content-type", Transport, "-P--P-"},
		{"grpc-encoding", Transport, "-P--P-"},
		{"grpc-accept-encoding", Transport, "-P--P-"},
		{"user-agent", RequestTransport, "-P-PP-"},
		{"grpc-timeout", RequestTransport, "-P-PP-"},
		{"grpc-status", Status, "PPP-PP"},
		{"grpc-status-details-bin", Status, "PPP-PP"},
		{"content-length", ContentLength, "PP--P-"},
		{"date", Date, "PPP-PP"},
		{"cookie", Browser, "PPPPP-"},
		{"sec-fetch-mode", Browser, "PPPPP-"},
		{"x-grpc-web", Browser, "PPPPP-"},
	}
	for _, r := range rows {
		if got := Classify(r.key); got != r.class {
			t.Errorf("Classify(%q) = %v, want %v", r.key, got, r.class)
		}
		got := ""
		for _, p := range paths {
			if Passes(p, r.key) {
				got += "P"
			} else {
				got += "-"
			}
		}
		if got != r.want {
			t.Errorf("%q (%v) on %v: %s, want %s", r.key, r.class, paths, got, r.want)
		}
	}
}

// TestResendLeavesOutRedacted: replay and mock send a recorded header
// unless the call names it redacted; a value that only reads "[redacted]"
// is sent as it is. -bin values go back to bytes.
func TestResendLeavesOutRedacted(t *testing.T) {
	rec := map[string][]string{
		"authorization": {Redacted},
		"x-note":        {Redacted},
		"X-Trace":       {"t1", "t2"},
		"x-id-bin":      {EncodeBin([]byte{0, 1, 2})},
		"x-bad-bin":     {"%%%"},
		"content-type":  {"application/grpc"},
		"te":            {"trailers"},
		"grpc-status":   {"5"},
	}
	red := []string{"authorization"}
	for _, tc := range []struct {
		path Path
		want metadata.MD
	}{
		{Replay, metadata.MD{"x-note": {Redacted}, "x-trace": {"t1", "t2"}, "x-id-bin": {"\x00\x01\x02"}, "grpc-status": {"5"}}},
		{Mock, metadata.MD{"x-note": {Redacted}, "x-trace": {"t1", "t2"}, "x-id-bin": {"\x00\x01\x02"}}},
	} {
		if d := cmp.Diff(tc.want, Resend(tc.path, rec, red)); d != "" {
			t.Errorf("%v (-want +got):\n%s", tc.path, d)
		}
	}
}

func TestRedaction(t *testing.T) {
	md := map[string][]string{"Authorization": {"Bearer x", "Bearer y"}, "x-a": {"1"}, "cookie": {"c=1"}}
	out, names := NewRedaction(nil).Apply(md)
	want := map[string][]string{"authorization": {Redacted, Redacted}, "x-a": {"1"}, "cookie": {Redacted}}
	if d := cmp.Diff(want, out); d != "" {
		t.Errorf("default redaction (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"authorization", "cookie"}, names); d != "" {
		t.Errorf("names (-want +got):\n%s", d)
	}
	if md["Authorization"][0] != "Bearer x" {
		t.Error("Apply changed its argument")
	}
	if out, names := NewRedaction([]string{}).Apply(md); len(names) != 0 || out["authorization"][0] != "Bearer x" {
		t.Errorf("no redaction: %v, %v", out, names)
	}
	if r := NewRedaction([]string{" X-Key "}); !r.Redacts("x-key") || r.Redacts("authorization") {
		t.Error("a list given replaces the default, in any case and spacing")
	}
}

func TestInBand(t *testing.T) {
	got := InBand(map[string][]string{"a": {Redacted}, "b": {Redacted, "x"}, "c": {}, "d": {Redacted, Redacted}})
	if d := cmp.Diff([]string{"a", "d"}, got); d != "" {
		t.Error(d)
	}
	if got := Names(nil, []string{"b", "a"}, []string{"a"}); !cmp.Equal([]string{"a", "b"}, got) {
		t.Errorf("Names = %v", got)
	}
	if got := Names(); got == nil {
		t.Error("Names() is nil, want empty")
	}
}

func TestConnection(t *testing.T) {
	if got := Connection([]string{"X-A, x-b", " ,"}); !cmp.Equal([]string{"x-a", "x-b"}, got) {
		t.Errorf("Connection = %v", got)
	}
}
