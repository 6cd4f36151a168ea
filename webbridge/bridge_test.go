package webbridge_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/grpctap/grpctap/internal/rawcodec"
	"github.com/grpctap/grpctap/internal/stubserver"
	"github.com/grpctap/grpctap/proxy"
	"github.com/grpctap/grpctap/recorder"
	"github.com/grpctap/grpctap/store"
	"github.com/grpctap/grpctap/webbridge"
)

// echoHandler answers every request message with the same bytes and sends
// the incoming metadata keys starting with "x-" back as headers.
func echoHandler(_ any, ss grpc.ServerStream) error {
	md, _ := metadata.FromIncomingContext(ss.Context())
	out := metadata.MD{}
	for k, v := range md {
		if strings.HasPrefix(k, "x-") {
			out[k] = v
		}
	}
	if err := ss.SendHeader(out); err != nil {
		return err
	}
	for {
		var b []byte
		if err := ss.RecvMsg(&b); err != nil {
			if errors.Is(err, io.EOF) {
				ss.SetTrailer(metadata.Pairs("x-trailer", "done"))
				return nil
			}
			return err
		}
		if err := ss.SendMsg(&b); err != nil {
			return err
		}
	}
}

type variant struct {
	name        string
	client      func(*tls.Config) *http.Client
	contentType string
	text        bool
	protocol    string
}

var variants = []variant{
	{"h1/binary", h1Client, "application/grpc-web", false, proxy.ProtocolGRPCWeb},
	{"h1/proto", h1Client, "application/grpc-web+proto", false, proxy.ProtocolGRPCWeb},
	{"h1/json", h1Client, "application/grpc-web+json", false, proxy.ProtocolGRPCWeb},
	{"h1/text", h1Client, "application/grpc-web-text", true, proxy.ProtocolGRPCWebText},
	{"h1/text+proto", h1Client, "application/grpc-web-text+proto", true, proxy.ProtocolGRPCWebText},
	{"h2/binary", h2Client, "application/grpc-web", false, proxy.ProtocolGRPCWeb},
	{"h2/json", h2Client, "application/grpc-web+json", false, proxy.ProtocolGRPCWeb},
	{"h2/text", h2Client, "application/grpc-web-text", true, proxy.ProtocolGRPCWebText},
}

func encodeBody(v variant, frames ...[]byte) io.Reader {
	body := bytes.Join(frames, nil)
	if v.text {
		return strings.NewReader(base64.StdEncoding.EncodeToString(body))
	}
	return bytes.NewReader(body)
}

// TestUnary sends one message in every variant and checks the answer, the
// trailer frame, the response headers and the recorded protocol.
func TestUnary(t *testing.T) {
	b := startBridge(t, rawBackend(t, echoHandler), bridgeConfig{})
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			c := v.client(nil)
			defer closeClient(c)
			msg := []byte(`{"message":"hi ` + v.name + `"}`)
			resp := post(t, c, b.url+"/test.Echo/Say", v.contentType, encodeBody(v, dataFrame(msg)),
				http.Header{"X-Hello": {"world"}})
			if resp.StatusCode != 200 {
				t.Fatalf("HTTP %s", resp.Status)
			}
			if want := strings.Replace(v.contentType, "application/grpc-web", "application/grpc-web", 1); resp.Header.Get("Content-Type") != want {
				t.Errorf("content-type %q, want %q", resp.Header.Get("Content-Type"), want)
			}
			if got := resp.Header.Get("X-Hello"); got != "world" {
				t.Errorf("response header x-hello = %q", got)
			}
			wantMajor := 1
			if strings.HasPrefix(v.name, "h2") {
				wantMajor = 2
			}
			if resp.ProtoMajor != wantMajor {
				t.Errorf("served over %s", resp.Proto)
			}
			msgs, tr, err := newFrameReader(resp.Body, v.text).all()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([][]byte{msg}, msgs); diff != "" {
				t.Errorf("messages (-want +got):\n%s", diff)
			}
			if tr.Get("grpc-status") != "0" || tr.Get("x-trailer") != "done" {
				t.Errorf("trailer %v", tr)
			}
		})
	}
	calls := b.obs.snapshot()
	if len(calls) != len(variants) {
		t.Fatalf("%d calls recorded, want %d", len(calls), len(variants))
	}
	for i, c := range calls {
		if c.start.Protocol != variants[i].protocol {
			t.Errorf("call %d (%s): protocol %q, want %q", i, variants[i].name, c.start.Protocol, variants[i].protocol)
		}
		if c.start.ContentType != strings.Replace(variants[i].contentType, "-web-text", "", 1) &&
			c.start.ContentType != strings.Replace(variants[i].contentType, "-web", "", 1) {
			t.Errorf("call %d: content-type %q", i, c.start.ContentType)
		}
	}
}

// TestLargeMessage moves 1 MiB each way (past many proxies' 64 KiB buffers).
func TestLargeMessage(t *testing.T) {
	b := startBridge(t, rawBackend(t, echoHandler), bridgeConfig{})
	msg := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	for _, v := range []variant{variants[0], variants[3], variants[5], variants[7]} {
		t.Run(v.name, func(t *testing.T) {
			c := v.client(nil)
			defer closeClient(c)
			resp := post(t, c, b.url+"/test.Echo/Big", v.contentType, encodeBody(v, dataFrame(msg)), nil)
			msgs, tr, err := newFrameReader(resp.Body, v.text).all()
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) != 1 || !bytes.Equal(msgs[0], msg) || tr.Get("grpc-status") != "0" {
				t.Fatalf("got %d messages, trailer %v", len(msgs), tr)
			}
		})
	}
}

// TestServerStreamingIncremental checks that each message reaches the client
// before the backend sends the next, over HTTP/1.1 and HTTP/2, binary and text.
func TestServerStreamingIncremental(t *testing.T) {
	var mu sync.Mutex
	gates := map[string]chan struct{}{}
	gate := func(id string) chan struct{} {
		mu.Lock()
		defer mu.Unlock()
		if gates[id] == nil {
			gates[id] = make(chan struct{}, 1)
		}
		return gates[id]
	}
	backend := rawBackend(t, func(_ any, ss grpc.ServerStream) error {
		var id []byte
		if err := ss.RecvMsg(&id); err != nil {
			return err
		}
		g := gate(string(id))
		for i := 0; i < 3; i++ {
			m := []byte{byte('a' + i)}
			if err := ss.SendMsg(&m); err != nil {
				return err
			}
			if i < 2 {
				select {
				case <-g: // the client saw message i
				case <-time.After(5 * time.Second):
					return status.Error(codes.DeadlineExceeded, "client never saw the message: not flushed")
				}
			}
		}
		return nil
	})
	b := startBridge(t, backend, bridgeConfig{})
	for _, v := range []variant{variants[0], variants[3], variants[5], variants[7]} {
		t.Run(v.name, func(t *testing.T) {
			c := v.client(nil)
			defer closeClient(c)
			resp := post(t, c, b.url+"/test.Stream/Ticks", v.contentType, encodeBody(v, dataFrame([]byte(v.name))), nil)
			fr := newFrameReader(resp.Body, v.text)
			for i := 0; i < 3; i++ {
				f, err := fr.next()
				if err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				if f.trailer || string(f.data) != string(rune('a'+i)) {
					t.Fatalf("message %d: %+v", i, f)
				}
				gate(v.name) <- struct{}{}
			}
			_, tr, err := fr.all()
			if err != nil || tr.Get("grpc-status") != "0" {
				t.Fatalf("trailer %v, err %v", tr, err)
			}
		})
	}
}

// TestBidiOverHTTP2 sends a message, waits for its echo, then sends the
// next: full duplex over h2c and TLS.
func TestBidiOverHTTP2(t *testing.T) {
	backend := rawBackend(t, echoHandler)
	for _, useTLS := range []bool{false, true} {
		name := "h2c"
		var srvTLS, cliTLS *tls.Config
		if useTLS {
			name = "tls"
			srvTLS, cliTLS = testTLS(t)
		}
		t.Run(name, func(t *testing.T) {
			b := startBridge(t, backend, bridgeConfig{tls: srvTLS})
			c := h2Client(cliTLS)
			defer closeClient(c)
			pr, pw := io.Pipe()
			defer pw.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, b.url+"/test.Chat/Talk", pr)
			req.Header.Set("Content-Type", "application/grpc-web+proto")
			type result struct {
				resp *http.Response
				err  error
			}
			respc := make(chan result, 1)
			go func() {
				resp, err := c.Do(req)
				respc <- result{resp, err}
			}()
			if _, err := pw.Write(dataFrame([]byte("one"))); err != nil {
				t.Fatal(err)
			}
			r := <-respc
			if r.err != nil {
				t.Fatal(r.err)
			}
			defer r.resp.Body.Close()
			if r.resp.ProtoMajor != 2 {
				t.Fatalf("served over %s", r.resp.Proto)
			}
			fr := newFrameReader(r.resp.Body, false)
			for i, want := range []string{"one", "two", "three"} {
				if i > 0 {
					if _, err := pw.Write(dataFrame([]byte(want))); err != nil {
						t.Fatal(err)
					}
				}
				f, err := fr.next()
				if err != nil || string(f.data) != want {
					t.Fatalf("echo %d: %v %v", i, f, err)
				}
			}
			_ = pw.Close()
			_, tr, err := fr.all()
			if err != nil || tr.Get("grpc-status") != "0" {
				t.Fatalf("trailer %v, err %v", tr, err)
			}
		})
	}
}

// TestClientStreamingHTTP1 sends several messages in one HTTP/1.1 body.
func TestClientStreamingHTTP1(t *testing.T) {
	backend := rawBackend(t, func(_ any, ss grpc.ServerStream) error {
		var all []byte
		for {
			var b []byte
			if err := ss.RecvMsg(&b); err != nil {
				if errors.Is(err, io.EOF) {
					return ss.SendMsg(&all)
				}
				return err
			}
			all = append(all, b...)
		}
	})
	b := startBridge(t, backend, bridgeConfig{})
	c := h1Client(nil)
	defer closeClient(c)
	resp := post(t, c, b.url+"/test.Sum/Add", "application/grpc-web",
		bytes.NewReader(slices.Concat(dataFrame([]byte("a")), dataFrame([]byte("b")), dataFrame([]byte("c")))), nil)
	msgs, tr, err := newFrameReader(resp.Body, false).all()
	if err != nil || len(msgs) != 1 || string(msgs[0]) != "abc" || tr.Get("grpc-status") != "0" {
		t.Fatalf("messages %q trailer %v err %v", msgs, tr, err)
	}
}

// TestErrors: a backend failure before any message keeps the backend's
// response headers, whether the backend sent them on their own or in a
// trailers-only response, and the browser may read all of them.
func TestErrors(t *testing.T) {
	backend := rawBackend(t, func(_ any, ss grpc.ServerStream) error {
		method, _ := grpc.MethodFromServerStream(ss)
		var b []byte
		if err := ss.RecvMsg(&b); err != nil {
			return err
		}
		if err := ss.SetHeader(metadata.Pairs("x-resp-header", "h")); err != nil {
			return err
		}
		if strings.HasSuffix(method, "/HeadersFirst") {
			if err := ss.SendHeader(nil); err != nil {
				return err
			}
		}
		ss.SetTrailer(metadata.Pairs("x-resp-trailer", "t"))
		return status.Error(codes.NotFound, "no such thing: ünïcode")
	})
	const origin = "http://app.example:8080"
	b := startBridge(t, backend, bridgeConfig{opts: webbridge.Options{AllowedOrigins: []string{origin}}})
	for _, method := range []string{"TrailersOnly", "HeadersFirst"} {
		for _, v := range []variant{variants[0], variants[3], variants[5]} {
			t.Run(method+"/"+v.name, func(t *testing.T) {
				c := v.client(nil)
				defer closeClient(c)
				resp := post(t, c, b.url+"/test.Fail/"+method, v.contentType, encodeBody(v, dataFrame([]byte("x"))),
					http.Header{"Origin": {origin}})
				if resp.StatusCode != 200 {
					t.Fatalf("HTTP %s", resp.Status)
				}
				msgs, tr, err := newFrameReader(resp.Body, v.text).all()
				if err != nil || len(msgs) != 0 {
					t.Fatalf("messages %q err %v", msgs, err)
				}
				if got := grpcStatus(resp, tr); got != "5" {
					t.Errorf("grpc-status %q, want 5; headers %v trailer %v", got, resp.Header, tr)
				}
				// The response headers are the backend's, in the HTTP headers.
				if resp.Header.Get("X-Resp-Header") != "h" {
					t.Errorf("x-resp-header lost: headers %v", resp.Header)
				}
				trailerVal, trailerInHeaders := tr.Get("x-resp-trailer"), false
				if trailerVal == "" {
					trailerVal, trailerInHeaders = resp.Header.Get("X-Resp-Trailer"), true
				}
				if trailerVal != "t" {
					t.Errorf("x-resp-trailer lost: headers %v trailer %v", resp.Header, tr)
				}
				msg := tr.Get("grpc-message")
				if msg == "" {
					msg = resp.Header.Get("Grpc-Message")
				}
				if !strings.HasPrefix(msg, "no such thing") {
					t.Errorf("grpc-message %q", msg)
				}
				if resp.Header.Get("Access-Control-Allow-Origin") != origin {
					t.Errorf("allow-origin %q", resp.Header.Get("Access-Control-Allow-Origin"))
				}
				exposed := strings.ToLower(resp.Header.Get("Access-Control-Expose-Headers"))
				want := []string{"grpc-status", "grpc-message", "x-resp-header"}
				if trailerInHeaders {
					want = append(want, "x-resp-trailer")
				}
				for _, h := range want {
					if !slices.Contains(strings.Split(strings.ReplaceAll(exposed, " ", ""), ","), h) {
						t.Errorf("%s not exposed: %q", h, exposed)
					}
				}
			})
		}
	}
}

// TestBackendDown: the proxy's own failure is a trailers-only response
// whose status the browser may read.
func TestBackendDown(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := lis.Addr().String()
	lis.Close()
	const origin = "http://app.example"
	b := startBridge(t, dead, bridgeConfig{opts: webbridge.Options{AllowedOrigins: []string{origin}}})
	for _, v := range []variant{variants[0], variants[3], variants[5]} {
		t.Run(v.name, func(t *testing.T) {
			c := v.client(nil)
			defer closeClient(c)
			resp := post(t, c, b.url+"/test.Echo/Say", v.contentType, encodeBody(v, dataFrame([]byte("x"))),
				http.Header{"Origin": {origin}})
			body, _ := io.ReadAll(resp.Body)
			if len(body) != 0 {
				t.Errorf("trailers-only response has a body: %q", body)
			}
			if resp.Header.Get("Grpc-Status") != "14" || !strings.Contains(resp.Header.Get("Grpc-Message"), "unavailable") {
				t.Errorf("headers %v", resp.Header)
			}
			exposed := strings.ToLower(resp.Header.Get("Access-Control-Expose-Headers"))
			if !strings.Contains(exposed, "grpc-status") || !strings.Contains(exposed, "grpc-message") {
				t.Errorf("exposed %q", exposed)
			}
		})
	}
}

// TestDeadline: grpc-timeout reaches the backend as its deadline and the
// client gets DEADLINE_EXCEEDED.
func TestDeadline(t *testing.T) {
	sawDeadline := make(chan time.Duration, 4)
	backend := rawBackend(t, func(_ any, ss grpc.ServerStream) error {
		dl, ok := ss.Context().Deadline()
		if ok {
			sawDeadline <- time.Until(dl)
		}
		<-ss.Context().Done()
		return status.FromContextError(ss.Context().Err()).Err()
	})
	b := startBridge(t, backend, bridgeConfig{})
	for _, v := range []variant{variants[0], variants[5]} {
		t.Run(v.name, func(t *testing.T) {
			c := v.client(nil)
			defer closeClient(c)
			start := time.Now()
			resp := post(t, c, b.url+"/test.Slow/Wait", v.contentType, encodeBody(v, dataFrame(nil)),
				http.Header{"Grpc-Timeout": {"300m"}})
			_, tr, err := newFrameReader(resp.Body, false).all()
			if err != nil {
				t.Fatal(err)
			}
			if got := grpcStatus(resp, tr); got != "4" {
				t.Errorf("grpc-status %q, want 4 (DEADLINE_EXCEEDED)", got)
			}
			if el := time.Since(start); el > 3*time.Second {
				t.Errorf("took %v", el)
			}
			select {
			case d := <-sawDeadline:
				if d <= 0 || d > 300*time.Millisecond {
					t.Errorf("backend deadline in %v", d)
				}
			default:
				t.Error("backend saw no deadline")
			}
		})
	}
}

// TestHopByHopStripped: connection-level request headers never reach the
// backend (improbable-eng/grpc-web #568), end-to-end ones do.
func TestHopByHopStripped(t *testing.T) {
	seen := make(chan metadata.MD, 2)
	backend := rawBackend(t, func(_ any, ss grpc.ServerStream) error {
		md, _ := metadata.FromIncomingContext(ss.Context())
		seen <- md
		var b []byte
		if err := ss.RecvMsg(&b); err != nil {
			return err
		}
		return ss.SendMsg(&b)
	})
	b := startBridge(t, backend, bridgeConfig{})
	for _, v := range []variant{variants[0], variants[5]} {
		t.Run(v.name, func(t *testing.T) {
			c := v.client(nil)
			defer closeClient(c)
			hdr := http.Header{
				"X-Keep":           {"yes"},
				"X-Conn-Scoped":    {"drop me"},
				"Keep-Alive":       {"timeout=5"},
				"Proxy-Connection": {"keep-alive"},
				"Proxy-Whatever":   {"1"},
			}
			if v.name == "h1/binary" {
				hdr["Connection"] = []string{"keep-alive, X-Conn-Scoped"}
			}
			resp := post(t, c, b.url+"/test.Echo/Headers", v.contentType, encodeBody(v, dataFrame([]byte("x"))), hdr)
			_, tr, err := newFrameReader(resp.Body, false).all()
			if err != nil || tr.Get("grpc-status") != "0" {
				t.Fatalf("trailer %v err %v", tr, err)
			}
			md := <-seen
			for _, k := range []string{"connection", "keep-alive", "proxy-connection", "proxy-whatever", "te", "transfer-encoding", "upgrade"} {
				if v, ok := md[k]; ok {
					t.Errorf("backend got hop-by-hop %s: %q", k, v)
				}
			}
			if v.name == "h1/binary" && md["x-conn-scoped"] != nil {
				t.Errorf("header listed in Connection forwarded: %q", md["x-conn-scoped"])
			}
			if got := md["x-keep"]; len(got) != 1 || got[0] != "yes" {
				t.Errorf("x-keep = %q, want [yes]", got)
			}
		})
	}
}

// TestCORS checks the origin policy, preflights on unknown paths and that a
// refused origin's call never reaches the backend.
func TestCORS(t *testing.T) {
	var calls sync.WaitGroup
	var mu sync.Mutex
	n := 0
	backend := rawBackend(t, func(x any, ss grpc.ServerStream) error {
		mu.Lock()
		n++
		mu.Unlock()
		return echoHandler(x, ss)
	})
	_ = &calls
	const allowed = "http://allowed.example:3000"
	named := startBridge(t, backend, bridgeConfig{opts: webbridge.Options{AllowedOrigins: []string{allowed, "https://other.example"}}})
	star := startBridge(t, backend, bridgeConfig{opts: webbridge.Options{AllowedOrigins: []string{"*"}}})
	none := startBridge(t, backend, bridgeConfig{})
	c := h1Client(nil)
	defer closeClient(c)

	preflight := func(url, origin string) *http.Response {
		req, _ := http.NewRequest(http.MethodOptions, url+"/unknown.pkg.Service/AnyMethod", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "content-type,x-grpc-web,x-user-agent,authorization")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	call := func(url, origin string) *http.Response {
		h := http.Header{}
		if origin != "" {
			h.Set("Origin", origin)
		}
		resp := post(t, c, url+"/test.Echo/Cors", "application/grpc-web", bytes.NewReader(dataFrame([]byte("x"))), h)
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return n }

	tests := []struct {
		name        string
		url, origin string
		wantStatus  int
		wantAllow   string
		wantCreds   string
	}{
		{"named allowed", named.url, allowed, 200, allowed, "true"},
		{"named allowed default port", named.url, "https://other.example:443", 200, "https://other.example:443", "true"},
		{"named refused", named.url, "http://evil.example", 403, "", ""},
		{"named refused port", named.url, "http://allowed.example:3001", 403, "", ""},
		{"named null", named.url, "null", 403, "", ""},
		{"star", star.url, "http://anything.example", 200, "*", ""},
		{"none same origin", none.url, "http://" + none.addr, 200, "", ""},
		{"none cross origin", none.url, "http://localhost:1", 403, "", ""},
		{"no origin header", none.url, "", 200, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := count()
			resp := call(tt.url, tt.origin)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("call: HTTP %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if got := resp.Header.Get("Access-Control-Allow-Origin"); got != tt.wantAllow {
				t.Errorf("call: allow-origin %q, want %q", got, tt.wantAllow)
			}
			if got := resp.Header.Get("Access-Control-Allow-Credentials"); got != tt.wantCreds {
				t.Errorf("call: allow-credentials %q, want %q", got, tt.wantCreds)
			}
			reached := count() > before
			if reached != (tt.wantStatus == 200) {
				t.Errorf("backend reached: %v", reached)
			}
			if tt.origin == "" {
				return
			}
			pf := preflight(tt.url, tt.origin)
			wantPF := http.StatusNoContent
			if tt.wantStatus != 200 {
				wantPF = http.StatusForbidden
			}
			if pf.StatusCode != wantPF {
				t.Fatalf("preflight: HTTP %d, want %d", pf.StatusCode, wantPF)
			}
			if got := pf.Header.Get("Access-Control-Allow-Origin"); got != tt.wantAllow {
				t.Errorf("preflight: allow-origin %q, want %q", got, tt.wantAllow)
			}
			if wantPF == http.StatusNoContent {
				if got := pf.Header.Get("Access-Control-Allow-Headers"); !strings.Contains(got, "authorization") || !strings.Contains(got, "x-grpc-web") {
					t.Errorf("preflight: allow-headers %q", got)
				}
				if got := pf.Header.Get("Access-Control-Allow-Methods"); !strings.Contains(got, "POST") {
					t.Errorf("preflight: allow-methods %q", got)
				}
			}
		})
	}
}

func TestBadOrigin(t *testing.T) {
	for _, o := range []string{"example.com", "http://a.example/path", "", "http://"} {
		if _, err := webbridge.New(grpc.NewServer(), webbridge.Options{AllowedOrigins: []string{o}}); err == nil {
			t.Errorf("origin %q accepted", o)
		}
	}
}

// TestNotGRPCWeb: other requests get 415 and never reach the backend.
func TestNotGRPCWeb(t *testing.T) {
	b := startBridge(t, rawBackend(t, echoHandler), bridgeConfig{})
	c := h1Client(nil)
	defer closeClient(c)
	resp, err := c.Get(b.url + "/test.Echo/Say")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("GET: HTTP %d", resp.StatusCode)
	}
	if n := len(b.obs.snapshot()); n != 0 {
		t.Errorf("%d calls recorded", n)
	}
}

// testTLS returns a server config with a fresh self-signed certificate for
// 127.0.0.1 and a client config trusting it.
func testTLS(t testing.TB) (srv, cli *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "grpctap test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}},
		&tls.Config{RootCAs: pool}
}

// TestTextRequestInPieces: a text body made of several padded base64
// pieces (a client that flushed between frames) arrives whole.
func TestTextRequestInPieces(t *testing.T) {
	backend := rawBackend(t, func(_ any, ss grpc.ServerStream) error {
		var all []byte
		for {
			var b []byte
			if err := ss.RecvMsg(&b); err != nil {
				if errors.Is(err, io.EOF) {
					return ss.SendMsg(&all)
				}
				return err
			}
			all = append(all, b...)
		}
	})
	b := startBridge(t, backend, bridgeConfig{})
	c := h1Client(nil)
	defer closeClient(c)
	body := base64.StdEncoding.EncodeToString(dataFrame([]byte("a"))) + "\r\n" +
		base64.StdEncoding.EncodeToString(dataFrame([]byte("bc")))
	resp := post(t, c, b.url+"/test.Sum/Pieces", "application/grpc-web-text", strings.NewReader(body), nil)
	msgs, tr, err := newFrameReader(resp.Body, true).all()
	if err != nil || len(msgs) != 1 || string(msgs[0]) != "abc" || tr.Get("grpc-status") != "0" {
		t.Fatalf("messages %q trailer %v err %v", msgs, tr, err)
	}
}

// TestGRPCFallback: with GRPCFallback, native gRPC clients may use the
// bridge's port too (h2c); without it they get 415.
func TestGRPCFallback(t *testing.T) {
	backend := rawBackend(t, echoHandler)
	for _, on := range []bool{true, false} {
		b := startBridge(t, backend, bridgeConfig{opts: webbridge.Options{GRPCFallback: on}})
		cc, err := grpc.NewClient(b.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		req, resp := []byte("native"), []byte(nil)
		err = cc.Invoke(ctx, "/test.Echo/Native", &req, &resp, grpc.ForceCodecV2(rawcodec.Codec{}))
		cancel()
		cc.Close()
		if on && (err != nil || string(resp) != "native") {
			t.Errorf("fallback on: %q, %v", resp, err)
		}
		if !on && err == nil {
			t.Error("fallback off: native gRPC call succeeded")
		}
		if on {
			if calls := b.obs.snapshot(); len(calls) != 1 || calls[0].start.Protocol != proxy.ProtocolGRPC {
				t.Errorf("recorded %d calls", len(calls))
			}
		}
	}
}

// TestMalformedText: a grpc-web-text body that is not base64 is the
// client's mistake: it is answered INVALID_ARGUMENT saying so, not
// UNAVAILABLE as if the backend were down, whether the bad bytes come
// first or after a well-formed message. The capture (a real recorder and
// store) records the call with the status and message the client got.
func TestMalformedText(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "cap.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := recorder.New(ctx, st, recorder.Options{Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // after the bridge's own cleanup, which is registered later
		if err := rec.Close(ctx); err != nil {
			t.Errorf("close recorder: %v", err)
		}
		if err := st.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	backend := rawBackend(t, func(_ any, ss grpc.ServerStream) error {
		for {
			var b []byte
			if err := ss.RecvMsg(&b); err != nil {
				if errors.Is(err, io.EOF) {
					return nil
				}
				return err
			}
		}
	})
	b := startBridge(t, backend, bridgeConfig{observer: rec})
	c := h1Client(nil)
	defer closeClient(c)
	for _, tc := range []struct{ name, body string }{
		{"garbage", "!!!! not base64 ****"},
		{"after a message", base64.StdEncoding.EncodeToString(dataFrame([]byte("a"))) + "%%%%"},
		{"cut in a quadruple", "AAAAAAFh" + "AA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := post(t, c, b.url+"/test.Sink/Take", "application/grpc-web-text", strings.NewReader(tc.body), nil)
			_, tr, err := newFrameReader(resp.Body, true).all()
			if err != nil {
				t.Fatalf("reading the answer: %v", err)
			}
			msg := tr.Get("grpc-message")
			if msg == "" {
				msg = resp.Header.Get("Grpc-Message")
			}
			if got := grpcStatus(resp, tr); resp.StatusCode != http.StatusOK || got != "3" || !strings.Contains(msg, "base64") {
				t.Errorf("HTTP %d, grpc-status %q (want 3, INVALID_ARGUMENT), grpc-message %q (want it to name the base64)", resp.StatusCode, got, msg)
			}

			// The answer can reach the client before the proxy's handler
			// has returned and the observer has seen the call end: wait
			// (at most 10 s) until the recorded call is closed.
			var got store.Call
			stubserver.WaitFor(t, 10*time.Second, func() error {
				if err := rec.Flush(ctx); err != nil {
					t.Fatal(err)
				}
				calls, err := st.ListCalls(ctx, store.Filter{})
				if err != nil || len(calls) == 0 {
					t.Fatalf("recorded calls: %d, %v", len(calls), err)
				}
				got = calls[len(calls)-1] // in id order: this subtest's call is the last
				if got.Status == nil {
					return fmt.Errorf("call %d still open", got.ID)
				}
				return nil
			})
			if got.Status.Name != "INVALID_ARGUMENT" || got.Status.Message != msg {
				t.Errorf("recorded status %+v, want INVALID_ARGUMENT with the message the client got, %q", got.Status, msg)
			}
		})
	}
}

// TestRecordedContentType: a gRPC-Web call is recorded with the content
// type the browser sent in its request headers, as 'show' lists them, while
// the backend still gets application/grpc (the recorded ContentType says
// which, as the messages' format).
func TestRecordedContentType(t *testing.T) {
	backend := rawBackend(t, func(_ any, ss grpc.ServerStream) error {
		md, _ := metadata.FromIncomingContext(ss.Context())
		if err := ss.SendHeader(metadata.Pairs("x-backend-content-type", strings.Join(md.Get("content-type"), ","))); err != nil {
			return err
		}
		var b []byte
		for ss.RecvMsg(&b) == nil {
		}
		return nil
	})
	b := startBridge(t, backend, bridgeConfig{})
	for _, v := range variants {
		if strings.HasSuffix(v.contentType, "+json") {
			continue // JSON is transcoded only with a schema; TestJSON covers it
		}
		t.Run(v.name, func(t *testing.T) {
			c := v.client(nil)
			defer closeClient(c)
			resp := post(t, c, b.url+"/test.Sink/Take", v.contentType, encodeBody(v, dataFrame([]byte("x"))), nil)
			if _, _, err := newFrameReader(resp.Body, v.text).all(); err != nil {
				t.Fatal(err)
			}
			wantBackend := strings.Replace(strings.Replace(v.contentType, "-web-text", "", 1), "-web", "", 1)
			if got := resp.Header.Get("X-Backend-Content-Type"); got != wantBackend {
				t.Errorf("the backend got content-type %q, want %q", got, wantBackend)
			}
		})
	}
	calls := b.obs.snapshot()
	i := 0
	for _, v := range variants {
		if strings.HasSuffix(v.contentType, "+json") {
			continue
		}
		if i >= len(calls) {
			t.Fatalf("%d calls recorded", len(calls))
		}
		if got := calls[i].start.Header.Get("content-type"); len(got) != 1 || got[0] != v.contentType {
			t.Errorf("%s: recorded request header content-type %q, want the client's %q", v.name, got, v.contentType)
		}
		i++
	}
}
