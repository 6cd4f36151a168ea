package store

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The read side of a PostgreSQL capture. Calls are scanned by the same
// scanCall as SQLite's, so the JSON is the same by construction.

const pgColumns = callColumns + ", proxy"

// globRegex turns a method glob as SQLite's GLOB reads it ("*", "?",
// "[…]", "[^…]"; case-sensitive) into an anchored POSIX regular
// expression for PostgreSQL's "~".
func globRegex(glob string) string {
	var b strings.Builder
	b.WriteByte('^')
	for i := 0; i < len(glob); i++ {
		c := glob[i]
		switch c {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteByte('.')
		case '[':
			end := strings.IndexByte(glob[i+1:], ']')
			if end > 0 && glob[i+1] == ']' { // "[]…]": a class holding "]"
				if e2 := strings.IndexByte(glob[i+2:], ']'); e2 >= 0 {
					end = e2 + 1
				}
			}
			if end < 0 {
				b.WriteString(`\[`)
				continue
			}
			class := glob[i+1 : i+1+end]
			b.WriteByte('[')
			if strings.HasPrefix(class, "^") {
				b.WriteByte('^')
				class = class[1:]
			}
			b.WriteString(strings.ReplaceAll(class, `\`, `\\`))
			b.WriteByte(']')
			i += end + 1
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteByte('$')
	return b.String()
}

// pgConds are f's conditions for PostgreSQL, in a.
func (f Filter) pgConds(a *pgArgs) []string {
	var conds []string
	if f.Method != "" {
		conds = append(conds, "method ~ "+a.add(globRegex(methodGlob(f.Method))))
	}
	if f.Status != nil {
		conds = append(conds, "status_code = "+a.add(int32(*f.Status)))
	}
	if !f.Since.IsZero() {
		conds = append(conds, "start_ns >= "+a.add(f.Since.UnixNano()))
	}
	if f.AfterID > 0 {
		conds = append(conds, "id > "+a.add(f.AfterID))
	}
	if f.Proxy != "" {
		conds = append(conds, "proxy = "+a.add(f.Proxy))
	}
	return conds
}

// eachRow runs a query of pgColumns and calls fn for each call.
func (p *pgStore) eachRow(ctx context.Context, q string, args []any, fn func(c *Call) error) error {
	rows, err := p.pool.Query(ctx, q, args...)
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

func (p *pgStore) EachCall(ctx context.Context, f Filter, fn func(c *Call) error) error {
	var a pgArgs
	where := joinWhere(f.pgConds(&a))
	if f.Limit <= 0 {
		return p.eachRow(ctx, "SELECT "+pgColumns+" FROM grpctap.calls"+where+" ORDER BY id", a, fn)
	}
	var newest []Call
	if err := p.eachRow(ctx, "SELECT "+pgColumns+" FROM grpctap.calls"+where+" ORDER BY id DESC LIMIT "+a.add(f.Limit), a,
		func(c *Call) error { newest = append(newest, *c); return nil }); err != nil {
		return err
	}
	for i := len(newest) - 1; i >= 0; i-- {
		if err := fn(&newest[i]); err != nil {
			return err
		}
	}
	return nil
}

func (p *pgStore) GetCall(ctx context.Context, id int64) (*CallWithMessages, error) {
	var c CallWithMessages
	err := scanCall(p.pool.QueryRow(ctx, "SELECT "+pgColumns+" FROM grpctap.calls WHERE id = $1", id), &c.Call)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("call %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("call %d: %w", id, err)
	}
	if c.Messages, err = p.Messages(ctx, id); err != nil {
		return nil, err
	}
	return &c, nil
}

func (p *pgStore) Messages(ctx context.Context, callID int64) ([]Message, error) {
	rows, err := p.pool.Query(ctx, "SELECT seq, direction, time_ns, size, truncated, raw FROM grpctap.messages WHERE call_id = $1 ORDER BY seq", callID)
	if err != nil {
		return nil, fmt.Errorf("call %d messages: %w", callID, err)
	}
	defer rows.Close()
	out := []Message{}
	for rows.Next() {
		var m Message
		var dir int16
		var seq int32
		var t int64
		if err := rows.Scan(&seq, &dir, &t, &m.Size, &m.Truncated, &m.Raw); err != nil {
			return nil, fmt.Errorf("call %d messages: %w", callID, err)
		}
		m.Seq, m.Direction, m.Time = int(seq), direction(int(dir)), time.Unix(0, t).UTC()
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

func (p *pgStore) CallsPage(ctx context.Context, q PageQuery) (*Page, error) {
	limit := q.pageSize()
	var a pgArgs
	conds := q.Filter.pgConds(&a)
	if q.Protocol != "" {
		conds = append(conds, "protocol = "+a.add(q.Protocol))
	}
	switch q.State {
	case "open":
		conds = append(conds, "end_ns IS NULL")
	case "closed":
		conds = append(conds, "end_ns IS NOT NULL")
	}
	if q.Before > 0 {
		conds = append(conds, "id < "+a.add(q.Before))
	}
	if q.Text != "" {
		like := a.add("%" + likeEscape(q.Text) + "%")
		var ors []string
		for _, col := range []string{"method", "backend", "peer", "proxy", "request_headers", "response_headers", "trailers", "status_message"} {
			ors = append(ors, col+" ILIKE "+like)
		}
		ors = append(ors, "EXISTS (SELECT 1 FROM grpctap.messages m WHERE m.call_id = c.id AND position("+a.add([]byte(q.Text))+"::bytea IN m.raw) > 0)")
		conds = append(conds, "("+strings.Join(ors, " OR ")+")")
	}
	page := &Page{Calls: []Call{}}
	err := p.eachRow(ctx, "SELECT "+pgColumns+" FROM grpctap.calls c"+joinWhere(conds)+" ORDER BY id DESC LIMIT "+a.add(limit+1), a,
		func(c *Call) error { page.Calls = append(page.Calls, *c); return nil })
	if err != nil {
		return nil, fmt.Errorf("calls page: %w", err)
	}
	page.cut(limit)
	return page, nil
}

func (p *pgStore) CurrentWatermark(ctx context.Context) (Watermark, error) {
	var w Watermark
	err := p.pool.QueryRow(ctx, `SELECT coalesce((SELECT max(id) FROM grpctap.calls), 0),
		(SELECT count(*) FROM grpctap.calls WHERE end_ns IS NULL)`).Scan(&w.MaxID, &w.Open)
	if err != nil {
		return w, fmt.Errorf("watermark: %w", err)
	}
	return w, nil
}

func (p *pgStore) strings(ctx context.Context, what, q string) ([]string, error) {
	rows, err := p.pool.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if out == nil {
		out = []string{}
	}
	return out, nil
}

func (p *pgStore) Backends(ctx context.Context) ([]string, error) {
	return p.strings(ctx, "backends", "SELECT DISTINCT backend FROM grpctap.calls WHERE backend <> '' ORDER BY backend")
}

// Proxies lists the names of the processes that recorded into the
// capture, sorted.
func (p *pgStore) Proxies(ctx context.Context) ([]string, error) {
	return p.strings(ctx, "proxies", "SELECT DISTINCT name FROM grpctap.writers ORDER BY name")
}

func (p *pgStore) RecordedTimeout(ctx context.Context, id int64) (time.Duration, bool, error) {
	var start int64
	var deadline *int64
	err := p.pool.QueryRow(ctx, "SELECT start_ns, deadline_ns FROM grpctap.calls WHERE id = $1", id).Scan(&start, &deadline)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, fmt.Errorf("call %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return 0, false, fmt.Errorf("call %d deadline: %w", id, err)
	}
	if deadline == nil {
		return 0, false, nil
	}
	return time.Duration(*deadline - start), true, nil
}

// Stats streams the selected calls' figures from the server and folds
// them as SQLite's Stats does.
func (p *pgStore) Stats(ctx context.Context, q StatsQuery) (*Stats, error) {
	nb, to := q.window()
	var a pgArgs
	conds := Filter{Method: q.Method, Since: q.Since, Proxy: q.Proxy}.pgConds(&a)
	if q.Protocol != "" {
		conds = append(conds, "protocol = "+a.add(q.Protocol))
	}
	conds = append(conds, "start_ns < "+a.add(to.UnixNano()))
	rows, err := p.pool.Query(ctx, "SELECT method, start_ns, end_ns, coalesce(status_code, 0), request_bytes, response_bytes FROM grpctap.calls"+joinWhere(conds), a...)
	if err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	defer rows.Close()
	sh := statsShard{byMethod: map[string]*methodAcc{}}
	var method []byte
	var start, reqB, respB int64
	var end *int64
	var code int32
	for rows.Next() {
		if err := rows.Scan(&method, &start, &end, &code, &reqB, &respB); err != nil {
			return nil, fmt.Errorf("stats: %w", err)
		}
		var e int64
		if end != nil {
			e = *end
		}
		sh.add(method, start, end == nil, e, int64(code), reqB, respB)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	return buildStats(q.Since, to, nb, []statsShard{sh})
}

func (p *pgStore) counter(ctx context.Context, name string) (int64, error) {
	var n int64
	err := p.pool.QueryRow(ctx, "SELECT value FROM grpctap.counters WHERE name = $1", name).Scan(&n)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("%s: %w: the counters row is missing", name, ErrCorrupt)
	}
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	return n, nil
}

func (p *pgStore) DroppedEvents(ctx context.Context) (int64, error) {
	return p.counter(ctx, "dropped_events")
}

func (p *pgStore) SkippedCalls(ctx context.Context) (int64, error) {
	return p.counter(ctx, "skipped_calls")
}

// Check reads every table of the schema once: PostgreSQL keeps its own
// files sound, so this checks that grpctap's schema is whole.
func (p *pgStore) Check(ctx context.Context) error {
	if err := p.checkVersion(ctx, false); err != nil {
		return fmt.Errorf("check: %w", err)
	}
	for _, t := range []string{"calls", "messages", "counters", "writers", "descriptors", "ui_collections"} {
		if _, err := p.pool.Exec(ctx, "SELECT 1 FROM grpctap."+t+" LIMIT 1"); err != nil {
			return fmt.Errorf("check: %w: %s: %v", ErrCorrupt, t, err)
		}
	}
	return nil
}

func (p *pgStore) SaveDescriptors(ctx context.Context, backend string, fds []byte) error {
	if p.readOnly {
		return ErrReadOnly
	}
	_, err := p.pool.Exec(ctx, `INSERT INTO grpctap.descriptors(backend, fds, updated_ns) VALUES ($1, $2, $3)
		ON CONFLICT (backend) DO UPDATE SET fds = excluded.fds, updated_ns = excluded.updated_ns`, backend, fds, time.Now().UnixNano())
	if err != nil {
		return fmt.Errorf("save descriptors for %q: %w", backend, err)
	}
	return nil
}

func (p *pgStore) LoadDescriptors(ctx context.Context, backend string) ([]byte, time.Time, error) {
	var fds []byte
	var t int64
	err := p.pool.QueryRow(ctx, "SELECT fds, updated_ns FROM grpctap.descriptors WHERE backend = $1", backend).Scan(&fds, &t)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, time.Time{}, fmt.Errorf("descriptors for %q: %w", backend, ErrNotFound)
	}
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("descriptors for %q: %w", backend, err)
	}
	return fds, time.Unix(0, t).UTC(), nil
}

func (p *pgStore) Collections(ctx context.Context) ([]Collection, error) {
	rows, err := p.pool.Query(ctx, "SELECT id, name, body, updated_ns FROM grpctap.ui_collections ORDER BY name, id")
	if err != nil {
		return nil, fmt.Errorf("collections: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Collection, error) {
		var c Collection
		var body string
		var t int64
		err := r.Scan(&c.ID, &c.Name, &body, &t)
		c.Body, c.Updated = []byte(body), time.Unix(0, t).UTC()
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("collections: %w", err)
	}
	if out == nil {
		out = []Collection{}
	}
	return out, nil
}

func (p *pgStore) GetCollection(ctx context.Context, id int64) (*Collection, error) {
	c := Collection{ID: id}
	var body string
	var t int64
	err := p.pool.QueryRow(ctx, "SELECT name, body, updated_ns FROM grpctap.ui_collections WHERE id = $1", id).Scan(&c.Name, &body, &t)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("collection %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("collection %d: %w", id, err)
	}
	c.Body, c.Updated = []byte(body), time.Unix(0, t).UTC()
	return &c, nil
}

// pgUnique turns a unique violation of a collection's name into ErrExists.
func pgUnique(name string, err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" {
		return fmt.Errorf("collection %q: %w", name, ErrExists)
	}
	return err
}

func (p *pgStore) CreateCollection(ctx context.Context, name string, body []byte) (int64, error) {
	if p.readOnly {
		return 0, ErrReadOnly
	}
	var id int64
	err := p.pool.QueryRow(ctx, "INSERT INTO grpctap.ui_collections(name, body, updated_ns) VALUES ($1, $2, $3) RETURNING id",
		name, string(body), time.Now().UnixNano()).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("create collection: %w", pgUnique(name, err))
	}
	return id, nil
}

func (p *pgStore) UpdateCollection(ctx context.Context, id int64, name string, body []byte) error {
	if p.readOnly {
		return ErrReadOnly
	}
	tag, err := p.pool.Exec(ctx, "UPDATE grpctap.ui_collections SET name = $1, body = $2, updated_ns = $3 WHERE id = $4",
		name, string(body), time.Now().UnixNano(), id)
	if err != nil {
		return fmt.Errorf("update collection %d: %w", id, pgUnique(name, err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("collection %d: %w", id, ErrNotFound)
	}
	return nil
}

func (p *pgStore) DeleteCollection(ctx context.Context, id int64) error {
	if p.readOnly {
		return ErrReadOnly
	}
	tag, err := p.pool.Exec(ctx, "DELETE FROM grpctap.ui_collections WHERE id = $1", id)
	if err != nil {
		return fmt.Errorf("delete collection %d: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("collection %d: %w", id, ErrNotFound)
	}
	return nil
}
