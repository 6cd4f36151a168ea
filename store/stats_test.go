package store

import (
	"context"
	"testing"
	"time"
)

// TestStats: per-method counts, errors, open calls, bytes and latency
// percentiles, and a series over time, as a user reading the overview
// would check them by hand.
func TestStats(t *testing.T) {
	forEachEngine(t, func(t *testing.T, db string) {
		ctx := context.Background()
		s := openDB(t, db, Options{})
		var ev []Event
		// /a.S/Get: 100 calls, durations 1..100 ms, every 10th NOT_FOUND,
		// started one a second from t0. /a.S/Put: 3 calls, one still open.
		for i := 1; i <= 100; i++ {
			k := s.NewKey()
			start := t0.Add(time.Duration(i-1) * time.Second)
			code := 0
			if i%10 == 0 {
				code = 5
			}
			ev = append(ev, Event{Start: &CallStart{ID: k, Method: "/a.S/Get", Time: start}},
				Event{Message: &MessageRecord{CallID: k, Seq: 1, Direction: DirRequest, Time: start, Size: 10, Raw: []byte("0123456789")}},
				Event{End: &CallEnd{CallID: k, Time: start.Add(time.Duration(i) * time.Millisecond), Code: code}})
		}
		for i := 0; i < 3; i++ {
			k := s.NewKey()
			start := t0.Add(time.Duration(10*i) * time.Second)
			ev = append(ev, Event{Start: &CallStart{ID: k, Method: "/a.S/Put", Protocol: "grpc-web", Time: start}})
			if i < 2 {
				ev = append(ev, Event{End: &CallEnd{CallID: k, Time: start.Add(500 * time.Millisecond)}})
			}
		}
		if err := s.WriteBatch(ctx, ev); err != nil {
			t.Fatal(err)
		}
		st, err := s.Stats(ctx, StatsQuery{Since: t0, Until: t0.Add(100 * time.Second), Buckets: 10})
		if err != nil {
			t.Fatal(err)
		}
		if st.Calls != 103 || st.Errors != 10 || st.Open != 1 || len(st.Methods) != 2 {
			t.Fatalf("totals: %d calls, %d errors, %d open, %d methods", st.Calls, st.Errors, st.Open, len(st.Methods))
		}
		get := st.Methods[0]
		if get.Method != "/a.S/Get" || get.Calls != 100 || get.Errors != 10 || get.ErrorRate != 0.1 || get.RequestBytes != 1000 {
			t.Errorf("Get: %+v", get)
		}
		if get.P50MS != 50 || get.P95MS != 95 || get.P99MS != 99 {
			t.Errorf("Get percentiles: p50 %v p95 %v p99 %v, want 50, 95, 99", get.P50MS, get.P95MS, get.P99MS)
		}
		if put := st.Methods[1]; put.Calls != 3 || put.Open != 1 || put.P50MS != 500 || put.ErrorRate != 0 {
			t.Errorf("Put: %+v", put)
		}
		if len(st.Series) != 10 || st.BucketMS != 10000 {
			t.Fatalf("series: %d buckets of %v ms", len(st.Series), st.BucketMS)
		}
		for i, b := range st.Series {
			want := int64(10)
			if i < 3 {
				want = 11 // a Put call starts in each of the first three
			}
			if b.Calls != want || b.Errors != 1 || !b.Start.Equal(t0.Add(time.Duration(10*i)*time.Second)) {
				t.Errorf("bucket %d: %+v", i, b)
			}
		}
		// Filters: a method glob, a protocol, a window.
		if st, err := s.Stats(ctx, StatsQuery{Method: "*Put"}); err != nil || st.Calls != 3 || len(st.Methods) != 1 {
			t.Errorf("method filter: %+v %v", st, err)
		}
		if st, err := s.Stats(ctx, StatsQuery{Protocol: "grpc-web"}); err != nil || st.Calls != 3 {
			t.Errorf("protocol filter: %v %v", st.Calls, err)
		}
		if st, err := s.Stats(ctx, StatsQuery{Since: t0.Add(90 * time.Second), Until: t0.Add(95 * time.Second)}); err != nil || st.Calls != 5 {
			t.Errorf("window: %v calls, %v", st.Calls, err)
		}
	})
}
