// Package schemas is where recorded calls meet their schemas: it joins a
// capture (store) with the decoder. It opens a decoder that knows every schema a capture can use, decodes
// recorded calls in place for show, export, the UI and replay, and, while
// the proxy runs, learns backends' schemas by reflection and keeps them in
// the capture so it can be decoded later without the backend.
//
// Nothing here runs on the forwarding path: the Learner's Observer only
// notes a method name and returns.
package schemas

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/grpctap/grpctap/decode"
	"github.com/grpctap/grpctap/proxy"
	"github.com/grpctap/grpctap/store"
)

// savedKey is the descriptors row that holds everything a capture learned.
const savedKey = ""

// DecoderOptions say where a decoder finds schemas. Explicit files win over
// the capture's saved descriptors, which win over reflection.
type DecoderOptions struct {
	ProtoFiles  []string // --proto
	ImportPaths []string // --import-path
	Protosets   []string // --protoset
	// Reflection asks each backend for its schema on first need.
	Reflection bool
	// Dial connects to a backend for reflection. Default: plaintext gRPC.
	Dial decode.Dialer
}

// GivenSources returns the sources of the schemas o names explicitly
// (ProtoFiles, Protosets), in the order a decoder consults them.
func GivenSources(o DecoderOptions) ([]decode.Source, error) {
	var sources []decode.Source
	if len(o.ProtoFiles) > 0 {
		src, err := decode.NewProtoFiles(o.ImportPaths, o.ProtoFiles)
		if err != nil {
			return nil, err
		}
		sources = append(sources, src)
	} else if len(o.ImportPaths) > 0 {
		return nil, fmt.Errorf("import paths %s given without a .proto file to find in them", strings.Join(o.ImportPaths, ", "))
	}
	if len(o.Protosets) > 0 {
		src, err := decode.NewProtoset(o.Protosets...)
		if err != nil {
			return nil, err
		}
		sources = append(sources, src)
	}
	return sources, nil
}

// OpenDecoder returns a decoder for the calls of st (which may be nil).
func OpenDecoder(ctx context.Context, st *store.Store, o DecoderOptions) (*decode.Decoder, error) {
	sources, err := GivenSources(o)
	if err != nil {
		return nil, err
	}
	if st != nil {
		raw, _, err := st.LoadDescriptors(ctx, savedKey)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return nil, err
		default:
			src, err := decode.NewFileDescriptorSet(raw)
			if err != nil {
				return nil, fmt.Errorf("capture %s: %w", st.Path(), err)
			}
			sources = append(sources, src)
		}
	}
	opts := []decode.Option{decode.WithSources(sources...)}
	if o.Reflection {
		dial := o.Dial
		if dial == nil {
			dial = plaintextDial
		}
		opts = append(opts, decode.WithDialer(dial))
	}
	return decode.New(opts...), nil
}

func plaintextDial(backend string) (grpc.ClientConnInterface, error) {
	return grpc.NewClient(backend, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

// SaveLearned stores every schema dec knows in st, so the capture decodes
// without its backends later.
func SaveLearned(ctx context.Context, dec *decode.Decoder, st *store.Store) error {
	snap, err := dec.Snapshot()
	if err != nil {
		return err
	}
	return st.SaveDescriptors(ctx, savedKey, snap)
}

// ResolveRPC sets the call's RPC kind from its schema, when one is known.
func ResolveRPC(ctx context.Context, dec *decode.Decoder, c *store.Call) {
	if md, _, err := dec.FindMethod(ctx, c.Method, c.Backend); err == nil {
		c.RPC = rpcKind(md.IsStreamingClient(), md.IsStreamingServer())
		c.RPCFromSchema = true
	}
}

// DecodeCall fills in each message's JSON, schemaless tree and decode
// error, and the call's RPC kind when a schema gives it. The views are
// bounded by decode.DefaultLimits (Raw stays whole); DecodeCallWithin
// chooses other bounds.
func DecodeCall(ctx context.Context, dec *decode.Decoder, c *store.CallWithMessages) {
	DecodeCallWithin(ctx, dec, c, decode.DefaultLimits)
}

// DecodeCallWithin is DecodeCall with the views of each message bounded
// by lim (decode.NoLimits for everything). It returns, by message, what
// the views leave out, which is also said in the message's decode_error
// (a note beside a decoded JSON, as for a message recorded cut).
func DecodeCallWithin(ctx context.Context, dec *decode.Decoder, c *store.CallWithMessages, lim decode.Limits) [][]decode.Elision {
	ResolveRPC(ctx, dec, &c.Call)
	sub := proxy.ContentSubtype(c.ContentType)
	elided := make([][]decode.Elision, len(c.Messages))
	for i := range c.Messages {
		m := &c.Messages[i]
		dir := decode.Request
		if m.Direction == store.DirResponse {
			dir = decode.Response
		}
		res := dec.Decode(ctx, decode.Input{Method: c.Method, Backend: c.Backend, Direction: dir, ContentSubtype: sub, Raw: m.Raw, Limits: lim})
		m.JSON, m.Schemaless, m.DecodeError = nil, nil, res.Error
		if len(res.JSON) > 0 {
			m.JSON = res.JSON
		}
		if res.Schemaless != nil {
			if b, err := json.Marshal(res.Schemaless); err == nil {
				m.Schemaless = b
			}
		}
		var notes []string
		if m.Truncated {
			notes = append(notes, fmt.Sprintf("message was recorded cut to %d of %d bytes (the recorder's limit on a body)", len(m.Raw), m.Size))
		}
		if len(res.Elided) > 0 {
			elided[i] = res.Elided
			notes = append(notes, decode.ElisionNote(res.Elided))
		}
		if m.DecodeError != "" {
			notes = append(notes, m.DecodeError)
		}
		m.DecodeError = strings.Join(notes, "; ")
	}
	return elided
}

func rpcKind(clientStreams, serverStreams bool) string {
	switch {
	case clientStreams && serverStreams:
		return store.RPCBidiStreaming
	case clientStreams:
		return store.RPCClientStreaming
	case serverStreams:
		return store.RPCServerStreaming
	}
	return store.RPCUnary
}
