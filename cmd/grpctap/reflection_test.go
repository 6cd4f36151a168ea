package main

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/reflection"

	"github.com/grpctap/grpctap/internal/stubserver"
)

// testServiceBackend serves grpc-go's interop TestService with server
// reflection on a loopback port until the test ends: a second backend with
// a service of its own, beside the demo.
func testServiceBackend(t *testing.T) string {
	t.Helper()
	srv := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(srv, interop.NewTestServer())
	reflection.Register(srv)
	return stubserver.Serve(t, srv)
}

// grpcurlRun runs grpcurl with args and returns its output, failing the
// test (with the output) when it fails.
func grpcurlRun(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("grpcurl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestGrpcurlThroughRoutesOnly: with --route only (no --backend), grpcurl
// through the proxy lists the services of both backends, describes each,
// and calls each through its route. A third route's backend is down: its
// service is absent and the others are unaffected. grpctap's own
// reflection answers are not in the capture; the two calls are.
func TestGrpcurlThroughRoutesOnly(t *testing.T) {
	bin := stubserver.Grpcurl(t)
	backend := startDemo(t)
	testService := testServiceBackend(t)
	db := filepath.Join(t.TempDir(), "cap.db")
	p := start(t, "proxy", "--listen", "127.0.0.1:0", "--db", db, "--ui", "",
		"--route", "grpctap.demo.v1.DemoService="+backend.Addr(),
		"--route", "grpc.testing.TestService="+testService,
		"--route", "gone.v1.Gone="+stubserver.DeadAddr(t))
	addr := p.waitFor(t, listeningLine)

	list := grpcurlRun(t, bin, "-plaintext", addr, "list")
	for _, want := range []string{"grpctap.demo.v1.DemoService", "grpc.testing.TestService", "grpc.reflection.v1.ServerReflection"} {
		if !strings.Contains(list, want+"\n") {
			t.Errorf("grpcurl list lacks %s:\n%s", want, list)
		}
	}
	if strings.Contains(list, "gone.v1") {
		t.Errorf("grpcurl list names the down backend's service:\n%s", list)
	}

	for svc, wants := range map[string][]string{
		"grpctap.demo.v1.DemoService":      {"rpc Echo ( .grpctap.demo.v1.EchoRequest ) returns ( .grpctap.demo.v1.EchoResponse );", "rpc Chat ( stream"},
		"grpc.testing.TestService":         {"rpc EmptyCall ( .grpc.testing.Empty ) returns ( .grpc.testing.Empty );", "rpc FullDuplexCall ( stream"},
		"grpctap.demo.v1.DemoService.Echo": {"rpc Echo ( .grpctap.demo.v1.EchoRequest )"},
		// A message from the TestService file's import (messages.proto).
		"grpc.testing.SimpleRequest": {"message SimpleRequest {", ".grpc.testing.Payload payload"},
	} {
		out := grpcurlRun(t, bin, "-plaintext", addr, "describe", svc)
		for _, want := range wants {
			if !strings.Contains(out, want) {
				t.Errorf("grpcurl describe %s lacks %q:\n%s", svc, want, out)
			}
		}
	}

	echo := grpcurlRun(t, bin, "-plaintext", "-d", `{"message": "via route"}`, addr, "grpctap.demo.v1.DemoService/Echo")
	if !strings.Contains(echo, `"message": "via route"`) {
		t.Errorf("Echo through the demo route answered:\n%s", echo)
	}
	unary := grpcurlRun(t, bin, "-plaintext", "-d", `{"response_size": 3}`, addr, "grpc.testing.TestService/UnaryCall")
	if !strings.Contains(unary, `"body": "AAAA"`) {
		t.Errorf("UnaryCall through the TestService route answered:\n%s", unary)
	}

	if err := p.stop(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	out := mustRun(t, "calls", "--db", db, "--json")
	var methods []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var c struct {
			Method string `json:"method"`
		}
		if err := json.Unmarshal([]byte(line), &c); err != nil {
			t.Fatalf("calls --json line %q: %v", line, err)
		}
		methods = append(methods, c.Method)
	}
	sort.Strings(methods)
	if got := strings.Join(methods, " "); got != "/grpc.testing.TestService/UnaryCall /grpctap.demo.v1.DemoService/Echo" {
		t.Errorf("the capture holds %s, want the two calls and none of grpctap's reflection answers", got)
	}
}

// TestNoReflectionForwardsReflection: with --no-reflection grpctap answers
// no reflection itself: grpcurl's reflection goes to --backend like any
// call, and lists that backend's services only.
func TestNoReflectionForwardsReflection(t *testing.T) {
	bin := stubserver.Grpcurl(t)
	backend := startDemo(t)
	p := start(t, "proxy", "--listen", "127.0.0.1:0", "--no-record", "--ui", "", "--no-reflection",
		"--backend", backend.Addr(), "--route", "grpc.testing.TestService="+testServiceBackend(t))
	list := grpcurlRun(t, bin, "-plaintext", p.waitFor(t, listeningLine), "list")
	if !strings.Contains(list, "grpctap.demo.v1.DemoService\n") || strings.Contains(list, "grpc.testing.TestService") {
		t.Errorf("grpcurl list with --no-reflection: %s, want the demo backend's own list", list)
	}
}
