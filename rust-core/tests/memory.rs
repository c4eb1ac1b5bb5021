//! What the assembler keeps per open connection, counted by a global allocator: a busy
//! server holds thousands of idle keep-alive connections, and each one's state is the
//! collector's memory floor.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::Arc;

use otelcol_ebpf_core::config::Config;
use otelcol_ebpf_core::events::{ConnTuple, Direction, Event, EventHeader, PeerEnd, EVENT_DATA};
use otelcol_ebpf_core::process::ProcessInfo;
use otelcol_ebpf_core::spans::{Assembler, Clock};
use otelcol_ebpf_core::stats::Stats;

struct Counting;

static LIVE: AtomicI64 = AtomicI64::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as i64, Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as i64, Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as i64 - l.size() as i64, Relaxed);
        System.realloc(p, l, new)
    }
}

#[global_allocator]
static A: Counting = Counting;

const REQUEST: &[u8] =
    b"GET /users/42 HTTP/1.1\r\nHost: shop\r\nUser-Agent: curl/8\r\nAccept: */*\r\n\r\n";
const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/html\r\nContent-Length: 5\r\n\r\nhello";

fn data(sock: u64, port: u16, ts: u64, dir: Direction, bytes: &'static [u8]) -> Event<'static> {
    Event::Data {
        hdr: EventHeader {
            kind: EVENT_DATA,
            pid: 100,
            tid: 100,
            fd: 5,
            ts_ns: ts,
            sock_id: sock,
        },
        tuple: ConnTuple {
            saddr: [10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            daddr: [10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            sport: 8080,
            dport: port,
            family: 2,
            ..Default::default()
        },
        direction: dir,
        pending: false,
        tls: false,
        h2_frames: false,
        peer: PeerEnd::Unknown,
        unsampled: false,
        after_skip: false,
        total_len: bytes.len() as u32,
        comm: *b"nginx\0\0\0\0\0\0\0\0\0\0\0",
        data: bytes,
    }
}

#[test]
fn an_idle_keep_alive_connection_costs_little() {
    let stats = Arc::new(Stats::default());
    let mut asm = Assembler::new(Arc::new(Config::default()), stats, Clock::now())
        .with_proc_reader(|pid, comm, _| ProcessInfo::from_parts(pid, comm, "", b""));
    let n = 5_000u64;
    let mut ts = 1_000_000_000u64;
    // One exchange on a first connection: the process and the batch exist before counting.
    for (dir, bytes) in [(Direction::Recv, REQUEST), (Direction::Send, RESPONSE)] {
        asm.handle(data(1, 40000, ts, dir, bytes));
    }
    let _ = asm.batch.take();
    let before = LIVE.load(Relaxed);
    for i in 0..n {
        ts += 1000;
        let sock = 1000 + i;
        let port = 10000 + i as u16;
        asm.handle(data(sock, port, ts, Direction::Recv, REQUEST));
        asm.handle(data(sock, port, ts + 500, Direction::Send, RESPONSE));
        if asm.batch.len() >= 512 {
            let _ = asm.batch.take();
        }
    }
    let _ = asm.batch.take();
    // Housekeeping once they have been idle a while (it compacts idle connections).
    asm.evict_idle(ts + 10_000_000_000, false);
    let per_conn = (LIVE.load(Relaxed) - before) / n as i64;
    eprintln!("{per_conn} bytes per idle connection");
    assert!(per_conn <= 1536, "{per_conn} bytes per idle connection");
}
