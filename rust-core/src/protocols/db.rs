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

use super::ops::{Op, OpAdapter, OpEvent};
use super::session::{Counts, Reply, Session};
pub use super::session::{Flow, Sniff};
use crate::conn::Message;

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

pub type DbEvent = OpEvent<DbOp>;

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

impl Op for DbOp {
    type Session = dyn DbSession + Send;

    fn seq(&self) -> u64 {
        self.seq
    }
    fn start(&self) -> (u64, u32) {
        (self.start_ts, self.tid)
    }
    fn end_ts(&self) -> u64 {
        self.end_ts
    }
    fn started(seq: u64, ts: u64, tid: u32) -> Message {
        Message::Db(Box::new(DbOp {
            seq,
            start_ts: ts,
            tid,
            ..Default::default()
        }))
    }
    fn into_reply(self) -> Reply {
        Reply::Db(Box::new(self))
    }
    fn into_message(self) -> Message {
        Message::Db(Box::new(self))
    }
    fn feed(
        s: &mut Self::Session,
        flow: Flow,
        data: &[u8],
        gap: u64,
        ts: u64,
        tid: u32,
        out: &mut Vec<OpEvent<Self>>,
    ) {
        s.feed(flow, data, gap, ts, tid, out)
    }
    fn close(s: &mut Self::Session, ts: u64, out: &mut Vec<OpEvent<Self>>) {
        s.close(ts, out)
    }
    fn counts(s: &Self::Session) -> Counts {
        Counts {
            db: s.stats(),
            ..Default::default()
        }
    }
}

/// A database parser as a session of the protocol seam.
pub fn session<S: DbSession + Send + 'static>(s: S) -> Box<dyn Session> {
    Box::new(OpAdapter::<DbOp>::new(Box::new(s)))
}
