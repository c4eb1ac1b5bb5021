//! PostgreSQL frontend/backend protocol 3.0 (3.2 framing too): one [`PgSession`] per
//! connection, fed both directions, reporting one operation per simple Query and per
//! Execute (see `protocols/db.rs` for the events).
//!
//! Operations and pairing:
//! * Simple query `Q`: one operation, whatever the number of statements in it (the
//!   summary lists them); its reply ends at ReadyForQuery `Z`. The first ErrorResponse
//!   gives the error (SQLSTATE as `status_code` and `error_type`); NoticeResponse is no
//!   error. COPY inside it (CopyIn/CopyOut/CopyData/CopyDone/CopyFail both ways) only
//!   delays the `Z`; CopyData payloads are skipped, never copied.
//! * Extended protocol: a *group* is the Parse/Bind/Describe/Close messages since the
//!   previous Execute or Sync. Each Execute is one operation whose start is the first
//!   message of its group (ts and tid of the feed holding it); it ends at its
//!   CommandComplete, EmptyQueryResponse, PortalSuspended (the next Execute of the same
//!   portal is another operation) or ErrorResponse. The text is the statement's the
//!   portal was bound to: named statements are remembered per connection (at most
//!   [`MAX_STATEMENTS`], the oldest forgotten first), the unnamed one until the next
//!   unnamed Parse or simple Query. An Execute whose statement was never seen (prepared
//!   before the collector, or forgotten) is still an operation, without text or summary,
//!   its operation named by the server's CommandComplete tag (`SELECT 3` → `SELECT`),
//!   counted in `statement_unknown`.
//! * Pipelines (many groups before one Sync): replies are paired in order. An
//!   ErrorResponse fails the group the server was answering: that group's Execute gets
//!   the error (also when the failing message was its Parse or Bind). The server then
//!   skips everything up to Sync: every later Execute before that Sync is reported when
//!   the Sync's ReadyForQuery arrives, with `error = true`, no `status_code` and
//!   `error_type = "pipeline_aborted"` ([`PIPELINE_ABORTED`]).
//! * Groups without an Execute (statement preparation: Parse/Describe/Sync) and
//!   everything of the startup phase (StartupMessage, SSLRequest and its one-byte
//!   answer, GSSENCRequest, CancelRequest, authentication, ParameterStatus,
//!   BackendKeyData, the first ReadyForQuery), NotificationResponse, Terminate and
//!   ReadyForQuery with nothing pending are no operations (`not_operations`). An
//!   ErrorResponse to a Sync itself (the implicit transaction's commit failed) has no
//!   operation left to fail: it is counted there too.
//! * `db.namespace` is the StartupMessage's `database` (default: `user`); `None` for a
//!   connection first seen mid-stream (its first bytes toward the server are a typed
//!   message, not a startup packet: no startup phase is expected then; first bytes of
//!   either direction that are no plausible chain of messages are skipped as below).
//! * After SSLRequest answered `S`, bytes are ignored until a StartupMessage arrives
//!   (the plaintext, from the TLS library probes; raw TLS records are skipped
//!   silently). A GSSENCRequest answered `G` ends parsing (encrypted, no plaintext probe).
//!
//! Framing and lost boundaries (`wire.rs`): messages may be split anywhere. A length
//! below 4 or above 1 GiB, a known fixed length not respected, or an unknown type byte is
//! malformed (counted); uncaptured bytes (`gap`) inside a message are skipped by its
//! length (a DataRow larger than the capture); a gap across a boundary loses it (not
//! counted as malformed). A direction that lost its boundaries skips bytes until:
//! * toward the server: a feed that starts with a plausible chain of messages (client
//!   writes start at message boundaries). One placeholder takes the server's replies
//!   up to the next ReadyForQuery, so later replies pair with later requests; until
//!   that ReadyForQuery arrives, requests up to the next Sync are ignored (their group
//!   lost its beginning; that Sync is the placeholder's).
//! * toward the client: a feed that starts with a plausible chain of messages after new
//!   requests were sent (the client read the earlier replies whole, in what was not
//!   captured: their operations end, without status, at the last skipped feed), or a
//!   ReadyForQuery followed by a plausible chain (it ends the pending operations up to
//!   its Sync or Query, without status).
//!
//! Never panics, never buffers more than 64 KiB per direction (the rest of a longer
//! message is skipped by its length: a query text is analysed from its beginning), and
//! keeps at most [`MAX_PENDING`] queued requests (beyond that, requests up to the
//! next Sync are not followed, as if lost).

mod wire;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::db::{DbEvent, DbOp, DbSession, DbSystem, Flow, QueryTextOptions, SessionStats};
use super::sql::{analyze, query_text, SqlInfo};
use wire::{Expect, Framer, Msg, Sink};

/// Named prepared statements remembered per connection (pgx caches 512).
pub(crate) const MAX_STATEMENTS: usize = 512;
/// Named portals remembered per connection.
pub const MAX_PORTALS: usize = 64;
/// Requests waiting for their replies (a pipeline step or an operation each).
pub(crate) const MAX_PENDING: usize = 16 * 1024;
/// `error_type` of the Executes the server skipped after an earlier error in the
/// same pipeline.
pub const PIPELINE_ABORTED: &str = "pipeline_aborted";
/// Longest statement or portal name kept (the server's limit is 63 bytes).
const MAX_NAME: usize = 256;

pub use super::db::Sniff;

/// Recognises a connection from its first bytes toward the server: StartupMessage
/// (protocol 3.x), SSLRequest, GSSENCRequest or CancelRequest. The server never speaks
/// first, so `ToClient` is `No`.
pub fn sniff(flow: Flow, first: &[u8]) -> Sniff {
    if flow == Flow::ToClient {
        return Sniff::No;
    }
    // Startup packets are at most 10,000 bytes: the length's two high bytes are zero.
    if first.iter().take(2).any(|&b| b != 0) {
        return Sniff::No;
    }
    if first.len() >= 4 && !(8..=wire::MAX_STARTUP).contains(&wire::be32(first)) {
        return Sniff::No;
    }
    if first.len() < 8 {
        return Sniff::NeedMore;
    }
    if wire::startup_ok(wire::be32(first), wire::be32(&first[4..])) {
        Sniff::Yes
    } else {
        Sniff::No
    }
}

/// Whether `data` (bytes of one direction of a connection first seen mid-stream) starts
/// with well-formed typed messages: known type bytes, sane lengths, plausible contents,
/// covering `data` (the last one may continue past it). At least five bytes are needed.
pub fn plausible_midstream(flow: Flow, data: &[u8]) -> bool {
    match wire::chain(flow, data) {
        Some((0, first_len)) => first_len <= 16 << 20,
        Some(_) => true,
        None => false,
    }
}

/// What a statement's text gives every operation executing it.
#[derive(Debug)]
struct Stmt {
    info: SqlInfo,
    text: Option<String>,
    /// `text` was cut to `max_len` (counted per operation).
    truncated: bool,
}

#[derive(Debug)]
struct Op {
    seq: u64,
    start_ts: u64,
    tid: u32,
    stmt: Option<Arc<Stmt>>,
    /// An ErrorResponse arrived: its SQLSTATE, if any.
    err: Option<Option<String>>,
    /// The statement is unknown: the operation its CommandComplete tag names.
    tag_op: Option<String>,
}

/// How an operation ended.
#[derive(Clone, Copy)]
enum End {
    /// Its reply ended (with the error recorded in the op, if any).
    Reply,
    /// The server skipped it after an earlier error in the pipeline.
    PipelineAborted,
    /// The connection closed first.
    Aborted,
    /// The connection closed before the Sync ending a pipeline the server skipped.
    AbortedSkipped,
}

/// What a request waits for from the server, in the order the server answers.
#[derive(Debug)]
enum Slot {
    /// StartupMessage: authentication... until ReadyForQuery (or a fatal error).
    Startup,
    /// SSLRequest / GSSENCRequest: one byte.
    Answer {
        gss: bool,
    },
    /// A simple query: ends at ReadyForQuery.
    Simple(Op),
    /// Parse/Bind/Describe/Close of `group`: one reply each (ParseComplete,
    /// BindComplete, RowDescription or NoData, CloseComplete).
    Steps {
        group: u64,
        left: u32,
    },
    Execute {
        group: u64,
        op: Op,
    },
    /// An Execute the server skips (error earlier in the pipeline): ends at the Sync's
    /// ReadyForQuery.
    Skipped(Op),
    Sync,
    /// FunctionCall: FunctionCallResponse, then ReadyForQuery.
    FnCall,
    /// Requests lost with the boundaries toward the server: takes every reply up to the
    /// next ReadyForQuery.
    Lost,
}

impl Slot {
    fn ends_at_ready(&self) -> bool {
        matches!(
            self,
            Slot::Startup | Slot::Simple(_) | Slot::Sync | Slot::FnCall | Slot::Lost
        )
    }
}

/// A bounded name → value map; the oldest insertion goes first when full.
#[derive(Debug)]
struct Names<V> {
    map: HashMap<Vec<u8>, (u64, V)>,
    tick: u64,
    cap: usize,
}

impl<V> Names<V> {
    fn new(cap: usize) -> Self {
        Names {
            map: HashMap::new(),
            tick: 0,
            cap,
        }
    }

    fn key(name: &[u8]) -> &[u8] {
        &name[..name.len().min(MAX_NAME)]
    }

    fn insert(&mut self, name: &[u8], v: V) {
        let name = Self::key(name);
        if !self.map.contains_key(name) && self.map.len() >= self.cap {
            if let Some(oldest) = self
                .map
                .iter()
                .min_by_key(|(_, (t, _))| *t)
                .map(|(k, _)| k.clone())
            {
                self.map.remove(&oldest);
            }
        }
        self.tick += 1;
        self.map.insert(name.to_vec(), (self.tick, v));
    }

    fn get(&self, name: &[u8]) -> Option<&V> {
        self.map.get(Self::key(name)).map(|(_, v)| v)
    }

    fn remove(&mut self, name: &[u8]) {
        self.map.remove(Self::key(name));
    }
}

#[derive(Debug, Clone, Copy)]
struct ClientLost {
    /// Requests queued when the boundaries were lost.
    pre: usize,
    /// ts of the last feed skipped since.
    last_ts: u64,
}

/// One PostgreSQL connection's parser.
#[derive(Debug)]
pub struct PgSession {
    dirs: [Framer; 2],
    core: Core,
}

#[derive(Debug)]
struct Core {
    opts: QueryTextOptions,
    stats: SessionStats,
    lost_sync: u64,
    namespace: Option<String>,
    /// Bytes toward the server seen (decides startup phase or mid-stream).
    seen: [bool; 2],
    /// The next packet toward the server is a startup-phase one (no type byte).
    expect_startup: bool,
    /// SSLRequest answered `S`: waiting for the plaintext StartupMessage.
    tls_pending: bool,
    /// GSSAPI encryption: nothing more can be read.
    dead: bool,
    next_seq: u64,
    queue: VecDeque<Slot>,
    stmts: Names<Arc<Stmt>>,
    portals: Names<Option<Arc<Stmt>>>,
    group: u64,
    /// ts/tid of the current group's first message, and how many it has.
    group_start: Option<(u64, u32)>,
    group_msgs: u64,
    /// The server skips until Sync after an error in `group` with this SQLSTATE.
    skip: Option<(u64, Option<String>)>,
    /// Toward the server, boundaries were lost: requests are ignored until Sync or Query.
    discard: bool,
    client_lost: Option<ClientLost>,
}

impl PgSession {
    pub fn new(opts: QueryTextOptions) -> Self {
        PgSession {
            dirs: [Framer::default(), Framer::default()],
            core: Core {
                opts,
                stats: SessionStats::default(),
                lost_sync: 0,
                namespace: None,
                seen: [false; 2],
                expect_startup: false,
                tls_pending: false,
                dead: false,
                next_seq: 0,
                queue: VecDeque::new(),
                stmts: Names::new(MAX_STATEMENTS),
                portals: Names::new(MAX_PORTALS),
                group: 0,
                group_start: None,
                group_msgs: 0,
                skip: None,
                discard: false,
                client_lost: None,
            },
        }
    }

    /// How many times bytes were skipped for want of a message boundary: a direction
    /// lost its boundaries (malformed header, gap across a boundary, first bytes of a
    /// mid-stream connection not at one), or a feed was skipped after SSLRequest while
    /// waiting for the plaintext StartupMessage. Where it stays 0, the events do not
    /// depend on how the bytes were cut into feeds.
    pub fn lost_sync(&self) -> u64 {
        self.core.lost_sync
    }

    /// The connection's database, once its StartupMessage was seen.
    pub fn namespace(&self) -> Option<&str> {
        self.core.namespace.as_deref()
    }
}

fn idx(flow: Flow) -> usize {
    match flow {
        Flow::ToServer => 0,
        Flow::ToClient => 1,
    }
}

impl DbSession for PgSession {
    fn feed(
        &mut self,
        flow: Flow,
        data: &[u8],
        gap: u64,
        ts: u64,
        tid: u32,
        out: &mut Vec<DbEvent>,
    ) {
        let core = &mut self.core;
        let framer = &mut self.dirs[idx(flow)];
        if core.dead || (data.is_empty() && gap == 0) {
            return;
        }
        let mut data = data;
        if !core.seen[idx(flow)] {
            core.seen[idx(flow)] = true;
            if flow == Flow::ToServer && wire::startup_prefix(data, true) {
                core.expect_startup = true;
            } else if data.len() >= 5 && !wire::chain_ok(flow, data) {
                // Mid-stream, not at a boundary: wait for one.
                framer.lost = true;
                core.lost(flow, ts);
            }
        }
        if core.tls_pending {
            // Raw TLS records until the plaintext StartupMessage.
            if flow == Flow::ToClient || !wire::startup_prefix(data, false) {
                core.lost_sync += 1;
                return;
            }
            core.tls_pending = false;
            framer.recover();
            self.dirs[idx(Flow::ToClient)].recover();
            core.client_lost = None;
        }
        let framer = &mut self.dirs[idx(flow)];
        if framer.lost {
            match core.resync(flow, data, ts, out) {
                Some(off) => {
                    framer.recover();
                    data = &data[off..];
                    if flow == Flow::ToClient {
                        core.client_lost = None;
                    }
                }
                None => return,
            }
        }
        let mut ctx = Ctx { core, out };
        framer.feed(flow, &mut ctx, data, gap, ts, tid);
    }

    fn close(&mut self, ts: u64, out: &mut Vec<DbEvent>) {
        let core = &mut self.core;
        while let Some(slot) = core.queue.pop_front() {
            match slot {
                Slot::Simple(op) | Slot::Execute { op, .. } => {
                    core.finish(op, End::Aborted, ts, out)
                }
                Slot::Skipped(op) => core.finish(op, End::AbortedSkipped, ts, out),
                _ => {}
            }
        }
    }

    fn stats(&self) -> SessionStats {
        self.core.stats
    }
}

struct Ctx<'a> {
    core: &'a mut Core,
    out: &'a mut Vec<DbEvent>,
}

impl Sink for Ctx<'_> {
    fn expect(&self, flow: Flow) -> Expect {
        match flow {
            Flow::ToServer if self.core.expect_startup => Expect::Startup,
            Flow::ToClient if matches!(self.core.queue.front(), Some(Slot::Answer { .. })) => {
                Expect::OneByte
            }
            _ => Expect::Typed,
        }
    }

    fn wants(&self, flow: Flow, typ: u8) -> bool {
        match flow {
            Flow::ToServer => matches!(typ, 0 | b'Q' | b'P' | b'B' | b'E' | b'D' | b'C'),
            // CommandComplete: its tag names an unknown statement's operation.
            Flow::ToClient => matches!(typ, b'E' | b'Z' | b'C'),
        }
    }

    fn message(&mut self, flow: Flow, m: Msg<'_>) -> bool {
        match flow {
            Flow::ToServer => self.core.on_request(m, self.out),
            Flow::ToClient => self.core.on_reply(m, self.out),
        }
    }

    fn malformed(&mut self, _flow: Flow) {
        self.core.stats.malformed += 1;
    }

    fn lost(&mut self, flow: Flow, ts: u64) {
        self.core.lost(flow, ts);
    }
}

impl Core {
    fn lost(&mut self, flow: Flow, ts: u64) {
        self.lost_sync += 1;
        match flow {
            Flow::ToServer => self.lose_requests(),
            Flow::ToClient => {
                self.client_lost = Some(ClientLost {
                    pre: self.queue.len(),
                    last_ts: ts,
                })
            }
        }
    }

    /// Requests toward the server are no longer followed up to the next Sync or Query.
    fn lose_requests(&mut self) {
        if !self.discard {
            self.discard = true;
            if !matches!(self.queue.back(), Some(Slot::Lost)) {
                self.queue.push_back(Slot::Lost);
            }
        }
        self.group += 1;
        self.group_start = None;
        self.group_msgs = 0;
        self.skip = None;
    }

    /// Where a direction that lost its boundaries may continue in `data`, if anywhere.
    fn resync(
        &mut self,
        flow: Flow,
        data: &[u8],
        ts: u64,
        out: &mut Vec<DbEvent>,
    ) -> Option<usize> {
        if flow == Flow::ToServer {
            if self.expect_startup && data.len() >= 8 && wire::startup_prefix(data, true) {
                return Some(0);
            }
            if wire::chain_ok(flow, data) {
                // Typed messages: the startup phase is over (or was never seen).
                self.expect_startup = false;
                return Some(0);
            }
            return None;
        }
        let cl = self.client_lost.get_or_insert(ClientLost {
            pre: self.queue.len(),
            last_ts: ts,
        });
        let pre = cl.pre.min(self.queue.len());
        let last_ts = cl.last_ts;
        cl.last_ts = ts;
        if (self.queue.len() > pre || pre == 0) && wire::chain_ok(flow, data) {
            // New requests went out: the client had read the earlier replies whole.
            let earlier: Vec<Slot> = self.queue.drain(..pre).collect();
            for slot in earlier {
                self.end_slot(slot, last_ts, out);
            }
            return Some(0);
        }
        (0..data.len().saturating_sub(5)).find(|&i| {
            data[i] == b'Z'
                && data[i + 1..i + 5] == [0, 0, 0, 5]
                && matches!(data[i + 5], b'I' | b'T' | b'E')
                && wire::chain_ok(flow, &data[i..])
        })
    }

    fn new_op(&mut self, stmt: Option<Arc<Stmt>>, ts: u64, tid: u32, out: &mut Vec<DbEvent>) -> Op {
        let seq = self.next_seq;
        self.next_seq += 1;
        match &stmt {
            None => self.stats.statement_unknown += 1,
            Some(s) if s.truncated => self.stats.query_truncated += 1,
            Some(_) => {}
        }
        out.push(DbEvent::Started { seq, ts, tid });
        Op {
            seq,
            start_ts: ts,
            tid,
            stmt,
            err: None,
            tag_op: None,
        }
    }

    fn make_stmt(&self, sql: &[u8]) -> Arc<Stmt> {
        let sql = String::from_utf8_lossy(wire::cstr(sql).0);
        let mut scratch = SessionStats::default();
        let text = query_text(&sql, &self.opts, &mut scratch);
        Arc::new(Stmt {
            info: analyze(&sql),
            text,
            truncated: scratch.query_truncated > 0,
        })
    }

    fn finish(&mut self, op: Op, end: End, end_ts: u64, out: &mut Vec<DbEvent>) {
        let (status_code, error_type, error) = match (&end, op.err) {
            (End::PipelineAborted | End::AbortedSkipped, _) => {
                (None, Some(PIPELINE_ABORTED.to_string()), true)
            }
            (_, Some(Some(code))) => (Some(code.clone()), Some(code), true),
            (_, Some(None)) => (None, Some("_OTHER".to_string()), true),
            (_, None) => (None, None, false),
        };
        let s = op.stmt.as_deref();
        out.push(DbEvent::Done(DbOp {
            seq: op.seq,
            system: Some(DbSystem::Postgresql),
            namespace: self.namespace.clone(),
            operation: s.and_then(|s| s.info.operation.clone()).or(op.tag_op),
            collection: s.and_then(|s| s.info.collection.clone()),
            summary: s.and_then(|s| s.info.summary.clone()),
            query_text: s.and_then(|s| s.text.clone()),
            batch_size: None,
            status_code,
            error_type,
            error,
            start_ts: op.start_ts,
            end_ts: end_ts.max(op.start_ts),
            tid: op.tid,
            aborted: matches!(end, End::Aborted | End::AbortedSkipped),
        }));
    }

    /// A slot whose replies ended (or were missed): its operation is reported.
    fn end_slot(&mut self, slot: Slot, ts: u64, out: &mut Vec<DbEvent>) {
        match slot {
            Slot::Simple(op) | Slot::Execute { op, .. } => self.finish(op, End::Reply, ts, out),
            Slot::Skipped(op) => self.finish(op, End::PipelineAborted, ts, out),
            // The lost requests' replies ended: the next request starts afresh.
            Slot::Lost => self.discard = false,
            _ => {}
        }
    }

    fn push(&mut self, slot: Slot) {
        self.queue.push_back(slot);
    }

    /// Room for one more request; beyond MAX_PENDING requests are dropped as if lost.
    fn room(&mut self) -> bool {
        if self.queue.len() < MAX_PENDING {
            return true;
        }
        self.lose_requests();
        false
    }

    fn group_touch(&mut self, m: &Msg<'_>) {
        if self.group_start.is_none() {
            self.group_start = Some((m.ts, m.tid));
        }
        self.group_msgs += 1;
    }

    fn group_end(&mut self) -> (u64, Option<(u64, u32)>) {
        let g = self.group;
        self.group += 1;
        self.group_msgs = 0;
        (g, self.group_start.take())
    }

    fn push_step(&mut self) {
        let g = self.group;
        if let Some(Slot::Steps { group, left }) = self.queue.back_mut() {
            if *group == g {
                *left += 1;
                return;
            }
        }
        self.push(Slot::Steps { group: g, left: 1 });
    }

    // ---- toward the server ------------------------------------------------------------

    fn on_request(&mut self, m: Msg<'_>, out: &mut Vec<DbEvent>) -> bool {
        if m.typ == 0 {
            return self.startup_packet(&m);
        }
        if self.discard {
            match m.typ {
                // The lost stretch's Sync (its placeholder stands for it).
                b'S' => {
                    self.discard = false;
                    return true;
                }
                b'Q' | b'F' => self.discard = false,
                b'p' | b'X' => {}
                _ => return true,
            }
        }
        match m.typ {
            b'p' | b'X' => self.stats.not_operations += 1,
            b'Q' => {
                if !self.room() {
                    return true;
                }
                let stmt = self.make_stmt(m.body);
                // A simple query destroys the unnamed statement and portal.
                self.stmts.remove(b"");
                self.portals.remove(b"");
                let op = self.new_op(Some(stmt), m.ts, m.tid, out);
                if self.skip.is_some() {
                    self.push(Slot::Skipped(op));
                } else {
                    self.push(Slot::Simple(op));
                }
            }
            b'P' | b'B' | b'D' | b'C' => {
                self.group_touch(&m);
                if self.skip.is_some() || !self.room() {
                    // The server skips it (error earlier in the pipeline).
                    return true;
                }
                let (name, rest) = wire::cstr(m.body);
                match m.typ {
                    b'P' => {
                        let stmt = self.make_stmt(rest);
                        self.stmts.insert(name, stmt);
                    }
                    b'B' => {
                        let stmt = self.stmts.get(wire::cstr(rest).0).cloned();
                        self.portals.insert(name, stmt);
                    }
                    b'C' => match name.split_first() {
                        Some((b'S', n)) => self.stmts.remove(n),
                        Some((b'P', n)) => self.portals.remove(n),
                        _ => {}
                    },
                    _ => {}
                }
                self.push_step();
            }
            b'E' => {
                let (g, start) = self.group_end();
                let (ts, tid) = start.unwrap_or((m.ts, m.tid));
                let portal = wire::cstr(m.body).0;
                let stmt = self.portals.get(portal).cloned().flatten();
                if self.skip.is_none() && !self.room() {
                    return true;
                }
                let mut op = self.new_op(stmt, ts, tid, out);
                match &self.skip {
                    Some((fg, code)) if *fg == g => {
                        // Its Parse or Bind already failed.
                        op.err = Some(code.clone());
                        self.finish(op, End::Reply, m.end_ts, out);
                    }
                    Some(_) => self.push(Slot::Skipped(op)),
                    None => self.push(Slot::Execute { group: g, op }),
                }
            }
            b'S' => {
                self.stats.not_operations += self.group_msgs;
                self.group_end();
                self.skip = None;
                if self.room() {
                    self.push(Slot::Sync);
                }
            }
            b'F' => {
                self.stats.not_operations += 1;
                if self.room() {
                    self.push(Slot::FnCall);
                }
            }
            // Flush, CopyData, CopyDone, CopyFail: no reply of their own.
            _ => {}
        }
        true
    }

    fn startup_packet(&mut self, m: &Msg<'_>) -> bool {
        if m.body.len() < 4 {
            self.stats.malformed += 1;
            return false;
        }
        let code = wire::be32(m.body);
        let len = m.body.len() as u32 + 4;
        if !m.truncated && !wire::startup_ok(len, code) {
            self.stats.malformed += 1;
            return false;
        }
        self.stats.not_operations += 1;
        match code {
            wire::SSL_REQUEST => self.push(Slot::Answer { gss: false }),
            wire::GSSENC_REQUEST => self.push(Slot::Answer { gss: true }),
            wire::CANCEL_REQUEST => {}
            _ => {
                self.expect_startup = false;
                self.namespace = startup_database(&m.body[4..]);
                self.push(Slot::Startup);
            }
        }
        true
    }

    // ---- toward the client ------------------------------------------------------------

    fn on_reply(&mut self, m: Msg<'_>, out: &mut Vec<DbEvent>) -> bool {
        if let Some(Slot::Answer { gss }) = self.queue.front() {
            let gss = *gss;
            self.queue.pop_front();
            self.stats.not_operations += 1;
            return match (m.typ, gss) {
                (b'N', _) => true,
                (b'S', false) => {
                    self.tls_pending = true;
                    true
                }
                (b'G', true) => {
                    self.dead = true;
                    true
                }
                _ => {
                    self.stats.malformed += 1;
                    false
                }
            };
        }
        match m.typ {
            b'Z' => self.ready(m.end_ts, out),
            b'E' => self.error_response(&m, out),
            b'C' => self.command_done(command_tag_op(m.body), m.end_ts, out),
            b'I' | b's' => self.command_done(None, m.end_ts, out),
            b'1' | b'2' | b'3' | b'T' | b'n' => {
                if let Some(Slot::Steps { left, .. }) = self.queue.front_mut() {
                    *left -= 1;
                    if *left == 0 {
                        self.queue.pop_front();
                    }
                }
            }
            b'R' | b'S' | b'K' | b'v' | b'A' => self.stats.not_operations += 1,
            // DataRow, ParameterDescription, Notice, COPY, FunctionCallResponse.
            _ => {}
        }
        true
    }

    fn ready(&mut self, ts: u64, out: &mut Vec<DbEvent>) {
        let Some(i) = self.queue.iter().position(Slot::ends_at_ready) else {
            self.stats.not_operations += 1;
            return;
        };
        let done: Vec<Slot> = self.queue.drain(..=i).collect();
        for slot in done {
            if matches!(slot, Slot::Startup | Slot::FnCall | Slot::Lost) {
                self.stats.not_operations += 1;
            }
            self.end_slot(slot, ts, out);
        }
    }

    fn error_response(&mut self, m: &Msg<'_>, out: &mut Vec<DbEvent>) {
        let code = wire::sqlstate(m.body);
        let group = match self.queue.front_mut() {
            Some(Slot::Simple(op)) => {
                op.err.get_or_insert(code);
                return;
            }
            Some(Slot::Startup) => {
                // Authentication failed: the server closes.
                self.queue.pop_front();
                self.stats.not_operations += 1;
                return;
            }
            Some(Slot::Steps { group, .. } | Slot::Execute { group, .. }) => *group,
            // Lost requests, a function call, the Sync's commit, or nothing pending.
            _ => {
                self.stats.not_operations += 1;
                return;
            }
        };
        // Extended protocol: the group fails; the server skips everything up to Sync.
        let end = self
            .queue
            .iter()
            .position(Slot::ends_at_ready)
            .unwrap_or(self.queue.len());
        let barrier = end < self.queue.len();
        let failed: Vec<Slot> = self.queue.drain(..end).collect();
        let mut skipped = Vec::new();
        for slot in failed {
            match slot {
                Slot::Execute { group: g, mut op } if g == group => {
                    op.err = Some(code.clone());
                    self.finish(op, End::Reply, m.end_ts, out);
                }
                Slot::Execute { op, .. } | Slot::Skipped(op) => skipped.push(Slot::Skipped(op)),
                _ => {}
            }
        }
        for slot in skipped.into_iter().rev() {
            self.queue.push_front(slot);
        }
        if !barrier {
            // No Sync sent yet: what comes before it is skipped too.
            self.skip = Some((group, code));
        }
    }

    /// `tag_op`: the operation a CommandComplete names, for an Execute whose statement
    /// is unknown (prepared before the collector).
    fn command_done(&mut self, tag_op: Option<String>, ts: u64, out: &mut Vec<DbEvent>) {
        if matches!(self.queue.front(), Some(Slot::Simple(_))) {
            return;
        }
        let Some(i) = self
            .queue
            .iter()
            .position(|s| !matches!(s, Slot::Steps { .. }))
        else {
            return;
        };
        match &mut self.queue[i] {
            Slot::Execute { op, .. } => {
                if op.stmt.is_none() {
                    op.tag_op = tag_op;
                }
            }
            _ => return,
        }
        let done: Vec<Slot> = self.queue.drain(..=i).collect();
        for slot in done {
            self.end_slot(slot, ts, out);
        }
    }
}

/// The command a CommandComplete tag names: `SELECT 3` → `SELECT`, `INSERT 0 1` →
/// `INSERT`, `CREATE TABLE` as is (trailing counts dropped).
fn command_tag_op(body: &[u8]) -> Option<String> {
    let tag = std::str::from_utf8(wire::cstr(body).0).ok()?;
    let words: Vec<&str> = tag
        .split(' ')
        .filter(|w| !w.is_empty())
        .take_while(|w| !w.bytes().all(|b| b.is_ascii_digit()))
        .collect();
    let ok = !words.is_empty()
        && words.len() <= 4
        && words
            .iter()
            .all(|w| w.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'));
    ok.then(|| words.join(" "))
}

/// `database` of a StartupMessage's parameters, else `user`.
fn startup_database(mut params: &[u8]) -> Option<String> {
    let (mut user, mut database) = (None, None);
    while !params.is_empty() && params[0] != 0 {
        let (k, rest) = wire::cstr(params);
        let (v, rest) = wire::cstr(rest);
        match k {
            b"user" => user = Some(v),
            b"database" => database = Some(v),
            _ => {}
        }
        params = rest;
    }
    database
        .filter(|d| !d.is_empty())
        .or(user)
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

#[cfg(test)]
mod tests;
