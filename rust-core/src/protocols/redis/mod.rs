//! Redis (RESP2 and RESP3): one [`RedisSession`] per connection, fed both directions,
//! pairs commands with replies in order and reports them through [`DbSession`].
//!
//! Requests are arrays of bulk strings or inline command lines (split as Redis does,
//! quotes included); replies are any RESP2/RESP3 value, aggregates nested to any depth
//! (iteratively, at most 64 deep, at most 1M elements announced per aggregate). Nothing
//! is buffered but header lines, the first 64 bytes of each argument and an inline line
//! (at most 64 KiB, Redis's own limit); payloads are skipped by length, including the
//! uncaptured `gap` bytes of a feed when they fall inside a payload.
//!
//! Choices (the tests pin them):
//! - Spans: one per command, MULTI and EXEC included (a command queued in a transaction
//!   ends at its `+QUEUED`; EXEC's span covers the execution). PING, HELLO, AUTH,
//!   CLIENT SETINFO and CLIENT MAINT_NOTIFICATIONS are no operations (`not_operations`, one per command); so are pub/sub
//!   messages, RESP3 pushes other than expected confirmations, and replies with no
//!   command waiting (a connection seen mid-stream, MONITOR's feed).
//! - `db.operation.name` / `db.query.summary`: the command upper case, with the
//!   subcommand for container commands (`CLIENT SETNAME`, `CONFIG GET`, `XINFO STREAM`,
//!   `OBJECT ENCODING`...); None when the name is no plausible command token.
//! - `db.query.text`: the name (and subcommand), the first argument (the key) as sent,
//!   each further argument `?` when sanitized (`SET user:1 ?`, `HSET h ? ? ? ?`); all
//!   arguments when not. An argument shows at most 64 bytes, words with blanks, quotes or
//!   non-printable bytes are quoted with escapes (`"a b"`, `"\xff"`); the whole is cut to
//!   `max_len` (either cut counts in `query_truncated`). AUTH and HELLO arguments are
//!   always `?`; MIGRATE, ACL SETUSER and CONFIG SET are always sanitized (passwords).
//! - `db.namespace`: None until a SELECT succeeded on the connection, then its index;
//!   an operation carries the index in effect when it ran (a SELECT its previous one).
//!   A SELECT queued in MULTI takes effect with a successful EXEC; RESET goes back to None.
//! - Errors: a top-level `-` or `!` reply: `error`, and `status_code` = `error_type` =
//!   the first word (`ERR`, `WRONGTYPE`, `MOVED`...). Errors inside EXEC's array are not
//!   EXEC's error.
//! - Pub/sub: (P|S)SUBSCRIBE with n channels ends at its n-th confirmation,
//!   (P|S)UNSUBSCRIBE without arguments at a confirmation whose count is 0 (or, when other
//!   kinds of subscriptions remain, at the next value that is not one of its
//!   confirmations, or at close). RESP3 confirmations are pushes; in RESP2 they and the
//!   `message`/`pmessage`/`smessage` arrays are told from replies by their first element
//!   once the connection issued a subscribe command.
//! - CLIENT REPLY OFF / SKIP: the commands that get no reply end when sent.
//! - Timing: start = ts of the feed holding the command's first byte (its tid); end = ts
//!   of the feed holding the reply's last byte.
//! - At most 1024 operations wait for replies; further commands get no span (counted by
//!   [`RedisSession::untracked`]) until replies drain the queue.
//! - Losing the stream: uncaptured bytes where framing is needed (not counted), or bytes
//!   that are not RESP (`malformed`). The direction then resynchronises at the start of a
//!   later feed, as it starts at the session's first (which may be mid-stream): toward
//!   the server the feed must begin with a known command (or a module's, `JSON.GET`;
//!   inline: a known one, no HTTP request line), toward the client with RESP values; a
//!   feed that does not is dropped without counting it as malformed. Requests: the
//!   command in progress keeps its place when it was classified, the lost ones are
//!   unknown. Replies: the operations written before the broken or dropped feed end
//!   `aborted` (their replies may have been in it). After either, a reply pairs with the
//!   next known command only if it was read after that command was written (older
//!   replies are dropped), so pipelined replies to lost commands can still be
//!   misattributed. A connection whose first command is unknown (neither in the table
//!   nor a module's) is not followed until one is.
//!   [`RedisSession::losses`] counts the losses, silent ones included.
//! - MONITOR's feed (simple strings after its `+OK`) is counted as replies with no command
//!   waiting; a command sent meanwhile (QUIT, RESET) may take one as its reply.
//! - Not handled: RESP3 streamed strings and aggregates (`$?`, `*?`: Redis never sends
//!   them; malformed); commands with more than `i32::MAX` arguments (Redis refuses them).

mod commands;
mod request;
mod resp;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;

use super::db::{DbEvent, DbOp, DbSession, DbSystem, Flow, QueryTextOptions, SessionStats};
use commands::{is_known, is_known_prefix, is_module_command, is_operation, PubSub, LONGEST_KNOWN};
use request::{is_token_byte, Command, ReqEvent, RequestParser, KEEP_ARG};
use resp::{plausible_replies, Broken, ReplyParser, Value};

/// The longest line buffered: an inline command, a simple string or error line.
pub const MAX_LINE: usize = 64 * 1024;
/// Operations waiting for replies at most.
pub(crate) const MAX_PENDING: usize = 1024;
/// Scratch vectors (messages parsed from one feed) keep at most this capacity between
/// feeds.
const SCRATCH_KEPT: usize = 64;

pub use super::db::Sniff;

/// A connection's first bytes (`flow`: their direction): Redis when, toward the server,
/// they are an array of bulk strings whose first is a known command (case-insensitive) or
/// a module's (`JSON.GET`), or an inline line whose first word is a known command (and
/// no HTTP request line). A Redis server never speaks first: `ToClient` is `No`.
pub fn sniff(flow: Flow, first: &[u8]) -> Sniff {
    if flow == Flow::ToClient {
        return Sniff::No;
    }
    match first.first() {
        None => Sniff::NeedMore,
        Some(b'*') => sniff_array(first),
        Some(_) => sniff_inline(first),
    }
}

/// `<number>\r\n` at `d[at..]`: Ok(None) when incomplete.
fn number_line(d: &[u8], at: usize) -> Result<Option<(i64, usize)>, ()> {
    let rest = d.get(at..).unwrap_or_default();
    let mut v: i64 = 0;
    let mut neg = false;
    for (j, &c) in rest.iter().enumerate() {
        match c {
            b'-' if j == 0 => neg = true,
            b'0'..=b'9' if j < 18 => v = v * 10 + i64::from(c - b'0'),
            b'\r' if j > usize::from(neg) => {
                return match rest.get(j + 1) {
                    None => Ok(None),
                    Some(b'\n') => Ok(Some((if neg { -v } else { v }, at + j + 2))),
                    Some(_) => Err(()),
                };
            }
            _ => return Err(()),
        }
    }
    Ok(None)
}

fn sniff_array(d: &[u8]) -> Sniff {
    let (n, p) = match number_line(d, 1) {
        Ok(Some(x)) => x,
        Ok(None) => return Sniff::NeedMore,
        Err(()) => return Sniff::No,
    };
    if !(1..=i64::from(i32::MAX)).contains(&n) {
        return Sniff::No;
    }
    match d.get(p) {
        None => return Sniff::NeedMore,
        Some(b'$') => {}
        Some(_) => return Sniff::No,
    }
    let (len, p) = match number_line(d, p + 1) {
        Ok(Some(x)) => x,
        Ok(None) => return Sniff::NeedMore,
        Err(()) => return Sniff::No,
    };
    let len = match usize::try_from(len) {
        Ok(l) if (1..=KEEP_ARG).contains(&l) => l,
        _ => return Sniff::No,
    };
    let name = &d[p..d.len().min(p + len)];
    if name.len() < len {
        // A known command or a module's (`JSON.GET`) may still follow.
        return if name.iter().all(|c| is_token_byte(*c)) {
            Sniff::NeedMore
        } else {
            Sniff::No
        };
    }
    if !is_known(name) && !is_module_command(name) {
        return Sniff::No;
    }
    match d.get(p + len..p + len + 2) {
        Some(b"\r\n") => Sniff::Yes,
        Some(_) => Sniff::No,
        None if d.get(p + len).is_none_or(|c| *c == b'\r') => Sniff::NeedMore,
        None => Sniff::No,
    }
}

fn sniff_inline(d: &[u8]) -> Sniff {
    let Some(end) = d
        .iter()
        .position(|b| matches!(b, b' ' | b'\r' | b'\n' | b'\t'))
    else {
        return if d.len() <= LONGEST_KNOWN && is_known_prefix(d) {
            Sniff::NeedMore
        } else {
            Sniff::No
        };
    };
    if !is_known(&d[..end]) {
        return Sniff::No;
    }
    let Some(lf) = d.iter().position(|b| *b == b'\n') else {
        return if d.len() < MAX_LINE {
            Sniff::NeedMore
        } else {
            Sniff::No
        };
    };
    // `GET / HTTP/1.1` is HTTP.
    if d[..lf].windows(6).any(|w| w == b" HTTP/") {
        return Sniff::No;
    }
    Sniff::Yes
}

/// Bytes of a connection first seen mid-stream: plausibly Redis when, toward the server,
/// they start with a known command ([`sniff`] says `Yes`), or, toward the client, they
/// parse as RESP replies (a complete first line, nothing that is not RESP).
pub fn plausible_midstream(flow: Flow, data: &[u8]) -> bool {
    match flow {
        Flow::ToServer => sniff(flow, data) == Sniff::Yes,
        Flow::ToClient => plausible_replies(data),
    }
}

/// What a complete command waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// One reply.
    Reply,
    /// Pub/sub confirmations of `kind`: `left` of them (None: until one with count 0).
    Confirm {
        kind: PubSub,
        left: Option<u64>,
        got: u64,
        last_ts: u64,
    },
}

/// What a successful reply changes on the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Effect {
    None,
    Select(String),
    QueuedSelect(String),
    Exec,
    Discard,
    Reset,
}

#[derive(Debug)]
struct PendingOp {
    seq: u64,
    operation: Option<String>,
    query_text: Option<String>,
    start_ts: u64,
    tid: u32,
    expect: Expect,
    effect: Effect,
}

#[derive(Debug)]
enum Entry {
    /// An operation (span) waiting for its reply.
    Op(Box<PendingOp>),
    /// `replies` replies that make no span, the first to a command written at `ts`.
    Quiet { replies: u64, ts: u64 },
    /// Commands were lost here: how many replies they get is unknown.
    Barrier,
}

impl Entry {
    fn ts(&self) -> Option<u64> {
        match self {
            Entry::Op(op) => Some(op.start_ts),
            Entry::Quiet { ts, .. } => Some(*ts),
            Entry::Barrier => None,
        }
    }
}

/// How the command in progress was classified when its head was known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Op(u64),
    Quiet,
    Untracked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReplyMode {
    On,
    Off,
    SkipNext,
}

/// One Redis connection's parser.
#[derive(Debug)]
pub struct RedisSession {
    opts: QueryTextOptions,
    stats: SessionStats,
    namespace: Option<String>,
    next_seq: u64,
    req: RequestParser,
    rep: ReplyParser,
    /// A direction has no framing (at first, or lost): the next feed's start is tried.
    req_lost: bool,
    rep_lost: bool,
    current: Option<Class>,
    queue: VecDeque<Entry>,
    /// `Entry::Op`s in `queue`.
    tracked: usize,
    in_multi: bool,
    reply_mode: ReplyMode,
    /// A subscribe command was sent (RESP2 pub/sub arrays are no replies).
    pubsub: bool,
    queued_select: Option<String>,
    untracked: u64,
    losses: u64,
    req_events: Vec<ReqEvent>,
    values: Vec<Value>,
}

impl RedisSession {
    pub fn new(opts: QueryTextOptions) -> Self {
        RedisSession {
            opts,
            stats: SessionStats::default(),
            namespace: None,
            next_seq: 1,
            req: RequestParser::new(opts),
            rep: ReplyParser::new(),
            req_lost: true,
            rep_lost: true,
            current: None,
            queue: VecDeque::new(),
            tracked: 0,
            in_multi: false,
            reply_mode: ReplyMode::On,
            pubsub: false,
            queued_select: None,
            untracked: 0,
            losses: 0,
            req_events: Vec::new(),
            values: Vec::new(),
        }
    }

    /// Operations that got no span because [`MAX_PENDING`] were waiting already.
    pub fn untracked(&self) -> u64 {
        self.untracked
    }

    /// Times a direction lost its framing (malformed bytes, a gap where framing was
    /// needed, or a feed tried for resynchronisation that did not start a message).
    pub fn losses(&self) -> u64 {
        self.losses
    }

    fn feed_requests(&mut self, data: &[u8], gap: u64, ts: u64, tid: u32, out: &mut Vec<DbEvent>) {
        if self.req_lost {
            if data.is_empty() {
                if gap > 0 {
                    self.push_barrier();
                }
                return;
            }
            // Try the feed's start: it must begin with a known command.
            self.req_lost = false;
            self.req.reset();
            self.req.strict = true;
        }
        let mut events = std::mem::take(&mut self.req_events);
        let mut res = self.req.feed(data, ts, tid, &mut events);
        if res.is_ok() {
            res = self.req.gap(gap, ts, &mut events);
        }
        for ev in events.drain(..) {
            match ev {
                ReqEvent::Head {
                    operation,
                    start_ts,
                    tid,
                } => self.on_head(operation, start_ts, tid, out),
                ReqEvent::Done(cmd, end) => self.on_command(*cmd, end, out),
            }
        }
        if events.capacity() <= SCRATCH_KEPT {
            self.req_events = events;
        }
        if let Err(e) = res {
            self.losses += 1;
            // Failing a feed's start is no garbage: the feed began mid-message.
            if e == Broken::Malformed && !self.req.strict {
                self.stats.malformed += 1;
            }
            if let Some(cmd) = self.req.reset() {
                // Classified, so sent: its reply comes before the lost commands' ones.
                self.on_command(*cmd, ts, out);
            }
            self.current = None;
            self.push_barrier();
            self.req_lost = true;
        }
    }

    fn feed_replies(&mut self, data: &[u8], gap: u64, ts: u64, out: &mut Vec<DbEvent>) {
        if self.rep_lost {
            if data.is_empty() {
                if gap > 0 {
                    self.drop_replies(ts, out);
                }
                return;
            }
            self.rep_lost = false;
            self.rep.reset();
            self.rep.strict = true;
        }
        let mut values = std::mem::take(&mut self.values);
        let mut res = self.rep.feed(data, ts, &mut values);
        if res.is_ok() {
            res = self.rep.gap(gap, ts, &mut values);
        }
        for v in values.drain(..) {
            self.on_value(v, out);
        }
        if values.capacity() <= SCRATCH_KEPT {
            self.values = values;
        }
        if let Err(e) = res {
            self.losses += 1;
            if e == Broken::Malformed && !self.rep.strict {
                self.stats.malformed += 1;
            }
            self.rep.reset();
            self.rep_lost = true;
            self.drop_replies(ts, out);
        }
    }

    /// Replies up to `ts` were lost: the operations written by then end `aborted` (which
    /// of their replies were lost is unknown), and a barrier goes in front.
    fn drop_replies(&mut self, ts: u64, out: &mut Vec<DbEvent>) {
        while let Some(front) = self.queue.front() {
            if !matches!(front, Entry::Barrier) && front.ts().is_none_or(|t| t > ts) {
                break;
            }
            if let Some(Entry::Op(op)) = self.queue.pop_front() {
                self.tracked = self.tracked.saturating_sub(1);
                self.finish(*op, ts, None, true, out);
            }
        }
        self.queue.push_front(Entry::Barrier);
    }

    fn on_head(&mut self, operation: bool, start_ts: u64, tid: u32, out: &mut Vec<DbEvent>) {
        let class = if !operation {
            self.stats.not_operations += 1;
            Class::Quiet
        } else if self.tracked >= MAX_PENDING {
            self.untracked += 1;
            Class::Untracked
        } else {
            let seq = self.next_seq;
            self.next_seq += 1;
            out.push(DbEvent::Started {
                seq,
                ts: start_ts,
                tid,
            });
            Class::Op(seq)
        };
        self.current = Some(class);
    }

    fn on_command(&mut self, cmd: Command, end_ts: u64, out: &mut Vec<DbEvent>) {
        let class = match self.current.take() {
            Some(c) => c,
            None => {
                let operation = is_operation(&cmd.name, cmd.sub.as_deref());
                self.on_head(operation, cmd.start_ts, cmd.tid, out);
                self.current.take().unwrap_or(Class::Untracked)
            }
        };
        let name = cmd.name.as_str();
        let sub = cmd.sub.as_deref();
        let queued = self.in_multi
            && !matches!(
                name,
                "EXEC" | "DISCARD" | "MULTI" | "WATCH" | "QUIT" | "RESET"
            );
        // Does a reply come?
        let mut replied = match self.reply_mode {
            ReplyMode::On => true,
            ReplyMode::Off => false,
            ReplyMode::SkipNext => {
                self.reply_mode = ReplyMode::On;
                false
            }
        };
        if name == "CLIENT" && sub == Some("REPLY") && !queued {
            match cmd.arg2.to_ascii_uppercase().as_slice() {
                b"ON" => {
                    self.reply_mode = ReplyMode::On;
                    replied = true;
                }
                b"OFF" => {
                    self.reply_mode = ReplyMode::Off;
                    replied = false;
                }
                b"SKIP" => {
                    if self.reply_mode == ReplyMode::On {
                        self.reply_mode = ReplyMode::SkipNext;
                    }
                    replied = false;
                }
                _ => {}
            }
        }
        let pubsub = PubSub::of_command(name);
        let expect = match pubsub {
            Some(kind) if !queued && kind.is_unsubscribe() => Expect::Confirm {
                kind,
                left: (cmd.args > 0).then_some(cmd.args),
                got: 0,
                last_ts: 0,
            },
            Some(kind) if !queued && cmd.args > 0 => Expect::Confirm {
                kind,
                left: Some(cmd.args),
                got: 0,
                last_ts: 0,
            },
            _ => Expect::Reply,
        };
        if pubsub.is_some_and(|k| !k.is_unsubscribe()) {
            self.pubsub = true;
        }
        let effect = match name {
            "SELECT" => match db_index(&cmd.arg1) {
                Some(n) if queued => Effect::QueuedSelect(n),
                Some(n) => Effect::Select(n),
                None => Effect::None,
            },
            "EXEC" => Effect::Exec,
            "DISCARD" => Effect::Discard,
            "RESET" => Effect::Reset,
            _ => Effect::None,
        };
        match name {
            "MULTI" => self.in_multi = true,
            "EXEC" | "DISCARD" => self.in_multi = false,
            "RESET" => {
                self.in_multi = false;
                self.reply_mode = ReplyMode::On;
            }
            _ => {}
        }
        match class {
            Class::Op(seq) => {
                if cmd.truncated {
                    self.stats.query_truncated += 1;
                }
                let op = PendingOp {
                    seq,
                    operation: cmd.operation(),
                    query_text: self.opts.capture.then_some(cmd.text),
                    start_ts: cmd.start_ts,
                    tid: cmd.tid,
                    expect,
                    effect,
                };
                if replied {
                    self.tracked += 1;
                    self.queue.push_back(Entry::Op(Box::new(op)));
                } else {
                    self.finish(op, end_ts, None, false, out);
                }
            }
            Class::Quiet | Class::Untracked => {
                if replied && expect == Expect::Reply {
                    self.push_quiet(cmd.start_ts);
                }
            }
        }
    }

    fn push_quiet(&mut self, ts: u64) {
        if let Some(Entry::Quiet { replies, .. }) = self.queue.back_mut() {
            *replies += 1;
        } else {
            self.queue.push_back(Entry::Quiet { replies: 1, ts });
        }
    }

    fn push_barrier(&mut self) {
        // Replies of commands after a barrier are told by causality anyway: quiet ones
        // between two barriers are dropped, so the queue stays bounded.
        while matches!(self.queue.back(), Some(Entry::Quiet { .. }))
            && matches!(
                self.queue.get(self.queue.len().wrapping_sub(2)),
                Some(Entry::Barrier)
            )
        {
            self.queue.pop_back();
        }
        if !matches!(self.queue.back(), Some(Entry::Barrier)) {
            self.queue.push_back(Entry::Barrier);
        }
    }

    fn on_value(&mut self, v: Value, out: &mut Vec<DbEvent>) {
        let ps = if v.is_aggregate() && v.len >= 3 {
            v.first.as_deref().and_then(PubSub::of_push)
        } else {
            None
        };
        let subscribed = self.pubsub;
        if let Some(kind) = ps {
            if kind.is_unsubscribe() && v.third == Some(0) && (subscribed || v.kind == b'>') {
                self.pubsub = false;
            }
            while kind != PubSub::Message && v.len == 3 && self.resolve_barrier(v.first_ts) {
                let Some(Entry::Op(op)) = self.queue.front_mut() else {
                    break;
                };
                let Expect::Confirm {
                    kind: k,
                    left,
                    got,
                    last_ts,
                } = &mut op.expect
                else {
                    break;
                };
                if *k != kind {
                    if *got == 0 {
                        break;
                    }
                    // Another kind's confirmation: this command's are over.
                    let end = *last_ts;
                    self.pop_op(end, None, out);
                    continue;
                }
                *got += 1;
                *last_ts = v.last_ts;
                let done = match left {
                    Some(n) => *got >= *n,
                    None => v.third == Some(0),
                };
                if done {
                    self.pop_op(v.last_ts, None, out);
                }
                return;
            }
        }
        // RESP3 pushes, and RESP2 pub/sub arrays once the connection subscribed.
        if v.kind == b'>' || (ps.is_some() && v.kind == b'*' && subscribed) {
            self.stats.not_operations += 1;
            return;
        }
        self.on_reply(&v, out);
    }

    /// Drops the barriers in front of the queue when the command after them was written
    /// before `first_ts` (a reply read then can be its); false when a barrier stays.
    fn resolve_barrier(&mut self, first_ts: u64) -> bool {
        while let Some(Entry::Barrier) = self.queue.front() {
            match self.queue.iter().skip(1).find_map(Entry::ts) {
                Some(ts) if first_ts >= ts => {
                    self.queue.pop_front();
                }
                _ => return false,
            }
        }
        true
    }

    fn on_reply(&mut self, v: &Value, out: &mut Vec<DbEvent>) {
        loop {
            match self.queue.front_mut() {
                None => {
                    // No command waits: a reply to one sent before the session began.
                    self.stats.not_operations += 1;
                    return;
                }
                Some(Entry::Barrier) => {
                    // After lost commands, only a reply read after the next known command
                    // was written can be its; older ones are dropped.
                    if !self.resolve_barrier(v.first_ts) {
                        return;
                    }
                }
                Some(Entry::Quiet { replies, .. }) => {
                    *replies -= 1;
                    if *replies == 0 {
                        self.queue.pop_front();
                    }
                    return;
                }
                Some(Entry::Op(op)) => {
                    if let Expect::Confirm { got, last_ts, .. } = op.expect {
                        if got > 0 {
                            // Its confirmations are over: the reply is the next command's.
                            self.pop_op(last_ts, None, out);
                            continue;
                        }
                    }
                    self.pop_op(v.last_ts, Some(v), out);
                    return;
                }
            }
        }
    }

    fn pop_op(&mut self, end_ts: u64, reply: Option<&Value>, out: &mut Vec<DbEvent>) {
        if let Some(Entry::Op(op)) = self.queue.pop_front() {
            self.tracked = self.tracked.saturating_sub(1);
            self.finish(*op, end_ts, reply, false, out);
        }
    }

    /// Reports an operation (`reply`: the value that ended it, if any).
    fn finish(
        &mut self,
        op: PendingOp,
        end_ts: u64,
        reply: Option<&Value>,
        aborted: bool,
        out: &mut Vec<DbEvent>,
    ) {
        let error = reply.and_then(|v| v.error.as_ref());
        let namespace = self.namespace.clone();
        if !aborted && error.is_none() {
            match op.effect {
                Effect::None => {}
                Effect::Select(n) => self.namespace = Some(n),
                Effect::QueuedSelect(n) => self.queued_select = Some(n),
                Effect::Exec => {
                    let ran = reply.is_some_and(|v| v.is_aggregate() && v.len >= 0);
                    if let Some(n) = self.queued_select.take().filter(|_| ran) {
                        self.namespace = Some(n);
                    }
                }
                Effect::Discard => self.queued_select = None,
                Effect::Reset => {
                    self.namespace = None;
                    self.queued_select = None;
                    self.pubsub = false;
                }
            }
        } else if op.effect == Effect::Exec {
            self.queued_select = None;
        }
        out.push(DbEvent::Done(DbOp {
            seq: op.seq,
            system: Some(DbSystem::Redis),
            namespace,
            summary: op.operation.clone(),
            operation: op.operation,
            collection: None,
            query_text: op.query_text,
            batch_size: None,
            status_code: error.filter(|e| !e.is_empty()).cloned(),
            error_type: error.map(|e| {
                if e.is_empty() {
                    "_OTHER".to_string()
                } else {
                    e.clone()
                }
            }),
            error: error.is_some(),
            start_ts: op.start_ts,
            end_ts,
            tid: op.tid,
            aborted,
        }));
    }
}

/// SELECT's argument as `db.namespace`: a non-negative integer, without leading zeros.
fn db_index(arg: &[u8]) -> Option<String> {
    if arg.is_empty() || arg.len() > 9 || !arg.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u32 = std::str::from_utf8(arg).ok()?.parse().ok()?;
    Some(n.to_string())
}

impl DbSession for RedisSession {
    fn feed(
        &mut self,
        flow: Flow,
        data: &[u8],
        gap: u64,
        ts: u64,
        tid: u32,
        out: &mut Vec<DbEvent>,
    ) {
        match flow {
            Flow::ToServer => self.feed_requests(data, gap, ts, tid, out),
            Flow::ToClient => self.feed_replies(data, gap, ts, out),
        }
    }

    fn close(&mut self, ts: u64, out: &mut Vec<DbEvent>) {
        if let Some(cmd) = self.req.reset() {
            if let Some(Class::Op(seq)) = self.current {
                let op = PendingOp {
                    seq,
                    operation: cmd.operation(),
                    query_text: self.opts.capture.then_some(cmd.text),
                    start_ts: cmd.start_ts,
                    tid: cmd.tid,
                    expect: Expect::Reply,
                    effect: Effect::None,
                };
                self.finish(op, ts, None, true, out);
            }
        }
        self.current = None;
        let mid_value = self.rep.in_value();
        while let Some(e) = self.queue.pop_front() {
            if let Entry::Op(op) = e {
                // An unsubscribe-all whose confirmations came and no reply is partial.
                if let Expect::Confirm {
                    left: None,
                    got,
                    last_ts,
                    ..
                } = op.expect
                {
                    if got > 0 && !mid_value {
                        self.finish(*op, last_ts, None, false, out);
                        continue;
                    }
                }
                self.finish(*op, ts, None, true, out);
            }
        }
        self.tracked = 0;
        self.rep.reset();
        self.req_lost = true;
        self.rep_lost = true;
    }

    fn stats(&self) -> SessionStats {
        self.stats
    }
}
