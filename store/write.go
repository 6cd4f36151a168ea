package store

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// ErrReadOnly is returned by writes on a store opened with ReadOnly.
var ErrReadOnly = errors.New("store is read-only")

// CallStart is the first event of a call: its row is inserted (state open).
type CallStart struct {
	ID          int64 // assigned by the writer process; see MaxID
	Method      string
	Protocol    string
	Backend     string
	Authority   string
	Peer        string
	ContentType string
	Compression string
	Deadline    time.Time // zero: none
	Time        time.Time
	Header      Metadata
}

// ResponseHeader records a call's response headers.
type ResponseHeader struct {
	CallID int64
	Time   time.Time
	Header Metadata
}

// MessageRecord is one message to append to a call.
type MessageRecord struct {
	CallID    int64
	Seq       int
	Direction string // DirRequest or DirResponse
	Time      time.Time
	Size      int64 // full size
	Truncated bool
	Raw       []byte
}

// CallEnd closes a call.
type CallEnd struct {
	CallID   int64
	Time     time.Time
	Code     int
	Message  string
	Details  [][]byte
	Trailers Metadata
	// Dropped counts this call's events that never reached the store.
	Dropped int64
}

// Event is one write. Exactly one of its pointers is set, except that
// Dropped may accompany any of them or stand alone.
type Event struct {
	Start   *CallStart
	Header  *ResponseHeader
	Message *MessageRecord
	End     *CallEnd
	// Dropped adds to the capture's count of dropped events.
	Dropped int64
}

// Size estimates the memory an event holds, for bounding queues.
func (e *Event) Size() int {
	n := 64
	switch {
	case e.Start != nil:
		n += 128 + len(e.Start.Method) + mdSize(e.Start.Header)
	case e.Header != nil:
		n += mdSize(e.Header.Header)
	case e.Message != nil:
		n += len(e.Message.Raw)
	case e.End != nil:
		n += len(e.End.Message) + mdSize(e.End.Trailers)
		for _, d := range e.End.Details {
			n += len(d)
		}
	}
	return n
}

func mdSize(md Metadata) int {
	n := 0
	for k, vs := range md {
		n += len(k) + 16
		for _, v := range vs {
			n += len(v) + 16
		}
	}
	return n
}

// msgChunk is how many messages one INSERT statement writes: one statement
// per row costs more in database/sql and the VDBE than SQLite's work.
const msgChunk = 64

const insMsgPrefix = `INSERT INTO messages(call_id, seq, direction, time_ns, size, truncated, raw) VALUES `

// callChunk is how many new calls one INSERT statement writes, for the same
// reason; callCols is how many values each one binds.
const (
	callChunk = 16
	callCols  = 22
)

const insCallPrefix = `INSERT INTO calls(id, method, protocol, backend, authority, peer, content_type, compression,
	start_ns, deadline_ns, request_headers, response_headers, end_ns, status_code, status_message, status_details,
	trailers, request_count, response_count, request_bytes, response_bytes, dropped) VALUES `

// placeholders returns rows groups of cols question marks: "(?,?),(?,?)".
func placeholders(rows, cols int) string {
	row := "(" + strings.TrimSuffix(strings.Repeat("?,", cols), ",") + ")"
	return strings.TrimSuffix(strings.Repeat(row+",", rows), ",")
}

type writeStmts struct {
	insCall, insCalls, updCall, insMsg, insMsgs, addDropped *sql.Stmt
}

func (w *writeStmts) close() {
	for _, s := range []*sql.Stmt{w.insCall, w.insCalls, w.updCall, w.insMsg, w.insMsgs, w.addDropped} {
		if s != nil {
			s.Close()
		}
	}
}

func (s *Store) prepared(ctx context.Context) (*writeStmts, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("store is closed")
	}
	if s.stmts != nil {
		return s.stmts, nil
	}
	w := &writeStmts{}
	for _, p := range []struct {
		dst **sql.Stmt
		q   string
	}{
		{&w.insCall, insCallPrefix + placeholders(1, callCols)},
		{&w.insCalls, insCallPrefix + placeholders(callChunk, callCols)},
		{&w.updCall, `UPDATE calls SET response_headers = coalesce(?, response_headers),
			request_count = request_count + ?, response_count = response_count + ?,
			request_bytes = request_bytes + ?, response_bytes = response_bytes + ?,
			end_ns = coalesce(?, end_ns), status_code = coalesce(?, status_code),
			status_message = coalesce(?, status_message), status_details = coalesce(?, status_details),
			trailers = coalesce(?, trailers), dropped = dropped + ?
			WHERE id = ?`},
		{&w.insMsg, insMsgPrefix + placeholders(1, 7)},
		{&w.insMsgs, insMsgPrefix + placeholders(msgChunk, 7)},
		{&w.addDropped, `UPDATE counters SET value = value + ? WHERE name = 'dropped_events'`},
	} {
		st, err := s.wdb.PrepareContext(ctx, p.q)
		if err != nil {
			w.close()
			return nil, err
		}
		*p.dst = st
	}
	s.stmts = w
	return w, nil
}

// callBatch is what one batch holds of one call.
type callBatch struct {
	start                    *CallStart
	header                   *ResponseHeader
	end                      *CallEnd
	reqN, respN, reqB, respB int64
}

// WriteBatch writes events in one transaction. Either all of them are
// stored or none (the error says why: full disk, read-only file, …).
// Events of one call must come in their order (start first, end last);
// events of different calls may interleave.
func (s *Store) WriteBatch(ctx context.Context, events []Event) error {
	if s.readOnly {
		return ErrReadOnly
	}
	if len(events) == 0 {
		return nil
	}
	w, err := s.prepared(ctx)
	if err != nil {
		return fmt.Errorf("write batch: %w", err)
	}
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("write batch: %w", err)
	}
	if err := writeEvents(ctx, tx, w, events); err != nil {
		tx.Rollback()
		return fmt.Errorf("write batch: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("write batch: commit: %w", err)
	}
	return nil
}

// writeEvents folds each call's events into one statement: an INSERT for
// a call that starts in the batch (a short call is written whole, once),
// an UPDATE for one that started earlier; then its messages, many rows per
// statement.
func writeEvents(ctx context.Context, tx *sql.Tx, w *writeStmts, events []Event) error {
	calls := map[int64]*callBatch{}
	var order []int64
	get := func(id int64) *callBatch {
		c := calls[id]
		if c == nil {
			c = &callBatch{}
			calls[id] = c
			order = append(order, id)
		}
		return c
	}
	var msgs []*MessageRecord
	var dropped int64
	for i := range events {
		e := &events[i]
		dropped += e.Dropped
		switch {
		case e.Start != nil:
			get(e.Start.ID).start = e.Start
		case e.Header != nil:
			get(e.Header.CallID).header = e.Header
		case e.Message != nil:
			m := e.Message
			c := get(m.CallID)
			if m.Direction == DirResponse {
				c.respN++
				c.respB += m.Size
			} else {
				c.reqN++
				c.reqB += m.Size
			}
			msgs = append(msgs, m)
		case e.End != nil:
			get(e.End.CallID).end = e.End
		}
	}

	updCall := tx.StmtContext(ctx, w.updCall)
	var newCalls []any // callCols values per call that starts in this batch
	for _, id := range order {
		c := calls[id]
		var respH any
		if c.header != nil {
			respH = mdJSON(c.header.Header)
		}
		var endNS, code, msg, details, trailers any
		var drops int64
		if e := c.end; e != nil {
			endNS, code, msg, details, trailers = e.Time.UnixNano(), e.Code, e.Message, detailsJSON(e.Details), mdJSON(e.Trailers)
			drops = e.Dropped
		}
		if c.start == nil {
			if _, err := updCall.ExecContext(ctx, respH, c.reqN, c.respN, c.reqB, c.respB,
				endNS, code, msg, details, trailers, drops, id); err != nil {
				return fmt.Errorf("call %d: %w", id, err)
			}
			continue
		}
		st := c.start
		var deadline any
		if !st.Deadline.IsZero() {
			deadline = st.Deadline.UnixNano()
		}
		if respH == nil {
			respH = "{}"
		}
		if trailers == nil {
			trailers = "{}"
		}
		newCalls = append(newCalls, id, st.Method, st.Protocol, st.Backend, st.Authority, st.Peer,
			st.ContentType, st.Compression, st.Time.UnixNano(), deadline, mdJSON(st.Header), respH,
			endNS, code, msg, details, trailers, c.reqN, c.respN, c.reqB, c.respB, drops)
	}
	if err := execChunked(ctx, tx.StmtContext(ctx, w.insCall), tx.StmtContext(ctx, w.insCalls),
		newCalls, callCols, callChunk); err != nil {
		return fmt.Errorf("calls from %d: %w", newCalls[0], err)
	}

	if len(msgs) > 0 {
		args := make([]any, 0, 7*len(msgs))
		for _, m := range msgs {
			dir := 1
			if m.Direction == DirResponse {
				dir = 2
			}
			raw := m.Raw
			if raw == nil {
				raw = []byte{}
			}
			args = append(args, m.CallID, m.Seq, dir, m.Time.UnixNano(), m.Size, m.Truncated, raw)
		}
		if err := execChunked(ctx, tx.StmtContext(ctx, w.insMsg), tx.StmtContext(ctx, w.insMsgs), args, 7, msgChunk); err != nil {
			return fmt.Errorf("messages of call %d from %d: %w", msgs[0].CallID, msgs[0].Seq, err)
		}
	}
	if dropped != 0 {
		if _, err := tx.StmtContext(ctx, w.addDropped).ExecContext(ctx, dropped); err != nil {
			return fmt.Errorf("dropped count: %w", err)
		}
	}
	return nil
}

// execChunked inserts rows of cols values each from args: chunk rows at a
// time with many (its statement has chunk row groups), the rest one by one
// with one.
func execChunked(ctx context.Context, one, many *sql.Stmt, args []any, cols, chunk int) error {
	for len(args) >= cols*chunk {
		if _, err := many.ExecContext(ctx, args[:cols*chunk]...); err != nil {
			return err
		}
		args = args[cols*chunk:]
	}
	for ; len(args) > 0; args = args[cols:] {
		if _, err := one.ExecContext(ctx, args[:cols]...); err != nil {
			return err
		}
	}
	return nil
}

// AddDropped adds n to the capture's count of dropped events.
func (s *Store) AddDropped(ctx context.Context, n int64) error {
	if s.readOnly {
		return ErrReadOnly
	}
	_, err := s.wdb.ExecContext(ctx, `UPDATE counters SET value = value + ? WHERE name = 'dropped_events'`, n)
	if err != nil {
		return fmt.Errorf("add dropped: %w", err)
	}
	return nil
}

// MaxID returns the highest call id in the capture (0 when empty). The
// writer process numbers new calls from there.
func (s *Store) MaxID(ctx context.Context) (int64, error) {
	db := s.wdb
	if db == nil {
		db = s.rdb
	}
	var id sql.NullInt64
	if err := db.QueryRowContext(ctx, "SELECT max(id) FROM calls").Scan(&id); err != nil {
		return 0, fmt.Errorf("max id: %w", err)
	}
	return id.Int64, nil
}

// StoppedMessage is the status message of calls closed by CloseOpenCalls.
const StoppedMessage = "grpctap stopped before the call ended"

// CloseOpenCalls closes calls left open by a proxy that stopped without
// ending them (a crash, kill -9): they end at their last message (or their
// start) with status UNAVAILABLE and StoppedMessage. Only the process that
// writes the capture may call it, before it records anything. It returns
// how many calls it closed.
func (s *Store) CloseOpenCalls(ctx context.Context) (int64, error) {
	if s.readOnly {
		return 0, ErrReadOnly
	}
	res, err := s.wdb.ExecContext(ctx, `UPDATE calls SET
		end_ns = coalesce((SELECT max(time_ns) FROM messages WHERE call_id = calls.id), start_ns),
		status_code = 14, status_message = ?, status_details = '[]'
		WHERE end_ns IS NULL`, StoppedMessage)
	if err != nil {
		return 0, fmt.Errorf("close open calls: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

// SaveDescriptors stores a serialized google.protobuf.FileDescriptorSet
// for a backend, replacing the previous one.
func (s *Store) SaveDescriptors(ctx context.Context, backend string, fds []byte) error {
	if s.readOnly {
		return ErrReadOnly
	}
	_, err := s.wdb.ExecContext(ctx, `INSERT INTO descriptors(backend, fds, updated_ns) VALUES (?,?,?)
		ON CONFLICT(backend) DO UPDATE SET fds = excluded.fds, updated_ns = excluded.updated_ns`,
		backend, fds, time.Now().UnixNano())
	if err != nil {
		return fmt.Errorf("save descriptors for %q: %w", backend, err)
	}
	return nil
}

// Import inserts whole calls, numbering them after the capture's highest id
// (their ID fields are ignored), in one transaction. It returns the ids
// given. Not for use while a recorder writes to the same capture.
func (s *Store) Import(ctx context.Context, calls []CallWithMessages) ([]int64, error) {
	if s.readOnly {
		return nil, ErrReadOnly
	}
	next, err := s.MaxID(ctx)
	if err != nil {
		return nil, err
	}
	w, err := s.prepared(ctx)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	var events []Event
	ids := make([]int64, 0, len(calls))
	for i := range calls {
		c := &calls[i]
		next++
		ids = append(ids, next)
		events = append(events, Event{Start: &CallStart{
			ID: next, Method: c.Method, Protocol: c.Protocol, Backend: c.Backend, Authority: c.Authority,
			Peer: c.Peer, ContentType: c.ContentType, Compression: c.Compression, Time: c.Start, Header: c.RequestHeaders,
		}})
		if c.ResponseHeaders != nil {
			events = append(events, Event{Header: &ResponseHeader{CallID: next, Time: c.Start, Header: c.ResponseHeaders}})
		}
		for _, m := range c.Messages {
			size := m.Size
			if size == 0 {
				size = int64(len(m.Raw))
			}
			events = append(events, Event{Message: &MessageRecord{CallID: next, Seq: m.Seq, Direction: m.Direction,
				Time: m.Time, Size: size, Truncated: m.Truncated, Raw: m.Raw}})
		}
		if c.End != nil {
			st := c.Status
			if st == nil {
				st = &Status{}
			}
			events = append(events, Event{End: &CallEnd{CallID: next, Time: *c.End, Code: st.Code, Message: st.Message,
				Details: st.Details, Trailers: c.Trailers}})
		}
	}
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	if err := writeEvents(ctx, tx, w, events); err != nil {
		tx.Rollback()
		return nil, fmt.Errorf("import: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	return ids, nil
}

// mdJSON encodes metadata as a JSON object with sorted keys, as
// encoding/json would (readers parse it with encoding/json). It is written
// by hand because it runs for every call the proxy records: the reflective
// encoder cost a fifth of the writer's time.
func mdJSON(md Metadata) string {
	if len(md) == 0 {
		return "{}"
	}
	keys := make([]string, 0, len(md))
	n := 2
	for k, vs := range md {
		keys = append(keys, k)
		n += len(k) + 6
		for _, v := range vs {
			n += len(v) + 3
		}
	}
	slices.Sort(keys)
	b := make([]byte, 0, n)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		vs := md[k]
		if vs == nil {
			b = append(b, ":null"...) // as encoding/json writes a nil slice
			continue
		}
		b = append(b, ':', '[')
		for j, v := range vs {
			if j > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, v)
		}
		b = append(b, ']')
	}
	b = append(b, '}')
	return string(b)
}

// appendJSONString appends s as a JSON string. Printable ASCII without
// quotes or backslashes (nearly every header value) is copied as it is;
// anything else goes through encoding/json, which also turns invalid UTF-8
// into U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

func detailsJSON(details [][]byte) string {
	list := make([]string, len(details))
	for i, d := range details {
		list[i] = base64.StdEncoding.EncodeToString(d)
	}
	b, _ := json.Marshal(list)
	return string(b)
}
