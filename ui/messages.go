package ui

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/grpctap/grpctap/decode"
	"github.com/grpctap/grpctap/schemas"
	"github.com/grpctap/grpctap/store"
)

// RawInline is the largest message whose raw bytes GET /api/calls/{id}
// carries; larger ones are served on request by
// GET /api/calls/{id}/messages/{seq}/raw, so that opening a call costs
// about its decoded views, not its bodies.
const RawInline = 64 << 10

// MessageView is one message in the inspector's JSON: as grpctap show
// --json prints it, plus what its bounded views leave out.
type MessageView struct {
	store.Message
	// RawOmitted says raw is null because the message is larger than
	// RawInline: its bytes are at .../messages/{seq}/raw.
	RawOmitted bool `json:"raw_omitted,omitempty"`
	// Elided lists what the json and schemaless views leave out;
	// .../messages/{seq}?scale=N shows N times more, ?full=1 everything.
	Elided []decode.Elision `json:"elided,omitempty"`
}

func messageView(m store.Message, elided []decode.Elision) MessageView {
	v := MessageView{Message: m, Elided: elided}
	if len(m.Raw) > RawInline {
		v.Raw, v.RawOmitted = nil, true
	}
	return v
}

// findMessage reads the call and the message {seq} of the request's path,
// writing the error answer itself.
func (u *UI) findMessage(w http.ResponseWriter, r *http.Request) (*store.CallWithMessages, int, bool) {
	c, ok := u.readCall(w, r)
	if !ok {
		return nil, 0, false
	}
	seq, err := strconv.Atoi(r.PathValue("seq"))
	if err == nil {
		for i, m := range c.Messages {
			if m.Seq == seq {
				return c, i, true
			}
		}
	}
	writeErr(w, http.StatusNotFound, fmt.Sprintf("call %d has no message %q", c.ID, r.PathValue("seq")))
	return nil, 0, false
}

// getMessage serves GET /api/calls/{id}/messages/{seq}: one message
// decoded with decode.DefaultLimits scaled by ?scale=N (1 to 1000), or
// with none with ?full=1, raw included.
func (u *UI) getMessage(w http.ResponseWriter, r *http.Request) {
	lim := decode.DefaultLimits
	q := r.URL.Query()
	if q.Get("full") == "1" {
		lim = decode.NoLimits
	} else if s := q.Get("scale"); s != "" {
		k, err := strconv.Atoi(s)
		if err != nil || k < 1 || k > 1000 {
			writeErr(w, http.StatusBadRequest, fmt.Sprintf("scale %q: want 1 to 1000", s))
			return
		}
		lim = lim.Scale(k)
	}
	c, i, ok := u.findMessage(w, r)
	if !ok {
		return
	}
	one := *c
	one.Messages = c.Messages[i : i+1]
	elided := schemas.DecodeCallWithin(r.Context(), u.dec, &one, lim)
	writeJSON(w, http.StatusOK, MessageView{Message: one.Messages[0], Elided: elided[0]})
}

// getRaw serves GET /api/calls/{id}/messages/{seq}/raw: the message's
// recorded bytes, as a download.
func (u *UI) getRaw(w http.ResponseWriter, r *http.Request) {
	c, i, ok := u.findMessage(w, r)
	if !ok {
		return
	}
	m := c.Messages[i]
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="call-%d-message-%d.bin"`, c.ID, m.Seq))
	h.Set("Content-Length", strconv.Itoa(len(m.Raw)))
	h.Set("Cache-Control", "no-store")
	_, _ = w.Write(m.Raw)
}
