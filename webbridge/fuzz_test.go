package webbridge_test

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/grpctap/grpctap/internal/hostcheck"
	"github.com/grpctap/grpctap/proxy"
	"github.com/grpctap/grpctap/webbridge"
)

// FuzzRequest sends arbitrary gRPC-Web requests (Host, Origin,
// content type, one extra header, body) to a bridge in front of a real
// proxy and backend. Whatever comes: no panic; a request with a foreign
// Host or an opaque Origin ("null") gets 403 and never reaches the
// backend; and what
// does reach the backend carries no hop-by-hop header, none the Connection
// header named, and none of grpctap's own labels.
func FuzzRequest(f *testing.F) {
	frame := dataFrame([]byte("hello"))
	f.Add("127.0.0.1:8080", "", "application/grpc-web+proto", "x-user: ann", frame)
	f.Add("localhost:8080", "http://localhost:8080", "application/grpc-web-text", "x-a: 1", []byte(base64.StdEncoding.EncodeToString(frame)))
	f.Add("evil.example:8080", "http://evil.example:8080", "application/grpc-web", "", frame)
	f.Add("app.internal", "https://app.example", "application/grpc-web", "Connection: x-secret, keep-alive", frame)
	f.Add("[::1]:80", "null", "application/grpc-web+json", "grpctap-origin: composer", []byte{0, 0, 0, 0, 2, '{', '}'})
	f.Add("127.0.0.1", "", "application/grpc-web", "te: gzip", []byte{0x80, 0, 0, 0, 0})
	f.Add("127.0.0.1", "", "application/grpc-web-text", "", []byte("AAAA\r\nAAU=aGVsbG8="))
	f.Add("127.0.0.1", "", "application/grpc-web", "", []byte{0, 0xff, 0xff, 0xff, 0xff})

	// Calls are told apart by x-fuzz-call: a backend call may start after
	// the bridge has answered (the client's side failed first).
	var (
		mu    sync.Mutex
		seen  = map[string][]metadata.MD{}
		calls int
	)
	backend := rawBackend(f, func(x any, ss grpc.ServerStream) error {
		md, _ := metadata.FromIncomingContext(ss.Context())
		if id := md.Get("x-fuzz-call"); len(id) == 1 {
			mu.Lock()
			seen[id[0]] = append(seen[id[0]], md)
			mu.Unlock()
		}
		return echoHandler(x, ss)
	})
	p, err := proxy.New(proxy.Options{Backend: backend, Logger: quietLog})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = p.Close() })
	srv := p.NewServer()
	f.Cleanup(srv.Stop)
	b, err := webbridge.New(srv, webbridge.Options{AllowedOrigins: []string{"https://app.example"}, Hosts: []string{"app.internal"}})
	if err != nil {
		f.Fatal(err)
	}

	f.Fuzz(func(t *testing.T, host, origin, contentType, extra string, body []byte) {
		req, err := http.NewRequest(http.MethodPost, "http://bridge/pkg.Svc/Method", bytes.NewReader(body))
		if err != nil {
			t.Skip()
		}
		req.Host = host
		req.Header.Set("Content-Type", contentType)
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		var named []string
		if k, v, ok := strings.Cut(extra, ":"); ok {
			req.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
		}
		for _, c := range req.Header.Values("Connection") {
			for _, n := range strings.Split(c, ",") {
				if n = strings.ToLower(strings.TrimSpace(n)); n != "" {
					named = append(named, n)
				}
			}
		}
		mu.Lock()
		calls++
		id := strconv.Itoa(calls)
		mu.Unlock()
		req.Header.Set("X-Fuzz-Call", id)

		w := httptest.NewRecorder()
		b.ServeHTTP(w, req)

		mu.Lock()
		got := seen[id]
		mu.Unlock()
		hostOK := hostcheck.Loopback(host) || hostcheck.Name(host) == "app.internal"
		if (!hostOK || origin == "null") && (w.Code != http.StatusForbidden || len(got) > 0) {
			t.Fatalf("Host %q, Origin %q: HTTP %d, backend reached %d times", host, origin, w.Code, len(got))
		}
		for _, md := range got {
			for k := range md {
				if k == "connection" || k == "keep-alive" || k == "upgrade" || k == "transfer-encoding" ||
					strings.HasPrefix(k, "proxy-") || strings.HasPrefix(k, proxy.InternalHeaderPrefix) {
					t.Fatalf("the backend got %s: %v", k, md[k])
				}
				for _, n := range named {
					if k == n && n != "te" {
						t.Fatalf("the backend got %s, which Connection named", k)
					}
				}
			}
		}
	})
}
