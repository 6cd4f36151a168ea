package decode

import (
	"context"
	"encoding/json"
	"flag"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/reflection"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"

	"github.com/grpctap/grpctap/internal/stubserver"
)

var update = flag.Bool("update", false, "rewrite golden files and the test protoset")

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var (
	protoDir     = filepath.Join("..", "testdata", "proto")
	protosetPath = filepath.Join("..", "testdata", "protoset", "kitchen.protoset")
	goldenDir    = filepath.Join("..", "testdata", "golden", "decode")
	kitchenProto = "kitchen/v1/kitchen.proto"
)

const (
	placeOrder = "/kitchen.v1.KitchenService/PlaceOrder"
	watch      = "/kitchen.v1.KitchenService/Watch"
)

func protoFilesSource(t testing.TB) Source {
	t.Helper()
	src, err := NewProtoFiles([]string{protoDir}, []string{kitchenProto})
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func protosetSource(t testing.TB) Source {
	t.Helper()
	src, err := NewProtoset(protosetPath)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// serviceList advertises the kitchen service to the reflection server
// without any generated code or handler behind it.
type serviceList []string

func (s serviceList) GetServiceInfo() map[string]grpc.ServiceInfo {
	m := map[string]grpc.ServiceInfo{}
	for _, name := range s {
		m[name] = grpc.ServiceInfo{}
	}
	return m
}

// startBackend serves reflection (v1 and/or v1alpha) for the kitchen protos
// parsed at run time, on 127.0.0.1:0. It returns the address and a stop func
// (also registered with t.Cleanup) for tests that kill the backend early.
func startBackend(t testing.TB, v1, v1alpha bool) (addr string, stop func()) {
	t.Helper()
	src := protoFilesSource(t).(*staticSource)
	opts := reflection.ServerOptions{
		Services:           serviceList{"kitchen.v1.KitchenService"},
		DescriptorResolver: src.fs.reg,
	}
	srv := grpc.NewServer()
	if v1 {
		reflectionv1.RegisterServerReflectionServer(srv, reflection.NewServerV1(opts))
	}
	if v1alpha {
		reflectionv1alpha.RegisterServerReflectionServer(srv, reflection.NewServer(opts))
	}
	return stubserver.Start(t, srv)
}

func dialInsecure(backend string) (grpc.ClientConnInterface, error) {
	return grpc.NewClient(backend, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

// newDecoder returns a decoder closed at the end of the test.
func newDecoder(t testing.TB, opts ...Option) *Decoder {
	t.Helper()
	d := New(opts...)
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	})
	return d
}

func bg() context.Context { return context.Background() }

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
