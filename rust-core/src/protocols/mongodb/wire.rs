//! MongoDB wire protocol framing: the 16-byte header (messageLength, requestID,
//! responseTo, opCode, little-endian i32s), OP_MSG flags and sections, OP_QUERY and
//! OP_REPLY, and OP_COMPRESSED decompression (snappy, zlib, zstd), bounded.

use std::io::Read;

pub const OP_REPLY: i32 = 1;
pub const OP_UPDATE: i32 = 2001;
pub const OP_INSERT: i32 = 2002;
pub const OP_QUERY: i32 = 2004;
pub const OP_GET_MORE: i32 = 2005;
pub const OP_DELETE: i32 = 2006;
pub const OP_KILL_CURSORS: i32 = 2007;
pub const OP_COMPRESSED: i32 = 2012;
pub const OP_MSG: i32 = 2013;

pub const HEADER: usize = 16;
/// The smallest message: a header and 5 bytes (an empty OP_KILL_CURSORS is 24; an OP_MSG
/// with an empty body 26).
pub const MIN_LEN: u32 = 21;
/// The largest message accepted (the server's maxMessageSizeBytes is 48,000,000).
pub(crate) const MAX_LEN: u32 = 48 * 1024 * 1024;
/// Bytes of a message kept for parsing (the rest is skipped by length): the command's
/// name, collection and options come first; a reply's error fields are small.
pub const KEEP: usize = 64 * 1024;
/// Bytes of an OP_COMPRESSED message kept (compressed data).
pub const KEEP_COMPRESSED: usize = 256 * 1024;
/// Decompressed bytes produced at most: the first [`KEEP`] of the original message body
/// for zlib and zstd (streamed); snappy needs the whole output, so a message whose
/// uncompressedSize is larger than this is not decompressed.
pub const MAX_SNAPPY: usize = 4 * 1024 * 1024;

/// OP_MSG flagBits.
pub const CHECKSUM_PRESENT: u32 = 1;
pub const MORE_TO_COME: u32 = 1 << 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub len: u32,
    pub request_id: i32,
    pub response_to: i32,
    pub op_code: i32,
}

pub fn le32(b: &[u8]) -> Option<i32> {
    Some(i32::from_le_bytes(b.get(..4)?.try_into().ok()?))
}

pub fn known_opcode(op: i32) -> bool {
    matches!(
        op,
        OP_REPLY
            | OP_UPDATE
            | OP_INSERT
            | OP_QUERY
            | OP_GET_MORE
            | OP_DELETE
            | OP_KILL_CURSORS
            | OP_COMPRESSED
            | OP_MSG
    )
}

impl Header {
    /// The header at `b[..16]`, if its length is in range and its opcode known.
    pub fn parse(b: &[u8]) -> Option<Header> {
        let len = u32::try_from(le32(b)?).ok()?;
        let h = Header {
            len,
            request_id: le32(b.get(4..)?)?,
            response_to: le32(b.get(8..)?)?,
            op_code: le32(b.get(12..)?)?,
        };
        ((MIN_LEN..=MAX_LEN).contains(&len) && known_opcode(h.op_code)).then_some(h)
    }
}

/// One message: its header and the captured start of what follows it.
#[derive(Debug)]
pub struct Msg<'a> {
    pub h: Header,
    pub body: &'a [u8],
    /// Every byte was captured (body is the whole message after the header).
    pub whole: bool,
    pub first_ts: u64,
    pub first_tid: u32,
    pub last_ts: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broken {
    /// A header that is no MongoDB header.
    Malformed,
    /// Uncaptured bytes across a message boundary.
    Gap,
}

/// Splits one direction's bytes into messages, keeping the first [`KEEP`] bytes of each.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    h: Option<Header>,
    /// Bytes of the current message consumed (captured or skipped).
    seen: u64,
    whole: bool,
    keep: usize,
    first_ts: u64,
    first_tid: u32,
}

impl Framer {
    pub fn reset(&mut self) {
        self.buf.clear();
        if self.buf.capacity() > KEEP {
            self.buf = Vec::new();
        }
        self.h = None;
        self.seen = 0;
    }

    pub fn feed(
        &mut self,
        mut data: &[u8],
        gap: u64,
        ts: u64,
        tid: u32,
        on: &mut dyn FnMut(Msg<'_>),
    ) -> Result<(), Broken> {
        while !data.is_empty() {
            if self.seen == 0 {
                self.first_ts = ts;
                self.first_tid = tid;
                self.whole = true;
                self.buf.clear();
            }
            let Some(h) = self.h else {
                let n = (HEADER - self.buf.len()).min(data.len());
                self.buf.extend_from_slice(&data[..n]);
                self.seen += n as u64;
                data = &data[n..];
                if self.buf.len() == HEADER {
                    let h = Header::parse(&self.buf).ok_or(Broken::Malformed)?;
                    self.h = Some(h);
                    self.keep = if h.op_code == OP_COMPRESSED {
                        KEEP_COMPRESSED
                    } else {
                        KEEP
                    };
                    self.buf.clear();
                    self.end_if_done(ts, on);
                }
                continue;
            };
            let left = u64::from(h.len) - self.seen;
            let n = usize::try_from(left).unwrap_or(usize::MAX).min(data.len());
            if self.whole {
                let room = self.keep.saturating_sub(self.buf.len()).min(n);
                self.buf.extend_from_slice(&data[..room]);
            }
            self.seen += n as u64;
            data = &data[n..];
            self.end_if_done(ts, on);
        }
        if gap > 0 {
            let Some(h) = self.h.filter(|_| self.seen > 0) else {
                // A boundary (or a header) was not captured.
                self.reset();
                return Err(Broken::Gap);
            };
            let left = u64::from(h.len) - self.seen;
            self.whole = false;
            if gap > left {
                self.seen = u64::from(h.len);
                self.end_if_done(ts, on);
                return Err(Broken::Gap);
            }
            self.seen += gap;
            self.end_if_done(ts, on);
        }
        Ok(())
    }

    fn end_if_done(&mut self, ts: u64, on: &mut dyn FnMut(Msg<'_>)) {
        let Some(h) = self.h else { return };
        if self.seen < u64::from(h.len) {
            return;
        }
        on(Msg {
            h,
            body: &self.buf,
            whole: self.whole,
            first_ts: self.first_ts,
            first_tid: self.first_tid,
            last_ts: ts,
        });
        self.reset();
    }
}

/// A document sequence (OP_MSG section kind 1): its identifier, its documents' bytes
/// (as captured) and how many documents were counted.
#[derive(Debug, Clone, Copy)]
pub struct Sequence<'a> {
    pub id: &'a [u8],
    pub docs: &'a [u8],
    pub count: u64,
    /// Every document was captured (the count is exact).
    pub whole: bool,
}

/// OP_MSG contents: flags, the body (section kind 0) bytes and up to 4 sequences.
#[derive(Debug, Default)]
pub struct OpMsg<'a> {
    pub flags: u32,
    pub body: Option<&'a [u8]>,
    pub seqs: Vec<Sequence<'a>>,
}

/// Sequences kept per message (commands use one).
const MAX_SEQS: usize = 4;

/// Parses an OP_MSG's flags and sections from its captured bytes (`whole`: all of it,
/// so a checksum is at the end). None when the flags or a section kind are invalid.
pub fn op_msg(b: &[u8], whole: bool) -> Option<OpMsg<'_>> {
    let flags = le32(b)? as u32;
    // Bits 2..=15 are required: a parser must fail on unknown ones.
    if flags & 0xfffc != 0 {
        return None;
    }
    let mut p = &b[4..];
    if whole && flags & CHECKSUM_PRESENT != 0 {
        p = &p[..p.len().checked_sub(4)?];
    }
    let mut m = OpMsg {
        flags,
        ..Default::default()
    };
    while let Some((&kind, rest)) = p.split_first() {
        match kind {
            0 => {
                let len = le32(rest).and_then(|l| usize::try_from(l).ok());
                match len {
                    Some(l) if l >= 5 => {
                        if m.body.is_none() {
                            m.body = Some(&rest[..l.min(rest.len())]);
                        }
                        if rest.len() < l {
                            return Some(m);
                        }
                        p = &rest[l..];
                    }
                    None if rest.len() < 4 => {
                        m.body = m.body.or(Some(rest));
                        return Some(m);
                    }
                    _ => return None,
                }
            }
            1 => {
                let Some(size) = le32(rest).and_then(|l| usize::try_from(l).ok()) else {
                    return (rest.len() < 4).then_some(m);
                };
                if size < 5 {
                    return None;
                }
                let sec = &rest[..size.min(rest.len())];
                let sec_whole = rest.len() >= size;
                let inner = &sec[4..];
                let Some(nul) = inner.iter().position(|&c| c == 0) else {
                    return (!sec_whole).then_some(m);
                };
                let docs = &inner[nul + 1..];
                let mut count = 0u64;
                let mut q = docs;
                let mut all = sec_whole;
                while !q.is_empty() {
                    match le32(q).and_then(|l| usize::try_from(l).ok()) {
                        Some(l) if l >= 5 => {
                            count += 1;
                            if q.len() < l {
                                all = false;
                                break;
                            }
                            q = &q[l..];
                        }
                        None if q.len() < 4 => {
                            all = false;
                            break;
                        }
                        _ => return None,
                    }
                }
                if m.seqs.len() < MAX_SEQS {
                    m.seqs.push(Sequence {
                        id: &inner[..nul],
                        docs,
                        count,
                        whole: all,
                    });
                }
                if !sec_whole {
                    return Some(m);
                }
                p = &rest[size..];
            }
            _ => return None,
        }
    }
    Some(m)
}

/// OP_QUERY: fullCollectionName and the query document's bytes.
pub fn op_query(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let rest = b.get(4..)?;
    let nul = rest.iter().position(|&c| c == 0)?;
    let name = &rest[..nul];
    let doc = rest.get(nul + 1 + 8..)?;
    Some((name, doc))
}

/// OP_REPLY: responseFlags and the first document's bytes.
pub fn op_reply(b: &[u8]) -> Option<(u32, &[u8])> {
    let flags = le32(b)? as u32;
    Some((flags, b.get(20..)?))
}

/// OP_COMPRESSED: the original opcode and the decompressed start of the original
/// message after its header (at most [`KEEP`] bytes), and whether that is all of it.
/// None for an unknown compressor or data that does not decompress.
pub fn decompress(b: &[u8], whole: bool) -> Option<(i32, Vec<u8>, bool)> {
    let original = le32(b)?;
    let size = usize::try_from(le32(b.get(4..)?)?).ok()?;
    let id = *b.get(8)?;
    let data = &b[9..];
    let mut out = Vec::new();
    match id {
        0 => {
            out.extend_from_slice(&data[..data.len().min(KEEP)]);
        }
        1 => {
            // Snappy (raw): the output's size is needed whole.
            if !whole || size > MAX_SNAPPY {
                return None;
            }
            let n = snap::raw::decompress_len(data).ok()?;
            if n != size {
                return None;
            }
            out = snap::raw::Decoder::new().decompress_vec(data).ok()?;
            out.truncate(KEEP);
        }
        2 => {
            let r = flate2::read::ZlibDecoder::new(data);
            read_prefix(r, &mut out, whole)?;
        }
        3 => {
            let mut r = zstd::stream::read::Decoder::with_buffer(data)
                .ok()?
                .single_frame();
            // The decoder's window is its allocation: at most 16 MiB.
            r.window_log_max(24).ok()?;
            read_prefix(r, &mut out, whole)?;
        }
        _ => return None,
    }
    if out.len() > size {
        return None;
    }
    let all = out.len() == size;
    Some((original, out, all))
}

/// Reads up to [`KEEP`] bytes; an error after some output (truncated input) keeps it.
fn read_prefix(r: impl Read, out: &mut Vec<u8>, whole: bool) -> Option<()> {
    match r.take(KEEP as u64).read_to_end(out) {
        Ok(_) => Some(()),
        Err(_) if !whole && !out.is_empty() => Some(()),
        Err(_) => None,
    }
}
