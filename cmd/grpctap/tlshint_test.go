package main

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/grpctap/grpctap/demo"
	"github.com/grpctap/grpctap/demo/demopb"
	"github.com/grpctap/grpctap/internal/stubserver"
	"github.com/grpctap/grpctap/internal/testcert"
)

// TestPlaintextProxyToTLSBackendHints: a proxy that dials a TLS backend in
// plaintext said only "error reading server preface: EOF"; the client's
// error now points at --backend-tls, and with it the call goes through.
func TestPlaintextProxyToTLSBackendHints(t *testing.T) {
	certs := testcert.New(t)
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(certs.ServerConfig(t, false))))
	demo.Register(srv)
	backend := stubserver.Serve(t, srv)

	s := start(t, "proxy", "--listen", "127.0.0.1:0", "--ui", "", "--no-record", "--backend", backend)
	_, err := demoClient(t, s.waitFor(t, listeningLine)).Echo(context.Background(), &demopb.EchoRequest{Message: "hi"})
	if status.Code(err) != codes.Unavailable || !strings.Contains(status.Convert(err).Message(), "--backend-tls") {
		t.Errorf("through a plaintext proxy: %v; want UNAVAILABLE naming --backend-tls", err)
	}

	s = start(t, "proxy", "--listen", "127.0.0.1:0", "--ui", "", "--no-record", "--backend", backend, "--backend-ca", certs.CAFile)
	res, err := demoClient(t, s.waitFor(t, listeningLine)).Echo(context.Background(), &demopb.EchoRequest{Message: "hi"})
	if err != nil || res.GetMessage() != "hi" {
		t.Errorf("with --backend-ca: %v %v", res, err)
	}
}
