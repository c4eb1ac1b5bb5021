//! Pure, incremental HTTP/1.x parser.
//!
//! One [`Http1Parser`] is used per direction of a TCP connection. It is fed the
//! byte stream as the kernel captured it, one [`Segment`] per read/write
//! syscall: either captured bytes ([`Segment::Data`]) or a count of bytes that
//! crossed the wire but were not captured ([`Segment::Gap`]). It appends
//! [`Http1Event`]s describing message boundaries and heads.
//!
//! Design:
//! * Header blocks may be split anywhere. Only the head is buffered (at most
//!   [`MAX_HEAD`] bytes, else [`ParseError::HeadTooLong`]); when a head arrives
//!   whole inside one segment it is parsed in place, without copying.
//! * Bodies are never buffered, only counted. Chunk framing is decoded with a
//!   byte-level state machine, so chunk-size lines are not buffered either.
//! * Only the fields of [`RequestHead`] / [`ResponseHead`] are kept. No other
//!   header value (Authorization, Cookie, Set-Cookie, ...) is ever copied out
//!   of the input; the raw head buffer is not shown by `Debug`.
//! * No panics on any input; sizes from the wire use checked/saturating math.
//!
//! Decisions on edge cases (documented here because the tests pin them):
//! * Versions: `HTTP/1.0` gives version 10, `HTTP/1.1`..`HTTP/1.9` give 11
//!   (a higher minor version is processed as 1.1, RFC 9110 §2.5). Any other
//!   version (e.g. `HTTP/2.0` in a request line) is `BadRequestLine` /
//!   `BadStatusLine`, except at the very start of a request stream where the
//!   method is not a known one: the HTTP/2 prior-knowledge preface
//!   `PRI * HTTP/2.0` is therefore `NotHttp`.
//! * `NotHttp` is only reported for the first message of a stream: its first
//!   bytes are not `token SP` (requests; or the token is an unknown method and
//!   the request line is malformed) or do not start with `HTTP/` (responses).
//!   The same defects in a later message are `BadRequestLine`/`BadStatusLine`.
//! * CR/LF bytes between messages are skipped (RFC 9112 §2.2).
//! * `connection_close` is true for `Connection: close`, or for an HTTP/1.0
//!   message without `Connection: keep-alive`.
//! * A request with `Transfer-Encoding` whose final coding is not `chunked` is
//!   `BadHeader` (RFC 9112 §6.3); such a response is delimited by close.
//! * obs-fold continuation lines are ignored, except after Content-Length or
//!   Transfer-Encoding (`BadHeader`) or as the first header line (`BadHeader`).
//! * Header values with control characters (other than HTAB) are `BadHeader`.
//! * 101 response (and a 2xx answer to a CONNECT announced with
//!   [`Http1Parser::expect_response_to`]): `Response`, `ResponseEnd` (0 body
//!   bytes) and `Upgraded` are emitted, then the parser ignores the stream.
//! * On the request side, after a request carrying an `Upgrade` header or a
//!   CONNECT request, bytes that do not parse as the next request head give
//!   `Upgraded` (not an error): the server accepted the upgrade/tunnel.
//! * `Interim.ts` is the ts of the segment holding the interim head's first byte.
//! * Chunked `body_bytes` counts decoded chunk data (not the framing).
//! * Trailers are skipped without being kept; a trailer section above
//!   [`MAX_HEAD`] is `HeadTooLong`.

use std::collections::VecDeque;
use std::fmt;

/// Maximum size of a header block (start line + fields + terminating empty line).
pub const MAX_HEAD: usize = 16 * 1024;
/// Maximum length of chunk extensions on one chunk-size line.
const MAX_CHUNK_EXT: u16 = 4096;
/// At the start of a request stream, a leading token longer than this without
/// a following space is taken for another protocol.
const MAX_FIRST_METHOD: usize = 24;
/// Capacity of the HEAD/CONNECT expectation FIFO (oldest dropped beyond it).
const MAX_PENDING: usize = 256;

/// Methods that [`detect`] accepts (any token parses).
pub const KNOWN_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// One piece of a byte stream as the kernel saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment<'a> {
    /// Captured bytes.
    Data(&'a [u8]),
    /// Bytes that crossed the wire but were not captured.
    Gap(u64),
}

/// A request head. Only these fields are kept from the header block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    /// Raw request-target, including the query.
    pub target: String,
    /// 10 or 11.
    pub version: u8,
    pub host: Option<String>,
    pub user_agent: Option<String>,
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
    pub content_length: Option<u64>,
    pub chunked: bool,
    pub expect_continue: bool,
    pub connection_close: bool,
}

/// A response head. Only these fields are kept from the header block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    /// 10 or 11.
    pub version: u8,
    pub content_length: Option<u64>,
    pub chunked: bool,
    pub connection_close: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Http1Event {
    /// Emitted when the header block is complete; `start_ts` = ts of the
    /// segment holding the message's first byte.
    Request {
        head: RequestHead,
        start_ts: u64,
    },
    /// `end_ts` = ts of the segment holding the message's last byte.
    RequestEnd {
        end_ts: u64,
        body_bytes: u64,
    },
    /// 1xx other than 101.
    Interim {
        status: u16,
        ts: u64,
    },
    /// Final response head (status >= 200, or 101).
    Response {
        head: ResponseHead,
        start_ts: u64,
    },
    ResponseEnd {
        end_ts: u64,
        body_bytes: u64,
    },
    /// The rest of the stream is not HTTP (after 101, or an accepted tunnel).
    Upgraded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// The first bytes of the stream are not an HTTP message: another protocol.
    NotHttp,
    BadRequestLine,
    BadStatusLine,
    BadHeader,
    BadChunk,
    HeadTooLong,
    /// Uncaptured bytes inside a header block.
    GapInHead,
    /// Uncaptured bytes inside chunk-size lines, chunk delimiters or trailers.
    GapInChunkFraming,
}

impl ParseError {
    pub fn as_str(self) -> &'static str {
        match self {
            ParseError::NotHttp => "not_http",
            ParseError::BadRequestLine => "bad_request_line",
            ParseError::BadStatusLine => "bad_status_line",
            ParseError::BadHeader => "bad_header",
            ParseError::BadChunk => "bad_chunk",
            ParseError::HeadTooLong => "head_too_long",
            ParseError::GapInHead => "gap_in_head",
            ParseError::GapInChunkFraming => "gap_in_chunk_framing",
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for ParseError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Requests,
    Responses,
}

/// What the request answered by the next final response was, as far as
/// response framing is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResponseTo {
    #[default]
    Other,
    /// HEAD: the response has no body whatever its headers say.
    Head,
    /// CONNECT: a 2xx response turns the connection into a tunnel.
    Connect,
}

impl ResponseTo {
    /// Classify a request method.
    pub fn for_method(method: &str) -> Self {
        match method {
            "HEAD" => ResponseTo::Head,
            "CONNECT" => ResponseTo::Connect,
            _ => ResponseTo::Other,
        }
    }
}

/// Cheap check on the first bytes of a stream: `Some(Role)` if they start like
/// an HTTP/1 request (known method token + space, or a whole request line with any
/// upper-case method: `PURGE /x HTTP/1.1`) or response (`HTTP/1.`), `None` otherwise
/// (including when too few bytes are given to tell).
pub fn detect(first_bytes: &[u8]) -> Option<Role> {
    if first_bytes.starts_with(b"HTTP/1.") {
        return Some(Role::Responses);
    }
    for m in KNOWN_METHODS {
        let m = m.as_bytes();
        if first_bytes.len() > m.len()
            && first_bytes.starts_with(m)
            && first_bytes.get(m.len()) == Some(&b' ')
        {
            return Some(Role::Requests);
        }
    }
    let end = first_bytes.iter().take(8192).position(|&b| b == b'\n')?;
    let line = &first_bytes[..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut parts = line.split(|&b| b == b' ');
    let (Some(m), Some(t), Some(v), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let method = !m.is_empty()
        && m.len() <= 32
        && m.iter()
            .all(|&b| b.is_ascii_uppercase() || b == b'-' || b == b'_');
    let target =
        t.starts_with(b"/") || t.starts_with(b"http://") || t.starts_with(b"https://") || t == b"*";
    (method && target && (v == b"HTTP/1.1" || v == b"HTTP/1.0")).then_some(Role::Requests)
}

// ---------------------------------------------------------------------------
// Parser state
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SizeSub {
    /// Reading hex digits.
    Digits,
    /// Whitespace after the digits (BWS before an extension).
    Ws,
    /// Inside chunk extensions: skipped until LF.
    Ext,
    /// Saw CR, expecting LF.
    Cr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkPhase {
    Size {
        size: u64,
        digits: u8,
        sub: SizeSub,
        ext_len: u16,
    },
    Data(u64),
    /// Expecting the CRLF (or bare LF) after chunk data.
    DataCr,
    /// Saw the CR after chunk data, expecting LF.
    DataLf,
    /// Skipping the trailer section; `eoh` is the end-of-block scanner state.
    Trailers {
        eoh: u8,
        len: u32,
    },
}

const CHUNK_SIZE_START: ChunkPhase = ChunkPhase::Size {
    size: 0,
    digits: 0,
    sub: SizeSub::Digits,
    ext_len: 0,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between messages or accumulating a header block.
    Head,
    /// Content-Length body, bytes remaining (> 0).
    Length(u64),
    Chunked(ChunkPhase),
    /// Response body delimited by connection close.
    UntilClose,
    Upgraded,
    Broken,
    Closed,
}

/// End-of-header-block scanner: 0 = inside a line, 1 = at line start (after
/// LF), 2 = at line start after CR. An LF in state 1 or 2 ends the block.
#[inline]
fn eoh_step(s: u8, b: u8) -> (u8, bool) {
    match b {
        b'\n' => {
            if s != 0 {
                (s, true)
            } else {
                (1, false)
            }
        }
        b'\r' => (if s == 1 { 2 } else { 0 }, false),
        _ => (0, false),
    }
}

/// Incremental HTTP/1.x parser for one direction of a connection.
pub struct Http1Parser {
    role: Role,
    state: State,
    /// Partial header block (only while a head is split across segments).
    buf: Vec<u8>,
    /// End-of-head scanner state over the bytes in `buf`.
    eoh: u8,
    /// The first byte of the current message has been seen.
    in_message: bool,
    /// The prefix of the current head has been validated.
    prefix_ok: bool,
    /// A head has been parsed on this stream (so NotHttp no longer applies).
    seen_message: bool,
    /// Requests: the previous request asked for an upgrade / tunnel.
    maybe_tunnel: bool,
    start_ts: u64,
    last_ts: u64,
    body_bytes: u64,
    /// Responses: what each outstanding request expects.
    pending: VecDeque<ResponseTo>,
}

impl fmt::Debug for Http1Parser {
    // Hand-written so that a buffered partial head (which may hold secrets
    // such as Authorization) is never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Http1Parser")
            .field("role", &self.role)
            .field("state", &self.state)
            .field("buffered", &self.buf.len())
            .field("in_message", &self.in_message)
            .field("body_bytes", &self.body_bytes)
            .field("pending", &self.pending.len())
            .finish()
    }
}

enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
    /// 101 or accepted CONNECT: the stream stops being HTTP.
    Upgrade,
    /// 1xx other than 101.
    Interim,
}

impl Http1Parser {
    pub fn new(role: Role) -> Self {
        Http1Parser {
            role,
            state: State::Head,
            buf: Vec::new(),
            eoh: 0,
            in_message: false,
            prefix_ok: false,
            seen_message: false,
            maybe_tunnel: false,
            start_ts: 0,
            last_ts: 0,
            body_bytes: 0,
            pending: VecDeque::new(),
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// Feed the next segment, observed at time `ts` (ns). Appends zero or more
    /// events to `out`. After an `Err` the parser is broken: later feeds return
    /// `Ok` and do nothing.
    pub fn feed(
        &mut self,
        seg: Segment<'_>,
        ts: u64,
        out: &mut Vec<Http1Event>,
    ) -> Result<(), ParseError> {
        if matches!(self.state, State::Broken | State::Upgraded | State::Closed) {
            return Ok(());
        }
        let res = match seg {
            Segment::Data(d) => self.feed_data(d, ts, out),
            Segment::Gap(n) => self.feed_gap(n, ts, out),
        };
        match res {
            Ok(()) => Ok(()),
            Err(e) => {
                self.buf = Vec::new();
                if self.state == State::Head && self.maybe_tunnel {
                    // The server accepted the upgrade/tunnel: what follows the
                    // upgrade request is not HTTP.
                    self.state = State::Upgraded;
                    out.push(Http1Event::Upgraded);
                    return Ok(());
                }
                self.state = State::Broken;
                Err(e)
            }
        }
    }

    /// Responses only: announce that the next unanswered request was HEAD
    /// (`true`) or not. Call once per request, in order, before feeding the
    /// response bytes. Without an announcement, responses are framed as
    /// answers to a non-HEAD request.
    pub fn expect_response(&mut self, to_head_request: bool) {
        self.expect_response_to(if to_head_request {
            ResponseTo::Head
        } else {
            ResponseTo::Other
        });
    }

    /// Like [`expect_response`](Self::expect_response), also telling CONNECT
    /// apart (a 2xx answer to CONNECT starts a tunnel: `Upgraded`).
    pub fn expect_response_to(&mut self, to: ResponseTo) {
        if self.pending.len() >= MAX_PENDING {
            self.pending.pop_front();
        }
        self.pending.push_back(to);
    }

    /// Convenience: [`expect_response_to`](Self::expect_response_to) for a parsed request.
    pub fn expect_response_for(&mut self, req: &RequestHead) {
        self.expect_response_to(ResponseTo::for_method(&req.method));
    }

    /// Stop parsing: the caller learned from the other direction that the
    /// stream is no longer HTTP (e.g. a 101 was seen on the response side).
    pub fn mark_upgraded(&mut self) {
        if !matches!(self.state, State::Broken | State::Closed) {
            self.state = State::Upgraded;
            self.buf = Vec::new();
        }
    }

    /// The connection closed. Finishes a close-delimited response body (emits
    /// `ResponseEnd` with `end_ts` = ts of the last segment seen) and returns
    /// true if a partial message was left incomplete. The parser then ignores
    /// further input.
    pub fn close(&mut self, out: &mut Vec<Http1Event>) -> bool {
        let incomplete = match self.state {
            State::UntilClose => {
                out.push(Http1Event::ResponseEnd {
                    end_ts: self.last_ts,
                    body_bytes: self.body_bytes,
                });
                false
            }
            State::Head => self.in_message,
            State::Length(_) | State::Chunked(_) => true,
            State::Upgraded | State::Broken | State::Closed => false,
        };
        self.state = State::Closed;
        self.buf = Vec::new();
        self.in_message = false;
        incomplete
    }

    /// Between messages with nothing buffered (also true once broken,
    /// upgraded or closed: nothing is pending).
    pub fn is_idle(&self) -> bool {
        match self.state {
            State::Head => !self.in_message && self.buf.is_empty(),
            State::Upgraded | State::Broken | State::Closed => true,
            _ => false,
        }
    }

    pub fn is_broken(&self) -> bool {
        self.state == State::Broken
    }

    pub fn is_upgraded(&self) -> bool {
        self.state == State::Upgraded
    }

    // -- internals -----------------------------------------------------------

    /// Skips `n` uncaptured bytes that must be the CRLF ending chunk data.
    fn skip_data_crlf(&mut self, n: u64) -> Result<(), ParseError> {
        let left = match self.state {
            State::Chunked(ChunkPhase::DataCr) => 2,
            State::Chunked(ChunkPhase::DataLf) => 1,
            _ => 0,
        };
        match (left, n) {
            (_, 0) => Ok(()),
            (2, 1) => {
                self.state = State::Chunked(ChunkPhase::DataLf);
                Ok(())
            }
            (l, n) if l > 0 && n == l => {
                self.state = State::Chunked(CHUNK_SIZE_START);
                Ok(())
            }
            _ => Err(ParseError::GapInChunkFraming),
        }
    }

    fn feed_gap(&mut self, n: u64, ts: u64, out: &mut Vec<Http1Event>) -> Result<(), ParseError> {
        if n == 0 {
            return Ok(());
        }
        self.last_ts = ts;
        match self.state {
            State::Head => Err(ParseError::GapInHead),
            State::Length(rem) => {
                let k = n.min(rem);
                self.body_bytes = self.body_bytes.saturating_add(k);
                let rem = rem - k;
                if rem == 0 {
                    self.finish_message(ts, out);
                    if n > k {
                        return Err(ParseError::GapInHead);
                    }
                } else {
                    self.state = State::Length(rem);
                }
                Ok(())
            }
            State::Chunked(ChunkPhase::Data(rem)) => {
                let k = n.min(rem);
                self.body_bytes = self.body_bytes.saturating_add(k);
                let rem = rem - k;
                self.state = State::Chunked(if rem == 0 {
                    ChunkPhase::DataCr
                } else {
                    ChunkPhase::Data(rem)
                });
                // A write of chunk data longer than the capture usually ends with the
                // chunk's CRLF: those bytes are fixed, so skipping them keeps framing.
                self.skip_data_crlf(n - k)
            }
            State::Chunked(ChunkPhase::DataCr | ChunkPhase::DataLf) => self.skip_data_crlf(n),
            State::Chunked(_) => Err(ParseError::GapInChunkFraming),
            State::UntilClose => {
                self.body_bytes = self.body_bytes.saturating_add(n);
                Ok(())
            }
            State::Upgraded | State::Broken | State::Closed => Ok(()),
        }
    }

    fn feed_data(
        &mut self,
        data: &[u8],
        ts: u64,
        out: &mut Vec<Http1Event>,
    ) -> Result<(), ParseError> {
        if data.is_empty() {
            return Ok(());
        }
        self.last_ts = ts;
        let mut d = data;
        while !d.is_empty() {
            let used = match self.state {
                State::Head => self.feed_head(d, ts, out)?,
                State::Length(rem) => {
                    let k = rem.min(d.len() as u64);
                    self.body_bytes = self.body_bytes.saturating_add(k);
                    let rem = rem - k;
                    if rem == 0 {
                        self.finish_message(ts, out);
                    } else {
                        self.state = State::Length(rem);
                    }
                    k as usize
                }
                State::Chunked(phase) => self.feed_chunked(phase, d, ts, out)?,
                State::UntilClose => {
                    self.body_bytes = self.body_bytes.saturating_add(d.len() as u64);
                    d.len()
                }
                State::Upgraded | State::Broken | State::Closed => d.len(),
            };
            // Every branch consumes at least one byte of a non-empty input.
            d = d.get(used..).unwrap_or(&[]);
        }
        Ok(())
    }

    /// Accumulate / parse a header block. Returns the number of bytes used.
    fn feed_head(
        &mut self,
        data: &[u8],
        ts: u64,
        out: &mut Vec<Http1Event>,
    ) -> Result<usize, ParseError> {
        let mut skipped = 0;
        if !self.in_message {
            skipped = data
                .iter()
                .take_while(|&&b| b == b'\r' || b == b'\n')
                .count();
            if skipped == data.len() {
                return Ok(skipped);
            }
            self.in_message = true;
            self.start_ts = ts;
            self.eoh = 0;
            self.prefix_ok = false;
            self.buf.clear();
        }
        let rest = &data[skipped..];
        let mut s = self.eoh;
        let mut end = None;
        for (k, &b) in rest.iter().enumerate() {
            let (ns, done) = eoh_step(s, b);
            if done {
                end = Some(k);
                break;
            }
            s = ns;
        }
        let first = !self.seen_message;
        match end {
            Some(k) => {
                let head_len = self.buf.len().saturating_add(k + 1);
                let role = self.role;
                let pending = self.pending.front().copied();
                let prefix_ok = self.prefix_ok;
                let result = {
                    let head: &[u8] = if self.buf.is_empty() {
                        &rest[..=k]
                    } else {
                        if head_len <= MAX_HEAD {
                            self.buf.extend_from_slice(&rest[..=k]);
                        }
                        &self.buf
                    };
                    if !prefix_ok {
                        check_prefix(head, role, first)?;
                    }
                    if head_len > MAX_HEAD {
                        return Err(ParseError::HeadTooLong);
                    }
                    parse_head(head, role, first, pending)
                };
                self.buf.clear();
                if self.buf.capacity() > 4096 {
                    self.buf = Vec::new();
                }
                self.on_head(result?, ts, out);
                Ok(skipped + k + 1)
            }
            None => {
                self.eoh = s;
                let room = (MAX_HEAD + 1).saturating_sub(self.buf.len());
                let take = rest.len().min(room);
                self.buf.extend_from_slice(&rest[..take]);
                if !self.prefix_ok {
                    self.prefix_ok = check_prefix(&self.buf, self.role, first)?;
                }
                if self.buf.len() > MAX_HEAD {
                    return Err(ParseError::HeadTooLong);
                }
                Ok(data.len())
            }
        }
    }

    fn on_head(&mut self, parsed: Parsed, ts: u64, out: &mut Vec<Http1Event>) {
        self.seen_message = true;
        self.body_bytes = 0;
        self.buf.clear();
        let start_ts = self.start_ts;
        match parsed {
            Parsed::Request(head, framing, tunnel) => {
                self.maybe_tunnel = tunnel;
                out.push(Http1Event::Request { head, start_ts });
                self.start_body(framing, ts, out);
            }
            Parsed::Response(head, framing) => {
                match framing {
                    Framing::Interim => {
                        out.push(Http1Event::Interim {
                            status: head.status,
                            ts: start_ts,
                        });
                        self.reset_for_next();
                        return;
                    }
                    _ => {
                        self.pending.pop_front();
                    }
                }
                out.push(Http1Event::Response { head, start_ts });
                self.start_body(framing, ts, out);
            }
        }
    }

    fn start_body(&mut self, framing: Framing, ts: u64, out: &mut Vec<Http1Event>) {
        match framing {
            Framing::None | Framing::Length(0) | Framing::Interim => self.finish_message(ts, out),
            Framing::Length(n) => self.state = State::Length(n),
            Framing::Chunked => self.state = State::Chunked(CHUNK_SIZE_START),
            Framing::UntilClose => self.state = State::UntilClose,
            Framing::Upgrade => {
                self.finish_message(ts, out);
                out.push(Http1Event::Upgraded);
                self.state = State::Upgraded;
            }
        }
    }

    fn finish_message(&mut self, ts: u64, out: &mut Vec<Http1Event>) {
        let body_bytes = self.body_bytes;
        out.push(match self.role {
            Role::Requests => Http1Event::RequestEnd {
                end_ts: ts,
                body_bytes,
            },
            Role::Responses => Http1Event::ResponseEnd {
                end_ts: ts,
                body_bytes,
            },
        });
        self.reset_for_next();
    }

    fn reset_for_next(&mut self) {
        self.state = State::Head;
        self.in_message = false;
        self.prefix_ok = false;
        self.eoh = 0;
        self.body_bytes = 0;
        self.buf.clear();
    }

    /// Decode chunked framing; returns the number of bytes used (>= 1).
    fn feed_chunked(
        &mut self,
        mut phase: ChunkPhase,
        d: &[u8],
        ts: u64,
        out: &mut Vec<Http1Event>,
    ) -> Result<usize, ParseError> {
        let mut i = 0;
        while i < d.len() {
            match phase {
                ChunkPhase::Size {
                    mut size,
                    mut digits,
                    mut sub,
                    mut ext_len,
                } => {
                    let mut line_done = false;
                    while i < d.len() && !line_done {
                        let b = d[i];
                        i += 1;
                        match sub {
                            SizeSub::Digits => {
                                if let Some(v) = hex_val(b) {
                                    digits += 1;
                                    if digits > 16 {
                                        return Err(ParseError::BadChunk);
                                    }
                                    size = size
                                        .checked_mul(16)
                                        .and_then(|s| s.checked_add(u64::from(v)))
                                        .ok_or(ParseError::BadChunk)?;
                                    continue;
                                }
                                if digits == 0 {
                                    return Err(ParseError::BadChunk);
                                }
                                match b {
                                    b' ' | b'\t' => sub = SizeSub::Ws,
                                    b';' => sub = SizeSub::Ext,
                                    b'\r' => sub = SizeSub::Cr,
                                    b'\n' => line_done = true,
                                    _ => return Err(ParseError::BadChunk),
                                }
                            }
                            SizeSub::Ws => match b {
                                b' ' | b'\t' => {}
                                b';' => sub = SizeSub::Ext,
                                b'\r' => sub = SizeSub::Cr,
                                b'\n' => line_done = true,
                                _ => return Err(ParseError::BadChunk),
                            },
                            SizeSub::Ext => {
                                if b == b'\n' {
                                    line_done = true;
                                } else {
                                    ext_len = ext_len.saturating_add(1);
                                    if ext_len > MAX_CHUNK_EXT {
                                        return Err(ParseError::BadChunk);
                                    }
                                }
                            }
                            SizeSub::Cr => {
                                if b == b'\n' {
                                    line_done = true;
                                } else {
                                    return Err(ParseError::BadChunk);
                                }
                            }
                        }
                    }
                    phase = if !line_done {
                        ChunkPhase::Size {
                            size,
                            digits,
                            sub,
                            ext_len,
                        }
                    } else if size == 0 {
                        ChunkPhase::Trailers { eoh: 1, len: 0 }
                    } else {
                        ChunkPhase::Data(size)
                    };
                }
                ChunkPhase::Data(rem) => {
                    let avail = (d.len() - i) as u64;
                    let k = rem.min(avail);
                    self.body_bytes = self.body_bytes.saturating_add(k);
                    i += k as usize;
                    let rem = rem - k;
                    phase = if rem == 0 {
                        ChunkPhase::DataCr
                    } else {
                        ChunkPhase::Data(rem)
                    };
                }
                ChunkPhase::DataCr => {
                    let b = d[i];
                    i += 1;
                    phase = match b {
                        b'\r' => ChunkPhase::DataLf,
                        b'\n' => CHUNK_SIZE_START,
                        _ => return Err(ParseError::BadChunk),
                    };
                }
                ChunkPhase::DataLf => {
                    let b = d[i];
                    i += 1;
                    if b != b'\n' {
                        return Err(ParseError::BadChunk);
                    }
                    phase = CHUNK_SIZE_START;
                }
                ChunkPhase::Trailers { mut eoh, mut len } => {
                    while i < d.len() {
                        let b = d[i];
                        i += 1;
                        len = len.saturating_add(1);
                        if len as usize > MAX_HEAD {
                            return Err(ParseError::HeadTooLong);
                        }
                        let (ns, done) = eoh_step(eoh, b);
                        if done {
                            self.finish_message(ts, out);
                            return Ok(i);
                        }
                        eoh = ns;
                    }
                    phase = ChunkPhase::Trailers { eoh, len };
                }
            }
        }
        self.state = State::Chunked(phase);
        Ok(i)
    }
}

// ---------------------------------------------------------------------------
// Head parsing (pure functions over a complete header block)
// ---------------------------------------------------------------------------

enum Parsed {
    Request(RequestHead, Framing, bool),
    Response(ResponseHead, Framing),
}

#[inline]
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

#[inline]
fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_known_method(m: &[u8]) -> bool {
    KNOWN_METHODS.iter().any(|k| k.as_bytes() == m)
}

fn trim_end_ows(mut v: &[u8]) -> &[u8] {
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    trim_end_ows(v)
}

/// Early check of a partial head so that another protocol is rejected without
/// buffering 16 KiB. Returns Ok(true) once the prefix is known to be fine,
/// Ok(false) while undecided.
fn check_prefix(p: &[u8], role: Role, first: bool) -> Result<bool, ParseError> {
    match role {
        Role::Requests => {
            let n = p.iter().take_while(|&&b| is_tchar(b)).count();
            let bad = if first {
                ParseError::NotHttp
            } else {
                ParseError::BadRequestLine
            };
            if first && n > MAX_FIRST_METHOD {
                return Err(ParseError::NotHttp);
            }
            if n == p.len() {
                return Ok(false);
            }
            if n == 0 {
                return Err(bad);
            }
            if p[n] == b' ' {
                return Ok(true);
            }
            if first && !is_known_method(&p[..n]) {
                Err(ParseError::NotHttp)
            } else {
                Err(ParseError::BadRequestLine)
            }
        }
        Role::Responses => {
            const PFX: &[u8] = b"HTTP/";
            let m = p.len().min(PFX.len());
            if p[..m] != PFX[..m] {
                return Err(if first {
                    ParseError::NotHttp
                } else {
                    ParseError::BadStatusLine
                });
            }
            Ok(m == PFX.len())
        }
    }
}

/// Lines of a header block, with the trailing CR stripped.
fn lines(head: &[u8]) -> impl Iterator<Item = &[u8]> {
    head.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

fn parse_version(v: &[u8]) -> Option<u8> {
    match v {
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', minor] if minor.is_ascii_digit() => {
            Some(if *minor == b'0' { 10 } else { 11 })
        }
        _ => None,
    }
}

fn parse_head(
    head: &[u8],
    role: Role,
    first: bool,
    to: Option<ResponseTo>,
) -> Result<Parsed, ParseError> {
    let mut it = lines(head);
    let start = it.next().unwrap_or(&[]);
    match role {
        Role::Requests => {
            let (method, target, version) = match parse_request_line(start) {
                Ok(v) => v,
                Err(e) => {
                    let tok = start.split(|&b| b == b' ').next().unwrap_or(&[]);
                    return Err(if first && !is_known_method(tok) {
                        ParseError::NotHttp
                    } else {
                        e
                    });
                }
            };
            let f = parse_fields(it)?;
            let chunked = f.te_present && f.chunked;
            let framing = if chunked {
                Framing::Chunked
            } else if f.te_present {
                return Err(ParseError::BadHeader);
            } else {
                match f.content_length {
                    Some(n) => Framing::Length(n),
                    None => Framing::None,
                }
            };
            let tunnel = method == b"CONNECT" || f.upgrade_present;
            let head = RequestHead {
                method: String::from_utf8_lossy(method).into_owned(),
                target: String::from_utf8_lossy(target).into_owned(),
                version,
                host: f.host,
                user_agent: f.user_agent,
                traceparent: f.traceparent,
                tracestate: f.tracestate,
                content_length: f.content_length,
                chunked,
                expect_continue: f.expect_continue,
                connection_close: f.conn_close || (version == 10 && !f.conn_keep_alive),
            };
            Ok(Parsed::Request(head, framing, tunnel))
        }
        Role::Responses => {
            let (version, status) = match parse_status_line(start) {
                Ok(v) => v,
                Err(e) => {
                    return Err(if first && !start.starts_with(b"HTTP/") {
                        ParseError::NotHttp
                    } else {
                        e
                    })
                }
            };
            let f = parse_fields(it)?;
            let chunked = f.te_present && f.chunked;
            let to = to.unwrap_or_default();
            let framing = if (100..200).contains(&status) {
                if status == 101 {
                    Framing::Upgrade
                } else {
                    Framing::Interim
                }
            } else if to == ResponseTo::Head || status == 204 || status == 304 {
                Framing::None
            } else if to == ResponseTo::Connect && (200..300).contains(&status) {
                Framing::Upgrade
            } else if chunked {
                Framing::Chunked
            } else if f.te_present {
                Framing::UntilClose
            } else {
                match f.content_length {
                    Some(n) => Framing::Length(n),
                    None => Framing::UntilClose,
                }
            };
            let head = ResponseHead {
                status,
                version,
                content_length: f.content_length,
                chunked,
                connection_close: f.conn_close || (version == 10 && !f.conn_keep_alive),
            };
            Ok(Parsed::Response(head, framing))
        }
    }
}

fn parse_request_line(line: &[u8]) -> Result<(&[u8], &[u8], u8), ParseError> {
    let bad = ParseError::BadRequestLine;
    let line = trim_end_ows(line);
    let sp1 = line.iter().position(|&b| b == b' ').ok_or(bad)?;
    let method = &line[..sp1];
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(bad);
    }
    let rest = &line[sp1 + 1..];
    let sp2 = rest.iter().rposition(|&b| b == b' ').ok_or(bad)?;
    let target = trim_ows(&rest[..sp2]);
    let version = parse_version(&rest[sp2 + 1..]).ok_or(bad)?;
    if target.is_empty() || target.iter().any(|&b| b <= 0x20 || b == 0x7f) {
        return Err(bad);
    }
    Ok((method, target, version))
}

fn parse_status_line(line: &[u8]) -> Result<(u8, u16), ParseError> {
    let bad = ParseError::BadStatusLine;
    let version = parse_version(line.get(..8).ok_or(bad)?).ok_or(bad)?;
    let rest = &line[8..];
    let digits_at = rest.iter().take_while(|&&b| b == b' ').count();
    if digits_at == 0 {
        return Err(bad);
    }
    let rest = &rest[digits_at..];
    let code = match rest {
        [a, b, c, tail @ ..] if a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit() => {
            if !matches!(tail.first(), None | Some(b' ') | Some(b'\t')) {
                return Err(bad);
            }
            u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
        }
        _ => return Err(bad),
    };
    if code < 100 {
        return Err(bad);
    }
    Ok((version, code))
}

#[derive(Default)]
struct Fields {
    content_length: Option<u64>,
    te_present: bool,
    /// Last transfer coding seen is `chunked`.
    chunked: bool,
    conn_close: bool,
    conn_keep_alive: bool,
    upgrade_present: bool,
    expect_continue: bool,
    host: Option<String>,
    user_agent: Option<String>,
    traceparent: Option<String>,
    tracestate: Option<String>,
}

fn kept(v: &[u8]) -> String {
    String::from_utf8_lossy(v).into_owned()
}

fn parse_content_length(v: &[u8]) -> Result<u64, ParseError> {
    // A list of identical values ("42, 42") is allowed (RFC 9110 §8.6).
    let mut val: Option<u64> = None;
    for part in v.split(|&b| b == b',') {
        let part = trim_ows(part);
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return Err(ParseError::BadHeader);
        }
        let mut n: u64 = 0;
        for &b in part {
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(b - b'0')))
                .ok_or(ParseError::BadHeader)?;
        }
        match val {
            Some(prev) if prev != n => return Err(ParseError::BadHeader),
            _ => val = Some(n),
        }
    }
    val.ok_or(ParseError::BadHeader)
}

fn parse_fields<'a>(lines: impl Iterator<Item = &'a [u8]>) -> Result<Fields, ParseError> {
    let mut f = Fields::default();
    // Whether an obs-fold continuation may follow the previous line.
    let mut fold_ok: Option<bool> = None;
    for line in lines {
        if line.is_empty() {
            break;
        }
        if matches!(line[0], b' ' | b'\t') {
            // obs-fold: ignored unless it would change framing.
            match fold_ok {
                Some(true) => continue,
                _ => return Err(ParseError::BadHeader),
            }
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(ParseError::BadHeader)?;
        let name = &line[..colon];
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(ParseError::BadHeader);
        }
        let value = trim_ows(&line[colon + 1..]);
        if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(ParseError::BadHeader);
        }
        fold_ok = Some(true);
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        if is("content-length") {
            fold_ok = Some(false);
            let n = parse_content_length(value)?;
            match f.content_length {
                Some(prev) if prev != n => return Err(ParseError::BadHeader),
                _ => f.content_length = Some(n),
            }
        } else if is("transfer-encoding") {
            fold_ok = Some(false);
            f.te_present = true;
            for coding in value.split(|&b| b == b',') {
                let coding = trim_ows(coding);
                if !coding.is_empty() {
                    f.chunked = coding.eq_ignore_ascii_case(b"chunked");
                }
            }
        } else if is("connection") {
            for tok in value.split(|&b| b == b',') {
                let tok = trim_ows(tok);
                if tok.eq_ignore_ascii_case(b"close") {
                    f.conn_close = true;
                } else if tok.eq_ignore_ascii_case(b"keep-alive") {
                    f.conn_keep_alive = true;
                }
            }
        } else if is("expect") {
            if value.eq_ignore_ascii_case(b"100-continue") {
                f.expect_continue = true;
            }
        } else if is("upgrade") {
            f.upgrade_present = true;
        } else if is("host") {
            if f.host.is_none() {
                f.host = Some(kept(value));
            }
        } else if is("user-agent") {
            if f.user_agent.is_none() {
                f.user_agent = Some(kept(value));
            }
        } else if is("traceparent") {
            if f.traceparent.is_none() {
                f.traceparent = Some(kept(value));
            }
        } else if is("tracestate") {
            // Several tracestate fields combine as one comma-separated list.
            match &mut f.tracestate {
                Some(ts) => {
                    if !value.is_empty() {
                        ts.push(',');
                        ts.push_str(&String::from_utf8_lossy(value));
                    }
                }
                None => f.tracestate = Some(kept(value)),
            }
        }
        // Every other field (Authorization, Cookie, ...) is skipped unread.
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    #[test]
    fn any_method_with_a_whole_request_line() {
        assert_eq!(
            detect(b"PURGE /x HTTP/1.1\r\nHost: a\r\n\r\n"),
            Some(Role::Requests)
        );
        assert_eq!(detect(b"MKCOL /d HTTP/1.0\n"), Some(Role::Requests));
        assert_eq!(detect(b"PURGE /x HTTP/1.1"), None); // not all there yet
        assert_eq!(detect(b"HELLO world\r\n"), None);
        assert_eq!(detect(b"purge /x HTTP/1.1\r\n"), None);
        assert_eq!(detect(b"PURGE x HTTP/1.1\r\n"), None);
        assert_eq!(detect(b"PURGE /x HTTP/2.0\r\n"), None);
    }

    use super::*;
    use Http1Event as E;

    /// Short name of an event, for the case table.
    fn kind(e: &Http1Event) -> &'static str {
        match e {
            E::Request { .. } => "Req",
            E::RequestEnd { .. } => "ReqEnd",
            E::Interim { .. } => "Interim",
            E::Response { .. } => "Resp",
            E::ResponseEnd { .. } => "RespEnd",
            E::Upgraded => "Upgraded",
        }
    }

    fn kinds(ev: &[Http1Event]) -> Vec<&'static str> {
        ev.iter().map(kind).collect()
    }

    /// Feed segments in order (each with its own ts); returns the events and
    /// the first error. Checks that feeds after an error are no-ops.
    fn run(role: Role, segs: &[(Segment<'_>, u64)]) -> (Vec<Http1Event>, Result<(), ParseError>) {
        let mut p = Http1Parser::new(role);
        let mut out = Vec::new();
        let mut res = Ok(());
        for (seg, ts) in segs {
            let r = p.feed(*seg, *ts, &mut out);
            if res.is_ok() {
                res = r;
            } else {
                assert_eq!(r, Ok(()), "feed after an error must be a no-op");
            }
        }
        if res.is_err() {
            assert!(p.is_broken());
            let n = out.len();
            assert_eq!(
                p.feed(Segment::Data(b"GET / HTTP/1.1\r\n\r\n"), 99, &mut out),
                Ok(())
            );
            assert_eq!(out.len(), n);
        }
        (out, res)
    }

    fn whole(role: Role, input: &[u8]) -> (Vec<Http1Event>, Result<(), ParseError>) {
        run(role, &[(Segment::Data(input), 0)])
    }

    fn bytewise(role: Role, input: &[u8]) -> (Vec<Http1Event>, Result<(), ParseError>) {
        let segs: Vec<_> = input.chunks(1).map(|c| (Segment::Data(c), 0)).collect();
        run(role, &segs)
    }

    fn req_head(ev: &[Http1Event], i: usize) -> &RequestHead {
        match &ev[i] {
            E::Request { head, .. } => head,
            e => panic!("event {i} is not a request: {e:?}"),
        }
    }

    fn resp_head(ev: &[Http1Event], i: usize) -> &ResponseHead {
        match &ev[i] {
            E::Response { head, .. } => head,
            e => panic!("event {i} is not a response: {e:?}"),
        }
    }

    /// Each case: role, input => expected event kinds, expected result. The
    /// input is fed whole and one byte at a time; both must agree.
    macro_rules! cases {
        ($($name:ident: $role:ident, $input:expr => [$($k:ident),*], $res:expr;)*) => {$(
            #[test]
            fn $name() {
                let input: &[u8] = &($input)[..];
                let want: Vec<&str> = vec![$(stringify!($k)),*];
                let want_res: Result<(), ParseError> = $res;
                let (ev, res) = whole(Role::$role, input);
                assert_eq!((kinds(&ev), res), (want.clone(), want_res), "whole: {ev:?}");
                let (ev1, res1) = bytewise(Role::$role, input);
                assert_eq!(ev1, ev, "byte-by-byte events differ");
                assert_eq!(res1, res, "byte-by-byte result differs");
            }
        )*};
    }

    use ParseError::*;

    fn big_head(len: usize) -> Vec<u8> {
        // A request head of exactly `len` bytes.
        let mut v = b"GET / HTTP/1.1\r\nX-Pad: ".to_vec();
        let fill = len - v.len() - 4;
        v.extend(std::iter::repeat_n(b'a', fill));
        v.extend_from_slice(b"\r\n\r\n");
        assert_eq!(v.len(), len);
        v
    }

    const TLS_HELLO: &[u8] = &[
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, b'\n', b'\n',
    ];

    cases! {
        // --- accepted requests ---
        get_simple: Requests, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n" => [Req, ReqEnd], Ok(());
        get_lf_only: Requests, b"GET / HTTP/1.1\nHost: a\n\n" => [Req, ReqEnd], Ok(());
        get_mixed_endings: Requests, b"GET / HTTP/1.1\r\nHost: a\n\r\n" => [Req, ReqEnd], Ok(());
        get_http10: Requests, b"GET / HTTP/1.0\r\n\r\n" => [Req, ReqEnd], Ok(());
        get_http19_as_11: Requests, b"GET / HTTP/1.9\r\n\r\n" => [Req, ReqEnd], Ok(());
        custom_method_token: Requests, b"PURGE /x HTTP/1.1\r\n\r\n" => [Req, ReqEnd], Ok(());
        leading_crlf_skipped: Requests, b"\r\n\r\nGET / HTTP/1.1\r\n\r\n" => [Req, ReqEnd], Ok(());
        extra_spaces_request_line: Requests, b"GET  /a  HTTP/1.1 \r\n\r\n" => [Req, ReqEnd], Ok(());
        ows_and_empty_value: Requests, b"GET / HTTP/1.1\r\nHost:   a  \r\nX-Empty:\r\n\r\n" => [Req, ReqEnd], Ok(());
        identical_content_lengths: Requests, b"POST / HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\nabc" => [Req, ReqEnd], Ok(());
        content_length_list: Requests, b"POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\nabc" => [Req, ReqEnd], Ok(());
        content_length_zero: Requests, b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n" => [Req, ReqEnd], Ok(());
        body_incomplete: Requests, b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc" => [Req], Ok(());
        head_incomplete: Requests, b"GET / HTTP/1.1\r\nHost: a\r\n" => [], Ok(());
        chunked_wins_over_cl: Requests, b"POST / HTTP/1.1\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" => [Req, ReqEnd], Ok(());
        chunk_16_digits: Requests, b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nabc" => [Req], Ok(());
        chunk_bare_lf: Requests, b"POST / HTTP/1.1\nTransfer-Encoding: chunked\n\n3\nabc\n0\n\n" => [Req, ReqEnd], Ok(());
        obs_fold_ignored: Requests, b"GET / HTTP/1.1\r\nX-A: a\r\n  folded\r\n\r\n" => [Req, ReqEnd], Ok(());
        long_method_later_ok: Requests, b"GET / HTTP/1.1\r\n\r\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA / HTTP/1.1\r\n\r\n" => [Req, ReqEnd, Req, ReqEnd], Ok(());
        head_at_limit: Requests, big_head(MAX_HEAD) => [Req, ReqEnd], Ok(());
        // --- accepted responses ---
        resp_cl: Responses, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" => [Resp, RespEnd], Ok(());
        resp_no_reason: Responses, b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n" => [Resp, RespEnd], Ok(());
        resp_empty_reason: Responses, b"HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n" => [Resp, RespEnd], Ok(());
        resp_chunked: Responses, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n" => [Resp, RespEnd], Ok(());
        resp_204: Responses, b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" => [Resp, RespEnd, Resp, RespEnd], Ok(());
        resp_304: Responses, b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n" => [Resp, RespEnd], Ok(());
        resp_100_then_200: Responses, b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" => [Interim, Resp, RespEnd], Ok(());
        resp_103_then_200: Responses, b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" => [Interim, Resp, RespEnd], Ok(());
        resp_101: Responses, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello" => [Resp, RespEnd, Upgraded], Ok(());
        resp_close_delimited: Responses, b"HTTP/1.0 200 OK\r\n\r\nsome body" => [Resp], Ok(());
        resp_te_gzip_close_delimited: Responses, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx" => [Resp], Ok(());
        // --- another protocol ---
        garbage_binary: Requests, b"\x00\x01\x02garbage\r\n\r\n" => [], Err(NotHttp);
        tls_client_hello: Requests, TLS_HELLO => [], Err(NotHttp);
        tls_on_response_side: Responses, TLS_HELLO => [], Err(NotHttp);
        ssh_banner_req: Requests, b"SSH-2.0-OpenSSH_8.9\r\n" => [], Err(NotHttp);
        ssh_banner_resp: Responses, b"SSH-2.0-OpenSSH_8.9\r\n" => [], Err(NotHttp);
        word_then_text: Requests, b"hello world\r\n\r\n" => [], Err(NotHttp);
        h2_preface: Requests, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" => [], Err(NotHttp);
        long_first_token: Requests, b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA / HTTP/1.1\r\n\r\n" => [], Err(NotHttp);
        leading_space: Requests, b" GET / HTTP/1.1\r\n\r\n" => [], Err(NotHttp);
        redis_resp: Responses, b"+OK\r\n" => [], Err(NotHttp);
        // --- bad request lines ---
        get_without_target: Requests, b"GET\r\n\r\n" => [], Err(BadRequestLine);
        get_without_version: Requests, b"GET /\r\n\r\n" => [], Err(BadRequestLine);
        get_http2_version: Requests, b"GET / HTTP/2.0\r\n\r\n" => [], Err(BadRequestLine);
        get_bad_version: Requests, b"GET / HTTX/1.1\r\n\r\n" => [], Err(BadRequestLine);
        target_with_ctl: Requests, b"GET /a\x01b HTTP/1.1\r\n\r\n" => [], Err(BadRequestLine);
        later_tls_is_bad_line: Requests, [b"GET / HTTP/1.1\r\n\r\n".as_slice(), TLS_HELLO].concat() => [Req, ReqEnd], Err(BadRequestLine);
        later_garbage_word: Requests, b"GET / HTTP/1.1\r\n\r\nhello world\r\n\r\n" => [Req, ReqEnd], Err(BadRequestLine);
        // --- bad status lines ---
        status_letters: Responses, b"HTTP/1.1 abc OK\r\n\r\n" => [], Err(BadStatusLine);
        status_two_digits: Responses, b"HTTP/1.1 20 OK\r\n\r\n" => [], Err(BadStatusLine);
        status_four_digits: Responses, b"HTTP/1.1 2000 OK\r\n\r\n" => [], Err(BadStatusLine);
        status_below_100: Responses, b"HTTP/1.1 099 X\r\n\r\n" => [], Err(BadStatusLine);
        status_http2: Responses, b"HTTP/2.0 200 OK\r\n\r\n" => [], Err(BadStatusLine);
        status_no_space: Responses, b"HTTP/1.1200 OK\r\n\r\n" => [], Err(BadStatusLine);
        later_bad_status: Responses, b"HTTP/1.1 204 OK\r\n\r\nSSH-2.0\r\n\r\n" => [Resp, RespEnd], Err(BadStatusLine);
        // --- bad headers ---
        header_without_colon: Requests, b"GET / HTTP/1.1\r\nHost a\r\n\r\n" => [], Err(BadHeader);
        space_before_colon: Requests, b"GET / HTTP/1.1\r\nHost : a\r\n\r\n" => [], Err(BadHeader);
        empty_header_name: Requests, b"GET / HTTP/1.1\r\n: a\r\n\r\n" => [], Err(BadHeader);
        ctl_in_value: Requests, b"GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n" => [], Err(BadHeader);
        bare_cr_in_value: Requests, b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n" => [], Err(BadHeader);
        cl_abc: Requests, b"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n" => [], Err(BadHeader);
        cl_negative: Requests, b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n" => [], Err(BadHeader);
        cl_plus: Requests, b"POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n" => [], Err(BadHeader);
        cl_empty: Requests, b"POST / HTTP/1.1\r\nContent-Length:\r\n\r\n" => [], Err(BadHeader);
        cl_overflow: Requests, b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n" => [], Err(BadHeader);
        cl_conflict: Requests, b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n" => [], Err(BadHeader);
        cl_list_conflict: Requests, b"POST / HTTP/1.1\r\nContent-Length: 3, 4\r\n\r\n" => [], Err(BadHeader);
        cl_conflict_response: Responses, b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n" => [], Err(BadHeader);
        te_not_chunked_request: Requests, b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n" => [], Err(BadHeader);
        obs_fold_first: Requests, b"GET / HTTP/1.1\r\n folded\r\n\r\n" => [], Err(BadHeader);
        obs_fold_after_cl: Requests, b"GET / HTTP/1.1\r\nContent-Length: 1\r\n 2\r\n\r\n" => [], Err(BadHeader);
        // --- bad chunks ---
        chunk_size_zz: Requests, b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n" => [Req], Err(BadChunk);
        chunk_size_empty: Requests, b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\r\n" => [Req], Err(BadChunk);
        chunk_17_digits: Requests, b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n" => [Req], Err(BadChunk);
        chunk_size_junk_after: Requests, b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3x\r\n" => [Req], Err(BadChunk);
        chunk_data_no_crlf: Requests, b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX" => [Req], Err(BadChunk);
        chunk_cr_without_lf: Requests, b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\rX" => [Req], Err(BadChunk);
        // --- limits ---
        head_too_long: Requests, big_head(MAX_HEAD + 1) => [], Err(HeadTooLong);
        head_too_long_unterminated: Requests, [b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'a'; MAX_HEAD]].concat() => [], Err(HeadTooLong);
        response_head_too_long: Responses, [b"HTTP/1.1 200 OK\r\nX: ".as_slice(), &[b'a'; MAX_HEAD]].concat() => [], Err(HeadTooLong);
    }

    // ----------------------------------------------------------- scenarios

    #[test]
    fn keep_alive_three_requests() {
        let r1 = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n";
        let r2 = b"POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello";
        let r3 = b"DELETE /c/9 HTTP/1.1\r\nHost: h\r\n\r\n";
        let (ev, res) = run(
            Role::Requests,
            &[
                (Segment::Data(r1), 10),
                (Segment::Data(r2), 20),
                (Segment::Data(r3), 30),
            ],
        );
        assert_eq!(res, Ok(()));
        assert_eq!(
            kinds(&ev),
            ["Req", "ReqEnd", "Req", "ReqEnd", "Req", "ReqEnd"]
        );
        assert_eq!(req_head(&ev, 0).target, "/a");
        assert_eq!(req_head(&ev, 2).method, "POST");
        assert_eq!(req_head(&ev, 2).content_length, Some(5));
        assert_eq!(req_head(&ev, 4).method, "DELETE");
        assert_eq!(
            ev[3],
            E::RequestEnd {
                end_ts: 20,
                body_bytes: 5
            }
        );
        assert_eq!(
            ev[5],
            E::RequestEnd {
                end_ts: 30,
                body_bytes: 0
            }
        );
        assert!(matches!(ev[4], E::Request { start_ts: 30, .. }));
    }

    #[test]
    fn pipelined_three_requests_in_one_segment() {
        let input = b"GET /1 HTTP/1.1\r\n\r\nPOST /2 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /3 HTTP/1.1\r\n\r\n";
        let mut p = Http1Parser::new(Role::Requests);
        let mut ev = Vec::new();
        assert_eq!(p.feed(Segment::Data(input), 7, &mut ev), Ok(()));
        assert_eq!(
            kinds(&ev),
            ["Req", "ReqEnd", "Req", "ReqEnd", "Req", "ReqEnd"]
        );
        let targets: Vec<_> = [0, 2, 4]
            .iter()
            .map(|&i| req_head(&ev, i).target.clone())
            .collect();
        assert_eq!(targets, ["/1", "/2", "/3"]);
        assert_eq!(
            ev[3],
            E::RequestEnd {
                end_ts: 7,
                body_bytes: 3
            }
        );
        assert!(p.is_idle());
    }

    const SPLIT_REQ: &[u8] =
        b"POST /upload?x=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t/1\r\n\
Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n\
4;name=val\r\nWiki\r\n5 ; a=\"b\"\r\npedia\r\n0\r\nX-Trailer: 1\r\n\r\n\
GET /next HTTP/1.1\r\n\r\n";
    const SPLIT_RESP: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n\
HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7;ext\r\nchunked\r\n0\r\nTrailer: x\r\n\r\n\
HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody";

    #[test]
    fn split_at_every_position_gives_same_events() {
        for (role, input) in [(Role::Requests, SPLIT_REQ), (Role::Responses, SPLIT_RESP)] {
            let (want, res) = whole(role, input);
            assert_eq!(res, Ok(()));
            for i in 0..=input.len() {
                let (a, b) = input.split_at(i);
                let (ev, res) = run(role, &[(Segment::Data(a), 0), (Segment::Data(b), 0)]);
                assert_eq!(res, Ok(()), "split at {i}");
                assert_eq!(ev, want, "split at {i}");
            }
            // Every pair of split points (three segments).
            for i in 0..=input.len() {
                for j in i..=input.len() {
                    let segs = [
                        (Segment::Data(&input[..i]), 0),
                        (Segment::Data(&input[i..j]), 0),
                        (Segment::Data(&input[j..]), 0),
                    ];
                    let (ev, res) = run(role, &segs);
                    assert_eq!(res, Ok(()), "split at {i},{j}");
                    assert_eq!(ev, want, "split at {i},{j}");
                }
            }
        }
    }

    #[test]
    fn split_pair_events_are_right() {
        let (ev, _) = whole(Role::Requests, SPLIT_REQ);
        assert_eq!(kinds(&ev), ["Req", "ReqEnd", "Req", "ReqEnd"]);
        let h = req_head(&ev, 0);
        assert_eq!(h.method, "POST");
        assert_eq!(h.target, "/upload?x=1");
        assert!(h.chunked && h.expect_continue);
        assert_eq!(h.host.as_deref(), Some("example.com"));
        assert_eq!(h.user_agent.as_deref(), Some("t/1"));
        assert_eq!(
            ev[1],
            E::RequestEnd {
                end_ts: 0,
                body_bytes: 9
            }
        );
        let (ev, _) = whole(Role::Responses, SPLIT_RESP);
        assert_eq!(
            kinds(&ev),
            ["Interim", "Resp", "RespEnd", "Resp", "RespEnd"]
        );
        assert_eq!(ev[0], E::Interim { status: 100, ts: 0 });
        assert!(resp_head(&ev, 1).chunked);
        assert_eq!(
            ev[2],
            E::ResponseEnd {
                end_ts: 0,
                body_bytes: 7
            }
        );
        assert_eq!(
            ev[4],
            E::ResponseEnd {
                end_ts: 0,
                body_bytes: 4
            }
        );
    }

    #[test]
    fn one_byte_segments_with_timestamps() {
        let input = b"\r\nPOST /p HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
        // Byte k arrives at ts 100 + k.
        let segs: Vec<_> = input
            .iter()
            .enumerate()
            .map(|(k, b)| (Segment::Data(std::slice::from_ref(b)), 100 + k as u64))
            .collect();
        let (ev, res) = run(Role::Requests, &segs);
        assert_eq!(res, Ok(()));
        assert_eq!(kinds(&ev), ["Req", "ReqEnd"]);
        // The leading CRLF is not part of the message.
        assert!(matches!(ev[0], E::Request { start_ts: 102, .. }));
        let last = 100 + input.len() as u64 - 1;
        assert_eq!(
            ev[1],
            E::RequestEnd {
                end_ts: last,
                body_bytes: 3
            }
        );
    }

    #[test]
    fn start_ts_is_segment_of_first_byte() {
        let (ev, _) = run(
            Role::Requests,
            &[
                (Segment::Data(b"GE"), 10),
                (Segment::Data(b"T / HTTP/1.1\r\nHost: x\r\n"), 20),
                (Segment::Data(b"\r\n"), 30),
            ],
        );
        assert!(matches!(ev[0], E::Request { start_ts: 10, .. }));
        assert_eq!(
            ev[1],
            E::RequestEnd {
                end_ts: 30,
                body_bytes: 0
            }
        );
        let (ev, _) = run(
            Role::Responses,
            &[
                (
                    Segment::Data(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab"),
                    5,
                ),
                (Segment::Data(b"cd"), 6),
            ],
        );
        assert!(matches!(ev[0], E::Response { start_ts: 5, .. }));
        assert_eq!(
            ev[1],
            E::ResponseEnd {
                end_ts: 6,
                body_bytes: 4
            }
        );
    }

    #[test]
    fn chunked_response_with_extensions_and_trailers() {
        let input = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
1a;foo=bar;baz\r\nabcdefghijklmnopqrstuvwxyz\r\n\
10 \t;q=\"x;y\"\r\n0123456789abcdef\r\n\
0;last\r\nExpires: never\r\nX-Checksum: abc\r\n\r\n";
        let (ev, res) = whole(Role::Responses, input);
        assert_eq!(res, Ok(()));
        assert_eq!(kinds(&ev), ["Resp", "RespEnd"]);
        assert!(resp_head(&ev, 0).chunked);
        assert_eq!(
            ev[1],
            E::ResponseEnd {
                end_ts: 0,
                body_bytes: 26 + 16
            }
        );
        assert_eq!(bytewise(Role::Responses, input).0, ev);
    }

    #[test]
    fn chunked_split_across_segments() {
        let segs = [
            (
                Segment::Data(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
                1,
            ),
            (Segment::Data(b"5\r\nhel"), 2),
            (Segment::Data(b"lo\r"), 3),
            (Segment::Data(b"\nA"), 4),
            (Segment::Data(b"\r\n0123456789"), 5),
            (Segment::Data(b"\r\n0\r"), 6),
            (Segment::Data(b"\n"), 7),
            (Segment::Data(b"\r"), 8),
            (Segment::Data(b"\n"), 9),
        ];
        let (ev, res) = run(Role::Responses, &segs);
        assert_eq!(res, Ok(()));
        assert_eq!(
            ev[1],
            E::ResponseEnd {
                end_ts: 9,
                body_bytes: 15
            }
        );
    }

    #[test]
    fn content_length_body_with_gap() {
        let head = b"POST /big HTTP/1.1\r\nContent-Length: 10000\r\n\r\n";
        let segs = [
            (Segment::Data(head), 1),
            (Segment::Data(&[b'x'; 100]), 2),
            (Segment::Gap(9800), 3),
            (Segment::Data(&[b'y'; 100]), 4),
            (Segment::Data(b"GET / HTTP/1.1\r\n\r\n"), 5),
        ];
        let (ev, res) = run(Role::Requests, &segs);
        assert_eq!(res, Ok(()));
        assert_eq!(kinds(&ev), ["Req", "ReqEnd", "Req", "ReqEnd"]);
        assert_eq!(
            ev[1],
            E::RequestEnd {
                end_ts: 4,
                body_bytes: 10000
            }
        );
        // Gap ending exactly at the body end.
        let segs = [(Segment::Data(head), 1), (Segment::Gap(10000), 2)];
        let (ev, res) = run(Role::Requests, &segs);
        assert_eq!(res, Ok(()));
        assert_eq!(
            ev[1],
            E::RequestEnd {
                end_ts: 2,
                body_bytes: 10000
            }
        );
    }

    #[test]
    fn gap_past_body_end_is_gap_in_head() {
        let head = b"POST /big HTTP/1.1\r\nContent-Length: 10\r\n\r\n";
        let (ev, res) = run(
            Role::Requests,
            &[(Segment::Data(head), 1), (Segment::Gap(11), 2)],
        );
        assert_eq!(kinds(&ev), ["Req", "ReqEnd"]);
        assert_eq!(res, Err(GapInHead));
    }

    #[test]
    fn chunked_body_with_gap_inside_chunk_data() {
        let segs = [
            (
                Segment::Data(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2710\r\n"),
                1,
            ),
            (Segment::Data(&[b'z'; 50]), 2),
            (Segment::Gap(9950), 3),
            (Segment::Data(b"\r\n3\r\nabc\r\n0\r\n\r\n"), 4),
        ];
        let (ev, res) = run(Role::Responses, &segs);
        assert_eq!(res, Ok(()));
        assert_eq!(
            ev[1],
            E::ResponseEnd {
                end_ts: 4,
                body_bytes: 10003
            }
        );
    }

    #[test]
    fn gaps_in_framing_and_heads() {
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        // In a chunk-size line.
        let (_, res) = run(
            Role::Responses,
            &[
                (Segment::Data(chunked), 1),
                (Segment::Data(b"1"), 2),
                (Segment::Gap(3), 3),
            ],
        );
        assert_eq!(res, Err(GapInChunkFraming));
        // Past the end of chunk data and its CRLF, into the next size line.
        let (_, res) = run(
            Role::Responses,
            &[
                (Segment::Data(chunked), 1),
                (Segment::Data(b"4\r\n"), 2),
                (Segment::Gap(7), 3),
            ],
        );
        assert_eq!(res, Err(GapInChunkFraming));
        // Chunk data plus its CRLF uncaptured: framing survives.
        for (gap, rest) in [(6u64, &b"0\r\n\r\n"[..]), (5, &b"\n0\r\n\r\n"[..])] {
            let (ev, res) = run(
                Role::Responses,
                &[
                    (Segment::Data(chunked), 1),
                    (Segment::Data(b"4\r\n"), 2),
                    (Segment::Gap(gap), 3),
                    (Segment::Data(rest), 4),
                ],
            );
            assert_eq!(res, Ok(()), "gap {gap}");
            assert!(
                matches!(
                    ev.last(),
                    Some(Http1Event::ResponseEnd { body_bytes: 4, .. })
                ),
                "{ev:?}"
            );
        }
        // In trailers.
        let (_, res) = run(
            Role::Responses,
            &[
                (Segment::Data(chunked), 1),
                (Segment::Data(b"0\r\nX: "), 2),
                (Segment::Gap(5), 3),
            ],
        );
        assert_eq!(res, Err(GapInChunkFraming));
        // In a header block, and between messages.
        let (_, res) = run(
            Role::Requests,
            &[
                (Segment::Data(b"GET / HTTP/1.1\r\nHo"), 1),
                (Segment::Gap(5), 2),
            ],
        );
        assert_eq!(res, Err(GapInHead));
        let (_, res) = run(Role::Requests, &[(Segment::Gap(5), 2)]);
        assert_eq!(res, Err(GapInHead));
        // A zero-length gap is nothing.
        let (ev, res) = run(
            Role::Requests,
            &[
                (Segment::Gap(0), 1),
                (Segment::Data(b"GET / HTTP/1.1\r\n\r\n"), 2),
            ],
        );
        assert_eq!((kinds(&ev), res), (vec!["Req", "ReqEnd"], Ok(())));
        // Close-delimited bodies absorb gaps.
        let mut p = Http1Parser::new(Role::Responses);
        let mut ev = Vec::new();
        p.feed(
            Segment::Data(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nab"),
            1,
            &mut ev,
        )
        .unwrap();
        p.feed(Segment::Gap(u64::MAX), 2, &mut ev).unwrap();
        p.feed(Segment::Gap(u64::MAX), 3, &mut ev).unwrap();
        assert!(!p.close(&mut ev));
        assert_eq!(
            ev[1],
            E::ResponseEnd {
                end_ts: 3,
                body_bytes: u64::MAX
            }
        );
    }

    #[test]
    fn head_response_with_content_length_has_no_body() {
        let mut p = Http1Parser::new(Role::Responses);
        let mut ev = Vec::new();
        p.expect_response(true);
        p.expect_response(false);
        let input = b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        p.feed(Segment::Data(input), 1, &mut ev).unwrap();
        assert_eq!(kinds(&ev), ["Resp", "RespEnd", "Resp", "RespEnd"]);
        assert_eq!(resp_head(&ev, 0).content_length, Some(1234));
        assert_eq!(
            ev[1],
            E::ResponseEnd {
                end_ts: 1,
                body_bytes: 0
            }
        );
        assert_eq!(
            ev[3],
            E::ResponseEnd {
                end_ts: 1,
                body_bytes: 2
            }
        );
        assert!(p.is_idle());
        // Chunked HEAD response: no body either.
        let mut p = Http1Parser::new(Role::Responses);
        let mut ev = Vec::new();
        p.expect_response_to(ResponseTo::for_method("HEAD"));
        p.feed(
            Segment::Data(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            1,
            &mut ev,
        )
        .unwrap();
        assert_eq!(kinds(&ev), ["Resp", "RespEnd"]);
    }

    #[test]
    fn expect_100_continue_flow() {
        let mut req = Http1Parser::new(Role::Requests);
        let mut resp = Http1Parser::new(Role::Responses);
        let mut rq = Vec::new();
        let mut rs = Vec::new();
        req.feed(
            Segment::Data(b"PUT /f HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\n"),
            1,
            &mut rq,
        )
        .unwrap();
        assert_eq!(kinds(&rq), ["Req"]);
        let h = req_head(&rq, 0).clone();
        assert!(h.expect_continue);
        resp.expect_response_for(&h);
        resp.feed(Segment::Data(b"HTTP/1.1 100 Continue\r\n\r\n"), 2, &mut rs)
            .unwrap();
        assert_eq!(rs, [E::Interim { status: 100, ts: 2 }]);
        assert!(resp.is_idle());
        req.feed(Segment::Data(b"12345"), 3, &mut rq).unwrap();
        assert_eq!(
            rq[1],
            E::RequestEnd {
                end_ts: 3,
                body_bytes: 5
            }
        );
        resp.feed(
            Segment::Data(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"),
            4,
            &mut rs,
        )
        .unwrap();
        assert_eq!(kinds(&rs), ["Interim", "Resp", "RespEnd"]);
        assert_eq!(resp_head(&rs, 1).status, 201);
        assert!(matches!(rs[1], E::Response { start_ts: 4, .. }));
    }

    #[test]
    fn interim_does_not_consume_head_expectation() {
        let mut p = Http1Parser::new(Role::Responses);
        let mut ev = Vec::new();
        p.expect_response(true);
        p.expect_response(false);
        let input = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n\
HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        p.feed(Segment::Data(input), 1, &mut ev).unwrap();
        assert_eq!(
            kinds(&ev),
            ["Interim", "Resp", "RespEnd", "Resp", "RespEnd"]
        );
        assert_eq!(
            ev[2],
            E::ResponseEnd {
                end_ts: 1,
                body_bytes: 0
            }
        );
        assert_eq!(
            ev[4],
            E::ResponseEnd {
                end_ts: 1,
                body_bytes: 2
            }
        );
    }

    #[test]
    fn no_body_statuses() {
        for status in ["204 No Content", "304 Not Modified"] {
            let input = format!("HTTP/1.1 {status}\r\nContent-Length: 50\r\nTransfer-Encoding: chunked\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx");
            let (ev, res) = whole(Role::Responses, input.as_bytes());
            assert_eq!(res, Ok(()));
            assert_eq!(
                kinds(&ev),
                ["Resp", "RespEnd", "Resp", "RespEnd"],
                "{status}"
            );
            assert_eq!(
                ev[1],
                E::ResponseEnd {
                    end_ts: 0,
                    body_bytes: 0
                }
            );
        }
    }

    #[test]
    fn close_delimited_response_ended_by_close() {
        for head in [
            &b"HTTP/1.0 200 OK\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n\r\n",
        ] {
            let mut p = Http1Parser::new(Role::Responses);
            let mut ev = Vec::new();
            p.feed(Segment::Data(head), 1, &mut ev).unwrap();
            p.feed(Segment::Data(b"hello "), 2, &mut ev).unwrap();
            p.feed(Segment::Gap(100), 3, &mut ev).unwrap();
            p.feed(Segment::Data(b"world"), 4, &mut ev).unwrap();
            assert_eq!(kinds(&ev), ["Resp"]);
            assert!(!p.is_idle());
            assert!(!p.close(&mut ev));
            assert_eq!(
                ev[1],
                E::ResponseEnd {
                    end_ts: 4,
                    body_bytes: 111
                }
            );
            assert!(p.is_idle());
            // Closed: further input is ignored.
            p.feed(Segment::Data(b"HTTP/1.1 200 OK\r\n\r\n"), 5, &mut ev)
                .unwrap();
            assert_eq!(ev.len(), 2);
        }
        let (ev, _) = whole(Role::Responses, b"HTTP/1.0 200 OK\r\n\r\n");
        assert!(resp_head(&ev, 0).connection_close);
        let (ev, _) = whole(
            Role::Responses,
            b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n",
        );
        assert!(!resp_head(&ev, 0).connection_close);
        let (ev, _) = whole(
            Role::Responses,
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 0\r\n\r\n",
        );
        assert!(resp_head(&ev, 0).connection_close);
    }

    #[test]
    fn close_reports_incomplete_messages() {
        let check = |role: Role, input: &[u8], want: bool| {
            let mut p = Http1Parser::new(role);
            let mut ev = Vec::new();
            let _ = p.feed(Segment::Data(input), 1, &mut ev);
            let n = ev.len();
            assert_eq!(
                p.close(&mut ev),
                want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
            assert_eq!(ev.len(), n, "close emits nothing here");
        };
        check(Role::Requests, b"GET / HTTP/1.1\r\nHost:", true);
        check(Role::Requests, b"G", true);
        check(
            Role::Requests,
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab",
            true,
        );
        check(
            Role::Requests,
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n",
            true,
        );
        check(Role::Requests, b"GET / HTTP/1.1\r\n\r\n", false);
        check(Role::Requests, b"GET / HTTP/1.1\r\n\r\n\r\n", false);
        check(Role::Requests, b"", false);
        check(Role::Requests, b"\x16\x03\x01", false); // broken: nothing pending
        check(
            Role::Responses,
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab",
            true,
        );
    }

    #[test]
    fn upgrade_101_stops_parsing() {
        let mut resp = Http1Parser::new(Role::Responses);
        let mut ev = Vec::new();
        resp.feed(Segment::Data(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x02hi"), 5, &mut ev).unwrap();
        assert_eq!(kinds(&ev), ["Resp", "RespEnd", "Upgraded"]);
        assert_eq!(resp_head(&ev, 0).status, 101);
        assert_eq!(
            ev[1],
            E::ResponseEnd {
                end_ts: 5,
                body_bytes: 0
            }
        );
        resp.feed(Segment::Data(b"\x82\x7e\x00\x00garbage"), 6, &mut ev)
            .unwrap();
        resp.feed(Segment::Gap(1000), 7, &mut ev).unwrap();
        assert_eq!(ev.len(), 3);
        assert!(resp.is_upgraded() && !resp.is_broken() && resp.is_idle());
        assert!(!resp.close(&mut ev));

        // Request side: the client's frames after an Upgrade request are not an error.
        let mut req = Http1Parser::new(Role::Requests);
        let mut ev = Vec::new();
        req.feed(
            Segment::Data(
                b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            ),
            1,
            &mut ev,
        )
        .unwrap();
        assert_eq!(
            req.feed(Segment::Data(b"\x81\x85abcd12345"), 2, &mut ev),
            Ok(())
        );
        assert_eq!(kinds(&ev), ["Req", "ReqEnd", "Upgraded"]);
        assert!(req.is_upgraded());
        // h2c: the HTTP/2 preface after the upgrade request.
        let (ev, res) = whole(Role::Requests, b"GET / HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        assert_eq!(
            (kinds(&ev), res),
            (vec!["Req", "ReqEnd", "Upgraded"], Ok(()))
        );
        // A refused upgrade: the next request parses normally.
        let (ev, res) = whole(
            Role::Requests,
            b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\nGET /2 HTTP/1.1\r\n\r\n\x16\x03",
        );
        assert_eq!(
            (kinds(&ev), res),
            (vec!["Req", "ReqEnd", "Req", "ReqEnd"], Err(BadRequestLine))
        );
        // The caller can stop the other direction explicitly.
        let mut p = Http1Parser::new(Role::Requests);
        p.mark_upgraded();
        let mut ev = Vec::new();
        assert_eq!(p.feed(Segment::Data(b"\x00\x00"), 1, &mut ev), Ok(()));
        assert!(ev.is_empty());
    }

    #[test]
    fn connect_tunnel() {
        let (ev, res) = whole(Role::Requests, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\x16\x03\x01\x00\x05hello");
        assert_eq!(
            (kinds(&ev), res),
            (vec!["Req", "ReqEnd", "Upgraded"], Ok(()))
        );
        assert_eq!(req_head(&ev, 0).target, "example.com:443");
        let mut p = Http1Parser::new(Role::Responses);
        let mut ev = Vec::new();
        p.expect_response_to(ResponseTo::Connect);
        p.feed(
            Segment::Data(b"HTTP/1.1 200 Connection Established\r\n\r\n\x16\x03\x03"),
            1,
            &mut ev,
        )
        .unwrap();
        assert_eq!(kinds(&ev), ["Resp", "RespEnd", "Upgraded"]);
        // A refused CONNECT is an ordinary response.
        let mut p = Http1Parser::new(Role::Responses);
        let mut ev = Vec::new();
        p.expect_response_to(ResponseTo::Connect);
        p.feed(
            Segment::Data(b"HTTP/1.1 407 Proxy Auth\r\nContent-Length: 2\r\n\r\nno"),
            1,
            &mut ev,
        )
        .unwrap();
        assert_eq!(kinds(&ev), ["Resp", "RespEnd"]);
        assert!(!p.is_upgraded());
    }

    #[test]
    fn request_fields() {
        let input = b"GET /a?b=c HTTP/1.0\r\nHOST: example.com:8080\r\nuser-agent:  curl/8.0 \r\n\
TraceParent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\
tracestate: a=1\r\ntracestate: b=2\r\nHost: other\r\nConnection: keep-alive\r\n\r\n";
        let (ev, _) = whole(Role::Requests, input);
        let h = req_head(&ev, 0);
        assert_eq!(
            *h,
            RequestHead {
                method: "GET".into(),
                target: "/a?b=c".into(),
                version: 10,
                host: Some("example.com:8080".into()),
                user_agent: Some("curl/8.0".into()),
                traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
                tracestate: Some("a=1,b=2".into()),
                content_length: None,
                chunked: false,
                expect_continue: false,
                connection_close: false,
            }
        );
        let (ev, _) = whole(Role::Requests, b"GET / HTTP/1.0\r\n\r\n");
        assert!(req_head(&ev, 0).connection_close);
        assert_eq!(req_head(&ev, 0).version, 10);
        let (ev, _) = whole(
            Role::Requests,
            b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n",
        );
        assert!(req_head(&ev, 0).connection_close);
        assert_eq!(req_head(&ev, 0).version, 11);
    }

    #[test]
    fn secrets_never_appear_in_events() {
        let secrets = [
            "Bearer-SECRET-TOKEN",
            "sid=COOKIE-SECRET",
            "PROXY-SECRET",
            "SETCOOKIE-SECRET",
            "APIKEY-SECRET",
        ];
        let req = b"POST /login HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer-SECRET-TOKEN\r\n\
Cookie: sid=COOKIE-SECRET\r\nProxy-Authorization: PROXY-SECRET\r\nX-Api-Key: APIKEY-SECRET\r\n\
Content-Length: 0\r\n\r\n";
        let resp = b"HTTP/1.1 200 OK\r\nSet-Cookie: SETCOOKIE-SECRET\r\nContent-Length: 0\r\n\r\n";
        let mut dumps = Vec::new();
        for (role, input) in [(Role::Requests, &req[..]), (Role::Responses, &resp[..])] {
            let (ev, res) = whole(role, input);
            assert_eq!(res, Ok(()));
            assert_eq!(ev.len(), 2);
            dumps.push(format!("{ev:?} {ev:#?}"));
            // A parser holding a partial head must not show it either.
            let mut p = Http1Parser::new(role);
            let mut ev = Vec::new();
            p.feed(Segment::Data(&input[..input.len() - 3]), 1, &mut ev)
                .unwrap();
            dumps.push(format!("{p:?} {p:#?} {ev:?}"));
        }
        for d in &dumps {
            for s in secrets {
                assert!(!d.contains(s), "secret {s} leaked in {d}");
            }
        }
    }

    #[test]
    fn idle_tracking() {
        let mut p = Http1Parser::new(Role::Requests);
        let mut ev = Vec::new();
        assert!(p.is_idle());
        p.feed(Segment::Data(b"\r\n"), 1, &mut ev).unwrap();
        assert!(p.is_idle());
        p.feed(Segment::Data(b"GET / HT"), 1, &mut ev).unwrap();
        assert!(!p.is_idle());
        p.feed(
            Segment::Data(b"TP/1.1\r\nContent-Length: 1\r\n\r\n"),
            1,
            &mut ev,
        )
        .unwrap();
        assert!(!p.is_idle());
        p.feed(Segment::Data(b"x"), 1, &mut ev).unwrap();
        assert!(p.is_idle());
        assert!(!p.is_broken());
    }

    #[test]
    fn detect_roles() {
        assert_eq!(detect(b"GET / HTTP/1.1\r\n"), Some(Role::Requests));
        assert_eq!(detect(b"POST /x HTTP/1.1"), Some(Role::Requests));
        for m in KNOWN_METHODS {
            assert_eq!(
                detect(format!("{m} /").as_bytes()),
                Some(Role::Requests),
                "{m}"
            );
        }
        assert_eq!(detect(b"HTTP/1.1 200 OK\r\n"), Some(Role::Responses));
        assert_eq!(detect(b"HTTP/1.0 404"), Some(Role::Responses));
        assert_eq!(detect(b"HTTP/2.0 200"), None);
        assert_eq!(detect(b"PURGE / HTTP/1.1"), None);
        assert_eq!(detect(b"get / HTTP/1.1"), None);
        assert_eq!(detect(b"GET"), None);
        assert_eq!(detect(b"GET/"), None);
        assert_eq!(detect(b"PRI * HTTP/2.0\r\n"), None);
        assert_eq!(detect(&[0x16, 0x03, 0x01, 0x02]), None);
        assert_eq!(detect(b""), None);
    }

    #[test]
    fn expectation_fifo_is_bounded() {
        let mut p = Http1Parser::new(Role::Responses);
        for _ in 0..10_000 {
            p.expect_response(true);
        }
        assert!(format!("{p:?}").contains("pending: 256"));
    }

    /// Cheap deterministic fuzzing in the unit tests: random mutations of
    /// valid messages, fed in random splits with random gaps, must never panic
    /// and whole-vs-split feeding of Data must agree.
    #[test]
    fn random_inputs_never_panic() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let corpus: [&[u8]; 3] = [
            SPLIT_REQ,
            SPLIT_RESP,
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
        ];
        for _ in 0..3000 {
            let mut input = corpus[(rnd() % 3) as usize].to_vec();
            for _ in 0..(rnd() % 4) {
                let i = (rnd() as usize) % input.len();
                match rnd() % 3 {
                    0 => input[i] = rnd() as u8,
                    1 => {
                        input.remove(i);
                    }
                    _ => input.insert(i, b"\r\n:; 0F"[(rnd() % 7) as usize]),
                }
            }
            for role in [Role::Requests, Role::Responses] {
                let (want, want_res) = whole(role, &input);
                let cut = (rnd() as usize) % (input.len() + 1);
                let (a, b) = input.split_at(cut);
                let (ev, res) = run(role, &[(Segment::Data(a), 0), (Segment::Data(b), 0)]);
                assert_eq!(
                    (&ev, res),
                    (&want, want_res),
                    "input {:?} cut {cut}",
                    String::from_utf8_lossy(&input)
                );
                let gap = rnd() % 64;
                let (_ev, _res) = run(
                    role,
                    &[
                        (Segment::Data(a), 0),
                        (Segment::Gap(gap), 1),
                        (Segment::Data(b), 2),
                    ],
                );
            }
        }
    }
}
