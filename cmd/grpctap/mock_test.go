package main

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/grpctap/grpctap/demo/demopb"
	"github.com/grpctap/grpctap/internal/stubserver"
	"github.com/grpctap/grpctap/internal/syncbuf"
	"github.com/grpctap/grpctap/internal/testcert"
	"github.com/grpctap/grpctap/mock"
	"github.com/grpctap/grpctap/proxy"
	"github.com/grpctap/grpctap/recorder"
	"github.com/grpctap/grpctap/store"
)

var mockListening = regexp.MustCompile(`grpctap mock listening.*addr=(127\.0\.0\.1:\d+)`)

// recordThenStop records the demo traffic and stops the backend.
func recordThenStop(t *testing.T) (string, recordedIDs) {
	t.Helper()
	backend := startDemo(t)
	db, ids := recordDemo(t, backend.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := backend.Close(ctx); err != nil {
		t.Fatal(err)
	}
	return db, ids
}

func TestMockAnswersEveryRPCKindWithTheBackendStopped(t *testing.T) {
	db, ids := recordThenStop(t)
	m := start(t, "mock", "--db", db, "--listen", "127.0.0.1:0")
	addr := m.waitFor(t, mockListening)
	cl := demoClient(t, addr)
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "x-trace", "t-1"), 10*time.Second)
	defer cancel()
	// The same calls as recorded get the recorded answers: headers,
	// trailers, status with details, and every message of every stream.
	driveDemo(t, ctx, cl)

	var hdr metadata.MD
	if _, err := cl.Echo(ctx, &demopb.EchoRequest{
		Message: "hello", Author: &demopb.Author{Name: "ann", Mood: demopb.Mood_MOOD_CURIOUS},
		Tags: []string{"a", "b"}, Labels: map[string]string{"k": "v"},
	}, grpc.Header(&hdr)); err != nil {
		t.Fatal(err)
	}
	if got := hdr.Get(mock.HeaderMatch); len(got) != 1 || got[0] != "exact; call="+itoa(ids.echo) {
		t.Errorf("%s = %v", mock.HeaderMatch, got)
	}
	// A request never recorded gets the most similar recorded answer.
	resp, err := cl.Echo(ctx, &demopb.EchoRequest{Message: "hello!", Author: &demopb.Author{Name: "ann", Mood: demopb.Mood_MOOD_CURIOUS},
		Tags: []string{"a", "b"}, Labels: map[string]string{"k": "v"}}, grpc.Header(&hdr))
	if err != nil || resp.GetMessage() != "hello" {
		t.Fatalf("similar Echo: %v, %v", resp, err)
	}
	if got := hdr.Get(mock.HeaderMatch); len(got) != 1 || !strings.HasPrefix(got[0], "similar; call="+itoa(ids.echo)+"; differing=1") {
		t.Errorf("similar: %s = %v", mock.HeaderMatch, got)
	}

	// A method never recorded is UNIMPLEMENTED.
	err = grpc.Invoke(ctx, "/grpctap.demo.v1.DemoService/Nope", &demopb.EchoRequest{}, &demopb.EchoResponse{}, grpcConn(t, addr))
	if st := status.Convert(err); st.Code() != codes.Unimplemented || !strings.Contains(st.Message(), "/grpctap.demo.v1.DemoService/Echo") {
		t.Errorf("unknown method: %v", err)
	}
	if err := m.stop(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(m.errOut.String(), "mock answered") || !strings.Contains(m.errOut.String(), "match=similar") {
		t.Errorf("log lacks match lines:\n%s", m.errOut)
	}
}

func grpcConn(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

func TestMockStrictMatchNotFound(t *testing.T) {
	db, ids := recordThenStop(t)
	m := start(t, "mock", "--db", db, "--listen", "127.0.0.1:0", "--match", "exact", "--timing")
	addr := m.waitFor(t, mockListening)
	cl := demoClient(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := cl.Echo(ctx, &demopb.EchoRequest{Message: "never sent"})
	st := status.Convert(err)
	if st.Code() != codes.NotFound || !strings.Contains(st.Message(), "nearest: call ") {
		t.Fatalf("strict mock: %v", err)
	}
	if !strings.Contains(st.Message(), "call "+itoa(ids.echoFail)) && !strings.Contains(st.Message(), "call "+itoa(ids.echo)) {
		t.Errorf("nearest calls not named: %s", st.Message())
	}
}

func TestProxyMockOnUnavailable(t *testing.T) {
	db, _ := recordThenStop(t)
	ctx := context.Background()

	// The proxy's flags as 'proxy' reads them; --db is the proxy's own.
	var mf mockOnUnavailableFlags
	fs := pflag.NewFlagSet("proxy", pflag.ContinueOnError)
	mf.register(fs)
	if err := fs.Parse([]string{"--mock-on-unavailable"}); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, db, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := recorder.New(ctx, st, recorder.Options{Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	var logBuf syncbuf.Buffer
	opts := proxy.Options{Backend: stubserver.DeadAddr(t), Observer: rec, Logger: newLogger(&logBuf, slog.LevelInfo)}
	release, err := mf.apply(&opts, db, opts.Logger)
	if err != nil {
		t.Fatal(err)
	}
	p, err := proxy.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	addr, stopProxy := stubserver.Start(t, p.NewServer())

	cctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(ctx, "x-trace", "t-1"), 10*time.Second)
	defer cancel()
	// Every kind of call gets its recorded answer though the backend is down.
	driveDemo(t, cctx, demoClient(t, addr))

	stopProxy()
	_ = p.Close()
	release()
	if err := rec.Close(ctx); err != nil {
		t.Fatal(err)
	}
	calls, err := st.ListCalls(ctx, store.Filter{})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 10 {
		t.Fatalf("capture holds %d calls, want 5 recorded + 5 answered by the fallback", len(calls))
	}
	for _, c := range calls[5:] {
		marked := len(c.ResponseHeaders[proxy.HeaderFallback]) > 0 || len(c.Trailers[proxy.HeaderFallback]) > 0
		if !marked || len(c.ResponseHeaders[mock.HeaderMatch]) == 0 {
			t.Errorf("fallback call %d %s not marked: headers %v trailers %v", c.ID, c.Method, c.ResponseHeaders, c.Trailers)
		}
	}
	if !strings.Contains(logBuf.String(), "answering from the fallback") {
		t.Errorf("fallback not logged:\n%s", logBuf.String())
	}
}

// TestMockServesTLS: with --tls-cert and --tls-key the mock answers TLS
// clients that trust the certificate, as a TLS backend would, and a
// plaintext client gets nothing.
func TestMockServesTLS(t *testing.T) {
	db, _ := recordThenStop(t)
	certs := testcert.New(t)
	m := start(t, "mock", "--db", db, "--listen", "127.0.0.1:0",
		"--tls-cert", certs.ServerCertFile, "--tls-key", certs.ServerKeyFile)
	addr := m.waitFor(t, mockListening)
	if !strings.Contains(m.errOut.String(), "tls=true") {
		t.Errorf("listening line does not say tls=true:\n%s", m.errOut)
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(certs.ClientConfig(t, false))))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := demopb.NewDemoServiceClient(cc).Echo(ctx, &demopb.EchoRequest{
		Message: "hello", Author: &demopb.Author{Name: "ann", Mood: demopb.Mood_MOOD_CURIOUS},
		Tags: []string{"a", "b"}, Labels: map[string]string{"k": "v"},
	})
	if err != nil || resp.GetMessage() != "hello" {
		t.Fatalf("Echo over TLS: %v, %v", resp, err)
	}
	plainCtx, cancelPlain := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancelPlain()
	_, err = demopb.NewDemoServiceClient(grpcConn(t, addr)).Echo(plainCtx, &demopb.EchoRequest{Message: "hello"})
	if code := status.Code(err); code != codes.Unavailable && code != codes.DeadlineExceeded {
		t.Errorf("plaintext client on the TLS mock: %v, want UNAVAILABLE", err)
	}
	if err := m.stop(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestMockTLSFlagsGoTogether(t *testing.T) {
	// The flags are checked before the capture is opened: no capture needed.
	db := filepath.Join(t.TempDir(), "none.db")
	err := run(context.Background(), []string{"mock", "--db", db, "--listen", "127.0.0.1:0", "--tls-cert", "x.pem"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--tls-cert and --tls-key go together") {
		t.Errorf("mock --tls-cert alone: %v", err)
	}
}
