package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
)

// Compact writes the capture to out as one self-contained file: every
// body kept in a segment file is put back inline, so out needs no
// segment folder (for sharing, attaching to a bug). The capture itself is
// only read and may be recorded into meanwhile: out holds what was
// committed when Compact started. out must not exist.
func (s *liteStore) Compact(ctx context.Context, out string) (err error) {
	// VACUUM INTO reads one snapshot and writes a fresh, defragmented copy.
	src, err := sql.Open("sqlite", dsn(s.path, "mode=ro"))
	if err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	_, err = src.ExecContext(ctx, "VACUUM INTO ?", out)
	src.Close()
	if err != nil {
		os.Remove(out)
		return fmt.Errorf("compact %s into %s: %w", s.path, out, err)
	}
	defer func() {
		if err != nil {
			os.Remove(out)
			os.RemoveAll(SegmentDir(out))
		}
	}()
	dst, err := openLite(ctx, out, Options{})
	if err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	defer func() { err = errors.Join(err, dst.Close()) }()
	if dst.version < 2 {
		return nil // a v1 capture is migrated by Open; it had no segments
	}
	for _, table := range []string{"calls", "chunks"} {
		if err := s.inlineSegments(ctx, dst, table); err != nil {
			return fmt.Errorf("compact: %w", err)
		}
	}
	if _, err := dst.wdb.ExecContext(ctx, "DELETE FROM segments"); err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	return nil
}

// inlineSegments puts the bodies of table's rows in dst that are kept in
// segments (read from s's segment files) back into their rows.
func (s *liteStore) inlineSegments(ctx context.Context, dst *liteStore, table string) error {
	const step = 256
	var after int64
	for {
		rows, err := dst.wdb.QueryContext(ctx, "SELECT id, seg, seg_off, seg_len, seg_crc FROM "+table+
			" WHERE id > ? AND seg IS NOT NULL ORDER BY id LIMIT ?", after, step)
		if err != nil {
			return err
		}
		type row struct{ id, seg, off, n, crc int64 }
		var list []row
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.id, &r.seg, &r.off, &r.n, &r.crc); err != nil {
				rows.Close()
				return err
			}
			list = append(list, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(list) == 0 {
			return nil
		}
		tx, err := dst.wdb.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		for _, r := range list {
			b, err := s.segs.read(r.seg, r.off, r.n, uint32(r.crc))
			if err != nil {
				tx.Rollback()
				return fmt.Errorf("%s row %d: %w", table, r.id, err)
			}
			if _, err := tx.ExecContext(ctx, "UPDATE "+table+
				" SET bodies = ?, seg = NULL, seg_off = NULL, seg_len = NULL, seg_crc = NULL WHERE id = ?", b, r.id); err != nil {
				tx.Rollback()
				return err
			}
			after = r.id
		}
		if err := tx.Commit(); err != nil {
			return err
		}
	}
}
