package webbridge_test

import (
	"bytes"
	"io"
	"net/http"
	"testing"
)

// BenchmarkUnary measures one unary gRPC-Web call through the bridge and
// proxy to an echo backend, per HTTP version, with an Observer attached.
func BenchmarkUnary(b *testing.B) {
	backend := rawBackend(b, echoHandler)
	br := startBridge(b, backend, bridgeConfig{})
	body := dataFrame(bytes.Repeat([]byte("x"), 128))
	for _, v := range []variant{variants[0], variants[5]} {
		b.Run(v.name, func(b *testing.B) {
			c := v.client(nil)
			defer closeClient(c)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest(http.MethodPost, br.url+"/test.Echo/Bench", bytes.NewReader(body))
					req.Header.Set("Content-Type", v.contentType)
					resp, err := c.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		})
	}
}
