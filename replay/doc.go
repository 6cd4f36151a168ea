// Package replay re-sends recorded calls to a backend and compares what
// comes back with the capture.
//
// A Replayer sends one recorded call as it was recorded: its request
// metadata (less hop-by-hop, reserved and redacted values, plus overrides),
// its request messages in order through a raw-bytes codec with the recorded
// content subtype and compression, and, for streams, each request only after
// the responses that preceded it in the capture. A Comparator compares the
// result with the recording: status, response headers and trailers (less a
// list of volatile ones), and each response message by its decoded fields,
// giving field paths such as author.name, tags[1] or labels["k"]. Load runs
// a selection of calls in a loop at a rate, for load tests made from real
// traffic.
//
// The package owns no storage and no listeners; the CLI selects the calls
// and prints the results.
package replay
