//! Tests: HTTP/2 byte streams built with a test-only frame and HPACK encoder.

use std::collections::VecDeque;

use super::frames::{flag, frame, ty, PREFACE};
use super::hpack::{enc, STATIC_TABLE};
use super::streams::{parse_u32, percent_decode};
use super::*;

// ---------------------------------------------------------------------------
// Test encoder
// ---------------------------------------------------------------------------

/// A stateful HPACK encoder (one per direction), like a real peer's: exact
/// matches are indexed, other fields are literals with incremental indexing
/// (never-indexed for credentials), names are taken from the tables.
struct Enc {
    table: VecDeque<(String, String)>,
    size: usize,
    max: usize,
    pending_update: Option<usize>,
    huffman: bool,
}

impl Enc {
    fn new() -> Self {
        Enc {
            table: VecDeque::new(),
            size: 0,
            max: 4096,
            pending_update: None,
            huffman: false,
        }
    }

    fn huff() -> Self {
        Enc {
            huffman: true,
            ..Enc::new()
        }
    }

    /// Change the table size; a size update starts the next block.
    fn set_max(&mut self, m: usize) {
        self.max = m;
        self.pending_update = Some(m);
        self.evict(0);
    }

    fn evict(&mut self, extra: usize) {
        while self.size + extra > self.max {
            match self.table.pop_back() {
                Some((n, v)) => self.size -= n.len() + v.len() + 32,
                None => break,
            }
        }
    }

    fn encode(&mut self, fields: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(m) = self.pending_update.take() {
            enc::size_update(&mut out, m as u64);
        }
        for &(n, v) in fields {
            let exact_static = STATIC_TABLE.iter().position(|&(sn, sv)| sn == n && sv == v);
            let exact_dyn = self.table.iter().position(|(dn, dv)| dn == n && dv == v);
            if let Some(i) = exact_static {
                enc::indexed(&mut out, i as u64 + 1);
                continue;
            }
            if let Some(i) = exact_dyn {
                enc::indexed(&mut out, i as u64 + 62);
                continue;
            }
            let name_idx = STATIC_TABLE
                .iter()
                .position(|&(sn, _)| sn == n)
                .map(|i| i as u64 + 1)
                .or_else(|| {
                    self.table
                        .iter()
                        .position(|(dn, _)| dn == n)
                        .map(|i| i as u64 + 62)
                })
                .unwrap_or(0);
            if n == "authorization" || n == "cookie" || v.len() > 1000 {
                enc::plain(&mut out, name_idx, n, v, v.len() <= 1000);
                continue;
            }
            enc::incr(&mut out, name_idx, n, v, self.huffman);
            let sz = n.len() + v.len() + 32;
            if sz > self.max {
                self.table.clear();
                self.size = 0;
            } else {
                self.evict(sz);
                self.table.push_front((n.to_string(), v.to_string()));
                self.size += sz;
            }
        }
        out
    }
}

fn settings(entries: &[(u16, u32)]) -> Vec<u8> {
    let mut p = Vec::new();
    for &(id, v) in entries {
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&v.to_be_bytes());
    }
    frame(ty::SETTINGS, 0, 0, &p)
}

fn headers(stream: u32, end_stream: bool, block: &[u8]) -> Vec<u8> {
    let f = flag::END_HEADERS | if end_stream { flag::END_STREAM } else { 0 };
    frame(ty::HEADERS, f, stream, block)
}

fn data(stream: u32, end_stream: bool, len: usize) -> Vec<u8> {
    let f = if end_stream { flag::END_STREAM } else { 0 };
    frame(ty::DATA, f, stream, &vec![0xab; len])
}

fn rst(stream: u32, code: u32) -> Vec<u8> {
    frame(ty::RST_STREAM, 0, stream, &code.to_be_bytes())
}

fn goaway(last: u32, code: u32) -> Vec<u8> {
    let mut p = last.to_be_bytes().to_vec();
    p.extend_from_slice(&code.to_be_bytes());
    p.extend_from_slice(b"debug");
    frame(ty::GOAWAY, 0, 0, &p)
}

fn req_fields(path: &str) -> Vec<(&'static str, String)> {
    vec![
        (":method", "POST".into()),
        (":scheme", "http".into()),
        (":path", path.into()),
        (":authority", "greeter:50051".into()),
        ("content-type", "application/grpc".into()),
        ("user-agent", "grpc-go/1.60.0".into()),
        ("te", "trailers".into()),
        ("grpc-timeout", "1S".into()),
        ("authorization", "Bearer SECRET-TOKEN".into()),
    ]
}

fn as_refs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
    v.iter().map(|(n, v)| (*n, v.as_str())).collect()
}

/// (from_client, bytes, ts)
type Seg = (bool, Vec<u8>, u64);

fn run_conn(mut c: H2Conn, segs: &[Seg]) -> (Vec<H2Event>, H2Conn) {
    let mut out = Vec::new();
    for (fc, b, ts) in segs {
        c.feed(*fc, Segment::Data(b), *ts, &mut out);
    }
    (out, c)
}

fn run(segs: &[Seg]) -> (Vec<H2Event>, H2Stats) {
    let (ev, c) = run_conn(H2Conn::new(), segs);
    (ev, *c.stats())
}

/// Same segments fed one byte at a time (each byte keeps its segment's ts).
fn run_bytes(segs: &[Seg]) -> (Vec<H2Event>, H2Stats) {
    let mut c = H2Conn::new();
    let mut out = Vec::new();
    for (fc, b, ts) in segs {
        for byte in b.chunks(1) {
            c.feed(*fc, Segment::Data(byte), *ts, &mut out);
        }
    }
    (out, *c.stats())
}

fn preface_segs() -> Vec<Seg> {
    let mut p = PREFACE.to_vec();
    p.extend(settings(&[(2, 0), (4, 65535)]));
    vec![
        (true, p, 0),
        (false, settings(&[(3, 100), (5, 16384)]), 0),
        (true, frame(ty::SETTINGS, flag::ACK, 0, &[]), 0),
        (false, frame(ty::SETTINGS, flag::ACK, 0, &[]), 0),
    ]
}

fn kinds(ev: &[H2Event]) -> Vec<String> {
    ev.iter()
        .map(|e| {
            let (k, id) = match e {
                H2Event::Request { stream_id, .. } => ("Req", *stream_id),
                H2Event::RequestEnd { stream_id, .. } => ("ReqEnd", *stream_id),
                H2Event::Response { stream_id, .. } => ("Resp", *stream_id),
                H2Event::ResponseEnd { stream_id, .. } => ("RespEnd", *stream_id),
                H2Event::Reset { stream_id, .. } => ("Reset", *stream_id),
                H2Event::GoAway { .. } => ("GoAway", 0),
                H2Event::HeadersUndecodable { stream_id, .. } => ("Undecodable", *stream_id),
                H2Event::Unfinished { stream_id, .. } => ("Unfinished", *stream_id),
            };
            format!("{k}{id}")
        })
        .collect()
}

fn sid(e: &H2Event) -> u32 {
    match e {
        H2Event::Request { stream_id, .. }
        | H2Event::RequestEnd { stream_id, .. }
        | H2Event::Response { stream_id, .. }
        | H2Event::ResponseEnd { stream_id, .. }
        | H2Event::Reset { stream_id, .. }
        | H2Event::HeadersUndecodable { stream_id, .. }
        | H2Event::Unfinished { stream_id, .. } => *stream_id,
        H2Event::GoAway { .. } => 0,
    }
}

fn request(ev: &[H2Event], id: u32) -> &H2Request {
    ev.iter()
        .find_map(|e| match e {
            H2Event::Request {
                stream_id, head, ..
            } if *stream_id == id => Some(head),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no request {id} in {ev:?}"))
}

/// Unary gRPC call on stream `id`: client segments and server segments.
fn unary(
    ce: &mut Enc,
    se: &mut Enc,
    id: u32,
    path: &str,
    status: &str,
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let rf = req_fields(path);
    let c = vec![
        headers(id, false, &ce.encode(&as_refs(&rf))),
        data(id, true, 12),
    ];
    let s = vec![
        headers(
            id,
            false,
            &se.encode(&[(":status", "200"), ("content-type", "application/grpc")]),
        ),
        data(id, false, 20),
        headers(
            id,
            true,
            &se.encode(&[("grpc-status", status), ("grpc-message", "")]),
        ),
    ];
    (c, s)
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn preface_and_settings() {
    let (ev, c) = run_conn(H2Conn::new(), &preface_segs());
    assert!(ev.is_empty());
    let st = c.stats();
    assert_eq!((st.prefaces, st.frames, st.frames_invalid), (1, 4, 0));
    assert_eq!(c.seen_from_start(), Some(true));
    assert_eq!(c.client_direction(), Some(true));
    // The server's SETTINGS limit what the client sends.
    assert_eq!(c.dirs[0].max_frame, Some(16384));
    // Preface split over segments, and a preface on the server side is not one.
    let mut segs = preface_segs();
    let first = segs.remove(0).1;
    let mut split: Vec<Seg> = vec![
        (true, first[..3].to_vec(), 0),
        (true, first[3..].to_vec(), 0),
    ];
    split.extend(segs);
    let (ev, c) = run_conn(H2Conn::new(), &split);
    assert!(ev.is_empty());
    assert_eq!((c.stats().prefaces, c.stats().frames_invalid), (1, 0));
    let (_, c) = run_conn(H2Conn::new(), &[(false, PREFACE.to_vec(), 0)]);
    assert_eq!((c.stats().prefaces, c.stats().frames_invalid), (0, 1));
}

#[test]
fn unary_grpc_call() {
    let (mut ce, mut se) = (Enc::new(), Enc::new());
    let (c, s) = unary(&mut ce, &mut se, 1, "/helloworld.Greeter/SayHello", "0");
    let mut segs = preface_segs();
    segs.push((true, c[0].clone(), 10));
    segs.push((true, c[1].clone(), 11));
    segs.push((false, s[0].clone(), 20));
    segs.push((false, s[1].clone(), 21));
    segs.push((false, s[2].clone(), 22));
    let (ev, st) = run(&segs);
    assert_eq!(
        ev,
        vec![
            H2Event::Request {
                stream_id: 1,
                ts: 10,
                head: H2Request {
                    method: Some("POST".into()),
                    path: Some("/helloworld.Greeter/SayHello".into()),
                    authority: Some("greeter:50051".into()),
                    scheme: Some("http".into()),
                    content_type: Some("application/grpc".into()),
                    user_agent: Some("grpc-go/1.60.0".into()),
                    traceparent: None,
                    tracestate: None,
                    grpc_timeout: Some("1S".into()),
                },
            },
            H2Event::RequestEnd {
                stream_id: 1,
                ts: 11,
                body_bytes: 12
            },
            H2Event::Response {
                stream_id: 1,
                ts: 20,
                status: Some(200),
                grpc_status: None,
                content_type: Some("application/grpc".into()),
            },
            H2Event::ResponseEnd {
                stream_id: 1,
                ts: 22,
                body_bytes: 20,
                grpc_status: Some(0),
                grpc_message: Some(String::new()),
            },
        ]
    );
    assert_eq!(st.headers_undecodable, 0);
    assert_eq!(st.header_blocks, 3);
    // One segment per direction (everything in one write) gives the same
    // events with other timestamps; and secrets never show.
    let cs: Vec<u8> = segs
        .iter()
        .filter(|s| s.0)
        .flat_map(|s| s.1.clone())
        .collect();
    let ss: Vec<u8> = segs
        .iter()
        .filter(|s| !s.0)
        .flat_map(|s| s.1.clone())
        .collect();
    let (ev2, _) = run(&[(true, cs, 1), (false, ss, 2)]);
    assert_eq!(kinds(&ev2), kinds(&ev));
    let mut c = H2Conn::new();
    let mut out = Vec::new();
    c.feed(true, Segment::Data(&segs[0].1), 0, &mut out);
    let h = &segs[4].1;
    c.feed(true, Segment::Data(&h[..h.len() - 1]), 0, &mut out);
    let dump = format!("{ev:?} {ev:#?} {c:?} {c:#?}");
    assert!(!dump.contains("SECRET"), "{dump}");
    assert!(!dump.contains("Bearer"));
    assert!(dump.contains("buffered"), "a partial block is held: {dump}");
}

#[test]
fn many_concurrent_streams_interleaved() {
    let mut seed: u64 = 0x1234_5678_9abc_def1;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let n = 50u32;
    // Per stream: 5 steps in order; the schedule interleaves streams.
    let mut next = vec![0u8; n as usize];
    let mut schedule = Vec::new();
    while schedule.len() < 5 * n as usize {
        let i = (rnd() % u64::from(n)) as usize;
        if next[i] < 5 {
            schedule.push((i as u32, next[i]));
            next[i] += 1;
        }
    }
    let (mut ce, mut se) = (Enc::huff(), Enc::new());
    let mut segs = preface_segs();
    for (k, &(i, step)) in schedule.iter().enumerate() {
        let id = 2 * i + 1;
        let ts = 100 + k as u64;
        let seg = match step {
            0 => {
                let rf = req_fields(&format!("/svc.S/M{i}"));
                (true, headers(id, false, &ce.encode(&as_refs(&rf))))
            }
            1 => (true, data(id, true, i as usize + 5)),
            2 => {
                let b = se.encode(&[(":status", "200"), ("content-type", "application/grpc")]);
                (false, headers(id, false, &b))
            }
            3 => (false, data(id, false, 2 * i as usize + 5)),
            _ => {
                let code = (i % 3).to_string();
                (
                    false,
                    headers(id, true, &se.encode(&[("grpc-status", &code)])),
                )
            }
        };
        segs.push((seg.0, seg.1, ts));
    }
    let (ev, st) = run(&segs);
    assert_eq!(ev.len(), 4 * n as usize);
    assert_eq!(st.headers_undecodable, 0);
    for i in 0..n {
        let id = 2 * i + 1;
        let mine: Vec<&H2Event> = ev.iter().filter(|e| sid(e) == id).collect();
        let ts_of = |step: u8| 100 + schedule.iter().position(|&s| s == (i, step)).unwrap() as u64;
        assert_eq!(mine.len(), 4, "stream {id}");
        assert_eq!(
            request(&ev, id).path.as_deref(),
            Some(format!("/svc.S/M{i}").as_str())
        );
        assert!(matches!(mine[0], H2Event::Request { ts, .. } if *ts == ts_of(0)));
        assert_eq!(
            *mine[1],
            H2Event::RequestEnd {
                stream_id: id,
                ts: ts_of(1),
                body_bytes: u64::from(i) + 5
            }
        );
        assert!(
            matches!(mine[2], H2Event::Response { ts, status: Some(200), .. } if *ts == ts_of(2))
        );
        assert_eq!(
            *mine[3],
            H2Event::ResponseEnd {
                stream_id: id,
                ts: ts_of(4),
                body_bytes: 2 * u64::from(i) + 5,
                grpc_status: Some(i % 3),
                grpc_message: None,
            }
        );
    }
    // Byte-at-a-time feeding gives the same events.
    let (ev_b, st_b) = run_bytes(&segs);
    assert_eq!(ev_b, ev);
    assert_eq!(st_b, st);
}

#[test]
fn continuation_frames() {
    let mut ce = Enc::new();
    let mut rf = req_fields("/a.B/C");
    rf.push((
        "traceparent",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
    ));
    rf.push(("tracestate", "a=1".into()));
    rf.push(("tracestate", "b=2".into()));
    let block = ce.encode(&as_refs(&rf));
    let (a, rest) = block.split_at(10);
    let (b, c) = rest.split_at(30);
    let mut segs = preface_segs();
    segs.push((true, frame(ty::HEADERS, flag::END_STREAM, 3, a), 5));
    segs.push((true, frame(ty::CONTINUATION, 0, 3, b), 6));
    segs.push((true, frame(ty::CONTINUATION, flag::END_HEADERS, 3, c), 7));
    let (ev, st) = run(&segs);
    assert_eq!(kinds(&ev), ["Req3", "ReqEnd3"]);
    assert!(matches!(ev[0], H2Event::Request { ts: 5, .. }));
    assert!(matches!(
        ev[1],
        H2Event::RequestEnd {
            ts: 7,
            body_bytes: 0,
            ..
        }
    ));
    let h = request(&ev, 3);
    assert_eq!(h.path.as_deref(), Some("/a.B/C"));
    assert_eq!(
        h.traceparent.as_deref(),
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    );
    assert_eq!(h.tracestate.as_deref(), Some("a=1,b=2"));
    assert_eq!(st.headers_undecodable, 0);

    // A frame of another kind inside the block: the block is cut.
    let mut ce = Enc::new();
    let block = ce.encode(&as_refs(&req_fields("/a.B/C")));
    let mut segs = preface_segs();
    segs.push((
        true,
        frame(ty::HEADERS, flag::END_STREAM, 3, &block[..4]),
        5,
    ));
    segs.push((true, frame(ty::PING, 0, 0, &[0; 8]), 6));
    segs.push((
        true,
        frame(ty::CONTINUATION, flag::END_HEADERS, 3, &block[4..]),
        7,
    ));
    let (ev, st) = run(&segs);
    assert_eq!(kinds(&ev), ["Undecodable3", "Req3", "ReqEnd3"]);
    assert_eq!(request(&ev, 3).method.as_deref(), Some("POST"));
    assert_eq!((st.frames_malformed, st.headers_undecodable), (2, 1));
}

#[test]
fn padding_on_headers_and_data() {
    let mut ce = Enc::new();
    let block = ce.encode(&as_refs(&req_fields("/p.P/Q")));
    // HEADERS: PADDED + PRIORITY (pad 7, 5 bytes of priority).
    let mut p = vec![7u8];
    p.extend_from_slice(&[0x80, 0, 0, 1, 16]);
    p.extend_from_slice(&block);
    p.extend_from_slice(&[0; 7]);
    let h = frame(
        ty::HEADERS,
        flag::END_HEADERS | flag::PADDED | flag::PRIO,
        1,
        &p,
    );
    // DATA: 10 bytes of content, 20 of padding.
    let mut dp = vec![20u8];
    dp.extend_from_slice(&[1; 10]);
    dp.extend_from_slice(&[0; 20]);
    let d = frame(ty::DATA, flag::PADDED | flag::END_STREAM, 1, &dp);
    // DATA with only a pad length byte (0 content).
    let d0 = frame(ty::DATA, flag::PADDED, 1, &[0]);
    let mut segs = preface_segs();
    segs.push((true, h, 1));
    segs.push((true, d0, 2));
    segs.push((true, d, 3));
    let (ev, st) = run(&segs);
    assert_eq!(kinds(&ev), ["Req1", "ReqEnd1"]);
    assert_eq!(request(&ev, 1).path.as_deref(), Some("/p.P/Q"));
    assert!(matches!(
        ev[1],
        H2Event::RequestEnd {
            body_bytes: 10,
            ts: 3,
            ..
        }
    ));
    assert_eq!((st.frames_malformed, st.headers_undecodable), (0, 0));
    let (ev_b, _) = run_bytes(&segs);
    assert_eq!(ev_b, ev);
    // Padding longer than the payload: malformed, counted, no panic.
    let mut segs = preface_segs();
    segs.push((
        true,
        frame(
            ty::HEADERS,
            flag::END_HEADERS | flag::PADDED,
            1,
            &[200, 0x82],
        ),
        1,
    ));
    let (ev, st) = run(&segs);
    assert_eq!(st.frames_malformed, 1);
    assert_eq!(st.headers_undecodable, 1);
    assert_eq!(kinds(&ev), ["Undecodable1", "Req1"]);
}

#[test]
fn dynamic_table_across_requests_and_evictions() {
    let (mut ce, mut se) = (Enc::new(), Enc::new());
    let mut segs = preface_segs();
    let mut ts = 10;
    let mut push = |segs: &mut Vec<Seg>, fc: bool, b: Vec<u8>| {
        ts += 1;
        segs.push((fc, b, ts));
    };
    // Three calls: the second and third use dynamic entries only.
    for (k, id) in [1u32, 3, 5].into_iter().enumerate() {
        let (c, s) = unary(&mut ce, &mut se, id, "/svc.S/Same", &k.to_string());
        for b in c {
            push(&mut segs, true, b);
        }
        for b in s {
            push(&mut segs, false, b);
        }
    }
    let (first_len, third_len) = (segs[4].1.len(), segs[segs.len() - 5].1.len());
    assert!(
        third_len * 2 < first_len,
        "dynamic references: {third_len} vs {first_len}"
    );
    // The client announces a smaller table (SETTINGS_HEADER_TABLE_SIZE=80):
    // the server's encoder shrinks (size update in its next block), evicting.
    push(&mut segs, true, settings(&[(1, 80)]));
    se.set_max(80);
    // The client's own encoder shrinks to 0 and grows back (two updates).
    ce.set_max(0);
    ce.pending_update = None;
    let mut b = Vec::new();
    enc::size_update(&mut b, 0);
    enc::size_update(&mut b, 4096);
    ce.max = 4096;
    b.extend(ce.encode(&as_refs(&req_fields("/svc.S/Other"))));
    push(&mut segs, true, headers(7, true, &b));
    for (st, msg) in [("5", "not found"), ("13", "internal%21"), ("5", "again")] {
        let blk = se.encode(&[
            (":status", "200"),
            ("grpc-status", st),
            ("grpc-message", msg),
        ]);
        push(&mut segs, false, headers(7, false, &blk));
    }
    let (ev, c) = run_conn(H2Conn::new(), &segs);
    let stats = c.stats();
    assert_eq!(stats.headers_undecodable, 0);
    assert_eq!(stats.hpack_errors, 0);
    let ends: Vec<Option<u32>> = ev
        .iter()
        .filter_map(|e| match e {
            H2Event::ResponseEnd { grpc_status, .. } => Some(*grpc_status),
            _ => None,
        })
        .collect();
    assert_eq!(ends, [Some(0), Some(1), Some(2)]);
    for id in [1, 3, 5] {
        assert_eq!(request(&ev, id).path.as_deref(), Some("/svc.S/Same"));
        assert_eq!(request(&ev, id).authority.as_deref(), Some("greeter:50051"));
    }
    assert_eq!(request(&ev, 7).path.as_deref(), Some("/svc.S/Other"));
    // Stream 7's first block is its response (the next two are trailers
    // without END_STREAM: the last values win for grpc-status).
    let resp = ev
        .iter()
        .find(|e| matches!(e, H2Event::Response { stream_id: 7, .. }))
        .unwrap();
    assert!(matches!(
        resp,
        H2Event::Response {
            grpc_status: Some(5),
            ..
        }
    ));
    assert_eq!(c.dirs[1].hpack.max_size(), 80);
    assert!(c.dirs[1].hpack.len() <= 1, "80 bytes hold one entry");
    assert_eq!(c.dirs[1].hpack.size_updates_above_limit(), 0);
    // Close: stream 7's response did not end.
    let mut c = c;
    let mut out = Vec::new();
    c.close(99, &mut out);
    assert_eq!(
        out,
        [H2Event::Unfinished {
            stream_id: 7,
            ts: 99
        }]
    );
}

#[test]
fn trailers_only_error_response() {
    let (mut ce, mut se) = (Enc::new(), Enc::new());
    let rf = req_fields("/svc.S/Missing");
    let mut segs = preface_segs();
    segs.push((true, headers(1, false, &ce.encode(&as_refs(&rf))), 1));
    segs.push((true, data(1, true, 5), 2));
    let blk = se.encode(&[
        (":status", "200"),
        ("content-type", "application/grpc"),
        ("grpc-status", "12"),
        ("grpc-message", "unknown%20method%20Missing"),
    ]);
    segs.push((false, headers(1, true, &blk), 3));
    let (ev, _) = run(&segs);
    assert_eq!(kinds(&ev), ["Req1", "ReqEnd1", "Resp1", "RespEnd1"]);
    assert_eq!(
        ev[2],
        H2Event::Response {
            stream_id: 1,
            ts: 3,
            status: Some(200),
            grpc_status: Some(12),
            content_type: Some("application/grpc".into()),
        }
    );
    assert_eq!(
        ev[3],
        H2Event::ResponseEnd {
            stream_id: 1,
            ts: 3,
            body_bytes: 0,
            grpc_status: Some(12),
            grpc_message: Some("unknown method Missing".into()),
        }
    );
    assert!(grpc_server_error(12) && grpc_client_error(12));
}

#[test]
fn server_streaming_ends_at_trailers() {
    let (mut ce, mut se) = (Enc::new(), Enc::new());
    let mut segs = preface_segs();
    segs.push((
        true,
        headers(1, true, &ce.encode(&as_refs(&req_fields("/s.S/Stream")))),
        1,
    ));
    segs.push((
        false,
        headers(1, false, &se.encode(&[(":status", "200")])),
        2,
    ));
    for k in 0..100 {
        segs.push((false, data(1, false, 100), 3 + k));
    }
    segs.push((
        false,
        headers(1, true, &se.encode(&[("grpc-status", "0")])),
        500,
    ));
    let (ev, _) = run(&segs);
    assert_eq!(kinds(&ev), ["Req1", "ReqEnd1", "Resp1", "RespEnd1"]);
    assert!(matches!(
        ev[1],
        H2Event::RequestEnd {
            ts: 1,
            body_bytes: 0,
            ..
        }
    ));
    assert_eq!(
        ev[3],
        H2Event::ResponseEnd {
            stream_id: 1,
            ts: 500,
            body_bytes: 10_000,
            grpc_status: Some(0),
            grpc_message: None,
        }
    );
    // A plain HTTP response ending with DATA END_STREAM, after a 103.
    let (mut ce, mut se) = (Enc::new(), Enc::new());
    let mut segs = preface_segs();
    let get = [
        (":method", "GET"),
        (":scheme", "https"),
        (":path", "/x"),
        (":authority", "h"),
    ];
    segs.push((true, headers(1, true, &ce.encode(&get)), 1));
    segs.push((
        false,
        headers(1, false, &se.encode(&[(":status", "103")])),
        2,
    ));
    segs.push((
        false,
        headers(1, false, &se.encode(&[(":status", "404")])),
        3,
    ));
    segs.push((false, data(1, true, 9), 4));
    let (ev, _) = run(&segs);
    assert_eq!(kinds(&ev), ["Req1", "ReqEnd1", "Resp1", "RespEnd1"]);
    assert!(matches!(
        ev[2],
        H2Event::Response {
            status: Some(404),
            ts: 3,
            ..
        }
    ));
    assert!(matches!(
        ev[3],
        H2Event::ResponseEnd {
            body_bytes: 9,
            ts: 4,
            grpc_status: None,
            ..
        }
    ));
}

#[test]
fn rst_stream_and_goaway() {
    let (mut ce, mut se) = (Enc::new(), Enc::new());
    let mut segs = preface_segs();
    for id in [1, 3, 5] {
        segs.push((
            true,
            headers(id, false, &ce.encode(&as_refs(&req_fields("/a.A/B")))),
            u64::from(id),
        ));
    }
    segs.push((true, rst(1, 8), 10)); // CANCEL by the client
    segs.push((false, goaway(3, 0), 11));
    segs.push((true, data(3, true, 4), 12));
    segs.push((
        false,
        headers(
            3,
            true,
            &se.encode(&[(":status", "200"), ("grpc-status", "0")]),
        ),
        13,
    ));
    segs.push((false, rst(3, 0), 14)); // after the end: no event, forgotten
    segs.push((false, rst(99, 2), 15)); // never seen
    let (ev, st) = run(&segs);
    assert_eq!(
        kinds(&ev),
        ["Req1", "Req3", "Req5", "Reset1", "GoAway0", "Reset5", "ReqEnd3", "Resp3", "RespEnd3"]
    );
    assert_eq!(
        ev[3],
        H2Event::Reset {
            stream_id: 1,
            ts: 10,
            error_code: Some(8),
            by_client: true
        }
    );
    assert_eq!(
        ev[4],
        H2Event::GoAway {
            ts: 11,
            last_stream_id: 3,
            error_code: 0,
            by_client: false
        }
    );
    assert_eq!(
        ev[5],
        H2Event::Reset {
            stream_id: 5,
            ts: 11,
            error_code: Some(7),
            by_client: false
        }
    );
    assert_eq!(st.frames_untracked_stream, 2);
}

#[test]
fn connection_seen_mid_stream() {
    // Earlier calls (never fed) filled both dynamic tables.
    let (mut ce, mut se) = (Enc::new(), Enc::new());
    for id in [1, 3] {
        let _ = unary(&mut ce, &mut se, id, "/svc.S/Hidden", "0");
    }
    // Captured from here: stream 5, plus a DATA frame of the unseen stream 3.
    let (c, s) = unary(&mut ce, &mut se, 5, "/svc.S/Hidden", "0");
    let segs: Vec<Seg> = vec![
        (false, data(3, false, 7), 1),
        (true, c[0].clone(), 2),
        (true, c[1].clone(), 3),
        (false, s[0].clone(), 4),
        (false, s[1].clone(), 5),
        (false, s[2].clone(), 6),
    ];
    let (ev, conn) = run_conn(H2Conn::new(), &segs);
    let st = conn.stats();
    assert_eq!(conn.seen_from_start(), Some(false));
    assert_eq!(
        kinds(&ev),
        [
            "Undecodable5",
            "Req5",
            "ReqEnd5",
            "Undecodable5",
            "Resp5",
            "Undecodable5",
            "RespEnd5"
        ]
    );
    let h = request(&ev, 5);
    assert_eq!(h.method.as_deref(), Some("POST")); // static table
    assert_eq!(h.scheme.as_deref(), Some("http"));
    assert_eq!(h.path, None); // dynamic entry never seen
    assert!(matches!(
        ev[4],
        H2Event::Response {
            status: Some(200),
            content_type: None,
            ..
        }
    ));
    assert!(matches!(
        ev[6],
        H2Event::ResponseEnd {
            grpc_status: None,
            body_bytes: 20,
            ..
        }
    ));
    assert_eq!(st.headers_undecodable, 3);
    assert_eq!(st.frames_untracked_stream, 1);
    assert_eq!(st.frames_invalid, 0);

    // New literals seen mid-stream are learned: a later call with a new path
    // decodes it, and references to it after that too.
    let (c7, _) = unary(&mut ce, &mut se, 7, "/svc.S/New", "0");
    let (c9, _) = unary(&mut ce, &mut se, 9, "/svc.S/New", "0");
    let mut conn = conn;
    let mut out = Vec::new();
    conn.feed(true, Segment::Data(&c7[0]), 7, &mut out);
    conn.feed(true, Segment::Data(&c9[0]), 9, &mut out);
    assert_eq!(request(&out, 7).path.as_deref(), Some("/svc.S/New"));
    assert_eq!(request(&out, 9).path.as_deref(), Some("/svc.S/New"));

    // Garbage first: skipped until a segment starts with frame headers.
    let (ev, conn) = run_conn(
        H2Conn::new(),
        &[(true, vec![0x55; 30], 1), (true, c9[0].clone(), 2)],
    );
    assert_eq!(conn.stats().frames_invalid, 1);
    assert_eq!(conn.stats().resyncs, 1);
    assert!(kinds(&ev).contains(&"Req9".to_string()));
}

#[test]
fn unknown_roles_are_inferred() {
    let (mut ce, mut se) = (Enc::new(), Enc::new());
    let (c, s) = unary(&mut ce, &mut se, 1, "/r.R/M", "0");
    // Labels swapped: the preface arrives on the `from_client == false` side.
    let mut segs: Vec<Seg> = preface_segs()
        .into_iter()
        .map(|(fc, b, t)| (!fc, b, t))
        .collect();
    segs.extend(c.iter().map(|b| (false, b.clone(), 1)));
    segs.extend(s.iter().map(|b| (true, b.clone(), 2)));
    let (ev, conn) = run_conn(H2Conn::new_unknown_roles(), &segs);
    assert_eq!(conn.client_direction(), Some(false));
    assert_eq!(kinds(&ev), ["Req1", "ReqEnd1", "Resp1", "RespEnd1"]);
    // Mid-stream: a block that tells nothing first (unattributed), then
    // roles from `:method`.
    let x = se.encode(&[("grpc-status", "0")]);
    let (c, s) = unary(&mut ce, &mut se, 3, "/r.R/M", "0");
    let segs: Vec<Seg> = vec![
        (true, headers(101, true, &x), 1),
        (false, c[0].clone(), 2),
        (false, c[1].clone(), 3),
        (true, s[0].clone(), 4),
        (true, s[1].clone(), 5),
        (true, s[2].clone(), 6),
    ];
    let (ev, conn) = run_conn(H2Conn::new_unknown_roles(), &segs);
    assert_eq!(conn.client_direction(), Some(false));
    assert_eq!(conn.stats().blocks_unattributed, 1);
    assert_eq!(
        kinds(&ev),
        [
            "Undecodable3",
            "Req3",
            "ReqEnd3",
            "Undecodable3",
            "Resp3",
            "Undecodable3",
            "RespEnd3"
        ]
    );
}

#[test]
fn gaps_in_data_headers_and_frame_headers() {
    let (mut ce, mut se) = (Enc::new(), Enc::new());
    let rf = req_fields("/g.G/Big");
    let mut c = Conn2::new(&preface_segs());
    // DATA of 10000 bytes: 4095 captured, the rest a gap; then END_STREAM.
    let h = headers(1, false, &ce.encode(&as_refs(&rf)));
    c.data(true, &h, 1);
    let big = data(1, false, 10_000);
    c.data(true, &big[..4095], 2);
    c.gap(true, (big.len() - 4095) as u64, 2);
    c.data(true, &data(1, true, 3), 3);
    assert_eq!(kinds(&c.ev), ["Req1", "ReqEnd1"]);
    assert!(matches!(
        c.ev[1],
        H2Event::RequestEnd {
            body_bytes: 10_003,
            ts: 3,
            ..
        }
    ));
    // A gap inside a header block: the block is cut, the table unknown.
    let long = "x".repeat(6000);
    let mut rf3 = req_fields("/g.G/Long");
    rf3.push(("x-long", long.clone()));
    let h3 = headers(3, true, &ce.encode(&as_refs(&rf3)));
    c.data(true, &h3[..4095], 4);
    c.gap(true, (h3.len() - 4095) as u64, 4);
    assert_eq!(c.conn.stats().gaps_in_header_blocks, 1);
    assert_eq!(kinds(&c.ev[2..]), ["Undecodable3", "Req3", "ReqEnd3"]);
    assert_eq!(
        request(&c.ev, 3).path.as_deref(),
        Some("/g.G/Long"),
        "decoded before the gap"
    );
    // The next request refers to dynamic entries: undecodable, still reported.
    let h5 = headers(5, true, &ce.encode(&as_refs(&rf)));
    c.data(true, &h5, 5);
    assert_eq!(kinds(&c.ev[5..]), ["Undecodable5", "Req5", "ReqEnd5"]);
    assert_eq!(request(&c.ev, 5).method.as_deref(), Some("POST"));
    // A gap swallowing frame headers: sync lost, regained at the next segment
    // that starts with a frame header; a segment that does not is skipped.
    let resp = headers(1, false, &se.encode(&[(":status", "200")]));
    let mut w = resp.clone();
    w.extend(data(1, false, 5000));
    w.extend(data(1, false, 5000));
    c.data(false, &w[..4095], 6);
    c.gap(false, (w.len() - 4095) as u64, 6);
    assert_eq!(c.conn.stats().gaps_in_frame_headers, 1);
    c.data(false, &[0xee; 100], 7);
    assert_eq!(c.conn.stats().segments_skipped, 1);
    c.data(
        false,
        &headers(1, true, &se.encode(&[("grpc-status", "0")])),
        8,
    );
    assert_eq!(c.conn.stats().resyncs, 1);
    let tail: Vec<String> = kinds(&c.ev[8..]);
    assert_eq!(tail, ["Resp1", "RespEnd1"]);
    // Response body: the captured part of the first DATA and all of what the
    // gap covered inside it; the second DATA frame was lost with its header.
    assert!(matches!(
        c.ev[9],
        H2Event::ResponseEnd {
            body_bytes: 5000,
            ts: 8,
            grpc_status: Some(0),
            ..
        }
    ));
}

/// Feeding helper with gaps.
struct Conn2 {
    conn: H2Conn,
    ev: Vec<H2Event>,
}

impl Conn2 {
    fn new(start: &[Seg]) -> Self {
        let (ev, conn) = run_conn(H2Conn::new(), start);
        assert!(ev.is_empty());
        Conn2 { conn, ev }
    }
    fn data(&mut self, fc: bool, b: &[u8], ts: u64) {
        self.conn.feed(fc, Segment::Data(b), ts, &mut self.ev);
    }
    fn gap(&mut self, fc: bool, n: u64, ts: u64) {
        self.conn.feed(fc, Segment::Gap(n), ts, &mut self.ev);
    }
}

#[test]
fn streams_are_capped_and_closed() {
    let mut ce = Enc::new();
    let mut c = Conn2::new(&preface_segs());
    let get = [
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "h"),
    ];
    for i in 0..(MAX_STREAMS as u32 + 10) {
        c.data(true, &headers(2 * i + 1, true, &ce.encode(&get)), 1);
    }
    assert_eq!(c.conn.open_streams(), MAX_STREAMS);
    assert_eq!(c.conn.stats().streams_evicted, 10);
    let unfinished =
        c.ev.iter()
            .filter(|e| matches!(e, H2Event::Unfinished { .. }))
            .count();
    assert_eq!(unfinished, 10);
    assert!(c.ev.contains(&H2Event::Unfinished {
        stream_id: 1,
        ts: 1
    }));
    let mut out = Vec::new();
    c.conn.close(5, &mut out);
    assert_eq!(out.len(), MAX_STREAMS);
    assert_eq!(c.conn.open_streams(), 0);
    // Closed: ignored.
    c.data(true, &headers(1, true, &ce.encode(&get)), 6);
    assert_eq!(c.conn.stats().frames, MAX_STREAMS as u64 + 10 + 4);
}

#[test]
fn oversized_header_block_is_cut() {
    let mut ce = Enc::new();
    let mut c = Conn2::new(&preface_segs());
    let mut rf = req_fields("/big.B/M");
    rf.push(("x-huge", "y".repeat(MAX_HEADER_BLOCK)));
    let block = ce.encode(&as_refs(&rf));
    // Split into frames of at most 16384 bytes.
    let chunks: Vec<&[u8]> = block.chunks(16384).collect();
    for (k, ch) in chunks.iter().enumerate() {
        let last = k + 1 == chunks.len();
        let t = if k == 0 {
            ty::HEADERS
        } else {
            ty::CONTINUATION
        };
        let f =
            if last { flag::END_HEADERS } else { 0 } | if k == 0 { flag::END_STREAM } else { 0 };
        c.data(true, &frame(t, f, 1, ch), 1);
    }
    assert_eq!(c.conn.stats().header_blocks_too_large, 1);
    assert_eq!(kinds(&c.ev), ["Undecodable1", "Req1", "ReqEnd1"]);
    assert_eq!(request(&c.ev, 1).path.as_deref(), Some("/big.B/M"));
}

#[test]
fn push_promise_keeps_table_in_sync() {
    let (mut ce, mut se) = (Enc::new(), Enc::new());
    let mut c = Conn2::new(&preface_segs());
    let get = [
        (":method", "GET"),
        (":scheme", "https"),
        (":path", "/index"),
        (":authority", "h"),
    ];
    c.data(true, &headers(1, true, &ce.encode(&get)), 1);
    // PUSH_PROMISE (padded) whose block inserts entries into the server's table.
    let pp_block = se.encode(&[
        (":method", "GET"),
        (":path", "/style.css"),
        (":authority", "h"),
        (":scheme", "https"),
    ]);
    let mut p = vec![3u8, 0, 0, 0, 2];
    p.extend_from_slice(&pp_block);
    p.extend_from_slice(&[0; 3]);
    c.data(
        false,
        &frame(ty::PUSH_PROMISE, flag::END_HEADERS | flag::PADDED, 1, &p),
        2,
    );
    // The response uses dynamic entries placed after them.
    let r = se.encode(&[(":status", "200"), ("content-type", "text/html")]);
    c.data(false, &headers(1, false, &r), 3);
    let r2 = se.encode(&[(":status", "200"), ("content-type", "text/html")]);
    c.data(false, &headers(2, true, &r2), 4); // the pushed response: untracked
    c.data(false, &data(1, true, 5), 5);
    assert_eq!(kinds(&c.ev), ["Req1", "ReqEnd1", "Resp1", "RespEnd1"]);
    assert!(
        matches!(&c.ev[2], H2Event::Response { content_type: Some(t), .. } if t == "text/html")
    );
    assert_eq!(c.conn.stats().headers_undecodable, 0);
}

#[test]
fn unknown_frame_types_and_window_updates_are_skipped() {
    let mut ce = Enc::new();
    let mut c = Conn2::new(&preface_segs());
    c.data(true, &frame(0x0a, 0, 0, b"altsvc"), 1);
    c.data(true, &frame(ty::WINDOW_UPDATE, 0, 0, &[0, 0, 1, 0]), 1);
    c.data(true, &frame(ty::PRIORITY, 0, 1, &[0, 0, 0, 0, 1]), 1);
    c.data(true, &frame(ty::PING, 0, 0, &[1; 8]), 1);
    let get = [
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "h"),
    ];
    c.data(true, &headers(1, true, &ce.encode(&get)), 2);
    assert_eq!(kinds(&c.ev), ["Req1", "ReqEnd1"]);
    assert_eq!(c.conn.stats().frames_unknown_type, 1);
    // In sync, a frame breaking the rules (SETTINGS on a stream) loses sync.
    c.data(true, &frame(ty::SETTINGS, 0, 1, &[]), 3);
    assert_eq!(c.conn.stats().frames_invalid, 1);
    // A frame longer than the announced SETTINGS_MAX_FRAME_SIZE, too.
    c.data(true, &data(1, false, 20_000), 4);
    assert_eq!(c.conn.stats().resyncs, 0);
    c.data(true, &frame(ty::PING, 0, 0, &[1; 8]), 5);
    assert_eq!(c.conn.stats().resyncs, 1);
    c.data(true, &data(1, false, 20_000), 6);
    assert_eq!(c.conn.stats().frames_invalid, 2);
}

#[test]
fn detection() {
    assert!(looks_like_h2(PREFACE));
    let mut p = PREFACE.to_vec();
    p.extend(settings(&[(3, 100)]));
    assert!(looks_like_h2(&p));
    assert!(is_client_preface(&p));
    assert!(looks_like_h2(b"PRI "));
    assert!(!looks_like_h2(b"PRI"));
    assert!(looks_like_h2(&settings(&[(3, 100), (4, 65535)])));
    assert!(looks_like_h2(&frame(ty::SETTINGS, flag::ACK, 0, &[])));
    assert!(!is_client_preface(&settings(&[])));
    let mut ce = Enc::new();
    let get = [
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "h"),
    ];
    let mut hd = headers(1, true, &ce.encode(&get));
    assert!(looks_like_h2(&hd));
    hd.extend(frame(ty::WINDOW_UPDATE, 0, 0, &[0, 1, 0, 0]));
    assert!(looks_like_h2(&hd));
    hd.extend(frame(0x77, 0, 0, &[]));
    assert!(!looks_like_h2(&hd), "every whole frame header is checked");
    let nots: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        b"POST /api HTTP/1.1\r\n".to_vec(),
        b"HTTP/1.1 200 OK\r\n\r\n".to_vec(),
        b"PUT".to_vec(),
        vec![
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
        ],
        vec![
            0x16, 0x03, 0x01, 0x00, 0x01, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
        ],
        vec![0x17, 0x03, 0x03, 0x00, 0x45, 0xaa, 0xbb, 0xcc, 0xdd, 0xee],
        vec![0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28, 0, 0],
        vec![],
        vec![0, 0, 0, 0x50, 0, 3, 0, 0, 0, 0],
        b"*1\r\n$4\r\nPING\r\n".to_vec(),
        vec![0; 9], // DATA on stream 0
        frame(ty::HEADERS, flag::END_HEADERS, 0, &[0x82]),
        frame(ty::PING, 0, 0, &[0; 4]),
        frame(ty::DATA, 0x40, 1, &[]),
    ];
    for not in &nots {
        assert!(!looks_like_h2(not), "{not:?}");
    }
}

#[test]
fn grpc_helpers() {
    assert_eq!(
        grpc_method("/helloworld.Greeter/SayHello"),
        Some(("helloworld.Greeter", "SayHello"))
    );
    assert_eq!(grpc_method("/a.b.c.S/M"), Some(("a.b.c.S", "M")));
    for bad in ["", "/", "//M", "/S/", "/S", "S/M", "/S/M/x", "/S/M?q=1"] {
        assert_eq!(grpc_method(bad), None, "{bad}");
    }
    let server: Vec<u32> = (0..=16).filter(|&c| grpc_server_error(c)).collect();
    assert_eq!(server, [2, 4, 12, 13, 14, 15]);
    assert!(!grpc_client_error(0));
    assert!((1..=16).all(grpc_client_error));
    assert!(is_grpc("application/grpc") && is_grpc("application/grpc+proto"));
    assert!(!is_grpc("application/grpc-web") && !is_grpc("application/json"));
    assert_eq!(percent_decode(b"a%20b%zz%4"), "a b%zz%4");
    assert_eq!(parse_u32(b"12"), Some(12));
    assert_eq!(parse_u32(b"-1"), None);
}

/// Cheap deterministic fuzzing: mutated streams, fed whole, split, in bytes
/// and with gaps, never panic; whole and byte-at-a-time feeding agree.
#[test]
fn random_inputs_never_panic() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut ce, mut se) = (Enc::huff(), Enc::new());
    let mut base_c = PREFACE.to_vec();
    base_c.extend(settings(&[(1, 200), (5, 20000)]));
    let mut base_s = settings(&[(1, 100)]);
    for id in [1, 3, 5] {
        let (c, s) = unary(&mut ce, &mut se, id, "/f.F/Z", "14");
        base_c.extend(c.concat());
        base_s.extend(s.concat());
    }
    for _ in 0..1500 {
        let mut c = base_c.clone();
        let mut s = base_s.clone();
        for buf in [&mut c, &mut s] {
            for _ in 0..(rnd() % 4) {
                let i = (rnd() as usize) % buf.len();
                match rnd() % 3 {
                    0 => buf[i] = rnd() as u8,
                    1 => {
                        buf.remove(i);
                    }
                    _ => buf.insert(i, rnd() as u8),
                }
            }
        }
        let cut_c = (rnd() as usize) % (c.len() + 1);
        let cut_s = (rnd() as usize) % (s.len() + 1);
        let segs: Vec<Seg> = vec![
            (true, c[..cut_c].to_vec(), 1),
            (false, s[..cut_s].to_vec(), 2),
            (true, c[cut_c..].to_vec(), 3),
            (false, s[cut_s..].to_vec(), 4),
        ];
        let (whole, st) = run(&segs);
        let (bytes, st_b) = run_bytes(&segs);
        // Once frame sync is lost, where it comes back depends on segments.
        if st.frames_invalid == 0 && st_b.frames_invalid == 0 {
            assert_eq!(whole, bytes);
            assert_eq!(st, st_b);
        }
        // Gaps and unknown roles.
        for mut conn in [H2Conn::new(), H2Conn::new_unknown_roles()] {
            let mut out = Vec::new();
            conn.feed(true, Segment::Data(&c[..cut_c]), 1, &mut out);
            conn.feed(true, Segment::Gap(rnd() % 64), 1, &mut out);
            conn.feed(false, Segment::Data(&s[..cut_s]), 2, &mut out);
            conn.feed(false, Segment::Gap(rnd() % 5000), 2, &mut out);
            conn.feed(true, Segment::Data(&c[cut_c..]), 3, &mut out);
            conn.feed(false, Segment::Data(&s[cut_s..]), 4, &mut out);
            conn.close(5, &mut out);
        }
    }
}

/// The kernel recognises an app's own `traceparent` in a header block by its name as an
/// encoder first sends it: plain, or Huffman-coded. Its constants must be those bytes.
#[test]
fn kernel_knows_the_traceparent_name_in_both_encodings() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../ebpf-programs/h2_inject.h");
    let src = std::fs::read_to_string(path).unwrap();
    let word = |name: &str| {
        let line = src
            .lines()
            .find(|l| l.starts_with(&format!("#define {name} ")))
            .unwrap_or_else(|| panic!("{name} in {path}"));
        let hex = line.split_whitespace().nth(2).unwrap();
        let hex = hex.trim_start_matches("0x").trim_end_matches("ULL");
        u64::from_str_radix(hex, 16).unwrap().to_le_bytes()
    };
    assert_eq!(&word("TP_NAME_PLAIN"), b"tracepar");
    let huff = super::huffman::encode(b"traceparent");
    assert_eq!(word("TP_NAME_HUFF").as_slice(), huff.as_slice());
}
