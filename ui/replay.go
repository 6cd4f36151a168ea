package ui

import (
	"context"
	"errors"
	"sync"

	"github.com/grpctap/grpctap/replay"
	"github.com/grpctap/grpctap/store"
)

// replayers sends replays for the inspector: one replay.Replayer per
// target ("" for each call's own backend), closed with the UI.
type replayers struct {
	mu     sync.Mutex
	byDest map[string]*replay.Replayer
}

// builtinReplay is the default ReplayFunc: the call is sent again with the
// replay package (recorded through Options.Observer when set, labelled
// grpctap-origin: replay) and compared with its recording.
func (u *UI) builtinReplay(ctx context.Context, c *store.CallWithMessages, target string) (any, error) {
	if !u.enter() {
		return nil, errors.New("shutting down")
	}
	defer u.wg.Done()
	u.replays.mu.Lock()
	r, ok := u.replays.byDest[target]
	if !ok {
		r = replay.New(replay.Options{Target: target, TLS: u.opts.BackendTLS, Observer: u.opts.Observer})
		u.replays.byDest[target] = r
	}
	u.replays.mu.Unlock()
	out, err := r.Send(ctx, c, r.Timeout(0, false))
	if err != nil {
		return nil, err
	}
	cm := replay.Comparator{Decoder: u.dec}
	return cm.Compare(ctx, c, out), nil
}

func (rs *replayers) close() error {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	var first error
	for k, r := range rs.byDest {
		if err := r.Close(); err != nil && first == nil {
			first = err
		}
		delete(rs.byDest, k)
	}
	return first
}
