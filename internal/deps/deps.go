package deps
import (
 _ "google.golang.org/grpc"
 _ "google.golang.org/grpc/interop"
 _ "google.golang.org/grpc/reflection"
 _ "google.golang.org/protobuf/types/dynamicpb"
 _ "github.com/jhump/protoreflect/grpcreflect"
 _ "github.com/jhump/protoreflect/desc/protoparse"
 _ "modernc.org/sqlite"
 _ "github.com/improbable-eng/grpc-web/go/grpcweb"
 _ "go.uber.org/goleak"
 _ "github.com/google/go-cmp/cmp"
 _ "github.com/spf13/cobra"
 _ "github.com/mwitkow/grpc-proxy/proxy"
 _ "github.com/chromedp/chromedp"
)
