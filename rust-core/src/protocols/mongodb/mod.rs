//! MongoDB wire protocol: one [`MongoSession`] per connection, fed both directions,
//! reporting one operation per command (see `protocols/db.rs` for the events).
//!
//! Messages (`wire.rs`): OP_MSG (flags, body section, document sequences, checksum),
//! OP_COMPRESSED (snappy, zlib, zstd: the first 64 KiB of the original message are
//! decompressed, snappy only when the message was captured whole and is at most 4 MiB),
//! legacy OP_QUERY / OP_REPLY (drivers' first `hello`/`isMaster` on `admin.$cmd`).
//! Documents are read by a small bounded BSON reader (`bson.rs`).
//!
//! Choices (the tests pin them):
//! - Spans: one per command sent in OP_MSG or OP_QUERY on `<db>.$cmd` (a legacy OP_QUERY
//!   on a collection is a `find`). Handshakes, authentication and heartbeats ([`QUIET`]:
//!   `hello`, `isMaster`, `ping`, `saslStart`, `endSessions`...) are no operations
//!   (`not_operations`, once per request); so are the legacy OP_INSERT/UPDATE/DELETE/
//!   GET_MORE/KILL_CURSORS and replies that pair with no request.
//! - Pairing: a reply's `responseTo` names its request's `requestID` (many may be in
//!   flight). A request with `moreToCome` gets no reply: its span ends with the request.
//!   Exhaust cursors: a reply with `moreToCome` is followed by more replies whose
//!   `responseTo` is the previous reply's `requestID`; they are not new spans: the
//!   operation ends at the last reply (the one without `moreToCome`), and any error in
//!   the stream is its error.
//! - `db.operation.name`: the command document's first key (`find`, `insert`,
//!   `getMore`...); `db.collection.name`: its value when a string (`getMore`: its
//!   `collection` field); `db.namespace`: `$db` (OP_QUERY: the part before the first
//!   dot); `db.query.summary`: `{op} {collection}` or `{op}`.
//! - `db.operation.batch.size`: the documents of the first document sequence (`documents`
//!   of insert, `updates`, `deletes`), else of the body's `documents`/`updates`/`deletes`
//!   array; only when all of them were captured.
//! - `db.query.text`: the command as JSON, driver fields dropped ([`NOISE`]: `$db`, `lsid`,
//!   `$clusterTime`, `txnNumber`, `$readPreference`...), document sequences appended as
//!   arrays after the body's fields. Sanitized (the default): the command's own value is
//!   kept when a string, an int32, a double or a bool (`"find":"users"`, `"aggregate":1`),
//!   every key is kept, every other scalar is `"?"`, documents and arrays keep their
//!   shape (element by element), and a sequence shows its first document only (the
//!   batch size tells how many). Not sanitized: values as relaxed extended JSON
//!   (binary, regex, decimal and code as `"?"`), every document of a sequence. Cut to
//!   `max_len`; a document whose capture ended early is left open (`{"find":"c","filter":{`);
//!   either counts in `query_truncated`.
//! - Errors: a reply with `ok: 0`: `code` → `db.response.status_code` (decimal),
//!   `codeName` → `error.type`; a reply with `ok: 1` and `writeErrors` (its first) or
//!   `writeConcernError` is an error too (`error.type`: its `codeName`, else the name of
//!   a few well-known codes, 11000 `DuplicateKey`); OP_REPLY with QueryFailure set. A
//!   reply captured only in part whose `ok` was not captured is a success (replies that
//!   fail are small).
//! - Timing: start = ts (and tid) of the feed holding the request's first byte; end =
//!   ts of the feed holding the reply's last byte (or the request's, with `moreToCome`).
//!   `Started` is reported when the request's last byte was seen.
//! - Framing: messages are split by `messageLength`; the first 64 KiB of each are kept
//!   (256 KiB of OP_COMPRESSED), the rest skipped by length, as are uncaptured bytes
//!   (`gap`) inside a message (the message then gives what was captured: a span still,
//!   the command's name being near the start). A gap across a boundary, or a header that
//!   is no MongoDB header (length outside 21..=48 MiB, unknown opcode; `malformed`),
//!   loses the direction's framing: it resynchronises at the start of a later feed that
//!   begins with a plausible header (toward the server `responseTo` 0, toward the client
//!   not 0); feeds that do not are dropped. The first feed of each direction is tried the
//!   same way (a connection seen mid-stream). Requests whose replies were lost stay
//!   pending until close (aborted) or until evicted.
//! - At most [`MAX_PENDING`] requests wait for replies; beyond that the oldest ends
//!   `aborted`.

mod bson;
#[cfg(test)]
mod tests;
mod wire;

use std::collections::HashMap;

use super::db::{DbEvent, DbOp, DbSession, DbSystem, Flow, QueryTextOptions, SessionStats};
use bson::{Doc, Render, State, Value};
use wire::{Broken, Framer, Header, Msg, Sequence};

pub use super::db::Sniff;

/// Bytes looked at to find a message's start (a header and an OP_MSG's first section).
const PROBE: usize = 25;
/// Requests waiting for replies at most.
pub(crate) const MAX_PENDING: usize = 1024;
/// Longest collection or database name kept (the server's limits are lower).
const MAX_NAME: usize = 255;

/// Commands that are handshakes, authentication or heartbeats: no spans.
pub const QUIET: &[&str] = &[
    "hello",
    "isMaster",
    "ismaster",
    "ping",
    "buildInfo",
    "buildinfo",
    "saslStart",
    "saslContinue",
    "authenticate",
    "getnonce",
    "logout",
    "endSessions",
    "whatsmyuri",
];

/// Top-level command fields that drivers add: dropped from `db.query.text`.
pub const NOISE: &[&str] = &[
    "$db",
    "lsid",
    "$clusterTime",
    "txnNumber",
    "$readPreference",
    "autocommit",
    "startTransaction",
    "apiVersion",
    "apiStrict",
    "apiDeprecationErrors",
    "$client",
    "$configServerState",
    "$topologyTime",
    "$oplogQueryData",
];

/// A connection's first bytes toward the server: an OP_MSG, OP_QUERY or OP_COMPRESSED
/// header with `responseTo` 0 and a plausible length (for OP_MSG: valid flags and a
/// section kind 0 or 1). A MongoDB server never speaks first: `ToClient` is `No`.
pub fn sniff(flow: Flow, first: &[u8]) -> Sniff {
    if flow == Flow::ToClient {
        return Sniff::No;
    }
    if let Some(len) = wire::le32(first) {
        if !(wire::MIN_LEN as i32..=wire::MAX_LEN as i32).contains(&len) {
            return Sniff::No;
        }
    }
    if let Some(r) = first.get(8..).and_then(wire::le32) {
        if r != 0 {
            return Sniff::No;
        }
    }
    if first.len() < wire::HEADER {
        return Sniff::NeedMore;
    }
    let Some(h) = Header::parse(first) else {
        return Sniff::No;
    };
    if !matches!(
        h.op_code,
        wire::OP_MSG | wire::OP_QUERY | wire::OP_COMPRESSED
    ) {
        return Sniff::No;
    }
    if h.op_code == wire::OP_MSG {
        if first.len() < 21 {
            return Sniff::NeedMore;
        }
        if !op_msg_start_ok(&first[16..], h.len) {
            return Sniff::No;
        }
    }
    Sniff::Yes
}

/// An OP_MSG's flags and first section kind (and its length when kind 0) are sane.
fn op_msg_start_ok(b: &[u8], len: u32) -> bool {
    let Some(flags) = wire::le32(b) else {
        return true;
    };
    if flags as u32 & 0xfffc != 0 {
        return false;
    }
    match b.get(4) {
        None => true,
        Some(0) => match b.get(5..).and_then(wire::le32) {
            Some(l) => l >= 5 && (l as i64) <= i64::from(len) - 21,
            None => true,
        },
        Some(1) => true,
        Some(_) => false,
    }
}

/// Whether `data` (the start of a feed) begins with a plausible message in `flow`:
/// toward the server a request (`responseTo` 0), toward the client a reply (OP_MSG,
/// OP_REPLY or OP_COMPRESSED, `responseTo` not 0). At least 16 bytes are needed.
pub fn plausible(flow: Flow, data: &[u8]) -> bool {
    let Some(h) = Header::parse(data) else {
        return false;
    };
    let opcode_ok = match flow {
        Flow::ToServer => h.response_to == 0 && h.op_code != wire::OP_REPLY,
        Flow::ToClient => {
            h.response_to != 0
                && matches!(
                    h.op_code,
                    wire::OP_MSG | wire::OP_REPLY | wire::OP_COMPRESSED
                )
        }
    };
    opcode_ok && (h.op_code != wire::OP_MSG || op_msg_start_ok(&data[16..], h.len))
}

/// The first 12 bytes of a header could start a plausible message in `flow`.
fn header_start_ok(flow: Flow, b: &[u8]) -> bool {
    let len_ok =
        wire::le32(b).is_some_and(|l| (wire::MIN_LEN as i32..=wire::MAX_LEN as i32).contains(&l));
    let resp = b.get(8..).and_then(wire::le32);
    len_ok
        && match flow {
            Flow::ToServer => resp.is_none_or(|r| r == 0),
            Flow::ToClient => resp.is_none_or(|r| r != 0),
        }
}

/// Bytes of a connection first seen mid-stream (port 27017): a plausible header.
pub fn plausible_midstream(flow: Flow, data: &[u8]) -> bool {
    plausible(flow, data)
}

/// What a request's command gives its span.
#[derive(Debug, Default, Clone)]
struct OpInfo {
    operation: Option<String>,
    collection: Option<String>,
    namespace: Option<String>,
    text: Option<String>,
    batch: Option<u64>,
}

#[derive(Debug)]
struct Pending {
    /// None: a request that makes no span (its reply is expected all the same).
    seq: Option<u64>,
    info: Box<OpInfo>,
    start_ts: u64,
    tid: u32,
    /// An error reply in an exhaust stream: (code, codeName).
    err: Option<ReplyError>,
    order: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ReplyError {
    code: Option<String>,
    name: Option<String>,
}

/// A request as classified.
enum Req {
    Op(Box<OpInfo>),
    Quiet,
}

#[derive(Debug, Default)]
struct Dir {
    framer: Framer,
    /// While lost: the first bytes of a feed that may start a message.
    probe: Vec<u8>,
    probe_ts: u64,
    probe_tid: u32,
    /// No framing: the next feed's start is tried.
    lost: bool,
}

/// One MongoDB connection's parser.
#[derive(Debug)]
pub struct MongoSession {
    opts: QueryTextOptions,
    stats: SessionStats,
    dirs: [Dir; 2],
    pending: HashMap<i32, Pending>,
    next_seq: u64,
    order: u64,
    losses: u64,
    evicted: u64,
}

fn idx(flow: Flow) -> usize {
    match flow {
        Flow::ToServer => 0,
        Flow::ToClient => 1,
    }
}

impl MongoSession {
    pub fn new(opts: QueryTextOptions) -> Self {
        MongoSession {
            opts,
            stats: SessionStats::default(),
            dirs: [
                Dir {
                    lost: true,
                    ..Default::default()
                },
                Dir {
                    lost: true,
                    ..Default::default()
                },
            ],
            pending: HashMap::new(),
            next_seq: 1,
            order: 0,
            losses: 0,
            evicted: 0,
        }
    }

    /// Times a direction lost its framing (a malformed header or a gap across a
    /// boundary), or dropped bytes looking for a message's start (a first feed that is
    /// no message's start, as in a connection seen mid-stream).
    pub fn losses(&self) -> u64 {
        self.losses
    }

    /// Requests ended `aborted` because [`MAX_PENDING`] were waiting.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    fn on_msg(&mut self, flow: Flow, m: Msg<'_>, out: &mut Vec<DbEvent>) {
        let (op_code, decompressed, whole);
        let mut body = m.body;
        if m.h.op_code == wire::OP_COMPRESSED {
            match wire::decompress(m.body, m.whole) {
                Some((op, d, all)) => {
                    op_code = op;
                    decompressed = d;
                    body = &decompressed;
                    whole = all && m.whole;
                }
                None => {
                    // Unknown compressor, snappy cut short, or garbage.
                    if flow == Flow::ToServer {
                        self.stats.statement_unknown += 1;
                        self.request(Req::Op(Box::default()), &m, false, out);
                    } else {
                        self.reply(&m, None, false, out);
                    }
                    return;
                }
            }
        } else {
            op_code = m.h.op_code;
            whole = m.whole;
        }
        match flow {
            Flow::ToServer => self.on_request(op_code, body, whole, &m, out),
            Flow::ToClient => self.on_reply(op_code, body, whole, &m, out),
        }
    }

    fn on_request(
        &mut self,
        op_code: i32,
        body: &[u8],
        whole: bool,
        m: &Msg<'_>,
        out: &mut Vec<DbEvent>,
    ) {
        match op_code {
            wire::OP_MSG => {
                let Some(msg) = wire::op_msg(body, whole) else {
                    self.stats.malformed += 1;
                    return;
                };
                let more = msg.flags & wire::MORE_TO_COME != 0;
                let req = match msg.body.and_then(|b| Doc::parse(b).map(|d| d.0)) {
                    Some(doc) => self.command(doc, &msg.seqs, None),
                    None => {
                        self.stats.statement_unknown += 1;
                        Req::Op(Box::default())
                    }
                };
                self.request(req, m, more, out);
            }
            wire::OP_QUERY => {
                let Some((name, doc)) = wire::op_query(body) else {
                    self.stats.malformed += 1;
                    return;
                };
                let Some((doc, _)) = Doc::parse(doc) else {
                    self.stats.malformed += 1;
                    return;
                };
                let (db, coll) = match name.iter().position(|&c| c == b'.') {
                    Some(dot) => (&name[..dot], &name[dot + 1..]),
                    None => (name, &b""[..]),
                };
                let req = if coll == b"$cmd" {
                    self.command(doc, &[], name_str(db))
                } else {
                    // A legacy query on a collection.
                    let (text, cut) = self.render(doc, &[], false);
                    self.count_cut(cut);
                    let collection = name_str(coll);
                    Req::Op(Box::new(OpInfo {
                        operation: Some("find".to_string()),
                        collection,
                        namespace: name_str(db),
                        text,
                        batch: None,
                    }))
                };
                self.request(req, m, false, out);
            }
            wire::OP_GET_MORE => {
                self.request(Req::Quiet, m, false, out);
            }
            wire::OP_INSERT | wire::OP_UPDATE | wire::OP_DELETE | wire::OP_KILL_CURSORS => {
                // Legacy writes: no reply.
                self.stats.not_operations += 1;
            }
            _ => self.stats.malformed += 1,
        }
    }

    fn on_reply(
        &mut self,
        op_code: i32,
        body: &[u8],
        whole: bool,
        m: &Msg<'_>,
        out: &mut Vec<DbEvent>,
    ) {
        match op_code {
            wire::OP_MSG => {
                let Some(msg) = wire::op_msg(body, whole) else {
                    self.stats.malformed += 1;
                    self.reply(m, None, false, out);
                    return;
                };
                let more = msg.flags & wire::MORE_TO_COME != 0;
                let err = msg
                    .body
                    .and_then(|b| Doc::parse(b).map(|d| d.0))
                    .and_then(reply_error);
                self.reply(m, err, more, out);
            }
            wire::OP_REPLY => {
                let Some((flags, doc)) = wire::op_reply(body) else {
                    self.stats.malformed += 1;
                    self.reply(m, None, false, out);
                    return;
                };
                let doc = Doc::parse(doc).map(|d| d.0);
                let mut err = doc.and_then(reply_error);
                // QueryFailure.
                if flags & 2 != 0 && err.is_none() {
                    err = Some(ReplyError::default());
                }
                self.reply(m, err, false, out);
            }
            _ => {
                self.stats.malformed += 1;
                self.reply(m, None, false, out);
            }
        }
    }

    /// Classifies a command document (and the message's document sequences).
    fn command(&mut self, doc: Doc<'_>, seqs: &[Sequence<'_>], db: Option<String>) -> Req {
        let Some((name, first)) = doc.first() else {
            self.stats.statement_unknown += 1;
            return Req::Op(Box::default());
        };
        let operation = std::str::from_utf8(name).ok().filter(|n| {
            (1..=64).contains(&n.len()) && n.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
        });
        if let Some(op) = operation {
            if QUIET.contains(&op) {
                return Req::Quiet;
            }
        }
        let mut info = OpInfo {
            operation: operation.map(str::to_string),
            namespace: db,
            ..Default::default()
        };
        let coll = if name == b"getMore" {
            doc.get("collection")
        } else {
            Some(first)
        };
        info.collection = coll.and_then(|v| v.as_str()).and_then(name_str);
        if let Some(ns) = doc.get("$db").and_then(|v| v.as_str()).and_then(name_str) {
            info.namespace = Some(ns);
        }
        info.batch = match seqs.first() {
            Some(s) => s.whole.then_some(s.count),
            None => ["documents", "updates", "deletes"]
                .iter()
                .find_map(|k| match doc.get(k) {
                    Some(Value::Array(a)) if a.complete => Some(a.count() as u64),
                    _ => None,
                }),
        };
        let (text, cut) = self.render(doc, seqs, true);
        self.count_cut(cut);
        info.text = text;
        Req::Op(Box::new(info))
    }

    fn count_cut(&mut self, cut: bool) {
        if cut {
            self.stats.query_truncated += 1;
        }
    }

    /// `db.query.text` of a command (`is_command`: its first value is the command's
    /// own), and whether it was cut.
    fn render(
        &self,
        doc: Doc<'_>,
        seqs: &[Sequence<'_>],
        is_command: bool,
    ) -> (Option<String>, bool) {
        if !self.opts.capture {
            return (None, false);
        }
        let mut r = Render::new(self.opts.max_len, self.opts.sanitize);
        r.out.push('{');
        let mut first = true;
        let mut it = doc.iter();
        for (k, v) in it.by_ref() {
            if r.full() {
                break;
            }
            if first && is_command {
                r.key(k, true);
                match v {
                    Value::Str(s) => bson::json_str(&mut r.out, s),
                    Value::Int32(_) | Value::Double(_) | Value::Bool(_) => {
                        let keep = r.sanitize;
                        r.sanitize = false;
                        r.value(&v, 1);
                        r.sanitize = keep;
                    }
                    _ => r.value(&v, 1),
                }
                first = false;
                continue;
            }
            if std::str::from_utf8(k).is_ok_and(|k| NOISE.contains(&k)) {
                continue;
            }
            r.key(k, first);
            first = false;
            r.value(&v, 1);
        }
        let body_done = it.state() == State::Ended;
        if !body_done && !r.full() {
            r.cut = true;
        }
        if body_done && !r.cut {
            for s in seqs {
                if r.full() {
                    break;
                }
                r.key(s.id, first);
                first = false;
                r.out.push('[');
                let mut q = s.docs;
                let mut n = 0;
                let mut closed = s.whole || r.sanitize;
                while let Some((d, len)) = Doc::parse(q) {
                    if r.full() || (r.sanitize && n == 1) {
                        break;
                    }
                    if n > 0 {
                        r.out.push(',');
                    }
                    r.value(&Value::Doc(d), 1);
                    n += 1;
                    if !d.complete || r.cut {
                        closed = false;
                        break;
                    }
                    q = q.get(len..).unwrap_or_default();
                }
                if n == 0 && !s.whole {
                    closed = false;
                }
                if !closed {
                    r.cut = true;
                    break;
                }
                r.out.push(']');
            }
            if !r.cut {
                r.out.push('}');
            }
        }
        let mut cut = r.cut;
        let mut t = r.out;
        if t.len() > self.opts.max_len {
            let mut at = self.opts.max_len;
            while !t.is_char_boundary(at) {
                at -= 1;
            }
            t.truncate(at);
            cut = true;
        }
        (Some(t), cut)
    }

    /// A complete request: an operation (Started; Done now when no reply comes) or a
    /// quiet one; either waits for its reply under its requestID.
    fn request(&mut self, req: Req, m: &Msg<'_>, more_to_come: bool, out: &mut Vec<DbEvent>) {
        let (seq, info) = match req {
            Req::Quiet => {
                self.stats.not_operations += 1;
                (None, Box::default())
            }
            Req::Op(info) => {
                let seq = self.next_seq;
                self.next_seq += 1;
                out.push(DbEvent::Started {
                    seq,
                    ts: m.first_ts,
                    tid: m.first_tid,
                });
                (Some(seq), info)
            }
        };
        self.order += 1;
        let p = Pending {
            seq,
            info,
            start_ts: m.first_ts,
            tid: m.first_tid,
            err: None,
            order: self.order,
        };
        if more_to_come {
            self.finish(p, m.last_ts, false, out);
            return;
        }
        self.wait(m.h.request_id, p, m.last_ts, out);
    }

    /// Puts `p` in the pending map under `id` (bounded).
    fn wait(&mut self, id: i32, p: Pending, ts: u64, out: &mut Vec<DbEvent>) {
        if !self.pending.contains_key(&id) && self.pending.len() >= MAX_PENDING {
            if let Some(&old) = self
                .pending
                .iter()
                .min_by_key(|(_, p)| p.order)
                .map(|(k, _)| k)
            {
                if let Some(o) = self.pending.remove(&old) {
                    self.evicted += 1;
                    self.finish(o, ts, true, out);
                }
            }
        }
        if let Some(o) = self.pending.insert(id, p) {
            // A requestID reused while its request waits: the older cannot be paired.
            self.finish(o, ts, true, out);
        }
    }

    fn reply(&mut self, m: &Msg<'_>, err: Option<ReplyError>, more: bool, out: &mut Vec<DbEvent>) {
        let Some(mut p) = self.pending.remove(&m.h.response_to) else {
            // A reply to a request not seen (mid-stream) or not waiting.
            self.stats.not_operations += 1;
            return;
        };
        if p.err.is_none() {
            p.err = err;
        }
        if more {
            // Exhaust: the next reply answers this one.
            self.wait(m.h.request_id, p, m.last_ts, out);
            return;
        }
        self.finish(p, m.last_ts, false, out);
    }

    fn finish(&mut self, p: Pending, end_ts: u64, aborted: bool, out: &mut Vec<DbEvent>) {
        let Some(seq) = p.seq else { return };
        let info = *p.info;
        let summary = match (&info.operation, &info.collection) {
            (Some(o), Some(c)) => Some(format!("{o} {c}")),
            (Some(o), None) => Some(o.clone()),
            _ => None,
        };
        let err = p.err;
        out.push(DbEvent::Done(DbOp {
            seq,
            system: Some(DbSystem::Mongodb),
            namespace: info.namespace,
            operation: info.operation,
            collection: info.collection,
            summary,
            query_text: info.text,
            batch_size: info.batch,
            status_code: err.as_ref().and_then(|e| e.code.clone()),
            error_type: err.as_ref().and_then(|e| e.name.clone()),
            error: err.is_some(),
            start_ts: p.start_ts,
            end_ts: end_ts.max(p.start_ts),
            tid: p.tid,
            aborted,
        }));
    }

    fn feed_dir(
        &mut self,
        flow: Flow,
        data: &[u8],
        gap: u64,
        ts: u64,
        tid: u32,
        out: &mut Vec<DbEvent>,
    ) {
        let i = idx(flow);
        if self.dirs[i].lost {
            // The start of a message is looked for at a feed's start: the first
            // [`PROBE`] bytes (fewer if the message is shorter), gathered over feeds.
            let d = &mut self.dirs[i];
            if data.is_empty() {
                if !d.probe.is_empty() {
                    d.probe.clear();
                    self.losses += 1;
                }
                return;
            }
            if d.probe.is_empty() {
                d.probe_ts = ts;
                d.probe_tid = tid;
            }
            let before = d.probe.len();
            let take = (PROBE - before).min(data.len());
            d.probe.extend_from_slice(&data[..take]);
            let short = Header::parse(&d.probe).is_some_and(|h| h.len as usize <= d.probe.len());
            if d.probe.len() < PROBE && !short {
                let n = d.probe.len();
                if gap > 0
                    || (n >= wire::HEADER && !plausible(flow, &d.probe))
                    || ((12..wire::HEADER).contains(&n) && !header_start_ok(flow, &d.probe))
                {
                    d.probe.clear();
                    self.losses += 1;
                }
                return;
            }
            let probe = std::mem::take(&mut d.probe);
            if !plausible(flow, &probe) {
                self.losses += 1;
                return;
            }
            d.lost = false;
            d.framer.reset();
            if before > 0 {
                let (pts, ptid) = (d.probe_ts, d.probe_tid);
                self.feed_dir(flow, &probe[..before], 0, pts, ptid, out);
                if self.dirs[i].lost {
                    return;
                }
            }
        }
        // The framer is taken out so that its messages can be handled as they end.
        let mut framer = std::mem::take(&mut self.dirs[i].framer);
        let res = framer.feed(data, gap, ts, tid, &mut |m: Msg<'_>| {
            self.on_msg(flow, m, out)
        });
        self.dirs[i].framer = framer;
        if let Err(e) = res {
            self.losses += 1;
            if e == Broken::Malformed {
                self.stats.malformed += 1;
            }
            self.dirs[i].framer.reset();
            self.dirs[i].lost = true;
        }
    }
}

/// A database or collection name as exported: UTF-8, 1..=255 bytes.
fn name_str(b: &[u8]) -> Option<String> {
    if b.is_empty() || b.len() > MAX_NAME {
        return None;
    }
    std::str::from_utf8(b).ok().map(str::to_string)
}

/// The name of a few well-known error codes (writeErrors carry no codeName).
fn code_name(code: i64) -> Option<&'static str> {
    Some(match code {
        2 => "BadValue",
        11 => "UserNotFound",
        13 => "Unauthorized",
        18 => "AuthenticationFailed",
        26 => "NamespaceNotFound",
        48 => "NamespaceExists",
        50 => "MaxTimeMSExpired",
        59 => "CommandNotFound",
        66 => "ImmutableField",
        121 => "DocumentValidationFailure",
        11000 => "DuplicateKey",
        _ => return None,
    })
}

/// The error a reply document reports, if any.
fn reply_error(doc: Doc<'_>) -> Option<ReplyError> {
    let mut ok = None;
    let mut code = None;
    let mut name = None;
    let mut nested = None;
    for (k, v) in doc.iter() {
        match k {
            b"ok" => ok = v.as_f64(),
            b"code" => code = v.as_i64(),
            b"codeName" => name = v.as_str().and_then(name_str),
            b"writeErrors" | b"writeConcernError" if nested.is_none() => {
                nested = match v {
                    Value::Array(a) => match a.first() {
                        Some((_, Value::Doc(d))) => Some(d),
                        _ => None,
                    },
                    Value::Doc(d) => Some(d),
                    _ => None,
                }
            }
            _ => {}
        }
    }
    let of = |code: Option<i64>, name: Option<String>| ReplyError {
        code: code.map(|c| c.to_string()),
        name: name.or_else(|| code.and_then(code_name).map(str::to_string)),
    };
    if ok == Some(0.0) {
        return Some(of(code, name));
    }
    let d = nested?;
    let mut c = None;
    let mut n = None;
    for (k, v) in d.iter() {
        match k {
            b"code" => c = v.as_i64(),
            b"codeName" => n = v.as_str().and_then(name_str),
            _ => {}
        }
    }
    Some(of(c, n))
}

impl DbSession for MongoSession {
    fn feed(
        &mut self,
        flow: Flow,
        data: &[u8],
        gap: u64,
        ts: u64,
        tid: u32,
        out: &mut Vec<DbEvent>,
    ) {
        self.feed_dir(flow, data, gap, ts, tid, out);
    }

    fn close(&mut self, ts: u64, out: &mut Vec<DbEvent>) {
        let mut left: Vec<Pending> = self.pending.drain().map(|(_, p)| p).collect();
        left.sort_by_key(|p| p.order);
        for p in left {
            self.finish(p, ts, true, out);
        }
        for d in &mut self.dirs {
            d.framer.reset();
            d.lost = true;
        }
    }

    fn stats(&self) -> SessionStats {
        self.stats
    }
}
