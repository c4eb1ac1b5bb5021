//! HPACK (RFC 7541) decoder for a passive observer.
//!
//! Differences from a decoder inside an HTTP/2 endpoint, all needed because we
//! watch a connection that may have started before we did, and lose bytes:
//! * The dynamic table may hold entries we never saw ("unknown tail": older than
//!   every entry we know). References to them decode as *unknown* instead of
//!   failing the block; everything else in the block still decodes.
//! * Only the values of [`Field`]s the parser keeps are stored (table entries
//!   and output). Every other value is decoded only far enough to know its
//!   length (for the table's size accounting): Authorization, Cookie and the
//!   like are never copied anywhere.
//! * An entry whose name is unknown gets a lower-bound size. Keeping *more*
//!   entries than the encoder is harmless (it never references the extra,
//!   oldest ones; positions of newer entries are identical), evicting entries
//!   it still has is not, so every uncertainty errs on the side of keeping.
//! * Malformed input never panics: it is an [`HpackError`], after which the
//!   table state is unknown ([`Decoder::desync`]).

use std::collections::VecDeque;

use super::huffman;

/// The header fields the HTTP/2 parser keeps; every other name is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Method,
    Path,
    Authority,
    Scheme,
    Status,
    ContentType,
    UserAgent,
    Traceparent,
    Tracestate,
    GrpcTimeout,
    GrpcStatus,
    GrpcMessage,
    Other,
}

impl Field {
    /// Classifies a header name (HTTP/2 names are lowercase; anything else is `Other`).
    pub fn of(name: &[u8]) -> Field {
        match name {
            b":method" => Field::Method,
            b":path" => Field::Path,
            b":authority" => Field::Authority,
            b":scheme" => Field::Scheme,
            b":status" => Field::Status,
            b"content-type" => Field::ContentType,
            b"user-agent" => Field::UserAgent,
            b"traceparent" => Field::Traceparent,
            b"tracestate" => Field::Tracestate,
            b"grpc-timeout" => Field::GrpcTimeout,
            b"grpc-status" => Field::GrpcStatus,
            b"grpc-message" => Field::GrpcMessage,
            _ => Field::Other,
        }
    }

    /// True when the value is kept.
    pub fn kept(self) -> bool {
        self != Field::Other
    }
}

/// RFC 7541 Appendix A (index 1..=61).
pub const STATIC_TABLE: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// Largest dynamic table tracked (in HPACK's size units). Entries of a larger
/// table beyond this are forgotten and their references decode as unknown.
/// Memory per decoder stays below ~2048 entries of ~48 bytes plus the kept
/// values (at most this many bytes).
pub const MAX_TRACKED_TABLE: usize = 64 * 1024;
/// HPACK's per-entry overhead (RFC 7541 §4.1).
const ENTRY_OVERHEAD: usize = 32;
/// Integers above this are rejected (no real length, index or size is near it).
const MAX_INT: u64 = 1 << 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HpackError {
    /// Integer longer than 5 octets or above 2^32.
    Integer,
    /// The block ends inside a representation.
    Truncated,
    /// Invalid Huffman code, padding or EOS.
    Huffman,
    /// Index 0.
    ZeroIndex,
}

/// What decoding one header block gave.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockOutcome {
    /// Header fields decoded (known or unknown).
    pub fields: u32,
    /// Fields whose name (or kept value) is unknown: references to dynamic
    /// table entries we never saw.
    pub unknown: u32,
    /// Decoding stopped here; the rest of the block and the table are unknown.
    pub error: Option<HpackError>,
}

impl BlockOutcome {
    /// True when some field could not be decoded.
    pub fn undecodable(&self) -> bool {
        self.unknown > 0 || self.error.is_some()
    }
}

#[derive(Clone)]
struct Entry {
    /// `None`: the name is unknown (a literal referring to an unknown entry).
    field: Option<Field>,
    /// Kept only for kept fields.
    value: Option<Box<[u8]>>,
    /// Exact, or a lower bound when the name is unknown.
    name_len: usize,
    size: usize,
}

/// One direction's HPACK decoder.
#[derive(Clone)]
pub struct Decoder {
    /// Newest first.
    entries: VecDeque<Entry>,
    /// Sum of `entries` sizes.
    size: usize,
    /// The encoder's current maximum table size (changed by size updates).
    max_size: usize,
    /// SETTINGS_HEADER_TABLE_SIZE of the decoding side, when seen.
    limit: Option<u32>,
    /// There may be entries older than `entries` that we do not know.
    unknown_tail: bool,
    blocks: u64,
    size_updates_above_limit: u64,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for Decoder {
    // Kept values are request metadata; show only the shape.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("entries", &self.entries.len())
            .field("size", &self.size)
            .field("max_size", &self.max_size)
            .field("limit", &self.limit)
            .field("unknown_tail", &self.unknown_tail)
            .finish()
    }
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

/// Reads an HPACK integer with an `n`-bit prefix at `*p` (RFC 7541 §5.1).
fn read_int(buf: &[u8], p: &mut usize, n: u8) -> Result<u64, HpackError> {
    let mask = (1u16 << n) as u8 - 1;
    let first = *buf.get(*p).ok_or(HpackError::Truncated)?;
    *p += 1;
    let mut v = u64::from(first & mask);
    if v < u64::from(mask) {
        return Ok(v);
    }
    let mut shift = 0u32;
    loop {
        let b = *buf.get(*p).ok_or(HpackError::Truncated)?;
        *p += 1;
        v += u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 28 {
            return Err(HpackError::Integer);
        }
    }
    if v > MAX_INT {
        return Err(HpackError::Integer);
    }
    Ok(v)
}

/// Reads a string literal; appends it to `out` when given. Returns its decoded length.
fn read_string(buf: &[u8], p: &mut usize, out: Option<&mut Vec<u8>>) -> Result<usize, HpackError> {
    let huff = buf.get(*p).ok_or(HpackError::Truncated)? & 0x80 != 0;
    let len = read_int(buf, p, 7)?;
    let start = *p;
    let rest = buf.len() - start;
    if len > rest as u64 {
        return Err(HpackError::Truncated);
    }
    let raw = &buf[start..start + len as usize];
    *p += len as usize;
    if huff {
        huffman::decode(raw, out).map_err(|_| HpackError::Huffman)
    } else {
        if let Some(o) = out {
            o.extend_from_slice(raw);
        }
        Ok(raw.len())
    }
}

/// A name as resolved from an index.
enum Name {
    Known(Field, usize),
    Unknown(usize),
}

impl Decoder {
    /// A decoder whose table state is unknown (connection seen mid-stream).
    pub fn new() -> Self {
        Decoder {
            entries: VecDeque::new(),
            size: 0,
            max_size: 4096,
            limit: None,
            unknown_tail: true,
            blocks: 0,
            size_updates_above_limit: 0,
            scratch: Vec::new(),
        }
    }

    /// The connection was seen from its start: the table is known to be empty.
    /// No effect once a block was decoded.
    pub fn mark_fresh(&mut self) {
        if self.blocks == 0 {
            self.entries.clear();
            self.size = 0;
            self.unknown_tail = false;
        }
    }

    /// Forget the table: bytes of this direction's header blocks were lost, so
    /// entries may have been added that we did not see.
    pub fn desync(&mut self) {
        self.entries.clear();
        self.size = 0;
        self.unknown_tail = true;
    }

    /// True when some references may be unknown.
    pub fn is_desynchronised(&self) -> bool {
        self.unknown_tail
    }

    /// SETTINGS_HEADER_TABLE_SIZE announced by the decoding side. The encoder
    /// changes its table size only with size updates, which must stay at or
    /// below this; violations are counted, and applied as the encoder did.
    pub fn set_limit(&mut self, limit: u32) {
        self.limit = Some(limit);
    }

    /// Number of dynamic table size updates above the announced limit.
    pub fn size_updates_above_limit(&self) -> u64 {
        self.size_updates_above_limit
    }

    /// Entries currently tracked (tests and debugging).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The encoder's current table size limit.
    pub fn max_size(&self) -> usize {
        self.max_size
    }

    /// Decodes one header block, calling `sink` for every kept field. With
    /// `complete == false` the block is a captured prefix of a longer one:
    /// what it holds is decoded, then the table is forgotten.
    pub fn decode(
        &mut self,
        block: &[u8],
        complete: bool,
        sink: &mut dyn FnMut(Field, &[u8]),
    ) -> BlockOutcome {
        self.blocks += 1;
        let mut out = BlockOutcome::default();
        let mut p = 0;
        while p < block.len() {
            let b = block[p];
            let r = if b & 0x80 != 0 {
                self.indexed(block, &mut p, sink)
            } else if b & 0xc0 == 0x40 {
                self.literal(block, &mut p, 6, true, sink)
            } else if b & 0xe0 == 0x20 {
                read_int(block, &mut p, 5).map(|v| {
                    self.size_update(v);
                    true
                })
            } else {
                self.literal(block, &mut p, 4, false, sink)
            };
            match r {
                Ok(known) => {
                    if b & 0xe0 != 0x20 {
                        out.fields += 1;
                    }
                    if !known {
                        out.unknown += 1;
                    }
                }
                Err(e) => {
                    if complete || e != HpackError::Truncated {
                        out.error = Some(e);
                    }
                    self.desync();
                    return out;
                }
            }
        }
        if !complete {
            self.desync();
        }
        out
    }

    fn size_update(&mut self, v: u64) {
        if self.limit.is_some_and(|l| v > u64::from(l)) {
            self.size_updates_above_limit += 1;
        }
        // v <= MAX_INT (2^32) fits usize on 64-bit targets; saturate elsewhere.
        self.max_size = usize::try_from(v).unwrap_or(usize::MAX);
        self.evict(0);
    }

    /// Evicts until `extra` more bytes fit (RFC 7541 §4.4). Unknown entries are
    /// the oldest, so they go first.
    fn evict(&mut self, extra: usize) {
        while self.size.saturating_add(extra) > self.max_size {
            if self.unknown_tail {
                self.unknown_tail = false;
                continue;
            }
            match self.entries.pop_back() {
                Some(e) => self.size -= e.size,
                None => break,
            }
        }
    }

    fn insert(&mut self, e: Entry) {
        if e.size > self.max_size {
            self.entries.clear();
            self.size = 0;
            self.unknown_tail = false;
            return;
        }
        self.evict(e.size);
        self.size += e.size;
        self.entries.push_front(e);
        while self.size > MAX_TRACKED_TABLE {
            if let Some(old) = self.entries.pop_back() {
                self.size -= old.size;
                self.unknown_tail = true;
            }
        }
    }

    /// Resolves an index to a name. `Err` only for index 0.
    fn name_at(&mut self, idx: u64) -> Result<Name, HpackError> {
        match idx {
            0 => Err(HpackError::ZeroIndex),
            1..=61 => {
                let (n, _) = STATIC_TABLE[(idx - 1) as usize];
                Ok(Name::Known(Field::of(n.as_bytes()), n.len()))
            }
            _ => match self.entries.get((idx - 62) as usize) {
                Some(Entry {
                    field: Some(f),
                    name_len,
                    ..
                }) => Ok(Name::Known(*f, *name_len)),
                Some(e) => Ok(Name::Unknown(e.name_len)),
                None => {
                    // The encoder has entries we lack: they are older than ours.
                    self.unknown_tail = true;
                    Ok(Name::Unknown(0))
                }
            },
        }
    }

    /// Indexed header field (§6.1). Returns whether it was known.
    fn indexed(
        &mut self,
        buf: &[u8],
        p: &mut usize,
        sink: &mut dyn FnMut(Field, &[u8]),
    ) -> Result<bool, HpackError> {
        let idx = read_int(buf, p, 7)?;
        match idx {
            0 => Err(HpackError::ZeroIndex),
            1..=61 => {
                let (n, v) = STATIC_TABLE[(idx - 1) as usize];
                let f = Field::of(n.as_bytes());
                if f.kept() {
                    sink(f, v.as_bytes());
                }
                Ok(true)
            }
            _ => match self.entries.get((idx - 62) as usize) {
                Some(Entry {
                    field: Some(f),
                    value,
                    ..
                }) => {
                    if let (true, Some(v)) = (f.kept(), value) {
                        sink(*f, v);
                    }
                    Ok(true)
                }
                Some(_) => Ok(false),
                None => {
                    self.unknown_tail = true;
                    Ok(false)
                }
            },
        }
    }

    /// Literal header field (§6.2), with (`index`) or without indexing.
    fn literal(
        &mut self,
        buf: &[u8],
        p: &mut usize,
        prefix: u8,
        index: bool,
        sink: &mut dyn FnMut(Field, &[u8]),
    ) -> Result<bool, HpackError> {
        let idx = read_int(buf, p, prefix)?;
        let name = if idx == 0 {
            let mut s = std::mem::take(&mut self.scratch);
            s.clear();
            let r = read_string(buf, p, Some(&mut s));
            let name = r.map(|n| Name::Known(Field::of(&s), n));
            s.clear();
            self.scratch = s;
            name?
        } else {
            self.name_at(idx)?
        };
        let (field, name_len) = match name {
            Name::Known(f, n) => (Some(f), n),
            Name::Unknown(n) => (None, n),
        };
        let kept = field.is_some_and(Field::kept);
        let mut value = Vec::new();
        let value_len = read_string(buf, p, kept.then_some(&mut value))?;
        if let (true, Some(f)) = (kept, field) {
            sink(f, &value);
        }
        if index {
            self.insert(Entry {
                field,
                value: kept.then(|| value.into_boxed_slice()),
                name_len,
                size: name_len
                    .saturating_add(value_len)
                    .saturating_add(ENTRY_OVERHEAD),
            });
        }
        Ok(field.is_some())
    }
}

/// Test-only HPACK encoder: enough representations to build the byte streams
/// the tests need (literal names and values optionally Huffman-coded).
#[cfg(test)]
pub mod enc {
    use super::huffman;

    pub fn int(out: &mut Vec<u8>, first: u8, n: u8, v: u64) {
        let max = (1u64 << n) - 1;
        if v < max {
            out.push(first | v as u8);
            return;
        }
        out.push(first | max as u8);
        let mut v = v - max;
        while v >= 128 {
            out.push((v % 128) as u8 | 0x80);
            v /= 128;
        }
        out.push(v as u8);
    }

    pub fn string(out: &mut Vec<u8>, s: &[u8], huff: bool) {
        if huff {
            let h = huffman::encode(s);
            int(out, 0x80, 7, h.len() as u64);
            out.extend_from_slice(&h);
        } else {
            int(out, 0, 7, s.len() as u64);
            out.extend_from_slice(s);
        }
    }

    /// Indexed field (static 1..=61, dynamic 62..).
    pub fn indexed(out: &mut Vec<u8>, idx: u64) {
        int(out, 0x80, 7, idx);
    }

    /// Literal with incremental indexing; `name_idx` 0 means a literal name.
    pub fn incr(out: &mut Vec<u8>, name_idx: u64, name: &str, value: &str, huff: bool) {
        int(out, 0x40, 6, name_idx);
        if name_idx == 0 {
            string(out, name.as_bytes(), huff);
        }
        string(out, value.as_bytes(), huff);
    }

    /// Literal without indexing (`never`: never-indexed form).
    pub fn plain(out: &mut Vec<u8>, name_idx: u64, name: &str, value: &str, never: bool) {
        int(out, if never { 0x10 } else { 0 }, 4, name_idx);
        if name_idx == 0 {
            string(out, name.as_bytes(), false);
        }
        string(out, value.as_bytes(), false);
    }

    pub fn size_update(out: &mut Vec<u8>, v: u64) {
        int(out, 0x20, 5, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(d: &mut Decoder, block: &[u8]) -> (Vec<(Field, String)>, BlockOutcome) {
        let mut got = Vec::new();
        let o = d.decode(block, true, &mut |f, v| {
            got.push((f, String::from_utf8_lossy(v).into_owned()))
        });
        (got, o)
    }

    fn fresh() -> Decoder {
        let mut d = Decoder::new();
        d.mark_fresh();
        d
    }

    #[test]
    fn rfc7541_c4_requests_with_huffman() {
        let mut d = fresh();
        let b1 = [
            0x82, 0x86, 0x84, 0x41, 0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab,
            0x90, 0xf4, 0xff,
        ];
        let (got, o) = run(&mut d, &b1);
        assert_eq!(
            o,
            BlockOutcome {
                fields: 4,
                unknown: 0,
                error: None
            }
        );
        assert_eq!(
            got,
            [
                (Field::Method, "GET".into()),
                (Field::Scheme, "http".into()),
                (Field::Path, "/".into()),
                (Field::Authority, "www.example.com".into()),
            ]
        );
        assert_eq!((d.len(), d.size), (1, 57));
        // C.4.2: cache-control: no-cache added; :authority from the dynamic table.
        let b2 = [
            0x82, 0x86, 0x84, 0xbe, 0x58, 0x86, 0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf,
        ];
        let (got, o) = run(&mut d, &b2);
        assert!(!o.undecodable());
        assert_eq!(got[3], (Field::Authority, "www.example.com".into()));
        assert_eq!((d.len(), d.size), (2, 110));
        // C.4.3: custom-key: custom-value (literal name, Huffman).
        let b3 = [
            0x82, 0x87, 0x85, 0xbf, 0x40, 0x88, 0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xa9, 0x7d, 0x7f,
            0x89, 0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xb8, 0xe8, 0xb4, 0xbf,
        ];
        let (got, o) = run(&mut d, &b3);
        assert!(!o.undecodable());
        assert_eq!(
            got,
            [
                (Field::Method, "GET".into()),
                (Field::Scheme, "https".into()),
                (Field::Path, "/index.html".into()),
                (Field::Authority, "www.example.com".into()),
            ]
        );
        assert_eq!((d.len(), d.size), (3, 164));
    }

    #[test]
    fn rfc7541_c5_responses_with_eviction() {
        // C.5: table size 256; the third response evicts.
        let mut d = fresh();
        d.max_size = 256;
        let mut b = Vec::new();
        enc::incr(&mut b, 8, "", "302", false);
        enc::incr(&mut b, 24, "", "private", false);
        enc::incr(&mut b, 33, "", "Mon, 21 Oct 2013 20:13:21 GMT", false);
        enc::incr(&mut b, 46, "", "https://www.example.com", false);
        let (got, _) = run(&mut d, &b);
        assert_eq!(got, [(Field::Status, "302".into())]);
        assert_eq!((d.len(), d.size), (4, 222));
        let mut b = Vec::new();
        enc::incr(&mut b, 8, "", "307", false);
        enc::indexed(&mut b, 65);
        enc::indexed(&mut b, 64);
        enc::indexed(&mut b, 63);
        let (got, o) = run(&mut d, &b);
        assert!(!o.undecodable());
        assert_eq!(got, [(Field::Status, "307".into())]);
        assert_eq!((d.len(), d.size), (4, 222));
        // 302 was evicted: 66 would now be out of range on a known table.
        let (got, o) = run(&mut d, &[0x80 | 65]);
        assert_eq!(
            (got.len(), o.unknown),
            (0, 0),
            "65 is the date entry (not kept)"
        );
        let (_, o) = run(&mut d, &[0x80 | 66]);
        assert_eq!(o.unknown, 1);
    }

    #[test]
    fn unknown_tail_and_lower_bound_sizes() {
        let mut d = Decoder::new(); // mid-stream
        let mut b = Vec::new();
        enc::indexed(&mut b, 3); // :method POST
        enc::indexed(&mut b, 70); // unknown
        enc::incr(&mut b, 4, "", "/svc/M", false); // :path, inserted
        enc::incr(&mut b, 0, "x-secret", "hunter2", false);
        let (got, o) = run(&mut d, &b);
        assert_eq!(
            o,
            BlockOutcome {
                fields: 4,
                unknown: 1,
                error: None
            }
        );
        assert_eq!(
            got,
            [
                (Field::Method, "POST".into()),
                (Field::Path, "/svc/M".into())
            ]
        );
        // Newest first: 62 = x-secret, 63 = :path.
        let (got, o) = run(&mut d, &[0x80 | 63, 0x80 | 62]);
        assert_eq!(got, [(Field::Path, "/svc/M".into())]);
        assert!(!o.undecodable());
        // Literal with an unknown indexed name: value decodes, field unknown,
        // entry inserted (so later indices stay right).
        let mut b = Vec::new();
        enc::incr(&mut b, 90, "", "v", false);
        let (got, o) = run(&mut d, &b);
        assert_eq!((got.len(), o.unknown), (0, 1));
        let (got, _) = run(&mut d, &[0x80 | 64]);
        assert_eq!(got, [(Field::Path, "/svc/M".into())]);
        // Secret values are never stored.
        assert!(d
            .entries
            .iter()
            .all(|e| e.field != Some(Field::Other) || e.value.is_none()));
    }

    #[test]
    fn size_update_evicts_and_unknown_tail_goes_first() {
        let mut d = Decoder::new();
        let mut b = Vec::new();
        enc::incr(&mut b, 0, "a", "1", false); // 34 bytes
        let _ = run(&mut d, &b);
        assert!(d.is_desynchronised());
        // Shrinking to 34 keeps our entry; the unknown ones may still be there.
        let mut b = Vec::new();
        enc::size_update(&mut b, 34);
        let _ = run(&mut d, &b);
        assert_eq!(d.len(), 1);
        assert!(d.is_desynchronised());
        // A second entry cannot fit with the first: everything older went.
        let mut b = Vec::new();
        enc::incr(&mut b, 0, "b", "2", false);
        let _ = run(&mut d, &b);
        assert_eq!(d.len(), 1);
        assert!(!d.is_desynchronised());
        // Size 0 empties the table.
        let mut b = Vec::new();
        enc::size_update(&mut b, 0);
        let _ = run(&mut d, &b);
        assert!(d.is_empty());
        d.set_limit(100);
        let mut b = Vec::new();
        enc::size_update(&mut b, 4096);
        let _ = run(&mut d, &b);
        assert_eq!(d.size_updates_above_limit(), 1);
        assert_eq!(d.max_size(), 4096);
    }

    #[test]
    fn malformed_blocks_are_errors_not_panics() {
        let cases: [(&[u8], HpackError); 7] = [
            (&[0x3f], HpackError::Truncated),
            (&[0x80], HpackError::ZeroIndex),
            (
                &[0x3f, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
                HpackError::Integer,
            ),
            (&[0x40, 0x05, b'a'], HpackError::Truncated),
            (&[0x40, 0x81, 0xff, 0x00], HpackError::Huffman),
            (&[0x00, 0x7f, 0xff, 0xff, 0xff, 0x0f], HpackError::Truncated),
            (&[0x41], HpackError::Truncated),
        ];
        for (b, e) in cases {
            let mut d = fresh();
            let (_, o) = run(&mut d, b);
            assert_eq!(o.error, Some(e), "{b:?}");
            assert!(d.is_desynchronised());
        }
        // A captured prefix: truncation is not an error, the table is forgotten.
        let mut d = fresh();
        let mut got = Vec::new();
        let o = d.decode(&[0x82, 0x44, 0x05, b'/', b'a'], false, &mut |f, _| {
            got.push(f)
        });
        assert_eq!((o.error, got), (None, vec![Field::Method]));
        assert!(d.is_desynchronised());
    }

    #[test]
    fn tracked_table_is_bounded() {
        let mut d = fresh();
        d.max_size = 1 << 30;
        let big = "x".repeat(1000);
        for i in 0..200 {
            let mut b = Vec::new();
            enc::incr(&mut b, 4, "", &format!("/{i}{big}"), false);
            let _ = run(&mut d, &b);
        }
        assert!(d.size <= MAX_TRACKED_TABLE);
        assert!(d.is_desynchronised());
        let (got, _) = run(&mut d, &[0x80 | 62]);
        assert!(got[0].1.starts_with("/199"));
    }
}
