package ui

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"

	"github.com/grpctap/grpctap/decode"
	"github.com/grpctap/grpctap/internal/headers"
	"github.com/grpctap/grpctap/proxy"
	"github.com/grpctap/grpctap/schemas"
	"github.com/grpctap/grpctap/store"
)

// GRPCListener is the proxy's gRPC listener as its clients reach it, for
// the commands the inspector writes ("Copy as grpcurl").
type GRPCListener struct {
	Addr string // host:port clients dial
	TLS  bool   // the listener serves TLS
	// CACert is a PEM file that verifies the listener's certificate
	// (grpcurl -cacert). Default "": the system roots.
	CACert string
}

// GrpcurlCommand is the answer of GET /api/calls/{id}/grpcurl.
type GrpcurlCommand struct {
	// Command is a shell command line, preceded by comment lines that say
	// which shell variables to set first (one per redacted header).
	Command string `json:"command"`
}

// addrVar is the shell variable a command names when the proxy's gRPC
// address is not known.
const addrVar = "GRPCTAP_ADDR"

// grpcurl serves GET /api/calls/{id}/grpcurl: a grpcurl command that sends
// the call's requests and metadata again through the proxy's gRPC listener.
func (u *UI) grpcurl(w http.ResponseWriter, r *http.Request) {
	c, ok := u.readCall(w, r)
	if !ok {
		return
	}
	schemas.DecodeCallWithin(r.Context(), u.dec, c, decode.NoLimits)
	writeJSON(w, http.StatusOK, GrpcurlCommand{Command: grpcurlCommand(c, u.opts.GRPC)})
}

// grpcurlCommand writes the command for c against the listener l (its
// zero value: unknown). A gRPC call goes to l, else to the address the
// client dialled; a gRPC-Web call came through the bridge, which grpcurl
// cannot call, so it goes to l, else to $GRPCTAP_ADDR. A redacted header
// value becomes a shell variable named after the header.
func grpcurlCommand(c *store.CallWithMessages, l GRPCListener) string {
	var notes []string
	addr := l.Addr
	switch {
	case addr != "":
	case c.Protocol == proxy.ProtocolGRPC && c.Authority != "":
		addr = c.Authority
	default:
		notes = append(notes, fmt.Sprintf("# set %s to the proxy's gRPC address (host:port): this inspector does not know it", addrVar))
		addr = "$" + addrVar
	}
	parts := []string{"grpcurl"}
	switch {
	case !l.TLS:
		parts = append(parts, "-plaintext")
	case l.CACert != "":
		parts = append(parts, "-cacert", shellQuote(l.CACert))
	}
	keys := make([]string, 0, len(c.RequestHeaders))
	for k := range c.RequestHeaders {
		if headers.Passes(headers.Grpcurl, k) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, v := range c.RequestHeaders[k] {
			if !slices.Contains(c.Redacted, k) {
				parts = append(parts, "-H", shellQuote(k+": "+v))
				continue
			}
			name := shellVar(k)
			notes = append(notes, fmt.Sprintf("# set %s to the value of %s first: it was redacted when the call was recorded", name, k))
			parts = append(parts, "-H", `"`+doubleQuoted(k)+`: ${`+name+`}"`)
		}
	}
	var reqs []string
	for _, m := range c.Messages {
		if m.Direction != store.DirRequest {
			continue
		}
		if m.JSON == nil {
			notes = append(notes, fmt.Sprintf("# message %d is left out: it has no schema to write it as JSON (%s)", m.Seq, m.DecodeError))
			continue
		}
		var b bytes.Buffer
		if json.Compact(&b, m.JSON) != nil {
			b.Reset()
			b.Write(m.JSON)
		}
		reqs = append(reqs, b.String())
	}
	if len(reqs) > 0 {
		parts = append(parts, "-d", shellQuote(strings.Join(reqs, "\n")))
	}
	if strings.HasPrefix(addr, "$") {
		parts = append(parts, `"`+addr+`"`)
	} else {
		parts = append(parts, shellQuote(addr))
	}
	parts = append(parts, shellQuote(strings.TrimPrefix(c.Method, "/")))
	notes = uniq(notes)
	return strings.Join(append(notes, strings.Join(parts, " ")), "\n")
}

// shellQuote quotes s for a POSIX shell, leaving plain words as they are.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.,:/@[]=+") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// doubleQuoted escapes s for the inside of a double-quoted shell word.
func doubleQuoted(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "$", `\$`, "`", "\\`").Replace(s)
}

// shellVar is the variable named after header k: "x-api-key" → X_API_KEY.
func shellVar(k string) string {
	b := []byte(strings.ToUpper(k))
	for i, ch := range b {
		if (ch < 'A' || ch > 'Z') && (ch < '0' || ch > '9') {
			b[i] = '_'
		}
	}
	if len(b) == 0 || b[0] >= '0' && b[0] <= '9' {
		b = append([]byte("H_"), b...)
	}
	return string(b)
}

func uniq(lines []string) []string {
	seen := map[string]bool{}
	out := lines[:0]
	for _, l := range lines {
		if !seen[l] {
			seen[l] = true
			out = append(out, l)
		}
	}
	return out
}
