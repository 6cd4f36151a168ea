package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

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
