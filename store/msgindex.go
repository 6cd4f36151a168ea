package store

import (
	"errors"
	"fmt"
	"strconv"
)

// Messages are stored a batch at a time: one row (a call's own row when the
// call starts and ends in one batch, else a row of chunks) holds an index
// (msgs, JSON text) and the bodies it points into (bodies, one BLOB). The
// index is a JSON array with one array per message:
//
//	[seq, direction, dt_ns, size, truncated, len, off]
//	[seq, direction, dt_ns, size, truncated, len, -1, segment, segment_off, crc32c]
//
// direction is 1 (request) or 2 (response); dt_ns is the message's time
// after the row's base time (the call's start_ns for a call's own row, the
// chunk's base_ns for a chunk: short numbers, cheap to write and store);
// size is the message's full size;
// len the bytes kept. off >= 0: the body is bodies[off:off+len]. off = -1:
// the body is in segment file segment (segments.id) at segment_off, with a
// CRC-32C (Castagnoli) of its bytes. JSON, not a binary format, so that
// the messages view can show the rows with SQLite's json_each.

// msgEntry is one message of an index.
type msgEntry struct {
	seq       int64
	dir       int64
	dt        int64 // ns after the row's base time
	size      int64
	truncated bool
	n         int64 // bytes kept
	off       int64 // in bodies; -1: in a segment
	seg       int64
	segOff    int64
	crc       uint32
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
	if e.off < 0 {
		b = append(b, ',')
		b = strconv.AppendInt(b, e.seg, 10)
		b = append(b, ',')
		b = strconv.AppendInt(b, e.segOff, 10)
		b = append(b, ',')
		b = strconv.AppendUint(b, uint64(e.crc), 10)
	}
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
		var vals [10]int64
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
		switch {
		case n == 7 && e.off >= 0:
		case n == 10 && e.off == -1:
			e.seg, e.segOff, e.crc = vals[7], vals[8], uint32(vals[9])
		default:
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
