package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/grpctap/grpctap/demo"
	"github.com/grpctap/grpctap/demo/demopb"
	"github.com/grpctap/grpctap/internal/pgtest"
	"github.com/grpctap/grpctap/internal/stubserver"
	"github.com/grpctap/grpctap/internal/syncbuf"
	"github.com/grpctap/grpctap/webbridge"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// started runs a grpctap command line in the background. stop cancels it
// (as SIGINT would) and returns run's error.
type started struct {
	out, errOut *syncbuf.Buffer
	cancel      context.CancelFunc
	done        chan error
}

func start(t *testing.T, args ...string) *started {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &started{out: &syncbuf.Buffer{}, errOut: &syncbuf.Buffer{}, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- run(ctx, args, s.out, s.errOut) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.done:
		case <-time.After(20 * time.Second):
			t.Error("command did not stop within 20s of cancellation")
		}
	})
	return s
}

func (s *started) stop(t *testing.T, within time.Duration) error {
	t.Helper()
	s.cancel()
	select {
	case err := <-s.done:
		s.done <- err // for Cleanup
		return err
	case <-time.After(within):
		t.Fatalf("command still running %v after cancellation", within)
		return nil
	}
}

// waitFor polls the command's output until re matches, returning group 1.
func (s *started) waitFor(t *testing.T, re *regexp.Regexp) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, text := range []string{s.out.String(), s.errOut.String()} {
			if m := re.FindStringSubmatch(text); m != nil {
				return m[1]
			}
		}
		select {
		case err := <-s.done:
			s.done <- err // for Cleanup
			t.Fatalf("command exited early: %v\nstdout:\n%s\nstderr:\n%s", err, s.out, s.errOut)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("no match for %v in output:\n%s\n%s", re, s.out, s.errOut)
	return ""
}

var (
	demoProxyLine = regexp.MustCompile(`proxy\s+(127\.0\.0\.1:\d+)`)
	listeningLine = regexp.MustCompile(`grpctap proxy listening.*addr=(127\.0\.0\.1:\d+)`)
)

func demoClient(t *testing.T, addr string) demopb.DemoServiceClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return demopb.NewDemoServiceClient(cc)
}

func TestDemoServesThroughTheProxy(t *testing.T) {
	db := filepath.Join(t.TempDir(), "demo.db")
	s := start(t, "demo", "--listen", "127.0.0.1:0", "--traffic", "50ms", "--db", db, "--ui", "127.0.0.1:0", "--web", "127.0.0.1:0")
	addr := s.waitFor(t, demoProxyLine)
	webCurl := s.waitFor(t, regexp.MustCompile(`curl -s -H 'content-type: application/grpc-web-text' --data '(\S+ http://127\.0\.0\.1:\d+/\S+)`))
	uiURL := s.waitFor(t, regexp.MustCompile(`Open the inspector: (http://127\.0\.0\.1:\d+\S*)`))
	page, err := http.Get(uiURL)
	if err != nil {
		t.Fatalf("inspector at %s: %v", uiURL, err)
	}
	_ = page.Body.Close()
	if page.StatusCode != http.StatusOK {
		t.Errorf("inspector at %s: HTTP %d", uiURL, page.StatusCode)
	}
	out := s.out.String()
	for _, hint := range []string{"grpcurl -plaintext", "grpctap.demo.v1.DemoService/Echo", addr, "grpctap calls --db " + db} {
		if !strings.Contains(out, hint) {
			t.Errorf("demo output lacks %q:\n%s", hint, out)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := demoClient(t, addr).Echo(ctx, &demopb.EchoRequest{Message: "through grpctap"})
	if err != nil || resp.GetMessage() != "through grpctap" {
		t.Fatalf("Echo via demo proxy: %v, %v", resp, err)
	}
	// The printed curl command works: its body is an Echo "hi" as
	// grpc-web-text, and the answer comes back as grpc-web-text.
	body, url, _ := strings.Cut(webCurl, "' ")
	hreq, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	hreq.Header.Set("Content-Type", "application/grpc-web-text")
	hresp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		t.Fatalf("the demo's curl hint: %v", err)
	}
	text, _ := io.ReadAll(hresp.Body)
	_ = hresp.Body.Close()
	frames, err := io.ReadAll(webbridge.NewTextReader(bytes.NewReader(text)))
	if err != nil || hresp.StatusCode != http.StatusOK || len(frames) < 5 || frames[0] != 0 {
		t.Fatalf("the demo's curl hint: HTTP %d, %q (%v)", hresp.StatusCode, text, err)
	}
	var webEcho demopb.EchoResponse
	if n := binary.BigEndian.Uint32(frames[1:5]); int(n) > len(frames)-5 || proto.Unmarshal(frames[5:5+n], &webEcho) != nil || webEcho.GetMessage() != "hi" {
		t.Fatalf("the demo's curl hint answered %x", frames)
	}
	// The demo records what passes, while it runs: wait (bounded) until the
	// sample traffic's every kind is in the capture.
	var calls string
	stubserver.WaitFor(t, 10*time.Second, func() error {
		var buf bytes.Buffer
		if err := run(context.Background(), []string{"calls", "--db", db, "--json", "--limit", "1000"}, &buf, io.Discard); err != nil {
			t.Fatal(err)
		}
		calls = buf.String()
		missing := ""
		for _, m := range []string{"/Echo", "/Sum", "/Countdown", "/Chat"} {
			if !strings.Contains(calls, `"method":"/grpctap.demo.v1.DemoService`+m+`"`) {
				missing = m
			}
		}
		if !strings.Contains(calls, `"protocol":"grpc-web-text"`) {
			missing = "gRPC-Web"
		}
		if missing != "" {
			return fmt.Errorf("capture still lacks a %s call:\n%s", missing, calls)
		}
		return nil
	})
	if err := s.stop(t, 15*time.Second); err != nil {
		t.Fatalf("demo exited with %v, want nil (exit 0)", err)
	}
	if e := s.errOut.String(); strings.Contains(e, "demo traffic") {
		t.Errorf("sample traffic reported failures:\n%s", e)
	}

	// With demo and its backend gone, the capture still decodes: the schema
	// learned by reflection was kept in it.
	// An Echo of the sample traffic (x-demo-round), whose request has an
	// author; the test's own Echo has none.
	var echoID int64
	for _, line := range strings.Split(strings.TrimSpace(calls), "\n") {
		var c struct {
			ID             int64
			Method         string
			RequestHeaders map[string][]string `json:"request_headers"`
		}
		if json.Unmarshal([]byte(line), &c) == nil && strings.HasSuffix(c.Method, "/Echo") && c.RequestHeaders["x-demo-round"] != nil {
			echoID = c.ID
			break
		}
	}
	var shown bytes.Buffer
	if err := run(context.Background(), []string{"show", fmt.Sprint(echoID), "--db", db, "--json"}, &shown, io.Discard); err != nil {
		t.Fatal(err)
	}
	var call struct {
		RPC      string
		Messages []struct {
			JSON        map[string]any `json:"json"`
			DecodeError string         `json:"decode_error"`
		}
	}
	if err := json.Unmarshal(shown.Bytes(), &call); err != nil {
		t.Fatal(err)
	}
	if call.RPC != "unary" || len(call.Messages) == 0 || call.Messages[0].JSON["author"] == nil {
		t.Errorf("show --json of Echo %d after the backend stopped: rpc %q, messages %+v", echoID, call.RPC, call.Messages)
	}
}

// TestShutdownLetsCallsFinish: on SIGINT the proxy stops accepting but a
// call in flight completes; run returns nil.
func TestShutdownLetsCallsFinish(t *testing.T) {
	backend, err := demo.Start(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = backend.Close(context.Background()) })
	s := start(t, "proxy", "--listen", "127.0.0.1:0", "--backend", backend.Addr(), "--shutdown-timeout", "10s", "--no-record", "--ui", "")
	addr := s.waitFor(t, listeningLine)
	c := demoClient(t, addr)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := c.Countdown(ctx, &demopb.CountdownRequest{Count: 5, Interval: durationpb.New(150 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- s.stop(t, 15*time.Second) }()
	ticks := 1
	for {
		_, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("call in flight broke during shutdown after %d ticks: %v", ticks, err)
		}
		ticks++
	}
	if ticks != 5 {
		t.Errorf("got %d ticks, want all 5", ticks)
	}
	if err := <-stopped; err != nil {
		t.Errorf("proxy exited with %v, want nil", err)
	}
}

// TestShutdownCancelsAfterGrace: a call longer than --shutdown-timeout is
// cancelled and the proxy still exits cleanly.
func TestShutdownCancelsAfterGrace(t *testing.T) {
	backend, err := demo.Start(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = backend.Close(context.Background()) })
	s := start(t, "proxy", "--listen", "127.0.0.1:0", "--backend", backend.Addr(), "--shutdown-timeout", "300ms", "--no-record", "--ui", "")
	addr := s.waitFor(t, listeningLine)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := demoClient(t, addr).Countdown(ctx, &demopb.CountdownRequest{Count: 100, Interval: durationpb.New(100 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if err := s.stop(t, 10*time.Second); err != nil {
		t.Errorf("proxy exited with %v, want nil", err)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("shutdown took %v with a 300ms grace", d)
	}
	for {
		if _, err := stream.Recv(); err != nil {
			if c := status.Code(err); c == codes.OK {
				t.Errorf("long call ended OK; want it cut by shutdown")
			}
			break
		}
	}
}

func TestFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"proxy", "--listen", "127.0.0.1:0", "--ui", "", "--resolve", "backend.test"}, "want HOST=ADDR"},
		{[]string{"proxy", "--listen", "127.0.0.1:0", "--ui", "", "--forward-ports", "443,https"}, `"https" is not a port`},
		{[]string{"proxy", "--listen", "127.0.0.1:0", "--ui", "", "--forward-allow", "10.0.0.0/33"}, "want a CIDR"},
		{[]string{"proxy", "--listen", "127.0.0.1:0", "--ui", "", "--no-intercept", "[a"}, "host pattern"},
		{[]string{"proxy", "--listen", "127.0.0.1:0", "--ui", "", "--ca-cert", "c.pem"}, "--ca-key"},
		{[]string{"proxy", "--listen", "127.0.0.1:0", "--ui", "", "--ca-cert", "nosuch.pem", "--ca-key", "nosuch-key.pem"}, "--ca-cert: CA nosuch.pem"},
		{[]string{"proxy", "--backend", "x:1", "--route", "nope"}, "want PREFIX=ADDR"},
		{[]string{"proxy", "--backend", "x:1", "--max-msg-size", "lots"}, "not a size"},
		{[]string{"proxy", "--backend", "x:1", "--tls-cert", "c.pem"}, "--tls-key"},
		{[]string{"proxy", "--backend", "x:1", "--backend-cert", "c.pem"}, "both a cert file and a key file"},
		{[]string{"proxy", "--backend", "x:1", "--log-level", "loud"}, "not a log level"},
		{[]string{"proxy", "--backend", "x:1", "--listen", "127.0.0.1:0", "--no-record", "--ui", "", "--pprof", "0.0.0.0:6060"}, "loopback addresses only"},
		{[]string{"nosuch"}, "unknown command"},
	} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), tc.args, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want it to mention %q", tc.args, err, tc.want)
		}
	}
}

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "4194304": 4 << 20, "4MiB": 4 << 20, "64 mib": 64 << 20, "512KB": 512000, "1g": 1 << 30, "10b": 10} {
		if got, err := parseByteSize(in); err != nil || got != want {
			t.Errorf("parseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-1", "MiB", "1.5MiB", "ten"} {
		if _, err := parseByteSize(bad); err == nil {
			t.Errorf("parseByteSize(%q) succeeded", bad)
		}
	}
}
