package store

import (
	"bytes"
	"context"
	"syscall"
	"testing"
	"time"
)

// The write-cost benchmarks measure what recording costs the machine: the
// process's CPU time (user + system, from getrusage, so the SQLite
// library's threads, the Go runtime's GC and every system call count)
// around each batch's write, per item. Wall time swings on shared machines;
// CPU time per item is what recording takes from forwarding.
//
//	go test -run XXX -bench WriteCost -count 5 ./store/
//
// Each reports cpu-µs/op (per call, per message) and, for large bodies,
// cpu-MB/s (bytes written per CPU second).

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuMeter adds up the process's CPU time over the writes of a benchmark:
// building the events (the recorder's work, on the proxy's goroutines) is
// left out.
type cpuMeter struct {
	used time.Duration
}

func startCPU(b *testing.B) *cpuMeter {
	b.ResetTimer()
	return &cpuMeter{}
}

// write writes one batch, counting its CPU time.
func (m *cpuMeter) write(b *testing.B, s *Store, ev []Event) {
	start := cpuTime()
	err := s.WriteBatch(context.Background(), ev)
	m.used += cpuTime() - start
	if err != nil {
		b.Fatal(err)
	}
}

// stop reports the CPU time per op in µs and returns the total.
func (m *cpuMeter) stop(b *testing.B) time.Duration {
	b.StopTimer()
	b.ReportMetric(float64(m.used.Microseconds())/float64(b.N), "cpu-µs/op")
	return m.used
}

// grpcGoHeaders are request headers as a grpc-go client sends them.
var grpcGoHeaders = Metadata{
	":authority":   {"127.0.0.1:40000"},
	"content-type": {"application/grpc"},
	"user-agent":   {"grpc-go/1.85.0"},
	"grpc-timeout": {"9999875u"},
}

// BenchmarkWriteCostUnary: short unary calls as the recorder writes them
// under load (16 callers, a 20 ms batch holds ~128 calls): start with
// grpc-go's headers, response headers, 100 B each way, the end.
func BenchmarkWriteCostUnary(b *testing.B) {
	s, _ := openTemp(b)
	body := bytes.Repeat([]byte("x"), 100)
	respH := Metadata{"content-type": {"application/grpc"}}
	const perBatch = 128
	ev := make([]Event, 0, 5*perBatch)
	now := time.Now()
	m := startCPU(b)
	for i := 1; i <= b.N; i++ {
		id := int64(i)
		t := now.Add(time.Duration(i) * time.Microsecond)
		ev = append(ev,
			Event{Start: &CallStart{ID: id, Method: "/bench.Echo/Unary", Protocol: "grpc", Backend: "127.0.0.1:40001",
				Authority: "127.0.0.1:40000", Peer: "127.0.0.1:51234", ContentType: "application/grpc", Time: t,
				Deadline: t.Add(10 * time.Second), Header: grpcGoHeaders}},
			Event{Header: &ResponseHeader{CallID: id, Time: t, Header: respH}},
			Event{Message: &MessageRecord{CallID: id, Seq: 1, Direction: DirRequest, Time: t, Size: 100, Raw: body}},
			Event{Message: &MessageRecord{CallID: id, Seq: 2, Direction: DirResponse, Time: t, Size: 100, Raw: body}},
			Event{End: &CallEnd{CallID: id, Time: t, Trailers: Metadata{}}},
		)
		if len(ev) >= 5*perBatch || i == b.N {
			m.write(b, s, ev)
			ev = ev[:0]
		}
	}
	m.stop(b)
}

// BenchmarkWriteCostStreamMessage: 100 B messages of 16 long bidi streams
// that stay open across batches (1024 messages a batch, 64 per stream).
func BenchmarkWriteCostStreamMessage(b *testing.B)     { benchStream(b, 100) }
func BenchmarkWriteCostStreamMessage10(b *testing.B)   { benchStream(b, 10) }
func BenchmarkWriteCostStreamMessage1000(b *testing.B) { benchStream(b, 1000) }

func benchStream(b *testing.B, size int) {
	ctx := context.Background()
	s, _ := openTemp(b)
	body := bytes.Repeat([]byte("x"), size)
	const streams, perBatch = 16, 1024
	now := time.Now()
	var ev []Event
	for id := int64(1); id <= streams; id++ {
		ev = append(ev, Event{Start: &CallStart{ID: id, Method: "/bench.Echo/Bidi", Protocol: "grpc",
			Backend: "127.0.0.1:40001", Time: now, Header: grpcGoHeaders}})
	}
	if err := s.WriteBatch(ctx, ev); err != nil {
		b.Fatal(err)
	}
	ev = ev[:0]
	seq := make([]int, streams+1)
	m := startCPU(b)
	for i := 0; i < b.N; i++ {
		id := int64(i%streams) + 1
		seq[id]++
		dir := DirRequest
		if seq[id]%2 == 0 {
			dir = DirResponse
		}
		ev = append(ev, Event{Message: &MessageRecord{CallID: id, Seq: seq[id], Direction: dir,
			Time: now.Add(time.Duration(i) * time.Microsecond), Size: int64(size), Raw: body}})
		if len(ev) >= perBatch || i == b.N-1 {
			m.write(b, s, ev)
			ev = ev[:0]
		}
	}
	m.stop(b)
}

// BenchmarkWriteCostLargeBodies: unary calls with a 64 KiB body each way,
// 32 calls (4 MiB) a batch. cpu-MB/s is body bytes per CPU second.
func BenchmarkWriteCostLargeBodies(b *testing.B) {
	s, _ := openTemp(b)
	const size = 64 << 10
	body := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	const perBatch = 32
	var ev []Event
	now := time.Now()
	m := startCPU(b)
	for i := 1; i <= b.N; i++ {
		id := int64(i)
		t := now.Add(time.Duration(i) * time.Microsecond)
		ev = append(ev,
			Event{Start: &CallStart{ID: id, Method: "/bench.Echo/Big", Protocol: "grpc", Time: t, Header: grpcGoHeaders}},
			Event{Message: &MessageRecord{CallID: id, Seq: 1, Direction: DirRequest, Time: t, Size: size, Raw: body}},
			Event{Message: &MessageRecord{CallID: id, Seq: 2, Direction: DirResponse, Time: t, Size: size, Raw: body}},
			Event{End: &CallEnd{CallID: id, Time: t}},
		)
		if i%perBatch == 0 || i == b.N {
			m.write(b, s, ev)
			ev = ev[:0]
		}
	}
	used := m.stop(b)
	b.ReportMetric(float64(2*size*b.N)/1e6/used.Seconds(), "cpu-MB/s")
	b.SetBytes(2 * size)
}
