//! MySQL client/server protocol framing, one [`Framer`] per direction, and the field
//! readers the session needs. A packet is a 3-byte little-endian payload length, a
//! sequence id and the payload; a payload of exactly 0xFFFFFF bytes continues in the next
//! packet. No allocation beyond one per-direction buffer of at most [`MAX_KEEP`] bytes
//! (only for packets split across feeds; a whole packet is handed over in place).

use super::super::db::Flow;

/// The payload length that says "continued in the next packet".
pub const MAX_PAYLOAD: u32 = 0xFF_FFFF;
/// Bytes of one packet kept when it arrives in pieces; the rest is skipped by length.
pub(crate) const MAX_KEEP: usize = 64 * 1024;

// Command bytes (first payload byte of a packet with sequence id 0 toward the server).
pub const COM_QUIT: u8 = 0x01;
pub const COM_INIT_DB: u8 = 0x02;
pub const COM_QUERY: u8 = 0x03;
pub const COM_FIELD_LIST: u8 = 0x04;
pub const COM_STATISTICS: u8 = 0x09;
pub const COM_PROCESS_INFO: u8 = 0x0a;
pub const COM_PING: u8 = 0x0e;
pub const COM_CHANGE_USER: u8 = 0x11;
pub const COM_STMT_PREPARE: u8 = 0x16;
pub const COM_STMT_EXECUTE: u8 = 0x17;
pub const COM_STMT_SEND_LONG_DATA: u8 = 0x18;
pub const COM_STMT_CLOSE: u8 = 0x19;
pub const COM_STMT_RESET: u8 = 0x1a;
pub const COM_SET_OPTION: u8 = 0x1b;
pub const COM_STMT_FETCH: u8 = 0x1c;
pub const COM_RESET_CONNECTION: u8 = 0x1f;
/// MariaDB's COM_STMT_BULK_EXECUTE.
pub const COM_STMT_BULK_EXECUTE: u8 = 0xfa;

/// Whether `c` is a command a client sends (COM_SLEEP..COM_RESET_CONNECTION, and
/// MariaDB's bulk execute). COM_SLEEP (0), COM_CONNECT (0x0b), COM_TIME (0x0f),
/// COM_DELAYED_INSERT (0x10), COM_CONNECT_OUT (0x14) and COM_DAEMON (0x1d) are
/// server-internal and never sent.
pub fn known_command(c: u8) -> bool {
    matches!(c, 0x01..=0x0a | 0x0c..=0x0e | 0x11..=0x13 | 0x15..=0x1c | 0x1e..=0x20 | 0xfa)
}

// Capability flags.
pub const CLIENT_CONNECT_WITH_DB: u64 = 1 << 3;
pub const CLIENT_COMPRESS: u64 = 1 << 5;
pub const CLIENT_PROTOCOL_41: u64 = 1 << 9;
pub const CLIENT_SSL: u64 = 1 << 11;
pub const CLIENT_SECURE_CONNECTION: u64 = 1 << 15;
pub const CLIENT_PLUGIN_AUTH_LENENC_DATA: u64 = 1 << 21;
pub const CLIENT_SESSION_TRACK: u64 = 1 << 23;
pub const CLIENT_DEPRECATE_EOF: u64 = 1 << 24;
pub const CLIENT_ZSTD_COMPRESSION: u64 = 1 << 26;
pub const CLIENT_QUERY_ATTRIBUTES: u64 = 1 << 27;

// Server status flags.
pub const SERVER_MORE_RESULTS_EXISTS: u16 = 0x0008;
pub const SERVER_STATUS_CURSOR_EXISTS: u16 = 0x0040;
pub const SERVER_SESSION_STATE_CHANGED: u16 = 0x4000;

/// Session state change type carrying the new default schema.
pub const SESSION_TRACK_SCHEMA: u8 = 1;

/// Most columns a result set may have (the servers' limit is 4096).
pub const MAX_COLUMNS: u64 = 4096;

pub fn le16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}

pub fn le24(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], 0])
}

pub fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// A length-encoded integer at the start of `b`: its value and size. `None` when cut,
/// or for the 0xFB (NULL) and 0xFF (ERR) prefixes.
pub fn lenenc(b: &[u8]) -> Option<(u64, usize)> {
    let (&f, rest) = b.split_first()?;
    let n = match f {
        0..=0xfa => return Some((u64::from(f), 1)),
        0xfc => 2,
        0xfd => 3,
        0xfe => 8,
        _ => return None,
    };
    let bytes = rest.get(..n)?;
    let mut v = [0u8; 8];
    v[..n].copy_from_slice(bytes);
    Some((u64::from_le_bytes(v), 1 + n))
}

/// A length-encoded string at the start of `b` and what follows it.
pub fn lenenc_str(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let (n, k) = lenenc(b)?;
    let n = usize::try_from(n).ok()?;
    let end = k.checked_add(n)?;
    Some((b.get(k..end)?, &b[end..]))
}

/// A NUL-terminated string at the start of `b` (all of `b` when the NUL is missing) and
/// what follows it.
pub fn cstr(b: &[u8]) -> (&[u8], &[u8]) {
    match b.iter().position(|&c| c == 0) {
        Some(i) => (&b[..i], &b[i + 1..]),
        None => (b, &[]),
    }
}

/// An ERR packet's error number and SQLSTATE (`#` + five characters, protocol 4.1).
pub fn err_fields(p: &[u8]) -> (Option<u16>, Option<String>) {
    let code = p.get(1..3).map(le16);
    let state = match p.get(3..9) {
        Some([b'#', s @ ..]) if s.iter().all(u8::is_ascii_alphanumeric) => {
            Some(String::from_utf8_lossy(s).into_owned())
        }
        _ => None,
    };
    (code, state)
}

/// The status flags of an OK packet (0x00 or 0xFE header) or an EOF packet (5 bytes).
pub fn status_flags(p: &[u8]) -> Option<u16> {
    if p.first() == Some(&0xfe) && p.len() <= 5 {
        return p.get(3..5).map(le16);
    }
    let rest = p.get(1..)?;
    let (_, a) = lenenc(rest)?;
    let (_, b) = lenenc(rest.get(a..)?)?;
    rest.get(a + b..a + b + 2).map(le16)
}

/// The new default schema an OK packet's session state reports (CLIENT_SESSION_TRACK).
pub fn ok_schema(p: &[u8]) -> Option<String> {
    let rest = p.get(1..)?;
    let (_, a) = lenenc(rest)?;
    let (_, b) = lenenc(rest.get(a..)?)?;
    let rest = rest.get(a + b..)?;
    let status = le16(rest.get(..2)?);
    if status & SERVER_SESSION_STATE_CHANGED == 0 {
        return None;
    }
    // status, warnings, info, session state changes.
    let (_, rest) = lenenc_str(rest.get(4..)?)?;
    let (mut changes, _) = lenenc_str(rest)?;
    while let Some((&typ, rest)) = changes.split_first() {
        let (data, next) = lenenc_str(rest)?;
        if typ == SESSION_TRACK_SCHEMA {
            let (name, _) = lenenc_str(data)?;
            return Some(String::from_utf8_lossy(name).into_owned());
        }
        changes = next;
    }
    None
}

/// Whether a packet's payload is an EOF packet (0xFE, at most 5 bytes: protocol 4.1's
/// warnings and status, or the 1-byte old one).
pub fn is_eof(p: &[u8], len: u32) -> bool {
    p.first() == Some(&0xfe) && len <= 5
}

/// Whether a packet ends a result set's rows: EOF, or an OK with the 0xFE header
/// (CLIENT_DEPRECATE_EOF). A row never starts with 0xFE unless its first value is over
/// 16 MiB, which makes the packet 0xFFFFFF bytes long.
pub fn is_terminator(p: &[u8], len: u32) -> bool {
    p.first() == Some(&0xfe) && len < MAX_PAYLOAD
}

/// Whether `p` (a packet's first bytes, `len` in all) may start a reply to a command:
/// OK, ERR, EOF, LOCAL INFILE request or a result set's column count.
pub fn reply_start_ok(p: &[u8], len: u32) -> bool {
    match p.first() {
        Some(0x00) => len >= 7,
        Some(0xff) => len >= 3 && p.get(1..3).is_none_or(|c| le16(c) >= 1000),
        Some(0xfe) => len < 9,
        Some(0xfb) => len >= 1,
        Some(_) => match lenenc(p) {
            // The count, and MariaDB's / MySQL 8's "metadata follows" byte.
            Some((n, k)) => {
                (1..=MAX_COLUMNS).contains(&n) && (len as usize == k || len as usize == k + 1)
            }
            None => false,
        },
        None => false,
    }
}

/// Whether text bytes look like SQL or a schema name: no control bytes but tab, CR, LF.
pub fn text_ok(t: &[u8]) -> bool {
    !t.is_empty()
        && t.iter()
            .take(256)
            .all(|&c| c >= 0x20 && c != 0x7f || matches!(c, b'\t' | b'\r' | b'\n'))
}

/// Whether a command packet (seq 0, `len` bytes of payload of which `p` is the start)
/// is plausible as a client's.
pub fn command_ok(p: &[u8], len: u32) -> bool {
    let Some(&cmd) = p.first() else {
        return false;
    };
    if !known_command(cmd) {
        return false;
    }
    let body = &p[1..];
    // Text checked as far as it was captured.
    let text = |t: &[u8]| len > 1 && (t.is_empty() || text_ok(t));
    match cmd {
        COM_QUIT | COM_STATISTICS | COM_PROCESS_INFO | COM_PING | COM_RESET_CONNECTION | 0x0d => {
            len == 1
        }
        COM_QUERY => {
            // MySQL 8's query attributes prefix: no parameters, one set.
            let t = match body {
                [0, 1, t @ ..] => t,
                [0] => &[],
                t => t,
            };
            text(t)
        }
        COM_INIT_DB | COM_STMT_PREPARE | COM_FIELD_LIST => text(body),
        COM_STMT_CLOSE | COM_STMT_RESET => len == 5,
        COM_STMT_FETCH => len == 9,
        COM_SET_OPTION => len == 3,
        COM_STMT_EXECUTE => len >= 10 && body.get(5..9).is_none_or(|n| le32(n) == 1),
        COM_STMT_SEND_LONG_DATA => len >= 7,
        _ => len >= 1,
    }
}

/// What a chain of packets at the start of `data` must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chain {
    /// Commands (each with sequence id 0).
    Commands,
    /// A reply: first packet with sequence id `first_seq` (any when None), then
    /// consecutive ids.
    Reply { first_seq: Option<u8> },
}

/// Whether `data` starts at a packet boundary with plausible packets of `kind` covering
/// it (the last one may continue past its end). At least one complete header and the
/// first payload byte are needed.
pub fn chain_ok(kind: Chain, data: &[u8]) -> bool {
    if data.len() < 5 {
        return false;
    }
    let mut pos = 0usize;
    let mut prev: Option<u8> = None;
    while pos < data.len() {
        let Some(h) = data.get(pos..pos + 4) else {
            // A header cut by the end of the feed.
            return true;
        };
        let len = le24(h);
        let seq = h[3];
        let end = pos.saturating_add(4).saturating_add(len as usize);
        let whole = end <= data.len();
        let p = &data[pos + 4..end.min(data.len())];
        match kind {
            Chain::Commands => {
                if seq != 0 || len == 0 || len >= MAX_PAYLOAD {
                    return false;
                }
                if p.is_empty() {
                    // Only the header captured.
                    return pos > 0;
                }
                if !command_ok(p, len) || pos == 0 && !whole && len > 16 << 20 {
                    return false;
                }
            }
            Chain::Reply { first_seq } => {
                match prev {
                    None => {
                        if first_seq.is_some_and(|s| s != seq) || seq == 0 {
                            return false;
                        }
                        if p.is_empty() || !reply_start_ok(p, len) {
                            return false;
                        }
                    }
                    Some(ps) => {
                        if seq != ps.wrapping_add(1) {
                            return false;
                        }
                    }
                }
                prev = Some(seq);
            }
        }
        if !whole {
            return true;
        }
        pos = end;
    }
    true
}

/// One packet handed to the session. `body` holds at most [`MAX_KEEP`] bytes of the
/// payload (`len` in all); `truncated` says bytes are missing (cut or not captured).
#[derive(Debug)]
pub struct Pkt<'a> {
    pub seq: u8,
    pub len: u32,
    pub body: &'a [u8],
    pub truncated: bool,
    /// The packet continues a 0xFFFFFF-byte one (part of the same logical packet).
    pub cont: bool,
    /// ts and tid of the feed holding the first byte.
    pub ts: u64,
    pub tid: u32,
    /// ts of the feed holding the last byte.
    pub end_ts: u64,
}

/// The session side of framing.
pub trait Sink {
    /// A complete packet; false: it makes no sense (counted by the sink), the direction
    /// lost its boundaries.
    fn packet(&mut self, flow: Flow, p: Pkt<'_>) -> bool;
    /// The direction lost its packet boundaries (a gap that covered one, or `packet`
    /// said no).
    fn lost(&mut self, flow: Flow, ts: u64);
}

#[derive(Debug)]
struct Body {
    seq: u8,
    len: u32,
    remaining: u64,
    truncated: bool,
    cont: bool,
    ts: u64,
    tid: u32,
}

/// One direction's framing state.
#[derive(Debug, Default)]
pub struct Framer {
    hdr: [u8; 4],
    hdr_n: usize,
    hdr_ts: u64,
    hdr_tid: u32,
    body: Option<Body>,
    buf: Vec<u8>,
    /// The previous packet was 0xFFFFFF bytes long: the next one continues it.
    cont: bool,
    /// Boundaries unknown: bytes are skipped until the session finds one.
    pub lost: bool,
}

impl Framer {
    /// Continue at a packet boundary the session found.
    pub fn recover(&mut self) {
        self.lost = false;
        self.hdr_n = 0;
        self.body = None;
        self.cont = false;
        self.buf.clear();
    }

    /// Boundaries lost without telling the sink (the session decided it).
    pub fn drop_sync(&mut self) {
        self.lost = true;
        self.hdr_n = 0;
        self.body = None;
        self.cont = false;
        self.buf = Vec::new();
    }

    /// Whether the framer is between packets.
    pub fn at_boundary(&self) -> bool {
        !self.lost && self.hdr_n == 0 && self.body.is_none()
    }

    fn lose<S: Sink>(&mut self, flow: Flow, sink: &mut S, ts: u64) {
        self.drop_sync();
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
                let k = take.min(MAX_KEEP - self.buf.len());
                self.buf.extend_from_slice(&data[pos..pos + k]);
                b.truncated |= k < take;
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
            let take = (4 - self.hdr_n).min(data.len() - pos);
            self.hdr[self.hdr_n..self.hdr_n + take].copy_from_slice(&data[pos..pos + take]);
            self.hdr_n += take;
            pos += take;
            if self.hdr_n < 4 {
                break;
            }
            self.hdr_n = 0;
            let len = le24(&self.hdr);
            let seq = self.hdr[3];
            let cont = self.cont;
            self.cont = len == MAX_PAYLOAD;
            let avail = data.len() - pos;
            let n = len as usize;
            if n <= avail {
                // Whole payload here: handed over in place.
                let keep = n.min(MAX_KEEP);
                let p = Pkt {
                    seq,
                    len,
                    body: &data[pos..pos + keep],
                    truncated: n > MAX_KEEP,
                    cont,
                    ts: self.hdr_ts,
                    tid: self.hdr_tid,
                    end_ts: ts,
                };
                pos += n;
                if !sink.packet(flow, p) {
                    self.lose(flow, sink, ts);
                }
                continue;
            }
            self.body = Some(Body {
                seq,
                len,
                remaining: u64::from(len),
                truncated: false,
                cont,
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
        let p = Pkt {
            seq: b.seq,
            len: b.len,
            body: &self.buf,
            truncated: b.truncated,
            cont: b.cont,
            ts: b.ts,
            tid: b.tid,
            end_ts: ts,
        };
        let ok = sink.packet(flow, p);
        self.buf.clear();
        if self.buf.capacity() > 4096 {
            self.buf = Vec::new();
        }
        if !ok {
            self.lose(flow, sink, ts);
        }
    }
}
