package store

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	msqlite "modernc.org/sqlite" // also registers the "sqlite" driver
	sqlite3 "modernc.org/sqlite/lib"
)

// ApplicationID marks an SQLite file as a grpctap capture ("gtap").
const ApplicationID = 0x67746170

// ErrNotCapture is returned (wrapped) by Open for a file that is not a
// grpctap capture: another SQLite database, or not SQLite at all.
var ErrNotCapture = errors.New("not a grpctap capture")

// ErrCorrupt is returned (wrapped) by Open for a grpctap capture that SQLite
// cannot read.
var ErrCorrupt = errors.New("capture file is corrupt")

// ErrNewerSchema is returned (wrapped) by Open for a capture written by a
// newer grpctap.
var ErrNewerSchema = errors.New("capture written by a newer grpctap")

// ErrNoCapture is returned (wrapped) by Open with ReadOnly for a path that
// does not exist.
var ErrNoCapture = errors.New("no capture file")

// ErrNotFound is returned (wrapped) when a call does not exist.
var ErrNotFound = errors.New("not found")

// Options configure Open.
type Options struct {
	// ReadOnly opens an existing capture for reading only (the CLI's
	// commands); it is never created or migrated. Default false: the file
	// is created when missing and migrated to the current schema.
	ReadOnly bool
	// ReadConns bounds the read pool. Default 4.
	ReadConns int
	// MaxPages caps the file at this many pages (SQLite max_page_count):
	// writes beyond it fail as they would on a full disk. Default: no cap.
	MaxPages int
	// Name is how this process is known among the capture's writers.
	// Default: the host name.
	Name string
	// SegmentBytes is the size at which a segment file is sealed and the
	// next one started. Default 256 MiB.
	SegmentBytes int64

	// Deferred (PostgreSQL only) lets Open succeed although the database
	// cannot be reached: the store connects, and migrates, on a later
	// write, trying again with backoff; writes fail meanwhile. The proxy
	// uses it so that it forwards whether or not its database is up.
	Deferred bool
	// OnRetry, when set, is told of each failed attempt to reach the
	// database and the wait before the next (PostgreSQL only).
	OnRetry func(err error, next time.Duration)
}

// liteStore is a capture in an SQLite file. Its methods are safe for concurrent use:
// writes go through one connection, reads through a separate pool, so
// readers work while the recorder writes.
type liteStore struct {
	path     string
	readOnly bool
	version  int     // the file's schema version (1 only for a v1 file opened read-only)
	wdb      *sql.DB // migrations, descriptors, collections, retention; nil when read-only
	w        *writer // the batched write path; nil when read-only
	rdb      *sql.DB
	segs     segmentReader
	nextKey  atomic.Int64
	closed   atomic.Bool
}

// Open opens (and when needed creates and migrates) the capture at path.
// A file that exists but is not a grpctap capture, is corrupt or was written
// by a newer grpctap is refused without being modified.
func openLite(ctx context.Context, path string, opts Options) (*liteStore, error) {
	if opts.ReadConns <= 0 {
		opts.ReadConns = 4
	}
	exists, err := checkHeader(path)
	// Another process may be creating the file right now: a header read
	// in the middle of its first write is incomplete. A real foreign or
	// damaged file says the same thing again a moment later.
	for try := 1; errors.Is(err, ErrNotCapture) && try <= 4; try++ {
		time.Sleep(time.Duration(try) * 25 * time.Millisecond)
		exists, err = checkHeader(path)
	}
	if err != nil {
		return nil, err
	}
	if !exists {
		if opts.ReadOnly {
			return nil, fmt.Errorf("open %s: %w", path, ErrNoCapture)
		}
		if err := create(ctx, path); err != nil {
			return nil, err
		}
	} else if err := validate(ctx, path); err != nil {
		return nil, err
	}

	s := &liteStore{path: path, readOnly: opts.ReadOnly, version: schemaVersion(), segs: segmentReader{dir: SegmentDir(path)}}
	if !opts.ReadOnly {
		params := []string{"_txlock=immediate",
			"_pragma=synchronous(NORMAL)", "_pragma=cache_size(-16384)",
			// Multi-row INSERTs keep a statement journal; in memory it costs
			// no write system calls.
			"_pragma=temp_store(MEMORY)"}
		if opts.MaxPages > 0 {
			params = append(params, fmt.Sprintf("_pragma=max_page_count(%d)", opts.MaxPages))
		}
		s.wdb, err = sql.Open("sqlite", dsn(path, params...))
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
		s.wdb.SetMaxOpenConns(1)
		s.wdb.SetMaxIdleConns(1)
		s.wdb.SetConnMaxLifetime(0)
		s.wdb.SetConnMaxIdleTime(0)
		mode, err := setWAL(ctx, s.wdb)
		if err != nil {
			s.wdb.Close()
			return nil, fmt.Errorf("open %s: set WAL mode: %w", path, err)
		}
		if !strings.EqualFold(mode, "wal") {
			s.wdb.Close()
			return nil, fmt.Errorf("open %s: journal_mode is %q, want wal (is the file on a filesystem without shared memory?)", path, mode)
		}
		if err := migrate(ctx, s.wdb, ""); err != nil {
			s.wdb.Close()
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
		if s.w, err = openWriter(path, opts); err != nil {
			s.wdb.Close()
			return nil, fmt.Errorf("open %s: writer: %w", path, err)
		}
	}
	s.rdb, err = sql.Open("sqlite", dsn(path, "_pragma=query_only(1)"))
	if err != nil {
		s.closeDBs()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	s.rdb.SetMaxOpenConns(opts.ReadConns)
	s.rdb.SetMaxIdleConns(opts.ReadConns)
	if err := s.rdb.QueryRowContext(ctx, "PRAGMA user_version").Scan(&s.version); err != nil {
		s.closeDBs()
		return nil, fmt.Errorf("open %s: read schema version: %w", path, err)
	}
	return s, nil
}

// setWAL turns on WAL mode (persistent: a no-op once a file has it) and
// returns the journal mode in force. Switching needs the file to itself,
// and SQLite answers "busy" at once, without waiting, while another process
// reads it (as when several processes start on a new capture together), so
// this waits and tries again, for up to 10 s.
func setWAL(ctx context.Context, db *sql.DB) (string, error) {
	deadline := time.Now().Add(10 * time.Second)
	for try := 1; ; try++ {
		var mode string
		err := db.QueryRowContext(ctx, "PRAGMA journal_mode = WAL").Scan(&mode)
		var se *msqlite.Error
		if err == nil || !errors.As(err, &se) || se.Code()&0xff != sqlite3.SQLITE_BUSY || time.Now().After(deadline) {
			return mode, err
		}
		select {
		case <-time.After(time.Duration(min(try, 20)) * 5 * time.Millisecond):
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// Kind says what the capture is kept in.
func (s *liteStore) Kind() string { return "sqlite" }

// Changes returns nil: an SQLite file cannot tell its readers it changed.
func (s *liteStore) Changes(context.Context) (<-chan struct{}, func()) { return nil, func() {} }

// Proxies lists the names of the processes that recorded into the
// capture, sorted.
func (s *liteStore) Proxies(ctx context.Context) ([]string, error) {
	if s.version < 2 {
		return []string{}, nil
	}
	return queryStrings(ctx, s.rdb, "SELECT DISTINCT name FROM writers ORDER BY name")
}

// Path returns the file the store was opened on.
func (s *liteStore) Path() string { return s.path }

// Close closes the store's connections. It does not wait for anything
// else: callers stop their writers first.
func (s *liteStore) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	return s.closeDBs()
}

func (s *liteStore) closeDBs() error {
	var errs []error
	if s.w != nil {
		errs = append(errs, s.w.close())
	}
	s.segs.close()
	if s.wdb != nil {
		// A clean close checkpoints the WAL into the main file.
		errs = append(errs, s.wdb.Close())
	}
	if s.rdb != nil {
		errs = append(errs, s.rdb.Close())
	}
	return errors.Join(errs...)
}

// dsn builds a modernc.org/sqlite DSN with the pragmas every connection
// gets and extra parameters. Foreign keys stay off (SQLite's default):
// checking that each message's call exists cost a sixth of the writer's
// time, the writer inserts calls before their messages anyway, and Prune
// deletes messages itself rather than by ON DELETE CASCADE.
func dsn(path string, extra ...string) string {
	u := url.URL{Scheme: "file", Opaque: path}
	params := append([]string{"_pragma=busy_timeout(5000)"}, extra...)
	return u.String() + "?" + strings.Join(params, "&")
}

// sqliteMagic starts every SQLite 3 database file.
var sqliteMagic = []byte("SQLite format 3\x00")

// checkHeader reads the first 100 bytes of path (the SQLite header) without
// opening it as a database. It reports whether there is a capture to open;
// an empty or missing file is a new capture.
func checkHeader(path string) (bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return false, fmt.Errorf("open %s: %w", path, err)
	}
	if st.IsDir() {
		return false, fmt.Errorf("open %s: is a directory", path)
	}
	if st.Size() == 0 {
		return false, nil
	}
	hdr := make([]byte, 100)
	if _, err := io.ReadFull(f, hdr); err != nil {
		return false, fmt.Errorf("open %s: %w: not an SQLite database (only %d bytes)", path, ErrNotCapture, st.Size())
	}
	if !bytes.Equal(hdr[:16], sqliteMagic) {
		return false, fmt.Errorf("open %s: %w: not an SQLite database", path, ErrNotCapture)
	}
	if id := binary.BigEndian.Uint32(hdr[68:72]); id != ApplicationID {
		return false, fmt.Errorf("open %s: %w: an SQLite database of another application (application_id %#x)", path, ErrNotCapture, id)
	}
	if v := int(binary.BigEndian.Uint32(hdr[60:64])); v > schemaVersion() {
		return false, fmt.Errorf("open %s: %w (schema version %d, this grpctap knows up to %d)", path, ErrNewerSchema, v, schemaVersion())
	}
	return true, nil
}

// validate opens an existing capture without writing to it and checks that
// SQLite can read its schema.
func validate(ctx context.Context, path string) error {
	db, err := sql.Open("sqlite", dsn(path, "_pragma=query_only(1)"))
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer db.Close()
	var n, appID int
	if err := db.QueryRowContext(ctx, "PRAGMA application_id").Scan(&appID); err != nil {
		return corrupt(path, err)
	}
	if appID != ApplicationID {
		return fmt.Errorf("open %s: %w (application_id %#x)", path, ErrNotCapture, appID)
	}
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master").Scan(&n); err != nil {
		return corrupt(path, err)
	}
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM calls WHERE id = (SELECT max(id) FROM calls)").Scan(&n); err != nil {
		return corrupt(path, err)
	}
	return nil
}

func corrupt(path string, err error) error {
	return fmt.Errorf("open %s: %w: %v", path, ErrCorrupt, err)
}

// pageSize is the page size of new captures.
const pageSize = 4096

// create makes a new capture file: application id, incremental auto-vacuum
// (so retention can give space back) and the current schema, written in
// rollback-journal mode so the header is in the main file before WAL is
// turned on.
func create(ctx context.Context, path string) error {
	db, err := sql.Open("sqlite", dsn(path, "_txlock=immediate", "_pragma=auto_vacuum(INCREMENTAL)",
		fmt.Sprintf("_pragma=page_size(%d)", pageSize)))
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	// The application id is written in the same transaction as the schema:
	// a file is either a complete capture or not one of ours.
	if err := migrate(ctx, db, fmt.Sprintf("PRAGMA application_id = %d", ApplicationID)); err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	return db.Close()
}
