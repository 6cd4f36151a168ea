package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/grpctap/grpctap/store"
)

func newImportCmd() *cobra.Command {
	var db string
	cmd := &cobra.Command{
		Use:   "import FILE [--db PATH]",
		Short: "Import calls from grpctap's export or a grpc-dump stream into a capture",
		Long: `import adds calls to a capture (created if missing), numbered after those
already there. It reads grpctap's own NDJSON ('grpctap export': every field
of each call and its messages kept) and the JSON stream written by grpc-dump
(github.com/bradleyjkemp/grpc-tools), both of its layouts: one object per
call (service, method, messages, error, metadata) and one object per event
(type rpc, message, status, joined by id). Use '-' to read standard input.

Proxies may be recording into the capture meanwhile.`,
		Example: `  grpctap export --db old.db --since 1h | grpctap import - --db shared.db
  grpc-dump --port 12345 > dump.json
  grpctap import dump.json && grpctap calls`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var r io.Reader = cmd.InOrStdin()
			if args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return fmt.Errorf("import: %w", err)
				}
				defer f.Close()
				r = f
			}
			calls, err := parseImport(r)
			if err != nil {
				return fmt.Errorf("import %s: %w", args[0], err)
			}
			ctx := cmd.Context()
			st, err := store.Open(ctx, db, store.Options{})
			if err != nil {
				return err
			}
			defer st.Close()
			var first, last int64
			for len(calls) > 0 {
				n := min(len(calls), 500)
				ids, err := st.Import(ctx, calls[:n])
				if err != nil {
					return err
				}
				if first == 0 {
					first = ids[0]
				}
				last = ids[len(ids)-1]
				calls = calls[n:]
			}
			if first == 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "no calls in %s\n", args[0])
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "imported %d calls (ids %d–%d) into %s\n", last-first+1, first, last, db)
			return nil
		},
	}
	cmd.Flags().StringVar(&db, "db", defaultDB, "capture file to add the calls to (created if missing)")
	return cmd
}

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

// parseGRPCDump reads a grpc-dump stream into calls.
func parseGRPCDump(r io.Reader) ([]store.CallWithMessages, error) {
	dec := json.NewDecoder(bufio.NewReaderSize(r, 1<<16))
	var calls []store.CallWithMessages
	byID := map[int64]int{} // event layout: dump id → index in calls
	now := time.Now().UTC()
	for n := 1; ; n++ {
		var l dumpLine
		if err := dec.Decode(&l); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("object %d: %w", n, err)
		}
		switch l.Type {
		case "":
			c, err := dumpCall(&l, now)
			if err != nil {
				return nil, fmt.Errorf("object %d: %w", n, err)
			}
			calls = append(calls, c)
		case "rpc":
			if l.ID == nil {
				return nil, fmt.Errorf("object %d: rpc without id", n)
			}
			c := newDumpCall(l.Service, l.Method, l.Metadata, stamp(l.Timestamp, now))
			byID[*l.ID] = len(calls)
			calls = append(calls, c)
		case "message", "status":
			if l.ID == nil {
				return nil, fmt.Errorf("object %d: %s without id", n, l.Type)
			}
			i, ok := byID[*l.ID]
			if !ok {
				return nil, fmt.Errorf("object %d: %s for unknown rpc id %d", n, l.Type, *l.ID)
			}
			c := &calls[i]
			t := stamp(l.Timestamp, c.Start)
			if l.Type == "message" {
				addDumpMessage(c, l.Origin, l.Raw, t)
				continue
			}
			var msg string
			if len(l.Message) > 0 {
				_ = json.Unmarshal(l.Message, &msg)
			}
			if err := endDumpCall(c, l.Code, msg, t); err != nil {
				return nil, fmt.Errorf("object %d: %w", n, err)
			}
		default:
			return nil, fmt.Errorf("object %d: unknown type %q", n, l.Type)
		}
	}
	for i := range calls {
		c := &calls[i]
		if c.End == nil { // event layout without a status line: call still open when the dump stopped
			end := c.Start
			if len(c.Messages) > 0 {
				end = c.Messages[len(c.Messages)-1].Time
			}
			c.End = &end
			c.Status = &store.Status{Code: 2, Message: "grpc-dump recorded no status for this call"}
		}
	}
	return calls, nil
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
