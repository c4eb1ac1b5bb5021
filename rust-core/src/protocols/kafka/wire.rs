//! Kafka wire primitives: length-prefixed frames collected from arbitrary chunks with the
//! bytes the kernel did not capture marked as holes, and a reader over one frame that
//! decodes the protocol's types (fixed-width integers, varints, strings and arrays in
//! their classic and compact "flexible" forms, tagged fields) and fails, rather than
//! guesses, where a field lies in a hole.

/// A frame's announced length above this (or negative) is no Kafka: the stream is given
/// up (the broker's `socket.request.max.bytes` default is 100 MiB).
pub const MAX_FRAME: usize = 100 << 20;
/// Bytes kept of one frame; what follows is treated as not captured (a fetch response's
/// first partitions and batch headers come first).
pub(crate) const MAX_KEEP: usize = 1 << 20;

/// Why a field could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    /// The frame is not what its header says (a length past its end, a bad varint...).
    Bad,
    /// The field's bytes were not captured.
    Hole,
}

pub type R<T> = Result<T, Miss>;

/// One frame being collected: its first `kept` bytes (holes zero-filled, listed in
/// `holes`), the rest only counted.
#[derive(Debug, Default)]
pub struct Frame {
    pub len: usize,
    /// Bytes of the frame consumed so far (captured or not).
    pub got: usize,
    pub data: Vec<u8>,
    pub holes: Vec<(usize, usize)>,
    pub start_ts: u64,
    pub start_tid: u32,
    pub end_ts: u64,
}

impl Frame {
    pub fn new(len: usize, ts: u64, tid: u32) -> Frame {
        Frame {
            len,
            got: 0,
            data: Vec::with_capacity(len.min(4096)),
            holes: Vec::new(),
            start_ts: ts,
            start_tid: tid,
            end_ts: ts,
        }
    }

    pub fn need(&self) -> usize {
        self.len - self.got
    }

    /// Appends captured bytes (at most `need()`).
    pub fn push(&mut self, b: &[u8]) {
        let room = MAX_KEEP.saturating_sub(self.data.len());
        let keep = b.len().min(room);
        self.data.extend_from_slice(&b[..keep]);
        self.got += b.len();
    }

    /// Appends `n` uncaptured bytes (at most `need()`).
    pub fn skip(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        let start = self.got;
        let room = MAX_KEEP.saturating_sub(self.data.len());
        let fill = n.min(room);
        self.data.resize(self.data.len() + fill, 0);
        self.holes.push((start, start + n));
        self.got += n;
    }

    pub fn reader(&self) -> Rd<'_> {
        Rd {
            data: &self.data,
            holes: &self.holes,
            pos: 0,
            end: self.len,
        }
    }
}

/// A reader over one frame (positions are the frame's).
#[derive(Debug, Clone)]
pub struct Rd<'a> {
    data: &'a [u8],
    holes: &'a [(usize, usize)],
    pub pos: usize,
    pub end: usize,
}

impl<'a> Rd<'a> {
    /// A reader over plain bytes (no holes).
    pub fn plain(data: &'a [u8]) -> Rd<'a> {
        Rd {
            data,
            holes: &[],
            pos: 0,
            end: data.len(),
        }
    }

    pub fn left(&self) -> usize {
        self.end.saturating_sub(self.pos)
    }

    /// Whether `[from, to)` was captured whole.
    pub fn captured(&self, from: usize, to: usize) -> bool {
        to <= self.data.len() && !self.holes.iter().any(|&(a, b)| a < to && from < b)
    }

    pub fn bytes(&mut self, n: usize) -> R<&'a [u8]> {
        let to = self.pos.checked_add(n).ok_or(Miss::Bad)?;
        if to > self.end {
            return Err(Miss::Bad);
        }
        if !self.captured(self.pos, to) {
            return Err(Miss::Hole);
        }
        let s = &self.data[self.pos..to];
        self.pos = to;
        Ok(s)
    }

    pub fn skip(&mut self, n: usize) -> R<()> {
        let to = self.pos.checked_add(n).ok_or(Miss::Bad)?;
        if to > self.end {
            return Err(Miss::Bad);
        }
        self.pos = to;
        Ok(())
    }

    /// A reader of the next `n` bytes (this one moves past them).
    pub fn sub(&mut self, n: usize) -> R<Rd<'a>> {
        let from = self.pos;
        self.skip(n)?;
        Ok(Rd {
            data: self.data,
            holes: self.holes,
            pos: from,
            end: from + n,
        })
    }

    pub fn i8(&mut self) -> R<i8> {
        Ok(self.bytes(1)?[0] as i8)
    }
    pub fn i16(&mut self) -> R<i16> {
        let b = self.bytes(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    pub fn i32(&mut self) -> R<i32> {
        let b = self.bytes(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn i64(&mut self) -> R<i64> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }
    pub fn uuid(&mut self) -> R<[u8; 16]> {
        let b = self.bytes(16)?;
        let mut a = [0u8; 16];
        a.copy_from_slice(b);
        Ok(a)
    }

    /// Unsigned varint (at most 5 bytes: 32 bits).
    pub fn uvarint(&mut self) -> R<u32> {
        let mut v: u32 = 0;
        for i in 0..5 {
            let b = self.bytes(1)?[0];
            if i == 4 && b > 0x0f {
                return Err(Miss::Bad);
            }
            v |= ((b & 0x7f) as u32) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Miss::Bad)
    }

    /// Zigzag varint (32 bits).
    pub fn varint(&mut self) -> R<i32> {
        let u = self.uvarint()?;
        Ok(((u >> 1) as i32) ^ -((u & 1) as i32))
    }

    /// Zigzag varlong (64 bits, at most 10 bytes).
    pub fn varlong(&mut self) -> R<i64> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.bytes(1)?[0];
            if i == 9 && b > 1 {
                return Err(Miss::Bad);
            }
            v |= ((b & 0x7f) as u64) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(((v >> 1) as i64) ^ -((v & 1) as i64));
            }
        }
        Err(Miss::Bad)
    }

    /// The length of a string or bytes field: classic (i16 for strings, i32 for bytes)
    /// or compact (uvarint of length + 1); `None` for null.
    fn len_of(&mut self, flexible: bool, wide: bool) -> R<Option<usize>> {
        let n: i64 = if flexible {
            self.uvarint()? as i64 - 1
        } else if wide {
            self.i32()? as i64
        } else {
            self.i16()? as i64
        };
        if n < -1 {
            return Err(Miss::Bad);
        }
        if n == -1 {
            return Ok(None);
        }
        let n = n as usize;
        if n > self.left() {
            return Err(Miss::Bad);
        }
        Ok(Some(n))
    }

    /// A (nullable) string's bytes.
    pub fn string(&mut self, flexible: bool) -> R<Option<&'a [u8]>> {
        match self.len_of(flexible, false)? {
            Some(n) => self.bytes(n).map(Some),
            None => Ok(None),
        }
    }

    /// A (nullable) string, skipped.
    pub fn skip_string(&mut self, flexible: bool) -> R<()> {
        if let Some(n) = self.len_of(flexible, false)? {
            self.skip(n)?;
        }
        Ok(())
    }

    /// A (nullable) bytes field: a reader over it (`None` for null).
    pub fn bytes_field(&mut self, flexible: bool) -> R<Option<Rd<'a>>> {
        match self.len_of(flexible, true)? {
            Some(n) => self.sub(n).map(Some),
            None => Ok(None),
        }
    }

    /// An array's element count (`None` for a null array). Each element takes at least
    /// `min_elem` bytes: a count the frame cannot hold is malformed.
    pub fn array(&mut self, flexible: bool, min_elem: usize) -> R<Option<usize>> {
        let n: i64 = if flexible {
            self.uvarint()? as i64 - 1
        } else {
            self.i32()? as i64
        };
        if n < -1 {
            return Err(Miss::Bad);
        }
        if n == -1 {
            return Ok(None);
        }
        let n = n as usize;
        if n.saturating_mul(min_elem.max(1)) > self.left() {
            return Err(Miss::Bad);
        }
        Ok(Some(n))
    }

    /// A tagged-fields section, skipped (flexible versions only).
    pub fn skip_tags(&mut self, flexible: bool) -> R<()> {
        if !flexible {
            return Ok(());
        }
        let n = self.uvarint()? as usize;
        if n > self.left() {
            return Err(Miss::Bad);
        }
        for _ in 0..n {
            self.uvarint()?;
            let size = self.uvarint()? as usize;
            self.skip(size)?;
        }
        Ok(())
    }
}

/// Big-endian i32 of the first four bytes.
pub fn be32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

pub fn be16(b: &[u8]) -> i16 {
    i16::from_be_bytes([b[0], b[1]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_compact_fields() {
        let mut r = Rd::plain(&[0x00, 0x01, 0x02, 0x03, 0xac, 0x02, 0x96, 0x01]);
        assert_eq!(r.varint(), Ok(0));
        assert_eq!(r.varint(), Ok(-1));
        assert_eq!(r.varint(), Ok(1));
        assert_eq!(r.varint(), Ok(-2));
        assert_eq!(r.uvarint(), Ok(300));
        assert_eq!(r.varlong(), Ok(75));
        assert_eq!(r.uvarint(), Err(Miss::Bad));
        // Compact string "ab", compact null string, classic string, classic null.
        let mut r = Rd::plain(&[3, b'a', b'b', 0, 0, 1, b'c', 0xff, 0xff]);
        assert_eq!(r.string(true), Ok(Some(&b"ab"[..])));
        assert_eq!(r.string(true), Ok(None));
        assert_eq!(r.string(false), Ok(Some(&b"c"[..])));
        assert_eq!(r.string(false), Ok(None));
        // A length past the end is malformed; an over-long varint too.
        assert_eq!(Rd::plain(&[9, b'a']).string(true), Err(Miss::Bad));
        assert_eq!(Rd::plain(&[0xff; 6]).uvarint(), Err(Miss::Bad));
        // Tagged fields: two, skipped by their sizes.
        let mut r = Rd::plain(&[2, 0, 1, 9, 5, 2, 7, 7, 42]);
        assert_eq!(r.skip_tags(true), Ok(()));
        assert_eq!(r.i8(), Ok(42));
        // An array count the frame cannot hold.
        assert_eq!(Rd::plain(&[0, 0, 1, 0]).array(false, 4), Err(Miss::Bad));
    }

    #[test]
    fn holes_are_never_read() {
        let mut f = Frame::new(12, 1, 2);
        f.push(&[0, 0, 0, 7]);
        f.skip(4);
        f.push(&[0, 0, 0, 9]);
        assert_eq!(f.need(), 0);
        let mut r = f.reader();
        assert_eq!(r.i32(), Ok(7));
        assert_eq!(r.i32(), Err(Miss::Hole));
        r.skip(4).unwrap();
        assert_eq!(r.i32(), Ok(9));
        assert_eq!(r.i8(), Err(Miss::Bad));
    }

    #[test]
    fn a_long_frame_keeps_its_beginning() {
        let mut f = Frame::new(MAX_KEEP + 10, 0, 0);
        f.push(&vec![1u8; MAX_KEEP + 10]);
        assert_eq!(f.data.len(), MAX_KEEP);
        let mut r = f.reader();
        r.skip(MAX_KEEP).unwrap();
        assert_eq!(r.i8(), Err(Miss::Hole));
    }
}
