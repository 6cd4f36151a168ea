package recorder

import (
	"sync"
	"time"

	"github.com/grpctap/grpctap/store"
)

// LiveEvent tells a subscriber that something of a call is now in the
// store (it is published after the write commits, so a reader that looks
// the call up finds it).
type LiveEvent struct {
	Kind   string    `json:"kind"` // "start", "header", "message" or "end"
	CallID int64     `json:"call_id"`
	Method string    `json:"method,omitempty"` // start
	Time   time.Time `json:"time"`
	// Message events.
	Seq       int    `json:"seq,omitempty"`
	Direction string `json:"direction,omitempty"`
	Size      int64  `json:"size,omitempty"`
	// End events.
	Code int `json:"code,omitempty"`
}

// Subscribe returns a feed of recorded events and a function that ends
// it. The feed never slows recording: when a subscriber's buffer (buffer
// events, at least 16) is full, its events are dropped and the next one it
// gets has Kind "lagged" — it should reread the store.
func (r *Recorder) Subscribe(buffer int) (<-chan LiveEvent, func()) {
	return r.subs.add(max(buffer, 16))
}

type subscriber struct {
	ch     chan LiveEvent
	lagged bool
}

type subscribers struct {
	mu   sync.Mutex
	subs map[*subscriber]struct{}
}

func (s *subscribers) add(buffer int) (<-chan LiveEvent, func()) {
	sub := &subscriber{ch: make(chan LiveEvent, buffer)}
	s.mu.Lock()
	if s.subs == nil {
		s.subs = map[*subscriber]struct{}{}
	}
	s.subs[sub] = struct{}{}
	s.mu.Unlock()
	var once sync.Once
	return sub.ch, func() {
		once.Do(func() {
			s.mu.Lock()
			delete(s.subs, sub)
			s.mu.Unlock()
			close(sub.ch)
		})
	}
}

func (s *subscribers) publish(evs []store.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.subs) == 0 {
		return
	}
	for i := range evs {
		le, ok := liveEvent(&evs[i])
		if !ok {
			continue
		}
		for sub := range s.subs {
			if sub.lagged {
				select {
				case sub.ch <- LiveEvent{Kind: "lagged", Time: le.Time}:
					sub.lagged = false
				default:
					continue
				}
			}
			select {
			case sub.ch <- le:
			default:
				sub.lagged = true
			}
		}
	}
}

func liveEvent(e *store.Event) (LiveEvent, bool) {
	switch {
	case e.Start != nil:
		return LiveEvent{Kind: "start", CallID: e.Start.ID, Method: e.Start.Method, Time: e.Start.Time}, true
	case e.Header != nil:
		return LiveEvent{Kind: "header", CallID: e.Header.CallID, Time: e.Header.Time}, true
	case e.Message != nil:
		m := e.Message
		return LiveEvent{Kind: "message", CallID: m.CallID, Time: m.Time, Seq: m.Seq, Direction: m.Direction, Size: m.Size}, true
	case e.End != nil:
		return LiveEvent{Kind: "end", CallID: e.End.CallID, Time: e.End.Time, Code: e.End.Code}, true
	}
	return LiveEvent{}, false
}
