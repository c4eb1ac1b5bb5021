//! Span assembly: events → connections → request/response pairs → spans → batches.
//! Pure (no syscalls besides /proc reads), so recorded event streams drive it in tests.

pub mod context;
pub mod db;
pub mod envelope;
pub mod http;
pub mod ids;
pub mod messaging;
pub mod route;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use crate::config::Config;
use crate::conn::{Conn, Done, Side};
use crate::events::{cstr, CtxEvent, Event, PeerEnd, CTX_SERVER, PROC_EXCLUDED, PROC_TRACED};
use crate::otlp::BatchBuilder;
use crate::process::{
    listens_on, ListenProbe, OwnEndpoints, ProcReader, ProcessInfo, ProcessTable,
};
use crate::protocols::http2::kernel_frames;
use crate::stats::{self, Stats};

pub use crate::record::{AttrValue, SpanKind, SpanRecord};

/// A finished exchange and what its span needs, while it waits.
struct Pending {
    done: Done,
    peer: Arc<crate::conn::Peer>,
    process: Arc<ProcessInfo>,
}

/// What userspace decided about a process after its exec; the runtime writes it into
/// the kernel's `proc_state` map (None = remove the entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub pid: u32,
    pub state: Option<u32>,
}

/// A client socket a traced process opened before the kernel could mark it for header
/// injection (before the collector started, or before the process was traced): the runtime
/// puts it into the injection sockhash, so its next requests carry headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Adopt {
    pub pid: u32,
    pub fd: u32,
    pub tuple: crate::events::ConnTuple,
}

/// Whether a connection's client end is a socket traced here (its span will come): the
/// kernel knew it, and its process was not found untraced at its exec.
fn client_traced(end: PeerEnd, untraced: &HashSet<u32>) -> bool {
    matches!(end, PeerEnd::Traced(pid) if !untraced.contains(&pid))
}

/// (time, thread) of the records that opened more than one HTTP/2 stream still without
/// ids: which goroutine wrote which stream's HEADERS is then unknown.
fn shared_records(pending: &VecDeque<crate::conn::Exchange>) -> Vec<(u64, u32)> {
    let unassigned = |ex: &&crate::conn::Exchange| ex.stream_id != 0 && ex.ctx.is_none();
    // Mostly one stream at a time: no allocation then.
    if pending.iter().filter(unassigned).nth(1).is_none() {
        return Vec::new();
    }
    let open: Vec<(u64, u32)> = pending
        .iter()
        .filter(unassigned)
        .map(|ex| (ex.req_start, ex.tid))
        .collect();
    let mut shared: Vec<(u64, u32)> = open
        .iter()
        .filter(|r| open.iter().filter(|o| o == r).count() > 1)
        .copied()
        .collect();
    shared.sort_unstable();
    shared.dedup();
    shared
}

/// An OTLP export request (an SDK, or a collector, sending telemetry): OTLP/HTTP to
/// `.../v1/{traces,metrics,logs}` or an OTLP/gRPC service call.
fn is_otlp_export(ex: &crate::conn::Exchange) -> bool {
    let Some(h) = ex.http() else {
        return false;
    };
    let path = h.req.target.split('?').next().unwrap_or_default();
    path.starts_with("/opentelemetry.proto.collector.")
        || (h.req.method == "POST"
            && ["/v1/traces", "/v1/metrics", "/v1/logs"]
                .iter()
                .any(|p| path.ends_with(p)))
}

/// Converts the kernel's monotonic timestamps to Unix time.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub offset_ns: i128,
}

impl Clock {
    pub fn now() -> Clock {
        let mut mono = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: writes one timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut mono) };
        let real = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        let mono = mono.tv_sec as i128 * 1_000_000_000 + mono.tv_nsec as i128;
        Clock {
            offset_ns: real - mono,
        }
    }

    pub fn unix(&self, mono_ns: u64) -> u64 {
        (mono_ns as i128 + self.offset_ns).max(0) as u64
    }
}

/// Connections idle longer than this are dropped (their close was never seen).
const IDLE_NS: u64 = 300_000_000_000;
/// Connections idle this long give back their buffers' spare capacity.
const COMPACT_AFTER_NS: u64 = 2_000_000_000;
const MAX_CONNS: usize = 65_536;
/// Kernel ids waiting for their request, per socket (more: the request was not seen).
const KCTX_PER_SOCK: usize = 64;
/// How often a Go HTTP/2 server not (yet) probed is asked about again.
const H2_PROBE_RECHECK_NS: u64 = 3_000_000_000;

pub struct Assembler {
    cfg: Arc<Config>,
    stats: Arc<Stats>,
    clock: Clock,
    /// By socket: the byte stream belongs to the socket, whichever process (after a
    /// fork) reads or writes it.
    conns: HashMap<u64, Conn>,
    procs: ProcessTable,
    listens: ListenProbe,
    /// Processes whose exec was matched as not traced: their pending-era events are dropped.
    untraced: HashSet<u32>,
    contexts: context::Contexts,
    /// The kernel's ids for requests not parsed yet, by socket (context_propagation).
    kctx: HashMap<u64, VecDeque<CtxEvent>>,
    /// Go HTTP/2 servers found not probed, and when (event time).
    h2_unprobed: HashMap<u32, u64>,
    /// Spans of provisional traces, waiting for a same-node link.
    waiting: Vec<Pending>,
    /// Kafka offsets produced here, for links from the polls that return them.
    produced: messaging::Produced,
    pub batch: BatchBuilder,
    done: Vec<Done>,
    adopt: Vec<Adopt>,
    /// Go processes found since the last `take_goroutine_pids`.
    goroutine_pids: Vec<u32>,
    /// Go programs started since the last `take_go_execs`, to probe at once.
    go_execs: Vec<u32>,
    /// Processes seen exporting OTLP themselves (an OpenTelemetry SDK).
    sdk_pids: HashSet<u32>,
    /// Where this collector listens: requests to it never become spans.
    own: OwnEndpoints,
    /// When `own` was read (event time), and whether it may be read again from /proc
    /// (not when replaying recordings).
    own_read_ns: u64,
    own_reread: bool,
    /// Local ports a read of our listeners found not ours, and when.
    not_ours: HashMap<u16, u64>,
    /// Lines for the collector's log, taken by `take_notices`.
    notices: Vec<String>,
}

impl Assembler {
    pub fn new(cfg: Arc<Config>, stats: Arc<Stats>, clock: Clock) -> Self {
        let sampler = ids::Sampler::new(&cfg.sampling);
        Assembler {
            cfg,
            stats,
            clock,
            conns: HashMap::new(),
            procs: ProcessTable::default(),
            listens: listens_on,
            untraced: HashSet::new(),
            contexts: context::Contexts::new(sampler),
            kctx: HashMap::new(),
            h2_unprobed: HashMap::new(),
            waiting: Vec::new(),
            produced: Default::default(),
            batch: BatchBuilder::new(),
            done: Vec::new(),
            adopt: Vec::new(),
            goroutine_pids: Vec::new(),
            go_execs: Vec::new(),
            sdk_pids: HashSet::new(),
            own: OwnEndpoints::default(),
            own_read_ns: 0,
            own_reread: true,
            not_ours: HashMap::new(),
            notices: Vec::new(),
        }
    }

    /// Lines for the collector's log since the last call.
    pub fn take_notices(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notices)
    }

    /// Where this collector listens now (read again as its receivers start and stop);
    /// `now`: event time.
    pub fn set_own_endpoints(&mut self, own: OwnEndpoints, now: u64) {
        self.own = own;
        self.own_read_ns = now;
    }

    /// Whether a client request to `peer`, started at `start`, went to this collector.
    /// The other receivers start after this one and open their ports at any time, so a
    /// request to a local port not known as ours reads our listeners again unless a read
    /// made after the request started said so already; a port is read for at most every
    /// 100 ms (a busy local service costs a few reads a second, not one per request).
    fn reaches_collector(&mut self, peer: &crate::conn::Peer, start: u64, now: u64) -> bool {
        let ours = |o: &OwnEndpoints| o.is_ours(peer.remote, peer.remote_port, peer.netns);
        if ours(&self.own) {
            return true;
        }
        let local = peer.remote.is_loopback() || self.own.addrs.contains(&peer.remote);
        if !self.own_reread || !local || self.own_read_ns >= start {
            return false;
        }
        let checked = self.not_ours.get(&peer.remote_port).copied().unwrap_or(0);
        if checked >= start || now.saturating_sub(checked) < 100_000_000 {
            return false;
        }
        self.set_own_endpoints(OwnEndpoints::read(), now);
        if ours(&self.own) {
            return true;
        }
        if self.not_ours.len() >= 4096 {
            self.not_ours.clear();
        }
        self.not_ours.insert(peer.remote_port, now);
        false
    }

    /// A process sent an OTLP export: it is SDK-instrumented.
    fn sdk_seen(&mut self, pid: u32, comm: &str) {
        if !self.sdk_pids.insert(pid) {
            return;
        }
        stats::set(
            &self.stats.sdk_instrumented_processes,
            self.sdk_pids.len() as u64,
        );
        let p = self.procs.get(pid, comm);
        let then = if self.cfg.skip_sdk_instrumented {
            "no spans are made for it from now on (skip_sdk_instrumented); its requests still link its neighbours' spans to its own"
        } else {
            "its spans are still made (skip_sdk_instrumented: false)"
        };
        self.notices.push(format!(
            "process {pid} ({}, service.name {}) exports OTLP itself: SDK-instrumented; {then}",
            if p.exe_path.is_empty() {
                comm
            } else {
                &p.exe_path
            },
            p.service_name
        ));
    }

    /// Go processes seen since the last call: the kernel must not keep per-thread
    /// contexts for them (a goroutine's call may run on a thread serving another request).
    pub fn take_goroutine_pids(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.goroutine_pids)
    }

    /// Go programs started since the last call, to probe before they serve.
    pub fn take_go_execs(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.go_execs)
    }

    /// Sockets to hand to the kernel for header injection (see `Adopt`).
    pub fn take_adoptions(&mut self) -> Vec<Adopt> {
        std::mem::take(&mut self.adopt)
    }

    /// The kernel inserts traceparent headers (counts the requests it did not).
    pub fn set_propagating(&mut self, on: bool) {
        self.contexts.propagating = on;
    }

    /// Resolve processes with `reader` instead of /proc (replaying recordings).
    pub fn with_proc_reader(mut self, reader: ProcReader) -> Self {
        self.procs = ProcessTable::with_reader(reader);
        self.listens = |_, _| None; // nor their sockets
        self.own_reread = false; // nor this process's
        self
    }

    pub fn handle(&mut self, ev: Event<'_>) -> Option<Decision> {
        match ev {
            Event::Data {
                hdr,
                tuple,
                direction,
                pending,
                tls,
                h2_frames,
                peer,
                unsampled,
                after_skip: _,
                total_len,
                comm,
                data,
            } => {
                if pending && self.untraced.contains(&hdr.pid) {
                    return None;
                }
                let key = hdr.sock_id;
                if tls
                    && self
                        .conns
                        .get_mut(&key)
                        .is_some_and(|c| !c.peer.tls && (c.tuple != tuple || !c.continues_in_tls()))
                {
                    // What was seen of it so far was the handshake's ciphertext.
                    self.conns.remove(&key);
                }
                if self.conns.get(&key).is_some_and(|c| c.tuple != tuple) {
                    // A new socket at the address of one whose close came before its
                    // last record (a peer's RST racing a read): that one is over.
                    if let Some(old) = self.conns.remove(&key) {
                        self.close(old, hdr.ts_ns, key);
                    }
                }
                if !self.conns.contains_key(&key) {
                    if self.conns.len() >= MAX_CONNS {
                        self.evict_idle(hdr.ts_ns, true);
                    }
                    let mut conn = Conn::new(tuple, hdr.pid, cstr(&comm), tls);
                    conn.listens = self.listens;
                    conn.query_text = self.cfg.database.query_text();
                    self.contexts.note_local(conn.peer.local);
                    // Read /proc now: short-lived clients are often gone when their span ends.
                    let info = self.procs.get(hdr.pid, &conn.comm);
                    if info.goroutines && self.contexts.goroutines.insert(hdr.pid) {
                        self.goroutine_pids.push(hdr.pid);
                    }
                    self.conns.insert(key, conn);
                }
                let conn = self.conns.get_mut(&key).unwrap();
                if conn.pid != hdr.pid {
                    conn.pid = hdr.pid;
                    conn.comm = cstr(&comm);
                }
                if peer != PeerEnd::Unknown {
                    conn.client_end = peer;
                }
                let out = if h2_frames {
                    let Some(segs) = kernel_frames::segments(data, u64::from(total_len)) else {
                        stats::inc(&self.stats.events_malformed);
                        return None;
                    };
                    conn.feed_segments(direction, &segs, hdr.ts_ns, hdr.tid, &mut self.done)
                } else {
                    let gap = (total_len as u64).saturating_sub(data.len() as u64);
                    conn.feed(direction, data, gap, hdr.ts_ns, hdr.tid, &mut self.done)
                };
                let mut exports = false;
                if let Some(side) = conn.side {
                    let client_traced = client_traced(conn.client_end, &self.untraced);
                    let mut missed = false;
                    let pid = hdr.pid;
                    if side == Side::Server
                        && self.contexts.goroutines.contains(&pid)
                        && !self.contexts.h2_servers.contains(&pid)
                        && conn
                            .pending
                            .iter()
                            .any(|e| e.stream_id != 0 && e.ctx.is_none())
                    {
                        // The probes may come after the process was first seen: asked
                        // again at most once per scan of Go executables.
                        let last = self.h2_unprobed.get(&pid).copied();
                        if last.is_none_or(|t| hdr.ts_ns.saturating_sub(t) > H2_PROBE_RECHECK_NS) {
                            if crate::loader::go_h2_server_probed(pid) {
                                self.contexts.h2_servers.insert(pid);
                                self.h2_unprobed.remove(&pid);
                            } else {
                                if self.h2_unprobed.len() >= MAX_CONNS {
                                    self.h2_unprobed.clear();
                                }
                                self.h2_unprobed.insert(pid, hdr.ts_ns);
                            }
                        }
                    }
                    self.contexts.shared_records = match side {
                        Side::Client => shared_records(&conn.pending),
                        Side::Server => Vec::new(),
                    };
                    for (ex, done) in self
                        .done
                        .iter_mut()
                        .map(|d| (&mut d.ex, true))
                        .chain(conn.pending.iter_mut().map(|ex| (ex, false)))
                    {
                        exports |= side == Side::Client && ex.ctx.is_none() && is_otlp_export(ex);
                        let kq = self.kctx.get_mut(&key);
                        // (Its ids, when the kernel gives them, come after this read.)
                        if !done
                            && self
                                .contexts
                                .awaits_kernel(hdr.pid, side, ex, kq.as_deref())
                        {
                            continue;
                        }
                        missed |= self.contexts.assign(
                            hdr.pid,
                            side,
                            &conn.peer,
                            client_traced,
                            unsampled,
                            ex,
                            kq,
                            &self.stats,
                        );
                    }
                    self.contexts.shared_records.clear();
                    if missed && !conn.adopted {
                        conn.adopted = true;
                        self.adopt.push(Adopt {
                            pid: hdr.pid,
                            fd: hdr.fd,
                            tuple,
                        });
                    }
                }
                if out.unknown_protocol {
                    stats::inc(&self.stats.streams_unknown_protocol);
                }
                if out.parse_error {
                    stats::inc(&self.stats.streams_unparsable);
                }
                if out.framing_lost {
                    stats::inc(&self.stats.responses_framing_lost);
                }
                stats::add(&self.stats.h2_headers_undecodable, out.h2_undecodable);
                stats::add(&self.stats.responses_without_request, out.orphan_responses);
                if out.db != Default::default() {
                    stats::add(&self.stats.db_messages_malformed, out.db.malformed);
                    stats::add(&self.stats.db_statement_unknown, out.db.statement_unknown);
                    stats::add(&self.stats.db_not_operations, out.db.not_operations);
                    stats::add(&self.stats.db_query_truncated, out.db.query_truncated);
                }
                if out.messaging != Default::default() {
                    let m = &out.messaging;
                    stats::add(&self.stats.messaging_messages_malformed, m.malformed);
                    stats::add(&self.stats.messaging_not_operations, m.not_operations);
                    stats::add(&self.stats.messaging_empty_polls, m.empty_polls);
                    stats::add(
                        &self.stats.messaging_batches_undecompressed,
                        m.undecompressed,
                    );
                    stats::add(&self.stats.kafka_topic_unknown, m.topic_unknown);
                }
                if !self.done.is_empty() {
                    let (peer, comm, end) = (conn.peer.clone(), conn.comm.clone(), conn.client_end);
                    self.finish(hdr.pid, &comm, &peer, end, key);
                }
                if exports {
                    self.sdk_seen(hdr.pid, &cstr(&comm));
                }
                None
            }
            Event::Ctx(c) => {
                if self.kctx.len() >= MAX_CONNS && !self.kctx.contains_key(&c.hdr.sock_id) {
                    self.kctx.clear();
                }
                let q = self.kctx.entry(c.hdr.sock_id).or_default();
                if q.len() >= KCTX_PER_SOCK {
                    q.pop_front();
                }
                let (sock, stream, kind) = (c.hdr.sock_id, c.stream_id, c.ctx_kind);
                q.push_back(c);
                if kind == CTX_SERVER && stream != 0 {
                    self.server_stream_ids(sock, stream);
                }
                None
            }
            Event::Close { hdr } => {
                if let Some(conn) = self.conns.remove(&hdr.sock_id) {
                    self.close(conn, hdr.ts_ns, hdr.sock_id);
                }
                self.kctx.remove(&hdr.sock_id);
                None
            }
            Event::Exit { hdr } => {
                let keys: Vec<u64> = self
                    .conns
                    .iter()
                    .filter(|(_, c)| c.pid == hdr.pid)
                    .map(|(k, _)| *k)
                    .collect();
                for k in keys {
                    let conn = self.conns.remove(&k).unwrap();
                    self.close(conn, hdr.ts_ns, k);
                    self.kctx.remove(&k);
                }
                self.procs.exit(hdr.pid);
                self.h2_unprobed.remove(&hdr.pid);
                self.contexts.exited(hdr.pid);
                if self.sdk_pids.remove(&hdr.pid) {
                    stats::set(
                        &self.stats.sdk_instrumented_processes,
                        self.sdk_pids.len() as u64,
                    );
                }
                self.untraced.remove(&hdr.pid);
                None
            }
            Event::Exec {
                hdr,
                prev_state,
                comm,
                filename,
            } => {
                let exe = std::fs::read_link(format!("/proc/{}/exe", hdr.pid))
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or(filename.clone());
                self.procs.exec(hdr.pid, &exe);
                let _ = comm;
                let facts = crate::config::ProcFacts::read(&self.cfg, hdr.pid, exe);
                let state = self.decide_exec(&facts, prev_state);
                self.decided(hdr.pid, state);
                if state != Some(PROC_EXCLUDED) {
                    self.go_exec(hdr.pid);
                }
                Some(Decision {
                    pid: hdr.pid,
                    state,
                })
            }
        }
    }

    /// A Go program is known from its exec, not from its first connection: the kernel
    /// keeps its contexts per goroutine, and its probes attach before it serves.
    fn go_exec(&mut self, pid: u32) {
        if !crate::buildinfo::read_go_elf(&format!("/proc/{pid}/exe")).is_go {
            return;
        }
        if self.contexts.goroutines.insert(pid) {
            self.goroutine_pids.push(pid);
        }
        self.go_execs.push(pid);
    }

    /// The state now in force for `pid` after an exec decision: records it sent while
    /// PENDING are kept only if it ended up traced.
    pub fn decided(&mut self, pid: u32, state: Option<u32>) {
        // Without discovery a process without an entry is traced.
        let trace_all = self.cfg.discovery.is_none();
        if state == Some(PROC_TRACED) || (state.is_none() && trace_all) {
            self.untraced.remove(&pid);
        } else {
            self.untraced.insert(pid);
        }
    }

    /// Selectors on the process, decided at exec (see `discovery::decide_exec`).
    pub fn decide_exec(&self, p: &crate::config::ProcFacts, prev_state: u32) -> Option<u32> {
        crate::discovery::decide_exec(&self.cfg, p, prev_state)
    }

    fn close(&mut self, mut conn: Conn, ts: u64, key: u64) {
        if conn.tls_handshake {
            // Encrypted by a library we do not probe (or closed before any data).
            stats::inc(&self.stats.tls_not_decrypted);
        }
        conn.close(ts, &mut self.done);
        self.finish(conn.pid, &conn.comm, &conn.peer, conn.client_end, key);
        if let Some(side) = conn.side {
            self.contexts.closed(side, &conn.peer);
        }
    }

    /// A Go HTTP/2 server took stream `stream`'s HEADERS (its ids came): the request,
    /// read before, takes them now, before the calls made for it are seen.
    fn server_stream_ids(&mut self, sock: u64, stream: u32) {
        let Some(conn) = self.conns.get_mut(&sock) else {
            return;
        };
        if conn.side != Some(Side::Server) {
            return;
        }
        let traced = client_traced(conn.client_end, &self.untraced);
        let kq = self.kctx.get_mut(&sock);
        if let Some(ex) = conn
            .pending
            .iter_mut()
            .find(|ex| ex.stream_id == stream && ex.ctx.is_none())
        {
            let pid = conn.pid;
            self.contexts.assign(
                pid,
                Side::Server,
                &conn.peer,
                traced,
                false,
                ex,
                kq,
                &self.stats,
            );
        }
    }

    fn finish(
        &mut self,
        pid: u32,
        comm: &str,
        peer: &Arc<crate::conn::Peer>,
        end: PeerEnd,
        key: u64,
    ) {
        if self.done.is_empty() {
            return;
        }
        let process = self.procs.get(pid, comm);
        for mut d in std::mem::take(&mut self.done) {
            let kq = self.kctx.get_mut(&key);
            let traced = client_traced(end, &self.untraced);
            self.contexts
                .assign(pid, d.side, peer, traced, false, &mut d.ex, kq, &self.stats);
            if d.error.is_some() {
                stats::inc(&self.stats.requests_without_response);
            }
            self.contexts.ended(pid, d.side, &d.ex);
            if is_otlp_export(&d.ex) {
                // Telemetry about telemetry: never a span. Its sender has an SDK.
                if d.side == Side::Client {
                    self.sdk_seen(pid, comm);
                }
                stats::inc(&self.stats.spans_sdk_skipped);
                continue;
            }
            let to_us =
                d.side == Side::Client && self.reaches_collector(peer, d.ex.req_start, d.resp_end);
            if to_us || (d.side == Side::Server && end == PeerEnd::Collector) {
                // This collector's own traffic: its exports, its receivers, its telemetry.
                stats::inc(&self.stats.spans_collector_traffic);
                continue;
            }
            if self.cfg.skip_sdk_instrumented && self.sdk_pids.contains(&pid) {
                stats::inc(&self.stats.spans_sdk_skipped);
                continue;
            }
            self.emit(
                Pending {
                    done: d,
                    peer: peer.clone(),
                    process: process.clone(),
                },
                None,
            );
        }
    }

    /// Builds the span, unless its trace is provisional and still waits for the client's
    /// side of a same-node link (then it is kept; `now` None: the end's own time).
    fn emit(&mut self, mut p: Pending, now: Option<u64>) {
        let now = now.unwrap_or(p.done.resp_end);
        if let Some(ctx) = p.done.ex.ctx.as_mut() {
            if self.contexts.resolve(ctx, now) == context::Ready::Wait {
                self.waiting.push(p);
                return;
            }
        }
        match envelope::build(&p.done, &p.peer, &p.process, &self.cfg, &self.clock) {
            envelope::Built::Span(mut rec) => {
                if let crate::conn::Message::Messaging(op) = &p.done.ex.msg {
                    self.produced.observe(op, &mut rec);
                }
                let by_parent = rec.parent_span_id.is_some() && self.cfg.sampling.parent_based;
                stats::inc(match by_parent {
                    true => &self.stats.spans_sampled_by_parent,
                    false => &self.stats.spans_sampled_by_ratio,
                });
                self.batch.push(*rec);
                stats::inc(&self.stats.spans_emitted);
            }
            envelope::Built::Unsampled => stats::inc(&self.stats.spans_unsampled),
            envelope::Built::Excluded => stats::inc(&self.stats.spans_excluded),
        }
    }

    /// Emits the waiting spans whose trace got linked or whose wait is over (`now`:
    /// monotonic ns, the clock of the kernel's timestamps).
    pub fn flush_waiting(&mut self, now: u64) {
        self.contexts.expire(now, &self.stats);
        if self.waiting.is_empty() {
            return;
        }
        for p in std::mem::take(&mut self.waiting) {
            self.emit(p, Some(now));
        }
    }

    /// Drops connections idle for too long (or the oldest half when `force`).
    pub fn evict_idle(&mut self, now_ns: u64, force: bool) {
        let cut = if force {
            let mut ts: Vec<u64> = self.conns.values().map(|c| c.last_ts).collect();
            ts.sort_unstable();
            ts.get(ts.len() / 2).copied().unwrap_or(0).saturating_add(1)
        } else {
            now_ns.saturating_sub(IDLE_NS)
        };
        let old: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.last_ts < cut)
            .map(|(k, _)| *k)
            .collect();
        stats::add(&self.stats.connections_evicted, old.len() as u64);
        // Idle keep-alive connections (most of them, on a busy server) keep no spare room.
        let quiet = now_ns.saturating_sub(COMPACT_AFTER_NS);
        let mut no_ctx = Vec::new();
        for (k, c) in self.conns.iter_mut() {
            if c.last_ts < quiet && c.last_ts >= cut {
                c.compact();
                if self.kctx.get(k).is_some_and(VecDeque::is_empty) {
                    no_ctx.push(*k);
                }
            }
        }
        for k in no_ctx {
            self.kctx.remove(&k);
        }
        // Tables keep the room of their peak (10,000 connections long closed) unless told.
        if self.conns.capacity() > 4 * self.conns.len().max(1024) {
            self.conns.shrink_to_fit();
        }
        if self.kctx.capacity() > 4 * self.kctx.len().max(1024) {
            self.kctx.shrink_to_fit();
        }
        // Closed like any connection, so what they left pending is reported and forgotten.
        for k in old {
            let conn = self.conns.remove(&k).unwrap();
            self.close(conn, now_ns, k);
            self.kctx.remove(&k);
        }
        stats::set(&self.stats.connections_tracked, self.conns.len() as u64);
        stats::set(&self.stats.processes_traced, self.procs.len() as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{PROC_ELIGIBLE, PROC_EXCLUDED};

    fn asm(json: &str) -> Assembler {
        let cfg = Config::from_json(json.as_bytes()).unwrap();
        Assembler::new(
            Arc::new(cfg),
            Arc::new(Stats::default()),
            Clock { offset_ns: 0 },
        )
    }

    #[test]
    fn exec_decisions() {
        let a = asm(
            r#"{"discovery":{"instrument":[{"exe_path":"*/python3*"},{"exe_path":"*/nginx","open_ports":[[8080,8080]]}],
                       "exclude":[{"exe_path":"*/python3-admin"}]}}"#,
        );
        let exe = |p: &str| crate::config::ProcFacts {
            exe: p.into(),
            ..Default::default()
        };
        assert_eq!(
            a.decide_exec(&exe("/usr/bin/python3.11"), 0),
            Some(PROC_TRACED)
        );
        assert_eq!(
            a.decide_exec(&exe("/usr/bin/python3-admin"), PROC_TRACED),
            Some(PROC_EXCLUDED)
        );
        assert_eq!(
            a.decide_exec(&exe("/usr/sbin/nginx"), 0),
            Some(PROC_ELIGIBLE)
        );
        assert_eq!(a.decide_exec(&exe("/usr/bin/curl"), 0), None);
        // Inherited state survives an exec that matches nothing.
        assert_eq!(
            a.decide_exec(&exe("/usr/bin/curl"), PROC_TRACED),
            Some(PROC_TRACED)
        );
        // Without discovery: no entry (traced), but collectors are excluded by default.
        let all = asm("{}");
        assert_eq!(all.decide_exec(&exe("/usr/bin/curl"), 0), None);
        assert_eq!(
            all.decide_exec(&exe("/opt/otelcol-contrib/otelcol-contrib"), 0),
            Some(PROC_EXCLUDED)
        );
        assert_eq!(
            all.decide_exec(&exe("/usr/bin/curl"), PROC_EXCLUDED),
            Some(PROC_EXCLUDED),
            "a child of an excluded process"
        );
        // A directory named like a collector does not exclude what is in it.
        assert_eq!(
            all.decide_exec(&exe("/root/.cache/otelcol-ebpf/go/bin/go"), 0),
            None
        );
        assert_eq!(
            asm(r#"{"default_exclude":[]}"#).decide_exec(&exe("/usr/bin/otelcol"), 0),
            None
        );
    }

    fn fake_proc(pid: u32, comm: &str, _: Option<&str>) -> ProcessInfo {
        ProcessInfo::from_parts(pid, comm, "/usr/bin/app", b"")
    }

    fn tuple(sport: u16, dport: u16) -> crate::events::ConnTuple {
        let mut t = crate::events::ConnTuple {
            family: 2,
            sport,
            dport,
            netns: 7,
            ..Default::default()
        };
        t.saddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        t.daddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        t
    }

    /// One request and its response on socket `sock` of `pid` (the client end when
    /// `client`), `peer` as the kernel flags the server's reads.
    #[allow(clippy::too_many_arguments)]
    fn exchange(
        a: &mut Assembler,
        pid: u32,
        sock: u64,
        client: bool,
        (sport, dport): (u16, u16),
        ts: u64,
        req: &[u8],
        peer: PeerEnd,
    ) {
        use crate::events::{Direction, EventHeader, EVENT_DATA};
        let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        let (first, second) = if client {
            (Direction::Send, Direction::Recv)
        } else {
            (Direction::Recv, Direction::Send)
        };
        for (i, (dir, data)) in [(first, req), (second, &resp[..])].into_iter().enumerate() {
            a.handle(Event::Data {
                hdr: EventHeader {
                    kind: EVENT_DATA,
                    pid,
                    tid: pid,
                    fd: 3,
                    ts_ns: ts + i as u64,
                    sock_id: sock,
                },
                tuple: tuple(sport, dport),
                direction: dir,
                pending: false,
                tls: false,
                h2_frames: false,
                unsampled: false,
                after_skip: false,
                peer: if dir == Direction::Recv {
                    peer
                } else {
                    PeerEnd::Unknown
                },
                total_len: data.len() as u32,
                comm: *b"app\0\0\0\0\0\0\0\0\0\0\0\0\0",
                data,
            });
        }
    }

    const EXPORT: &[u8] = b"POST /v1/traces HTTP/1.1\r\nHost: c\r\nContent-Length: 2\r\n\r\nab";
    const GET: &[u8] = b"GET /a HTTP/1.1\r\nHost: s\r\n\r\n";

    fn count(c: &std::sync::atomic::AtomicU64) -> u64 {
        c.load(std::sync::atomic::Ordering::Relaxed)
    }

    #[test]
    fn sdk_exporters_get_no_spans_from_then_on() {
        for skip in [true, false] {
            let mut a =
                asm(&format!(r#"{{"skip_sdk_instrumented":{skip}}}"#)).with_proc_reader(fake_proc);
            exchange(
                &mut a,
                10,
                1,
                true,
                (40000, 9000),
                100,
                GET,
                PeerEnd::Unknown,
            );
            assert_eq!(a.batch.len(), 1, "before its first export: a span");
            exchange(
                &mut a,
                10,
                2,
                true,
                (40001, 4318),
                200,
                EXPORT,
                PeerEnd::Unknown,
            );
            assert_eq!(a.batch.len(), 1, "an export is never a span");
            assert_eq!(count(&a.stats.sdk_instrumented_processes), 1);
            let notices = a.take_notices();
            assert_eq!(notices.len(), 1);
            assert!(
                notices[0].starts_with("process 10 (/usr/bin/app"),
                "{notices:?}"
            );
            assert!(notices[0].contains("SDK-instrumented"), "{notices:?}");
            exchange(
                &mut a,
                10,
                2,
                true,
                (40001, 4318),
                300,
                EXPORT,
                PeerEnd::Unknown,
            );
            assert!(a.take_notices().is_empty(), "logged once per process");
            exchange(
                &mut a,
                10,
                1,
                true,
                (40000, 9000),
                400,
                GET,
                PeerEnd::Unknown,
            );
            assert_eq!(a.batch.len(), if skip { 1 } else { 2 });
            // The server end of an export (a backend traced here) makes no span either.
            exchange(
                &mut a,
                11,
                3,
                false,
                (4318, 40001),
                500,
                EXPORT,
                PeerEnd::Traced(10),
            );
            assert_eq!(a.batch.len(), if skip { 1 } else { 2 });
            a.handle(Event::Exit {
                hdr: crate::events::EventHeader {
                    kind: crate::events::EVENT_EXIT,
                    pid: 10,
                    ..Default::default()
                },
            });
            assert_eq!(count(&a.stats.sdk_instrumented_processes), 0);
        }
    }

    #[test]
    fn the_collectors_own_traffic_is_not_spans() {
        let mut a = asm("{}").with_proc_reader(fake_proc);
        let lo: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        a.set_own_endpoints(
            OwnEndpoints {
                listeners: vec![("0.0.0.0".parse().unwrap(), 8888)],
                addrs: [lo].into(),
                netns: 7,
            },
            0,
        );
        // A scrape of its telemetry endpoint; a request to a service beside it.
        exchange(
            &mut a,
            20,
            1,
            true,
            (40000, 8888),
            100,
            GET,
            PeerEnd::Unknown,
        );
        exchange(
            &mut a,
            20,
            2,
            true,
            (40001, 9000),
            200,
            GET,
            PeerEnd::Unknown,
        );
        assert_eq!(a.batch.len(), 1);
        // Its exports, read by a server traced here.
        exchange(
            &mut a,
            21,
            3,
            false,
            (9000, 40002),
            300,
            GET,
            PeerEnd::Collector,
        );
        assert_eq!(a.batch.len(), 1);
        assert_eq!(count(&a.stats.spans_collector_traffic), 2);
    }
}
