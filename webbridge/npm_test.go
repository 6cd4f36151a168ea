package webbridge_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/grpctap/grpctap/demo"
	"github.com/grpctap/grpctap/proxy"
	"github.com/grpctap/grpctap/webbridge"
)

// webClientsDir holds the npm project with the third-party clients.
var webClientsDir = filepath.Join("..", "e2e", "webclients")

// requireTool skips the test when a tool the test needs is missing, or
// fails it when CI=true, where .ci/run installs everything.
func requireTool(t *testing.T, ok bool, msg string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// requireNode returns the node binary once e2e/webclients is installed.
func requireNode(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	requireTool(t, err == nil, "node is not installed (Node 20+ is needed for the gRPC-Web client tests)")
	_, err = os.Stat(filepath.Join(webClientsDir, "node_modules", "@connectrpc", "connect-web"))
	requireTool(t, err == nil, "e2e/webclients/node_modules is missing: run 'npm ci --no-audit --no-fund' in e2e/webclients")
	return node
}

// jsonCodec makes a backend that speaks JSON (grpc.ForceServerCodec): the
// demo backend, like most, speaks only protobuf. It is never registered
// globally, so no in-process backend accepts JSON unless told to.
type jsonCodec struct{}

func (jsonCodec) Marshal(v any) ([]byte, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("json codec: %T is not a proto.Message", v)
	}
	return protojson.Marshal(m)
}

func (jsonCodec) Unmarshal(data []byte, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("json codec: %T is not a proto.Message", v)
	}
	return protojson.Unmarshal(data, m)
}

func (jsonCodec) Name() string { return "json" }

// startDemoBridge starts the demo backend with the proxy and bridge in
// front. Unless cfg says otherwise, the bridge knows the backend's schemas
// by server reflection, as grpctap's own decoder learns them.
func startDemoBridge(t *testing.T, cfg bridgeConfig) *bridge {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	backend, err := demo.Start(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = backend.Close(cctx)
	})
	if cfg.opts.Schemas == nil && !cfg.noSchemas {
		cfg.opts.Schemas = reflectionSchemas(t, backend.Addr())
	}
	return startBridge(t, backend.Addr(), cfg)
}

type clientResult struct {
	Client string `json:"client"`
	Case   string `json:"case"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// TestWebClients runs real gRPC-Web clients from npm (clients.mjs) against
// the bridge: @connectrpc/connect-web (fetch, binary and JSON),
// @connectrpc/connect-node over HTTP/1.1 and HTTP/2 (binary, and JSON with
// gzip), and the official grpc-web client (text and binary). The demo
// backend speaks only protobuf, so JSON works because the bridge
// translates it with the schema it learned by reflection.
func TestWebClients(t *testing.T) {
	node := requireNode(t)
	b := startDemoBridge(t, bridgeConfig{})
	clients := []struct {
		name     string
		protocol string
		cases    []string
	}{
		{"connect-web-binary", proxy.ProtocolGRPCWeb, []string{"unary", "large", "error-with-headers", "server-streaming", "deadline"}},
		{"connect-web-json", proxy.ProtocolGRPCWeb, []string{"unary", "large", "error-with-headers", "server-streaming", "deadline"}},
		{"connect-node-h1", proxy.ProtocolGRPCWeb, []string{"unary", "large", "error-with-headers", "server-streaming", "deadline", "client-streaming", "bidi"}},
		{"connect-node-h2", proxy.ProtocolGRPCWeb, []string{"unary", "large", "error-with-headers", "server-streaming", "deadline", "client-streaming", "bidi"}},
		{"connect-node-h2-json", proxy.ProtocolGRPCWeb, []string{"unary", "large", "error-with-headers", "server-streaming", "deadline", "client-streaming", "bidi"}},
		{"grpc-web-text", proxy.ProtocolGRPCWebText, []string{"unary", "large", "error-with-headers", "server-streaming", "deadline"}},
		{"grpc-web-binary", proxy.ProtocolGRPCWeb, []string{"unary", "large", "error-with-headers", "server-streaming", "deadline"}},
	}
	for _, c := range clients {
		t.Run(c.name, func(t *testing.T) {
			runClientScript(t, node, b, c.protocol, c.cases, "clients.mjs", "--addr", b.addr, "--client", c.name)
		})
	}
}

// TestWebsocketClient runs improbable-eng's own client
// (@improbable-eng/grpc-web) over its websocket transport: unary, an error
// with headers, server, client and bidi streaming.
func TestWebsocketClient(t *testing.T) {
	node := requireNode(t)
	b := startDemoBridge(t, bridgeConfig{opts: webbridge.Options{Websockets: true}})
	runClientScript(t, node, b, proxy.ProtocolGRPCWeb,
		[]string{"unary", "error-with-headers", "server-streaming", "client-streaming", "bidi"},
		"--experimental-websocket", "websocket.mjs", "--addr", b.addr)
}

// runClientScript runs a node script from e2e/webclients that prints one
// JSON result per case, checks that every case in cases ran and passed,
// and that the calls were recorded with protocol.
func runClientScript(t *testing.T, node string, b *bridge, protocol string, cases []string, args ...string) {
	t.Helper()
	before := len(b.obs.snapshot())
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Dir = webClientsDir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, runErr := cmd.Output()
	got := map[string]clientResult{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r clientResult
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Errorf("unexpected output line %q", sc.Text())
			continue
		}
		got[r.Case] = r
	}
	for _, kase := range cases {
		r, ok := got[kase]
		switch {
		case !ok:
			t.Errorf("%s: did not run", kase)
		case !r.OK:
			t.Errorf("%s: FAILED: %s", kase, r.Detail)
		default:
			t.Logf("%s: ok %s", kase, r.Detail)
		}
	}
	if runErr != nil {
		t.Errorf("node %s: %v\nstderr:\n%s", strings.Join(args, " "), runErr, stderr.String())
	}
	calls := b.obs.snapshot()[before:]
	if len(calls) < len(cases) {
		t.Errorf("%d calls recorded for %d cases", len(calls), len(cases))
	}
	for _, call := range calls {
		if call.start.Protocol != protocol {
			t.Errorf("%s recorded as %q, want %q", call.start.Method, call.start.Protocol, protocol)
		}
		if !strings.HasPrefix(call.start.Method, "/grpctap.demo.v1.DemoService/") {
			t.Errorf("recorded method %q", call.start.Method)
		}
	}
}
