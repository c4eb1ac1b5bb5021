//! Tests: messages built by hand with small builders, and conversations recorded between
//! real clients (confluent-kafka / librdkafka, kafka-python) and a real Kafka 4.4 broker
//! (test/golden/kafka_<scenario>_<n>.bin, one file per connection).

use super::*;
use crate::protocols::capture;

const UP: Flow = Flow::ToServer;
const DOWN: Flow = Flow::ToClient;

// ---------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------

fn uvar(mut v: u32, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn var(v: i64, out: &mut Vec<u8>) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// Kafka field encoder for one (flexible or not) version.
struct Enc {
    flex: bool,
    b: Vec<u8>,
}

impl Enc {
    fn new(flex: bool) -> Enc {
        Enc {
            flex,
            b: Vec::new(),
        }
    }
    fn i8(&mut self, v: i8) -> &mut Self {
        self.b.push(v as u8);
        self
    }
    fn i16(&mut self, v: i16) -> &mut Self {
        self.b.extend(v.to_be_bytes());
        self
    }
    fn i32(&mut self, v: i32) -> &mut Self {
        self.b.extend(v.to_be_bytes());
        self
    }
    fn i64(&mut self, v: i64) -> &mut Self {
        self.b.extend(v.to_be_bytes());
        self
    }
    fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.b.extend(v);
        self
    }
    fn str(&mut self, s: Option<&str>) -> &mut Self {
        match (s, self.flex) {
            (None, true) => self.b.push(0),
            (None, false) => self.b.extend((-1i16).to_be_bytes()),
            (Some(s), true) => {
                uvar(s.len() as u32 + 1, &mut self.b);
                self.b.extend(s.as_bytes());
            }
            (Some(s), false) => {
                self.b.extend((s.len() as i16).to_be_bytes());
                self.b.extend(s.as_bytes());
            }
        }
        self
    }
    fn bytes(&mut self, v: Option<&[u8]>) -> &mut Self {
        match (v, self.flex) {
            (None, true) => self.b.push(0),
            (None, false) => self.b.extend((-1i32).to_be_bytes()),
            (Some(v), true) => {
                uvar(v.len() as u32 + 1, &mut self.b);
                self.b.extend(v);
            }
            (Some(v), false) => {
                self.b.extend((v.len() as i32).to_be_bytes());
                self.b.extend(v);
            }
        }
        self
    }
    fn arr(&mut self, n: usize) -> &mut Self {
        if self.flex {
            uvar(n as u32 + 1, &mut self.b);
        } else {
            self.b.extend((n as i32).to_be_bytes());
        }
        self
    }
    fn tags(&mut self) -> &mut Self {
        if self.flex {
            self.b.push(0);
        }
        self
    }
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as i32).to_be_bytes().to_vec();
    v.extend(body);
    v
}

fn request(key: i16, ver: i16, corr: i32, client: Option<&str>, body: &[u8]) -> Vec<u8> {
    let flex = flexible(key, ver);
    let mut e = Enc::new(false);
    e.i16(key).i16(ver).i32(corr).str(client);
    if flex {
        e.b.push(0);
    }
    e.raw(body);
    frame(&e.b)
}

fn response(key: i16, ver: i16, corr: i32, body: &[u8]) -> Vec<u8> {
    let mut e = Enc::new(false);
    e.i32(corr);
    if flexible(key, ver) && key != API_VERSIONS {
        e.b.push(0);
    }
    e.raw(body);
    frame(&e.b)
}

const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fn tp_ctx() -> MsgContext {
    records::traceparent(TP.as_bytes()).unwrap()
}

/// One record: (key, value, headers).
type Rec<'a> = (&'a [u8], &'a [u8], Vec<(&'a str, &'a [u8])>);

fn record_bytes(i: usize, r: &Rec<'_>) -> Vec<u8> {
    let mut body = vec![0u8]; // attributes
    var(0, &mut body); // timestamp delta
    var(i as i64, &mut body); // offset delta
    var(r.0.len() as i64, &mut body);
    body.extend(r.0);
    var(r.1.len() as i64, &mut body);
    body.extend(r.1);
    var(r.2.len() as i64, &mut body);
    for (k, v) in &r.2 {
        var(k.len() as i64, &mut body);
        body.extend(k.as_bytes());
        var(v.len() as i64, &mut body);
        body.extend(*v);
    }
    let mut out = Vec::new();
    var(body.len() as i64, &mut out);
    out.extend(body);
    out
}

fn compress(codec: i16, plain: &[u8]) -> Vec<u8> {
    use std::io::Write;
    match codec {
        0 => plain.to_vec(),
        1 => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(plain).unwrap();
            e.finish().unwrap()
        }
        2 => snap::raw::Encoder::new().compress_vec(plain).unwrap(),
        // Xerial framing (Java clients): header, then length-prefixed raw blocks.
        5 => {
            let mut out = b"\x82SNAPPY\x00".to_vec();
            out.extend(1i32.to_be_bytes());
            out.extend(1i32.to_be_bytes());
            for chunk in plain.chunks(7) {
                let c = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
                out.extend((c.len() as u32).to_be_bytes());
                out.extend(c);
            }
            out
        }
        3 => {
            let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
            e.write_all(plain).unwrap();
            e.finish().unwrap()
        }
        4 => zstd::encode_all(plain, 3).unwrap(),
        _ => unreachable!(),
    }
}

/// A record batch (magic 2); codec 5 is snappy with xerial framing.
fn batch_with(base: i64, recs: &[Rec<'_>], codec: i16, attrs_extra: i16) -> Vec<u8> {
    let plain: Vec<u8> = recs
        .iter()
        .enumerate()
        .flat_map(|(i, r)| record_bytes(i, r))
        .collect();
    let data = compress(codec, &plain);
    let attr = if codec == 5 { 2 } else { codec } | attrs_extra;
    let mut after_len = Enc::new(false);
    after_len
        .i32(0) // partition leader epoch
        .i8(2)
        .i32(0) // crc (not checked)
        .i16(attr)
        .i32(recs.len() as i32 - 1)
        .i64(0)
        .i64(0)
        .i64(-1)
        .i16(-1)
        .i32(-1)
        .i32(recs.len() as i32)
        .raw(&data);
    let mut e = Enc::new(false);
    e.i64(base).i32(after_len.b.len() as i32).raw(&after_len.b);
    e.b
}

fn batch(base: i64, recs: &[Rec<'_>], codec: i16) -> Vec<u8> {
    batch_with(base, recs, codec, 0)
}

fn recs(n: usize, with_tp: bool) -> Vec<Rec<'static>> {
    (0..n)
        .map(|_| {
            let mut h: Vec<(&str, &[u8])> = vec![("app", b"x")];
            if with_tp {
                h.push(("traceparent", TP.as_bytes()));
            }
            (&b"k"[..], &b"value value"[..], h)
        })
        .collect()
}

type ProduceTopics<'a> = [(T<'a>, Vec<(i32, Vec<u8>)>)];
type ProduceResults<'a> = [(T<'a>, Vec<(i32, i16, i64)>)];
type FetchTopics<'a> = [(T<'a>, Vec<(i32, i16, Option<Vec<u8>>)>)];
type Recorded = Vec<(usize, Flow, u64, Vec<u8>)>;
/// How a replay cuts each record: pieces and the uncaptured bytes after each.
type Cut<'a> = dyn Fn(&[u8]) -> Vec<(Vec<u8>, u64)> + 'a;

/// Topic reference: a name (up to v12) or an id (v13+).
#[derive(Clone, Copy)]
enum T<'a> {
    Name(&'a str),
    Id([u8; 16]),
}

fn topic(e: &mut Enc, t: T<'_>) {
    match t {
        T::Name(n) => {
            e.str(Some(n));
        }
        T::Id(id) => {
            e.raw(&id);
        }
    }
}

fn produce_req(
    ver: i16,
    corr: i32,
    client: &str,
    acks: i16,
    topics: &ProduceTopics<'_>,
) -> Vec<u8> {
    let mut e = Enc::new(flexible(PRODUCE, ver));
    e.str(None).i16(acks).i32(30000).arr(topics.len());
    for (t, parts) in topics {
        topic(&mut e, *t);
        e.arr(parts.len());
        for (p, recs) in parts {
            e.i32(*p).bytes(Some(recs)).tags();
        }
        e.tags();
    }
    e.tags();
    request(PRODUCE, ver, corr, Some(client), &e.b)
}

fn produce_resp(ver: i16, corr: i32, topics: &ProduceResults<'_>) -> Vec<u8> {
    let mut e = Enc::new(flexible(PRODUCE, ver));
    e.arr(topics.len());
    for (t, parts) in topics {
        topic(&mut e, *t);
        e.arr(parts.len());
        for (p, err, base) in parts {
            e.i32(*p).i16(*err).i64(*base);
            if ver >= 2 {
                e.i64(-1);
            }
            if ver >= 5 {
                e.i64(0);
            }
            if ver >= 8 {
                e.arr(0).str(None);
            }
            e.tags();
        }
        e.tags();
    }
    e.i32(0).tags();
    response(PRODUCE, ver, corr, &e.b)
}

fn fetch_req(ver: i16, corr: i32, client: &str) -> Vec<u8> {
    let mut e = Enc::new(flexible(FETCH, ver));
    if ver <= 14 {
        e.i32(-1);
    }
    e.i32(500).i32(1).i32(1 << 20).i8(0);
    if ver >= 7 {
        e.i32(0).i32(-1);
    }
    e.arr(0);
    if ver >= 7 {
        e.arr(0);
    }
    if ver >= 11 {
        e.str(Some(""));
    }
    e.tags();
    request(FETCH, ver, corr, Some(client), &e.b)
}

fn fetch_resp(ver: i16, corr: i32, topics: &FetchTopics<'_>) -> Vec<u8> {
    let mut e = Enc::new(flexible(FETCH, ver));
    e.i32(0);
    if ver >= 7 {
        e.i16(0).i32(7);
    }
    e.arr(topics.len());
    for (t, parts) in topics {
        topic(&mut e, *t);
        e.arr(parts.len());
        for (p, err, recs) in parts {
            e.i32(*p).i16(*err).i64(100).i64(100);
            if ver >= 5 {
                e.i64(0);
            }
            e.arr(0);
            if ver >= 11 {
                e.i32(-1);
            }
            e.bytes(recs.as_deref()).tags();
        }
        e.tags();
    }
    e.tags();
    response(FETCH, ver, corr, &e.b)
}

fn metadata_req(ver: i16, corr: i32, client: &str) -> Vec<u8> {
    let mut e = Enc::new(flexible(METADATA, ver));
    e.arr(0).i8(0).i8(0).tags();
    request(METADATA, ver, corr, Some(client), &e.b)
}

fn metadata_resp(ver: i16, corr: i32, topics: &[(&str, [u8; 16])]) -> Vec<u8> {
    let mut e = Enc::new(flexible(METADATA, ver));
    e.i32(0)
        .arr(1)
        .i32(1)
        .str(Some("127.0.0.1"))
        .i32(9092)
        .str(None)
        .tags();
    e.str(Some("cluster")).i32(1).arr(topics.len());
    for (name, id) in topics {
        e.i16(0).str(Some(name)).raw(id).i8(0).arr(1);
        e.i16(0)
            .i32(0)
            .i32(1)
            .i32(0)
            .arr(1)
            .i32(1)
            .arr(1)
            .i32(1)
            .arr(0)
            .tags();
        e.i32(0).tags();
    }
    e.tags();
    response(METADATA, ver, corr, &e.b)
}

fn group_req(key: i16, ver: i16, corr: i32, client: &str, group: &str) -> Vec<u8> {
    let mut e = Enc::new(flexible(key, ver));
    if key == OFFSET_FETCH && ver >= 8 {
        e.arr(1);
    }
    e.str(Some(group)).i32(1).str(Some("member")).tags();
    request(key, ver, corr, Some(client), &e.b)
}

fn api_versions_req(corr: i32, client: &str) -> Vec<u8> {
    let mut e = Enc::new(true);
    e.str(Some("librdkafka")).str(Some("2.16.0")).tags();
    request(API_VERSIONS, 3, corr, Some(client), &e.b)
}

fn uuid(n: u8) -> [u8; 16] {
    let mut u = [0x5au8; 16];
    u[0] = n;
    u[15] = n;
    u
}

// ---------------------------------------------------------------------------
// Drivers
// ---------------------------------------------------------------------------

struct Run {
    events: Vec<MsgEvent>,
    stats: MsgStats,
}

impl Run {
    fn ops(&self) -> Vec<MsgOp> {
        self.events
            .iter()
            .filter_map(|e| match e {
                OpEvent::Done(op) => Some(op.clone()),
                _ => None,
            })
            .collect()
    }
}

fn ts(i: usize) -> u64 {
    1000 * (i as u64 + 1)
}

fn run_on(s: &mut KafkaSession, steps: &[(Flow, Vec<u8>)], close: bool) -> Run {
    let mut events = Vec::new();
    for (i, (flow, data)) in steps.iter().enumerate() {
        s.feed(*flow, data, 0, ts(i), 10 + i as u32, &mut events);
    }
    if close {
        s.close(u64::MAX, &mut events);
    }
    check_pairs(&events);
    Run {
        events,
        stats: s.stats(),
    }
}

fn run(steps: &[(Flow, Vec<u8>)]) -> Run {
    run_on(&mut KafkaSession::new(), steps, true)
}

/// Each step cut into pieces (same ts and tid).
fn run_pieces(steps: &[(Flow, Vec<u8>)], cut: impl Fn(&[u8]) -> Vec<Vec<u8>>) -> Run {
    let mut s = KafkaSession::new();
    let mut events = Vec::new();
    for (i, (flow, data)) in steps.iter().enumerate() {
        for p in cut(data) {
            s.feed(*flow, &p, 0, ts(i), 10 + i as u32, &mut events);
        }
    }
    s.close(u64::MAX, &mut events);
    check_pairs(&events);
    Run {
        events,
        stats: s.stats(),
    }
}

/// Every `Started` has one `Done`; seqs are unique; ends are not before starts.
fn check_pairs(events: &[MsgEvent]) {
    let mut started = std::collections::HashSet::new();
    let mut done = std::collections::HashSet::new();
    for e in events {
        match e {
            OpEvent::Started { seq, .. } => assert!(started.insert(*seq), "{events:?}"),
            OpEvent::StartedWith(_) => panic!("Kafka reports plain Started: {events:?}"),
            OpEvent::Done(op) => {
                assert!(done.insert(op.seq), "seq {} done twice", op.seq);
                assert!(op.end_ts >= op.start_ts, "{op:?}");
            }
        }
    }
    assert!(
        started.is_subset(&done),
        "a Started without Done: {events:?}"
    );
}

// ---------------------------------------------------------------------------
// Produce
// ---------------------------------------------------------------------------

#[test]
fn produce_one_op_per_partition_with_offsets_counts_and_links() {
    for ver in [3i16, 7, 9, 10, 11] {
        let req = produce_req(
            ver,
            5,
            "svc-a",
            -1,
            &[
                (
                    T::Name("orders"),
                    vec![
                        (0, batch(0, &recs(2, true), 0)),
                        (1, batch(0, &recs(3, false), 0)),
                    ],
                ),
                (T::Name("audit"), vec![(4, batch(0, &recs(1, true), 0))]),
            ],
        );
        let resp = produce_resp(
            ver,
            5,
            &[
                (T::Name("orders"), vec![(0, 0, 40), (1, 0, 7)]),
                (T::Name("audit"), vec![(4, 3, -1)]),
            ],
        );
        let r = run(&[(UP, req), (DOWN, resp)]);
        // Started for each partition at the request.
        let started: Vec<_> = r
            .events
            .iter()
            .filter(|e| matches!(e, OpEvent::Started { .. }))
            .collect();
        assert_eq!(started.len(), 3, "v{ver}");
        assert!(matches!(
            started[0],
            OpEvent::Started {
                ts: 1000,
                tid: 10,
                ..
            }
        ));
        let ops = r.ops();
        assert_eq!(ops.len(), 3, "v{ver}");
        let want = [
            ("orders", 0, Some(40), 2, None, 1),
            ("orders", 1, Some(7), 3, None, 0),
            ("audit", 4, None, 1, Some("UNKNOWN_TOPIC_OR_PARTITION"), 1),
        ];
        for (op, (t, p, off, n, err, links)) in ops.iter().zip(want) {
            assert_eq!(op.op_type, OpType::Send);
            assert_eq!(op.op_name, "send");
            assert_eq!(op.system, MsgSystem::Kafka);
            assert_eq!(op.destination.as_deref(), Some(t), "v{ver}");
            assert_eq!(op.partition, Some(p));
            assert_eq!(op.offset, off, "v{ver}");
            assert_eq!(op.message_count, Some(n));
            assert_eq!(op.error_type.as_deref(), err);
            assert_eq!(op.links.len(), links);
            assert_eq!(op.client_id.as_deref(), Some("svc-a"));
            assert_eq!((op.start_ts, op.end_ts, op.tid), (1000, 2000, 10));
            assert!(!op.aborted);
        }
        assert_eq!(ops[0].links, vec![tp_ctx()]);
        assert_eq!(r.stats, MsgStats::default(), "v{ver}");
    }
}

#[test]
fn produce_acks_zero_ends_at_the_request() {
    let req = produce_req(
        9,
        1,
        "fire",
        0,
        &[(T::Name("logs"), vec![(2, batch(10, &recs(4, false), 0))])],
    );
    let mut s = KafkaSession::new();
    let r = run_on(&mut s, &[(UP, req)], false);
    let ops = r.ops();
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].destination.as_deref(), Some("logs"));
    assert_eq!((ops[0].message_count, ops[0].offset), (Some(4), None));
    assert!(s.pending.is_empty());
}

#[test]
fn produce_v13_names_topics_by_id() {
    let id = uuid(1);
    learn_topic(id, "by-id-orders");
    let unknown = uuid(2);
    let req = produce_req(
        13,
        3,
        "c",
        1,
        &[
            (T::Id(id), vec![(0, batch(0, &recs(1, false), 0))]),
            (T::Id(unknown), vec![(0, batch(0, &recs(1, false), 0))]),
        ],
    );
    let resp = produce_resp(
        13,
        3,
        &[
            (T::Id(id), vec![(0, 0, 9)]),
            (T::Id(unknown), vec![(0, 0, 1)]),
        ],
    );
    let r = run(&[(UP, req), (DOWN, resp)]);
    let ops = r.ops();
    assert_eq!(ops.len(), 2);
    assert_eq!(
        (ops[0].destination.as_deref(), ops[0].offset),
        (Some("by-id-orders"), Some(9))
    );
    assert_eq!(
        (ops[1].destination.as_deref(), ops[1].offset),
        (None, Some(1))
    );
    assert_eq!(r.stats.topic_unknown, 1);
}

#[test]
fn compressed_batches_of_every_codec_give_their_links() {
    for codec in [1i16, 2, 3, 4, 5] {
        let b = batch(100, &recs(3, true), codec);
        let req = produce_req(9, 1, "z", -1, &[(T::Name("zipped"), vec![(0, b)])]);
        let resp = produce_resp(9, 1, &[(T::Name("zipped"), vec![(0, 0, 100)])]);
        let r = run(&[(UP, req), (DOWN, resp)]);
        let ops = r.ops();
        assert_eq!(ops.len(), 1, "codec {codec}");
        assert_eq!(ops[0].message_count, Some(3), "codec {codec}");
        assert_eq!(ops[0].links, vec![tp_ctx()], "codec {codec}");
        assert_eq!(r.stats.undecompressed, 0, "codec {codec}");
    }
    // Garbage in place of gzip: counted, the count still known from the header.
    let mut b = batch(0, &recs(2, true), 1);
    let n = b.len();
    b[n - 20..].fill(0xee);
    b[61..70].fill(0x11);
    let req = produce_req(9, 1, "z", -1, &[(T::Name("zipped"), vec![(0, b)])]);
    let resp = produce_resp(9, 1, &[(T::Name("zipped"), vec![(0, 0, 0)])]);
    let r = run(&[(UP, req), (DOWN, resp)]);
    assert_eq!(r.ops()[0].message_count, Some(2));
    assert!(r.ops()[0].links.is_empty());
    assert_eq!(r.stats.undecompressed, 1);
}

#[test]
fn decompression_is_bounded() {
    // A zstd bomb: 8 MiB of zeros in a few bytes; only the first MiB is read.
    let big = vec![0u8; 8 << 20];
    let z = zstd::encode_all(&big[..], 3).unwrap();
    let out = records::decompress(4, &z).unwrap();
    assert_eq!(out.len(), records::MAX_DECOMPRESSED);
    let g = compress(1, &big);
    assert_eq!(
        records::decompress(1, &g).unwrap().len(),
        records::MAX_DECOMPRESSED
    );
    assert!(records::decompress(7, &g).is_none());
}

#[test]
fn control_batches_are_not_messages() {
    let ctl = batch_with(5, &recs(1, false), 0, 0x20);
    let data = batch(6, &recs(2, false), 0);
    let mut all = ctl.clone();
    all.extend(&data);
    let info = records::parse(Rd::plain(&all));
    assert_eq!(
        (info.first_offset, info.count, info.incomplete),
        (Some(6), 2, false)
    );
    let info = records::parse(Rd::plain(&ctl));
    assert_eq!((info.first_offset, info.count), (None, 0));
}

#[test]
fn traceparent_values() {
    assert!(records::traceparent(TP.as_bytes()).is_some());
    for bad in [
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333",
        "garbage",
    ] {
        assert!(records::traceparent(bad.as_bytes()).is_none(), "{bad}");
    }
    // A later version may carry more fields.
    assert!(
        records::traceparent(b"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-abc")
            .is_some()
    );
}

// ---------------------------------------------------------------------------
// Fetch
// ---------------------------------------------------------------------------

#[test]
fn fetch_with_records_is_a_poll_per_partition() {
    for ver in [4i16, 7, 11, 12] {
        let client = format!("fetcher-v{ver}");
        let steps = vec![
            (UP, group_req(JOIN_GROUP, 5, 1, &client, "billing")),
            (DOWN, response(JOIN_GROUP, 5, 1, &[0; 4])),
            (UP, fetch_req(ver, 2, &client)),
            (
                DOWN,
                fetch_resp(
                    ver,
                    2,
                    &[(
                        T::Name("orders"),
                        vec![
                            (0, 0, Some(batch(42, &recs(2, true), 0))),
                            (1, 0, Some(Vec::new())),
                            (2, 1, None),
                        ],
                    )],
                ),
            ),
        ];
        let r = run(&steps);
        let ops = r.ops();
        assert_eq!(ops.len(), 2, "v{ver}: {ops:?}");
        // Reported as Done only.
        assert!(!r
            .events
            .iter()
            .any(|e| matches!(e, OpEvent::Started { .. })));
        let (a, e) = (&ops[0], &ops[1]);
        assert_eq!((a.op_type, a.op_name), (OpType::Receive, "poll"));
        assert_eq!(a.destination.as_deref(), Some("orders"));
        assert_eq!(
            (a.partition, a.offset, a.message_count),
            (Some(0), Some(42), Some(2))
        );
        assert_eq!(a.consumer_group.as_deref(), Some("billing"));
        assert_eq!(a.client_id.as_deref(), Some(client.as_str()));
        assert_eq!(a.links, vec![tp_ctx()]);
        assert_eq!((a.start_ts, a.tid, a.end_ts), (ts(2), 12, ts(3)));
        assert_eq!(a.error_type, None);
        // A partition-level error is a span too, without records.
        assert_eq!(e.error_type.as_deref(), Some("OFFSET_OUT_OF_RANGE"));
        assert_eq!(
            (e.partition, e.offset, e.message_count),
            (Some(2), None, None)
        );
        assert_eq!(r.stats.empty_polls, 0);
        assert_eq!(r.stats.not_operations, 1);
    }
}

#[test]
fn empty_fetches_are_counted() {
    let steps = vec![
        (UP, fetch_req(12, 1, "c")),
        (
            DOWN,
            fetch_resp(
                12,
                1,
                &[(T::Name("orders"), vec![(0, 0, Some(Vec::new()))])],
            ),
        ),
        (UP, fetch_req(12, 2, "c")),
        (DOWN, fetch_resp(12, 2, &[])),
    ];
    let r = run(&steps);
    assert!(r.ops().is_empty());
    assert_eq!(r.stats.empty_polls, 2);
}

#[test]
fn fetch_v13_topic_ids_mapped_from_metadata_on_another_connection() {
    let (known_id, unknown_id) = (uuid(10), uuid(11));
    // Metadata on one connection...
    let meta = run(&[
        (UP, metadata_req(12, 1, "meta-client")),
        (DOWN, metadata_resp(12, 1, &[("payments", known_id)])),
    ]);
    assert_eq!(meta.stats.not_operations, 1);
    assert_eq!(topic_name(&known_id).as_deref(), Some("payments"));
    // ...names the topic of a fetch on another.
    let steps = vec![
        (UP, group_req(HEARTBEAT, 4, 1, "ids-client", "ledger")),
        (DOWN, response(HEARTBEAT, 4, 1, &[0, 0, 0, 0, 0, 0, 0])),
        (UP, fetch_req(16, 2, "ids-client")),
        (
            DOWN,
            fetch_resp(
                16,
                2,
                &[
                    (
                        T::Id(known_id),
                        vec![(3, 0, Some(batch(7, &recs(1, false), 4)))],
                    ),
                    (
                        T::Id(unknown_id),
                        vec![(0, 0, Some(batch(0, &recs(2, false), 0)))],
                    ),
                ],
            ),
        ),
    ];
    let r = run(&steps);
    let ops = r.ops();
    assert_eq!(ops.len(), 2);
    assert_eq!(ops[0].destination.as_deref(), Some("payments"));
    assert_eq!(
        (ops[0].partition, ops[0].offset, ops[0].message_count),
        (Some(3), Some(7), Some(1))
    );
    assert_eq!(ops[0].consumer_group.as_deref(), Some("ledger"));
    assert_eq!(ops[1].destination, None);
    assert_eq!(ops[1].message_count, Some(2));
    assert_eq!(r.stats.topic_unknown, 1);
}

#[test]
fn group_names_are_shared_by_client_id_across_connections() {
    for (key, ver) in [
        (JOIN_GROUP, 5),
        (JOIN_GROUP, 7),
        (SYNC_GROUP, 5),
        (OFFSET_COMMIT, 8),
        (OFFSET_FETCH, 7),
        (OFFSET_FETCH, 9),
        (LEAVE_GROUP, 5),
        (CONSUMER_GROUP_HEARTBEAT, 0),
    ] {
        let client = format!("grp-{key}-{ver}");
        let group = format!("group-{key}-{ver}");
        run(&[(UP, group_req(key, ver, 1, &client, &group))]);
        let r = run(&[
            (UP, fetch_req(12, 1, &client)),
            (
                DOWN,
                fetch_resp(
                    12,
                    1,
                    &[(
                        T::Name("t"),
                        vec![(0, 0, Some(batch(0, &recs(1, false), 0)))],
                    )],
                ),
            ),
        ]);
        assert_eq!(
            r.ops()[0].consumer_group.as_deref(),
            Some(group.as_str()),
            "{key} v{ver}"
        );
    }
}

#[test]
fn replica_and_metadata_log_fetches_are_no_polls() {
    // A follower's fetch (replica id 1).
    let mut e = Enc::new(true);
    e.i32(1)
        .i32(500)
        .i32(1)
        .i32(1 << 20)
        .i8(0)
        .i32(0)
        .i32(-1)
        .arr(0)
        .arr(0)
        .str(Some(""))
        .tags();
    let req = request(FETCH, 12, 1, Some("broker"), &e.b);
    let resp = fetch_resp(
        12,
        1,
        &[(
            T::Name("orders"),
            vec![(0, 0, Some(batch(0, &recs(1, false), 0)))],
        )],
    );
    let r = run(&[(UP, req), (DOWN, resp)]);
    assert!(r.ops().is_empty());
    // The KRaft metadata log, fetched by id.
    let r = run(&[
        (UP, fetch_req(17, 1, "raft")),
        (
            DOWN,
            fetch_resp(
                17,
                1,
                &[(
                    T::Id(METADATA_TOPIC_ID),
                    vec![(0, 0, Some(batch(0, &recs(1, false), 0)))],
                )],
            ),
        ),
    ]);
    assert!(r.ops().is_empty());
    assert_eq!(r.stats.empty_polls, 0);
}

// ---------------------------------------------------------------------------
// Pairing, framing, robustness
// ---------------------------------------------------------------------------

#[test]
fn non_operations_are_counted() {
    let r = run(&[
        (UP, api_versions_req(1, "c")),
        (DOWN, response(API_VERSIONS, 3, 1, &[0, 0, 1, 0])),
        (UP, metadata_req(12, 2, "c")),
        (DOWN, metadata_resp(12, 2, &[])),
    ]);
    assert!(r.ops().is_empty());
    assert_eq!(r.stats.not_operations, 2);
    assert_eq!(r.stats.malformed, 0);
}

#[test]
fn pipelined_requests_pair_by_correlation_id() {
    let p1 = produce_req(
        9,
        7,
        "p",
        -1,
        &[(T::Name("a"), vec![(0, batch(0, &recs(1, false), 0))])],
    );
    let p2 = produce_req(
        9,
        8,
        "p",
        -1,
        &[(T::Name("b"), vec![(0, batch(0, &recs(2, false), 0))])],
    );
    let both = [p1, p2].concat();
    let r1 = produce_resp(9, 7, &[(T::Name("a"), vec![(0, 0, 1)])]);
    let r2 = produce_resp(9, 8, &[(T::Name("b"), vec![(0, 0, 2)])]);
    let r = run(&[(UP, both), (DOWN, [r1, r2].concat())]);
    let ops = r.ops();
    assert_eq!(ops.len(), 2);
    assert_eq!(
        (ops[0].destination.as_deref(), ops[0].offset),
        (Some("a"), Some(1))
    );
    assert_eq!(
        (
            ops[1].destination.as_deref(),
            ops[1].offset,
            ops[1].message_count
        ),
        (Some("b"), Some(2), Some(2))
    );
}

#[test]
fn a_response_whose_request_was_lost_ends_it_with_what_is_known() {
    // Two produces; the first response is never seen (lost with the stream's framing is
    // simulated by a response to the second only).
    let p1 = produce_req(
        9,
        1,
        "p",
        -1,
        &[(T::Name("a"), vec![(0, batch(0, &recs(1, false), 0))])],
    );
    let p2 = produce_req(
        9,
        2,
        "p",
        -1,
        &[(T::Name("b"), vec![(0, batch(0, &recs(1, false), 0))])],
    );
    let r2 = produce_resp(9, 2, &[(T::Name("b"), vec![(0, 0, 5)])]);
    let r = run(&[(UP, p1), (UP, p2), (DOWN, r2)]);
    let ops = r.ops();
    assert_eq!(ops.len(), 2);
    assert_eq!(
        (ops[0].destination.as_deref(), ops[0].offset, ops[0].aborted),
        (Some("a"), None, false)
    );
    assert_eq!(
        (ops[1].destination.as_deref(), ops[1].offset),
        (Some("b"), Some(5))
    );
}

#[test]
fn close_aborts_produces_without_response() {
    let p = produce_req(
        9,
        1,
        "p",
        -1,
        &[(T::Name("a"), vec![(0, batch(0, &recs(1, false), 0))])],
    );
    let r = run(&[(UP, p), (UP, fetch_req(12, 2, "p"))]);
    let ops = r.ops();
    assert_eq!(ops.len(), 1);
    assert!(ops[0].aborted);
    assert_eq!(ops[0].end_ts, u64::MAX);
}

#[test]
fn orphan_responses_and_garbage_are_malformed() {
    let r = run(&[
        (UP, metadata_req(12, 1, "c")),
        (DOWN, metadata_resp(12, 1, &[])),
        (DOWN, response(METADATA, 12, 99, &[0; 10])),
        // An unknown api key.
        (UP, frame(&[0x7f, 0x00, 0, 0, 0, 0, 0, 3, 0, 0])),
    ]);
    assert_eq!(r.stats.malformed, 2);
    // A response before any request: a connection older than the collector.
    let r = run(&[(DOWN, response(METADATA, 12, 99, &[0; 10]))]);
    assert_eq!(r.stats.malformed, 0);
}

#[test]
fn absurd_length_gives_the_stream_up() {
    let mut s = KafkaSession::new();
    let mut out = Vec::new();
    s.feed(UP, &[0x7f, 0xff, 0xff, 0xff, 1, 2, 3], 0, 1, 1, &mut out);
    s.feed(UP, &api_versions_req(1, "c"), 0, 2, 1, &mut out);
    s.feed(UP, &[0xff, 0xff, 0xff, 0xff], 0, 3, 1, &mut out);
    assert_eq!(s.stats().malformed, 1);
    assert!(out.is_empty());
    assert!(s.dead);
}

fn mixed_exchange() -> Vec<(Flow, Vec<u8>)> {
    let id = uuid(20);
    learn_topic(id, "mixed");
    vec![
        (UP, api_versions_req(1, "mix")),
        (
            DOWN,
            response(API_VERSIONS, 3, 1, &[0, 0, 1, 0, 0, 0, 0, 0]),
        ),
        (UP, group_req(SYNC_GROUP, 5, 2, "mix", "mixers")),
        (DOWN, response(SYNC_GROUP, 5, 2, &[0; 12])),
        (
            UP,
            produce_req(
                10,
                3,
                "mix",
                -1,
                &[(
                    T::Name("mixed"),
                    vec![
                        (0, batch(0, &recs(2, true), 1)),
                        (1, batch(0, &recs(1, true), 3)),
                    ],
                )],
            ),
        ),
        (
            DOWN,
            produce_resp(10, 3, &[(T::Name("mixed"), vec![(0, 0, 10), (1, 6, -1)])]),
        ),
        (UP, fetch_req(16, 4, "mix")),
        (
            DOWN,
            fetch_resp(
                16,
                4,
                &[(T::Id(id), vec![(0, 0, Some(batch(10, &recs(2, true), 2)))])],
            ),
        ),
        (UP, fetch_req(16, 5, "mix")),
        (
            DOWN,
            fetch_resp(16, 5, &[(T::Id(id), vec![(0, 0, Some(Vec::new()))])]),
        ),
    ]
}

#[test]
fn mixed_exchange_values() {
    let r = run(&mixed_exchange());
    let ops = r.ops();
    assert_eq!(ops.len(), 3);
    assert_eq!(ops[1].error_type.as_deref(), Some("NOT_LEADER_OR_FOLLOWER"));
    assert_eq!(ops[2].destination.as_deref(), Some("mixed"));
    assert_eq!(ops[2].consumer_group.as_deref(), Some("mixers"));
    assert_eq!(r.stats.empty_polls, 1);
    assert_eq!(r.stats.not_operations, 2);
}

#[test]
fn byte_by_byte_and_every_split_equal_whole() {
    let steps = mixed_exchange();
    let whole = run(&steps);
    let bytes = run_pieces(&steps, |d| d.chunks(1).map(<[u8]>::to_vec).collect());
    assert_eq!(whole.events, bytes.events);
    assert_eq!(whole.stats, bytes.stats);
    for at in [1usize, 3, 4, 5, 13, 40, 100] {
        let split = run_pieces(&steps, |d| {
            let at = at.min(d.len());
            vec![d[..at].to_vec(), d[at..].to_vec()]
        });
        assert_eq!(whole.events, split.events, "split at {at}");
    }
}

#[test]
fn cut_short_streams_never_panic_and_end_their_operations() {
    let all: Vec<u8> = mixed_exchange().into_iter().flat_map(|(_, d)| d).collect();
    let steps = mixed_exchange();
    for n in 0..steps.len() {
        let r = run(&steps[..n]);
        let _ = r.ops();
    }
    // Each message cut at every length, alone.
    for (flow, d) in &steps {
        for n in 0..d.len() {
            let r = run(&[(*flow, d[..n].to_vec())]);
            assert!(r
                .ops()
                .iter()
                .all(|o| o.aborted || o.op_type == OpType::Send));
        }
    }
    // The whole conversation's bytes as garbage both ways.
    for start in 0..40 {
        run(&[(UP, all[start..].to_vec()), (DOWN, all[start..].to_vec())]);
    }
}

#[test]
fn a_gap_inside_records_keeps_what_was_captured() {
    // A fetch response whose second batch header lies in a gap: the first batch's offset
    // is known, the count is not (not invented); the next partition is still read.
    let b1 = batch(50, &recs(2, true), 0);
    let b2 = batch(52, &recs(3, false), 0);
    let mut recs_bytes = b1.clone();
    recs_bytes.extend(&b2);
    let resp = fetch_resp(
        12,
        1,
        &[(
            T::Name("orders"),
            vec![
                (0, 0, Some(recs_bytes)),
                (1, 0, Some(batch(9, &recs(1, false), 0))),
            ],
        )],
    );
    // Where b2 starts in the response frame.
    let b2_at = resp.windows(b2.len()).position(|w| w == &b2[..]).unwrap();
    let mut s = KafkaSession::new();
    let mut out = Vec::new();
    s.feed(UP, &fetch_req(12, 1, "gappy"), 0, 1, 1, &mut out);
    s.feed(DOWN, &resp[..b2_at + 2], 30, 2, 1, &mut out);
    s.feed(DOWN, &resp[b2_at + 32..], 0, 3, 1, &mut out);
    let ops: Vec<_> = out
        .iter()
        .filter_map(|e| match e {
            OpEvent::Done(op) => Some(op),
            _ => None,
        })
        .collect();
    assert_eq!(ops.len(), 2, "{ops:?}");
    assert_eq!((ops[0].offset, ops[0].message_count), (Some(50), None));
    assert_eq!(ops[0].links, vec![tp_ctx()]);
    assert_eq!((ops[1].offset, ops[1].message_count), (Some(9), Some(1)));
    assert_eq!(ops[1].end_ts, 3);
}

#[test]
fn a_gap_across_a_boundary_resumes_at_a_plausible_frame() {
    let p1 = produce_req(
        9,
        1,
        "p",
        -1,
        &[(T::Name("a"), vec![(0, batch(0, &recs(1, false), 0))])],
    );
    let p2 = produce_req(
        9,
        2,
        "p",
        -1,
        &[(T::Name("b"), vec![(0, batch(0, &recs(1, false), 0))])],
    );
    let r1 = produce_resp(9, 1, &[(T::Name("a"), vec![(0, 0, 1)])]);
    let r2 = produce_resp(9, 2, &[(T::Name("b"), vec![(0, 0, 2)])]);
    let mut s = KafkaSession::new();
    let mut out = Vec::new();
    s.feed(UP, &p1, 0, 1, 1, &mut out);
    s.feed(UP, &p2, 0, 2, 1, &mut out);
    // The first response's end and the next length were not captured.
    s.feed(DOWN, &r1[..10], (r1.len() - 10 + 3) as u64, 3, 1, &mut out);
    // The first response ended in the gap: its operation ends with what was captured. A
    // feed that starts mid-frame is skipped...
    s.feed(DOWN, &r2[3..], 0, 4, 1, &mut out);
    assert_eq!(
        out.iter().filter(|e| matches!(e, OpEvent::Done(_))).count(),
        1
    );
    // ...one starting with a response to a pending request resumes.
    s.feed(DOWN, &r2, 0, 5, 1, &mut out);
    let ops: Vec<_> = out
        .iter()
        .filter_map(|e| match e {
            OpEvent::Done(op) => Some(op),
            _ => None,
        })
        .collect();
    assert_eq!(ops.len(), 2);
    assert_eq!(
        (ops[0].destination.as_deref(), ops[0].offset),
        (Some("a"), None)
    );
    assert_eq!(
        (ops[1].destination.as_deref(), ops[1].offset),
        (Some("b"), Some(2))
    );
    assert!(s.losses() > 0);
    assert_eq!(s.stats().malformed, 0);
}

#[test]
fn a_produce_request_cut_by_a_gap_is_completed_by_its_response() {
    let big: Vec<Rec<'_>> = (0..50)
        .map(|_| (&b"k"[..], &[7u8; 200][..], vec![]))
        .collect();
    let req = produce_req(
        9,
        1,
        "big",
        -1,
        &[
            (T::Name("a"), vec![(0, batch(0, &big, 0))]),
            (T::Name("b"), vec![(1, batch(0, &recs(1, false), 0))]),
        ],
    );
    assert!(req.len() > 4095);
    let resp = produce_resp(
        9,
        1,
        &[
            (T::Name("a"), vec![(0, 0, 100)]),
            (T::Name("b"), vec![(1, 0, 3)]),
        ],
    );
    let mut s = KafkaSession::new();
    let mut out = Vec::new();
    s.feed(UP, &req[..4095], (req.len() - 4095) as u64, 1, 7, &mut out);
    s.feed(DOWN, &resp, 0, 2, 7, &mut out);
    check_pairs(&out);
    let ops: Vec<_> = out
        .iter()
        .filter_map(|e| match e {
            OpEvent::Done(op) => Some(op),
            _ => None,
        })
        .collect();
    assert_eq!(ops.len(), 2);
    // The batch header was captured: its count is known.
    assert_eq!(
        (
            ops[0].destination.as_deref(),
            ops[0].offset,
            ops[0].message_count
        ),
        (Some("a"), Some(100), Some(50))
    );
    // The second topic lay in the gap: known from the response only.
    assert_eq!(
        (
            ops[1].destination.as_deref(),
            ops[1].offset,
            ops[1].message_count
        ),
        (Some("b"), Some(3), None)
    );
    assert_eq!((ops[1].start_ts, ops[1].tid), (1, 7));
}

// ---------------------------------------------------------------------------
// Detection
// ---------------------------------------------------------------------------

#[test]
fn sniff_first_requests() {
    assert_eq!(sniff(UP, &api_versions_req(1, "rdkafka")), Sniff::Yes);
    assert_eq!(sniff(UP, &metadata_req(12, 0, "java-client")), Sniff::Yes);
    assert_eq!(sniff(DOWN, &api_versions_req(1, "rdkafka")), Sniff::No);
    let av = api_versions_req(1, "rdkafka");
    assert_eq!(sniff(UP, &av[..3]), Sniff::NeedMore);
    assert_eq!(sniff(UP, &av[..20]), Sniff::NeedMore);
    // A wrong length for an ApiVersions body.
    let mut bad = av.clone();
    bad.push(0);
    bad[3] += 1;
    assert_eq!(sniff(UP, &bad), Sniff::No);
    // Unknown api key, version too high, negative correlation id, unprintable client id.
    assert_eq!(sniff(UP, &request(200, 0, 1, Some("c"), &[])), Sniff::No);
    assert_eq!(sniff(UP, &request(18, 9, 1, Some("c"), &[])), Sniff::No);
    assert_eq!(
        sniff(UP, &request(3, 1, -5, Some("c"), &[0, 0, 0, 0])),
        Sniff::No
    );
    assert_eq!(
        sniff(UP, &request(3, 1, 1, Some("c\u{1}"), &[0, 0, 0, 0])),
        Sniff::No
    );
}

/// franz-go 1.22 opens every connection with ApiVersions v5 (KIP-1242), which adds the
/// cluster id and node id the client believes it reaches: captured from its writes to a
/// Kafka 4.4 broker (bootstrap: null and -1; later connections: the cluster's id, node 1).
#[test]
fn sniff_api_versions_v5_of_franz_go() {
    let mut boot = vec![0, 0, 0, 0x2c, 0, 18, 0, 5, 0, 0, 0, 0, 0, 15];
    boot.extend_from_slice(b"e2e-go-producer");
    boot.extend_from_slice(b"\x00\x04kgo\x08v1.22.3\x00\xff\xff\xff\xff\x00");
    assert_eq!(boot.len(), 48);
    assert_eq!(sniff(UP, &boot), Sniff::Yes);
    let mut known = vec![0, 0, 0, 0x42, 0, 18, 0, 5, 0, 0, 0, 0, 0, 15];
    known.extend_from_slice(b"e2e-go-producer");
    known
        .extend_from_slice(b"\x00\x04kgo\x08v1.22.3\x17fgSOOah5R_-mVLwmkfmW6w\x00\x00\x00\x01\x00");
    assert_eq!(known.len(), 70);
    assert_eq!(sniff(UP, &known), Sniff::Yes);
    assert_eq!(sniff(UP, &known[..69]), Sniff::NeedMore);
    // v5 without its new fields (a v4 body under a v5 header) is no ApiVersions request.
    let mut e = Enc::new(true);
    e.str(Some("kgo")).str(Some("v1.22.3")).tags();
    assert_eq!(
        sniff(UP, &request(API_VERSIONS, 5, 0, Some("c"), &e.b)),
        Sniff::No
    );
    // A version above the known ones may carry more fields: its known prefix must parse.
    let mut e = Enc::new(true);
    e.str(Some("kgo"))
        .str(Some("v9"))
        .str(None)
        .i32(-1)
        .raw(&[7, 7])
        .tags();
    assert_eq!(
        sniff(UP, &request(API_VERSIONS, 6, 0, Some("c"), &e.b)),
        Sniff::Yes
    );
    let mut e = Enc::new(true);
    e.str(Some("kgo")).raw(&[0x40]);
    assert_eq!(
        sniff(UP, &request(API_VERSIONS, 6, 0, Some("c"), &e.b)),
        Sniff::No
    );
}

#[test]
fn sniff_claims_no_other_protocol() {
    let others: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"*1\r\n$4\r\nPING\r\n",
        b"PING\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        // PostgreSQL StartupMessage, SSLRequest, CancelRequest.
        b"\x00\x00\x00\x29\x00\x03\x00\x00user\x00app\x00database\x00shop\x00\x00",
        b"\x00\x00\x00\x08\x04\xd2\x16\x2f",
        b"\x00\x00\x00\x10\x04\xd2\x16\x2e\x00\x00\x00\x2a\x01\x02\x03\x04",
        // MySQL handshake response (3-byte LE length, sequence 1).
        b"\x55\x00\x00\x01\x85\xa6\xff\x01\x00\x00\x00\x01\x21\x00\x00\x00",
        // MongoDB OP_MSG (LE length).
        b"\x3a\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\xdd\x07\x00\x00",
        b"\x00\x02\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\xdd\x07\x00\x00\x00\x00\x00\x00",
    ];
    for o in others {
        assert_ne!(sniff(UP, o), Sniff::Yes, "{o:?}");
        assert!(!plausible_midstream(UP, o) || o[0] == 0, "{o:?}");
    }
    // Real first messages of the other protocols' recordings.
    let dir = format!("{}/../test/golden", env!("CARGO_MANIFEST_DIR"));
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if !name.ends_with(".bin") || name.starts_with("kafka_") {
            continue;
        }
        let recs = capture::read(&std::fs::read(&p).unwrap()).unwrap();
        if let Some(first) = recs.iter().find(|r| r.flow == UP) {
            assert_eq!(sniff(UP, &first.data), Sniff::No, "{name}");
        }
        if let Some(first) = recs.iter().find(|r| r.flow == DOWN) {
            assert_eq!(sniff(DOWN, &first.data), Sniff::No, "{name}");
        }
    }
}

#[test]
fn midstream_frames() {
    assert!(plausible_midstream(UP, &fetch_req(12, 77, "c")));
    assert!(plausible_midstream(
        DOWN,
        &response(FETCH, 12, 77, &[0; 12])
    ));
    assert!(!plausible_midstream(UP, b"GET / HTTP/1.1\r\n"));
    assert!(!plausible_midstream(DOWN, b"HTTP/1.1 200 OK\r\n"));
    assert!(!plausible_midstream(
        DOWN,
        &[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1]
    ));
}

// ---------------------------------------------------------------------------
// Golden recordings
// ---------------------------------------------------------------------------

/// The records of test/golden/kafka_<scenario>_<n>.bin, all connections, in time order:
/// (connection, flow, ts, bytes).
fn golden(scenario: &str) -> (usize, Recorded) {
    let dir = format!("{}/../test/golden", env!("CARGO_MANIFEST_DIR"));
    let mut all = Vec::new();
    let mut n = 0;
    loop {
        let path = format!("{dir}/kafka_{scenario}_{n}.bin");
        let Ok(raw) = std::fs::read(&path) else { break };
        let recs = capture::read(&raw).unwrap_or_else(|e| panic!("{path}: {e}"));
        all.extend(recs.into_iter().map(|r| (n, r.flow, r.ts, r.data)));
        n += 1;
    }
    assert!(n > 0, "no recording kafka_{scenario}_*.bin");
    all.sort_by_key(|r| r.2);
    (n, all)
}

/// Replays a scenario, one session per connection, records cut by `cut` (pieces keep
/// their record's ts); returns the operations in the order reported and the summed stats.
fn replay_with(scenario: &str, cut: &Cut<'_>) -> (Vec<MsgOp>, MsgStats) {
    let (n, recs) = golden(scenario);
    let mut sessions: Vec<KafkaSession> = (0..n).map(|_| KafkaSession::new()).collect();
    let mut per_conn: Vec<Vec<MsgEvent>> = (0..n).map(|_| Vec::new()).collect();
    // Operations in the order reported (across connections), seqs made unique.
    let mut ops = Vec::new();
    for (i, (conn, flow, t, data)) in recs.iter().enumerate() {
        for (piece, gap) in cut(data) {
            let before = per_conn[*conn].len();
            sessions[*conn].feed(*flow, &piece, gap, *t, i as u32, &mut per_conn[*conn]);
            for e in &per_conn[*conn][before..] {
                if let OpEvent::Done(op) = e {
                    ops.push(op.clone());
                }
            }
        }
    }
    let mut stats = MsgStats::default();
    for (s, evs) in sessions.iter_mut().zip(per_conn.iter_mut()) {
        stats.add(&s.stats());
        let before = evs.len();
        s.close(u64::MAX, evs);
        for e in &evs[before..] {
            if let OpEvent::Done(op) = e {
                ops.push(op.clone());
            }
        }
        check_pairs(evs);
    }
    (ops, stats)
}

fn replay(scenario: &str) -> (Vec<MsgOp>, MsgStats) {
    replay_with(scenario, &|d| vec![(d.to_vec(), 0)])
}

fn summary(ops: &[MsgOp]) -> Vec<String> {
    ops.iter()
        .map(|o| {
            format!(
                "{} {} p{} off={} n={} client={} group={} err={} links={}{}",
                o.op_name,
                o.destination.as_deref().unwrap_or("?"),
                o.partition.unwrap_or(-9),
                o.offset.map(|v| v.to_string()).unwrap_or("-".into()),
                o.message_count.map(|v| v.to_string()).unwrap_or("-".into()),
                o.client_id.as_deref().unwrap_or("-"),
                o.consumer_group.as_deref().unwrap_or("-"),
                o.error_type.as_deref().unwrap_or("-"),
                o.links.len(),
                if o.aborted { " aborted" } else { "" },
            )
        })
        .collect()
}

const TP_TRACE: [u8; 16] = [
    10, 247, 101, 25, 22, 205, 67, 221, 132, 72, 235, 33, 28, 128, 49, 156,
];

#[test]
fn golden_confluent_producers_of_every_codec() {
    let (ops, stats) = replay("produce");
    let mut want = Vec::new();
    for (i, codec) in ["none", "gzip", "snappy", "lz4", "zstd"].iter().enumerate() {
        // 3 records per producer: two to partition 0, one to partition 1.
        want.push(format!(
            "send orders p0 off={} n=2 client=golden-{codec} group=- err=- links=1",
            2 * i
        ));
        want.push(format!(
            "send orders p1 off={i} n=1 client=golden-{codec} group=- err=- links=1"
        ));
    }
    assert_eq!(summary(&ops), want);
    assert!(ops
        .iter()
        .all(|o| o.links[0].trace_id == TP_TRACE && o.op_type == OpType::Send));
    assert!(ops.iter().all(|o| o.end_ts > o.start_ts));
    assert_eq!(
        (stats.malformed, stats.undecompressed, stats.topic_unknown),
        (0, 0, 0)
    );
    assert_eq!(stats.not_operations, 15); // ApiVersions and Metadata
}

#[test]
fn golden_confluent_consumer_in_a_group_with_topic_ids() {
    // librdkafka fetches with v16 (topic ids), named from its Metadata v13 responses; its
    // group calls go to the coordinator's connection, its fetches to another.
    let (ops, stats) = replay("consume");
    assert_eq!(
        summary(&ops),
        [
            "poll orders p1 off=0 n=5 client=golden-consumer group=billing err=- links=1",
            "poll orders p0 off=0 n=10 client=golden-consumer group=billing err=- links=1",
        ]
    );
    assert_eq!(ops[0].op_type, OpType::Receive);
    assert_eq!(
        (stats.malformed, stats.topic_unknown, stats.undecompressed),
        (0, 0, 0)
    );
    assert_eq!(stats.empty_polls, 6);
}

#[test]
fn golden_produce_to_a_deleted_topic_fails() {
    let (ops, stats) = replay("deleted");
    let lines = summary(&ops);
    assert_eq!(
        lines[0],
        "send doomed p0 off=0 n=1 client=golden-doomed group=- err=- links=0"
    );
    assert!(lines.len() > 2);
    for l in &lines[1..] {
        assert_eq!(l, "send doomed p0 off=- n=1 client=golden-doomed group=- err=UNKNOWN_TOPIC_OR_PARTITION links=0");
    }
    assert_eq!(stats.malformed, 0);
}

#[test]
fn golden_kafka_python() {
    // kafka-python: Produce v9 (after InitProducerId), Fetch v12 (topic names).
    let (ops, stats) = replay("kafka_python");
    assert_eq!(
        summary(&ops),
        [
            "send payments p1 off=0 n=3 client=golden-kpy group=- err=- links=1",
            "poll payments p1 off=0 n=3 client=golden-kpy-consumer group=audit err=- links=1",
        ]
    );
    assert_eq!((stats.malformed, stats.empty_polls), (0, 0));
}

#[test]
fn golden_byte_by_byte_and_cut_short() {
    for sc in ["produce", "consume", "deleted", "kafka_python"] {
        let whole = replay(sc);
        let bytes = replay_with(sc, &|d| d.iter().map(|b| (vec![*b], 0)).collect());
        assert_eq!(summary(&whole.0), summary(&bytes.0), "{sc}");
        assert_eq!(whole.1, bytes.1, "{sc}");
        // Each record cut to its first bytes, the rest a gap: never a panic, never an
        // invented value (whatever is reported is what the whole replay reported).
        for keep in [0usize, 3, 8, 40, 200] {
            let (ops, _) = replay_with(sc, &|d| {
                let k = keep.min(d.len());
                vec![(d[..k].to_vec(), (d.len() - k) as u64)]
            });
            for op in ops {
                if let Some(t) = &op.destination {
                    assert!(
                        ["orders", "doomed", "payments"].contains(&t.as_str()),
                        "{sc}: {op:?}"
                    );
                }
                if let Some(off) = op.offset {
                    assert!(
                        whole.0.iter().any(|w| w.offset == Some(off)),
                        "{sc}: {op:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn golden_with_the_kernels_capture_limit() {
    // At most 4095 bytes of each syscall captured: the recordings' chunks are small, so
    // the spans are the same.
    for sc in ["produce", "consume", "kafka_python"] {
        let whole = replay(sc);
        let capped = replay_with(sc, &|d| {
            let k = d.len().min(4095);
            vec![(d[..k].to_vec(), (d.len() - k) as u64)]
        });
        assert_eq!(summary(&whole.0), summary(&capped.0), "{sc}");
    }
}
