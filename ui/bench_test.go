package ui_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/grpctap/grpctap/proxy"
	"github.com/grpctap/grpctap/recorder"
	"github.com/grpctap/grpctap/store"
	"github.com/grpctap/grpctap/ui"
)

// fillCapture writes n closed unary calls (request and response message,
// headers, a few methods and statuses) in batches of 2000 events.
func fillCapture(tb testing.TB, st *store.Store, n int) {
	tb.Helper()
	ctx := context.Background()
	t0 := time.Now().Add(-time.Duration(n) * time.Millisecond)
	methods := []string{"/shop.v1.Cart/Get", "/shop.v1.Cart/Add", "/shop.v1.Catalog/Search", "/auth.v1.Auth/Check"}
	batch := make([]store.Event, 0, 2000)
	flush := func() {
		if err := st.WriteBatch(ctx, batch); err != nil {
			tb.Fatal(err)
		}
		batch = batch[:0]
	}
	for i := 1; i <= n; i++ {
		id := int64(i)
		at := t0.Add(time.Duration(i) * time.Millisecond)
		code := 0
		if i%17 == 0 {
			code = 5
		}
		batch = append(batch,
			store.Event{Start: &store.CallStart{ID: id, Method: methods[i%len(methods)], Protocol: "grpc", Backend: "127.0.0.1:9000",
				Authority: "shop", Peer: "127.0.0.1:40000", Time: at, Header: store.Metadata{"x-user": {fmt.Sprintf("user-%d", i%1000)}}}},
			store.Event{Message: &store.MessageRecord{CallID: id, Seq: 1, Direction: store.DirRequest, Time: at, Size: 24,
				Raw: []byte("\n\x16item-" + fmt.Sprintf("%016d", i))}},
			store.Event{Message: &store.MessageRecord{CallID: id, Seq: 2, Direction: store.DirResponse, Time: at, Size: 12, Raw: []byte("\n\nresult-ok!")}},
			store.Event{End: &store.CallEnd{CallID: id, Time: at.Add(time.Millisecond), Code: code}},
		)
		if len(batch) >= 2000 {
			flush()
		}
	}
	flush()
}

// BenchmarkCallsFirstPage100k measures GET /api/calls (first page of 100,
// newest first) on a capture of 100,000 calls, in the handler (server
// time, no network).
func BenchmarkCallsFirstPage100k(b *testing.B) {
	st, err := store.Open(context.Background(), filepath.Join(b.TempDir(), "big.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	start := time.Now()
	fillCapture(b, st, 100_000)
	b.Logf("100k calls written in %v", time.Since(start).Round(time.Millisecond))
	u, err := ui.New(ui.Options{Store: st})
	if err != nil {
		b.Fatal(err)
	}
	defer u.Close(context.Background())
	for _, q := range []string{"", "method=*Cart*", "status=NOT_FOUND", "status=OK", "status=DATA_LOSS", "cursor=50000", "q=user-42", "q=item-0000000000099999"} {
		b.Run("query="+q, func(b *testing.B) {
			for b.Loop() {
				rec := httptest.NewRecorder()
				req := httptest.NewRequest("GET", "http://127.0.0.1/api/calls?"+q, nil)
				u.ServeHTTP(rec, req)
				if rec.Code != 200 {
					b.Fatalf("%d %s", rec.Code, rec.Body)
				}
			}
		})
	}
}

// BenchmarkEventsUnder5kCallsPerSecond drives the recorder with 5,000
// unary calls a second (start, request, response, end: 20,000 events/s)
// for as many calls as b.N, while one client reads /api/events. It
// reports what the page receives: batches and bytes per second, the share
// of calls announced one by one and accounted for (one by one or counted
// as overflow), and how long after the last call the last batch came.
func BenchmarkEventsUnder5kCallsPerSecond(b *testing.B) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(b.TempDir(), "live.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	rec, err := recorder.New(ctx, st, recorder.Options{})
	if err != nil {
		b.Fatal(err)
	}
	u, err := ui.New(ui.Options{Store: st, Recorder: rec})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(u)
	defer func() {
		_ = u.Close(ctx)
		srv.Close()
		_ = rec.Close(ctx)
	}()

	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, _ := http.NewRequestWithContext(rctx, "GET", srv.URL+"/api/events", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer res.Body.Close()

	var mu sync.Mutex
	var batches, bytes, announced, overflow int
	var lagged bool
	var last time.Time // when the last batch arrived
	readDone := make(chan struct{})
	target := b.N
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(nil, 16<<20)
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			now := time.Now()
			var bt ui.Batch
			if err := json.Unmarshal([]byte(data), &bt); err != nil {
				return
			}
			mu.Lock()
			batches++
			bytes += len(data)
			last = now
			lagged = lagged || bt.Lagged
			for _, c := range bt.Calls {
				if c.Ended {
					announced++
				}
			}
			overflow += bt.Overflow
			done := announced+overflow >= target
			mu.Unlock()
			if done {
				return
			}
		}
	}()

	md := metadata.MD{"content-type": {"application/grpc"}, "x-user": {"bench"}}
	const rate = 5000
	tick := time.NewTicker(10 * time.Millisecond) // 50 calls per tick
	defer tick.Stop()
	b.ResetTimer()
	begin := time.Now()
	for i := 0; i < b.N; {
		<-tick.C
		for j := 0; j < rate/100 && i < b.N; j++ {
			i++
			now := time.Now()
			co := rec.StartCall(&proxy.CallStart{Method: "/bench.v1.Svc/Do", Backend: "127.0.0.1:9", Peer: "127.0.0.1:1",
				Protocol: proxy.ProtocolGRPC, Header: md, Time: now})
			co.Message(proxy.NewMessage(1, proxy.Request, now, []byte("\n\x05hello")))
			co.ResponseHeader(&proxy.Header{MD: metadata.MD{}, Time: now})
			co.Message(proxy.NewMessage(2, proxy.Response, now, []byte("\n\x05world")))
			co.EndCall(&proxy.CallEnd{Status: status.New(codes.OK, ""), Trailer: metadata.MD{}, Time: now})
		}
	}
	sentAt := time.Now()
	sent := sentAt.Sub(begin)
	select {
	case <-readDone:
	case <-time.After(10 * time.Second):
		b.Log("the feed did not announce every call within 10s")
	}
	b.StopTimer()
	cancel()
	mu.Lock()
	defer mu.Unlock()
	secs := sent.Seconds()
	b.ReportMetric(float64(b.N)/secs, "calls/s")
	b.ReportMetric(float64(batches)/secs, "batches/s")
	b.ReportMetric(float64(bytes)/secs/1024, "KiB/s")
	// Calls past maxBatchCalls in one batch are only counted (the page
	// rereads its first page then): %detailed is the share announced one
	// by one.
	b.ReportMetric(float64(announced)/float64(b.N)*100, "%detailed")
	b.ReportMetric(float64(announced+overflow)/float64(b.N)*100, "%accounted")
	if last.After(sentAt) {
		b.ReportMetric(float64(last.Sub(sentAt).Milliseconds()), "ms-drain")
	}
	if lagged {
		b.Log("the feed lagged (events dropped for this subscriber; the page rereads /api/calls)")
	}
}
