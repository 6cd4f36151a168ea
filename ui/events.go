package ui

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/grpctap/grpctap/recorder"
	"github.com/grpctap/grpctap/store"
)

// CallUpdate is what one batch of /api/events says about one call: what
// happened to it since the previous batch.
type CallUpdate struct {
	ID       int64  `json:"id"`
	Method   string `json:"method,omitempty"` // set when the call started in this batch
	Started  bool   `json:"started,omitempty"`
	Ended    bool   `json:"ended,omitempty"`
	Code     *int   `json:"code,omitempty"` // with ended
	Requests int64  `json:"requests"`       // messages recorded in this batch
	Response int64  `json:"responses"`
	Headers  bool   `json:"headers,omitempty"` // response headers arrived
}

// Batch is the data of one "calls" server-sent event.
type Batch struct {
	Calls []CallUpdate `json:"calls"`
	// Overflow counts the calls left out because the batch was full, and
	// Lagged says the feed lost events: in both cases the page should
	// reread /api/calls.
	Overflow int  `json:"overflow,omitempty"`
	Lagged   bool `json:"lagged,omitempty"`
	// Refresh is set when other processes changed the capture (noticed
	// by polling an SQLite file without a recorder here, or told by
	// PostgreSQL): reread /api/calls.
	Refresh bool `json:"refresh,omitempty"`
}

// maxBatchCalls bounds one batch; beyond it calls are only counted.
const maxBatchCalls = 500

type batcher struct {
	b     Batch
	index map[int64]int      // call id → its place in b.Calls
	over  map[int64]struct{} // calls left out of b
}

func (bt *batcher) add(ev recorder.LiveEvent) {
	if ev.Kind == "lagged" {
		bt.b.Lagged = true
		return
	}
	i, ok := bt.index[ev.CallID]
	if !ok {
		if len(bt.b.Calls) >= maxBatchCalls {
			if _, seen := bt.over[ev.CallID]; !seen {
				bt.over[ev.CallID] = struct{}{}
				bt.b.Overflow++
			}
			return
		}
		i = len(bt.b.Calls)
		bt.index[ev.CallID] = i
		bt.b.Calls = append(bt.b.Calls, CallUpdate{ID: ev.CallID})
	}
	cu := &bt.b.Calls[i]
	switch ev.Kind {
	case "start":
		cu.Started, cu.Method = true, ev.Method
	case "header":
		cu.Headers = true
	case "message":
		if ev.Direction == store.DirResponse {
			cu.Response++
		} else {
			cu.Requests++
		}
	case "end":
		code := ev.Code
		cu.Ended, cu.Code = true, &code
	}
}

func (bt *batcher) empty() bool {
	return len(bt.b.Calls) == 0 && !bt.b.Lagged && bt.b.Overflow == 0 && !bt.b.Refresh
}

func (bt *batcher) take() Batch {
	b := bt.b
	bt.b = Batch{}
	clear(bt.index)
	clear(bt.over)
	return b
}

// events serves GET /api/events: server-sent events named "calls", each a
// Batch, at most one per EventInterval; a comment every 15s keeps idle
// connections open.
func (u *UI) events(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		writeErr(w, http.StatusInternalServerError, "streaming unsupported")
		return
	}
	if !u.enter() {
		writeErr(w, http.StatusServiceUnavailable, "shutting down")
		return
	}
	defer u.wg.Done()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, "retry: 2000\n: grpctap live feed\n\n")
	fl.Flush()

	var feed <-chan recorder.LiveEvent
	if u.opts.Recorder != nil {
		ch, stop := u.opts.Recorder.Subscribe(8192)
		defer stop()
		feed = ch
	}
	// Other processes' commits: PostgreSQL tells (a fleet's proxies); an
	// SQLite file is polled when no recorder runs here.
	changes, stopChanges := u.opts.Store.Changes(r.Context())
	defer stopChanges()
	var poll <-chan time.Time
	var last store.Watermark
	if feed == nil && changes == nil {
		t := time.NewTicker(u.opts.PollInterval)
		defer t.Stop()
		poll = t.C
		last, _ = u.opts.Store.CurrentWatermark(r.Context())
	}
	tick := time.NewTicker(u.opts.EventInterval)
	defer tick.Stop()
	keep := time.NewTicker(15 * time.Second)
	defer keep.Stop()
	bt := &batcher{index: map[int64]int{}, over: map[int64]struct{}{}}
	for {
		select {
		case <-r.Context().Done():
			return
		case <-u.closing:
			return
		case ev, ok := <-feed:
			if !ok {
				return
			}
			bt.add(ev)
		case <-changes:
			bt.b.Refresh = true
		case <-poll:
			wm, err := u.opts.Store.CurrentWatermark(r.Context())
			if err == nil && wm != last {
				last, bt.b.Refresh = wm, true
			}
		case <-keep.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
			fl.Flush()
		case <-tick.C:
			if bt.empty() {
				continue
			}
			data, err := json.Marshal(bt.take())
			if err != nil {
				return
			}
			if _, err := fmt.Fprintf(w, "event: calls\ndata: %s\n\n", data); err != nil {
				return
			}
			fl.Flush()
		}
	}
}
