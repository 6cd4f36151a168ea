// Package syncbuf has a bytes buffer that one goroutine may read while
// another writes to it: a child process's or a running command's output,
// a logger's, read by tests and benchmarks as it grows.
package syncbuf

import (
	"bytes"
	"sync"
)

// Buffer is an io.Writer whose String is safe to call during writes. The
// zero value is ready to use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
