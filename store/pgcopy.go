package store

import (
	"encoding/binary"
	"strings"
	"unicode/utf8"
)

// copyBuf builds the data of a COPY … FROM STDIN (FORMAT binary) in one
// reused buffer: the writer appends rows as it folds a batch, without
// boxing each value in an interface or looking up its encoder (pgx's
// CopyFromRows did both for every field of every call and message: a
// quarter of the recording proxy's CPU went there).
//
// The format: a signature, flags and header extension length; then per
// row the field count and each field as a 32-bit length (-1: NULL) and
// its bytes; then -1 as a count. Integers are big-endian; text is UTF-8;
// bytea and boolean are raw bytes.
type copyBuf struct {
	b    []byte
	rows int
}

var copySignature = []byte("PGCOPY\n\xff\r\n\x00")

func (c *copyBuf) reset() {
	c.b = append(c.b[:0], copySignature...)
	c.b = binary.BigEndian.AppendUint32(c.b, 0) // flags
	c.b = binary.BigEndian.AppendUint32(c.b, 0) // header extension
	c.rows = 0
}

// row starts a row of n fields.
func (c *copyBuf) row(n int) {
	c.b = binary.BigEndian.AppendUint16(c.b, uint16(n))
	c.rows++
}

func (c *copyBuf) null() { c.b = binary.BigEndian.AppendUint32(c.b, 0xffffffff) }

func (c *copyBuf) int64(v int64) {
	c.b = binary.BigEndian.AppendUint32(c.b, 8)
	c.b = binary.BigEndian.AppendUint64(c.b, uint64(v))
}

func (c *copyBuf) int32(v int32) {
	c.b = binary.BigEndian.AppendUint32(c.b, 4)
	c.b = binary.BigEndian.AppendUint32(c.b, uint32(v))
}

func (c *copyBuf) int16(v int16) {
	c.b = binary.BigEndian.AppendUint32(c.b, 2)
	c.b = binary.BigEndian.AppendUint16(c.b, uint16(v))
}

func (c *copyBuf) bool(v bool) {
	c.b = binary.BigEndian.AppendUint32(c.b, 1)
	if v {
		c.b = append(c.b, 1)
	} else {
		c.b = append(c.b, 0)
	}
}

func (c *copyBuf) bytea(v []byte) {
	c.b = binary.BigEndian.AppendUint32(c.b, uint32(len(v)))
	c.b = append(c.b, v...)
}

// text appends s as text. PostgreSQL refuses text that is not valid UTF-8
// or holds NUL, which would lose the whole batch: such bytes (a backend's
// status message can hold anything) are replaced by U+FFFD.
func (c *copyBuf) text(s string) {
	s = pgSafe(s)
	c.b = binary.BigEndian.AppendUint32(c.b, uint32(len(s)))
	c.b = append(c.b, s...)
}

// pgText reports whether s can be stored as PostgreSQL text as it is.
func pgText(s string) bool {
	for i := 0; i < len(s); i++ {
		if b := s[i]; b == 0 || b >= utf8.RuneSelf {
			return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
		}
	}
	return true
}

// finish appends the trailer and returns the data.
func (c *copyBuf) finish() []byte {
	c.b = binary.BigEndian.AppendUint16(c.b, 0xffff)
	return c.b
}
