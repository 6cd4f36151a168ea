package store

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"testing"
	"time"
)

// BenchmarkReads200k measures the reads the CLI and the inspector make on
// a capture of 200,000 calls written as the recorder writes them (batches
// of 128 calls): the newest page, a page of a common method, of a rare one
// (1 call in 5,000), of a status, of a time range, and one call with its
// messages — at most 10 ms each (median) — and the overview of the whole
// capture and of its last tenth (Stats; at most 200 ms).
//
//	go test -run XXX -bench Reads200k ./store/
func BenchmarkReads200k(b *testing.B) {
	ctx := context.Background()
	path := filepath.Join(b.TempDir(), "reads.db")
	s, err := Open(ctx, path, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const n = 200_000
	t0 := time.Now().Add(-n * time.Millisecond)
	methods := []string{"/shop.v1.Cart/Get", "/shop.v1.Cart/Add", "/shop.v1.Catalog/Search", "/auth.v1.Auth/Check"}
	var ev []Event
	body := []byte("\n\x16item-0000000000000042")
	for i := 1; i <= n; i++ {
		at := t0.Add(time.Duration(i) * time.Millisecond)
		m := methods[i%len(methods)]
		if i%5000 == 0 {
			m = "/shop.v1.Admin/Reindex"
		}
		code := 0
		if i%17 == 0 {
			code = 5
		}
		k := s.NewKey()
		ev = append(ev,
			Event{Start: &CallStart{ID: k, Method: m, Protocol: "grpc", Backend: "127.0.0.1:9000", Time: at, Header: grpcGoHeaders}},
			Event{Message: &MessageRecord{CallID: k, Seq: 1, Direction: DirRequest, Time: at, Size: int64(len(body)), Raw: body}},
			Event{Message: &MessageRecord{CallID: k, Seq: 2, Direction: DirResponse, Time: at, Size: int64(len(body)), Raw: body}},
			Event{End: &CallEnd{CallID: k, Time: at.Add(time.Millisecond), Code: code}})
		if i%128 == 0 || i == n {
			if err := s.WriteBatch(ctx, ev); err != nil {
				b.Fatal(err)
			}
			ev = ev[:0]
		}
	}
	notFound := 5
	// A stream with 500 messages over 50 batches, for "one call".
	k := s.NewKey()
	if err := s.WriteBatch(ctx, []Event{{Start: &CallStart{ID: k, Method: "/shop.v1.Cart/Watch", Time: time.Now()}}}); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		var evs []Event
		for j := 1; j <= 10; j++ {
			evs = append(evs, Event{Message: &MessageRecord{CallID: k, Seq: i*10 + j, Direction: DirResponse, Time: time.Now(), Size: 24, Raw: body}})
		}
		if err := s.WriteBatch(ctx, evs); err != nil {
			b.Fatal(err)
		}
	}
	stream := evsID(b, s)
	r, err := Open(ctx, path, Options{ReadOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	for _, c := range []struct {
		name string
		run  func() (int, error)
	}{
		{"newest page", func() (int, error) { return page(r, PageQuery{}) }},
		{"method common", func() (int, error) { return page(r, PageQuery{Filter: Filter{Method: "/shop.v1.Cart/*"}}) }},
		{"method rare", func() (int, error) { return page(r, PageQuery{Filter: Filter{Method: "*Reindex"}}) }},
		{"status NOT_FOUND", func() (int, error) { return page(r, PageQuery{Filter: Filter{Status: &notFound}}) }},
		{"time range", func() (int, error) { return page(r, PageQuery{Filter: Filter{Since: t0.Add(150 * time.Second)}}) }},
		{"calls --limit 100 --method rare", func() (int, error) {
			cs, err := r.ListCalls(ctx, Filter{Method: "*Reindex", Limit: 100})
			return len(cs), err
		}},
		{"stats, whole capture", func() (int, error) {
			st, err := r.Stats(ctx, StatsQuery{})
			return int(st.Calls), err
		}},
		{"stats, last 10%", func() (int, error) {
			st, err := r.Stats(ctx, StatsQuery{Since: t0.Add(180 * time.Second)})
			return int(st.Calls), err
		}},
		{"one call, 500 messages", func() (int, error) {
			c, err := r.GetCall(ctx, stream)
			if err != nil {
				return 0, err
			}
			return len(c.Messages), nil
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			var durs []time.Duration
			for i := 0; i < b.N; i++ {
				start := time.Now()
				got, err := c.run()
				durs = append(durs, time.Since(start))
				if err != nil || got == 0 {
					b.Fatalf("%d results, %v", got, err)
				}
			}
			sort.Slice(durs, func(i, j int) bool { return durs[i] < durs[j] })
			b.ReportMetric(float64(durs[len(durs)/2].Microseconds())/1000, "median-ms")
		})
	}
}

func evsID(b *testing.B, s *Store) int64 {
	wm, err := s.CurrentWatermark(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	return wm.MaxID
}

func page(s *Store, q PageQuery) (int, error) {
	p, err := s.CallsPage(context.Background(), q)
	if err != nil {
		return 0, err
	}
	if len(p.Calls) == 0 {
		return 0, fmt.Errorf("empty page")
	}
	return len(p.Calls), nil
}
