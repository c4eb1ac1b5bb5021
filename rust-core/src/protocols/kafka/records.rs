//! Record batches (magic 2; legacy message sets of magic 0 and 1 are counted) inside a
//! Produce request's or a Fetch response's `records`: the first offset, the number of
//! records, and the `traceparent` record headers (span links). Compressed batches (gzip,
//! snappy in its raw and xerial-framed forms, lz4 frames, zstd) are decompressed only to
//! read the record headers, at most [`MAX_DECOMPRESSED`] bytes of each; a batch that does
//! not decompress is counted, never guessed.

use std::io::Read;

use super::wire::{Miss, Rd, R};
use crate::protocols::messaging::MsgContext;

/// Decompressed bytes read per batch (record headers come first in each record).
pub const MAX_DECOMPRESSED: usize = 1 << 20;
/// Span links kept per operation.
pub const MAX_LINKS: usize = 64;

/// What a `records` field told.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Records {
    /// The first batch's base offset.
    pub first_offset: Option<i64>,
    /// Data records in the complete batches.
    pub count: u64,
    /// Some batch header was not captured: `count` is a lower bound only.
    pub incomplete: bool,
    pub links: Vec<MsgContext>,
    /// Compressed batches whose records could not be read.
    pub undecompressed: u64,
    /// The bytes are no record batches.
    pub malformed: bool,
}

impl Records {
    /// The record count when every batch header was read.
    pub fn known_count(&self) -> Option<u64> {
        (!self.incomplete).then_some(self.count)
    }
}

pub fn add_link(links: &mut Vec<MsgContext>, c: MsgContext) {
    if links.len() < MAX_LINKS && !links.contains(&c) {
        links.push(c);
    }
}

/// Walks the batches of a `records` field.
pub fn parse(mut r: Rd<'_>) -> Records {
    let mut out = Records::default();
    while r.left() >= 12 {
        let head = (r.i64(), r.i32());
        let (base, len) = match head {
            (Ok(b), Ok(l)) => (b, l),
            (Err(Miss::Bad), _) | (_, Err(Miss::Bad)) => {
                out.malformed = true;
                break;
            }
            _ => {
                // The batch header was not captured: its length too, so the rest is lost.
                out.incomplete = true;
                break;
            }
        };
        if len < 0 {
            out.malformed = true;
            break;
        }
        let len = len as usize;
        if len > r.left() {
            // A fetch response may end with a partial batch (cut at the partition's
            // byte limit): not delivered to the consumer, not counted.
            break;
        }
        let Ok(mut b) = r.sub(len) else { break };
        // partitionLeaderEpoch, then magic.
        let magic = match b.skip(4).and_then(|_| b.i8()) {
            Ok(m) => m,
            Err(Miss::Hole) => {
                out.incomplete = true;
                continue;
            }
            Err(Miss::Bad) => {
                out.malformed = true;
                break;
            }
        };
        match magic {
            2 => batch_v2(base, b, &mut out),
            0 | 1 => legacy(base, magic, b, &mut out),
            _ => {
                out.malformed = true;
                break;
            }
        }
    }
    out
}

fn batch_v2(base: i64, mut b: Rd<'_>, out: &mut Records) {
    // crc, attributes, lastOffsetDelta, baseTimestamp, maxTimestamp, producerId,
    // producerEpoch, baseSequence, records count.
    let head = (|| -> R<(i16, i32)> {
        b.skip(4)?;
        let attrs = b.i16()?;
        b.skip(4 + 8 + 8 + 8 + 2 + 4)?;
        Ok((attrs, b.i32()?))
    })();
    let (attrs, count) = match head {
        Ok(h) => h,
        Err(Miss::Hole) => {
            out.incomplete = true;
            return;
        }
        Err(Miss::Bad) => {
            out.malformed = true;
            return;
        }
    };
    debug_assert!(b.pos <= b.end);
    if attrs & 0x20 != 0 || count <= 0 {
        // A control batch (transaction markers): no messages.
        if count < 0 {
            out.malformed = true;
        }
        return;
    }
    out.first_offset.get_or_insert(base);
    out.count += count as u64;
    let codec = attrs & 0x07;
    if codec == 0 {
        headers(b, count as usize, &mut out.links);
        return;
    }
    let Ok(raw) = b.bytes(b.left()) else {
        // Part of the compressed bytes was not captured.
        out.undecompressed += 1;
        return;
    };
    match decompress(codec, raw) {
        Some(plain) => headers(Rd::plain(&plain), count as usize, &mut out.links),
        None => out.undecompressed += 1,
    }
}

/// Magic 0 and 1 messages: one message each (a compressed wrapper holds an unknown number).
fn legacy(base: i64, magic: i8, mut b: Rd<'_>, out: &mut Records) {
    // crc was read as part of the 4 bytes skipped before magic; then attributes.
    match b.i8() {
        Ok(attrs) => {
            out.first_offset.get_or_insert(base);
            if attrs & 0x07 != 0 {
                out.incomplete = true;
            } else {
                out.count += 1;
            }
            let _ = magic;
        }
        Err(Miss::Hole) => out.incomplete = true,
        Err(Miss::Bad) => out.malformed = true,
    }
}

/// Reads the records' headers for `traceparent` (stops at the first field not captured).
fn headers(mut r: Rd<'_>, count: usize, links: &mut Vec<MsgContext>) {
    for _ in 0..count {
        if r.left() == 0 || record(&mut r, links).is_err() {
            return;
        }
    }
}

fn record(r: &mut Rd<'_>, links: &mut Vec<MsgContext>) -> R<()> {
    let len = r.varint()?;
    if len < 0 {
        return Err(Miss::Bad);
    }
    let mut rec = r.sub(len as usize)?;
    rec.i8()?; // attributes
    rec.varlong()?; // timestamp delta
    rec.varint()?; // offset delta
    let key = rec.varint()?;
    if key > 0 {
        rec.skip(key as usize)?;
    }
    let value = rec.varint()?;
    if value > 0 {
        rec.skip(value as usize)?;
    }
    let n = rec.varint()?;
    if n < 0 || n as usize > rec.left() {
        return Err(Miss::Bad);
    }
    for _ in 0..n {
        let klen = rec.varint()?;
        if klen < 0 {
            return Err(Miss::Bad);
        }
        let k = rec.bytes(klen as usize)?;
        let vlen = rec.varint()?;
        if vlen < 0 {
            continue;
        }
        if k == b"traceparent" {
            if let Some(c) = traceparent(rec.bytes(vlen as usize)?) {
                add_link(links, c);
            }
        } else {
            rec.skip(vlen as usize)?;
        }
    }
    Ok(())
}

fn hex(b: &[u8], out: &mut [u8]) -> Option<()> {
    if b.len() != out.len() * 2 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        let d = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        *o = d(b[2 * i])? << 4 | d(b[2 * i + 1])?;
    }
    Some(())
}

/// A W3C `traceparent` value; `None` when malformed or invalid (zero ids, version ff).
pub fn traceparent(v: &[u8]) -> Option<MsgContext> {
    if v.len() < 55 || (v.len() > 55 && v[55] != b'-') {
        return None;
    }
    if v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let mut ver = [0u8; 1];
    hex(&v[..2], &mut ver)?;
    if ver[0] == 0xff || (ver[0] == 0 && v.len() != 55) {
        return None;
    }
    let mut c = MsgContext {
        trace_id: [0; 16],
        span_id: [0; 8],
        flags: 0,
    };
    hex(&v[3..35], &mut c.trace_id)?;
    hex(&v[36..52], &mut c.span_id)?;
    let mut f = [0u8; 1];
    hex(&v[53..55], &mut f)?;
    c.flags = f[0];
    if c.trace_id == [0; 16] || c.span_id == [0; 8] {
        return None;
    }
    Some(c)
}

/// Xerial snappy framing (snappy-java's SnappyOutputStream, used by Kafka's Java clients):
/// a magic header, then blocks of a big-endian length and a raw snappy block.
const XERIAL: &[u8] = b"\x82SNAPPY\x00";

fn snappy(raw: &[u8]) -> Option<Vec<u8>> {
    let mut dec = snap::raw::Decoder::new();
    let block = |b: &[u8], out: &mut Vec<u8>, dec: &mut snap::raw::Decoder| -> Option<()> {
        let n = snap::raw::decompress_len(b).ok()?;
        if out.len() + n > MAX_DECOMPRESSED {
            // Only what fits: a partial last block cannot be decoded, stop before it.
            return None;
        }
        let at = out.len();
        out.resize(at + n, 0);
        dec.decompress(b, &mut out[at..]).ok()?;
        Some(())
    };
    let mut out = Vec::new();
    if raw.len() >= 16 && raw.starts_with(XERIAL) {
        let mut p = &raw[16..];
        while p.len() >= 4 {
            let n = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize;
            let b = p.get(4..4 + n)?;
            if block(b, &mut out, &mut dec).is_none() {
                return (!out.is_empty()).then_some(out);
            }
            p = &p[4 + n..];
        }
        Some(out)
    } else {
        block(raw, &mut out, &mut dec)?;
        Some(out)
    }
}

fn bounded(mut r: impl Read) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut chunk = [0u8; 8192];
    while out.len() < MAX_DECOMPRESSED {
        let want = chunk.len().min(MAX_DECOMPRESSED - out.len());
        match r.read(&mut chunk[..want]) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            // What decoded before an error (a cut stream) still holds whole records.
            Err(_) if !out.is_empty() => break,
            Err(_) => return None,
        }
    }
    Some(out)
}

/// The first [`MAX_DECOMPRESSED`] bytes of a batch's records; `None` if the codec is
/// unknown or the bytes do not decode.
pub fn decompress(codec: i16, raw: &[u8]) -> Option<Vec<u8>> {
    match codec {
        1 => bounded(flate2::read::GzDecoder::new(raw)),
        2 => snappy(raw),
        3 => bounded(lz4_flex::frame::FrameDecoder::new(raw)),
        4 => bounded(zstd::stream::read::Decoder::with_buffer(raw).ok()?),
        _ => None,
    }
}
