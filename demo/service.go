package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/grpctap/grpctap/demo/demopb"
)

const (
	// DefaultTickInterval is Countdown's interval when the request sets none.
	DefaultTickInterval = 200 * time.Millisecond
	// MaxTickInterval caps Countdown's interval.
	MaxTickInterval = 5 * time.Second
	// MaxTicks caps Countdown's count.
	MaxTicks = 1000
	// MaxDelay caps Echo's delay.
	MaxDelay = time.Minute
)

// Service implements demopb.DemoServiceServer.
type Service struct {
	demopb.UnimplementedDemoServiceServer
}

// NewService returns the demo service implementation.
func NewService() *Service { return &Service{} }

// Register registers the demo service and server reflection (v1 and v1alpha) on s.
func Register(s *grpc.Server) { register(s, Options{}) }

// Options choose how a demo backend answers. The zero value is the demo
// service as documented.
type Options struct {
	// Changed serves Changed instead: the same methods, some answers
	// altered, as a changed backend.
	Changed bool
}

func register(s *grpc.Server, o Options) {
	var impl demopb.DemoServiceServer = NewService()
	if o.Changed {
		impl = Changed{NewService()}
	}
	demopb.RegisterDemoServiceServer(s, impl)
	reflection.Register(s)
}

// Echo answers with the request's content. Incoming metadata keys starting
// with "x-" are sent back as response headers, and the trailer
// "x-echo-handled-at" is always set. A delay waits (honouring the deadline);
// a fail field turns the answer into that status, with an ErrorInfo and a
// BadRequest detail.
func (*Service) Echo(ctx context.Context, req *demopb.EchoRequest) (*demopb.EchoResponse, error) {
	received := time.Now()
	md, _ := metadata.FromIncomingContext(ctx)
	hdr := metadata.MD{}
	for k, v := range md {
		if strings.HasPrefix(k, "x-") {
			hdr[k] = append([]string(nil), v...)
		}
	}
	if err := grpc.SetHeader(ctx, hdr); err != nil {
		return nil, err
	}
	if d := req.GetDelay(); d != nil {
		if err := d.CheckValid(); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "delay: %v", err)
		}
		if err := sleep(ctx, min(d.AsDuration(), MaxDelay)); err != nil {
			return nil, status.FromContextError(err).Err()
		}
	}
	defer grpc.SetTrailer(ctx, metadata.Pairs("x-echo-handled-at", time.Now().UTC().Format(time.RFC3339Nano)))
	if f := req.GetFail(); f != nil {
		return nil, failure(f)
	}
	return &demopb.EchoResponse{
		Message:    req.GetMessage(),
		Author:     req.GetAuthor(),
		Tags:       req.GetTags(),
		Labels:     req.GetLabels(),
		ReceivedAt: timestamppb.New(received),
	}, nil
}

func failure(f *demopb.FailWith) error {
	code := codes.Code(f.GetCode())
	if code == codes.OK || code > codes.Unauthenticated {
		return status.Errorf(codes.InvalidArgument, "fail.code %d is not an error code", f.GetCode())
	}
	st := status.New(code, f.GetMessage())
	withDetails, err := st.WithDetails(
		&errdetails.ErrorInfo{
			Reason:   "DEMO_REQUESTED_FAILURE",
			Domain:   "demo.grpctap.dev",
			Metadata: map[string]string{"requested_code": code.String()},
		},
		&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{
			Field:       "fail",
			Description: "the caller asked for this error",
		}}},
	)
	if err != nil {
		return st.Err()
	}
	return withDetails.Err()
}

// Sum adds every number the client sends and answers once it half-closes.
func (*Service) Sum(stream grpc.ClientStreamingServer[demopb.SumRequest, demopb.SumResponse]) error {
	var total float64
	var count int32
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&demopb.SumResponse{Total: total, Count: count})
		}
		if err != nil {
			return err
		}
		switch v := req.GetValue().(type) {
		case *demopb.SumRequest_Integer:
			total += float64(v.Integer)
		case *demopb.SumRequest_Real:
			total += v.Real
		}
		count++
	}
}

// Countdown sends Count ticks (capped at MaxTicks), one per interval,
// stopping early when the call is cancelled.
func (*Service) Countdown(req *demopb.CountdownRequest, stream grpc.ServerStreamingServer[demopb.Tick]) error {
	n := min(req.GetCount(), MaxTicks)
	if n < 0 {
		return status.Error(codes.InvalidArgument, "count must not be negative")
	}
	interval := DefaultTickInterval
	if d := req.GetInterval(); d != nil {
		if err := d.CheckValid(); err != nil || d.AsDuration() <= 0 {
			return status.Error(codes.InvalidArgument, "interval must be a positive duration")
		}
		interval = min(d.AsDuration(), MaxTickInterval)
	}
	ctx := stream.Context()
	t := time.NewTicker(interval)
	defer t.Stop()
	for remaining := n; remaining > 0; remaining-- {
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case now := <-t.C:
			if err := stream.Send(&demopb.Tick{Remaining: remaining - 1, At: timestamppb.New(now)}); err != nil {
				return err
			}
		}
	}
	return nil
}

// Chat answers each message as soon as it arrives.
func (*Service) Chat(stream grpc.BidiStreamingServer[demopb.ChatMessage, demopb.ChatMessage]) error {
	return chat(stream, func(in *demopb.ChatMessage) string {
		return fmt.Sprintf("%s said: %s", in.GetAuthor().GetName(), in.GetText())
	})
}

// chat answers each message with the text reply gives it, as soon as it
// arrives.
func chat(stream grpc.BidiStreamingServer[demopb.ChatMessage, demopb.ChatMessage], reply func(*demopb.ChatMessage) string) error {
	for {
		in, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		out := &demopb.ChatMessage{
			Author:   &demopb.Author{Name: "grpctap-demo", Mood: demopb.Mood_MOOD_CURIOUS},
			Text:     reply(in),
			SentAt:   timestamppb.Now(),
			Mentions: []string{in.GetAuthor().GetName()},
		}
		if err := stream.Send(out); err != nil {
			return err
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Server is a running demo backend.
type Server struct {
	lis    net.Listener
	srv    *grpc.Server
	done   chan struct{}
	err    error // Serve's result, valid after done is closed
	once   sync.Once
	forced error // ctx's error when Close had to stop hard
}

// Start listens on addr (e.g. "127.0.0.1:0") and serves the demo service and
// reflection until Close. ctx bounds only the start-up.
func Start(ctx context.Context, addr string) (*Server, error) {
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("demo: listen %s: %w", addr, err)
	}
	return Serve(lis), nil
}

// Serve serves the demo service and reflection on lis until Close, which
// closes lis.
func Serve(lis net.Listener) *Server { return ServeWith(lis, Options{}) }

// ServeWith is Serve answering as o says.
func ServeWith(lis net.Listener, o Options) *Server {
	s := &Server{lis: lis, srv: grpc.NewServer(), done: make(chan struct{})}
	register(s.srv, o)
	go func() {
		defer close(s.done)
		s.err = s.srv.Serve(lis)
	}()
	return s
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// Close stops the server gracefully, letting running calls finish until ctx
// ends, then stops it hard. It waits for the serving goroutine to exit.
func (s *Server) Close(ctx context.Context) error {
	s.once.Do(func() {
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			s.srv.GracefulStop()
		}()
		select {
		case <-stopped:
		case <-ctx.Done():
			s.forced = ctx.Err()
			s.srv.Stop()
			<-stopped
		}
		<-s.done
	})
	if s.err != nil && !errors.Is(s.err, grpc.ErrServerStopped) {
		return fmt.Errorf("demo: serve: %w", s.err)
	}
	return s.forced
}
