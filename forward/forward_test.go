package forward

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/grpctap/grpctap/internal/rawcodec"
	"github.com/grpctap/grpctap/internal/stubserver"
	"github.com/grpctap/grpctap/internal/testcert"
	"github.com/grpctap/grpctap/proxy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestCAIsMadeOnceAndPrivately: the first use makes an ECDSA P-256 CA of
// about ten years with a key only its owner can read; processes (here
// goroutines) that start at once all get that one CA, and a later start
// reads it.
func TestCAIsMadeOnceAndPrivately(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "grpctap")
	var wg sync.WaitGroup
	pems := make([][]byte, 8)
	errs := make([]error, 8)
	for i := range pems {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ca, err := LoadOrCreateCA(dir)
			errs[i] = err
			if err == nil {
				pems[i] = ca.PEM()
			}
		}()
	}
	wg.Wait()
	for i := range pems {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if !bytes.Equal(pems[i], pems[0]) {
			t.Fatalf("two CAs made at once: %d differs from 0", i)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, CAKeyName)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("CA key: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("CA directory mode %v, want 0700", fi.Mode().Perm())
	}
	ca, err := LoadOrCreateCA(dir)
	if err != nil || ca.Created || !bytes.Equal(ca.PEM(), pems[0]) {
		t.Fatalf("second start: created %v, err %v, same %v", ca != nil && ca.Created, err, ca != nil && bytes.Equal(ca.PEM(), pems[0]))
	}
	c := ca.Certificate()
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() || !c.IsCA {
		t.Errorf("CA key %T, IsCA %v; want ECDSA P-256 CA", c.PublicKey, c.IsCA)
	}
	if life := c.NotAfter.Sub(c.NotBefore); life < 9*365*24*time.Hour || life > 11*365*24*time.Hour {
		t.Errorf("CA valid for %v, want about ten years", life)
	}
}

// TestLeavesAreShortLivedCachedAndShared: a leaf verifies against the CA
// for its name (DNS or IP), lives LeafLifetime, is made once for many
// concurrent handshakes, and is made anew near its end.
func TestLeavesAreShortLivedCachedAndShared(t *testing.T) {
	ca, err := LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Certificate())
	var wg sync.WaitGroup
	leaves := make([]any, 32)
	for i := range leaves {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := ca.Leaf("API.Example.com.")
			if err != nil {
				t.Error(err)
				return
			}
			leaves[i] = c
		}()
	}
	wg.Wait()
	for i := range leaves {
		if leaves[i] != leaves[0] {
			t.Fatalf("concurrent handshakes made more than one certificate (%d)", i)
		}
	}
	leaf, _ := ca.Leaf("api.example.com")
	if _, err := leaf.Leaf.Verify(x509.VerifyOptions{DNSName: "api.example.com", Roots: roots}); err != nil {
		t.Errorf("leaf does not verify: %v", err)
	}
	if life := leaf.Leaf.NotAfter.Sub(leaf.Leaf.NotBefore); life > LeafLifetime+10*time.Minute {
		t.Errorf("leaf valid for %v, want about %v", life, LeafLifetime)
	}
	ipLeaf, err := ca.Leaf("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ipLeaf.Leaf.Verify(x509.VerifyOptions{DNSName: "127.0.0.1", Roots: roots}); err != nil {
		t.Errorf("IP leaf does not verify: %v", err)
	}
	ca.now = func() time.Time { return time.Now().Add(LeafLifetime - leafRenew/2) }
	if renewed, _ := ca.Leaf("api.example.com"); renewed == leaf {
		t.Error("a leaf near its end was not renewed")
	}
}

func TestLoadCARefusesWhatIsNotACA(t *testing.T) {
	certs := testcert.New(t)
	if _, err := LoadCA(certs.ServerCertFile, certs.ServerKeyFile); err == nil || !strings.Contains(err.Error(), "not a CA") {
		t.Errorf("server certificate as CA: %v", err)
	}
	if _, err := LoadCA(filepath.Join(t.TempDir(), "none.pem"), "none-key.pem"); err == nil {
		t.Error("missing files loaded")
	}
}

func TestResolve(t *testing.T) {
	r := Resolve{}
	for _, s := range []string{"backend.test=127.0.0.1", "Other.Test=10.0.0.2:9000", "v6.test=[::1]", "port.test:443=localhost:8443", "name.test=build.local"} {
		if err := r.Parse(s); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct{ host, port, want string }{
		{"backend.test", "443", "127.0.0.1:443"},
		{"BACKEND.test.", "9", "127.0.0.1:9"},
		{"other.test", "443", "10.0.0.2:9000"},
		{"v6.test", "50051", "[::1]:50051"},
		{"port.test", "443", "localhost:8443"},
		{"port.test", "80", "port.test:80"},
		{"name.test", "1", "build.local:1"},
		{"unmapped.test", "443", "unmapped.test:443"},
	} {
		if got := r.Addr(c.host, c.port); got != c.want {
			t.Errorf("Addr(%s, %s) = %s, want %s", c.host, c.port, got, c.want)
		}
	}
	for _, bad := range []string{"backend.test", "=1.2.3.4", "a=", "a=1.2.3.4:99999", "backend.test=10.0.0.1"} {
		if err := r.Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

func TestPortsAllowGlobs(t *testing.T) {
	ps, err := ParsePorts("443, 8000-8100")
	if err != nil {
		t.Fatal(err)
	}
	for port, want := range map[int]bool{443: true, 8000: true, 8100: true, 8101: false, 80: false} {
		if ps.Allows(port) != want {
			t.Errorf("port %d allowed %v", port, !want)
		}
	}
	if all, _ := ParsePorts("any"); !all.Allows(1) || all.String() != "any" {
		t.Error("any")
	}
	for _, bad := range []string{"0", "70000", "9-1", "https", "1,,2"} {
		if _, err := ParsePorts(bad); err == nil {
			t.Errorf("ParsePorts(%q) accepted", bad)
		}
	}
	if p, err := ParseAllow("10.1.2.3/8"); err != nil || p.String() != "10.0.0.0/8" {
		t.Errorf("ParseAllow: %v %v", p, err)
	}
	if p, err := ParseAllow("192.168.1.5"); err != nil || p.Bits() != 32 {
		t.Errorf("ParseAllow single: %v %v", p, err)
	}
	if _, err := ParseAllow("10.0.0.0/33"); err == nil {
		t.Error("bad CIDR accepted")
	}
	if CheckGlob("[x") == nil || CheckGlob("*.example.com") != nil {
		t.Error("CheckGlob")
	}
	if !matchHost([]string{"*.Example.com"}, "api.example.COM.") || matchHost([]string{"*.example.com"}, "example.com") {
		t.Error("matchHost")
	}
}

// listen starts a Listener on loopback whose Accept results arrive on the
// channel returned.
func listen(t *testing.T, opts Options) (*Listener, <-chan net.Conn) {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if opts.Logger == nil {
		opts.Logger = quietLog()
	}
	l := Listen(inner, opts)
	got := make(chan net.Conn, 4)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			got <- c
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		<-done
		close(got)
		for c := range got {
			_ = c.Close()
		}
	})
	return l, got
}

func dialRaw(t *testing.T, l *Listener, first string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if first != "" {
		if _, err := io.WriteString(c, first); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func accepted(t *testing.T, got <-chan net.Conn) net.Conn {
	t.Helper()
	select {
	case c := <-got:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("nothing accepted within 5s")
		return nil
	}
}

// readN reads n bytes from c.
func readN(t *testing.T, c net.Conn, n int) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestListenerTellsConnectionsApart: direct HTTP/2 passes as it came (the
// preface read again), even while another client has sent nothing yet;
// CONNECT then the HTTP/2 preface becomes a tunnel whose Upstream names the
// target and the address --resolve maps it to; any other HTTP/1 request
// is answered 405.
func TestListenerTellsConnectionsApart(t *testing.T) {
	r := Resolve{}
	if err := r.Parse("svc.test=127.0.0.9"); err != nil {
		t.Fatal(err)
	}
	l, got := listen(t, Options{Resolve: r})

	dialRaw(t, l, "") // silent: must hold up nobody
	dialRaw(t, l, h2Preface+"rest")
	c := accepted(t, got)
	if _, ok := c.(*tunnelConn); ok {
		t.Fatal("direct connection handed on as a tunnel")
	}
	if s := readN(t, c, len(h2Preface)+4); s != h2Preface+"rest" {
		t.Errorf("direct connection reads %q", s)
	}

	client := dialRaw(t, l, "CONNECT svc.test:7443 HTTP/1.1\r\nHost: svc.test:7443\r\n\r\n"+h2Preface)
	tc := accepted(t, got)
	tun, ok := tc.(*tunnelConn)
	if !ok {
		t.Fatalf("CONNECT with h2c handed on as %T", tc)
	}
	want := proxy.Upstream{Target: "svc.test:7443", Addr: "127.0.0.9:7443"}
	if tun.up.Target != want.Target || tun.up.Addr != want.Addr || tun.up.TLS {
		t.Errorf("upstream %+v, want %+v", *tun.up, want)
	}
	resp, err := http.ReadResponse(bufio.NewReader(client), &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT answer: %v %v", resp, err)
	}
	if s := readN(t, tc, len(h2Preface)); s != h2Preface {
		t.Errorf("tunnel reads %q", s)
	}

	get := dialRaw(t, l, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if code, body := refusal(t, get, http.MethodGet); code != http.StatusMethodNotAllowed || !strings.Contains(body, "not GET") {
		t.Errorf("GET: %d %q", code, body)
	}
}

// refusal reads the listener's answer other than 200 to a request of
// method sent on c: its status code and body.
func refusal(t *testing.T, c net.Conn, method string) (int, string) {
	t.Helper()
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestListenerCloseEndsEverything: Close returns while clients are
// mid-sniff and in blind tunnels, and leaves no goroutine behind
// (goleak).
func TestListenerCloseEndsEverything(t *testing.T) {
	echo := echoServer(t)
	l, _ := listen(t, Options{})
	dialRaw(t, l, "CONN") // mid-request
	blind := dialRaw(t, l, "CONNECT "+echo+" HTTP/1.1\r\n\r\nhello")
	br := bufio.NewReader(blind)
	if resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect}); err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	b := make([]byte, 5)
	if _, err := io.ReadFull(br, b); err != nil || string(b) != "hello" {
		t.Fatalf("blind tunnel echoed %q, %v", b, err)
	}
	done := make(chan error, 1)
	go func() { done <- l.Close() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return within 5s")
	}
	if _, err := blind.Read(b); err == nil {
		t.Error("blind tunnel still open after Close")
	}
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// echoServer echoes whatever is sent to it, for blind tunnels.
func echoServer(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = lis.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); _, _ = io.Copy(c, c); _ = c.Close() }()
		}
	}()
	return lis.Addr().String()
}

// TestNoInterceptIsBlind: a host matching NoIntercept gets a blind tunnel
// even for HTTP/2 (the server sees the client's bytes as they are), and
// one that cannot be reached gets 502 instead of 200.
func TestNoInterceptIsBlind(t *testing.T) {
	echo := echoServer(t)
	r := Resolve{}
	if err := r.Parse("echo.blind.test=" + echo); err != nil {
		t.Fatal(err)
	}
	if err := r.Parse("dead.blind.test=127.0.0.1:1"); err != nil {
		t.Fatal(err)
	}
	l, got := listen(t, Options{Resolve: r, NoIntercept: []string{"*.BLIND.test"}})
	c := dialRaw(t, l, "CONNECT echo.blind.test:443 HTTP/1.1\r\n\r\n"+h2Preface)
	br := bufio.NewReader(c)
	if resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect}); err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	b := make([]byte, len(h2Preface))
	if _, err := io.ReadFull(br, b); err != nil || string(b) != h2Preface {
		t.Fatalf("excluded host's tunnel echoed %q, %v", b, err)
	}
	select {
	case c := <-got:
		t.Fatalf("an excluded host's tunnel was handed to the server: %T", c)
	default:
	}
	dead := dialRaw(t, l, "CONNECT dead.blind.test:443 HTTP/1.1\r\n\r\n")
	if code, body := refusal(t, dead, http.MethodConnect); code != http.StatusBadGateway || !strings.Contains(body, "cannot reach 127.0.0.1:1") {
		t.Errorf("unreachable excluded host: %d %q", code, body)
	}
}

// TestProxyForwardsTunnelCallsToTheirTarget: behind a Listener and its
// Credentials, a call that came through CONNECT goes to the CONNECT
// target (mapped by Resolve; the name itself resolves nowhere), not to
// the proxy's default backend, and observers see it with that target as
// backend and the grpctap-forward label; afterwards a local call
// (the composer's) to that recorded backend reaches it the same way.
func TestProxyForwardsTunnelCallsToTheirTarget(t *testing.T) {
	target, targetCalls := stubserver.CountedRawEcho(t)
	other, otherCalls := stubserver.CountedRawEcho(t)
	_, port, _ := net.SplitHostPort(target)
	r := Resolve{}
	if err := r.Parse("svc.invalid=127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	obs := &startLog{}
	p, err := proxy.New(proxy.Options{Backend: other, Observer: obs, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := Listen(inner, Options{Resolve: r, Logger: quietLog()})
	srv := p.NewServer(grpc.Creds(Credentials(nil)))
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(l) }()
	defer func() { srv.Stop(); <-served }()

	// A client whose dialler sends CONNECT first, as grpc-go's proxy
	// support does (the tests in cmd/grpctap use its HTTPS_PROXY itself).
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", l.Addr().String())
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", addr, addr)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
		if err != nil || resp.StatusCode != 200 || br.Buffered() > 0 {
			_ = c.Close()
			return nil, fmt.Errorf("CONNECT: %v %v", resp, err)
		}
		return c, nil
	}
	name := "svc.invalid:" + port
	cc, err := grpc.NewClient("passthrough:///"+name, grpc.WithContextDialer(dial),
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawcodec.Codec{})))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	in, out := []byte("through the tunnel"), []byte(nil)
	if err := cc.Invoke(ctx, "/t.S/Echo", &in, &out); err != nil || string(out) != string(in) {
		t.Fatalf("call through the tunnel: %q, %v", out, err)
	}
	if targetCalls.Load() != 1 || otherCalls.Load() != 0 {
		t.Fatalf("calls reached the target %d times, the default backend %d times", targetCalls.Load(), otherCalls.Load())
	}
	if s := obs.get(); len(s) != 1 || s[0].Backend != name || s[0].Header.Get(proxy.HeaderForward)[0] != "h2c" {
		t.Fatalf("observed %+v", s)
	}

	lc := p.Open(ctx, proxy.LocalOptions{Method: "/t.S/Echo", Backend: name})
	if err := lc.Send([]byte("composer")); err != nil {
		t.Fatal(err)
	}
	lc.CloseSend()
	if b, err := lc.Recv(); err != nil || string(b) != "composer" {
		t.Fatalf("local call to %s: %q, %v", name, b, err)
	}
	<-lc.Done()
	if targetCalls.Load() != 2 {
		t.Errorf("the local call did not reach the forward target (%d calls)", targetCalls.Load())
	}
}

// startLog keeps the CallStarts it sees.
type startLog struct {
	mu     sync.Mutex
	starts []proxy.CallStart
}

func (o *startLog) StartCall(s *proxy.CallStart) proxy.CallObserver {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(s.Header.Get(proxy.HeaderForward)) > 0 {
		o.starts = append(o.starts, *s)
	}
	return nil
}

func (o *startLog) get() []proxy.CallStart {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]proxy.CallStart(nil), o.starts...)
}
