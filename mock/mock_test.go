package mock

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/grpctap/grpctap/decode"
	"github.com/grpctap/grpctap/demo/demopb"
	"github.com/grpctap/grpctap/internal/rawcodec"
	"github.com/grpctap/grpctap/internal/stubserver"
	"github.com/grpctap/grpctap/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	echoMethod = "/grpctap.demo.v1.DemoService/Echo"
	chatMethod = "/grpctap.demo.v1.DemoService/Chat"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func raw(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func msg(seq int, dir string, at time.Duration, b []byte) store.Message {
	return store.Message{Seq: seq, Direction: dir, Time: t0.Add(at), Size: int64(len(b)), Raw: b}
}

// demoDecoder knows the demo schema, as a capture's saved descriptors would.
func demoDecoder(t *testing.T) *decode.Decoder {
	t.Helper()
	set := &descriptorpb.FileDescriptorSet{}
	set.File = append(set.File,
		protodesc.ToFileDescriptorProto(durationpb.File_google_protobuf_duration_proto),
		protodesc.ToFileDescriptorProto(timestamppb.File_google_protobuf_timestamp_proto),
		protodesc.ToFileDescriptorProto(demopb.File_demo_proto))
	b, err := proto.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	src, err := decode.NewFileDescriptorSet(b)
	if err != nil {
		t.Fatal(err)
	}
	return decode.New(decode.WithSources(src))
}

// serve starts m on loopback and returns a client connection to it.
func serve(t *testing.T, m *Mock) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(stubserver.Serve(t, m.NewServer()), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

func newMock(t *testing.T, opts Options, calls ...*store.CallWithMessages) *Mock {
	t.Helper()
	if opts.MaxLevel == 0 {
		opts.MaxLevel = Similar
	}
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	m := &Mock{opts: opts, log: opts.Logger, byMethod: map[string]*method{}}
	for _, c := range calls {
		m.add(context.Background(), c)
	}
	return m
}

func TestDecodedMatchIgnoresByteOrder(t *testing.T) {
	recordedReq := raw(t, &demopb.EchoRequest{Message: "m", Labels: map[string]string{"a": "1", "b": "2"}})
	other := raw(t, &demopb.EchoRequest{Message: "other"})
	calls := []*store.CallWithMessages{
		{Call: store.Call{ID: 1, Method: echoMethod, Status: &store.Status{Name: "OK"}}, Messages: []store.Message{
			msg(1, store.DirRequest, 0, recordedReq), msg(2, store.DirResponse, time.Millisecond, raw(t, &demopb.EchoResponse{Message: "first"}))}},
		{Call: store.Call{ID: 2, Method: echoMethod, Status: &store.Status{Name: "OK"}}, Messages: []store.Message{
			msg(1, store.DirRequest, 0, other), msg(2, store.DirResponse, time.Millisecond, raw(t, &demopb.EchoResponse{Message: "second"}))}},
	}
	dec := demoDecoder(t)
	defer dec.Close()
	cc := serve(t, newMock(t, Options{Decoder: dec}, calls...))
	// The same message with its map entries in the other order: other
	// bytes, equal fields.
	req := append(raw(t, &demopb.EchoRequest{Message: "m", Labels: map[string]string{"b": "2"}}), raw(t, &demopb.EchoRequest{Labels: map[string]string{"a": "1"}})...)
	var resp []byte
	var hdr metadata.MD
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := cc.Invoke(ctx, echoMethod, &req, &resp, grpc.ForceCodecV2(rawcodec.Codec{}), grpc.Header(&hdr)); err != nil {
		t.Fatal(err)
	}
	var got demopb.EchoResponse
	if err := proto.Unmarshal(resp, &got); err != nil || got.GetMessage() != "first" {
		t.Fatalf("answer %v, %v", &got, err)
	}
	if v := hdr.Get(HeaderMatch); len(v) != 1 || v[0] != "decoded; call=1" {
		t.Errorf("%s = %v", HeaderMatch, v)
	}

	// With --match exact the same request is NOT_FOUND, naming call 1.
	cc = serve(t, newMock(t, Options{Decoder: dec, MaxLevel: Exact}, calls...))
	err := cc.Invoke(ctx, echoMethod, &req, &resp, grpc.ForceCodecV2(rawcodec.Codec{}))
	if st := status.Convert(err); st.Code() != codes.NotFound || !strings.Contains(st.Message(), "nearest: call 1 (0 differing fields)") {
		t.Errorf("exact: %v", err)
	}
}

func TestServerSpeaksFirstWithTiming(t *testing.T) {
	greet := raw(t, &demopb.ChatMessage{Text: "welcome"})
	hi := raw(t, &demopb.ChatMessage{Text: "hi"})
	answer := raw(t, &demopb.ChatMessage{Text: "you said hi"})
	c := &store.CallWithMessages{Call: store.Call{ID: 7, Method: chatMethod, Status: &store.Status{Name: "OK"},
		ResponseHeaders: store.Metadata{"x-room": {"lobby"}}, Trailers: store.Metadata{"x-bye": {"1"}}},
		Messages: []store.Message{msg(1, store.DirResponse, 0, greet), msg(2, store.DirRequest, 10*time.Millisecond, hi), msg(3, store.DirResponse, 110*time.Millisecond, answer)}}
	cc := serve(t, newMock(t, Options{Timing: true}, c))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cs, err := cc.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, chatMethod, grpc.ForceCodecV2(rawcodec.Codec{}))
	if err != nil {
		t.Fatal(err)
	}
	// The greeting comes before the client sends anything.
	var b []byte
	if err := cs.RecvMsg(&b); err != nil || string(b) != string(greet) {
		t.Fatalf("greeting %q, %v", b, err)
	}
	hdr, _ := cs.Header()
	if hdr.Get("x-room")[0] != "lobby" || hdr.Get(HeaderMatch)[0] != "exact; call=7" {
		t.Errorf("headers %v", hdr)
	}
	sent := time.Now()
	if err := cs.SendMsg(&hi); err != nil {
		t.Fatal(err)
	}
	if err := cs.RecvMsg(&b); err != nil || string(b) != string(answer) {
		t.Fatalf("answer %q, %v", b, err)
	}
	if gap := time.Since(sent); gap < 90*time.Millisecond {
		t.Errorf("--timing: answer came %v after the request, recorded 100ms", gap)
	}
	if err := cs.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if err := cs.RecvMsg(&b); !errors.Is(err, io.EOF) {
		t.Fatalf("end: %v", err)
	}
	if cs.Trailer().Get("x-bye")[0] != "1" {
		t.Errorf("trailers %v", cs.Trailer())
	}
}

func TestTrailersOnlyFailureWithDetails(t *testing.T) {
	detail, err := anypb.New(&errdetails.ErrorInfo{Reason: "GONE"})
	if err != nil {
		t.Fatal(err)
	}
	c := &store.CallWithMessages{Call: store.Call{ID: 3, Method: echoMethod,
		Status:   &store.Status{Code: int(codes.NotFound), Name: "NOT_FOUND", Message: "no such thing", Details: [][]byte{raw(t, detail)}},
		Trailers: store.Metadata{"x-why": {"gone"}, "grpc-status": {"5"}, "x-blob-bin": {store.EncodeBin([]byte{0, 1, 2})}}},
		Messages: []store.Message{msg(1, store.DirRequest, 0, []byte("q"))}}
	cc := serve(t, newMock(t, Options{}, c))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, resp := []byte("q"), []byte(nil)
	var tr metadata.MD
	err = cc.Invoke(ctx, echoMethod, &req, &resp, grpc.ForceCodecV2(rawcodec.Codec{}), grpc.Trailer(&tr))
	st := status.Convert(err)
	if st.Code() != codes.NotFound || st.Message() != "no such thing" || len(st.Details()) != 1 {
		t.Fatalf("status %v details %v", err, st.Details())
	}
	if info, ok := st.Details()[0].(*errdetails.ErrorInfo); !ok || info.GetReason() != "GONE" {
		t.Errorf("detail %v", st.Details()[0])
	}
	if tr.Get("x-why")[0] != "gone" || tr.Get("x-blob-bin")[0] != "\x00\x01\x02" {
		t.Errorf("trailers %v", tr)
	}
}

func TestConcurrentSimilarMatches(t *testing.T) {
	var calls []*store.CallWithMessages
	for i := 1; i <= 5; i++ {
		calls = append(calls, &store.CallWithMessages{Call: store.Call{ID: int64(i), Method: echoMethod, Status: &store.Status{Name: "OK"}},
			Messages: []store.Message{
				msg(1, store.DirRequest, 0, raw(t, &demopb.EchoRequest{Message: strings.Repeat("x", i)})),
				msg(2, store.DirResponse, time.Millisecond, raw(t, &demopb.EchoResponse{Message: strings.Repeat("y", i)}))}})
	}
	cc := serve(t, newMock(t, Options{}, calls...))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			req := raw(t, &demopb.EchoRequest{Message: "zz"})
			var resp []byte
			var hdr metadata.MD
			err := cc.Invoke(ctx, echoMethod, &req, &resp, grpc.ForceCodecV2(rawcodec.Codec{}), grpc.Header(&hdr))
			if err == nil && !strings.HasPrefix(hdr.Get(HeaderMatch)[0], "similar; call=") {
				err = errors.New("match header " + hdr.Get(HeaderMatch)[0])
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
