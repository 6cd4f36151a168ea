package ui_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/grpctap/grpctap/demo/demopb"
	"github.com/grpctap/grpctap/internal/stubserver"
	"github.com/grpctap/grpctap/internal/testcert"
	"github.com/grpctap/grpctap/store"
	"github.com/grpctap/grpctap/ui"
	"github.com/grpctap/grpctap/webbridge"
)

// startBridge serves the gRPC-Web bridge in front of e's proxy on a
// loopback port until the test ends, and returns its address.
func startBridge(t *testing.T, e *env) string {
	t.Helper()
	srv := e.proxy.NewServer()
	b, err := webbridge.New(srv, webbridge.Options{})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := webbridge.NewHTTPServer(b, nil, nil)
	done := make(chan struct{})
	go func() { defer close(done); _ = hs.Serve(lis) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(ctx)
		<-done
		srv.Stop()
	})
	return lis.Addr().String()
}

// webEcho makes a gRPC-Web (binary) Echo call through the bridge.
func webEcho(t *testing.T, bridge string, req *demopb.EchoRequest, hdr ...string) {
	t.Helper()
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	body := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(b)))
	body = append(body, b...)
	hr, err := http.NewRequest("POST", "http://"+bridge+"/grpctap.demo.v1.DemoService/Echo", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	hr.Header.Set("Content-Type", "application/grpc-web+proto")
	hr.Header.Set("X-Grpc-Web", "1")
	for i := 0; i+1 < len(hdr); i += 2 {
		hr.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	got, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != 200 || !bytes.Contains(got, []byte("grpc-status: 0")) {
		t.Fatalf("gRPC-Web Echo: %d %q %v", res.StatusCode, got, err)
	}
}

// TestCopyAsGrpcurlRuns: the command "Copy as grpcurl" gives for a gRPC
// call and for a gRPC-Web call runs with grpcurl against the demo through
// the proxy's gRPC listener, plaintext or TLS, once the redacted
// authorization header's variable is set, and sends the same request and
// metadata again.
func TestCopyAsGrpcurlRuns(t *testing.T) {
	grpcurl := stubserver.Grpcurl(t)
	for _, tc := range []struct {
		name string
		tls  bool
	}{{"plaintext", false}, {"tls", true}} {
		t.Run(tc.name, func(t *testing.T) {
			o := envOpts{}
			if tc.tls {
				o.grpcTLS = testcert.New(t)
			}
			e := newEnv(t, o)
			bridge := startBridge(t, e)
			req := &demopb.EchoRequest{Message: "it's copied", Author: &demopb.Author{Name: "ann", Mood: demopb.Mood_MOOD_CURIOUS}, Tags: []string{"a"}}
			ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(),
				"authorization", "Bearer s3cret", "x-trace", "t-1"), 10*time.Second)
			defer cancel()
			if _, err := e.client.Echo(ctx, req); err != nil {
				t.Fatal(err)
			}
			webEcho(t, bridge, req, "Authorization", "Bearer s3cret", "X-Trace", "t-1")
			calls := e.waitCalls(2)

			for _, c := range calls {
				var cmd ui.GrpcurlCommand
				if code := e.do("GET", fmt.Sprintf("/api/calls/%d/grpcurl", c.ID), nil, &cmd); code != 200 {
					t.Fatalf("grpcurl of call %d: status %d", c.ID, code)
				}
				line := cmd.Command
				t.Logf("%s call: %s", c.Protocol, line)
				for _, want := range []string{"# set AUTHORIZATION ", `-H "authorization: ${AUTHORIZATION}"`, "-H 'x-trace: t-1'", " " + e.addr + " ", "grpctap.demo.v1.DemoService/Echo"} {
					if !strings.Contains(line, want) {
						t.Errorf("%s call's command lacks %q:\n%s", c.Protocol, want, line)
					}
				}
				if strings.Contains(line, "[redacted]") || strings.Contains(line, bridge) || strings.Contains(line, "x-grpc-web") {
					t.Errorf("%s call's command names the redaction, the bridge or a browser header:\n%s", c.Protocol, line)
				}
				if tls := strings.Contains(line, "-cacert "); tc.tls != tls || tc.tls == strings.Contains(line, "-plaintext") {
					t.Errorf("%s call's command has the wrong TLS flags for a %s listener:\n%s", c.Protocol, tc.name, line)
				}

				run := exec.Command("bash", "-c", line)
				run.Env = append(os.Environ(), "AUTHORIZATION=Bearer again", "PATH="+filepath.Dir(grpcurl)+string(os.PathListSeparator)+os.Getenv("PATH"))
				var out, errOut bytes.Buffer
				run.Stdout, run.Stderr = &out, &errOut
				if err := run.Run(); err != nil {
					t.Fatalf("%s call's command failed: %v\n%s\n%s%s", c.Protocol, err, line, out.String(), errOut.String())
				}
				if !strings.Contains(out.String(), `"message": "it's copied"`) || !strings.Contains(out.String(), `"MOOD_CURIOUS"`) {
					t.Errorf("grpcurl answered:\n%s", out.String())
				}
			}
			// The commands' calls went through the proxy with the
			// request and metadata of the originals (grpcurl's reflection
			// calls went there too).
			if err := e.rec.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			var page store.Page
			e.do("GET", "/api/calls?method=*/Echo", nil, &page)
			var again []store.Call
			for _, c := range page.Calls {
				if c.ID > calls[0].ID && c.Method == "/grpctap.demo.v1.DemoService/Echo" {
					again = append(again, c)
				}
			}
			if len(again) != 2 {
				t.Fatalf("%d Echo calls from grpcurl recorded, want 2", len(again))
			}
			for _, c := range again {
				full := e.call(c.ID)
				if c.Protocol != "grpc" || c.Status == nil || c.Status.Name != "OK" || len(full.RequestHeaders["authorization"]) != 1 ||
					!equalStrings(full.RequestHeaders["x-trace"], "t-1") || len(full.Messages) == 0 || !strings.Contains(string(full.Messages[0].JSON), "it's copied") {
					t.Errorf("grpcurl's call %d: %s %+v headers %v messages %+v", c.ID, c.Protocol, c.Status, full.RequestHeaders, full.Messages)
				}
			}
		})
	}
}

func equalStrings(got []string, want ...string) bool {
	return strings.Join(got, "\x00") == strings.Join(want, "\x00")
}

// call reads one call as GET /api/calls/{id} answers it.
func (e *env) call(id int64) store.CallWithMessages {
	e.t.Helper()
	var c store.CallWithMessages
	if code := e.do("GET", fmt.Sprintf("/api/calls/%d", id), nil, &c); code != 200 {
		e.t.Fatalf("call %d: status %d", id, code)
	}
	return c
}
