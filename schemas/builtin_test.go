package schemas_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"

	"github.com/grpctap/grpctap/internal/stubserver"
	"github.com/grpctap/grpctap/internal/syncbuf"
	"github.com/grpctap/grpctap/proxy"
	"github.com/grpctap/grpctap/recorder"
	"github.com/grpctap/grpctap/schemas"
	"github.com/grpctap/grpctap/store"
)

// TestBuiltinSchemas: health checks and server reflection calls (v1 and
// v1alpha) through the proxy, to a backend that serves no reflection,
// are decoded from the schemas grpctap carries, and the learner logs no
// "no schema for method" for them, as it did on every run.
func TestBuiltinSchemas(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "cap.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// The backend serves health, and no reflection: a stub reads one
	// request of any other method and answers one message, so that the
	// request is surely recorded.
	srv := grpc.NewServer(grpc.UnknownServiceHandler(func(_ any, ss grpc.ServerStream) error {
		var req reflectionv1.ServerReflectionRequest
		if err := ss.RecvMsg(&req); err != nil {
			return err
		}
		return ss.SendMsg(&reflectionv1.ServerReflectionResponse{ValidHost: "stub"})
	}))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	backend := stubserver.Serve(t, srv)

	var logs syncbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	rec, err := recorder.New(ctx, st, recorder.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	live, err := schemas.OpenDecoder(ctx, st, schemas.DecoderOptions{Reflection: true})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	learner := schemas.NewLearner(live, st, log)
	defer learner.Close()
	p, err := proxy.New(proxy.Options{Backend: backend, Observer: proxy.Tee(rec, learner), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() }) // after the server stops
	cc, err := grpc.NewClient(stubserver.Serve(t, p.NewServer()), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()

	if _, err := healthpb.NewHealthClient(cc).Check(cctx, &healthpb.HealthCheckRequest{Service: "svc-a"}); err == nil {
		t.Fatal("health of an unknown service answered OK")
	}
	s1, err := reflectionv1.NewServerReflectionClient(cc).ServerReflectionInfo(cctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = s1.Send(&reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_ListServices{ListServices: "v1"}})
	if _, err := s1.Recv(); err != nil {
		t.Fatal(err)
	}
	s2, err := reflectionv1alpha.NewServerReflectionClient(cc).ServerReflectionInfo(cctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = s2.Send(&reflectionv1alpha.ServerReflectionRequest{MessageRequest: &reflectionv1alpha.ServerReflectionRequest_FileByFilename{FileByFilename: "v1alpha.proto"}})
	if _, err := s2.Recv(); err != nil {
		t.Fatal(err)
	}
	// A method nobody knows: the learner logs it, after the others.
	_ = cc.Invoke(cctx, "/x.Unknown/Call", &healthpb.HealthCheckRequest{}, &healthpb.HealthCheckResponse{})
	for !strings.Contains(logs.String(), "/x.Unknown/Call") {
		select {
		case <-cctx.Done():
			t.Fatalf("the learner never looked at /x.Unknown/Call:\n%s", logs.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "no schema") && !strings.Contains(line, "/x.Unknown/Call") {
			t.Errorf("logged for a built-in service: %s", line)
		}
	}

	if err := rec.Close(ctx); err != nil {
		t.Fatal(err)
	}
	dec, err := schemas.OpenDecoder(ctx, st, schemas.DecoderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	want := map[int64]string{1: `"service":"svc-a"`, 2: `"listServices":"v1"`, 3: `"fileByFilename":"v1alpha.proto"`}
	for id, js := range want {
		c, err := st.GetCall(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		schemas.DecodeCall(ctx, dec, c)
		if len(c.Messages) == 0 || !strings.Contains(strings.ReplaceAll(string(c.Messages[0].JSON), " ", ""), js) {
			t.Errorf("call %d %s: request not decoded to %s: %+v", id, c.Method, js, c.Messages)
		}
	}
}
