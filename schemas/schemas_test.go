package schemas_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/grpctap/grpctap/demo"
	"github.com/grpctap/grpctap/demo/demopb"
	"github.com/grpctap/grpctap/internal/stubserver"
	"github.com/grpctap/grpctap/proxy"
	"github.com/grpctap/grpctap/recorder"
	"github.com/grpctap/grpctap/schemas"
	"github.com/grpctap/grpctap/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestLearnThenDecodeWithoutBackend records calls through the proxy with
// reflection on, stops the backend, and decodes the capture from its saved
// descriptors alone, with no flags and no reflection.
func TestLearnThenDecodeWithoutBackend(t *testing.T) {
	ctx := context.Background()
	dbPath := filepath.Join(t.TempDir(), "cap.db")
	st, err := store.Open(ctx, dbPath, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	backend, err := demo.Start(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rec, err := recorder.New(ctx, st, recorder.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	live, err := schemas.OpenDecoder(ctx, st, schemas.DecoderOptions{Reflection: true})
	if err != nil {
		t.Fatal(err)
	}
	learner := schemas.NewLearner(live, st, quiet)
	p, err := proxy.New(proxy.Options{Backend: backend.Addr(), Observer: proxy.Tee(rec, learner), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	addr, stopProxy := stubserver.Start(t, p.NewServer())

	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	client := demopb.NewDemoServiceClient(cc)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := client.Echo(cctx, &demopb.EchoRequest{Message: "remember me", Author: &demopb.Author{Name: "ada", Mood: demopb.Mood_MOOD_HAPPY}}); err != nil {
		t.Fatal(err)
	}
	stubserver.WaitFor(t, 10*time.Second, func() error {
		if _, _, err := st.LoadDescriptors(ctx, ""); err != nil {
			return fmt.Errorf("learned schema never saved: %w", err)
		}
		return nil
	})

	// Everything but the capture file goes away.
	_ = cc.Close()
	stopProxy()
	_ = p.Close()
	learner.Close()
	_ = live.Close()
	if err := rec.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := backend.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	ro, err := store.Open(ctx, dbPath, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	dec, err := schemas.OpenDecoder(ctx, ro, schemas.DecoderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	calls, err := ro.ListCalls(ctx, store.Filter{})
	if err != nil || len(calls) != 1 {
		t.Fatalf("calls: %v, %v", calls, err)
	}
	c, err := ro.GetCall(ctx, calls[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	schemas.DecodeCall(ctx, dec, c)
	if c.RPC != store.RPCUnary || !c.RPCFromSchema {
		t.Errorf("rpc = %q (from schema %v), want unary from the schema", c.RPC, c.RPCFromSchema)
	}
	if len(c.Messages) != 2 {
		t.Fatalf("%d messages, want 2", len(c.Messages))
	}
	var req struct {
		Message string
		Author  struct{ Name, Mood string }
	}
	if err := json.Unmarshal(c.Messages[0].JSON, &req); err != nil {
		t.Fatalf("request JSON %s: %v (decode_error %q)", c.Messages[0].JSON, err, c.Messages[0].DecodeError)
	}
	if req.Message != "remember me" || req.Author.Name != "ada" || req.Author.Mood != "MOOD_HAPPY" {
		t.Errorf("decoded request = %+v", req)
	}
	if !strings.Contains(string(c.Messages[1].JSON), `"receivedAt"`) {
		t.Errorf("response JSON lacks receivedAt: %s", c.Messages[1].JSON)
	}
}

// TestDecodeWithoutSchema: with no schema at all, messages still show as a
// schemaless tree with the reason.
func TestDecodeWithoutSchema(t *testing.T) {
	dec, err := schemas.OpenDecoder(context.Background(), nil, schemas.DecoderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	c := &store.CallWithMessages{Call: store.Call{Method: "/x.Y/Z", RPC: store.RPCUnary}, Messages: []store.Message{
		{Seq: 1, Direction: store.DirRequest, Raw: []byte{0x0a, 0x02, 'h', 'i', 0x10, 0x07}, Size: 6},
	}}
	schemas.DecodeCall(context.Background(), dec, c)
	m := c.Messages[0]
	if m.JSON != nil || len(m.Schemaless) == 0 || !strings.Contains(m.DecodeError, "/x.Y/Z") {
		t.Errorf("schemaless result: json %s, schemaless %s, error %q", m.JSON, m.Schemaless, m.DecodeError)
	}
}
