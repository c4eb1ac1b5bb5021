//! Mirrors of `ebpf-programs/include/events.h`, and the decoding of ring buffer records
//! into owned values. Sizes are asserted at compile time against the C layout.

use std::net::IpAddr;

pub const CAPTURE_MAX: usize = 4096;
pub const COMM_LEN: usize = 16;
pub const FILENAME_LEN: usize = 256;

pub const EVENT_DATA: u32 = 1;
pub const EVENT_CLOSE: u32 = 2;
pub const EVENT_EXEC: u32 = 3;
pub const EVENT_EXIT: u32 = 4;
pub const EVENT_CTX: u32 = 5;

pub const CTX_SERVER: u8 = 1;
pub const CTX_INJECTED: u8 = 2;
/// Go: the request the goroutine sending on the socket serves (zeros: none), when it
/// changed for that socket; precedes the data record with the same timestamp.
pub const CTX_CALLER: u8 = 3;
pub const CTX_FLAG_HEADER: u8 = 1;
pub const CTX_FLAG_AMBIGUOUS: u8 = 2;
pub const CTX_FLAG_TRACESTATE: u8 = 4;
/// CTX_INJECTED: the parent is the request the sending goroutine works for (Go).
pub const CTX_FLAG_GOROUTINE: u8 = 8;

pub const DATA_FLAG_PENDING: u8 = 1;
pub const DATA_FLAG_TLS: u8 = 2;
pub const DATA_FLAG_H2: u8 = 4;
pub const DATA_FLAG_PEER_TRACED: u8 = 8;
pub const DATA_FLAG_PEER_COLLECTOR: u8 = 16;
pub const DATA_FLAG_UNSAMPLED: u8 = 32;
pub const DATA_FLAG_AFTER_SKIP: u8 = 64;

pub const PROC_TRACED: u32 = 1;
pub const PROC_EXCLUDED: u32 = 2;
pub const PROC_PENDING: u32 = 3;
pub const PROC_ELIGIBLE: u32 = 4;

pub const PORT_INSTRUMENT: u8 = 1;
pub const PORT_DISCOVERY_EXCLUDE: u8 = 2;
pub const PORT_NO_SPANS: u8 = 4;
pub const PORT_INSTRUMENT_WITH_EXE: u8 = 8;

pub const COUNTER_RINGBUF_FULL: u32 = 0;
pub const COUNTER_TRUNCATED: u32 = 1;
pub const COUNTER_BYTES_NOT_CAPTURED: u32 = 2;
pub const COUNTER_INJECTED: u32 = 3;
pub const COUNTER_INJECT_HAS_HEADER: u32 = 4;
pub const COUNTER_INJECT_SPLIT: u32 = 5;
pub const COUNTER_INJECT_FAILED: u32 = 6;
pub const COUNTER_HEAD_SPLIT: u32 = 7;
pub const COUNTER_TRACESTATE_DROPPED: u32 = 8;
pub const COUNTER_TLS_NO_SOCKET: u32 = 9;
pub const COUNTER_H2_WALK_LOST: u32 = 10;
pub const COUNTER_H2_INJECT_SKIPPED: u32 = 11;
pub const COUNTER_H2_INJECT_LOST: u32 = 12;
pub const COUNTER_UNSAMPLED_SKIPPED: u32 = 13;
pub const COUNTER_AMQP_INJECT_SKIPPED: u32 = 14;
pub const COUNTER_AMQP_INJECT_LOST: u32 = 15;
pub const COUNTER_GO_CTX_NO_GOID: u32 = 16;
pub const COUNTER_GO_CTX_NONE: u32 = 17;
pub const COUNTER_GO_CTX_STALE: u32 = 18;
pub const COUNTER_GO_CTX_GRPC_NONE: u32 = 19;
pub const COUNTER_GO_H2_NO_SOCKET: u32 = 20;
pub const COUNTER_GO_H2_UNREAD: u32 = 21;
pub const COUNTER_MAX: u32 = 22;

const AF_INET: u16 = 2;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventHeader {
    pub kind: u32,
    pub pid: u32,
    pub tid: u32,
    pub fd: u32,
    pub ts_ns: u64,
    pub sock_id: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ConnTuple {
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub family: u16,
    pub _pad: u16,
    pub netns: u32,
    pub _pad2: u32,
}

/// The fixed part of `struct data_event`; `data[captured_len]` follows it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DataEventHead {
    pub hdr: EventHeader,
    pub tuple: ConnTuple,
    pub total_len: u32,
    pub captured_len: u32,
    pub direction: u8,
    pub flags: u8,
    pub _pad: [u8; 2],
    pub peer_pid: u32,
    pub comm: [u8; COMM_LEN],
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExecEventRaw {
    pub hdr: EventHeader,
    pub prev_state: u32,
    pub _pad: u32,
    pub comm: [u8; COMM_LEN],
    pub filename: [u8; FILENAME_LEN],
}

/// `struct ctx_event`: ids the kernel gave a request (context_propagation: headers).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtxEvent {
    pub hdr: EventHeader,
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// CTX_INJECTED, CTX_CALLER: the server span the thread (goroutine) serves; zeros when none.
    pub parent_span_id: [u8; 8],
    pub ctx_kind: u8,
    pub trace_flags: u8,
    pub ctx_flags: u8,
    pub _pad: u8,
    /// CTX_INJECTED into an HTTP/2 request, CTX_CALLER of a grpc-go stream: its stream
    /// (else 0).
    pub stream_id: u32,
}

const _: () = assert!(std::mem::size_of::<EventHeader>() == 32);
const _: () = assert!(std::mem::size_of::<CtxEvent>() == 32 + 40);
const _: () = assert!(std::mem::size_of::<ConnTuple>() == 48);
const _: () = assert!(std::mem::size_of::<DataEventHead>() == 32 + 48 + 16 + 16);
const _: () = assert!(std::mem::size_of::<ExecEventRaw>() == 32 + 8 + 16 + 256);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Recv,
    Send,
}

impl ConnTuple {
    fn addr(&self, raw: &[u8; 16]) -> IpAddr {
        if self.family == AF_INET {
            IpAddr::from([raw[0], raw[1], raw[2], raw[3]])
        } else {
            let v6 = std::net::Ipv6Addr::from(*raw);
            match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            }
        }
    }
    pub fn local(&self) -> (IpAddr, u16) {
        (self.addr(&self.saddr), self.sport)
    }
    pub fn remote(&self) -> (IpAddr, u16) {
        (self.addr(&self.daddr), self.dport)
    }
}

#[derive(Clone, Debug)]
pub enum Event<'a> {
    Data {
        hdr: EventHeader,
        tuple: ConnTuple,
        direction: Direction,
        /// Emitted while the process waited for an exe-path decision.
        pending: bool,
        /// Plaintext of a TLS connection (from the SSL library, not the socket).
        tls: bool,
        /// HTTP/2 frames as the kernel walked them: see `protocols::http2::kernel_frames`.
        h2_frames: bool,
        /// A read: what the kernel knows of the connection's client end.
        peer: PeerEnd,
        /// A send by a thread serving an unsampled request (its calls are unsampled).
        unsampled: bool,
        /// Records of this direction were left out just before (an unsampled exchange).
        after_skip: bool,
        /// Bytes the syscall moved; `data` holds the first of them.
        total_len: u32,
        comm: [u8; COMM_LEN],
        /// Borrowed from the ring buffer record: no copy on the hot path.
        data: &'a [u8],
    },
    Close {
        hdr: EventHeader,
    },
    Exec {
        hdr: EventHeader,
        prev_state: u32,
        comm: [u8; COMM_LEN],
        filename: String,
    },
    Exit {
        hdr: EventHeader,
    },
    Ctx(CtxEvent),
}

/// What the kernel knew, at a read, of the connection's client end (ebpf-programs/ends.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PeerEnd {
    /// Not a socket of a process traced here (or not known to be, for connections
    /// older than the collector): no client span will come from this host.
    #[default]
    Unknown,
    /// A socket of this process, traced (or waiting for its exe-path decision, which
    /// userspace has made by the time it reads this): its client span will come.
    Traced(u32),
    /// This collector's own socket (its exports).
    Collector,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

fn read<T: Copy>(b: &[u8]) -> Result<T, Malformed> {
    if b.len() < std::mem::size_of::<T>() {
        return Err(Malformed);
    }
    // SAFETY: length checked; T is a plain repr(C) struct valid for any bit pattern.
    Ok(unsafe { std::ptr::read_unaligned(b.as_ptr() as *const T) })
}

pub fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// Decodes one ring buffer record.
pub fn decode(rec: &[u8]) -> Result<Event<'_>, Malformed> {
    let hdr: EventHeader = read(rec)?;
    match hdr.kind {
        EVENT_DATA => {
            let head: DataEventHead = read(rec)?;
            let start = std::mem::size_of::<DataEventHead>();
            let n = head.captured_len as usize;
            // An HTTP/2 record holds the frame state as well as the call's bytes.
            let max = head.total_len as usize
                + if head.flags & DATA_FLAG_H2 != 0 {
                    crate::protocols::http2::kernel_frames::STATE_LEN
                } else {
                    0
                };
            if n >= CAPTURE_MAX || rec.len() < start + n || n > max {
                return Err(Malformed);
            }
            Ok(Event::Data {
                hdr,
                tuple: head.tuple,
                direction: if head.direction == 0 {
                    Direction::Recv
                } else {
                    Direction::Send
                },
                pending: head.flags & DATA_FLAG_PENDING != 0,
                tls: head.flags & DATA_FLAG_TLS != 0,
                h2_frames: head.flags & DATA_FLAG_H2 != 0,
                peer: match head.flags & (DATA_FLAG_PEER_TRACED | DATA_FLAG_PEER_COLLECTOR) {
                    0 => PeerEnd::Unknown,
                    DATA_FLAG_PEER_COLLECTOR => PeerEnd::Collector,
                    _ => PeerEnd::Traced(head.peer_pid),
                },
                unsampled: head.flags & DATA_FLAG_UNSAMPLED != 0,
                after_skip: head.flags & DATA_FLAG_AFTER_SKIP != 0,
                total_len: head.total_len,
                comm: head.comm,
                data: &rec[start..start + n],
            })
        }
        EVENT_CLOSE => Ok(Event::Close { hdr }),
        EVENT_EXIT => Ok(Event::Exit { hdr }),
        EVENT_CTX => {
            let c: CtxEvent = read(rec)?;
            if !matches!(c.ctx_kind, CTX_SERVER | CTX_INJECTED | CTX_CALLER) {
                return Err(Malformed);
            }
            Ok(Event::Ctx(c))
        }
        EVENT_EXEC => {
            let e: ExecEventRaw = read(rec)?;
            Ok(Event::Exec {
                hdr,
                prev_state: e.prev_state,
                comm: e.comm,
                filename: cstr(&e.filename),
            })
        }
        _ => Err(Malformed),
    }
}

/// Encodes an event back into the kernel's record layout: the format of the recorded
/// streams under `test/` that drive the assembler tests without root.
pub fn encode(ev: &Event<'_>) -> Vec<u8> {
    fn bytes<T: Copy>(v: &T) -> &[u8] {
        // SAFETY: T is a plain repr(C) struct without padding we care about.
        unsafe { std::slice::from_raw_parts(v as *const T as *const u8, std::mem::size_of::<T>()) }
    }
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
            after_skip,
            total_len,
            comm,
            data,
        } => {
            let head = DataEventHead {
                hdr: *hdr,
                tuple: *tuple,
                total_len: *total_len,
                captured_len: data.len() as u32,
                direction: (*direction == Direction::Send) as u8,
                flags: if *pending { DATA_FLAG_PENDING } else { 0 }
                    | if *tls { DATA_FLAG_TLS } else { 0 }
                    | if *h2_frames { DATA_FLAG_H2 } else { 0 }
                    | match peer {
                        PeerEnd::Unknown => 0,
                        PeerEnd::Traced(_) => DATA_FLAG_PEER_TRACED,
                        PeerEnd::Collector => DATA_FLAG_PEER_COLLECTOR,
                    }
                    | if *unsampled { DATA_FLAG_UNSAMPLED } else { 0 }
                    | if *after_skip { DATA_FLAG_AFTER_SKIP } else { 0 },
                _pad: [0; 2],
                peer_pid: match peer {
                    PeerEnd::Traced(pid) => *pid,
                    _ => 0,
                },
                comm: *comm,
            };
            let mut v = bytes(&head).to_vec();
            v.extend_from_slice(data);
            v
        }
        Event::Close { hdr } | Event::Exit { hdr } => bytes(hdr).to_vec(),
        Event::Ctx(c) => bytes(c).to_vec(),
        Event::Exec {
            hdr,
            prev_state,
            comm,
            filename,
        } => {
            let mut raw = ExecEventRaw {
                hdr: *hdr,
                prev_state: *prev_state,
                _pad: 0,
                comm: *comm,
                filename: [0; FILENAME_LEN],
            };
            let n = filename.len().min(FILENAME_LEN - 1);
            raw.filename[..n].copy_from_slice(&filename.as_bytes()[..n]);
            bytes(&raw).to_vec()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_roundtrip_and_bounds() {
        let ev = Event::Data {
            hdr: EventHeader {
                kind: EVENT_DATA,
                pid: 7,
                tid: 8,
                fd: 3,
                ts_ns: 99,
                sock_id: 1,
            },
            tuple: ConnTuple {
                family: 2,
                sport: 80,
                dport: 5000,
                ..Default::default()
            },
            direction: Direction::Send,
            pending: false,
            tls: true,
            h2_frames: false,
            peer: PeerEnd::Traced(4242),
            unsampled: true,
            after_skip: false,
            total_len: 10,
            comm: [0; 16],
            data: b"HTTP/1.1 2",
        };
        let rec = encode(&ev);
        match decode(&rec).unwrap() {
            Event::Data {
                data,
                total_len,
                direction,
                tls,
                peer,
                ..
            } => {
                assert!(tls);
                assert_eq!(peer, PeerEnd::Traced(4242));
                assert_eq!(data, b"HTTP/1.1 2");
                assert_eq!(total_len, 10);
                assert_eq!(direction, Direction::Send);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(decode(&rec[..rec.len() - 1]).unwrap_err(), Malformed);
        assert_eq!(decode(&rec[..10]).unwrap_err(), Malformed);
        let mut bad = rec.clone();
        bad[0] = 77;
        assert_eq!(decode(&bad).unwrap_err(), Malformed);
    }

    #[test]
    fn ctx_roundtrip_and_bounds() {
        let c = CtxEvent {
            hdr: EventHeader {
                kind: EVENT_CTX,
                pid: 7,
                tid: 8,
                ts_ns: 5,
                sock_id: 9,
                ..Default::default()
            },
            trace_id: [1; 16],
            span_id: [2; 8],
            parent_span_id: [3; 8],
            ctx_kind: CTX_INJECTED,
            trace_flags: 1,
            ctx_flags: CTX_FLAG_TRACESTATE,
            _pad: 0,
            stream_id: 0,
        };
        let rec = encode(&Event::Ctx(c));
        assert!(matches!(decode(&rec), Ok(Event::Ctx(d)) if d == c));
        assert_eq!(decode(&rec[..rec.len() - 1]).unwrap_err(), Malformed);
        let mut bad = rec.clone();
        bad[64] = 9; // ctx_kind
        assert_eq!(decode(&bad).unwrap_err(), Malformed);
    }
}
