// Package demo owns the built-in demo backend started by `grpctap demo`: the
// DemoService implementation (one method per RPC kind), its registration with
// server reflection, and a small server wrapper with Start and Close. The
// protobuf schema and generated code live in demo/demopb.
package demo
