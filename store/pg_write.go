package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// The PostgreSQL write path: a batch is one transaction of a few round
// trips: the ids (one UPDATE of the counter, when the batch starts calls),
// COPY of the calls it starts, COPY of its messages, and one pipelined
// batch of the updates of calls that started earlier, the counters, the
// writer's heartbeat and the notification.

var pgCallColumns = []string{"id", "proxy", "writer", "method", "protocol", "backend", "authority", "peer",
	"content_type", "compression", "start_ns", "deadline_ns", "request_headers", "response_headers",
	"end_ns", "status_code", "status_message", "status_details", "trailers",
	"request_count", "response_count", "request_bytes", "response_bytes", "dropped"}

var pgMessageColumns = []string{"call_id", "seq", "direction", "time_ns", "size", "truncated", "raw"}

const pgUpdCall = `UPDATE grpctap.calls SET response_headers = coalesce($1, response_headers),
	request_count = request_count + $2, response_count = response_count + $3,
	request_bytes = request_bytes + $4, response_bytes = response_bytes + $5,
	end_ns = coalesce($6, end_ns), status_code = coalesce($7, status_code),
	status_message = coalesce($8, status_message), status_details = coalesce($9, status_details),
	trailers = coalesce($10, trailers), dropped = dropped + $11
	WHERE id = $12`

func (p *pgStore) WriteBatch(ctx context.Context, events []Event) error {
	if p.readOnly {
		return ErrReadOnly
	}
	if len(events) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("write batch: %w", err)
	}
	p.wmu.Lock()
	defer p.wmu.Unlock()
	select {
	case <-p.closed:
		return fmt.Errorf("write batch: %w", errClosed)
	default:
	}
	if wait := time.Until(p.retryAt); wait > 0 {
		return fmt.Errorf("write batch: %s unreachable, next try in %s: %w", p.display, wait.Round(time.Millisecond), p.lastErr)
	}
	ctx, cancel := context.WithTimeout(ctx, pgBatchTimeout)
	defer cancel()
	if !p.ready {
		if err := p.migrate(ctx); err != nil {
			p.fail(err)
			return fmt.Errorf("write batch: %w", err)
		}
		p.ready = true
	}
	err := p.writeBatch(ctx, events)
	if err != nil {
		if isConnErr(err) {
			p.fail(err)
		}
		return fmt.Errorf("write batch: %w", err)
	}
	p.backoff, p.lastErr = pgMinBackoff, nil
	return nil
}

func (p *pgStore) writeBatch(ctx context.Context, events []Event) (err error) {
	f := &p.folder
	dropped, skipped := f.fold(events)
	defer f.forget()
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return err
	}
	registered := false
	defer func() {
		if err != nil {
			_ = tx.Rollback(context.Background())
			if registered {
				p.writerID = 0
			}
		}
	}()
	now := time.Now().UnixNano()
	if p.writerID == 0 {
		host, _ := os.Hostname()
		if err := tx.QueryRow(ctx, `INSERT INTO grpctap.writers(name, host, pid, proc_start, started_ns, seen_ns)
			VALUES ($1, $2, $3, $4, $5, $5) RETURNING id`, p.opts.Name, host, os.Getpid(), procStart(os.Getpid()), now).Scan(&p.writerID); err != nil {
			return fmt.Errorf("register writer: %w", err)
		}
		registered = true
	}
	var firstID int64
	if n := f.starts(); n > 0 {
		var last int64
		if err := tx.QueryRow(ctx, `UPDATE grpctap.counters SET value = value + $1 WHERE name = 'next_call_id' RETURNING value`, n).Scan(&last); err != nil {
			return fmt.Errorf("call ids: %w", err)
		}
		firstID = last - n + 1
	}
	f.assign(firstID)

	calls, msgs := &p.callsCopy, &p.msgsCopy
	calls.reset()
	msgs.reset()
	var upd pgx.Batch
	var md []byte
	var keys []string
	// mdText is metadata's JSON, viewed in a scratch buffer that the next
	// call reuses: COPY's buffer copies it at once; what the batch of
	// updates keeps until it is sent is cloned.
	mdText := func(m Metadata, redacted []string) string {
		md, keys = appendMD(md[:0], keys, m, redacted)
		return unsafeString(md)
	}
	for i := range f.folds {
		c := &f.folds[i]
		if c.id == 0 {
			continue
		}
		var drops int64
		e := c.end
		if e != nil {
			drops = e.Dropped
		}
		if s := c.start; s != nil {
			calls.row(len(pgCallColumns))
			calls.int64(c.id)
			calls.text(p.opts.Name)
			calls.int64(p.writerID)
			for _, v := range []string{s.Method, s.Protocol, s.Backend, s.Authority, s.Peer, s.ContentType, s.Compression} {
				calls.text(v)
			}
			calls.int64(s.Time.UnixNano())
			if s.Deadline.IsZero() {
				calls.null()
			} else {
				calls.int64(s.Deadline.UnixNano())
			}
			calls.text(mdText(s.Header, s.Redacted))
			if c.header != nil {
				calls.text(mdText(c.header.Header, c.header.Redacted))
			} else {
				calls.text("{}")
			}
			if e != nil {
				calls.int64(e.Time.UnixNano())
				calls.int32(int32(e.Code))
				calls.text(e.Message)
				calls.text(detailsJSON(e.Details))
				calls.text(mdText(e.Trailers, e.Redacted))
			} else {
				calls.null()
				calls.null()
				calls.null()
				calls.null()
				calls.text("{}")
			}
			for _, v := range []int64{c.reqN, c.respN, c.reqB, c.respB, drops} {
				calls.int64(v)
			}
		} else {
			var endNS, code, stMsg, details, trailers, respH any
			if e != nil {
				endNS, code, stMsg, details, trailers = e.Time.UnixNano(), int32(e.Code), pgSafe(e.Message), detailsJSON(e.Details), strings.Clone(pgSafe(mdText(e.Trailers, e.Redacted)))
			}
			if c.header != nil {
				respH = strings.Clone(pgSafe(mdText(c.header.Header, c.header.Redacted)))
			}
			upd.Queue(pgUpdCall, respH, c.reqN, c.respN, c.reqB, c.respB, endNS, code, stMsg, details, trailers, drops, c.id)
		}
		for _, m := range c.msgs {
			dir := int16(1)
			if m.Direction == DirResponse {
				dir = 2
			}
			msgs.row(len(pgMessageColumns))
			msgs.int64(c.id)
			msgs.int32(int32(m.Seq))
			msgs.int16(dir)
			msgs.int64(m.Time.UnixNano())
			msgs.int64(m.Size)
			msgs.bool(m.Truncated)
			msgs.bytea(m.Raw)
		}
	}
	pc := tx.Conn().PgConn()
	for _, t := range []struct {
		name string
		cols []string
		buf  *copyBuf
	}{{"calls", pgCallColumns, calls}, {"messages", pgMessageColumns, msgs}} {
		if t.buf.rows == 0 {
			continue
		}
		if _, err := pc.CopyFrom(ctx, bytes.NewReader(t.buf.finish()),
			"COPY grpctap."+t.name+" ("+strings.Join(t.cols, ", ")+") FROM STDIN (FORMAT binary)"); err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
	}
	// A batch of large bodies does not keep its buffer.
	if cap(msgs.b) > 8<<20 {
		msgs.b = nil
	}
	for name, n := range map[string]int64{"dropped_events": dropped, "skipped_calls": skipped} {
		if n != 0 {
			upd.Queue(`UPDATE grpctap.counters SET value = value + $1 WHERE name = $2`, n, name)
		}
	}
	upd.Queue(`UPDATE grpctap.writers SET seen_ns = $1 WHERE id = $2`, now, p.writerID)
	upd.Queue(`SELECT pg_notify('`+pgChannel+`', $1)`, p.instance)
	if err := tx.SendBatch(ctx, &upd).Close(); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	f.handBack(events)
	return nil
}

// pgSafe is s as PostgreSQL text takes it (see copyBuf.text).
func pgSafe(s string) string {
	if pgText(s) {
		return s
	}
	return strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", "\uFFFD"), "\uFFFD")
}

// CloseOpenCalls closes the calls left open by writers that are gone:
// they said so, or ran on this host and their process is gone, or have
// not been heard of for pgWriterGone (another host's process stopped
// without a word).
func (p *pgStore) CloseOpenCalls(ctx context.Context) (int64, error) {
	if p.readOnly {
		return 0, ErrReadOnly
	}
	host, _ := os.Hostname()
	p.wmu.Lock()
	self := p.writerID
	p.wmu.Unlock()
	rows, err := p.pool.Query(ctx, `SELECT id, host, pid, proc_start, ended_ns IS NOT NULL, seen_ns FROM grpctap.writers
		WHERE id <> $1 AND ended_ns IS NULL OR id IN (SELECT DISTINCT writer FROM grpctap.calls WHERE end_ns IS NULL)`, self)
	if err != nil {
		return 0, fmt.Errorf("close open calls: %w", err)
	}
	type wr struct {
		id, pid, seen   int64
		host, procStart string
		ended           bool
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (wr, error) {
		var x wr
		err := r.Scan(&x.id, &x.host, &x.pid, &x.procStart, &x.ended, &x.seen)
		return x, err
	})
	if err != nil {
		return 0, fmt.Errorf("close open calls: %w", err)
	}
	stale := time.Now().Add(-pgWriterGone).UnixNano()
	gone := []int64{}
	for _, x := range list {
		if x.id == self {
			continue
		}
		if x.ended || x.seen < stale || (x.host == host && !processRuns(int(x.pid), x.procStart)) {
			gone = append(gone, x.id)
		}
	}
	if len(gone) == 0 {
		return 0, nil
	}
	tag, err := p.pool.Exec(ctx, `UPDATE grpctap.calls c SET
		end_ns = coalesce((SELECT max(time_ns) FROM grpctap.messages m WHERE m.call_id = c.id), c.start_ns),
		status_code = 14, status_message = $1, status_details = '[]'
		WHERE end_ns IS NULL AND writer = ANY($2)`, StoppedMessage, gone)
	if err != nil {
		return 0, fmt.Errorf("close open calls: %w", err)
	}
	if _, err := p.pool.Exec(ctx, `UPDATE grpctap.writers SET ended_ns = coalesce(ended_ns, $1) WHERE id = ANY($2)`,
		time.Now().UnixNano(), gone); err != nil {
		return 0, fmt.Errorf("close open calls: %w", err)
	}
	return tag.RowsAffected(), nil
}

// Prune deletes the closed calls that started before olderThan, with
// their messages, in one process at a time (an advisory lock: a process
// that finds it taken leaves the work to the holder). PostgreSQL does not
// give deleted space back to the system (only VACUUM FULL does), so a
// size cap is refused: keep a PostgreSQL capture small by age.
func (p *pgStore) Prune(ctx context.Context, olderThan time.Time, maxBytes int64) (int64, error) {
	if p.readOnly {
		return 0, ErrReadOnly
	}
	if maxBytes > 0 {
		return 0, errors.New("prune: a size cap applies to SQLite captures only; bound a PostgreSQL capture by age")
	}
	if olderThan.IsZero() {
		return 0, nil
	}
	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return 0, fmt.Errorf("prune: %w", err)
	}
	defer conn.Release()
	var got bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", int64(pgLockPrune)).Scan(&got); err != nil {
		return 0, fmt.Errorf("prune: %w", err)
	}
	if !got {
		return 0, nil
	}
	defer conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", int64(pgLockPrune))
	var total int64
	for {
		// A few thousand calls a transaction keeps each one short.
		var n int64
		err := conn.QueryRow(ctx, `WITH gone AS (
			DELETE FROM grpctap.calls WHERE id IN (SELECT id FROM grpctap.calls
				WHERE start_ns < $1 AND end_ns IS NOT NULL ORDER BY start_ns LIMIT 5000) RETURNING id),
			msgs AS (DELETE FROM grpctap.messages WHERE call_id IN (SELECT id FROM gone))
			SELECT count(*) FROM gone`, olderThan.UnixNano()).Scan(&n)
		if err != nil {
			return total, fmt.Errorf("prune: %w", err)
		}
		total += n
		if n < 5000 {
			return total, nil
		}
	}
}

// UsedBytes is the size on disk of the grpctap schema's tables and
// indexes.
func (p *pgStore) UsedBytes(ctx context.Context) (int64, error) {
	var n int64
	err := p.pool.QueryRow(ctx, `SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'grpctap' AND c.relkind = 'r'`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("used bytes: %w", err)
	}
	return n, nil
}

// Compact writes the capture to out, a new SQLite file: every call with
// its messages (new ids, in the same order), the saved descriptors and
// the collections. It is how a fleet's capture is shared as one file.
func (p *pgStore) Compact(ctx context.Context, out string) (err error) {
	dst, err := openLite(ctx, out, Options{Name: "compact of " + p.display})
	if err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	defer func() {
		err = errors.Join(err, dst.Close())
		if err != nil {
			os.Remove(out)
			os.RemoveAll(SegmentDir(out))
		}
	}()
	d := &Store{dst}
	var page []CallWithMessages
	flush := func() error {
		if len(page) == 0 {
			return nil
		}
		_, err := d.Import(ctx, page)
		page = page[:0]
		return err
	}
	if err := p.EachCall(ctx, Filter{}, func(c *Call) error {
		msgs, err := p.Messages(ctx, c.ID)
		if err != nil {
			return err
		}
		page = append(page, CallWithMessages{Call: *c, Messages: msgs})
		if len(page) >= 256 {
			return flush()
		}
		return nil
	}); err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	if err := flush(); err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	rows, err := p.pool.Query(ctx, "SELECT backend, fds FROM grpctap.descriptors")
	if err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	type fd struct {
		backend string
		fds     []byte
	}
	fds, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (fd, error) {
		var f fd
		err := r.Scan(&f.backend, &f.fds)
		return f, err
	})
	if err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	for _, f := range fds {
		if err := dst.SaveDescriptors(ctx, f.backend, f.fds); err != nil {
			return fmt.Errorf("compact: %w", err)
		}
	}
	cols, err := p.Collections(ctx)
	if err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	for _, c := range cols {
		if _, err := dst.CreateCollection(ctx, c.Name, c.Body); err != nil {
			return fmt.Errorf("compact: %w", err)
		}
	}
	return nil
}

// pgArgs builds a statement's $n parameters.
type pgArgs []any

func (a *pgArgs) add(v any) string {
	*a = append(*a, v)
	return "$" + strconv.Itoa(len(*a))
}
