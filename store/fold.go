package store

// Both engines write a batch the same way: its events grouped by call
// (one callFold per call), ids taken for the calls it starts, and, once
// committed, the ids handed back to the events.

// callFold is what one batch holds of one call.
type callFold struct {
	key, id                  int64
	start                    *CallStart
	header                   *ResponseHeader
	end                      *CallEnd
	reqN, respN, reqB, respB int64
	msgs                     []*MessageRecord
}

// folder groups a batch's events by call and remembers, across batches,
// the id of each call whose start is committed and whose end is not.
type folder struct {
	folds []callFold
	byKey map[int64]int   // key → its place in folds
	keys  map[int64]int64 // key → id of calls started and not ended
}

func newFolder() folder { return folder{byKey: map[int64]int{}, keys: map[int64]int64{}} }

// fold groups events by call, in the order calls first appear, and
// returns the sums of their Dropped and SkippedCalls counts.
func (w *folder) fold(events []Event) (dropped, skipped int64) {
	for i := range w.folds {
		w.folds[i] = callFold{msgs: w.folds[i].msgs[:0]}
	}
	w.folds = w.folds[:0]
	clear(w.byKey)
	get := func(key int64) *callFold {
		i, ok := w.byKey[key]
		if !ok {
			i = len(w.folds)
			w.byKey[key] = i
			if i < cap(w.folds) {
				w.folds = w.folds[:i+1]
			} else {
				w.folds = append(w.folds, callFold{})
			}
			w.folds[i].key = key
		}
		return &w.folds[i]
	}
	for i := range events {
		e := &events[i]
		dropped += e.Dropped
		skipped += e.SkippedCalls
		switch {
		case e.Start != nil:
			get(e.Start.ID).start = e.Start
		case e.Header != nil:
			get(e.Header.CallID).header = e.Header
		case e.Message != nil:
			m := e.Message
			c := get(m.CallID)
			if m.Direction == DirResponse {
				c.respN++
				c.respB += m.Size
			} else {
				c.reqN++
				c.reqB += m.Size
			}
			c.msgs = append(c.msgs, m)
		case e.End != nil:
			get(e.End.CallID).end = e.End
		}
	}
	return dropped, skipped
}

// forget drops the folds' pointers to the batch's events.
func (w *folder) forget() {
	for i := range w.folds {
		clear(w.folds[i].msgs)
		w.folds[i] = callFold{msgs: w.folds[i].msgs[:0]}
	}
	w.folds = w.folds[:0]
}

// handBack records the calls of a committed batch (open ones by key, ended
// ones forgotten) and sets the events' call references to their ids.
func (w *folder) handBack(events []Event) {
	for i := range w.folds {
		f := &w.folds[i]
		switch {
		case f.id == 0:
		case f.end != nil:
			delete(w.keys, f.key)
		case f.start != nil:
			w.keys[f.key] = f.id
		}
	}
	for i := range events {
		e := &events[i]
		var ref *int64
		switch {
		case e.Start != nil:
			ref = &e.Start.ID
		case e.Header != nil:
			ref = &e.Header.CallID
		case e.Message != nil:
			ref = &e.Message.CallID
		case e.End != nil:
			ref = &e.End.CallID
		default:
			continue
		}
		if id := w.folds[w.byKey[*ref]].id; id != 0 {
			*ref = id
		}
	}
}

// starts counts the calls the folded batch starts.
func (w *folder) starts() int64 {
	var n int64
	for i := range w.folds {
		if w.folds[i].start != nil {
			n++
		}
	}
	return n
}

// assign gives the calls the batch starts the ids from firstID on, in the
// order they started, and the others the ids their starts got; 0 for a
// call whose start was never written (its events are skipped).
func (w *folder) assign(firstID int64) {
	next := firstID
	for i := range w.folds {
		f := &w.folds[i]
		if f.start != nil {
			f.id = next
			next++
		} else {
			f.id = w.keys[f.key]
		}
	}
}
