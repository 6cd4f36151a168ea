package selfreflect_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jhump/protoreflect/grpcreflect"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	v1grpc "google.golang.org/grpc/reflection/grpc_reflection_v1"
	v1alphagrpc "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/grpctap/grpctap/decode"
	"github.com/grpctap/grpctap/demo"
	"github.com/grpctap/grpctap/internal/stubserver"
	"github.com/grpctap/grpctap/proxy"
	"github.com/grpctap/grpctap/selfreflect"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// counter is an Observer that counts the calls it is told of.
type counter struct{ calls atomic.Int64 }

func (c *counter) StartCall(*proxy.CallStart) proxy.CallObserver {
	c.calls.Add(1)
	return nil
}

// startProxy serves a proxy with opts that answers reflection with so, on
// a loopback port until the test ends, and returns a client connection.
func startProxy(t *testing.T, opts proxy.Options, so selfreflect.Options) *grpc.ClientConn {
	t.Helper()
	opts.Own = func(p *proxy.Proxy) map[string]grpc.StreamHandler { return selfreflect.Handlers(p, so) }
	p, err := proxy.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	addr := stubserver.Serve(t, p.NewServer())
	t.Cleanup(func() { _ = p.Close() })
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

func demoBackend(t *testing.T) string {
	t.Helper()
	d, err := demo.Start(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close(context.Background()) })
	return d.Addr()
}

// testServiceBackend serves grpc-go's interop TestService with reflection.
func testServiceBackend(t *testing.T, opts ...grpc.ServerOption) string {
	t.Helper()
	srv := grpc.NewServer(opts...)
	testgrpc.RegisterTestServiceServer(srv, interop.NewTestServer())
	reflection.Register(srv)
	return stubserver.Serve(t, srv)
}

func ctxFor(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func v1alpha(ctx context.Context, t *testing.T, cc *grpc.ClientConn) *grpcreflect.Client {
	t.Helper()
	c := grpcreflect.NewClientV1Alpha(ctx, v1alphagrpc.NewServerReflectionClient(cc))
	t.Cleanup(c.Reset)
	return c
}

func listed(t *testing.T, c *grpcreflect.Client) []string {
	t.Helper()
	names, err := c.ListServices()
	if err != nil {
		t.Fatalf("list services: %v", err)
	}
	slices.Sort(names)
	return names
}

// TestV1AlphaSeesEveryRoute: a v1alpha reflection client of the proxy
// (routes only, no default backend) lists the services of both backends,
// resolves each with the files they import, and finds files by name; none
// of it reaches the proxy's observer.
func TestV1AlphaSeesEveryRoute(t *testing.T) {
	obs := &counter{}
	cc := startProxy(t, proxy.Options{Observer: obs, Routes: []proxy.Route{
		{Prefix: "grpctap.demo.v1.DemoService", Backend: demoBackend(t)},
		{Prefix: "grpc.testing.TestService", Backend: testServiceBackend(t)},
	}}, selfreflect.Options{})
	ctx := ctxFor(t)
	c := v1alpha(ctx, t, cc)

	want := []string{"grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection", "grpc.testing.TestService", "grpctap.demo.v1.DemoService"}
	if got := listed(t, c); !slices.Equal(got, want) {
		t.Errorf("services: %v, want %v", got, want)
	}
	ts, err := c.ResolveService("grpc.testing.TestService")
	if err != nil {
		t.Fatalf("resolve TestService: %v", err)
	}
	fdx := ts.FindMethodByName("FullDuplexCall")
	if fdx == nil || fdx.GetInputType().GetFullyQualifiedName() != "grpc.testing.StreamingOutputCallRequest" {
		t.Errorf("TestService.FullDuplexCall: %v", fdx)
	}
	// The request type is in the file TestService's file imports.
	if in := fdx.GetInputType().GetFile().GetName(); in == ts.GetFile().GetName() {
		t.Errorf("StreamingOutputCallRequest is in %s, want an import of it", in)
	}
	ds, err := c.ResolveService("grpctap.demo.v1.DemoService")
	if err != nil {
		t.Fatalf("resolve DemoService: %v", err)
	}
	if ds.FindMethodByName("Echo") == nil {
		t.Errorf("DemoService has no Echo: %v", ds)
	}
	fd, err := c.FileByFilename(ds.GetFile().GetName())
	if err != nil || fd.FindService("grpctap.demo.v1.DemoService") == nil {
		t.Errorf("file %s: %v, %v", ds.GetFile().GetName(), fd, err)
	}
	if _, err := c.FileContainingSymbol("no.such.Thing"); !grpcreflect.IsElementNotFoundError(err) {
		t.Errorf("an unknown symbol: %v, want not found", err)
	}
	if n := obs.calls.Load(); n != 0 {
		t.Errorf("the observer was told of %d calls; grpctap's reflection answers are not traffic", n)
	}

	if _, err := testgrpc.NewTestServiceClient(cc).EmptyCall(ctx, &testgrpc.Empty{}); err != nil {
		t.Fatalf("EmptyCall through its route: %v", err)
	}
	if n := obs.calls.Load(); n != 1 {
		t.Errorf("the observer was told of %d calls, want the EmptyCall", n)
	}
}

// TestExplicitRouteForwardsReflection: a route naming the v1 reflection
// service sends v1 reflection to that backend, which knows only its own
// services; v1alpha, not routed, is still grpctap's merged answer.
func TestExplicitRouteForwardsReflection(t *testing.T) {
	demoAddr := demoBackend(t)
	obs := &counter{}
	cc := startProxy(t, proxy.Options{Observer: obs, Routes: []proxy.Route{
		{Prefix: "grpc.reflection.v1.ServerReflection", Backend: demoAddr},
		{Prefix: "grpctap.demo.v1.DemoService", Backend: demoAddr},
		{Prefix: "grpc.testing.TestService", Backend: testServiceBackend(t)},
	}}, selfreflect.Options{})
	ctx := ctxFor(t)

	v1 := grpcreflect.NewClientV1(ctx, v1grpc.NewServerReflectionClient(cc))
	defer v1.Reset()
	names, err := v1.ListServices()
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(names, "grpc.testing.TestService") || !slices.Contains(names, "grpctap.demo.v1.DemoService") {
		t.Errorf("v1, routed to the demo: %v, want the demo's own list", names)
	}
	if obs.calls.Load() == 0 {
		t.Error("the forwarded v1 reflection call was not observed")
	}
	if got := listed(t, v1alpha(ctx, t, cc)); !slices.Contains(got, "grpc.testing.TestService") || !slices.Contains(got, "grpctap.demo.v1.DemoService") {
		t.Errorf("v1alpha, grpctap's own: %v, want both backends' services", got)
	}
}

// notesProto has a service for a backend without reflection, one routed
// nowhere, and an extension.
const notesProto = `syntax = "proto2";
package notes.v1;
message Note {
  optional string text = 1;
  extensions 100 to 200;
}
extend Note { optional string author = 101; }
service Notes { rpc Get(Note) returns (Note); }
service Unrouted { rpc Get(Note) returns (Note); }
`

func givenFiles(t *testing.T) []protoreflect.FileDescriptor {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "notes.proto"), []byte(notesProto), 0o600); err != nil {
		t.Fatal(err)
	}
	src, err := decode.NewProtoFiles([]string{dir}, []string{"notes.proto"})
	if err != nil {
		t.Fatal(err)
	}
	return src.Files()
}

// TestGivenFilesAndHeaders: services of the given files are listed when
// routed (here to a backend without reflection) and not otherwise, their
// extensions are found; the client's headers reach a backend whose
// reflection needs them, and without them that backend alone is left out.
func TestGivenFilesAndHeaders(t *testing.T) {
	guarded := testServiceBackend(t, grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		md, _ := metadata.FromIncomingContext(ss.Context())
		if strings.HasPrefix(info.FullMethod, "/grpc.reflection.") && !slices.Contains(md.Get("authorization"), "Bearer let-me-in") {
			return status.Error(codes.Unauthenticated, "who are you?")
		}
		return h(srv, ss)
	}))
	cc := startProxy(t, proxy.Options{Routes: []proxy.Route{
		{Prefix: "notes.v1.Notes", Backend: stubserver.RawEcho(t)},
		{Prefix: "grpc.testing.TestService", Backend: guarded},
	}}, selfreflect.Options{Files: givenFiles(t)})
	ctx := ctxFor(t)

	anon := listed(t, v1alpha(ctx, t, cc))
	if !slices.Contains(anon, "notes.v1.Notes") || slices.Contains(anon, "notes.v1.Unrouted") || slices.Contains(anon, "grpc.testing.TestService") {
		t.Errorf("without authorization: %v, want notes.v1.Notes, not notes.v1.Unrouted nor the guarded TestService", anon)
	}
	authed := listed(t, v1alpha(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer let-me-in"), t, cc))
	if !slices.Contains(authed, "notes.v1.Notes") || !slices.Contains(authed, "grpc.testing.TestService") {
		t.Errorf("with authorization: %v, want notes.v1.Notes and grpc.testing.TestService", authed)
	}

	c := v1alpha(ctx, t, cc)
	fd, err := c.FileContainingExtension("notes.v1.Note", 101)
	if err != nil || fd.GetName() != "notes.proto" {
		t.Errorf("file of extension 101 of notes.v1.Note: %v, %v", fd, err)
	}
	nums, err := c.AllExtensionNumbersForType("notes.v1.Note")
	if err != nil || !slices.Equal(nums, []int32{101}) {
		t.Errorf("extension numbers of notes.v1.Note: %v, %v", nums, err)
	}
}
