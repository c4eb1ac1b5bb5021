//! Frame layer of [`H2Conn`]: per-direction byte streams (preface, frame
//! headers, payloads, gaps, resynchronisation), SETTINGS and control frames.

use super::frames::{self, flag, setting, ty, FrameHeader, FRAME_HEADER_LEN, PREFACE};
use super::hpack::Decoder;
use super::{H2Conn, H2Event, DEFAULT_MAX_FRAME, MAX_FRAME_LIMIT, MAX_HEADER_BLOCK};

/// Where a direction's byte stream is.
#[derive(Debug, Clone, Copy)]
pub(super) enum Reader {
    /// Nothing seen yet; comparing with the preface (`matched` bytes so far,
    /// first one seen at `ts`).
    Start {
        matched: u8,
        ts: u64,
    },
    /// Reading a frame header (`have` bytes of it, first one seen at `ts`).
    Header {
        buf: [u8; FRAME_HEADER_LEN],
        have: u8,
        ts: u64,
    },
    Payload(Payload),
    /// Frame sync lost: waiting for a segment starting with frame headers.
    Lost,
}

pub(super) const HEADER_START: Reader = Reader::Header {
    buf: [0; FRAME_HEADER_LEN],
    have: 0,
    ts: 0,
};

#[derive(Debug, Clone, Copy)]
pub(super) struct Payload {
    pub(super) h: FrameHeader,
    /// Payload bytes consumed.
    pub(super) pos: u32,
    /// Pad Length field size (0/1) and fixed fields size.
    pub(super) pad_field: u32,
    pub(super) fixed: u32,
    /// Padding length, once read (0 when it was not captured).
    pub(super) pad: Option<u32>,
    /// Fixed fields, or the SETTINGS entry being read.
    pub(super) small: [u8; 8],
    pub(super) small_len: u8,
    pub(super) fixed_lost: bool,
    /// SETTINGS entries can no longer be aligned.
    pub(super) settings_lost: bool,
    /// DATA content bytes.
    pub(super) content: u64,
}

impl Payload {
    pub(super) fn new(h: FrameHeader) -> Self {
        let (pad_field, fixed) = h.layout();
        Payload {
            h,
            pos: 0,
            pad_field,
            fixed,
            pad: None,
            small: [0; 8],
            small_len: 0,
            fixed_lost: false,
            settings_lost: false,
            content: 0,
        }
    }

    pub(super) fn content_start(&self) -> u32 {
        self.pad_field + self.fixed
    }

    pub(super) fn content_end(&self) -> u32 {
        self.h.len - self.pad.unwrap_or(0)
    }
}

/// A header block being assembled.
pub(super) struct Block {
    pub(super) stream: u32,
    pub(super) push: bool,
    pub(super) end_stream: bool,
    /// ts of the segment holding the HEADERS frame's first byte.
    pub(super) ts: u64,
    pub(super) buf: Vec<u8>,
    /// Bytes of it were lost (gap, size cap, malformed frame).
    pub(super) truncated: bool,
}

impl std::fmt::Debug for Block {
    // The buffered bytes may hold secrets (Authorization...): never shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Block")
            .field("stream", &self.stream)
            .field("push", &self.push)
            .field("buffered", &self.buf.len())
            .field("truncated", &self.truncated)
            .finish()
    }
}

#[derive(Debug)]
pub(super) struct Dir {
    pub(super) reader: Reader,
    pub(super) hpack: Decoder,
    pub(super) block: Option<Block>,
    /// SETTINGS_MAX_FRAME_SIZE that applies to frames sent in this direction.
    pub(super) max_frame: Option<u32>,
    /// No frame parsed yet in this direction (the first is checked strictly).
    pub(super) first_frame: bool,
}

impl Dir {
    pub(super) fn new(may_preface: bool) -> Self {
        Dir {
            reader: if may_preface {
                Reader::Start { matched: 0, ts: 0 }
            } else {
                HEADER_START
            },
            hpack: Decoder::new(),
            block: None,
            max_frame: None,
            first_frame: true,
        }
    }
}

impl H2Conn {
    // -- roles ---------------------------------------------------------------

    /// Whether direction `di` is the client's (None: not known yet).
    pub(super) fn is_client(&self, di: usize) -> Option<bool> {
        self.client_label.map(|c| (di == 0) == c)
    }

    pub(super) fn set_client(&mut self, di: usize, is_client: bool) {
        if self.client_label.is_none() {
            self.client_label = Some((di == 0) == is_client);
        }
    }

    /// The first bytes of direction `di` were (or were not) the preface.
    pub(super) fn first_bytes(&mut self, di: usize, preface: bool) {
        if preface {
            self.stats.prefaces += 1;
            self.set_client(di, true);
            // The other direction cannot send a preface.
            let o = &mut self.dirs[1 - di];
            if let Reader::Start { matched: 0, .. } = o.reader {
                o.reader = HEADER_START;
            }
        }
        if self.fresh.is_none() && (preface || self.is_client(di) == Some(true)) {
            self.fresh = Some(preface);
            if preface {
                for d in &mut self.dirs {
                    d.hpack.mark_fresh();
                    // Nothing above the default before the peer's SETTINGS.
                    d.max_frame.get_or_insert(DEFAULT_MAX_FRAME);
                    d.first_frame = false;
                }
            }
        }
    }

    // -- bytes -----------------------------------------------------------------

    pub(super) fn feed_data(&mut self, di: usize, data: &[u8], ts: u64, out: &mut Vec<H2Event>) {
        if data.is_empty() {
            return;
        }
        if let Reader::Lost = self.dirs[di].reader {
            let max = self.dirs[di].max_frame.unwrap_or(MAX_FRAME_LIMIT);
            if frames::plausible_frames(data, max, self.is_client(di)) {
                self.stats.resyncs += 1;
                self.dirs[di].reader = HEADER_START;
            } else {
                self.stats.segments_skipped += 1;
                return;
            }
        }
        let mut d = data;
        while !d.is_empty() {
            let used = match self.dirs[di].reader {
                Reader::Start { matched, ts: t0 } => {
                    let m = usize::from(matched);
                    let k = (PREFACE.len() - m).min(d.len());
                    if d[..k] == PREFACE[m..m + k] {
                        let matched = m + k;
                        if matched == PREFACE.len() {
                            self.dirs[di].reader = HEADER_START;
                            self.first_bytes(di, true);
                        } else {
                            let t0 = if m == 0 { ts } else { t0 };
                            self.dirs[di].reader = Reader::Start {
                                matched: matched as u8,
                                ts: t0,
                            };
                        }
                        k
                    } else {
                        // Not a preface: these are frames. Replay what matched.
                        self.dirs[di].reader = HEADER_START;
                        self.first_bytes(di, false);
                        if m > 0 {
                            self.frames(di, &PREFACE[..m], t0, out);
                        }
                        0
                    }
                }
                Reader::Lost => d.len(),
                _ => self.frames(di, d, ts, out),
            };
            d = &d[used..];
        }
    }

    /// Frame-level processing of `d` (reader in Header/Payload/Lost state).
    /// Returns the bytes used (all of them).
    pub(super) fn frames(
        &mut self,
        di: usize,
        data: &[u8],
        ts: u64,
        out: &mut Vec<H2Event>,
    ) -> usize {
        let mut d = data;
        while !d.is_empty() {
            match self.dirs[di].reader {
                Reader::Header {
                    mut buf,
                    have,
                    ts: t0,
                } => {
                    let have = usize::from(have);
                    let t0 = if have == 0 { ts } else { t0 };
                    let k = (FRAME_HEADER_LEN - have).min(d.len());
                    buf[have..have + k].copy_from_slice(&d[..k]);
                    d = &d[k..];
                    if have + k < FRAME_HEADER_LEN {
                        self.dirs[di].reader = Reader::Header {
                            buf,
                            have: (have + k) as u8,
                            ts: t0,
                        };
                    } else {
                        self.start_frame(di, FrameHeader::parse(&buf), t0, ts, out);
                    }
                }
                Reader::Payload(mut p) => {
                    let k = self.payload_data(di, &mut p, d);
                    d = &d[k..];
                    self.dirs[di].reader = Reader::Payload(p);
                    if p.pos == p.h.len {
                        self.finish_frame(di, p, ts, out);
                    }
                }
                Reader::Lost | Reader::Start { .. } => break,
            }
        }
        data.len()
    }

    pub(super) fn feed_gap(&mut self, di: usize, n: u64, ts: u64, out: &mut Vec<H2Event>) {
        if n == 0 {
            return;
        }
        match self.dirs[di].reader {
            Reader::Start { .. } => {
                // The stream's first bytes were not captured: mid-stream.
                self.first_bytes(di, false);
                self.stats.gaps_in_frame_headers += 1;
                self.lose_sync(di, ts, out);
            }
            Reader::Header { .. } => {
                self.stats.gaps_in_frame_headers += 1;
                self.lose_sync(di, ts, out);
            }
            Reader::Payload(mut p) => {
                let rem = u64::from(p.h.len - p.pos);
                let k = n.min(rem) as u32;
                self.payload_gap(di, &mut p, k);
                self.dirs[di].reader = Reader::Payload(p);
                if p.pos == p.h.len {
                    self.finish_frame(di, p, ts, out);
                }
                if n > rem {
                    self.stats.gaps_in_frame_headers += 1;
                    self.lose_sync(di, ts, out);
                }
            }
            Reader::Lost => {}
        }
    }

    /// Frame sync is lost in direction `di`: whatever the lost bytes held
    /// (header blocks included) is unknown, so is the HPACK table.
    pub(super) fn lose_sync(&mut self, di: usize, ts: u64, out: &mut Vec<H2Event>) {
        if let Some(b) = self.dirs[di].block.as_mut() {
            b.truncated = true;
            self.complete_block(di, ts, out);
        }
        self.dirs[di].hpack.desync();
        self.dirs[di].reader = Reader::Lost;
    }

    // -- frames ------------------------------------------------------------------

    pub(super) fn start_frame(
        &mut self,
        di: usize,
        h: FrameHeader,
        t0: u64,
        ts: u64,
        out: &mut Vec<H2Event>,
    ) {
        self.stats.frames += 1;
        let client = self.is_client(di);
        let dir = &mut self.dirs[di];
        let max = dir.max_frame.unwrap_or(MAX_FRAME_LIMIT);
        let ok = if dir.first_frame {
            // Mid-stream start: be strict about where frames begin.
            h.plausible(max, client)
        } else {
            h.len <= max && h.structurally_valid()
        };
        dir.first_frame = false;
        if !ok {
            self.stats.frames_invalid += 1;
            self.lose_sync(di, ts, out);
            return;
        }
        // A header block must continue with CONTINUATION frames of its stream.
        let cont = h.ty == ty::CONTINUATION;
        match &self.dirs[di].block {
            Some(b) if !(cont && b.stream == h.stream) => {
                self.stats.frames_malformed += 1;
                if let Some(b) = self.dirs[di].block.as_mut() {
                    b.truncated = true;
                }
                self.complete_block(di, t0, out);
            }
            None if cont => {
                // Its HEADERS was lost or never seen: the table is unknown.
                self.stats.frames_malformed += 1;
                self.dirs[di].hpack.desync();
            }
            _ => {}
        }
        match h.ty {
            ty::HEADERS | ty::PUSH_PROMISE => {
                self.dirs[di].block = Some(Block {
                    stream: h.stream,
                    push: h.ty == ty::PUSH_PROMISE,
                    end_stream: h.ty == ty::HEADERS && h.has(flag::END_STREAM),
                    ts: t0,
                    buf: Vec::new(),
                    truncated: false,
                });
            }
            t if t > ty::CONTINUATION => self.stats.frames_unknown_type += 1,
            _ => {}
        }
        let p = Payload::new(h);
        self.dirs[di].reader = Reader::Payload(p);
        if h.len == 0 {
            self.finish_frame(di, p, ts, out);
        }
    }

    /// Consumes payload bytes of `p`; returns how many were used.
    pub(super) fn payload_data(&mut self, di: usize, p: &mut Payload, data: &[u8]) -> usize {
        let mut d = data;
        while !d.is_empty() && p.pos < p.h.len {
            if p.pos < p.pad_field {
                let pad = u32::from(d[0]);
                if p.content_start() + pad > p.h.len {
                    self.stats.frames_malformed += 1;
                    self.truncate_block(di);
                    p.pad = Some(p.h.len - p.content_start());
                } else {
                    p.pad = Some(pad);
                }
                p.pos += 1;
                d = &d[1..];
            } else if p.pos < p.content_start() {
                let k = ((p.content_start() - p.pos) as usize).min(d.len());
                let at = usize::from(p.small_len);
                let room = p.small.len().saturating_sub(at).min(k);
                p.small[at..at + room].copy_from_slice(&d[..room]);
                p.small_len += room as u8;
                p.pos += k as u32;
                d = &d[k..];
            } else if p.pos < p.content_end() {
                let k = ((p.content_end() - p.pos) as usize).min(d.len());
                self.content(di, p, &d[..k]);
                p.pos += k as u32;
                d = &d[k..];
            } else {
                let k = ((p.h.len - p.pos) as usize).min(d.len());
                p.pos += k as u32;
                d = &d[k..];
            }
        }
        data.len() - d.len()
    }

    /// `k` payload bytes of `p` (at most what is left) were not captured.
    pub(super) fn payload_gap(&mut self, di: usize, p: &mut Payload, k: u32) {
        let (from, to) = (p.pos, p.pos + k);
        if from < p.pad_field && p.pad.is_none() {
            p.pad = Some(0);
        }
        if from < p.content_start() && to > p.pad_field {
            p.fixed_lost = true;
        }
        let (cs, ce) = (p.content_start(), p.content_end());
        let lost = to.min(ce).saturating_sub(from.max(cs));
        if lost > 0 {
            match p.h.ty {
                ty::DATA => p.content += u64::from(lost),
                ty::HEADERS | ty::PUSH_PROMISE | ty::CONTINUATION => {
                    if let Some(b) = self.dirs[di].block.as_mut() {
                        if !b.truncated {
                            self.stats.gaps_in_header_blocks += 1;
                        }
                        b.truncated = true;
                    }
                }
                ty::SETTINGS => p.settings_lost = true,
                _ => {}
            }
        }
        p.pos = to;
    }

    pub(super) fn truncate_block(&mut self, di: usize) {
        if let Some(b) = self.dirs[di].block.as_mut() {
            b.truncated = true;
        }
    }

    /// Content bytes (after pad length and fixed fields, before padding).
    pub(super) fn content(&mut self, di: usize, p: &mut Payload, d: &[u8]) {
        match p.h.ty {
            ty::DATA => p.content += d.len() as u64,
            ty::HEADERS | ty::PUSH_PROMISE | ty::CONTINUATION => {
                let Some(b) = self.dirs[di].block.as_mut() else {
                    return;
                };
                if b.truncated {
                    return;
                }
                let room = MAX_HEADER_BLOCK - b.buf.len();
                if d.len() > room {
                    b.buf.extend_from_slice(&d[..room]);
                    b.truncated = true;
                    self.stats.header_blocks_too_large += 1;
                } else {
                    b.buf.extend_from_slice(d);
                }
            }
            ty::SETTINGS if !p.settings_lost => {
                for &byte in d {
                    p.small[usize::from(p.small_len)] = byte;
                    p.small_len += 1;
                    if p.small_len == 6 {
                        p.small_len = 0;
                        let s = p.small;
                        let id = u16::from_be_bytes([s[0], s[1]]);
                        let v = u32::from_be_bytes([s[2], s[3], s[4], s[5]]);
                        self.apply_setting(di, id, v);
                    }
                }
            }
            _ => {}
        }
    }

    /// A SETTINGS entry sent in direction `di`: it governs what the other
    /// direction sends.
    pub(super) fn apply_setting(&mut self, di: usize, id: u16, v: u32) {
        let other = &mut self.dirs[1 - di];
        match id {
            setting::HEADER_TABLE_SIZE => other.hpack.set_limit(v),
            setting::MAX_FRAME_SIZE if (DEFAULT_MAX_FRAME..=MAX_FRAME_LIMIT).contains(&v) => {
                other.max_frame = Some(v)
            }
            _ => {}
        }
    }

    pub(super) fn finish_frame(&mut self, di: usize, p: Payload, ts: u64, out: &mut Vec<H2Event>) {
        self.dirs[di].reader = HEADER_START;
        let h = p.h;
        let fixed_ok = !p.fixed_lost && u32::from(p.small_len) >= p.fixed;
        let be32 = |s: &[u8]| u32::from_be_bytes([s[0], s[1], s[2], s[3]]);
        match h.ty {
            ty::DATA => self.data_frame(di, h, p.content, ts, out),
            ty::HEADERS | ty::PUSH_PROMISE | ty::CONTINUATION if h.has(flag::END_HEADERS) => {
                self.complete_block(di, ts, out)
            }
            ty::RST_STREAM => {
                let code = fixed_ok.then(|| be32(&p.small));
                let by_client = self.is_client(di) == Some(true);
                if self.is_client(di).is_some() {
                    self.reset(h.stream, code, by_client, ts, out);
                }
            }
            ty::GOAWAY if fixed_ok => {
                let last = be32(&p.small) & 0x7fff_ffff;
                let code = be32(&p.small[4..]);
                if let Some(by_client) = self.is_client(di) {
                    out.push(H2Event::GoAway {
                        ts,
                        last_stream_id: last,
                        error_code: code,
                        by_client,
                    });
                    if !by_client {
                        // Client streams above `last` were not processed.
                        let refused: Vec<u32> = self
                            .streams
                            .range(last.saturating_add(1)..)
                            .map(|(&id, _)| id)
                            .collect();
                        for id in refused {
                            self.reset(id, Some(frames::REFUSED_STREAM), false, ts, out);
                        }
                    }
                }
            }
            _ => {}
        }
    }
}
