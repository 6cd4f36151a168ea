package schemas

import (
	"context"
	"encoding/json"
	"strings"

	_ "google.golang.org/genproto/googleapis/rpc/errdetails" // registers google.rpc.ErrorInfo, BadRequest, … for status details
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/grpctap/grpctap/decode"
	"github.com/grpctap/grpctap/store"
)

// DetailView is one status detail (a google.protobuf.Any of
// grpc-status-details-bin) decoded.
type DetailView struct {
	Type  string          `json:"type"`            // the message's full name, from the type URL
	JSON  json.RawMessage `json:"json,omitempty"`  // absent when it could not be decoded
	Error string          `json:"error,omitempty"` // why not
}

// DecodedCall is a recorded call with its messages decoded (DecodeCall)
// and its status details decoded beside the raw ones: the JSON of
// 'grpctap show --json' and of each 'grpctap export' line.
type DecodedCall struct {
	*store.CallWithMessages
	StatusDetails []DetailView `json:"status_details_decoded,omitempty"`
}

// DecodeDetails decodes each status detail of c with the call's schemas,
// else the well-known google.rpc error details. It returns nil for a call
// without details.
func DecodeDetails(ctx context.Context, dec *decode.Decoder, c *store.Call) []DetailView {
	if c.Status == nil || len(c.Status.Details) == 0 {
		return nil
	}
	out := make([]DetailView, 0, len(c.Status.Details))
	for _, raw := range c.Status.Details {
		var a anypb.Any
		if err := proto.Unmarshal(raw, &a); err != nil {
			out = append(out, DetailView{Error: "not a google.protobuf.Any: " + err.Error()})
			continue
		}
		name := a.GetTypeUrl()
		if i := strings.LastIndexByte(name, '/'); i >= 0 {
			name = name[i+1:]
		}
		dv := DetailView{Type: name}
		var md protoreflect.MessageDescriptor
		if m, err := dec.FindMessage(ctx, name, c.Backend); err == nil {
			md = m
		} else if mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(name)); err == nil {
			md = mt.Descriptor()
		}
		if md == nil {
			dv.Error = "no schema for " + name
		} else if res := dec.DecodeMessage(ctx, md, c.Backend, a.GetValue()); len(res.JSON) > 0 {
			dv.JSON = res.JSON
		} else {
			dv.Error = res.Error
		}
		out = append(out, dv)
	}
	return out
}
