use super::*;

const C: Flow = Flow::ToServer;
const S: Flow = Flow::ToClient;

/// One syscall's worth of bytes.
#[derive(Debug, Clone)]
struct Feed {
    flow: Flow,
    data: Vec<u8>,
    gap: u64,
    ts: u64,
    tid: u32,
}

/// Feeds at ts 10, 20, 30... (tid 1000 + index).
fn conv(parts: &[(Flow, &[u8])]) -> Vec<Feed> {
    parts
        .iter()
        .enumerate()
        .map(|(i, (flow, data))| Feed {
            flow: *flow,
            data: data.to_vec(),
            gap: 0,
            ts: 10 * (i as u64 + 1),
            tid: 1000 + i as u32,
        })
        .collect()
}

fn run_opts(opts: QueryTextOptions, feeds: &[Feed], close: bool) -> (Vec<DbEvent>, RedisSession) {
    let mut s = RedisSession::new(opts);
    let mut out = Vec::new();
    for f in feeds {
        s.feed(f.flow, &f.data, f.gap, f.ts, f.tid, &mut out);
    }
    if close {
        s.close(1_000_000, &mut out);
    }
    (out, s)
}

fn run(feeds: &[Feed]) -> (Vec<DbEvent>, RedisSession) {
    run_opts(QueryTextOptions::default(), feeds, true)
}

fn ops(ev: &[DbEvent]) -> Vec<DbOp> {
    ev.iter()
        .filter_map(|e| match e {
            DbEvent::Done(op) => Some(op.clone()),
            DbEvent::StartedWith(_) => unreachable!("databases report Started"),
            DbEvent::Started { .. } => None,
        })
        .collect()
}

/// `text [ns] !ERRTYPE (aborted)`.
fn brief(op: &DbOp) -> String {
    let mut s = op.query_text.clone().unwrap_or_else(|| "-".into());
    if let Some(ns) = &op.namespace {
        s += &format!(" [{ns}]");
    }
    if op.error {
        s += &format!(" !{}", op.error_type.as_deref().unwrap_or(""));
    }
    if op.aborted {
        s += " (aborted)";
    }
    s
}

fn briefs(parts: &[(Flow, &[u8])]) -> Vec<String> {
    ops(&run(&conv(parts)).0).iter().map(brief).collect()
}

fn cmd(args: &[&str]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        v.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    v
}

/// Splitting any feed anywhere (pieces with the feed's ts), or feeding every feed byte
/// by byte, gives the same events.
fn check_splits(feeds: &[Feed]) {
    let (whole, s) = run(feeds);
    for (i, f) in feeds.iter().enumerate() {
        for k in 1..f.data.len() {
            let mut split = feeds[..i].to_vec();
            let mut a = f.clone();
            let mut b = f.clone();
            a.data.truncate(k);
            a.gap = 0;
            b.data.drain(..k);
            split.push(a);
            split.push(b);
            split.extend_from_slice(&feeds[i + 1..]);
            let (ev, s2) = run(&split);
            assert_eq!(ev, whole, "feed {i} split at {k}");
            assert_eq!(s2.stats(), s.stats(), "feed {i} split at {k}");
        }
    }
    let mut bytes = Vec::new();
    for f in feeds {
        for (j, b) in f.data.iter().enumerate() {
            let mut one = f.clone();
            one.data = vec![*b];
            one.gap = if j + 1 == f.data.len() { f.gap } else { 0 };
            bytes.push(one);
        }
        if f.data.is_empty() {
            bytes.push(f.clone());
        }
    }
    let (ev, s2) = run(&bytes);
    assert_eq!(ev, whole, "byte by byte");
    assert_eq!(s2.stats(), s.stats(), "byte by byte");
}

// ---------------------------------------------------------------------------------------
// Detection

#[test]
fn sniff_table() {
    use Sniff::*;
    let cases: &[(Flow, &[u8], Sniff)] = &[
        (C, b"*1\r\n$4\r\nPING\r\n", Yes),
        (C, b"*2\r\n$7\r\nhgetall\r\n$1\r\nh\r\n", Yes),
        (C, b"*3\r\n$3\r\nSet\r\n$1\r\nk\r\n$1\r\nv\r\n", Yes),
        (C, b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n", Yes),
        (C, b"*2\r\n$6\r\nCLIENT\r\n", Yes),
        (C, b"*", NeedMore),
        (C, b"*2", NeedMore),
        (C, b"*2\r", NeedMore),
        (C, b"*2\r\n", NeedMore),
        (C, b"*2\r\n$", NeedMore),
        (C, b"*2\r\n$3\r\nGE", NeedMore),
        (C, b"*2\r\n$3\r\nGET", NeedMore),
        (C, b"*2\r\n$3\r\nGET\r", NeedMore),
        (C, b"*2\r\n$3\r\nXY", NeedMore),
        (C, b"*2\r\n$3\r\nX Y", No),
        (C, b"*2\r\n$8\r\nJSON.GET\r\n", Yes),
        (C, b"*2\r\n$8\r\nJSON-GET\r\n", No),
        (C, b"*2\r\n$4\r\nNOPE\r\n", No),
        (C, b"*2\r\n$3\r\nGETX\r\n", No),
        (C, b"*0\r\n", No),
        (C, b"*-1\r\n", No),
        (C, b"*x\r\n", No),
        (C, b"*2\r\n+GET\r\n", No),
        (C, b"*2\r\n$99\r\n", No),
        (C, b"*2\n$3\r\nGET\r\n", No),
        (C, b"PING\r\n", Yes),
        (C, b"ping\n", Yes),
        (C, b"SET k v\r\n", Yes),
        (C, b"PI", NeedMore),
        (C, b"PING", NeedMore),
        (C, b"GET k", NeedMore),
        (C, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", No),
        (C, b"POST / HTTP/1.1\r\n", No),
        (C, b"HTTP", No),
        (C, b"\x16\x03\x01\x02\x00", No),
        (C, b"", NeedMore),
        (S, b"+OK\r\n", No),
        (S, b"*1\r\n$4\r\nPING\r\n", No),
    ];
    for (flow, data, want) in cases {
        assert_eq!(
            sniff(*flow, data),
            *want,
            "{flow:?} {:?}",
            String::from_utf8_lossy(data)
        );
    }
}

#[test]
fn plausible_midstream_table() {
    let cases: &[(Flow, &[u8], bool)] = &[
        (C, b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", true),
        (C, b"PING\r\n", true),
        (C, b"lue\r\n*2\r\n$3\r\nGET\r\n", false),
        (S, b"+OK\r\n", true),
        (S, b"$5\r\nhel", true),
        (S, b"*2\r\n$1\r\na\r\n:1\r\n-ERR x\r\n", true),
        (S, b">3\r\n$7\r\nmessage\r\n", true),
        (S, b"%1\r\n+a\r\n#t\r\n", true),
        (S, b"+OK", false),
        (S, b"HTTP/1.1 200 OK\r\n", false),
        (S, b"vvvvvv\r\n+OK\r\n", false),
        (S, b":12a\r\n", false),
        (S, b"", false),
    ];
    for (flow, data, want) in cases {
        assert_eq!(
            plausible_midstream(*flow, data),
            *want,
            "{flow:?} {:?}",
            String::from_utf8_lossy(data)
        );
    }
}

// ---------------------------------------------------------------------------------------
// Operations

#[test]
fn one_command_fields() {
    let feeds = conv(&[
        (C, &cmd(&["set", "user:1", "alice"])),
        (S, b"+OK\r\n"),
        (C, &cmd(&["HGETALL", "h"])),
        (S, b"*2\r\n$1\r\na\r\n$1\r\nb\r\n"),
    ]);
    let (ev, s) = run(&feeds);
    assert_eq!(
        ev[0],
        DbEvent::Started {
            seq: 1,
            ts: 10,
            tid: 1000
        }
    );
    let o = ops(&ev);
    assert_eq!(o.len(), 2);
    assert_eq!(
        o[0],
        DbOp {
            seq: 1,
            system: Some(DbSystem::Redis),
            namespace: None,
            operation: Some("SET".into()),
            collection: None,
            summary: Some("SET".into()),
            query_text: Some("SET user:1 ?".into()),
            batch_size: None,
            status_code: None,
            error_type: None,
            error: false,
            start_ts: 10,
            end_ts: 20,
            tid: 1000,
            aborted: false,
        }
    );
    assert_eq!(o[1].operation.as_deref(), Some("HGETALL"));
    assert_eq!(
        (o[1].seq, o[1].start_ts, o[1].end_ts, o[1].tid),
        (2, 30, 40, 1002)
    );
    assert_eq!(s.stats(), SessionStats::default());
}

#[test]
fn query_text_sanitized_and_not() {
    let conv_of = |args: &[&str]| conv(&[(C, &cmd(args)), (S, b"+OK\r\n")]);
    let raw = QueryTextOptions {
        sanitize: false,
        ..QueryTextOptions::default()
    };
    let cases: &[(&[&str], &str, &str, &str)] = &[
        // args, sanitized, raw, operation
        (
            &["SET", "user:1", "alice"],
            "SET user:1 ?",
            "SET user:1 alice",
            "SET",
        ),
        (
            &["hset", "h", "a", "1", "b", "2"],
            "HSET h ? ? ? ?",
            "HSET h a 1 b 2",
            "HSET",
        ),
        (&["MGET", "k1", "k2"], "MGET k1 ?", "MGET k1 k2", "MGET"),
        (&["DBSIZE"], "DBSIZE", "DBSIZE", "DBSIZE"),
        (
            &["client", "setname", "app"],
            "CLIENT SETNAME app",
            "CLIENT SETNAME app",
            "CLIENT SETNAME",
        ),
        (
            &["CONFIG", "GET", "maxmemory"],
            "CONFIG GET maxmemory",
            "CONFIG GET maxmemory",
            "CONFIG GET",
        ),
        (
            &["XINFO", "STREAM", "s", "FULL"],
            "XINFO STREAM s ?",
            "XINFO STREAM s FULL",
            "XINFO STREAM",
        ),
        (
            &["OBJECT", "ENCODING", "k"],
            "OBJECT ENCODING k",
            "OBJECT ENCODING k",
            "OBJECT ENCODING",
        ),
        (&["CLIENT"], "CLIENT", "CLIENT", "CLIENT"),
        (
            &["CONFIG", "SET", "requirepass", "s3cret"],
            "CONFIG SET requirepass ?",
            "CONFIG SET requirepass ?",
            "CONFIG SET",
        ),
        (
            &["ACL", "SETUSER", "bob", ">pw", "on"],
            "ACL SETUSER bob ? ?",
            "ACL SETUSER bob ? ?",
            "ACL SETUSER",
        ),
        (
            &["MIGRATE", "h", "6379", "k", "0", "10", "AUTH", "pw"],
            "MIGRATE h ? ? ? ? ? ?",
            "MIGRATE h ? ? ? ? ? ?",
            "MIGRATE",
        ),
        (
            &["SET", "a b", "x\"y"],
            "SET \"a b\" ?",
            "SET \"a b\" \"x\\\"y\"",
            "SET",
        ),
        (
            &["SET", "", "\u{e9}t\u{e9}\n"],
            "SET \"\" ?",
            "SET \"\" \"\u{e9}t\u{e9}\\n\"",
            "SET",
        ),
        (
            &["json.get", "doc", "$.a"],
            "JSON.GET doc ?",
            "JSON.GET doc $.a",
            "JSON.GET",
        ),
        (
            &["EVAL", "return 1", "0"],
            "EVAL \"return 1\" ?",
            "EVAL \"return 1\" 0",
            "EVAL",
        ),
    ];
    for (args, san, unsan, op) in cases {
        let o = ops(&run(&conv_of(args)).0);
        assert_eq!(o[0].query_text.as_deref(), Some(*san), "{args:?}");
        assert_eq!(o[0].operation.as_deref(), Some(*op), "{args:?}");
        assert_eq!(o[0].summary.as_deref(), Some(*op), "{args:?}");
        let o = ops(&run_opts(raw, &conv_of(args), true).0);
        assert_eq!(o[0].query_text.as_deref(), Some(*unsan), "{args:?}");
    }
    // Binary bytes are escaped.
    let mut c = b"*2\r\n$4\r\nECHO\r\n$3\r\n".to_vec();
    c.extend_from_slice(b"\x00\xff\x7f\r\n");
    let o = ops(&run_opts(raw, &conv(&[(C, &c), (S, b"$3\r\nabc\r\n")]), true).0);
    assert_eq!(o[0].query_text.as_deref(), Some("ECHO \"\\x00\\xff\\x7f\""));
    // A name that is no command token: no operation name.
    let o = ops(&run(&conv(&[
        (C, &cmd(&["GET", "a"])),
        (S, b"$-1\r\n"),
        (C, &cmd(&["GET X", "k"])),
        (S, b"-ERR unknown\r\n"),
    ]))
    .0);
    assert_eq!(o[1].operation, None);
    assert_eq!(o[1].query_text.as_deref(), Some("\"GET X\" k"));
    // Unknown commands are operations too (after the first, which must be known).
    let b = briefs(&[
        (C, &cmd(&["GET", "a"])),
        (S, b"$-1\r\n"),
        (C, &cmd(&["MYCMD", "k"])),
        (S, b":1\r\n"),
    ]);
    assert_eq!(b, ["GET a", "MYCMD k"]);
    let b = briefs(&[
        (C, &cmd(&["MYCMD", "k"])),
        (S, b":1\r\n"),
        (C, &cmd(&["GET", "a"])),
        (S, b"$-1\r\n"),
    ]);
    assert_eq!(b, ["GET a"]);
}

#[test]
fn auth_and_hello_are_no_operations_and_never_shown() {
    let raw = QueryTextOptions {
        sanitize: false,
        ..QueryTextOptions::default()
    };
    let hello = b"%1\r\n$6\r\nserver\r\n$5\r\nredis\r\n".as_slice();
    let feeds = conv(&[
        (C, &cmd(&["HELLO", "3", "AUTH", "default", "pw"])),
        (S, hello),
        (C, &cmd(&["AUTH", "pw"])),
        (S, b"+OK\r\n"),
        (C, &cmd(&["CLIENT", "SETINFO", "LIB-NAME", "x"])),
        (S, b"+OK\r\n"),
        (C, b"PING\r\n"),
        (S, b"+PONG\r\n"),
        (C, &cmd(&["GET", "k"])),
        (S, b"$-1\r\n"),
    ]);
    let (ev, s) = run_opts(raw, &feeds, true);
    let o = ops(&ev);
    assert_eq!(o.iter().map(brief).collect::<Vec<_>>(), ["GET k"]);
    assert_eq!(ev.len(), 2);
    assert_eq!(s.stats().not_operations, 4);
    // The redaction itself (were they spans).
    let mut p = request::RequestParser::new(raw);
    let mut out = Vec::new();
    p.feed(&cmd(&["AUTH", "user", "pw"]), 1, 1, &mut out)
        .unwrap();
    p.feed(b"HELLO 3 AUTH default secret\r\n", 1, 1, &mut out)
        .unwrap();
    let texts: Vec<_> = out
        .iter()
        .filter_map(|e| match e {
            request::ReqEvent::Done(c, _) => Some(c.text.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(texts, ["AUTH ? ?", "HELLO ? ? ? ?"]);
}

#[test]
fn truncation_is_counted() {
    let long = "x".repeat(100);
    let raw = QueryTextOptions {
        sanitize: false,
        max_len: 40,
        capture: true,
    };
    // An argument is shown up to 64 bytes.
    let feeds = conv(&[(C, &cmd(&["SET", &long, "v"])), (S, b"+OK\r\n")]);
    let (ev, s) = run(&feeds);
    assert_eq!(
        ops(&ev)[0].query_text.as_deref(),
        Some(format!("SET {} ?", "x".repeat(64)).as_str())
    );
    assert_eq!(s.stats().query_truncated, 1);
    // The whole is cut to max_len.
    let feeds = conv(&[
        (
            C,
            &cmd(&["MSET", "k1", "value-1", "k2", "value-2", "k3", "value-3"]),
        ),
        (S, b"+OK\r\n"),
    ]);
    let (ev, s) = run_opts(raw, &feeds, true);
    assert_eq!(
        ops(&ev)[0].query_text.as_deref(),
        Some("MSET k1 value-1 k2 value-2 k3 value-3")
    );
    assert_eq!(s.stats().query_truncated, 0);
    let feeds = conv(&[
        (
            C,
            &cmd(&[
                "MSET", "k1", "value-1", "k2", "value-2", "k3", "value-3", "k4", "v",
            ]),
        ),
        (S, b"+OK\r\n"),
    ]);
    let (ev, s) = run_opts(raw, &feeds, true);
    let t = ops(&ev)[0].query_text.clone().unwrap();
    assert_eq!(t, "MSET k1 value-1 k2 value-2 k3 value-3 k4");
    assert!(t.len() <= 40);
    assert_eq!(s.stats().query_truncated, 1);
    // Cut at a character boundary.
    let feeds = conv(&[
        (C, &cmd(&["SET", "k", &"\u{e9}".repeat(40)])),
        (S, b"+OK\r\n"),
    ]);
    let (ev, _) = run_opts(raw, &feeds, true);
    let t = ops(&ev)[0].query_text.clone().unwrap();
    assert!(
        t.len() <= 40 && t.starts_with("SET k \"\u{e9}\u{e9}"),
        "{t}"
    );
    // Not captured.
    let off = QueryTextOptions {
        capture: false,
        ..QueryTextOptions::default()
    };
    let feeds = conv(&[(C, &cmd(&["SET", &long, "v"])), (S, b"+OK\r\n")]);
    let (ev, s) = run_opts(off, &feeds, true);
    assert_eq!(ops(&ev)[0].query_text, None);
    assert_eq!(ops(&ev)[0].operation.as_deref(), Some("SET"));
    assert_eq!(s.stats().query_truncated, 0);
}

#[test]
fn every_reply_type() {
    let replies: &[(&[u8], Option<&str>)] = &[
        (b"+OK\r\n", None),
        (b"-ERR unknown command 'FOO'\r\n", Some("ERR")),
        (b"-WRONGTYPE Operation against a key\r\n", Some("WRONGTYPE")),
        (b"-NOSCRIPT No matching script\r\n", Some("NOSCRIPT")),
        (b"-MOVED 3999 127.0.0.1:6381\r\n", Some("MOVED")),
        (b"-\r\n", Some("_OTHER")),
        (b":0\r\n", None),
        (b":-42\r\n", None),
        (b"$0\r\n\r\n", None),
        (b"$5\r\nhello\r\n", None),
        (b"$5\r\nhe\r\no\r\n", None),
        (b"$-1\r\n", None),
        (b"*-1\r\n", None),
        (b"*0\r\n", None),
        (b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n", None),
        (b"*3\r\n:1\r\n:2\r\n-ERR inner\r\n", None),
        (b"_\r\n", None),
        (b",1.5\r\n", None),
        (b",-inf\r\n", None),
        (b",nan\r\n", None),
        (b"#t\r\n", None),
        (b"#f\r\n", None),
        (b"!21\r\nSYNTAX invalid syntax\r\n", Some("SYNTAX")),
        (b"!3\r\nERR\r\n", Some("ERR")),
        (b"=15\r\ntxt:Some string\r\n", None),
        (b"(3492890328409238509324850943850943825024385\r\n", None),
        (b"(-1\r\n", None),
        (b"%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n", None),
        (b"%0\r\n", None),
        (b"~2\r\n+a\r\n+b\r\n", None),
        (b"~0\r\n", None),
        (b"|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n*2\r\n:2039123\r\n:9543892\r\n", None),
        (b"|0\r\n+OK\r\n", None),
        (b"*2\r\n|1\r\n+ttl\r\n:3600\r\n$1\r\nv\r\n:7\r\n", None),
        (b"*1\r\n%1\r\n~1\r\n*1\r\n%1\r\n$1\r\nk\r\n*2\r\n#t\r\n_\r\n:1\r\n", None),
        (b"|1\r\n+a\r\n+b\r\n-ERR after attribute\r\n", Some("ERR")),
    ];
    for (reply, err) in replies {
        let feeds = conv(&[
            (C, &cmd(&["GET", "k"])),
            (S, reply),
            (C, &cmd(&["GET", "j"])),
            (S, b"+after\r\n"),
        ]);
        let (ev, s) = run(&feeds);
        let o = ops(&ev);
        let what = String::from_utf8_lossy(reply);
        assert_eq!(o.len(), 2, "{what}");
        assert_eq!(o[0].error, err.is_some(), "{what}");
        assert_eq!(o[0].error_type.as_deref(), *err, "{what}");
        let code = err.filter(|e| *e != "_OTHER");
        assert_eq!(o[0].status_code.as_deref(), code, "{what}");
        assert_eq!((o[0].end_ts, o[1].end_ts), (20, 40), "{what}");
        assert!(!o[1].error && !o[0].aborted && !o[1].aborted, "{what}");
        assert_eq!(s.stats(), SessionStats::default(), "{what}");
        check_splits(&feeds);
    }
}

#[test]
fn pipeline_in_one_feed() {
    let mut req = Vec::new();
    let mut rep = Vec::new();
    for i in 0..200 {
        req.extend(cmd(&["SET", &format!("k:{i}"), &i.to_string()]));
        rep.extend_from_slice(b"+OK\r\n");
        req.extend(cmd(&["GET", &format!("k:{i}")]));
        rep.extend(format!("${}\r\n{i}\r\n", i.to_string().len()).as_bytes());
    }
    req.extend_from_slice(b"PING\r\n");
    rep.extend_from_slice(b"+PONG\r\n");
    let feeds = conv(&[(C, &req), (S, &rep)]);
    let (ev, s) = run(&feeds);
    let o = ops(&ev);
    assert_eq!(o.len(), 400);
    assert_eq!(ev.len(), 800);
    // All Started (in the request feed) come before any Done.
    assert!(ev[..400].iter().all(|e| matches!(
        e,
        DbEvent::Started {
            ts: 10,
            tid: 1000,
            ..
        }
    )));
    for (i, op) in o.iter().enumerate() {
        assert_eq!(op.seq, i as u64 + 1);
        assert_eq!((op.start_ts, op.end_ts, op.tid), (10, 20, 1000));
        let k = i / 2;
        let want = if i % 2 == 0 {
            format!("SET k:{k} ?")
        } else {
            format!("GET k:{k}")
        };
        assert_eq!(op.query_text.as_deref(), Some(want.as_str()));
    }
    assert_eq!(s.stats().not_operations, 1);
    // Replies one per feed: each ends at its own feed.
    let mut parts: Vec<(Flow, &[u8])> = vec![(C, &req)];
    let mut replies = Vec::new();
    let mut off = 0;
    let mut p = resp::ReplyParser::new();
    let mut vals = Vec::new();
    for (j, b) in rep.iter().enumerate() {
        p.feed(&[*b], 0, &mut vals).unwrap();
        if !vals.is_empty() {
            vals.clear();
            replies.push(rep[off..=j].to_vec());
            off = j + 1;
        }
    }
    assert_eq!(replies.len(), 401);
    for r in &replies {
        parts.push((S, r));
    }
    let o = ops(&run(&conv(&parts)).0);
    assert_eq!(o.len(), 400);
    for (i, op) in o.iter().enumerate() {
        assert_eq!(op.end_ts, 10 * (i as u64 + 2));
    }
}

#[test]
fn splits_anywhere_give_the_same_events() {
    let mut req = cmd(&["HELLO", "3"]);
    req.extend(cmd(&["SELECT", "4"]));
    req.extend(cmd(&["HGETALL", "h"]));
    req.extend_from_slice(b"SET \"a b\" 'c d'\r\n\r\n");
    req.extend(cmd(&["SUBSCRIBE", "ch"]));
    let feeds = conv(&[
        (C, &req),
        (
            S,
            b"%1\r\n$6\r\nserver\r\n$5\r\nredis\r\n+OK\r\n|1\r\n+ttl\r\n:5\r\n%1\r\n$1\r\na\r\n~1\r\n,1.5\r\n>2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n+OK\r\n",
        ),
        (S, b">3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n>3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n"),
        (C, &cmd(&["GET", "k"])),
        (S, b"!9\r\nERR nope!\r\n"),
    ]);
    let (ev, s) = run(&feeds);
    assert_eq!(
        ops(&ev).iter().map(brief).collect::<Vec<_>>(),
        [
            "SELECT 4",
            "HGETALL h [4]",
            "SET \"a b\" ? [4]",
            "SUBSCRIBE ch [4]",
            "GET k [4] !ERR"
        ]
    );
    // HELLO, the invalidation push, the message.
    assert_eq!(s.stats().not_operations, 3);
    check_splits(&feeds);
}

#[test]
fn pushes_between_replies_are_not_replies() {
    let feeds = conv(&[
        (C, &[cmd(&["GET", "a"]), cmd(&["GET", "b"])].concat()),
        (S, b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\na\r\n$1\r\n1\r\n>2\r\n$10\r\ninvalidate\r\n_\r\n"),
        (S, b">4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$1\r\nc\r\n$1\r\nm\r\n$1\r\n2\r\n"),
    ]);
    let (ev, s) = run(&feeds);
    let o = ops(&ev);
    assert_eq!(o.iter().map(brief).collect::<Vec<_>>(), ["GET a", "GET b"]);
    assert_eq!((o[0].end_ts, o[1].end_ts), (20, 30));
    assert_eq!(s.stats().not_operations, 3);
}

#[test]
fn pubsub_resp2() {
    let feeds = conv(&[
        (C, &cmd(&["SUBSCRIBE", "news", "sport"])),
        (S, b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n"),
        (S, b"*3\r\n$9\r\nsubscribe\r\n$5\r\nsport\r\n:2\r\n*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n"),
        (C, &cmd(&["PSUBSCRIBE", "log.*"])),
        (S, b"*3\r\n$7\r\nmessage\r\n$5\r\nsport\r\n$4\r\ngoal\r\n"),
        (S, b"*3\r\n$10\r\npsubscribe\r\n$5\r\nlog.*\r\n:3\r\n"),
        (S, b"*4\r\n$8\r\npmessage\r\n$5\r\nlog.*\r\n$5\r\nlog.a\r\n$1\r\nx\r\n"),
        (C, &cmd(&["PING"])),
        (S, b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"),
        (C, &cmd(&["UNSUBSCRIBE"])),
        (S, b"*3\r\n$11\r\nunsubscribe\r\n$5\r\nsport\r\n:2\r\n*3\r\n$11\r\nunsubscribe\r\n$4\r\nnews\r\n:1\r\n"),
        (C, &cmd(&["PUNSUBSCRIBE", "log.*"])),
        (S, b"*3\r\n$12\r\npunsubscribe\r\n$5\r\nlog.*\r\n:0\r\n"),
        // Out of pub/sub mode: an array starting with "message" is a reply again.
        (C, &cmd(&["LRANGE", "l", "0", "-1"])),
        (S, b"*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\nb\r\n"),
    ]);
    let (ev, s) = run(&feeds);
    let o = ops(&ev);
    assert_eq!(
        o.iter()
            .map(|o| (brief(o), o.start_ts, o.end_ts))
            .collect::<Vec<_>>(),
        [
            ("SUBSCRIBE news ?".to_string(), 10, 30),
            ("PSUBSCRIBE log.*".to_string(), 40, 60),
            // UNSUBSCRIBE (all) with a pattern left: over at the next non-confirmation.
            ("UNSUBSCRIBE".to_string(), 100, 110),
            ("PUNSUBSCRIBE log.*".to_string(), 120, 130),
            ("LRANGE l ? ?".to_string(), 140, 150),
        ]
    );
    // 3 messages, PING.
    assert_eq!(s.stats().not_operations, 4);
    assert_eq!(s.stats().malformed, 0);
    check_splits(&feeds);
}

#[test]
fn unsubscribe_all_ends_at_count_zero_or_close() {
    let b = briefs(&[
        (C, &cmd(&["SUBSCRIBE", "a"])),
        (S, b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n"),
        (C, &cmd(&["UNSUBSCRIBE"])),
        (S, b"*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:0\r\n"),
        (C, &cmd(&["UNSUBSCRIBE"])),
        // Nothing subscribed: one confirmation with a null channel.
        (S, b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n"),
        (C, &cmd(&["GET", "k"])),
        (S, b"$-1\r\n"),
    ]);
    assert_eq!(b, ["SUBSCRIBE a", "UNSUBSCRIBE", "UNSUBSCRIBE", "GET k"]);
    // Mixed subscriptions and the connection closes: ended at its last confirmation.
    let feeds = conv(&[
        (C, &cmd(&["SUBSCRIBE", "a"])),
        (S, b">3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n"),
        (C, &cmd(&["PSUBSCRIBE", "p*"])),
        (S, b">3\r\n$10\r\npsubscribe\r\n$2\r\np*\r\n:2\r\n"),
        (C, &cmd(&["UNSUBSCRIBE"])),
        (S, b">3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:1\r\n"),
    ]);
    let o = ops(&run(&feeds).0);
    assert_eq!(o.len(), 3);
    assert_eq!((o[2].end_ts, o[2].aborted), (60, false));
    // SUBSCRIBE with 2 channels and only one confirmed at close: aborted.
    let feeds = conv(&[
        (C, &cmd(&["SUBSCRIBE", "a", "b"])),
        (S, b">3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n"),
    ]);
    let o = ops(&run(&feeds).0);
    assert!(o[0].aborted);
}

#[test]
fn subscribe_errors_are_replies() {
    let b = briefs(&[
        (C, &cmd(&["SUBSCRIBE"])),
        (
            S,
            b"-ERR wrong number of arguments for 'subscribe' command\r\n",
        ),
        (C, &cmd(&["SSUBSCRIBE", "a"])),
        (
            S,
            b"-CROSSSLOT Keys in request don't hash to the same slot\r\n",
        ),
        (C, &cmd(&["GET", "k"])),
        (S, b"$1\r\nv\r\n"),
    ]);
    assert_eq!(b, ["SUBSCRIBE !ERR", "SSUBSCRIBE a !CROSSSLOT", "GET k"]);
}

#[test]
fn multi_exec() {
    let feeds = conv(&[
        (C, &[cmd(&["MULTI"]), cmd(&["SELECT", "3"]), cmd(&["INCR", "c"]), cmd(&["SUBSCRIBE", "x"]), cmd(&["EXEC"])].concat()),
        (S, b"+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n*3\r\n+OK\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\nx\r\n:1\r\n"),
        (C, &cmd(&["GET", "k"])),
        (S, b"-ERR Can't execute 'get'\r\n"),
    ]);
    let (ev, s) = run(&feeds);
    assert_eq!(
        ops(&ev).iter().map(brief).collect::<Vec<_>>(),
        [
            "MULTI",
            "SELECT 3",
            "INCR c",
            "SUBSCRIBE x",
            "EXEC",
            "GET k [3] !ERR"
        ]
    );
    assert_eq!(s.stats(), SessionStats::default());
    check_splits(&feeds);
    // An aborted transaction, DISCARD, a failed EXEC: the queued SELECT never applies.
    let b = briefs(&[
        (C, &[cmd(&["MULTI"]), cmd(&["SELECT", "3"]), cmd(&["NOPE"]), cmd(&["EXEC"])].concat()),
        (S, b"+OK\r\n+QUEUED\r\n-ERR unknown command 'NOPE'\r\n-EXECABORT Transaction discarded\r\n"),
        (C, &[cmd(&["MULTI"]), cmd(&["SELECT", "4"]), cmd(&["DISCARD"])].concat()),
        (S, b"+OK\r\n+QUEUED\r\n+OK\r\n"),
        (C, &[cmd(&["WATCH", "w"]), cmd(&["MULTI"]), cmd(&["SELECT", "5"]), cmd(&["EXEC"])].concat()),
        (S, b"+OK\r\n+OK\r\n+QUEUED\r\n*-1\r\n"),
        (C, &cmd(&["GET", "k"])),
        (S, b"$-1\r\n"),
    ]);
    assert_eq!(
        b,
        [
            "MULTI",
            "SELECT 3",
            "NOPE !ERR",
            "EXEC !EXECABORT",
            "MULTI",
            "SELECT 4",
            "DISCARD",
            "WATCH w",
            "MULTI",
            "SELECT 5",
            "EXEC",
            "GET k"
        ]
    );
}

#[test]
fn select_sets_the_namespace() {
    let b = briefs(&[
        (C, &cmd(&["GET", "a"])),
        (S, b"$-1\r\n"),
        (C, &[cmd(&["SELECT", "2"]), cmd(&["GET", "b"])].concat()),
        (S, b"+OK\r\n$-1\r\n"),
        (C, &cmd(&["SELECT", "99"])),
        (S, b"-ERR DB index is out of range\r\n"),
        (C, &cmd(&["SELECT", "007"])),
        (S, b"+OK\r\n"),
        (C, b"GET c\r\n"),
        (S, b"$-1\r\n"),
        (C, &cmd(&["RESET"])),
        (S, b"+RESET\r\n"),
        (C, &cmd(&["GET", "d"])),
        (S, b"$-1\r\n"),
        (C, &cmd(&["SELECT", "0"])),
        (S, b"+OK\r\n"),
        (C, &cmd(&["GET", "e"])),
        (S, b"$-1\r\n"),
    ]);
    assert_eq!(
        b,
        [
            "GET a",
            "SELECT 2",
            "GET b [2]",
            "SELECT 99 [2] !ERR",
            "SELECT 007 [2]",
            "GET c [7]",
            "RESET [7]",
            "GET d",
            "SELECT 0",
            "GET e [0]"
        ]
    );
}

#[test]
fn inline_commands() {
    let feeds = conv(&[
        (
            C,
            b"PING\r\nset  \"a\\x41b\"   'it\\'s'\r\n\r\n\nGET aAb\nECHO \"\\n\\t\"\r\n",
        ),
        (S, b"+PONG\r\n+OK\r\n$4\r\nit's\r\n$2\r\n\n\t\r\n"),
    ]);
    let raw = QueryTextOptions {
        sanitize: false,
        ..QueryTextOptions::default()
    };
    let (ev, s) = run_opts(raw, &feeds, true);
    assert_eq!(
        ops(&ev).iter().map(brief).collect::<Vec<_>>(),
        ["SET aAb \"it's\"", "GET aAb", "ECHO \"\\n\\t\""]
    );
    assert_eq!(s.stats().not_operations, 1);
    assert_eq!(s.stats().malformed, 0);
    check_splits(&feeds);
    assert_eq!(request::split_args(b"x\"y\"z"), None);
    assert_eq!(request::split_args(b"\"a\"b"), None);
    assert_eq!(request::split_args(b"'a"), None);
    assert_eq!(
        request::split_args(b" a \"b c\" 'd\\'e' \"\\x4g\\x41\" x\"y\" z\0 hidden").unwrap(),
        [
            b"a".to_vec(),
            b"b c".to_vec(),
            b"d'e".to_vec(),
            b"x4gA".to_vec(),
            b"xy".to_vec(),
            b"z".to_vec()
        ]
    );
}

#[test]
fn unbalanced_inline_quotes_are_malformed() {
    let feeds = conv(&[
        (C, &cmd(&["GET", "a"])),
        (S, b"$-1\r\n"),
        (C, b"SET \"unbalanced\r\n"),
        (S, b"-ERR Protocol error: unbalanced quotes in request\r\n"),
    ]);
    let (ev, s) = run(&feeds);
    assert_eq!(ops(&ev).iter().map(brief).collect::<Vec<_>>(), ["GET a"]);
    assert_eq!(s.stats().malformed, 1);
}

#[test]
fn client_reply_off_skip_on() {
    let feeds = conv(&[
        (
            C,
            &[
                cmd(&["CLIENT", "REPLY", "OFF"]),
                cmd(&["SET", "a", "1"]),
                cmd(&["CLIENT", "REPLY", "ON"]),
                cmd(&["GET", "a"]),
                cmd(&["CLIENT", "REPLY", "SKIP"]),
                cmd(&["GET", "a"]),
                cmd(&["GET", "b"]),
            ]
            .concat(),
        ),
        (S, b"+OK\r\n$1\r\n1\r\n$-1\r\n"),
    ]);
    let (ev, _) = run(&feeds);
    let o = ops(&ev);
    assert_eq!(
        o.iter().map(|o| (brief(o), o.end_ts)).collect::<Vec<_>>(),
        [
            ("CLIENT REPLY OFF".to_string(), 10),
            ("SET a ?".to_string(), 10),
            ("CLIENT REPLY SKIP".to_string(), 10),
            ("GET a".to_string(), 10),
            ("CLIENT REPLY ON".to_string(), 20),
            ("GET a".to_string(), 20),
            ("GET b".to_string(), 20),
        ]
    );
}

// ---------------------------------------------------------------------------------------
// Gaps, losses, bounds

#[test]
fn big_bulks_skipped_by_gap() {
    // SET big <100 000 bytes>: 4 KiB captured, the rest (payload and CRLF) a gap.
    let mut set = b"*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$100000\r\n".to_vec();
    let head = set.len();
    set.resize(4096, b'v');
    let gap = (100_000 - (4096 - head) + 2) as u64;
    let mut feeds = conv(&[
        (C, &set),
        (S, b"+OK\r\n"),
        (C, &cmd(&["GET", "big"])),
        (S, b"$100000\r\nvvvv"),
        (C, &cmd(&["GET", "small"])),
        (S, b"$1\r\nx\r\n"),
    ]);
    feeds[0].gap = gap;
    feeds[3].gap = 100_000 - 4 + 2;
    let raw = QueryTextOptions {
        sanitize: false,
        ..QueryTextOptions::default()
    };
    let (ev, s) = run_opts(raw, &feeds, true);
    let o = ops(&ev);
    assert_eq!(
        o.iter().map(|o| (brief(o), o.end_ts)).collect::<Vec<_>>(),
        [
            (format!("SET big {}", "v".repeat(64)), 20),
            ("GET big".to_string(), 40),
            ("GET small".to_string(), 60),
        ]
    );
    assert_eq!(s.stats().malformed, 0);
    assert_eq!(s.stats().query_truncated, 1);
    // The payload arrives over several feeds with gaps in between.
    let feeds2 = vec![
        Feed {
            flow: C,
            data: b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10\r\nab".to_vec(),
            gap: 3,
            ts: 1,
            tid: 1,
        },
        Feed {
            flow: C,
            data: b"fgh".to_vec(),
            gap: 2,
            ts: 2,
            tid: 1,
        },
        Feed {
            flow: C,
            data: b"\r".to_vec(),
            gap: 1,
            ts: 3,
            tid: 1,
        },
        Feed {
            flow: S,
            data: b"*2\r\n$3\r\nab".to_vec(),
            gap: 3,
            ts: 4,
            tid: 1,
        },
        Feed {
            flow: S,
            data: b"$1\r\nx\r\n".to_vec(),
            gap: 0,
            ts: 5,
            tid: 1,
        },
    ];
    let (ev, s) = run(&feeds2);
    let o = ops(&ev);
    assert_eq!(
        o.iter()
            .map(|o| (brief(o), o.start_ts, o.end_ts))
            .collect::<Vec<_>>(),
        [("SET k ?".to_string(), 1, 5)]
    );
    assert_eq!(s.stats().malformed, 0);
}

#[test]
fn gap_over_framing_loses_commands_until_a_plausible_start() {
    // A pipeline whose end was not captured: GET b (and more) are in the gap.
    let mut first = cmd(&["GET", "a"]);
    first.extend_from_slice(b"*2\r\n$3\r\nGE");
    let mut feeds = conv(&[
        (C, &first),
        (C, b"*2\r\n$3\r\nGET\r\n$1\r\nc\r\n"), // ts 20: no plausible start? it is: resync
        (S, b"$1\r\na\r\n$1\r\nb\r\n$-1\r\n"),  // ts 30: replies of a, b (lost), c
    ]);
    feeds[0].gap = 30;
    let (ev, s) = run(&feeds);
    let o = ops(&ev);
    // GET a keeps its place; so does the command in progress, classified before the gap
    // (its name cut: no operation name).
    assert_eq!(
        o.iter().map(brief).collect::<Vec<_>>(),
        ["GET a", "GE", "GET c"]
    );
    assert_eq!(o[1].operation, None);
    assert_eq!(s.stats().malformed, 0);

    // Replies read before the next known command was written are dropped.
    let mut feeds = conv(&[
        (C, &cmd(&["GET", "a"])),      // 10
        (C, b"*2\r\n$"),               // 20, lost in a gap (name unknown: no span)
        (S, b"$1\r\na\r\n"),           // 30: GET a
        (S, b"$1\r\nb\r\n"),           // 40: the lost command's
        (C, b"garbage after the gap"), // 50: still lost
        (C, &cmd(&["GET", "c"])),      // 60: resync
        (S, b"$1\r\nc\r\n"),           // 70: GET c
    ]);
    feeds[1].gap = 20;
    let (ev, s) = run(&feeds);
    let o = ops(&ev);
    assert_eq!(
        o.iter().map(|o| (brief(o), o.end_ts)).collect::<Vec<_>>(),
        [("GET a".to_string(), 30), ("GET c".to_string(), 70)]
    );
    assert_eq!(s.stats().malformed, 0);
}

#[test]
fn reply_gap_over_framing_aborts_waiting_ops() {
    let mut feeds = conv(&[
        (C, &[cmd(&["GET", "a"]), cmd(&["GET", "b"])].concat()),
        (S, b"$1\r\na\r\n"),
        (S, b"vvvv"), // no reply's start: dropped
        (C, &cmd(&["GET", "c"])),
        (S, b"$1\r\nc\r\n"),
    ]);
    feeds[1].gap = 10; // GET b's reply, and more, uncaptured
    let (ev, s) = run(&feeds);
    let o = ops(&ev);
    assert_eq!(
        o.iter().map(|o| (brief(o), o.end_ts)).collect::<Vec<_>>(),
        [
            ("GET a".to_string(), 20),
            ("GET b (aborted)".to_string(), 20),
            ("GET c".to_string(), 50)
        ]
    );
    assert_eq!(s.stats().malformed, 0);
    // A dropped reply feed may have held the replies of commands written before it.
    let mut feeds = conv(&[
        (C, &cmd(&["GET", "a"])),
        (S, b"$1\r\na\r\n"),
        (C, &[cmd(&["GET", "b"]), cmd(&["GET", "c"])].concat()),
        (S, b"vvvv$1\r\nc\r\n"),
        (S, b"$1\r\nd\r\n"),
        (C, &cmd(&["GET", "e"])),
        (S, b"$1\r\ne\r\n"),
    ]);
    feeds[1].gap = 5;
    let (ev, _) = run(&feeds);
    assert_eq!(
        ops(&ev)
            .iter()
            .map(|o| (brief(o), o.end_ts))
            .collect::<Vec<_>>(),
        [
            ("GET a".to_string(), 20),
            ("GET b (aborted)".to_string(), 40),
            ("GET c (aborted)".to_string(), 40),
            ("GET e".to_string(), 70)
        ]
    );
}

#[test]
fn garbage_replies_are_malformed() {
    let bad: &[&[u8]] = &[
        b"?what\r\n",
        b":12x\r\n",
        b"$-5\r\n",
        b"$abc\r\n",
        b"$5\r\nhello!!",
        b"*-2\r\n",
        b"*1x\r\n",
        b"+OK\rX",
        b"+OK\n",
        b"#x\r\n",
        b"_x\r\n",
        b",\r\n",
        b"(12a\r\n",
        b"$99999999999\r\n",
        b"*1048577\r\n",
        b"%1048577\r\n",
        b"$?\r\n",
        b"*?\r\n",
        b"!-1\r\n",
        b":99999999999999999999\r\n",
    ];
    for reply in bad {
        let feeds = conv(&[
            (C, &cmd(&["GET", "x"])),
            (S, b"+OK\r\n"),
            (C, &[cmd(&["GET", "a"]), cmd(&["GET", "b"])].concat()),
            (S, reply),
            (C, &cmd(&["GET", "c"])),
            (S, b"$1\r\nc\r\n"),
        ]);
        let (ev, s) = run(&feeds);
        let what = String::from_utf8_lossy(reply);
        assert_eq!(
            ops(&ev).iter().map(brief).collect::<Vec<_>>(),
            ["GET x", "GET a (aborted)", "GET b (aborted)", "GET c"],
            "{what}"
        );
        assert_eq!(s.stats().malformed, 1, "{what}");
    }
}

#[test]
fn depth_and_size_bounds() {
    let mut bomb = b"*1\r\n".repeat(64);
    bomb.extend_from_slice(b":1\r\n");
    let (ev, s) = run(&conv(&[(C, &cmd(&["GET", "a"])), (S, &bomb)]));
    assert_eq!(ops(&ev).iter().map(brief).collect::<Vec<_>>(), ["GET a"]);
    assert_eq!(s.stats().malformed, 0);
    let bomb = b"*1\r\n".repeat(65);
    let (ev, s) = run(&conv(&[
        (C, &cmd(&["GET", "x"])),
        (S, b"+OK\r\n"),
        (C, &cmd(&["GET", "a"])),
        (S, &bomb),
    ]));
    assert_eq!(
        ops(&ev).iter().map(brief).collect::<Vec<_>>(),
        ["GET x", "GET a (aborted)"]
    );
    assert_eq!(s.stats().malformed, 1);
    // Attributes count in the depth too; 1M elements are fine.
    let mut big = b"*1048576\r\n".to_vec();
    big.extend(b":1\r\n".repeat(1 << 20));
    let (ev, s) = run(&conv(&[(C, &cmd(&["LRANGE", "l", "0", "-1"])), (S, &big)]));
    assert_eq!(ops(&ev).len(), 1);
    assert!(!ops(&ev)[0].aborted);
    assert_eq!(s.stats().malformed, 0);
    // An inline line beyond 64 KiB.
    let mut long = b"SET k ".to_vec();
    long.resize(MAX_LINE + 10, b'v');
    let (ev, s) = run(&conv(&[
        (C, &cmd(&["GET", "x"])),
        (S, b"+OK\r\n"),
        (C, &long[..40_000]),
        (C, &long[40_000..]),
    ]));
    assert_eq!(ops(&ev).len(), 1);
    assert_eq!(s.stats().malformed, 1);
}

#[test]
fn garbage_requests_are_malformed() {
    let bad: &[&[u8]] = &[
        b"*2\r\n$3\r\nGET\r\nXX\r\n",
        b"*2\r\n$-1\r\n",
        b"*abc\r\n",
        b"*2\r\n$3\r\nGETxx",
        b"*99999999999\r\n",
        b"*1\r\n$99999999999\r\n",
        b"*1\n",
    ];
    for req in bad {
        let feeds = conv(&[
            (C, &cmd(&["GET", "x"])),
            (S, b"+OK\r\n"),
            (C, req),
            (S, b"-ERR Protocol error: expected '$', got 'X'\r\n"),
        ]);
        let (ev, s) = run(&feeds);
        let what = String::from_utf8_lossy(req);
        let b: Vec<_> = ops(&ev).iter().map(brief).collect();
        assert_eq!(b[0], "GET x", "{what}");
        assert!(b.len() <= 2, "{what}");
        assert_eq!(s.stats().malformed, 1, "{what}");
    }
    // `*0` and empty lines are no commands (Redis ignores them).
    let (ev, s) = run(&conv(&[
        (C, b"*0\r\n*-1\r\n\r\n*1\r\n$4\r\nPING\r\n"),
        (S, b"+PONG\r\n"),
    ]));
    assert!(ev.is_empty());
    assert_eq!(s.stats().malformed, 0);
    assert_eq!(s.stats().not_operations, 1);
}

#[test]
fn midstream_start_is_not_malformed() {
    // The session begins in the middle of a big SET and of a big reply.
    let feeds = conv(&[
        (S, b"vvvvvvvvvvvvv\r\n"),
        (C, b"vvvvvvvvv\r\n"),
        (C, &cmd(&["GET", "a"])),
        (S, b"+OK\r\n"), // the SET's reply, read after GET a was written
        (S, b"$1\r\na\r\n"),
    ]);
    let (ev, s) = run(&feeds);
    let o = ops(&ev);
    // The first reply read after GET a was written pairs with it (the known limit), the
    // next has no command waiting.
    assert_eq!(
        o.iter().map(|o| (brief(o), o.end_ts)).collect::<Vec<_>>(),
        [("GET a".to_string(), 40)]
    );
    assert_eq!(s.stats().malformed, 0);
    assert_eq!(s.stats().not_operations, 1);
    // Replies with nothing waiting are counted, not paired.
    let (ev, s) = run(&conv(&[
        (S, b"+OK\r\n:1\r\n"),
        (C, &cmd(&["GET", "a"])),
        (S, b"$-1\r\n"),
    ]));
    assert_eq!(ops(&ev).iter().map(|o| o.end_ts).collect::<Vec<_>>(), [30]);
    assert_eq!(s.stats().not_operations, 2);
}

#[test]
fn close_aborts_what_waits() {
    let feeds = conv(&[
        (C, &[cmd(&["GET", "a"]), cmd(&["GET", "b"])].concat()),
        (S, b"$1\r\na\r\n$10\r\nabc"),
        (C, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nab"),
    ]);
    let (ev, _) = run(&feeds);
    let o = ops(&ev);
    assert_eq!(
        o.iter()
            .map(|o| (brief(o), o.start_ts, o.end_ts))
            .collect::<Vec<_>>(),
        [
            ("GET a".to_string(), 10, 20),
            ("SET k (aborted)".to_string(), 30, 1_000_000),
            ("GET b (aborted)".to_string(), 10, 1_000_000),
        ]
    );
    // Every Started has its Done.
    let started = ev
        .iter()
        .filter(|e| matches!(e, DbEvent::Started { .. }))
        .count();
    assert_eq!(started, 3);
}

#[test]
fn pending_is_bounded() {
    let n = MAX_PENDING + 100;
    let mut req = Vec::new();
    let mut rep = Vec::new();
    for i in 0..n {
        req.extend(cmd(&["INCR", &format!("c{i}")]));
        rep.extend(format!(":{i}\r\n").as_bytes());
    }
    let feeds = conv(&[
        (C, &req),
        (S, &rep),
        (C, &cmd(&["GET", "after"])),
        (S, b"$-1\r\n"),
    ]);
    let (ev, s) = run(&feeds);
    let o = ops(&ev);
    assert_eq!(o.len(), MAX_PENDING + 1);
    assert_eq!(
        o[MAX_PENDING - 1].query_text.as_deref(),
        Some(format!("INCR c{}", MAX_PENDING - 1).as_str())
    );
    assert_eq!(o[MAX_PENDING].query_text.as_deref(), Some("GET after"));
    assert_eq!(o[MAX_PENDING].end_ts, 40);
    assert_eq!(s.untracked(), 100);
    assert!(o.iter().all(|o| !o.aborted));
}

#[test]
fn queue_stays_bounded_under_repeated_losses() {
    let mut s = RedisSession::new(QueryTextOptions::default());
    let mut out = Vec::new();
    for i in 0..10_000u64 {
        s.feed(C, b"PING\r\n*2\r\n$", 5, i, 1, &mut out);
    }
    assert!(s.queue.len() <= 3, "{}", s.queue.len());
    assert!(out.is_empty());
    assert_eq!(s.stats().not_operations, 10_000);
}

/// A deterministic pseudo-random stream of mutations of valid conversations: no panic,
/// every Started gets one Done by close.
#[test]
fn random_input_never_panics() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let base_req = [
        cmd(&["SET", "k", "v"]),
        cmd(&["SUBSCRIBE", "a", "b"]),
        cmd(&["MULTI"]),
        b"PING\r\nGET 'a'\r\n".to_vec(),
        cmd(&["CLIENT", "REPLY", "SKIP"]),
        cmd(&["UNSUBSCRIBE"]),
    ]
    .concat();
    let base_rep: &[u8] = b"+OK\r\n>3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n|1\r\n+a\r\n%1\r\n:1\r\n~1\r\n,1\r\n-ERR x\r\n$3\r\nabc\r\n*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n";
    for _ in 0..3000 {
        let mut feeds = Vec::new();
        for j in 0..(rnd() % 8) {
            let src: &[u8] = if rnd() % 2 == 0 { &base_req } else { base_rep };
            let a = (rnd() as usize) % src.len();
            let b = a + (rnd() as usize) % (src.len() - a + 1);
            let mut data = src[a..b].to_vec();
            for _ in 0..(rnd() % 3) {
                if !data.is_empty() {
                    let k = (rnd() as usize) % data.len();
                    data[k] = rnd() as u8;
                }
            }
            feeds.push(Feed {
                flow: if src.as_ptr() == base_rep.as_ptr() {
                    S
                } else {
                    C
                },
                data,
                gap: if rnd() % 5 == 0 { rnd() % 20 } else { 0 },
                ts: j,
                tid: 1,
            });
        }
        let (ev, _) = run(&feeds);
        let started: Vec<u64> = ev
            .iter()
            .filter_map(|e| match e {
                DbEvent::Started { seq, .. } => Some(*seq),
                _ => None,
            })
            .collect();
        let mut done: Vec<u64> = ops(&ev).iter().map(|o| o.seq).collect();
        done.sort_unstable();
        let mut started_sorted = started.clone();
        started_sorted.sort_unstable();
        // Ops without a reply (CLIENT REPLY) are Done without... they were Started too.
        assert_eq!(started_sorted, done, "{feeds:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Captures of a real redis-server (test/golden/capture_tcp.py redis)

/// The records of test/golden/redis_{name}.bin.
fn golden(name: &str) -> Vec<Feed> {
    crate::protocols::capture::golden(&format!("redis_{name}.bin"))
        .into_iter()
        .enumerate()
        .map(|(i, r)| Feed {
            flow: r.flow,
            data: r.data,
            gap: 0,
            ts: r.ts,
            tid: i as u32,
        })
        .collect()
}

/// Replays a capture whole, with every record cut to 4 KiB (the rest a gap), and in
/// pieces of 7 bytes: all give the same operations; returns them and the stats.
fn replay(name: &str) -> (Vec<DbOp>, SessionStats) {
    let feeds = golden(name);
    let (ev, s) = run(&feeds);
    let mut cut = feeds.clone();
    for f in &mut cut {
        if f.data.len() > 4096 {
            f.gap = (f.data.len() - 4096) as u64;
            f.data.truncate(4096);
        }
    }
    let (ev2, s2) = run(&cut);
    assert_eq!(ev, ev2, "{name} cut to 4 KiB");
    assert_eq!(s.stats(), s2.stats(), "{name} cut to 4 KiB");
    let mut pieces = Vec::new();
    for f in &feeds {
        for c in f.data.chunks(7) {
            pieces.push(Feed {
                data: c.to_vec(),
                ..f.clone()
            });
        }
    }
    let (ev3, s3) = run(&pieces);
    assert_eq!(ev, ev3, "{name} in pieces");
    assert_eq!(s.stats(), s3.stats(), "{name} in pieces");
    let first = feeds.iter().find(|f| f.flow == C).unwrap();
    assert_eq!(sniff(C, &first.data), Sniff::Yes, "{name}");
    assert!(feeds
        .iter()
        .filter(|f| f.flow == S)
        .all(|f| plausible_midstream(S, &f.data) || f.data[0] == b'v'));
    // Every Started, one Done, nothing aborted, ends after starts, tid of the request.
    let o = ops(&ev);
    for op in &o {
        assert!(!op.aborted && op.end_ts >= op.start_ts, "{op:?}");
        let req = feeds.iter().find(|f| f.ts == op.start_ts).unwrap();
        assert_eq!((req.flow, req.tid), (C, op.tid));
    }
    (o, s.stats())
}

#[test]
fn golden_redis_cli() {
    let (o, st) = replay("cli");
    assert_eq!(
        o.iter().map(brief).collect::<Vec<_>>(),
        [
            "SELECT 2",
            "SET user:1 ? [2]",
            "GET user:1 [2]",
            "HSET h:1 ? ? ? ? [2]",
            "HGETALL h:1 [2]",
            "RPUSH list:1 ? ? ? [2]",
            "LRANGE list:1 ? ? [2]",
            "INCR h:1 [2] !WRONGTYPE",
            "MULTI [2]",
            "SET counter ? [2]",
            "INCRBY counter ? [2]",
            "EXEC [2]",
            "NOSUCHCMD x [2] !ERR",
            "CLIENT SETNAME golden [2]",
            "DEL user:1 ? ? ? [2]",
        ]
    );
    assert_eq!(o[7].status_code.as_deref(), Some("WRONGTYPE"));
    assert_eq!(o[13].operation.as_deref(), Some("CLIENT SETNAME"));
    assert_eq!(
        st,
        SessionStats {
            not_operations: 1,
            ..SessionStats::default()
        }
    );
}

#[test]
fn golden_redis_cli_resp3() {
    let (o, st) = replay("cli_resp3");
    assert_eq!(
        o.iter().map(brief).collect::<Vec<_>>(),
        [
            "HSET h:3 ? ? ? ?",
            "HGETALL h:3",
            "SADD s:3 ? ? ?",
            "SMEMBERS s:3",
            "ZADD z:3 ? ?",
            "ZSCORE z:3 ?",
            "EXISTS h:3",
            "GET missing",
            "CONFIG GET maxmemory",
            "LPOP h:3 !WRONGTYPE",
            "DEL h:3 ? ?",
        ]
    );
    assert_eq!(o[8].operation.as_deref(), Some("CONFIG GET"));
    assert_eq!(
        st,
        SessionStats {
            not_operations: 1,
            ..SessionStats::default()
        }
    );
}

#[test]
fn golden_redis_cli_pipe_inline() {
    let (o, st) = replay("pipe");
    let b: Vec<_> = o.iter().map(brief).collect();
    assert_eq!(
        b[..8],
        [
            "SET \"key with space\" ?",
            "HSET h:p ? ?",
            "HGETALL h:p",
            "INCR h:p !WRONGTYPE",
            "GET nokey",
            "SELECT 5",
            "SET k5 ? [5]",
            "DEL \"key with space\" ? ? [5]",
        ]
    );
    // redis-cli --pipe ends with an ECHO of 20 random bytes.
    assert_eq!(o.len(), 9);
    assert_eq!(o[8].operation.as_deref(), Some("ECHO"));
    assert!(
        b[8].starts_with("ECHO \"") && b[8].ends_with("\" [5]"),
        "{}",
        b[8]
    );
    assert!(o
        .iter()
        .all(|x| (x.start_ts, x.end_ts) == (o[0].start_ts, o[0].end_ts)));
    assert_eq!(
        st,
        SessionStats {
            not_operations: 1,
            ..SessionStats::default()
        }
    );
}

#[test]
fn golden_redis_py() {
    let (o, st) = replay("py");
    let b: Vec<_> = o.iter().map(brief).collect();
    let mut want = vec![
        "SELECT 3".to_string(),
        "SET user:1 ? [3]".to_string(),
        "GET user:1 [3]".to_string(),
        "HSET h:1 ? ? ? ? [3]".to_string(),
        "HGETALL h:1 [3]".to_string(),
        "LPUSH h:1 ? [3] !WRONGTYPE".to_string(),
    ];
    // The pipeline (transaction=False): 20 SET then 20 GET in one write.
    for i in 0..20 {
        want.push(format!("SET k:{i} ? [3]"));
    }
    for i in 0..20 {
        want.push(format!("GET k:{i} [3]"));
    }
    // The transaction: an error inside EXEC's array is not EXEC's.
    want.extend(
        [
            "MULTI [3]",
            "INCRBY tx:counter ? [3]",
            "HSET tx:h ? ? [3]",
            "LPUSH h:1 ? [3]",
            "EXEC [3]",
            "SET big ? [3]",
            "GET big [3]",
        ]
        .map(String::from),
    );
    want.push(format!("DEL big{} [3]", " ?".repeat(24)));
    assert_eq!(b, want);
    // The pipeline's ops share their start and end.
    assert!(o[6..46]
        .iter()
        .all(|x| (x.start_ts, x.end_ts) == (o[6].start_ts, o[6].end_ts)));
    // HELLO, CLIENT SETINFO x2, CLIENT MAINT_NOTIFICATIONS.
    assert_eq!(
        st,
        SessionStats {
            not_operations: 4,
            ..SessionStats::default()
        }
    );
}

#[test]
fn golden_redis_py_resp3() {
    let (o, st) = replay("py_resp3");
    assert_eq!(
        o.iter().map(brief).collect::<Vec<_>>(),
        [
            "HSET h:r3 ? ? ? ?",
            "HGETALL h:r3",
            "SADD s:r3 ? ?",
            "SMEMBERS s:r3",
            "MULTI",
            "HGETALL h:r3",
            "SMEMBERS s:r3",
            "EXEC",
            "DEL h:r3 ?",
        ]
    );
    // HELLO, CLIENT SETINFO x2, CLIENT MAINT_NOTIFICATIONS.
    assert_eq!(
        st,
        SessionStats {
            not_operations: 4,
            ..SessionStats::default()
        }
    );
}

#[test]
fn golden_redis_pubsub() {
    let (o, st) = replay("pubsub");
    assert_eq!(
        o.iter().map(brief).collect::<Vec<_>>(),
        [
            "SUBSCRIBE news ?",
            "PSUBSCRIBE log.*",
            "UNSUBSCRIBE news ?",
            "PUNSUBSCRIBE",
            "GET after"
        ]
    );
    // CLIENT SETINFO x2, 3 messages, PING.
    assert_eq!(
        st,
        SessionStats {
            not_operations: 6,
            ..SessionStats::default()
        }
    );
}

#[test]
fn golden_redis_pubsub_resp3() {
    let (o, st) = replay("pubsub_resp3");
    assert_eq!(
        o.iter().map(brief).collect::<Vec<_>>(),
        [
            "SUBSCRIBE news ?",
            "PSUBSCRIBE log.*",
            "UNSUBSCRIBE news ?",
            "PUNSUBSCRIBE",
            "GET after"
        ]
    );
    // HELLO, CLIENT SETINFO x2, CLIENT MAINT_NOTIFICATIONS, 3 messages, PING.
    assert_eq!(
        st,
        SessionStats {
            not_operations: 8,
            ..SessionStats::default()
        }
    );
}

#[test]
fn command_across_feeds_keeps_its_first_ts_and_tid() {
    let feeds = conv(&[
        (C, b"*3\r\n$3\r\nSE"),
        (C, b"T\r\n$1\r\nk\r\n$2\r\nv"),
        (C, b"v\r\n"),
        (S, b"+O"),
        (S, b"K\r\n"),
    ]);
    let (ev, _) = run(&feeds);
    assert_eq!(
        ev[0],
        DbEvent::Started {
            seq: 1,
            ts: 10,
            tid: 1000
        }
    );
    let o = ops(&ev);
    assert_eq!((o[0].start_ts, o[0].end_ts, o[0].tid), (10, 50, 1000));
    check_splits(&feeds);
}

#[test]
fn confirmations_after_a_loss_find_their_command() {
    // A request gap loses commands; SUBSCRIBE written after is found behind the barrier.
    let mut feeds = conv(&[
        (C, b"*2\r\n$3\r\nGET\r\n$1\r\n"),
        (C, &cmd(&["SUBSCRIBE", "a"])),
        (S, b"$1\r\nx\r\n>3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n"),
    ]);
    feeds[0].gap = 40;
    let (ev, s) = run(&feeds);
    assert_eq!(
        ops(&ev)
            .iter()
            .map(|o| (brief(o), o.end_ts))
            .collect::<Vec<_>>(),
        [("GET ?".to_string(), 30), ("SUBSCRIBE a".to_string(), 30)]
    );
    assert_eq!(s.losses(), 1);
    assert_eq!(s.stats().malformed, 0);
}
