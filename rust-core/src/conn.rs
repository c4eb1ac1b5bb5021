//! One state per connection of a traced process: protocol detection, the protocol's
//! session, and the queue of exchanges its events describe.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;

use crate::events::{ConnTuple, Direction};
use crate::process::{listens_on, ListenProbe};
use crate::protocols::db::{QueryTextOptions, SessionStats};
use crate::protocols::http1::{self, Http1Session, RequestHead, ResponseHead, Segment};
use crate::protocols::http2::{self, H2Conn, H2Event, H2Request};
use crate::protocols::messaging::MsgStats;
use crate::protocols::session::{Counts, Event, Flow, Reply, Session};
use crate::protocols::session::{Protocol, Sniff};

/// Which end of the connection this process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Reads requests, writes responses.
    Server,
    /// Writes requests, reads responses.
    Client,
}

#[derive(Debug)]
pub enum Proto {
    Unknown,
    /// A protocol's session (HTTP/1, or one of `protocols::PROTOCOLS`); exchanges keyed by
    /// the session's keys in `pending`.
    Session(Active),
    /// One parser for both directions; exchanges are keyed by stream in `pending`.
    Http2(Box<H2Conn>),
    /// Not a protocol we parse (or a TLS handshake): ignored until closed. (A session
    /// whose stream broke or was upgraded stops parsing by itself.)
    Ignored,
}

/// A protocol's session and what its counters said last (the Outcome carries the growth).
pub struct Active {
    /// `http1`, or the database protocol's name.
    pub name: &'static str,
    session: Box<dyn Session>,
    reported: Counts,
}

impl std::fmt::Debug for Active {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Active")
            .field("name", &self.name)
            .field("reported", &self.reported)
            .finish()
    }
}

/// A request waiting for its response, in any protocol: what every span has (the
/// envelope: thread, ids, timing, key) and the protocol's own part (`msg`).
#[derive(Debug)]
pub struct Exchange {
    /// The thread that read (server) or wrote (client) the request's first segment.
    pub tid: u32,
    /// Ids, given when the request is seen so that calls made while serving it can
    /// name it as their parent before it ends.
    pub ctx: Option<crate::spans::ids::SpanCtx>,
    pub req_start: u64,
    pub req_end: Option<u64>,
    /// HTTP/2 stream, or what else pairs a request with its reply (0: by order).
    pub stream_id: u32,
    /// The session's key for it (HTTP/2: the stream).
    pub key: u64,
    pub msg: Message,
}

/// The protocol's part of an exchange; one span builder per kind. HTTP's is inline: the
/// common case takes no allocation per request.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Message {
    Http(HttpMessage),
    Db(Box<crate::protocols::db::DbOp>),
    Messaging(Box<crate::protocols::messaging::MsgOp>),
}

impl Message {
    /// Its request's body was `body` bytes.
    fn request_body(&mut self, body: Option<u64>) {
        if let Message::Http(h) = self {
            h.req_body = body;
        }
    }

    /// What its response told, seen at `ts`.
    fn reply(&mut self, reply: Reply, ts: u64) {
        match (self, reply) {
            (Message::Http(h), Reply::Http(head)) => h.resp = Some((head, ts)),
            (m, Reply::Db(op)) => *m = Message::Db(op),
            (m, Reply::Messaging(op)) => *m = Message::Messaging(op),
            (_, Reply::Http(_)) => {}
        }
    }
}

#[derive(Debug)]
pub struct HttpMessage {
    pub req: RequestHead,
    pub req_body: Option<u64>,
    pub resp: Option<(ResponseHead, u64)>,
    /// A gRPC call (content-type application/grpc), and its status once known.
    pub grpc: bool,
    pub grpc_status: Option<u32>,
}

impl Exchange {
    pub fn http(&self) -> Option<&HttpMessage> {
        match &self.msg {
            Message::Http(h) => Some(h),
            _ => None,
        }
    }

    pub fn http_mut(&mut self) -> Option<&mut HttpMessage> {
        match &mut self.msg {
            Message::Http(h) => Some(h),
            _ => None,
        }
    }

    /// The W3C `traceparent` / `tracestate` the request carried.
    pub fn traceparent(&self) -> Option<&str> {
        self.http()?.req.traceparent.as_deref()
    }

    pub fn tracestate(&self) -> Option<&str> {
        self.http()?.req.tracestate.as_deref()
    }

    /// A pushed message being processed (CONSUMER span): the reading thread serves it as
    /// a server thread serves a request, and its ids are the kernel's for that read.
    pub fn consumer(&self) -> Option<&crate::protocols::messaging::MsgOp> {
        match &self.msg {
            Message::Messaging(op)
                if op.op_type == crate::protocols::messaging::OpType::Process =>
            {
                Some(op)
            }
            _ => None,
        }
    }

    /// A plaintext HTTP/1 request: the kernel inserts a header into these when it
    /// propagates (HTTP/2 ones are counted in the kernel; other protocols carry none).
    pub fn header_insertable(&self) -> bool {
        self.http().is_some_and(|h| h.req.version < 20)
    }
}

/// A finished (or abandoned) request/response pair.
#[derive(Debug)]
pub struct Done {
    pub side: Side,
    pub ex: Exchange,
    pub resp_end: u64,
    pub resp_body: Option<u64>,
    /// Set when the exchange ended without a complete response.
    pub error: Option<&'static str>,
}

/// What feeding a segment found that the caller counts.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub unknown_protocol: bool,
    pub parse_error: bool,
    pub orphan_responses: u64,
    /// Uncaptured bytes hid a response's framing; its end is found by resynchronising.
    pub framing_lost: bool,
    /// HTTP/2 header blocks that could not be decoded (connection seen mid-stream).
    pub h2_undecodable: u64,
    /// What database sessions could not use (growth during this call).
    pub db: SessionStats,
    /// What messaging sessions could not use (growth during this call).
    pub messaging: MsgStats,
}

/// The connection's addresses, formatted once: formatting them per span was 7% of the
/// core's time.
#[derive(Debug)]
pub struct Peer {
    pub local_ip: Arc<str>,
    pub local_port: u16,
    pub remote_ip: Arc<str>,
    pub remote_port: u16,
    pub local: IpAddr,
    pub remote: IpAddr,
    pub netns: u32,
    /// The bytes are the plaintext of a TLS connection.
    pub tls: bool,
}

/// A connection named from its client's end: (client, server, netns). Both processes of
/// a connection on this host compute the same key. Loopback addresses are only equal
/// within one network namespace, so the namespace is part of the key for them alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinkKey {
    pub client: (IpAddr, u16),
    pub server: (IpAddr, u16),
    pub netns: u32,
}

impl LinkKey {
    pub fn new(peer: &Peer, side: Side) -> LinkKey {
        let (l, r) = (
            (peer.local, peer.local_port),
            (peer.remote, peer.remote_port),
        );
        let (client, server) = if side == Side::Client { (l, r) } else { (r, l) };
        let netns = if client.0.is_loopback() || server.0.is_loopback() {
            peer.netns
        } else {
            0
        };
        LinkKey {
            client,
            server,
            netns,
        }
    }
}

impl Peer {
    pub fn of(t: &ConnTuple) -> Peer {
        let ((lip, lport), (rip, rport)) = (t.local(), t.remote());
        Peer {
            local_ip: lip.to_string().into(),
            local_port: lport,
            remote_ip: rip.to_string().into(),
            remote_port: rport,
            local: lip,
            remote: rip,
            netns: t.netns,
            tls: false,
        }
    }
}

#[derive(Debug)]
pub struct Conn {
    pub tuple: ConnTuple,
    /// The process that last used the socket, and its command name (for spans built
    /// after it exited).
    pub pid: u32,
    pub comm: String,
    pub peer: Arc<Peer>,
    pub proto: Proto,
    /// Known once the first request is seen.
    pub side: Option<Side>,
    pub pending: VecDeque<Exchange>,
    pub last_ts: u64,
    /// Handed to the kernel for header injection already (opened before we were).
    pub adopted: bool,
    /// First bytes seen while too few to tell the protocol (a request line written a
    /// few bytes at a time), with their timestamps.
    sniffed: Vec<(Direction, Vec<u8>, u64, u32)>,
    /// Tells an HTTP/2 connection seen mid-stream which end it is.
    pub listens: ListenProbe,
    /// Its bytes were a TLS handshake, and no plaintext came (yet).
    pub tls_handshake: bool,
    /// What the kernel last said of the connection's client end (reads only).
    pub client_end: crate::events::PeerEnd,
    /// How a database session exports query text (receiver config `database`).
    pub query_text: QueryTextOptions,
    /// The protocols tried on the first bytes (`protocols::PROTOCOLS`).
    pub protocols: &'static [Protocol],
}

/// Session events, one buffer for every connection of the thread (the pump): a buffer
/// per connection was a quarter of an idle connection's memory.
mod scratch {
    use crate::protocols::session::Event;
    use std::cell::RefCell;

    thread_local! {
        static EVENTS: RefCell<Vec<Event>> = const { RefCell::new(Vec::new()) };
    }

    pub fn take() -> Vec<Event> {
        EVENTS.with(|e| std::mem::take(&mut *e.borrow_mut()))
    }

    pub fn give_back(mut v: Vec<Event>) {
        v.clear();
        EVENTS.with(|e| *e.borrow_mut() = v);
    }
}

/// Longest start-of-message token `detect` needs ("OPTIONS " / "HTTP/1.").
const SNIFF_MAX: usize = 8;

/// True when `b` may still grow into the start of an HTTP/1 message.
fn may_become_http(b: &[u8]) -> bool {
    b.len() < SNIFF_MAX
        && (b"HTTP/1.".starts_with(b)
            || http1::KNOWN_METHODS.iter().any(|m| {
                let m = m.as_bytes();
                m.starts_with(b) || (b.len() > m.len() && b.starts_with(m) && b[m.len()] == b' ')
            }))
}

/// An HTTP/2 request as an exchange: the fields the span code reads for HTTP/1.
fn h2_exchange(stream_id: u32, ts: u64, tid: u32, h: H2Request) -> Exchange {
    // Without a content type (absent, or in a header block that did not decode), a POST
    // to `/package.Service/Method` is gRPC: plain HTTP paths seldom look like that.
    let grpc_path = || {
        h.method.as_deref().is_none_or(|m| m == "POST")
            && h.path
                .as_deref()
                .and_then(http2::grpc_method)
                .is_some_and(|(service, _)| service.contains('.'))
    };
    let grpc = match h.content_type.as_deref() {
        Some(ct) => http2::is_grpc(ct),
        None => grpc_path(),
    };
    let req = RequestHead {
        method: h.method.unwrap_or_else(|| "_OTHER".into()),
        target: h.path.unwrap_or_default(),
        version: 20,
        host: h.authority,
        user_agent: h.user_agent,
        traceparent: h.traceparent,
        tracestate: h.tracestate,
        content_length: None,
        chunked: false,
        expect_continue: false,
        connection_close: false,
    };
    Exchange {
        tid,
        ctx: None,
        req_start: ts,
        req_end: None,
        stream_id,
        key: u64::from(stream_id),
        msg: Message::Http(HttpMessage {
            req,
            req_body: None,
            resp: None,
            grpc,
            grpc_status: None,
        }),
    }
}

impl Conn {
    /// Idle for a while: give back the capacity of its queues and buffers (an exchange
    /// in flight keeps its room).
    pub fn compact(&mut self) {
        self.pending.shrink_to_fit();
        self.sniffed.shrink_to_fit();
        if let Proto::Session(a) = &mut self.proto {
            a.session.compact();
        }
    }

    pub fn new(tuple: ConnTuple, pid: u32, comm: String, tls: bool) -> Self {
        Conn {
            tuple,
            pid,
            comm,
            peer: Arc::new(Peer {
                tls,
                ..Peer::of(&tuple)
            }),
            proto: Proto::Unknown,
            side: None,
            // Keep-alive connections hold one exchange at a time (pipelining grows it).
            pending: VecDeque::with_capacity(1),
            last_ts: 0,
            adopted: false,
            sniffed: Vec::new(),
            listens: listens_on,
            tls_handshake: false,
            client_end: crate::events::PeerEnd::Unknown,
            query_text: QueryTextOptions::default(),
            protocols: crate::protocols::PROTOCOLS,
        }
    }

    /// The socket's first TLS plaintext arrived while what this Conn saw was not TLS:
    /// whether it goes on with the plaintext (otherwise it saw only the handshake's
    /// ciphertext and is replaced). A database session goes on: it saw the protocol's own
    /// upgrade in the clear (PostgreSQL's SSLRequest, MySQL's SSL request), skips the raw
    /// TLS records after it, and the plaintext continues its conversation, which needs
    /// what came before (MySQL: the greeting's server version, `mariadb` or `mysql`, and
    /// capabilities).
    pub fn continues_in_tls(&mut self) -> bool {
        if !matches!(&self.proto, Proto::Session(a) if a.name != http1::NAME) {
            return false;
        }
        self.peer = Arc::new(Peer {
            tls: true,
            ..Peer::of(&self.tuple)
        });
        true
    }

    /// Feeds one call given as segments (an HTTP/2 call the kernel walked frame by frame).
    pub fn feed_segments(
        &mut self,
        dir: Direction,
        segs: &[Segment<'_>],
        ts: u64,
        tid: u32,
        done: &mut Vec<Done>,
    ) -> Outcome {
        let mut out = Outcome::default();
        for seg in segs {
            let o = match *seg {
                Segment::Data(d) => self.feed(dir, d, 0, ts, tid, done),
                Segment::Gap(n) => self.feed(dir, &[], n, ts, tid, done),
            };
            out.unknown_protocol |= o.unknown_protocol;
            out.parse_error |= o.parse_error;
            out.orphan_responses += o.orphan_responses;
            out.framing_lost |= o.framing_lost;
            out.h2_undecodable += o.h2_undecodable;
            out.db.add(&o.db);
        }
        out
    }

    /// Feeds `data` (the captured part) plus `gap` uncaptured bytes seen at `ts`.
    pub fn feed(
        &mut self,
        dir: Direction,
        data: &[u8],
        gap: u64,
        ts: u64,
        tid: u32,
        done: &mut Vec<Done>,
    ) -> Outcome {
        let mut out = Outcome::default();
        self.last_ts = ts;
        if let Proto::Unknown = self.proto {
            if data.is_empty() {
                // Bytes missed before the protocol is known: what was sniffed does not
                // continue into what comes next.
                if gap > 0 {
                    self.sniffed.clear();
                }
                return out;
            }
            let mut head: Vec<u8> = self
                .sniffed
                .iter()
                .filter(|s| s.0 == dir)
                .flat_map(|s| s.1.clone())
                .collect();
            head.extend_from_slice(data);
            if http2::looks_like_h2(&head) {
                // The preface names the client; mid-stream, the parser finds out.
                // A server often speaks first: its SETTINGS before the client's preface
                // arrives. A client's first bytes are always the preface.
                let server_first = dir == Direction::Send
                    && head.len() >= 9
                    && head[3] == 4
                    && head[5..9] == [0; 4];
                let h2 = if http2::is_client_preface(&head) || server_first {
                    self.side = Some(if (dir == Direction::Send) != server_first {
                        Side::Client
                    } else {
                        Side::Server
                    });
                    H2Conn::new()
                } else if let Some(listening) = (self.listens)(self.pid, self.tuple.sport) {
                    // Mid-stream: header blocks may not decode (so no `:method` tells the
                    // roles), but an accepted connection's local port is a listening one.
                    self.side = Some(if listening {
                        Side::Server
                    } else {
                        Side::Client
                    });
                    H2Conn::new()
                } else {
                    H2Conn::new_unknown_roles()
                };
                self.proto = Proto::Http2(Box::new(h2));
                let sniffed: Vec<_> = std::mem::take(&mut self.sniffed)
                    .into_iter()
                    .filter(|s| s.0 == dir)
                    .collect();
                for (d, bytes, t, tid) in sniffed {
                    let o = self.feed_h2(d, Segment::Data(&bytes), t, tid, done);
                    out.h2_undecodable += o;
                }
                out.h2_undecodable += self.feed_h2(dir, Segment::Data(data), ts, tid, done);
                if gap > 0 {
                    out.h2_undecodable += self.feed_h2(dir, Segment::Gap(gap), ts, tid, done);
                }
                return out;
            }
            if head.len() >= 3 && head[0] == 0x16 && head[1] == 0x03 && head[2] <= 0x04 {
                // A TLS handshake: its plaintext, if the process uses a library we
                // probe, arrives as TLS records of this socket (and replaces this Conn).
                self.sniffed.clear();
                self.proto = Proto::Ignored;
                self.tls_handshake = true;
                return out;
            }
            // The first bytes decide the protocol and, for HTTP, which end we are: a
            // process that reads a request is the server. Works for connections that
            // were open before we started, as long as we see a message start.
            match (http1::detect(&head), dir) {
                (Some(http1::Role::Requests), d) => {
                    let client = d == Direction::Send;
                    self.side = Some(if client { Side::Client } else { Side::Server });
                    self.proto = Proto::Session(Active {
                        name: http1::NAME,
                        session: Box::new(Http1Session::new(client)),
                        reported: Counts::default(),
                    });
                    for (d, bytes, t, tid) in std::mem::take(&mut self.sniffed) {
                        if d == dir {
                            self.feed_session(d, &bytes, 0, t, tid, done, &mut out);
                        }
                    }
                }
                (Some(http1::Role::Responses), _) => {
                    // Mid-stream: wait for the next request.
                    self.sniffed.clear();
                    out.orphan_responses += 1;
                    return out;
                }
                (None, _) => {
                    let need_more = match self.sniff_protocols(&head, dir) {
                        Some(Sniff::Yes) => {
                            for (d, bytes, t, tid) in std::mem::take(&mut self.sniffed) {
                                if d == dir {
                                    self.feed_session(d, &bytes, 0, t, tid, done, &mut out);
                                }
                            }
                            self.feed_session(dir, data, gap, ts, tid, done, &mut out);
                            return out;
                        }
                        Some(Sniff::NeedMore) => true,
                        _ => may_become_http(&head),
                    };
                    if need_more && gap == 0 {
                        self.sniffed.push((dir, data.to_vec(), ts, tid));
                        return out;
                    }
                    self.sniffed.clear();
                    self.proto = Proto::Ignored;
                    out.unknown_protocol = true;
                    return out;
                }
            }
        }
        if let Proto::Http2(_) = self.proto {
            if !data.is_empty() {
                out.h2_undecodable += self.feed_h2(dir, Segment::Data(data), ts, tid, done);
            }
            if gap > 0 {
                out.h2_undecodable += self.feed_h2(dir, Segment::Gap(gap), ts, tid, done);
            }
            return out;
        }
        self.feed_session(dir, data, gap, ts, tid, done, &mut out);
        out
    }

    /// Feeds an HTTP/2 connection; returns the header blocks it could not decode.
    fn feed_h2(
        &mut self,
        dir: Direction,
        seg: Segment<'_>,
        ts: u64,
        tid: u32,
        done: &mut Vec<Done>,
    ) -> u64 {
        let Proto::Http2(h2) = &mut self.proto else {
            return 0;
        };
        // Labels: the sending direction is "from client" until the parser says otherwise
        // (a connection seen mid-stream); with a known side the labels are exact.
        let from_client = match self.side {
            Some(side) => (side == Side::Client) == (dir == Direction::Send),
            None => dir == Direction::Send,
        };
        let mut evs = Vec::new();
        h2.feed(from_client, seg, ts, &mut evs);
        if self.side.is_none() {
            self.side = h2.client_direction().map(|send_is_client| {
                if send_is_client {
                    Side::Client
                } else {
                    Side::Server
                }
            });
        }
        self.h2_events(evs, tid, done)
    }

    /// Turns stream events into exchanges (queued in `pending`) and finished ones.
    fn h2_events(&mut self, evs: Vec<H2Event>, tid: u32, done: &mut Vec<Done>) -> u64 {
        let Some(side) = self.side else {
            return 0;
        };
        let mut undecodable = 0;
        let find =
            |pending: &VecDeque<Exchange>, id: u32| pending.iter().position(|e| e.stream_id == id);
        for ev in evs {
            match ev {
                H2Event::Request {
                    stream_id,
                    ts,
                    head,
                } => {
                    self.pending
                        .push_back(h2_exchange(stream_id, ts, tid, head));
                }
                H2Event::RequestEnd {
                    stream_id,
                    ts,
                    body_bytes,
                } => {
                    if let Some(p) = find(&self.pending, stream_id) {
                        let ex = &mut self.pending[p];
                        ex.req_end = Some(ts);
                        if let Some(h) = ex.http_mut() {
                            h.req_body = Some(body_bytes);
                        }
                    }
                }
                H2Event::Response {
                    stream_id,
                    ts,
                    status,
                    grpc_status,
                    ..
                } => {
                    if let Some(h) =
                        find(&self.pending, stream_id).and_then(|p| self.pending[p].http_mut())
                    {
                        h.resp = Some((
                            ResponseHead {
                                status: status.unwrap_or(0),
                                version: 20,
                                content_length: None,
                                chunked: false,
                                connection_close: false,
                            },
                            ts,
                        ));
                        h.grpc_status = h.grpc_status.or(grpc_status);
                    }
                }
                H2Event::ResponseEnd {
                    stream_id,
                    ts,
                    body_bytes,
                    grpc_status,
                    ..
                } => {
                    if let Some(p) = find(&self.pending, stream_id) {
                        let mut ex = self.pending.remove(p).unwrap();
                        if let Some(h) = ex.http_mut() {
                            h.grpc_status = grpc_status.or(h.grpc_status);
                        }
                        done.push(Done {
                            side,
                            ex,
                            resp_end: ts,
                            resp_body: Some(body_bytes),
                            error: None,
                        });
                    }
                }
                H2Event::Reset { stream_id, ts, .. } | H2Event::Unfinished { stream_id, ts } => {
                    if let Some(p) = find(&self.pending, stream_id) {
                        let ex = self.pending.remove(p).unwrap();
                        done.push(Done {
                            side,
                            ex,
                            resp_end: ts,
                            resp_body: None,
                            error: Some("stream reset or closed before the response ended"),
                        });
                    }
                }
                H2Event::HeadersUndecodable { .. } => undecodable += 1,
                H2Event::GoAway { .. } => {}
            }
        }
        undecodable
    }

    /// Tries the registered protocols on a new connection's first bytes. On a match the
    /// connection becomes theirs and the side comes from which way the bytes flowed.
    fn sniff_protocols(&mut self, head: &[u8], dir: Direction) -> Option<Sniff> {
        let mut verdict = None;
        for p in self.protocols {
            for flow in [Flow::ToServer, Flow::ToClient] {
                match (p.sniff)(flow, head) {
                    Sniff::Yes => return Some(self.adopt_protocol(p, flow, dir)),
                    Sniff::NeedMore => verdict = Some(Sniff::NeedMore),
                    Sniff::No => {}
                }
            }
        }
        if verdict.is_some() {
            return verdict;
        }
        // Mid-stream, on the protocol's port: which end listens tells the flow.
        for p in self.protocols {
            let (local, remote) = (self.tuple.sport, self.tuple.dport);
            let flow = match (dir, local == p.port, remote == p.port) {
                (Direction::Send, false, true) | (Direction::Recv, true, false) => Flow::ToServer,
                (Direction::Send, true, false) | (Direction::Recv, false, true) => Flow::ToClient,
                _ => continue,
            };
            if (p.midstream)(flow, head) {
                return Some(self.adopt_protocol(p, flow, dir));
            }
        }
        Some(Sniff::No)
    }

    /// The connection is `p`'s: the bytes that told it flowed `flow` in direction `dir`.
    fn adopt_protocol(&mut self, p: &Protocol, flow: Flow, dir: Direction) -> Sniff {
        let sent_by_client = flow == Flow::ToServer;
        self.side = Some(if (dir == Direction::Send) == sent_by_client {
            Side::Client
        } else {
            Side::Server
        });
        self.proto = Proto::Session(Active {
            name: p.name,
            session: (p.session)(self.query_text),
            reported: Counts::default(),
        });
        Sniff::Yes
    }

    /// Feeds the connection's session and turns its events into exchanges.
    #[allow(clippy::too_many_arguments)]
    fn feed_session(
        &mut self,
        dir: Direction,
        data: &[u8],
        gap: u64,
        ts: u64,
        tid: u32,
        done: &mut Vec<Done>,
        out: &mut Outcome,
    ) {
        let (Proto::Session(active), Some(side)) = (&mut self.proto, self.side) else {
            return;
        };
        let flow = if (side == Side::Client) == (dir == Direction::Send) {
            Flow::ToServer
        } else {
            Flow::ToClient
        };
        let mut evs = scratch::take();
        active.session.feed(flow, data, gap, ts, tid, &mut evs);
        let now = active.session.counts();
        let grew = now.since(&active.reported);
        active.reported = now;
        out.orphan_responses += grew.orphan_responses;
        out.parse_error |= grew.unparsable > 0;
        out.framing_lost |= grew.framing_lost > 0;
        out.db.add(&grew.db);
        out.messaging.add(&grew.messaging);
        self.session_events(&mut evs, done);
        scratch::give_back(evs);
    }

    /// Turns a session's events into exchanges (queued in `pending`) and finished ones.
    fn session_events(&mut self, evs: &mut Vec<Event>, done: &mut Vec<Done>) {
        let Some(side) = self.side else {
            evs.clear();
            return;
        };
        let find =
            |pending: &VecDeque<Exchange>, key: u64| pending.iter().position(|e| e.key == key);
        for ev in evs.drain(..) {
            match ev {
                Event::RequestStarted {
                    key,
                    ts,
                    tid,
                    stream_id,
                    msg,
                } => self.pending.push_back(Exchange {
                    tid,
                    ctx: None,
                    req_start: ts,
                    req_end: None,
                    stream_id,
                    key,
                    msg,
                }),
                Event::RequestEnded { key, ts, body } => {
                    if let Some(p) = find(&self.pending, key) {
                        let ex = &mut self.pending[p];
                        ex.req_end = Some(ts);
                        ex.msg.request_body(body);
                    }
                }
                Event::ResponseStarted { key, ts, reply } => {
                    if let Some(p) = find(&self.pending, key) {
                        self.pending[p].msg.reply(reply, ts);
                    }
                }
                Event::ResponseEnded {
                    key,
                    ts,
                    body,
                    reply,
                } => {
                    if let Some(mut ex) =
                        find(&self.pending, key).and_then(|p| self.pending.remove(p))
                    {
                        if let Some(r) = reply {
                            ex.msg.reply(r, ts);
                        }
                        let resp_end = ts.max(ex.req_start);
                        done.push(Done {
                            side,
                            ex,
                            resp_end,
                            resp_body: body,
                            error: None,
                        });
                    }
                }
                Event::Aborted { key, ts, why } => {
                    if let Some(ex) = find(&self.pending, key).and_then(|p| self.pending.remove(p))
                    {
                        done.push(Done {
                            side,
                            ex,
                            resp_end: ts,
                            resp_body: None,
                            error: Some(why),
                        });
                    }
                }
            }
        }
    }

    /// The connection closed at `ts`: close-delimited responses end here, anything else
    /// still pending ended without a response.
    pub fn close(&mut self, ts: u64, done: &mut Vec<Done>) {
        if let Proto::Session(active) = &mut self.proto {
            let mut evs = scratch::take();
            active.session.close(ts, &mut evs);
            self.session_events(&mut evs, done);
            scratch::give_back(evs);
        }
        if let Proto::Http2(h2) = &mut self.proto {
            let mut evs = Vec::new();
            h2.close(ts, &mut evs);
            self.h2_events(evs, 0, done);
        }
        self.abandon(ts, "connection closed before the response completed", done);
    }

    fn abandon(&mut self, ts: u64, why: &'static str, done: &mut Vec<Done>) {
        let Some(side) = self.side else {
            return;
        };
        for ex in self.pending.drain(..) {
            done.push(Done {
                side,
                ex,
                resp_end: ts,
                resp_body: None,
                error: Some(why),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::db::{DbEvent, DbOp, DbSession};

    /// A toy protocol: the client sends "Q <text>\n", the server answers "R\n" or "E\n".
    #[derive(Default)]
    struct Toy {
        bufs: [Vec<u8>; 2],
        seq: u64,
        open: VecDeque<(u64, String, u64, u32)>,
        stats: SessionStats,
    }

    impl DbSession for Toy {
        fn feed(
            &mut self,
            flow: Flow,
            data: &[u8],
            _gap: u64,
            ts: u64,
            tid: u32,
            out: &mut Vec<DbEvent>,
        ) {
            let buf = &mut self.bufs[(flow == Flow::ToClient) as usize];
            buf.extend_from_slice(data);
            let mut lines = Vec::new();
            while let Some(n) = buf.iter().position(|&b| b == b'\n') {
                lines.push(buf.drain(..=n).take(n).collect::<Vec<u8>>());
            }
            for line in lines {
                match (flow, line.as_slice()) {
                    (Flow::ToServer, [b'Q', b' ', q @ ..]) => {
                        self.seq += 1;
                        out.push(DbEvent::Started {
                            seq: self.seq,
                            ts,
                            tid,
                        });
                        self.open
                            .push_back((self.seq, String::from_utf8_lossy(q).into(), ts, tid));
                    }
                    (Flow::ToClient, [r @ (b'R' | b'E')]) => {
                        if let Some((seq, q, start, tid)) = self.open.pop_front() {
                            out.push(DbEvent::Done(DbOp {
                                seq,
                                operation: q.split(' ').next().map(str::to_string),
                                query_text: Some(q),
                                error: *r == b'E',
                                start_ts: start,
                                end_ts: ts,
                                tid,
                                ..Default::default()
                            }));
                        }
                    }
                    _ => self.stats.malformed += 1,
                }
            }
        }
        fn close(&mut self, ts: u64, out: &mut Vec<DbEvent>) {
            for (seq, _, start, tid) in self.open.drain(..) {
                out.push(DbEvent::Done(DbOp {
                    seq,
                    aborted: true,
                    start_ts: start,
                    end_ts: ts,
                    tid,
                    ..Default::default()
                }));
            }
        }
        fn stats(&self) -> SessionStats {
            self.stats
        }
    }

    const TOY: &[Protocol] = &[Protocol {
        name: "toy",
        port: 7777,
        midstream: |flow, b| flow == Flow::ToClient && b.first() == Some(&b'R'),
        sniff: |flow, b| match (flow, b) {
            (Flow::ToServer, [b'Q', b' ', ..]) => Sniff::Yes,
            (Flow::ToServer, [b'Q'] | []) => Sniff::NeedMore,
            _ => Sniff::No,
        },
        session: |_| crate::protocols::db::session(Toy::default()),
    }];

    #[test]
    fn a_database_session_gives_exchanges_in_order() {
        for (dir_q, dir_r, side) in [
            (Direction::Send, Direction::Recv, Side::Client),
            (Direction::Recv, Direction::Send, Side::Server),
        ] {
            let mut c = Conn::new(ConnTuple::default(), 1, "app".into(), false);
            c.protocols = TOY;
            let mut done = Vec::new();
            // The first byte alone: too few to tell.
            c.feed(dir_q, b"Q", 0, 10, 7, &mut done);
            assert!(matches!(c.proto, Proto::Unknown));
            c.feed(dir_q, b" SELECT 1\nQ UPDATE t\n", 0, 11, 7, &mut done);
            assert!(matches!(&c.proto, Proto::Session(a) if a.name == "toy"));
            assert_eq!(c.side, Some(side));
            assert_eq!(c.pending.len(), 2);
            let out = c.feed(dir_r, b"R\nE\nX\n", 0, 20, 8, &mut done);
            assert_eq!(out.db.malformed, 1);
            assert_eq!(done.len(), 2);
            let ops: Vec<_> = done
                .iter()
                .map(|d| match &d.ex.msg {
                    Message::Db(op) => (
                        op.query_text.clone().unwrap(),
                        op.error,
                        d.ex.req_start,
                        d.resp_end,
                        d.ex.tid,
                    ),
                    _ => panic!("not a database exchange"),
                })
                .collect();
            assert_eq!(
                ops,
                [
                    ("SELECT 1".to_string(), false, 11, 20, 7),
                    ("UPDATE t".to_string(), true, 11, 20, 7)
                ]
            );
            assert!(done
                .iter()
                .all(|d| d.side == side && !d.ex.header_insertable()));
            // Closed with one pending: it ends aborted.
            done.clear();
            c.feed(dir_q, b"Q SELECT 2\n", 0, 30, 7, &mut done);
            c.close(40, &mut done);
            assert_eq!(done.len(), 1);
            assert!(matches!(&done[0].ex.msg, Message::Db(op) if op.aborted && op.end_ts == 40));
        }
    }

    #[test]
    fn http_still_wins_before_databases() {
        let mut c = Conn::new(ConnTuple::default(), 1, "app".into(), false);
        c.protocols = TOY;
        let mut done = Vec::new();
        c.feed(
            Direction::Send,
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            0,
            1,
            1,
            &mut done,
        );
        assert!(matches!(&c.proto, Proto::Session(a) if a.name == "http1"));
        let mut c = Conn::new(ConnTuple::default(), 1, "app".into(), false);
        c.protocols = TOY;
        let out = c.feed(Direction::Send, b"\x00\x01garbage", 0, 1, 1, &mut done);
        assert!(out.unknown_protocol && matches!(c.proto, Proto::Ignored));
    }

    #[test]
    fn mid_stream_database_connections_need_the_port_hint() {
        let tuple = |sport, dport| ConnTuple {
            sport,
            dport,
            ..Default::default()
        };
        let mut done = Vec::new();
        // A reply read by the end that connected to the protocol's port: the client.
        let mut c = Conn::new(tuple(40000, 7777), 1, "app".into(), false);
        c.protocols = TOY;
        c.feed(Direction::Recv, b"R\n", 0, 1, 1, &mut done);
        assert!(matches!(&c.proto, Proto::Session(a) if a.name == "toy"));
        assert_eq!(c.side, Some(Side::Client));
        // The same bytes on another port: not guessed.
        let mut c = Conn::new(tuple(40000, 7000), 1, "app".into(), false);
        c.protocols = TOY;
        let out = c.feed(Direction::Recv, b"R\n", 0, 1, 1, &mut done);
        assert!(out.unknown_protocol && matches!(c.proto, Proto::Ignored));
    }

    #[test]
    fn only_database_sessions_continue_in_tls() {
        let mut done = Vec::new();
        // A database session saw the protocol's upgrade in the clear: it goes on.
        let mut c = Conn::new(ConnTuple::default(), 1, "app".into(), false);
        c.protocols = TOY;
        c.feed(Direction::Send, b"Q SELECT 1\n", 0, 1, 1, &mut done);
        assert!(c.continues_in_tls());
        assert!(c.peer.tls && matches!(&c.proto, Proto::Session(a) if a.name == "toy"));
        // A TLS handshake from the first byte: replaced by the plaintext's Conn.
        let mut c = Conn::new(ConnTuple::default(), 1, "app".into(), false);
        c.feed(
            Direction::Send,
            &[0x16, 3, 1, 0, 5, 1, 0, 0, 1, 0],
            0,
            1,
            1,
            &mut done,
        );
        assert!(c.tls_handshake);
        assert!(!c.continues_in_tls());
        assert!(!c.peer.tls);
    }
}
