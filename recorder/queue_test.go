package recorder

import (
	"testing"

	"github.com/grpctap/grpctap/store"
)

// TestQueueKeepsOrderWhileReusingItsRoom: whatever the mix of pushes and
// partial takes (across the queue's blocks, reusing emptied ones), events
// come out in the order they went in, and the bytes it counts go back to
// zero.
func TestQueueKeepsOrderWhileReusingItsRoom(t *testing.T) {
	var q queue
	q.init(1<<30, 4)
	next, want := int64(1), int64(1)
	// take takes up to max events, once or until the queue is empty.
	take := func(max int, all bool) {
		t.Helper()
		for {
			items, _ := q.take(max)
			for _, it := range items {
				if it.ev.Dropped != want {
					t.Fatalf("took event %d, want %d", it.ev.Dropped, want)
				}
				want++
			}
			if len(items) == 0 || !all {
				return
			}
		}
	}
	for round := 0; round < 200; round++ {
		pushes := 1 + (round*37)%700 // up to a few blocks
		for i := 0; i < pushes; i++ {
			if !q.push(item{ev: store.Event{Dropped: next}}, pushMessage) {
				t.Fatalf("push %d refused", next)
			}
			next++
		}
		// Take part of the queue, sometimes all of it.
		for k := 0; k < round%3; k++ {
			take(1+(round*13)%400, false)
		}
		if round%10 == 9 {
			take(3, true)
		}
	}
	take(1000, true)
	if want != next {
		t.Fatalf("took %d events, pushed %d", want-1, next-1)
	}
	if q.bytes != 0 {
		t.Fatalf("%d bytes counted with the queue empty", q.bytes)
	}
}
