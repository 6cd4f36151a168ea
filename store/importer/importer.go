// Package importer reads calls recorded elsewhere into the store's model:
// grpctap's own NDJSON (what 'grpctap export' writes) and the JSON stream
// of grpc-dump (github.com/bradleyjkemp/grpc-tools), in both its layouts.
// It checks each call is plausible before passing it on, and writes them
// into a capture in bounded batches (Into). It knows nothing of flags,
// redaction or what the caller does with a call.
package importer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/grpctap/grpctap/store"
)

// Read reads what 'grpctap import' accepts and calls fn with each
// call: grpctap's own NDJSON (from 'export' or 'show --json': one call with
// its messages a line), told apart by its first object, or else a grpc-dump
// stream. fn may keep the call.
func Read(r io.Reader, fn func(*store.CallWithMessages) error) error {
	br := bufio.NewReaderSize(r, 1<<16)
	dec := json.NewDecoder(br)
	var first json.RawMessage
	if err := dec.Decode(&first); errors.Is(err, io.EOF) {
		return nil
	} else if err != nil {
		return fmt.Errorf("object 1: %w", err)
	}
	var probe struct {
		State          *string         `json:"state"`
		RequestHeaders json.RawMessage `json:"request_headers"`
		Messages       json.RawMessage `json:"messages"`
	}
	_ = json.Unmarshal(first, &probe)
	rest := io.MultiReader(bytes.NewReader(first), dec.Buffered(), br)
	if probe.State == nil || probe.RequestHeaders == nil {
		return ReadGRPCDump(rest, fn)
	}
	if probe.Messages == nil {
		return errors.New("object 1 is a call without its messages ('grpctap calls --json'); import what 'grpctap export' writes")
	}
	return ReadExport(rest, fn)
}

// ReadExport reads grpctap's NDJSON of whole calls.
func ReadExport(r io.Reader, fn func(*store.CallWithMessages) error) error {
	dec := json.NewDecoder(r)
	for n := 1; ; n++ {
		var c store.CallWithMessages
		if err := dec.Decode(&c); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("object %d: %w", n, err)
		}
		if err := Check(&c); err != nil {
			return fmt.Errorf("object %d (call %d): %w", n, c.ID, err)
		}
		if err := fn(&c); err != nil {
			return err
		}
	}
}

// earliest and latest bound the times an exported call may have.
var (
	earliest = time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC)
	latest   = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// Check refuses what no real call can be: a method that is not
// /pkg.Service/Method, a time outside 1990–2200, a status code outside the
// spec's 0–16, a message larger than its size says.
func Check(c *store.CallWithMessages) error {
	if svc, m := store.SplitMethod(c.Method); !strings.HasPrefix(c.Method, "/") || svc == "" || m == "" {
		return fmt.Errorf("method %q is not /package.Service/Method", c.Method)
	}
	inRange := func(what string, t time.Time) error {
		if t.Before(earliest) || t.After(latest) {
			return fmt.Errorf("%s %s is not a plausible time", what, t.Format(time.RFC3339Nano))
		}
		return nil
	}
	if err := inRange("start", c.Start); err != nil {
		return err
	}
	if c.End != nil {
		if err := inRange("end", *c.End); err != nil {
			return err
		}
		if c.Status == nil {
			return errors.New("a closed call without a status")
		}
	}
	if c.Status != nil && (c.Status.Code < 0 || c.Status.Code > 16) {
		return fmt.Errorf("status code %d is not a gRPC code (0-16)", c.Status.Code)
	}
	for _, m := range c.Messages {
		if m.Direction != store.DirRequest && m.Direction != store.DirResponse {
			return fmt.Errorf("message %d: direction %q", m.Seq, m.Direction)
		}
		if err := inRange(fmt.Sprintf("message %d time", m.Seq), m.Time); err != nil {
			return err
		}
		if m.Size < int64(len(m.Raw)) {
			return fmt.Errorf("message %d: size %d smaller than its %d bytes", m.Seq, m.Size, len(m.Raw))
		}
	}
	return nil
}

// Batch bounds of Into: a batch is written when it holds this many calls
// or this many message bytes, whichever comes first.
const (
	batchCalls = 500
	batchBytes = 16 << 20
)

// Result is what Into wrote: N calls, ids First to Last (0 when none).
type Result struct {
	N           int
	First, Last int64
}

// Into reads r as Read does and writes its calls into st in batches
// (store.Import: ids after those already there). each, when not nil, sees
// every call before it is queued and may change it (redact, cut bodies).
// An error in the input stops the import there; the batches written
// before it stay, and the Result counts them.
func Into(ctx context.Context, st *store.Store, r io.Reader, each func(*store.CallWithMessages)) (Result, error) {
	var (
		res   Result
		batch []store.CallWithMessages
		bytes int
	)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		ids, err := st.Import(ctx, batch)
		if err != nil {
			return err
		}
		if res.First == 0 {
			res.First = ids[0]
		}
		res.Last = ids[len(ids)-1]
		res.N += len(ids)
		clear(batch)
		batch, bytes = batch[:0], 0
		return nil
	}
	err := Read(r, func(c *store.CallWithMessages) error {
		if each != nil {
			each(c)
		}
		batch = append(batch, *c)
		for _, m := range c.Messages {
			bytes += len(m.Raw)
		}
		if len(batch) >= batchCalls || bytes >= batchBytes {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	return res, err
}
