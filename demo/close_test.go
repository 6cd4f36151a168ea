package demo_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/grpctap/grpctap/demo"
	"github.com/grpctap/grpctap/demo/demopb"
)

// A call that outlives Close's context is cut off, and Close reports why.
func TestCloseIsBounded(t *testing.T) {
	srv, err := demo.Start(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient(srv.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	st, err := demopb.NewDemoServiceClient(cc).Countdown(context.Background(),
		&demopb.CountdownRequest{Count: 100, Interval: durationpb.New(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Header(); err != nil { // headers come with the first tick: the call is running
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := srv.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close = %v, want DeadlineExceeded", err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("Close took %v", el)
	}
	// The first tick may already be buffered with the headers; the next Recv
	// must fail rather than wait for more ticks.
	for i := 0; ; i++ {
		if _, err := st.Recv(); err != nil {
			break
		}
		if i > 1 {
			t.Fatal("stream survived Close")
		}
	}
}
