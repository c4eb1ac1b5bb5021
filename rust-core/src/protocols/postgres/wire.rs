//! Framing of the v3 protocol, one [`Framer`] per direction, and the few field
//! readers the session needs. No allocation beyond one per-direction buffer of at most
//! [`MAX_KEEP`] bytes, and only for the message types whose content is read.

use super::super::db::Flow;

/// Largest length field accepted (the server's own limit, `PQ_LARGE_MESSAGE_LIMIT`).
pub(crate) const MAX_LEN: u32 = 1 << 30;
/// Largest startup packet (the server's `MAX_STARTUP_PACKET_LENGTH`).
pub const MAX_STARTUP: u32 = 10_000;
/// Bytes of one message kept when it arrives in pieces (or handed over when whole);
/// the rest is skipped by its length.
pub(crate) const MAX_KEEP: usize = 64 * 1024;

pub const SSL_REQUEST: u32 = 80_877_103;
pub const GSSENC_REQUEST: u32 = 80_877_104;
pub const CANCEL_REQUEST: u32 = 80_877_102;

/// Message types a frontend sends (after the startup packet).
const TO_SERVER: &[u8] = b"QPBDECSHXFdcfp";
/// Message types a backend sends.
const TO_CLIENT: &[u8] = b"RSKZENA123CDITtnsGHWdcVv";

pub fn known_type(flow: Flow, t: u8) -> bool {
    match flow {
        Flow::ToServer => TO_SERVER.contains(&t),
        Flow::ToClient => TO_CLIENT.contains(&t),
    }
}

/// The length field of the types whose length never varies.
fn fixed_len(flow: Flow, t: u8) -> Option<u32> {
    match (flow, t) {
        (Flow::ToServer, b'S' | b'H' | b'X' | b'c') => Some(4),
        (Flow::ToClient, b'1' | b'2' | b'3' | b'n' | b'I' | b's' | b'c') => Some(4),
        (Flow::ToClient, b'Z') => Some(5),
        _ => None,
    }
}

/// A typed message header that a server or client could have sent.
pub fn header_ok(flow: Flow, t: u8, len: u32) -> bool {
    known_type(flow, t)
        && (4..=MAX_LEN).contains(&len)
        && fixed_len(flow, t).is_none_or(|f| f == len)
}

/// The length and code of a startup-phase packet (no type byte): StartupMessage 3.x,
/// SSLRequest, GSSENCRequest or CancelRequest.
pub fn startup_ok(len: u32, code: u32) -> bool {
    match code {
        SSL_REQUEST | GSSENC_REQUEST => len == 8,
        // 3.0: 4-byte key; 3.2 (PostgreSQL 18): up to 256 bytes.
        CANCEL_REQUEST => (16..=12 + 256).contains(&len),
        c => c >> 16 == 3 && (c & 0xffff) <= 9 && (9..=MAX_STARTUP).contains(&len),
    }
}

/// Whether `data` may begin a startup-phase packet, as far as its bytes go: a
/// StartupMessage 3.x, or with `any` also SSLRequest, GSSENCRequest or CancelRequest.
/// TLS records never do (their first byte is a content type, 20..=24).
pub fn startup_prefix(data: &[u8], any: bool) -> bool {
    if data.len() >= 8 {
        let (len, code) = (be32(data), be32(&data[4..]));
        return (any || code >> 16 == 3) && startup_ok(len, code);
    }
    if data.is_empty() || data.iter().take(2).any(|&b| b != 0) {
        return false;
    }
    if data.len() < 4 {
        return true;
    }
    if !(8..=MAX_STARTUP).contains(&be32(data)) {
        return false;
    }
    let have = &data[4..];
    let codes: &[u32] = if any {
        &[0x0003_0000, SSL_REQUEST, GSSENC_REQUEST, CANCEL_REQUEST]
    } else {
        &[0x0003_0000]
    };
    // The minor version (last two bytes of a 3.x code) is checked at 8 bytes.
    codes.iter().any(|c| {
        have.iter()
            .zip(c.to_be_bytes())
            .take(2)
            .all(|(a, b)| *a == b)
    })
}

/// Content checks of a complete message, for plausibility tests (never for framing a
/// stream already in sync: a real peer's message is taken as it is).
fn payload_ok(flow: Flow, t: u8, p: &[u8]) -> bool {
    let ends_nul = p.last() == Some(&0);
    let nuls = || p.iter().filter(|&&b| b == 0).count();
    match (flow, t) {
        (Flow::ToServer, b'Q') => ends_nul && nuls() == 1,
        (Flow::ToServer, b'P' | b'B') => nuls() >= 2,
        (Flow::ToServer, b'E') => p.len() >= 5 && p[p.len() - 5] == 0,
        (Flow::ToServer, b'D' | b'C') => matches!(p.first(), Some(b'S' | b'P')) && ends_nul,
        (Flow::ToServer, b'f') => ends_nul,
        (Flow::ToServer, b'F') => p.len() >= 10,
        (Flow::ToClient, b'Z') => matches!(p.first(), Some(b'I' | b'T' | b'E')),
        (Flow::ToClient, b'C' | b'E' | b'N') => ends_nul,
        (Flow::ToClient, b'S') => ends_nul && nuls() == 2,
        (Flow::ToClient, b'T' | b'D' | b't') => p.len() >= 2,
        (Flow::ToClient, b'R' | b'A' | b'V') => p.len() >= 4,
        (Flow::ToClient, b'K' | b'v') => p.len() >= 8,
        (Flow::ToClient, b'G' | b'H' | b'W') => p.len() >= 3,
        _ => true,
    }
}

/// Whether `data` starts at a message boundary: a chain of typed messages with known
/// types, sane lengths and plausible content that covers `data` (the last one may
/// continue past its end). At least one complete header is required.
pub fn chain_ok(flow: Flow, data: &[u8]) -> bool {
    chain(flow, data).is_some()
}

/// [`chain_ok`], returning how many messages were complete and the declared length of
/// the first one.
pub fn chain(flow: Flow, data: &[u8]) -> Option<(usize, u32)> {
    if data.len() < 5 {
        return None;
    }
    let mut pos = 0usize;
    let mut complete = 0usize;
    let mut first_len = 0u32;
    while pos < data.len() {
        let t = data[pos];
        if !known_type(flow, t) {
            return None;
        }
        if data.len() - pos < 5 {
            break;
        }
        let len = be32(&data[pos + 1..pos + 5]);
        if !header_ok(flow, t, len) {
            return None;
        }
        if pos == 0 {
            first_len = len;
        }
        let end = pos + 1 + len as usize;
        if end > data.len() {
            break;
        }
        if !payload_ok(flow, t, &data[pos + 5..end]) {
            return None;
        }
        complete += 1;
        pos = end;
    }
    Some((complete, first_len))
}

pub fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// A NUL-terminated string at the start of `b` (all of `b` when the NUL is missing,
/// e.g. in a message cut by the capture), and what follows it.
pub fn cstr(b: &[u8]) -> (&[u8], &[u8]) {
    match b.iter().position(|&c| c == 0) {
        Some(i) => (&b[..i], &b[i + 1..]),
        None => (b, &[]),
    }
}

/// The SQLSTATE (`C` field) of an ErrorResponse body; `None` when absent or not five
/// alphanumeric characters.
pub fn sqlstate(mut body: &[u8]) -> Option<String> {
    while let Some((&code, rest)) = body.split_first() {
        if code == 0 {
            break;
        }
        let (value, next) = cstr(rest);
        if code == b'C' {
            return (value.len() == 5 && value.iter().all(u8::is_ascii_alphanumeric))
                .then(|| String::from_utf8_lossy(value).into_owned());
        }
        body = next;
    }
    None
}

/// What the next bytes of a direction are, decided by the session at each boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Type byte + length (the normal case).
    Typed,
    /// Length + code, no type byte (StartupMessage, SSLRequest...).
    Startup,
    /// The single byte answering SSLRequest / GSSENCRequest.
    OneByte,
}

/// One message handed to the session. `typ` is 0 for a startup-phase packet (`body`
/// starts with the code) and the byte itself for a one-byte answer (`body` empty).
/// `body` holds at most [`MAX_KEEP`] bytes, and nothing for types the session does not
/// read; `truncated` says bytes are missing (cut at MAX_KEEP or not captured).
#[derive(Debug)]
pub struct Msg<'a> {
    pub typ: u8,
    pub body: &'a [u8],
    pub truncated: bool,
    /// ts and tid of the feed holding the first byte.
    pub ts: u64,
    pub tid: u32,
    /// ts of the feed holding the last byte.
    pub end_ts: u64,
}

/// The session side of framing.
pub trait Sink {
    fn expect(&self, flow: Flow) -> Expect;
    /// Whether the body of this type is read (else it is skipped, not copied).
    fn wants(&self, flow: Flow, typ: u8) -> bool;
    /// A complete message; false: it makes no sense (counted by the sink), the
    /// direction is lost.
    fn message(&mut self, flow: Flow, m: Msg<'_>) -> bool;
    /// A header did not parse (to count).
    fn malformed(&mut self, flow: Flow);
    /// The direction lost its message boundaries (after `malformed`, or a gap that
    /// covered one).
    fn lost(&mut self, flow: Flow, ts: u64);
}

#[derive(Debug)]
struct Body {
    typ: u8,
    remaining: u64,
    keep: bool,
    truncated: bool,
    ts: u64,
    tid: u32,
}

/// One direction's framing state.
#[derive(Debug, Default)]
pub struct Framer {
    hdr: [u8; 5],
    hdr_n: usize,
    hdr_ts: u64,
    hdr_tid: u32,
    body: Option<Body>,
    buf: Vec<u8>,
    /// Boundaries unknown: bytes are skipped until the session finds one.
    pub lost: bool,
}

impl Framer {
    /// Continue at a message boundary the session found.
    pub fn recover(&mut self) {
        self.lost = false;
        self.hdr_n = 0;
        self.body = None;
        self.buf.clear();
    }

    fn lose<S: Sink>(&mut self, flow: Flow, sink: &mut S, ts: u64) {
        self.lost = true;
        self.hdr_n = 0;
        self.body = None;
        self.buf = Vec::new();
        sink.lost(flow, ts);
    }

    #[cfg(test)]
    pub fn buf_capacity(&self) -> usize {
        self.buf.capacity()
    }

    pub fn feed<S: Sink>(
        &mut self,
        flow: Flow,
        sink: &mut S,
        data: &[u8],
        gap: u64,
        ts: u64,
        tid: u32,
    ) {
        let mut pos = 0usize;
        while pos < data.len() && !self.lost {
            if let Some(b) = self.body.as_mut() {
                let take =
                    (data.len() - pos).min(usize::try_from(b.remaining).unwrap_or(usize::MAX));
                if b.keep {
                    let k = take.min(MAX_KEEP - self.buf.len());
                    self.buf.extend_from_slice(&data[pos..pos + k]);
                    b.truncated |= k < take;
                }
                pos += take;
                b.remaining -= take as u64;
                if b.remaining == 0 {
                    self.deliver(flow, sink, ts);
                }
                continue;
            }
            if self.hdr_n == 0 {
                self.hdr_ts = ts;
                self.hdr_tid = tid;
            }
            let expect = sink.expect(flow);
            if expect == Expect::OneByte {
                let m = Msg {
                    typ: data[pos],
                    body: &[],
                    truncated: false,
                    ts,
                    tid,
                    end_ts: ts,
                };
                pos += 1;
                if !sink.message(flow, m) {
                    self.lose(flow, sink, ts);
                }
                continue;
            }
            let hlen = if expect == Expect::Startup { 4 } else { 5 };
            let take = (hlen - self.hdr_n).min(data.len() - pos);
            self.hdr[self.hdr_n..self.hdr_n + take].copy_from_slice(&data[pos..pos + take]);
            self.hdr_n += take;
            pos += take;
            if self.hdr_n < hlen {
                break;
            }
            self.hdr_n = 0;
            let (typ, len) = match expect {
                Expect::Startup => (0, be32(&self.hdr[..4])),
                _ => (self.hdr[0], be32(&self.hdr[1..5])),
            };
            let ok = match expect {
                Expect::Startup => (8..=MAX_STARTUP).contains(&len),
                _ => header_ok(flow, typ, len),
            };
            if !ok {
                sink.malformed(flow);
                self.lose(flow, sink, ts);
                break;
            }
            let body_len = u64::from(len - 4);
            let avail = (data.len() - pos) as u64;
            if body_len <= avail {
                // Whole body here: handed over in place.
                let n = body_len as usize;
                let keep = if sink.wants(flow, typ) {
                    n.min(MAX_KEEP)
                } else {
                    0
                };
                let m = Msg {
                    typ,
                    body: &data[pos..pos + keep],
                    truncated: n > MAX_KEEP,
                    ts: self.hdr_ts,
                    tid: self.hdr_tid,
                    end_ts: ts,
                };
                pos += n;
                if !sink.message(flow, m) {
                    self.lose(flow, sink, ts);
                }
                continue;
            }
            self.body = Some(Body {
                typ,
                remaining: body_len,
                keep: sink.wants(flow, typ),
                truncated: false,
                ts: self.hdr_ts,
                tid: self.hdr_tid,
            });
        }
        if gap == 0 || self.lost {
            return;
        }
        match self.body.as_mut() {
            Some(b) if gap <= b.remaining => {
                b.remaining -= gap;
                b.truncated = true;
                if b.remaining == 0 {
                    self.deliver(flow, sink, ts);
                }
            }
            // The gap covers a boundary (or starts inside a header).
            _ => self.lose(flow, sink, ts),
        }
    }

    fn deliver<S: Sink>(&mut self, flow: Flow, sink: &mut S, ts: u64) {
        let Some(b) = self.body.take() else { return };
        let m = Msg {
            typ: b.typ,
            body: &self.buf,
            truncated: b.truncated,
            ts: b.ts,
            tid: b.tid,
            end_ts: ts,
        };
        let ok = sink.message(flow, m);
        self.buf.clear();
        if self.buf.capacity() > 4096 {
            self.buf = Vec::new();
        }
        if !ok {
            self.lose(flow, sink, ts);
        }
    }
}
