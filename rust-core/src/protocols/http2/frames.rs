//! HTTP/2 frame headers (RFC 9113 §4.1, §6): parsing and validation.

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const FRAME_HEADER_LEN: usize = 9;
/// SETTINGS_MAX_FRAME_SIZE before a peer announces another value.
pub const DEFAULT_MAX_FRAME: u32 = 1 << 14;
/// Largest SETTINGS_MAX_FRAME_SIZE allowed (2^24 - 1).
pub const MAX_FRAME_LIMIT: u32 = (1 << 24) - 1;

pub mod ty {
    pub const DATA: u8 = 0;
    pub const HEADERS: u8 = 1;
    pub const PRIORITY: u8 = 2;
    pub const RST_STREAM: u8 = 3;
    pub const SETTINGS: u8 = 4;
    pub const PUSH_PROMISE: u8 = 5;
    pub const PING: u8 = 6;
    pub const GOAWAY: u8 = 7;
    pub const WINDOW_UPDATE: u8 = 8;
    pub const CONTINUATION: u8 = 9;
}

pub mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIO: u8 = 0x20; // PRIORITY (named apart from the frame type for cbindgen)
}

pub mod setting {
    pub const HEADER_TABLE_SIZE: u16 = 1;
    pub const MAX_FRAME_SIZE: u16 = 5;
}

/// RST_STREAM / GOAWAY error code REFUSED_STREAM.
pub const REFUSED_STREAM: u32 = 7;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub len: u32,
    pub ty: u8,
    pub flags: u8,
    /// Stream identifier without the reserved bit.
    pub stream: u32,
    /// The reserved bit (must be ignored on receipt; senders leave it clear).
    pub reserved: bool,
}

impl FrameHeader {
    pub fn parse(b: &[u8; FRAME_HEADER_LEN]) -> Self {
        let sid = u32::from_be_bytes([b[5], b[6], b[7], b[8]]);
        FrameHeader {
            len: u32::from_be_bytes([0, b[0], b[1], b[2]]),
            ty: b[3],
            flags: b[4],
            stream: sid & 0x7fff_ffff,
            reserved: sid & 0x8000_0000 != 0,
        }
    }

    pub fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }

    /// Bytes before the content: the Pad Length field (0 or 1) and the fixed
    /// fields we read or skip (priority, promised stream, error codes).
    pub fn layout(&self) -> (u32, u32) {
        let padded =
            matches!(self.ty, ty::DATA | ty::HEADERS | ty::PUSH_PROMISE) && self.has(flag::PADDED);
        let fixed = match self.ty {
            ty::HEADERS if self.has(flag::PRIO) => 5,
            ty::PUSH_PROMISE | ty::RST_STREAM => 4,
            ty::GOAWAY => 8,
            _ => 0,
        };
        (u32::from(padded), fixed)
    }

    /// RFC 9113 rules a peer that follows the protocol never breaks: stream 0
    /// or not, fixed lengths, room for the fixed fields. Unknown types pass.
    pub fn structurally_valid(&self) -> bool {
        let (pad, fixed) = self.layout();
        if self.len < pad + fixed {
            return false;
        }
        match self.ty {
            ty::DATA | ty::HEADERS | ty::CONTINUATION | ty::PUSH_PROMISE => self.stream != 0,
            ty::PRIORITY => self.stream != 0 && self.len == 5,
            ty::RST_STREAM => self.stream != 0 && self.len == 4,
            ty::SETTINGS => {
                self.stream == 0
                    && self.len.is_multiple_of(6)
                    && !(self.has(flag::ACK) && self.len != 0)
            }
            ty::PING => self.stream == 0 && self.len == 8,
            ty::GOAWAY => self.stream == 0,
            ty::WINDOW_UPDATE => self.len == 4,
            _ => true,
        }
    }

    /// Stricter check for guessing where frames start (protocol detection,
    /// resynchronisation): a known type, only defined flags, reserved bit
    /// clear, `len <= max_len`, structurally valid; with `client`, HEADERS
    /// must open an odd (client-initiated) stream and PUSH_PROMISE is refused.
    pub fn plausible(&self, max_len: u32, client: Option<bool>) -> bool {
        let defined = match self.ty {
            ty::DATA => flag::END_STREAM | flag::PADDED,
            ty::HEADERS => flag::END_STREAM | flag::END_HEADERS | flag::PADDED | flag::PRIO,
            ty::SETTINGS | ty::PING => flag::ACK,
            ty::PUSH_PROMISE => flag::END_HEADERS | flag::PADDED,
            ty::CONTINUATION => flag::END_HEADERS,
            ty::PRIORITY | ty::RST_STREAM | ty::GOAWAY | ty::WINDOW_UPDATE => 0,
            _ => return false,
        };
        if self.flags & !defined != 0 || self.reserved || self.len > max_len {
            return false;
        }
        match (self.ty, client) {
            (ty::HEADERS, Some(true)) if self.stream.is_multiple_of(2) => return false,
            (ty::PUSH_PROMISE, Some(true)) => return false,
            _ => {}
        }
        self.structurally_valid()
    }
}

/// True when `d` starts with a plausible frame header and every further
/// frame header wholly inside `d` is plausible too. False when `d` is
/// shorter than one frame header.
pub fn plausible_frames(d: &[u8], max_len: u32, client: Option<bool>) -> bool {
    let mut off = 0usize;
    let mut checked = 0;
    while let Some(h) = d.get(off..off + FRAME_HEADER_LEN) {
        let h = FrameHeader::parse(h.try_into().expect("9 bytes"));
        if !h.plausible(max_len, client) {
            return false;
        }
        checked += 1;
        off += FRAME_HEADER_LEN + h.len as usize;
    }
    checked > 0
}

/// Test-only frame encoder.
#[cfg(test)]
pub fn frame(t: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut v = len.to_be_bytes()[1..].to_vec();
    v.push(t);
    v.push(flags);
    v.extend_from_slice(&stream.to_be_bytes());
    v.extend_from_slice(payload);
    v
}
