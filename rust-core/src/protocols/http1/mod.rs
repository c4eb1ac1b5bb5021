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

/// The session name conn.rs gives HTTP/1 connections.
pub const NAME: &str = "http1";

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

/// `eoh_step` over `data` from state `s`, a line at a time (memchr finds the LFs with
/// SIMD): Ok(index of the LF ending the block), or Err(the state at the end).
fn find_eoh(mut s: u8, data: &[u8]) -> Result<usize, u8> {
    // The state just before `to`, from `s` at `from`, with no LF in between: only a
    // lone CR right after an LF is remembered.
    let before = |s: u8, from: usize, to: usize| match to - from {
        0 => s,
        1 if s == 1 && data[from] == b'\r' => 2,
        _ => 0,
    };
    let mut from = 0;
    for k in memchr::memchr_iter(b'\n', data) {
        if before(s, from, k) != 0 {
            return Ok(k);
        }
        s = 1;
        from = k + 1;
    }
    Err(before(s, from, data.len()))
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

impl Http1Parser {
    /// Gives back buffer capacity between messages (see `Session::compact`).
    pub fn compact(&mut self) {
        self.buf.shrink_to_fit();
        self.pending.shrink_to_fit();
    }
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
        let (end, s) = match find_eoh(self.eoh, rest) {
            Ok(k) => (Some(k), 0),
            Err(s) => (None, s),
        };
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

mod head;
use head::*;
pub mod session;
pub use session::Http1Session;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod eoh_tests {
    use super::{eoh_step, find_eoh};

    /// Every string of CR, LF and 'a' up to 7 bytes, from every state: the line-at-a-time
    /// search agrees with the byte-at-a-time scanner.
    #[test]
    fn find_eoh_agrees_with_the_byte_scanner() {
        let alphabet = [b'\r', b'\n', b'a'];
        for len in 0..=7u32 {
            for mut code in 0..3usize.pow(len) {
                let mut data = Vec::new();
                for _ in 0..len {
                    data.push(alphabet[code % 3]);
                    code /= 3;
                }
                for s0 in 0..3u8 {
                    let mut s = s0;
                    let mut want = Err(0);
                    for (k, &b) in data.iter().enumerate() {
                        let (ns, done) = eoh_step(s, b);
                        if done {
                            want = Ok(k);
                            break;
                        }
                        s = ns;
                    }
                    if want.is_err() {
                        want = Err(s);
                    }
                    assert_eq!(find_eoh(s0, &data), want, "{data:?} from {s0}");
                }
            }
        }
    }
}
