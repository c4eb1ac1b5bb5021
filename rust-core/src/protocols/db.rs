//! What every database protocol parser hands to the span side: neutral events about one
//! connection's operations, whatever the wire protocol. A parser is a per-connection
//! session fed with both directions of the byte stream; it pairs requests with replies
//! itself (by order for PostgreSQL, MySQL and Redis, by id for MongoDB) and reports:
//!
//! - `Started` when an operation's first byte toward the server is seen (the span's ids
//!   are given then, so a query made while its thread serves a request names it as parent);
//! - `Done` when its reply ended (or the connection closed first: `aborted`), with every
//!   attribute its span needs.
//!
//! Parsers never panic on any input and never allocate without bound: garbage is
//! reported in `SessionStats` and skipped (the session resynchronises or gives up).

pub use super::session::Flow;
use super::session::{Counts, Event, Reply, Session};

/// `db.system.name` values (stable database semantic conventions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbSystem {
    Postgresql,
    Mysql,
    Mariadb,
    Redis,
    Mongodb,
}

impl DbSystem {
    pub fn name(self) -> &'static str {
        match self {
            DbSystem::Postgresql => "postgresql",
            DbSystem::Mysql => "mysql",
            DbSystem::Mariadb => "mariadb",
            DbSystem::Redis => "redis",
            DbSystem::Mongodb => "mongodb",
        }
    }
}

/// One operation as its span needs it. Text fields are already what may be exported:
/// `query_text` is sanitized (unless configured off) and cut to the configured length.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DbOp {
    /// Matches the `Started` event of the same operation.
    pub seq: u64,
    pub system: Option<DbSystem>,
    /// `db.namespace`: PostgreSQL database, MySQL schema, Redis db index, Mongo `$db`.
    pub namespace: Option<String>,
    /// `db.operation.name`: `SELECT`, `HGETALL`, `find`...
    pub operation: Option<String>,
    /// `db.collection.name`: the table / collection when there is exactly one.
    pub collection: Option<String>,
    /// `db.query.summary`: `SELECT users`, `INSERT orders SELECT carts`, `HGETALL`.
    pub summary: Option<String>,
    /// `db.query.text`.
    pub query_text: Option<String>,
    /// `db.operation.batch.size` where the protocol batches (2 or more).
    pub batch_size: Option<u64>,
    /// `db.response.status_code`: SQLSTATE, MySQL error number, Redis error prefix,
    /// Mongo `code`. Set on errors only.
    pub status_code: Option<String>,
    /// `error.type` on errors: SQLSTATE (MySQL), Redis prefix, Mongo `codeName`...
    pub error_type: Option<String>,
    /// The reply was an error: span status ERROR.
    pub error: bool,
    /// Time of the syscall holding the request's first byte / the reply's last byte.
    pub start_ts: u64,
    pub end_ts: u64,
    /// The thread that sent the request.
    pub tid: u32,
    /// The connection closed (or the stream broke) before the reply ended.
    pub aborted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbEvent {
    Started { seq: u64, ts: u64, tid: u32 },
    Done(DbOp),
}

/// What a session could not use, for the receiver's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Messages that did not parse (the session skipped or resynchronised).
    pub malformed: u64,
    /// Operations whose statement text was never seen (prepared before the collector).
    pub statement_unknown: u64,
    /// Messages that are not operations (handshakes, heartbeats, pushes): no span.
    pub not_operations: u64,
    /// Query texts cut to `max_query_length`.
    pub query_truncated: u64,
}

/// How query text is exported (receiver config `database`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryTextOptions {
    pub capture: bool,
    pub sanitize: bool,
    pub max_len: usize,
}

impl Default for QueryTextOptions {
    fn default() -> Self {
        QueryTextOptions {
            capture: true,
            sanitize: true,
            max_len: 1024,
        }
    }
}

/// One database connection's parser.
pub trait DbSession {
    /// Bytes that crossed the connection in one syscall (`gap`: bytes after `data` that
    /// were not captured; skip them by framing, never guess their content).
    fn feed(
        &mut self,
        flow: Flow,
        data: &[u8],
        gap: u64,
        ts: u64,
        tid: u32,
        out: &mut Vec<DbEvent>,
    );
    /// The connection closed: operations without a reply end `aborted`.
    fn close(&mut self, ts: u64, out: &mut Vec<DbEvent>);
    fn stats(&self) -> SessionStats;
}

/// What a protocol's sniffer makes of a connection's first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniff {
    Yes,
    No,
    /// Too few bytes to tell.
    NeedMore,
}

/// A database protocol as the connection layer knows it (registered in
/// `protocols::DATABASES`).
pub struct DbProtocol {
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
    pub session: fn(QueryTextOptions) -> Box<dyn DbSession + Send>,
}

impl std::fmt::Debug for DbProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl SessionStats {
    pub fn add(&mut self, o: &SessionStats) {
        self.malformed += o.malformed;
        self.statement_unknown += o.statement_unknown;
        self.not_operations += o.not_operations;
        self.query_truncated += o.query_truncated;
    }

    /// The growth since `before` (counters only grow).
    pub fn since(&self, before: &SessionStats) -> SessionStats {
        SessionStats {
            malformed: self.malformed.saturating_sub(before.malformed),
            statement_unknown: self
                .statement_unknown
                .saturating_sub(before.statement_unknown),
            not_operations: self.not_operations.saturating_sub(before.not_operations),
            query_truncated: self.query_truncated.saturating_sub(before.query_truncated),
        }
    }
}

/// A database session on the protocol seam: its `Started` / `Done` events become exchange
/// events keyed by the operation's sequence number (which is also the exchange's
/// `stream_id`, as the operation's own key).
pub struct DbSessionAdapter {
    session: Box<dyn DbSession + Send>,
    /// Operations whose `Started` was reported and whose `Done` was not yet.
    started: std::collections::HashSet<u64>,
    evs: Vec<DbEvent>,
}

impl DbSessionAdapter {
    pub fn new(session: Box<dyn DbSession + Send>) -> Self {
        DbSessionAdapter {
            session,
            started: Default::default(),
            evs: Vec::new(),
        }
    }

    fn events(&mut self, out: &mut Vec<Event>) {
        for ev in self.evs.drain(..) {
            match ev {
                DbEvent::Started { seq, ts, tid } => {
                    self.started.insert(seq);
                    out.push(Event::RequestStarted {
                        key: seq,
                        ts,
                        tid,
                        stream_id: seq as u32,
                        msg: crate::conn::Message::Db(Box::new(DbOp {
                            seq,
                            start_ts: ts,
                            tid,
                            ..Default::default()
                        })),
                    });
                }
                DbEvent::Done(op) => {
                    if !self.started.remove(&op.seq) {
                        // Its start was not reported: it starts where the session says.
                        out.push(Event::RequestStarted {
                            key: op.seq,
                            ts: op.start_ts,
                            tid: op.tid,
                            stream_id: op.seq as u32,
                            msg: crate::conn::Message::Db(Box::default()),
                        });
                    }
                    out.push(Event::ResponseEnded {
                        key: op.seq,
                        ts: op.end_ts,
                        body: None,
                        reply: Some(Reply::Db(Box::new(op))),
                    });
                }
            }
        }
    }
}

impl Session for DbSessionAdapter {
    fn feed(&mut self, flow: Flow, data: &[u8], gap: u64, ts: u64, tid: u32, out: &mut Vec<Event>) {
        self.session.feed(flow, data, gap, ts, tid, &mut self.evs);
        self.events(out);
    }

    fn close(&mut self, ts: u64, out: &mut Vec<Event>) {
        self.session.close(ts, &mut self.evs);
        self.events(out);
    }

    fn counts(&self) -> Counts {
        Counts {
            db: self.session.stats(),
            ..Default::default()
        }
    }
}
