//! The threads behind a receiver handle: one pump drains the ring buffer, assembles spans
//! and cuts batches; the Go side takes batches from a bounded channel.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver as ChanRx, RecvTimeoutError, Sender, TrySendError};
use parking_lot::Mutex;

use crate::config::Config;
use crate::error::Error;
use crate::events::{self, decode};
use crate::loader::Kernel;
use crate::process::OwnEndpoints;
use crate::spans::{Assembler, Clock};
use crate::stats::{self, Stats};

/// The ring buffer's pages are mapped twice into our address space (and counted twice
/// in RSS): 8 MiB holds ~180 ms of nginx at full speed with both ends traced (4 MiB lost
/// records when the pump was kept off the CPU on this 2-core machine).
const RINGBUF_BYTES: u32 = 8 << 20;
/// How long the pump sleeps when the ring buffer is empty. Records are submitted without
/// wakeups (a wakeup per record costs ~2.3 µs on the sending thread), so we poll.
const POLL: Duration = Duration::from_millis(5);
const BATCH_MAX_SPANS: usize = 512;
const BATCH_MAX_AGE: Duration = Duration::from_millis(200);
const QUEUE_BATCHES: usize = 64;
/// How often freed memory is handed back to the system (malloc keeps it otherwise, and
/// RSS would stay at the peak of, say, 10,000 connections long closed).
const TRIM: Duration = Duration::from_secs(10);
/// How often the processes' mappings are searched for libssl files not probed yet.
const TLS_SCAN: Duration = Duration::from_secs(3);

pub enum Batch {
    Data { bytes: Vec<u8>, spans: u64 },
    Timeout,
    Stopped,
}

pub struct Receiver {
    cfg: Arc<Config>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    rx: Option<ChanRx<(Vec<u8>, u64)>>,
    info: Mutex<String>,
    notices: Notices,
}

/// Lines for the collector's log, from the pump to whoever asks (bounded: a log that
/// nobody reads must not grow without end).
type Notices = Arc<Mutex<std::collections::VecDeque<String>>>;
const NOTICES_MAX: usize = 1024;

impl Receiver {
    pub fn new(cfg: Config) -> Self {
        Receiver {
            cfg: Arc::new(cfg),
            stats: Arc::new(Stats::default()),
            stop: Arc::new(AtomicBool::new(false)),
            thread: None,
            rx: None,
            info: Mutex::new(String::from("not started")),
            notices: Notices::default(),
        }
    }

    pub fn start(&mut self) -> Result<(), Error> {
        if self.rx.is_some() {
            return Err(Error::State("already started"));
        }
        let kernel = Kernel::load(&self.cfg, RINGBUF_BYTES)?;
        // Loading parsed the kernel's BTF and our objects (~15 MB, freed by now): give the
        // pages back rather than keep them in malloc's free lists for the process's life.
        // SAFETY: plain libc call, no pointers.
        unsafe { libc::malloc_trim(0) };
        *self.info.lock() = kernel.info.clone();
        let (tx, rx) = bounded(QUEUE_BATCHES);
        let mut asm = Assembler::new(self.cfg.clone(), self.stats.clone(), Clock::now());
        asm.set_propagating(kernel.propagating);
        asm.set_own_endpoints(OwnEndpoints::read(), monotonic_ns());
        let (stats, stop) = (self.stats.clone(), self.stop.clone());
        let notices = self.notices.clone();
        let thread = std::thread::Builder::new()
            .name("otelcol-ebpf-pump".into())
            .spawn(move || pump(kernel, asm, tx, stats, stop, notices))?;
        self.thread = Some(thread);
        self.rx = Some(rx);
        Ok(())
    }

    pub fn next_batch(&self, timeout: Duration) -> Batch {
        let Some(rx) = &self.rx else {
            return Batch::Stopped;
        };
        match rx.recv_timeout(timeout) {
            Ok((bytes, spans)) => Batch::Data { bytes, spans },
            Err(RecvTimeoutError::Timeout) => Batch::Timeout,
            Err(RecvTimeoutError::Disconnected) => Batch::Stopped,
        }
    }

    pub fn stats(&self) -> Vec<u64> {
        self.stats.values()
    }

    pub fn info(&self) -> String {
        self.info.lock().clone()
    }

    pub fn next_notice(&self) -> Option<String> {
        self.notices.lock().pop_front()
    }

    /// Stops the pump (which flushes its last batch and detaches every program).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

fn send(tx: &Sender<(Vec<u8>, u64)>, asm: &mut Assembler, stats: &Stats) {
    if asm.batch.is_empty() {
        return;
    }
    let (bytes, n) = asm.batch.take();
    match tx.try_send((bytes, n)) {
        Ok(()) => stats::inc(&stats.batches_emitted),
        Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
            stats::add(&stats.spans_dropped_queue_full, n);
        }
    }
}

/// Appends raw records, each prefixed by its length (u32 LE), to the file named by
/// OTELCOL_EBPF_RECORD: the format of the recorded streams under test/golden.
fn recorder() -> Option<std::io::BufWriter<std::fs::File>> {
    let path = std::env::var_os("OTELCOL_EBPF_RECORD")?;
    std::fs::File::create(path)
        .ok()
        .map(std::io::BufWriter::new)
}

fn pump(
    mut kernel: Kernel,
    mut asm: Assembler,
    tx: Sender<(Vec<u8>, u64)>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    notices: Notices,
) {
    use std::io::Write;
    let mut record = recorder();
    let mut batch_started = Instant::now();
    let mut last_housekeeping = Instant::now();
    let mut last_tls_scan = Instant::now();
    let mut last_trim = Instant::now();
    loop {
        let stopping = stop.load(Ordering::Acquire);
        let mut n = 0u32;
        while let Some(item) = kernel.ring.next() {
            n += 1;
            if let Some(w) = record.as_mut() {
                let _ = w
                    .write_all(&(item.len() as u32).to_le_bytes())
                    .and_then(|_| w.write_all(&item));
            }
            // The record stays borrowed from the ring until handled: no copy.
            let decision = match decode(&item) {
                Ok(ev) => asm.handle(ev),
                Err(_) => {
                    stats::inc(&stats.events_malformed);
                    None
                }
            };
            drop(item);
            for pid in asm.take_goroutine_pids() {
                kernel.maps.no_thread_context(pid);
            }

            for a in asm.take_adoptions() {
                // Fails when the process or its descriptor is gone: its requests stay
                // counted in requests_not_injected.
                if kernel.maps.adopt(a.pid, a.fd, &a.tuple).is_ok() {
                    stats::inc(&stats.connections_adopted);
                }
            }
            if let Some(d) = decision {
                // Applied at once: the process's next records may already be queued.
                let now = kernel.maps.set_proc_state(d.pid, d.state);
                asm.decided(d.pid, now);
            }
            if asm.batch.len() >= BATCH_MAX_SPANS {
                send(&tx, &mut asm, &stats);
                batch_started = Instant::now();
            }
            if n >= 65_536 {
                break;
            }
        }
        // (The ring's records borrow the kernel until the loop ends.)
        for pid in asm.take_go_execs() {
            kernel.probe_go_exec(pid).report(&stats);
        }
        stats::add(&stats.events_read, n as u64);
        asm.flush_waiting(if stopping { u64::MAX } else { monotonic_ns() });
        if asm.batch.is_empty() {
            batch_started = Instant::now();
        } else if batch_started.elapsed() >= BATCH_MAX_AGE || stopping {
            send(&tx, &mut asm, &stats);
            batch_started = Instant::now();
        }
        if last_housekeeping.elapsed() >= Duration::from_secs(1) || stopping {
            for (idx, c) in [
                (events::COUNTER_RINGBUF_FULL, &stats.events_lost),
                (events::COUNTER_TRUNCATED, &stats.captures_truncated),
                (
                    events::COUNTER_BYTES_NOT_CAPTURED,
                    &stats.bytes_not_captured,
                ),
                (events::COUNTER_INJECTED, &stats.context_injected),
                (
                    events::COUNTER_INJECT_HAS_HEADER,
                    &stats.inject_skipped_own_header,
                ),
                (
                    events::COUNTER_INJECT_SPLIT,
                    &stats.inject_skipped_split_head,
                ),
                (events::COUNTER_INJECT_FAILED, &stats.inject_failed),
                (events::COUNTER_HEAD_SPLIT, &stats.server_head_split),
                (
                    events::COUNTER_TRACESTATE_DROPPED,
                    &stats.tracestate_dropped,
                ),
                (events::COUNTER_TLS_NO_SOCKET, &stats.tls_without_socket),
                (events::COUNTER_H2_WALK_LOST, &stats.h2_walk_lost),
                (
                    events::COUNTER_H2_INJECT_SKIPPED,
                    &stats.h2_requests_not_injected,
                ),
                (events::COUNTER_H2_INJECT_LOST, &stats.h2_inject_lost),
                (
                    events::COUNTER_UNSAMPLED_SKIPPED,
                    &stats.requests_unsampled_in_kernel,
                ),
                (
                    events::COUNTER_AMQP_INJECT_SKIPPED,
                    &stats.amqp_publishes_not_injected,
                ),
                (events::COUNTER_AMQP_INJECT_LOST, &stats.amqp_inject_lost),
                (
                    events::COUNTER_GO_CTX_NO_GOID,
                    &stats.go_context_unknown_no_goid,
                ),
                (
                    events::COUNTER_GO_CTX_NONE,
                    &stats.go_context_unknown_no_request,
                ),
                (
                    events::COUNTER_GO_CTX_STALE,
                    &stats.go_context_unknown_stale,
                ),
                (
                    events::COUNTER_GO_CTX_GRPC_NONE,
                    &stats.go_context_unknown_grpc,
                ),
                (
                    events::COUNTER_GO_H2_NO_SOCKET,
                    &stats.go_context_unknown_h2_no_socket,
                ),
                (
                    events::COUNTER_GO_H2_UNREAD,
                    &stats.go_context_unknown_h2_unread,
                ),
            ] {
                stats::set(c, kernel.maps.counter(idx));
            }
            asm.evict_idle(monotonic_ns(), false);
            // Receivers start after us and may open ports later.
            asm.set_own_endpoints(OwnEndpoints::read(), monotonic_ns());
            if last_tls_scan.elapsed() >= TLS_SCAN {
                kernel.rescan_tls().report(&stats);
                last_tls_scan = Instant::now();
            }
            if last_trim.elapsed() >= TRIM {
                // SAFETY: plain libc call, no pointers.
                unsafe { libc::malloc_trim(0) };
                last_trim = Instant::now();
            }
            last_housekeeping = Instant::now();
        }
        let new = asm.take_notices();
        if !new.is_empty() {
            let mut q = notices.lock();
            for line in new {
                if q.len() >= NOTICES_MAX {
                    q.pop_front();
                }
                q.push_back(line);
            }
        }
        if stopping {
            break;
        }
        if n == 0 {
            std::thread::sleep(POLL);
        }
    }
    if let Some(w) = record.as_mut() {
        let _ = w.flush();
    }
    // `kernel` drops here: programs detach before the channel closes.
    drop(kernel);
}

fn monotonic_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes one timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}
