package store

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations[i] takes a capture from schema version i to i+1. Append only:
// a released migration never changes.
var migrations = []string{
	// 1: calls, messages, counters, descriptors.
	`
CREATE TABLE calls (
	id               INTEGER PRIMARY KEY,
	method           TEXT    NOT NULL,
	protocol         TEXT    NOT NULL DEFAULT 'grpc',
	backend          TEXT    NOT NULL DEFAULT '',
	authority        TEXT    NOT NULL DEFAULT '',
	peer             TEXT    NOT NULL DEFAULT '',
	content_type     TEXT    NOT NULL DEFAULT '',
	compression      TEXT    NOT NULL DEFAULT '',
	rpc              TEXT,               -- from descriptors; NULL: guess from counts
	start_ns         INTEGER NOT NULL,
	deadline_ns      INTEGER,
	end_ns           INTEGER,            -- NULL while open
	status_code      INTEGER,
	status_message   TEXT,
	status_details   TEXT,               -- JSON array of base64 Any
	request_headers  TEXT    NOT NULL DEFAULT '{}',
	response_headers TEXT    NOT NULL DEFAULT '{}',
	trailers         TEXT    NOT NULL DEFAULT '{}',
	request_count    INTEGER NOT NULL DEFAULT 0,
	response_count   INTEGER NOT NULL DEFAULT 0,
	request_bytes    INTEGER NOT NULL DEFAULT 0,
	response_bytes   INTEGER NOT NULL DEFAULT 0,
	dropped          INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX calls_start  ON calls(start_ns);
CREATE INDEX calls_method ON calls(method, start_ns);
CREATE INDEX calls_status ON calls(status_code, start_ns);
CREATE INDEX calls_open   ON calls(id) WHERE end_ns IS NULL;

CREATE TABLE messages (
	call_id   INTEGER NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
	seq       INTEGER NOT NULL,
	direction INTEGER NOT NULL,          -- 1 request, 2 response
	time_ns   INTEGER NOT NULL,
	size      INTEGER NOT NULL,
	truncated INTEGER NOT NULL DEFAULT 0,
	raw       BLOB    NOT NULL,
	PRIMARY KEY (call_id, seq)
);

CREATE TABLE counters (
	name  TEXT PRIMARY KEY,
	value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO counters(name, value) VALUES ('dropped_events', 0);

CREATE TABLE descriptors (
	backend    TEXT PRIMARY KEY,
	fds        BLOB NOT NULL,            -- serialized google.protobuf.FileDescriptorSet
	updated_ns INTEGER NOT NULL
);
`,
}

func schemaVersion() int { return len(migrations) }

// migrate brings db forward to the current schema version, one transaction
// per step. prelude, when not empty, runs in the first step's transaction.
func migrate(ctx context.Context, db *sql.DB, prelude string) error {
	var v int
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if v > schemaVersion() {
		return fmt.Errorf("%w (schema version %d)", ErrNewerSchema, v)
	}
	for ; v < schemaVersion(); v++ {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("migrate to %d: %w", v+1, err)
		}
		if prelude != "" {
			if _, err := tx.ExecContext(ctx, prelude); err != nil {
				tx.Rollback()
				return fmt.Errorf("migrate to %d: %w", v+1, err)
			}
			prelude = ""
		}
		if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate to %d: %w", v+1, err)
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v+1)); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate to %d: %w", v+1, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migrate to %d: %w", v+1, err)
		}
	}
	return nil
}
