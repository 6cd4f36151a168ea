// Package msgdiff compares decoded messages: DecodeTree turns a message's
// bytes into a JSON tree (with its schema, else the schemaless tree, else
// the bytes), DiffTrees lists the differences of two trees by field path,
// and FieldPath names fields to ignore or look up (`author.name`,
// `tags[0]`, `labels["k"]`, `items[*].id`). Replay, the mock's similar
// match, collections' assertions and the inspector share it.
//
// It knows nothing of captures, transport or how a difference is reported.
package msgdiff
