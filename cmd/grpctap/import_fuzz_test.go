package main

import (
	"os"
	"strings"
	"testing"
)

// FuzzImportGRPCDump checks that no input makes the grpc-dump reader panic
// or produce a call without a method, an end or a status.
func FuzzImportGRPCDump(f *testing.F) {
	for _, name := range []string{"dump.json", "events.json"} {
		b, err := os.ReadFile("../../testdata/grpcdump/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Add(`{"type":"status","id":1}`)
	f.Add(`{"service":"s","method":"m","error":{"code":"bogus"}}`)
	f.Fuzz(func(t *testing.T, in string) {
		calls, err := parseGRPCDump(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, c := range calls {
			if !strings.HasPrefix(c.Method, "/") || c.End == nil || c.Status == nil {
				t.Fatalf("incomplete call %+v", c.Call)
			}
			for i, m := range c.Messages {
				if m.Seq != i+1 || m.Raw == nil {
					t.Fatalf("message %d: %+v", i, m)
				}
			}
		}
	})
}
