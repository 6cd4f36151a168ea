package ui

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/grpctap/grpctap/internal/hostcheck"
)

// IsLoopback reports whether a listen address ("127.0.0.1:7070",
// "localhost:0", "[::1]:80") binds only to loopback. An empty host (":7070")
// binds every interface and is not loopback.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	return hostcheck.Loopback(host)
}

// NewToken returns a random token for Options.Token.
func NewToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Server is a running inspector: an HTTP server over a UI.
type Server struct {
	UI *UI
	// URL is where to open it (https when Options.TLS is set), with
	// ?token= when one is required: Options.Token, else
	// Options.ReadOnlyToken. On an address of every interface (0.0.0.0,
	// ::) it names 127.0.0.1, which this machine's browser reaches; Addr
	// says where it really listens.
	URL string
	// ReadOnlyURL is URL with Options.ReadOnlyToken, the link to hand to
	// those who may only read; "" without a read-only token.
	ReadOnlyURL string
	Addr        net.Addr
	srv         *http.Server
	errc        chan error
}

// Start listens on addr and serves u until Shutdown, over TLS when
// Options.TLS is set.
func Start(addr string, u *UI) (*Server, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("ui listen: %w", err)
	}
	return Serve(lis, u), nil
}

// Serve serves u on lis until Shutdown, which closes lis.
func Serve(lis net.Listener, u *UI) *Server {
	la := lis.Addr().(*net.TCPAddr)
	host := la.IP.String()
	if la.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	link := func(token string) string {
		l := url.URL{Scheme: "http", Host: net.JoinHostPort(host, fmt.Sprint(la.Port)), Path: "/"}
		if u.opts.TLS != nil {
			l.Scheme = "https"
		}
		if token != "" {
			l.RawQuery = "token=" + url.QueryEscape(token)
		}
		return l.String()
	}
	s := &Server{UI: u, Addr: la, errc: make(chan error, 1),
		srv: &http.Server{Handler: u, ReadHeaderTimeout: 10 * time.Second, ErrorLog: nil}}
	token := u.opts.Token
	if token == "" {
		token = u.opts.ReadOnlyToken
	}
	s.URL = link(token)
	if u.opts.ReadOnlyToken != "" {
		s.ReadOnlyURL = link(u.opts.ReadOnlyToken)
	}
	if u.opts.TLS == nil {
		go func() { s.errc <- s.srv.Serve(lis) }()
		return s
	}
	// ServeTLS adds h2 and http/1.1 to the clone's NextProtos.
	s.srv.TLSConfig = u.opts.TLS.Clone()
	go func() { s.errc <- s.srv.ServeTLS(lis, "", "") }()
	return s
}

// Shutdown ends live feeds, stops accepting, waits for requests in flight
// until ctx ends (then closes them) and closes the UI.
func (s *Server) Shutdown(ctx context.Context) error {
	s.UI.closeOnce.Do(func() { close(s.UI.closing) })
	err := s.srv.Shutdown(ctx)
	if err != nil {
		err = errors.Join(err, s.srv.Close())
	}
	if serr := <-s.errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return errors.Join(err, s.UI.Close(ctx))
}
