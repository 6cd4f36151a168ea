package store

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/grpctap/grpctap/internal/headers"
)

// Filter selects calls: the one model of a selection, taken by lists
// (EachCall, ListCalls) and, with more criteria of its own, by pages
// (PageQuery embeds it). The zero Filter selects every call.
type Filter struct {
	Method string    // glob on the full method ("/pkg.Svc/*", "*Watch*"); "" any
	Status *int      // status code; closed calls only
	Since  time.Time // calls started at or after; zero: any
	// AfterID selects calls with an id above it (for following a capture,
	// or fetching what arrived since a page was loaded). 0: no bound.
	AfterID int64
	// Proxy selects the calls recorded by the grpctap process of this
	// name (Options.Name); "" any.
	Proxy string
	// Limit keeps the newest Limit calls of those selected. 0: all, for a
	// list; DefaultPageSize for a page, which has at most MaxPageSize.
	Limit int
}

// MaxPatternLen bounds a method glob and a search text, in characters.
// SQLite refuses LIKE and GLOB patterns longer than 50,000 bytes ("LIKE or
// GLOB pattern too complex"), and a search of thousands of characters is a
// mistake, not a search.
const MaxPatternLen = 1000

// CheckPatternLen reports a method glob or search text longer than
// MaxPatternLen; name says which ("--text", "q").
func CheckPatternLen(name, pattern string) error {
	if n := utf8.RuneCountInString(pattern); n > MaxPatternLen {
		return fmt.Errorf("%s is %d characters long: at most %d characters are allowed", name, n, MaxPatternLen)
	}
	return nil
}

const callColumns = `id, method, protocol, backend, authority, peer, content_type, compression, rpc,
	start_ns, end_ns, status_code, status_message, status_details, request_headers, response_headers, trailers,
	request_count, response_count, request_bytes, response_bytes, dropped`

// liteColumns are callColumns with the name of the process that recorded
// the call (writers.name); a schema-1 capture had no writers.
func (s *liteStore) columns() string {
	if s.version < 2 {
		return callColumns + ", ''"
	}
	return callColumns + ", coalesce((SELECT name FROM writers w WHERE w.id = calls.writer), '')"
}

// conds returns f's conditions and their arguments. With walkIDs the column
// tests are written "+col", so SQLite walks the ids rather than pick a
// column index (see PageQuery.where). The method and time tests are exact;
// Store.candidates narrows the ids they are tried on.
func (f Filter) conds(walkIDs, noWriters bool) ([]string, []any) {
	col := func(c string) string {
		if walkIDs {
			return "+" + c
		}
		return c
	}
	var conds []string
	var args []any
	if f.Method != "" {
		conds = append(conds, "+method GLOB ?")
		args = append(args, methodGlob(f.Method))
	}
	if f.Status != nil {
		if *f.Status != 0 {
			// A literal lets SQLite use the index of failed calls
			// (status_code != 0), which it cannot prove for a parameter.
			conds = append(conds, "status_code = "+strconv.Itoa(*f.Status))
		} else {
			conds = append(conds, col("status_code")+" = 0")
		}
	}
	if !f.Since.IsZero() {
		conds = append(conds, "+start_ns >= ?")
		args = append(args, f.Since.UnixNano())
	}
	if f.AfterID > 0 {
		conds = append(conds, "id > ?")
		args = append(args, f.AfterID)
	}
	switch {
	case f.Proxy != "" && noWriters:
		// A schema-1 capture kept no names: no call has this one.
		conds = append(conds, "0")
	case f.Proxy != "":
		conds = append(conds, "+writer IN (SELECT id FROM writers WHERE name = ?)")
		args = append(args, f.Proxy)
	}
	return conds, args
}

// methodGlob is a method filter as matched: a pattern that starts with
// neither "/" nor "*" is taken to start with "/".
func methodGlob(m string) string {
	if !strings.HasPrefix(m, "/") && !strings.HasPrefix(m, "*") {
		return "/" + m
	}
	return m
}

// joinWhere makes a WHERE clause of conds ("" when there are none).
func joinWhere(conds []string) string {
	if len(conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(conds, " AND ")
}

// idRange is a run of call ids, both ends included.
type idRange struct{ lo, hi int64 }

// candidates returns, newest first, the runs of ids that can hold calls of
// method (a glob; "" any) started at or after since (zero: any), from the
// batches table (one row per write transaction: its ids, latest start and
// methods), adjacent runs joined. all is true when it cannot narrow
// anything: no such filter, or a capture of schema 1, whose indexes do it.
func (s *liteStore) candidates(ctx context.Context, method string, since time.Time) (ranges []idRange, all bool, err error) {
	if s.version < 2 || (method == "" && since.IsZero()) {
		return nil, true, nil
	}
	var conds []string
	var args []any
	if method != "" {
		// A batch's methods are each between newlines; a method matches
		// the pattern exactly when its line does.
		conds = append(conds, "methods GLOB ?")
		args = append(args, "*\n"+methodGlob(method)+"\n*")
	}
	if !since.IsZero() {
		conds = append(conds, "max_start_ns >= ?")
		args = append(args, since.UnixNano())
	}
	rows, err := s.rdb.QueryContext(ctx, "SELECT first_id, last_id FROM batches"+joinWhere(conds)+" ORDER BY first_id DESC", args...)
	if err != nil {
		return nil, false, fmt.Errorf("batches: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r idRange
		if err := rows.Scan(&r.lo, &r.hi); err != nil {
			return nil, false, fmt.Errorf("batches: %w", err)
		}
		if n := len(ranges); n > 0 && ranges[n-1].lo == r.hi+1 {
			ranges[n-1].lo = r.lo
			continue
		}
		ranges = append(ranges, r)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("batches: %w", err)
	}
	return ranges, false, nil
}

// eachCallRow runs "SELECT callColumns FROM calls" with conds over the
// candidate ranges, in id order (newest first with desc), at most limit
// rows (0: all), and calls fn for each.
func (s *liteStore) eachCallRow(ctx context.Context, conds []string, args []any, ranges []idRange, all, desc bool,
	limit int, fn func(c *Call) error) error {
	order := " ORDER BY id"
	if desc {
		order += " DESC"
	}
	if all {
		ranges = []idRange{{}}
	} else if !desc {
		slices.Reverse(ranges)
	}
	left := limit
	var c Call
	for _, r := range ranges {
		q := "SELECT " + s.columns() + " FROM calls" + joinWhere(conds)
		a := args
		if !all {
			q = "SELECT " + s.columns() + " FROM calls" + joinWhere(append(conds[:len(conds):len(conds)], "id BETWEEN ? AND ?"))
			a = append(args[:len(args):len(args)], r.lo, r.hi)
		}
		q += order
		if limit > 0 {
			q += " LIMIT ?"
			a = append(a[:len(a):len(a)], left)
		}
		n, err := s.scanRows(ctx, q, a, &c, fn)
		if err != nil {
			return err
		}
		if limit > 0 {
			if left -= n; left <= 0 {
				return nil
			}
		}
	}
	return nil
}

func (s *liteStore) scanRows(ctx context.Context, q string, args []any, c *Call, fn func(c *Call) error) (int, error) {
	rows, err := s.rdb.QueryContext(ctx, q, args...)
	if err != nil {
		return 0, fmt.Errorf("list calls: %w", err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		if err := scanCall(rows, c); err != nil {
			return n, fmt.Errorf("list calls: %w", err)
		}
		n++
		if err := fn(c); err != nil {
			return n, err
		}
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("list calls: %w", err)
	}
	return n, nil
}

// EachCall calls fn for each call matching f, in id order, without holding
// them all in memory. fn must not keep c.
func (s *liteStore) EachCall(ctx context.Context, f Filter, fn func(c *Call) error) error {
	ranges, all, err := s.candidates(ctx, f.Method, f.Since)
	if err != nil {
		return fmt.Errorf("list calls: %w", err)
	}
	conds, args := f.conds(false, s.version < 2)
	if f.Limit <= 0 {
		return s.eachCallRow(ctx, conds, args, ranges, all, false, 0, fn)
	}
	// The newest Limit calls, shown oldest first.
	var newest []Call
	if err := s.eachCallRow(ctx, conds, args, ranges, all, true, f.Limit, func(c *Call) error {
		newest = append(newest, *c)
		return nil
	}); err != nil {
		return err
	}
	for i := len(newest) - 1; i >= 0; i-- {
		if err := fn(&newest[i]); err != nil {
			return err
		}
	}
	return nil
}

// GetCall returns one call with its messages; ErrNotFound when it does not
// exist.
func (s *liteStore) GetCall(ctx context.Context, id int64) (*CallWithMessages, error) {
	row := s.rdb.QueryRowContext(ctx, "SELECT "+s.columns()+" FROM calls WHERE id = ?", id)
	var c CallWithMessages
	if err := scanCall(row, &c.Call); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("call %d: %w", id, ErrNotFound)
		}
		return nil, fmt.Errorf("call %d: %w", id, err)
	}
	msgs, err := s.Messages(ctx, id)
	if err != nil {
		return nil, err
	}
	c.Messages = msgs
	return &c, nil
}

// Messages returns a call's messages in seq order (never nil). A body
// that cannot be read back from its segment file (removed, cut short,
// damaged) is returned empty, with BodyError saying why.
func (s *liteStore) Messages(ctx context.Context, callID int64) ([]Message, error) {
	out := []Message{}
	legacy := "messages_v1"
	if s.version < 2 {
		legacy = "messages"
	} else {
		if err := s.batchMessages(ctx, callID, &out); err != nil {
			return nil, fmt.Errorf("call %d messages: %w", callID, err)
		}
	}
	rows, err := s.rdb.QueryContext(ctx,
		"SELECT seq, direction, time_ns, size, truncated, raw FROM "+legacy+" WHERE call_id = ? ORDER BY seq", callID)
	if err != nil {
		return nil, fmt.Errorf("call %d messages: %w", callID, err)
	}
	defer rows.Close()
	for rows.Next() {
		var m Message
		var dir int
		var t int64
		if err := rows.Scan(&m.Seq, &dir, &t, &m.Size, &m.Truncated, &m.Raw); err != nil {
			return nil, fmt.Errorf("call %d messages: %w", callID, err)
		}
		m.Direction = direction(dir)
		m.Time = time.Unix(0, t).UTC()
		if m.Raw == nil {
			m.Raw = []byte{}
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("call %d messages: %w", callID, err)
	}
	slices.SortStableFunc(out, func(a, b Message) int { return a.Seq - b.Seq })
	return out, nil
}

func direction(dir int) string {
	if dir == 2 {
		return DirResponse
	}
	return DirRequest
}

// batchMessages appends the messages stored a batch at a time (with the
// call's row and in its chunks) to out.
func (s *liteStore) batchMessages(ctx context.Context, callID int64, out *[]Message) error {
	rows, err := s.rdb.QueryContext(ctx, `SELECT start_ns, msgs, bodies, seg, seg_off, seg_len, seg_crc
		FROM calls WHERE id = ?1 AND msgs IS NOT NULL
		UNION ALL SELECT * FROM (SELECT base_ns, msgs, bodies, seg, seg_off, seg_len, seg_crc
		FROM chunks WHERE call_id = ?1 ORDER BY id)`, callID)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var base int64
		var idx string
		var bodies []byte
		var seg, segOff, segLen, segCRC sql.NullInt64
		if err := rows.Scan(&base, &idx, &bodies, &seg, &segOff, &segLen, &segCRC); err != nil {
			return err
		}
		entries, err := parseIndex(idx)
		if err != nil {
			return err
		}
		var bodyErr string
		if seg.Valid {
			bodies, err = s.segs.read(seg.Int64, segOff.Int64, segLen.Int64, uint32(segCRC.Int64))
			if err != nil {
				bodyErr = err.Error()
			}
		}
		for _, e := range entries {
			m := Message{Seq: int(e.seq), Direction: direction(int(e.dir)), Time: time.Unix(0, base+e.dt).UTC(),
				Size: e.size, Truncated: e.truncated, Raw: []byte{}, BodyError: bodyErr}
			if bodyErr == "" {
				if e.off+e.n > int64(len(bodies)) {
					return fmt.Errorf("%w: message %d past the end of its bodies", errBadIndex, e.seq)
				}
				m.Raw = bodies[e.off : e.off+e.n : e.off+e.n]
			}
			*out = append(*out, m)
		}
	}
	return rows.Err()
}

// DroppedEvents returns how many events the recorder could not store over
// the capture's life.
func (s *liteStore) DroppedEvents(ctx context.Context) (int64, error) {
	return s.counter(ctx, "dropped_events")
}

// SkippedCalls returns how many calls the recorder left out of the capture
// on purpose over its life (calls their client reset before any message,
// over the client's rate); 0 for a capture of schema 1.
func (s *liteStore) SkippedCalls(ctx context.Context) (int64, error) {
	if s.version < 2 {
		return 0, nil
	}
	return s.counter(ctx, "skipped_calls")
}

// counter reads a row of the counters table; a missing row means the
// capture is damaged.
func (s *liteStore) counter(ctx context.Context, name string) (int64, error) {
	var n int64
	err := s.rdb.QueryRowContext(ctx, "SELECT value FROM counters WHERE name = ?", name).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("%s: %w: the counters row is missing", name, ErrCorrupt)
	}
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, damaged(err))
	}
	return n, nil
}

// damaged marks SQLite's "the file is damaged" errors as ErrCorrupt, so
// that every reader can say so.
func damaged(err error) error {
	var se *msqlite.Error
	if errors.As(err, &se) {
		if c := se.Code() & 0xff; c == sqlite3.SQLITE_CORRUPT || c == sqlite3.SQLITE_NOTADB {
			return fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
	}
	return err
}

// LoadDescriptors returns the FileDescriptorSet saved for backend and when
// it was saved; ErrNotFound when there is none.
func (s *liteStore) LoadDescriptors(ctx context.Context, backend string) ([]byte, time.Time, error) {
	var fds []byte
	var t int64
	err := s.rdb.QueryRowContext(ctx, "SELECT fds, updated_ns FROM descriptors WHERE backend = ?", backend).Scan(&fds, &t)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, time.Time{}, fmt.Errorf("descriptors for %q: %w", backend, ErrNotFound)
	}
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("descriptors for %q: %w", backend, err)
	}
	return fds, time.Unix(0, t).UTC(), nil
}

type scanner interface{ Scan(dest ...any) error }

func scanCall(r scanner, c *Call) error {
	var (
		rpc, statusMsg, details sql.NullString
		endNS, code             sql.NullInt64
		startNS                 int64
		reqH, respH, trl        string
	)
	*c = Call{}
	if err := r.Scan(&c.ID, &c.Method, &c.Protocol, &c.Backend, &c.Authority, &c.Peer, &c.ContentType, &c.Compression,
		&rpc, &startNS, &endNS, &code, &statusMsg, &details, &reqH, &respH, &trl,
		&c.RequestCount, &c.ResponseCount, &c.RequestBytes, &c.ResponseBytes, &c.DroppedEvents, &c.Proxy); err != nil {
		return err
	}
	c.Service, _ = SplitMethod(c.Method)
	if rpc.Valid && rpc.String != "" {
		c.RPC, c.RPCFromSchema = rpc.String, true
	} else {
		c.RPC = GuessRPC(c.RequestCount, c.ResponseCount)
	}
	c.Start = time.Unix(0, startNS).UTC()
	c.State = "open"
	if endNS.Valid {
		end := time.Unix(0, endNS.Int64).UTC()
		d := float64(endNS.Int64-startNS) / 1e6
		c.End, c.DurationMS, c.State = &end, &d, "closed"
		st := &Status{Code: int(code.Int64), Name: CodeName(int(code.Int64)), Message: statusMsg.String, Details: [][]byte{}}
		if details.Valid && details.String != "" {
			var list []string
			if err := json.Unmarshal([]byte(details.String), &list); err == nil {
				for _, d := range list {
					if b, err := base64.StdEncoding.DecodeString(d); err == nil {
						st.Details = append(st.Details, b)
					}
				}
			}
		}
		c.Status = st
	}
	var reqR, respR, trlR []string
	c.RequestHeaders, reqR = parseMD(reqH)
	c.ResponseHeaders, respR = parseMD(respH)
	c.Trailers, trlR = parseMD(trl)
	c.Redacted = headers.Names(reqR, respR, trlR)
	return nil
}

// Check runs SQLite's integrity check on the whole file; nil means sound.
func (s *liteStore) Check(ctx context.Context) error {
	rows, err := s.rdb.QueryContext(ctx, "PRAGMA integrity_check")
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return fmt.Errorf("check: %w", err)
		}
		if line != "ok" {
			problems = append(problems, line)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("check: %w", err)
	}
	if len(problems) > 0 {
		return fmt.Errorf("check: %w: %s", ErrCorrupt, strings.Join(problems, "; "))
	}
	return nil
}

// RecordedTimeout returns the time a call's client allowed it, from its
// start to its deadline, and false when the client set no deadline (or the
// capture predates recording them). Replay uses it to give a replayed call
// the deadline the original had.
func (s *liteStore) RecordedTimeout(ctx context.Context, id int64) (time.Duration, bool, error) {
	var start int64
	var deadline sql.NullInt64
	err := s.rdb.QueryRowContext(ctx, "SELECT start_ns, deadline_ns FROM calls WHERE id = ?", id).Scan(&start, &deadline)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, fmt.Errorf("call %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return 0, false, fmt.Errorf("call %d deadline: %w", id, err)
	}
	if !deadline.Valid {
		return 0, false, nil
	}
	return time.Duration(deadline.Int64 - start), true, nil
}
