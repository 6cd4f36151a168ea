package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Collections are the web inspector's saved requests: named JSON
// documents the store keeps without looking inside them.
//
// Their table is created on first write (CREATE TABLE IF NOT EXISTS) rather
// than by a numbered migration: it is optional, belongs to the UI alone,
// and a capture that has one still opens in a grpctap without it. Reads of
// a capture that never had a collection find none.

// ErrExists is returned (wrapped) when a name is already taken.
var ErrExists = errors.New("already exists")

const collectionsTable = `CREATE TABLE IF NOT EXISTS ui_collections (
	id         INTEGER PRIMARY KEY,
	name       TEXT NOT NULL UNIQUE,
	body       TEXT NOT NULL,            -- JSON document, the UI's
	updated_ns INTEGER NOT NULL
)`

// Collection is one saved collection; Body is its JSON document.
type Collection struct {
	ID      int64
	Name    string
	Body    []byte
	Updated time.Time
}

func (s *liteStore) ensureCollections(ctx context.Context) error {
	if s.wdb == nil {
		return ErrReadOnly
	}
	if _, err := s.wdb.ExecContext(ctx, collectionsTable); err != nil {
		return fmt.Errorf("collections table: %w", err)
	}
	return nil
}

func noTable(err error) bool {
	return err != nil && strings.Contains(err.Error(), "no such table")
}

// Collections lists every collection by name.
func (s *liteStore) Collections(ctx context.Context) ([]Collection, error) {
	rows, err := s.rdb.QueryContext(ctx, "SELECT id, name, body, updated_ns FROM ui_collections ORDER BY name, id")
	if noTable(err) {
		return []Collection{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("collections: %w", err)
	}
	defer rows.Close()
	out := []Collection{}
	for rows.Next() {
		var c Collection
		var t int64
		var body string
		if err := rows.Scan(&c.ID, &c.Name, &body, &t); err != nil {
			return nil, fmt.Errorf("collections: %w", err)
		}
		c.Body, c.Updated = []byte(body), time.Unix(0, t).UTC()
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("collections: %w", err)
	}
	return out, nil
}

// GetCollection returns one collection; ErrNotFound when it does not exist.
func (s *liteStore) GetCollection(ctx context.Context, id int64) (*Collection, error) {
	c := Collection{ID: id}
	var t int64
	var body string
	err := s.rdb.QueryRowContext(ctx, "SELECT name, body, updated_ns FROM ui_collections WHERE id = ?", id).Scan(&c.Name, &body, &t)
	if errors.Is(err, sql.ErrNoRows) || noTable(err) {
		return nil, fmt.Errorf("collection %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("collection %d: %w", id, err)
	}
	c.Body, c.Updated = []byte(body), time.Unix(0, t).UTC()
	return &c, nil
}

func uniqueErr(name string, err error) error {
	if err != nil && strings.Contains(err.Error(), "UNIQUE") {
		return fmt.Errorf("collection %q: %w", name, ErrExists)
	}
	return err
}

// CreateCollection saves a new collection and returns its id; ErrExists
// when the name is taken.
func (s *liteStore) CreateCollection(ctx context.Context, name string, body []byte) (int64, error) {
	if err := s.ensureCollections(ctx); err != nil {
		return 0, err
	}
	res, err := s.wdb.ExecContext(ctx, "INSERT INTO ui_collections(name, body, updated_ns) VALUES (?,?,?)",
		name, string(body), time.Now().UnixNano())
	if err != nil {
		return 0, fmt.Errorf("create collection: %w", uniqueErr(name, err))
	}
	return res.LastInsertId()
}

// UpdateCollection replaces a collection's name and body; ErrNotFound when
// it does not exist, ErrExists when the new name is another's.
func (s *liteStore) UpdateCollection(ctx context.Context, id int64, name string, body []byte) error {
	if err := s.ensureCollections(ctx); err != nil {
		return err
	}
	res, err := s.wdb.ExecContext(ctx, "UPDATE ui_collections SET name = ?, body = ?, updated_ns = ? WHERE id = ?",
		name, string(body), time.Now().UnixNano(), id)
	if err != nil {
		return fmt.Errorf("update collection %d: %w", id, uniqueErr(name, err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("collection %d: %w", id, ErrNotFound)
	}
	return nil
}

// DeleteCollection removes a collection; ErrNotFound when it does not exist.
func (s *liteStore) DeleteCollection(ctx context.Context, id int64) error {
	if err := s.ensureCollections(ctx); err != nil {
		return err
	}
	res, err := s.wdb.ExecContext(ctx, "DELETE FROM ui_collections WHERE id = ?", id)
	if err != nil {
		return fmt.Errorf("delete collection %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("collection %d: %w", id, ErrNotFound)
	}
	return nil
}
