//! Counters shared by every thread; one snapshot type crosses the C ABI.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Live counters, updated with relaxed atomics from any thread.
        #[derive(Default, Debug)]
        pub struct Stats { $($(#[$doc])* pub $name: AtomicU64,)* }

        /// Counter names, in the order `Stats::values` returns them. Append only:
        /// the index is part of the C ABI.
        pub const NAMES: &[&str] = &[$(stringify!($name)),*];
        /// The same names, NUL-terminated, for the C ABI.
        pub(crate) const C_NAMES: &[&str] = &[$(concat!(stringify!($name), "\0")),*];

        impl Stats {
            pub fn values(&self) -> Vec<u64> {
                vec![$(self.$name.load(Relaxed)),*]
            }
        }
    };
}

counters! {
    /// Records read from the kernel ring buffer.
    events_read,
    /// Records the kernel could not write because the ring buffer was full.
    events_lost,
    /// Records shorter than their declared size or of an unknown kind.
    events_malformed,
    /// Syscalls whose payload was longer than the capture buffer.
    captures_truncated,
    /// Payload bytes that went over the wire but were not captured.
    bytes_not_captured,
    /// Connections whose bytes could not be parsed as the detected protocol.
    streams_unparsable,
    /// Connections of traced processes that carry no protocol we parse.
    streams_unknown_protocol,
    /// Requests that ended without a response (connection closed or parse lost).
    requests_without_response,
    /// Responses seen with no request to pair them with.
    responses_without_request,
    /// Incoming traceparent headers that were malformed and ignored.
    traceparent_invalid,
    /// Spans completed and put into a batch.
    spans_emitted,
    /// Spans not exported because their trace is not sampled (`sampling`: the ratio's
    /// decision on a new trace, or the incoming parent's flag).
    spans_unsampled,
    /// Unsampled server requests the kernel left out whole (request and response never
    /// reached userspace: the cheapest way not to trace them).
    requests_unsampled_in_kernel,
    /// Spans exported because `sampling.ratio` kept their trace (a root, or every span
    /// when `parent_based` is off).
    spans_sampled_by_ratio,
    /// Spans exported because their parent was sampled (an incoming traceparent, or the
    /// request their thread serves).
    spans_sampled_by_parent,
    /// Spans dropped by configuration (excluded path or port).
    spans_excluded,
    /// Spans dropped because the batch queue towards the collector was full.
    spans_dropped_queue_full,
    /// Span batches handed to the collector.
    batches_emitted,
    /// Processes currently traced.
    processes_traced,
    /// Connections currently tracked.
    connections_tracked,
    /// Connections evicted because the tracking table was full or idle too long.
    connections_evicted,
    /// Responses whose framing was hidden by uncaptured bytes; their end was found by
    /// resynchronising on the next message (body size unknown).
    responses_framing_lost,
    /// Server spans linked to the client span of the same connection on this host.
    links_made,
    /// ... of which the server's read was seen before the client's write.
    links_server_first,
    /// Server spans that waited for a client on this host and went alone.
    links_timed_out,
    /// Calls made by a thread serving several requests at once (an event loop): left
    /// without a parent rather than given a possibly wrong one.
    parents_ambiguous,
    /// traceparent headers the kernel inserted into outgoing requests.
    context_injected,
    /// Outgoing requests that carried their own traceparent: left untouched.
    inject_skipped_own_header,
    /// Outgoing requests whose header block did not fit in one send: left untouched.
    inject_skipped_split_head,
    /// Outgoing requests the kernel could not grow: left untouched.
    inject_failed,
    /// Client requests of traced processes sent without an inserted header (sockets
    /// opened before the collector or before the process was traced, and every skip above).
    requests_not_injected,
    /// Server requests whose head arrived in several reads: the kernel may have missed
    /// their traceparent.
    server_head_split,
    /// ... and did: the calls made while serving them went out in another trace.
    context_mismatch,
    /// Incoming tracestate values too long to carry on (traceparent still is).
    tracestate_dropped,
    /// Client connections opened before they could be marked (before the collector or
    /// before their process was traced), handed to the kernel for injection from their
    /// next request on.
    connections_adopted,
    /// TLS plaintext dropped because its SSL object's socket was not known yet.
    tls_without_socket,
    /// HTTP/2 header blocks that could not be decoded (a connection first seen mid-stream
    /// refers to compression state we never saw): those streams' spans lack what was lost.
    h2_headers_undecodable,
    /// HTTP/2 connections whose frames the kernel stopped following (a call with more
    /// frames than it walks, a frame header no peer sends, or file bytes sent with
    /// sendfile): plain captures from then on.
    h2_walk_lost,
    /// HTTP/2 requests (h2c) sent without an inserted header: a header block in several
    /// frames or sends, a frame that would outgrow 16 KiB, more than 4 requests in one send.
    h2_requests_not_injected,
    /// h2c connections whose frames the kernel lost from sight while inserting headers:
    /// their later requests go without one.
    h2_inject_lost,
    /// AMQP publishes sent without an inserted traceparent: a content header split between
    /// sends or too big to grow within the smallest frame size, more than 4 in one send.
    amqp_publishes_not_injected,
    /// AMQP connections whose frames the kernel lost from sight while inserting headers:
    /// their later publishes go without one.
    amqp_inject_lost,
    /// TLS connections whose plaintext never came: encrypted by a library the receiver does
    /// not probe (BoringSSL, as in grpcio; rustls; Java...), or closed after the handshake
    /// without data. Counted when the connection ends.
    tls_not_decrypted,
    /// Go executables whose crypto/tls is probed.
    go_tls_programs,
    /// Go programs whose crypto/tls could not be probed (Go before 1.18 without symbols, no
    /// RET found, attach refused): their HTTPS traffic is not traced.
    go_tls_unprobed,
    /// Go programs using net/http whose goroutine-context probes could not be attached:
    /// their outgoing calls go without a parent.
    go_context_unprobed,
    /// Spans not made of this collector's own traffic: its exports read by a traced
    /// server, and requests to its own listening ports (receivers, telemetry).
    spans_collector_traffic,
    /// Processes seen exporting OTLP themselves (an OpenTelemetry SDK) and still running.
    sdk_instrumented_processes,
    /// Spans not made for SDK-instrumented processes (`skip_sdk_instrumented`), and
    /// OTLP export requests, which never become spans.
    spans_sdk_skipped,
    /// Database protocol messages that did not parse (the session skipped them or
    /// resynchronised).
    db_messages_malformed,
    /// Database operations whose statement text was never seen (prepared before the
    /// collector): their spans are named as well as the protocol allows.
    db_statement_unknown,
    /// Database messages that are not operations (handshakes, heartbeats, pushes): no span.
    db_not_operations,
    /// Query texts cut to `database.max_query_length`.
    db_query_truncated,
    /// Messaging protocol frames that did not parse (skipped, or the session resynchronised).
    messaging_messages_malformed,
    /// Messaging messages that are not operations (handshakes, heartbeats, metadata): no span.
    messaging_not_operations,
    /// Kafka polls that returned no records: no span.
    messaging_empty_polls,
    /// Compressed Kafka record batches whose record headers could not be read.
    messaging_batches_undecompressed,
    /// Kafka topic ids (Fetch v13+) that no Metadata response seen on this host named:
    /// their spans carry no destination name.
    kafka_topic_unknown,
    /// Go requests whose goroutine could not be read (a Go release without a known
    /// runtime layout): the calls made for them go without a parent.
    go_context_unknown_no_goid,
    /// net/http calls from a goroutine serving no request known to the kernel (started
    /// before the collector, or by a hand-off not followed): they start a trace.
    go_context_unknown_no_request,
    /// net/http requests written after the request their caller served had ended (a
    /// hand-off left by a failed dial whose address came back): written without a parent.
    go_context_unknown_stale,
    /// HTTP/2 streams a Go program opened (grpc-go calls) whose caller's context the
    /// kernel did not know: sent without a parent.
    go_context_unknown_grpc,
    /// Go HTTP/2 requests whose connection's socket the kernel could not read (not a TLS
    /// connection): their calls go without a parent.
    go_context_unknown_h2_no_socket,
    /// Go HTTP/2 requests whose header fields the kernel could not read (or more than it
    /// looks at): their calls go without a parent.
    go_context_unknown_h2_unread,
    /// Go HTTP/2 client streams on a connection the kernel reports callers on whose
    /// caller was not reported before them (net/http: its writing goroutine's request, or
    /// its HEADERS went out with another stream's; grpc-go: the stream's own): no parent.
    go_context_unknown_h2_client,
    /// Go executables deleted and run by no process any more, whose probes were removed.
    go_programs_released,
}

pub fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Relaxed);
}

pub fn inc(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

pub fn set(c: &AtomicU64, n: u64) {
    c.store(n, Relaxed);
}
