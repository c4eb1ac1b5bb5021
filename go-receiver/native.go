package ebpfreceiver // import "github.com/otelcol-ebpf/otelcol-ebpf/go-receiver"

import (
	"fmt"
	"time"
)

// native is the Rust core seen from Go. Only native_linux.go talks to C; the lifecycle
// code works against this interface so it can be tested with a fake.
//
// The core allows nextBatch and stats concurrently, but stop and free must not race
// with any other call.
type native interface {
	start() error
	// nextBatch waits up to timeout for the next ExportTraceServiceRequest and the
	// number of spans in it. The bytes are valid until the next call: consume keeps
	// nothing of them (the decoders copy what they keep).
	nextBatch(timeout time.Duration) ([]byte, int, status, error)
	// stats returns every counter of the core by name.
	stats() (map[string]uint64, error)
	info() string
	// nextNotice returns the next line the core has for the collector's log, if any.
	nextNotice() (string, bool)
	stop() error
	free()
}

// newNativeFunc builds a native core from the JSON config (nativeJSON).
type newNativeFunc func(cfgJSON []byte) (native, error)

type status int

const (
	statusOK status = iota
	statusTimeout
	statusStopped
)

// Error codes of the C ABI (OtelEbpfResult); kept here so the wording is testable
// without cgo.
const (
	resultInvalidArgument   = 10
	resultConfig            = 11
	resultPermission        = 12
	resultUnsupportedKernel = 13
	resultLoad              = 14
	resultState             = 15
	resultPanic             = 99
)

// resultError turns a failed C call into an error that says what went wrong in words,
// followed by the core's own message.
func resultError(op string, code int, msg string) error {
	var what string
	switch code {
	case resultInvalidArgument:
		what = "invalid argument"
	case resultConfig:
		what = "invalid configuration"
	case resultPermission:
		what = "insufficient privileges"
	case resultUnsupportedKernel:
		what = "unsupported kernel"
	case resultLoad:
		what = "could not load the eBPF programs"
	case resultState:
		what = "called in the wrong state"
	case resultPanic:
		what = "the eBPF core panicked"
	default:
		what = fmt.Sprintf("unexpected result %d", code)
	}
	if msg == "" {
		msg = "no details from the eBPF core"
	}
	return fmt.Errorf("ebpf receiver: %s: %s: %s", op, what, msg)
}

// lossCounters are the core counters that mean telemetry was lost; their growth is
// logged as a warning.
var lossCounters = []string{
	"events_lost",
	"events_malformed",
	"streams_unparsable",
	"spans_dropped_queue_full",
	"requests_without_response",
	"traceparent_invalid",
	"captures_truncated",
	"tls_without_socket",
	"tls_not_decrypted",
	"h2_headers_undecodable",
	"h2_walk_lost",
	"go_tls_unprobed",
	"go_context_unprobed",
	"db_messages_malformed",
	"db_statement_unknown",
}

// contextCounters are the requests whose trace context could not be carried; they are
// warned about apart from losses.
var contextCounters = []string{
	"inject_failed",
	"inject_skipped_split_head",
	"requests_not_injected",
	"context_mismatch",
	"tracestate_dropped",
	"h2_requests_not_injected",
	"h2_inject_lost",
	"go_context_unknown_no_goid",
	"go_context_unknown_no_request",
	"go_context_unknown_stale",
	"go_context_unknown_grpc",
	"go_context_unknown_h2_no_socket",
	"go_context_unknown_h2_unread",
	"go_context_unknown_h2_client",
}

// gaugeCounters are core values that go up and down; all others are monotonic.
var gaugeCounters = map[string]bool{"processes_traced": true, "connections_tracked": true, "go_tls_programs": true, "sdk_instrumented_processes": true}
