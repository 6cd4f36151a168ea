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

	// 2: store v2. Ids come from the capture (counters.next_call_id, taken
	// in the writer's transaction), so any number of processes can write
	// one file. Messages are stored one row per call per batch (chunks),
	// or in the calls row when the call starts and ends in one batch; a
	// row's bodies go to a segment file beside the capture from
	// SegmentThreshold bytes. The
	// start, method and status indexes gave way to one row per batch
	// (batches: its id range, earliest and latest start, methods) and a partial
	// index of failed calls. The messages view shows every message as a
	// row, v1's table (messages_v1) included.
	`
ALTER TABLE messages RENAME TO messages_v1;
DROP INDEX calls_start;
DROP INDEX calls_method;
DROP INDEX calls_status;
CREATE INDEX calls_failed ON calls(status_code) WHERE status_code != 0;
ALTER TABLE calls ADD COLUMN writer INTEGER NOT NULL DEFAULT 0;
ALTER TABLE calls ADD COLUMN msgs    TEXT;     -- index of the messages stored with the row (msgindex.go)
ALTER TABLE calls ADD COLUMN bodies  BLOB;     -- their bodies, or NULL when in a segment:
ALTER TABLE calls ADD COLUMN seg     INTEGER;  -- segments.id
ALTER TABLE calls ADD COLUMN seg_off INTEGER;
ALTER TABLE calls ADD COLUMN seg_len INTEGER;
ALTER TABLE calls ADD COLUMN seg_crc INTEGER;  -- CRC-32C (Castagnoli) of the bytes

CREATE TABLE chunks (
	id      INTEGER PRIMARY KEY,
	call_id INTEGER NOT NULL,
	base_ns INTEGER NOT NULL,   -- the times in msgs count from it
	msgs    TEXT    NOT NULL,
	bodies  BLOB,               -- as in calls: inline, or in a segment
	seg     INTEGER,
	seg_off INTEGER,
	seg_len INTEGER,
	seg_crc INTEGER
);
CREATE INDEX chunks_call ON chunks(call_id);

CREATE TABLE batches (
	first_id     INTEGER PRIMARY KEY,   -- ids first_id..last_id were given in one transaction
	last_id      INTEGER NOT NULL,
	min_start_ns INTEGER NOT NULL,      -- the earliest and latest start among them
	max_start_ns INTEGER NOT NULL,
	methods      TEXT    NOT NULL       -- their methods, each between newlines
);
CREATE INDEX batches_start ON batches(max_start_ns);

CREATE TABLE writers (
	id         INTEGER PRIMARY KEY,
	name       TEXT    NOT NULL,
	host       TEXT    NOT NULL,
	pid        INTEGER NOT NULL,
	proc_start TEXT    NOT NULL DEFAULT '',  -- tells a reused pid from the writer's own
	started_ns INTEGER NOT NULL,
	ended_ns   INTEGER
);

CREATE TABLE segments (
	id         INTEGER PRIMARY KEY,
	name       TEXT    NOT NULL UNIQUE,  -- file name in the capture's segment folder
	bytes      INTEGER NOT NULL DEFAULT 0,  -- committed length; anything after it is unused
	first_call INTEGER,
	last_call  INTEGER,
	sealed     INTEGER NOT NULL DEFAULT 0,
	created_ns INTEGER NOT NULL
);

INSERT INTO counters(name, value) SELECT 'next_call_id', coalesce(max(id), 0) FROM calls;
INSERT INTO counters(name, value) VALUES ('skipped_calls', 0);

INSERT INTO batches(first_id, last_id, min_start_ns, max_start_ns, methods)
	SELECT min(id), max(id), min(start_ns), max(start_ns), '' FROM calls GROUP BY id / 1024;
UPDATE batches SET methods = char(10) || (SELECT group_concat(m, char(10)) FROM
	(SELECT DISTINCT method AS m FROM calls WHERE id BETWEEN batches.first_id AND batches.last_id)) || char(10);

CREATE VIEW messages(call_id, seq, direction, time_ns, size, truncated, raw, segment, segment_offset) AS
	SELECT c.id, m.value->>0, m.value->>1, c.start_ns + (m.value->>2), m.value->>3, m.value->>4,
		substr(c.bodies, m.value->>6 + 1, m.value->>5), c.seg, c.seg_off + (m.value->>6)
	FROM calls c, json_each(c.msgs) m WHERE c.msgs IS NOT NULL
	UNION ALL
	SELECT k.call_id, m.value->>0, m.value->>1, k.base_ns + (m.value->>2), m.value->>3, m.value->>4,
		substr(k.bodies, m.value->>6 + 1, m.value->>5), k.seg, k.seg_off + (m.value->>6)
	FROM chunks k, json_each(k.msgs) m
	UNION ALL
	SELECT call_id, seq, direction, time_ns, size, truncated, raw, NULL, NULL FROM messages_v1;
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
		// Another process may have migrated (or created) the file since v
		// was read: the transaction holds the write lock (the DSN asks for
		// immediate transactions), so this read is the truth.
		var now int
		if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&now); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate to %d: %w", v+1, err)
		}
		if now > v {
			tx.Rollback()
			if now > schemaVersion() {
				return fmt.Errorf("%w (schema version %d)", ErrNewerSchema, now)
			}
			v, prelude = now-1, ""
			continue
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
