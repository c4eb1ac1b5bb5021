//! AMQP 0-9-1 wire format: frames (one [`Framer`] per direction), the methods the
//! session reads, content-header properties and field tables (every AMQP 0-9-1 and
//! RabbitMQ field type, nested tables and arrays to [`MAX_DEPTH`]).
//!
//! A frame is `type u8, channel u16, size u32, payload[size], 0xCE`. Method payloads are
//! `class u16, method u16, arguments`; content headers `class u16, weight u16,
//! body-size u64, property-flags u16, properties`; body frames are payload bytes only
//! (never copied: their size is all the session needs). All integers are big-endian.
//!
//! No allocation beyond one per-direction buffer of at most [`MAX_KEEP`] bytes (a method
//! or content-header frame arriving in pieces); never panics.

use crate::protocols::messaging::MsgContext;
use crate::spans::ids::TraceParent;

/// What a client sends first: `AMQP`, 0, 0, 9, 1.
pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";
pub const FRAME_METHOD: u8 = 1;
pub const FRAME_HEADER: u8 = 2;
pub const FRAME_BODY: u8 = 3;
pub const FRAME_HEARTBEAT: u8 = 8;
pub const FRAME_END: u8 = 0xCE;
/// Largest frame size accepted: RabbitMQ's `frame_max` is 128 KiB by default and peers
/// rarely raise it; anything above 64 MiB is garbage and gives the stream up.
pub const MAX_FRAME: u32 = 64 << 20;
/// Bytes of a method or content-header payload kept when it arrives in pieces; the rest
/// is skipped by its size (the frame is handed over `truncated`).
pub(crate) const MAX_KEEP: usize = 64 * 1024;
/// Nesting of field tables and arrays read (deeper values are malformed).
pub const MAX_DEPTH: usize = 16;

/// The class of `basic`, whose content headers and methods make the spans.
pub const CLASS_BASIC: u16 = 60;
/// Bit of the `headers` property in the first property-flags word of a basic content
/// header (bit 15 content-type, 14 content-encoding, 13 headers, ..., 7 message-id).
pub const FLAG_HEADERS: u16 = 1 << 13;
pub const FLAG_CONTENT_TYPE: u16 = 1 << 15;
pub const FLAG_CONTENT_ENCODING: u16 = 1 << 14;
pub const FLAG_MESSAGE_ID: u16 = 1 << 7;

// ---------------------------------------------------------------------------------------
// Readers

/// A bounds-checked big-endian cursor.
#[derive(Debug, Clone, Copy)]
pub struct Rd<'a> {
    pub b: &'a [u8],
    pub pos: usize,
}

impl<'a> Rd<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Rd { b, pos: 0 }
    }
    pub fn rest(&self) -> &'a [u8] {
        &self.b[self.pos.min(self.b.len())..]
    }
    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.b.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    pub fn u8(&mut self) -> Option<u8> {
        Some(self.bytes(1)?[0])
    }
    pub fn u16(&mut self) -> Option<u16> {
        let b = self.bytes(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }
    pub fn u32(&mut self) -> Option<u32> {
        let b = self.bytes(4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn u64(&mut self) -> Option<u64> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Some(u64::from_be_bytes(a))
    }
    pub fn shortstr(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.bytes(usize::from(n))
    }
    pub fn longstr(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()?;
        self.bytes(n as usize)
    }
}

// ---------------------------------------------------------------------------------------
// Field tables

/// One field value. Tables and arrays are their validated encoded content (without the
/// 4-byte length): iterate them with [`table`] / [`array`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Field<'a> {
    /// `t`
    Bool(bool),
    /// `b`
    I8(i8),
    /// `B`
    U8(u8),
    /// `s` (RabbitMQ and Qpid: a signed 16-bit integer, not the spec's short string) and `U`.
    I16(i16),
    /// `u`
    U16(u16),
    /// `I`
    I32(i32),
    /// `i`
    U32(u32),
    /// `l`
    I64(i64),
    /// `L` (the spec's unsigned 64-bit; RabbitMQ never sends it)
    U64(u64),
    /// `f`
    F32(f32),
    /// `d`
    F64(f64),
    /// `D`: value × 10^-scale.
    Decimal { scale: u8, value: u32 },
    /// `S`
    LongStr(&'a [u8]),
    /// `x`
    Bytes(&'a [u8]),
    /// `A`
    Array(&'a [u8]),
    /// `T`: seconds since the epoch.
    Timestamp(u64),
    /// `F`
    Table(&'a [u8]),
    /// `V`
    Void,
}

/// Reads one value of type `t`; nested tables and arrays are validated to `depth`.
pub fn field<'a>(rd: &mut Rd<'a>, t: u8, depth: usize) -> Option<Field<'a>> {
    Some(match t {
        b't' => Field::Bool(rd.u8()? != 0),
        b'b' => Field::I8(rd.u8()? as i8),
        b'B' => Field::U8(rd.u8()?),
        b's' | b'U' => Field::I16(rd.u16()? as i16),
        b'u' => Field::U16(rd.u16()?),
        b'I' => Field::I32(rd.u32()? as i32),
        b'i' => Field::U32(rd.u32()?),
        b'l' => Field::I64(rd.u64()? as i64),
        b'L' => Field::U64(rd.u64()?),
        b'f' => Field::F32(f32::from_bits(rd.u32()?)),
        b'd' => Field::F64(f64::from_bits(rd.u64()?)),
        b'D' => Field::Decimal {
            scale: rd.u8()?,
            value: rd.u32()?,
        },
        b'S' => Field::LongStr(rd.longstr()?),
        b'x' => Field::Bytes(rd.longstr()?),
        b'T' => Field::Timestamp(rd.u64()?),
        b'V' => Field::Void,
        b'A' => {
            let b = rd.longstr()?;
            validate_array(b, depth + 1)?;
            Field::Array(b)
        }
        b'F' => {
            let b = rd.longstr()?;
            validate_table(b, depth + 1)?;
            Field::Table(b)
        }
        _ => return None,
    })
}

fn validate_table(b: &[u8], depth: usize) -> Option<()> {
    if depth > MAX_DEPTH {
        return None;
    }
    let mut rd = Rd::new(b);
    while rd.pos < b.len() {
        rd.shortstr()?;
        let t = rd.u8()?;
        field(&mut rd, t, depth)?;
    }
    Some(())
}

fn validate_array(b: &[u8], depth: usize) -> Option<()> {
    if depth > MAX_DEPTH {
        return None;
    }
    let mut rd = Rd::new(b);
    while rd.pos < b.len() {
        let t = rd.u8()?;
        field(&mut rd, t, depth)?;
    }
    Some(())
}

/// The entries of a table's content (as in [`Field::Table`]): `None` when any entry,
/// at any depth, does not parse.
pub fn table(b: &[u8]) -> Option<Vec<(&[u8], Field<'_>)>> {
    let mut rd = Rd::new(b);
    let mut out = Vec::new();
    while rd.pos < b.len() {
        let name = rd.shortstr()?;
        let t = rd.u8()?;
        out.push((name, field(&mut rd, t, 0)?));
    }
    Some(out)
}

/// The values of an array's content (as in [`Field::Array`]).
pub fn array(b: &[u8]) -> Option<Vec<Field<'_>>> {
    let mut rd = Rd::new(b);
    let mut out = Vec::new();
    while rd.pos < b.len() {
        let t = rd.u8()?;
        out.push(field(&mut rd, t, 0)?);
    }
    Some(out)
}

/// Looks for `traceparent` at the top level of a table's content without allocating.
/// `Err(BadTable)`: the table does not parse (at any depth). `Ok(None)`: no such key, or its
/// value is no string. `Ok(Some(v))`: the value's bytes.
pub fn find_key<'a>(b: &'a [u8], key: &[u8]) -> Result<Option<&'a [u8]>, SlotError> {
    let mut rd = Rd::new(b);
    let mut found = None;
    while rd.pos < b.len() {
        let name = rd.shortstr().ok_or(SlotError::BadTable)?;
        let t = rd.u8().ok_or(SlotError::BadTable)?;
        let v = field(&mut rd, t, 0).ok_or(SlotError::BadTable)?;
        if name == key && found.is_none() {
            found = match v {
                Field::LongStr(s) | Field::Bytes(s) => Some(s),
                _ => None,
            };
        }
    }
    Ok(found)
}

/// The W3C `traceparent` in a `headers` table's content, when well-formed.
pub fn traceparent(headers: &[u8]) -> Option<MsgContext> {
    let v = find_key(headers, b"traceparent").ok()??;
    let tp = TraceParent::parse(std::str::from_utf8(v).ok()?)?;
    Some(MsgContext {
        trace_id: tp.trace_id,
        span_id: tp.span_id,
        flags: tp.flags,
    })
}

// ---------------------------------------------------------------------------------------
// Content headers

/// The properties of a basic content header the spans use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Props<'a> {
    pub class: u16,
    pub body_size: u64,
    pub flags: u16,
    /// The `headers` table's content (without its length), when present and whole.
    pub headers: Option<&'a [u8]>,
    pub message_id: Option<&'a [u8]>,
}

/// Reads a content-header payload: class, body size and the properties up to
/// message-id. A payload cut short (not captured) still gives what it holds; `None` only
/// when even the body size is missing. A malformed property list stops reading it.
pub fn props(p: &[u8]) -> Option<Props<'_>> {
    let mut rd = Rd::new(p);
    let class = rd.u16()?;
    let _weight = rd.u16()?;
    let body_size = rd.u64()?;
    let mut out = Props {
        class,
        body_size,
        ..Default::default()
    };
    let Some(flags) = rd.u16() else {
        return Some(out);
    };
    out.flags = flags;
    if class != CLASS_BASIC || flags & 1 != 0 {
        // Another class, or a continued flags word (basic has 14 properties: never).
        return Some(out);
    }
    let _ = (|| -> Option<()> {
        if flags & FLAG_CONTENT_TYPE != 0 {
            rd.shortstr()?;
        }
        if flags & FLAG_CONTENT_ENCODING != 0 {
            rd.shortstr()?;
        }
        if flags & FLAG_HEADERS != 0 {
            let t = rd.longstr()?;
            validate_table(t, 0)?;
            out.headers = Some(t);
        }
        if flags & (1 << 12) != 0 {
            rd.u8()?; // delivery-mode
        }
        if flags & (1 << 11) != 0 {
            rd.u8()?; // priority
        }
        for bit in [10, 9, 8] {
            // correlation-id, reply-to, expiration
            if flags & (1 << bit) != 0 {
                rd.shortstr()?;
            }
        }
        if flags & FLAG_MESSAGE_ID != 0 {
            out.message_id = Some(rd.shortstr()?);
        }
        Some(())
    })();
    Some(out)
}

/// Where a basic content header's `headers` table is, or where one would go: for
/// inserting a `traceparent` into a `basic.publish` content header (kernel side).
/// Offsets count from the start of the content-header frame's payload (after the 7-byte
/// frame header); the property-flags word is always at [`FLAGS_OFFSET`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadersSlot {
    /// The headers flag is set: the table's 4-byte big-endian length is at `offset`, its
    /// `len` bytes of entries follow. New entries may be appended at `offset + 4 + len`
    /// (growing the length field, the frame size and nothing else).
    /// `traceparent`: the table already has a top-level `traceparent` key (leave it alone).
    Present {
        offset: usize,
        len: u32,
        traceparent: bool,
    },
    /// No headers: set [`FLAG_HEADERS`] in the flags word and insert a table (4-byte
    /// length, then entries) at `offset`, after content-type and content-encoding, the
    /// only properties before it.
    Absent { offset: usize },
}

/// Offset of the property-flags word in a content-header payload.
pub const FLAGS_OFFSET: usize = 12;

/// Why [`headers_slot`] could not place a `headers` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotError {
    /// The payload ends before the property it needs.
    Short,
    /// Not a `basic` content header.
    NotBasic,
    /// A second property-flags word follows (never for basic): not rewritten.
    FlagsContinued,
    /// The existing `headers` table does not parse.
    BadTable,
}

/// See [`HeadersSlot`]. `p` is one content-header frame's payload (class 60), whole up
/// to at least the end of the headers table (or the insertion point).
pub fn headers_slot(p: &[u8]) -> Result<HeadersSlot, SlotError> {
    let mut rd = Rd::new(p);
    let class = rd.u16().ok_or(SlotError::Short)?;
    if class != CLASS_BASIC {
        return Err(SlotError::NotBasic);
    }
    rd.pos = FLAGS_OFFSET;
    let flags = rd.u16().ok_or(SlotError::Short)?;
    if flags & 1 != 0 {
        return Err(SlotError::FlagsContinued);
    }
    if flags & FLAG_CONTENT_TYPE != 0 {
        rd.shortstr().ok_or(SlotError::Short)?;
    }
    if flags & FLAG_CONTENT_ENCODING != 0 {
        rd.shortstr().ok_or(SlotError::Short)?;
    }
    let offset = rd.pos;
    if flags & FLAG_HEADERS == 0 {
        return Ok(HeadersSlot::Absent { offset });
    }
    let t = rd.longstr().ok_or(SlotError::Short)?;
    let found = find_key(t, b"traceparent")?;
    // A key present with a non-string value still counts as the app's.
    let traceparent = found.is_some() || has_key(t, b"traceparent");
    Ok(HeadersSlot::Present {
        offset,
        len: t.len() as u32,
        traceparent,
    })
}

fn has_key(b: &[u8], key: &[u8]) -> bool {
    let mut rd = Rd::new(b);
    while rd.pos < b.len() {
        let Some(name) = rd.shortstr() else {
            return false;
        };
        if name == key {
            return true;
        }
        let Some(t) = rd.u8() else { return false };
        if field(&mut rd, t, 0).is_none() {
            return false;
        }
    }
    false
}

// ---------------------------------------------------------------------------------------
// Methods

/// The methods the session reads; every other known method is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method<'a> {
    ConnectionClose {
        code: u16,
    },
    ConnectionCloseOk,
    ChannelClose {
        code: u16,
    },
    ChannelCloseOk,
    ConfirmSelect,
    Publish {
        exchange: &'a [u8],
        routing_key: &'a [u8],
    },
    Return {
        code: u16,
        exchange: &'a [u8],
        routing_key: &'a [u8],
    },
    Deliver {
        consumer_tag: &'a [u8],
        delivery_tag: u64,
        exchange: &'a [u8],
        routing_key: &'a [u8],
    },
    Consume {
        queue: &'a [u8],
        consumer_tag: &'a [u8],
        no_ack: bool,
        no_wait: bool,
    },
    ConsumeOk {
        consumer_tag: &'a [u8],
    },
    Cancel {
        consumer_tag: &'a [u8],
    },
    CancelOk {
        consumer_tag: &'a [u8],
    },
    Get {
        queue: &'a [u8],
        no_ack: bool,
    },
    GetOk {
        delivery_tag: u64,
        exchange: &'a [u8],
        routing_key: &'a [u8],
    },
    GetEmpty,
    Ack {
        delivery_tag: u64,
        multiple: bool,
    },
    Nack {
        delivery_tag: u64,
        multiple: bool,
    },
    Reject {
        delivery_tag: u64,
    },
    Other {
        class: u16,
        method: u16,
    },
}

/// Whether (class, method) is an AMQP 0-9-1 method (with RabbitMQ's extensions:
/// exchange.bind/unbind, basic.nack, connection.blocked/unblocked/update-secret).
pub fn known_method(class: u16, method: u16) -> bool {
    match class {
        10 => matches!(
            method,
            10 | 11 | 20 | 21 | 30 | 31 | 40 | 41 | 50 | 51 | 60 | 61 | 70 | 71
        ),
        20 => matches!(method, 10 | 11 | 20 | 21 | 40 | 41),
        40 => matches!(method, 10 | 11 | 20 | 21 | 30 | 31 | 40 | 51),
        50 => matches!(method, 10 | 11 | 20 | 21 | 30 | 31 | 40 | 41 | 50 | 51),
        60 => matches!(
            method,
            10 | 11
                | 20
                | 21
                | 30
                | 31
                | 40
                | 50
                | 60
                | 70
                | 71
                | 72
                | 80
                | 90
                | 100
                | 110
                | 111
                | 120
        ),
        85 => matches!(method, 10 | 11),
        90 => matches!(method, 10 | 11 | 20 | 21 | 30 | 31),
        _ => false,
    }
}

/// Whether the method is followed by content (a header frame and body frames).
pub fn carries_content(class: u16, method: u16) -> bool {
    class == CLASS_BASIC && matches!(method, 40 | 50 | 60 | 71)
}

/// Parses a method frame's payload. `None`: an unknown method, or arguments that do
/// not parse.
pub fn method(p: &[u8]) -> Option<Method<'_>> {
    let mut rd = Rd::new(p);
    let class = rd.u16()?;
    let id = rd.u16()?;
    if !known_method(class, id) {
        return None;
    }
    Some(match (class, id) {
        (10, 50) => Method::ConnectionClose { code: rd.u16()? },
        (10, 51) => Method::ConnectionCloseOk,
        (20, 40) => Method::ChannelClose { code: rd.u16()? },
        (20, 41) => Method::ChannelCloseOk,
        (85, 10) => Method::ConfirmSelect,
        (60, 40) => {
            rd.u16()?;
            let exchange = rd.shortstr()?;
            let routing_key = rd.shortstr()?;
            Method::Publish {
                exchange,
                routing_key,
            }
        }
        (60, 50) => {
            let code = rd.u16()?;
            rd.shortstr()?;
            let exchange = rd.shortstr()?;
            let routing_key = rd.shortstr()?;
            Method::Return {
                code,
                exchange,
                routing_key,
            }
        }
        (60, 60) => {
            let consumer_tag = rd.shortstr()?;
            let delivery_tag = rd.u64()?;
            rd.u8()?;
            let exchange = rd.shortstr()?;
            let routing_key = rd.shortstr()?;
            Method::Deliver {
                consumer_tag,
                delivery_tag,
                exchange,
                routing_key,
            }
        }
        (60, 20) => {
            rd.u16()?;
            let queue = rd.shortstr()?;
            let consumer_tag = rd.shortstr()?;
            let bits = rd.u8()?;
            Method::Consume {
                queue,
                consumer_tag,
                no_ack: bits & 2 != 0,
                no_wait: bits & 8 != 0,
            }
        }
        (60, 21) => Method::ConsumeOk {
            consumer_tag: rd.shortstr()?,
        },
        (60, 30) => Method::Cancel {
            consumer_tag: rd.shortstr()?,
        },
        (60, 31) => Method::CancelOk {
            consumer_tag: rd.shortstr()?,
        },
        (60, 70) => {
            rd.u16()?;
            let queue = rd.shortstr()?;
            let bits = rd.u8()?;
            Method::Get {
                queue,
                no_ack: bits & 1 != 0,
            }
        }
        (60, 71) => {
            let delivery_tag = rd.u64()?;
            rd.u8()?;
            let exchange = rd.shortstr()?;
            let routing_key = rd.shortstr()?;
            Method::GetOk {
                delivery_tag,
                exchange,
                routing_key,
            }
        }
        (60, 72) => Method::GetEmpty,
        (60, 80) => Method::Ack {
            delivery_tag: rd.u64()?,
            multiple: rd.u8()? & 1 != 0,
        },
        (60, 90) => Method::Reject {
            delivery_tag: rd.u64()?,
        },
        (60, 120) => Method::Nack {
            delivery_tag: rd.u64()?,
            multiple: rd.u8()? & 1 != 0,
        },
        (class, method) => Method::Other { class, method },
    })
}

/// The AMQP 0-9-1 reply code's name (`error.type`); unknown codes as their number.
pub fn reply_name(code: u16) -> String {
    let s = match code {
        200 => "REPLY_SUCCESS",
        311 => "CONTENT_TOO_LARGE",
        312 => "NO_ROUTE",
        313 => "NO_CONSUMERS",
        320 => "CONNECTION_FORCED",
        402 => "INVALID_PATH",
        403 => "ACCESS_REFUSED",
        404 => "NOT_FOUND",
        405 => "RESOURCE_LOCKED",
        406 => "PRECONDITION_FAILED",
        501 => "FRAME_ERROR",
        502 => "SYNTAX_ERROR",
        503 => "COMMAND_INVALID",
        504 => "CHANNEL_ERROR",
        505 => "UNEXPECTED_FRAME",
        506 => "RESOURCE_ERROR",
        530 => "NOT_ALLOWED",
        540 => "NOT_IMPLEMENTED",
        541 => "INTERNAL_ERROR",
        _ => return code.to_string(),
    };
    s.to_string()
}

// ---------------------------------------------------------------------------------------
// Framing

/// Whether a complete, plausible frame starts at `data[i]`: a known method, a basic
/// content header or a heartbeat, with its frame-end byte where its size says. Used to
/// find a boundary again after uncaptured bytes, and for mid-stream detection.
pub fn frame_at(data: &[u8], i: usize) -> Option<usize> {
    let mut rd = Rd::new(data);
    rd.pos = i;
    let typ = rd.u8()?;
    let channel = rd.u16()?;
    let size = rd.u32()?;
    if size > MAX_FRAME {
        return None;
    }
    let payload = rd.bytes(size as usize)?;
    if rd.u8()? != FRAME_END {
        return None;
    }
    let ok = match typ {
        FRAME_METHOD => {
            let mut p = Rd::new(payload);
            match (p.u16(), p.u16()) {
                (Some(c), Some(m)) => known_method(c, m) && (c == 10) == (channel == 0),
                _ => false,
            }
        }
        FRAME_HEADER => {
            channel != 0
                && size >= 14
                && payload[..2] == CLASS_BASIC.to_be_bytes()
                && payload[2..4] == [0, 0]
        }
        FRAME_HEARTBEAT => channel == 0 && size == 0,
        _ => false,
    };
    ok.then_some(rd.pos)
}

/// A frame handed to the session. `payload` holds at most [`MAX_KEEP`] bytes, and
/// nothing for body and heartbeat frames; `truncated`: bytes are missing (not captured,
/// or beyond MAX_KEEP).
#[derive(Debug)]
pub struct Frame<'a> {
    pub typ: u8,
    pub channel: u16,
    pub size: u32,
    pub payload: &'a [u8],
    pub truncated: bool,
    /// ts and tid of the feed holding the frame's first byte.
    pub ts: u64,
    pub tid: u32,
    /// ts of the feed holding (or skipping) its last byte.
    pub end_ts: u64,
}

/// What framing tells the session.
#[derive(Debug)]
pub enum Out<'a> {
    Frame(Frame<'a>),
    /// The 8-byte protocol header (`ok`: AMQP 0-9-1's).
    ProtocolHeader {
        ok: bool,
        ts: u64,
    },
    /// Uncaptured bytes covered a frame boundary: frames are skipped until a plausible
    /// one is found again.
    Lost {
        ts: u64,
        tid: u32,
    },
    /// A frame that cannot be AMQP (bad type, absurd size, frame-end byte missing) after
    /// the direction was in step: the direction is given up.
    Bad {
        ts: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    /// Nothing read yet: a protocol header, a frame, or (mid-stream) anything.
    Start,
    ProtoHeader,
    Header,
    Payload,
    End,
    /// Boundary unknown: looking for one.
    Lost,
    /// Given up.
    Dead,
}

/// One direction's framing state.
#[derive(Debug)]
pub struct Framer {
    st: St,
    hdr: [u8; 8],
    hdr_n: usize,
    ts: u64,
    tid: u32,
    typ: u8,
    channel: u16,
    size: u32,
    remaining: u64,
    truncated: bool,
    buf: Vec<u8>,
    /// A frame has been read whole (errors after that give the direction up; before,
    /// a mid-stream start, they only lose the boundary).
    in_step: bool,
    /// Bytes skipped while looking for a boundary.
    pub skipped: u64,
}

impl Default for Framer {
    fn default() -> Self {
        Framer {
            st: St::Start,
            hdr: [0; 8],
            hdr_n: 0,
            ts: 0,
            tid: 0,
            typ: 0,
            channel: 0,
            size: 0,
            remaining: 0,
            truncated: false,
            buf: Vec::new(),
            in_step: false,
            skipped: 0,
        }
    }
}

impl Framer {
    pub fn dead(&self) -> bool {
        self.st == St::Dead
    }

    pub fn lost(&self) -> bool {
        self.st == St::Lost
    }

    /// Gives the direction up (the session failed it).
    pub fn kill(&mut self) {
        self.st = St::Dead;
        self.buf = Vec::new();
    }

    /// Frees the buffer when no frame is in progress.
    pub fn compact(&mut self) {
        if !matches!(self.st, St::Payload | St::End) {
            self.buf = Vec::new();
        } else {
            self.buf.shrink_to_fit();
        }
    }

    fn keeps(&self) -> bool {
        matches!(self.typ, FRAME_METHOD | FRAME_HEADER)
    }

    fn fail(&mut self, ts: u64, sink: &mut impl FnMut(Out<'_>)) {
        if self.in_step {
            self.st = St::Dead;
            self.buf = Vec::new();
            sink(Out::Bad { ts });
        } else {
            // Not in step yet (a mid-stream start): a lost boundary, not garbage.
            self.st = St::Lost;
            self.skipped += 1;
            self.buf.clear();
        }
    }

    fn lose(&mut self, ts: u64, tid: u32, sink: &mut impl FnMut(Out<'_>)) {
        self.st = St::Lost;
        self.buf.clear();
        sink(Out::Lost { ts, tid });
    }

    /// The 7-byte header in `hdr` is complete: check it.
    fn header_done(&mut self, ts: u64, sink: &mut impl FnMut(Out<'_>)) {
        let h = &self.hdr;
        self.typ = h[0];
        self.channel = u16::from_be_bytes([h[1], h[2]]);
        self.size = u32::from_be_bytes([h[3], h[4], h[5], h[6]]);
        if !matches!(
            self.typ,
            FRAME_METHOD | FRAME_HEADER | FRAME_BODY | FRAME_HEARTBEAT
        ) || self.size > MAX_FRAME
        {
            self.fail(ts, sink);
            return;
        }
        self.remaining = u64::from(self.size);
        self.truncated = false;
        self.buf.clear();
        self.st = if self.size == 0 { St::End } else { St::Payload };
    }

    /// Bytes of one syscall, then `gap` uncaptured bytes.
    pub fn feed(
        &mut self,
        data: &[u8],
        gap: u64,
        ts: u64,
        tid: u32,
        sink: &mut impl FnMut(Out<'_>),
    ) {
        let mut i = 0usize;
        while i < data.len() {
            match self.st {
                St::Dead => return,
                St::Start => {
                    self.st = match data[i] {
                        b'A' => St::ProtoHeader,
                        FRAME_METHOD | FRAME_HEADER | FRAME_BODY | FRAME_HEARTBEAT => St::Header,
                        _ => St::Lost,
                    };
                    self.hdr_n = 0;
                    self.ts = ts;
                    self.tid = tid;
                }
                St::ProtoHeader => {
                    let take = (8 - self.hdr_n).min(data.len() - i);
                    self.hdr[self.hdr_n..self.hdr_n + take].copy_from_slice(&data[i..i + take]);
                    self.hdr_n += take;
                    i += take;
                    if self.hdr_n == 8 {
                        let ok = &self.hdr == PROTOCOL_HEADER;
                        if !self.hdr.starts_with(b"AMQP") {
                            self.fail(ts, sink);
                            continue;
                        }
                        sink(Out::ProtocolHeader { ok, ts: self.ts });
                        self.hdr_n = 0;
                        self.st = if ok { St::Header } else { St::Dead };
                    }
                }
                St::Lost => match (i..data.len()).find(|&j| frame_at(data, j).is_some()) {
                    Some(j) => {
                        self.skipped += (j - i) as u64;
                        i = j;
                        self.st = St::Header;
                        self.hdr_n = 0;
                    }
                    None => {
                        self.skipped += (data.len() - i) as u64;
                        i = data.len();
                    }
                },
                St::Header => {
                    if self.hdr_n == 0 {
                        self.ts = ts;
                        self.tid = tid;
                        // The whole frame here: hand its payload over without copying.
                        if let Some(end) =
                            data.len().checked_sub(i).filter(|&n| n >= 8).and_then(|_| {
                                let size = u32::from_be_bytes([
                                    data[i + 3],
                                    data[i + 4],
                                    data[i + 5],
                                    data[i + 6],
                                ]);
                                let end = i + 7 + size as usize + 1;
                                (end <= data.len() && size <= MAX_FRAME).then_some(end)
                            })
                        {
                            self.hdr[..7].copy_from_slice(&data[i..i + 7]);
                            self.hdr_n = 7;
                            self.header_done(ts, sink);
                            if matches!(self.st, St::Dead | St::Lost) {
                                i += 1;
                                continue;
                            }
                            if data[end - 1] != FRAME_END {
                                self.fail(ts, sink);
                                i += 1;
                                continue;
                            }
                            let payload = if self.keeps() {
                                let p = &data[i + 7..end - 1];
                                &p[..p.len().min(MAX_KEEP)]
                            } else {
                                &[][..]
                            };
                            let truncated = self.keeps() && self.size as usize > MAX_KEEP;
                            self.emit(payload, truncated, ts, sink);
                            i = end;
                            continue;
                        }
                    }
                    let take = (7 - self.hdr_n).min(data.len() - i);
                    self.hdr[self.hdr_n..self.hdr_n + take].copy_from_slice(&data[i..i + take]);
                    self.hdr_n += take;
                    i += take;
                    if self.hdr_n == 7 {
                        self.header_done(ts, sink);
                    }
                }
                St::Payload => {
                    let take = (self.remaining.min((data.len() - i) as u64)) as usize;
                    if self.keeps() {
                        let room = MAX_KEEP.saturating_sub(self.buf.len()).min(take);
                        if room < take {
                            self.truncated = true;
                        }
                        self.buf.extend_from_slice(&data[i..i + room]);
                    }
                    self.remaining -= take as u64;
                    i += take;
                    if self.remaining == 0 {
                        self.st = St::End;
                    }
                }
                St::End => {
                    if data[i] != FRAME_END {
                        self.fail(ts, sink);
                        i += 1;
                        continue;
                    }
                    i += 1;
                    let buf = std::mem::take(&mut self.buf);
                    self.emit(&buf, self.truncated, ts, sink);
                    self.buf = buf;
                    self.buf.clear();
                }
            }
        }
        if gap > 0 {
            self.skip(gap, ts, tid, sink);
        }
    }

    fn emit(
        &mut self,
        payload: &[u8],
        truncated: bool,
        end_ts: u64,
        sink: &mut impl FnMut(Out<'_>),
    ) {
        self.in_step = true;
        self.st = St::Header;
        self.hdr_n = 0;
        sink(Out::Frame(Frame {
            typ: self.typ,
            channel: self.channel,
            size: self.size,
            payload,
            truncated,
            ts: self.ts,
            tid: self.tid,
            end_ts,
        }));
    }

    /// `gap` bytes were not captured: skip them by framing.
    fn skip(&mut self, mut gap: u64, ts: u64, tid: u32, sink: &mut impl FnMut(Out<'_>)) {
        match self.st {
            St::Dead | St::Lost => {}
            St::Payload => {
                let take = gap.min(self.remaining);
                self.remaining -= take;
                gap -= take;
                if self.keeps() && take > 0 {
                    self.truncated = true;
                }
                if self.remaining == 0 {
                    self.st = St::End;
                }
                if gap > 0 {
                    // The frame-end byte too, then whatever followed: its boundaries.
                    gap -= 1;
                    let buf = std::mem::take(&mut self.buf);
                    self.emit(&buf, self.truncated, ts, sink);
                    self.buf = buf;
                    self.buf.clear();
                    if gap > 0 {
                        self.lose(ts, tid, sink);
                    }
                }
            }
            St::End => {
                gap -= 1;
                let buf = std::mem::take(&mut self.buf);
                self.emit(&buf, self.truncated, ts, sink);
                self.buf = buf;
                self.buf.clear();
                if gap > 0 {
                    self.lose(ts, tid, sink);
                }
            }
            St::Header if self.hdr_n == 0 && self.in_step => self.lose(ts, tid, sink),
            _ => {
                // A header or protocol header cut, or nothing in step yet.
                if self.in_step {
                    self.lose(ts, tid, sink);
                } else {
                    self.st = St::Lost;
                    self.buf.clear();
                }
            }
        }
    }
}
