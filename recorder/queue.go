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
	n  int64 // the memory it holds, for bounding the queue (set by push)
	// report is a start's proxy.CallStart.Recorded: called with the
	// call's id once written, with 0 when the start is lost.
	report func(id int64)
}

// reportLost tells the makers of the starts among items that their calls
// were not stored.
func reportLost(items []item) {
	for i := range items {
		if items[i].report != nil {
			items[i].report(0)
			items[i].report = nil
		}
	}
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
// mutex is held only to add or copy items, never across I/O.
//
// Items are kept in a list of fixed-size blocks, and blocks the writer has
// emptied are kept for reuse (up to keepBlocks): a queue in one slice grew
// anew, copying what it held, whenever the writer fell behind, which made
// garbage and copies in proportion to the events.
type queue struct {
	mu         sync.Mutex
	head, tail *block // items are head.items[first:] ... tail.items[:last]
	first      int
	last       int
	count      int    // items queued
	spare      *block // emptied blocks, linked by next
	spares     int
	bytes      int64
	limit      int64
	closed     bool
	dropped    int64         // drops since the writer last took them (Recorder.drop)
	fullAt     int           // events that make a full batch
	wake       chan struct{} // the queue was empty and is not
	full       chan struct{} // a full batch is queued
}

// blockItems is the number of items in one block of the queue.
const blockItems = 256

type block struct {
	items [blockItems]item
	next  *block
}

// keepBlocks bounds the emptied blocks the queue keeps for reuse (about
// 1 MiB); a burst's further blocks go back to the heap.
const keepBlocks = 64

func (q *queue) init(limit int64, batch int) {
	q.limit = limit
	q.fullAt = batch
	q.wake = make(chan struct{}, 1)
	q.full = make(chan struct{}, 1)
}

// add appends it; q.mu must be held.
func (q *queue) add(it item) {
	if q.tail == nil || q.last == blockItems {
		b := q.spare
		if b != nil {
			q.spare, b.next = b.next, nil
			q.spares--
		} else {
			b = &block{}
		}
		if q.tail == nil {
			q.head, q.first = b, 0
		} else {
			q.tail.next = b
		}
		q.tail, q.last = b, 0
	}
	q.tail.items[q.last] = it
	q.last++
	q.count++
}

// remove moves the first len(out) items into out; q.mu must be held and
// that many must be queued.
func (q *queue) remove(out []item) {
	for n := 0; n < len(out); {
		end := blockItems
		if q.head == q.tail {
			end = q.last
		}
		c := copy(out[n:], q.head.items[q.first:end])
		clear(q.head.items[q.first : q.first+c])
		n += c
		q.first += c
		q.count -= c
		if q.first < end {
			break // out is full
		}
		b := q.head
		if b == q.tail {
			q.head, q.tail = nil, nil
		} else {
			q.head, q.first = b.next, 0
		}
		b.next = nil
		if q.spares < keepBlocks {
			b.next, q.spare = q.spare, b
			q.spares++
		}
	}
}

// push queues it unless the queue is closed or, for its kind, full. The
// caller keeps ownership of it.pl when push returns false.
func (q *queue) push(it item, kind pushKind) bool {
	n := int64(it.ev.Size())
	if it.pl != nil {
		n += int64(it.pl.Len())
	}
	it.n = n
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
	full, first := false, false
	if ok {
		first = q.count == 0
		q.add(it)
		q.bytes += n
		full = q.count == q.fullAt
	}
	q.mu.Unlock()
	// Only the first event wakes the writer: it takes everything queued
	// until the queue is empty (take holds the lock too), so later pushes
	// need not touch the channel.
	if first {
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
	n := min(max, q.count)
	if n == 0 {
		return nil, d
	}
	out := make([]item, n)
	q.remove(out)
	for i := range out {
		q.bytes -= out[i].n
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
	items := make([]item, q.count)
	q.remove(items)
	n := int64(len(items))
	q.dropped += n
	q.bytes = 0
	q.mu.Unlock()
	release(items)
	reportLost(items)
	return n
}
