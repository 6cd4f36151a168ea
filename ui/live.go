package ui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"nhooyr.io/websocket"
)

// A live call is a composer call the page holds open over a websocket
// (GET /api/invoke/live): it sends request messages one at a time, half-
// closes or cancels when the user says, and gets every response, the
// headers and the trailers as they come (StreamEvents, one JSON text
// message each). A websocket rather than a streaming fetch: browsers stream
// a request body only over HTTP/2, and the inspector serves HTTP/1.1 on
// loopback; one full-duplex connection per call also ties the call's life
// to the page's (a closed tab cancels it) with no session table to expire.

// LiveCommand is a message from the page on a live call.
type LiveCommand struct {
	// Type is "start" (first, and only first: the call's method, target,
	// metadata and timeout, and optionally messages to send at once),
	// "send" (Message), "close_send" (half-close) or "cancel".
	Type string `json:"type"`
	InvokeRequest
	Message json.RawMessage `json:"message,omitempty"`
}

// liveReadLimit bounds one command (a request message as JSON);
// liveQueue, the commands waiting to be sent.
const (
	liveReadLimit = 64 << 20
	liveQueue     = 256
)

// invokeLive serves GET /api/invoke/live.
func (u *UI) invokeLive(w http.ResponseWriter, r *http.Request) {
	// A websocket opens with a GET, which ServeHTTP lets reading access
	// through: a live call sends, so it needs full access here.
	if requestAccess(r) != accessFull {
		writeErr(w, http.StatusForbidden, u.readOnlyReason())
		return
	}
	if u.opts.Proxy == nil {
		writeErr(w, http.StatusNotImplemented, noComposer)
		return
	}
	if !u.enter() {
		writeErr(w, http.StatusServiceUnavailable, "shutting down")
		return
	}
	defer u.wg.Done()
	// Accept refuses an Origin other than the page's own host.
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer conn.Close(websocket.StatusInternalError, "the call ended unexpectedly")
	conn.SetReadLimit(liveReadLimit)
	ctx, cancel := u.untilClosed(r.Context())
	defer cancel()
	var wmu sync.Mutex
	emit := func(ev StreamEvent) {
		b, _ := json.Marshal(ev)
		wmu.Lock()
		defer wmu.Unlock()
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		_ = conn.Write(wctx, websocket.MessageText, b)
	}
	var first LiveCommand
	if err := readCommand(ctx, conn, &first); err != nil || first.Type != "start" {
		if err == nil {
			err = errors.New(`the first message of a live call is {"type": "start", "method": ...}`)
		}
		emit(StreamEvent{Event: "error", Error: err.Error()})
		conn.Close(websocket.StatusPolicyViolation, "no start")
		return
	}
	s, err := u.open(ctx, &first.InvokeRequest)
	if err != nil {
		emit(StreamEvent{Event: "error", Error: err.Error()})
		conn.Close(websocket.StatusNormalClosure, "")
		return
	}
	defer s.close()
	oneMessage := false
	if md, _, err := u.dec.FindMethod(ctx, s.method, s.backend); err == nil {
		oneMessage = !md.IsStreamingClient()
	}
	s.start()
	emit(StreamEvent{Event: "open", Backend: s.backend})

	// Commands are read here and sends made on a goroutine of their own,
	// in order: a send waiting on a slow backend does not hold up a
	// cancel.
	sends := make(chan LiveCommand, liveQueue)
	var workers sync.WaitGroup
	workers.Add(2)
	go func() {
		defer workers.Done()
		sent := 0
		for cmd := range sends {
			if cmd.Type == "close_send" {
				s.closeSend()
				continue
			}
			if oneMessage && sent == 1 {
				emit(StreamEvent{Event: "rejected", Error: fmt.Sprintf("%s is not client-streaming: it takes one message", s.method)})
				continue
			}
			b, err := s.encode(ctx, cmd.Message)
			if err != nil {
				emit(StreamEvent{Event: "rejected", Error: err.Error()})
				continue
			}
			if err := s.send(b); err != nil {
				emit(StreamEvent{Event: "rejected", Error: "the call has ended"})
				continue
			}
			sent++
			emit(StreamEvent{Event: "sent", Seq: sent, Size: len(b), OffsetMS: msSince(s.began), JSON: cmd.Message})
		}
	}()
	go func() {
		defer workers.Done()
		defer close(sends)
		queue := func(cmd LiveCommand) {
			select {
			case sends <- cmd:
			default:
				emit(StreamEvent{Event: "rejected", Error: fmt.Sprintf("%d messages are waiting to be sent already", liveQueue)})
			}
		}
		for _, js := range first.Messages {
			queue(LiveCommand{Type: "send", Message: js})
		}
		for {
			var cmd LiveCommand
			typ, b, err := conn.Read(ctx)
			if err != nil {
				// The page went away (or the call is over and the
				// socket closed): a call still going is cancelled.
				s.lc.Cancel()
				return
			}
			if err := parseCommand(typ, b, &cmd); err != nil {
				emit(StreamEvent{Event: "rejected", Error: err.Error()})
				continue
			}
			switch cmd.Type {
			case "send", "close_send":
				queue(cmd)
			case "cancel":
				s.lc.Cancel()
			default:
				emit(StreamEvent{Event: "rejected", Error: fmt.Sprintf("unknown command %q: want send, close_send or cancel", cmd.Type)})
			}
		}
	}()
	s.receive(ctx, emit)
	emit(StreamEvent{Event: "end", Call: s.finish(ctx)})
	conn.Close(websocket.StatusNormalClosure, "")
	cancel()
	workers.Wait()
}

func readCommand(ctx context.Context, conn *websocket.Conn, cmd *LiveCommand) error {
	typ, b, err := conn.Read(ctx)
	if err != nil {
		return err
	}
	return parseCommand(typ, b, cmd)
}

func parseCommand(typ websocket.MessageType, b []byte, cmd *LiveCommand) error {
	if typ != websocket.MessageText {
		return errors.New("live call commands are JSON text messages")
	}
	if err := json.Unmarshal(b, cmd); err != nil {
		return fmt.Errorf("command: %w", err)
	}
	return nil
}
