package main

import (
	"github.com/spf13/pflag"

	"github.com/grpctap/grpctap/decode"
	"github.com/grpctap/grpctap/schemas"
)

// decodeFlags say where schemas come from, for the commands that decode.
type decodeFlags struct {
	protos       []string
	importPaths  []string
	protosets    []string
	noReflection bool
}

// register adds --proto, --import-path and --protoset, and --no-reflection
// when the command can reach backends.
func (f *decodeFlags) register(fs *pflag.FlagSet, reflection bool) {
	f.registerFiles(fs, "")
	if reflection {
		fs.BoolVar(&f.noReflection, "no-reflection", false, "do not ask backends for their schema by server reflection")
	}
}

// registerFiles adds the schema file flags only, their names after prefix
// (--mock-proto for 'proxy --mock-on-unavailable').
func (f *decodeFlags) registerFiles(fs *pflag.FlagSet, prefix string) {
	fs.StringArrayVar(&f.protos, prefix+"proto", nil, "decode with this .proto file (repeatable; paths relative to --"+prefix+"import-path)")
	fs.StringArrayVar(&f.importPaths, prefix+"import-path", nil, "directory to resolve --"+prefix+"proto files and their imports in (repeatable; well-known types are built in)")
	fs.StringArrayVar(&f.protosets, prefix+"protoset", nil, "decode with this protoset file, a serialized FileDescriptorSet as protoc --descriptor_set_out writes (repeatable)")
}

// options returns the decoder options; dial, when not nil and reflection is
// on, is how reflection reaches a backend.
func (f *decodeFlags) options(dial decode.Dialer) schemas.DecoderOptions {
	return schemas.DecoderOptions{
		ProtoFiles:  f.protos,
		ImportPaths: f.importPaths,
		Protosets:   f.protosets,
		Reflection:  dial != nil && !f.noReflection,
		Dial:        dial,
	}
}
