//! The protocol seam: what every protocol's per-connection session reports to the
//! connection layer (`conn.rs`), whatever the wire protocol.
//!
//! A session is fed both flows of one connection (with timestamps, threads and
//! uncaptured gaps). It pairs requests with replies itself (by order or by id) and
//! reports neutral exchange events, each naming the exchange by a `key` the session
//! chose when the exchange started:
//!
//! - `RequestStarted`: a new exchange, queued by the connection (the span's ids are
//!   given then, so a call made while its thread serves a request names it as parent, and
//!   a server span's ids come from the request's own `traceparent`);
//! - `RequestEnded`: its request's last byte;
//! - `ResponseStarted`: its response began (what that told, e.g. an HTTP status line);
//! - `ResponseEnded`: it is done (its response ended, or for databases the operation
//!   ended in any way: the operation says how);
//! - `Aborted`: it ended without a complete response (the stream became unparsable, the
//!   connection closed).
//!
//! An event for a key the connection does not hold (never started, already ended) is
//! ignored. Counters for what a session could not use are read with `counts`, as totals
//! (the connection reports their growth).

use crate::conn::Message;
use crate::protocols::db::{DbOp, QueryTextOptions, SessionStats};
use crate::protocols::http1::ResponseHead;
use crate::protocols::messaging::{MsgOp, MsgStats};

/// Which way bytes flow, seen from the protocol: toward the server (requests, queries)
/// or toward the client (responses, replies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    ToServer,
    ToClient,
}

/// What a response told about its exchange, merged into the exchange's protocol part.
#[derive(Debug)]
pub enum Reply {
    /// An HTTP response head.
    Http(ResponseHead),
    /// A finished database operation: replaces the exchange's part.
    Db(Box<DbOp>),
    /// A finished messaging operation: replaces the exchange's part.
    Messaging(Box<MsgOp>),
}

#[derive(Debug)]
pub enum Event {
    /// A new exchange: its request's first byte was seen at `ts`, read (server) or
    /// written (client) by `tid`. `stream_id` is what the kernel's ids for it are keyed
    /// by (0: by the thread and time).
    RequestStarted {
        key: u64,
        ts: u64,
        tid: u32,
        stream_id: u32,
        msg: Message,
    },
    /// Its request ended at `ts` (`body`: the body bytes, where counted).
    RequestEnded {
        key: u64,
        ts: u64,
        body: Option<u64>,
    },
    /// Its response began at `ts`.
    ResponseStarted { key: u64, ts: u64, reply: Reply },
    /// It is done: its response ended at `ts` (`body`: the body bytes when known).
    ResponseEnded {
        key: u64,
        ts: u64,
        body: Option<u64>,
        reply: Option<Reply>,
    },
    /// It ended at `ts` without a complete response.
    Aborted {
        key: u64,
        ts: u64,
        why: &'static str,
    },
}

/// What a session could not use, as totals since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Responses that answered no request seen.
    pub orphan_responses: u64,
    /// Times the stream could not be parsed and was given up.
    pub unparsable: u64,
    /// Responses whose framing uncaptured bytes hid (their end is found by resynchronising).
    pub framing_lost: u64,
    /// A database session's counters.
    pub db: SessionStats,
    /// A messaging session's counters.
    pub messaging: MsgStats,
}

impl Counts {
    /// The growth since `before` (counters only grow).
    pub fn since(&self, before: &Counts) -> Counts {
        Counts {
            orphan_responses: self
                .orphan_responses
                .saturating_sub(before.orphan_responses),
            unparsable: self.unparsable.saturating_sub(before.unparsable),
            framing_lost: self.framing_lost.saturating_sub(before.framing_lost),
            db: self.db.since(&before.db),
            messaging: self.messaging.since(&before.messaging),
        }
    }
}

/// One connection's parser for one protocol.
pub trait Session: Send {
    /// Bytes that crossed the connection in one syscall, flowing `flow` (`gap`: bytes
    /// after `data` that were not captured; skip them by framing, never guess their
    /// content).
    fn feed(&mut self, flow: Flow, data: &[u8], gap: u64, ts: u64, tid: u32, out: &mut Vec<Event>);
    /// The connection closed at `ts`: responses delimited by the close end, exchanges
    /// still open end `Aborted` (or as the protocol reports them).
    fn close(&mut self, ts: u64, out: &mut Vec<Event>);
    fn counts(&self) -> Counts;
    /// The connection has been idle a while: give back buffer capacity it may never
    /// need again (thousands of idle keep-alive connections add up).
    fn compact(&mut self) {}
}

/// What a protocol's sniffer makes of a connection's first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniff {
    Yes,
    No,
    /// Too few bytes to tell.
    NeedMore,
}

/// A protocol recognised by content (registered in `protocols::PROTOCOLS`; HTTP/1, HTTP/2
/// and TLS are tried before these).
pub struct Protocol {
    pub name: &'static str,
    /// Whether `first` (a connection's first bytes in one direction) starts this protocol
    /// flowing in `flow`: a client's first message toward the server, or (MySQL) the
    /// server's greeting toward the client.
    pub sniff: fn(flow: Flow, first: &[u8]) -> Sniff,
    /// A connection first seen mid-stream (a pool opened before the collector) has no
    /// first message: on the protocol's usual port only (the hint), bytes that are
    /// plausibly its messages in `flow` make it this protocol's.
    pub port: u16,
    pub midstream: fn(flow: Flow, data: &[u8]) -> bool,
    /// A session for a new connection (`QueryTextOptions`: receiver config `database`).
    pub session: fn(QueryTextOptions) -> Box<dyn Session>,
}

impl std::fmt::Debug for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}
