package decode

import (
	"context"
	"strings"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// builtin holds the schemas of the gRPC services almost every server and
// client speaks besides its own: server reflection (v1 and v1alpha) and
// health checking. Their calls pass through the proxy on every run (grpcurl
// and grpctap itself ask for reflection), so they always decode, whatever
// the backend serves.
var builtin = &staticSource{name: "built in (grpc.reflection, grpc.health)", fs: newFileSet([]protoreflect.FileDescriptor{
	reflectionv1.File_grpc_reflection_v1_reflection_proto,
	reflectionv1alpha.File_grpc_reflection_v1alpha_reflection_proto,
	healthpb.File_grpc_health_v1_health_proto,
})}

// isBuiltinName says whether a full method or message name belongs to
// one of the built-in packages.
func isBuiltinName(name string) bool {
	name = strings.TrimPrefix(name, "/")
	return strings.HasPrefix(name, "grpc.reflection.v1.") || strings.HasPrefix(name, "grpc.reflection.v1alpha.") ||
		strings.HasPrefix(name, "grpc.health.v1.")
}

// findBuiltin resolves a method of the built-in services.
func findBuiltin(ctx context.Context, method string) (protoreflect.MethodDescriptor, bool) {
	if !isBuiltinName(method) {
		return nil, false
	}
	md, err := builtin.FindMethod(ctx, method)
	return md, err == nil
}
