//! Trace context for each exchange, fixed when its request is seen, and the two ways a
//! span finds its parent without an SDK:
//!
//! - In-process parenting: a request a thread sends while it serves another becomes that
//!   one's child. Exact for thread-per-request servers (the thread that read the request
//!   makes the calls). An event-loop thread may serve several requests at once: then a
//!   call's request is unknown and it gets no parent rather than a wrong one.
//! - Same-node linking: when both ends of a connection are traced here, the n-th request
//!   the server reads on it is the n-th the client wrote, so the SERVER span becomes the
//!   CLIENT span's child. Either side may be seen first (the two syscalls exit on different
//!   CPUs, and the writer may be preempted before its exit is recorded): a server seen
//!   first, whose client may be on this host, starts a *provisional* trace. Spans of a
//!   provisional trace (the server's and everything descending from it, in this process or
//!   further down the chain) wait, at most `LINK_WAIT_NS`, until the client's request names
//!   the real trace; then one alias re-labels them all.
//!
//! With `context_propagation: headers` the kernel chooses the ids first (see
//! ebpf-programs/server_request.h): a server request gets its trace and span id when the thread
//! reads it, and a request the thread sends gets its span id when the kernel writes it
//! into the `traceparent` it inserts. Those ids are on the wire already, so they win: they
//! come as `CtxEvent`s queued per socket, and the rules above cover what the kernel did
//! not handle (requests it could not rewrite, sockets older than the collector).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;

use super::ids::{IdGen, Sampler, SpanCtx, TraceParent, HAS_IS_REMOTE, IS_REMOTE};
use crate::conn::{Exchange, LinkKey, Peer, Side};
use crate::events::{
    CtxEvent, CTX_CALLER, CTX_FLAG_AMBIGUOUS, CTX_FLAG_GOROUTINE, CTX_FLAG_HEADER, CTX_INJECTED,
    CTX_SERVER,
};
use crate::stats::{self, Stats};

/// Requests remembered per connection for linking; more means the other end is not
/// traced here (or lags badly), and the oldest are dropped.
const LINK_QUEUE: usize = 64;
/// Bound on the connections remembered for linking.
const LINK_KEYS: usize = 65_536;
/// How long spans of a provisional trace wait for the client's side.
pub const LINK_WAIT_NS: u64 = 200_000_000;
/// Marks kept per connection for server requests that did not wait (see `server_root`).
const UNHELD_MARKS: usize = 4;
/// Bound on the addresses remembered as this host's.
const LOCAL_IPS: usize = 4096;

/// (trace id, span id).
type TraceSpan = ([u8; 16], [u8; 8]);

/// What a provisional trace turned out to be.
#[derive(Debug, Clone)]
struct Alias {
    /// The trace it belongs to (itself possibly provisional: follow the chain).
    trace_id: [u8; 16],
    /// The provisional root (the server span read first) and its real parent.
    root_span_id: [u8; 8],
    parent_span_id: [u8; 8],
    flags: u32,
    trace_state: String,
}

/// Whether a span can be built now.
#[derive(Debug, PartialEq, Eq)]
pub enum Ready {
    Now,
    /// Its trace is provisional: ask again later.
    Wait,
}

#[derive(Default)]
pub struct Contexts {
    ids: IdGen,
    /// (pid, tid) → the server requests that thread has read and not yet answered. One:
    /// its calls are that request's children. More (an event loop with overlapping
    /// requests): which request a call belongs to is unknown, and a wrong parent is worse
    /// than none, so the call starts its own trace (`parents_ambiguous`).
    serving: HashMap<(u32, u32), Vec<SpanCtx>>,
    /// Client requests not yet matched by a server read, per connection.
    clients: HashMap<LinkKey, VecDeque<SpanCtx>>,
    /// Server requests read before the client's write was seen: (trace id, span id).
    servers: HashMap<LinkKey, VecDeque<TraceSpan>>,
    /// Provisional trace id → when its spans stop waiting (event time, ns).
    provisional: HashMap<[u8; 16], u64>,
    aliases: HashMap<[u8; 16], Alias>,
    /// Addresses seen as the local end of traced sockets: this host's.
    local_ips: HashSet<IpAddr>,
    /// The kernel inserts headers: a client request without one was not rewritten.
    pub propagating: bool,
    /// Processes whose threads do not tell which request a call serves (Go).
    pub goroutines: HashSet<u32>,
    /// Go processes whose HTTP/2 server the kernel follows (its streams' ids come as
    /// `CTX_SERVER` with the stream id).
    pub h2_servers: HashSet<u32>,
    /// Decides the traces started here (the kernel decides those it starts).
    pub sampler: Sampler,
    /// (time, thread) of the records being assigned that opened more than one HTTP/2
    /// client stream: whose goroutine wrote which is unknown.
    pub shared_records: Vec<(u64, u32)>,
}

/// The kernel's ids for the server request that started in the read at `ts` (the
/// record carries the same timestamp), by that thread.
fn take_server(kq: &mut VecDeque<CtxEvent>, ts: u64, tid: u32) -> Option<CtxEvent> {
    // Older ones belong to requests already given ids (or lost): drop them.
    while kq.front().is_some_and(|k| k.hdr.ts_ns < ts) {
        kq.pop_front();
    }
    let pos = kq
        .iter()
        .position(|k| k.ctx_kind == CTX_SERVER && k.hdr.ts_ns == ts && k.hdr.tid == tid)?;
    kq.remove(pos)
}

/// The kernel's ids for the HTTP/2 request that opened `stream` (Go's net/http server:
/// ebpf-programs/go_h2server.h), reported when the serve goroutine took its HEADERS.
fn take_server_stream(kq: &mut VecDeque<CtxEvent>, stream: u32) -> Option<CtxEvent> {
    let pos = kq
        .iter()
        .position(|k| k.ctx_kind == CTX_SERVER && k.stream_id == stream)?;
    kq.remove(pos)
}

/// The header the kernel inserted into the request that started in the write at `ts`.
/// The inject happens inside that send, so it is of the newest send by the thread before
/// `ts`; the requests of one send (pipelining) share its time and come in order.
fn take_injected(kq: &mut VecDeque<CtxEvent>, ts: u64, tid: u32) -> Option<CtxEvent> {
    let mine = |k: &CtxEvent| {
        k.ctx_kind == CTX_INJECTED && k.stream_id == 0 && k.hdr.ts_ns <= ts && k.hdr.tid == tid
    };
    let send = kq.iter().filter(|k| mine(k)).map(|k| k.hdr.ts_ns).max()?;
    // Injections of earlier sends whose request was never seen (a lost record) would
    // only mislead.
    kq.retain(|k| !mine(k) || k.hdr.ts_ns == send);
    let pos = kq.iter().position(mine)?;
    kq.remove(pos)
}

/// The caller the kernel reported for grpc-go stream `stream`, sent at `ts`. Streams open
/// in increasing order: callers of lower ones whose HEADERS were never seen go.
fn take_stream_caller(kq: &mut VecDeque<CtxEvent>, stream: u32, ts: u64) -> Option<CtxEvent> {
    kq.retain(|k| k.ctx_kind != CTX_CALLER || k.stream_id == 0 || k.stream_id >= stream);
    let pos = kq
        .iter()
        .position(|k| k.ctx_kind == CTX_CALLER && k.stream_id == stream && k.hdr.ts_ns <= ts)?;
    kq.remove(pos)
}

/// The header the kernel inserted into the HTTP/2 request that opened `stream` in the
/// write at `ts` (inside that send, so not after it). Streams open in increasing order:
/// injections for lower ones whose HEADERS were never seen go.
fn take_injected_stream(kq: &mut VecDeque<CtxEvent>, stream: u32, ts: u64) -> Option<CtxEvent> {
    kq.retain(|k| k.ctx_kind != CTX_INJECTED || k.stream_id == 0 || k.stream_id >= stream);
    let pos = kq
        .iter()
        .position(|k| k.ctx_kind == CTX_INJECTED && k.stream_id == stream && k.hdr.ts_ns <= ts)?;
    kq.remove(pos)
}

/// What the goroutine that sent the request starting at `ts` serves (Go, a request the
/// kernel put no header in): the newest CTX_CALLER of the socket not after `ts`. The
/// kernel reports a caller only when it changed for the socket, so that one stays for the
/// requests after it; older ones go. A grpc-go stream's own caller (with its stream id)
/// is not the socket's.
fn take_caller(kq: &mut VecDeque<CtxEvent>, ts: u64) -> Option<CtxEvent> {
    let upto = |k: &CtxEvent| k.ctx_kind == CTX_CALLER && k.stream_id == 0 && k.hdr.ts_ns <= ts;
    let last = kq.iter().filter(|k| upto(k)).map(|k| k.hdr.ts_ns).max()?;
    kq.retain(|k| !upto(k) || k.hdr.ts_ns == last);
    kq.iter().rev().find(|k| upto(k)).copied()
}

/// A server span answering `client`.
fn linked_child(client: &SpanCtx, span_id: [u8; 8]) -> SpanCtx {
    SpanCtx {
        trace_id: client.trace_id,
        span_id,
        parent_span_id: Some(client.span_id),
        flags: HAS_IS_REMOTE | IS_REMOTE | (client.flags & 0xff),
        trace_state: client.trace_state.clone(),
        invalid_parent: false,
    }
}

fn push_bounded<T>(q: &mut VecDeque<T>, v: T) {
    if q.len() >= LINK_QUEUE {
        q.pop_front();
    }
    q.push_back(v);
}

impl Contexts {
    pub fn new(sampler: Sampler) -> Self {
        Contexts {
            sampler,
            ..Default::default()
        }
    }

    /// Gives `ex` its ids unless it has them; `kq`: the kernel's ids for the socket.
    /// True when it is a client request the kernel should have put a header in and did not.
    /// `client_traced`: the kernel knew the connection's client end as a socket traced
    /// here when the server read from it (its client span will come). `thread_unsampled`:
    /// the kernel saw the request's thread serving an unsampled request (one it left
    /// out, so it is not in `serving`): the call is in that unsampled trace.
    #[allow(clippy::too_many_arguments)]
    pub fn assign(
        &mut self,
        pid: u32,
        side: Side,
        peer: &Peer,
        client_traced: bool,
        thread_unsampled: bool,
        ex: &mut Exchange,
        kq: Option<&mut VecDeque<CtxEvent>>,
        stats: &Stats,
    ) -> bool {
        if ex.ctx.is_some() {
            return false;
        }
        if ex.consumer().is_some() {
            self.consumer(pid, ex, kq, stats);
            return false;
        }
        let mut missed = false;
        let mut kq = kq;
        let header = ex.traceparent().map(TraceParent::parse);
        let kernel = kq.as_deref_mut().and_then(|q| match side {
            Side::Server if ex.stream_id != 0 => take_server_stream(q, ex.stream_id),
            Side::Server => take_server(q, ex.req_start, ex.tid),
            // A request with its own header was not touched.
            Side::Client if header.is_none() && ex.stream_id != 0 => {
                take_injected_stream(q, ex.stream_id, ex.req_start)
            }
            Side::Client if header.is_none() => take_injected(q, ex.req_start, ex.tid),
            Side::Client => None,
        });
        let invalid = matches!(header, Some(None));
        if invalid {
            stats::inc(&stats.traceparent_invalid);
        }
        let key = LinkKey::new(peer, side);
        let mut ctx = match (side, header.flatten()) {
            (Side::Server, Some(tp)) => {
                let mut ctx = SpanCtx::from_remote(&tp, ex.tracestate(), &mut self.ids);
                let flags = self.sampler.flags(&tp.trace_id, Some(tp.flags));
                ctx.flags = (ctx.flags & !0xff) | flags as u32;
                if let Some(k) = kernel {
                    // The kernel's span id is the one this thread's calls name as parent.
                    ctx.span_id = k.span_id;
                    if k.trace_id != tp.trace_id {
                        // It missed the header (a head read in pieces): its calls went
                        // out in another trace.
                        stats::inc(&stats.context_mismatch);
                    }
                }
                ctx
            }
            // The app propagates itself: the header's parent-id is its own (SDK) span's id,
            // which the callee names as parent. Ours must not reuse it: it is that span's
            // child, in its trace.
            (Side::Client, Some(tp)) => SpanCtx {
                trace_id: tp.trace_id,
                span_id: self.ids.span_id(),
                parent_span_id: Some(tp.span_id),
                flags: self.sampler.flags(&tp.trace_id, Some(tp.flags)) as u32,
                trace_state: ex.tracestate().unwrap_or_default().to_string(),
                invalid_parent: false,
            },
            (Side::Client, None) if kernel.is_some() => {
                let k = kernel.as_ref().unwrap();
                // The request started leaving when the kernel rewrote it, inside the send:
                // before the server could read it (the send's own exit may come later).
                ex.req_start = ex.req_start.min(k.hdr.ts_ns);
                self.injected(pid, ex.tid, k, stats)
            }
            (Side::Client, None) => {
                // HTTP/2 requests the kernel left alone are counted there (and TLS ones
                // cannot be rewritten); other protocols carry no header.
                if self.propagating && ex.header_insertable() {
                    stats::inc(&stats.requests_not_injected);
                    missed = true;
                }
                let go = self.goroutines.contains(&pid);
                let serving = match go {
                    true => None,
                    false => self.serving.get(&(pid, ex.tid)).map(Vec::as_slice),
                };
                // A Go request without a header: its goroutine's request, from the kernel.
                let caller = match (go, ex.stream_id) {
                    (false, _) => None,
                    (true, 0) => kq.and_then(|q| take_caller(q, ex.req_start)),
                    (true, _) => self.h2_caller(ex, kq, stats),
                };
                let mut ctx = match (caller, serving) {
                    (Some(k), _) if k.parent_span_id != [0; 8] => self.caller_child(&k),
                    (Some(_), _) => self.new_trace(),
                    (None, Some([parent])) => SpanCtx::child_of(parent, &mut self.ids),
                    (None, Some([_, _, ..])) => {
                        stats::inc(&stats.parents_ambiguous);
                        self.new_trace()
                    }
                    _ => self.new_trace(),
                };
                if thread_unsampled {
                    ctx.flags &= !1;
                }
                self.offer_client(key, &ctx, stats);
                ctx
            }
            (Side::Server, None) => {
                if kernel.is_some_and(|k| k.ctx_flags & CTX_FLAG_HEADER != 0) {
                    // The kernel took a header this request does not have here.
                    stats::inc(&stats.context_mismatch);
                }
                self.server_root(key, ex.req_start, client_traced, kernel.as_ref(), stats)
            }
        };
        ctx.invalid_parent = invalid;
        if side == Side::Server {
            let reading = self.serving.entry((pid, ex.tid)).or_default();
            if reading.len() >= LINK_QUEUE {
                reading.remove(0);
            }
            reading.push(ctx.clone());
        }
        ex.ctx = Some(ctx);
        missed
    }

    /// Whether `ex`, an HTTP/2 request a Go server is reading, should wait for its ids:
    /// the kernel reports them when the serve goroutine takes the HEADERS, after the
    /// read userspace parsed them from (and before the response can be written).
    pub fn awaits_kernel(
        &self,
        pid: u32,
        side: Side,
        ex: &Exchange,
        kq: Option<&VecDeque<CtxEvent>>,
    ) -> bool {
        side == Side::Server
            && ex.ctx.is_none()
            && ex.stream_id != 0
            && self.propagating
            && self.h2_servers.contains(&pid)
            && !kq.is_some_and(|q| {
                q.iter()
                    .any(|k| k.ctx_kind == CTX_SERVER && k.stream_id == ex.stream_id)
            })
    }

    /// A pushed message's CONSUMER span: the child of the message's context (its first
    /// link), with the span id the kernel gave the thread reading it (the parent of the
    /// calls it makes while processing), and the thread's parent for header-less calls.
    fn consumer(
        &mut self,
        pid: u32,
        ex: &mut Exchange,
        kq: Option<&mut VecDeque<CtxEvent>>,
        stats: &Stats,
    ) {
        let parent = ex
            .consumer()
            .and_then(|op| op.links.first())
            .map(|c| TraceParent {
                trace_id: c.trace_id,
                span_id: c.span_id,
                flags: c.flags,
            });
        let kernel = kq.and_then(|q| take_server(q, ex.req_start, ex.tid));
        let mut ctx = match (&parent, &kernel) {
            (Some(tp), _) => {
                let mut ctx = SpanCtx::from_remote(tp, None, &mut self.ids);
                let flags = self.sampler.flags(&tp.trace_id, Some(tp.flags));
                ctx.flags = (ctx.flags & !0xff) | flags as u32;
                ctx
            }
            (None, Some(k)) => SpanCtx {
                trace_id: k.trace_id,
                span_id: k.span_id,
                parent_span_id: None,
                flags: k.trace_flags as u32,
                trace_state: String::new(),
                invalid_parent: false,
            },
            (None, None) => self.new_trace(),
        };
        if let Some(k) = &kernel {
            ctx.span_id = k.span_id;
            if k.trace_id != ctx.trace_id {
                stats::inc(&stats.context_mismatch);
            }
        }
        let reading = self.serving.entry((pid, ex.tid)).or_default();
        if reading.len() >= LINK_QUEUE {
            reading.remove(0);
        }
        reading.push(ctx.clone());
        ex.ctx = Some(ctx);
    }

    /// A new trace, sampled or not by the ratio.
    fn new_trace(&mut self) -> SpanCtx {
        let mut ctx = SpanCtx::root(&mut self.ids);
        ctx.flags = (ctx.flags & !0xff) | self.sampler.flags(&ctx.trace_id, None) as u32;
        ctx
    }

    /// What the goroutine that wrote the HEADERS of `ex`, a Go HTTP/2 client stream,
    /// serves. net/http writes each stream's HEADERS from a goroutine of the stream's own
    /// (started by the caller, whose context it inherits) and flushes them alone, so the
    /// socket's caller at that record is the stream's. grpc-go's connection writer is
    /// shared: the kernel reports each stream's caller with its stream id (over TLS; on
    /// h2c its ids come as CTX_INJECTED). Several net/http streams opened by one record,
    /// or no caller reported by then: no parent, counted.
    fn h2_caller(
        &self,
        ex: &Exchange,
        kq: Option<&mut VecDeque<CtxEvent>>,
        stats: &Stats,
    ) -> Option<CtxEvent> {
        if !self.propagating {
            return None;
        }
        // None reported on the socket: the kernel does not follow this process's
        // goroutines (not probed yet), as for HTTP/1 not counted.
        let q = kq.filter(|q| q.iter().any(|k| k.ctx_kind == CTX_CALLER))?;
        let caller = if ex.http().is_some_and(|h| h.grpc) {
            take_stream_caller(q, ex.stream_id, ex.req_start)
        } else if self.shared_records.contains(&(ex.req_start, ex.tid)) {
            None
        } else {
            take_caller(q, ex.req_start)
        };
        if caller.is_none() {
            stats::inc(&stats.go_context_unknown_h2_client);
        }
        caller
    }

    /// A Go call's span under the request its goroutine serves (a CTX_CALLER).
    fn caller_child(&mut self, k: &CtxEvent) -> SpanCtx {
        SpanCtx {
            trace_id: k.trace_id,
            span_id: self.ids.span_id(),
            parent_span_id: Some(k.parent_span_id),
            flags: HAS_IS_REMOTE | k.trace_flags as u32,
            trace_state: String::new(),
            invalid_parent: false,
        }
    }

    /// A request the kernel put a header in: exactly the ids it wrote.
    fn injected(&mut self, pid: u32, tid: u32, k: &CtxEvent, stats: &Stats) -> SpanCtx {
        if k.ctx_flags & CTX_FLAG_AMBIGUOUS != 0 {
            stats::inc(&stats.parents_ambiguous);
        }
        // A Go process's thread may have served another request than the goroutine
        // making this call (the kernel only learns it is Go shortly after it starts),
        // unless the kernel took the parent from the sending goroutine itself.
        let by_goroutine = k.ctx_flags & CTX_FLAG_GOROUTINE != 0;
        let parent = (k.parent_span_id != [0; 8]
            && (by_goroutine || !self.goroutines.contains(&pid)))
        .then_some(k.parent_span_id);
        let trace_state = parent
            .and_then(|p| {
                self.serving
                    .get(&(pid, tid))?
                    .iter()
                    .find(|s| s.span_id == p)
                    .map(|s| s.trace_state.clone())
            })
            .unwrap_or_default();
        SpanCtx {
            trace_id: k.trace_id,
            span_id: k.span_id,
            parent_span_id: parent,
            flags: HAS_IS_REMOTE | k.trace_flags as u32,
            trace_state,
            invalid_parent: false,
        }
    }

    /// A server request without a header: the child of the client's request when that
    /// was seen, else a trace of its own, provisional only if the client is a socket
    /// traced here (its request will come). `kernel`: the ids the kernel gave it, which
    /// its calls carry already.
    fn server_root(
        &mut self,
        key: LinkKey,
        start: u64,
        client_traced: bool,
        kernel: Option<&CtxEvent>,
        stats: &Stats,
    ) -> SpanCtx {
        if let Some(client) = self.clients.get_mut(&key).and_then(VecDeque::pop_front) {
            stats::inc(&stats.links_made);
            let Some(k) = kernel else {
                return linked_child(&client, self.ids.span_id());
            };
            // Its calls went out in the kernel's trace: that trace joins the client's.
            self.aliases.insert(
                k.trace_id,
                Alias {
                    trace_id: client.trace_id,
                    root_span_id: k.span_id,
                    parent_span_id: client.span_id,
                    flags: client.flags & 0xff,
                    trace_state: client.trace_state.clone(),
                },
            );
            return linked_child(&client, k.span_id);
        }
        let ctx = match kernel {
            Some(k) => SpanCtx {
                trace_id: k.trace_id,
                span_id: k.span_id,
                parent_span_id: None,
                flags: HAS_IS_REMOTE | k.trace_flags as u32,
                trace_state: String::new(),
                invalid_parent: false,
            },
            None => self.new_trace(),
        };
        let room = self.servers.len() < LINK_KEYS || self.servers.contains_key(&key);
        if !room || !self.local_ips.contains(&key.client.0) {
            return ctx;
        }
        let q = self.servers.entry(key).or_default();
        // Known here: by the kernel at the read, or because its requests were seen before.
        if client_traced || self.clients.contains_key(&key) {
            push_bounded(q, (ctx.trace_id, ctx.span_id));
            self.provisional
                .insert(ctx.trace_id, start.saturating_add(LINK_WAIT_NS));
        } else {
            // An untraced local client: the span goes now. The mark keeps the order should
            // the client turn out traced after all (a connection older than the collector,
            // whose first send the kernel noted after this read): that request pairs with
            // the mark, not with the next server request.
            if q.len() >= UNHELD_MARKS {
                q.pop_front();
            }
            q.push_back((ctx.trace_id, ctx.span_id));
        }
        ctx
    }

    /// A client request without a header: the server end, if traced here, is its child.
    fn offer_client(&mut self, key: LinkKey, ctx: &SpanCtx, stats: &Stats) {
        if let Some((trace_id, span_id)) = self.servers.get_mut(&key).and_then(VecDeque::pop_front)
        {
            // The server read it first: its provisional trace is this one.
            if self.provisional.remove(&trace_id).is_some() {
                stats::inc(&stats.links_made);
                stats::inc(&stats.links_server_first);
                self.aliases.insert(
                    trace_id,
                    Alias {
                        trace_id: ctx.trace_id,
                        root_span_id: span_id,
                        parent_span_id: ctx.span_id,
                        flags: ctx.flags & 0xff,
                        trace_state: ctx.trace_state.clone(),
                    },
                );
            }
            return;
        }
        if self.clients.len() < LINK_KEYS || self.clients.contains_key(&key) {
            push_bounded(self.clients.entry(key).or_default(), ctx.clone());
        }
    }

    /// An address is the local end of a traced socket.
    pub fn note_local(&mut self, ip: IpAddr) {
        if self.local_ips.len() < LOCAL_IPS {
            self.local_ips.insert(ip);
        }
    }

    /// Re-labels `ctx` if its trace was provisional and has been linked since; says whether
    /// the span must still wait (`now` is event time, ns).
    pub fn resolve(&mut self, ctx: &mut SpanCtx, now: u64) -> Ready {
        for _ in 0..16 {
            if let Some(a) = self.aliases.get(&ctx.trace_id) {
                if ctx.span_id == a.root_span_id {
                    ctx.parent_span_id = Some(a.parent_span_id);
                    ctx.flags = (ctx.flags & !0xff) | IS_REMOTE | HAS_IS_REMOTE | a.flags;
                    ctx.trace_state = a.trace_state.clone();
                } else {
                    ctx.flags = (ctx.flags & !0xff) | a.flags;
                }
                ctx.trace_id = a.trace_id;
                continue;
            }
            return match self.provisional.get(&ctx.trace_id) {
                Some(&deadline) if now < deadline => Ready::Wait,
                _ => Ready::Now,
            };
        }
        Ready::Now
    }

    /// Forgets provisional traces past their wait; bounds the aliases.
    pub fn expire(&mut self, now: u64, stats: &Stats) {
        let before = self.provisional.len();
        self.provisional.retain(|_, d| now < *d);
        stats::add(
            &stats.links_timed_out,
            (before - self.provisional.len()) as u64,
        );
        if self.aliases.len() > LINK_KEYS {
            self.aliases.clear();
        }
    }

    /// A server exchange ended: its thread no longer serves it.
    pub fn ended(&mut self, pid: u32, side: Side, ex: &Exchange) {
        if side != Side::Server && ex.consumer().is_none() {
            return;
        }
        let (Some(ctx), Some(reading)) = (&ex.ctx, self.serving.get_mut(&(pid, ex.tid))) else {
            return;
        };
        reading.retain(|r| r.span_id != ctx.span_id);
        if reading.is_empty() {
            self.serving.remove(&(pid, ex.tid));
        }
    }

    /// A connection closed on one end: what it left unmatched will not be matched.
    pub fn closed(&mut self, side: Side, peer: &Peer) {
        let key = LinkKey::new(peer, side);
        match side {
            Side::Client => {
                self.clients.remove(&key);
            }
            Side::Server => {
                self.servers.remove(&key);
            }
        }
    }

    /// The process exited: forget its threads.
    pub fn exited(&mut self, pid: u32) {
        self.serving.retain(|k, _| k.0 != pid);
        self.goroutines.remove(&pid);
        self.h2_servers.remove(&pid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::{HttpMessage, Message};
    use crate::events::ConnTuple;
    use crate::protocols::http1::RequestHead;

    fn req(e: &mut Exchange) -> &mut RequestHead {
        &mut e.http_mut().unwrap().req
    }

    fn ex(tid: u32) -> Exchange {
        let req = RequestHead {
            method: "GET".into(),
            target: "/".into(),
            version: 11,
            host: None,
            user_agent: None,
            traceparent: None,
            tracestate: None,
            content_length: None,
            chunked: false,
            expect_continue: false,
            connection_close: false,
        };
        Exchange {
            tid,
            ctx: None,
            req_start: 0,
            req_end: None,
            stream_id: 0,
            key: 0,
            msg: Message::Http(HttpMessage {
                req,
                req_body: None,
                resp: None,
                grpc: false,
                grpc_status: None,
            }),
        }
    }

    fn tuple(sport: u16, dport: u16, netns: u32) -> ConnTuple {
        let mut t = ConnTuple {
            family: 2,
            sport,
            dport,
            netns,
            ..Default::default()
        };
        t.saddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        t.daddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        t
    }

    /// The client's and the server's view of one loopback connection.
    fn peers(netns_server: u32) -> (Peer, Peer) {
        (
            Peer::of(&tuple(40000, 8080, 7)),
            Peer::of(&tuple(8080, 40000, netns_server)),
        )
    }

    #[test]
    fn a_server_span_waits_only_for_a_client_traced_here() {
        use std::sync::atomic::Ordering::Relaxed;
        let stats = Stats::default();
        let (cp, sp) = peers(7);
        let mut c = Contexts::default();
        c.note_local(cp.local);
        // An untraced local client (a load generator): the span is ready at once, and
        // its end is not a lost link.
        for _ in 0..10 {
            let mut sv = ex(2);
            c.assign(20, Side::Server, &sp, false, false, &mut sv, None, &stats);
            c.ended(20, Side::Server, &sv);
            let mut ctx = sv.ctx.unwrap();
            assert_eq!(ctx.parent_span_id, None);
            assert_eq!(c.resolve(&mut ctx, 0), Ready::Now);
        }
        c.expire(u64::MAX, &stats);
        assert_eq!(stats.links_timed_out.load(Relaxed), 0);
        assert!(
            c.servers
                .get(&LinkKey::new(&sp, Side::Server))
                .unwrap()
                .len()
                <= UNHELD_MARKS
        );
        // A traced one: the span waits for the client's request, which names its parent.
        let mut sv = ex(2);
        c.closed(Side::Server, &sp);
        c.assign(20, Side::Server, &sp, true, false, &mut sv, None, &stats);
        let mut svc = sv.ctx.clone().unwrap();
        assert_eq!(c.resolve(&mut svc.clone(), 0), Ready::Wait);
        let mut cl = ex(1);
        c.assign(10, Side::Client, &cp, false, false, &mut cl, None, &stats);
        assert_eq!(c.resolve(&mut svc, 0), Ready::Now);
        assert_eq!(svc.parent_span_id, Some(cl.ctx.unwrap().span_id));
        assert_eq!(stats.links_timed_out.load(Relaxed), 0);
    }

    #[test]
    fn a_client_noted_late_does_not_shift_the_pairs() {
        // A connection older than the collector: the server read its first request before
        // the kernel knew the client; the client's record of it comes after. The second
        // request must pair with the second, not the first.
        let stats = Stats::default();
        let (cp, sp) = peers(7);
        let mut c = Contexts::default();
        c.note_local(cp.local);
        let (mut s1, mut c1) = (ex(2), ex(1));
        c.assign(20, Side::Server, &sp, false, false, &mut s1, None, &stats);
        c.ended(20, Side::Server, &s1);
        c.assign(10, Side::Client, &cp, false, false, &mut c1, None, &stats);
        let (mut c2, mut s2) = (ex(1), ex(2));
        c.assign(10, Side::Client, &cp, false, false, &mut c2, None, &stats);
        c.assign(20, Side::Server, &sp, true, false, &mut s2, None, &stats);
        let (c1, c2, s2) = (c1.ctx.unwrap(), c2.ctx.unwrap(), s2.ctx.unwrap());
        assert_eq!(s2.parent_span_id, Some(c2.span_id));
        assert_ne!(s2.parent_span_id, Some(c1.span_id));
        assert_eq!(s1.ctx.unwrap().parent_span_id, None);
    }

    #[test]
    fn links_in_either_order() {
        let stats = Stats::default();
        let (cp, sp) = peers(7);
        let mut c = Contexts::default();
        c.note_local(cp.local);
        // Client first.
        let (mut cl, mut sv) = (ex(1), ex(2));
        c.assign(10, Side::Client, &cp, true, false, &mut cl, None, &stats);
        c.assign(20, Side::Server, &sp, true, false, &mut sv, None, &stats);
        c.ended(20, Side::Server, &sv);
        let (clc, svc) = (cl.ctx.unwrap(), sv.ctx.unwrap());
        assert_eq!(svc.trace_id, clc.trace_id);
        assert_eq!(svc.parent_span_id, Some(clc.span_id));
        // Server first: the server's trace is provisional; what its thread calls meanwhile
        // belongs to it; the client's request re-labels both.
        let (mut cl, mut sv, mut call) = (ex(1), ex(2), ex(2));
        c.assign(20, Side::Server, &sp, true, false, &mut sv, None, &stats);
        let mut svc = sv.ctx.clone().unwrap();
        assert_eq!(c.resolve(&mut svc.clone(), 0), Ready::Wait);
        c.assign(
            20,
            Side::Client,
            &Peer::of(&tuple(41000, 9090, 7)),
            true,
            false,
            &mut call,
            None,
            &stats,
        );
        c.assign(10, Side::Client, &cp, true, false, &mut cl, None, &stats);
        c.ended(20, Side::Server, &sv);
        let clc = cl.ctx.unwrap();
        let mut callc = call.ctx.unwrap();
        assert_eq!(c.resolve(&mut svc, 0), Ready::Now);
        assert_eq!(c.resolve(&mut callc, 0), Ready::Now);
        assert_eq!(svc.trace_id, clc.trace_id);
        assert_eq!(svc.parent_span_id, Some(clc.span_id));
        assert_eq!(callc.parent_span_id, Some(svc.span_id));
        assert_eq!(callc.trace_id, clc.trace_id);
        assert_eq!(
            stats.links_made.load(std::sync::atomic::Ordering::Relaxed),
            2
        );
        assert_eq!(
            stats
                .links_server_first
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }

    #[test]
    fn a_thread_serving_several_requests_gives_no_parent() {
        let stats = Stats::default();
        let (_, sp) = peers(7);
        let mut c = Contexts::default();
        let (mut a, mut b, mut call) = (ex(3), ex(3), ex(3));
        c.assign(20, Side::Server, &sp, true, false, &mut a, None, &stats);
        c.assign(20, Side::Server, &sp, true, false, &mut b, None, &stats);
        c.assign(
            20,
            Side::Client,
            &Peer::of(&tuple(41000, 9090, 7)),
            true,
            false,
            &mut call,
            None,
            &stats,
        );
        assert_eq!(call.ctx.unwrap().parent_span_id, None);
        assert_eq!(
            stats
                .parents_ambiguous
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        // Once only one is left, calls are its children again.
        c.ended(20, Side::Server, &a);
        let mut call = ex(3);
        c.assign(
            20,
            Side::Client,
            &Peer::of(&tuple(41001, 9090, 7)),
            true,
            false,
            &mut call,
            None,
            &stats,
        );
        assert_eq!(
            call.ctx.unwrap().parent_span_id,
            Some(b.ctx.unwrap().span_id)
        );
    }

    #[test]
    fn an_unlinked_server_waits_then_goes_alone() {
        let stats = Stats::default();
        let (cp, sp) = peers(7);
        let mut c = Contexts::default();
        c.note_local(cp.local);
        let mut sv = ex(2);
        sv.req_start = 1_000;
        c.assign(20, Side::Server, &sp, true, false, &mut sv, None, &stats);
        let mut ctx = sv.ctx.unwrap();
        assert_eq!(c.resolve(&mut ctx, 2_000), Ready::Wait);
        assert_eq!(c.resolve(&mut ctx, 1_000 + LINK_WAIT_NS), Ready::Now);
        assert_eq!(ctx.parent_span_id, None);
        c.expire(1_000 + LINK_WAIT_NS, &stats);
        assert_eq!(
            stats
                .links_timed_out
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }

    fn kctx(kind: u8, ts: u64, tid: u32, trace: u8, span: u8, parent: u8) -> CtxEvent {
        CtxEvent {
            hdr: crate::events::EventHeader {
                kind: crate::events::EVENT_CTX,
                tid,
                ts_ns: ts,
                ..Default::default()
            },
            trace_id: [trace; 16],
            span_id: [span; 8],
            parent_span_id: [parent; 8],
            ctx_kind: kind,
            trace_flags: 1,
            ..Default::default()
        }
    }

    #[test]
    fn a_go_call_keeps_the_parent_only_its_goroutine_gave() {
        let stats = Stats::default();
        let mut c = Contexts::default();
        c.goroutines.insert(20);
        let by_thread = kctx(CTX_INJECTED, 10, 3, 5, 6, 7);
        assert_eq!(c.injected(20, 3, &by_thread, &stats).parent_span_id, None);
        let by_goroutine = CtxEvent {
            ctx_flags: CTX_FLAG_GOROUTINE,
            ..by_thread
        };
        let ctx = c.injected(20, 3, &by_goroutine, &stats);
        assert_eq!(ctx.parent_span_id, Some([7; 8]));
        assert_eq!((ctx.trace_id, ctx.span_id), ([5; 16], [6; 8]));
        // A process not known as Go: the thread's parent as before.
        assert_eq!(
            c.injected(21, 3, &by_thread, &stats).parent_span_id,
            Some([7; 8])
        );
    }

    /// A Go client request without a header at `ts` on `kq`'s socket, sent by pid 20 (Go).
    fn go_call(c: &mut Contexts, kq: &mut VecDeque<CtxEvent>, ts: u64, tid: u32) -> SpanCtx {
        let stats = Stats::default();
        let cp = Peer::of(&tuple(41000, 5432, 7));
        let mut call = ex(tid);
        call.req_start = ts;
        c.assign(
            20,
            Side::Client,
            &cp,
            true,
            false,
            &mut call,
            Some(kq),
            &stats,
        );
        call.ctx.unwrap()
    }

    #[test]
    fn a_go_call_without_a_header_is_the_child_of_its_goroutines_request() {
        let mut c = Contexts::default();
        c.goroutines.insert(20);
        // Captured on one pooled connection: request 6 (trace 5) queries twice, then a
        // goroutine serving no request, then request 9 (trace 8), each reported once, at
        // the time of the send that follows it. Threads do not matter (goroutines move).
        let mut kq: VecDeque<CtxEvent> = [
            kctx(CTX_CALLER, 100, 3, 5, 0, 6),
            kctx(CTX_CALLER, 300, 4, 0, 0, 0),
            kctx(CTX_CALLER, 400, 3, 8, 0, 9),
        ]
        .into();
        for ts in [100, 150] {
            let ctx = go_call(&mut c, &mut kq, ts, 4);
            assert_eq!((ctx.trace_id, ctx.parent_span_id), ([5; 16], Some([6; 8])));
            assert_eq!(ctx.flags & 0xff, 1);
            assert_ne!(ctx.span_id, [0; 8]);
        }
        // The earlier caller stays as long as no later one came before the request.
        assert_eq!(kq.len(), 3);
        let none = go_call(&mut c, &mut kq, 300, 3);
        assert_eq!(none.parent_span_id, None);
        assert!(![[5; 16], [8; 16]].contains(&none.trace_id));
        // Still none for a later call of that goroutine (nothing new was reported).
        assert_eq!(go_call(&mut c, &mut kq, 350, 3).parent_span_id, None);
        let ctx = go_call(&mut c, &mut kq, 410, 9);
        assert_eq!((ctx.trace_id, ctx.parent_span_id), ([8; 16], Some([9; 8])));
        // Only the newest caller is kept for the calls after.
        assert_eq!(kq.len(), 1);
    }

    #[test]
    fn a_go_h2_stream_is_the_child_of_the_goroutine_that_wrote_its_headers() {
        use std::sync::atomic::Ordering::Relaxed;
        let stats = Stats::default();
        let mut c = Contexts {
            propagating: true,
            ..Default::default()
        };
        c.goroutines.insert(20);
        let cp = Peer::of(&tuple(41000, 8443, 7));
        let stream = |c: &mut Contexts, kq: &mut VecDeque<CtxEvent>, id, ts, grpc| {
            let mut s = ex(3);
            s.stream_id = id;
            s.req_start = ts;
            s.http_mut().unwrap().grpc = grpc;
            c.assign(20, Side::Client, &cp, true, false, &mut s, Some(kq), &stats);
            s.ctx.unwrap()
        };
        // Streams 1 and 3 opened by requests 6 and 9, each reported before its record;
        // stream 5 by request 9's goroutine again (nothing new reported).
        let mut kq: VecDeque<CtxEvent> = [kctx(CTX_CALLER, 100, 3, 5, 0, 6)].into();
        let s1 = stream(&mut c, &mut kq, 1, 100, false);
        assert_eq!((s1.trace_id, s1.parent_span_id), ([5; 16], Some([6; 8])));
        kq.push_back(kctx(CTX_CALLER, 200, 4, 8, 0, 9));
        let s3 = stream(&mut c, &mut kq, 3, 200, false);
        assert_eq!((s3.trace_id, s3.parent_span_id), ([8; 16], Some([9; 8])));
        let s5 = stream(&mut c, &mut kq, 5, 250, false);
        assert_eq!(s5.parent_span_id, Some([9; 8]));
        assert_eq!(stats.go_context_unknown_h2_client.load(Relaxed), 0);
        assert_eq!(
            stream(&mut c, &mut kq, 7, 260, false).parent_span_id,
            Some([9; 8])
        );
        assert_eq!(stats.go_context_unknown_h2_client.load(Relaxed), 0);
        // gRPC: grpc-go's writer serves every stream; each stream's caller comes with its
        // stream id (over TLS), both in one record here. The socket's caller is not theirs.
        let grpc = |stream_id, trace, parent| CtxEvent {
            stream_id,
            ..kctx(CTX_CALLER, 265, 3, trace, 0, parent)
        };
        kq.extend([grpc(11, 2, 3), grpc(9, 12, 13)]);
        let g9 = stream(&mut c, &mut kq, 9, 270, true);
        assert_eq!((g9.trace_id, g9.parent_span_id), ([12; 16], Some([13; 8])));
        let g11 = stream(&mut c, &mut kq, 11, 270, true);
        assert_eq!((g11.trace_id, g11.parent_span_id), ([2; 16], Some([3; 8])));
        // Taken once; none for stream 15: no parent, counted.
        assert_eq!(stream(&mut c, &mut kq, 15, 280, true).parent_span_id, None);
        assert_eq!(stats.go_context_unknown_h2_client.load(Relaxed), 1);
        // A net/http stream is not given a gRPC stream's caller.
        kq.push_back(grpc(17, 2, 3));
        assert_eq!(
            stream(&mut c, &mut kq, 17, 290, false).parent_span_id,
            Some([9; 8])
        );
        // Two streams' HEADERS in one record: whose is unknown.
        c.shared_records = vec![(300, 3)];
        kq.push_back(kctx(CTX_CALLER, 300, 3, 5, 0, 6));
        assert_eq!(stream(&mut c, &mut kq, 11, 300, false).parent_span_id, None);
        assert_eq!(stream(&mut c, &mut kq, 13, 300, false).parent_span_id, None);
        assert_eq!(stats.go_context_unknown_h2_client.load(Relaxed), 3);
        // Only a later caller on the socket: no parent, counted.
        c.shared_records.clear();
        let mut later: VecDeque<CtxEvent> = [kctx(CTX_CALLER, 500, 3, 5, 0, 6)].into();
        assert_eq!(
            stream(&mut c, &mut later, 1, 400, false).parent_span_id,
            None
        );
        assert_eq!(stats.go_context_unknown_h2_client.load(Relaxed), 4);
        // None at all (the process's goroutines not followed yet): no parent, not counted.
        let mut none = VecDeque::new();
        assert_eq!(
            stream(&mut c, &mut none, 1, 400, false).parent_span_id,
            None
        );
        assert_eq!(stats.go_context_unknown_h2_client.load(Relaxed), 4);
    }

    #[test]
    fn a_go_calls_unsampled_request_keeps_its_calls_unsampled() {
        let mut c = Contexts::default();
        c.goroutines.insert(20);
        let mut kq: VecDeque<CtxEvent> = [CtxEvent {
            trace_flags: 0,
            ..kctx(CTX_CALLER, 100, 3, 5, 0, 6)
        }]
        .into();
        let ctx = go_call(&mut c, &mut kq, 120, 3);
        assert_eq!(ctx.parent_span_id, Some([6; 8]));
        assert_eq!(ctx.flags & 1, 0);
    }

    #[test]
    fn a_caller_does_not_parent_what_it_did_not_send() {
        let mut c = Contexts::default();
        c.goroutines.insert(20);
        // Reported for a later send: a request that started before has no parent.
        let mut kq: VecDeque<CtxEvent> = [kctx(CTX_CALLER, 500, 3, 5, 0, 6)].into();
        assert_eq!(go_call(&mut c, &mut kq, 400, 3).parent_span_id, None);
        // A process not known as Go keeps the thread rules: the caller is not its.
        assert_eq!(kq.len(), 1);
        let stats = Stats::default();
        let mut call = ex(3);
        call.req_start = 600;
        let cp = Peer::of(&tuple(41000, 5432, 7));
        c.assign(
            21,
            Side::Client,
            &cp,
            true,
            false,
            &mut call,
            Some(&mut kq),
            &stats,
        );
        assert_eq!(call.ctx.unwrap().parent_span_id, None);
        // Nor an HTTP/2 stream when the kernel reports no callers (not propagating).
        let mut stream = ex(3);
        stream.req_start = 600;
        stream.stream_id = 3;
        c.assign(
            20,
            Side::Client,
            &cp,
            true,
            false,
            &mut stream,
            Some(&mut kq),
            &stats,
        );
        assert_eq!(stream.ctx.unwrap().parent_span_id, None);
        // An injected request keeps the kernel's ids, not the caller's.
        let mut kq: VecDeque<CtxEvent> = [
            kctx(CTX_CALLER, 700, 3, 5, 0, 6),
            CtxEvent {
                ctx_flags: CTX_FLAG_GOROUTINE,
                ..kctx(CTX_INJECTED, 700, 3, 8, 11, 9)
            },
        ]
        .into();
        let ctx = go_call(&mut c, &mut kq, 700, 3);
        assert_eq!(
            (ctx.trace_id, ctx.span_id, ctx.parent_span_id),
            ([8; 16], [11; 8], Some([9; 8]))
        );
    }

    fn count(c: &std::sync::atomic::AtomicU64) -> u64 {
        c.load(std::sync::atomic::Ordering::Relaxed)
    }

    #[test]
    fn kernel_ids_win_and_pipelined_requests_take_theirs_in_order() {
        let stats = Stats::default();
        let (_, sp) = peers(7);
        let cp = Peer::of(&tuple(41000, 9090, 7));
        let mut c = Contexts::default();
        // The server read a request with a tracestate; the kernel gave it trace 5, span 6.
        let mut sv = ex(3);
        sv.req_start = 100;
        req(&mut sv).tracestate = Some("congo=t61".into());
        req(&mut sv).traceparent = Some(format!("00-{}-{}-01", "05".repeat(16), "0a".repeat(8)));
        let mut kq: VecDeque<CtxEvent> = [kctx(CTX_SERVER, 100, 3, 5, 6, 0)].into();
        c.assign(
            20,
            Side::Server,
            &sp,
            true,
            false,
            &mut sv,
            Some(&mut kq),
            &stats,
        );
        let svc = sv.ctx.clone().unwrap();
        assert_eq!((svc.trace_id, svc.span_id), ([5; 16], [6; 8]));
        assert_eq!(svc.parent_span_id, Some([0x0a; 8]));
        assert!(kq.is_empty());
        // Its thread sent three pipelined requests in one send: the kernel wrote spans
        // 7, 8, 9 (in order), all children of span 6. A stale injection of an earlier
        // send whose record was lost is dropped.
        let mut kq: VecDeque<CtxEvent> = [
            kctx(CTX_INJECTED, 150, 3, 5, 1, 6),
            kctx(CTX_INJECTED, 200, 3, 5, 7, 6),
            kctx(CTX_INJECTED, 200, 3, 5, 8, 6),
            kctx(CTX_INJECTED, 200, 3, 5, 9, 6),
        ]
        .into();
        let mut got = vec![];
        for _ in 0..3 {
            let mut call = ex(3);
            call.req_start = 210;
            c.assign(
                20,
                Side::Client,
                &cp,
                true,
                false,
                &mut call,
                Some(&mut kq),
                &stats,
            );
            let cc = call.ctx.unwrap();
            assert_eq!(cc.trace_id, [5; 16]);
            assert_eq!(cc.parent_span_id, Some([6; 8]));
            assert_eq!(cc.trace_state, "congo=t61");
            got.push(cc.span_id[0]);
        }
        assert_eq!(got, [7, 8, 9]);
        assert!(kq.is_empty());
        assert_eq!(count(&stats.requests_not_injected), 0);
    }

    #[test]
    fn http2_requests_take_the_injection_of_their_stream() {
        let stats = Stats::default();
        let cp = Peer::of(&tuple(41000, 50051, 7));
        let mut c = Contexts {
            propagating: true,
            ..Default::default()
        };
        let h2 = |stream: u32, span: u8| CtxEvent {
            stream_id: stream,
            ..kctx(CTX_INJECTED, 10, 1, 2, span, 0)
        };
        // Streams 1, 3, 5 opened in one send; the HEADERS of 1 was never seen (requests
        // are given ids as their HEADERS are read: in order). An HTTP/1 injection is not
        // theirs.
        let mut kq: VecDeque<CtxEvent> = [
            h2(1, 1),
            h2(3, 3),
            kctx(CTX_INJECTED, 10, 1, 2, 9, 0),
            h2(5, 5),
        ]
        .into();
        for (stream, span) in [(3, 3), (5, 5)] {
            let mut call = ex(1);
            call.stream_id = stream;
            req(&mut call).version = 20;
            call.req_start = 20;
            c.assign(
                10,
                Side::Client,
                &cp,
                true,
                false,
                &mut call,
                Some(&mut kq),
                &stats,
            );
            let cc = call.ctx.unwrap();
            assert_eq!((cc.trace_id, cc.span_id), ([2; 16], [span; 8]));
        }
        assert_eq!(kq.len(), 1);
        assert_eq!(kq[0].span_id, [9; 8]);
        // A stream the kernel left alone: new ids, not counted here (the kernel counts).
        let mut call = ex(1);
        call.stream_id = 7;
        req(&mut call).version = 20;
        c.assign(
            10,
            Side::Client,
            &cp,
            true,
            false,
            &mut call,
            Some(&mut kq),
            &stats,
        );
        assert_ne!(call.ctx.unwrap().span_id, [9; 8]);
        assert_eq!(count(&stats.requests_not_injected), 0);
    }

    #[test]
    fn a_request_with_its_own_header_leaves_the_injection_to_the_next() {
        let stats = Stats::default();
        let cp = Peer::of(&tuple(41000, 9090, 7));
        let mut c = Contexts {
            propagating: true,
            ..Default::default()
        };
        let mut kq: VecDeque<CtxEvent> = [kctx(CTX_INJECTED, 10, 1, 2, 3, 0)].into();
        let (mut own, mut next, mut missed) = (ex(1), ex(1), ex(1));
        req(&mut own).traceparent = Some(format!("00-{}-{}-01", "0b".repeat(16), "0c".repeat(8)));
        for e in [&mut own, &mut next] {
            e.req_start = 20;
            c.assign(10, Side::Client, &cp, true, false, e, Some(&mut kq), &stats);
        }
        // The app's span has the header's id; ours is its child, never a second span
        // with that id.
        let o = own.ctx.unwrap();
        assert_eq!(
            (o.trace_id, o.parent_span_id),
            ([0x0b; 16], Some([0x0c; 8]))
        );
        assert_ne!(o.span_id, [0x0c; 8]);
        let n = next.ctx.unwrap();
        assert_eq!(
            (n.trace_id, n.span_id, n.parent_span_id),
            ([2; 16], [3; 8], None)
        );
        // No injection left: not rewritten, counted.
        missed.req_start = 30;
        c.assign(
            10,
            Side::Client,
            &cp,
            true,
            false,
            &mut missed,
            Some(&mut kq),
            &stats,
        );
        assert!(missed.ctx.is_some());
        assert_eq!(count(&stats.requests_not_injected), 1);
    }

    /// What go_h2server.h reports when the serve goroutine takes a stream's HEADERS.
    fn h2_server_ctx(stream: u32, trace: u8, span: u8, header: bool) -> CtxEvent {
        let mut k = kctx(CTX_SERVER, 500, 9, trace, span, 0);
        k.stream_id = stream;
        k.ctx_flags = if header { CTX_FLAG_HEADER } else { 0 };
        k
    }

    #[test]
    fn go_http2_streams_wait_for_and_take_the_kernel_ids_of_their_own_stream() {
        let stats = Stats::default();
        let (_, sp) = peers(7);
        let mut c = Contexts {
            propagating: true,
            ..Default::default()
        };
        c.goroutines.insert(20);
        c.h2_servers.insert(20);
        let stream = |id: u32, tp: Option<u8>| {
            let mut e = ex(3);
            e.req_start = 100;
            e.stream_id = id;
            req(&mut e).traceparent =
                tp.map(|t| format!("00-{}-{}-01", format!("{t:02x}").repeat(16), "0a".repeat(8)));
            e
        };
        let (mut s1, mut s3, mut s5) = (stream(1, None), stream(3, Some(5)), stream(5, Some(5)));
        // Read before the kernel's ids came (they come when the serve goroutine takes
        // the HEADERS): a Go server's stream waits; another process's does not.
        let mut kq: VecDeque<CtxEvent> = VecDeque::new();
        assert!(c.awaits_kernel(20, Side::Server, &s1, Some(&kq)));
        assert!(c.awaits_kernel(20, Side::Server, &s1, None));
        assert!(!c.awaits_kernel(21, Side::Server, &s1, Some(&kq)));
        assert!(!c.awaits_kernel(20, Side::Client, &s1, Some(&kq)));
        kq.extend([
            h2_server_ctx(1, 4, 6, false),
            h2_server_ctx(3, 5, 7, true),
            h2_server_ctx(5, 9, 8, true),
        ]);
        assert!(!c.awaits_kernel(20, Side::Server, &s3, Some(&kq)));
        let mut assign = |e: &mut Exchange, kq: &mut VecDeque<CtxEvent>| {
            c.assign(20, Side::Server, &sp, false, false, e, Some(kq), &stats);
            e.ctx.clone().unwrap()
        };
        // Out of order: each stream takes its own.
        let c3 = assign(&mut s3, &mut kq);
        assert_eq!(
            (c3.trace_id, c3.span_id, c3.parent_span_id),
            ([5; 16], [7; 8], Some([0x0a; 8]))
        );
        let c1 = assign(&mut s1, &mut kq);
        assert_eq!(
            (c1.trace_id, c1.span_id, c1.parent_span_id),
            ([4; 16], [6; 8], None)
        );
        assert_eq!(count(&stats.context_mismatch), 0);
        // The kernel read another trace than the header userspace decoded: counted, the
        // header's trace wins for the span, the kernel's span id (its calls' parent) stays.
        let c5 = assign(&mut s5, &mut kq);
        assert_eq!((c5.trace_id, c5.span_id), ([5; 16], [8; 8]));
        assert_eq!(count(&stats.context_mismatch), 1);
        assert!(kq.is_empty());
        // A header the kernel took that userspace did not see: counted too.
        let mut s7 = stream(7, None);
        kq.push_back(h2_server_ctx(7, 6, 9, true));
        let c7 = assign(&mut s7, &mut kq);
        assert_eq!((c7.trace_id, c7.span_id), ([6; 16], [9; 8]));
        assert_eq!(count(&stats.context_mismatch), 2);
    }

    #[test]
    fn a_header_the_kernel_missed_is_a_counted_mismatch() {
        let stats = Stats::default();
        let (_, sp) = peers(7);
        let mut c = Contexts::default();
        let mut sv = ex(3);
        req(&mut sv).traceparent = Some(format!("00-{}-{}-01", "05".repeat(16), "0a".repeat(8)));
        let mut kq: VecDeque<CtxEvent> = [kctx(CTX_SERVER, 0, 3, 4, 6, 0)].into();
        c.assign(
            20,
            Side::Server,
            &sp,
            true,
            false,
            &mut sv,
            Some(&mut kq),
            &stats,
        );
        let svc = sv.ctx.unwrap();
        // The caller's trace wins for the server span itself.
        assert_eq!((svc.trace_id, svc.span_id), ([5; 16], [6; 8]));
        assert_eq!(count(&stats.context_mismatch), 1);
    }

    #[test]
    fn a_linked_server_brings_the_calls_the_kernel_made_into_the_clients_trace() {
        let stats = Stats::default();
        let (cp, sp) = peers(7);
        let mut c = Contexts::default();
        c.note_local(cp.local);
        // The client's request was not rewritten (propagation off on its socket): linked.
        let mut cl = ex(1);
        c.assign(10, Side::Client, &cp, true, false, &mut cl, None, &stats);
        let mut sv = ex(3);
        let mut kq: VecDeque<CtxEvent> = [kctx(CTX_SERVER, 0, 3, 4, 6, 0)].into();
        c.assign(
            20,
            Side::Server,
            &sp,
            true,
            false,
            &mut sv,
            Some(&mut kq),
            &stats,
        );
        let (clc, svc) = (cl.ctx.unwrap(), sv.ctx.clone().unwrap());
        assert_eq!(svc.trace_id, clc.trace_id);
        assert_eq!(svc.span_id, [6; 8]);
        assert_eq!(svc.parent_span_id, Some(clc.span_id));
        // The server's call went out in the kernel's trace 4: it is re-labelled.
        let mut kq: VecDeque<CtxEvent> = [kctx(CTX_INJECTED, 5, 3, 4, 7, 6)].into();
        let mut call = ex(3);
        call.req_start = 9;
        c.assign(
            20,
            Side::Client,
            &Peer::of(&tuple(41000, 9090, 7)),
            true,
            false,
            &mut call,
            Some(&mut kq),
            &stats,
        );
        let mut callc = call.ctx.unwrap();
        assert_eq!(c.resolve(&mut callc, 0), Ready::Now);
        assert_eq!(callc.trace_id, clc.trace_id);
        assert_eq!(callc.parent_span_id, Some([6; 8]));
    }

    #[test]
    fn loopback_in_another_namespace_is_another_connection() {
        let stats = Stats::default();
        let (cp, sp) = peers(8);
        let mut c = Contexts::default();
        let (mut cl, mut sv) = (ex(1), ex(2));
        c.assign(10, Side::Client, &cp, true, false, &mut cl, None, &stats);
        c.assign(20, Side::Server, &sp, true, false, &mut sv, None, &stats);
        assert_eq!(sv.ctx.unwrap().parent_span_id, None);
    }

    #[test]
    fn a_consumer_span_is_its_messages_child_and_its_threads_parent() {
        use crate::protocols::messaging::{MsgContext, MsgOp, MsgSystem, OpType};
        let stats = Stats::default();
        let (cp, _) = peers(7);
        let mut c = Contexts::default();
        let delivery = |links: Vec<MsgContext>| Exchange {
            tid: 3,
            ctx: None,
            req_start: 100,
            req_end: None,
            stream_id: 1,
            key: 1,
            msg: Message::Messaging(Box::new(MsgOp {
                system: MsgSystem::Rabbitmq,
                op_type: OpType::Process,
                op_name: "process",
                links,
                ..Default::default()
            })),
        };
        let msg = MsgContext {
            trace_id: [5; 16],
            span_id: [6; 8],
            flags: 1,
        };
        // The kernel gave the reading thread span id 9 in the message's trace.
        let mut kq: VecDeque<CtxEvent> = [kctx(CTX_SERVER, 100, 3, 5, 9, 0)].into();
        let mut d = delivery(vec![msg]);
        c.assign(
            30,
            Side::Client,
            &cp,
            false,
            false,
            &mut d,
            Some(&mut kq),
            &stats,
        );
        let ctx = d.ctx.clone().unwrap();
        assert_eq!(ctx.trace_id, [5; 16]);
        assert_eq!(ctx.parent_span_id, Some([6; 8]));
        assert_eq!(ctx.span_id, [9; 8]);
        assert_eq!(count(&stats.context_mismatch), 0);
        // A header-less call the thread makes while processing it: its child.
        let mut call = ex(3);
        c.assign(30, Side::Client, &cp, false, false, &mut call, None, &stats);
        assert_eq!(call.ctx.as_ref().unwrap().parent_span_id, Some([9; 8]));
        // Acknowledged: the thread's next call is not its child.
        c.ended(30, Side::Client, &d);
        let mut later = ex(3);
        c.assign(
            30,
            Side::Client,
            &cp,
            false,
            false,
            &mut later,
            None,
            &stats,
        );
        assert_eq!(later.ctx.unwrap().parent_span_id, None);
        // No message context and no kernel ids: a new trace.
        let mut bare = delivery(Vec::new());
        c.assign(30, Side::Client, &cp, false, false, &mut bare, None, &stats);
        assert_eq!(bare.ctx.unwrap().parent_span_id, None);
    }
}
