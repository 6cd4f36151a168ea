package main

import (
	"context"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/grpctap/grpctap/internal/headers"
	"github.com/grpctap/grpctap/internal/rawcodec"
	"github.com/grpctap/grpctap/internal/stubserver"
	"github.com/grpctap/grpctap/mock"
	"github.com/grpctap/grpctap/store"
)

// TestRealRedactedValueSurvivesReplayAndMock: a header whose real value is
// the text "[redacted]" is recorded, replayed and answered by the mock as
// it was sent, while a header the recorder redacted (authorization,
// set-cookie) is left out of both: which headers were redacted is kept
// beside the values, not read from them.
func TestRealRedactedValueSurvivesReplayAndMock(t *testing.T) {
	ctx := context.Background()
	got := make(chan metadata.MD, 4)
	backend := stubserver.Serve(t, grpc.NewServer(grpc.ForceServerCodecV2(rawcodec.Codec{}),
		grpc.UnknownServiceHandler(func(srv any, ss grpc.ServerStream) error {
			md, _ := metadata.FromIncomingContext(ss.Context())
			got <- md
			_ = ss.SetHeader(metadata.Pairs("x-resp-note", headers.Redacted, "set-cookie", "s=1"))
			ss.SetTrailer(metadata.Pairs("x-trailer-note", headers.Redacted))
			return rawcodec.Echo(srv, ss)
		})))
	received := func(what string) metadata.MD {
		t.Helper()
		select {
		case md := <-got:
			return md
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the backend got no call", what)
			return nil
		}
	}

	call := func(addr string) (hdr, tr metadata.MD) {
		t.Helper()
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		cctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(ctx,
			"x-note", headers.Redacted, "authorization", "Bearer secret"), 10*time.Second)
		defer cancel()
		in, out := []byte("ping"), []byte(nil)
		if err := cc.Invoke(cctx, "/t.Notes/Note", &in, &out, grpc.ForceCodecV2(rawcodec.Codec{}), grpc.Header(&hdr), grpc.Trailer(&tr)); err != nil {
			t.Fatal(err)
		}
		return hdr, tr
	}
	// Record one call through the proxy, with the default redaction.
	db := recordThrough(t, backend, func(addr string) { call(addr) })
	received("recording")
	st, err := store.Open(ctx, db, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	calls, err := st.ListCalls(ctx, store.Filter{})
	if err != nil || len(calls) != 1 {
		t.Fatalf("capture holds %d calls (%v), want 1", len(calls), err)
	}
	c := calls[0]
	if !slices.Equal(c.Redacted, []string{"authorization", "set-cookie"}) {
		t.Errorf("redacted = %q, want authorization and set-cookie", c.Redacted)
	}
	if v := c.RequestHeaders["x-note"]; len(v) != 1 || v[0] != headers.Redacted {
		t.Errorf("recorded x-note = %q", v)
	}

	// Replay sends the real "[redacted]" and not the redacted credential.
	mustRun(t, "replay", "--db", db, "--target", backend, "--no-reflection", itoa(c.ID))
	md := received("replay")
	if v := md.Get("x-note"); len(v) != 1 || v[0] != headers.Redacted {
		t.Errorf("replayed x-note = %q, want %q", v, headers.Redacted)
	}
	if v := md.Get("authorization"); len(v) != 0 {
		t.Errorf("replay sent the redacted authorization as %q", v)
	}

	// The mock answers with the real "[redacted]" values, and without the
	// redacted set-cookie.
	m, err := mock.Load(ctx, st, mock.Options{Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	hdr, tr := call(stubserver.Serve(t, m.NewServer()))
	if v := hdr.Get("x-resp-note"); len(v) != 1 || v[0] != headers.Redacted {
		t.Errorf("mock's x-resp-note = %q, want %q", v, headers.Redacted)
	}
	if v := hdr.Get("set-cookie"); len(v) != 0 {
		t.Errorf("mock sent the redacted set-cookie as %q", v)
	}
	if v := tr.Get("x-trailer-note"); len(v) != 1 || v[0] != headers.Redacted {
		t.Errorf("mock's x-trailer-note = %q, want %q", v, headers.Redacted)
	}
}
