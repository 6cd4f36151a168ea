package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/grpctap/grpctap/recorder"
	"github.com/grpctap/grpctap/store"
)

// defaultDB is the capture file every command uses unless --db says
// otherwise.
const defaultDB = "./grpctap.db"

// dbFlag declares a command's --db: what the command does with the
// capture, and the two kinds a capture can be.
func dbFlag(fs *pflag.FlagSet, p *string, what string) {
	fs.StringVar(p, "db", defaultDB, what+": an SQLite file, or a PostgreSQL database "+
		"(postgres://USER@HOST:PORT/DB or 'host=… dbname=…'; password from PGPASSWORD or ~/.pgpass) shared by a fleet of proxies")
}

// keepFlags say what a capture keeps of each call: which headers are
// redacted and how much of each body. 'proxy', 'demo' and 'import' share
// them, so calls are kept the same way however they arrive.
type keepFlags struct {
	maxMessage byteSize
	redact     []string
	noRedact   bool
}

func (f *keepFlags) register(fs *pflag.FlagSet) {
	f.maxMessage = recorder.DefaultMaxMessage
	fs.Var(&f.maxMessage, "record-max-message", "store at most this many bytes of each message body; longer ones are stored cut, marked truncated with their full size (accepts KiB/MiB)")
	fs.StringArrayVar(&f.redact, "redact-header", recorder.DefaultRedact, "header whose values are stored as [redacted] (repeatable; giving it replaces the default list)")
	fs.BoolVar(&f.noRedact, "no-redact", false, "store every header value as received, secrets included")
}

// redactList is the list of headers to redact (empty, not nil, with
// --no-redact), warning when secrets will be stored.
func (f *keepFlags) redactList(log *slog.Logger, db string) []string {
	if f.noRedact {
		log.Warn("--no-redact: secrets in headers (authorization, cookies, API keys) are stored in the capture", "db", db)
		return []string{}
	}
	return f.redact
}

// recordFlags are the recording flags of 'proxy' and 'demo'.
type recordFlags struct {
	db        string
	name      string
	noRecord  bool
	keep      keepFlags
	retain    time.Duration
	maxDBSize byteSize
}

func (f *recordFlags) register(fs *pflag.FlagSet) {
	dbFlag(fs, &f.db, "capture every call is recorded in")
	fs.StringVar(&f.name, "name", "", "name of this grpctap in the capture, kept with every call it records (default: the host name)")
	fs.BoolVar(&f.noRecord, "no-record", false, "forward without recording anything")
	f.keep.register(fs)
	fs.DurationVar(&f.retain, "retain", 0, "prune calls older than this in the background (e.g. 24h; default: keep all)")
	fs.Var(&f.maxDBSize, "max-db-size", "prune the oldest calls while the capture holds more than this (accepts MiB/GiB; default: no limit)")
}

// recording is what open made: the capture and its recorder, both nil
// with --no-record.
type recording struct {
	store    *store.Store
	recorder *recorder.Recorder
	close    func(context.Context) error // flushes the recorder, closes the capture
}

// open starts recording as the flags say. A file that is not a grpctap capture, or is corrupt,
// is an error; a capture that cannot be written (read-only file) is not:
// the proxy forwards, the problem is logged and every event is counted as
// dropped.
func (f *recordFlags) open(ctx context.Context, log *slog.Logger) (*recording, error) {
	if f.noRecord {
		log.Info("not recording (--no-record)")
		return &recording{close: func(context.Context) error { return nil }}, nil
	}
	if f.maxDBSize > 0 && store.IsPostgres(f.db) {
		return nil, errors.New("--max-db-size applies to SQLite captures: PostgreSQL keeps deleted space for reuse rather than giving it back, so bound a PostgreSQL capture with --retain")
	}
	var lastRetry time.Time
	st, err := store.Open(ctx, f.db, store.Options{
		Name:         f.name,
		SegmentBytes: store.SegmentBytesFor(int64(f.maxDBSize)),
		// A proxy forwards whether or not its database is up.
		Deferred: true,
		OnRetry: func(err error, next time.Duration) {
			if time.Since(lastRetry) >= 10*time.Second {
				lastRetry = time.Now()
				log.Warn("capture database unreachable: forwarding goes on, calls are counted as dropped until it is back", "db", f.db, "err", err, "retry_in", next)
			}
		},
	})
	if err != nil {
		if errors.Is(err, store.ErrNotCapture) || errors.Is(err, store.ErrCorrupt) || errors.Is(err, store.ErrNewerSchema) {
			return nil, fmt.Errorf("%w (choose another file with --db, or --no-record)", err)
		}
		ro, roErr := store.Open(ctx, f.db, store.Options{ReadOnly: true})
		if roErr != nil {
			return nil, fmt.Errorf("%w (choose another file with --db, or --no-record)", err)
		}
		log.Error("capture cannot be written: calls are forwarded but not recorded, and counted as dropped", "db", f.db, "err", err)
		st = ro
	}
	rec, err := recorder.New(ctx, st, recorder.Options{
		MaxMessage: int(f.keep.maxMessage),
		Redact:     f.keep.redactList(log, f.db),
		Retain:     f.retain,
		MaxDBSize:  int64(f.maxDBSize),
		Logger:     log,
	})
	if err != nil {
		st.Close()
		return nil, err
	}
	log.Info("recording calls", "db", st.Path(), "name", nameOr(f.name))
	closeFn := func(ctx context.Context) error {
		err := rec.Close(ctx)
		stats := rec.Stats()
		if stats.Dropped > 0 {
			log.Warn("some events were not recorded", "db", f.db, "dropped", stats.Dropped)
		}
		if stats.SkippedResets > 0 {
			log.Info("calls reset before any message, over their client's rate, were counted, not recorded", "db", f.db, "skipped", stats.SkippedResets)
		}
		return errors.Join(err, st.Close())
	}
	return &recording{store: st, recorder: rec, close: closeFn}, nil
}

// nameOr is the name a process records under: name, else the host name.
func nameOr(name string) string {
	if name == "" {
		name, _ = os.Hostname()
	}
	return name
}
