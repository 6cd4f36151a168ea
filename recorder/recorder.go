// Package recorder owns the path from the proxy's Observer hook to the
// capture store: it turns proxy events into store events (redacting headers
// and cutting long bodies before anything is queued), queues them in a queue
// bounded by bytes, and writes them from one goroutine in batched
// transactions. When the queue is full, or the store cannot be written (full
// disk, read-only file), events are dropped and counted, never waited for:
// forwarding does not block on recording. Calls a client resets before
// any message are recorded up to a rate per client, then counted
// (resets.go). It also keeps the capture's retention and offers a small
// live feed of recorded events.
package recorder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/grpctap/grpctap/internal/headers"
	"github.com/grpctap/grpctap/proxy"
	"github.com/grpctap/grpctap/store"
)

// Defaults of Options.
const (
	DefaultMaxMessage = 4 << 20
	DefaultQueueBytes = 64 << 20
	DefaultPruneEvery = time.Minute
	DefaultFlushEvery = 20 * time.Millisecond
)

// Options configure a Recorder. The zero value of each field is its default.
type Options struct {
	// MaxMessage is the most bytes of a message body stored; longer bodies
	// are cut and marked truncated with their full size. Default
	// DefaultMaxMessage (4 MiB).
	MaxMessage int
	// Redact names headers (any case) whose values are stored as
	// headers.Redacted, in requests, responses and trailers, and named in
	// the call's redacted list. nil means headers.DefaultRedact; an empty
	// non-nil slice turns redaction off.
	Redact []string
	// QueueBytes bounds the memory held by events waiting to be written.
	// Default DefaultQueueBytes (64 MiB).
	QueueBytes int64
	// Retain prunes calls that started longer ago. Default: keep all.
	Retain time.Duration
	// MaxDBSize prunes the oldest calls while the capture holds more bytes.
	// Default: no limit.
	MaxDBSize int64
	// PruneEvery is how often retention runs. Default DefaultPruneEvery.
	PruneEvery time.Duration
	// MaxBatch bounds the events written per transaction. Default 2000.
	MaxBatch int
	// FlushEvery is how long the writer gathers events before writing
	// them, unless MaxBatch are waiting already: a call is visible to
	// readers within about this long. Small transactions cost far more CPU
	// per event (stolen from forwarding), so this is not zero. Default
	// DefaultFlushEvery (20ms).
	FlushEvery time.Duration
	// ResetBurst and ResetRate bound, per client, the calls recorded that
	// the client ended (cancelled, reset the stream, or let its deadline
	// pass) before any message either way and before any response header:
	// an HTTP/2 rapid-reset flood is thousands of them a second. Each such
	// call takes a token from its client's bucket, which holds ResetBurst
	// tokens and refills at ResetRate a second; a call that finds none is
	// not written but counted (Stats.SkippedResets) and logged, at most
	// every 10 s. A client is an IP address (an IPv6 /64); calls without a
	// peer (grpctap's own replays) are not limited. Other calls are always
	// recorded. Defaults DefaultResetBurst (100) and
	// DefaultResetRate (20 a second); a negative ResetBurst records every
	// reset call.
	ResetBurst int
	ResetRate  float64
	// Logger gets warnings (drops, write failures, skipped reset calls).
	// Default slog.Default().
	Logger *slog.Logger
}

// Recorder records every call the proxy reports into a store. It implements
// proxy.Observer. Close it to flush and stop its writer; closing the store
// is the caller's job, after.
type Recorder struct {
	st     *store.Store
	opts   Options
	log    *slog.Logger
	policy Policy

	q    queue
	stop chan struct{}
	done chan struct{}
	once sync.Once
	// flush asks the writer to write everything queued now; it closes
	// the channel it receives when that is done.
	flush chan chan struct{}

	recorded, dropped atomic.Int64
	subs              subscribers

	// resets limits reset calls per client; nil records them all.
	resets *resetLimiter
	// skipped counts reset calls not recorded; skipWarnAt (Unix ns) and
	// skipWarned (skipped then) are the last log line's.
	skipped, skipWarnAt, skipWarned atomic.Int64
}

var _ proxy.Observer = (*Recorder)(nil)

// New starts a recorder writing to st. Calls left open by processes that
// recorded into the capture and are gone (killed) are closed first, with
// store.StoppedMessage; other processes may record into it at the same
// time.
func New(ctx context.Context, st *store.Store, opts Options) (*Recorder, error) {
	policy := NewPolicy(opts.Redact, opts.MaxMessage)
	opts.MaxMessage = policy.MaxMessage()
	if opts.QueueBytes <= 0 {
		opts.QueueBytes = DefaultQueueBytes
	}
	if opts.PruneEvery <= 0 {
		opts.PruneEvery = DefaultPruneEvery
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 2000
	}
	if opts.FlushEvery <= 0 {
		opts.FlushEvery = DefaultFlushEvery
	}
	if opts.ResetBurst == 0 {
		opts.ResetBurst = DefaultResetBurst
	}
	if opts.ResetRate <= 0 {
		opts.ResetRate = DefaultResetRate
	}
	r := &Recorder{
		st:     st,
		opts:   opts,
		log:    opts.Logger,
		policy: policy,
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
		flush:  make(chan chan struct{}),
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	r.q.init(opts.QueueBytes, opts.MaxBatch)
	if opts.ResetBurst > 0 {
		r.resets = newResetLimiter(opts.ResetBurst, opts.ResetRate)
	}
	if n, err := st.CloseOpenCalls(ctx); err != nil {
		// A read-only or full capture: keep going, writes will be counted
		// as drops.
		r.log.Warn("recorder: cannot close calls left open", "db", st.Path(), "err", err)
	} else if n > 0 {
		r.log.Info("recorder: closed calls left open by a previous run", "db", st.Path(), "calls", n)
	}
	go r.run()
	return r, nil
}

// Stats are a recorder's counters since it started.
type Stats struct {
	Recorded    int64 // events written
	Dropped     int64 // events dropped (queue full or write failure)
	QueuedBytes int64 // bytes waiting in the queue now
	// SkippedResets counts calls not recorded because their client ended
	// them before any message or response header, over its rate
	// (Options.ResetBurst). They are not dropped events: nothing of them
	// was kept on purpose.
	SkippedResets int64
}

// Stats returns the recorder's counters.
func (r *Recorder) Stats() Stats {
	r.q.mu.Lock()
	qb := r.q.bytes
	r.q.mu.Unlock()
	return Stats{Recorded: r.recorded.Load(), Dropped: r.dropped.Load(), QueuedBytes: qb, SkippedResets: r.skipped.Load()}
}

// Close writes what is queued and stops the writer. Events reported after
// Close are dropped. If ctx ends first, Close returns its error and the
// writer stops after its current batch, dropping the rest.
func (r *Recorder) Close(ctx context.Context) error {
	r.once.Do(func() {
		r.q.close()
		close(r.stop)
	})
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		r.dropped.Add(r.q.abandon())
		<-r.done
		return fmt.Errorf("close recorder: %w", ctx.Err())
	}
}

// Flush waits until every event queued before it was called is written to
// the store (or dropped, if the write failed), without the gathering delay
// of FlushEvery. It returns ctx's error if ctx ends first, and nil at once
// after Close.
func (r *Recorder) Flush(ctx context.Context) error {
	done := make(chan struct{})
	select {
	case r.flush <- done:
	case <-r.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("flush recorder: %w", ctx.Err())
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("flush recorder: %w", ctx.Err())
	}
}

// StartCall implements proxy.Observer.
func (r *Recorder) StartCall(cs *proxy.CallStart) proxy.CallObserver {
	c := &call{r: r, id: r.st.NewKey(), report: cs.Recorded}
	start := &store.CallStart{
		ID: c.id, Method: cs.Method, Protocol: cs.Protocol, Backend: cs.Backend, Authority: cs.Authority,
		Peer: cs.Peer, ContentType: cs.ContentType, Compression: cs.Compression, Deadline: cs.Deadline,
		Time: cs.Time,
	}
	start.Header, start.Redacted = r.metadata(cs.Header)
	if r.resets != nil {
		// See resets.go: without a token the start waits for the call to
		// show it is more than a reset.
		c.bucket, c.reserved = r.resets.reserve(cs.Peer, cs.Time)
		if !c.reserved {
			c.held = start
			return c
		}
	}
	c.queueStart(start)
	return c
}

// call is the CallObserver of one call. The proxy serialises its methods.
type call struct {
	r       *Recorder
	id      int64 // the store's key for the call (its id comes with the write)
	lost    bool
	dropped int64
	// report is CallStart.Recorded, until the start is queued.
	report func(id int64)

	// For the limit on reset calls (resets.go), until the call's first
	// header or message, or its end: its client's bucket; whether the call
	// holds a token of it; or else its start, not queued yet.
	bucket   *bucket
	reserved bool
	held     *store.CallStart
}

// queueStart queues the call's start.
func (c *call) queueStart(start *store.CallStart) {
	report := c.report
	c.report = nil
	if !c.r.q.push(item{ev: store.Event{Start: start}, report: report}, pushStart) {
		// Without its row nothing else of the call can be stored.
		c.lost = true
		c.r.drop()
		if report != nil {
			report(0)
		}
	}
}

// content settles the reset limit at the call's first header or message:
// the call is not a reset call.
func (c *call) content() {
	switch {
	case c.reserved:
		c.r.resets.giveBack(c.bucket)
		c.reserved = false
	case c.held != nil:
		c.queueStart(c.held)
		c.held = nil
	}
}

// settleEnd settles the reset limit at the end of a call that had no
// header or message, and reports whether the call is recorded.
func (c *call) settleEnd(e *proxy.CallEnd) bool {
	reset := clientEnded(e.Status)
	if c.reserved {
		if !reset {
			c.r.resets.giveBack(c.bucket)
		}
		c.reserved = false
		return true
	}
	if c.held == nil {
		return true
	}
	start := c.held
	c.held = nil
	if reset && !c.r.resets.take(c.bucket, e.Time) {
		c.r.skipReset(start.Peer)
		if c.report != nil {
			c.report(0)
			c.report = nil
		}
		return false
	}
	c.queueStart(start)
	return true
}

// skipReset counts a reset call left out, and logs at most every 10
// seconds. It runs on the forwarding path: one goroutine a window logs.
func (r *Recorder) skipReset(peer string) {
	total := r.skipped.Add(1)
	// Let the writer carry the count to the capture even when nothing
	// else is queued.
	select {
	case r.q.wake <- struct{}{}:
	default:
	}
	now := time.Now().UnixNano()
	last := r.skipWarnAt.Load()
	if last != 0 && now-last < int64(10*time.Second) {
		return
	}
	if !r.skipWarnAt.CompareAndSwap(last, now) {
		return
	}
	since := total - r.skipWarned.Swap(total)
	r.log.Warn("recorder: not recording calls their client reset before any message, over its rate; forwarding continues",
		"client", peer, "skipped", since, "skipped_total", total,
		"burst", r.opts.ResetBurst, "per_second", r.opts.ResetRate, "db", r.st.Path())
}

func (c *call) enqueue(ev store.Event, kind pushKind) {
	c.enqueuePayload(ev, nil, kind)
}

// enqueuePayload queues ev; pl, when set, holds the message's bytes until
// the writer has written (or dropped) it.
func (c *call) enqueuePayload(ev store.Event, pl *proxy.Payload, kind pushKind) {
	if c.lost || !c.r.q.push(item{ev: ev, pl: pl}, kind) {
		if pl != nil {
			pl.Release()
		}
		c.dropped++
		c.r.drop()
	}
}

func (c *call) ResponseHeader(h *proxy.Header) {
	c.content()
	rh := &store.ResponseHeader{CallID: c.id, Time: h.Time}
	rh.Header, rh.Redacted = c.r.metadata(h.MD)
	c.enqueue(store.Event{Header: rh}, pushControl)
}

func (c *call) Message(m *proxy.Message) {
	c.content()
	dir := store.DirRequest
	if m.Direction == proxy.Response {
		dir = store.DirResponse
	}
	rec := &store.MessageRecord{CallID: c.id, Seq: m.Seq, Direction: dir, Time: m.Time, Size: int64(m.Size)}
	if m.Size > c.r.opts.MaxMessage {
		// Copy the prefix so the queue does not pin the whole body.
		rec.Raw = m.Prefix(c.r.opts.MaxMessage)
		rec.Truncated = true
		c.enqueue(store.Event{Message: rec}, pushMessage)
		return
	}
	// Keep the proxy's buffers, not a copy: the writer reads them and
	// releases them once the batch is written.
	c.enqueuePayload(store.Event{Message: rec}, m.Retain(), pushMessage)
}

func (c *call) EndCall(e *proxy.CallEnd) {
	if (c.reserved || c.held != nil) && !c.settleEnd(e) {
		return
	}
	if c.lost {
		c.r.drop()
		return
	}
	end := &store.CallEnd{CallID: c.id, Time: e.Time}
	end.Trailers, end.Redacted = c.r.metadata(e.Trailer)
	if e.Status != nil {
		end.Code = int(e.Status.Code())
		end.Message = e.Status.Message()
		for _, d := range e.Status.Proto().GetDetails() {
			if b, err := proto.Marshal(d); err == nil {
				end.Details = append(end.Details, b)
			}
		}
	}
	// Events dropped so far are counted on the call; the end itself is
	// always queued (one per call, so the queue stays bounded by the number
	// of calls in flight) so that no call is left open.
	end.Dropped = c.dropped
	if !c.r.q.push(item{ev: store.Event{End: end}}, pushEnd) {
		c.r.drop()
	}
}

// drop counts one event dropped on the forwarding path; the writer adds the
// count to the capture's.
func (r *Recorder) drop() {
	r.dropped.Add(1)
	r.q.mu.Lock()
	r.q.dropped++
	r.q.mu.Unlock()
}

// metadata converts gRPC metadata for storage: keys in lower case,
// redacted keys lose their values (and are returned, for the store to
// keep beside them), "-bin" values become base64 as on the wire. The proxy's maps are made for each call and never written (the
// Observer contract), so they are stored as they are when no key needs a
// change, which is most of the time, and otherwise their unchanged value
// lists are shared rather than copied.
func (r *Recorder) metadata(md metadata.MD) (store.Metadata, []string) {
	if len(md) == 0 {
		return nil, nil
	}
	asIs := true
	for k := range md {
		if !r.storedAsIs(k) {
			asIs = false
			break
		}
	}
	if asIs {
		return store.Metadata(md), nil
	}
	out := make(store.Metadata, len(md))
	var redacted []string
	for k, vs := range md {
		k = strings.ToLower(k)
		switch {
		case r.policy.Redacts(k):
			out[k] = headers.Placeholders(len(vs))
			redacted = append(redacted, k)
		case strings.HasSuffix(k, "-bin"):
			enc := make([]string, len(vs))
			for i, v := range vs {
				enc[i] = store.EncodeBin([]byte(v))
			}
			out[k] = enc
		default:
			out[k] = vs
		}
	}
	slices.Sort(redacted) // the same bytes in the capture for the same call
	return out, redacted
}

// storedAsIs reports whether a header key and its values are stored as
// they came: in lower case already, neither redacted nor binary.
func (r *Recorder) storedAsIs(k string) bool {
	for i := 0; i < len(k); i++ {
		if 'A' <= k[i] && k[i] <= 'Z' {
			return false
		}
	}
	return !strings.HasSuffix(k, "-bin") && !r.policy.Redacts(k)
}

// run is the writer goroutine.
func (r *Recorder) run() {
	defer close(r.done)
	ctx := context.Background()
	prune := time.NewTicker(r.opts.PruneEvery)
	defer prune.Stop()
	// An idle recorder still closes the calls an outage left open once
	// the store takes writes again.
	retry := time.NewTicker(time.Second)
	defer retry.Stop()
	w := writer{r: r, lost: map[int64]bool{}}
	if r.opts.Retain > 0 || r.opts.MaxDBSize > 0 {
		w.prune(ctx)
	}
	gather := time.NewTimer(time.Hour)
	gather.Stop()
	for {
		select {
		case <-r.q.wake:
			// Let a batch gather, unless a full one is waiting already.
			gather.Reset(r.opts.FlushEvery)
			var flushed chan struct{}
			select {
			case <-gather.C:
			case <-r.q.full:
				gather.Stop()
			case flushed = <-r.flush:
				gather.Stop()
			case <-r.stop:
				gather.Stop()
			}
			w.drain(ctx)
			if flushed != nil {
				close(flushed)
			}
		case flushed := <-r.flush:
			w.drain(ctx)
			close(flushed)
		case <-retry.C:
			w.retryPendingEnds(ctx, false)
		case <-prune.C:
			if r.opts.Retain > 0 || r.opts.MaxDBSize > 0 {
				w.prune(ctx)
			}
		case <-r.stop:
			w.drain(ctx)
			w.retryPendingEnds(ctx, true)
			w.persistDrops(ctx)
			return
		}
	}
}

type writer struct {
	r *Recorder
	// lost holds calls whose start could not be written; their later
	// events are dropped instead of failing batch after batch.
	lost map[int64]bool
	// pendingEnds are the ends of calls whose start is stored but whose
	// last batch failed (the database went away): each is tried again
	// with the next batches, so that no call stays open in the capture
	// after an outage. Not counted as dropped unless given up.
	pendingEnds []store.Event
	// unsaved counts drops not yet added to the capture's counter;
	// skippedSaved, the reset calls skipped that the capture counts.
	unsaved      int64
	skippedSaved int64
	lastWarn     time.Time
	warnPending  int64
	warnErr      error
}

// drain writes everything queued, in batches.
func (w *writer) drain(ctx context.Context) {
	for {
		evs, qdropped := w.r.q.take(w.r.opts.MaxBatch)
		w.unsaved += qdropped
		if qdropped > 0 {
			w.warn(qdropped, errors.New("recording queue full"))
		}
		if len(evs) == 0 {
			w.retryPendingEnds(ctx, false)
			w.persistDrops(ctx)
			return
		}
		w.write(ctx, evs)
	}
}

func (w *writer) write(ctx context.Context, items []item) {
	// The proxy's buffers go back once the batch is written or lost, and
	// the makers of calls whose starts were not written hear so.
	defer release(items)
	defer reportLost(items)
	kept := make([]store.Event, 0, len(items))
	var skipped int64
	for i := range items {
		e := items[i].ev
		if id := eventCall(&e); id != 0 && w.lost[id] {
			skipped++
			if items[i].report != nil {
				items[i].report(0)
				items[i].report = nil
			}
			if e.End != nil {
				delete(w.lost, id)
			}
			continue
		}
		if pl := items[i].pl; pl != nil {
			e.Message.Raw = pl.Bytes()
		}
		kept = append(kept, e)
	}
	if skipped > 0 {
		w.r.dropped.Add(skipped)
		w.unsaved += skipped
	}
	if len(kept) == 0 {
		return
	}
	if len(w.pendingEnds) > 0 {
		kept = append(w.pendingEnds, kept...)
		w.pendingEnds = nil
	}
	counts, hasCounts := w.counts()
	if hasCounts {
		kept = append(kept, counts)
	}
	if err := w.r.st.WriteBatch(ctx, kept); err != nil {
		if hasCounts {
			kept = kept[:len(kept)-1] // the counter event itself
		}
		// The batch is lost. Calls it started are lost with it; calls it
		// ended but that started earlier get one more try at their end
		// alone (small), so they do not stay open.
		var ends []store.Event
		perCall := map[int64]int64{}
		for _, e := range kept {
			if e.Start != nil {
				w.lost[e.Start.ID] = true
			}
			if e.End == nil {
				perCall[eventCall(&e)]++
				continue
			}
			if !w.lost[e.End.CallID] {
				end := *e.End
				end.Dropped += perCall[end.CallID]
				ends = append(ends, store.Event{End: &end})
			}
			delete(w.lost, e.End.CallID)
		}
		n := int64(len(kept))
		if len(ends) > 0 {
			if w.r.st.WriteBatch(ctx, ends) == nil {
				n -= int64(len(ends))
				w.r.recorded.Add(int64(len(ends)))
				w.r.subs.publish(ends)
			} else {
				n -= w.keepEnds(ends) // not dropped while they wait
			}
		}
		w.r.dropped.Add(n)
		w.unsaved += n
		w.warn(n, err)
		return
	}
	w.saved(counts)
	w.r.recorded.Add(int64(len(kept)))
	w.r.subs.publish(kept)
	for i := range items {
		// The start shares its CallStart with kept: it holds the id now.
		if it := &items[i]; it.report != nil {
			it.report(it.ev.Start.ID)
			it.report = nil
		}
	}
}

// maxPendingEnds bounds the ends kept for another try; beyond it an end is
// dropped (and counted on its call's next read as an open call).
const maxPendingEnds = 10000

// keepEnds keeps ends for another try, as many as fit, and returns how
// many it kept; the others count as dropped.
func (w *writer) keepEnds(ends []store.Event) int64 {
	room := max(0, maxPendingEnds-len(w.pendingEnds))
	k := min(room, len(ends))
	w.pendingEnds = append(w.pendingEnds, ends[:k]...)
	return int64(k)
}

// retryPendingEnds tries the kept ends again (the recorder is idle, or
// closing); when they fail once more they wait for the next try, or, when
// final, count as dropped.
func (w *writer) retryPendingEnds(ctx context.Context, final bool) {
	if len(w.pendingEnds) == 0 {
		return
	}
	ends := w.pendingEnds
	if w.r.st.WriteBatch(ctx, ends) == nil {
		w.pendingEnds = nil
		w.r.recorded.Add(int64(len(ends)))
		w.r.subs.publish(ends)
		return
	}
	if final {
		w.pendingEnds = nil
		w.r.dropped.Add(int64(len(ends)))
		w.unsaved += int64(len(ends))
	}
}

// counts is the event that carries the counts the capture does not have
// yet (drops, skipped reset calls), and whether there are any.
func (w *writer) counts() (store.Event, bool) {
	skipped := w.r.skipped.Load() - w.skippedSaved
	return store.Event{Dropped: w.unsaved, SkippedCalls: skipped}, w.unsaved != 0 || skipped != 0
}

// saved notes that the counts of ev are in the capture.
func (w *writer) saved(ev store.Event) {
	w.unsaved -= ev.Dropped
	w.skippedSaved += ev.SkippedCalls
}

// persistDrops stores the counts (drops, skipped reset calls) when
// nothing else carries them.
func (w *writer) persistDrops(ctx context.Context) {
	counts, ok := w.counts()
	if !ok {
		return
	}
	if err := w.r.st.WriteBatch(ctx, []store.Event{counts}); err == nil {
		w.saved(counts)
	}
}

// warn logs drops at most every 10 seconds, with the count since the last
// line.
func (w *writer) warn(n int64, err error) {
	w.warnPending += n
	w.warnErr = err
	if time.Since(w.lastWarn) < 10*time.Second {
		return
	}
	w.r.log.Warn("recorder: dropping events; forwarding continues", "dropped", w.warnPending,
		"dropped_total", w.r.dropped.Load(), "db", w.r.st.Path(), "err", w.warnErr)
	w.lastWarn, w.warnPending = time.Now(), 0
}

func (w *writer) prune(ctx context.Context) {
	var before time.Time
	if w.r.opts.Retain > 0 {
		before = time.Now().Add(-w.r.opts.Retain)
	}
	n, err := w.r.st.Prune(ctx, before, w.r.opts.MaxDBSize)
	if err != nil {
		w.r.log.Warn("recorder: retention failed", "db", w.r.st.Path(), "err", err)
		return
	}
	if n > 0 {
		w.r.log.Debug("recorder: pruned calls", "calls", n)
	}
}

func eventCall(e *store.Event) int64 {
	switch {
	case e.Start != nil:
		return e.Start.ID
	case e.Header != nil:
		return e.Header.CallID
	case e.Message != nil:
		return e.Message.CallID
	case e.End != nil:
		return e.End.CallID
	}
	return 0
}
