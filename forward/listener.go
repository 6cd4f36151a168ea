package forward

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/grpctap/grpctap/proxy"
)

// Defaults of Options.
const (
	DefaultSniffTimeout = 10 * time.Second
	DefaultDialTimeout  = 10 * time.Second
)

// maxConnectRequest bounds a CONNECT request line and its headers.
const maxConnectRequest = 64 << 10

// Options configure a Listener. The zero value of each field is its default.
type Options struct {
	// Allow lists the networks CONNECT is accepted from besides loopback.
	// Default: loopback clients only. Direct gRPC is accepted from anyone
	// who can reach the listener, as without forwarding.
	Allow []netip.Prefix
	// Ports are the ports CONNECT may ask for; others are refused with
	// 403. Default: any.
	Ports Ports
	// Resolve maps CONNECT hosts to other addresses. Default: none; the
	// host is dialled (and resolved) as asked.
	Resolve Resolve
	// NoIntercept lists host patterns (path.Match syntax, "*.example.com")
	// whose tunnels are never intercepted: their bytes are copied blind.
	// Default: none.
	NoIntercept []string
	// CA returns the CA that signs the certificates of intercepted TLS
	// tunnels; it is called at the first one and its error (logged) makes
	// that tunnel fail. Default: none, and TLS tunnels are copied blind.
	CA func() (*CA, error)
	// SniffTimeout bounds the time from accepting a connection (and from
	// answering CONNECT) to knowing what the client speaks, and TLS
	// handshakes with it. Default: DefaultSniffTimeout.
	SniffTimeout time.Duration
	// DialTimeout bounds dialling the server of a blind tunnel. Default:
	// DefaultDialTimeout.
	DialTimeout time.Duration
	// Logger gets a line per refused CONNECT and per blind tunnel, and a
	// debug line per intercepted one. Default: slog.Default().
	Logger *slog.Logger
}

// Listener is the proxy's listener with forward-proxy mode: it accepts
// direct gRPC (h2c, or TLS for the server's own credentials) as before,
// and HTTP/1.1 CONNECT. Accept returns direct connections as they came,
// and each intercepted tunnel as a connection carrying its proxy.Upstream,
// which Credentials gives grpc-go. Blind tunnels it copies itself.
//
// Every connection is read on a goroutine of its own until its kind is
// known (bounded by SniffTimeout), so a slow client holds up nobody.
type Listener struct {
	inner net.Listener
	opts  Options
	log   *slog.Logger

	conns chan net.Conn
	errs  chan error
	done  chan struct{}

	mu     sync.Mutex
	closed bool
	active map[net.Conn]struct{} // connections the listener still owns
	wg     sync.WaitGroup

	caOnce sync.Once
	ca     *CA
	caErr  error
}

// Listen wraps inner, which the Listener owns from now on: Close closes it.
func Listen(inner net.Listener, opts Options) *Listener {
	if opts.SniffTimeout <= 0 {
		opts.SniffTimeout = DefaultSniffTimeout
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = DefaultDialTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Resolve == nil {
		opts.Resolve = Resolve{}
	}
	l := &Listener{
		inner: inner, opts: opts, log: opts.Logger,
		conns: make(chan net.Conn), errs: make(chan error), done: make(chan struct{}),
		active: map[net.Conn]struct{}{},
	}
	l.wg.Add(1)
	go l.acceptLoop()
	return l
}

// Accept returns the next direct connection or intercepted tunnel.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case err := <-l.errs:
		return nil, err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Addr is the address of the inner listener.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

// Close stops accepting, closes the connections the listener still owns
// (being sniffed, blind tunnels) and waits for its goroutines. Connections
// Accept returned are their taker's.
func (l *Listener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.done)
	for c := range l.active {
		_ = c.Close()
	}
	l.mu.Unlock()
	err := l.inner.Close()
	l.wg.Wait()
	return err
}

func (l *Listener) acceptLoop() {
	defer l.wg.Done()
	for {
		c, err := l.inner.Accept()
		if err != nil {
			select {
			case l.errs <- err:
			case <-l.done:
				return
			}
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() {
				continue // the taker backs off, as grpc-go does
			}
			return
		}
		if !l.own(c) {
			_ = c.Close()
			return
		}
		go l.serve(c)
	}
}

// own tracks c as the listener's, with a goroutine to wait for; false
// once the listener is closed.
func (l *Listener) own(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.active[c] = struct{}{}
	l.wg.Add(1)
	return true
}

// disown ends the listener's hold on c (handed on, or closed).
func (l *Listener) disown(c net.Conn) {
	l.mu.Lock()
	delete(l.active, c)
	l.mu.Unlock()
}

// handOff gives c to Accept's caller; false (and c closed) when the
// listener closed first.
func (l *Listener) handOff(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		_ = c.Close()
		return false
	}
}

// serve finds out what a new connection speaks and deals with it.
func (l *Listener) serve(c net.Conn) {
	defer l.wg.Done()
	defer l.disown(c)
	_ = c.SetReadDeadline(time.Now().Add(l.opts.SniffTimeout))
	s := &sniffer{Conn: c}
	method, err := s.requestMethod()
	if err != nil {
		_ = c.Close()
		return
	}
	switch method {
	case "":
		// gRPC (the h2c preface, a TLS ClientHello) or not HTTP/1 at all:
		// the server's to serve or refuse.
		_ = c.SetReadDeadline(time.Time{})
		l.disown(c)
		l.handOff(s.replay())
	case http.MethodConnect:
		l.connect(c, s)
	default:
		refuse(c, http.StatusMethodNotAllowed, fmt.Sprintf(
			"grpctap: this port speaks gRPC (HTTP/2) and, as a forward proxy, HTTP CONNECT; not %s", method))
	}
}

// connect serves one CONNECT request.
func (l *Listener) connect(c net.Conn, s *sniffer) {
	pc := &prefixConn{Conn: c, pre: s.buf}
	br := bufio.NewReaderSize(io.LimitReader(pc, maxConnectRequest), 4096)
	req, err := http.ReadRequest(br)
	if err != nil {
		refuse(c, http.StatusBadRequest, "grpctap: malformed CONNECT request: "+err.Error())
		return
	}
	target := req.URL.Host
	host, port, err := net.SplitHostPort(target)
	if err != nil || host == "" || !validPort(port) {
		refuse(c, http.StatusBadRequest, fmt.Sprintf("grpctap: CONNECT %q: want host:port", req.RequestURI))
		return
	}
	if from, ok := l.allowed(c.RemoteAddr()); !ok {
		l.log.Warn("forward proxy: CONNECT refused: client not allowed", "client", from, "target", target)
		refuse(c, http.StatusForbidden, fmt.Sprintf(
			"grpctap: CONNECT from %s refused: the forward proxy accepts loopback clients only, unless started with --forward-allow CIDR", from))
		return
	}
	if n, _ := strconv.Atoi(port); !l.opts.Ports.Allows(n) {
		l.log.Warn("forward proxy: CONNECT refused: port not allowed", "client", c.RemoteAddr().String(), "target", target, "ports", l.opts.Ports.String())
		refuse(c, http.StatusForbidden, fmt.Sprintf(
			"grpctap: CONNECT to port %s refused: the forward proxy allows ports %s (--forward-ports)", port, l.opts.Ports))
		return
	}
	// Bytes the client sent after its request (it need not wait for the
	// answer) belong to the tunnel.
	rest, _ := br.Peek(br.Buffered())
	rest = append(bytes.Clone(rest), pc.pre...)
	t := &tunnel{l: l, client: c, target: target, host: host, port: port,
		addr: l.opts.Resolve.Addr(host, port), sniff: &sniffer{Conn: c, buf: rest}}
	if matchHost(l.opts.NoIntercept, host) {
		t.blindNow("host excluded from interception")
		return
	}
	if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		_ = c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(l.opts.SniffTimeout))
	t.serve()
}

// allowed reports whether CONNECT is accepted from a, and a as text.
func (l *Listener) allowed(a net.Addr) (string, bool) {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return a.String(), false
	}
	ip := ap.Addr().Unmap()
	if ip.IsLoopback() {
		return ip.String(), true
	}
	for _, p := range l.opts.Allow {
		if p.Contains(ip) {
			return ip.String(), true
		}
	}
	return ip.String(), false
}

// certificateAuthority returns the CA, made or loaded at the first call.
func (l *Listener) certificateAuthority() (*CA, error) {
	l.caOnce.Do(func() {
		if l.opts.CA == nil {
			l.caErr = errors.New("no CA configured")
			return
		}
		l.ca, l.caErr = l.opts.CA()
	})
	return l.ca, l.caErr
}

// refuse answers an HTTP/1.1 request with code and a one-line text body,
// and closes c.
func refuse(c net.Conn, code int, msg string) {
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s\n",
		code, http.StatusText(code), len(msg)+1, msg)
	_ = c.Close()
}

// sniffer reads the first bytes of a connection and keeps them, so that
// whoever serves the connection next reads them again (replay).
type sniffer struct {
	net.Conn
	buf []byte
}

// more reads what the client sent next (at least one byte) into buf.
func (s *sniffer) more() error {
	var b [4096]byte
	n, err := s.Conn.Read(b[:])
	s.buf = append(s.buf, b[:n]...)
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// requestMethod reads until it knows whether the connection starts with
// an HTTP/1 request line, and returns its method ("" when it does not).
// "PRI" (the HTTP/2 preface) is not an HTTP/1 method.
func (s *sniffer) requestMethod() (string, error) {
	const maxMethod = 16
	for {
		for i, b := range s.buf {
			switch {
			case b == ' ' && i > 0:
				if m := string(s.buf[:i]); m != "PRI" {
					return m, nil
				}
				return "", nil
			case b < 'A' || b > 'Z' || i >= maxMethod:
				return "", nil
			}
		}
		if err := s.more(); err != nil {
			return "", err
		}
	}
}

// startsWith reads until the connection's first bytes either begin with
// p or cannot.
func (s *sniffer) startsWith(p string) (bool, error) {
	for {
		n := min(len(s.buf), len(p))
		if string(s.buf[:n]) != p[:n] {
			return false, nil
		}
		if n == len(p) {
			return true, nil
		}
		if err := s.more(); err != nil {
			return false, err
		}
	}
}

// replay is the connection with the bytes read so far put back in front.
func (s *sniffer) replay() net.Conn {
	if len(s.buf) == 0 {
		return s.Conn
	}
	return &prefixConn{Conn: s.Conn, pre: s.buf}
}

// prefixConn reads pre before the rest of the connection.
type prefixConn struct {
	net.Conn
	pre []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// tunnelConn is an intercepted tunnel handed to the gRPC server: the
// client's side, decrypted, and where its calls go.
type tunnelConn struct {
	net.Conn
	up *proxy.Upstream
}
