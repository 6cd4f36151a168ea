package ui

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/grpctap/grpctap/decode"
	"github.com/grpctap/grpctap/schemas"
	"github.com/grpctap/grpctap/store"
)

// parsePageQuery reads GET /api/calls parameters.
func parsePageQuery(r *http.Request, now time.Time) (store.PageQuery, error) {
	v := r.URL.Query()
	q := store.PageQuery{
		Filter:   store.Filter{Method: strings.TrimSpace(v.Get("method")), Proxy: strings.TrimSpace(v.Get("proxy"))},
		Protocol: v.Get("protocol"),
		State:    v.Get("state"),
		Text:     strings.TrimSpace(v.Get("q")),
	}
	for name, s := range map[string]string{"method": q.Method, "q": q.Text} {
		if err := store.CheckPatternLen(name, s); err != nil {
			return q, err
		}
	}
	if s := v.Get("status"); s != "" {
		code, err := store.ParseCode(s)
		if err != nil {
			return q, err
		}
		q.Status = &code
	}
	if q.State != "" && q.State != "open" && q.State != "closed" {
		return q, fmt.Errorf("state %q: want open or closed", q.State)
	}
	if s := v.Get("since"); s != "" {
		if d, err := time.ParseDuration(s); err == nil {
			q.Since = now.Add(-d)
		} else if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			q.Since = t
		} else {
			return q, fmt.Errorf("since %q: want a duration (10m) or an RFC 3339 time", s)
		}
	}
	for name, dst := range map[string]*int64{"cursor": &q.Before, "after": &q.AfterID} {
		if s := v.Get(name); s != "" {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil || n < 0 {
				return q, fmt.Errorf("%s %q: want a call id", name, s)
			}
			*dst = n
		}
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > store.MaxPageSize {
			return q, fmt.Errorf("limit %q: want 1 to %d", s, store.MaxPageSize)
		}
		q.Limit = n
	}
	return q, nil
}

// listCalls serves GET /api/calls.
func (u *UI) listCalls(w http.ResponseWriter, r *http.Request) {
	q, err := parsePageQuery(r, time.Now())
	if err != nil {
		writeErr(w, http.StatusBadRequest, err.Error())
		return
	}
	p, err := u.opts.Store.CallsPage(r.Context(), q)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func pathID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("id %q is not a positive number", r.PathValue("id"))
	}
	return id, nil
}

// loadCall reads and decodes one call, writing the error answer itself.
func (u *UI) loadCall(w http.ResponseWriter, r *http.Request) (*store.CallWithMessages, bool) {
	c, ok := u.readCall(w, r)
	if ok {
		schemas.DecodeCall(r.Context(), u.dec, c)
	}
	return c, ok
}

// readCall reads one call, writing the error answer itself.
func (u *UI) readCall(w http.ResponseWriter, r *http.Request) (*store.CallWithMessages, bool) {
	id, err := pathID(r)
	if err != nil {
		writeErr(w, http.StatusBadRequest, err.Error())
		return nil, false
	}
	c, err := u.opts.Store.GetCall(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		writeErr(w, http.StatusNotFound, err.Error())
		return nil, false
	}
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err.Error())
		return nil, false
	}
	return c, true
}

// getCall serves GET /api/calls/{id}: the JSON of grpctap show --json,
// decoded within decode.DefaultLimits, with status_details_decoded added
// and the raw bytes of large messages left out (see MessageView).
func (u *UI) getCall(w http.ResponseWriter, r *http.Request) {
	c, ok := u.readCall(w, r)
	if !ok {
		return
	}
	elided := schemas.DecodeCallWithin(r.Context(), u.dec, c, decode.DefaultLimits)
	v := CallView{CallWithMessages: c, Messages: make([]MessageView, len(c.Messages)), StatusDetails: schemas.DecodeDetails(r.Context(), u.dec, &c.Call),
		ComposerMetadata: composerMetadata(&c.Call)}
	for i, m := range c.Messages {
		v.Messages[i] = messageView(m, elided[i])
	}
	writeJSON(w, http.StatusOK, v)
}

// replay serves POST /api/calls/{id}/replay.
func (u *UI) replay(w http.ResponseWriter, r *http.Request) {
	if u.opts.Replay == nil {
		writeErr(w, http.StatusNotImplemented, "replay is not available in this build")
		return
	}
	c, ok := u.loadCall(w, r)
	if !ok {
		return
	}
	res, err := u.opts.Replay(r.Context(), c, r.URL.Query().Get("target"))
	if err != nil {
		writeErr(w, http.StatusBadGateway, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// stats serves GET /api/stats: the overview of the calls the query
// selects (method, protocol, since as for /api/calls; buckets, the number
// of time buckets), as 'grpctap stats --json' prints it.
func (u *UI) stats(w http.ResponseWriter, r *http.Request) {
	pq, err := parsePageQuery(r, time.Now())
	if err != nil {
		writeErr(w, http.StatusBadRequest, err.Error())
		return
	}
	q := store.StatsQuery{Method: pq.Method, Protocol: pq.Protocol, Proxy: pq.Proxy, Since: pq.Since}
	if s := r.URL.Query().Get("buckets"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > store.MaxStatsBuckets {
			writeErr(w, http.StatusBadRequest, fmt.Sprintf("buckets %q: want 1 to %d", s, store.MaxStatsBuckets))
			return
		}
		q.Buckets = n
	}
	st, err := u.opts.Store.Stats(r.Context(), q)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, st)
}
