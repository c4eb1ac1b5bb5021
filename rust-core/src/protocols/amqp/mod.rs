//! RabbitMQ / AMQP 0-9-1: one [`AmqpSession`] per connection, fed both directions,
//! reporting messaging operations (see `protocols/messaging.rs` for the events).
//!
//! Operations (`messaging.system` = `rabbitmq`):
//! * `basic.publish` + its content: PRODUCER `publish`, destination = the exchange (the
//!   default exchange, named by the empty string, as `amq.default`), routing key, body
//!   size and message-id from the content header. `Started` at its content header frame
//!   (its ts and the writing thread: the write the kernel inserts the publish's
//!   `traceparent` into; clients often write method, header and body apart), or from the
//!   method frame when the header was never seen. It ends when its last body byte was written; on a
//!   channel in confirm mode (`confirm.select` seen) at the broker's `basic.ack` /
//!   `basic.nack` of its sequence number (`multiple` settles every earlier one too, and
//!   tag 0 with `multiple` all of them); a nack gives `error_type` `nack`. A
//!   `basic.return` (mandatory publish the broker could not route) names the oldest
//!   unconfirmed publish of that exchange and routing key with the return's reply code
//!   (`NO_ROUTE`): RabbitMQ sends it before that publish's ack. Without confirm mode a
//!   publish has ended before the broker could complain: a `channel.close` that follows
//!   (404 for a missing exchange) does not reach it.
//! * `basic.deliver` (push consumer): CONSUMER `process`, destination = the queue of the
//!   `basic.consume` that registered the consumer tag (from `consume-ok` when the server
//!   chose the tag; for a consumer registered before the collector saw the connection,
//!   the routing key when the message came through the default exchange, else unknown),
//!   routing key, body size, delivery tag, message-id (else the delivery tag as text),
//!   and a span link to a well-formed `traceparent` of the content's `headers` table.
//!   Reported with `StartedWith` when its content header is read (timed from the deliver
//!   method frame and its reading thread; `links[0]`, the message's context, is the
//!   span's parent); a delivery whose header was never read is reported `Done` only.
//!   It ends at the client's
//!   `basic.ack` / `nack` / `reject` of that tag (`multiple` as above; nack and reject
//!   give `error_type` `rejected`) when the consumer acknowledges manually, and when its
//!   body has been read with `no_ack` (or when the consumer is not known).
//! * `basic.get`: CLIENT `get` (Receive), reported at the end of get-ok's content as a
//!   `Done` without `Started`, timed from the get request (ts and thread). `get-empty`
//!   is no span: `empty_polls`. A get-ok answering a get lost with the boundaries
//!   toward the server (uncaptured bytes) starts where they were lost, queue unknown.
//! * Closes: a `channel.close` (either side) ends the channel's open operations with
//!   `error_type` = the reply code's name (`NOT_FOUND`...; `channel_closed` for 200, a
//!   normal close that still left operations open: unacked deliveries go back to the
//!   queue). A `connection.close` does the same for every channel (200: `aborted`,
//!   shown as `connection_closed`). The connection closing ends what is left `aborted`.
//! * Everything else (connection and channel handshakes, declarations, qos, consume-ok,
//!   heartbeats...) is counted in `not_operations`, one per method or heartbeat frame;
//!   the protocol header and content frames are not counted.
//!
//! Framing (`wire.rs`): frames are cut anywhere by the syscalls; uncaptured bytes
//! (`gap`) inside a frame are skipped by its size (big bodies); a gap that covers a
//! frame boundary loses the direction's boundaries: contents in progress end with what
//! was read (an auto-ack delivery at that time) and frames are skipped until a complete,
//! plausible one is found (a known method, a basic content header or a heartbeat with
//! its frame-end byte in place). A frame that cannot be AMQP once the direction was in
//! step (unknown type, absurd size, frame-end byte not 0xCE) gives the whole connection
//! up: `malformed` once, open operations end `aborted`. A method that does not parse,
//! a content frame no method announced, or a method cutting a content short counts
//! `malformed` and is skipped (content frames right after a lost boundary, whose method
//! was not captured, are skipped without counting). A connection first seen mid-stream
//! starts without the protocol header, anywhere in a frame toward the client: it is in
//! step at its first
//! plausible frame.
//!
//! Bounds: at most [`MAX_OPEN`] open operations per connection (beyond that the oldest
//! unacknowledged delivery or unconfirmed publish of the channel ends, `aborted`),
//! [`MAX_CONSUMERS`] consumer tags and [`MAX_WAITING`] consume/get requests per channel,
//! [`MAX_CHANNELS`] channels; one buffer of at most 64 KiB per direction.

pub mod wire;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};

use super::messaging::{MsgEvent, MsgOp, MsgSession, MsgStats, MsgSystem, OpType};
use super::session::{Flow, Sniff};
use wire::{Frame, Framer, Method, Out};

/// Open operations (unacked deliveries, unconfirmed publishes) kept per connection.
pub const MAX_OPEN: usize = 16 * 1024;
/// Consumer tags remembered per channel.
pub const MAX_CONSUMERS: usize = 1024;
/// Consume requests waiting for consume-ok, and gets waiting for their reply, per channel.
pub const MAX_WAITING: usize = 256;
/// Channels followed per connection (RabbitMQ's default `channel_max` is 2047).
pub const MAX_CHANNELS: usize = 2048;
/// The default exchange's name in spans (on the wire: the empty string).
const DEFAULT_EXCHANGE: &str = "amq.default";

/// A client's first bytes toward the server: the AMQP 0-9-1 protocol header. The server
/// never speaks first.
pub fn sniff(flow: Flow, first: &[u8]) -> Sniff {
    if flow == Flow::ToClient {
        return Sniff::No;
    }
    let n = first.len().min(8);
    if first[..n] != wire::PROTOCOL_HEADER[..n] {
        return Sniff::No;
    }
    if n < 8 {
        Sniff::NeedMore
    } else {
        Sniff::Yes
    }
}

/// Whether `data` (one direction of a connection first seen mid-stream, on port 5672)
/// starts with plausible frames: a complete known method, basic content header or
/// heartbeat with its frame-end byte, then frames whose headers are sane as far as
/// `data` goes.
pub fn plausible_midstream(_flow: Flow, data: &[u8]) -> bool {
    let Some(mut i) = wire::frame_at(data, 0) else {
        return false;
    };
    while data.len() - i >= 7 {
        let t = data[i];
        let size = u32::from_be_bytes([data[i + 3], data[i + 4], data[i + 5], data[i + 6]]);
        if !matches!(t, 1 | 2 | 3 | 8) || size > wire::MAX_FRAME {
            return false;
        }
        let end = i + 7 + size as usize;
        if end >= data.len() {
            return true;
        }
        if data[end] != wire::FRAME_END {
            return false;
        }
        i = end + 1;
    }
    true
}

#[derive(Debug)]
struct Consumer {
    tag: Vec<u8>,
    queue: String,
    no_ack: bool,
}

#[derive(Debug)]
struct Get {
    queue: String,
    ts: u64,
    tid: u32,
}

/// What a content (header + body frames) on its way belongs to.
#[derive(Debug)]
enum Owner {
    /// A publish (`confirm`: its sequence number in confirm mode).
    Publish {
        op: MsgOp,
        confirm: Option<u64>,
    },
    /// A pushed delivery (`settle`: it ends at the client's ack/nack/reject).
    Deliver {
        op: MsgOp,
        settle: bool,
    },
    Get {
        op: MsgOp,
    },
    /// A content nobody asked for (get-ok without a get seen): skipped.
    Skip,
    /// basic.return: the reply code of the publish it names.
    Return {
        code: u16,
        exchange: Vec<u8>,
        routing_key: Vec<u8>,
    },
}

#[derive(Debug)]
struct Content {
    owner: Owner,
    header: bool,
    remaining: u64,
}

#[derive(Debug, Default)]
struct Channel {
    /// confirm.select seen: the next publish's sequence number.
    confirm: Option<u64>,
    /// Content toward the server / toward the client in progress.
    up: Option<Content>,
    down: Option<Content>,
    /// Publishes sent in confirm mode, by sequence number (increasing).
    unconfirmed: VecDeque<(u64, MsgOp)>,
    /// Deliveries waiting for the client's ack, by delivery tag (increasing).
    unacked: VecDeque<(u64, MsgOp)>,
    consumers: Vec<Consumer>,
    consuming: VecDeque<Consumer>,
    gets: VecDeque<Get>,
}

#[derive(Debug, Default)]
struct State {
    seq: u64,
    stats: MsgStats,
    channels: HashMap<u16, Channel>,
    open: usize,
    dead: bool,
    /// Where the direction toward the server last lost its boundaries (ts, tid): a
    /// get-ok answering no get seen answers a get lost there.
    up_lost: Option<(u64, u32)>,
    /// Per direction (toward the server, toward the client): boundaries were found
    /// again and no method frame came since: content frames whose method was lost are
    /// skipped without counting them malformed.
    orphans_ok: [bool; 2],
}

/// One AMQP 0-9-1 connection's parser (see the module doc).
#[derive(Debug, Default)]
pub struct AmqpSession {
    up: Framer,
    down: Framer,
    st: State,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn nonempty(b: &[u8]) -> Option<String> {
    (!b.is_empty()).then(|| text(b))
}

impl AmqpSession {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes skipped after losing the framing (both directions), for tests and fuzzing.
    pub fn losses(&self) -> u64 {
        self.up.skipped + self.down.skipped + u64::from(self.st.dead)
    }
}

impl MsgSession for AmqpSession {
    fn feed(
        &mut self,
        flow: Flow,
        data: &[u8],
        gap: u64,
        ts: u64,
        tid: u32,
        out: &mut Vec<MsgEvent>,
    ) {
        let AmqpSession { up, down, st } = self;
        if st.dead {
            return;
        }
        let framer = match flow {
            Flow::ToServer => up,
            Flow::ToClient => down,
        };
        let mut bad = false;
        framer.feed(data, gap, ts, tid, &mut |o| match o {
            Out::Frame(f) => {
                if !st.dead {
                    st.frame(flow, &f, out)
                }
            }
            Out::ProtocolHeader { .. } => {}
            Out::Lost { ts, tid } => st.lost(flow, ts, tid, out),
            Out::Bad { ts } => {
                if !st.dead {
                    st.stats.malformed += 1;
                    st.give_up(ts, out);
                }
                bad = true;
            }
        });
        if bad || st.dead {
            self.up.kill();
            self.down.kill();
        }
    }

    fn close(&mut self, ts: u64, out: &mut Vec<MsgEvent>) {
        self.st.give_up(ts, out);
        self.up.kill();
        self.down.kill();
    }

    fn stats(&self) -> MsgStats {
        self.st.stats
    }

    fn compact(&mut self) {
        self.up.compact();
        self.down.compact();
        self.st.channels.shrink_to_fit();
        for c in self.st.channels.values_mut() {
            c.unconfirmed.shrink_to_fit();
            c.unacked.shrink_to_fit();
            c.consumers.shrink_to_fit();
            c.consuming.shrink_to_fit();
            c.gets.shrink_to_fit();
        }
    }
}

/// How the operations a close ends are told.
#[derive(Clone, Copy)]
enum Ending {
    Error(u16, &'static str),
    Aborted,
}

impl State {
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn channel(&mut self, id: u16) -> Option<&mut Channel> {
        if !self.channels.contains_key(&id) && self.channels.len() >= MAX_CHANNELS {
            return None;
        }
        Some(self.channels.entry(id).or_default())
    }

    fn frame(&mut self, flow: Flow, f: &Frame<'_>, out: &mut Vec<MsgEvent>) {
        match f.typ {
            wire::FRAME_HEARTBEAT => self.stats.not_operations += 1,
            wire::FRAME_METHOD => self.method(flow, f, out),
            wire::FRAME_HEADER => self.header(flow, f, out),
            _ => self.body(flow, f, out),
        }
    }

    fn content_slot(&mut self, flow: Flow, ch: u16) -> Option<&mut Option<Content>> {
        let c = self.channels.get_mut(&ch)?;
        Some(match flow {
            Flow::ToServer => &mut c.up,
            Flow::ToClient => &mut c.down,
        })
    }

    fn orphan(&mut self, flow: Flow) {
        if !self.orphans_ok[flow as usize] {
            self.stats.malformed += 1;
        }
    }

    fn header(&mut self, flow: Flow, f: &Frame<'_>, out: &mut Vec<MsgEvent>) {
        let Some(slot) = self.content_slot(flow, f.channel) else {
            self.orphan(flow);
            return;
        };
        let Some(c) = slot.as_mut().filter(|c| !c.header) else {
            self.orphan(flow);
            return;
        };
        let Some(p) = wire::props(f.payload) else {
            // Too short to hold a body size: the content is given up.
            let c = slot.take();
            self.stats.malformed += 1;
            if let Some(c) = c {
                self.content_done(f.channel, c, f.end_ts, out);
            }
            return;
        };
        c.header = true;
        c.remaining = p.body_size;
        let op = match &mut c.owner {
            Owner::Publish { op, .. } | Owner::Deliver { op, .. } | Owner::Get { op } => op,
            Owner::Return { .. } | Owner::Skip => {
                if p.body_size == 0 {
                    let c = slot.take();
                    if let Some(c) = c {
                        self.content_done(f.channel, c, f.end_ts, out);
                    }
                }
                return;
            }
        };
        op.body_size = Some(p.body_size);
        if let Some(id) = p.message_id.filter(|m| !m.is_empty()) {
            op.message_id = Some(text(id));
        }
        if op.op_type != OpType::Send {
            if let Some(tp) = p.headers.and_then(wire::traceparent) {
                op.links.push(tp);
            }
        }
        if op.op_type == OpType::Process {
            // Its ids depend on the message's context (links[0]): known now.
            out.push(MsgEvent::StartedWith(op.clone()));
        }
        if op.op_type == OpType::Send {
            // The kernel puts the publish's traceparent into this frame, inside its write:
            // the span starts with that write, to take exactly those ids.
            op.start_ts = f.ts;
            op.tid = f.tid;
            out.push(MsgEvent::Started {
                seq: op.seq,
                ts: f.ts,
                tid: f.tid,
            });
        }
        if p.body_size == 0 {
            let c = slot.take();
            if let Some(c) = c {
                self.content_done(f.channel, c, f.end_ts, out);
            }
        }
    }

    fn body(&mut self, flow: Flow, f: &Frame<'_>, out: &mut Vec<MsgEvent>) {
        let Some(slot) = self.content_slot(flow, f.channel) else {
            self.orphan(flow);
            return;
        };
        let Some(c) = slot.as_mut().filter(|c| c.header) else {
            self.orphan(flow);
            return;
        };
        c.remaining = c.remaining.saturating_sub(u64::from(f.size));
        if c.remaining == 0 {
            let c = slot.take();
            if let Some(c) = c {
                self.content_done(f.channel, c, f.end_ts, out);
            }
        }
    }

    /// A content ended (whole, or with what was read of it) at `ts`.
    fn content_done(&mut self, ch: u16, c: Content, ts: u64, out: &mut Vec<MsgEvent>) {
        match c.owner {
            Owner::Publish { mut op, confirm } => match confirm {
                Some(n) => self.hold(ch, n, op, true, ts, out),
                None => {
                    op.end_ts = ts;
                    self.done(op, out);
                }
            },
            Owner::Deliver { mut op, settle } => {
                if settle {
                    let tag = op.delivery_tag.unwrap_or(0);
                    self.hold(ch, tag, op, false, ts, out);
                } else {
                    op.end_ts = ts;
                    self.done(op, out);
                }
            }
            Owner::Get { mut op } => {
                op.end_ts = ts;
                self.done(op, out);
            }
            Owner::Skip => {}
            Owner::Return {
                code,
                exchange,
                routing_key,
            } => {
                let Some(chan) = self.channels.get_mut(&ch) else {
                    return;
                };
                let dest = if exchange.is_empty() {
                    DEFAULT_EXCHANGE.to_string()
                } else {
                    text(&exchange)
                };
                let rk = nonempty(&routing_key);
                if let Some((_, op)) = chan.unconfirmed.iter_mut().find(|(_, op)| {
                    op.error_type.is_none()
                        && op.destination.as_deref() == Some(&dest)
                        && op.routing_key == rk
                }) {
                    op.error_type = Some(wire::reply_name(code));
                }
            }
        }
    }

    /// Keeps an operation until it is settled (`publish`: by the broker's confirm, else
    /// by the client's ack), within the bounds.
    fn hold(
        &mut self,
        ch: u16,
        key: u64,
        op: MsgOp,
        publish: bool,
        ts: u64,
        out: &mut Vec<MsgEvent>,
    ) {
        // The op was counted open while its content came: it stays so.
        let Some(chan) = self.channels.get_mut(&ch) else {
            return;
        };
        let q = if publish {
            &mut chan.unconfirmed
        } else {
            &mut chan.unacked
        };
        q.push_back((key, op));
        self.open += 1;
        if self.open > MAX_OPEN {
            let chan = self.channels.get_mut(&ch).expect("present");
            let q = if publish {
                &mut chan.unconfirmed
            } else {
                &mut chan.unacked
            };
            if let Some((_, mut old)) = q.pop_front() {
                self.open -= 1;
                old.end_ts = ts.max(old.start_ts);
                old.aborted = true;
                self.done(old, out);
            }
        }
    }

    fn done(&mut self, mut op: MsgOp, out: &mut Vec<MsgEvent>) {
        op.end_ts = op.end_ts.max(op.start_ts);
        out.push(MsgEvent::Done(op));
    }

    fn new_op(&mut self, op_type: OpType, op_name: &'static str, ts: u64, tid: u32) -> MsgOp {
        MsgOp {
            seq: self.next_seq(),
            system: MsgSystem::Rabbitmq,
            op_type,
            op_name,
            start_ts: ts,
            tid,
            ..Default::default()
        }
    }

    /// A method cut a content in progress on its channel short.
    fn cut_content(&mut self, flow: Flow, ch: u16, ts: u64, out: &mut Vec<MsgEvent>) {
        if let Some(c) = self.content_slot(flow, ch).and_then(|s| s.take()) {
            self.stats.malformed += 1;
            self.content_done(ch, c, ts, out);
        }
    }

    fn method(&mut self, flow: Flow, f: &Frame<'_>, out: &mut Vec<MsgEvent>) {
        let ch = f.channel;
        self.orphans_ok[flow as usize] = false;
        self.cut_content(flow, ch, f.ts, out);
        let Some(m) = wire::method(f.payload) else {
            self.stats.malformed += 1;
            return;
        };
        let up = flow == Flow::ToServer;
        match m {
            Method::Publish {
                exchange,
                routing_key,
            } if up => {
                let mut op = self.new_op(OpType::Send, "publish", f.ts, f.tid);
                op.destination = Some(if exchange.is_empty() {
                    DEFAULT_EXCHANGE.to_string()
                } else {
                    text(exchange)
                });
                op.routing_key = nonempty(routing_key);
                let Some(chan) = self.channel(ch) else {
                    self.stats.not_operations += 1;
                    return;
                };
                let confirm = chan.confirm;
                if let Some(n) = &mut chan.confirm {
                    *n += 1;
                }
                let chan = self.channels.get_mut(&ch).expect("present");
                chan.up = Some(Content {
                    owner: Owner::Publish { op, confirm },
                    header: false,
                    remaining: 0,
                });
            }
            Method::Deliver {
                consumer_tag,
                delivery_tag,
                exchange,
                routing_key,
            } if !up => {
                let mut op = self.new_op(OpType::Process, "process", f.ts, f.tid);
                let Some(chan) = self.channel(ch) else {
                    self.stats.not_operations += 1;
                    return;
                };
                let consumer = chan.consumers.iter().find(|c| c.tag == consumer_tag);
                op.destination = match consumer {
                    Some(c) => Some(c.queue.clone()),
                    // Through the default exchange the routing key is the queue.
                    None if exchange.is_empty() && !routing_key.is_empty() => {
                        Some(text(routing_key))
                    }
                    None => None,
                };
                let settle = consumer.is_some_and(|c| !c.no_ack);
                op.routing_key = nonempty(routing_key);
                op.delivery_tag = Some(delivery_tag);
                op.message_id = Some(delivery_tag.to_string());
                chan.down = Some(Content {
                    owner: Owner::Deliver { op, settle },
                    header: false,
                    remaining: 0,
                });
            }
            Method::GetOk {
                delivery_tag,
                exchange: _,
                routing_key,
            } if !up => {
                let Some(chan) = self.channels.get_mut(&ch) else {
                    self.stats.malformed += 1;
                    return;
                };
                let get = chan.gets.pop_front().or_else(|| {
                    // A get lost with the boundaries toward the server: queue unknown.
                    self.up_lost.map(|(ts, tid)| Get {
                        queue: String::new(),
                        ts,
                        tid,
                    })
                });
                let Some(get) = get else {
                    // A reply to a get not seen: its content is skipped.
                    self.stats.malformed += 1;
                    chan.down = Some(Content {
                        owner: Owner::Skip,
                        header: false,
                        remaining: 0,
                    });
                    return;
                };
                let mut op = self.new_op(OpType::Receive, "get", get.ts, get.tid);
                op.destination = nonempty(get.queue.as_bytes());
                op.routing_key = nonempty(routing_key);
                op.delivery_tag = Some(delivery_tag);
                op.message_id = Some(delivery_tag.to_string());
                let chan = self.channels.get_mut(&ch).expect("present");
                chan.down = Some(Content {
                    owner: Owner::Get { op },
                    header: false,
                    remaining: 0,
                });
            }
            Method::Return {
                code,
                exchange,
                routing_key,
            } if !up => {
                self.stats.not_operations += 1;
                if let Some(chan) = self.channel(ch) {
                    chan.down = Some(Content {
                        owner: Owner::Return {
                            code,
                            exchange: exchange.to_vec(),
                            routing_key: routing_key.to_vec(),
                        },
                        header: false,
                        remaining: 0,
                    });
                }
            }
            Method::Get { queue, .. } if up => {
                if let Some(chan) = self.channel(ch) {
                    if chan.gets.len() < MAX_WAITING {
                        chan.gets.push_back(Get {
                            queue: text(queue),
                            ts: f.ts,
                            tid: f.tid,
                        });
                    }
                }
            }
            Method::GetEmpty if !up => {
                self.stats.empty_polls += 1;
                if let Some(chan) = self.channels.get_mut(&ch) {
                    chan.gets.pop_front();
                }
            }
            Method::Consume {
                queue,
                consumer_tag,
                no_ack,
                no_wait,
            } if up => {
                self.stats.not_operations += 1;
                if let Some(chan) = self.channel(ch) {
                    let c = Consumer {
                        tag: consumer_tag.to_vec(),
                        queue: text(queue),
                        no_ack,
                    };
                    if no_wait {
                        if chan.consumers.len() < MAX_CONSUMERS {
                            chan.consumers.push(c);
                        }
                    } else if chan.consuming.len() < MAX_WAITING {
                        chan.consuming.push_back(c);
                    }
                }
            }
            Method::ConsumeOk { consumer_tag } if !up => {
                self.stats.not_operations += 1;
                if let Some(chan) = self.channels.get_mut(&ch) {
                    if let Some(mut c) = chan.consuming.pop_front() {
                        c.tag = consumer_tag.to_vec();
                        chan.consumers.retain(|o| o.tag != c.tag);
                        if chan.consumers.len() < MAX_CONSUMERS {
                            chan.consumers.push(c);
                        }
                    }
                }
            }
            Method::CancelOk { consumer_tag } | Method::Cancel { consumer_tag } => {
                self.stats.not_operations += 1;
                // The client's cancel: deliveries may still come until cancel-ok.
                if !up || matches!(m, Method::CancelOk { .. }) {
                    if let Some(chan) = self.channels.get_mut(&ch) {
                        chan.consumers.retain(|c| c.tag != consumer_tag);
                    }
                }
            }
            Method::ConfirmSelect if up => {
                self.stats.not_operations += 1;
                if let Some(chan) = self.channel(ch) {
                    chan.confirm.get_or_insert(1);
                }
            }
            Method::Ack {
                delivery_tag,
                multiple,
            } => self.settle(ch, up, delivery_tag, multiple, None, f.ts, out),
            Method::Nack {
                delivery_tag,
                multiple,
            } => {
                let why = if up { "rejected" } else { "nack" };
                self.settle(ch, up, delivery_tag, multiple, Some(why), f.ts, out)
            }
            Method::Reject { delivery_tag } if up => {
                self.settle(ch, up, delivery_tag, false, Some("rejected"), f.ts, out)
            }
            Method::ChannelClose { code } => {
                self.stats.not_operations += 1;
                let ending = if code == 200 {
                    Ending::Error(code, "channel_closed")
                } else {
                    Ending::Error(code, "")
                };
                self.end_channel(ch, ending, f.ts, out);
            }
            Method::ConnectionClose { code } => {
                self.stats.not_operations += 1;
                let ending = if code == 200 {
                    Ending::Aborted
                } else {
                    Ending::Error(code, "")
                };
                let mut ids: Vec<u16> = self.channels.keys().copied().collect();
                ids.sort_unstable();
                for id in ids {
                    self.end_channel(id, ending, f.ts, out);
                }
            }
            _ => self.stats.not_operations += 1,
        }
    }

    /// An ack/nack/reject: the client's settles deliveries, the broker's (confirm mode)
    /// publishes. Tag 0 with `multiple`: all of them.
    #[allow(clippy::too_many_arguments)]
    fn settle(
        &mut self,
        ch: u16,
        up: bool,
        tag: u64,
        multiple: bool,
        error: Option<&'static str>,
        ts: u64,
        out: &mut Vec<MsgEvent>,
    ) {
        let Some(chan) = self.channels.get_mut(&ch) else {
            return;
        };
        let q = if up {
            &mut chan.unacked
        } else {
            &mut chan.unconfirmed
        };
        let mut ended = Vec::new();
        if multiple {
            while q.front().is_some_and(|(k, _)| tag == 0 || *k <= tag) {
                ended.extend(q.pop_front().map(|(_, op)| op));
            }
        } else if let Some(i) = q.iter().position(|(k, _)| *k == tag) {
            ended.extend(q.remove(i).map(|(_, op)| op));
        }
        self.open -= ended.len().min(self.open);
        for mut op in ended {
            op.end_ts = ts;
            if let Some(e) = error {
                op.error_type = Some(e.to_string());
            }
            self.done(op, out);
        }
    }

    /// A channel closed (or its connection): its open operations end.
    fn end_channel(&mut self, ch: u16, ending: Ending, ts: u64, out: &mut Vec<MsgEvent>) {
        let Some(mut chan) = self.channels.remove(&ch) else {
            return;
        };
        let mut ops: Vec<MsgOp> = Vec::new();
        for c in [chan.up.take(), chan.down.take()].into_iter().flatten() {
            match c.owner {
                Owner::Publish { op, .. } | Owner::Deliver { op, .. } | Owner::Get { op } => {
                    ops.push(op)
                }
                Owner::Return { .. } | Owner::Skip => {}
            }
        }
        self.open -= (chan.unconfirmed.len() + chan.unacked.len()).min(self.open);
        ops.extend(chan.unconfirmed.drain(..).map(|(_, op)| op));
        ops.extend(chan.unacked.drain(..).map(|(_, op)| op));
        ops.sort_by_key(|op| op.seq);
        for mut op in ops {
            op.end_ts = ts;
            match ending {
                Ending::Aborted => op.aborted = true,
                Ending::Error(code, name) => {
                    if op.error_type.is_none() {
                        op.error_type = Some(if name.is_empty() {
                            wire::reply_name(code)
                        } else {
                            name.to_string()
                        });
                    }
                }
            }
            self.done(op, out);
        }
    }

    /// A direction lost its frame boundaries: contents in progress end with what was read.
    fn lost(&mut self, flow: Flow, ts: u64, tid: u32, out: &mut Vec<MsgEvent>) {
        if flow == Flow::ToServer {
            self.up_lost = Some((ts, tid));
        }
        self.orphans_ok[flow as usize] = true;
        let mut ids: Vec<u16> = self.channels.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            if let Some(c) = self.content_slot(flow, id).and_then(|s| s.take()) {
                self.content_done(id, c, ts, out);
            }
        }
    }

    /// The connection closed or broke: everything open ends `aborted`.
    fn give_up(&mut self, ts: u64, out: &mut Vec<MsgEvent>) {
        let mut ids: Vec<u16> = self.channels.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            // Gets that got no reply are operations too (Done without Started).
            if let Some(chan) = self.channels.get_mut(&id) {
                let gets: Vec<Get> = chan.gets.drain(..).collect();
                for g in gets {
                    let mut op = self.new_op(OpType::Receive, "get", g.ts, g.tid);
                    op.destination = Some(g.queue);
                    op.end_ts = ts;
                    op.aborted = true;
                    self.done(op, out);
                }
            }
            self.end_channel(id, Ending::Aborted, ts, out);
        }
        self.dead = true;
    }
}
