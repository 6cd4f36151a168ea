// Package collection owns saved requests: the collection file format
// (docs/collections.md), making saved requests from captured calls, keeping
// collections in a capture, and running a collection as tests, each
// answer compared with its saved example by the replay package's diff and
// checked against the request's assertions.
//
// The store keeps a collection as an opaque JSON document; this package is
// the one that looks inside it. The inspector (ui) and the CLI
// (grpctap collection, grpctap test) share it.
package collection

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/grpctap/grpctap/msgdiff"
	"github.com/grpctap/grpctap/replay"
	"github.com/grpctap/grpctap/store"
)

// MaxBytes bounds a collection document read from a request or a file.
const MaxBytes = 16 << 20

// Collection is a named set of saved requests; its JSON is the export file
// format (docs/collections.md).
type Collection struct {
	ID       int64      `json:"id,omitempty"` // assigned by the store; ignored on import
	Name     string     `json:"name"`
	Requests []Request  `json:"requests"`
	Updated  *time.Time `json:"updated,omitempty"`
}

// Request is one saved request.
type Request struct {
	Name   string `json:"name"`
	Method string `json:"method"` // "/pkg.Service/Method"
	// Target is the address the request is sent to; "" for the one the
	// proxy routes the method to (the inspector) or its example's backend
	// (grpctap test), unless --target says otherwise.
	Target   string              `json:"target,omitempty"`
	Metadata map[string][]string `json:"metadata,omitempty"`
	// Messages are the request messages as JSON (protojson), sent in
	// order, then the end of the stream.
	Messages []json.RawMessage `json:"messages"`
	// Examples are answers saved with the request: calls as
	// GET /api/calls/{id} shows them. The last is the expected answer of
	// a test run.
	Examples []json.RawMessage `json:"examples,omitempty"`
	// FromCall is the captured call the request was saved from (0: none).
	FromCall int64 `json:"from_call,omitempty"`
	// TimeoutMS bounds the call in a test run (0: the runner's default).
	TimeoutMS int `json:"timeout_ms,omitempty"`
	// IgnoreFields are field paths left out of this request's message
	// diffs, besides the runner's (--ignore-field).
	IgnoreFields []string `json:"ignore_fields,omitempty"`
	// Assertions are checked on every test run, with or without an
	// example.
	Assertions []Assertion `json:"assertions,omitempty"`
}

// Assertion is one check of a test run's answer: the status code, or one
// field of a response message (equals, matches or exists).
type Assertion struct {
	// Status is the status code expected: a name (NOT_FOUND) or number.
	Status string `json:"status,omitempty"`
	// Response is the index of the response message the field is read
	// from: 0 (the default) for the first, -1 for the last.
	Response int `json:"response,omitempty"`
	// Path is the field path (author.name, tags[0], labels["k"]).
	Path string `json:"path,omitempty"`
	// Equals is the JSON value the field must have.
	Equals json.RawMessage `json:"equals,omitempty"`
	// Matches is a regular expression (RE2) the field's value must match:
	// a string as it is, anything else as its JSON.
	Matches string `json:"matches,omitempty"`
	// Exists says whether the field must be present (true) or absent.
	Exists *bool `json:"exists,omitempty"`
}

// check says what is wrong with an assertion, if anything.
func (a *Assertion) check() error {
	if a.Status != "" {
		if a.Path != "" || a.Equals != nil || a.Matches != "" || a.Exists != nil {
			return errors.New("a status assertion checks nothing else: give the field checks as assertions of their own")
		}
		_, err := store.ParseCode(a.Status)
		return err
	}
	if a.Path == "" {
		return errors.New("give status, or a path with equals, matches or exists")
	}
	if _, err := msgdiff.ParseFieldPath(a.Path); err != nil {
		return err
	}
	n := 0
	if a.Equals != nil {
		n++
		var v any
		if err := json.Unmarshal(a.Equals, &v); err != nil {
			return fmt.Errorf("equals: %w", err)
		}
	}
	if a.Matches != "" {
		n++
		if _, err := regexp.Compile(a.Matches); err != nil {
			return fmt.Errorf("matches: %w", err)
		}
	}
	if a.Exists != nil {
		n++
	}
	if n != 1 {
		return fmt.Errorf("path %s: give exactly one of equals, matches or exists", a.Path)
	}
	return nil
}

// ErrInvalid is wrapped by every error of Validate (errors.Is).
var ErrInvalid = errors.New("invalid collection")

type invalidError struct{ error }

func (invalidError) Is(target error) bool { return target == ErrInvalid }

// Validate trims the collection's name, normalises method names and checks
// every request and assertion; its errors name the request and wrap
// ErrInvalid.
func (c *Collection) Validate() error {
	if err := c.validate(); err != nil {
		return invalidError{err}
	}
	return nil
}

func (c *Collection) validate() error {
	c.Name = strings.TrimSpace(c.Name)
	if c.Name == "" {
		return errors.New("a collection needs a name")
	}
	if c.Requests == nil {
		c.Requests = []Request{}
	}
	for i := range c.Requests {
		q := &c.Requests[i]
		if q.Method == "" {
			return fmt.Errorf("request %d has no method", i+1)
		}
		if !strings.HasPrefix(q.Method, "/") {
			q.Method = "/" + q.Method
		}
		for _, f := range q.IgnoreFields {
			if _, err := msgdiff.ParseFieldPath(f); err != nil {
				return fmt.Errorf("request %d (%s): ignore_fields: %w", i+1, q.Name, err)
			}
		}
		for j := range q.Assertions {
			if err := q.Assertions[j].check(); err != nil {
				return fmt.Errorf("request %d (%s): assertion %d: %w", i+1, q.Name, j+1, err)
			}
		}
	}
	return nil
}

// Parse reads a collection document (at most MaxBytes) and validates it.
func Parse(r io.Reader) (*Collection, error) {
	var c Collection
	if err := json.NewDecoder(io.LimitReader(r, MaxBytes)).Decode(&c); err != nil {
		return nil, fmt.Errorf("collection: %w", err)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Body is the document the store keeps: the name and the requests.
func (c *Collection) Body() []byte {
	b, _ := json.Marshal(Collection{Name: c.Name, Requests: c.Requests})
	return b
}

// FromStore reads a stored collection.
func FromStore(sc *store.Collection) (Collection, error) {
	var c Collection
	if err := json.Unmarshal(sc.Body, &c); err != nil {
		return c, fmt.Errorf("collection %d: %w", sc.ID, err)
	}
	t := sc.Updated
	c.ID, c.Name, c.Updated = sc.ID, sc.Name, &t
	if c.Requests == nil {
		c.Requests = []Request{}
	}
	return c, nil
}

// Find returns the collection of st named name (or, when name is a number
// no collection is named, the one with that id); store.ErrNotFound when
// there is none.
func Find(ctx context.Context, st *store.Store, name string) (*Collection, error) {
	list, err := st.Collections(ctx)
	if err != nil {
		return nil, err
	}
	id, idErr := strconv.ParseInt(name, 10, 64)
	var byID *store.Collection
	for i := range list {
		if list[i].Name == name {
			c, err := FromStore(&list[i])
			return &c, err
		}
		if idErr == nil && list[i].ID == id {
			byID = &list[i]
		}
	}
	if byID != nil {
		c, err := FromStore(byID)
		return &c, err
	}
	return nil, fmt.Errorf("collection %q: %w", name, store.ErrNotFound)
}

// Add puts reqs into the collection named name in st, making it when
// there is none; a request replaces the one of the same name. It returns
// the collection as saved.
func Add(ctx context.Context, st *store.Store, name string, reqs ...Request) (*Collection, error) {
	name = strings.TrimSpace(name)
	c, err := Find(ctx, st, name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		c = &Collection{Name: name}
	case err != nil:
		return nil, err
	}
	for _, q := range reqs {
		i := 0
		for i < len(c.Requests) && c.Requests[i].Name != q.Name {
			i++
		}
		if i < len(c.Requests) {
			c.Requests[i] = q
		} else {
			c.Requests = append(c.Requests, q)
		}
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.ID == 0 {
		c.ID, err = st.CreateCollection(ctx, c.Name, c.Body())
	} else {
		err = st.UpdateCollection(ctx, c.ID, c.Name, c.Body())
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

// FromCall makes a saved request of a captured call, decoded beforehand
// (schemas.DecodeCall): its request messages as JSON, its request
// metadata less what a replay leaves out (pseudo and hop-by-hop headers,
// grpctap's own, values the recorder redacted), and the call itself as
// the example, its answer the one expected. name "" names it after the
// method and the call's id.
func FromCall(c *store.CallWithMessages, name string) (Request, error) {
	if c.State != "closed" {
		return Request{}, fmt.Errorf("call %d is still open: save it once it has ended", c.ID)
	}
	if name == "" {
		_, m := store.SplitMethod(c.Method)
		name = fmt.Sprintf("%s #%d", m, c.ID)
	}
	q := Request{Name: name, Method: c.Method, Messages: []json.RawMessage{}, FromCall: c.ID}
	for _, m := range c.Messages {
		if m.Direction != store.DirRequest {
			continue
		}
		if m.Truncated {
			return Request{}, fmt.Errorf("call %d: request #%d was recorded cut to %d of %d bytes", c.ID, m.Seq, len(m.Raw), m.Size)
		}
		if len(m.JSON) == 0 {
			why := m.DecodeError
			if why == "" {
				why = "no schema"
			}
			return Request{}, fmt.Errorf("call %d: request #%d has no JSON form (%s): its schema is needed (a .proto file, a protoset, or a backend with reflection)", c.ID, m.Seq, why)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, m.JSON); err != nil {
			return Request{}, fmt.Errorf("call %d: request #%d: %w", c.ID, m.Seq, err)
		}
		q.Messages = append(q.Messages, compact.Bytes())
	}
	md := replay.RequestMetadata(&c.Call, nil)
	if len(md) > 0 {
		q.Metadata = map[string][]string{}
		for k, vs := range md {
			for _, v := range vs {
				if strings.HasSuffix(k, "-bin") {
					v = store.EncodeBin([]byte(v))
				}
				q.Metadata[k] = append(q.Metadata[k], v)
			}
		}
	}
	ex, err := json.Marshal(c)
	if err != nil {
		return Request{}, err
	}
	q.Examples = []json.RawMessage{ex}
	return q, nil
}
