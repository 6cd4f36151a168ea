package recorder

import (
	"sync"

	"github.com/grpctap/grpctap/proxy"
	"github.com/grpctap/grpctap/store"
)

type pushKind uint8

const (
	pushMessage pushKind = iota // bounded by the limit
	pushControl                 // may use a reserve above the limit
	pushStart                   // same reserve as control events
	pushEnd                     // always admitted while open: one per call
)

// item is one queued event. A message event's bytes may still be the
// proxy's buffers (pl): the writer fills the record's Raw from them just
// before writing and releases them after; whoever drops an item releases
// them instead.
type item struct {
	ev store.Event
	pl *proxy.Payload
}

// size estimates the memory an item holds, for bounding the queue.
func (it *item) size() int {
	n := it.ev.Size()
	if it.pl != nil {
		n += it.pl.Len()
	}
	return n
}

// release gives back the proxy's buffers held by items.
func release(items []item) {
	for i := range items {
		if items[i].pl != nil {
			items[i].pl.Release()
			items[i].pl = nil
		}
	}
}

// queue is a FIFO of store events bounded by bytes. push never blocks: the
// mutex is held only to append or swap a slice, never across I/O.
type queue struct {
	mu      sync.Mutex
	items   []item
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

// push queues it unless the queue is closed or, for its kind, full. The
// caller keeps ownership of it.pl when push returns false.
func (q *queue) push(it item, kind pushKind) bool {
	n := int64(it.size())
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
		q.items = append(q.items, it)
		q.bytes += n
		full = len(q.items) == q.fullAt
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

// take removes up to max items from the head, and the count of drops
// since the last take.
func (q *queue) take(max int) ([]item, int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	d := q.dropped
	q.dropped = 0
	n := min(max, len(q.items))
	if n == 0 {
		return nil, d
	}
	out := make([]item, n)
	copy(out, q.items)
	clear(q.items[:n])
	q.items = q.items[n:]
	if len(q.items) == 0 {
		q.items = nil
	}
	for i := range out {
		q.bytes -= int64(out[i].size())
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
	items := q.items
	n := int64(len(items))
	q.dropped += n
	q.items, q.bytes = nil, 0
	q.mu.Unlock()
	release(items)
	return n
}
