package webbridge_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/grpctap/grpctap/decode"
	"github.com/grpctap/grpctap/internal/rawcodec"
	"github.com/grpctap/grpctap/internal/stubserver"
	"github.com/grpctap/grpctap/proxy"
	"github.com/grpctap/grpctap/webbridge"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// rawBackend starts a backend whose every method is handled by h.
func rawBackend(t testing.TB, h grpc.StreamHandler) string {
	t.Helper()
	return stubserver.Serve(t, grpc.NewServer(grpc.UnknownServiceHandler(h), grpc.ForceServerCodecV2(rawcodec.Codec{})))
}

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// bridge is a running proxy + gRPC-Web bridge.
type bridge struct {
	addr string // host:port
	url  string // http(s)://host:port
	obs  *recordingObserver
}

type bridgeConfig struct {
	opts      webbridge.Options
	tls       *tls.Config
	noSchemas bool           // startDemoBridge: no Schemas, every JSON call forwarded as is
	observer  proxy.Observer // startBridge: also sees every call (a real recorder)
}

// reflectionSchemas returns Schemas learned from backend by server
// reflection, through grpctap's decoder.
func reflectionSchemas(t testing.TB, backend string) webbridge.Schemas {
	t.Helper()
	dec := decode.New(decode.WithDialer(func(addr string) (grpc.ClientConnInterface, error) {
		return grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}))
	t.Cleanup(func() {
		if err := dec.Close(); err != nil {
			t.Errorf("close decoder: %v", err)
		}
	})
	return webbridge.DecoderSchemas(dec, func(string) (string, bool) { return backend, true })
}

// startBridge starts a proxy to backend and a bridge in front of it, both on
// loopback, stopped when the test ends.
func startBridge(t testing.TB, backend string, cfg bridgeConfig) *bridge {
	t.Helper()
	obs := &recordingObserver{}
	var seen proxy.Observer = obs
	if cfg.observer != nil {
		seen = proxy.Tee(obs, cfg.observer)
	}
	p, err := proxy.New(proxy.Options{Backend: backend, Observer: seen, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	srv := p.NewServer()
	h, err := webbridge.New(srv, cfg.opts)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	hs := webbridge.NewHTTPServer(h, cfg.tls, nil)
	go func() { done <- webbridge.Serve(ctx, hs, lis, 2*time.Second) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		srv.Stop()
		_ = p.Close()
	})
	scheme := "http"
	if cfg.tls != nil {
		scheme = "https"
	}
	return &bridge{addr: lis.Addr().String(), url: scheme + "://" + lis.Addr().String(), obs: obs}
}

// recordingObserver keeps every call's start and end.
type recordingObserver struct {
	mu    sync.Mutex
	calls []*recordedCall
}

type recordedCall struct {
	mu    sync.Mutex
	start *proxy.CallStart
	msgs  []*proxy.Message
	end   *proxy.CallEnd
}

func (o *recordingObserver) StartCall(s *proxy.CallStart) proxy.CallObserver {
	c := &recordedCall{start: s}
	o.mu.Lock()
	o.calls = append(o.calls, c)
	o.mu.Unlock()
	return c
}

func (o *recordingObserver) snapshot() []*recordedCall {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]*recordedCall(nil), o.calls...)
}

func (c *recordedCall) ResponseHeader(*proxy.Header) {}
func (c *recordedCall) Message(m *proxy.Message) {
	m.Bytes() // keeps a copy: the proxy's buffers are valid only until now
	c.mu.Lock()
	c.msgs = append(c.msgs, m)
	c.mu.Unlock()
}
func (c *recordedCall) EndCall(e *proxy.CallEnd) {
	c.mu.Lock()
	c.end = e
	c.mu.Unlock()
}

// Clients for each HTTP version.
func h1Client(tlsCfg *tls.Config) *http.Client {
	tr := &http.Transport{TLSClientConfig: tlsCfg, DisableKeepAlives: false}
	p := new(http.Protocols)
	p.SetHTTP1(true)
	tr.Protocols = p
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

func h2Client(tlsCfg *tls.Config) *http.Client {
	tr := &http.Transport{TLSClientConfig: tlsCfg}
	p := new(http.Protocols)
	if tlsCfg == nil {
		p.SetUnencryptedHTTP2(true)
	} else {
		p.SetHTTP2(true)
	}
	tr.Protocols = p
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

func closeClient(c *http.Client) { c.Transport.(*http.Transport).CloseIdleConnections() }

// dataFrame builds one gRPC-Web data frame.
func dataFrame(msg []byte) []byte {
	out := make([]byte, 5+len(msg))
	binary.BigEndian.PutUint32(out[1:5], uint32(len(msg)))
	copy(out[5:], msg)
	return out
}

// webFrame is one decoded gRPC-Web frame.
type webFrame struct {
	trailer bool
	data    []byte
}

// frameReader reads gRPC-Web frames from a response body, decoding base64
// (possibly in several padded pieces) when text is set.
type frameReader struct {
	r *bufio.Reader
}

func newFrameReader(body io.Reader, text bool) *frameReader {
	if text {
		body = &paddedBase64Reader{r: bufio.NewReader(body)}
	}
	return &frameReader{r: bufio.NewReader(body)}
}

func (f *frameReader) next() (*webFrame, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(f.r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	data := make([]byte, n)
	if _, err := io.ReadFull(f.r, data); err != nil {
		return nil, fmt.Errorf("frame body: %w", err)
	}
	return &webFrame{trailer: hdr[0]&0x80 != 0, data: data}, nil
}

// all reads every frame; it returns the data messages and the trailer.
func (f *frameReader) all() (msgs [][]byte, trailer http.Header, err error) {
	for {
		fr, err := f.next()
		if err == io.EOF {
			return msgs, trailer, nil
		}
		if err != nil {
			return msgs, trailer, err
		}
		if fr.trailer {
			trailer = parseTrailer(fr.data)
			continue
		}
		msgs = append(msgs, fr.data)
	}
}

func parseTrailer(b []byte) http.Header {
	h := http.Header{}
	for _, line := range strings.Split(string(b), "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			h.Add(strings.TrimSpace(k), strings.TrimSpace(v))
		}
	}
	return h
}

// paddedBase64Reader decodes base64 made of padded pieces laid end to end,
// as gRPC-Web text responses are (one piece per flush).
type paddedBase64Reader struct {
	r   *bufio.Reader
	out bytes.Buffer
}

func (p *paddedBase64Reader) Read(b []byte) (int, error) {
	for p.out.Len() == 0 {
		var quad [4]byte
		if _, err := io.ReadFull(p.r, quad[:]); err != nil {
			if err == io.ErrUnexpectedEOF {
				return 0, fmt.Errorf("base64 text not a multiple of 4")
			}
			return 0, err
		}
		dec, err := base64.StdEncoding.DecodeString(string(quad[:]))
		if err != nil {
			return 0, err
		}
		p.out.Write(dec)
	}
	return p.out.Read(b)
}

// post sends one gRPC-Web request with body and returns the response.
func post(t testing.TB, c *http.Client, url, contentType string, body io.Reader, hdr http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("X-Grpc-Web", "1")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	return resp
}

// grpcStatus returns the call's grpc-status from the trailer frame, or from
// the headers of a trailers-only response.
func grpcStatus(resp *http.Response, trailer http.Header) string {
	if s := trailer.Get("grpc-status"); s != "" {
		return s
	}
	return resp.Header.Get("Grpc-Status")
}
