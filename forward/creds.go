package forward

import (
	"context"
	"errors"
	"net"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// Credentials are the gRPC server credentials for a server that serves a
// Listener: an intercepted tunnel (already decrypted, or h2c) passes as it
// is, with its proxy.Upstream as the connection's AuthInfo, which is how
// the proxy learns where its calls go; any other connection gets inner's
// handshake (the server's own TLS), or none when inner is nil.
func Credentials(inner credentials.TransportCredentials) credentials.TransportCredentials {
	if inner == nil {
		inner = insecure.NewCredentials()
	}
	return &serverCreds{inner: inner}
}

type serverCreds struct {
	inner credentials.TransportCredentials
}

func (c *serverCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	if t, ok := conn.(*tunnelConn); ok {
		return t, t.up, nil
	}
	return c.inner.ServerHandshake(conn)
}

func (c *serverCreds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("grpctap forward-proxy credentials are for servers only")
}

func (c *serverCreds) Info() credentials.ProtocolInfo { return c.inner.Info() }

func (c *serverCreds) Clone() credentials.TransportCredentials {
	return &serverCreds{inner: c.inner.Clone()}
}

//nolint:staticcheck // part of the interface grpc-go still requires.
func (c *serverCreds) OverrideServerName(name string) error { return c.inner.OverrideServerName(name) }
