package ui

import (
	"slices"

	"github.com/grpctap/grpctap/internal/headers"
	"github.com/grpctap/grpctap/schemas"
	"github.com/grpctap/grpctap/store"
)

// DetailView is one status detail decoded (schemas.DetailView).
type DetailView = schemas.DetailView

// CallView is the answer of GET /api/calls/{id}: the call as grpctap show
// --json prints it, decoded, plus its status details decoded.
type CallView struct {
	*store.CallWithMessages
	// Messages replaces CallWithMessages.Messages in JSON.
	Messages      []MessageView `json:"messages"`
	StatusDetails []DetailView  `json:"status_details_decoded,omitempty"`
	// ComposerMetadata is the request metadata "Open in composer" starts
	// from: key and value pairs of the headers a replay sends
	// (headers.Replay), in key order, values as recorded. A redacted
	// header is among them with its "[redacted]", for the user to fill in.
	ComposerMetadata [][2]string `json:"composer_metadata"`
}

// composerMetadata is CallView.ComposerMetadata of c.
func composerMetadata(c *store.Call) [][2]string {
	keys := make([]string, 0, len(c.RequestHeaders))
	for k := range c.RequestHeaders {
		if headers.Passes(headers.Replay, k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	out := [][2]string{}
	for _, k := range keys {
		for _, v := range c.RequestHeaders[k] {
			out = append(out, [2]string{k, v})
		}
	}
	return out
}
