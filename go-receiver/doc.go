// Package ebpfreceiver implements a traces receiver that observes the HTTP traffic of
// local processes with eBPF. A Rust core (linked as a static library through cgo) loads
// the kernel programs, parses the captured bytes and hands finished spans over as OTLP
// protobuf; this package is the collector-facing shim around it.
package ebpfreceiver // import "github.com/otelcol-ebpf/otelcol-ebpf/go-receiver"
