//! Tests: messages built by hand with small BSON and wire builders, and conversations
//! recorded between pymongo and a real FerretDB (test/golden/mongodb_*.bin).

use super::*;
use crate::protocols::db::DbOp;

const UP: Flow = Flow::ToServer;
const DOWN: Flow = Flow::ToClient;

// ---------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------

#[derive(Clone)]
enum B {
    S(&'static str),
    I(i32),
    L(i64),
    F(f64),
    T(bool),
    Null,
    Oid([u8; 12]),
    Bin(Vec<u8>),
    D(Vec<(&'static str, B)>),
    A(Vec<B>),
}

fn enc_value(out: &mut Vec<u8>, key: &str, v: &B) {
    let t: u8 = match v {
        B::F(_) => 0x01,
        B::S(_) => 0x02,
        B::D(_) => 0x03,
        B::A(_) => 0x04,
        B::Bin(_) => 0x05,
        B::Oid(_) => 0x07,
        B::T(_) => 0x08,
        B::Null => 0x0A,
        B::I(_) => 0x10,
        B::L(_) => 0x12,
    };
    out.push(t);
    out.extend(key.as_bytes());
    out.push(0);
    match v {
        B::F(f) => out.extend(f.to_le_bytes()),
        B::S(s) => {
            out.extend(((s.len() + 1) as i32).to_le_bytes());
            out.extend(s.as_bytes());
            out.push(0);
        }
        B::D(fields) => out.extend(doc(fields)),
        B::A(items) => {
            let fields: Vec<(String, B)> = items
                .iter()
                .enumerate()
                .map(|(i, b)| (i.to_string(), b.clone()))
                .collect();
            let mut body = Vec::new();
            for (k, b) in &fields {
                enc_value(&mut body, k, b);
            }
            out.extend(wrap(body));
        }
        B::Bin(b) => {
            out.extend((b.len() as i32).to_le_bytes());
            out.push(4);
            out.extend(b);
        }
        B::Oid(b) => out.extend(b),
        B::T(b) => out.push(u8::from(*b)),
        B::Null => {}
        B::I(i) => out.extend(i.to_le_bytes()),
        B::L(i) => out.extend(i.to_le_bytes()),
    }
}

fn wrap(mut body: Vec<u8>) -> Vec<u8> {
    body.push(0);
    let mut d = ((body.len() + 4) as i32).to_le_bytes().to_vec();
    d.extend(body);
    d
}

fn doc(fields: &[(&'static str, B)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (k, v) in fields {
        enc_value(&mut body, k, v);
    }
    wrap(body)
}

fn header(op: i32, id: i32, resp_to: i32, body: &[u8]) -> Vec<u8> {
    let mut m = ((body.len() + 16) as i32).to_le_bytes().to_vec();
    m.extend(id.to_le_bytes());
    m.extend(resp_to.to_le_bytes());
    m.extend(op.to_le_bytes());
    m.extend(body);
    m
}

fn msg_full(
    id: i32,
    resp_to: i32,
    flags: u32,
    body: &[u8],
    seqs: &[(&str, Vec<Vec<u8>>)],
    crc: bool,
) -> Vec<u8> {
    let flags = flags | u32::from(crc);
    let mut b = flags.to_le_bytes().to_vec();
    b.push(0);
    b.extend(body);
    for (id, docs) in seqs {
        b.push(1);
        let mut inner = id.as_bytes().to_vec();
        inner.push(0);
        for d in docs {
            inner.extend(d);
        }
        b.extend(((inner.len() + 4) as i32).to_le_bytes());
        b.extend(inner);
    }
    if crc {
        b.extend([0xde, 0xad, 0xbe, 0xef]);
    }
    header(wire::OP_MSG, id, resp_to, &b)
}

fn msg(id: i32, resp_to: i32, body: &[u8]) -> Vec<u8> {
    msg_full(id, resp_to, 0, body, &[], false)
}

fn query(id: i32, ns: &str, d: &[u8]) -> Vec<u8> {
    let mut b = 0u32.to_le_bytes().to_vec();
    b.extend(ns.as_bytes());
    b.push(0);
    b.extend(0i32.to_le_bytes());
    b.extend((-1i32).to_le_bytes());
    b.extend(d);
    header(wire::OP_QUERY, id, 0, &b)
}

fn reply(id: i32, resp_to: i32, flags: u32, d: &[u8]) -> Vec<u8> {
    let mut b = flags.to_le_bytes().to_vec();
    b.extend(0i64.to_le_bytes());
    b.extend(0i32.to_le_bytes());
    b.extend(1i32.to_le_bytes());
    b.extend(d);
    header(wire::OP_REPLY, id, resp_to, &b)
}

/// `m` (a whole message) as OP_COMPRESSED with `compressor`.
fn compress(m: &[u8], compressor: u8) -> Vec<u8> {
    let h = Header::parse(m).unwrap();
    let body = &m[16..];
    let data = match compressor {
        0 => body.to_vec(),
        1 => snap::raw::Encoder::new().compress_vec(body).unwrap(),
        2 => {
            use std::io::Write;
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(body).unwrap();
            e.finish().unwrap()
        }
        3 => zstd::bulk::compress(body, 3).unwrap(),
        _ => unreachable!(),
    };
    let mut b = h.op_code.to_le_bytes().to_vec();
    b.extend((body.len() as i32).to_le_bytes());
    b.push(compressor);
    b.extend(data);
    header(wire::OP_COMPRESSED, h.request_id, h.response_to, &b)
}

fn lsid() -> B {
    B::D(vec![("id", B::Bin(vec![7; 16]))])
}

fn find_users(id: i32) -> Vec<u8> {
    msg(
        id,
        0,
        &doc(&[
            ("find", B::S("users")),
            ("filter", B::D(vec![("age", B::D(vec![("$gt", B::I(30))]))])),
            ("limit", B::I(1)),
            ("lsid", lsid()),
            ("$clusterTime", B::D(vec![("clusterTime", B::L(5))])),
            ("$db", B::S("shop")),
        ]),
    )
}

fn ok_reply(id: i32, resp_to: i32) -> Vec<u8> {
    msg(id, resp_to, &doc(&[("ok", B::F(1.0))]))
}

fn cursor_reply(id: i32, resp_to: i32) -> Vec<u8> {
    msg(
        id,
        resp_to,
        &doc(&[
            (
                "cursor",
                B::D(vec![
                    (
                        "firstBatch",
                        B::A(vec![B::D(vec![("name", B::S("alice"))])]),
                    ),
                    ("id", B::L(0)),
                    ("ns", B::S("shop.users")),
                ]),
            ),
            ("ok", B::F(1.0)),
        ]),
    )
}

fn err_reply(id: i32, resp_to: i32, code: i32, name: &'static str) -> Vec<u8> {
    msg(
        id,
        resp_to,
        &doc(&[
            ("ok", B::F(0.0)),
            ("errmsg", B::S("it failed")),
            ("code", B::I(code)),
            ("codeName", B::S(name)),
        ]),
    )
}

fn hello(id: i32) -> Vec<u8> {
    msg(id, 0, &doc(&[("hello", B::I(1)), ("$db", B::S("admin"))]))
}

// ---------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------

type Feed<'a> = (Flow, &'a [u8]);

fn check_pairs(events: &[DbEvent]) {
    let mut started = std::collections::HashSet::new();
    let mut done = std::collections::HashSet::new();
    for e in events {
        match e {
            DbEvent::StartedWith(_) => unreachable!("databases report Started"),
            DbEvent::Started { seq, .. } => assert!(started.insert(*seq), "{events:?}"),
            DbEvent::Done(op) => {
                assert!(started.contains(&op.seq), "{events:?}");
                assert!(done.insert(op.seq), "{events:?}");
                assert!(op.start_ts <= op.end_ts, "{op:?}");
            }
        }
    }
    assert_eq!(started, done, "{events:?}");
}

fn done_ops(events: &[DbEvent]) -> Vec<DbOp> {
    let mut ops: Vec<DbOp> = events
        .iter()
        .filter_map(|e| match e {
            DbEvent::Done(op) => Some(op.clone()),
            _ => None,
        })
        .collect();
    ops.sort_by_key(|o| o.seq);
    ops
}

/// Feeds with ts 1, 2, 3... (tid 9); closes at 1000. Also byte by byte: same events.
fn run_opts(opts: QueryTextOptions, feeds: &[Feed<'_>]) -> (Vec<DbOp>, SessionStats, MongoSession) {
    let mut s = MongoSession::new(opts);
    let mut out = Vec::new();
    for (i, (flow, data)) in feeds.iter().enumerate() {
        s.feed(*flow, data, 0, i as u64 + 1, 9, &mut out);
    }
    let stats = s.stats();
    s.close(1000, &mut out);
    check_pairs(&out);

    let mut b = MongoSession::new(opts);
    let mut bytes = Vec::new();
    for (i, (flow, data)) in feeds.iter().enumerate() {
        for c in data.chunks(1) {
            b.feed(*flow, c, 0, i as u64 + 1, 9, &mut bytes);
        }
    }
    let bstats = b.stats();
    b.close(1000, &mut bytes);
    if s.losses() == 0 {
        assert_eq!(out, bytes, "byte by byte");
        assert_eq!(stats, bstats, "byte by byte");
    }
    (done_ops(&out), stats, s)
}

fn run(feeds: &[Feed<'_>]) -> (Vec<DbOp>, SessionStats) {
    let (ops, stats, _) = run_opts(QueryTextOptions::default(), feeds);
    (ops, stats)
}

// ---------------------------------------------------------------------------
// Commands and replies
// ---------------------------------------------------------------------------

#[test]
fn find_with_filter_sanitized() {
    let req = find_users(1);
    let rep = cursor_reply(100, 1);
    let (ops, stats) = run(&[(UP, &req), (DOWN, &rep)]);
    assert_eq!(ops.len(), 1);
    let op = &ops[0];
    assert_eq!(op.system, Some(DbSystem::Mongodb));
    assert_eq!(op.operation.as_deref(), Some("find"));
    assert_eq!(op.collection.as_deref(), Some("users"));
    assert_eq!(op.namespace.as_deref(), Some("shop"));
    assert_eq!(op.summary.as_deref(), Some("find users"));
    assert_eq!(
        op.query_text.as_deref(),
        Some(r#"{"find":"users","filter":{"age":{"$gt":"?"}},"limit":"?"}"#)
    );
    assert!(!op.error && !op.aborted);
    assert_eq!((op.start_ts, op.end_ts, op.tid), (1, 2, 9));
    assert_eq!(op.batch_size, None);
    assert_eq!(stats, SessionStats::default());
}

#[test]
fn insert_document_sequence_batch() {
    let docs = vec![
        doc(&[("_id", B::I(1)), ("name", B::S("a"))]),
        doc(&[("_id", B::I(2)), ("name", B::S("b"))]),
        doc(&[("_id", B::I(3)), ("name", B::S("c"))]),
    ];
    let body = doc(&[
        ("insert", B::S("users")),
        ("ordered", B::T(true)),
        ("lsid", lsid()),
        ("$db", B::S("shop")),
    ]);
    let req = msg_full(5, 0, 0, &body, &[("documents", docs.clone())], false);
    let rep = msg(6, 5, &doc(&[("n", B::I(3)), ("ok", B::F(1.0))]));
    let (ops, _) = run(&[(UP, &req), (DOWN, &rep)]);
    assert_eq!(ops[0].batch_size, Some(3));
    assert_eq!(ops[0].summary.as_deref(), Some("insert users"));
    assert_eq!(
        ops[0].query_text.as_deref(),
        Some(r#"{"insert":"users","ordered":"?","documents":[{"_id":"?","name":"?"}]}"#)
    );
    // Not sanitized: every document, values as JSON.
    let opts = QueryTextOptions {
        sanitize: false,
        ..Default::default()
    };
    let (ops, _, _) = run_opts(opts, &[(UP, &req), (DOWN, &rep)]);
    assert_eq!(
        ops[0].query_text.as_deref(),
        Some(
            r#"{"insert":"users","ordered":true,"documents":[{"_id":1,"name":"a"},{"_id":2,"name":"b"},{"_id":3,"name":"c"}]}"#
        )
    );
    // With a checksum: the same.
    let req = msg_full(5, 0, 0, &body, &[("documents", docs)], true);
    let (ops, stats) = run(&[(UP, &req), (DOWN, &rep)]);
    assert_eq!(ops[0].batch_size, Some(3));
    assert_eq!(stats.malformed, 0);
}

#[test]
fn batch_from_body_array_and_update_delete() {
    let req = msg(
        1,
        0,
        &doc(&[
            ("insert", B::S("c")),
            (
                "documents",
                B::A(vec![B::D(vec![("a", B::I(1))]), B::D(vec![("a", B::I(2))])]),
            ),
            ("$db", B::S("d")),
        ]),
    );
    let upd = msg_full(
        2,
        0,
        0,
        &doc(&[("update", B::S("c")), ("$db", B::S("d"))]),
        &[(
            "updates",
            vec![doc(&[
                ("q", B::D(vec![("name", B::S("x"))])),
                ("u", B::D(vec![("$set", B::D(vec![("age", B::I(3))]))])),
            ])],
        )],
        false,
    );
    let del = msg_full(
        3,
        0,
        0,
        &doc(&[("delete", B::S("c")), ("$db", B::S("d"))]),
        &[(
            "deletes",
            vec![doc(&[
                ("q", B::D(vec![("name", B::S("x"))])),
                ("limit", B::I(1)),
            ])],
        )],
        false,
    );
    let (ops, _) = run(&[
        (UP, &req),
        (DOWN, &ok_reply(10, 1)),
        (UP, &upd),
        (DOWN, &ok_reply(11, 2)),
        (UP, &del),
        (DOWN, &ok_reply(12, 3)),
    ]);
    assert_eq!(ops[0].batch_size, Some(2));
    assert_eq!(
        ops[0].query_text.as_deref(),
        Some(r#"{"insert":"c","documents":[{"a":"?"},{"a":"?"}]}"#)
    );
    assert_eq!(ops[1].batch_size, Some(1));
    assert_eq!(
        ops[1].query_text.as_deref(),
        Some(r#"{"update":"c","updates":[{"q":{"name":"?"},"u":{"$set":{"age":"?"}}}]}"#)
    );
    assert_eq!(ops[2].summary.as_deref(), Some("delete c"));
    assert_eq!(
        ops[2].query_text.as_deref(),
        Some(r#"{"delete":"c","deletes":[{"q":{"name":"?"},"limit":"?"}]}"#)
    );
}

#[test]
fn aggregate_shapes_nested_arrays_and_documents() {
    let req = msg(
        1,
        0,
        &doc(&[
            ("aggregate", B::S("users")),
            (
                "pipeline",
                B::A(vec![
                    B::D(vec![(
                        "$match",
                        B::D(vec![(
                            "a",
                            B::D(vec![("$in", B::A(vec![B::I(1), B::S("x"), B::Null]))]),
                        )]),
                    )]),
                    B::D(vec![(
                        "$group",
                        B::D(vec![
                            ("_id", B::S("$x")),
                            ("n", B::D(vec![("$sum", B::I(1))])),
                        ]),
                    )]),
                    B::D(vec![(
                        "$project",
                        B::D(vec![("tags", B::A(vec![B::A(vec![B::I(1)])]))]),
                    )]),
                ]),
            ),
            ("cursor", B::D(vec![])),
            ("$readPreference", B::D(vec![("mode", B::S("primary"))])),
            ("$db", B::S("shop")),
        ]),
    );
    let (ops, _) = run(&[(UP, &req), (DOWN, &cursor_reply(2, 1))]);
    assert_eq!(
        ops[0].query_text.as_deref(),
        Some(
            r#"{"aggregate":"users","pipeline":[{"$match":{"a":{"$in":["?","?","?"]}}},{"$group":{"_id":"?","n":{"$sum":"?"}}},{"$project":{"tags":[["?"]]}}],"cursor":{}}"#
        )
    );
    // A database-level aggregate: `aggregate: 1`, no collection.
    let req = msg(
        3,
        0,
        &doc(&[
            ("aggregate", B::I(1)),
            ("pipeline", B::A(vec![])),
            ("$db", B::S("admin")),
        ]),
    );
    let (ops, _) = run(&[(UP, &req), (DOWN, &cursor_reply(4, 3))]);
    assert_eq!(ops[0].collection, None);
    assert_eq!(ops[0].summary.as_deref(), Some("aggregate"));
    assert_eq!(ops[0].namespace.as_deref(), Some("admin"));
    assert_eq!(
        ops[0].query_text.as_deref(),
        Some(r#"{"aggregate":1,"pipeline":[]}"#)
    );
}

#[test]
fn unsanitized_values() {
    let req = msg(
        1,
        0,
        &doc(&[
            ("find", B::S("c")),
            (
                "filter",
                B::D(vec![
                    ("s", B::S("a\"b\n")),
                    ("i", B::I(-3)),
                    ("l", B::L(1 << 40)),
                    ("f", B::F(1.5)),
                    ("t", B::T(false)),
                    ("n", B::Null),
                    ("o", B::Oid([0xab; 12])),
                    ("b", B::Bin(vec![1, 2])),
                ]),
            ),
            ("$db", B::S("d")),
        ]),
    );
    let opts = QueryTextOptions {
        sanitize: false,
        ..Default::default()
    };
    let (ops, _, _) = run_opts(opts, &[(UP, &req)]);
    assert_eq!(
        ops[0].query_text.as_deref(),
        Some(
            r#"{"find":"c","filter":{"s":"a\"b\n","i":-3,"l":1099511627776,"f":1.5,"t":false,"n":null,"o":{"$oid":"abababababababababababab"},"b":"?"}}"#
        )
    );
    assert!(ops[0].aborted, "no reply before close");
    // Not captured at all.
    let opts = QueryTextOptions {
        capture: false,
        ..Default::default()
    };
    let (ops, _, _) = run_opts(opts, &[(UP, &req)]);
    assert_eq!(ops[0].query_text, None);
    assert_eq!(ops[0].summary.as_deref(), Some("find c"));
}

#[test]
fn query_text_cut_to_max_len() {
    let opts = QueryTextOptions {
        max_len: 20,
        ..Default::default()
    };
    let req = find_users(1);
    let (ops, stats, _) = run_opts(opts, &[(UP, &req), (DOWN, &cursor_reply(2, 1))]);
    assert_eq!(
        ops[0].query_text.as_deref(),
        Some(r#"{"find":"users","fil"#)
    );
    assert_eq!(stats.query_truncated, 1);
}

#[test]
fn getmore_collection_and_cursor_id() {
    let req = msg(
        1,
        0,
        &doc(&[
            ("getMore", B::L(123456789)),
            ("collection", B::S("users")),
            ("batchSize", B::I(10)),
            ("$db", B::S("shop")),
        ]),
    );
    let (ops, _) = run(&[(UP, &req), (DOWN, &ok_reply(2, 1))]);
    assert_eq!(ops[0].operation.as_deref(), Some("getMore"));
    assert_eq!(ops[0].collection.as_deref(), Some("users"));
    assert_eq!(
        ops[0].query_text.as_deref(),
        Some(r#"{"getMore":"?","collection":"?","batchSize":"?"}"#)
    );
}

#[test]
fn errors_codes_and_write_errors() {
    let a = find_users(1);
    let b = find_users(2);
    let c = msg(3, 0, &doc(&[("insert", B::S("u")), ("$db", B::S("shop"))]));
    let d = msg(4, 0, &doc(&[("update", B::S("u")), ("$db", B::S("shop"))]));
    let e = msg(5, 0, &doc(&[("delete", B::S("u")), ("$db", B::S("shop"))]));
    let rep_a = err_reply(10, 1, 26, "NamespaceNotFound");
    // ok as int32 0, no codeName.
    let rep_b = msg(
        11,
        2,
        &doc(&[("ok", B::I(0)), ("errmsg", B::S("x")), ("code", B::I(2))]),
    );
    let rep_c = msg(
        12,
        3,
        &doc(&[
            ("n", B::I(0)),
            (
                "writeErrors",
                B::A(vec![B::D(vec![
                    ("index", B::I(0)),
                    ("code", B::I(11000)),
                    ("errmsg", B::S("dup")),
                ])]),
            ),
            ("ok", B::F(1.0)),
        ]),
    );
    let rep_d = msg(
        13,
        4,
        &doc(&[
            ("n", B::I(1)),
            (
                "writeConcernError",
                B::D(vec![
                    ("code", B::I(64)),
                    ("codeName", B::S("WriteConcernFailed")),
                ]),
            ),
            ("ok", B::F(1.0)),
        ]),
    );
    let rep_e = msg(
        14,
        5,
        &doc(&[
            ("n", B::I(1)),
            ("writeErrors", B::A(vec![])),
            ("ok", B::T(true)),
        ]),
    );
    let (ops, _) = run(&[
        (UP, &a),
        (DOWN, &rep_a),
        (UP, &b),
        (DOWN, &rep_b),
        (UP, &c),
        (DOWN, &rep_c),
        (UP, &d),
        (DOWN, &rep_d),
        (UP, &e),
        (DOWN, &rep_e),
    ]);
    let got: Vec<_> = ops
        .iter()
        .map(|o| (o.error, o.status_code.as_deref(), o.error_type.as_deref()))
        .collect();
    assert_eq!(
        got,
        vec![
            (true, Some("26"), Some("NamespaceNotFound")),
            (true, Some("2"), Some("BadValue")),
            (true, Some("11000"), Some("DuplicateKey")),
            (true, Some("64"), Some("WriteConcernFailed")),
            (false, None, None),
        ]
    );
}

#[test]
fn handshakes_and_heartbeats_are_no_spans() {
    let q = query(
        1,
        "admin.$cmd",
        &doc(&[("isMaster", B::I(1)), ("client", B::D(vec![]))]),
    );
    let r = reply(
        2,
        1,
        8,
        &doc(&[("ismaster", B::T(true)), ("ok", B::F(1.0))]),
    );
    let h = hello(3);
    let ping = msg(5, 0, &doc(&[("ping", B::I(1)), ("$db", B::S("admin"))]));
    let sasl = msg(
        7,
        0,
        &doc(&[
            ("saslStart", B::I(1)),
            ("payload", B::Bin(vec![1])),
            ("$db", B::S("admin")),
        ]),
    );
    let end = msg(
        9,
        0,
        &doc(&[("endSessions", B::A(vec![lsid()])), ("$db", B::S("admin"))]),
    );
    let (ops, stats) = run(&[
        (UP, &q),
        (DOWN, &r),
        (UP, &h),
        (DOWN, &ok_reply(4, 3)),
        (UP, &ping),
        (DOWN, &ok_reply(6, 5)),
        (UP, &sasl),
        (DOWN, &ok_reply(8, 7)),
        (UP, &end),
        (DOWN, &ok_reply(10, 9)),
    ]);
    assert!(ops.is_empty(), "{ops:?}");
    assert_eq!(stats.not_operations, 5);
    assert_eq!(stats.malformed, 0);
}

#[test]
fn op_query_command_and_legacy_query() {
    let q = query(
        1,
        "shop.$cmd",
        &doc(&[
            ("count", B::S("users")),
            ("query", B::D(vec![("a", B::I(1))])),
        ]),
    );
    let r = reply(2, 1, 0, &doc(&[("n", B::I(4)), ("ok", B::F(1.0))]));
    let legacy = query(3, "shop.users", &doc(&[("name", B::S("bob"))]));
    // QueryFailure.
    let fail = reply(4, 3, 2, &doc(&[("$err", B::S("bad")), ("code", B::I(17))]));
    let (ops, stats) = run(&[(UP, &q), (DOWN, &r), (UP, &legacy), (DOWN, &fail)]);
    assert_eq!(ops.len(), 2);
    assert_eq!(ops[0].summary.as_deref(), Some("count users"));
    assert_eq!(ops[0].namespace.as_deref(), Some("shop"));
    assert_eq!(
        ops[0].query_text.as_deref(),
        Some(r#"{"count":"users","query":{"a":"?"}}"#)
    );
    assert!(!ops[0].error);
    assert_eq!(ops[1].summary.as_deref(), Some("find users"));
    assert_eq!(ops[1].query_text.as_deref(), Some(r#"{"name":"?"}"#));
    assert!(ops[1].error);
    assert_eq!(ops[1].status_code, None);
    assert_eq!(stats.malformed, 0);
}

#[test]
fn more_to_come_request_ends_at_once() {
    let body = doc(&[
        ("insert", B::S("logs")),
        ("writeConcern", B::D(vec![("w", B::I(0))])),
        ("$db", B::S("d")),
    ]);
    let req = msg_full(
        1,
        0,
        wire::MORE_TO_COME,
        &body,
        &[("documents", vec![doc(&[("a", B::I(1))])])],
        false,
    );
    let mut s = MongoSession::new(QueryTextOptions::default());
    let mut out = Vec::new();
    s.feed(UP, &req, 0, 5, 3, &mut out);
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(
        out[0],
        DbEvent::Started {
            seq: 1,
            ts: 5,
            tid: 3
        }
    );
    let DbEvent::Done(op) = &out[1] else { panic!() };
    assert_eq!((op.start_ts, op.end_ts, op.aborted), (5, 5, false));
    assert_eq!(
        op.query_text.as_deref(),
        Some(r#"{"insert":"logs","writeConcern":{"w":"?"},"documents":[{"a":"?"}]}"#)
    );
}

#[test]
fn exhaust_replies_end_the_operation_at_the_last() {
    const EXHAUST: u32 = 1 << 16;
    let req = msg_full(
        1,
        0,
        EXHAUST,
        &doc(&[
            ("getMore", B::L(77)),
            ("collection", B::S("c")),
            ("$db", B::S("d")),
        ]),
        &[],
        false,
    );
    let more = |id, to| {
        msg_full(
            id,
            to,
            wire::MORE_TO_COME,
            &doc(&[("ok", B::F(1.0))]),
            &[],
            false,
        )
    };
    let (ops, stats) = run(&[
        (UP, &req),
        (DOWN, &more(10, 1)),
        (DOWN, &more(11, 10)),
        (DOWN, &err_reply(12, 11, 43, "CursorNotFound")),
        // Pairs with nothing.
        (DOWN, &ok_reply(13, 12)),
    ]);
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].end_ts, 4);
    assert_eq!(ops[0].error_type.as_deref(), Some("CursorNotFound"));
    assert_eq!(stats.not_operations, 1);
}

#[test]
fn replies_out_of_order_pair_by_id() {
    let a = find_users(10);
    let b = msg(
        11,
        0,
        &doc(&[("count", B::S("orders")), ("$db", B::S("shop"))]),
    );
    let (ops, _) = run(&[
        (UP, &a),
        (UP, &b),
        (DOWN, &err_reply(20, 11, 26, "NamespaceNotFound")),
        (DOWN, &cursor_reply(21, 10)),
    ]);
    assert_eq!(ops[0].summary.as_deref(), Some("find users"));
    assert_eq!((ops[0].end_ts, ops[0].error), (4, false));
    assert_eq!(ops[1].summary.as_deref(), Some("count orders"));
    assert_eq!((ops[1].end_ts, ops[1].error), (3, true));
}

#[test]
fn compressed_messages_each_compressor() {
    for c in [0u8, 1, 2, 3] {
        let req = compress(&find_users(1), c);
        let rep = compress(&err_reply(2, 1, 26, "NamespaceNotFound"), c);
        let (ops, stats) = run(&[(UP, &req), (DOWN, &rep)]);
        assert_eq!(ops.len(), 1, "compressor {c}");
        assert_eq!(
            ops[0].summary.as_deref(),
            Some("find users"),
            "compressor {c}"
        );
        assert_eq!(
            ops[0].query_text.as_deref(),
            Some(r#"{"find":"users","filter":{"age":{"$gt":"?"}},"limit":"?"}"#)
        );
        assert_eq!(ops[0].status_code.as_deref(), Some("26"), "compressor {c}");
        assert_eq!(stats, SessionStats::default(), "compressor {c}");
    }
    // An unknown compressor: an operation of unknown content.
    let mut req = compress(&find_users(1), 2);
    req[24] = 9;
    let (ops, stats) = run(&[(UP, &req), (DOWN, &ok_reply(2, 1))]);
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].operation, None);
    assert_eq!(stats.statement_unknown, 1);
}

#[test]
fn compressed_partly_captured() {
    // A long insert: zlib gives its start; zstd only whole blocks (up to 128 KiB) and
    // snappy only whole messages: nothing.
    let docs: Vec<Vec<u8>> = (0..2000)
        .map(|i| doc(&[("_id", B::I(i)), ("pad", B::S("xxxxxxxxxxxxxxxx"))]))
        .collect();
    let body = doc(&[("insert", B::S("big")), ("$db", B::S("d"))]);
    let plain = msg_full(1, 0, 0, &body, &[("documents", docs)], false);
    for (c, named) in [(1u8, false), (2, true), (3, false)] {
        let req = compress(&plain, c);
        let cap = 200.min(req.len() - 1);
        let mut s = MongoSession::new(QueryTextOptions::default());
        let mut out = Vec::new();
        s.feed(UP, &req[..cap], (req.len() - cap) as u64, 1, 1, &mut out);
        s.feed(DOWN, &ok_reply(2, 1), 0, 2, 1, &mut out);
        check_pairs(&out);
        let ops = done_ops(&out);
        assert_eq!(ops.len(), 1, "compressor {c}");
        assert_eq!(
            ops[0].operation.is_some(),
            named,
            "compressor {c}: {:?}",
            ops[0]
        );
        assert!(!ops[0].aborted);
        if named {
            assert_eq!(ops[0].summary.as_deref(), Some("insert big"));
            assert_eq!(ops[0].batch_size, None, "not all captured");
        }
    }
}

#[test]
fn partly_captured_request_gives_a_span() {
    let big = "y".repeat(5000);
    let leaked: &'static str = Box::leak(big.into_boxed_str());
    let req = msg(
        1,
        0,
        &doc(&[
            ("find", B::S("users")),
            (
                "filter",
                B::D(vec![("a", B::I(1)), ("blob", B::S(leaked)), ("z", B::I(2))]),
            ),
            ("$db", B::S("shop")),
        ]),
    );
    let mut s = MongoSession::new(QueryTextOptions::default());
    let mut out = Vec::new();
    s.feed(UP, &req[..80], (req.len() - 80) as u64, 1, 1, &mut out);
    s.feed(DOWN, &cursor_reply(2, 1), 0, 2, 1, &mut out);
    check_pairs(&out);
    let ops = done_ops(&out);
    assert_eq!(ops[0].summary.as_deref(), Some("find users"));
    assert_eq!(ops[0].namespace, None, "$db not captured");
    assert_eq!(
        ops[0].query_text.as_deref(),
        Some(r#"{"find":"users","filter":{"a":"?""#)
    );
    assert_eq!(s.stats().query_truncated, 1);
    assert_eq!(s.losses(), 0);
    // A reply cut before its `ok`: a success.
    let mut s = MongoSession::new(QueryTextOptions::default());
    let mut out = Vec::new();
    let rep = cursor_reply(2, 1);
    s.feed(UP, &find_users(1), 0, 1, 1, &mut out);
    s.feed(DOWN, &rep[..30], (rep.len() - 30) as u64, 2, 1, &mut out);
    let ops = done_ops(&out);
    assert_eq!((ops.len(), ops[0].error, ops[0].aborted), (1, false, false));
}

#[test]
fn gap_across_boundary_resynchronises() {
    let a = find_users(1);
    let b = find_users(3);
    let mut s = MongoSession::new(QueryTextOptions::default());
    let mut out = Vec::new();
    // The request whole, then a gap after it: boundary lost.
    s.feed(UP, &a, 50, 1, 1, &mut out);
    assert_eq!(s.losses(), 1);
    // The next feed is the middle of something: dropped.
    s.feed(UP, &a[20..], 0, 2, 1, &mut out);
    s.feed(DOWN, &cursor_reply(2, 1), 0, 3, 1, &mut out);
    // A feed starting with a header resynchronises.
    s.feed(UP, &b, 0, 4, 1, &mut out);
    s.feed(DOWN, &cursor_reply(4, 3), 0, 5, 1, &mut out);
    s.close(9, &mut out);
    check_pairs(&out);
    let ops = done_ops(&out);
    assert_eq!(ops.len(), 2);
    assert_eq!((ops[0].start_ts, ops[0].end_ts), (1, 3));
    assert_eq!((ops[1].start_ts, ops[1].end_ts), (4, 5));
    assert_eq!(s.stats().malformed, 0);
}

#[test]
fn garbage_is_malformed_and_resynchronises() {
    let a = find_users(1);
    let mut junk = a.clone();
    junk.extend(b"\xff\xff\xff\x7fgarbage-garbage-garbage");
    let mut s = MongoSession::new(QueryTextOptions::default());
    let mut out = Vec::new();
    s.feed(UP, &junk, 0, 1, 1, &mut out);
    assert_eq!(s.stats().malformed, 1);
    s.feed(UP, b"more junk that is not a header", 0, 2, 1, &mut out);
    s.feed(DOWN, &cursor_reply(2, 1), 0, 3, 1, &mut out);
    s.feed(UP, &find_users(3), 0, 4, 1, &mut out);
    s.feed(DOWN, &cursor_reply(4, 3), 0, 5, 1, &mut out);
    s.close(9, &mut out);
    check_pairs(&out);
    let ops = done_ops(&out);
    assert_eq!(ops.len(), 2);
    assert!(ops.iter().all(|o| !o.aborted));
    assert_eq!(s.stats().malformed, 1);
    // A bad OP_MSG section kind inside good framing: malformed, framing kept.
    let mut bad = find_users(5);
    bad[20] = 7;
    let (ops, stats) = run(&[
        (UP, &find_users(4)),
        (UP, &bad),
        (UP, &find_users(6)),
        (DOWN, &cursor_reply(7, 6)),
    ]);
    assert_eq!(ops.len(), 2);
    assert!(ops[0].aborted && !ops[1].aborted);
    assert_eq!(stats.malformed, 1);
}

#[test]
fn midstream_first_feeds() {
    let a = find_users(1);
    let mut s = MongoSession::new(QueryTextOptions::default());
    let mut out = Vec::new();
    // A reply to a request not seen, and the tail of a message: no spans, no garbage.
    s.feed(DOWN, &a[30..], 0, 1, 1, &mut out);
    s.feed(DOWN, &cursor_reply(50, 40), 0, 2, 1, &mut out);
    s.feed(UP, &a, 0, 3, 1, &mut out);
    s.feed(DOWN, &cursor_reply(51, 1), 0, 4, 1, &mut out);
    s.close(9, &mut out);
    let ops = done_ops(&out);
    assert_eq!(ops.len(), 1);
    assert_eq!((ops[0].start_ts, ops[0].end_ts), (3, 4));
    assert_eq!(s.stats().not_operations, 1);
    assert_eq!(s.stats().malformed, 0);
}

#[test]
fn close_aborts_and_pending_is_bounded() {
    let mut s = MongoSession::new(QueryTextOptions::default());
    let mut out = Vec::new();
    for i in 0..(MAX_PENDING as i32 + 5) {
        s.feed(UP, &find_users(i + 1), 0, i as u64 + 1, 1, &mut out);
    }
    assert_eq!(s.evicted(), 5);
    s.close(u64::MAX, &mut out);
    check_pairs(&out);
    let ops = done_ops(&out);
    assert_eq!(ops.len(), MAX_PENDING + 5);
    assert!(ops.iter().all(|o| o.aborted));
    // The oldest went first.
    assert!(ops[..5].iter().all(|o| o.end_ts < 10_000));
}

#[test]
fn sniff_and_midstream() {
    let m = find_users(1);
    assert_eq!(sniff(UP, &m), Sniff::Yes);
    assert_eq!(sniff(DOWN, &m), Sniff::No);
    assert_eq!(sniff(UP, &m[..10]), Sniff::NeedMore);
    assert_eq!(sniff(UP, &m[..18]), Sniff::NeedMore);
    assert_eq!(
        sniff(UP, &query(1, "admin.$cmd", &doc(&[("isMaster", B::I(1))]))),
        Sniff::Yes
    );
    assert_eq!(sniff(UP, &compress(&m, 2)), Sniff::Yes);
    // A reply (responseTo set), OP_REPLY, bad flags, other protocols.
    assert_eq!(sniff(UP, &cursor_reply(2, 1)), Sniff::No);
    assert_eq!(sniff(UP, &reply(2, 0, 0, &doc(&[]))), Sniff::No);
    let mut bad = m.clone();
    bad[17] = 0x10;
    assert_eq!(sniff(UP, &bad), Sniff::No);
    for other in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"*1\r\n$4\r\nPING\r\n",
        b"\x00\x00\x00\x08\x04\xd2\x16\x2f",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x8a\x11\x22\x33\x44\x55",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ] {
        assert_eq!(sniff(UP, other), Sniff::No, "{other:?}");
    }
    assert!(plausible_midstream(UP, &m));
    assert!(!plausible_midstream(DOWN, &m));
    assert!(plausible_midstream(DOWN, &cursor_reply(2, 1)));
    assert!(plausible_midstream(DOWN, &reply(2, 1, 0, &doc(&[]))));
    assert!(!plausible_midstream(UP, &cursor_reply(2, 1)));
    assert!(!plausible_midstream(UP, &m[16..]));
    assert!(!plausible_midstream(DOWN, b"+OK\r\n"));
}

#[test]
fn bson_reader_edges() {
    // Truncated and malformed documents never panic and stop cleanly.
    let d = doc(&[
        ("a", B::S("hello")),
        ("b", B::D(vec![("c", B::I(1))])),
        ("e", B::A(vec![B::I(1)])),
    ]);
    for cut in 0..d.len() {
        if let Some((doc, _)) = bson::Doc::parse(&d[..cut]) {
            let mut it = doc.iter();
            for _ in it.by_ref() {}
            assert_ne!(it.state(), bson::State::Going);
        }
    }
    let (whole, len) = bson::Doc::parse(&d).unwrap();
    assert_eq!(len, d.len());
    assert_eq!(whole.count(), 3);
    // A nested length beyond the outer document is malformed.
    let mut bad = d.clone();
    bad[4 + 1 + 2 + 4 + 6 + 2 + 1] = 0x7f;
    let (doc, _) = bson::Doc::parse(&bad).unwrap();
    let mut it = doc.iter();
    for _ in it.by_ref() {}
    assert_eq!(it.state(), bson::State::Bad);
    // Too short a length.
    assert!(bson::Doc::parse(&[4, 0, 0, 0]).is_none());
}

#[test]
fn split_feeds_and_timing() {
    // A request split over feeds with different ts: start at the first, end at the reply's
    // last feed.
    let req = find_users(1);
    let rep = cursor_reply(2, 1);
    let mut s = MongoSession::new(QueryTextOptions::default());
    let mut out = Vec::new();
    s.feed(UP, &req[..5], 0, 10, 4, &mut out);
    s.feed(UP, &req[5..40], 0, 11, 5, &mut out);
    s.feed(UP, &req[40..], 0, 12, 5, &mut out);
    assert_eq!(
        out,
        vec![DbEvent::Started {
            seq: 1,
            ts: 10,
            tid: 4
        }]
    );
    s.feed(DOWN, &rep[..20], 0, 13, 0, &mut out);
    s.feed(DOWN, &rep[20..], 0, 14, 0, &mut out);
    let ops = done_ops(&out);
    assert_eq!((ops[0].start_ts, ops[0].end_ts, ops[0].tid), (10, 14, 4));
}

// ---------------------------------------------------------------------------
// Golden capture: pymongo 4.20 and FerretDB 1.24 through a recording proxy
// (test/golden/capture_tcp.py mongodb: records of u8 flow, u64 ts LE, u32 len LE,
// bytes; the monitor's and the application's connections interleaved in one file,
// which pairing by requestID tells apart).
// ---------------------------------------------------------------------------

fn golden(name: &str) -> Vec<(Flow, u64, Vec<u8>)> {
    crate::protocols::capture::golden(name)
        .into_iter()
        .map(|r| (r.flow, r.ts, r.data))
        .collect()
}

#[test]
fn golden_pymongo_ferretdb() {
    let recs = golden("mongodb_pymongo.bin");
    let feeds: Vec<Feed<'_>> = recs.iter().map(|(f, _, d)| (*f, &d[..])).collect();
    let (ops, stats, s) = run_opts(QueryTextOptions::default(), &feeds);
    assert_eq!(s.losses(), 0);
    assert_eq!(stats.malformed, 0);
    // Two handshakes (monitor and application) and endSessions.
    assert_eq!(stats.not_operations, 3);
    let got: Vec<_> = ops
        .iter()
        .map(|o| {
            (
                o.summary.as_deref().unwrap_or(""),
                o.query_text.as_deref().unwrap_or(""),
                o.batch_size,
                o.status_code.as_deref(),
                o.error_type.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "insert users",
                r#"{"insert":"users","ordered":"?","documents":[{"_id":"?","name":"?","age":"?"}]}"#,
                Some(1),
                None,
                None
            ),
            (
                "insert users",
                r#"{"insert":"users","ordered":"?","documents":[{"_id":"?","name":"?","age":"?"}]}"#,
                Some(3),
                None,
                None
            ),
            (
                "find users",
                r#"{"find":"users","filter":{"age":{"$gt":"?"}}}"#,
                None,
                None,
                None
            ),
            (
                "update users",
                r#"{"update":"users","ordered":"?","updates":[{"q":{"name":"?"},"u":{"$set":{"age":"?"}},"multi":"?","upsert":"?"}]}"#,
                Some(1),
                None,
                None
            ),
            (
                "delete users",
                r#"{"delete":"users","ordered":"?","deletes":[{"q":{"name":"?"},"limit":"?"}]}"#,
                Some(1),
                None,
                None
            ),
            (
                "aggregate users",
                r#"{"aggregate":"users","pipeline":[{"$match":{"age":{"$gte":"?"}}},{"$group":{"_id":"?","n":{"$sum":"?"}}}],"cursor":{}}"#,
                None,
                None,
                None
            ),
            (
                "insert users",
                r#"{"insert":"users","ordered":"?","documents":[{"_id":"?","name":"?"}]}"#,
                Some(1),
                Some("11000"),
                Some("DuplicateKey")
            ),
            (
                "noSuchCommand",
                r#"{"noSuchCommand":1}"#,
                None,
                Some("59"),
                Some("CommandNotFound")
            ),
        ]
    );
    for o in &ops {
        assert_eq!(o.namespace.as_deref(), Some("shop"));
        assert!(!o.aborted && o.start_ts < o.end_ts, "{o:?}");
        // run_opts gives record i the ts i + 1.
        assert_eq!(recs[o.start_ts as usize - 1].0, UP, "{o:?}");
        assert_eq!(recs[o.end_ts as usize - 1].0, DOWN, "{o:?}");
    }
    // Short captures: never panic, every Started ends; the names survive 64 bytes.
    for cap in [7usize, 64, 300] {
        let mut c = MongoSession::new(QueryTextOptions::default());
        let mut cut = Vec::new();
        for (flow, ts, data) in &recs {
            let n = data.len().min(cap);
            c.feed(*flow, &data[..n], (data.len() - n) as u64, *ts, 1, &mut cut);
        }
        c.close(u64::MAX, &mut cut);
        check_pairs(&cut);
        if cap >= 64 {
            let names: Vec<_> = done_ops(&cut)
                .into_iter()
                .filter_map(|o| o.summary)
                .collect();
            assert_eq!(names.len(), 8, "{cap}: {names:?}");
        }
    }
}
