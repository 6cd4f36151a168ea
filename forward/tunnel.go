package forward

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/grpctap/grpctap/proxy"
)

// h2Preface is how every HTTP/2 connection starts (RFC 9113 §3.4).
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// tunnel is one accepted CONNECT: the client's connection, after grpctap
// answered 200, and where it asked to go.
type tunnel struct {
	l      *Listener
	client net.Conn
	target string // host:port as the client asked
	host   string
	port   string
	addr   string // host:port to dial, after Resolve
	sniff  *sniffer
}

// serve looks at what the client sends through the tunnel: TLS offering
// h2 and the HTTP/2 preface are intercepted, anything else is copied blind.
func (t *tunnel) serve() {
	if len(t.sniff.buf) == 0 {
		if err := t.sniff.more(); err != nil {
			_ = t.client.Close()
			return
		}
	}
	if t.sniff.buf[0] == 0x16 { // a TLS handshake record
		t.serveTLS()
		return
	}
	isH2, err := t.sniff.startsWith(h2Preface)
	switch {
	case err != nil:
		_ = t.client.Close()
	case isH2:
		t.intercept(t.sniff.replay(), &proxy.Upstream{Target: t.target, Addr: t.addr,
			CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity}})
	default:
		t.blind("neither TLS nor HTTP/2")
	}
}

// serveTLS intercepts a TLS tunnel whose client offers h2, answering with a
// certificate from grpctap's CA for the name it asked for.
func (t *tunnel) serveTLS() {
	hello, err := t.sniff.clientHello()
	if err != nil {
		if hello.readErr {
			_ = t.client.Close()
			return
		}
		t.blind("TLS handshake unreadable: " + err.Error())
		return
	}
	if !slices.Contains(hello.protos, "h2") {
		t.blind("TLS without h2 in ALPN")
		return
	}
	ca, err := t.l.certificateAuthority()
	if err != nil {
		t.l.log.Warn("forward proxy: cannot intercept TLS: no CA", "target", t.target, "err", err)
		t.blind("no CA to intercept TLS with")
		return
	}
	name := hello.serverName
	if name == "" {
		name = t.host
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return ca.Leaf(name)
		},
	}
	tc := tls.Server(t.sniff.replay(), cfg)
	_ = t.client.SetDeadline(time.Now().Add(t.l.opts.SniffTimeout))
	if err := tc.Handshake(); err != nil {
		// Most often: the client does not trust grpctap's CA.
		t.l.log.Warn("forward proxy: TLS handshake with the client failed (does it trust grpctap's CA? see 'grpctap ca')",
			"client", t.client.RemoteAddr().String(), "target", t.target, "name", name, "err", err)
		_ = t.client.Close()
		return
	}
	t.intercept(tc, &proxy.Upstream{Target: t.target, Addr: t.addr, TLS: true, ServerName: hello.serverName,
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}})
}

// intercept hands the tunnel's client side to the gRPC server.
func (t *tunnel) intercept(c net.Conn, up *proxy.Upstream) {
	_ = t.client.SetDeadline(time.Time{})
	t.l.log.Debug("forward proxy: intercepting", "client", t.client.RemoteAddr().String(), "target", t.target, "addr", t.addr, "tls", up.TLS)
	t.l.disown(t.client)
	t.l.handOff(&tunnelConn{Conn: c, up: up})
}

// blind copies the tunnel's bytes both ways, unrecorded.
func (t *tunnel) blind(reason string) {
	up, err := t.dial()
	if err != nil {
		_ = t.client.Close()
		return
	}
	t.pipe(up, reason)
}

// blindNow dials first and answers CONNECT after, for a tunnel that is
// never intercepted: a server that cannot be reached is a 502.
func (t *tunnel) blindNow(reason string) {
	up, err := t.dial()
	if err != nil {
		refuse(t.client, http.StatusBadGateway, fmt.Sprintf("grpctap: cannot reach %s: %v", t.addr, err))
		return
	}
	if _, err := io.WriteString(t.client, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		_ = up.Close()
		_ = t.client.Close()
		return
	}
	t.pipe(up, reason)
}

// dial connects to the server of a blind tunnel; a failure is logged.
func (t *tunnel) dial() (net.Conn, error) {
	d := net.Dialer{Timeout: t.l.opts.DialTimeout}
	c, err := d.Dial("tcp", t.addr)
	if err != nil {
		t.l.log.Warn("forward proxy: blind tunnel: cannot reach the server", "target", t.target, "addr", t.addr, "err", err)
	}
	return c, err
}

// pipe copies between the client (what was sniffed first) and up until
// both sides are done; a side that ends cleanly is half-closed on the
// other, a failure closes both.
func (t *tunnel) pipe(up net.Conn, reason string) {
	_ = t.client.SetDeadline(time.Time{})
	start := time.Now()
	fail := func() { _ = up.Close(); _ = t.client.Close() }
	sentc := make(chan int64, 1)
	go func() {
		n, err := io.Copy(up, t.sniff.replay())
		if err != nil || closeWrite(up) != nil {
			fail()
		}
		sentc <- n
	}()
	got, err := io.Copy(t.client, up)
	if err != nil || closeWrite(t.client) != nil {
		fail()
	}
	sent := <-sentc
	fail()
	t.l.log.Info("forward proxy: blind tunnel closed", "client", t.client.RemoteAddr().String(), "target", t.target,
		"addr", t.addr, "why_blind", reason, "sent", sent, "received", got, "duration", time.Since(start).Round(time.Millisecond))
}

func closeWrite(c net.Conn) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}

// hello is what a TLS ClientHello asked for.
type hello struct {
	serverName string
	protos     []string
	readErr    bool // the connection failed, not the parse
}

var errSniffed = errors.New("client hello read")

// clientHello reads the client's TLS ClientHello with crypto/tls itself
// (a server handshake stopped as soon as the hello is parsed) and keeps
// every byte read, for the real handshake or a blind tunnel to read again.
func (s *sniffer) clientHello() (hello, error) {
	var h hello
	rc := &recordingConn{Conn: s.replay()}
	cfg := &tls.Config{GetConfigForClient: func(ch *tls.ClientHelloInfo) (*tls.Config, error) {
		h.serverName = ch.ServerName
		h.protos = slices.Clone(ch.SupportedProtos)
		return nil, errSniffed
	}}
	err := tls.Server(rc, cfg).Handshake()
	s.buf = rc.got
	if errors.Is(err, errSniffed) {
		return h, nil
	}
	h.readErr = rc.readErr != nil
	return h, err
}

// recordingConn keeps what is read and drops what is written (the alert
// crypto/tls sends when clientHello stops it).
type recordingConn struct {
	net.Conn
	got     []byte
	readErr error
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.got = append(c.got, p[:n]...)
	if err != nil {
		c.readErr = err
	}
	return n, err
}

func (c *recordingConn) Write(p []byte) (int, error) { return len(p), nil }
func (c *recordingConn) Close() error                { return nil }
