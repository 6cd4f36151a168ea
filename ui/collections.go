package ui

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/grpctap/grpctap/store"
)

// Collection is a named set of saved composer requests; its JSON is also
// the export file format (import it back with POST /api/collections).
type Collection struct {
	ID       int64          `json:"id,omitempty"` // assigned by the store; ignored on import
	Name     string         `json:"name"`
	Requests []SavedRequest `json:"requests"`
	Updated  *time.Time     `json:"updated,omitempty"`
}

// SavedRequest is one composer request kept in a collection.
type SavedRequest struct {
	Name     string              `json:"name"`
	Method   string              `json:"method"`
	Target   string              `json:"target,omitempty"`
	Metadata map[string][]string `json:"metadata,omitempty"`
	Messages []json.RawMessage   `json:"messages"`
	// Examples are responses saved with the request: any JSON, normally
	// the call of an /api/invoke answer.
	Examples []json.RawMessage `json:"examples,omitempty"`
}

const maxCollectionBytes = 16 << 20

func readCollection(r *http.Request) (*Collection, error) {
	var c Collection
	dec := json.NewDecoder(io.LimitReader(r.Body, maxCollectionBytes))
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("body: %w", err)
	}
	c.Name = strings.TrimSpace(c.Name)
	if c.Name == "" {
		return nil, errors.New("a collection needs a name")
	}
	if c.Requests == nil {
		c.Requests = []SavedRequest{}
	}
	for i, q := range c.Requests {
		if q.Method == "" {
			return nil, fmt.Errorf("request %d has no method", i+1)
		}
	}
	return &c, nil
}

func fromStore(sc *store.Collection) (Collection, error) {
	var c Collection
	if err := json.Unmarshal(sc.Body, &c); err != nil {
		return c, fmt.Errorf("collection %d: %w", sc.ID, err)
	}
	t := sc.Updated
	c.ID, c.Name, c.Updated = sc.ID, sc.Name, &t
	if c.Requests == nil {
		c.Requests = []SavedRequest{}
	}
	return c, nil
}

func storeErr(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeErr(w, http.StatusNotFound, err.Error())
	case errors.Is(err, store.ErrExists):
		writeErr(w, http.StatusConflict, err.Error())
	case errors.Is(err, store.ErrReadOnly):
		writeErr(w, http.StatusForbidden, "the capture is open read-only: collections cannot be saved")
	default:
		writeErr(w, http.StatusInternalServerError, err.Error())
	}
}

// listCollections serves GET /api/collections: every collection, whole.
func (u *UI) listCollections(w http.ResponseWriter, r *http.Request) {
	list, err := u.opts.Store.Collections(r.Context())
	if err != nil {
		storeErr(w, err)
		return
	}
	out := []Collection{}
	for i := range list {
		c, err := fromStore(&list[i])
		if err != nil {
			storeErr(w, err)
			return
		}
		out = append(out, c)
	}
	writeJSON(w, http.StatusOK, map[string]any{"collections": out})
}

// getCollection serves GET /api/collections/{id}; with ?download=1 it is
// sent as a file to save (the export).
func (u *UI) getCollection(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		writeErr(w, http.StatusBadRequest, err.Error())
		return
	}
	sc, err := u.opts.Store.GetCollection(r.Context(), id)
	if err != nil {
		storeErr(w, err)
		return
	}
	c, err := fromStore(sc)
	if err != nil {
		storeErr(w, err)
		return
	}
	if r.URL.Query().Get("download") == "1" {
		c.ID, c.Updated = 0, nil
		w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", safeFileName(c.Name)+".grpctap.json"))
	}
	writeJSON(w, http.StatusOK, c)
}

func safeFileName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '-' || r == '_' || r == '.' || (r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') {
			return r
		}
		return '_'
	}, s)
}

func body(c *Collection) []byte {
	b, _ := json.Marshal(Collection{Name: c.Name, Requests: c.Requests})
	return b
}

// createCollection serves POST /api/collections (create, or import an
// exported file).
func (u *UI) createCollection(w http.ResponseWriter, r *http.Request) {
	c, err := readCollection(r)
	if err != nil {
		writeErr(w, http.StatusBadRequest, err.Error())
		return
	}
	id, err := u.opts.Store.CreateCollection(r.Context(), c.Name, body(c))
	if err != nil {
		storeErr(w, err)
		return
	}
	c.ID = id
	writeJSON(w, http.StatusCreated, c)
}

// updateCollection serves PUT /api/collections/{id}: replace it whole.
func (u *UI) updateCollection(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		writeErr(w, http.StatusBadRequest, err.Error())
		return
	}
	c, err := readCollection(r)
	if err != nil {
		writeErr(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := u.opts.Store.UpdateCollection(r.Context(), id, c.Name, body(c)); err != nil {
		storeErr(w, err)
		return
	}
	c.ID = id
	writeJSON(w, http.StatusOK, c)
}

// deleteCollection serves DELETE /api/collections/{id}.
func (u *UI) deleteCollection(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		writeErr(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := u.opts.Store.DeleteCollection(r.Context(), id); err != nil {
		storeErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
