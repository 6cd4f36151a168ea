package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/grpctap/grpctap/demo"
	"github.com/grpctap/grpctap/demo/demopb"
	"github.com/grpctap/grpctap/internal/stubserver"
	"github.com/grpctap/grpctap/internal/testcert"
)

// forwardEnv is 'grpctap proxy' recording into db, with two demo backends
// it reaches as a forward proxy only: one serving TLS as backend.test
// (with a certificate of a CA of the test's, given with --backend-ca), one
// serving h2c as plain.test; --resolve maps both names to 127.0.0.1.
type forwardEnv struct {
	proc    *started
	addr    string // the proxy's --listen address
	db      string
	caFile  string // grpctap's own CA, made in the test's XDG_CONFIG_HOME
	tlsHost string // backend.test:PORT
	h2cHost string // plain.test:PORT
	direct  string // the TLS backend by address, the proxy's --backend
}

func startForward(t *testing.T, extra ...string) *forwardEnv {
	t.Helper()
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	var caPath bytes.Buffer
	if err := run(context.Background(), []string{"ca", "--path"}, &caPath, io.Discard); err != nil {
		t.Fatal(err)
	}
	certs := testcert.New(t, "backend.test")
	tlsBackend := startTLSDemo(t, certs)
	h2cBackend := startDemo(t)
	env := &forwardEnv{
		db:      filepath.Join(t.TempDir(), "fwd.db"),
		caFile:  strings.TrimSpace(caPath.String()),
		tlsHost: "backend.test:" + portOf(t, tlsBackend.Addr()),
		h2cHost: "plain.test:" + portOf(t, h2cBackend.Addr()),
		direct:  tlsBackend.Addr(),
	}
	args := append([]string{"proxy", "--listen", "127.0.0.1:0", "--db", env.db, "--ui", "",
		"--backend", env.direct, "--backend-ca", certs.CAFile,
		"--resolve", "backend.test=127.0.0.1", "--resolve", "plain.test=127.0.0.1"}, extra...)
	env.proc = start(t, args...)
	env.addr = env.proc.waitFor(t, listeningLine)
	return env
}

// startTLSDemo serves the demo service over TLS (ALPN h2) with the server
// certificate of certs.
func startTLSDemo(t *testing.T, certs *testcert.Set) *demo.Server {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := certs.ServerConfig(t, false)
	cfg.NextProtos = []string{"h2"}
	s := demo.Serve(tls.NewListener(lis, cfg))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})
	return s
}

func portOf(t *testing.T, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// proxyEnv is the environment of a client process that uses the proxy at
// addr for everything: what was set in this one, less any proxy settings.
func proxyEnv(addr string, more ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToLower(k) {
		case "http_proxy", "https_proxy", "grpc_proxy", "no_proxy", "no_grpc_proxy", "all_proxy", "ssl_cert_file", "ssl_cert_dir", "node_extra_ca_certs", "grpc_default_ssl_roots_file_path":
			continue
		}
		env = append(env, kv)
	}
	return append(append(env, "HTTPS_PROXY=http://"+addr, "https_proxy=http://"+addr), more...)
}

// TestForwardGoClientHelper is not a test: the forward-proxy tests run the
// test binary as a grpc-go client process whose environment sets
// HTTPS_PROXY (and SSL_CERT_FILE to grpctap's CA), as a user would.
func TestForwardGoClientHelper(t *testing.T) {
	if os.Getenv("GRPCTAP_FORWARD_CLIENT") != "1" {
		t.Skip("helper process for the forward-proxy tests")
	}
	creds := insecure.NewCredentials()
	if os.Getenv("GRPCTAP_FORWARD_TLS") == "1" {
		// The system roots: SSL_CERT_FILE, grpctap's CA only.
		creds = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})
	}
	cc, err := grpc.NewClient(os.Getenv("GRPCTAP_FORWARD_TARGET"), grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	cl := demopb.NewDemoServiceClient(cc)
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "x-trace", "t-1"), 20*time.Second)
	defer cancel()
	driveDemo(t, ctx, cl)
	dctx, dcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer dcancel()
	t0 := time.Now()
	_, err = cl.Echo(dctx, &demopb.EchoRequest{Message: "slow", Delay: durationpb.New(3 * time.Second)})
	if status.Code(err) != codes.DeadlineExceeded || time.Since(t0) > 2*time.Second {
		t.Fatalf("Echo past its deadline: %v after %v, want DEADLINE_EXCEEDED after 300ms", err, time.Since(t0))
	}
}

// runGoClient runs the grpc-go client process against target through the
// proxy, trusting grpctap's CA only.
func runGoClient(t *testing.T, env *forwardEnv, target string, useTLS bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestForwardGoClientHelper$", "-test.v", "-test.count=1")
	tlsFlag := "0"
	if useTLS {
		tlsFlag = "1"
	}
	cmd.Env = proxyEnv(env.addr, "GRPCTAP_FORWARD_CLIENT=1", "GRPCTAP_FORWARD_TARGET="+target,
		"GRPCTAP_FORWARD_TLS="+tlsFlag, "SSL_CERT_FILE="+env.caFile)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestForwardGoClientHelper") {
		t.Fatalf("grpc-go client through HTTPS_PROXY to %s: %v\n%s\nproxy log:\n%s", target, err, out, env.proc.errOut)
	}
}

// recordedCall is a call as 'grpctap show --json' prints it.
type recordedCall struct {
	ID              int64
	Method          string
	Backend         string
	RPC             string
	RequestHeaders  map[string][]string `json:"request_headers"`
	ResponseHeaders map[string][]string `json:"response_headers"`
	Trailers        map[string][]string
	Status          *struct {
		Name    string
		Details [][]byte
	}
	Messages []struct {
		Direction   string
		JSON        json.RawMessage `json:"json"`
		DecodeError string          `json:"decode_error"`
	}
}

// recordedCalls reads every call in db back with 'grpctap show --json',
// which decodes the messages with the schemas the capture keeps.
func recordedCalls(t *testing.T, db string) []recordedCall {
	t.Helper()
	var list bytes.Buffer
	if err := run(context.Background(), []string{"calls", "--db", db, "--json", "--limit", "1000"}, &list, io.Discard); err != nil {
		t.Fatal(err)
	}
	var out []recordedCall
	for _, line := range strings.Split(strings.TrimSpace(list.String()), "\n") {
		if line == "" {
			continue
		}
		var c recordedCall
		if err := json.Unmarshal([]byte(line), &c); err != nil {
			t.Fatalf("calls --json: %v: %s", err, line)
		}
		var shown bytes.Buffer
		if err := run(context.Background(), []string{"show", fmt.Sprint(c.ID), "--db", db, "--json"}, &shown, io.Discard); err != nil {
			t.Fatal(err)
		}
		c = recordedCall{}
		if err := json.Unmarshal(shown.Bytes(), &c); err != nil {
			t.Fatalf("show --json: %v: %s", err, shown.String())
		}
		out = append(out, c)
	}
	return out
}

// checkForwarded checks that calls are the calls of one client run to
// backend through the forward proxy (mode: "tls" or "h2c"), recorded and
// decoded: every method with its status, headers, trailers and messages.
func checkForwarded(t *testing.T, calls []recordedCall, backend, mode string, want map[string]int) {
	t.Helper()
	got := map[string]int{}
	for _, c := range calls {
		if c.Backend != backend {
			continue
		}
		st := c.Status.Name
		if st == "CANCELLED" || st == "DEADLINE_EXCEEDED" {
			// The client's deadline ends the call at the same moment on
			// the client (which then cancels it), in the proxy and in the
			// backend: which of the two the recording shows is a race.
			st = "DEADLINE_EXCEEDED|CANCELLED"
		}
		got[c.Method+" "+st]++
		if h := c.RequestHeaders["grpctap-forward"]; len(h) != 1 || h[0] != mode {
			t.Errorf("call %d %s: grpctap-forward header %v, want [%s]", c.ID, c.Method, h, mode)
		}
		for i, m := range c.Messages {
			if m.DecodeError != "" || len(m.JSON) == 0 {
				t.Errorf("call %d %s: message %d (%s) not decoded: %q", c.ID, c.Method, i+1, m.Direction, m.DecodeError)
			}
		}
		switch {
		case strings.HasSuffix(c.Method, "/Echo") && c.Status.Name == "OK":
			if len(c.Trailers["x-echo-handled-at"]) != 1 {
				t.Errorf("call %d: trailers %v lack x-echo-handled-at", c.ID, c.Trailers)
			}
			if len(c.Messages) != 2 || !bytes.Contains(c.Messages[1].JSON, []byte(`"receivedAt"`)) && !bytes.Contains(c.Messages[1].JSON, []byte(`"received_at"`)) {
				t.Errorf("call %d: Echo messages %+v", c.ID, c.Messages)
			}
		case strings.HasSuffix(c.Method, "/Echo") && c.Status.Name == "NOT_FOUND":
			if len(c.Status.Details) != 2 {
				t.Errorf("call %d: status details %d, want 2", c.ID, len(c.Status.Details))
			}
		}
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("recorded %d calls %q to %s, want %d (all: %v)", got[k], k, backend, n, got)
		}
	}
}

// driveDemoCalls are the calls TestForwardGoClientHelper makes.
var driveDemoCalls = map[string]int{
	"/grpctap.demo.v1.DemoService/Echo OK":                          1,
	"/grpctap.demo.v1.DemoService/Echo NOT_FOUND":                   1,
	"/grpctap.demo.v1.DemoService/Echo DEADLINE_EXCEEDED|CANCELLED": 1,
	"/grpctap.demo.v1.DemoService/Sum OK":                           1,
	"/grpctap.demo.v1.DemoService/Countdown OK":                     1,
	"/grpctap.demo.v1.DemoService/Chat OK":                          1,
}

// TestForwardGoTLSAndH2C: a grpc-go client process with HTTPS_PROXY set
// reaches a TLS backend by its name (trusting only grpctap's CA, which the
// proxy signs backend.test's certificate with) and an h2c backend, through
// 'grpctap proxy': every RPC kind, headers, trailers, status details,
// deadlines. Every call is recorded with the CONNECT target as backend and
// the grpctap-forward label, and decodes. Direct gRPC on the same port
// keeps going to --backend.
func TestForwardGoTLSAndH2C(t *testing.T) {
	env := startForward(t)
	runGoClient(t, env, env.tlsHost, true)
	runGoClient(t, env, env.h2cHost, false)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if resp, err := demoClient(t, env.addr).Echo(ctx, &demopb.EchoRequest{Message: "direct"}); err != nil || resp.GetMessage() != "direct" {
		t.Fatalf("direct call beside the forward proxy: %v, %v", resp, err)
	}
	if err := env.proc.stop(t, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	calls := recordedCalls(t, env.db)
	checkForwarded(t, calls, env.tlsHost, "tls", driveDemoCalls)
	checkForwarded(t, calls, env.h2cHost, "h2c", driveDemoCalls)
	direct := 0
	for _, c := range calls {
		if c.Backend == env.direct {
			direct++
			if h := c.RequestHeaders["grpctap-forward"]; h != nil {
				t.Errorf("direct call %d labelled grpctap-forward %v", c.ID, h)
			}
		}
	}
	if direct != 1 {
		t.Errorf("recorded %d direct calls, want 1", direct)
	}
}

// TestForwardGrpcurl: grpcurl (v1.9.4, grpc-go inside) with HTTPS_PROXY
// lists, describes and calls the TLS backend by name with -cacert
// grpctap's CA; its reflection goes to the backend and is recorded too.
func TestForwardGrpcurl(t *testing.T) {
	bin := stubserver.Grpcurl(t)
	env := startForward(t)
	grpcurl := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = proxyEnv(env.addr)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("grpcurl %s: %v\n%s\nproxy log:\n%s", strings.Join(args, " "), err, out, env.proc.errOut)
		}
		return string(out)
	}
	if out := grpcurl("-cacert", env.caFile, env.tlsHost, "list"); !strings.Contains(out, "grpctap.demo.v1.DemoService") {
		t.Errorf("grpcurl list: %s", out)
	}
	out := grpcurl("-cacert", env.caFile, "-H", "x-trace: g-1", "-d", `{"message":"from grpcurl","author":{"name":"gc"}}`,
		env.tlsHost, "grpctap.demo.v1.DemoService/Echo")
	if !strings.Contains(out, `"message": "from grpcurl"`) {
		t.Errorf("grpcurl Echo: %s", out)
	}
	if out := grpcurl("-plaintext", "-d", `{"count":2,"interval":"0.005s"}`, env.h2cHost, "grpctap.demo.v1.DemoService/Countdown"); strings.Count(out, `"remaining"`)+strings.Count(out, "{") < 2 {
		t.Errorf("grpcurl Countdown: %s", out)
	}
	if err := env.proc.stop(t, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	calls := recordedCalls(t, env.db)
	checkForwarded(t, calls, env.tlsHost, "tls", map[string]int{"/grpctap.demo.v1.DemoService/Echo OK": 1})
	checkForwarded(t, calls, env.h2cHost, "h2c", map[string]int{"/grpctap.demo.v1.DemoService/Countdown OK": 1})
	reflection := 0
	for _, c := range calls {
		if strings.Contains(c.Method, "ServerReflection") && c.Backend == env.tlsHost {
			reflection++
		}
	}
	if reflection == 0 {
		t.Errorf("grpcurl's reflection calls to %s were not recorded", env.tlsHost)
	}
}

// TestForwardGrpcJS: the npm @grpc/grpc-js client, which reads
// https_proxy, through the proxy to the TLS backend (NODE_EXTRA_CA_CERTS:
// grpctap's CA) and the h2c one.
func TestForwardGrpcJS(t *testing.T) {
	node := requireGrpcJS(t)
	env := startForward(t)
	for _, c := range []struct {
		target string
		tls    bool
	}{{env.tlsHost, true}, {env.h2cHost, false}} {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		args := []string{"grpcjs-forward.mjs", "--target", c.target}
		if c.tls {
			args = append(args, "--tls")
		}
		cmd := exec.CommandContext(ctx, node, args...)
		cmd.Dir = grpcJSDir
		cmd.Env = proxyEnv(env.addr, "grpc_proxy=http://"+env.addr, "NODE_EXTRA_CA_CERTS="+env.caFile)
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil || strings.Count(string(out), `"ok":true`) != 6 {
			t.Fatalf("grpc-js to %s: %v\n%s\nproxy log:\n%s", c.target, err, out, env.proc.errOut)
		}
	}
	if err := env.proc.stop(t, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	calls := recordedCalls(t, env.db)
	checkForwarded(t, calls, env.tlsHost, "tls", driveDemoCalls)
	checkForwarded(t, calls, env.h2cHost, "h2c", driveDemoCalls)
}

var grpcJSDir = filepath.Join("..", "..", "e2e", "webclients")

// requireGrpcJS returns node once e2e/webclients has @grpc/grpc-js.
func requireGrpcJS(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(filepath.Join(grpcJSDir, "node_modules", "@grpc", "grpc-js"))
	}
	if err != nil {
		msg := "node and e2e/webclients/node_modules are needed: run bash scripts/setup (" + err.Error() + ")"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return node
}

// TestForwardBlindTunnels: a plain HTTP/1.1 request and an HTTPS request
// whose TLS offers no h2 pass through CONNECT unchanged (the HTTPS client
// verifies the real server's certificate, so nothing intercepted it), and
// neither is recorded.
func TestForwardBlindTunnels(t *testing.T) {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s %q", r.Proto, r.Method, r.URL.Path, body)
	})
	plain := httptest.NewServer(handler)
	defer plain.Close()
	secure := httptest.NewTLSServer(handler)
	defer secure.Close()
	env := startForward(t, "--resolve", "web.test=127.0.0.1")

	// HTTP/1.1 inside a tunnel, by hand.
	c := connectTo(t, env.addr, "web.test:"+portOf(t, plain.Listener.Addr().String()), "200")
	fmt.Fprintf(c.conn, "POST /plain HTTP/1.1\r\nHost: web.test\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		t.Fatalf("HTTP/1.1 through the tunnel: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	_ = c.conn.Close()
	if string(body) != `HTTP/1.1 POST /plain "hello"` {
		t.Errorf("HTTP/1.1 through the tunnel answered %q", body)
	}

	// HTTPS (ALPN http/1.1 only) with net/http's own CONNECT support.
	proxyURL, _ := url.Parse("http://" + env.addr)
	tr := &http.Transport{Proxy: http.ProxyURL(proxyURL), TLSClientConfig: secure.Client().Transport.(*http.Transport).TLSClientConfig.Clone()}
	tr.TLSClientConfig.ServerName = "example.com" // httptest's certificate names it
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	hr, err := hc.Post("https://web.test:"+portOf(t, secure.Listener.Addr().String())+"/secure", "text/plain", strings.NewReader("world"))
	if err != nil {
		t.Fatalf("HTTPS through the proxy: %v\nproxy log:\n%s", err, env.proc.errOut)
	}
	body, _ = io.ReadAll(hr.Body)
	_ = hr.Body.Close()
	if string(body) != `HTTP/1.1 POST /secure "world"` {
		t.Errorf("HTTPS through the tunnel answered %q", body)
	}
	tr.CloseIdleConnections()

	// Wait (bounded) for both tunnels' log lines, then check nothing was
	// recorded.
	stubserver.WaitFor(t, 10*time.Second, func() error {
		if strings.Count(env.proc.errOut.String(), "blind tunnel closed") < 2 {
			return fmt.Errorf("no log of two blind tunnels:\n%s", env.proc.errOut)
		}
		return nil
	})
	log := env.proc.errOut.String()
	for _, why := range []string{`why_blind="neither TLS nor HTTP/2"`, `why_blind="TLS without h2 in ALPN"`} {
		if !strings.Contains(log, why) {
			t.Errorf("log lacks %s:\n%s", why, log)
		}
	}
	if err := env.proc.stop(t, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	if calls := recordedCalls(t, env.db); len(calls) != 0 {
		t.Errorf("blind tunnels were recorded: %+v", calls)
	}
}

// connectResult is the proxy's answer to a CONNECT, and the connection.
type connectResult struct {
	conn   net.Conn
	r      *bufio.Reader
	status string
	body   string
}

// connectTo sends CONNECT target to the proxy at addr and checks the
// answer's status code is want; the body is read when it is not 200.
func connectTo(t *testing.T, addr, target, want string) *connectResult {
	t.Helper()
	return connectFrom(t, nil, addr, target, want)
}

func connectFrom(t *testing.T, local net.Addr, addr, target, want string) *connectResult {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: local}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	r := bufio.NewReader(conn)
	resp, err := http.ReadResponse(r, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatalf("CONNECT %s: %v", target, err)
	}
	res := &connectResult{conn: conn, r: r, status: resp.Status}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		res.body = string(b)
	}
	if !strings.HasPrefix(resp.Status, want) {
		t.Fatalf("CONNECT %s: %s %s, want %s", target, resp.Status, res.body, want)
	}
	return res
}

// TestForwardRefusals: CONNECT to a port --forward-ports does not allow,
// and from an address that is not loopback without --forward-allow, is
// refused with 403 and a reason; --forward-allow lets that address in.
// Direct gRPC from the same address is served all along.
func TestForwardRefusals(t *testing.T) {
	env := startForward(t, "--forward-ports", "443,8000-8100")
	r := connectTo(t, env.addr, env.tlsHost, "403")
	if !strings.Contains(r.body, "port "+portOf(t, env.tlsHost)+" refused") || !strings.Contains(r.body, "443,8000-8100") {
		t.Errorf("refused port: %q", r.body)
	}
	if m := connectTo(t, env.addr, "nohost", "400"); !strings.Contains(m.body, "host:port") {
		t.Errorf("CONNECT without a port: %q", m.body)
	}
	if err := env.proc.stop(t, 15*time.Second); err != nil {
		t.Fatal(err)
	}

	ip := nonLoopbackIP(t)
	for _, allow := range []string{"", ip.String() + "/32"} {
		args := []string{"proxy", "--listen", net.JoinHostPort(ip.String(), "0"), "--no-record", "--ui", "",
			"--backend", env.direct, "--backend-insecure", "--resolve", "plain.test=127.0.0.1"}
		if allow != "" {
			args = append(args, "--forward-allow", allow)
		}
		p := start(t, args...)
		addr := p.waitFor(t, regexp.MustCompile(`grpctap proxy listening.*addr=(\S+:\d+)`))
		local := &net.TCPAddr{IP: ip}
		if allow == "" {
			r := connectFrom(t, local, addr, env.h2cHost, "403")
			if !strings.Contains(r.body, "CONNECT from "+ip.String()+" refused") || !strings.Contains(r.body, "--forward-allow") {
				t.Errorf("refused client: %q", r.body)
			}
		} else {
			connectFrom(t, local, addr, env.h2cHost, "200")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := demoClient(t, addr).Echo(ctx, &demopb.EchoRequest{Message: "direct"})
		cancel()
		if err != nil || resp.GetMessage() != "direct" {
			t.Errorf("direct call from %s (allow %q): %v, %v", ip, allow, resp, err)
		}
		if err := p.stop(t, 15*time.Second); err != nil {
			t.Fatal(err)
		}
	}
}

// nonLoopbackIP is an IPv4 address of this machine's that is not
// loopback; the test is skipped on a machine with none.
func nonLoopbackIP(t *testing.T) net.IP {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Skip(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return n.IP
		}
	}
	t.Skip("no address but loopback to connect from")
	return nil
}

// TestForwardBesideTLSListener: with --tls-cert the port serves direct
// gRPC over TLS (grpctap's own certificate) and forward-proxy tunnels
// side by side; the tunnel's h2c is not taken for a TLS handshake.
func TestForwardBesideTLSListener(t *testing.T) {
	certs := testcert.New(t)
	backend := startDemo(t)
	env := &forwardEnv{h2cHost: "plain.test:" + portOf(t, backend.Addr())}
	env.proc = start(t, "proxy", "--listen", "127.0.0.1:0", "--no-record", "--ui", "", "--tls-cert", certs.ServerCertFile, "--tls-key", certs.ServerKeyFile,
		"--backend", backend.Addr(), "--resolve", "plain.test=127.0.0.1")
	env.addr = env.proc.waitFor(t, listeningLine)
	cc, err := grpc.NewClient(env.addr, grpc.WithTransportCredentials(credentials.NewTLS(certs.ClientConfig(t, false))))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if resp, err := demopb.NewDemoServiceClient(cc).Echo(ctx, &demopb.EchoRequest{Message: "tls"}); err != nil || resp.GetMessage() != "tls" {
		t.Fatalf("direct TLS call: %v, %v", resp, err)
	}
	runGoClient(t, env, env.h2cHost, false)
}

// TestCACommand: 'grpctap ca' makes the CA on first use and prints its
// path, PEM and how each kind of client trusts it; the next run reads the
// same CA.
func TestCACommand(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	first := mustRun(t, "ca")
	path := filepath.Join(os.Getenv("XDG_CONFIG_HOME"), "grpctap", "ca.pem")
	for _, want := range []string{"Made a new CA.", "certificate: " + path, "-----BEGIN CERTIFICATE-----",
		"SSL_CERT_FILE=" + path, "NODE_EXTRA_CA_CERTS=" + path, "-cacert " + path, "keytool -importcert", "update-ca-certificates"} {
		if !strings.Contains(first, want) {
			t.Errorf("grpctap ca lacks %q:\n%s", want, first)
		}
	}
	second := mustRun(t, "ca")
	if strings.Contains(second, "Made a new CA") {
		t.Error("the second run made another CA")
	}
	pemOf := func(s string) string {
		i, j := strings.Index(s, "-----BEGIN"), strings.Index(s, "-----END CERTIFICATE-----")
		return s[i:j]
	}
	if pemOf(first) != pemOf(second) {
		t.Error("the second run printed another certificate")
	}
	if got := strings.TrimSpace(mustRun(t, "ca", "--path")); got != path {
		t.Errorf("ca --path = %q, want %q", got, path)
	}
}

// TestForwardWithAGivenCA: --ca-cert/--ca-key sign the intercepted TLS
// instead of grpctap's own CA: a client that trusts only the own one is
// refused.
func TestForwardWithAGivenCA(t *testing.T) {
	bin := stubserver.Grpcurl(t)
	mine := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", mine)
	mustRun(t, "ca")
	given := filepath.Join(mine, "grpctap")
	env := startForward(t, "--ca-cert", filepath.Join(given, "ca.pem"), "--ca-key", filepath.Join(given, "ca-key.pem"))
	ownCA := env.caFile // made by startForward's 'ca --path' in its own XDG_CONFIG_HOME
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	call := func(ca string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, bin, "-cacert", ca, "-d", `{"message":"given CA"}`, env.tlsHost, "grpctap.demo.v1.DemoService/Echo")
		cmd.Env = proxyEnv(env.addr)
		return cmd.CombinedOutput()
	}
	if out, err := call(filepath.Join(given, "ca.pem")); err != nil || !strings.Contains(string(out), "given CA") {
		t.Fatalf("grpcurl trusting the given CA: %v\n%s\nproxy log:\n%s", err, out, env.proc.errOut)
	}
	if out, err := call(ownCA); err == nil {
		t.Errorf("grpcurl trusting grpctap's own CA was served, want a refused certificate:\n%s", out)
	}
}
