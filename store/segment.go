package store

import (
	"bytes"
	"database/sql/driver"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
	msqlite "modernc.org/sqlite"
)

// A row's bodies (one call's messages of one batch) of SegmentThreshold
// bytes or more are appended to a segment file in the capture's segment
// folder (the capture's path plus "-segments") instead of going through
// SQLite, where every page is written twice (WAL, checkpoint) and each
// byte cost the writer about 4 ns against 0.3 ns here. Each writing process appends to a
// segment of its own, holding an exclusive flock on it; a batch's bodies go
// out in one pwritev before the batch's transaction commits, and the
// segment's committed length (segments.bytes) is updated in that
// transaction. Bytes past it (a batch that failed, or a process killed
// between the write and the commit) are never read, and the next writer
// of the segment writes over them.
const SegmentThreshold = 1 << 10

// maxSegmentBytes is the size at which a writer seals its segment and
// starts another, unless Options.SegmentBytes says otherwise.
const maxSegmentBytes = 256 << 20

// SegmentBytesFor returns the segment size that suits a capture kept
// under maxBytes (0: no limit): retention frees a segment only once all
// its calls are gone, so segments are at most an eighth of the limit (and
// at least 1 MiB).
func SegmentBytesFor(maxBytes int64) int64 {
	if maxBytes <= 0 {
		return maxSegmentBytes
	}
	return min(maxSegmentBytes, max(1<<20, maxBytes/8))
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// SegmentDir returns the folder that holds the segment files of the
// capture at path.
func SegmentDir(path string) string { return path + "-segments" }

func segmentName(id int64) string { return "seg-" + strconv.FormatInt(id, 10) + ".bin" }

// segment is the file a writer appends bodies to. It is written with
// O_DIRECT where the file system allows: writes into new page-cache pages
// cost this process up to ten times the CPU, and the bodies are rarely
// read again soon. A batch's bodies are copied into an aligned staging
// buffer and written from there (begin, append, finish), the last block
// padded, so the committed length is always a multiple of segAlign.
type segment struct {
	id        int64
	f         *os.File
	committed int64 // length the capture refers to
	direct    bool  // f was opened with O_DIRECT
	stage     []byte

	// The batch being appended: it starts at base; flushed bytes are in
	// the file, fill more in stage.
	base, flushed int64
	fill          int
}

// segAlign is the alignment of O_DIRECT writes (the file system's block
// size or a multiple of it); segStage the staging buffer's size.
const (
	segAlign = 4096
	segStage = 4 << 20
)

// openSegment opens (creating when create) the segment file and takes its
// flock. It reports false, with no error, when another process holds it.
// direct asks for O_DIRECT (silently dropped where unsupported).
func openSegment(dir string, id int64, create, direct bool) (f *os.File, ok bool, err error) {
	flags := os.O_RDWR
	if create {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, false, fmt.Errorf("segment folder: %w", err)
		}
		flags |= os.O_CREATE
	}
	name := filepath.Join(dir, segmentName(id))
	if direct {
		f, err = os.OpenFile(name, flags|unix.O_DIRECT, 0o644)
		if errors.Is(err, unix.EINVAL) { // e.g. tmpfs
			direct = false
		}
	}
	if !direct {
		f, err = os.OpenFile(name, flags, 0o644)
	}
	if err != nil {
		return nil, false, fmt.Errorf("segment %d: %w", id, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("segment %d: lock: %w", id, err)
	}
	return f, true, nil
}

// newSegment wraps an open segment file.
func newSegment(id int64, f *os.File, committed int64) *segment {
	flags, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
	return &segment{id: id, f: f, committed: committed, direct: err == nil && flags&unix.O_DIRECT != 0}
}

// alignUp rounds n up to a multiple of segAlign.
func alignUp(n int64) int64 { return (n + segAlign - 1) &^ (segAlign - 1) }

// begin starts a batch's bodies at off (a multiple of segAlign).
func (sg *segment) begin(off int64) {
	sg.base, sg.flushed, sg.fill = off, 0, 0
	if sg.stage == nil {
		raw := make([]byte, segStage+segAlign)
		skip := (segAlign - int(uintptr(unsafe.Pointer(&raw[0]))%segAlign)) % segAlign
		sg.stage = raw[skip : skip+segStage : skip+segStage]
	}
}

// appended is how many bytes the batch has appended so far.
func (sg *segment) appended() int64 { return sg.flushed + int64(sg.fill) }

// append copies b after what the batch appended, writing each full
// staging buffer out as it fills.
func (sg *segment) append(b []byte) error {
	for len(b) > 0 {
		n := copy(sg.stage[sg.fill:], b)
		sg.fill += n
		b = b[n:]
		if sg.fill == len(sg.stage) {
			if err := sg.flush(sg.fill); err != nil {
				return err
			}
		}
	}
	return nil
}

// finish writes what is left in the staging buffer, its last block
// padded, and returns the batch's length in the file, padding included.
func (sg *segment) finish() (int64, error) {
	if sg.fill > 0 {
		padded := int(alignUp(int64(sg.fill)))
		clear(sg.stage[sg.fill:padded])
		if err := sg.flush(padded); err != nil {
			return 0, err
		}
	}
	return sg.flushed, nil
}

// flush writes the first n bytes of the staging buffer after what the
// batch has written.
func (sg *segment) flush(n int) error {
	off := sg.base + sg.flushed
	for done := 0; done < n; {
		w, err := unix.Pwrite(int(sg.f.Fd()), sg.stage[done:n], off+int64(done))
		if errors.Is(err, unix.EINVAL) && sg.direct {
			// The file system took O_DIRECT at open but not for writes.
			if err := sg.reopenBuffered(); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("segment %d: write: %w", sg.id, err)
		}
		if w == 0 {
			return fmt.Errorf("segment %d: write: %w", sg.id, io.ErrShortWrite)
		}
		done += w
	}
	sg.flushed += int64(n)
	sg.fill = 0
	return nil
}

// reopenBuffered opens the segment again without O_DIRECT and moves the
// flock to the new file. The caller holds the capture's write lock, so no
// other writer can take the segment in between.
func (sg *segment) reopenBuffered() error {
	name := sg.f.Name()
	sg.f.Close()
	sg.direct = false
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		sg.f = nil
		return fmt.Errorf("segment %d: %w", sg.id, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		sg.f = nil
		return fmt.Errorf("segment %d: lock: %w", sg.id, err)
	}
	sg.f = f
	return nil
}

func (sg *segment) close() {
	if sg != nil && sg.f != nil {
		sg.f.Close() // releases the flock
		sg.f = nil
	}
}

// segmentReader reads bodies from a capture's segments for the read side;
// it keeps files open, as segments are append-only.
type segmentReader struct {
	dir   string
	mu    sync.Mutex
	files map[int64]*os.File
}

func (r *segmentReader) read(seg, off, n int64, crc uint32) ([]byte, error) {
	r.mu.Lock()
	f := r.files[seg]
	if f == nil {
		var err error
		f, err = os.Open(filepath.Join(r.dir, segmentName(seg)))
		if err != nil {
			r.mu.Unlock()
			return nil, fmt.Errorf("body in segment %d: %w", seg, err)
		}
		if r.files == nil {
			r.files = map[int64]*os.File{}
		}
		r.files[seg] = f
	}
	r.mu.Unlock()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("body in segment %d at %d: the file is shorter than the capture says", seg, off)
		}
		return nil, fmt.Errorf("body in segment %d: %w", seg, err)
	}
	if crc32.Checksum(b, castagnoli) != crc {
		return nil, fmt.Errorf("body in segment %d at %d: checksum mismatch (damaged file)", seg, off)
	}
	return b, nil
}

// forget closes a segment's file (it was deleted by retention).
func (r *segmentReader) forget(seg int64) {
	r.mu.Lock()
	if f := r.files[seg]; f != nil {
		f.Close()
		delete(r.files, seg)
	}
	r.mu.Unlock()
}

func (r *segmentReader) close() {
	r.mu.Lock()
	for id, f := range r.files {
		f.Close()
		delete(r.files, id)
	}
	r.mu.Unlock()
}

// segmentContains names the SQL function that tells whether a row's
// bodies in a segment hold a byte string: the inspector's free-text search
// reaches bodies in segment files through it.
// segment_contains(dir, seg, seg_off, seg_len, needle) is 1 or 0; a body it
// cannot read does not match.
const segmentContains = "grpctap_segment_contains"

func init() {
	msqlite.MustRegisterDeterministicScalarFunction(segmentContains, 5,
		func(_ *msqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
			dir, _ := args[0].(string)
			seg, _ := args[1].(int64)
			off, _ := args[2].(int64)
			n, _ := args[3].(int64)
			needle, _ := args[4].([]byte)
			if s, ok := args[4].(string); ok {
				needle = []byte(s)
			}
			if dir == "" || n <= 0 || n > 1<<30 {
				return int64(0), nil
			}
			f, err := os.Open(filepath.Join(dir, segmentName(seg)))
			if err != nil {
				return int64(0), nil
			}
			defer f.Close()
			b := make([]byte, n)
			if _, err := f.ReadAt(b, off); err != nil {
				return int64(0), nil
			}
			if bytes.Contains(b, needle) {
				return int64(1), nil
			}
			return int64(0), nil
		})
}
