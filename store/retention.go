package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// pruneChunk bounds how many calls one prune statement deletes, so the
// writer is never held for long.
const pruneChunk = 500

// Prune deletes the oldest closed calls (messages with them): those started
// before olderThan (when not zero), then more, oldest first, until the
// capture's used size is at most maxBytes (when > 0). Freed pages are given
// back to the file system. Open calls are never pruned. It returns how many
// calls it deleted.
func (s *liteStore) Prune(ctx context.Context, olderThan time.Time, maxBytes int64) (int64, error) {
	if s.readOnly {
		return 0, ErrReadOnly
	}
	var total int64
	if !olderThan.IsZero() {
		for {
			// Every call started before the bound is in a batch whose
			// earliest start is (the batch rows spare a start index).
			n, err := s.deleteCalls(ctx, `SELECT id FROM calls
				WHERE id <= (SELECT coalesce(max(last_id), 0) FROM batches WHERE min_start_ns < ?1)
				AND +start_ns < ?1 AND end_ns IS NOT NULL ORDER BY id LIMIT ?2`,
				olderThan.UnixNano(), pruneChunk)
			if err != nil {
				return total, err
			}
			total += n
			if n < pruneChunk {
				break
			}
		}
	}
	if maxBytes > 0 {
		for {
			used, err := s.UsedBytes(ctx)
			if err != nil {
				return total, err
			}
			if used <= maxBytes {
				break
			}
			// Delete a share of the calls proportional to the excess.
			var closed int64
			if err := s.wdb.QueryRowContext(ctx, "SELECT count(*) FROM calls WHERE end_ns IS NOT NULL").Scan(&closed); err != nil {
				return total, fmt.Errorf("prune: %w", err)
			}
			if closed == 0 {
				break
			}
			n := closed * (used - maxBytes) / used
			n = max(1, min(n+1, pruneChunk))
			d, err := s.deleteCalls(ctx, `SELECT id FROM calls WHERE end_ns IS NOT NULL ORDER BY id LIMIT ?`, n)
			if err != nil {
				return total, err
			}
			total += d
			if d == 0 {
				break
			}
			// Segments count in the size: give back those now unused.
			if err := s.dropSegments(ctx); err != nil {
				return total, err
			}
		}
	}
	if total > 0 {
		if err := s.dropSegments(ctx); err != nil {
			return total, err
		}
		if _, err := s.wdb.ExecContext(ctx, "PRAGMA incremental_vacuum"); err != nil {
			return total, fmt.Errorf("prune: vacuum: %w", err)
		}
	}
	return total, nil
}

// dropSegments deletes the segment files no remaining call refers to
// (no call in the id range of the bodies they hold) and that no writer
// holds, and the batch rows whose calls are all gone.
func (s *liteStore) dropSegments(ctx context.Context) error {
	if s.w != nil {
		if err := s.w.retireSegment(); err != nil {
			return fmt.Errorf("prune: %w", err)
		}
	}
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("prune: segments: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM batches WHERE NOT EXISTS
		(SELECT 1 FROM calls WHERE id BETWEEN batches.first_id AND batches.last_id)`); err != nil {
		return fmt.Errorf("prune: batches: %w", err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT id FROM segments WHERE first_call IS NOT NULL AND NOT EXISTS
		(SELECT 1 FROM calls WHERE id BETWEEN segments.first_call AND segments.last_call)`)
	if err != nil {
		return fmt.Errorf("prune: segments: %w", err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return fmt.Errorf("prune: segments: %w", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("prune: segments: %w", err)
	}
	dir := SegmentDir(s.path)
	var unlink []*os.File
	defer func() {
		for _, f := range unlink {
			f.Close()
		}
	}()
	for _, id := range ids {
		// The transaction holds the write lock, so no writer can take the
		// segment meanwhile; one that holds it now (this process's too:
		// flocks of two opens conflict) keeps it.
		f, ok, err := openSegment(dir, id, false, false)
		if errors.Is(err, os.ErrNotExist) {
			ok = true
		} else if err != nil {
			return fmt.Errorf("prune: %w", err)
		} else if !ok {
			continue
		} else {
			unlink = append(unlink, f)
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM segments WHERE id = ?", id); err != nil {
			return fmt.Errorf("prune: segment %d: %w", id, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("prune: segments: %w", err)
	}
	for _, f := range unlink {
		os.Remove(f.Name())
	}
	for _, id := range ids {
		s.segs.forget(id)
	}
	return nil
}

// deleteCalls deletes the calls the query selects (by id) and their
// messages, in one transaction, and returns how many calls it deleted.
// Messages are deleted here, not by the schema's ON DELETE CASCADE: the
// store's connections keep foreign keys off (see dsn).
func (s *liteStore) deleteCalls(ctx context.Context, selectIDs string, args ...any) (int64, error) {
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("prune: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "CREATE TEMP TABLE IF NOT EXISTS prune_ids(id INTEGER PRIMARY KEY)"); err != nil {
		return 0, fmt.Errorf("prune: %w", err)
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM prune_ids"); err != nil {
		return 0, fmt.Errorf("prune: %w", err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO prune_ids(id) "+selectIDs, args...); err != nil {
		return 0, fmt.Errorf("prune: %w", err)
	}
	for _, table := range []string{"chunks", "messages_v1"} {
		if _, err := tx.ExecContext(ctx, "DELETE FROM "+table+" WHERE call_id IN (SELECT id FROM prune_ids)"); err != nil {
			return 0, fmt.Errorf("prune: messages: %w", err)
		}
	}
	res, err := tx.ExecContext(ctx, "DELETE FROM calls WHERE id IN (SELECT id FROM prune_ids)")
	if err != nil {
		return 0, fmt.Errorf("prune: %w", err)
	}
	n, _ := res.RowsAffected()
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("prune: commit: %w", err)
	}
	return n, nil
}

// UsedBytes returns the bytes the capture holds: its pages (file size
// minus free pages; the WAL not counted) and its segment files' committed
// bytes.
func (s *liteStore) UsedBytes(ctx context.Context) (int64, error) {
	db := s.wdb
	if db == nil {
		db = s.rdb
	}
	var segs int64
	if s.version >= 2 {
		if err := db.QueryRowContext(ctx, "SELECT coalesce(sum(bytes), 0) FROM segments").Scan(&segs); err != nil {
			return 0, fmt.Errorf("used bytes: %w", err)
		}
	}
	var pages, free, size int64
	if err := db.QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages); err != nil {
		return 0, fmt.Errorf("used bytes: %w", err)
	}
	if err := db.QueryRowContext(ctx, "PRAGMA freelist_count").Scan(&free); err != nil {
		return 0, fmt.Errorf("used bytes: %w", err)
	}
	if err := db.QueryRowContext(ctx, "PRAGMA page_size").Scan(&size); err != nil {
		return 0, fmt.Errorf("used bytes: %w", err)
	}
	return (pages-free)*size + segs, nil
}
