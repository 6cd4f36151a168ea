package store

import (
	"errors"
	"fmt"
	"strconv"
)

// Messages are stored a batch at a time: one row (a call's own row when the
// call starts and ends in one batch, else a row of chunks) holds an index
// (msgs, JSON text) and the bodies it points into, one after the other:
// inline (bodies, one BLOB), or, from SegmentThreshold bytes, in a segment
// file (seg, seg_off, seg_len, seg_crc). The index is a JSON array with one
// array per message:
//
//	[seq, direction, dt_ns, size, truncated, len, off]
//
// direction is 1 (request) or 2 (response); dt_ns is the message's time
// after the row's base time (the call's start_ns for a call's own row, the
// chunk's base_ns for a chunk: short numbers, cheap to write and store);
// size is the message's full size; len the bytes kept, at off in the row's
// bodies. JSON, not a binary format, so that the messages view can show the
// rows with SQLite's json_each.

// msgEntry is one message of an index.
type msgEntry struct {
	seq       int64
	dir       int64
	dt        int64 // ns after the row's base time
	size      int64
	truncated bool
	n         int64 // bytes kept
	off       int64 // in the row's bodies
}

// appendEntry appends e's JSON array to b (without a separating comma).
func appendEntry(b []byte, e *msgEntry) []byte {
	b = append(b, '[')
	b = strconv.AppendInt(b, e.seq, 10)
	b = append(b, ',')
	b = strconv.AppendInt(b, e.dir, 10)
	b = append(b, ',')
	b = strconv.AppendInt(b, e.dt, 10)
	b = append(b, ',')
	b = strconv.AppendInt(b, e.size, 10)
	if e.truncated {
		b = append(b, ",1,"...)
	} else {
		b = append(b, ",0,"...)
	}
	b = strconv.AppendInt(b, e.n, 10)
	b = append(b, ',')
	b = strconv.AppendInt(b, e.off, 10)
	return append(b, ']')
}

var errBadIndex = errors.New("damaged message index")

// parseIndex reads an index written by appendEntry. It is strict: anything
// else is errBadIndex.
func parseIndex(s string) ([]msgEntry, error) {
	p := indexParser{s: s}
	if !p.eat('[') {
		return nil, fmt.Errorf("%w: %.40q", errBadIndex, s)
	}
	var out []msgEntry
	if p.eat(']') {
		return out, p.end()
	}
	for {
		var vals [7]int64
		n := 0
		if !p.eat('[') {
			return nil, fmt.Errorf("%w: %.40q", errBadIndex, s)
		}
		for {
			v, ok := p.int()
			if !ok || n == len(vals) {
				return nil, fmt.Errorf("%w: %.40q", errBadIndex, s)
			}
			vals[n] = v
			n++
			if p.eat(']') {
				break
			}
			if !p.eat(',') {
				return nil, fmt.Errorf("%w: %.40q", errBadIndex, s)
			}
		}
		e := msgEntry{seq: vals[0], dir: vals[1], dt: vals[2], size: vals[3], truncated: vals[4] != 0, n: vals[5], off: vals[6]}
		if n != len(vals) || e.off < 0 || e.n < 0 {
			return nil, fmt.Errorf("%w: %.40q", errBadIndex, s)
		}
		out = append(out, e)
		if p.eat(']') {
			return out, p.end()
		}
		if !p.eat(',') {
			return nil, fmt.Errorf("%w: %.40q", errBadIndex, s)
		}
	}
}

type indexParser struct {
	s string
	i int
}

func (p *indexParser) eat(c byte) bool {
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *indexParser) int() (int64, bool) {
	j := p.i
	if j < len(p.s) && p.s[j] == '-' {
		j++
	}
	for j < len(p.s) && p.s[j] >= '0' && p.s[j] <= '9' {
		j++
	}
	v, err := strconv.ParseInt(p.s[p.i:j], 10, 64)
	if err != nil {
		return 0, false
	}
	p.i = j
	return v, true
}

func (p *indexParser) end() error {
	if p.i != len(p.s) {
		return fmt.Errorf("%w: trailing bytes", errBadIndex)
	}
	return nil
}
