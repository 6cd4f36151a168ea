package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// A PostgreSQL capture lives in the schema "grpctap" of the database it
// is given, so that it can share a database with other tables. Every
// statement names its tables with the schema (no search_path), which
// keeps it working behind poolers that reset session settings.
//
// Ids come from grpctap.counters.next_call_id, taken in the writer's
// transaction (the row lock is held to the commit), so ids are unique
// across every proxy of a fleet and increase in commit order, as in
// SQLite: readers that follow "ids above the last seen" miss nothing.

// pgSchemaVersion is the newest schema this grpctap writes.
func pgSchemaVersion() int { return len(pgMigrations) }

// pgMigrations[i] takes the grpctap schema from version i to i+1.
// Append only.
var pgMigrations = []string{
	// 1: calls, messages (one row each, bodies in bytea), counters,
	// writers, descriptors, collections.
	`
CREATE TABLE grpctap.calls (
	id               bigint PRIMARY KEY,
	proxy            text   NOT NULL DEFAULT '',   -- the recording process's name
	writer           bigint NOT NULL DEFAULT 0,    -- grpctap.writers.id
	method           text   NOT NULL,
	protocol         text   NOT NULL DEFAULT 'grpc',
	backend          text   NOT NULL DEFAULT '',
	authority        text   NOT NULL DEFAULT '',
	peer             text   NOT NULL DEFAULT '',
	content_type     text   NOT NULL DEFAULT '',
	compression      text   NOT NULL DEFAULT '',
	rpc              text,
	start_ns         bigint NOT NULL,
	deadline_ns      bigint,
	end_ns           bigint,
	status_code      integer,
	status_message   text,
	status_details   text,
	request_headers  text   NOT NULL DEFAULT '{}',
	response_headers text   NOT NULL DEFAULT '{}',
	trailers         text   NOT NULL DEFAULT '{}',
	request_count    bigint NOT NULL DEFAULT 0,
	response_count   bigint NOT NULL DEFAULT 0,
	request_bytes    bigint NOT NULL DEFAULT 0,
	response_bytes   bigint NOT NULL DEFAULT 0,
	dropped          bigint NOT NULL DEFAULT 0
);
CREATE INDEX calls_start  ON grpctap.calls(start_ns);
CREATE INDEX calls_method ON grpctap.calls(method, id);
CREATE INDEX calls_proxy  ON grpctap.calls(proxy, id);
CREATE INDEX calls_failed ON grpctap.calls(status_code) WHERE status_code <> 0;
CREATE INDEX calls_open   ON grpctap.calls(id) WHERE end_ns IS NULL;

CREATE TABLE grpctap.messages (
	call_id   bigint   NOT NULL,
	seq       integer  NOT NULL,
	direction smallint NOT NULL,   -- 1 request, 2 response
	time_ns   bigint   NOT NULL,
	size      bigint   NOT NULL,   -- full size; raw may hold a prefix
	truncated boolean  NOT NULL DEFAULT false,
	raw       bytea    NOT NULL,
	PRIMARY KEY (call_id, seq)
);

CREATE TABLE grpctap.counters (
	name  text PRIMARY KEY,
	value bigint NOT NULL
);
INSERT INTO grpctap.counters(name, value) VALUES ('dropped_events', 0), ('skipped_calls', 0), ('next_call_id', 0);

CREATE TABLE grpctap.writers (
	id         bigserial PRIMARY KEY,
	name       text   NOT NULL,
	host       text   NOT NULL,
	pid        bigint NOT NULL,
	proc_start text   NOT NULL DEFAULT '',
	started_ns bigint NOT NULL,
	seen_ns    bigint NOT NULL,   -- the writer's last sign of life
	ended_ns   bigint
);

CREATE TABLE grpctap.descriptors (
	backend    text PRIMARY KEY,
	fds        bytea  NOT NULL,
	updated_ns bigint NOT NULL
);

CREATE TABLE grpctap.ui_collections (
	id         bigserial PRIMARY KEY,
	name       text   NOT NULL UNIQUE,
	body       text   NOT NULL,
	updated_ns bigint NOT NULL
);
`,
}

// pgLockMigrate and pgLockPrune are the advisory locks (one 64-bit key
// each, "gtap" and a number) that keep migrations and retention to one
// process at a time.
const (
	pgLockMigrate = 0x67746170_0001
	pgLockPrune   = 0x67746170_0002
)

// pgChannel is the LISTEN/NOTIFY channel writers notify on each commit;
// the payload is the writing Store's instance id.
const pgChannel = "grpctap_changes"

// pgStore is a capture in a PostgreSQL database.
type pgStore struct {
	pool     *pgxpool.Pool
	cfg      *pgxpool.Config
	display  string // the connection string without its password
	readOnly bool
	opts     Options
	instance string // this Store's id in notifications
	nextKey  atomic.Int64
	closed   chan struct{}
	bg       sync.WaitGroup

	// Change notifications (Changes): subscribers and whether the
	// listening connection is up.
	subMu     sync.Mutex
	subs      map[chan struct{}]struct{}
	listening bool

	// The write path. wmu serialises batches and guards what follows.
	wmu      sync.Mutex
	folder   folder
	ready    bool // the schema is known to be current
	writerID int64
	retryAt  time.Time     // no connection attempt before then
	backoff  time.Duration // the wait after the next failure
	lastErr  error
	// The COPY data of a batch's calls and messages, reused.
	callsCopy, msgsCopy copyBuf
}

// pgBatchTimeout bounds one batch's transaction: a database that hangs
// costs the recorder that batch (dropped, counted), not its queue.
const pgBatchTimeout = 15 * time.Second

func openPG(ctx context.Context, dsn string, opts Options) (*pgStore, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres connection string: %w", err)
	}
	if opts.ReadConns <= 0 {
		opts.ReadConns = 4
	}
	cfg.MaxConns = int32(opts.ReadConns + 2)
	cfg.ConnConfig.RuntimeParams["application_name"] = "grpctap"
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	if opts.Name == "" {
		opts.Name, _ = os.Hostname()
	}
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	p := &pgStore{cfg: cfg, display: displayDSN(dsn, cfg), readOnly: opts.ReadOnly, opts: opts,
		instance: hex.EncodeToString(id), closed: make(chan struct{}), folder: newFolder(), backoff: pgMinBackoff}
	p.pool, err = pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", p.display, err)
	}
	if opts.ReadOnly {
		if err := p.checkVersion(ctx, false); err != nil {
			p.pool.Close()
			return nil, err
		}
		return p, nil
	}
	if err := p.migrate(ctx); err != nil {
		if !opts.Deferred || !isConnErr(err) {
			p.pool.Close()
			return nil, err
		}
		// The proxy records whenever the database is there: writes retry
		// the connection (and the migration) with backoff.
		p.fail(err)
	} else {
		p.ready = true
	}
	p.bg.Add(1)
	go p.heartbeat()
	return p, nil
}

// displayDSN is dsn without its password, for messages.
func displayDSN(dsn string, cfg *pgxpool.Config) string {
	if u, err := url.Parse(dsn); err == nil && u.Scheme != "" {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
		return u.String()
	}
	c := cfg.ConnConfig
	return fmt.Sprintf("postgres://%s@%s:%d/%s", c.User, c.Host, c.Port, c.Database)
}

func (p *pgStore) Kind() string { return "postgres" }
func (p *pgStore) Path() string { return p.display }
func (p *pgStore) NewKey() int64 {
	return p.nextKey.Add(1)
}

func (p *pgStore) Close() error {
	select {
	case <-p.closed:
		return nil
	default:
	}
	close(p.closed)
	p.bg.Wait()
	p.wmu.Lock()
	if p.writerID != 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, _ = p.pool.Exec(ctx, "UPDATE grpctap.writers SET ended_ns = $1 WHERE id = $2", time.Now().UnixNano(), p.writerID)
		cancel()
	}
	p.wmu.Unlock()
	p.pool.Close()
	return nil
}

// checkVersion reads the schema version: a database without grpctap's
// schema is ErrNoCapture (or, with create, version 0), a newer one
// ErrNewerSchema.
func (p *pgStore) checkVersion(ctx context.Context, create bool) error {
	v, err := pgVersion(ctx, p.pool)
	if err != nil {
		return fmt.Errorf("open %s: %w", p.display, err)
	}
	if v == 0 && !create {
		return fmt.Errorf("open %s: %w: the database has no grpctap schema yet (record into it first)", p.display, ErrNoCapture)
	}
	if v > pgSchemaVersion() {
		return fmt.Errorf("open %s: %w (schema version %d, this grpctap knows up to %d)", p.display, ErrNewerSchema, v, pgSchemaVersion())
	}
	return nil
}

type pgQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// pgVersion returns the grpctap schema's version, 0 when there is none.
func pgVersion(ctx context.Context, q pgQuerier) (int, error) {
	var exists bool
	if err := q.QueryRow(ctx, `SELECT to_regclass('grpctap.meta') IS NOT NULL`).Scan(&exists); err != nil || !exists {
		return 0, err
	}
	var v int
	err := q.QueryRow(ctx, `SELECT value::int FROM grpctap.meta WHERE key = 'schema_version'`).Scan(&v)
	return v, err
}

// migrate brings the schema up to date in one transaction under an
// advisory lock: of several processes starting at once, one migrates and
// the others find the work done.
func (p *pgStore) migrate(ctx context.Context) error {
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("open %s: %w", p.display, err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(pgLockMigrate)); err != nil {
		return fmt.Errorf("open %s: migration lock: %w", p.display, err)
	}
	v, err := pgVersion(ctx, tx)
	if err != nil {
		return fmt.Errorf("open %s: schema version: %w", p.display, err)
	}
	if v > pgSchemaVersion() {
		return fmt.Errorf("open %s: %w (schema version %d, this grpctap knows up to %d)", p.display, ErrNewerSchema, v, pgSchemaVersion())
	}
	if v == pgSchemaVersion() {
		return tx.Commit(ctx)
	}
	if v == 0 {
		if _, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS grpctap;
			CREATE TABLE grpctap.meta (key text PRIMARY KEY, value text NOT NULL);
			INSERT INTO grpctap.meta VALUES ('schema_version', '0')`); err != nil {
			return fmt.Errorf("open %s: create schema: %w", p.display, err)
		}
	}
	for i := v; i < pgSchemaVersion(); i++ {
		if _, err := tx.Exec(ctx, pgMigrations[i]); err != nil {
			return fmt.Errorf("open %s: migration %d: %w", p.display, i+1, err)
		}
	}
	if _, err := tx.Exec(ctx, "UPDATE grpctap.meta SET value = $1 WHERE key = 'schema_version'", fmt.Sprint(pgSchemaVersion())); err != nil {
		return fmt.Errorf("open %s: %w", p.display, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("open %s: migrate: %w", p.display, err)
	}
	return nil
}

// Backoff between connection attempts of the write path.
const (
	pgMinBackoff = 100 * time.Millisecond
	pgMaxBackoff = 5 * time.Second
)

// fail notes a failed attempt to reach the database: the next one waits
// for the backoff, which doubles up to pgMaxBackoff. wmu held (or not yet
// shared).
func (p *pgStore) fail(err error) {
	p.lastErr = err
	p.retryAt = time.Now().Add(p.backoff)
	if p.opts.OnRetry != nil {
		p.opts.OnRetry(err, p.backoff)
	}
	p.backoff = min(2*p.backoff, pgMaxBackoff)
}

// isConnErr tells a failure to reach or keep talking to the server (worth
// retrying later) from an error the server answered with.
func isConnErr(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// Class 08: connection exception; 57P: the server is shutting
		// down or restarting.
		return strings.HasPrefix(pe.Code, "08") || strings.HasPrefix(pe.Code, "57P")
	}
	return !errors.Is(err, context.Canceled)
}

// heartbeat keeps the writer's seen_ns fresh while the process runs, so
// that CloseOpenCalls in another process can tell a quiet writer from a
// dead one.
func (p *pgStore) heartbeat() {
	defer p.bg.Done()
	t := time.NewTicker(pgHeartbeat)
	defer t.Stop()
	for {
		select {
		case <-p.closed:
			return
		case <-t.C:
			p.wmu.Lock()
			id := p.writerID
			p.wmu.Unlock()
			if id == 0 {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, _ = p.pool.Exec(ctx, "UPDATE grpctap.writers SET seen_ns = $1 WHERE id = $2", time.Now().UnixNano(), id)
			cancel()
		}
	}
}

// pgHeartbeat is how often a writer says it lives; a writer not heard of
// for pgWriterGone is taken for dead.
const (
	pgHeartbeat  = 20 * time.Second
	pgWriterGone = 2 * time.Minute
)

// Changes subscribes to other processes' commits. One connection per
// Store listens on pgChannel (started with the first subscriber,
// reconnecting with backoff when it breaks) and signals every
// subscriber; each is also signalled once the listener is in place, and
// after each reconnection, since commits may have been missed meanwhile.
func (p *pgStore) Changes(ctx context.Context) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	p.subMu.Lock()
	if p.subs == nil {
		p.subs = map[chan struct{}]struct{}{}
		p.bg.Add(1)
		go p.listenLoop()
	}
	p.subs[ch] = struct{}{}
	listening := p.listening
	p.subMu.Unlock()
	if listening {
		ch <- struct{}{}
	}
	return ch, func() {
		p.subMu.Lock()
		delete(p.subs, ch)
		p.subMu.Unlock()
	}
}

// notify signals every subscriber, without waiting for any.
func (p *pgStore) notify() {
	p.subMu.Lock()
	defer p.subMu.Unlock()
	for ch := range p.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (p *pgStore) listenLoop() {
	defer p.bg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-p.closed
		cancel()
	}()
	wait := pgMinBackoff
	for ctx.Err() == nil {
		_ = p.listen(ctx)
		p.subMu.Lock()
		p.listening = false
		p.subMu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, pgMaxBackoff)
	}
}

func (p *pgStore) listen(ctx context.Context) error {
	conn, err := pgx.ConnectConfig(ctx, p.cfg.ConnConfig)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+pgChannel); err != nil {
		return err
	}
	// Listening from now on; what came before is for the readers to read.
	p.subMu.Lock()
	p.listening = true
	p.subMu.Unlock()
	p.notify()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if n.Payload != p.instance {
			p.notify()
		}
	}
}
