package schemas

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/grpctap/grpctap/decode"
	"github.com/grpctap/grpctap/proxy"
	"github.com/grpctap/grpctap/store"
)

// Learner is a proxy.Observer that learns the schema of each method the
// proxy sees, off the forwarding path, and saves what it learned in the
// capture whenever that grows. StartCall only notes the method.
type Learner struct {
	dec *decode.Decoder
	st  *store.Store
	log *slog.Logger

	queue  chan learnKey
	seen   sync.Map // learnKey → struct{}
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	saved    []byte          // the last snapshot saved
	failedBy map[string]bool // backends already reported as without schema
}

type learnKey struct{ backend, method string }

// LearnTimeout bounds one reflection look-up.
const LearnTimeout = 10 * time.Second

// NewLearner starts a Learner; Close stops it.
func NewLearner(dec *decode.Decoder, st *store.Store, log *slog.Logger) *Learner {
	ctx, cancel := context.WithCancel(context.Background())
	l := &Learner{dec: dec, st: st, log: log, queue: make(chan learnKey, 256), cancel: cancel, done: make(chan struct{}), failedBy: map[string]bool{}}
	go l.loop(ctx)
	return l
}

// StartCall notes the call's method once per backend and never blocks.
func (l *Learner) StartCall(cs *proxy.CallStart) proxy.CallObserver {
	if cs.Backend == "" {
		return nil
	}
	k := learnKey{cs.Backend, cs.Method}
	if _, loaded := l.seen.LoadOrStore(k, struct{}{}); !loaded {
		select {
		case l.queue <- k:
		default:
			l.seen.Delete(k) // try again on a later call
		}
	}
	return nil
}

func (l *Learner) loop(ctx context.Context) {
	defer close(l.done)
	for {
		select {
		case <-ctx.Done():
			return
		case k := <-l.queue:
			l.learn(ctx, k)
		}
	}
}

func (l *Learner) learn(ctx context.Context, k learnKey) {
	ctx, cancel := context.WithTimeout(ctx, LearnTimeout)
	defer cancel()
	if _, src, err := l.dec.FindMethod(ctx, k.method, k.backend); err != nil {
		if ctx.Err() != nil && ctx.Err() != context.DeadlineExceeded {
			return
		}
		l.mu.Lock()
		first := !l.failedBy[k.backend]
		l.failedBy[k.backend] = true
		l.mu.Unlock()
		lvl := slog.LevelDebug
		if first {
			lvl = slog.LevelInfo
		}
		l.log.Log(ctx, lvl, "no schema for method: its messages will be shown schemaless (a .proto file or protoset given to grpctap would decode them)",
			"method", k.method, "backend", k.backend, "reason", err.Error())
		return
	} else {
		l.log.Debug("learned schema", "method", k.method, "backend", k.backend, "source", src)
	}
	if err := l.save(ctx); err != nil {
		l.log.Warn("saving learned schemas in the capture", "err", err)
	}
}

func (l *Learner) save(ctx context.Context) error {
	snap, err := l.dec.Snapshot()
	if err != nil {
		return err
	}
	l.mu.Lock()
	same := bytes.Equal(snap, l.saved)
	l.mu.Unlock()
	if same {
		return nil
	}
	if err := l.st.SaveDescriptors(ctx, savedKey, snap); err != nil {
		return err
	}
	l.mu.Lock()
	l.saved = snap
	l.mu.Unlock()
	return nil
}

// Close stops learning; a look-up in progress is cancelled.
func (l *Learner) Close() {
	l.cancel()
	<-l.done
}
