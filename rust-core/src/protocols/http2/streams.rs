//! Stream layer of [`H2Conn`]: header blocks decoded into requests,
//! responses and trailers; stream lifecycle and events.

use super::frames::{flag, FrameHeader};
use super::hpack::Field;
use super::{H2Conn, H2Event, H2Request, MAX_GRPC_MESSAGE, MAX_STREAMS, MAX_VALUE};

#[derive(Debug, Default)]
pub(super) struct Stream {
    pub(super) req_ended: bool,
    pub(super) req_body: u64,
    pub(super) resp_started: bool,
    pub(super) resp_ended: bool,
    pub(super) resp_body: u64,
    pub(super) grpc_status: Option<u32>,
    pub(super) grpc_message: Option<String>,
}

/// The fields kept from one header block.
#[derive(Debug, Default)]
struct Fields {
    req: H2Request,
    status: Option<u16>,
    status_seen: bool,
    grpc_status: Option<u32>,
    grpc_message: Option<String>,
}

fn text(v: &[u8]) -> String {
    let v = &v[..v.len().min(MAX_VALUE)];
    String::from_utf8_lossy(v).into_owned()
}

pub(super) fn percent_decode(v: &[u8]) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(v.len().min(MAX_GRPC_MESSAGE));
    let mut i = 0;
    while i < v.len() && out.len() < MAX_GRPC_MESSAGE {
        match (
            v[i],
            v.get(i + 1).and_then(|&b| hex(b)),
            v.get(i + 2).and_then(|&b| hex(b)),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(super) fn parse_u32(v: &[u8]) -> Option<u32> {
    if v.is_empty() || v.len() > 9 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

impl Fields {
    fn set(&mut self, f: Field, v: &[u8]) {
        let one = |slot: &mut Option<String>| {
            if slot.is_none() {
                *slot = Some(text(v));
            }
        };
        let r = &mut self.req;
        match f {
            Field::Method => one(&mut r.method),
            Field::Path => one(&mut r.path),
            Field::Authority => one(&mut r.authority),
            Field::Scheme => one(&mut r.scheme),
            Field::ContentType => one(&mut r.content_type),
            Field::UserAgent => one(&mut r.user_agent),
            Field::Traceparent => one(&mut r.traceparent),
            Field::GrpcTimeout => one(&mut r.grpc_timeout),
            Field::Tracestate => {
                let t = match r.tracestate.take() {
                    Some(mut t) if t.len() < MAX_VALUE => {
                        t.push(',');
                        t.push_str(&text(v));
                        t
                    }
                    Some(t) => t,
                    None => text(v),
                };
                r.tracestate = Some(t);
            }
            Field::Status => {
                if !self.status_seen {
                    self.status_seen = true;
                    self.status = match v {
                        [a, b, c] if v.iter().all(u8::is_ascii_digit) => Some(
                            u16::from(a - b'0') * 100
                                + u16::from(b - b'0') * 10
                                + u16::from(c - b'0'),
                        ),
                        _ => None,
                    };
                }
            }
            Field::GrpcStatus => {
                if self.grpc_status.is_none() {
                    self.grpc_status = parse_u32(v);
                }
            }
            Field::GrpcMessage => {
                if self.grpc_message.is_none() {
                    self.grpc_message = Some(percent_decode(v));
                }
            }
            Field::Other => {}
        }
    }

    /// The block carries request pseudo-headers / a response status.
    fn looks_like_request(&self) -> bool {
        self.req.method.is_some()
    }
    fn looks_like_response(&self) -> bool {
        self.status_seen
    }
}

impl H2Conn {
    pub(super) fn data_frame(
        &mut self,
        di: usize,
        h: FrameHeader,
        bytes: u64,
        ts: u64,
        out: &mut Vec<H2Event>,
    ) {
        let Some(client) = self.is_client(di) else {
            return;
        };
        let Some(s) = self.streams.get_mut(&h.stream) else {
            self.stats.frames_untracked_stream += 1;
            return;
        };
        let end = h.has(flag::END_STREAM);
        if client {
            s.req_body = s.req_body.saturating_add(bytes);
            if end && !s.req_ended {
                s.req_ended = true;
                out.push(H2Event::RequestEnd {
                    stream_id: h.stream,
                    ts,
                    body_bytes: s.req_body,
                });
            }
        } else {
            s.resp_body = s.resp_body.saturating_add(bytes);
            if end && !s.resp_ended {
                self.end_response(h.stream, ts, out);
            }
        }
        self.maybe_forget(h.stream);
    }

    pub(super) fn end_response(&mut self, id: u32, ts: u64, out: &mut Vec<H2Event>) {
        if let Some(s) = self.streams.get_mut(&id) {
            s.resp_ended = true;
            out.push(H2Event::ResponseEnd {
                stream_id: id,
                ts,
                body_bytes: s.resp_body,
                grpc_status: s.grpc_status,
                grpc_message: s.grpc_message.take(),
            });
        }
    }

    /// Forget a stream once both sides ended.
    pub(super) fn maybe_forget(&mut self, id: u32) {
        if self
            .streams
            .get(&id)
            .is_some_and(|s| s.req_ended && s.resp_ended)
        {
            self.streams.remove(&id);
        }
    }

    pub(super) fn reset(
        &mut self,
        id: u32,
        code: Option<u32>,
        by_client: bool,
        ts: u64,
        out: &mut Vec<H2Event>,
    ) {
        match self.streams.remove(&id) {
            Some(s) if !s.resp_ended => out.push(H2Event::Reset {
                stream_id: id,
                ts,
                error_code: code,
                by_client,
            }),
            Some(_) => {}
            None => self.stats.frames_untracked_stream += 1,
        }
    }

    // -- header blocks -------------------------------------------------------------

    /// Decodes the open header block of direction `di` (complete, or cut
    /// short) and emits its events; `ts` is the ts of its last byte.
    pub(super) fn complete_block(&mut self, di: usize, ts: u64, out: &mut Vec<H2Event>) {
        let Some(b) = self.dirs[di].block.take() else {
            return;
        };
        self.stats.header_blocks += 1;
        let mut f = Fields::default();
        let o = self.dirs[di]
            .hpack
            .decode(&b.buf, !b.truncated, &mut |field, v| f.set(field, v));
        if o.error.is_some() {
            self.stats.hpack_errors += 1;
        }
        let undecodable = b.truncated || o.undecodable();
        if undecodable {
            self.stats.headers_undecodable += 1;
        }
        if b.push {
            // Only a server sends PUSH_PROMISE; the promised stream is skipped.
            self.set_client(di, false);
            return;
        }
        let client = match self.is_client(di) {
            Some(c) => c,
            None if f.looks_like_request() => {
                self.set_client(di, true);
                true
            }
            None if f.looks_like_response() => {
                self.set_client(di, false);
                false
            }
            None => {
                self.stats.blocks_unattributed += 1;
                return;
            }
        };
        let id = b.stream;
        let undecodable_ev = H2Event::HeadersUndecodable {
            stream_id: id,
            ts: b.ts,
            from_client: client,
        };
        if client {
            if let Some(s) = self.streams.get_mut(&id) {
                // Trailers (or a repeated head) of a request we track.
                if undecodable {
                    out.push(undecodable_ev);
                }
                if b.end_stream && !s.req_ended {
                    s.req_ended = true;
                    out.push(H2Event::RequestEnd {
                        stream_id: id,
                        ts,
                        body_bytes: s.req_body,
                    });
                }
                self.maybe_forget(id);
                return;
            }
            if (f.looks_like_response() && !f.looks_like_request()) || id.is_multiple_of(2) {
                self.stats.role_conflicts += 1;
                return;
            }
            self.track(id, ts, out);
            if undecodable {
                out.push(undecodable_ev);
            }
            out.push(H2Event::Request {
                stream_id: id,
                ts: b.ts,
                head: f.req,
            });
            if b.end_stream {
                if let Some(s) = self.streams.get_mut(&id) {
                    s.req_ended = true;
                }
                out.push(H2Event::RequestEnd {
                    stream_id: id,
                    ts,
                    body_bytes: 0,
                });
            }
        } else {
            if f.looks_like_request() && !f.looks_like_response() {
                self.stats.role_conflicts += 1;
                return;
            }
            let Some(s) = self.streams.get_mut(&id) else {
                self.stats.frames_untracked_stream += 1;
                return;
            };
            if s.resp_ended {
                return;
            }
            if undecodable {
                out.push(undecodable_ev);
            }
            if !s.resp_started {
                if f.status.is_some_and(|st| (100..200).contains(&st)) && !b.end_stream {
                    return; // informational (100, 103): the final response follows
                }
                s.resp_started = true;
                out.push(H2Event::Response {
                    stream_id: id,
                    ts: b.ts,
                    status: f.status,
                    grpc_status: f.grpc_status,
                    content_type: f.req.content_type,
                });
            }
            if f.grpc_status.is_some() {
                s.grpc_status = f.grpc_status;
            }
            if f.grpc_message.is_some() {
                s.grpc_message = f.grpc_message;
            }
            if b.end_stream {
                self.end_response(id, ts, out);
                self.maybe_forget(id);
            }
        }
    }

    /// Starts tracking stream `id`, evicting the oldest beyond the cap.
    pub(super) fn track(&mut self, id: u32, ts: u64, out: &mut Vec<H2Event>) {
        if self.streams.len() >= MAX_STREAMS {
            if let Some((old, s)) = self.streams.pop_first() {
                self.stats.streams_evicted += 1;
                if !s.resp_ended {
                    out.push(H2Event::Unfinished { stream_id: old, ts });
                }
            }
        }
        self.streams.insert(id, Stream::default());
    }
}
