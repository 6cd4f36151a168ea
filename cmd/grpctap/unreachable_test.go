package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/grpctap/grpctap/demo/demopb"
	"github.com/grpctap/grpctap/internal/stubserver"
	"github.com/grpctap/grpctap/store"
)

// TestUnreachableBackendKeepsTheRequest: a unary and a client-streaming
// call through a proxy whose backend port is closed fail with UNAVAILABLE
// naming the backend, and the capture holds what the client sent.
func TestUnreachableBackendKeepsTheRequest(t *testing.T) {
	db := t.TempDir() + "/cap.db"
	dead := stubserver.DeadAddr(t)
	p := start(t, "proxy", "--listen", "127.0.0.1:0", "--backend", dead, "--db", db, "--ui", "")
	cl := demoClient(t, p.waitFor(t, listeningLine))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	unavailable := func(what string, err error) {
		t.Helper()
		if st := status.Convert(err); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), dead) {
			t.Errorf("%s: %v, want UNAVAILABLE naming %s", what, err, dead)
		}
	}
	echo := &demopb.EchoRequest{Message: "are you there?", Tags: []string{"a"}}
	_, err := cl.Echo(ctx, echo)
	unavailable("Echo", err)

	sums := []*demopb.SumRequest{
		{Value: &demopb.SumRequest_Integer{Integer: 1}},
		{Value: &demopb.SumRequest_Integer{Integer: 20}},
		{Value: &demopb.SumRequest_Real{Real: 0.5}},
	}
	sum, err := cl.Sum(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range sums {
		if err := sum.Send(r); err != nil {
			t.Fatalf("Sum send: %v", err)
		}
	}
	_, err = sum.CloseAndRecv()
	unavailable("Sum", err)
	if err := p.stop(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}

	recorded := func(id string, want ...proto.Message) {
		t.Helper()
		var c store.CallWithMessages
		if err := json.Unmarshal([]byte(mustRun(t, "show", id, "--db", db, "--json")), &c); err != nil {
			t.Fatal(err)
		}
		if c.Status == nil || c.Status.Name != "UNAVAILABLE" || !strings.Contains(c.Status.Message, dead) {
			t.Errorf("call %s (%s): status %+v, want UNAVAILABLE naming %s", id, c.Method, c.Status, dead)
		}
		if int(c.RequestCount) != len(want) || len(c.Messages) != len(want) {
			t.Fatalf("call %s (%s): %d request messages recorded (%d in all), want %d", id, c.Method, c.RequestCount, len(c.Messages), len(want))
		}
		for i, m := range c.Messages {
			b, err := proto.Marshal(want[i])
			if err != nil {
				t.Fatal(err)
			}
			if m.Direction != store.DirRequest || !bytes.Equal(m.Raw, b) {
				t.Errorf("call %s message %d: %s %x, want the request %x", id, i+1, m.Direction, m.Raw, b)
			}
		}
	}
	recorded("1", echo)
	recorded("2", sums[0], sums[1], sums[2])
}
