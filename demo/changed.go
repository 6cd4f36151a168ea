package demo

import (
	"context"
	"errors"
	"io"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/grpctap/grpctap/demo/demopb"
)

// Changed answers like Service with a few fields changed, as a new
// version of a backend might: Echo's author name in capitals, its label k
// "changed" and a tag "extra"; Sum's total always 42; Countdown from count
// instead of count-1, at once; Chat "you said: …". `grpctap demo
// --changed` serves it, so that tests and replays made against the demo
// have something to catch.
type Changed struct {
	*Service
}

// Echo answers as Service.Echo, changed.
func (c Changed) Echo(ctx context.Context, req *demopb.EchoRequest) (*demopb.EchoResponse, error) {
	resp, err := c.Service.Echo(ctx, req)
	if err != nil {
		return nil, err
	}
	resp.Author = &demopb.Author{Name: strings.ToUpper(resp.GetAuthor().GetName()), Mood: resp.GetAuthor().GetMood()}
	resp.Labels = map[string]string{"k": "changed"}
	resp.Tags = append(resp.Tags, "extra")
	return resp, nil
}

// Sum counts the numbers but answers a total of 42.
func (Changed) Sum(stream grpc.ClientStreamingServer[demopb.SumRequest, demopb.SumResponse]) error {
	var n int32
	for {
		_, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&demopb.SumResponse{Total: 42, Count: n})
		}
		if err != nil {
			return err
		}
		n++
	}
}

// Countdown sends count ticks at once, remaining from count to 1.
func (Changed) Countdown(req *demopb.CountdownRequest, stream grpc.ServerStreamingServer[demopb.Tick]) error {
	for i := min(req.GetCount(), MaxTicks); i > 0; i-- {
		if err := stream.Send(&demopb.Tick{Remaining: i, At: timestamppb.Now()}); err != nil {
			return err
		}
	}
	return nil
}

// Chat answers each message with "you said: …".
func (Changed) Chat(stream grpc.BidiStreamingServer[demopb.ChatMessage, demopb.ChatMessage]) error {
	return chat(stream, func(in *demopb.ChatMessage) string { return "you said: " + in.GetText() })
}
