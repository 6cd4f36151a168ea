package store

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"strings"
	"sync"
	"time"
	"unsafe"

	"zombiezen.com/go/sqlite"
)

// The write path runs on one connection per process, through
// zombiezen.com/go/sqlite (modernc's SQLite without database/sql: cached
// statements, no per-bind locking, which were a third of the writer's CPU
// through database/sql). Everything a batch writes is one IMMEDIATE
// transaction, which holds the capture's write lock: call ids are taken
// from counters.next_call_id inside it, so ids are unique across processes
// and increase in commit order.

var errClosed = errors.New("store is closed")

// writer is the state of a store's writing connection. mu guards all of it.
type writer struct {
	mu     sync.Mutex
	conn   *sqlite.Conn
	path   string
	name   string // writers.name of this process
	segMax int64

	folder
	writerID int64 // writers.id; 0 until the first write registers it
	seg      *segment
	stmts    map[string]*sqlite.Stmt

	// Scratch reused from batch to batch.
	idx     []byte
	bodies  []byte
	methods []string
	md      []byte
	mdKeys  []string
}

func openWriter(path string, opts Options) (*writer, error) {
	conn, err := sqlite.OpenConn(path, sqlite.OpenReadWrite)
	if err != nil {
		return nil, err
	}
	conn.SetBusyTimeout(5 * time.Second)
	pragmas := []string{"PRAGMA synchronous = NORMAL", "PRAGMA cache_size = -16384",
		// Multi-statement transactions keep a statement journal; in memory
		// it costs no write system calls.
		"PRAGMA temp_store = MEMORY"}
	if opts.MaxPages > 0 {
		pragmas = append(pragmas, fmt.Sprintf("PRAGMA max_page_count = %d", opts.MaxPages))
	}
	for _, p := range pragmas {
		if err := execOnce(conn, p); err != nil {
			conn.Close()
			return nil, err
		}
	}
	name := opts.Name
	if name == "" {
		name, _ = os.Hostname()
	}
	segMax := opts.SegmentBytes
	if segMax <= 0 {
		segMax = maxSegmentBytes
	}
	return &writer{conn: conn, path: path, name: name, segMax: segMax,
		folder: newFolder()}, nil
}

// execOnce runs a statement that is not worth caching.
func execOnce(conn *sqlite.Conn, query string) error {
	st, _, err := conn.PrepareTransient(query)
	if err != nil {
		return fmt.Errorf("%s: %w", query, err)
	}
	defer st.Finalize()
	for {
		row, err := st.Step()
		if err != nil {
			return fmt.Errorf("%s: %w", query, err)
		}
		if !row {
			return nil
		}
	}
}

// prep returns the prepared statement for query, reset. Statements are
// kept for the connection's life; every use binds all its parameters, so
// their bindings need no clearing (zombiezen's own cache clears them on
// each use, a tenth of a short call's write).
func (w *writer) prep(query string) (*sqlite.Stmt, error) {
	if st := w.stmts[query]; st != nil {
		return st, nil
	}
	st, err := w.conn.Prepare(query)
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	if w.stmts == nil {
		w.stmts = map[string]*sqlite.Stmt{}
	}
	w.stmts[query] = st
	return st, nil
}

// run steps a cached statement to its end, binding with bind, and returns
// the first column of its first row when it has one (RETURNING).
func (w *writer) run(query string, bind func(*sqlite.Stmt)) (int64, error) {
	st, err := w.prep(query)
	if err != nil {
		return 0, err
	}
	if bind != nil {
		bind(st)
	}
	var v int64
	row, err := st.Step()
	if err == nil && row {
		v = st.ColumnInt64(0)
		for row && err == nil {
			row, err = st.Step()
		}
	}
	rerr := st.Reset()
	if err != nil {
		return 0, err
	}
	return v, rerr
}

func (w *writer) close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.conn == nil {
		return nil
	}
	if w.writerID != 0 {
		// Say this writer ended, so that its calls left open (if any
		// event was lost) are closed by the next writer at once.
		id := w.writerID
		_, _ = w.run(`UPDATE writers SET ended_ns = ? WHERE id = ?`, func(st *sqlite.Stmt) {
			st.BindInt64(1, time.Now().UnixNano())
			st.BindInt64(2, id)
		})
	}
	w.seg.close()
	w.seg = nil
	err := w.conn.Close()
	w.conn = nil
	return err
}

// NewKey returns a key for a new call, unique in this Store: events refer
// to the call by it until WriteBatch has given the call its id.
func (s *liteStore) NewKey() int64 { return s.nextKey.Add(1) }

// WriteBatch writes events in one transaction. Either all of them are
// stored or none (the error says why: full disk, read-only file, …).
// Events of one call must come in their order (start first, end last);
// events of different calls may interleave. Calls are referred to by key
// (CallStart.ID, the other events' CallID); once the batch is committed,
// those fields hold the calls' ids in the capture. Events of a call whose
// start was never written are skipped.
func (s *liteStore) WriteBatch(ctx context.Context, events []Event) error {
	if s.readOnly {
		return ErrReadOnly
	}
	if len(events) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("write batch: %w", err)
	}
	w := s.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.conn == nil {
		return fmt.Errorf("write batch: %w", errClosed)
	}
	if err := w.writeBatch(events); err != nil {
		return fmt.Errorf("write batch: %w", err)
	}
	return nil
}

const insCall = `INSERT INTO calls(id, method, protocol, backend, authority, peer, content_type, compression,
	start_ns, deadline_ns, request_headers, response_headers, end_ns, status_code, status_message, status_details,
	trailers, request_count, response_count, request_bytes, response_bytes, dropped, writer,
	msgs, bodies, seg, seg_off, seg_len, seg_crc)
	VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`

const updCall = `UPDATE calls SET response_headers = coalesce(?, response_headers),
	request_count = request_count + ?, response_count = response_count + ?,
	request_bytes = request_bytes + ?, response_bytes = response_bytes + ?,
	end_ns = coalesce(?, end_ns), status_code = coalesce(?, status_code),
	status_message = coalesce(?, status_message), status_details = coalesce(?, status_details),
	trailers = coalesce(?, trailers), dropped = dropped + ?
	WHERE id = ?`

// segWrite is what a batch appends to a segment.
type segWrite struct {
	sg     *segment
	base   int64 // where this batch's bodies start
	n      int64 // bytes written, padding included
	minID  int64 // calls with bodies in it
	maxID  int64
	sealed *segment // the writer's previous segment, sealed by this batch
}

func (w *writer) writeBatch(events []Event) (err error) {
	dropped, skipped := w.fold(events)
	// When the batch is done its events are the caller's again: keep no
	// pointers into them (their bodies may be the proxy's buffers).
	defer w.forget()
	if _, err := w.run("BEGIN IMMEDIATE", nil); err != nil {
		return err
	}
	committed := false
	var sw segWrite
	registered := false
	defer func() {
		if committed {
			return
		}
		_, _ = w.run("ROLLBACK", nil)
		if registered {
			w.writerID = 0
		}
		if sw.sg != nil && sw.sg != w.seg {
			sw.sg.close() // its row, new or adopted, is rolled back with the batch
		}
	}()
	if w.writerID == 0 {
		if err := w.register(); err != nil {
			return err
		}
		registered = true
	}

	// Ids for the calls this batch starts, in the order they started.
	nNew := w.starts()
	var firstID, minStart, maxStart int64
	if nNew > 0 {
		last, err := w.run(`UPDATE counters SET value = value + ? WHERE name = 'next_call_id' RETURNING value`,
			func(st *sqlite.Stmt) { st.BindInt64(1, nNew) })
		if err != nil {
			return fmt.Errorf("call ids: %w", err)
		}
		if last == 0 {
			return errors.New("call ids: the capture has no next_call_id counter")
		}
		firstID = last - nNew + 1
	}
	w.assign(firstID)
	w.methods = w.methods[:0]
	for i := range w.folds {
		f := &w.folds[i]
		if f.start == nil || f.id == 0 {
			continue
		}
		t := f.start.Time.UnixNano()
		if f.id == firstID || t < minStart {
			minStart = t
		}
		maxStart = max(maxStart, t)
		if !containsString(w.methods, f.start.Method) {
			w.methods = append(w.methods, f.start.Method)
		}
	}

	if err := w.prepareSegment(&sw); err != nil {
		return err
	}
	for i := range w.folds {
		f := &w.folds[i]
		if f.id == 0 {
			continue
		}
		if err := w.writeCall(f, &sw); err != nil {
			return fmt.Errorf("call %d: %w", f.id, err)
		}
	}
	if sw.sg != nil && sw.sg.appended() > 0 {
		written, err := sw.sg.finish()
		if err != nil {
			return err
		}
		sw.n = written
		if _, err := w.run(`UPDATE segments SET bytes = ?, first_call = coalesce(first_call, ?),
			last_call = max(coalesce(last_call, 0), ?) WHERE id = ?`, func(st *sqlite.Stmt) {
			st.BindInt64(1, sw.base+sw.n)
			st.BindInt64(2, sw.minID)
			st.BindInt64(3, sw.maxID)
			st.BindInt64(4, sw.sg.id)
		}); err != nil {
			return fmt.Errorf("segment %d: %w", sw.sg.id, err)
		}
	}
	if nNew > 0 {
		methods := "\n" + strings.Join(w.methods, "\n") + "\n"
		if _, err := w.run(`INSERT INTO batches(first_id, last_id, min_start_ns, max_start_ns, methods) VALUES (?,?,?,?,?)`,
			func(st *sqlite.Stmt) {
				st.BindInt64(1, firstID)
				st.BindInt64(2, firstID+nNew-1)
				st.BindInt64(3, minStart)
				st.BindInt64(4, maxStart)
				st.BindText(5, methods)
			}); err != nil {
			return fmt.Errorf("batch row: %w", err)
		}
	}
	for _, c := range []struct {
		name string
		n    int64
	}{{"dropped_events", dropped}, {"skipped_calls", skipped}} {
		if c.n == 0 {
			continue
		}
		if _, err := w.run(`UPDATE counters SET value = value + ? WHERE name = ?`,
			func(st *sqlite.Stmt) { st.BindInt64(1, c.n); st.BindText(2, c.name) }); err != nil {
			return fmt.Errorf("%s count: %w", c.name, err)
		}
	}
	if _, err := w.run("COMMIT", nil); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	committed = true

	// Scratch grown by a batch of large bodies is not kept.
	if cap(w.bodies) > segStage {
		w.bodies = nil
	}

	// The batch is in the capture: remember open calls, hand out ids.
	if sw.sg != nil {
		if sw.sealed != nil {
			sw.sealed.close()
		}
		w.seg = sw.sg
		w.seg.committed = sw.base + sw.n
	}
	w.handBack(events)
	return nil
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// writeCall writes one call's part of the batch: its row (a call that
// starts and ends in the batch is written whole, its messages inline), an
// update of its row, and a chunk row with its messages.
func (w *writer) writeCall(f *callFold, sw *segWrite) error {
	inline := f.start != nil && f.end != nil
	var msgs, bodies []byte
	var seg segRef // the zero segRef: bodies inline
	var base int64
	if len(f.msgs) > 0 {
		if inline {
			base = f.start.Time.UnixNano()
		} else {
			base = f.msgs[0].Time.UnixNano()
		}
		// The bodies go inline, or straight into the segment's staging
		// buffer, with a checksum.
		if rowBodies(f) >= SegmentThreshold && sw.sg != nil {
			start := sw.sg.appended()
			var crc uint32
			var err error
			if msgs, crc, err = w.encodeToSegment(f, base, sw.sg); err != nil {
				return err
			}
			seg = segRef{id: sw.sg.id, off: sw.base + start, n: sw.sg.appended() - start, crc: crc}
			if sw.minID == 0 {
				sw.minID = f.id
			}
			sw.maxID = max(sw.maxID, f.id)
		} else {
			msgs, w.bodies = w.encodeMessages(f, base, w.bodies[:0])
			bodies = w.bodies
		}
	}
	var drops int64
	if f.end != nil {
		drops = f.end.Dropped
	}
	var err error
	if f.start != nil {
		_, err = w.run(insCall, func(st *sqlite.Stmt) {
			s := f.start
			st.BindInt64(1, f.id)
			st.BindText(2, s.Method)
			st.BindText(3, s.Protocol)
			st.BindText(4, s.Backend)
			st.BindText(5, s.Authority)
			st.BindText(6, s.Peer)
			st.BindText(7, s.ContentType)
			st.BindText(8, s.Compression)
			st.BindInt64(9, s.Time.UnixNano())
			if s.Deadline.IsZero() {
				st.BindNull(10)
			} else {
				st.BindInt64(10, s.Deadline.UnixNano())
			}
			w.bindMD(st, 11, s.Header, s.Redacted)
			if f.header != nil {
				w.bindMD(st, 12, f.header.Header, f.header.Redacted)
			} else {
				st.BindText(12, "{}")
			}
			w.bindEnd(st, 13, f.end)
			if f.end == nil {
				st.BindText(17, "{}") // trailers: none yet
			}
			st.BindInt64(18, f.reqN)
			st.BindInt64(19, f.respN)
			st.BindInt64(20, f.reqB)
			st.BindInt64(21, f.respB)
			st.BindInt64(22, drops)
			st.BindInt64(23, w.writerID)
			if inline && msgs != nil {
				st.BindText(24, unsafeString(msgs))
				seg.bind(st, 25, bodies)
			} else {
				for i := 24; i <= 29; i++ {
					st.BindNull(i)
				}
			}
		})
	} else {
		_, err = w.run(updCall, func(st *sqlite.Stmt) {
			if f.header != nil {
				w.bindMD(st, 1, f.header.Header, f.header.Redacted)
			} else {
				st.BindNull(1)
			}
			st.BindInt64(2, f.reqN)
			st.BindInt64(3, f.respN)
			st.BindInt64(4, f.reqB)
			st.BindInt64(5, f.respB)
			w.bindEnd(st, 6, f.end)
			st.BindInt64(11, drops)
			st.BindInt64(12, f.id)
		})
	}
	if err != nil {
		return err
	}
	if msgs != nil && !inline {
		if _, err := w.run(`INSERT INTO chunks(call_id, base_ns, msgs, bodies, seg, seg_off, seg_len, seg_crc)
			VALUES (?,?,?,?,?,?,?,?)`, func(st *sqlite.Stmt) {
			st.BindInt64(1, f.id)
			st.BindInt64(2, base)
			st.BindText(3, unsafeString(msgs))
			seg.bind(st, 4, bodies)
		}); err != nil {
			return fmt.Errorf("messages: %w", err)
		}
	}
	return nil
}

// encodeMessages builds the index of f's messages (times after base) in
// w's scratch buffer (valid until the next call) and appends their bodies
// to dst (offsets count from dst's length on entry).
func (w *writer) encodeMessages(f *callFold, base int64, dst []byte) (idx, bodies []byte) {
	start := len(dst)
	w.index(f, base, func(m *MessageRecord) int64 {
		off := int64(len(dst) - start)
		dst = append(dst, m.Raw...)
		return off
	})
	return w.idx, dst
}

// encodeToSegment builds the index of f's messages as encodeMessages does
// and appends their bodies to the segment's batch, returning their
// CRC-32C.
func (w *writer) encodeToSegment(f *callFold, base int64, sg *segment) (idx []byte, crc uint32, err error) {
	start := sg.appended()
	w.index(f, base, func(m *MessageRecord) int64 {
		off := sg.appended() - start
		if err == nil {
			err = sg.append(m.Raw)
			crc = crc32.Update(crc, castagnoli, m.Raw)
		}
		return off
	})
	return w.idx, crc, err
}

// index writes f's message index into w.idx; place stores each body and
// returns its offset in the row's bodies.
func (w *writer) index(f *callFold, base int64, place func(*MessageRecord) int64) {
	w.idx = append(w.idx[:0], '[')
	for i, m := range f.msgs {
		e := msgEntry{seq: int64(m.Seq), dir: 1, dt: m.Time.UnixNano() - base, size: m.Size, truncated: m.Truncated,
			n: int64(len(m.Raw)), off: place(m)}
		if m.Direction == DirResponse {
			e.dir = 2
		}
		if i > 0 {
			w.idx = append(w.idx, ',')
		}
		w.idx = appendEntry(w.idx, &e)
	}
	w.idx = append(w.idx, ']')
}

// rowBodies is the size of the bodies of f's messages in this batch.
func rowBodies(f *callFold) int64 {
	var n int64
	for _, m := range f.msgs {
		n += int64(len(m.Raw))
	}
	return n
}

// bindEnd binds how a call ended to parameters i to i+4: end_ns,
// status_code, status_message, status_details, trailers; all NULL when
// e is nil (not ended yet).
func (w *writer) bindEnd(st *sqlite.Stmt, i int, e *CallEnd) {
	if e == nil {
		for j := i; j <= i+4; j++ {
			st.BindNull(j)
		}
		return
	}
	st.BindInt64(i, e.Time.UnixNano())
	st.BindInt64(i+1, int64(e.Code))
	st.BindText(i+2, e.Message)
	st.BindText(i+3, detailsJSON(e.Details))
	w.bindMD(st, i+4, e.Trailers, e.Redacted)
}

// bindMD binds md's JSON (mdJSON) as text, built in w's scratch buffer.
func (w *writer) bindMD(st *sqlite.Stmt, i int, md Metadata, redacted []string) {
	w.md, w.mdKeys = appendMD(w.md[:0], w.mdKeys, md, redacted)
	st.BindText(i, unsafeString(w.md))
}

// unsafeString views b as a string without a copy, for binding: SQLite
// copies bound text at once (zombiezen binds with a copy it owns), so b may
// be reused after.
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// segRef is where a row's bodies are in a segment; the zero segRef means
// they are inline.
type segRef struct {
	id, off, n int64
	crc        uint32
}

// bind binds the row's bodies and segment columns, from parameter i on:
// bodies, seg, seg_off, seg_len, seg_crc.
func (r segRef) bind(st *sqlite.Stmt, i int, bodies []byte) {
	if r.id == 0 {
		st.BindBytes(i, bodies)
		for j := i + 1; j <= i+4; j++ {
			st.BindNull(j)
		}
		return
	}
	st.BindNull(i)
	st.BindInt64(i+1, r.id)
	st.BindInt64(i+2, r.off)
	st.BindInt64(i+3, r.n)
	st.BindInt64(i+4, int64(r.crc))
}

// prepareSegment readies the segment this batch's rows of bodies of
// SegmentThreshold bytes or more go to, when it has any: the writer's own,
// or (the first time, or when it is full) an unsealed one whose writer is
// gone, or a new one.
func (w *writer) prepareSegment(sw *segWrite) error {
	var need int64
	for i := range w.folds {
		if w.folds[i].id == 0 {
			continue
		}
		if n := rowBodies(&w.folds[i]); n >= SegmentThreshold {
			need += n
		}
	}
	if need == 0 {
		return nil
	}
	sg := w.seg
	if sg != nil && sg.committed > 0 && sg.committed+need > w.segMax {
		if _, err := w.run(`UPDATE segments SET sealed = 1 WHERE id = ?`, func(st *sqlite.Stmt) { st.BindInt64(1, sg.id) }); err != nil {
			return fmt.Errorf("seal segment %d: %w", sg.id, err)
		}
		sw.sealed = sg
		sg = nil
	}
	if sg == nil {
		var err error
		if sg, err = w.adoptSegment(); err != nil {
			return err
		}
	}
	if sg == nil {
		id, err := w.run(`INSERT INTO segments(id, name, created_ns)
			SELECT coalesce(max(id), 0) + 1, 'seg-' || (coalesce(max(id), 0) + 1) || '.bin', ? FROM segments RETURNING id`,
			func(st *sqlite.Stmt) { st.BindInt64(1, time.Now().UnixNano()) })
		if err != nil {
			return fmt.Errorf("new segment: %w", err)
		}
		f, ok, err := openSegment(SegmentDir(w.path), id, true, true)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("new segment %d: its file is locked by another process", id)
		}
		// A file of that name can only be left from a batch that failed.
		if err := f.Truncate(0); err != nil {
			f.Close()
			return fmt.Errorf("new segment %d: %w", id, err)
		}
		sg = newSegment(id, f, 0)
	}
	sw.sg, sw.base = sg, sg.committed
	sg.begin(sg.committed)
	return nil
}

// adoptSegment takes an unsealed segment no live process holds (its
// writer stopped), cut back to its committed length, or returns nil.
func (w *writer) adoptSegment() (*segment, error) {
	st, err := w.prep(`SELECT id, bytes FROM segments WHERE sealed = 0 ORDER BY id`)
	if err != nil {
		return nil, err
	}
	type cand struct{ id, bytes int64 }
	var cands []cand
	for {
		row, err := st.Step()
		if err != nil {
			st.Reset()
			return nil, fmt.Errorf("segments: %w", err)
		}
		if !row {
			break
		}
		cands = append(cands, cand{st.ColumnInt64(0), st.ColumnInt64(1)})
	}
	if err := st.Reset(); err != nil {
		return nil, err
	}
	for _, c := range cands {
		f, ok, err := openSegment(SegmentDir(w.path), c.id, false, true)
		if errors.Is(err, os.ErrNotExist) || (err == nil && !ok) {
			continue
		}
		if err != nil {
			return nil, err
		}
		// Bytes past the committed length were written by a batch that
		// never committed; the length is aligned, as writes need.
		if err := f.Truncate(alignUp(c.bytes)); err != nil {
			f.Close()
			return nil, fmt.Errorf("segment %d: %w", c.id, err)
		}
		return newSegment(c.id, f, alignUp(c.bytes)), nil
	}
	return nil, nil
}

// register adds this process to the capture's writers, in the open
// transaction.
func (w *writer) register() error {
	host, _ := os.Hostname()
	id, err := w.run(`INSERT INTO writers(name, host, pid, proc_start, started_ns) VALUES (?,?,?,?,?) RETURNING id`,
		func(st *sqlite.Stmt) {
			st.BindText(1, w.name)
			st.BindText(2, host)
			st.BindInt64(3, int64(os.Getpid()))
			st.BindText(4, procStart(os.Getpid()))
			st.BindInt64(5, time.Now().UnixNano())
		})
	if err != nil {
		return fmt.Errorf("register writer: %w", err)
	}
	w.writerID = id
	return nil
}

// procStart returns when process pid started, as the kernel counts it
// (field 22 of /proc/PID/stat), or "" where that cannot be read. With the
// pid it tells a writer's process from a later one that reused its pid.
func procStart(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	// The command name (field 2) is in parentheses and may hold spaces.
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ""
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 20 {
		return ""
	}
	return fields[19]
}

// retireSegment seals and lets go of the writer's segment when no call
// refers to it any more (retention deleted them all), so that retention
// can delete it; the next large body starts another.
func (w *writer) retireSegment() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.seg == nil || w.conn == nil {
		return nil
	}
	id := w.seg.id
	unused, err := w.run(`SELECT first_call IS NOT NULL AND NOT EXISTS
		(SELECT 1 FROM calls WHERE id BETWEEN segments.first_call AND segments.last_call) FROM segments WHERE id = ?`,
		func(st *sqlite.Stmt) { st.BindInt64(1, id) })
	if err != nil || unused == 0 {
		return err
	}
	if _, err := w.run(`UPDATE segments SET sealed = 1 WHERE id = ?`, func(st *sqlite.Stmt) { st.BindInt64(1, id) }); err != nil {
		return fmt.Errorf("seal segment %d: %w", id, err)
	}
	w.seg.close()
	w.seg = nil
	return nil
}
