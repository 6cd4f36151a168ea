package ui_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/grpctap/grpctap/demo"
	"github.com/grpctap/grpctap/demo/demopb"
	"github.com/grpctap/grpctap/internal/stubserver"
	"github.com/grpctap/grpctap/internal/testcert"
	"github.com/grpctap/grpctap/proxy"
	"github.com/grpctap/grpctap/recorder"
	"github.com/grpctap/grpctap/schemas"
	"github.com/grpctap/grpctap/store"
	"github.com/grpctap/grpctap/ui"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// env is a real capture: the demo backend, the proxy in front of it
// recording into an SQLite file, and the inspector on loopback.
type env struct {
	t       *testing.T
	st      *store.Store
	rec     *recorder.Recorder
	proxy   *proxy.Proxy
	addr    string // the proxy's gRPC address
	server  *ui.Server
	base    string // the inspector's base URL, no trailing slash
	client  demopb.DemoServiceClient
	backend string
}

type envOpts struct {
	token         string
	readOnlyToken string
	readOnly      bool
	eventInterval time.Duration // 0: the UI's default
	// grpcTLS serves the proxy's gRPC listener over TLS with these
	// certificates (the client trusts their CA). Default nil: plaintext.
	grpcTLS *testcert.Set
	// blobEcho routes the service test.Blob, which has no schema anywhere,
	// to a backend that answers each message with the same bytes.
	blobEcho bool
}

func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	ctx := context.Background()
	backend, err := demo.Start(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = backend.Close(context.Background()) })
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "capture.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rec, err := recorder.New(ctx, st, recorder.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rec.Close(context.Background()) })
	var routes []proxy.Route
	if o.blobEcho {
		routes = append(routes, proxy.Route{Prefix: "test.Blob", Backend: stubserver.RawEcho(t)})
	}
	p, err := proxy.New(proxy.Options{Backend: backend.Addr(), Routes: routes, Observer: rec})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	var grpcL ui.GRPCListener
	clientCreds := insecure.NewCredentials()
	var srvOpts []grpc.ServerOption
	if o.grpcTLS != nil {
		srvOpts = append(srvOpts, grpc.Creds(credentials.NewTLS(o.grpcTLS.ServerConfig(t, false))))
		clientCreds = credentials.NewTLS(o.grpcTLS.ClientConfig(t, false))
		grpcL.TLS, grpcL.CACert = true, o.grpcTLS.CAFile
	}
	grpcL.Addr = stubserver.Serve(t, p.NewServer(srvOpts...))
	dec, err := schemas.OpenDecoder(ctx, st, schemas.DecoderOptions{Reflection: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dec.Close() })
	u, err := ui.New(ui.Options{Store: st, Recorder: rec, Decoder: dec, Proxy: p, Token: o.token,
		ReadOnlyToken: o.readOnlyToken, ReadOnly: o.readOnly, EventInterval: o.eventInterval, GRPC: grpcL})
	if err != nil {
		t.Fatal(err)
	}
	s, err := ui.Start("127.0.0.1:0", u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("ui shutdown: %v", err)
		}
	})
	cc, err := grpc.NewClient(grpcL.Addr, grpc.WithTransportCredentials(clientCreds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close(); http.DefaultClient.CloseIdleConnections() })
	base := strings.TrimSuffix(s.URL, "/")
	if i := strings.Index(base, "/?"); i >= 0 {
		base = base[:i]
	}
	return &env{t: t, st: st, rec: rec, proxy: p, addr: grpcL.Addr, server: s, base: base,
		client: demopb.NewDemoServiceClient(cc), backend: backend.Addr()}
}

// do sends a request and decodes a JSON answer into out (when not nil),
// returning the status code.
func (e *env) do(method, path string, body any, out any, hdr ...string) int {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	res := e.send(context.Background(), method, path, rd, hdr)
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			e.t.Fatalf("%s %s: %d %s: %v", method, path, res.StatusCode, data, err)
		}
	}
	return res.StatusCode
}

// send sends a request with headers hdr (name, value, …).
func (e *env) send(ctx context.Context, method, path string, body io.Reader, hdr []string) *http.Response {
	e.t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, e.base+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	return res
}

// waitCalls waits until the capture holds n closed calls; hdr are sent
// with each request (a token).
func (e *env) waitCalls(n int, hdr ...string) []store.Call {
	e.t.Helper()
	var p store.Page
	stubserver.WaitFor(e.t, 5*time.Second, func() error {
		p = store.Page{}
		e.do("GET", "/api/calls?state=closed", nil, &p, hdr...)
		if len(p.Calls) < n {
			return fmt.Errorf("want %d closed calls, have %d", n, len(p.Calls))
		}
		return nil
	})
	return p.Calls
}
