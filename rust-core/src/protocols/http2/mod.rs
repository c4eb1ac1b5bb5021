//! HPACK: own decoder (`hpack.rs`), no crate: `fluke-hpack` 0.3.1, `hpack` 0.3.0 and `httlib-hpack` 0.1.3 all panic on the 1-byte block `[0x3f]`, and none can decode past an unknown dynamic-table index (needed mid-stream).
//!
//! Pure, incremental HTTP/2 parser for one TCP connection seen from one
//! endpoint, fed both directions (RFC 9113 framing, RFC 7541 HPACK).
//!
//! [`H2Conn::feed`] takes the captured byte stream one [`Segment`] per
//! syscall: captured bytes, or a count of bytes that crossed the wire
//! uncaptured (the kernel copies at most 4095 bytes per syscall). It appends
//! [`H2Event`]s and never fails: problems are counted in [`H2Stats`].
//!
//! Design:
//! * Frames are parsed with a small state machine per direction; payloads are
//!   never buffered except header blocks (HEADERS/PUSH_PROMISE + CONTINUATION,
//!   at most [`MAX_HEADER_BLOCK`] bytes) and the few fixed fields we read.
//! * One HPACK decoder per direction. Every header block is decoded (also
//!   PUSH_PROMISE and blocks of streams we do not track) so the dynamic table
//!   stays in sync; only the fields of [`H2Request`] and the response fields
//!   are kept, no other value is ever copied (see `hpack.rs`).
//! * A connection first seen mid-stream (no preface) starts with unknown
//!   dynamic tables: references to entries we never saw decode as unknown, the
//!   block still yields what the static table and literals give
//!   ([`H2Event::HeadersUndecodable`] marks it).
//! * Uncaptured bytes: inside DATA they count as body bytes; inside a header
//!   block they make that direction's table unknown from then on; across frame
//!   headers they lose frame sync, which comes back at the next segment that
//!   starts with plausible frame headers (writes are usually frame-aligned).
//! * Streams: up to [`MAX_STREAMS`] tracked, the oldest evicted beyond that
//!   ([`H2Event::Unfinished`]). Streams opened before we saw the connection
//!   are not tracked: their frames are counted and skipped.
//!
//! Timestamps: `Request`/`Response` carry the ts of the segment holding the
//! first byte of the HEADERS frame; `RequestEnd`/`ResponseEnd` the ts of the
//! segment holding the last byte of the frame carrying END_STREAM (the last
//! CONTINUATION for a header block).

mod frames;
pub mod hpack;
mod huffman;
pub mod kernel_frames;
mod parser;
mod streams;

use std::collections::BTreeMap;

pub use crate::protocols::http1::Segment;
use frames::PREFACE;
pub use frames::{DEFAULT_MAX_FRAME, MAX_FRAME_LIMIT};
use parser::{Dir, Reader};
use streams::Stream;

/// Streams tracked per connection; beyond it the lowest stream id is evicted.
pub const MAX_STREAMS: usize = 1024;
/// Header block (all fragments) buffered per direction; the rest of a larger
/// block is not decoded and the direction's table becomes unknown.
pub const MAX_HEADER_BLOCK: usize = 64 * 1024;
/// Longest kept header value (longer ones are cut).
pub const MAX_VALUE: usize = 8 * 1024;
/// Longest kept grpc-message (after percent-decoding).
pub const MAX_GRPC_MESSAGE: usize = 1024;

/// The request head. Only these fields are kept from the header block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct H2Request {
    pub method: Option<String>,
    pub path: Option<String>,
    pub authority: Option<String>,
    pub scheme: Option<String>,
    pub content_type: Option<String>,
    pub user_agent: Option<String>,
    pub traceparent: Option<String>,
    /// Several fields are joined with ",".
    pub tracestate: Option<String>,
    pub grpc_timeout: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum H2Event {
    /// A request header block (with its CONTINUATIONs) is complete.
    Request {
        stream_id: u32,
        ts: u64,
        head: H2Request,
    },
    /// The client ended its side of the stream (END_STREAM).
    RequestEnd {
        stream_id: u32,
        ts: u64,
        body_bytes: u64,
    },
    /// The first non-informational response header block. `status` is `None`
    /// when `:status` could not be decoded; `grpc_status` is set for
    /// trailers-only responses.
    Response {
        stream_id: u32,
        ts: u64,
        status: Option<u16>,
        grpc_status: Option<u32>,
        content_type: Option<String>,
    },
    /// The server ended its side (DATA or trailers with END_STREAM).
    /// `grpc_*` come from the trailers (or a trailers-only response).
    ResponseEnd {
        stream_id: u32,
        ts: u64,
        body_bytes: u64,
        grpc_status: Option<u32>,
        grpc_message: Option<String>,
    },
    /// RST_STREAM on a stream whose response had not ended (`error_code` is
    /// `None` when the frame's payload was not captured), or a stream refused
    /// by the server's GOAWAY (REFUSED_STREAM, `by_client` false).
    Reset {
        stream_id: u32,
        ts: u64,
        error_code: Option<u32>,
        by_client: bool,
    },
    /// GOAWAY (informational; refused streams follow as `Reset`).
    GoAway {
        ts: u64,
        last_stream_id: u32,
        error_code: u32,
        by_client: bool,
    },
    /// A header block of this stream could not be decoded completely; the
    /// event that follows carries what was decoded (e.g. `path: None`).
    HeadersUndecodable {
        stream_id: u32,
        ts: u64,
        from_client: bool,
    },
    /// A stream given up without its response ending: the connection closed
    /// ([`H2Conn::close`]) or it was evicted by the stream cap.
    Unfinished { stream_id: u32, ts: u64 },
}

/// Problems and volumes, for the caller's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct H2Stats {
    pub frames: u64,
    /// Frames of types this parser does not know (skipped, as RFC 9113 says).
    pub frames_unknown_type: u64,
    /// Frame headers that broke the protocol's rules: frame sync is lost.
    pub frames_invalid: u64,
    /// Bad padding, CONTINUATION out of place: handled, tables may be unknown.
    pub frames_malformed: u64,
    /// HEADERS/DATA/RST_STREAM frames of streams we do not track.
    pub frames_untracked_stream: u64,
    pub header_blocks: u64,
    pub headers_undecodable: u64,
    /// Malformed HPACK (bad integer, Huffman code, index 0).
    pub hpack_errors: u64,
    pub header_blocks_too_large: u64,
    /// Header blocks with uncaptured bytes.
    pub gaps_in_header_blocks: u64,
    /// Uncaptured bytes covering frame headers (frame sync lost).
    pub gaps_in_frame_headers: u64,
    /// Frame sync regained at a segment start.
    pub resyncs: u64,
    /// Segments skipped while frame sync was lost.
    pub segments_skipped: u64,
    pub streams_evicted: u64,
    /// Header blocks seen before the roles were known (unknown-roles mode).
    pub blocks_unattributed: u64,
    /// Header blocks whose content contradicts the direction's role.
    pub role_conflicts: u64,
    /// The client's connection preface was seen.
    pub prefaces: u64,
}

// ---------------------------------------------------------------------------
// Helpers for callers
// ---------------------------------------------------------------------------

/// True when `first_bytes` (a connection's first captured bytes in either
/// direction) start like HTTP/2: the client preface (or at least its first 4
/// bytes when fewer were captured), or frame headers that all look right
/// (known type, defined flags only, stream-id rules, length <= 16384, every
/// frame header fully inside `first_bytes` checked). Needs 9 bytes for frames.
pub fn looks_like_h2(first_bytes: &[u8]) -> bool {
    is_client_preface(first_bytes)
        || frames::plausible_frames(first_bytes, DEFAULT_MAX_FRAME, Some(true))
        || frames::plausible_frames(first_bytes, DEFAULT_MAX_FRAME, Some(false))
}

/// True when `first_bytes` start with the client connection preface (or are
/// a prefix of it of at least 4 bytes): the direction they travel in is the
/// client's.
pub fn is_client_preface(first_bytes: &[u8]) -> bool {
    let n = first_bytes.len().min(PREFACE.len());
    n >= 4 && first_bytes[..n] == PREFACE[..n]
}

/// `/package.Service/Method` → `("package.Service", "Method")`.
pub fn grpc_method(path: &str) -> Option<(&str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    let bad = |s: &str| s.is_empty() || s.contains(['/', '?', '#']);
    if bad(service) || bad(method) {
        return None;
    }
    Some((service, method))
}

/// True for a gRPC content type (`application/grpc`, `application/grpc+proto`...).
pub fn is_grpc(content_type: &str) -> bool {
    content_type
        .strip_prefix("application/grpc")
        .is_some_and(|r| r.is_empty() || r.starts_with(['+', ';']))
}

/// OpenTelemetry semantic conventions: a SERVER span is an error for gRPC
/// status UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE,
/// DATA_LOSS.
pub fn grpc_server_error(code: u32) -> bool {
    matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
}

/// A CLIENT span is an error for every non-OK gRPC status.
pub fn grpc_client_error(code: u32) -> bool {
    code != 0
}

/// Connection-level HTTP/2 parser (both directions of one TCP connection).
#[derive(Debug)]
pub struct H2Conn {
    /// Indexed by direction label: 0 = `from_client == true`, 1 = false.
    dirs: [Dir; 2],
    /// Which label is the client (`Some(true)`: the caller's labels are right).
    client_label: Option<bool>,
    /// Preface seen (true) or first client bytes were not one (false).
    fresh: Option<bool>,
    streams: BTreeMap<u32, Stream>,
    stats: H2Stats,
    closed: bool,
}

impl Default for H2Conn {
    fn default() -> Self {
        Self::new()
    }
}

impl H2Conn {
    /// Parser for a connection whose client side is known: `feed`'s
    /// `from_client` tells the direction of each segment.
    pub fn new() -> Self {
        H2Conn {
            dirs: [Dir::new(true), Dir::new(false)],
            client_label: Some(true),
            fresh: None,
            streams: BTreeMap::new(),
            stats: H2Stats::default(),
            closed: false,
        }
    }

    /// Parser for a connection whose client side is not known (seen
    /// mid-stream): `from_client` is only a direction label. The client is
    /// the direction that sends the preface, or header blocks with `:method`
    /// (the other one sends `:status` or PUSH_PROMISE); until one of these is
    /// seen, header blocks are decoded (tables stay in sync) but give no
    /// events. [`client_direction`](Self::client_direction) tells the result.
    pub fn new_unknown_roles() -> Self {
        H2Conn {
            dirs: [Dir::new(true), Dir::new(true)],
            client_label: None,
            ..Self::new()
        }
    }

    /// Which `from_client` label is the client's direction: `Some(true)` when
    /// the labels are right (always with [`new`](Self::new)), `Some(false)`
    /// when swapped, `None` while unknown.
    pub fn client_direction(&self) -> Option<bool> {
        self.client_label
    }

    pub fn stats(&self) -> &H2Stats {
        &self.stats
    }

    /// Streams currently tracked.
    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }

    /// Whether the connection was seen from its start (preface), from its
    /// middle, or not decided yet.
    pub fn seen_from_start(&self) -> Option<bool> {
        self.fresh
    }

    /// Feeds one segment of the direction labelled `from_client`, observed at `ts`.
    pub fn feed(&mut self, from_client: bool, seg: Segment<'_>, ts: u64, out: &mut Vec<H2Event>) {
        if self.closed {
            return;
        }
        let di = usize::from(!from_client);
        match seg {
            Segment::Data(d) => self.feed_data(di, d, ts, out),
            Segment::Gap(n) => self.feed_gap(di, n, ts, out),
        }
    }

    /// The connection closed at `ts`: every tracked stream whose response did
    /// not end gets `Unfinished`. Later feeds are ignored.
    pub fn close(&mut self, ts: u64, out: &mut Vec<H2Event>) {
        if self.closed {
            return;
        }
        self.closed = true;
        for (id, s) in std::mem::take(&mut self.streams) {
            if !s.resp_ended {
                out.push(H2Event::Unfinished { stream_id: id, ts });
            }
        }
        for d in &mut self.dirs {
            d.block = None;
            d.reader = Reader::Lost;
        }
    }
}

#[cfg(test)]
mod tests;
