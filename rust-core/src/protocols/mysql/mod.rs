//! MySQL / MariaDB client/server protocol: one [`MySqlSession`] per connection, fed both
//! directions, reporting one operation per COM_QUERY and per COM_STMT_EXECUTE (see
//! `protocols/db.rs` for the events). The same code serves the client's process and the
//! server's.
//!
//! Detection: the server speaks first. Its greeting (sequence id 0, protocol version 10,
//! a printable version ending in NUL, protocol 4.1) makes a connection MySQL's;
//! `db.system.name` is `mariadb` when the version says "MariaDB", else `mysql` (also for
//! a connection first seen mid-stream, which has no greeting to tell). Mid-stream, on
//! port 3306 only: plausible commands toward the server, or a plausible reply toward the
//! client.
//!
//! Operations and pairing (replies come in request order, each command's packets numbered
//! from 1 by their sequence id, which is checked):
//! * COM_QUERY: one operation whatever the number of statements or result sets in it
//!   (SERVER_MORE_RESULTS_EXISTS keeps it open); text sanitized and summarised by
//!   `sql.rs`. MySQL 8's query attributes ahead of the text are skipped. `LOAD DATA
//!   LOCAL INFILE`: the server's 0xFB request, the client's file packets (skipped, never
//!   copied) up to the empty one, then OK/ERR end the operation.
//! * COM_STMT_PREPARE is no operation (an SDK shows the execution, not the preparation):
//!   its text is remembered under the id its OK gives (at most [`MAX_STATEMENTS`], the
//!   oldest forgotten first); a failed preparation is counted in `not_operations`.
//! * COM_STMT_EXECUTE (and MariaDB's COM_STMT_BULK_EXECUTE) is one operation with the
//!   statement's text (placeholders `?` kept); id 0xFFFFFFFF is MariaDB's "the statement
//!   just prepared". An id never seen (prepared before the collector) still gives an
//!   operation, without text, operation or summary (the span is named by the system),
//!   counted in `statement_unknown`. COM_STMT_CLOSE forgets the id.
//! * Replies: OK; ERR gives the error number (`db.response.status_code`) and the
//!   SQLSTATE after `#` (`error.type`; without one, the span's error.type falls back to
//!   the number); MariaDB's progress reports (error 0xFFFF) are skipped; result sets
//!   (column count, definitions, EOF unless CLIENT_DEPRECATE_EOF, rows, EOF or 0xFE OK)
//!   are followed by packet, row contents skipped. The EOF between definitions and rows is
//!   recognised by its length (5 bytes, while a 0xFE OK has at least 7), so connections
//!   first seen mid-stream parse too; MariaDB's / MySQL's "metadata follows" byte after
//!   the column count is read from the packet's length.
//! * Everything else is no operation (`not_operations`, one per packet of the handshake
//!   and one per other command): the greeting, HandshakeResponse, authentication
//!   exchanges up to OK/ERR, COM_INIT_DB (its OK changes `db.namespace`), COM_PING,
//!   COM_QUIT, COM_STMT_RESET / FETCH / SEND_LONG_DATA, COM_CHANGE_USER (its schema
//!   becomes the namespace on OK), COM_STATISTICS...
//! * `db.namespace`: the HandshakeResponse's schema (CLIENT_CONNECT_WITH_DB), then
//!   COM_INIT_DB, a successful `USE name` query, the schema an OK's session state
//!   reports (CLIENT_SESSION_TRACK) or COM_CHANGE_USER. An operation keeps the namespace
//!   it was sent in.
//! * TLS: the SSL request (a 32-byte HandshakeResponse with CLIENT_SSL, sequence id 1,
//!   counted in `not_operations`) is followed by raw TLS records, skipped silently (never
//!   malformed, no lost boundary) either way until the plaintext HandshakeResponse
//!   toward the server: sequence id 2, CLIENT_SSL and protocol 4.1 set, the filler's first
//!   19 bytes zero (a prefix of it at the end of a feed is kept; a server reads the header,
//!   then the payload). From there the connection is parsed as without TLS (schema,
//!   authentication from sequence id 3, commands); `db.system.name` is the greeting's,
//!   before TLS. The plaintext comes from the TLS library probes: the socket's Conn that
//!   saw the greeting goes on with it (`Conn::continues_in_tls`), the probes dropping the
//!   ciphertext once the socket is marked. Bytes seen by a session (PyMySQL client):
//!   greeting, SSL request, ClientHello, the server's handshake records (OpenSSL reads a
//!   record's 5-byte header, then its payload), the client's Finished, then plaintext
//!   packets. A library we do not probe leaves raw records to the end: see
//!   [`MySqlSession::tls`].
//! * Compression (CLIENT_COMPRESS or zstd negotiated: after the handshake's OK) ends
//!   parsing of the connection: see [`MySqlSession::compressed`].
//!
//! Framing and lost boundaries (`wire.rs`): packets may be split anywhere; a payload of
//! 0xFFFFFF bytes continues in the next packet. Uncaptured bytes (`gap`) inside a packet
//! are skipped by its length (a row larger than the capture); a gap across a boundary
//! loses it. A packet out of sequence, or one that makes no sense where it comes, is
//! malformed and loses the direction's boundaries. A direction that lost them skips
//! bytes until:
//! * toward the server: a feed that starts with plausible commands (a client writes a
//!   command whole). Replies to what was lost are skipped (toward the client, boundaries
//!   are found again as below).
//! * toward the client: a feed that starts with a plausible reply after a new command
//!   was sent (the client had read the earlier replies whole: their operations end,
//!   without status, at the last skipped feed), or a feed without gap ending with a
//!   result set's terminator (EOF, or OK with 0xFE header of 7 bytes) while the oldest
//!   pending operation is in a result set (a result set larger than the capture).
//!
//! Never panics, never buffers more than 64 KiB per direction, keeps at most
//! [`MAX_PENDING`] commands waiting for replies.

mod wire;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::db::{DbEvent, DbOp, DbSession, DbSystem, Flow, QueryTextOptions, SessionStats};
use super::sql::{analyze, query_text, SqlInfo};
use wire::{Chain, Framer, Pkt, Sink};

pub use super::db::Sniff;

/// Prepared statements remembered per connection.
pub const MAX_STATEMENTS: usize = 1024;
/// Commands waiting for their replies.
pub const MAX_PENDING: usize = 1024;
/// Longest server version string accepted in a greeting.
const MAX_VERSION: usize = 64;

/// Recognises a server greeting toward the client: a packet with sequence id 0,
/// protocol version 10, a printable version starting with a digit and ending in NUL,
/// connection id, 8 bytes of scramble, a zero filler and capabilities with protocol 4.1.
/// The client never speaks first, so `ToServer` is `No`.
pub fn sniff(flow: Flow, first: &[u8]) -> Sniff {
    if flow == Flow::ToServer {
        return Sniff::No;
    }
    if first.len() >= 3 && !(20..=1024).contains(&wire::le24(first)) {
        return Sniff::No;
    }
    match first.get(3) {
        None => return Sniff::NeedMore,
        Some(0) => {}
        Some(_) => return Sniff::No,
    }
    match first.get(4) {
        None => return Sniff::NeedMore,
        Some(10) => {}
        Some(_) => return Sniff::No,
    }
    let v = &first[5..];
    match v.first() {
        None => return Sniff::NeedMore,
        Some(c) if c.is_ascii_digit() => {}
        Some(_) => return Sniff::No,
    }
    let Some(nul) = v.iter().take(MAX_VERSION + 1).position(|&c| c == 0) else {
        if v.iter().take(MAX_VERSION).all(|c| (0x20..0x7f).contains(c)) && v.len() <= MAX_VERSION {
            return Sniff::NeedMore;
        }
        return Sniff::No;
    };
    if !v[..nul].iter().all(|c| (0x20..0x7f).contains(c)) {
        return Sniff::No;
    }
    // conn id 4, scramble 8, filler 1, capabilities (low 2 bytes).
    let rest = &v[nul + 1..];
    match (rest.get(12), rest.get(13..15)) {
        (Some(0), Some(caps)) if u64::from(wire::le16(caps)) & wire::CLIENT_PROTOCOL_41 != 0 => {
            Sniff::Yes
        }
        (Some(0), None) | (None, None) => Sniff::NeedMore,
        _ => Sniff::No,
    }
}

/// Whether `data` (bytes of one direction of a connection first seen mid-stream) starts
/// with plausible packets: commands toward the server, a reply toward the client.
pub fn plausible_midstream(flow: Flow, data: &[u8]) -> bool {
    match flow {
        Flow::ToServer => wire::chain_ok(Chain::Commands, data),
        Flow::ToClient => wire::chain_ok(Chain::Reply { first_seq: None }, data),
    }
}

/// What a statement's text gives every operation executing it.
#[derive(Debug)]
struct Stmt {
    info: SqlInfo,
    text: Option<String>,
    /// `text` was cut to `max_len` (counted per operation).
    truncated: bool,
    /// The schema of a `USE name` statement.
    use_db: Option<String>,
}

#[derive(Debug)]
struct Op {
    seq: u64,
    start_ts: u64,
    tid: u32,
    stmt: Option<Arc<Stmt>>,
    namespace: Option<String>,
    /// An ERR arrived: its error number and SQLSTATE.
    err: Option<(Option<u16>, Option<String>)>,
}

/// What a reply's next packet is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum R {
    /// The start of a (further) result: OK, ERR, EOF, LOCAL INFILE or column count.
    First,
    /// Column (or parameter) definitions left, then `then`.
    Defs { left: u64, then: After },
    /// An EOF may come (without CLIENT_DEPRECATE_EOF), then `then`.
    OptEof { then: After },
    /// Rows up to EOF or 0xFE OK (or ERR).
    Rows,
    /// LOCAL INFILE: the client sends the file, up to an empty packet.
    Infile,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    Rows,
    /// A prepared statement's column definitions follow its parameters'.
    Cols(u64),
    Done,
}

#[derive(Debug)]
enum Kind {
    Query(Op),
    Execute(Op),
    Prepare(Arc<Stmt>),
    InitDb(String),
    /// Handshake or COM_CHANGE_USER: authentication packets up to OK or ERR; the schema
    /// asked for.
    Auth(Option<String>),
    /// COM_STATISTICS: one packet, whatever it holds.
    One,
    /// A reply parsed as any result, belonging to no operation (ping, reset...; or a
    /// command lost with the boundaries toward the server).
    Other,
}

#[derive(Debug)]
struct Slot {
    kind: Kind,
    r: R,
    /// The sequence id the exchange's next packet (either way) carries.
    seq: u8,
}

#[derive(Debug, Clone, Copy)]
struct ClientLost {
    /// Commands queued when the boundaries were lost.
    pre: usize,
    /// ts of the last feed skipped since.
    last_ts: u64,
}

/// One MySQL / MariaDB connection's parser.
#[derive(Debug)]
pub struct MySqlSession {
    dirs: [Framer; 2],
    core: Core,
}

#[derive(Debug)]
struct Core {
    opts: QueryTextOptions,
    stats: SessionStats,
    lost_sync: u64,
    system: DbSystem,
    namespace: Option<String>,
    seen: [bool; 2],
    /// The greeting was seen; the HandshakeResponse comes next.
    greeted: bool,
    server_caps: Option<u64>,
    /// The capabilities both ends have (the client's, when the greeting was not seen).
    caps: Option<u64>,
    tls: bool,
    /// The SSL request was sent: raw TLS records are skipped until the plaintext
    /// HandshakeResponse (sequence id 2) arrives toward the server.
    tls_pending: bool,
    /// Bytes toward the server, while `tls_pending`, that may start the plaintext
    /// HandshakeResponse (at most 31).
    tls_head: Vec<u8>,
    /// The sequence id of the HandshakeResponse expected after the greeting (2 after
    /// the SSL request).
    hs_seq: u8,
    compressed: bool,
    /// Nothing more can be read (compression).
    dead: bool,
    next_seq: u64,
    queue: VecDeque<Slot>,
    stmts: HashMap<u32, (u64, Arc<Stmt>)>,
    tick: u64,
    last_prepared: Option<Arc<Stmt>>,
    client_lost: Option<ClientLost>,
}

fn idx(flow: Flow) -> usize {
    match flow {
        Flow::ToServer => 0,
        Flow::ToClient => 1,
    }
}

impl MySqlSession {
    pub fn new(opts: QueryTextOptions) -> Self {
        MySqlSession {
            dirs: [Framer::default(), Framer::default()],
            core: Core {
                opts,
                stats: SessionStats::default(),
                lost_sync: 0,
                system: DbSystem::Mysql,
                namespace: None,
                seen: [false; 2],
                greeted: false,
                server_caps: None,
                caps: None,
                tls: false,
                tls_pending: false,
                tls_head: Vec::new(),
                hs_seq: 1,
                compressed: false,
                dead: false,
                next_seq: 0,
                queue: VecDeque::new(),
                stmts: HashMap::new(),
                tick: 0,
                last_prepared: None,
                client_lost: None,
            },
        }
    }

    /// How many times bytes were skipped for want of a packet boundary. Where it stays 0,
    /// the events do not depend on how the bytes were cut into feeds.
    pub fn lost_sync(&self) -> u64 {
        self.core.lost_sync
    }

    /// The current schema.
    pub fn namespace(&self) -> Option<&str> {
        self.core.namespace.as_deref()
    }

    /// `mariadb` or `mysql`, from the greeting.
    pub fn system(&self) -> DbSystem {
        self.core.system
    }

    /// The client asked for TLS (SSL request): what follows is parsed from the plaintext
    /// the TLS library probes give, if they do; raw TLS records are skipped.
    pub fn tls(&self) -> bool {
        self.core.tls
    }

    /// Compression was negotiated: the rest is not parsed.
    pub fn compressed(&self) -> bool {
        self.core.compressed
    }
}

impl DbSession for MySqlSession {
    fn feed(
        &mut self,
        flow: Flow,
        data: &[u8],
        gap: u64,
        ts: u64,
        tid: u32,
        out: &mut Vec<DbEvent>,
    ) {
        let i = idx(flow);
        if self.core.dead || (data.is_empty() && gap == 0) {
            return;
        }
        let joined: Vec<u8>;
        let mut data = data;
        if self.core.tls_pending {
            // Raw TLS records (either way) until the plaintext HandshakeResponse: skipped
            // silently, the framers stay at the boundary after the SSL request.
            let head = std::mem::take(&mut self.core.tls_head);
            if flow == Flow::ToClient || gap > 0 {
                return;
            }
            // It starts a feed, or continues the bytes kept (a server reads the header,
            // then the payload).
            let buf = if head.is_empty() {
                data
            } else {
                joined = [head.as_slice(), data].concat();
                &joined
            };
            let found = (0..=head.len())
                .map(|k| (k, tls_handshake_response(&buf[k..])))
                .find(|(_, v)| *v != Sniff::No);
            match found {
                None => return,
                Some((k, Sniff::NeedMore)) => {
                    self.core.tls_head = buf[k..].to_vec();
                    return;
                }
                Some((k, _)) => data = &buf[k..],
            }
            self.core.tls_pending = false;
            self.core.greeted = true;
            self.core.hs_seq = 2;
            self.dirs[0].recover();
            self.dirs[1].recover();
        }
        if !self.core.seen[i] {
            self.core.seen[i] = true;
            self.first_bytes(flow, data, ts);
        }
        if self.dirs[i].lost {
            match self.resync(flow, data, gap, ts, out) {
                Some(off) => {
                    self.dirs[i].recover();
                    data = &data[off..];
                }
                None => return,
            }
        }
        let mut ctx = Ctx {
            core: &mut self.core,
            out,
        };
        self.dirs[i].feed(flow, &mut ctx, data, gap, ts, tid);
    }

    fn close(&mut self, ts: u64, out: &mut Vec<DbEvent>) {
        while let Some(slot) = self.core.queue.pop_front() {
            if let Kind::Query(op) | Kind::Execute(op) = slot.kind {
                self.core.finish(op, true, ts, out);
            }
        }
    }

    fn stats(&self) -> SessionStats {
        self.core.stats
    }
}

impl MySqlSession {
    /// A direction's first bytes: a greeting (or the HandshakeResponse after it) starts
    /// the connection; otherwise it was first seen mid-stream and the bytes must start at
    /// a boundary.
    fn first_bytes(&mut self, flow: Flow, data: &[u8], ts: u64) {
        let core = &mut self.core;
        let in_sync = match flow {
            Flow::ToClient => {
                sniff(flow, data) != Sniff::No
                    || core.queue.front().is_some_and(|f| {
                        data.len() < 5
                            || wire::chain_ok(
                                Chain::Reply {
                                    first_seq: Some(f.seq),
                                },
                                data,
                            )
                    })
            }
            Flow::ToServer => core.greeted || wire::chain_ok(Chain::Commands, data),
        };
        if in_sync {
            return;
        }
        if flow == Flow::ToServer && data.len() < 5 {
            // Too short to tell: taken as a boundary (a command's first bytes).
            return;
        }
        self.dirs[idx(flow)].drop_sync();
        core.lost(flow, ts);
    }

    /// Where a direction that lost its boundaries may continue in `data`, if anywhere.
    fn resync(
        &mut self,
        flow: Flow,
        data: &[u8],
        gap: u64,
        ts: u64,
        out: &mut Vec<DbEvent>,
    ) -> Option<usize> {
        let core = &mut self.core;
        if flow == Flow::ToServer {
            if !wire::chain_ok(Chain::Commands, data) {
                return None;
            }
            // A new command: the client read the replies to what was lost whole.
            let before = core.queue.len();
            core.queue.retain(|s| !matches!(s.kind, Kind::Other));
            core.greeted = false;
            let client = &mut self.dirs[idx(Flow::ToClient)];
            if (core.queue.len() != before || !client.at_boundary()) && !client.lost {
                client.drop_sync();
                core.client_lost = Some(ClientLost {
                    pre: core.queue.len(),
                    last_ts: ts,
                });
            }
            return Some(0);
        }
        let cl = *core.client_lost.get_or_insert(ClientLost {
            pre: core.queue.len(),
            last_ts: ts,
        });
        let pre = cl.pre.min(core.queue.len());
        if core.queue.len() > pre {
            let first_seq = Some(core.queue[pre].seq);
            if wire::chain_ok(Chain::Reply { first_seq }, data) {
                // New commands went out: the client had read the earlier replies.
                let earlier: Vec<Slot> = core.queue.drain(..pre).collect();
                for slot in earlier {
                    if let Kind::Query(op) | Kind::Execute(op) = slot.kind {
                        core.finish(op, false, cl.last_ts, out);
                    }
                }
                core.client_lost = None;
                return Some(0);
            }
        }
        if pre > 0 && gap == 0 {
            if let Some(front) = core.queue.front_mut() {
                let in_rows = matches!(front.r, R::Rows | R::OptEof { then: After::Rows })
                    || matches!(
                        front.r,
                        R::Defs {
                            then: After::Rows,
                            ..
                        }
                    );
                if in_rows {
                    if let Some((seq, status)) = tail_terminator(data) {
                        if status & wire::SERVER_MORE_RESULTS_EXISTS != 0 {
                            front.r = R::First;
                            front.seq = seq.wrapping_add(1);
                        } else {
                            core.end_front(ts, out);
                        }
                        core.client_lost = None;
                        return Some(data.len());
                    }
                }
            }
        }
        if let Some(cl) = core.client_lost.as_mut() {
            cl.last_ts = ts;
        }
        None
    }
}

/// Whether `b` (bytes toward the server after an SSL request) starts the plaintext
/// HandshakeResponse rather than a raw TLS record: sequence id 2, a length of at least 32
/// bytes and below 64 KiB, protocol 4.1 and CLIENT_SSL in the capabilities, and the
/// filler's first 19 bytes zero (MariaDB uses the last 4), so its first 32 bytes say
/// `Yes`, a prefix of them `NeedMore`. A TLS record's header read as a packet's has a
/// length of at least 0x010014 (its version's major byte, 3, is the length's high byte);
/// a record's encrypted payload passes with a chance of 2^-170.
fn tls_handshake_response(b: &[u8]) -> Sniff {
    let n = b.len();
    if n >= 3 && !(32..0x10000).contains(&wire::le24(b)) {
        return Sniff::No;
    }
    if b.get(3).is_some_and(|&s| s != 2) {
        return Sniff::No;
    }
    let want = wire::CLIENT_PROTOCOL_41 | wire::CLIENT_SSL;
    if b.get(4..8)
        .is_some_and(|c| u64::from(wire::le32(c)) & want != want)
    {
        return Sniff::No;
    }
    if b.get(13..n.min(32))
        .is_some_and(|f| f.iter().any(|&c| c != 0))
    {
        return Sniff::No;
    }
    if n < 32 {
        Sniff::NeedMore
    } else {
        Sniff::Yes
    }
}

/// A result set's terminator at the very end of `data`: an EOF (9 bytes with its
/// header) or a 0xFE OK without affected rows, insert id or info (11 bytes); its
/// sequence id and status flags.
fn tail_terminator(data: &[u8]) -> Option<(u8, u16)> {
    let n = data.len();
    if n >= 9 {
        let t = &data[n - 9..];
        if t[..3] == [5, 0, 0] && t[4] == 0xfe {
            return Some((t[3], wire::le16(&t[7..9])));
        }
    }
    if n >= 11 {
        let t = &data[n - 11..];
        if t[..3] == [7, 0, 0] && t[4..7] == [0xfe, 0, 0] {
            return Some((t[3], wire::le16(&t[7..9])));
        }
    }
    None
}

struct Ctx<'a> {
    core: &'a mut Core,
    out: &'a mut Vec<DbEvent>,
}

impl Sink for Ctx<'_> {
    fn packet(&mut self, flow: Flow, p: Pkt<'_>) -> bool {
        if self.core.dead || self.core.tls_pending {
            // Compressed, or raw TLS after the SSL request in the same feed.
            return true;
        }
        match flow {
            Flow::ToServer => self.core.on_request(&p, self.out),
            Flow::ToClient => self.core.on_reply(&p, self.out),
        }
    }

    fn lost(&mut self, flow: Flow, ts: u64) {
        self.core.lost(flow, ts);
    }
}

/// The text of a COM_QUERY payload (after the command byte): MySQL 8's query
/// attributes (CLIENT_QUERY_ATTRIBUTES) come first when negotiated; a text starting
/// with a control byte is taken to have them when the capabilities are unknown.
fn query_of(body: &[u8], attrs: Option<bool>) -> Option<&[u8]> {
    let attrs = attrs.unwrap_or_else(|| body.first().is_some_and(|&c| c < 0x09));
    if !attrs {
        return Some(body);
    }
    let (count, k) = wire::lenenc(body)?;
    let (_sets, k2) = wire::lenenc(body.get(k..)?)?;
    let mut rest = body.get(k + k2..)?;
    if count == 0 {
        return Some(rest);
    }
    let count = usize::try_from(count).ok().filter(|&c| c <= 4096)?;
    let nulls = rest.get(..count.div_ceil(8))?;
    rest = &rest[count.div_ceil(8)..];
    let (&bound, r) = rest.split_first()?;
    rest = r;
    if bound != 1 {
        return None;
    }
    let mut types = Vec::with_capacity(count);
    for _ in 0..count {
        let t = *rest.first()?;
        rest = rest.get(2..)?;
        let (_, r) = wire::lenenc_str(rest)?;
        rest = r;
        types.push(t);
    }
    for (i, t) in types.into_iter().enumerate() {
        if nulls[i / 8] & (1 << (i % 8)) != 0 {
            continue;
        }
        let n = match t {
            0x06 => 0,
            0x01 => 1,
            0x02 | 0x0d => 2,
            0x03 | 0x04 | 0x09 => 4,
            0x05 | 0x08 => 8,
            0x07 | 0x0a | 0x0b | 0x0c => 1 + usize::from(*rest.first()?),
            _ => {
                let (_, r) = wire::lenenc_str(rest)?;
                rest = r;
                continue;
            }
        };
        rest = rest.get(n..)?;
    }
    Some(rest)
}

/// The schema of a `USE name` statement (bare or backquoted name, optional `;`).
fn use_db(sql: &str) -> Option<String> {
    let t = sql.trim().trim_end_matches(';').trim_end();
    let head = t.get(..3)?;
    if !head.eq_ignore_ascii_case("use") {
        return None;
    }
    let rest = &t[3..];
    if !rest.starts_with(|c: char| c.is_whitespace()) {
        return None;
    }
    let name = rest.trim_start();
    if let Some(q) = name.strip_prefix('`') {
        let inner = q.strip_suffix('`')?;
        let unq = inner.replace("``", "`");
        return (!unq.is_empty() && !inner.replace("``", "").contains('`')).then_some(unq);
    }
    (!name.is_empty()
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '$'))
    .then(|| name.to_string())
}

impl Core {
    fn lost(&mut self, flow: Flow, ts: u64) {
        self.lost_sync += 1;
        match flow {
            Flow::ToServer => {
                // A command may have been lost: its reply is parsed as any result's.
                if !matches!(
                    self.queue.back(),
                    Some(Slot {
                        kind: Kind::Other,
                        ..
                    })
                ) && self.queue.len() < MAX_PENDING
                {
                    self.queue.push_back(Slot {
                        kind: Kind::Other,
                        r: R::First,
                        seq: 1,
                    });
                }
            }
            Flow::ToClient => {
                self.client_lost = Some(ClientLost {
                    pre: self.queue.len(),
                    last_ts: ts,
                })
            }
        }
    }

    fn deprecate_eof(&self) -> bool {
        self.caps
            .is_some_and(|c| c & wire::CLIENT_DEPRECATE_EOF != 0)
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
            namespace: self.namespace.clone(),
            err: None,
        }
    }

    fn make_stmt(&self, sql: &[u8]) -> Arc<Stmt> {
        let sql = String::from_utf8_lossy(sql);
        let mut scratch = SessionStats::default();
        let text = query_text(&sql, &self.opts, &mut scratch);
        Arc::new(Stmt {
            info: analyze(&sql),
            text,
            truncated: scratch.query_truncated > 0,
            use_db: use_db(&sql),
        })
    }

    fn finish(&mut self, op: Op, aborted: bool, end_ts: u64, out: &mut Vec<DbEvent>) {
        let (status_code, error_type, error) = match op.err {
            Some((code, state)) => (code.map(|c| c.to_string()), state, true),
            None => (None, None, false),
        };
        let s = op.stmt.as_deref();
        out.push(DbEvent::Done(DbOp {
            seq: op.seq,
            system: Some(self.system),
            namespace: op.namespace,
            operation: s.and_then(|s| s.info.operation.clone()),
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
            aborted,
        }));
    }

    fn push(&mut self, kind: Kind, r: R) {
        self.queue.push_back(Slot { kind, r, seq: 1 });
    }

    fn remember(&mut self, id: u32, stmt: Arc<Stmt>) {
        if !self.stmts.contains_key(&id) && self.stmts.len() >= MAX_STATEMENTS {
            if let Some(oldest) = self
                .stmts
                .iter()
                .min_by_key(|(_, (t, _))| *t)
                .map(|(k, _)| *k)
            {
                self.stmts.remove(&oldest);
            }
        }
        self.tick += 1;
        self.stmts.insert(id, (self.tick, stmt));
    }

    // ---- toward the server ------------------------------------------------------------

    fn on_request(&mut self, p: &Pkt<'_>, out: &mut Vec<DbEvent>) -> bool {
        if self.greeted {
            if p.seq != self.hs_seq || p.cont {
                self.stats.malformed += 1;
                return false;
            }
            self.greeted = false;
            return self.handshake_response(p);
        }
        let exchange = match self.queue.front() {
            Some(s) if s.r == R::Infile => true,
            Some(Slot {
                kind: Kind::Auth(_),
                ..
            }) => p.seq != 0,
            _ => false,
        };
        if exchange {
            let slot = self.queue.front_mut().expect("front checked");
            if slot.seq != p.seq {
                self.stats.malformed += 1;
                return false;
            }
            slot.seq = slot.seq.wrapping_add(1);
            if slot.r == R::Infile {
                if p.len == 0 && !p.cont {
                    slot.r = R::First;
                }
            } else if !p.cont {
                self.stats.not_operations += 1;
            }
            return true;
        }
        if p.cont {
            // The rest of a command longer than 16 MiB.
            return true;
        }
        if p.seq != 0 || p.body.is_empty() {
            self.stats.malformed += 1;
            return false;
        }
        self.command(p, out)
    }

    fn handshake_response(&mut self, p: &Pkt<'_>) -> bool {
        let b = p.body;
        if b.len() < 4 {
            self.stats.malformed += 1;
            return false;
        }
        self.stats.not_operations += 1;
        let client = u64::from(wire::le32(b));
        if client & wire::CLIENT_PROTOCOL_41 == 0 {
            // Protocol 3.20: no namespace read.
            self.caps = Some(client & self.server_caps.unwrap_or(client));
            self.push(Kind::Auth(None), R::First);
            self.queue.back_mut().expect("pushed").seq = 2;
            return true;
        }
        let caps = client & self.server_caps.unwrap_or(client);
        self.caps = Some(caps);
        if p.seq == 1 && p.len == 32 && client & wire::CLIENT_SSL != 0 {
            self.tls = true;
            self.tls_pending = true;
            return true;
        }
        let mut db = None;
        if client & wire::CLIENT_CONNECT_WITH_DB != 0 {
            db = (|| {
                let rest = b.get(32..)?;
                let (_user, rest) = wire::cstr(rest);
                let rest = if client & wire::CLIENT_PLUGIN_AUTH_LENENC_DATA != 0 {
                    wire::lenenc_str(rest)?.1
                } else if client & wire::CLIENT_SECURE_CONNECTION != 0 {
                    let n = usize::from(*rest.first()?);
                    rest.get(1 + n..)?
                } else {
                    wire::cstr(rest).1
                };
                let (db, _) = wire::cstr(rest);
                (!db.is_empty()).then(|| String::from_utf8_lossy(db).into_owned())
            })();
        }
        self.push(Kind::Auth(db), R::First);
        self.queue.back_mut().expect("pushed").seq = p.seq.wrapping_add(1);
        true
    }

    fn command(&mut self, p: &Pkt<'_>, out: &mut Vec<DbEvent>) -> bool {
        if self.queue.len() >= MAX_PENDING {
            self.stats.malformed += 1;
            return false;
        }
        let body = &p.body[1..];
        let id = || body.get(..4).map(wire::le32);
        match p.body[0] {
            wire::COM_QUERY => {
                let attrs = self.caps.map(|c| c & wire::CLIENT_QUERY_ATTRIBUTES != 0);
                let stmt = query_of(body, attrs).map(|sql| self.make_stmt(sql));
                let op = self.new_op(stmt, p.ts, p.tid, out);
                self.push(Kind::Query(op), R::First);
            }
            wire::COM_STMT_EXECUTE | wire::COM_STMT_BULK_EXECUTE => {
                let Some(id) = id() else {
                    self.stats.malformed += 1;
                    return false;
                };
                let stmt = if id == u32::MAX {
                    self.last_prepared.clone()
                } else {
                    self.stmts.get(&id).map(|(_, s)| s.clone())
                };
                let op = self.new_op(stmt, p.ts, p.tid, out);
                self.push(Kind::Execute(op), R::First);
            }
            wire::COM_STMT_PREPARE => {
                self.stats.not_operations += 1;
                let stmt = self.make_stmt(body);
                self.last_prepared = Some(stmt.clone());
                self.push(Kind::Prepare(stmt), R::First);
            }
            wire::COM_INIT_DB => {
                self.stats.not_operations += 1;
                let name = String::from_utf8_lossy(body).into_owned();
                self.push(Kind::InitDb(name), R::First);
            }
            wire::COM_STMT_CLOSE => {
                self.stats.not_operations += 1;
                if let Some(id) = id() {
                    self.stmts.remove(&id);
                }
            }
            wire::COM_QUIT | wire::COM_STMT_SEND_LONG_DATA => self.stats.not_operations += 1,
            wire::COM_STATISTICS => {
                self.stats.not_operations += 1;
                self.push(Kind::One, R::First);
            }
            // Rows then EOF; column definitions then EOF.
            wire::COM_STMT_FETCH | wire::COM_FIELD_LIST => {
                self.stats.not_operations += 1;
                self.push(Kind::Other, R::Rows);
            }
            wire::COM_CHANGE_USER => {
                self.stats.not_operations += 1;
                let (_user, rest) = wire::cstr(body);
                let secure = self
                    .caps
                    .is_none_or(|c| c & wire::CLIENT_SECURE_CONNECTION != 0);
                let rest = if secure {
                    let n = rest.first().map_or(0, |&n| usize::from(n));
                    rest.get(1 + n..).unwrap_or_default()
                } else {
                    wire::cstr(rest).1
                };
                let db = wire::cstr(rest).0;
                let db = (!db.is_empty()).then(|| String::from_utf8_lossy(db).into_owned());
                self.push(Kind::Auth(db), R::First);
            }
            c if wire::known_command(c) => {
                self.stats.not_operations += 1;
                self.push(Kind::Other, R::First);
            }
            _ => {
                self.stats.malformed += 1;
                return false;
            }
        }
        true
    }

    // ---- toward the client ------------------------------------------------------------

    fn on_reply(&mut self, p: &Pkt<'_>, out: &mut Vec<DbEvent>) -> bool {
        // A prepared statement's reply may end with an EOF or not (unknown capabilities):
        // a packet out of its sequence starts the next command's reply.
        while let Some(Slot {
            r: R::OptEof {
                then: After::Done | After::Cols(0),
            },
            seq,
            ..
        }) = self.queue.front()
        {
            if *seq == p.seq && wire::is_eof(p.body, p.len) {
                break;
            }
            self.queue.pop_front();
        }
        let Some(slot) = self.queue.front_mut() else {
            if p.seq == 0 && !p.cont && p.body.first() == Some(&10) && self.server_caps.is_none() {
                return self.greeting(p);
            }
            if p.seq == 0 && p.body.first() == Some(&0xff) && self.server_caps.is_none() {
                // The server refuses the connection (too many connections...).
                self.stats.not_operations += 1;
                return true;
            }
            // A reply to nothing seen: skipped until a command goes out.
            return false;
        };
        if slot.seq != p.seq || slot.r == R::Infile {
            self.stats.malformed += 1;
            return false;
        }
        slot.seq = slot.seq.wrapping_add(1);
        if p.cont {
            return true;
        }
        if p.body.is_empty() {
            self.stats.malformed += 1;
            return false;
        }
        match slot.kind {
            Kind::One => {
                self.end_front(p.end_ts, out);
                return true;
            }
            Kind::Auth(_) => return self.auth_reply(p),
            _ => {}
        }
        // A packet that a part of a reply does not take goes to the next part (an
        // optional EOF absent): at most a few rounds.
        loop {
            let deprecate = self.deprecate_eof();
            let Some(slot) = self.queue.front_mut() else {
                self.stats.malformed += 1;
                return false;
            };
            let b = p.body;
            let after = |then: After| -> Option<R> {
                match then {
                    After::Rows => Some(R::Rows),
                    After::Cols(0) | After::Done => None,
                    After::Cols(n) => Some(R::Defs {
                        left: n,
                        then: After::Done,
                    }),
                }
            };
            match slot.r {
                R::First => return self.first_packet(p, out),
                R::Defs { left, then } => {
                    if !p.truncated && !b.starts_with(b"\x03def") && b.len() >= 4 {
                        self.stats.malformed += 1;
                        return false;
                    }
                    if left > 1 {
                        slot.r = R::Defs {
                            left: left - 1,
                            then,
                        };
                    } else if !deprecate {
                        slot.r = R::OptEof { then };
                    } else {
                        match after(then) {
                            Some(r) => slot.r = r,
                            None => self.end_front(p.end_ts, out),
                        }
                    }
                    return true;
                }
                R::OptEof { then } => {
                    let eof = wire::is_eof(b, p.len);
                    let cursor = eof
                        && matches!(slot.kind, Kind::Execute(_))
                        && wire::status_flags(b)
                            .is_some_and(|s| s & wire::SERVER_STATUS_CURSOR_EXISTS != 0);
                    match after(then) {
                        Some(r) if !cursor => slot.r = r,
                        _ => {
                            if eof {
                                self.end_front(p.end_ts, out);
                                return true;
                            }
                            // This packet is the next command's.
                            let seq = slot.seq.wrapping_sub(1);
                            self.end_front(p.end_ts, out);
                            match self.queue.front_mut() {
                                Some(next) if next.seq == seq => {
                                    next.seq = seq.wrapping_add(1);
                                    if matches!(next.kind, Kind::Auth(_) | Kind::One) {
                                        self.stats.malformed += 1;
                                        return false;
                                    }
                                }
                                _ => {
                                    self.stats.malformed += 1;
                                    return false;
                                }
                            }
                            continue;
                        }
                    }
                    if eof {
                        return true;
                    }
                }
                R::Rows => {
                    if wire::is_terminator(b, p.len) {
                        let more = wire::status_flags(b)
                            .is_some_and(|s| s & wire::SERVER_MORE_RESULTS_EXISTS != 0);
                        if more {
                            slot.r = R::First;
                        }
                        self.schema_change(b);
                        if !more {
                            self.end_front(p.end_ts, out);
                        }
                    } else if b[0] == 0xff {
                        return self.err_packet(b, p.end_ts, out);
                    }
                    return true;
                }
                R::Infile => {
                    self.stats.malformed += 1;
                    return false;
                }
            }
        }
    }

    fn greeting(&mut self, p: &Pkt<'_>) -> bool {
        let b = p.body;
        let (version, rest) = wire::cstr(&b[1..]);
        let caps = match (rest.get(13..15), rest.get(18..20)) {
            (Some(lo), Some(hi)) => u64::from(wire::le16(lo)) | u64::from(wire::le16(hi)) << 16,
            (Some(lo), None) => u64::from(wire::le16(lo)),
            _ => {
                self.stats.malformed += 1;
                return false;
            }
        };
        if version.windows(7).any(|w| w == b"MariaDB") {
            self.system = DbSystem::Mariadb;
        }
        self.server_caps = Some(caps);
        self.greeted = true;
        self.stats.not_operations += 1;
        true
    }

    fn auth_reply(&mut self, p: &Pkt<'_>) -> bool {
        self.stats.not_operations += 1;
        match p.body[0] {
            0x00 => {
                let Some(Slot {
                    kind: Kind::Auth(db),
                    ..
                }) = self.queue.pop_front()
                else {
                    return true;
                };
                if db.is_some() {
                    self.namespace = db;
                }
                self.schema_change(p.body);
                let compress = wire::CLIENT_COMPRESS | wire::CLIENT_ZSTD_COMPRESSION;
                if self.caps.is_some_and(|c| c & compress != 0) {
                    self.compressed = true;
                    self.dead = true;
                }
                true
            }
            0xff => {
                // Refused: the server closes.
                self.queue.pop_front();
                true
            }
            // Auth switch request, more data, fast auth results...
            _ => true,
        }
    }

    /// An OK's session state may name a new default schema.
    fn schema_change(&mut self, b: &[u8]) {
        if self
            .caps
            .is_some_and(|c| c & wire::CLIENT_SESSION_TRACK != 0)
        {
            if let Some(db) = wire::ok_schema(b) {
                self.namespace = (!db.is_empty()).then_some(db);
            }
        }
    }

    fn first_packet(&mut self, p: &Pkt<'_>, out: &mut Vec<DbEvent>) -> bool {
        let b = p.body;
        let Some(slot) = self.queue.front_mut() else {
            return false;
        };
        match b[0] {
            0x00 if matches!(slot.kind, Kind::Prepare(_)) => {
                if b.len() < 9 {
                    self.stats.malformed += 1;
                    return false;
                }
                let id = wire::le32(&b[1..5]);
                let cols = u64::from(wire::le16(&b[5..7]));
                let params = u64::from(wire::le16(&b[7..9]));
                let Kind::Prepare(stmt) = &slot.kind else {
                    return false;
                };
                let stmt = stmt.clone();
                slot.r = if params > 0 {
                    R::Defs {
                        left: params,
                        then: After::Cols(cols),
                    }
                } else if cols > 0 {
                    R::Defs {
                        left: cols,
                        then: After::Done,
                    }
                } else {
                    R::First
                };
                let done = slot.r == R::First;
                self.remember(id, stmt);
                if done {
                    self.end_front(p.end_ts, out);
                }
                true
            }
            0x00 => {
                let more = wire::status_flags(b)
                    .is_some_and(|s| s & wire::SERVER_MORE_RESULTS_EXISTS != 0);
                match &slot.kind {
                    Kind::InitDb(name) => self.namespace = Some(name.clone()),
                    Kind::Query(Op {
                        stmt: Some(s),
                        err: None,
                        ..
                    }) if s.use_db.is_some() => self.namespace = s.use_db.clone(),
                    _ => {}
                }
                self.schema_change(b);
                if !more {
                    self.end_front(p.end_ts, out);
                }
                true
            }
            0xff => self.err_packet(b, p.end_ts, out),
            0xfe if p.len < 9 => {
                let more = wire::status_flags(b)
                    .is_some_and(|s| s & wire::SERVER_MORE_RESULTS_EXISTS != 0);
                if !more {
                    self.end_front(p.end_ts, out);
                }
                true
            }
            0xfb if matches!(slot.kind, Kind::Query(_)) => {
                slot.r = R::Infile;
                true
            }
            _ if matches!(slot.kind, Kind::Prepare(_) | Kind::InitDb(_)) => {
                self.stats.malformed += 1;
                false
            }
            _ => {
                let Some((n, k)) = wire::lenenc(b) else {
                    self.stats.malformed += 1;
                    return false;
                };
                let exact = p.truncated || b.len() == k || b.len() == k + 1;
                if !(1..=wire::MAX_COLUMNS).contains(&n) || !exact {
                    self.stats.malformed += 1;
                    return false;
                }
                // "Metadata follows" 0: no column definitions (cached by the client).
                slot.r = if b.get(k) == Some(&0) {
                    R::OptEof { then: After::Rows }
                } else {
                    R::Defs {
                        left: n,
                        then: After::Rows,
                    }
                };
                true
            }
        }
    }

    fn err_packet(&mut self, b: &[u8], ts: u64, out: &mut Vec<DbEvent>) -> bool {
        let (code, state) = wire::err_fields(b);
        if code == Some(0xffff) {
            // MariaDB progress report: the command goes on.
            return true;
        }
        match self.queue.front_mut() {
            Some(Slot {
                kind: Kind::Query(op) | Kind::Execute(op),
                ..
            }) => op.err = Some((code, state)),
            Some(Slot {
                kind: Kind::Prepare(_),
                ..
            }) => self.stats.not_operations += 1,
            _ => {}
        }
        self.end_front(ts, out);
        true
    }

    /// The oldest command's reply ended.
    fn end_front(&mut self, ts: u64, out: &mut Vec<DbEvent>) {
        if let Some(slot) = self.queue.pop_front() {
            if let Kind::Query(op) | Kind::Execute(op) = slot.kind {
                self.finish(op, false, ts, out);
            }
        }
    }
}

#[cfg(test)]
mod tests;
