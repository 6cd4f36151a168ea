package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Store is an open capture: an SQLite file (the default, one machine) or
// a PostgreSQL database (a fleet of proxies recording into one place).
// Open picks the engine from what it is given; the methods behave the
// same on both, and their JSON is the same. Its methods are safe for
// concurrent use.
type Store struct{ engine }

// engine is what each kind of capture implements.
type engine interface {
	// Kind is "sqlite" or "postgres".
	Kind() string
	// Path names the capture for messages: the file, or the database
	// URL without its password.
	Path() string
	Close() error

	NewKey() int64
	WriteBatch(ctx context.Context, events []Event) error
	CloseOpenCalls(ctx context.Context) (int64, error)
	Prune(ctx context.Context, olderThan time.Time, maxBytes int64) (int64, error)
	UsedBytes(ctx context.Context) (int64, error)
	Compact(ctx context.Context, out string) error
	Check(ctx context.Context) error

	EachCall(ctx context.Context, f Filter, fn func(c *Call) error) error
	GetCall(ctx context.Context, id int64) (*CallWithMessages, error)
	Messages(ctx context.Context, callID int64) ([]Message, error)
	CallsPage(ctx context.Context, q PageQuery) (*Page, error)
	CurrentWatermark(ctx context.Context) (Watermark, error)
	Backends(ctx context.Context) ([]string, error)
	Proxies(ctx context.Context) ([]string, error)
	RecordedTimeout(ctx context.Context, id int64) (time.Duration, bool, error)
	Stats(ctx context.Context, q StatsQuery) (*Stats, error)
	DroppedEvents(ctx context.Context) (int64, error)
	SkippedCalls(ctx context.Context) (int64, error)

	SaveDescriptors(ctx context.Context, backend string, fds []byte) error
	LoadDescriptors(ctx context.Context, backend string) ([]byte, time.Time, error)

	Collections(ctx context.Context) ([]Collection, error)
	GetCollection(ctx context.Context, id int64) (*Collection, error)
	CreateCollection(ctx context.Context, name string, body []byte) (int64, error)
	UpdateCollection(ctx context.Context, id int64, name string, body []byte) error
	DeleteCollection(ctx context.Context, id int64) error

	// Changes returns a channel that receives a value soon after other
	// processes commit writes (calls started, messages, ends), and a
	// function that stops it. An engine that cannot tell returns nil:
	// readers poll CurrentWatermark instead.
	Changes(ctx context.Context) (<-chan struct{}, func())
}

// IsPostgres reports whether db names a PostgreSQL database rather than
// an SQLite file: a postgres:// or postgresql:// URL, or a libpq
// key=value connection string ("host=… dbname=…").
func IsPostgres(db string) bool {
	l := strings.ToLower(db)
	if strings.HasPrefix(l, "postgres://") || strings.HasPrefix(l, "postgresql://") {
		return true
	}
	// A key=value string: its first word is one of libpq's keywords
	// followed by "=". A file name with "=" in it is still a file.
	first, _, _ := strings.Cut(strings.TrimSpace(db), " ")
	key, _, ok := strings.Cut(first, "=")
	if !ok {
		return false
	}
	switch key {
	case "host", "hostaddr", "port", "dbname", "user", "password", "sslmode", "service", "application_name", "connect_timeout":
		return true
	}
	return false
}

// Open opens (and when needed creates and migrates) the capture db: an
// SQLite file path, or a PostgreSQL connection string (see IsPostgres).
// A file that exists but is not a grpctap capture, is corrupt or was
// written by a newer grpctap is refused without being modified; so is a
// PostgreSQL database of a newer schema.
func Open(ctx context.Context, db string, opts Options) (*Store, error) {
	if IsPostgres(db) {
		p, err := openPG(ctx, db, opts)
		if err != nil {
			return nil, err
		}
		return &Store{p}, nil
	}
	l, err := openLite(ctx, db, opts)
	if err != nil {
		return nil, err
	}
	return &Store{l}, nil
}

// ListCalls returns the calls matching f in id (start) order.
func (s *Store) ListCalls(ctx context.Context, f Filter) ([]Call, error) {
	var out []Call
	err := s.EachCall(ctx, f, func(c *Call) error {
		out = append(out, *c)
		return nil
	})
	return out, err
}

// Import inserts whole calls in one transaction and returns the ids they
// were given (their ID fields are ignored). Other processes may record
// into the capture meanwhile.
func (s *Store) Import(ctx context.Context, calls []CallWithMessages) ([]int64, error) {
	var events []Event
	starts := make([]*CallStart, 0, len(calls))
	for i := range calls {
		c := &calls[i]
		key := s.NewKey()
		start := &CallStart{
			ID: key, Method: c.Method, Protocol: c.Protocol, Backend: c.Backend, Authority: c.Authority,
			Peer: c.Peer, ContentType: c.ContentType, Compression: c.Compression, Time: c.Start, Header: c.RequestHeaders, Redacted: c.Redacted,
		}
		starts = append(starts, start)
		events = append(events, Event{Start: start})
		if c.ResponseHeaders != nil {
			events = append(events, Event{Header: &ResponseHeader{CallID: key, Time: c.Start, Header: c.ResponseHeaders, Redacted: c.Redacted}})
		}
		for _, m := range c.Messages {
			size := m.Size
			if size == 0 {
				size = int64(len(m.Raw))
			}
			events = append(events, Event{Message: &MessageRecord{CallID: key, Seq: m.Seq, Direction: m.Direction,
				Time: m.Time, Size: size, Truncated: m.Truncated, Raw: m.Raw}})
		}
		if c.End != nil {
			st := c.Status
			if st == nil {
				st = &Status{}
			}
			events = append(events, Event{End: &CallEnd{CallID: key, Time: *c.End, Code: st.Code, Message: st.Message,
				Details: st.Details, Trailers: c.Trailers, Redacted: c.Redacted, Dropped: c.DroppedEvents}})
		}
	}
	if err := s.WriteBatch(ctx, events); err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	ids := make([]int64, len(starts))
	for i, st := range starts {
		ids[i] = st.ID
	}
	return ids, nil
}

// Compact writes the capture to out, a new SQLite file that holds
// everything itself (see the engines' Compact); out must not exist.
func (s *Store) Compact(ctx context.Context, out string) error {
	if _, err := os.Lstat(out); err == nil {
		return fmt.Errorf("compact: %s exists (give a new file)", out)
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("compact: %w", err)
	}
	return s.engine.Compact(ctx, out)
}
