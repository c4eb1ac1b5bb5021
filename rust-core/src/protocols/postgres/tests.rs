//! Tests: byte sequences built by hand with small message builders, and streams
//! recorded between real clients and a real PostgreSQL 15 (test/golden/postgresql_*.bin).

use super::*;
use crate::protocols::db::DbOp;

const UP: Flow = Flow::ToServer;
const DOWN: Flow = Flow::ToClient;

// ---------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------

fn msg(t: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![t];
    v.extend(((payload.len() + 4) as u32).to_be_bytes());
    v.extend(payload);
    v
}

fn z(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn packet(code: u32, rest: &[u8]) -> Vec<u8> {
    let mut v = ((rest.len() + 8) as u32).to_be_bytes().to_vec();
    v.extend(code.to_be_bytes());
    v.extend(rest);
    v
}

fn startup(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (k, v) in params {
        body.extend(z(k));
        body.extend(z(v));
    }
    body.push(0);
    packet(0x0003_0000, &body)
}

fn query(sql: &str) -> Vec<u8> {
    msg(b'Q', &z(sql))
}
fn parse(name: &str, sql: &str) -> Vec<u8> {
    msg(b'P', &cat(&[&z(name), &z(sql), &[0, 0]]))
}
fn bind(portal: &str, stmt: &str) -> Vec<u8> {
    msg(b'B', &cat(&[&z(portal), &z(stmt), &[0, 0, 0, 0, 0, 0]]))
}
fn describe(kind: u8, name: &str) -> Vec<u8> {
    msg(b'D', &cat(&[&[kind], &z(name)]))
}
fn close_msg(kind: u8, name: &str) -> Vec<u8> {
    msg(b'C', &cat(&[&[kind], &z(name)]))
}
fn execute(portal: &str, max_rows: u32) -> Vec<u8> {
    msg(b'E', &cat(&[&z(portal), &max_rows.to_be_bytes()]))
}
fn sync() -> Vec<u8> {
    msg(b'S', &[])
}
fn flush() -> Vec<u8> {
    msg(b'H', &[])
}
/// Parse (unnamed) + Bind + Describe portal + Execute, as psycopg sends a query with
/// parameters.
fn ext(sql: &str) -> Vec<u8> {
    cat(&[
        &parse("", sql),
        &bind("", ""),
        &describe(b'P', ""),
        &execute("", 0),
    ])
}

fn auth_ok() -> Vec<u8> {
    msg(b'R', &[0, 0, 0, 0])
}
fn param_status(k: &str, v: &str) -> Vec<u8> {
    msg(b'S', &cat(&[&z(k), &z(v)]))
}
fn key_data() -> Vec<u8> {
    msg(b'K', &[0, 0, 0, 42, 1, 2, 3, 4])
}
fn ready(status: u8) -> Vec<u8> {
    msg(b'Z', &[status])
}
fn row_desc() -> Vec<u8> {
    msg(b'T', &cat(&[&[0, 1], &z("x"), &[0; 18]]))
}
fn data_row(v: &[u8]) -> Vec<u8> {
    msg(b'D', &cat(&[&[0, 1], &(v.len() as u32).to_be_bytes(), v]))
}
fn complete(tag: &str) -> Vec<u8> {
    msg(b'C', &z(tag))
}
fn error(code: &str) -> Vec<u8> {
    msg(
        b'E',
        &cat(&[
            b"S",
            &z("ERROR"),
            b"C",
            &z(code),
            b"M",
            &z("it failed"),
            &[0],
        ]),
    )
}
fn notice() -> Vec<u8> {
    msg(
        b'N',
        &cat(&[b"S", &z("NOTICE"), b"C", &z("00000"), b"M", &z("fyi"), &[0]]),
    )
}
fn parse_complete() -> Vec<u8> {
    msg(b'1', &[])
}
fn bind_complete() -> Vec<u8> {
    msg(b'2', &[])
}
fn close_complete() -> Vec<u8> {
    msg(b'3', &[])
}
fn no_data() -> Vec<u8> {
    msg(b'n', &[])
}
fn suspended() -> Vec<u8> {
    msg(b's', &[])
}
/// The replies to [`ext`] for a one-row SELECT.
fn ext_reply(tag: &str) -> Vec<u8> {
    cat(&[
        &parse_complete(),
        &bind_complete(),
        &row_desc(),
        &data_row(b"1"),
        &complete(tag),
    ])
}

fn handshake() -> Vec<(Flow, Vec<u8>)> {
    vec![
        (
            UP,
            startup(&[
                ("user", "app"),
                ("database", "shop"),
                ("application_name", "t"),
            ]),
        ),
        (
            DOWN,
            cat(&[&msg(
                b'R',
                &[0, 0, 0, 10, b'S', b'C', b'R', b'A', b'M', 0, 0],
            )]),
        ),
        (UP, msg(b'p', b"SCRAM-SHA-256\0\0\0\0\x04abcd")),
        (
            DOWN,
            cat(&[
                &auth_ok(),
                &param_status("server_version", "15.14"),
                &param_status("client_encoding", "UTF8"),
                &key_data(),
                &ready(b'I'),
            ]),
        ),
    ]
}

// ---------------------------------------------------------------------------
// Drivers
// ---------------------------------------------------------------------------

struct Run {
    events: Vec<DbEvent>,
    stats: SessionStats,
    lost: u64,
    namespace: Option<String>,
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

/// Feeds every step whole, step i at ts (i+1)*10 by thread 100+i; closes at the end
/// when `close` (ts 10_000).
fn run_with(opts: QueryTextOptions, steps: &[(Flow, Vec<u8>)], close: bool) -> Run {
    let mut s = PgSession::new(opts);
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
    }
}

fn ts(i: usize) -> u64 {
    (i as u64 + 1) * 10
}

fn run(steps: &[(Flow, Vec<u8>)]) -> Run {
    run_with(QueryTextOptions::default(), steps, false)
}

/// Feeds every step cut into pieces (`cuts` gives each step's pieces), all pieces of
/// step i at ts (i+1)*10.
fn run_pieces(steps: &[(Flow, Vec<u8>)], cut: impl Fn(usize, &[u8]) -> Vec<Vec<u8>>) -> Run {
    let mut s = PgSession::new(QueryTextOptions::default());
    let mut events = Vec::new();
    for (i, (flow, data)) in steps.iter().enumerate() {
        for piece in cut(i, data) {
            s.feed(*flow, &piece, 0, ts(i), 100 + i as u32, &mut events);
        }
    }
    check_pairs(&events);
    Run {
        events,
        stats: s.stats(),
        lost: s.lost_sync(),
        namespace: s.namespace().map(str::to_string),
    }
}

/// Every Done follows its Started, once; seqs are distinct.
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

/// What the session must report for a statement's text (whatever sql.rs does).
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

fn with_handshake(rest: Vec<(Flow, Vec<u8>)>) -> Vec<(Flow, Vec<u8>)> {
    let mut v = handshake();
    v.extend(rest);
    v
}

/// ts of step `i` of an exchange that starts with the 4-step handshake.
fn hts(i: usize) -> u64 {
    ts(i + 4)
}

// ---------------------------------------------------------------------------
// Startup and simple queries
// ---------------------------------------------------------------------------

#[test]
fn startup_is_no_operation_and_names_the_database() {
    let r = run(&handshake());
    assert!(r.events.is_empty());
    assert_eq!(r.namespace.as_deref(), Some("shop"));
    // StartupMessage, password, R (SASL), R ok, 2 ParameterStatus, K, Z.
    assert_eq!(r.stats.not_operations, 8);
    assert_eq!(r.stats.malformed, 0);
    assert_eq!(r.lost, 0);
}

#[test]
fn database_defaults_to_user() {
    let r = run(&[
        (UP, startup(&[("user", "bob")])),
        (DOWN, cat(&[&auth_ok(), &ready(b'I')])),
        (UP, query("select 1")),
        (
            DOWN,
            cat(&[
                &row_desc(),
                &data_row(b"1"),
                &complete("SELECT 1"),
                &ready(b'I'),
            ]),
        ),
    ]);
    let ops = r.ops();
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].namespace.as_deref(), Some("bob"));
}

#[test]
fn simple_query() {
    let r = run(&with_handshake(vec![
        (UP, query("SELECT * FROM users WHERE id = 1")),
        (
            DOWN,
            cat(&[&row_desc(), &data_row(b"1"), &complete("SELECT 1")]),
        ),
        (DOWN, ready(b'I')),
    ]));
    assert_eq!(
        r.events[0],
        DbEvent::Started {
            seq: 0,
            ts: hts(0),
            tid: 104
        }
    );
    let ops = r.ops();
    assert_eq!(ops.len(), 1);
    let op = &ops[0];
    expect_sql(op, "SELECT * FROM users WHERE id = 1");
    assert_eq!(op.system, Some(DbSystem::Postgresql));
    assert_eq!(op.namespace.as_deref(), Some("shop"));
    assert_eq!((op.start_ts, op.end_ts), (hts(0), hts(2)), "ends at Z");
    assert_eq!(op.tid, 104);
    assert!(!op.error && !op.aborted);
    assert_eq!(
        (op.status_code.as_deref(), op.error_type.as_deref()),
        (None, None)
    );
    assert_eq!(op.batch_size, None);
}

#[test]
fn several_statements_in_one_query_are_one_operation() {
    let sql = "BEGIN; UPDATE accounts SET n = 1; COMMIT";
    let r = run(&with_handshake(vec![
        (UP, query(sql)),
        (
            DOWN,
            cat(&[
                &complete("BEGIN"),
                &complete("UPDATE 1"),
                &param_status("is_superuser", "off"),
                &complete("COMMIT"),
                &ready(b'I'),
            ]),
        ),
    ]));
    let ops = r.ops();
    assert_eq!(ops.len(), 1);
    expect_sql(&ops[0], sql);
}

#[test]
fn simple_query_error_gives_sqlstate() {
    let r = run(&with_handshake(vec![
        (UP, query("select 1/0")),
        (DOWN, cat(&[&row_desc(), &error("22012")])),
        (DOWN, ready(b'I')),
    ]));
    let ops = r.ops();
    assert_eq!(ops.len(), 1);
    let op = &ops[0];
    assert!(op.error);
    assert_eq!(op.status_code.as_deref(), Some("22012"));
    assert_eq!(op.error_type.as_deref(), Some("22012"));
    assert_eq!(op.end_ts, hts(2));
}

#[test]
fn first_error_of_a_query_wins_and_an_error_without_code_is_other() {
    let r = run(&with_handshake(vec![
        (UP, query("select 1; select 2")),
        (DOWN, cat(&[&error("42P01"), &error("XX000"), &ready(b'I')])),
        (UP, query("select 3")),
        (
            DOWN,
            cat(&[&msg(b'E', &cat(&[b"S", &z("ERROR"), &[0]])), &ready(b'I')]),
        ),
    ]));
    let ops = r.ops();
    assert_eq!(ops[0].status_code.as_deref(), Some("42P01"));
    assert!(ops[1].error);
    assert_eq!(ops[1].status_code, None);
    assert_eq!(ops[1].error_type.as_deref(), Some("_OTHER"));
}

#[test]
fn notice_is_not_an_error() {
    let r = run(&with_handshake(vec![
        (UP, query("drop table if exists t")),
        (
            DOWN,
            cat(&[&notice(), &complete("DROP TABLE"), &ready(b'I')]),
        ),
    ]));
    let ops = r.ops();
    assert_eq!(ops.len(), 1);
    assert!(!ops[0].error);
    assert_eq!(ops[0].status_code, None);
}

#[test]
fn empty_query() {
    let r = run(&with_handshake(vec![
        (UP, query("")),
        (DOWN, cat(&[&msg(b'I', &[]), &ready(b'I')])),
    ]));
    let ops = r.ops();
    assert_eq!(ops.len(), 1);
    assert!(!ops[0].error);
}

#[test]
fn authentication_failure_is_no_operation() {
    let r = run(&[(UP, startup(&[("user", "app")])), (DOWN, error("28P01"))]);
    assert!(r.events.is_empty());
    assert_eq!(r.stats.not_operations, 2);
}

#[test]
fn copy_in_and_out_inside_a_query() {
    let big = vec![b'x'; 100_000];
    let r = run(&with_handshake(vec![
        (UP, query("COPY items FROM STDIN")),
        (DOWN, msg(b'G', &[0, 0, 1, 0, 0])),
        (UP, cat(&[&msg(b'd', b"1\tone\n"), &msg(b'd', &big)])),
        (UP, msg(b'c', &[])),
        (DOWN, cat(&[&complete("COPY 2"), &ready(b'I')])),
        (UP, query("COPY items TO STDOUT")),
        (
            DOWN,
            cat(&[
                &msg(b'H', &[0, 0, 1, 0, 0]),
                &msg(b'd', b"1\tone\n"),
                &msg(b'd', &big),
                &msg(b'c', &[]),
                &complete("COPY 2"),
            ]),
        ),
        (DOWN, ready(b'I')),
        (UP, query("COPY items FROM STDIN")),
        (DOWN, msg(b'G', &[0, 0, 1, 0, 0])),
        (UP, msg(b'f', &z("client gave up"))),
        (DOWN, cat(&[&error("57014"), &ready(b'I')])),
    ]));
    let ops = r.ops();
    assert_eq!(ops.len(), 3);
    expect_sql(&ops[0], "COPY items FROM STDIN");
    assert_eq!((ops[0].start_ts, ops[0].end_ts), (hts(0), hts(4)));
    assert_eq!((ops[1].start_ts, ops[1].end_ts), (hts(5), hts(7)));
    assert_eq!(ops[2].status_code.as_deref(), Some("57014"));
    assert_eq!(r.stats.malformed, 0);
}

#[test]
fn function_call_is_no_operation() {
    let r = run(&with_handshake(vec![
        (UP, msg(b'F', &[0, 0, 3, 0xe8, 0, 0, 0, 0, 0, 1])),
        (DOWN, cat(&[&msg(b'V', &[0, 0, 0, 1, 7]), &ready(b'I')])),
        (UP, query("select 1")),
        (DOWN, cat(&[&complete("SELECT 1"), &ready(b'I')])),
    ]));
    let ops = r.ops();
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].start_ts, hts(2));
}

#[test]
fn notification_and_orphan_ready_are_no_operations() {
    let r = run(&with_handshake(vec![
        (
            DOWN,
            msg(b'A', &cat(&[&[0, 0, 0, 1], &z("chan"), &z("hi")])),
        ),
        (DOWN, ready(b'I')),
        (UP, msg(b'X', &[])),
    ]));
    assert!(r.events.is_empty());
    assert_eq!(r.stats.not_operations, 8 + 3);
}

// ---------------------------------------------------------------------------
// Extended protocol
// ---------------------------------------------------------------------------

#[test]
fn extended_query_one_operation_per_execute() {
    let sql = "SELECT name FROM users WHERE id = $1";
    let r = run(&with_handshake(vec![
        (UP, cat(&[&ext(sql), &sync()])),
        (DOWN, ext_reply("SELECT 1")),
        (DOWN, ready(b'I')),
    ]));
    let ops = r.ops();
    assert_eq!(ops.len(), 1);
    expect_sql(&ops[0], sql);
    assert_eq!(
        (ops[0].start_ts, ops[0].end_ts),
        (hts(0), hts(1)),
        "ends at CommandComplete"
    );
    assert_eq!(r.stats.statement_unknown, 0);
}

#[test]
fn extended_start_is_the_first_message_of_the_group() {
    let sql = "INSERT INTO t VALUES ($1)";
    let r = run(&with_handshake(vec![
        (UP, parse("", sql)),
        (UP, bind("", "")),
        (UP, cat(&[&execute("", 0), &sync()])),
        (
            DOWN,
            cat(&[&parse_complete(), &bind_complete(), &complete("INSERT 0 1")]),
        ),
        (DOWN, ready(b'I')),
    ]));
    let ops = r.ops();
    assert_eq!(ops.len(), 1);
    assert_eq!((ops[0].start_ts, ops[0].end_ts), (hts(0), hts(3)));
    assert_eq!(ops[0].tid, 104, "the thread that sent the Parse");
    assert_eq!(
        r.events[0],
        DbEvent::Started {
            seq: 0,
            ts: hts(0),
            tid: 104
        }
    );
}

#[test]
fn named_statement_prepared_once_executed_twice() {
    let sql = "UPDATE stock SET n = n - 1 WHERE id = $1";
    let r = run(&with_handshake(vec![
        // Preparation alone (Parse, Describe statement, Sync) is no operation.
        (
            UP,
            cat(&[&parse("s1", sql), &describe(b'S', "s1"), &sync()]),
        ),
        (
            DOWN,
            cat(&[
                &parse_complete(),
                &msg(b't', &[0, 1, 0, 0, 0, 23]),
                &no_data(),
                &ready(b'I'),
            ]),
        ),
        (UP, cat(&[&bind("", "s1"), &execute("", 0), &sync()])),
        (
            DOWN,
            cat(&[&bind_complete(), &complete("UPDATE 1"), &ready(b'I')]),
        ),
        (UP, cat(&[&bind("", "s1"), &execute("", 0), &sync()])),
        (
            DOWN,
            cat(&[&bind_complete(), &complete("UPDATE 1"), &ready(b'I')]),
        ),
    ]));
    let ops = r.ops();
    assert_eq!(ops.len(), 2);
    for op in &ops {
        expect_sql(op, sql);
    }
    assert_eq!(ops[0].start_ts, hts(2));
    assert_eq!(ops[1].start_ts, hts(4));
    // Handshake 8, the preparation's Parse and Describe.
    assert_eq!(r.stats.not_operations, 8 + 2);
}

#[test]
fn unknown_statement_is_named_by_its_command_tag() {
    let r = run(&[
        // Mid-stream: a pool connection opened before the collector.
        (
            UP,
            cat(&[&bind("", "stmtcache_42"), &execute("", 0), &sync()]),
        ),
        (
            DOWN,
            cat(&[
                &bind_complete(),
                &data_row(b"1"),
                &complete("SELECT 1"),
                &ready(b'I'),
            ]),
        ),
    ]);
    let ops = r.ops();
    assert_eq!(ops.len(), 1);
    let op = &ops[0];
    // The server's CommandComplete says what it was; nothing else is known.
    assert_eq!(op.operation.as_deref(), Some("SELECT"));
    assert_eq!((&op.summary, &op.query_text), (&None, &None));
    assert_eq!(op.namespace, None, "mid-stream: no startup seen");
    assert!(!op.error);
    assert_eq!(r.stats.statement_unknown, 1);
    assert_eq!(r.lost, 0);
}

#[test]
fn close_forgets_a_statement_and_query_the_unnamed_one() {
    let r = run(&with_handshake(vec![
        (UP, cat(&[&parse("s1", "select 1"), &sync()])),
        (DOWN, cat(&[&parse_complete(), &ready(b'I')])),
        (UP, cat(&[&close_msg(b'S', "s1"), &sync()])),
        (DOWN, cat(&[&close_complete(), &ready(b'I')])),
        (UP, cat(&[&bind("", "s1"), &execute("", 0), &sync()])),
        (DOWN, cat(&[&error("26000"), &ready(b'I')])),
        (UP, cat(&[&parse("", "select 2"), &sync()])),
        (DOWN, cat(&[&parse_complete(), &ready(b'I')])),
        (UP, query("select 3")),
        (DOWN, cat(&[&complete("SELECT 1"), &ready(b'I')])),
        (UP, cat(&[&bind("", ""), &execute("", 0), &sync()])),
        (DOWN, cat(&[&error("26000"), &ready(b'I')])),
    ]));
    let ops = r.ops();
    assert_eq!(ops.len(), 3);
    assert_eq!(ops[0].query_text, None);
    assert_eq!(ops[0].status_code.as_deref(), Some("26000"));
    expect_sql(&ops[1], "select 3");
    assert_eq!(ops[2].query_text, None);
    assert_eq!(r.stats.statement_unknown, 2);
}

#[test]
fn portal_suspended_ends_an_execute_and_the_next_is_another_operation() {
    let sql = "SELECT * FROM big";
    let r = run(&with_handshake(vec![
        (
            UP,
            cat(&[
                &parse("", sql),
                &bind("c1", ""),
                &execute("c1", 2),
                &flush(),
            ]),
        ),
        (
            DOWN,
            cat(&[
                &parse_complete(),
                &bind_complete(),
                &data_row(b"1"),
                &data_row(b"2"),
                &suspended(),
            ]),
        ),
        (UP, cat(&[&execute("c1", 2), &sync()])),
        (DOWN, cat(&[&data_row(b"3"), &complete("SELECT 1")])),
        (DOWN, ready(b'T')),
    ]));
    let ops = r.ops();
    assert_eq!(ops.len(), 2);
    expect_sql(&ops[0], sql);
    expect_sql(&ops[1], sql);
    assert_eq!((ops[0].start_ts, ops[0].end_ts), (hts(0), hts(1)));
    assert_eq!((ops[1].start_ts, ops[1].end_ts), (hts(2), hts(3)));
}

#[test]
fn pipeline_replies_pair_in_order() {
    let q = ["select 1", "insert into t values (1)", "delete from t"];
    let r = run(&with_handshake(vec![
        (UP, ext(q[0])),
        (UP, ext(q[1])),
        (UP, cat(&[&ext(q[2]), &sync()])),
        (DOWN, ext_reply("SELECT 1")),
        (
            DOWN,
            cat(&[
                &parse_complete(),
                &bind_complete(),
                &no_data(),
                &complete("INSERT 0 1"),
            ]),
        ),
        (
            DOWN,
            cat(&[
                &parse_complete(),
                &bind_complete(),
                &no_data(),
                &complete("DELETE 1"),
                &ready(b'I'),
            ]),
        ),
    ]));
    let ops = r.ops();
    assert_eq!(ops.len(), 3);
    for (i, op) in ops.iter().enumerate() {
        expect_sql(op, q[i]);
        assert_eq!(op.start_ts, hts(i), "op {i} starts with its Parse");
        assert_eq!(
            op.end_ts,
            hts(3 + i),
            "op {i} ends with its CommandComplete"
        );
        assert!(!op.error);
    }
    // Started events come in request order, before the replies.
    let started: Vec<u64> = r
        .events
        .iter()
        .filter_map(|e| match e {
            DbEvent::Started { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect();
    assert_eq!(started, [0, 1, 2]);
}

#[test]
fn pipeline_error_aborts_the_rest_up_to_sync() {
    let r = run(&with_handshake(vec![
        (
            UP,
            cat(&[
                &ext("select 1"),
                &ext("select 1/0"),
                &ext("select 3"),
                &ext("select 4"),
                &sync(),
                &ext("select 5"),
                &sync(),
            ]),
        ),
        (
            DOWN,
            cat(&[
                &ext_reply("SELECT 1"),
                &parse_complete(),
                &bind_complete(),
                &row_desc(),
                &error("22012"),
            ]),
        ),
        (DOWN, ready(b'I')),
        (DOWN, cat(&[&ext_reply("SELECT 1"), &ready(b'I')])),
    ]));
    let ops = r.ops();
    assert_eq!(ops.len(), 5);
    assert!(!ops[0].error);
    assert_eq!(ops[1].status_code.as_deref(), Some("22012"));
    assert_eq!(ops[1].error_type.as_deref(), Some("22012"));
    assert_eq!(ops[1].end_ts, hts(1));
    for op in &ops[2..4] {
        assert!(op.error && !op.aborted);
        assert_eq!(op.status_code, None);
        assert_eq!(op.error_type.as_deref(), Some(PIPELINE_ABORTED));
        assert_eq!(op.end_ts, hts(2), "skipped ones end with the Sync's Z");
    }
    expect_sql(&ops[2], "select 3");
    assert!(!ops[4].error, "after Sync the pipeline runs again");
    assert_eq!(ops[4].end_ts, hts(3));
}

#[test]
fn error_at_parse_fails_that_groups_execute() {
    let r = run(&with_handshake(vec![
        (
            UP,
            cat(&[&ext("select 1"), &ext("selec 2"), &ext("select 3"), &sync()]),
        ),
        (
            DOWN,
            cat(&[&ext_reply("SELECT 1"), &error("42601"), &ready(b'I')]),
        ),
    ]));
    let ops = r.ops();
    assert_eq!(ops.len(), 3);
    assert!(!ops[0].error);
    assert_eq!(ops[1].status_code.as_deref(), Some("42601"));
    expect_sql(&ops[1], "selec 2");
    assert_eq!(ops[2].error_type.as_deref(), Some(PIPELINE_ABORTED));
}

#[test]
fn error_before_the_sync_was_sent_skips_what_follows() {
    // The client flushes, sees the error, then sends more before its Sync: the server
    // skips it all.
    let r = run(&with_handshake(vec![
        (UP, cat(&[&parse("", "selec 1"), &flush()])),
        (DOWN, error("42601")),
        (UP, cat(&[&bind("", ""), &execute("", 0)])),
        (UP, cat(&[&ext("select 2"), &sync()])),
        (DOWN, ready(b'I')),
        (UP, cat(&[&ext("select 3"), &sync()])),
        (DOWN, cat(&[&ext_reply("SELECT 1"), &ready(b'I')])),
    ]));
    let ops = r.ops();
    assert_eq!(ops.len(), 3);
    assert_eq!(
        ops[0].status_code.as_deref(),
        Some("42601"),
        "its Parse failed"
    );
    assert_eq!((ops[0].start_ts, ops[0].end_ts), (hts(0), hts(2)));
    assert_eq!(ops[1].error_type.as_deref(), Some(PIPELINE_ABORTED));
    assert_eq!(ops[1].end_ts, hts(4));
    assert!(!ops[2].error);
    expect_sql(&ops[2], "select 3");
}

#[test]
fn error_at_sync_has_no_operation_left() {
    let r = run(&with_handshake(vec![
        (UP, cat(&[&ext("insert into t values (1)"), &sync()])),
        (
            DOWN,
            cat(&[
                &parse_complete(),
                &bind_complete(),
                &no_data(),
                &complete("INSERT 0 1"),
            ]),
        ),
        (DOWN, cat(&[&error("23505"), &ready(b'I')])),
    ]));
    let ops = r.ops();
    assert_eq!(ops.len(), 1);
    assert!(!ops[0].error);
    assert_eq!(r.stats.not_operations, 8 + 1);
}

#[test]
fn execute_of_copy_in_extended_protocol() {
    let r = run(&with_handshake(vec![
        (UP, cat(&[&ext("COPY t FROM STDIN"), &flush()])),
        (
            DOWN,
            cat(&[
                &parse_complete(),
                &bind_complete(),
                &no_data(),
                &msg(b'G', &[0, 0, 0]),
            ]),
        ),
        (UP, cat(&[&msg(b'd', b"1\n"), &msg(b'c', &[]), &sync()])),
        (DOWN, cat(&[&complete("COPY 1"), &ready(b'I')])),
    ]));
    let ops = r.ops();
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].end_ts, hts(3));
}

// ---------------------------------------------------------------------------
// SSL, GSS, cancel, mid-stream
// ---------------------------------------------------------------------------

#[test]
fn ssl_refused_then_plain_startup() {
    let r = run(&[
        (UP, packet(wire::SSL_REQUEST, &[])),
        (DOWN, b"N".to_vec()),
        (UP, startup(&[("user", "u"), ("database", "d")])),
        (DOWN, cat(&[&auth_ok(), &ready(b'I')])),
        (UP, query("select 1")),
        (DOWN, cat(&[&complete("SELECT 1"), &ready(b'I')])),
    ]);
    let ops = r.ops();
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].namespace.as_deref(), Some("d"));
    assert_eq!(r.stats.malformed, 0);
}

#[test]
fn ssl_accepted_then_plaintext_startup_from_the_tls_probes() {
    let hello = [
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    let r = run(&[
        (UP, packet(wire::SSL_REQUEST, &[])),
        (DOWN, b"S".to_vec()),
        // Raw records, if the socket's bytes are fed too: skipped.
        (UP, hello.to_vec()),
        (DOWN, vec![0x16, 0x03, 0x03, 0x00, 0x7a, 0x02, 0x00]),
        (UP, startup(&[("user", "u"), ("database", "d")])),
        (DOWN, cat(&[&auth_ok(), &ready(b'I')])),
        (UP, query("select 1")),
        (DOWN, cat(&[&complete("SELECT 1"), &ready(b'I')])),
    ]);
    let ops = r.ops();
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].namespace.as_deref(), Some("d"));
    assert_eq!(r.stats.malformed, 0);
    assert_eq!(r.lost, 2, "the two raw feeds were skipped");
}

#[test]
fn gss_encryption_stops_parsing() {
    let r = run(&[
        (UP, packet(wire::GSSENC_REQUEST, &[])),
        (DOWN, b"G".to_vec()),
        (UP, vec![0x60, 0x82, 1, 2, 3, 4, 5]),
        (DOWN, vec![1, 2, 3, 4, 5, 6, 7]),
    ]);
    assert!(r.events.is_empty());
    assert_eq!(r.stats.malformed, 0);
}

#[test]
fn bad_ssl_answer_is_malformed() {
    let r = run(&[(UP, packet(wire::SSL_REQUEST, &[])), (DOWN, b"X".to_vec())]);
    assert_eq!(r.stats.malformed, 1);
}

#[test]
fn cancel_request_is_no_operation() {
    let r = run_with(
        QueryTextOptions::default(),
        &[(UP, packet(wire::CANCEL_REQUEST, &[0, 0, 0, 42, 1, 2, 3, 4]))],
        true,
    );
    assert!(r.events.is_empty());
    assert_eq!(r.stats.not_operations, 1);
}

#[test]
fn midstream_connection_accepts_typed_messages() {
    let r = run(&[
        (UP, query("select 1")),
        (DOWN, cat(&[&complete("SELECT 1"), &ready(b'I')])),
        (UP, cat(&[&ext("select 2"), &sync()])),
        (DOWN, cat(&[&ext_reply("SELECT 1"), &ready(b'I')])),
    ]);
    let ops = r.ops();
    assert_eq!(ops.len(), 2);
    assert_eq!(ops[0].namespace, None);
    expect_sql(&ops[1], "select 2");
    assert_eq!((r.stats.malformed, r.lost), (0, 0));
}

#[test]
fn midstream_first_bytes_inside_a_message_wait_for_a_boundary() {
    let tail = &data_row(&[b'x'; 100])[40..];
    let r = run(&[
        (DOWN, tail.to_vec()),
        (UP, query("select 2")),
        (DOWN, cat(&[&complete("SELECT 1"), &ready(b'I')])),
    ]);
    let ops = r.ops();
    assert_eq!(ops.len(), 1);
    assert!(!ops[0].error);
    assert_eq!(ops[0].end_ts, ts(2));
    assert_eq!(r.stats.malformed, 0);
}

#[test]
fn midstream_first_bytes_with_a_zero_are_not_a_startup() {
    // The tail of a Bind with binary parameters (and its Execute and Sync), its
    // replies, then the next request.
    let tail = cat(&[
        &[0, 0, 0, 4, 0, 0, 0, 1, 0, 1, 0, 0],
        &execute("", 0),
        &sync(),
    ]);
    let r = run(&[
        (UP, tail),
        (
            DOWN,
            cat(&[&bind_complete(), &complete("SELECT 1"), &ready(b'I')]),
        ),
        (UP, cat(&[&ext("select 2"), &sync()])),
        (DOWN, cat(&[&ext_reply("SELECT 1"), &ready(b'I')])),
    ]);
    let ops = r.ops();
    assert_eq!(ops.len(), 1);
    expect_sql(&ops[0], "select 2");
    assert_eq!(r.stats.malformed, 0);
}

// ---------------------------------------------------------------------------
// Framing: splits, gaps, garbage
// ---------------------------------------------------------------------------

/// An exchange with every shape, for the split tests.
fn mixed_exchange() -> Vec<(Flow, Vec<u8>)> {
    with_handshake(vec![
        (UP, query("select 1/0")),
        (DOWN, cat(&[&notice(), &error("22012"), &ready(b'I')])),
        (
            UP,
            cat(&[
                &parse("s1", "select $1::int"),
                &bind("p", "s1"),
                &execute("p", 1),
                &execute("p", 0),
                &ext("select 2"),
                &sync(),
            ]),
        ),
        (
            DOWN,
            cat(&[
                &parse_complete(),
                &bind_complete(),
                &data_row(b"1"),
                &suspended(),
                &data_row(b"2"),
                &complete("SELECT 2"),
                &ext_reply("SELECT 1"),
                &ready(b'I'),
            ]),
        ),
        (UP, query("COPY t TO STDOUT")),
        (
            DOWN,
            cat(&[
                &msg(b'H', &[0, 0, 0]),
                &msg(b'd', b"row\n"),
                &msg(b'c', &[]),
                &complete("COPY 1"),
                &ready(b'I'),
            ]),
        ),
    ])
}

#[test]
fn byte_by_byte_equals_whole() {
    let steps = mixed_exchange();
    let whole = run(&steps);
    assert_eq!(whole.ops().len(), 5);
    assert_eq!((whole.stats.malformed, whole.lost), (0, 0));
    let bytes = run_pieces(&steps, |_, d| d.iter().map(|&b| vec![b]).collect());
    assert_eq!(whole.events, bytes.events);
    assert_eq!(whole.stats, bytes.stats);
}

#[test]
fn split_at_every_position_equals_whole() {
    let steps = mixed_exchange();
    let whole = run(&steps);
    for i in 0..steps.len() {
        for k in 0..=steps[i].1.len() {
            let split = run_pieces(&steps, |j, d| {
                if j == i {
                    vec![d[..k].to_vec(), d[k..].to_vec()]
                } else {
                    vec![d.to_vec()]
                }
            });
            assert_eq!(whole.events, split.events, "step {i} split at {k}");
            assert_eq!(whole.stats, split.stats, "step {i} split at {k}");
        }
    }
}

#[test]
fn midstream_byte_by_byte_equals_whole() {
    let steps = vec![
        (
            UP,
            cat(&[
                &ext("select 1"),
                &ext("select 1/0"),
                &ext("select 3"),
                &sync(),
            ]),
        ),
        (
            DOWN,
            cat(&[&ext_reply("SELECT 1"), &error("22012"), &ready(b'I')]),
        ),
    ];
    let whole = run(&steps);
    assert_eq!(whole.ops().len(), 3);
    let bytes = run_pieces(&steps, |_, d| d.iter().map(|&b| vec![b]).collect());
    assert_eq!(whole.events, bytes.events);
}

#[test]
fn header_split_across_feeds_starts_at_its_first_byte() {
    let q = query("select 1");
    let mut s = PgSession::new(QueryTextOptions::default());
    let mut out = Vec::new();
    s.feed(UP, &q[..3], 0, 5, 1, &mut out);
    s.feed(UP, &q[3..], 0, 6, 2, &mut out);
    s.feed(DOWN, &complete("SELECT 1"), 0, 7, 3, &mut out);
    let r = ready(b'I');
    s.feed(DOWN, &r[..4], 0, 8, 3, &mut out);
    s.feed(DOWN, &r[4..], 0, 9, 3, &mut out);
    let ops = done_ops(&out);
    assert_eq!((ops[0].start_ts, ops[0].end_ts, ops[0].tid), (5, 9, 1));
}

#[test]
fn gap_inside_a_data_row_is_skipped_by_length() {
    let row = data_row(&vec![b'x'; 10_000]);
    let mut s = PgSession::new(QueryTextOptions::default());
    let mut out = Vec::new();
    s.feed(UP, &query("select big"), 0, 1, 1, &mut out);
    // A 4095-byte capture of a bigger read: the rest is a gap.
    let reply = cat(&[&row_desc(), &row, &complete("SELECT 1"), &ready(b'I')]);
    let head = row_desc().len() + 4000;
    s.feed(
        DOWN,
        &reply[..head],
        (row.len() - 4000) as u64,
        2,
        1,
        &mut out,
    );
    s.feed(
        DOWN,
        &reply[row_desc().len() + row.len()..],
        0,
        3,
        1,
        &mut out,
    );
    let ops = done_ops(&out);
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].end_ts, 3);
    assert_eq!(s.lost_sync(), 0);
}

#[test]
fn gap_inside_a_query_keeps_its_beginning() {
    let sql = format!("insert into t values ('{}')", "y".repeat(10_000));
    let q = query(&sql);
    let mut s = PgSession::new(QueryTextOptions::default());
    let mut out = Vec::new();
    s.feed(UP, &q[..4095], (q.len() - 4095) as u64, 1, 1, &mut out);
    s.feed(
        DOWN,
        &cat(&[&complete("INSERT 0 1"), &ready(b'I')]),
        0,
        2,
        1,
        &mut out,
    );
    let ops = done_ops(&out);
    assert_eq!(ops.len(), 1);
    expect_sql(&ops[0], &sql[..4095 - 5]);
}

#[test]
fn gap_across_replies_resyncs_at_the_next_reply() {
    // A big result read by a 4095-byte capture: the end of the reply (and its Z) is
    // lost; the next request's reply starts a feed.
    let mut s = PgSession::new(QueryTextOptions::default());
    let mut out = Vec::new();
    s.feed(UP, &query("select * from big"), 0, 1, 1, &mut out);
    let mut reply = row_desc();
    for i in 0..500 {
        reply.extend(data_row(format!("row {i}").as_bytes()));
    }
    reply.extend(cat(&[&complete("SELECT 500"), &ready(b'I')]));
    s.feed(
        DOWN,
        &reply[..4095],
        (reply.len() - 4095) as u64,
        2,
        1,
        &mut out,
    );
    assert_eq!(s.lost_sync(), 1);
    s.feed(UP, &query("select 2"), 0, 3, 1, &mut out);
    s.feed(
        DOWN,
        &cat(&[&complete("SELECT 1"), &ready(b'I')]),
        0,
        4,
        1,
        &mut out,
    );
    let ops = done_ops(&out);
    assert_eq!(ops.len(), 2);
    assert_eq!((ops[0].end_ts, ops[0].error), (2, false));
    expect_sql(&ops[1], "select 2");
    assert_eq!((ops[1].start_ts, ops[1].end_ts), (3, 4));
    assert_eq!(s.stats().malformed, 0);
}

#[test]
fn gap_across_replies_resyncs_at_ready_for_query() {
    let mut s = PgSession::new(QueryTextOptions::default());
    let mut out = Vec::new();
    s.feed(UP, &query("select * from big"), 0, 1, 1, &mut out);
    let rows: Vec<u8> = (0..300)
        .flat_map(|i| data_row(format!("r{i}").as_bytes()))
        .collect();
    let reply = cat(&[&row_desc(), &rows, &complete("SELECT 300"), &ready(b'I')]);
    // Three reads: the first cut short (gap), the middle missing, the last holds Z.
    s.feed(DOWN, &reply[..100], 1000, 2, 1, &mut out);
    s.feed(DOWN, &reply[1100..reply.len() - 30], 0, 3, 1, &mut out);
    assert!(done_ops(&out).is_empty());
    s.feed(DOWN, &reply[reply.len() - 30..], 0, 4, 1, &mut out);
    let ops = done_ops(&out);
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].end_ts, 4);
    s.feed(UP, &query("select 2"), 0, 5, 1, &mut out);
    s.feed(
        DOWN,
        &cat(&[&complete("SELECT 1"), &ready(b'I')]),
        0,
        6,
        1,
        &mut out,
    );
    assert_eq!(done_ops(&out).len(), 2);
}

#[test]
fn gap_across_requests_drops_them_and_keeps_pairing() {
    let mut s = PgSession::new(QueryTextOptions::default());
    let mut out = Vec::new();
    // A big Bind: the capture holds its beginning, the Execute and Sync are lost.
    let big = cat(&[
        &parse("", "insert into t values ($1)"),
        &msg(
            b'B',
            &cat(&[
                b"\0\0",
                &[0, 0, 0, 1],
                &[0, 0, 0x20, 0],
                &[b'v'; 8192],
                &[0, 0],
            ]),
        ),
        &execute("", 0),
        &sync(),
    ]);
    s.feed(UP, &big[..4095], (big.len() - 4095) as u64, 1, 1, &mut out);
    assert_eq!(s.lost_sync(), 1);
    s.feed(
        DOWN,
        &cat(&[
            &parse_complete(),
            &bind_complete(),
            &complete("INSERT 0 1"),
            &ready(b'I'),
        ]),
        0,
        2,
        1,
        &mut out,
    );
    s.feed(UP, &cat(&[&ext("select 2"), &sync()]), 0, 3, 1, &mut out);
    s.feed(
        DOWN,
        &cat(&[&ext_reply("SELECT 1"), &ready(b'I')]),
        0,
        4,
        1,
        &mut out,
    );
    let ops = done_ops(&out);
    assert_eq!(ops.len(), 1);
    expect_sql(&ops[0], "select 2");
    assert_eq!((ops[0].start_ts, ops[0].end_ts), (3, 4));
}

#[test]
fn gap_in_a_request_stream_with_the_sync_in_the_next_write() {
    let mut s = PgSession::new(QueryTextOptions::default());
    let mut out = Vec::new();
    let big = cat(&[
        &parse("", &format!("select '{}'", "z".repeat(8000))),
        &bind("", ""),
        &execute("", 0),
    ]);
    s.feed(
        UP,
        &big[..4095],
        (big.len() - 4095) as u64 - 10,
        1,
        1,
        &mut out,
    );
    s.feed(UP, &sync(), 0, 2, 1, &mut out);
    s.feed(
        DOWN,
        &cat(&[
            &parse_complete(),
            &bind_complete(),
            &complete("SELECT 1"),
            &ready(b'I'),
        ]),
        0,
        3,
        1,
        &mut out,
    );
    s.feed(UP, &query("select 2"), 0, 4, 1, &mut out);
    s.feed(
        DOWN,
        &cat(&[&complete("SELECT 1"), &ready(b'I')]),
        0,
        5,
        1,
        &mut out,
    );
    let ops = done_ops(&out);
    assert_eq!(ops.len(), 1);
    assert_eq!((ops[0].start_ts, ops[0].end_ts), (4, 5));
}

#[test]
fn malformed_headers_lose_the_direction_without_panic() {
    let cases: &[(&str, Flow, Vec<u8>)] = &[
        ("length below 4", UP, vec![b'Q', 0, 0, 0, 3, b'x']),
        ("length above 1 GiB", DOWN, vec![b'D', 0x40, 0, 0, 1, 0]),
        ("unknown type toward server", UP, msg(b'Z', b"I")),
        ("unknown type toward client", DOWN, msg(b'Q', &z("x"))),
        ("fixed length not respected", DOWN, msg(b'Z', b"II")),
        ("sync with a body", UP, msg(b'S', &[1])),
    ];
    for (name, flow, bytes) in cases {
        let mut steps = handshake();
        steps.push((UP, query("select 1")));
        steps.push((*flow, bytes.clone()));
        let r = run_with(QueryTextOptions::default(), &steps, true);
        assert_eq!(r.stats.malformed, 1, "{name}");
        assert_eq!(r.lost, 1, "{name}");
        let ops = r.ops();
        assert_eq!(ops.len(), 1, "{name}");
        assert!(ops[0].aborted, "{name}: the query never got its reply");
    }
}

#[test]
fn malformed_startup_packets() {
    for bytes in [
        vec![0, 0, 0, 4],
        vec![0, 0, 0x30, 0, 0, 3, 0, 0],
        packet(0x0002_0000, b"user\0u\0\0"),
        packet(wire::SSL_REQUEST, b"xx"),
    ] {
        // After an SSLRequest refused, a startup packet must follow: malformed.
        let r = run(&[
            (UP, packet(wire::SSL_REQUEST, &[])),
            (DOWN, b"N".to_vec()),
            (UP, bytes.clone()),
        ]);
        assert_eq!((r.stats.malformed, r.lost), (1, 1), "{bytes:?}");
        assert!(r.events.is_empty());
        // As a connection's first bytes they are no startup: a connection seen
        // mid-stream, not at a boundary (skipped, not malformed).
        // (Fewer than 5 bytes are taken for the start of a typed message.)
        let r = run(&[(UP, bytes.clone())]);
        let lost = u64::from(bytes.len() >= 5);
        assert_eq!((r.stats.malformed, r.lost), (0, lost), "{bytes:?}");
    }
}

#[test]
fn truncated_header_at_close_aborts_the_pending_operation() {
    let mut steps = handshake();
    steps.push((UP, query("select pg_sleep(10)")));
    steps.push((DOWN, vec![b'T', 0, 0]));
    let r = run_with(QueryTextOptions::default(), &steps, true);
    let ops = r.ops();
    assert_eq!(ops.len(), 1);
    assert!(ops[0].aborted && !ops[0].error);
    assert_eq!(ops[0].end_ts, 10_000);
}

#[test]
fn close_aborts_every_pending_operation_in_order() {
    let mut steps = handshake();
    steps.push((
        UP,
        cat(&[&ext("select 1"), &ext("select 1/0"), &ext("select 3")]),
    ));
    steps.push((
        DOWN,
        cat(&[
            &ext_reply("SELECT 1"),
            &parse_complete(),
            &bind_complete(),
            &error("22012"),
        ]),
    ));
    let r = run_with(QueryTextOptions::default(), &steps, true);
    let ops = r.ops();
    assert_eq!(ops.len(), 3);
    assert!(!ops[0].aborted && !ops[1].aborted);
    assert!(ops[2].aborted && ops[2].error);
    assert_eq!(ops[2].error_type.as_deref(), Some(PIPELINE_ABORTED));
}

#[test]
fn huge_message_buffers_at_most_64k() {
    let sql = format!("select '{}'", "q".repeat(200_000));
    let q = query(&sql);
    let opts = QueryTextOptions {
        capture: true,
        sanitize: false,
        max_len: 1 << 20,
    };
    let mut s = PgSession::new(opts);
    let mut out = Vec::new();
    for (i, chunk) in q.chunks(4000).enumerate() {
        s.feed(UP, chunk, 0, i as u64, 1, &mut out);
    }
    assert!(s.dirs[0].buf_capacity() <= wire::MAX_KEEP * 2);
    s.feed(
        DOWN,
        &cat(&[&complete("SELECT 1"), &ready(b'I')]),
        0,
        99,
        1,
        &mut out,
    );
    let ops = done_ops(&out);
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].query_text.as_deref(), Some(&sql[..wire::MAX_KEEP]));
    // In one piece it is the same.
    let whole = run_with(
        opts,
        &[(UP, q), (DOWN, cat(&[&complete("SELECT 1"), &ready(b'I')]))],
        false,
    );
    assert_eq!(whole.ops()[0].query_text, ops[0].query_text);
}

#[test]
fn random_bytes_never_panic() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let seed = mixed_exchange();
    for round in 0..300 {
        let mut s = PgSession::new(QueryTextOptions::default());
        let mut out = Vec::new();
        for (i, (flow, data)) in seed.iter().enumerate() {
            let mut d = data.clone();
            // Flip a few bytes, sometimes drop some, sometimes pure noise.
            for _ in 0..(next() % 4) {
                if !d.is_empty() {
                    let k = (next() as usize) % d.len();
                    d[k] = next() as u8;
                }
            }
            if round % 7 == 0 {
                d = (0..(next() % 64)).map(|_| next() as u8).collect();
            }
            let gap = if next() % 5 == 0 { next() % 20 } else { 0 };
            s.feed(*flow, &d, gap, i as u64, 1, &mut out);
        }
        s.close(1000, &mut out);
        check_pairs(&out);
        let started = out
            .iter()
            .filter(|e| matches!(e, DbEvent::Started { .. }))
            .count();
        assert_eq!(
            started,
            done_ops(&out).len(),
            "round {round}: every op ends"
        );
    }
}

// ---------------------------------------------------------------------------
// Options, counters, limits
// ---------------------------------------------------------------------------

#[test]
fn query_text_options_apply_and_truncation_is_counted_per_operation() {
    let sql = "select * from customers where name = 'someone long enough'";
    let opts = QueryTextOptions {
        capture: true,
        sanitize: false,
        max_len: 20,
    };
    let r = run_with(
        opts,
        &with_handshake(vec![
            (
                UP,
                cat(&[&parse("s", sql), &bind("", "s"), &execute("", 0), &sync()]),
            ),
            (
                DOWN,
                cat(&[
                    &parse_complete(),
                    &bind_complete(),
                    &complete("SELECT 0"),
                    &ready(b'I'),
                ]),
            ),
            (UP, cat(&[&bind("", "s"), &execute("", 0), &sync()])),
            (
                DOWN,
                cat(&[&bind_complete(), &complete("SELECT 0"), &ready(b'I')]),
            ),
            (UP, query(sql)),
            (DOWN, cat(&[&complete("SELECT 0"), &ready(b'I')])),
        ]),
        false,
    );
    let ops = r.ops();
    assert_eq!(ops.len(), 3);
    for op in &ops {
        assert_eq!(op.query_text.as_deref(), Some(&sql[..20]));
        assert_eq!(op.summary, analyze(sql).summary);
    }
    assert_eq!(r.stats.query_truncated, 3);

    let off = QueryTextOptions {
        capture: false,
        ..QueryTextOptions::default()
    };
    let r = run_with(
        off,
        &[
            (UP, query(sql)),
            (DOWN, cat(&[&complete("SELECT 0"), &ready(b'I')])),
        ],
        false,
    );
    assert_eq!(r.ops()[0].query_text, None);
    assert_eq!(r.ops()[0].operation, analyze(sql).operation);
}

#[test]
fn statements_beyond_the_limit_forget_the_oldest() {
    let mut up = Vec::new();
    for i in 0..=MAX_STATEMENTS {
        up.extend(parse(&format!("s{i}"), &format!("select {i}")));
    }
    up.extend(sync());
    up.extend(cat(&[
        &bind("", "s0"),
        &execute("", 0),
        &bind("", "s1"),
        &execute("", 0),
        &sync(),
    ]));
    let mut down: Vec<u8> = (0..=MAX_STATEMENTS)
        .flat_map(|_| parse_complete())
        .collect();
    down.extend(ready(b'I'));
    down.extend(cat(&[
        &bind_complete(),
        &complete("SELECT 1"),
        &bind_complete(),
        &complete("SELECT 1"),
        &ready(b'I'),
    ]));
    let r = run(&[(UP, up), (DOWN, down)]);
    let ops = r.ops();
    assert_eq!(ops.len(), 2);
    assert_eq!(ops[0].query_text, None, "s0 was forgotten");
    expect_sql(&ops[1], "select 1");
    assert_eq!(r.stats.statement_unknown, 1);
}

#[test]
fn pending_requests_are_bounded() {
    let mut up = Vec::new();
    for _ in 0..(MAX_PENDING + 100) {
        up.extend(cat(&[&bind("", ""), &execute("", 0)]));
    }
    up.extend(sync());
    let mut down = Vec::new();
    for _ in 0..(MAX_PENDING + 100) {
        down.extend(cat(&[&bind_complete(), &complete("SELECT 1")]));
    }
    down.extend(ready(b'I'));
    let mut steps = vec![(UP, up), (DOWN, down)];
    steps.push((UP, cat(&[&ext("select 9"), &sync()])));
    steps.push((DOWN, cat(&[&ext_reply("SELECT 1"), &ready(b'I')])));
    let r = run(&steps);
    let ops = r.ops();
    assert!(ops.len() <= MAX_PENDING / 2 + 2);
    let last = ops.last().unwrap();
    expect_sql(last, "select 9");
    assert_eq!(last.start_ts, ts(2), "pairing survives the overflow");
}

// ---------------------------------------------------------------------------
// Detection
// ---------------------------------------------------------------------------

#[test]
fn sniff_first_bytes() {
    let st = startup(&[("user", "u")]);
    let cases: &[(&str, Flow, &[u8], Sniff)] = &[
        ("startup 3.0", UP, &st, Sniff::Yes),
        (
            "startup 3.2",
            UP,
            &packet(0x0003_0002, b"user\0u\0\0"),
            Sniff::Yes,
        ),
        ("ssl", UP, &packet(wire::SSL_REQUEST, &[]), Sniff::Yes),
        ("gssenc", UP, &packet(wire::GSSENC_REQUEST, &[]), Sniff::Yes),
        (
            "cancel",
            UP,
            &packet(wire::CANCEL_REQUEST, &[0, 0, 0, 1, 0, 0, 0, 2]),
            Sniff::Yes,
        ),
        ("partial", UP, &st[..5], Sniff::NeedMore),
        ("empty", UP, &[], Sniff::NeedMore),
        ("protocol 2", UP, &packet(0x0002_0000, b"u\0\0"), Sniff::No),
        (
            "ssl with a body",
            UP,
            &packet(wire::SSL_REQUEST, b"x"),
            Sniff::No,
        ),
        (
            "cancel too short",
            UP,
            &packet(wire::CANCEL_REQUEST, &[]),
            Sniff::No,
        ),
        ("too long", UP, &[0, 0, 0x30, 0, 0, 3, 0, 0], Sniff::No),
        ("http", UP, b"GET / HTTP/1.1\r\n", Sniff::No),
        ("tls", UP, &[0x16, 3, 1, 2, 0, 1], Sniff::No),
        ("redis", UP, b"*1\r\n$4\r\nPING\r\n", Sniff::No),
        ("server first", DOWN, &st, Sniff::No),
    ];
    for (name, flow, bytes, want) in cases {
        assert_eq!(sniff(*flow, bytes), *want, "{name}");
    }
}

#[test]
fn midstream_plausibility() {
    let cases: &[(&str, Flow, Vec<u8>, bool)] = &[
        ("query", UP, query("select 1"), true),
        ("pipeline", UP, cat(&[&ext("select 1"), &sync()]), true),
        ("partial query", UP, query("select 1")[..7].to_vec(), true),
        (
            "reply",
            DOWN,
            cat(&[
                &row_desc(),
                &data_row(b"1"),
                &complete("SELECT 1"),
                &ready(b'I'),
            ]),
            true,
        ),
        ("ready", DOWN, ready(b'T'), true),
        ("bad ready status", DOWN, ready(b'x'), false),
        ("too short", UP, vec![b'Q', 0, 0], false),
        ("query without nul", UP, msg(b'Q', b"select"), false),
        ("reply toward server", UP, ready(b'I'), false),
        ("http", UP, b"POST /x HTTP/1.1\r\n\r\n".to_vec(), false),
        (
            "http response",
            DOWN,
            b"HTTP/1.1 200 OK\r\n\r\n".to_vec(),
            false,
        ),
        ("startup", UP, startup(&[("user", "u")]), false),
        (
            "huge partial",
            UP,
            vec![b'Q', 0x20, 0x31, 0x32, 0x33, b's'],
            false,
        ),
        ("redis", UP, b"*1\r\n$4\r\nPING\r\n".to_vec(), false),
    ];
    for (name, flow, bytes, want) in cases {
        assert_eq!(plausible_midstream(*flow, bytes), *want, "{name}");
    }
}

// ---------------------------------------------------------------------------
// Golden captures: real PostgreSQL 15 and real clients through a recording proxy
// (test/golden/capture_tcp.py: records of u8 flow, u64 ts LE, u32 len LE, bytes).
// ---------------------------------------------------------------------------

fn golden(name: &str) -> Vec<(Flow, u64, Vec<u8>)> {
    crate::protocols::capture::golden(name)
        .into_iter()
        .map(|r| (r.flow, r.ts, r.data))
        .collect()
}

/// Replays a capture: whole records, then byte by byte, then with every record cut to
/// `cap` captured bytes (the rest a gap); returns the whole run's ops and stats.
fn replay(name: &str) -> (Vec<DbOp>, SessionStats, Option<String>) {
    let recs = golden(name);
    let mut s = PgSession::new(QueryTextOptions::default());
    let mut out = Vec::new();
    for (flow, ts, data) in &recs {
        s.feed(*flow, data, 0, *ts, 1, &mut out);
    }
    s.close(u64::MAX, &mut out);
    check_pairs(&out);
    assert_eq!(s.lost_sync(), 0, "{name}");
    assert_eq!(s.stats().malformed, 0, "{name}");

    let mut b = PgSession::new(QueryTextOptions::default());
    let mut bytes = Vec::new();
    for (flow, ts, data) in &recs {
        for byte in data.chunks(1) {
            b.feed(*flow, byte, 0, *ts, 1, &mut bytes);
        }
    }
    b.close(u64::MAX, &mut bytes);
    assert_eq!(out, bytes, "{name}: byte by byte");

    // Short captures: never panic, every Started ends.
    for cap in [7usize, 64, 300] {
        let mut c = PgSession::new(QueryTextOptions::default());
        let mut cut = Vec::new();
        for (flow, ts, data) in &recs {
            let n = data.len().min(cap);
            c.feed(*flow, &data[..n], (data.len() - n) as u64, *ts, 1, &mut cut);
        }
        c.close(u64::MAX, &mut cut);
        check_pairs(&cut);
    }
    let ns = s.namespace().map(str::to_string);
    (done_ops(&out), s.stats(), ns)
}

/// Ops in request order, each starting at a record toward the server and ending at one
/// toward the client, none aborted.
fn assert_timing(name: &str, ops: &[DbOp]) {
    let recs = golden(name);
    let has = |flow: Flow, ts: u64| recs.iter().any(|(f, t, _)| *f == flow && *t == ts);
    for w in ops.windows(2) {
        assert!(w[0].start_ts <= w[1].start_ts);
        assert!(w[0].seq < w[1].seq);
    }
    for op in ops {
        assert!(op.start_ts < op.end_ts, "{op:?}");
        assert!(has(UP, op.start_ts), "{op:?}");
        assert!(has(DOWN, op.end_ts), "{op:?}");
        assert!(!op.aborted, "{op:?}");
    }
}

/// (text, SQLSTATE or pipeline_aborted) of every op, in order.
fn assert_ops(ops: &[DbOp], want: &[(&str, Option<&str>)]) {
    assert_eq!(ops.len(), want.len(), "{ops:#?}");
    for (op, (sql, err)) in ops.iter().zip(want) {
        expect_sql(op, sql);
        assert_eq!(op.namespace.as_deref(), Some("shop"));
        assert_eq!(op.error, err.is_some(), "{op:?}");
        assert_eq!(op.error_type.as_deref(), *err, "{op:?}");
        let code = err.filter(|e| *e != PIPELINE_ABORTED);
        assert_eq!(op.status_code.as_deref(), code, "{op:?}");
    }
}

#[test]
fn golden_psql_simple_queries() {
    let name = "postgresql_psql.bin";
    let (ops, stats, ns) = replay(name);
    assert_eq!(ns.as_deref(), Some("shop"));
    assert_timing(name, &ops);
    assert_ops(
        &ops,
        &[
            ("select 1", None),
            ("select 1/0", Some("22012")),
            (
                "create table if not exists items (id int primary key, name text)",
                None,
            ),
            (
                "insert into items values (1, 'one') on conflict do nothing; select * from items",
                None,
            ),
        ],
    );
    // SSLRequest, 'N', StartupMessage, 2 SASL responses, 3 R + R ok, 13 S, K, Z, X.
    assert_eq!(stats.not_operations, 25);
    assert_eq!(stats.statement_unknown, 0);
}

#[test]
fn golden_psycopg_prepared_and_pipeline() {
    let name = "postgresql_psycopg.bin";
    let (ops, stats, ns) = replay(name);
    assert_eq!(ns.as_deref(), Some("shop"));
    assert_timing(name, &ops);
    let select = "SELECT id, name FROM items WHERE id = $1";
    let insert = "INSERT INTO items (id, name) VALUES ($1, $2)";
    let aborted = Some(PIPELINE_ABORTED);
    assert_ops(
        &ops,
        &[
            // prepare=True: Parse "_pg3_0" + Sync once, then Bind/Describe/Execute/Sync.
            (select, None),
            (select, None),
            (select, None),
            // The pipeline: one Sync for all; the division fails at its Bind (the
            // unnamed statement is planned with the value), the two after it are skipped.
            (insert, None),
            (insert, None),
            (insert, None),
            ("SELECT 1 / $1", Some("22012")),
            ("SELECT $1::int", aborted),
            ("SELECT $1::int", aborted),
        ],
    );
    // The prepared statement's first op starts at its Bind (record 10), not at the
    // preparation's Parse (record 8).
    let recs = golden(name);
    assert_eq!(recs[10].2[0], b'B');
    assert_eq!(ops[0].start_ts, recs[10].1);
    // Pipeline ops: the first three in the first write, the rest in the second; the
    // skipped ones end at the Sync's ReadyForQuery, after the failed one.
    assert!(ops[3].start_ts < ops[4].start_ts);
    assert_eq!(ops[4].start_ts, ops[8].start_ts);
    assert!(ops[7].end_ts > ops[6].end_ts);
    assert_eq!(ops[7].end_ts, ops[8].end_ts);
    assert_eq!(stats.statement_unknown, 0);
}

#[test]
fn golden_psycopg2() {
    let name = "postgresql_psycopg2.bin";
    let (ops, _, ns) = replay(name);
    assert_eq!(ns.as_deref(), Some("shop"));
    assert_timing(name, &ops);
    // psycopg2 interpolates parameters itself: simple queries only.
    assert_ops(
        &ops,
        &[
            ("BEGIN", None),
            ("SELECT name FROM items WHERE id = 1", None),
            ("SELECT * FROM missing_table", Some("42P01")),
            ("ROLLBACK", None),
            ("BEGIN", None),
            ("UPDATE items SET name = 'uno' WHERE id = 1", None),
            ("COMMIT", None),
        ],
    );
}

#[test]
fn startup_prefixes() {
    let st = startup(&[("user", "u")]);
    let ssl = packet(wire::SSL_REQUEST, &[]);
    for n in 1..=st.len() {
        assert!(wire::startup_prefix(&st[..n], false), "startup prefix {n}");
        assert!(wire::startup_prefix(&st[..n], true), "startup prefix {n}");
    }
    for n in 1..=ssl.len() {
        assert!(wire::startup_prefix(&ssl[..n], true), "ssl prefix {n}");
    }
    assert!(
        !wire::startup_prefix(&ssl, false),
        "only a StartupMessage after SSL"
    );
    assert!(!wire::startup_prefix(&ssl[..5], false));
    assert!(!wire::startup_prefix(&[], true));
    assert!(!wire::startup_prefix(&[0x16, 3, 1, 0, 5], true));
    assert!(!wire::startup_prefix(&[0, 0, 0, 4, 0, 3], true));
    assert!(!wire::startup_prefix(&[0, 0, 0, 9, 0, 2], true));
}

#[test]
fn command_tags_name_operations() {
    for (tag, op) in [
        ("SELECT 3", Some("SELECT")),
        ("INSERT 0 1", Some("INSERT")),
        ("UPDATE 12", Some("UPDATE")),
        ("CREATE TABLE", Some("CREATE TABLE")),
        ("COPY 5", Some("COPY")),
        ("BEGIN", Some("BEGIN")),
        ("", None),
        ("select 1", None),
        ("A B C D E", None),
    ] {
        let mut body = tag.as_bytes().to_vec();
        body.push(0);
        assert_eq!(super::command_tag_op(&body).as_deref(), op, "{tag:?}");
    }
}
