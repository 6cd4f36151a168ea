package collection

import (
	"context"
	"encoding/json"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/grpctap/grpctap/decode"
	"github.com/grpctap/grpctap/demo/demopb"
	"github.com/grpctap/grpctap/internal/headers"
	"github.com/grpctap/grpctap/internal/rawcodec"
	"github.com/grpctap/grpctap/internal/stubserver"
	"github.com/grpctap/grpctap/replay"
	"github.com/grpctap/grpctap/store"
)

// TestRunRedactedHeaders: a saved request sends its own metadata even
// where its example's recording redacted that header; the example's
// redacted response headers are not compared, whether it names them (saved
// now) or only shows "[redacted]" (saved before the names were kept), and
// an example whose header really read "[redacted]" is compared.
func TestRunRedactedHeaders(t *testing.T) {
	got := make(chan metadata.MD, 8)
	addr := stubserver.Serve(t, grpc.NewServer(grpc.ForceServerCodecV2(rawcodec.Codec{}),
		grpc.UnknownServiceHandler(func(srv any, ss grpc.ServerStream) error {
			md, _ := metadata.FromIncomingContext(ss.Context())
			got <- md
			_ = ss.SetHeader(metadata.Pairs("set-cookie", "s=2"))
			return rawcodec.Echo(srv, ss)
		})))
	// The well-known types demo.proto imports are built in.
	b, _ := proto.Marshal(&descriptorpb.FileDescriptorSet{File: []*descriptorpb.FileDescriptorProto{protodesc.ToFileDescriptorProto(demopb.File_demo_proto)}})
	src, err := decode.NewFileDescriptorSet(b)
	if err != nil {
		t.Fatal(err)
	}
	rp := replay.New(replay.Options{Target: addr})
	defer rp.Close()
	run := &Runner{Replayer: rp, Comparator: &replay.Comparator{Decoder: decode.New(decode.WithSources(src))}}

	example := func(redacted []string) json.RawMessage {
		c := store.CallWithMessages{Call: store.Call{ID: 1, Method: "/grpctap.demo.v1.DemoService/Echo", State: "closed",
			Status:          &store.Status{Name: "OK", Details: [][]byte{}},
			RequestHeaders:  store.Metadata{"authorization": {headers.Redacted}},
			ResponseHeaders: store.Metadata{"set-cookie": {headers.Redacted}}, Trailers: store.Metadata{}, Redacted: redacted},
			Messages: []store.Message{}}
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name       string
		redacted   []string
		cookieDiff bool
	}{
		{"names kept", []string{"authorization", "set-cookie"}, false},
		{"saved before names were kept", nil, false},
		{"a real [redacted]", []string{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := &Request{Name: "echo", Method: "/grpctap.demo.v1.DemoService/Echo", Messages: []json.RawMessage{json.RawMessage(`{}`)},
				Metadata: map[string][]string{"authorization": {"Bearer fresh"}}, Examples: []json.RawMessage{example(tc.redacted)}}
			res := run.RunOne(context.Background(), q)
			if res.Verdict == replay.Error {
				t.Fatalf("run: %s", res.Error)
			}
			if v := (<-got).Get("authorization"); len(v) != 1 || v[0] != "Bearer fresh" {
				t.Errorf("backend got authorization %q, want the request's own", v)
			}
			diff := false
			for _, d := range res.Diffs {
				if d.Where == "header" && d.Path == "set-cookie" {
					diff = true
				}
			}
			if diff != tc.cookieDiff {
				t.Errorf("set-cookie compared: %v, want %v (diffs %+v)", diff, tc.cookieDiff, res.Diffs)
			}
		})
	}
}
