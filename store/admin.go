package store

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"time"

	"zombiezen.com/go/sqlite"
)

// StoppedMessage is the status message of calls closed by CloseOpenCalls.
const StoppedMessage = "grpctap stopped before the call ended"

// CloseOpenCalls closes the calls left open by writers that are gone (a
// crash, kill -9, or a clean stop that could not write a call's end): they
// end at their last message (or their start) with status UNAVAILABLE and
// StoppedMessage. Calls of processes still recording into the capture are
// left alone. A writer is gone when it said so on closing, or when it ran
// on this host and its process (pid and start time) no longer runs. It
// returns how many calls it closed.
func (s *liteStore) CloseOpenCalls(ctx context.Context) (int64, error) {
	if s.readOnly {
		return 0, ErrReadOnly
	}
	w := s.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.conn == nil {
		return 0, errClosed
	}
	host, _ := os.Hostname()
	type wr struct {
		id, pid         int64
		host, procStart string
		ended           bool
	}
	var gone []int64
	if s.version >= 2 {
		st, err := w.prep(`SELECT id, host, pid, proc_start, ended_ns IS NOT NULL FROM writers WHERE id != ?`)
		if err != nil {
			return 0, fmt.Errorf("close open calls: %w", err)
		}
		st.BindInt64(1, w.writerID)
		var list []wr
		for {
			row, err := st.Step()
			if err != nil {
				st.Reset()
				return 0, fmt.Errorf("close open calls: %w", err)
			}
			if !row {
				break
			}
			list = append(list, wr{id: st.ColumnInt64(0), host: st.ColumnText(1), pid: st.ColumnInt64(2),
				procStart: st.ColumnText(3), ended: st.ColumnBool(4)})
		}
		st.Reset()
		for _, x := range list {
			if x.ended || (x.host == host && !processRuns(int(x.pid), x.procStart)) {
				gone = append(gone, x.id)
			}
		}
	}
	// Writer 0: calls written before writers were recorded (schema 1).
	gone = append(gone, 0)
	if _, err := w.run("BEGIN IMMEDIATE", nil); err != nil {
		return 0, fmt.Errorf("close open calls: %w", err)
	}
	var total int64
	for _, id := range gone {
		_, err := w.run(`UPDATE calls SET
			end_ns = coalesce((SELECT max(time_ns) FROM messages WHERE call_id = calls.id), start_ns),
			status_code = 14, status_message = ?, status_details = '[]'
			WHERE end_ns IS NULL AND writer = ?`, func(st *sqlite.Stmt) {
			st.BindText(1, StoppedMessage)
			st.BindInt64(2, id)
		})
		total += int64(w.conn.Changes())
		if err == nil && id != 0 {
			_, err = w.run(`UPDATE writers SET ended_ns = coalesce(ended_ns, ?) WHERE id = ?`, func(st *sqlite.Stmt) {
				st.BindInt64(1, time.Now().UnixNano())
				st.BindInt64(2, id)
			})
		}
		if err != nil {
			w.run("ROLLBACK", nil)
			return 0, fmt.Errorf("close open calls: %w", err)
		}
	}
	if _, err := w.run("COMMIT", nil); err != nil {
		w.run("ROLLBACK", nil)
		return 0, fmt.Errorf("close open calls: %w", err)
	}
	return total, nil
}

// processRuns reports whether process pid runs and, when start is known,
// is the one that started then (not a later process with a reused pid).
func processRuns(pid int, start string) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
		return false
	}
	if start == "" {
		return true
	}
	now := procStart(pid)
	return now == "" || now == start
}

// SaveDescriptors stores a serialized google.protobuf.FileDescriptorSet
// for a backend, replacing the previous one.
func (s *liteStore) SaveDescriptors(ctx context.Context, backend string, fds []byte) error {
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
