package main

import (
	"errors"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/grpctap/grpctap/internal/headers"
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
	fs.StringArrayVar(&f.redact, "redact-header", headers.DefaultRedact, "header whose values are stored as [redacted] (repeatable; giving it replaces the default list)")
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

// recordConfig is what the recording flags ask for; openRecording acts
// on it.
type recordConfig struct {
	off          bool // --no-record
	db, name     string
	segmentBytes int64
	recorder     recorder.Options // without its Logger
}

// config checks the flags and reads them into a recordConfig, warning
// when secrets will be stored (--no-redact).
func (f *recordFlags) config(log *slog.Logger) (recordConfig, error) {
	if f.noRecord {
		return recordConfig{off: true, db: f.db}, nil
	}
	if f.maxDBSize > 0 && store.IsPostgres(f.db) {
		return recordConfig{}, errors.New("--max-db-size applies to SQLite captures: PostgreSQL keeps deleted space for reuse rather than giving it back, so bound a PostgreSQL capture with --retain")
	}
	return recordConfig{
		db: f.db, name: f.name,
		segmentBytes: store.SegmentBytesFor(int64(f.maxDBSize)),
		recorder: recorder.Options{
			MaxMessage: int(f.keep.maxMessage),
			Redact:     f.keep.redactList(log, f.db),
			Retain:     f.retain,
			MaxDBSize:  int64(f.maxDBSize),
		},
	}, nil
}

// nameOr is the name a process records under: name, else the host name.
func nameOr(name string) string {
	if name == "" {
		name, _ = os.Hostname()
	}
	return name
}
