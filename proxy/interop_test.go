package proxy_test

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/grpctap/grpctap/internal/stubserver"
	"github.com/grpctap/grpctap/internal/testcert"
	"github.com/grpctap/grpctap/proxy"
)

// TestInterop runs grpc-go's interop test cases through the proxy, over
// h2c on both legs and over TLS on both legs (mTLS to the backend). The
// Do* functions fail the process on any difference from a direct call.
func TestInterop(t *testing.T) {
	certs := testcert.New(t)
	for _, tc := range []struct {
		name string
		tls  bool
	}{{"h2c", false}, {"tls", true}} {
		t.Run(tc.name, func(t *testing.T) {
			var backendOpts, proxyOpts []grpc.ServerOption
			opts := proxy.Options{}
			var clientTLS *tls.Config
			if tc.tls {
				backendOpts = append(backendOpts, grpc.Creds(credentials.NewTLS(certs.ServerConfig(t, true))))
				bt := proxy.BackendTLS{CAFile: certs.CAFile, CertFile: certs.ClientCertFile, KeyFile: certs.ClientKeyFile}
				cfg, err := bt.Config()
				if err != nil {
					t.Fatal(err)
				}
				opts.BackendTLS = cfg
				proxyOpts = append(proxyOpts, grpc.Creds(credentials.NewTLS(certs.ServerConfig(t, false))))
				clientTLS = certs.ClientConfig(t, false)
			}
			backend := grpc.NewServer(backendOpts...)
			testgrpc.RegisterTestServiceServer(backend, interop.NewTestServer())
			opts.Backend = stubserver.Serve(t, backend)
			proxyAddr, _ := startProxy(t, opts, proxyOpts...)
			cc := dial(t, proxyAddr, clientTLS)
			tc := testgrpc.NewTestServiceClient(cc)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()

			cases := []struct {
				name string
				run  func()
			}{
				{"empty_unary", func() { interop.DoEmptyUnaryCall(ctx, tc) }},
				{"large_unary", func() { interop.DoLargeUnaryCall(ctx, tc) }},
				{"client_streaming", func() { interop.DoClientStreaming(ctx, tc) }},
				{"server_streaming", func() { interop.DoServerStreaming(ctx, tc) }},
				{"ping_pong", func() { interop.DoPingPong(ctx, tc) }},
				{"empty_stream", func() { interop.DoEmptyStream(ctx, tc) }},
				{"timeout_on_sleeping_server", func() { interop.DoTimeoutOnSleepingServer(ctx, tc) }},
				{"cancel_after_begin", func() { interop.DoCancelAfterBegin(ctx, tc) }},
				{"cancel_after_first_response", func() { interop.DoCancelAfterFirstResponse(ctx, tc) }},
				{"status_code_and_message", func() { interop.DoStatusCodeAndMessage(ctx, tc) }},
				{"special_status_message", func() { interop.DoSpecialStatusMessage(ctx, tc) }},
				{"custom_metadata", func() { interop.DoCustomMetadata(ctx, tc) }},
				{"unimplemented_method", func() { interop.DoUnimplementedMethod(ctx, cc) }},
				{"unimplemented_service", func() { interop.DoUnimplementedService(ctx, testgrpc.NewUnimplementedServiceClient(cc)) }},
				{"large_unary_gzip", func() { interop.DoLargeUnaryCall(ctx, tc, grpc.UseCompressor("gzip")) }},
				{"ping_pong_gzip", func() { interop.DoPingPong(ctx, tc, grpc.UseCompressor("gzip")) }},
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) { c.run() })
			}
		})
	}
}
