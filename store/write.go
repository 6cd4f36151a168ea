package store

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
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

type writeStmts struct {
	insCall, setHeader, insMsg, insMsgs, addCounts, endCall, addDropped *sql.Stmt
}

func (w *writeStmts) close() {
	for _, s := range []*sql.Stmt{w.insCall, w.setHeader, w.insMsg, w.insMsgs, w.addCounts, w.endCall, w.addDropped} {
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
		{&w.insCall, `INSERT INTO calls(id, method, protocol, backend, authority, peer, content_type, compression, start_ns, deadline_ns, request_headers)
			VALUES (?,?,?,?,?,?,?,?,?,?,?)`},
		{&w.setHeader, `UPDATE calls SET response_headers = ? WHERE id = ?`},
		{&w.insMsg, insMsgPrefix + `(?,?,?,?,?,?,?)`},
		{&w.insMsgs, insMsgPrefix + strings.TrimSuffix(strings.Repeat(`(?,?,?,?,?,?,?),`, msgChunk), ",")},
		{&w.addCounts, `UPDATE calls SET request_count = request_count + ?, response_count = response_count + ?,
			request_bytes = request_bytes + ?, response_bytes = response_bytes + ? WHERE id = ?`},
		{&w.endCall, `UPDATE calls SET end_ns = ?, status_code = ?, status_message = ?, status_details = ?, trailers = ?,
			dropped = dropped + ? WHERE id = ?`},
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

type counts struct{ reqN, respN, reqB, respB int64 }

// WriteBatch writes events in one transaction, in order. Either all of them
// are stored or none (the error says why: full disk, read-only file, …).
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

func writeEvents(ctx context.Context, tx *sql.Tx, w *writeStmts, events []Event) error {
	insCall, setHeader, insMsg, insMsgs := tx.StmtContext(ctx, w.insCall), tx.StmtContext(ctx, w.setHeader),
		tx.StmtContext(ctx, w.insMsg), tx.StmtContext(ctx, w.insMsgs)
	addCounts, endCall, addDropped := tx.StmtContext(ctx, w.addCounts), tx.StmtContext(ctx, w.endCall), tx.StmtContext(ctx, w.addDropped)
	// Message counters are summed per call and written once per batch, and
	// always before the call's end so a closed call has its final counts.
	pending := map[int64]*counts{}
	flush := func(id int64) error {
		c := pending[id]
		if c == nil {
			return nil
		}
		delete(pending, id)
		_, err := addCounts.ExecContext(ctx, c.reqN, c.respN, c.reqB, c.respB, id)
		return err
	}
	// Messages are buffered and inserted msgChunk rows per statement. Their
	// calls' rows are inserted as soon as seen, so a buffered message's
	// call always exists.
	args := make([]any, 0, 7*msgChunk)
	var first *MessageRecord // first buffered message, for errors
	flushMsgs := func() error {
		if len(args) == 0 {
			return nil
		}
		var err error
		if len(args) == 7*msgChunk {
			_, err = insMsgs.ExecContext(ctx, args...)
		} else {
			for i := 0; i < len(args) && err == nil; i += 7 {
				_, err = insMsg.ExecContext(ctx, args[i:i+7]...)
			}
		}
		args = args[:0]
		if err != nil {
			return fmt.Errorf("messages from call %d message %d: %w", first.CallID, first.Seq, err)
		}
		return nil
	}
	var dropped int64
	for i := range events {
		e := &events[i]
		dropped += e.Dropped
		switch {
		case e.Start != nil:
			c := e.Start
			var deadline any
			if !c.Deadline.IsZero() {
				deadline = c.Deadline.UnixNano()
			}
			if _, err := insCall.ExecContext(ctx, c.ID, c.Method, c.Protocol, c.Backend, c.Authority, c.Peer,
				c.ContentType, c.Compression, c.Time.UnixNano(), deadline, mdJSON(c.Header)); err != nil {
				return fmt.Errorf("call %d start: %w", c.ID, err)
			}
		case e.Header != nil:
			if _, err := setHeader.ExecContext(ctx, mdJSON(e.Header.Header), e.Header.CallID); err != nil {
				return fmt.Errorf("call %d headers: %w", e.Header.CallID, err)
			}
		case e.Message != nil:
			m := e.Message
			dir := 1
			c := pending[m.CallID]
			if c == nil {
				c = &counts{}
				pending[m.CallID] = c
			}
			if m.Direction == DirResponse {
				dir = 2
				c.respN++
				c.respB += m.Size
			} else {
				c.reqN++
				c.reqB += m.Size
			}
			raw := m.Raw
			if raw == nil {
				raw = []byte{}
			}
			if len(args) == 0 {
				first = m
			}
			args = append(args, m.CallID, m.Seq, dir, m.Time.UnixNano(), m.Size, m.Truncated, raw)
			if len(args) == 7*msgChunk {
				if err := flushMsgs(); err != nil {
					return err
				}
			}
		case e.End != nil:
			en := e.End
			if err := flush(en.CallID); err != nil {
				return fmt.Errorf("call %d counts: %w", en.CallID, err)
			}
			if _, err := endCall.ExecContext(ctx, en.Time.UnixNano(), en.Code, en.Message, detailsJSON(en.Details),
				mdJSON(en.Trailers), en.Dropped, en.CallID); err != nil {
				return fmt.Errorf("call %d end: %w", en.CallID, err)
			}
		}
	}
	if err := flushMsgs(); err != nil {
		return err
	}
	for id := range pending {
		if err := flush(id); err != nil {
			return fmt.Errorf("call %d counts: %w", id, err)
		}
	}
	if dropped != 0 {
		if _, err := addDropped.ExecContext(ctx, dropped); err != nil {
			return fmt.Errorf("dropped count: %w", err)
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

func mdJSON(md Metadata) string {
	if len(md) == 0 {
		return "{}"
	}
	b, err := json.Marshal(md)
	if err != nil {
		return "{}"
	}
	return string(b)
}

func detailsJSON(details [][]byte) string {
	list := make([]string, len(details))
	for i, d := range details {
		list[i] = base64.StdEncoding.EncodeToString(d)
	}
	b, _ := json.Marshal(list)
	return string(b)
}
