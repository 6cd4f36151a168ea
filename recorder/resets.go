package recorder

import (
	"net/netip"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A reset call is one its client ended (cancelled, reset the stream, or let
// its deadline pass) before any message either way and before any response
// header: all there is to record of it is its request headers. An HTTP/2
// rapid-reset flood is thousands of them a second, each forwarded at once
// and, recorded, a row in the capture. The recorder keeps a token bucket
// per client (Options.ResetBurst, Options.ResetRate): a reset call takes a
// token to be recorded; without one it is counted (Stats.SkippedResets) and
// not written.
//
// Whether a call is a reset call is known only at its end, and a call's
// start is queued at once (so that an open call shows), so the token is
// taken at the start: each call takes one when it starts and gives it back
// at its first header or message, or when it ends any other way. A call
// that starts when its client has no token left keeps its start back
// instead (it is in no batch, so it can still be left out): the start is
// queued with the call's first header or message, or at its end if the
// client has a token again by then or the call was not a reset call, and
// otherwise the call is counted and forgotten. So ordinary calls are
// always recorded whole; while their client is over the rate, they show
// from their first header or message rather than from their start.

// Defaults of Options.ResetBurst and Options.ResetRate.
const (
	DefaultResetBurst = 100
	DefaultResetRate  = 20.0
)

// maxResetPeers bounds the clients the limiter keeps a bucket for; beyond
// it, new clients share one bucket until idle buckets are swept.
const maxResetPeers = 4096

// clientEnded reports whether a call ended by the client's doing: the
// status the proxy reports when the client cancels, resets the stream or
// runs out of its deadline.
func clientEnded(st *status.Status) bool {
	switch st.Code() {
	case codes.Canceled, codes.DeadlineExceeded:
		return true
	}
	return false
}

// resetLimiter holds the token buckets of reset calls, per client.
type resetLimiter struct {
	burst float64
	rate  float64 // tokens per second

	mu     sync.Mutex
	peers  map[peerKey]*bucket
	swept  time.Time // when idle buckets were last removed
	shared bucket    // for new clients while peers is full
}

// bucket is one client's tokens; a resetLimiter's mu guards it.
type bucket struct {
	tokens float64
	at     time.Time // when tokens was last refilled
	used   bool      // tokens and at are set
}

// peerKey names a client: its IP address, an IPv6 address cut to its /64
// (one host commonly holds a whole /64), or, for a peer that is not an IP
// address (an in-memory listener), the peer string.
type peerKey struct {
	addr  netip.Addr
	other string
}

func keyOf(peer string) peerKey {
	ap, err := netip.ParseAddrPort(peer)
	if err != nil {
		return peerKey{other: peer}
	}
	a := ap.Addr().Unmap().WithZone("")
	if a.Is6() {
		if p, err := a.Prefix(64); err == nil {
			a = p.Addr()
		}
	}
	return peerKey{addr: a}
}

func newResetLimiter(burst int, rate float64) *resetLimiter {
	return &resetLimiter{burst: float64(burst), rate: rate, peers: map[peerKey]*bucket{}}
}

// refill adds the tokens earned since b was last refilled; l.mu is held.
// Times that go backwards (calls report their own clock readings, taken
// on different goroutines) earn nothing.
func (l *resetLimiter) refill(b *bucket, now time.Time) {
	if !b.used {
		b.tokens, b.at, b.used = l.burst, now, true
		return
	}
	if d := now.Sub(b.at); d > 0 {
		b.tokens = min(l.burst, b.tokens+l.rate*d.Seconds())
		b.at = now
	}
}

// reserve returns peer's bucket and whether it took a token from it for a
// call starting at now. Calls without a peer are grpctap's own (replays):
// they get no bucket and always a token.
func (l *resetLimiter) reserve(peer string, now time.Time) (*bucket, bool) {
	if peer == "" {
		return nil, true
	}
	k := keyOf(peer)
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.peers[k]
	if b == nil {
		b = l.add(k, now)
	}
	return b, l.takeLocked(b, now)
}

// take takes a token from b for a call ending at now.
func (l *resetLimiter) take(b *bucket, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.takeLocked(b, now)
}

func (l *resetLimiter) takeLocked(b *bucket, now time.Time) bool {
	l.refill(b, now)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// giveBack returns a token reserve took for a call that turned out not to
// be a reset call.
func (l *resetLimiter) giveBack(b *bucket) {
	if b == nil {
		return
	}
	l.mu.Lock()
	b.tokens = min(l.burst, b.tokens+1)
	l.mu.Unlock()
}

// add makes k's bucket, or returns the shared one when there are too many
// clients; l.mu is held. Full buckets are removed first (at most once a
// second): a client whose bucket is full has nothing to remember, and a
// call still holding a removed bucket gives its token back to nobody.
func (l *resetLimiter) add(k peerKey, now time.Time) *bucket {
	if len(l.peers) >= maxResetPeers && now.Sub(l.swept) >= time.Second {
		l.swept = now
		for pk, b := range l.peers {
			if l.refill(b, now); b.tokens >= l.burst {
				delete(l.peers, pk)
			}
		}
	}
	if len(l.peers) >= maxResetPeers {
		return &l.shared
	}
	b := &bucket{}
	l.peers[k] = b
	return b
}
