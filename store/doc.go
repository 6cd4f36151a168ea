// Package store owns grpctap's capture: an SQLite database (pure Go,
// modernc.org/sqlite) holding calls, their messages and metadata, the count
// of events the recorder had to drop, and the descriptor sets the decoder
// learnt per backend, plus a folder of segment files beside it for message
// bodies of 1 KiB and more.
//
// It owns the schema and its forward migrations, the batched writer (one
// connection per process, one transaction per batch, call ids taken from
// the capture so that any number of processes can record into it), the
// segment files, the queries behind the CLI and UI, retention, compaction,
// and the JSON model of a call (Call, Message) that grpctap prints, exports
// and serves. It knows nothing of the gRPC transport.
//
// A capture file is recognised by its SQLite application_id; files that are
// not grpctap captures, or are corrupt, are refused before anything is
// written to them.
package store
