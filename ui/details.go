package ui

import (
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
}
