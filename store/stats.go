package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"zombiezen.com/go/sqlite"
)

// StatsQuery selects the calls an overview is made of. The zero
// StatsQuery covers the whole capture in DefaultStatsBuckets buckets.
type StatsQuery struct {
	Method   string    // glob on the full method, as in Filter; "" any
	Protocol string    // "grpc", "grpc-web", "grpc-web-text"; "" any
	Proxy    string    // the recording process's name, as in Filter; "" any
	Since    time.Time // calls started at or after; zero: from the first
	Until    time.Time // calls started before; zero: up to now
	// Buckets is how many time buckets the series has. Default
	// DefaultStatsBuckets, at most MaxStatsBuckets.
	Buckets int
}

// Bucket counts of StatsQuery.
const (
	DefaultStatsBuckets = 60
	MaxStatsBuckets     = 1000
)

// Stats is an overview of a capture's traffic: per method, and over time.
// Latencies are of closed calls, in milliseconds; error counts are of
// closed calls whose status is not OK.
type Stats struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// Calls started in [From, To), Open of them still running.
	Calls   int64         `json:"calls"`
	Errors  int64         `json:"errors"`
	Open    int64         `json:"open"`
	Methods []MethodStats `json:"methods"` // most calls first
	// Series splits [From, To) into equal buckets of BucketMS.
	BucketMS float64  `json:"bucket_ms"`
	Series   []Bucket `json:"series"`
}

// MethodStats is one method's share of Stats.
type MethodStats struct {
	Method        string  `json:"method"`
	Calls         int64   `json:"calls"`
	Errors        int64   `json:"errors"`
	ErrorRate     float64 `json:"error_rate"` // errors / closed calls
	Open          int64   `json:"open"`
	P50MS         float64 `json:"p50_ms"`
	P95MS         float64 `json:"p95_ms"`
	P99MS         float64 `json:"p99_ms"`
	RequestBytes  int64   `json:"request_bytes"`
	ResponseBytes int64   `json:"response_bytes"`
}

// Bucket is one time bucket of Stats.Series.
type Bucket struct {
	Start  time.Time `json:"start"`
	Calls  int64     `json:"calls"`
	Errors int64     `json:"errors"`
	P50MS  float64   `json:"p50_ms"`
	P95MS  float64   `json:"p95_ms"`
	P99MS  float64   `json:"p99_ms"`
}

// window returns the number of buckets and the end of the window q asks
// for, defaults applied.
func (q StatsQuery) window() (buckets int, until time.Time) {
	buckets = q.Buckets
	if buckets <= 0 {
		buckets = DefaultStatsBuckets
	}
	until = q.Until
	if until.IsZero() {
		until = time.Now()
	}
	return min(buckets, MaxStatsBuckets), until
}

// statsShard is what one scan over some id ranges gathers.
type statsShard struct {
	byMethod map[string]*methodAcc
	rows     []statsRow
	minStart int64
	err      error
}

type methodAcc struct {
	MethodStats
	durs []float64
}

type statsRow struct {
	start int64
	dur   float64
	err   bool
	open  bool
}

// Stats computes the overview of the calls q selects: counts and sums in
// a pass over them (narrowed by method and time through the batches table;
// the ids split in two, scanned at once on two read connections), then
// percentiles from their durations.
func (s *liteStore) Stats(ctx context.Context, q StatsQuery) (*Stats, error) {
	nb, to := q.window()
	from := q.Since
	ranges, all, err := s.candidates(ctx, q.Method, q.Since)
	if err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	if all {
		var lo, hi sql.NullInt64
		if err := s.rdb.QueryRowContext(ctx, "SELECT min(id), max(id) FROM calls").Scan(&lo, &hi); err != nil {
			return nil, fmt.Errorf("stats: %w", err)
		}
		ranges = []idRange{{lo.Int64, hi.Int64}}
	}
	conds, args := Filter{Method: q.Method, Since: q.Since, Proxy: q.Proxy}.conds(true, s.version < 2)
	if q.Protocol != "" {
		conds = append(conds, "+protocol = ?")
		args = append(args, q.Protocol)
	}
	conds = append(conds, "+start_ns < ?", "id BETWEEN ? AND ?")
	args = append(args, to.UnixNano())

	shards := make([]statsShard, 2)
	var wg sync.WaitGroup
	for i, part := range splitRanges(ranges, len(shards)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			shards[i] = s.statsScan(ctx, conds, args, part)
		}()
	}
	wg.Wait()
	return buildStats(from, to, nb, shards)
}

// buildStats joins the shards of a scan into the overview of [from, to)
// (from zero: the earliest start) in nb buckets.
func buildStats(from, to time.Time, nb int, shards []statsShard) (*Stats, error) {
	byMethod := map[string]*methodAcc{}
	var rows []statsRow
	var minStart int64
	for _, sh := range shards {
		if sh.err != nil {
			return nil, fmt.Errorf("stats: %w", sh.err)
		}
		for name, m := range sh.byMethod {
			t := byMethod[name]
			if t == nil {
				byMethod[name] = m
				continue
			}
			t.Calls += m.Calls
			t.Open += m.Open
			t.Errors += m.Errors
			t.RequestBytes += m.RequestBytes
			t.ResponseBytes += m.ResponseBytes
			t.durs = append(t.durs, m.durs...)
		}
		rows = append(rows, sh.rows...)
		if sh.minStart != 0 && (minStart == 0 || sh.minStart < minStart) {
			minStart = sh.minStart
		}
	}

	if from.IsZero() {
		from = to
		if minStart != 0 {
			from = time.Unix(0, minStart)
		}
	}
	st := &Stats{From: from.UTC(), To: to.UTC(), Methods: []MethodStats{}, Series: make([]Bucket, nb)}
	for _, m := range byMethod {
		slices.Sort(m.durs)
		m.P50MS, m.P95MS, m.P99MS = percentile(m.durs, 50), percentile(m.durs, 95), percentile(m.durs, 99)
		if closed := m.Calls - m.Open; closed > 0 {
			m.ErrorRate = float64(m.Errors) / float64(closed)
		}
		st.Calls += m.Calls
		st.Errors += m.Errors
		st.Open += m.Open
		st.Methods = append(st.Methods, m.MethodStats)
	}
	sort.Slice(st.Methods, func(i, j int) bool {
		a, b := st.Methods[i], st.Methods[j]
		if a.Calls != b.Calls {
			return a.Calls > b.Calls
		}
		return a.Method < b.Method
	})

	span := to.UnixNano() - from.UnixNano()
	if span <= 0 {
		span = 1
	}
	width := float64(span) / float64(nb)
	st.BucketMS = width / 1e6
	durs := make([][]float64, nb)
	for i := range st.Series {
		st.Series[i].Start = time.Unix(0, from.UnixNano()+int64(float64(i)*width)).UTC()
	}
	for _, r := range rows {
		i := int(float64(r.start-from.UnixNano()) / width)
		if i < 0 || i >= nb {
			continue
		}
		b := &st.Series[i]
		b.Calls++
		if r.err {
			b.Errors++
		}
		if !r.open {
			durs[i] = append(durs[i], r.dur)
		}
	}
	for i := range st.Series {
		slices.Sort(durs[i])
		b := &st.Series[i]
		b.P50MS, b.P95MS, b.P99MS = percentile(durs[i], 50), percentile(durs[i], 95), percentile(durs[i], 99)
	}
	return st, nil
}

// splitRanges splits id ranges into at most n parts of about the same
// span of ids.
func splitRanges(ranges []idRange, n int) [][]idRange {
	var total int64
	for _, r := range ranges {
		total += r.hi - r.lo + 1
	}
	per := total/int64(n) + 1
	parts := make([][]idRange, 0, n)
	var cur []idRange
	var have int64
	for _, r := range ranges {
		for r.lo <= r.hi {
			take := min(r.hi-r.lo+1, per-have)
			cur = append(cur, idRange{r.lo, r.lo + take - 1})
			r.lo += take
			if have += take; have == per {
				parts, cur, have = append(parts, cur), nil, 0
			}
		}
	}
	if len(cur) > 0 {
		parts = append(parts, cur)
	}
	return parts
}

// statsScan gathers what Stats needs from the calls in ranges. It reads
// on a connection of its own through zombiezen.com/go/sqlite rather than
// the database/sql pool: a row costs half as much without database/sql's
// scanning, which was most of the overview of a large capture.
func (s *liteStore) statsScan(ctx context.Context, conds []string, args []any, ranges []idRange) (sh statsShard) {
	sh.byMethod = map[string]*methodAcc{}
	// Opened for writing (never created) and made query-only, as the read
	// pool is: a read-only open of a WAL file fails where its -shm file is
	// missing; SQLite opens a write-protected file read-only by itself.
	conn, err := sqlite.OpenConn(s.path, sqlite.OpenReadWrite)
	if err != nil {
		sh.err = err
		return sh
	}
	defer conn.Close()
	conn.SetBusyTimeout(5 * time.Second)
	if err := execOnce(conn, "PRAGMA query_only = 1"); err != nil {
		sh.err = err
		return sh
	}
	conn.SetInterrupt(ctx.Done())
	st, _, err := conn.PrepareTransient("SELECT method, start_ns, end_ns, status_code, request_bytes, response_bytes FROM calls" + joinWhere(conds))
	if err != nil {
		sh.err = err
		return sh
	}
	defer st.Finalize()
	var method []byte
	for _, rg := range ranges {
		if err := bindAll(st, append(args[:len(args):len(args)], rg.lo, rg.hi)); err != nil {
			sh.err = err
			return sh
		}
		for {
			row, err := st.Step()
			if err != nil {
				sh.err = err
				return sh
			}
			if !row {
				break
			}
			method = method[:0]
			if n := st.ColumnLen(0); cap(method) < n {
				method = make([]byte, n)
			} else {
				method = method[:n]
			}
			st.ColumnBytes(0, method)
			start := st.ColumnInt64(1)
			open := st.ColumnIsNull(2)
			sh.add(method, start, open, st.ColumnInt64(2), st.ColumnInt64(3), st.ColumnInt64(4), st.ColumnInt64(5))
		}
		if err := st.Reset(); err != nil {
			sh.err = err
			return sh
		}
	}
	return sh
}

// add counts one call: its method, start, whether it is open, and when
// closed its end and status code; its request and response bytes.
func (sh *statsShard) add(method []byte, start int64, open bool, end, code, reqB, respB int64) {
	m := sh.byMethod[string(method)] // no allocation for the look-up
	if m == nil {
		m = &methodAcc{MethodStats: MethodStats{Method: string(method)}}
		sh.byMethod[m.Method] = m
	}
	m.Calls++
	m.RequestBytes += reqB
	m.ResponseBytes += respB
	rw := statsRow{start: start}
	if open {
		m.Open++
		rw.open = true
	} else {
		rw.dur = float64(end-start) / 1e6
		m.durs = append(m.durs, rw.dur)
		if code != 0 {
			m.Errors++
			rw.err = true
		}
	}
	if sh.minStart == 0 || start < sh.minStart {
		sh.minStart = start
	}
	sh.rows = append(sh.rows, rw)
}

// bindAll binds int64 and string arguments in order.
func bindAll(st *sqlite.Stmt, args []any) error {
	for i, a := range args {
		switch v := a.(type) {
		case int64:
			st.BindInt64(i+1, v)
		case int:
			st.BindInt64(i+1, int64(v))
		case string:
			st.BindText(i+1, v)
		default:
			return fmt.Errorf("stats: cannot bind %T", a)
		}
	}
	return nil
}

// percentile returns the p-th percentile of sorted (nearest rank), 0 for
// none.
func percentile(sorted []float64, p int) float64 {
	if len(sorted) == 0 {
		return 0
	}
	k := (len(sorted)*p + 99) / 100
	return sorted[max(k, 1)-1]
}
