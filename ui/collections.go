package ui

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/grpctap/grpctap/collection"
	"github.com/grpctap/grpctap/decode"
	"github.com/grpctap/grpctap/msgdiff"
	"github.com/grpctap/grpctap/replay"
	"github.com/grpctap/grpctap/schemas"
	"github.com/grpctap/grpctap/store"
)

// Collection is a named set of saved requests; its JSON is also the
// export file format (docs/collections.md; import it back with POST
// /api/collections).
type Collection = collection.Collection

// SavedRequest is one request kept in a collection.
type SavedRequest = collection.Request

func readCollection(r *http.Request) (*Collection, error) {
	return collection.Parse(r.Body)
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
		c, err := collection.FromStore(&list[i])
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
	c, err := collection.FromStore(sc)
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

// createCollection serves POST /api/collections (create, or import an
// exported file).
func (u *UI) createCollection(w http.ResponseWriter, r *http.Request) {
	c, err := readCollection(r)
	if err != nil {
		writeErr(w, http.StatusBadRequest, err.Error())
		return
	}
	id, err := u.opts.Store.CreateCollection(r.Context(), c.Name, c.Body())
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
	if err := u.opts.Store.UpdateCollection(r.Context(), id, c.Name, c.Body()); err != nil {
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

// SaveCallRequest is the body of POST /api/calls/{id}/save.
type SaveCallRequest struct {
	// Collection is the name of the collection to add to; made when there
	// is none.
	Collection string `json:"collection"`
	// Name names the request; default "Method #id".
	Name string `json:"name"`
	// IgnoreFields are saved with the request: field paths a test run
	// leaves out of its diff (receivedAt, items[*].id).
	IgnoreFields []string `json:"ignore_fields"`
	// Assertions are saved with the request (docs/collections.md).
	Assertions []collection.Assertion `json:"assertions"`
}

// saveCall serves POST /api/calls/{id}/save: the captured call becomes a
// saved request of a collection, its answer the expected example.
func (u *UI) saveCall(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		writeErr(w, http.StatusBadRequest, err.Error())
		return
	}
	var req SaveCallRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, "body: "+err.Error())
		return
	}
	if strings.TrimSpace(req.Collection) == "" {
		writeErr(w, http.StatusBadRequest, "name the collection to save into")
		return
	}
	c, err := u.opts.Store.GetCall(r.Context(), id)
	if err != nil {
		storeErr(w, err)
		return
	}
	schemas.DecodeCallWithin(r.Context(), u.dec, c, decode.NoLimits)
	q, err := collection.FromCall(c, strings.TrimSpace(req.Name))
	if err != nil {
		writeErr(w, http.StatusUnprocessableEntity, err.Error())
		return
	}
	q.IgnoreFields, q.Assertions = req.IgnoreFields, req.Assertions
	col, err := collection.Add(r.Context(), u.opts.Store, req.Collection, q)
	switch {
	case errors.Is(err, collection.ErrInvalid):
		writeErr(w, http.StatusBadRequest, err.Error())
	case err != nil:
		storeErr(w, err)
	default:
		writeJSON(w, http.StatusOK, col)
	}
}

// RunRequest is the body of POST /api/collections/{id}/run; every field
// may be left out.
type RunRequest struct {
	// Target sends every request there instead of its own target.
	Target string `json:"target"`
	// IgnoreFields and IgnoreHeaders are left out of every comparison,
	// besides each request's ignore_fields and replay's volatile headers.
	IgnoreFields  []string `json:"ignore_fields"`
	IgnoreHeaders []string `json:"ignore_headers"`
}

// RunAnswer is the answer of POST /api/collections/{id}/run.
type RunAnswer struct {
	Collection string              `json:"collection"`
	Results    []collection.Result `json:"results"`
	Summary    replay.Summary      `json:"summary"`
}

// runCollection serves POST /api/collections/{id}/run: every request is
// sent and judged as grpctap test judges it.
func (u *UI) runCollection(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		writeErr(w, http.StatusBadRequest, err.Error())
		return
	}
	var req RunRequest
	if r.ContentLength != 0 {
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
			writeErr(w, http.StatusBadRequest, "body: "+err.Error())
			return
		}
	}
	cm := &replay.Comparator{Decoder: u.dec, IgnoreHeaders: append(append([]string(nil), replay.DefaultVolatileHeaders...), req.IgnoreHeaders...)}
	for _, f := range req.IgnoreFields {
		p, err := msgdiff.ParseFieldPath(f)
		if err != nil {
			writeErr(w, http.StatusBadRequest, "ignore_fields: "+err.Error())
			return
		}
		cm.IgnoreFields = append(cm.IgnoreFields, p)
	}
	sc, err := u.opts.Store.GetCollection(r.Context(), id)
	if err != nil {
		storeErr(w, err)
		return
	}
	col, err := collection.FromStore(sc)
	if err != nil {
		storeErr(w, err)
		return
	}
	if !u.enter() {
		writeErr(w, http.StatusServiceUnavailable, "shutting down")
		return
	}
	defer u.wg.Done()
	ctx, cancel := u.untilClosed(r.Context())
	defer cancel()
	rp := replay.New(replay.Options{Target: req.Target, TLS: u.opts.BackendTLS})
	defer rp.Close()
	runner := &collection.Runner{Replayer: rp, Comparator: cm}
	if u.opts.Proxy != nil {
		runner.Route = u.opts.Proxy.Route
	}
	results, sum := runner.Run(ctx, &col)
	writeJSON(w, http.StatusOK, RunAnswer{Collection: col.Name, Results: results, Summary: sum})
}
