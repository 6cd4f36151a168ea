package recorder

import (
	"sync"

	"github.com/grpctap/grpctap/store"
)

type pushKind uint8

const (
	pushMessage pushKind = iota // bounded by the limit
	pushControl                 // may use a reserve above the limit
	pushStart                   // same reserve as control events
	pushEnd                     // always admitted while open: one per call
)

// queue is a FIFO of store events bounded by bytes. push never blocks: the
// mutex is held only to append or swap a slice, never across I/O.
type queue struct {
	mu      sync.Mutex
	events  []store.Event
	bytes   int64
	limit   int64
	closed  bool
	dropped int64         // drops since the writer last took them (Recorder.drop)
	fullAt  int           // events that make a full batch
	wake    chan struct{} // something was queued
	full    chan struct{} // a full batch is queued
}

func (q *queue) init(limit int64, batch int) {
	q.limit = limit
	q.fullAt = batch
	q.wake = make(chan struct{}, 1)
	q.full = make(chan struct{}, 1)
}

func (q *queue) push(e store.Event, kind pushKind) bool {
	n := int64(e.Size())
	q.mu.Lock()
	ok := !q.closed
	if ok {
		switch kind {
		case pushMessage:
			ok = q.bytes+n <= q.limit
		case pushControl, pushStart:
			ok = q.bytes+n <= q.limit+q.limit/8
		}
	}
	full := false
	if ok {
		q.events = append(q.events, e)
		q.bytes += n
		full = len(q.events) == q.fullAt
	}
	q.mu.Unlock()
	if ok {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
	if full {
		select {
		case q.full <- struct{}{}:
		default:
		}
	}
	return ok
}

// take removes up to max events from the head, and the count of drops
// since the last take.
func (q *queue) take(max int) ([]store.Event, int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	d := q.dropped
	q.dropped = 0
	n := min(max, len(q.events))
	if n == 0 {
		return nil, d
	}
	out := make([]store.Event, n)
	copy(out, q.events)
	clear(q.events[:n])
	q.events = q.events[n:]
	if len(q.events) == 0 {
		q.events = nil
	}
	for i := range out {
		q.bytes -= int64(out[i].Size())
	}
	return out, d
}

func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
}

// abandon drops everything still queued (Close ran out of time).
func (q *queue) abandon() int64 {
	q.mu.Lock()
	n := int64(len(q.events))
	q.dropped += n
	q.events, q.bytes = nil, 0
	q.mu.Unlock()
	return n
}
