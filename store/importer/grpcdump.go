package importer

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/grpctap/grpctap/store"
)

// dumpLine is any line of a grpc-dump stream: a whole call, or (type set)
// one event of a call.
type dumpLine struct {
	Type      string              `json:"type"`
	ID        *int64              `json:"id"`
	Timestamp *time.Time          `json:"timestamp"`
	Service   string              `json:"service"`
	Method    string              `json:"method"`
	Metadata  map[string][]string `json:"metadata"`
	Messages  []dumpMessage       `json:"messages"`
	Error     *dumpStatus         `json:"error"`
	// Event layout: message and status fields.
	Origin  string          `json:"origin"`
	Raw     []byte          `json:"raw"`
	Code    json.RawMessage `json:"code"`
	Message json.RawMessage `json:"message"`
}

type dumpMessage struct {
	Origin    string     `json:"message_origin"`
	Raw       []byte     `json:"raw_message"`
	Timestamp *time.Time `json:"timestamp"`
}

type dumpStatus struct {
	Code    json.RawMessage `json:"code"`
	Message string          `json:"message"`
}

// ReadGRPCDump reads a grpc-dump stream and calls fn with each call once
// it is whole: at once in the whole-call layout; in the event layout at its
// status line, in the order the calls started (a finished call waits for
// those that started before it; calls without a status line end with the
// stream).
func ReadGRPCDump(r io.Reader, fn func(*store.CallWithMessages) error) error {
	dec := json.NewDecoder(bufio.NewReaderSize(r, 1<<16))
	open := map[int64]*store.CallWithMessages{} // event layout, by dump id
	var order []int64                           // their ids, first seen first
	done := map[int64]bool{}
	// emit passes on the finished calls at the head of order.
	emit := func() error {
		for len(order) > 0 && done[order[0]] {
			id := order[0]
			order = order[1:]
			c := open[id]
			delete(open, id)
			delete(done, id)
			if err := fn(c); err != nil {
				return err
			}
		}
		return nil
	}
	now := time.Now().UTC()
	for n := 1; ; n++ {
		var l dumpLine
		if err := dec.Decode(&l); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return fmt.Errorf("object %d: %w", n, err)
		}
		switch l.Type {
		case "":
			c, err := dumpCall(&l, now)
			if err == nil {
				err = Check(&c)
			}
			if err == nil {
				err = fn(&c)
			}
			if err != nil {
				return fmt.Errorf("object %d: %w", n, err)
			}
		case "rpc":
			if l.ID == nil {
				return fmt.Errorf("object %d: rpc without id", n)
			}
			if _, dup := open[*l.ID]; dup {
				return fmt.Errorf("object %d: rpc id %d again", n, *l.ID)
			}
			c := newDumpCall(l.Service, l.Method, l.Metadata, stamp(l.Timestamp, now))
			open[*l.ID] = &c
			order = append(order, *l.ID)
		case "message", "status":
			if l.ID == nil {
				return fmt.Errorf("object %d: %s without id", n, l.Type)
			}
			c, ok := open[*l.ID]
			if !ok || done[*l.ID] {
				return fmt.Errorf("object %d: %s for unknown or finished rpc id %d", n, l.Type, *l.ID)
			}
			t := stamp(l.Timestamp, c.Start)
			if l.Type == "message" {
				addDumpMessage(c, l.Origin, l.Raw, t)
				continue
			}
			var msg string
			if len(l.Message) > 0 {
				_ = json.Unmarshal(l.Message, &msg)
			}
			err := endDumpCall(c, l.Code, msg, t)
			if err == nil {
				err = Check(c)
			}
			if err != nil {
				return fmt.Errorf("object %d: %w", n, err)
			}
			done[*l.ID] = true
			if err := emit(); err != nil {
				return err
			}
		default:
			return fmt.Errorf("object %d: unknown type %q", n, l.Type)
		}
	}
	for _, id := range order {
		if done[id] {
			continue
		}
		// Event layout without a status line: the call was still open
		// when the dump stopped.
		c := open[id]
		end := c.Start
		if len(c.Messages) > 0 {
			end = c.Messages[len(c.Messages)-1].Time
		}
		c.End = &end
		c.Status = &store.Status{Code: 2, Message: "grpc-dump recorded no status for this call"}
		if err := Check(c); err != nil {
			return fmt.Errorf("rpc %d: %w", id, err)
		}
		done[id] = true
	}
	return emit()
}

func stamp(t *time.Time, def time.Time) time.Time {
	if t == nil || t.IsZero() {
		return def
	}
	return t.UTC()
}

func newDumpCall(service, method string, md map[string][]string, start time.Time) store.CallWithMessages {
	c := store.CallWithMessages{Messages: []store.Message{}}
	c.Method = "/" + service + "/" + method
	c.Protocol = "grpc"
	c.Start = start
	c.RequestHeaders = store.Metadata{}
	for k, vs := range md {
		k = strings.ToLower(k)
		out := make([]string, len(vs))
		for i, v := range vs {
			if strings.HasSuffix(k, "-bin") {
				v = store.EncodeBin([]byte(v)) // grpc-dump writes the decoded bytes
			}
			out[i] = v
		}
		c.RequestHeaders[k] = out
	}
	if a := c.RequestHeaders[":authority"]; len(a) > 0 {
		c.Authority = a[0]
	}
	return c
}

func addDumpMessage(c *store.CallWithMessages, origin string, raw []byte, t time.Time) {
	dir := store.DirRequest
	if origin == "server" {
		dir = store.DirResponse
	}
	if raw == nil {
		raw = []byte{}
	}
	c.Messages = append(c.Messages, store.Message{Seq: len(c.Messages) + 1, Direction: dir, Time: t, Size: int64(len(raw)), Raw: raw})
}

func endDumpCall(c *store.CallWithMessages, code json.RawMessage, msg string, t time.Time) error {
	n := 0
	if len(code) > 0 {
		var num int
		var name string
		switch {
		case json.Unmarshal(code, &num) == nil:
			n = num
		case json.Unmarshal(code, &name) == nil:
			var err error
			if n, err = store.ParseCode(name); err != nil {
				return err
			}
		default:
			return fmt.Errorf("status code %s is neither a number nor a name", code)
		}
	}
	c.End = &t
	c.Status = &store.Status{Code: n, Message: msg}
	return nil
}

// dumpCall converts one call of grpc-dump's whole-call layout.
func dumpCall(l *dumpLine, now time.Time) (store.CallWithMessages, error) {
	if l.Service == "" || l.Method == "" {
		return store.CallWithMessages{}, errors.New("not a grpc-dump call: no service or method")
	}
	start := now
	if len(l.Messages) > 0 {
		times := make([]time.Time, 0, len(l.Messages))
		for _, m := range l.Messages {
			if m.Timestamp != nil && !m.Timestamp.IsZero() {
				times = append(times, m.Timestamp.UTC())
			}
		}
		if len(times) > 0 {
			sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
			start = times[0]
		}
	}
	c := newDumpCall(l.Service, l.Method, l.Metadata, start)
	last := start
	for _, m := range l.Messages {
		t := stamp(m.Timestamp, last)
		last = t
		addDumpMessage(&c, m.Origin, m.Raw, t)
	}
	var code json.RawMessage
	msg := ""
	if l.Error != nil {
		code, msg = l.Error.Code, l.Error.Message
		if len(code) == 0 {
			code = json.RawMessage("2")
		}
	}
	return c, endDumpCall(&c, code, msg, last)
}
