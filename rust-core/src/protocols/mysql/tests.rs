//! Tests: packets built by hand with small builders, and streams recorded between real
//! clients and a real MariaDB 10.11 (test/golden/mysql_*.bin).

use super::*;
use crate::protocols::db::DbOp;

const UP: Flow = Flow::ToServer;
const DOWN: Flow = Flow::ToClient;

// ---------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------

fn pkt(seq: u8, payload: &[u8]) -> Vec<u8> {
    let n = payload.len() as u32;
    let mut v = n.to_le_bytes()[..3].to_vec();
    v.push(seq);
    v.extend(payload);
    v
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn z(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

const SERVER_CAPS: u32 = 0x81ff_f7fe | 1 << 24 | 1 << 27;

fn greeting(version: &str, caps: u32) -> Vec<u8> {
    let c = caps.to_le_bytes();
    pkt(
        0,
        &cat(&[
            &[10],
            &z(version),
            &[5, 0, 0, 0],
            b"abcdefgh",
            &[0, c[0], c[1], 45, 2, 0, c[2], c[3], 21],
            &[0; 10],
            b"ijklmnopqrst\0",
            &z("mysql_native_password"),
        ]),
    )
}

const CLIENT_BASE: u32 = 0x000a_a28d; // PROTOCOL_41, SECURE_CONNECTION, PLUGIN_AUTH, CONNECT_WITH_DB...

fn handshake_response(caps: u32, db: Option<&str>) -> Vec<u8> {
    let caps = match db {
        Some(_) => caps | 8,
        None => caps & !8,
    };
    let mut b = cat(&[
        &caps.to_le_bytes(),
        &[0, 0, 0, 1],
        &[45],
        &[0; 23],
        &z("root"),
    ]);
    b.extend([20]);
    b.extend([7u8; 20]);
    if let Some(db) = db {
        b.extend(z(db));
    }
    b.extend(z("mysql_native_password"));
    pkt(1, &b)
}

fn ok(seq: u8, status: u16) -> Vec<u8> {
    pkt(seq, &cat(&[&[0, 0, 0], &status.to_le_bytes(), &[0, 0]]))
}
fn ok_fe(seq: u8, status: u16) -> Vec<u8> {
    pkt(seq, &cat(&[&[0xfe, 0, 0], &status.to_le_bytes(), &[0, 0]]))
}
fn eof(seq: u8, status: u16) -> Vec<u8> {
    pkt(seq, &cat(&[&[0xfe, 0, 0], &status.to_le_bytes()]))
}
fn err(seq: u8, code: u16, state: Option<&str>) -> Vec<u8> {
    let mut b = vec![0xff];
    b.extend(code.to_le_bytes());
    if let Some(s) = state {
        b.push(b'#');
        b.extend(s.as_bytes());
    }
    b.extend(b"it failed");
    pkt(seq, &b)
}
fn coldef(seq: u8, name: &str) -> Vec<u8> {
    let mut b = b"\x03def\x04shop\x05items\x05items".to_vec();
    b.push(name.len() as u8);
    b.extend(name.as_bytes());
    b.push(name.len() as u8);
    b.extend(name.as_bytes());
    b.extend([0x0c, 0x3f, 0, 11, 0, 0, 0, 3, 0, 0, 0, 0, 0]);
    pkt(seq, &b)
}
fn row(seq: u8, v: &str) -> Vec<u8> {
    let mut b = vec![v.len() as u8];
    b.extend(v.as_bytes());
    pkt(seq, &b)
}
fn query(sql: &str) -> Vec<u8> {
    pkt(0, &cat(&[&[3], sql.as_bytes()]))
}
fn cmd(c: u8, rest: &[u8]) -> Vec<u8> {
    pkt(0, &cat(&[&[c], rest]))
}
fn prepare(sql: &str) -> Vec<u8> {
    cmd(0x16, sql.as_bytes())
}
fn execute(id: u32) -> Vec<u8> {
    cmd(0x17, &cat(&[&id.to_le_bytes(), &[0, 1, 0, 0, 0]]))
}
fn prepare_ok(seq: u8, id: u32, cols: u16, params: u16) -> Vec<u8> {
    pkt(
        seq,
        &cat(&[
            &[0],
            &id.to_le_bytes(),
            &cols.to_le_bytes(),
            &params.to_le_bytes(),
            &[0, 0, 0],
        ]),
    )
}

/// A one-column result set (column count, definition, [EOF], rows, terminator).
fn result_set(first_seq: u8, rows: &[&str], deprecate: bool, status: u16) -> Vec<u8> {
    let mut s = first_seq;
    let mut next = || {
        let v = s;
        s += 1;
        v
    };
    let mut v = cat(&[&pkt(next(), &[1]), &coldef(next(), "name")]);
    if !deprecate {
        v.extend(eof(next(), 2));
    }
    for r in rows {
        v.extend(row(next(), r));
    }
    if deprecate {
        v.extend(ok_fe(next(), status));
    } else {
        v.extend(eof(next(), status));
    }
    v
}

fn handshake_with(version: &str, caps: u32, db: Option<&str>) -> Vec<(Flow, Vec<u8>)> {
    vec![
        (DOWN, greeting(version, SERVER_CAPS)),
        (UP, handshake_response(caps, db)),
        (DOWN, ok(2, 2)),
    ]
}

fn handshake() -> Vec<(Flow, Vec<u8>)> {
    handshake_with("5.5.5-10.11.6-MariaDB-0+deb12u1", CLIENT_BASE, Some("shop"))
}

fn with_handshake(rest: Vec<(Flow, Vec<u8>)>) -> Vec<(Flow, Vec<u8>)> {
    let mut v = handshake();
    v.extend(rest);
    v
}

// ---------------------------------------------------------------------------
// Drivers
// ---------------------------------------------------------------------------

struct Run {
    events: Vec<DbEvent>,
    stats: SessionStats,
    lost: u64,
    namespace: Option<String>,
    system: DbSystem,
}

impl Run {
    fn ops(&self) -> Vec<DbOp> {
        done_ops(&self.events)
    }
}

fn done_ops(events: &[DbEvent]) -> Vec<DbOp> {
    events
        .iter()
        .filter_map(|e| match e {
            DbEvent::Done(op) => Some(op.clone()),
            _ => None,
        })
        .collect()
}

fn ts(i: usize) -> u64 {
    (i as u64 + 1) * 10
}

fn run_with(opts: QueryTextOptions, steps: &[(Flow, Vec<u8>)], close: bool) -> Run {
    let mut s = MySqlSession::new(opts);
    let mut events = Vec::new();
    for (i, (flow, data)) in steps.iter().enumerate() {
        s.feed(*flow, data, 0, ts(i), 100 + i as u32, &mut events);
    }
    if close {
        s.close(10_000, &mut events);
    }
    check_pairs(&events);
    Run {
        events,
        stats: s.stats(),
        lost: s.lost_sync(),
        namespace: s.namespace().map(str::to_string),
        system: s.system(),
    }
}

fn run(steps: &[(Flow, Vec<u8>)]) -> Run {
    run_with(QueryTextOptions::default(), steps, false)
}

/// Every step fed cut into pieces of `n` bytes.
fn run_pieces(steps: &[(Flow, Vec<u8>)], n: usize) -> Run {
    let mut s = MySqlSession::new(QueryTextOptions::default());
    let mut events = Vec::new();
    for (i, (flow, data)) in steps.iter().enumerate() {
        for piece in data.chunks(n) {
            s.feed(*flow, piece, 0, ts(i), 100 + i as u32, &mut events);
        }
    }
    check_pairs(&events);
    Run {
        events,
        stats: s.stats(),
        lost: s.lost_sync(),
        namespace: s.namespace().map(str::to_string),
        system: s.system(),
    }
}

fn check_pairs(events: &[DbEvent]) {
    let mut open = std::collections::BTreeMap::new();
    for e in events {
        match e {
            DbEvent::StartedWith(_) => unreachable!("databases report Started"),
            DbEvent::Started { seq, ts, .. } => {
                assert!(open.insert(*seq, *ts).is_none(), "seq {seq} started twice");
            }
            DbEvent::Done(op) => {
                let ts = open.remove(&op.seq).expect("Done without Started");
                assert_eq!(ts, op.start_ts);
                assert!(op.end_ts >= op.start_ts);
            }
        }
    }
}

fn expect_sql(op: &DbOp, sql: &str) {
    let info = analyze(sql);
    assert_eq!(op.operation, info.operation, "operation of {sql:?}");
    assert_eq!(op.collection, info.collection, "collection of {sql:?}");
    assert_eq!(op.summary, info.summary, "summary of {sql:?}");
    let mut scratch = SessionStats::default();
    assert_eq!(
        op.query_text,
        query_text(sql, &QueryTextOptions::default(), &mut scratch),
        "text of {sql:?}"
    );
}

// ---------------------------------------------------------------------------
// Handshake
// ---------------------------------------------------------------------------

#[test]
fn handshake_is_no_operation_and_names_system_and_schema() {
    let r = run(&handshake());
    assert!(r.events.is_empty());
    assert_eq!(r.stats.not_operations, 3);
    assert_eq!(r.namespace.as_deref(), Some("shop"));
    assert_eq!(r.system, DbSystem::Mariadb);
    assert_eq!(r.stats.malformed, 0);

    let r = run(&handshake_with("8.0.36", CLIENT_BASE | 1 << 24, None));
    assert_eq!(r.system, DbSystem::Mysql);
    assert_eq!(r.namespace, None);
    let r = run(&handshake_with("11.4.2-MariaDB", CLIENT_BASE, Some("db1")));
    assert_eq!(r.system, DbSystem::Mariadb);
    assert_eq!(r.namespace.as_deref(), Some("db1"));
}

#[test]
fn auth_switch_and_more_data_until_ok() {
    let steps = vec![
        (DOWN, greeting("8.0.36", SERVER_CAPS)),
        (UP, handshake_response(CLIENT_BASE, Some("shop"))),
        (
            DOWN,
            pkt(2, b"\xfecaching_sha2_password\0abcdefghijklmnopqrst\0"),
        ),
        (UP, pkt(3, &[9; 32])),
        (DOWN, pkt(4, &[1, 4])),
        (UP, pkt(5, b"secret\0")),
        (DOWN, ok(6, 2)),
        (UP, query("SELECT 1")),
        (DOWN, ok(1, 2)),
    ];
    let r = run(&steps);
    assert_eq!(r.ops().len(), 1);
    assert_eq!(r.stats.not_operations, 7);
    assert_eq!(r.stats.malformed, 0);
    assert_eq!(r.namespace.as_deref(), Some("shop"));
}

#[test]
fn access_denied_is_no_operation() {
    let steps = vec![
        (DOWN, greeting("8.0.36", SERVER_CAPS)),
        (UP, handshake_response(CLIENT_BASE, Some("shop"))),
        (DOWN, err(2, 1045, Some("28000"))),
    ];
    let r = run(&steps);
    assert!(r.events.is_empty());
    assert_eq!(r.stats.not_operations, 3);
    assert_eq!(r.namespace, None);
}

#[test]
fn ssl_request_then_raw_tls_is_skipped() {
    let caps = CLIENT_BASE | 1 << 11;
    let ssl = pkt(
        1,
        &cat(&[&caps.to_le_bytes(), &[0, 0, 0, 1], &[45], &[0; 23]]),
    );
    let mut s = MySqlSession::new(QueryTextOptions::default());
    let mut out = Vec::new();
    s.feed(DOWN, &greeting("8.0.36", SERVER_CAPS), 0, 1, 1, &mut out);
    s.feed(UP, &ssl, 0, 2, 1, &mut out);
    s.feed(UP, &[0x16, 3, 1, 0, 200, 1, 2, 3], 0, 3, 1, &mut out);
    s.feed(DOWN, &[0x16, 3, 3, 0, 90], 0, 4, 1, &mut out);
    assert!(s.tls());
    assert!(out.is_empty());
    assert_eq!(s.stats().malformed, 0);
}

#[test]
fn compression_is_counted_and_not_parsed() {
    let steps = [
        (DOWN, greeting("8.0.36", SERVER_CAPS)),
        (UP, handshake_response(CLIENT_BASE | 1 << 5, Some("shop"))),
        (DOWN, ok(2, 2)),
        // Compressed packets: 3-byte length, seq, 3-byte uncompressed length.
        (
            UP,
            vec![
                13, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 3, b'S', b'E', b'L', b'E', b'C',
            ],
        ),
        (
            DOWN,
            vec![11, 0, 0, 1, 0, 0, 0, 7, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0],
        ),
    ];
    let mut s = MySqlSession::new(QueryTextOptions::default());
    let mut out = Vec::new();
    for (i, (f, d)) in steps.iter().enumerate() {
        s.feed(*f, d, 0, ts(i), 1, &mut out);
    }
    assert!(s.compressed());
    assert!(out.is_empty());
    assert_eq!(s.stats().not_operations, 3);
    assert_eq!(s.stats().malformed, 0);
}

// ---------------------------------------------------------------------------
// Queries and replies
// ---------------------------------------------------------------------------

// ---------------------------------------------------------------------------
// TLS: the SSL request, raw TLS records (the handshake, before the probes mark the
// socket), then the plaintext the TLS library probes give, in the same session.
// ---------------------------------------------------------------------------

const CLIENT_SSL: u32 = 1 << 11;

fn ssl_request() -> Vec<u8> {
    let caps = CLIENT_BASE | CLIENT_SSL;
    pkt(
        1,
        &cat(&[&caps.to_le_bytes(), &[0, 0, 0, 1], &[45], &[0; 23]]),
    )
}

/// The full HandshakeResponse sent inside TLS: sequence id 2, CLIENT_SSL still set.
fn tls_handshake_response_pkt(db: Option<&str>) -> Vec<u8> {
    let mut p = handshake_response(CLIENT_BASE | CLIENT_SSL, db);
    p[3] = 2;
    p
}

/// A TLS record: type, version 3.3, length, payload.
fn tls_record(typ: u8, payload: &[u8]) -> Vec<u8> {
    let n = payload.len() as u16;
    cat(&[&[typ, 3, 3], &n.to_be_bytes(), payload])
}

/// Pseudo-random bytes (xorshift), like a record's encrypted payload.
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn tls_steps() -> Vec<(Flow, Vec<u8>)> {
    // An encrypted payload that starts like the plaintext's header, read apart from its
    // record header as OpenSSL does: its filler is not zero.
    let mut lookalike = cat(&[&[0x40, 0, 0, 2], &(CLIENT_BASE | CLIENT_SSL).to_le_bytes()]);
    lookalike.extend(noise(7, 60));
    vec![
        (
            DOWN,
            greeting("5.5.5-10.11.6-MariaDB-0+deb12u1", SERVER_CAPS),
        ),
        (UP, ssl_request()),
        (
            UP,
            tls_record(0x16, &cat(&[&[1, 0, 1, 0xfc, 3, 3], &noise(1, 250)])),
        ),
        (
            DOWN,
            tls_record(0x16, &cat(&[&[2, 0, 0, 0x76, 3, 3], &noise(2, 116)])),
        ),
        (DOWN, tls_record(0x17, &noise(3, 800))),
        (UP, tls_record(0x14, &[1])),
        (UP, lookalike),
        (UP, tls_record(0x17, &noise(4, 69))),
        // The plaintext, from the probes.
        (UP, tls_handshake_response_pkt(Some("shop"))),
        (DOWN, ok(3, 2)),
        (UP, query("SELECT name FROM users")),
        (DOWN, result_set(1, &["a", "b"], false, 2)),
        (UP, query("SELECT * FROM missing_table")),
        (DOWN, err(1, 1146, Some("42S02"))),
    ]
}

#[test]
fn tls_plaintext_continues_the_session() {
    let steps = tls_steps();
    let r = run(&steps);
    let ops = r.ops();
    assert_eq!(ops.len(), 2, "{ops:#?}");
    expect_sql(&ops[0], "SELECT name FROM users");
    expect_sql(&ops[1], "SELECT * FROM missing_table");
    for op in &ops {
        // The system from the greeting before TLS, the schema from the plaintext response.
        assert_eq!(op.system, Some(DbSystem::Mariadb));
        assert_eq!(op.namespace.as_deref(), Some("shop"));
    }
    assert!(!ops[0].error);
    assert_eq!(ops[1].status_code.as_deref(), Some("1146"));
    assert_eq!(ops[1].error_type.as_deref(), Some("42S02"));
    // Raw TLS is skipped silently: never malformed, no boundary lost.
    assert_eq!(r.stats.malformed, 0);
    assert_eq!(r.lost, 0);
    // Greeting, SSL request, HandshakeResponse, OK.
    assert_eq!(r.stats.not_operations, 4);
    assert_eq!(r.system, DbSystem::Mariadb);

    let mut s = MySqlSession::new(QueryTextOptions::default());
    let mut out = Vec::new();
    for (flow, data) in &steps[..2] {
        s.feed(*flow, data, 0, 1, 1, &mut out);
    }
    assert!(s.tls());
}

#[test]
fn tls_path_split_at_any_size_equals_whole() {
    // A server reads the plaintext's header, then its payload; TLS records as header
    // then payload: every cut gives the same events.
    let steps = tls_steps();
    let whole = run(&steps);
    for n in 1..=40 {
        let r = run_pieces(&steps, n);
        assert_eq!(r.events, whole.events, "pieces of {n}");
        assert_eq!(r.stats, whole.stats, "pieces of {n}");
        assert_eq!(r.lost, 0, "pieces of {n}");
    }
}

#[test]
fn tls_without_plaintext_is_skipped_silently() {
    // A TLS library we do not probe: raw records both ways for the whole connection,
    // cut anywhere.
    let mut steps = vec![(DOWN, greeting("8.0.36", SERVER_CAPS)), (UP, ssl_request())];
    for i in 0..400u64 {
        let flow = if i % 3 == 0 { DOWN } else { UP };
        let rec = tls_record(0x17, &noise(i + 10, 20 + (i as usize * 37) % 3000));
        let cut = (i as usize * 7) % rec.len();
        steps.push((flow, rec[..cut].to_vec()));
        steps.push((flow, rec[cut..].to_vec()));
        // Payload-only feeds, starting with what could be a packet header.
        steps.push((
            flow,
            cat(&[&[0x30, 0, 0, (i % 4) as u8], &noise(i + 1000, 40)]),
        ));
    }
    let r = run(&steps);
    assert!(r.events.is_empty());
    assert_eq!(r.stats.malformed, 0);
    assert_eq!(r.lost, 0);
    assert_eq!(r.stats.not_operations, 2);
    // With uncaptured bytes too.
    let mut s = MySqlSession::new(QueryTextOptions::default());
    let mut out = Vec::new();
    for (i, (flow, data)) in steps.iter().enumerate() {
        let n = if i < 2 { data.len() } else { data.len().min(5) };
        s.feed(
            *flow,
            &data[..n],
            (data.len() - n) as u64,
            ts(i),
            1,
            &mut out,
        );
    }
    assert!(out.is_empty());
    assert_eq!(s.stats().malformed, 0);
    assert!(s.tls());
}

#[test]
fn tls_handshake_response_recognition() {
    let p = tls_handshake_response_pkt(Some("shop"));
    assert_eq!(super::tls_handshake_response(&p), Sniff::Yes);
    for n in 0..32 {
        assert_eq!(
            super::tls_handshake_response(&p[..n]),
            Sniff::NeedMore,
            "prefix {n}"
        );
    }
    // The SSL request itself (sequence id 1), a plain response, raw records.
    assert_eq!(super::tls_handshake_response(&ssl_request()), Sniff::No);
    assert_eq!(
        super::tls_handshake_response(&handshake_response(CLIENT_BASE | CLIENT_SSL, None)),
        Sniff::No
    );
    for typ in [0x14, 0x15, 0x16, 0x17] {
        for v in 1..=4 {
            assert_eq!(super::tls_handshake_response(&[typ, 3, v]), Sniff::No);
        }
    }
    // Without CLIENT_SSL, or with a filler that is not zero.
    let mut no_ssl = p.clone();
    no_ssl[5] &= !(CLIENT_SSL >> 8) as u8;
    assert_eq!(super::tls_handshake_response(&no_ssl), Sniff::No);
    let mut filler = p.clone();
    filler[20] = 1;
    assert_eq!(super::tls_handshake_response(&filler), Sniff::No);
    // MariaDB's extended capabilities in the filler's last 4 bytes.
    let mut ext = p;
    ext[32..36].copy_from_slice(&[0x1c, 0, 0, 0]);
    assert_eq!(super::tls_handshake_response(&ext), Sniff::Yes);
}

#[test]
fn query_with_ok() {
    let sql = "INSERT INTO items (id, name) VALUES (1, 'secret')";
    let r = run(&with_handshake(vec![(UP, query(sql)), (DOWN, ok(1, 2))]));
    let ops = r.ops();
    assert_eq!(ops.len(), 1);
    let op = &ops[0];
    expect_sql(op, sql);
    assert_eq!(
        op.query_text.as_deref(),
        Some("INSERT INTO items (id, name) VALUES (?, ?)")
    );
    assert_eq!(op.summary.as_deref(), Some("INSERT items"));
    assert_eq!(op.system, Some(DbSystem::Mariadb));
    assert_eq!(op.namespace.as_deref(), Some("shop"));
    assert!(!op.error && !op.aborted);
    assert_eq!((op.start_ts, op.end_ts, op.tid), (ts(3), ts(4), 103));
}

#[test]
fn result_sets_with_and_without_deprecate_eof() {
    for deprecate in [false, true] {
        let caps = if deprecate {
            CLIENT_BASE | 1 << 24
        } else {
            CLIENT_BASE
        };
        for rows in [&[][..], &["a"][..], &["a", "b", "c"][..]] {
            let mut steps = handshake_with("8.0.36", caps, Some("shop"));
            steps.push((UP, query("SELECT name FROM items")));
            steps.push((DOWN, result_set(1, rows, deprecate, 2)));
            steps.push((UP, query("SELECT 2")));
            steps.push((DOWN, ok(1, 2)));
            let r = run(&steps);
            let ops = r.ops();
            assert_eq!(ops.len(), 2, "deprecate {deprecate} rows {rows:?}");
            assert_eq!(ops[0].summary.as_deref(), Some("SELECT items"));
            assert_eq!(ops[0].end_ts, ts(4));
            assert_eq!(r.stats.malformed, 0);
            assert_eq!(r.lost, 0);
            // Mid-stream (capabilities unknown) parses the same.
            let r2 = run(&steps[3..]);
            assert_eq!(r2.ops().len(), 2, "midstream deprecate {deprecate}");
            assert_eq!(r2.stats.malformed, 0);
            assert_eq!(r2.ops()[0].system, Some(DbSystem::Mysql));
        }
    }
}

#[test]
fn multiple_result_sets_are_one_operation() {
    let more = 2 | wire::SERVER_MORE_RESULTS_EXISTS;
    for deprecate in [false, true] {
        let caps = if deprecate {
            CLIENT_BASE | 1 << 24
        } else {
            CLIENT_BASE
        };
        let mut steps = handshake_with("8.0.36", caps, Some("shop"));
        let first = result_set(1, &["1"], deprecate, more);
        let n = if deprecate { 4 } else { 5 };
        steps.push((UP, query("SELECT 1; SELECT name FROM items; DELETE FROM t")));
        steps.push((DOWN, first));
        steps.push((DOWN, result_set(1 + n, &["x", "y"], deprecate, more)));
        steps.push((DOWN, ok(n * 2 + 2, 2)));
        let r = run(&steps);
        let ops = r.ops();
        assert_eq!(ops.len(), 1);
        assert_eq!(ops[0].end_ts, ts(6));
        assert_eq!(r.stats.malformed, 0, "deprecate {deprecate}");
    }
}

#[test]
fn error_with_and_without_sqlstate() {
    let r = run(&with_handshake(vec![
        (UP, query("SELECT * FROM missing_table")),
        (DOWN, err(1, 1146, Some("42S02"))),
        (UP, query("SELECT 1")),
        (DOWN, err(1, 1064, None)),
    ]));
    let ops = r.ops();
    assert_eq!(ops.len(), 2);
    assert!(ops[0].error);
    assert_eq!(ops[0].status_code.as_deref(), Some("1146"));
    assert_eq!(ops[0].error_type.as_deref(), Some("42S02"));
    assert!(ops[1].error);
    assert_eq!(ops[1].status_code.as_deref(), Some("1064"));
    assert_eq!(ops[1].error_type, None);
}

#[test]
fn error_in_the_middle_of_rows_and_after_a_first_result() {
    let more = 2 | wire::SERVER_MORE_RESULTS_EXISTS;
    let r = run(&with_handshake(vec![
        (UP, query("SELECT name FROM items")),
        (
            DOWN,
            cat(&[
                &pkt(1, &[1]),
                &coldef(2, "name"),
                &eof(3, 2),
                &row(4, "a"),
                &err(5, 1317, Some("70100")),
            ]),
        ),
        (UP, query("SELECT 1; SELECT x FROM nope")),
        (
            DOWN,
            cat(&[
                &result_set(1, &["1"], false, more),
                &err(6, 1146, Some("42S02")),
            ]),
        ),
    ]));
    let ops = r.ops();
    assert_eq!(ops.len(), 2);
    assert_eq!(ops[0].status_code.as_deref(), Some("1317"));
    assert_eq!(ops[1].error_type.as_deref(), Some("42S02"));
    assert_eq!(r.stats.malformed, 0);
}

#[test]
fn mariadb_progress_report_is_no_error() {
    let progress = pkt(1, b"\xff\xff\xff\x01\x01\x02\x10\x27\x00\x05stage");
    let r = run(&with_handshake(vec![
        (UP, query("ALTER TABLE items ADD COLUMN x int")),
        (DOWN, progress),
        (DOWN, ok(2, 2)),
    ]));
    let ops = r.ops();
    assert_eq!(ops.len(), 1);
    assert!(!ops[0].error);
    assert_eq!(ops[0].end_ts, ts(5));
}

#[test]
fn metadata_not_sent_skips_definitions() {
    // MariaDB's cache metadata / MySQL's optional metadata: "metadata follows" 0.
    let r = run(&with_handshake(vec![
        (UP, execute(7)),
        (
            DOWN,
            cat(&[
                &pkt(1, &[1, 0]),
                &eof(2, 2),
                &pkt(3, &[0, 0, 1, b'a']),
                &eof(4, 2),
            ]),
        ),
        (UP, query("SELECT 1")),
        (
            DOWN,
            cat(&[
                &pkt(1, &[1, 1]),
                &coldef(2, "x"),
                &eof(3, 2),
                &row(4, "1"),
                &eof(5, 2),
            ]),
        ),
    ]));
    assert_eq!(r.ops().len(), 2);
    assert_eq!(r.stats.malformed, 0);
    assert_eq!(r.stats.statement_unknown, 1);
}

// ---------------------------------------------------------------------------
// Prepared statements
// ---------------------------------------------------------------------------

#[test]
fn prepared_statement_executed_twice_and_closed() {
    let sql = "SELECT name FROM items WHERE id = ?";
    let r = run(&with_handshake(vec![
        (UP, prepare(sql)),
        (
            DOWN,
            cat(&[
                &prepare_ok(1, 7, 1, 1),
                &coldef(2, "?"),
                &eof(3, 2),
                &coldef(4, "name"),
                &eof(5, 2),
            ]),
        ),
        (UP, execute(7)),
        (
            DOWN,
            cat(&[
                &pkt(1, &[1]),
                &coldef(2, "name"),
                &eof(3, 2),
                &pkt(4, &[0, 0, 1, b'a']),
                &eof(5, 2),
            ]),
        ),
        (UP, execute(7)),
        (DOWN, err(1, 1205, Some("HY000"))),
        (UP, cmd(0x19, &7u32.to_le_bytes())),
        (UP, execute(7)),
        (DOWN, ok(1, 2)),
    ]));
    let ops = r.ops();
    assert_eq!(ops.len(), 3);
    for op in &ops[..2] {
        expect_sql(op, sql);
        assert_eq!(op.query_text.as_deref(), Some(sql));
        assert_eq!(op.summary.as_deref(), Some("SELECT items"));
    }
    assert!(!ops[0].error && ops[1].error);
    assert_eq!(ops[0].start_ts, ts(5));
    // Closed: the third execution's statement is unknown.
    assert_eq!(ops[2].query_text, None);
    assert_eq!(ops[2].operation, None);
    assert_eq!(r.stats.statement_unknown, 1);
    // Handshake 3, prepare, close.
    assert_eq!(r.stats.not_operations, 5);
    assert_eq!(r.stats.malformed, 0);
}

#[test]
fn prepare_with_deprecate_eof_and_no_columns() {
    let mut steps = handshake_with("8.0.36", CLIENT_BASE | 1 << 24, Some("shop"));
    steps.extend([
        (UP, prepare("INSERT INTO items VALUES (?, ?)")),
        (
            DOWN,
            cat(&[&prepare_ok(1, 1, 0, 2), &coldef(2, "?"), &coldef(3, "?")]),
        ),
        (UP, prepare("DELETE FROM items")),
        (DOWN, prepare_ok(1, 2, 0, 0)),
        (UP, execute(1)),
        (DOWN, ok(1, 2)),
        (UP, execute(2)),
        (DOWN, ok(1, 2)),
    ]);
    let r = run(&steps);
    let ops = r.ops();
    assert_eq!(ops.len(), 2);
    assert_eq!(ops[0].summary.as_deref(), Some("INSERT items"));
    assert_eq!(ops[1].summary.as_deref(), Some("DELETE items"));
    assert_eq!(r.stats.malformed, 0);
    // The same without knowing the capabilities (no EOF follows the definitions).
    let r = run(&steps[3..]);
    assert_eq!(r.ops().len(), 2);
    assert_eq!(r.ops()[1].summary.as_deref(), Some("DELETE items"));
    assert_eq!(r.stats.malformed, 0);
}

#[test]
fn failed_prepare_is_no_operation_and_unknown_statement_still_a_span() {
    let r = run(&with_handshake(vec![
        (UP, prepare("SELEC oops")),
        (DOWN, err(1, 1064, Some("42000"))),
        (UP, execute(99)),
        (DOWN, ok(1, 2)),
    ]));
    let ops = r.ops();
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].summary, None);
    assert_eq!(ops[0].system, Some(DbSystem::Mariadb));
    assert_eq!(r.stats.statement_unknown, 1);
}

#[test]
fn mariadb_last_prepared_statement_id() {
    // Connector/C sends PREPARE and EXECUTE(0xFFFFFFFF) together.
    let sql = "UPDATE items SET name = ? WHERE id = ?";
    let r = run(&with_handshake(vec![
        (UP, cat(&[&prepare(sql), &execute(u32::MAX)])),
        (
            DOWN,
            cat(&[
                &prepare_ok(1, 3, 0, 2),
                &coldef(2, "?"),
                &coldef(3, "?"),
                &eof(4, 2),
                &ok(1, 2),
            ]),
        ),
    ]));
    let ops = r.ops();
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].query_text.as_deref(), Some(sql));
    assert_eq!(r.stats.malformed, 0);
}

// ---------------------------------------------------------------------------
// Namespace, other commands, LOAD DATA LOCAL
// ---------------------------------------------------------------------------

#[test]
fn init_db_and_use_change_the_namespace() {
    let r = run(&with_handshake(vec![
        (UP, cmd(2, b"mysql")),
        (DOWN, ok(1, 2)),
        (UP, query("SELECT 1")),
        (DOWN, ok(1, 2)),
        (UP, cmd(2, b"nope")),
        (DOWN, err(1, 1049, Some("42000"))),
        (UP, query("use `shop`")),
        (DOWN, ok(1, 2)),
        (UP, query("SELECT 2")),
        (DOWN, ok(1, 2)),
        (UP, query("USE missing")),
        (DOWN, err(1, 1049, Some("42000"))),
        (UP, query("SELECT 3")),
        (DOWN, ok(1, 2)),
    ]));
    let ops = r.ops();
    let ns: Vec<_> = ops.iter().map(|o| o.namespace.as_deref()).collect();
    assert_eq!(
        ns,
        [
            Some("mysql"),
            Some("mysql"),
            Some("shop"),
            Some("shop"),
            Some("shop")
        ]
    );
    assert_eq!(ops[1].summary.as_deref(), Some("USE `shop`"));
    assert_eq!(r.namespace.as_deref(), Some("shop"));
}

#[test]
fn session_track_schema_changes_the_namespace() {
    let caps = CLIENT_BASE | 1 << 23;
    // OK with SERVER_SESSION_STATE_CHANGED: info "", state [type 1, data [lenenc "db2"]].
    let state = [1u8, 4, 3, b'd', b'b', b'2'];
    let mut okp = vec![0, 0, 0, 0x02, 0x40, 0, 0, 0];
    okp.push(state.len() as u8);
    okp.extend(state);
    let mut steps = handshake_with("8.0.36", caps, Some("shop"));
    steps.extend([
        (UP, query("CALL switch_db()")),
        (DOWN, pkt(1, &okp)),
        (UP, query("SELECT 1")),
        (DOWN, ok(1, 2)),
    ]);
    let r = run(&steps);
    let ops = r.ops();
    assert_eq!(ops[0].namespace.as_deref(), Some("shop"));
    assert_eq!(ops[1].namespace.as_deref(), Some("db2"));
}

#[test]
fn ping_quit_reset_statistics_are_no_operations() {
    let r = run_with(
        QueryTextOptions::default(),
        &with_handshake(vec![
            (UP, cmd(0x0e, &[])),
            (DOWN, ok(1, 2)),
            (UP, cmd(0x09, &[])),
            (DOWN, pkt(1, b"Uptime: 5  Threads: 1")),
            (UP, cmd(0x1a, &1u32.to_le_bytes())),
            (DOWN, ok(1, 2)),
            (UP, cmd(0x1f, &[])),
            (DOWN, ok(1, 2)),
            (UP, query("SELECT 1")),
            (DOWN, ok(1, 2)),
            (UP, cmd(0x01, &[])),
        ]),
        true,
    );
    assert_eq!(r.ops().len(), 1);
    assert_eq!(r.stats.not_operations, 3 + 5);
    assert_eq!(r.stats.malformed, 0);
    assert_eq!(r.lost, 0);
}

#[test]
fn load_data_local_infile_keeps_sync() {
    let file = vec![b'x'; 3000];
    let r = run(&with_handshake(vec![
        (
            UP,
            query("LOAD DATA LOCAL INFILE '/tmp/f.csv' INTO TABLE items"),
        ),
        (DOWN, pkt(1, b"\xfb/tmp/f.csv")),
        (UP, pkt(2, &file)),
        (UP, pkt(3, &file)),
        (UP, pkt(4, &[])),
        (DOWN, ok(5, 2)),
        (UP, query("SELECT 1")),
        (DOWN, ok(1, 2)),
    ]));
    let ops = r.ops();
    assert_eq!(ops.len(), 2);
    assert_eq!(ops[0].end_ts, ts(8));
    assert_eq!(ops[0].operation.as_deref(), Some("LOAD"));
    assert_eq!(r.stats.malformed, 0);
    assert_eq!(r.lost, 0);
}

#[test]
fn query_attributes_prefix_is_skipped() {
    let caps = CLIENT_BASE | 1 << 27;
    let mut steps = handshake_with("8.0.36", caps, Some("shop"));
    // No attributes; then one string attribute.
    steps.push((UP, cmd(3, b"\x00\x01SELECT 1")));
    steps.push((DOWN, ok(1, 2)));
    steps.push((UP, cmd(3, b"\x01\x01\x00\x01\xfe\x00\x02id\x03abcSELECT 2")));
    steps.push((DOWN, ok(1, 2)));
    let ops = run(&steps).ops();
    assert_eq!(ops[0].query_text.as_deref(), Some("SELECT ?"));
    assert_eq!(ops[1].query_text.as_deref(), Some("SELECT ?"));
    // Capabilities unknown: a control byte first means attributes.
    assert_eq!(query_of(b"\x00\x01SELECT 3", None), Some(&b"SELECT 3"[..]));
    assert_eq!(query_of(b"SELECT 3", None), Some(&b"SELECT 3"[..]));
}

#[test]
fn use_statement_names() {
    assert_eq!(use_db("USE shop").as_deref(), Some("shop"));
    assert_eq!(use_db(" use `my db`; ").as_deref(), Some("my db"));
    assert_eq!(use_db("USE `a``b`").as_deref(), Some("a`b"));
    assert_eq!(use_db("USER x"), None);
    assert_eq!(use_db("USE a b"), None);
    assert_eq!(use_db("USE"), None);
}

// ---------------------------------------------------------------------------
// Framing: pieces, gaps, resync, midstream, close
// ---------------------------------------------------------------------------

fn mixed_exchange() -> Vec<(Flow, Vec<u8>)> {
    with_handshake(vec![
        (UP, query("SELECT name FROM items")),
        (DOWN, result_set(1, &["a", "bb", "ccc"], false, 2)),
        (UP, prepare("SELECT name FROM items WHERE id = ?")),
        (
            DOWN,
            cat(&[
                &prepare_ok(1, 7, 1, 1),
                &coldef(2, "?"),
                &eof(3, 2),
                &coldef(4, "name"),
                &eof(5, 2),
            ]),
        ),
        (UP, execute(7)),
        (DOWN, result_set(1, &["x"], false, 2)),
        (UP, query("LOAD DATA LOCAL INFILE 'f' INTO TABLE items")),
        (DOWN, pkt(1, b"\xfbf")),
        (UP, cat(&[&pkt(2, b"1,a\n"), &pkt(3, &[])])),
        (DOWN, ok(4, 2)),
        (UP, query("SELECT * FROM nope")),
        (DOWN, err(1, 1146, Some("42S02"))),
    ])
}

#[test]
fn split_at_any_size_equals_whole() {
    let steps = mixed_exchange();
    let whole = run(&steps);
    assert_eq!(whole.ops().len(), 4);
    assert_eq!(whole.stats.malformed, 0);
    assert_eq!(whole.lost, 0);
    for n in 1..=12 {
        let r = run_pieces(&steps, n);
        assert_eq!(r.events, whole.events, "pieces of {n}");
        assert_eq!(r.stats, whole.stats, "pieces of {n}");
        assert_eq!(r.lost, 0);
    }
}

#[test]
fn large_packets_continue_and_buffer_at_most_64k() {
    // A 0xFFFFFF-byte row continued by a shorter packet, then the terminator.
    let mut big = vec![0xfe];
    big.extend(vec![b'x'; 0xff_ffff - 1]);
    let steps = with_handshake(vec![
        (UP, query("SELECT big FROM items")),
        (
            DOWN,
            cat(&[
                &pkt(1, &[1]),
                &coldef(2, "big"),
                &eof(3, 2),
                &pkt(4, &big),
                &pkt(5, b"yyy"),
                &eof(6, 2),
            ]),
        ),
        (UP, query("SELECT 1")),
        (DOWN, ok(1, 2)),
    ]);
    let r = run_pieces(&steps, 100_000);
    assert_eq!(r.ops().len(), 2);
    assert_eq!(r.stats.malformed, 0);
    let mut s = MySqlSession::new(QueryTextOptions::default());
    let mut out = Vec::new();
    for (i, (f, d)) in steps.iter().enumerate() {
        for c in d.chunks(70_000) {
            s.feed(*f, c, 0, ts(i), 1, &mut out);
            assert!(s.dirs[0].buf_capacity() <= wire::MAX_KEEP);
            assert!(s.dirs[1].buf_capacity() <= wire::MAX_KEEP);
        }
    }
    assert_eq!(done_ops(&out).len(), 2);
}

#[test]
fn gap_inside_a_row_is_skipped_by_length() {
    let mut s = MySqlSession::new(QueryTextOptions::default());
    let mut out = Vec::new();
    for (i, (f, d)) in handshake().iter().enumerate() {
        s.feed(*f, d, 0, ts(i), 1, &mut out);
    }
    s.feed(UP, &query("SELECT big FROM items"), 0, 100, 1, &mut out);
    let head = cat(&[&pkt(1, &[1]), &coldef(2, "big"), &eof(3, 2)]);
    let mut rowp = vec![0xfc, 0x10, 0x27];
    rowp.extend(vec![b'x'; 10_000]);
    let rowp = pkt(4, &rowp);
    let mut first = head.clone();
    first.extend(&rowp[..100]);
    s.feed(DOWN, &first, (rowp.len() - 100) as u64, 110, 1, &mut out);
    s.feed(DOWN, &eof(5, 2), 0, 120, 1, &mut out);
    let ops = done_ops(&out);
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].end_ts, 120);
    assert_eq!(s.lost_sync(), 0);
}

#[test]
fn gap_across_rows_resyncs_at_the_terminator() {
    let mut s = MySqlSession::new(QueryTextOptions::default());
    let mut out = Vec::new();
    for (i, (f, d)) in handshake().iter().enumerate() {
        s.feed(*f, d, 0, ts(i), 1, &mut out);
    }
    s.feed(UP, &query("SELECT name FROM items"), 0, 100, 1, &mut out);
    let head = cat(&[
        &pkt(1, &[1]),
        &coldef(2, "name"),
        &eof(3, 2),
        &row(4, "a"),
        &row(5, "b"),
    ]);
    // The capture lost rows 6..=200 (a gap across many packets)...
    s.feed(DOWN, &head[..head.len() - 2], 5000, 110, 1, &mut out);
    assert_eq!(s.lost_sync(), 1);
    // ...a later write starts mid-row and ends with the EOF.
    s.feed(
        DOWN,
        &cat(&[b"zz", &row(201, "c"), &eof(202, 2)]),
        0,
        120,
        1,
        &mut out,
    );
    let ops = done_ops(&out);
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].end_ts, 120);
    assert!(!ops[0].aborted);
    // In sync again.
    s.feed(UP, &query("SELECT 1"), 0, 130, 1, &mut out);
    s.feed(DOWN, &ok(1, 2), 0, 140, 1, &mut out);
    assert_eq!(done_ops(&out).len(), 2);
    assert_eq!(s.stats().malformed, 0);
}

#[test]
fn gap_across_a_reply_resyncs_at_the_next_command() {
    let mut s = MySqlSession::new(QueryTextOptions::default());
    let mut out = Vec::new();
    for (i, (f, d)) in handshake().iter().enumerate() {
        s.feed(*f, d, 0, ts(i), 1, &mut out);
    }
    s.feed(UP, &query("SELECT name FROM items"), 0, 100, 1, &mut out);
    s.feed(DOWN, &pkt(1, &[1])[..3], 9000, 110, 1, &mut out);
    s.feed(DOWN, b"garbage without terminator", 0, 115, 1, &mut out);
    s.feed(UP, &query("SELECT 2"), 0, 120, 1, &mut out);
    s.feed(DOWN, &ok(1, 2), 0, 130, 1, &mut out);
    let ops = done_ops(&out);
    assert_eq!(ops.len(), 2);
    assert_eq!(ops[0].end_ts, 115);
    assert!(!ops[0].error && !ops[0].aborted);
    assert_eq!(ops[1].end_ts, 130);
}

#[test]
fn gap_in_requests_resyncs_at_the_next_command() {
    let mut s = MySqlSession::new(QueryTextOptions::default());
    let mut out = Vec::new();
    for (i, (f, d)) in handshake().iter().enumerate() {
        s.feed(*f, d, 0, ts(i), 1, &mut out);
    }
    let q = query("SELECT 1");
    s.feed(UP, &q[..2], 50, 100, 1, &mut out);
    s.feed(DOWN, &result_set(1, &["1"], false, 2), 0, 110, 1, &mut out);
    s.feed(UP, &query("SELECT 2"), 0, 120, 1, &mut out);
    s.feed(DOWN, &ok(1, 2), 0, 130, 1, &mut out);
    let ops = done_ops(&out);
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].query_text.as_deref(), Some("SELECT ?"));
    assert_eq!((ops[0].start_ts, ops[0].end_ts), (120, 130));
}

#[test]
fn midstream_start_and_first_bytes_inside_a_packet() {
    // First bytes are a command: parsed at once.
    let r = run(&[(UP, query("SELECT 1")), (DOWN, ok(1, 2))]);
    assert_eq!(r.ops().len(), 1);
    assert_eq!(r.ops()[0].namespace, None);
    assert_eq!(r.ops()[0].system, Some(DbSystem::Mysql));
    // A reply first (its command unseen), then a command.
    let r = run(&[
        (DOWN, result_set(1, &["a"], false, 2)),
        (UP, query("SELECT 2")),
        (DOWN, ok(1, 2)),
    ]);
    assert_eq!(r.ops().len(), 1);
    assert_eq!(r.stats.malformed, 0);
    // Inside a packet both ways.
    let r = run(&[
        (DOWN, b"xyz\x01\x02\x03\x04\x05".to_vec()),
        (UP, b"ECT * FROM t".to_vec()),
        (UP, query("SELECT 3")),
        (DOWN, ok(1, 2)),
    ]);
    assert_eq!(r.ops().len(), 1);
    assert_eq!(r.ops()[0].query_text.as_deref(), Some("SELECT ?"));
}

#[test]
fn out_of_sequence_reply_is_malformed_and_recovers() {
    let r = run(&with_handshake(vec![
        (UP, query("SELECT 1")),
        (DOWN, ok(5, 2)),
        (UP, query("SELECT 2")),
        (DOWN, ok(1, 2)),
    ]));
    let ops = r.ops();
    assert_eq!(ops.len(), 2);
    assert_eq!(r.stats.malformed, 1);
    assert_eq!(ops[1].end_ts, ts(6));
}

#[test]
fn close_aborts_pending_operations() {
    let r = run_with(
        QueryTextOptions::default(),
        &with_handshake(vec![(UP, query("SELECT SLEEP(10)")), (DOWN, pkt(1, &[1]))]),
        true,
    );
    let ops = r.ops();
    assert_eq!(ops.len(), 1);
    assert!(ops[0].aborted);
    assert_eq!(ops[0].end_ts, 10_000);
}

#[test]
fn query_text_options_apply() {
    let sql = "SELECT * FROM items WHERE name = 'secret-value-long'";
    let opts = QueryTextOptions {
        capture: true,
        sanitize: false,
        max_len: 20,
    };
    let r = run_with(
        opts,
        &with_handshake(vec![(UP, query(sql)), (DOWN, ok(1, 2))]),
        false,
    );
    assert_eq!(r.ops()[0].query_text.as_deref(), Some(&sql[..20]));
    assert_eq!(r.stats.query_truncated, 1);
    let opts = QueryTextOptions {
        capture: false,
        ..Default::default()
    };
    let r = run_with(
        opts,
        &with_handshake(vec![(UP, query(sql)), (DOWN, ok(1, 2))]),
        false,
    );
    assert_eq!(r.ops()[0].query_text, None);
    assert_eq!(r.ops()[0].summary.as_deref(), Some("SELECT items"));
}

#[test]
fn statements_and_pending_are_bounded() {
    let mut steps = handshake();
    for id in 0..(MAX_STATEMENTS as u32 + 10) {
        steps.push((UP, prepare("SELECT 1")));
        steps.push((DOWN, prepare_ok(1, id, 0, 0)));
    }
    let mut s = MySqlSession::new(QueryTextOptions::default());
    let mut out = Vec::new();
    for (i, (f, d)) in steps.iter().enumerate() {
        s.feed(*f, d, 0, ts(i), 1, &mut out);
    }
    assert_eq!(s.core.stmts.len(), MAX_STATEMENTS);
    assert!(!s.core.stmts.contains_key(&0));
    for _ in 0..MAX_PENDING + 5 {
        s.feed(UP, &query("SELECT 1"), 0, 1, 1, &mut out);
    }
    assert!(s.core.queue.len() <= MAX_PENDING + 1);
    s.close(2, &mut out);
    check_pairs(&out);
}

#[test]
fn random_bytes_never_panic() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let base = mixed_exchange();
    for round in 0..300 {
        let mut s = MySqlSession::new(QueryTextOptions::default());
        let mut out = Vec::new();
        for (i, (f, d)) in base.iter().enumerate() {
            let mut d = d.clone();
            for _ in 0..(next() % 4) {
                if !d.is_empty() {
                    let at = (next() as usize) % d.len();
                    d[at] = next() as u8;
                }
            }
            let gap = if next() % 7 == 0 { next() % 100 } else { 0 };
            let cut = if d.is_empty() {
                0
            } else {
                (next() as usize) % d.len()
            };
            let flow = if round % 5 == 0 && next() % 3 == 0 {
                DOWN
            } else {
                *f
            };
            s.feed(flow, &d[..cut], 0, ts(i), 1, &mut out);
            s.feed(flow, &d[cut..], gap, ts(i), 1, &mut out);
        }
        s.close(u64::MAX, &mut out);
        check_pairs(&out);
        let open = out
            .iter()
            .filter(|e| matches!(e, DbEvent::Started { .. }))
            .count();
        assert_eq!(open, done_ops(&out).len());
    }
}

// ---------------------------------------------------------------------------
// Detection
// ---------------------------------------------------------------------------

#[test]
fn sniff_greetings() {
    for g in [
        greeting("5.5.5-10.11.6-MariaDB-0+deb12u1", SERVER_CAPS),
        greeting("8.0.36", SERVER_CAPS),
        greeting("11.4.2-MariaDB-log", SERVER_CAPS),
        // The longest version taken.
        greeting(&format!("8{}", "0".repeat(63)), SERVER_CAPS),
    ] {
        assert_eq!(sniff(DOWN, &g), Sniff::Yes);
        assert_eq!(sniff(UP, &g), Sniff::No);
        for n in 0..g.len() {
            assert_ne!(sniff(DOWN, &g[..n]), Sniff::No, "prefix {n}");
        }
    }
    assert_eq!(sniff(DOWN, b"HTTP/1.1 200 OK\r\n"), Sniff::No);
    assert_eq!(sniff(DOWN, b"+OK\r\n"), Sniff::No);
    assert_eq!(sniff(DOWN, &[0, 0, 0, 8, 4, 210, 22, 47]), Sniff::No);
    // An ERR greeting (host not allowed) is not taken.
    assert_eq!(sniff(DOWN, &err(0, 1130, None)), Sniff::No);
    let long = greeting(&format!("8{}", "0".repeat(64)), SERVER_CAPS);
    assert_eq!(sniff(DOWN, &long), Sniff::No);
    for n in 0..long.len() {
        assert_ne!(sniff(DOWN, &long[..n]), Sniff::Yes, "prefix {n}");
    }
    // Protocol 4.1 missing.
    assert_eq!(sniff(DOWN, &greeting("5.0.1", 0)), Sniff::No);
}

#[test]
fn midstream_plausibility() {
    let cases: &[(&str, Flow, Vec<u8>, bool)] = &[
        ("query", UP, query("SELECT 1"), true),
        ("ping", UP, cmd(0x0e, &[]), true),
        ("execute", UP, execute(1), true),
        (
            "close+query",
            UP,
            cat(&[&cmd(0x19, &[1, 0, 0, 0]), &query("SELECT 1")]),
            true,
        ),
        (
            "query cut",
            UP,
            query("SELECT * FROM items")[..10].to_vec(),
            true,
        ),
        ("binary query", UP, cmd(3, &[1, 2, 3, 0xff]), false),
        ("seq 1", UP, pkt(1, b"\x03SELECT 1"), false),
        ("unknown cmd", UP, cmd(0x40, b"x"), false),
        ("ping long", UP, cmd(0x0e, b"xx"), false),
        ("ok", DOWN, ok(1, 2), true),
        ("err", DOWN, err(1, 1146, Some("42S02")), true),
        ("result", DOWN, result_set(1, &["a"], false, 2), true),
        (
            "bad seq",
            DOWN,
            cat(&[&pkt(1, &[1]), &coldef(3, "x")]),
            false,
        ),
        ("http", DOWN, b"HTTP/1.1 200 OK\r\n\r\n".to_vec(), false),
        ("pg", UP, b"Q\0\0\0\x0dSELECT 1\0".to_vec(), false),
        ("redis", UP, b"*1\r\n$4\r\nPING\r\n".to_vec(), false),
    ];
    for (name, flow, bytes, want) in cases {
        assert_eq!(plausible_midstream(*flow, bytes), *want, "{name}");
    }
}

// ---------------------------------------------------------------------------
// Golden captures: real MariaDB 10.11 and real clients through a recording proxy
// (test/golden/capture_tcp.py mariadb: records of u8 flow, u64 ts LE, u32 len LE, bytes).
// ---------------------------------------------------------------------------

fn golden(name: &str) -> Vec<(Flow, u64, Vec<u8>)> {
    crate::protocols::capture::golden(name)
        .into_iter()
        .map(|r| (r.flow, r.ts, r.data))
        .collect()
}

/// Replays a capture whole, byte by byte (same events), and with every record cut to a
/// few captured bytes (never panics, every Started ends).
fn replay(name: &str) -> (Vec<DbOp>, SessionStats, MySqlSession) {
    let recs = golden(name);
    assert_eq!(sniff(DOWN, &recs[0].2), Sniff::Yes, "{name}");
    let mut s = MySqlSession::new(QueryTextOptions::default());
    let mut out = Vec::new();
    for (flow, ts, data) in &recs {
        s.feed(*flow, data, 0, *ts, 1, &mut out);
    }
    s.close(u64::MAX, &mut out);
    check_pairs(&out);
    assert_eq!(s.lost_sync(), 0, "{name}");
    assert_eq!(s.stats().malformed, 0, "{name}");

    let mut b = MySqlSession::new(QueryTextOptions::default());
    let mut bytes = Vec::new();
    for (flow, ts, data) in &recs {
        for byte in data.chunks(1) {
            b.feed(*flow, byte, 0, *ts, 1, &mut bytes);
        }
    }
    b.close(u64::MAX, &mut bytes);
    assert_eq!(out, bytes, "{name}: byte by byte");

    for cap in [7usize, 64, 300, 4096] {
        let mut c = MySqlSession::new(QueryTextOptions::default());
        let mut cut = Vec::new();
        for (flow, ts, data) in &recs {
            let n = data.len().min(cap);
            c.feed(*flow, &data[..n], (data.len() - n) as u64, *ts, 1, &mut cut);
        }
        c.close(u64::MAX, &mut cut);
        check_pairs(&cut);
    }
    let stats = s.stats();
    (done_ops(&out), stats, s)
}

fn assert_timing(name: &str, ops: &[DbOp]) {
    let recs = golden(name);
    let has = |flow: Flow, ts: u64| recs.iter().any(|(f, t, _)| *f == flow && *t == ts);
    for w in ops.windows(2) {
        assert!(w[0].start_ts <= w[1].start_ts);
    }
    for op in ops {
        assert!(op.start_ts < op.end_ts, "{op:?}");
        assert!(has(UP, op.start_ts), "{op:?}");
        assert!(has(DOWN, op.end_ts), "{op:?}");
        assert!(!op.aborted, "{op:?}");
        assert_eq!(op.system, Some(DbSystem::Mariadb));
    }
}

/// (text, namespace, error number / SQLSTATE) of every op, in order.
type Want<'a> = (&'a str, &'a str, Option<(&'a str, &'a str)>);

fn assert_ops(ops: &[DbOp], want: &[Want<'_>]) {
    assert_eq!(ops.len(), want.len(), "{ops:#?}");
    for (op, (sql, ns, err)) in ops.iter().zip(want) {
        expect_sql(op, sql);
        assert_eq!(op.namespace.as_deref(), Some(*ns), "{op:?}");
        assert_eq!(op.error, err.is_some(), "{op:?}");
        assert_eq!(op.status_code.as_deref(), err.map(|e| e.0), "{op:?}");
        assert_eq!(op.error_type.as_deref(), err.map(|e| e.1), "{op:?}");
    }
}

#[test]
fn golden_mariadb_cli() {
    let name = "mysql_cli.bin";
    let (ops, stats, s) = replay(name);
    assert_timing(name, &ops);
    assert_eq!(s.namespace(), Some("shop"));
    assert_ops(
        &ops,
        &[
            ("select 1", "shop", None),
            (
                "create table if not exists items (id int primary key, name text)",
                "shop",
                None,
            ),
            (
                "insert into items values (1, 'one'), (2, 'two')",
                "shop",
                None,
            ),
            ("select * from items where id > 0", "shop", None),
            (
                "select * from missing_table",
                "shop",
                Some(("1146", "42S02")),
            ),
        ],
    );
    // Greeting, response, OK; COM_QUIT.
    assert_eq!(stats.not_operations, 4);
}

#[test]
fn golden_pymysql() {
    let name = "mysql_pymysql.bin";
    let (ops, stats, s) = replay(name);
    assert_timing(name, &ops);
    let recs = golden(name);
    let load = recs
        .iter()
        .find_map(|(_, _, d)| {
            let t = String::from_utf8_lossy(d);
            t.find("LOAD DATA").map(|i| t[i..].to_string())
        })
        .unwrap();
    assert_ops(
        &ops,
        &[
            ("SET NAMES utf8mb4", "shop", None),
            ("SELECT id, name FROM items WHERE id = 1", "shop", None),
            (
                "SELECT * FROM missing_table",
                "shop",
                Some(("1146", "42S02")),
            ),
            (
                "SELECT 1; SELECT name FROM items WHERE id = 2",
                "shop",
                None,
            ),
            (&load, "shop", None),
            // COM_INIT_DB "mysql" (select_db) changed the namespace.
            ("SELECT COUNT(*) FROM user", "mysql", None),
            ("USE shop", "mysql", None),
            (
                "SELECT REPEAT('x', 70000) AS big FROM items LIMIT 1",
                "shop",
                None,
            ),
        ],
    );
    assert_eq!(s.namespace(), Some("shop"));
    // Greeting, response, OK; ping, init db, quit.
    assert_eq!(stats.not_operations, 6);
    // The 70000-byte row arrives in two records: the op ends at the EOF's.
    let last = ops.last().unwrap();
    assert_eq!(last.end_ts, recs[recs.len() - 2].1);
}

#[test]
fn golden_connector_prepared() {
    let name = "mysql_connector.bin";
    let (ops, stats, _) = replay(name);
    assert_timing(name, &ops);
    let select = "SELECT id, name FROM items WHERE id = ?";
    let insert = "INSERT INTO items (id, name) VALUES (?, ?)";
    assert_ops(
        &ops,
        &[
            (
                "SET NAMES 'utf8mb4' COLLATE 'utf8mb4_general_ci'",
                "shop",
                None,
            ),
            ("SET @@session.autocommit = ON", "shop", None),
            (select, "shop", None),
            (select, "shop", None),
            (select, "shop", None),
            (insert, "shop", None),
            (insert, "shop", Some(("1062", "23000"))),
            ("SELECT name FROM items WHERE id = 50", "shop", None),
        ],
    );
    assert_eq!(ops[2].query_text.as_deref(), Some(select));
    assert_eq!(stats.statement_unknown, 0);
    assert!(golden(name)
        .iter()
        .any(|(_, _, d)| d.windows(6).any(|w| w == b"secret")));
}

/// Recorded inside the collector (the bytes a session was fed, raw before TLS and the
/// probes' plaintext after): PyMySQL over TLS (OpenSSL) with MariaDB 10.11, the client's
/// view (its HandshakeResponse in one record) and mariadbd's (it reads a header, then
/// the payload; TLS records likewise), same conversation as the e2e test's.
fn tls_golden(name: &str) {
    let (ops, stats, s) = replay(name);
    assert_timing(name, &ops);
    assert!(s.tls());
    assert_ops(
        &ops,
        &[
            ("SET NAMES utf8mb4", "shop", None),
            ("SHOW STATUS LIKE 'Ssl_cipher'", "shop", None),
            (
                "CREATE TABLE users (id int primary key, name text)",
                "shop",
                None,
            ),
            (
                "INSERT INTO users VALUES (1, 'secret-1'), (2, 'secret-2')",
                "shop",
                None,
            ),
            ("SELECT name FROM users WHERE id = 1", "shop", None),
            (
                "SELECT * FROM missing_table",
                "shop",
                Some(("1146", "42S02")),
            ),
            ("SELECT COUNT(*) FROM db", "mysql", None),
            ("USE shop", "mysql", None),
            ("SELECT COUNT(*) FROM users", "shop", None),
        ],
    );
    // Greeting, SSL request, HandshakeResponse, OK; init db, quit.
    assert_eq!(stats.not_operations, 6, "{name}");
}

#[test]
fn golden_pymysql_tls_client() {
    tls_golden("mysql_pymysql_tls.bin");
}

#[test]
fn golden_pymysql_tls_server() {
    tls_golden("mysql_pymysql_tls_server.bin");
}
