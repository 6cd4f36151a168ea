// Package demopb holds the DemoService schema and its generated Go code.
package demopb

// Generated with protoc 3.21.12 (libprotoc, Debian protobuf-compiler), protoc-gen-go v1.36.12 and protoc-gen-go-grpc v1.5.1:
//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative demo.proto
