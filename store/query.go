package store

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Filter selects calls. The zero Filter selects every call.
type Filter struct {
	Method string    // glob on the full method ("/pkg.Svc/*", "*Watch*"); "" any
	Status *int      // status code; closed calls only
	Since  time.Time // calls started at or after; zero: any
	// Limit keeps the newest Limit calls; 0: all.
	Limit int
	// AfterID selects calls with an id above it (for following a capture).
	AfterID int64
}

const callColumns = `id, method, protocol, backend, authority, peer, content_type, compression, rpc,
	start_ns, end_ns, status_code, status_message, status_details, request_headers, response_headers, trailers,
	request_count, response_count, request_bytes, response_bytes, dropped`

func (f Filter) where() (string, []any) {
	conds, args := f.conds(false)
	return joinWhere(conds), args
}

// conds returns f's conditions and their arguments. With walkIDs the column
// tests are written "+col", so SQLite walks the ids rather than pick a
// column index (see PageQuery.where).
func (f Filter) conds(walkIDs bool) ([]string, []any) {
	col := func(c string) string {
		if walkIDs {
			return "+" + c
		}
		return c
	}
	var conds []string
	var args []any
	if f.Method != "" {
		m := f.Method
		if !strings.HasPrefix(m, "/") && !strings.HasPrefix(m, "*") {
			m = "/" + m
		}
		conds = append(conds, col("method")+" GLOB ?")
		args = append(args, m)
	}
	if f.Status != nil {
		conds = append(conds, col("status_code")+" = ?")
		args = append(args, *f.Status)
	}
	if !f.Since.IsZero() {
		conds = append(conds, col("start_ns")+" >= ?")
		args = append(args, f.Since.UnixNano())
	}
	if f.AfterID > 0 {
		conds = append(conds, "id > ?")
		args = append(args, f.AfterID)
	}
	return conds, args
}

// joinWhere makes a WHERE clause of conds ("" when there are none).
func joinWhere(conds []string) string {
	if len(conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(conds, " AND ")
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

// EachCall calls fn for each call matching f, in id order, without holding
// them all in memory. fn must not keep c.
func (s *Store) EachCall(ctx context.Context, f Filter, fn func(c *Call) error) error {
	where, args := f.where()
	q := "SELECT " + callColumns + " FROM calls" + where + " ORDER BY id"
	if f.Limit > 0 {
		q = "SELECT * FROM (SELECT " + callColumns + " FROM calls" + where + " ORDER BY id DESC LIMIT ?) ORDER BY id"
		args = append(args, f.Limit)
	}
	rows, err := s.rdb.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("list calls: %w", err)
	}
	defer rows.Close()
	var c Call
	for rows.Next() {
		if err := scanCall(rows, &c); err != nil {
			return fmt.Errorf("list calls: %w", err)
		}
		if err := fn(&c); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list calls: %w", err)
	}
	return nil
}

// GetCall returns one call with its messages; ErrNotFound when it does not
// exist.
func (s *Store) GetCall(ctx context.Context, id int64) (*CallWithMessages, error) {
	row := s.rdb.QueryRowContext(ctx, "SELECT "+callColumns+" FROM calls WHERE id = ?", id)
	var c CallWithMessages
	if err := scanCall(row, &c.Call); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("call %d: %w", id, ErrNotFound)
		}
		return nil, fmt.Errorf("call %d: %w", id, err)
	}
	msgs, err := s.Messages(ctx, id)
	if err != nil {
		return nil, err
	}
	c.Messages = msgs
	return &c, nil
}

// Messages returns a call's messages in seq order (never nil).
func (s *Store) Messages(ctx context.Context, callID int64) ([]Message, error) {
	rows, err := s.rdb.QueryContext(ctx,
		"SELECT seq, direction, time_ns, size, truncated, raw FROM messages WHERE call_id = ? ORDER BY seq", callID)
	if err != nil {
		return nil, fmt.Errorf("call %d messages: %w", callID, err)
	}
	defer rows.Close()
	out := []Message{}
	for rows.Next() {
		var m Message
		var dir int
		var t int64
		if err := rows.Scan(&m.Seq, &dir, &t, &m.Size, &m.Truncated, &m.Raw); err != nil {
			return nil, fmt.Errorf("call %d messages: %w", callID, err)
		}
		m.Direction = DirRequest
		if dir == 2 {
			m.Direction = DirResponse
		}
		m.Time = time.Unix(0, t).UTC()
		if m.Raw == nil {
			m.Raw = []byte{}
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("call %d messages: %w", callID, err)
	}
	return out, nil
}

// DroppedEvents returns how many events the recorder could not store over
// the capture's life.
func (s *Store) DroppedEvents(ctx context.Context) (int64, error) {
	var n int64
	if err := s.rdb.QueryRowContext(ctx, "SELECT value FROM counters WHERE name = 'dropped_events'").Scan(&n); err != nil {
		return 0, fmt.Errorf("dropped events: %w", err)
	}
	return n, nil
}

// LoadDescriptors returns the FileDescriptorSet saved for backend and when
// it was saved; ErrNotFound when there is none.
func (s *Store) LoadDescriptors(ctx context.Context, backend string) ([]byte, time.Time, error) {
	var fds []byte
	var t int64
	err := s.rdb.QueryRowContext(ctx, "SELECT fds, updated_ns FROM descriptors WHERE backend = ?", backend).Scan(&fds, &t)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, time.Time{}, fmt.Errorf("descriptors for %q: %w", backend, ErrNotFound)
	}
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("descriptors for %q: %w", backend, err)
	}
	return fds, time.Unix(0, t).UTC(), nil
}

type scanner interface{ Scan(dest ...any) error }

func scanCall(r scanner, c *Call) error {
	var (
		rpc, statusMsg, details sql.NullString
		endNS, code             sql.NullInt64
		startNS                 int64
		reqH, respH, trl        string
	)
	*c = Call{}
	if err := r.Scan(&c.ID, &c.Method, &c.Protocol, &c.Backend, &c.Authority, &c.Peer, &c.ContentType, &c.Compression,
		&rpc, &startNS, &endNS, &code, &statusMsg, &details, &reqH, &respH, &trl,
		&c.RequestCount, &c.ResponseCount, &c.RequestBytes, &c.ResponseBytes, &c.DroppedEvents); err != nil {
		return err
	}
	c.Service, _ = SplitMethod(c.Method)
	if rpc.Valid && rpc.String != "" {
		c.RPC, c.RPCFromSchema = rpc.String, true
	} else {
		c.RPC = GuessRPC(c.RequestCount, c.ResponseCount)
	}
	c.Start = time.Unix(0, startNS).UTC()
	c.State = "open"
	if endNS.Valid {
		end := time.Unix(0, endNS.Int64).UTC()
		d := float64(endNS.Int64-startNS) / 1e6
		c.End, c.DurationMS, c.State = &end, &d, "closed"
		st := &Status{Code: int(code.Int64), Name: CodeName(int(code.Int64)), Message: statusMsg.String, Details: [][]byte{}}
		if details.Valid && details.String != "" {
			var list []string
			if err := json.Unmarshal([]byte(details.String), &list); err == nil {
				for _, d := range list {
					if b, err := base64.StdEncoding.DecodeString(d); err == nil {
						st.Details = append(st.Details, b)
					}
				}
			}
		}
		c.Status = st
	}
	c.RequestHeaders = parseMD(reqH)
	c.ResponseHeaders = parseMD(respH)
	c.Trailers = parseMD(trl)
	return nil
}

func parseMD(s string) Metadata {
	md := Metadata{}
	if s != "" {
		_ = json.Unmarshal([]byte(s), &md)
	}
	return md
}

// Check runs SQLite's integrity check on the whole file; nil means sound.
func (s *Store) Check(ctx context.Context) error {
	rows, err := s.rdb.QueryContext(ctx, "PRAGMA integrity_check")
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return fmt.Errorf("check: %w", err)
		}
		if line != "ok" {
			problems = append(problems, line)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("check: %w", err)
	}
	if len(problems) > 0 {
		return fmt.Errorf("check: %w: %s", ErrCorrupt, strings.Join(problems, "; "))
	}
	return nil
}
