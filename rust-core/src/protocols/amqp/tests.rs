//! Tests: frames built by hand, and conversations recorded between pika and a real
//! RabbitMQ 3.10 (test/golden/amqp_*.bin, test/golden/capture_tcp.py rabbitmq).

use super::wire::*;
use super::*;
use crate::protocols::messaging::MsgContext;

const UP: Flow = Flow::ToServer;
const DOWN: Flow = Flow::ToClient;

// ---------------------------------------------------------------------------------------
// Builders

fn frame(typ: u8, ch: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![typ];
    v.extend(ch.to_be_bytes());
    v.extend((payload.len() as u32).to_be_bytes());
    v.extend(payload);
    v.push(FRAME_END);
    v
}

fn ss(s: &[u8]) -> Vec<u8> {
    let mut v = vec![s.len() as u8];
    v.extend(s);
    v
}

fn ls(s: &[u8]) -> Vec<u8> {
    let mut v = (s.len() as u32).to_be_bytes().to_vec();
    v.extend(s);
    v
}

fn meth(ch: u16, class: u16, id: u16, args: &[u8]) -> Vec<u8> {
    let mut p = class.to_be_bytes().to_vec();
    p.extend(id.to_be_bytes());
    p.extend(args);
    frame(FRAME_METHOD, ch, &p)
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn publish(ch: u16, exchange: &str, rk: &str) -> Vec<u8> {
    meth(
        ch,
        60,
        40,
        &cat(&[&[0, 0], &ss(exchange.as_bytes()), &ss(rk.as_bytes()), &[0]]),
    )
}

/// A content header: `props` already encoded after the flags word.
fn header(ch: u16, body: u64, flags: u16, props: &[u8]) -> Vec<u8> {
    let mut p = 60u16.to_be_bytes().to_vec();
    p.extend([0, 0]);
    p.extend(body.to_be_bytes());
    p.extend(flags.to_be_bytes());
    p.extend(props);
    frame(FRAME_HEADER, ch, &p)
}

fn body(ch: u16, n: usize) -> Vec<u8> {
    frame(FRAME_BODY, ch, &vec![b'z'; n])
}

/// A message's frames: header (message-id, optional headers table content) and body.
fn content(ch: u16, n: usize, id: Option<&str>, headers: Option<&[u8]>) -> Vec<u8> {
    let mut flags = 0u16;
    let mut props = Vec::new();
    if let Some(h) = headers {
        flags |= FLAG_HEADERS;
        props.extend(ls(h));
    }
    if let Some(id) = id {
        flags |= FLAG_MESSAGE_ID;
        props.extend(ss(id.as_bytes()));
    }
    let mut v = header(ch, n as u64, flags, &props);
    if n > 0 {
        v.extend(body(ch, n));
    }
    v
}

fn deliver(ch: u16, ctag: &str, tag: u64, exchange: &str, rk: &str) -> Vec<u8> {
    meth(
        ch,
        60,
        60,
        &cat(&[
            &ss(ctag.as_bytes()),
            &tag.to_be_bytes(),
            &[0],
            &ss(exchange.as_bytes()),
            &ss(rk.as_bytes()),
        ]),
    )
}

fn consume(ch: u16, queue: &str, ctag: &str, no_ack: bool) -> Vec<u8> {
    let bits = if no_ack { 2 } else { 0 };
    meth(
        ch,
        60,
        20,
        &cat(&[
            &[0, 0],
            &ss(queue.as_bytes()),
            &ss(ctag.as_bytes()),
            &[bits],
            &ls(b""),
        ]),
    )
}

fn consume_ok(ch: u16, ctag: &str) -> Vec<u8> {
    meth(ch, 60, 21, &ss(ctag.as_bytes()))
}

fn ack(ch: u16, tag: u64, multiple: bool) -> Vec<u8> {
    meth(
        ch,
        60,
        80,
        &cat(&[&tag.to_be_bytes(), &[u8::from(multiple)]]),
    )
}

fn nack(ch: u16, tag: u64, multiple: bool) -> Vec<u8> {
    meth(
        ch,
        60,
        120,
        &cat(&[&tag.to_be_bytes(), &[u8::from(multiple) | 2]]),
    )
}

fn reject(ch: u16, tag: u64) -> Vec<u8> {
    meth(ch, 60, 90, &cat(&[&tag.to_be_bytes(), &[0]]))
}

fn close(ch: u16, code: u16) -> Vec<u8> {
    let (class, id) = if ch == 0 { (10, 50) } else { (20, 40) };
    meth(
        ch,
        class,
        id,
        &cat(&[&code.to_be_bytes(), &ss(b"text"), &[0, 60, 0, 40]]),
    )
}

fn confirm_select(ch: u16) -> Vec<u8> {
    meth(ch, 85, 10, &[0])
}

fn get(ch: u16, queue: &str) -> Vec<u8> {
    meth(ch, 60, 70, &cat(&[&[0, 0], &ss(queue.as_bytes()), &[0]]))
}

fn get_ok(ch: u16, tag: u64, rk: &str) -> Vec<u8> {
    meth(
        ch,
        60,
        71,
        &cat(&[
            &tag.to_be_bytes(),
            &[0],
            &ss(b""),
            &ss(rk.as_bytes()),
            &[0, 0, 0, 0],
        ]),
    )
}

fn get_empty(ch: u16) -> Vec<u8> {
    meth(ch, 60, 72, &ss(b""))
}

fn channel_open(ch: u16) -> Vec<u8> {
    meth(ch, 20, 10, &ss(b""))
}

fn heartbeat() -> Vec<u8> {
    frame(FRAME_HEARTBEAT, 0, &[])
}

const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fn tp_ctx() -> MsgContext {
    let tp = crate::spans::ids::TraceParent::parse(TP).unwrap();
    MsgContext {
        trace_id: tp.trace_id,
        span_id: tp.span_id,
        flags: tp.flags,
    }
}

fn tp_headers() -> Vec<u8> {
    cat(&[
        &ss(b"traceparent"),
        b"S",
        &ls(TP.as_bytes()),
        &ss(b"app"),
        b"S",
        &ls(b"x"),
    ])
}

// ---------------------------------------------------------------------------------------
// Drivers

#[derive(Debug, Clone)]
struct Feed {
    flow: Flow,
    data: Vec<u8>,
    gap: u64,
    ts: u64,
    tid: u32,
}

fn feeds(parts: &[(Flow, Vec<u8>)]) -> Vec<Feed> {
    parts
        .iter()
        .enumerate()
        .map(|(i, (flow, data))| Feed {
            flow: *flow,
            data: data.clone(),
            gap: 0,
            ts: 100 + i as u64 * 10,
            tid: if *flow == UP { 1 } else { 2 },
        })
        .collect()
}

fn run(feeds: &[Feed]) -> (Vec<MsgEvent>, AmqpSession) {
    let mut s = AmqpSession::new();
    let mut out = Vec::new();
    for f in feeds {
        s.feed(f.flow, &f.data, f.gap, f.ts, f.tid, &mut out);
    }
    s.close(u64::MAX / 2, &mut out);
    check_events(&out);
    (out, s)
}

/// Every seq done once; a Started never after its Done; ends after starts.
fn check_events(ev: &[MsgEvent]) {
    let mut started = std::collections::HashSet::new();
    let mut done = std::collections::HashSet::new();
    for e in ev {
        match e {
            MsgEvent::Started { seq, .. } => {
                assert!(started.insert(*seq) && !done.contains(seq), "{ev:?}")
            }
            MsgEvent::StartedWith(op) => {
                assert_eq!(op.op_type, OpType::Process, "{op:?}");
                assert!(started.insert(op.seq) && !done.contains(&op.seq), "{ev:?}");
            }
            MsgEvent::Done(op) => {
                assert!(done.insert(op.seq), "{op:?} done twice");
                assert!(op.end_ts >= op.start_ts, "{op:?}");
                assert_eq!(op.system, MsgSystem::Rabbitmq);
            }
        }
    }
    assert!(
        started.is_subset(&done),
        "every Started gets a Done by close"
    );
}

fn ops(ev: &[MsgEvent]) -> Vec<MsgOp> {
    ev.iter()
        .filter_map(|e| match e {
            MsgEvent::Done(op) => Some(op.clone()),
            _ => None,
        })
        .collect()
}

/// One line per operation: name, destination, routing key, body size, message id,
/// delivery tag, error, links.
fn brief(op: &MsgOp) -> String {
    let mut s = format!(
        "{} {}",
        op.op_name,
        op.destination.as_deref().unwrap_or("?")
    );
    if let Some(rk) = &op.routing_key {
        s += &format!(" rk={rk}");
    }
    if let Some(n) = op.body_size {
        s += &format!(" size={n}");
    }
    if let Some(id) = &op.message_id {
        s += &format!(" id={id}");
    }
    if let Some(t) = op.delivery_tag {
        s += &format!(" tag={t}");
    }
    if let Some(e) = &op.error_type {
        s += &format!(" err={e}");
    }
    if op.aborted {
        s += " aborted";
    }
    if !op.links.is_empty() {
        s += &format!(" links={}", op.links.len());
    }
    s
}

fn briefs(ev: &[MsgEvent]) -> Vec<String> {
    ops(ev).iter().map(brief).collect()
}

fn session_with(parts: &[(Flow, Vec<u8>)]) -> (Vec<MsgEvent>, AmqpSession) {
    run(&feeds(parts))
}

// ---------------------------------------------------------------------------------------
// Golden captures

fn golden(name: &str) -> Vec<Feed> {
    crate::protocols::capture::golden(&format!("amqp_{name}.bin"))
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

fn cut(feeds: &[Feed], max: usize) -> Vec<Feed> {
    let mut cut = feeds.to_vec();
    for f in &mut cut {
        if f.data.len() > max {
            f.gap = (f.data.len() - max) as u64;
            f.data.truncate(max);
        }
    }
    cut
}

fn pieces(feeds: &[Feed], n: usize) -> Vec<Feed> {
    let mut out = Vec::new();
    for f in feeds {
        for c in f.data.chunks(n) {
            out.push(Feed {
                data: c.to_vec(),
                ..f.clone()
            });
        }
    }
    out
}

/// Replays a capture whole, byte by byte, in pieces of 7 and cut to 4 KiB per record:
/// all give the same events; returns the operations and the stats.
fn replay(name: &str) -> (Vec<MsgOp>, MsgStats) {
    let feeds = golden(name);
    let (ev, s) = run(&feeds);
    for (what, other) in [
        ("byte by byte", pieces(&feeds, 1)),
        ("in pieces of 7", pieces(&feeds, 7)),
        ("cut to 4 KiB", cut(&feeds, 4096)),
    ] {
        let (ev2, s2) = run(&other);
        assert_eq!(ev, ev2, "{name} {what}");
        assert_eq!(s.stats(), s2.stats(), "{name} {what}");
    }
    assert_eq!(s.losses(), 1, "{name}: only the close");
    let first = feeds.iter().find(|f| f.flow == UP).unwrap();
    assert_eq!(sniff(UP, &first.data), Sniff::Yes, "{name}");
    assert_eq!(sniff(DOWN, &first.data), Sniff::No, "{name}");
    // Every record of the broker starts at a frame here: each is plausible mid-stream.
    for f in feeds.iter().filter(|f| f.flow == DOWN) {
        assert!(
            plausible_midstream(DOWN, &f.data),
            "{name}: {:?}",
            &f.data[..f.data.len().min(16)]
        );
    }
    // Ops: ends after starts, the start the thread of the frame that began it.
    let o = ops(&ev);
    for op in &o {
        let f = feeds.iter().find(|f| f.ts == op.start_ts).unwrap();
        assert_eq!(f.tid, op.tid, "{op:?}");
        let want = if op.op_type == OpType::Process {
            DOWN
        } else {
            UP
        };
        assert_eq!(f.flow, want, "{op:?}");
    }
    (o, s.stats())
}

fn ts_flow(feeds: &[Feed], ts: u64) -> Flow {
    feeds.iter().find(|f| f.ts == ts).unwrap().flow
}

#[test]
fn golden_publish() {
    let (o, st) = replay("publish");
    assert_eq!(
        o.iter().map(brief).collect::<Vec<_>>(),
        [
            "publish amq.default rk=tasks size=10",
            "publish amq.default rk=tasks size=12 id=msg-1",
            "publish orders rk=eu size=3000 id=order-42",
            // Confirm mode (second channel): ended by the broker's acks.
            "publish orders rk=eu size=11",
            "publish amq.default rk=tasks size=11",
            // mandatory, unroutable: basic.return before its ack.
            "publish orders rk=nowhere size=10 err=NO_ROUTE",
            // A missing exchange: channel.close 404 from the broker.
            "publish missing-exchange rk=rk size=4 err=NOT_FOUND",
        ]
    );
    assert!(o
        .iter()
        .all(|op| op.op_type == OpType::Send && op.links.is_empty() && !op.aborted));
    let feeds = golden("publish");
    // Without confirms a publish ends when its body was written; with them at the ack.
    for op in &o[..3] {
        assert_eq!(ts_flow(&feeds, op.end_ts), UP, "{op:?}");
    }
    for op in &o[3..] {
        assert_eq!(ts_flow(&feeds, op.end_ts), DOWN, "{op:?}");
    }
    assert_eq!(st.malformed, 0);
    assert_eq!(st.empty_polls, 0);
    // start/tune/open, channel.open x2, confirm.select/-ok, basic.return, channel.close,
    // connection close... (acks end operations: not counted).
    assert_eq!(st.not_operations, 19);
}

#[test]
fn golden_consume() {
    let (o, st) = replay("consume");
    assert_eq!(
        o.iter().map(brief).collect::<Vec<_>>(),
        [
            // Manual acks: ack, nack, reject.
            "process acks rk=acks size=8 id=m-1 tag=1 links=1",
            "process acks rk=acks size=8 id=2 tag=2 err=rejected",
            "process acks rk=acks size=8 id=3 tag=3 err=rejected",
            // auto_ack with the client's own consumer tag: ends when read.
            "process auto rk=auto size=6 id=4 tag=4",
            "process auto rk=auto size=6 id=5 tag=5",
            // One ack with multiple=true ends all three.
            "process multi rk=multi size=7 id=6 tag=6",
            "process multi rk=multi size=7 id=7 tag=7",
            "process multi rk=multi size=7 id=8 tag=8",
        ]
    );
    assert_eq!(o[0].links, [tp_ctx()]);
    let feeds = golden("consume");
    for (i, op) in o.iter().enumerate() {
        assert_eq!(op.op_type, OpType::Process);
        let auto = (3..5).contains(&i);
        assert_eq!(
            ts_flow(&feeds, op.end_ts),
            if auto { DOWN } else { UP },
            "{op:?}"
        );
    }
    assert_eq!(o[5].end_ts, o[7].end_ts);
    assert_eq!(st.malformed, 0);
}

#[test]
fn golden_get() {
    let (o, st) = replay("get");
    assert_eq!(
        o.iter().map(brief).collect::<Vec<_>>(),
        [
            "get polled rk=polled size=7 id=p-1 tag=1 links=1",
            "get polled rk=polled size=11 id=2 tag=2",
        ]
    );
    assert!(o.iter().all(|op| op.op_type == OpType::Receive));
    assert_eq!(o[0].links, [tp_ctx()]);
    assert_eq!(st.empty_polls, 1);
    assert_eq!(st.malformed, 0);
    // Get operations are reported whole (no Started): the adapter starts them at the get.
    let (ev, _) = run(&golden("get"));
    assert!(!ev.iter().any(|e| matches!(e, MsgEvent::Started { .. })));
}

#[test]
fn golden_bigbody() {
    // 135,000 bytes: two body frames (frame_max 131072) each way.
    let feeds = golden("bigbody");
    let (ev, s) = run(&feeds);
    let want = [
        "publish amq.default rk=big size=135000 id=big-1",
        "publish amq.default rk=big size=11",
        "get big rk=big size=135000 id=big-1 tag=1",
        "get big rk=big size=11 id=2 tag=2",
    ];
    assert_eq!(briefs(&ev), want);
    assert_eq!(s.losses(), 1);
    for n in [1, 7, 1000] {
        let (ev2, _) = run(&pieces(&feeds, n));
        assert_eq!(ev, ev2, "pieces of {n}");
    }
    // As the kernel captures it (4095 bytes per syscall): skipped by frame sizes while
    // the gap ends inside a frame; where it covers a boundary (the second body frame and
    // the next publish in one write) the boundaries are found again at the next frame.
    let (ev3, s3) = run(&cut(&feeds, 4095));
    // The small publish and the first get went out in the same write as the end of the
    // big body: lost; the get-ok then answers a get of an unknown queue, timed from the
    // write that lost them.
    assert_eq!(
        briefs(&ev3),
        [
            "publish amq.default rk=big size=135000 id=big-1",
            "get ? rk=big size=135000 id=big-1 tag=1",
            want[3],
        ]
    );
    let lost_get = &ops(&ev3)[1];
    assert_eq!(lost_get.start_ts, feeds[10].ts);
    assert_eq!(feeds[10].data.len(), 36792);
    assert_eq!(s3.stats().malformed, 0);
}

// ---------------------------------------------------------------------------------------
// Hand-built conversations

fn open(ch: u16) -> Vec<(Flow, Vec<u8>)> {
    vec![
        (UP, PROTOCOL_HEADER.to_vec()),
        (UP, channel_open(ch)),
        (DOWN, meth(ch, 20, 11, &ls(b""))),
    ]
}

#[test]
fn confirm_mode_multiple_acks_and_nack() {
    let mut parts = open(1);
    parts.push((UP, confirm_select(1)));
    parts.push((DOWN, meth(1, 85, 11, &[])));
    for i in 0..5 {
        parts.push((
            UP,
            cat(&[
                &publish(1, "ex", &format!("k{i}")),
                &content(1, 3, None, None),
            ]),
        ));
    }
    parts.push((DOWN, ack(1, 2, true))); // 1 and 2
    parts.push((DOWN, nack(1, 4, false))); // 4 only
    parts.push((DOWN, ack(1, 0, true))); // all the rest: 3 and 5
    let (ev, s) = session_with(&parts);
    assert_eq!(
        briefs(&ev),
        [
            "publish ex rk=k0 size=3",
            "publish ex rk=k1 size=3",
            "publish ex rk=k3 size=3 err=nack",
            "publish ex rk=k2 size=3",
            "publish ex rk=k4 size=3",
        ]
    );
    let o = ops(&ev);
    assert_eq!(o[0].end_ts, o[1].end_ts);
    assert_eq!(o[3].end_ts, o[4].end_ts);
    assert!(o[2].end_ts < o[3].end_ts);
    assert_eq!(o[0].start_ts, 150);
    assert_eq!(o[0].tid, 1);
    assert_eq!(s.stats().malformed, 0);
}

#[test]
fn confirm_mode_channel_close_ends_unconfirmed() {
    let mut parts = open(1);
    parts.push((UP, confirm_select(1)));
    parts.push((
        UP,
        cat(&[&publish(1, "nope", "k"), &content(1, 0, Some("id-1"), None)]),
    ));
    parts.push((DOWN, close(1, 404)));
    parts.push((UP, meth(1, 20, 41, &[])));
    let (ev, _) = session_with(&parts);
    assert_eq!(
        briefs(&ev),
        ["publish nope rk=k size=0 id=id-1 err=NOT_FOUND"]
    );
    // Without confirm mode the publish ended when sent, before the close.
    let mut parts = open(1);
    parts.push((
        UP,
        cat(&[&publish(1, "nope", "k"), &content(1, 2, None, None)]),
    ));
    parts.push((DOWN, close(1, 404)));
    let (ev, _) = session_with(&parts);
    assert_eq!(briefs(&ev), ["publish nope rk=k size=2"]);
}

#[test]
fn connection_close_from_the_broker_names_the_code() {
    let mut parts = open(1);
    parts.extend(open(2)[1..].iter().cloned());
    parts.push((UP, consume(1, "q1", "c1", false)));
    parts.push((DOWN, consume_ok(1, "c1")));
    parts.push((
        DOWN,
        cat(&[&deliver(1, "c1", 1, "", "q1"), &content(1, 4, None, None)]),
    ));
    parts.push((UP, confirm_select(2)));
    parts.push((
        UP,
        cat(&[&publish(2, "", "q1"), &content(2, 4, None, None)]),
    ));
    parts.push((DOWN, close(0, 320)));
    let (ev, _) = session_with(&parts);
    assert_eq!(
        briefs(&ev),
        [
            "process q1 rk=q1 size=4 id=1 tag=1 err=CONNECTION_FORCED",
            "publish amq.default rk=q1 size=4 err=CONNECTION_FORCED",
        ]
    );
    // A normal close by the client: what is still open ends as the connection closing.
    let mut parts = open(1);
    parts.push((UP, consume(1, "q1", "c1", false)));
    parts.push((DOWN, consume_ok(1, "c1")));
    parts.push((
        DOWN,
        cat(&[&deliver(1, "c1", 1, "", "q1"), &content(1, 4, None, None)]),
    ));
    parts.push((UP, close(1, 200)));
    let (ev, _) = session_with(&parts);
    assert_eq!(
        briefs(&ev),
        ["process q1 rk=q1 size=4 id=1 tag=1 err=channel_closed"]
    );
}

#[test]
fn consumer_tags_queues_and_unknown_consumers() {
    let mut parts = open(1);
    // The server chooses the tag: consume-ok gives it.
    parts.push((UP, consume(1, "orders", "", false)));
    parts.push((DOWN, consume_ok(1, "amq.ctag-1")));
    parts.push((
        DOWN,
        cat(&[
            &deliver(1, "amq.ctag-1", 7, "shop", "eu"),
            &content(1, 5, Some("m7"), Some(&tp_headers())),
        ]),
    ));
    // A consumer the collector never saw: the default exchange's routing key is the queue;
    // it ends when read (its ack mode is not known).
    parts.push((
        DOWN,
        cat(&[
            &deliver(1, "old", 8, "", "legacy"),
            &content(1, 1, None, None),
        ]),
    ));
    parts.push((
        DOWN,
        cat(&[
            &deliver(1, "old", 9, "shop", "eu"),
            &content(1, 1, None, None),
        ]),
    ));
    parts.push((UP, reject(1, 7)));
    parts.push((UP, ack(1, 9, false))); // not an open operation: ignored
    let (ev, s) = session_with(&parts);
    assert_eq!(
        briefs(&ev),
        [
            "process legacy rk=legacy size=1 id=8 tag=8",
            "process ? rk=eu size=1 id=9 tag=9",
            "process orders rk=eu size=5 id=m7 tag=7 err=rejected links=1",
        ]
    );
    let o = ops(&ev);
    assert_eq!(o[2].links, [tp_ctx()]);
    // Started at the deliver frame, by the reading thread.
    // Started (with its context) once its header was read, timed from the deliver frame
    // and its reading thread.
    let started: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            MsgEvent::StartedWith(op) => Some(op.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        (started[0].seq, started[0].start_ts, started[0].tid),
        (o[2].seq, 150, 2)
    );
    assert_eq!(started[0].links, [tp_ctx()]);
    assert_eq!(started[0].message_id.as_deref(), Some("m7"));
    assert!(!ev.iter().any(|e| matches!(e, MsgEvent::Started { .. })));
    assert_eq!(s.stats().malformed, 0);
}

#[test]
fn get_and_get_empty() {
    let mut parts = open(1);
    parts.push((UP, get(1, "jobs")));
    parts.push((DOWN, get_empty(1)));
    parts.push((UP, get(1, "jobs")));
    parts.push((
        DOWN,
        cat(&[
            &get_ok(1, 3, "jobs"),
            &content(1, 2, None, Some(&tp_headers())),
        ]),
    ));
    parts.push((UP, get(1, "jobs"))); // no reply before the close
    let (ev, s) = session_with(&parts);
    assert_eq!(
        briefs(&ev),
        [
            "get jobs rk=jobs size=2 id=3 tag=3 links=1",
            "get jobs aborted"
        ]
    );
    let o = ops(&ev);
    assert_eq!((o[0].start_ts, o[0].tid, o[0].end_ts), (150, 1, 160));
    assert_eq!(s.stats().empty_polls, 1);
}

#[test]
fn frames_split_anywhere_and_gaps_inside_bodies() {
    let mut parts = open(1);
    parts.push((
        UP,
        cat(&[
            &publish(1, "ex", "k"),
            &content(1, 10_000, Some("big"), None),
        ]),
    ));
    parts.push((
        UP,
        cat(&[&publish(1, "ex", "k2"), &content(1, 1, None, None)]),
    ));
    parts.push((DOWN, heartbeat()));
    let whole = session_with(&parts).0;
    assert_eq!(
        briefs(&whole),
        [
            "publish ex rk=k size=10000 id=big",
            "publish ex rk=k2 size=1"
        ]
    );
    // The body not captured beyond 4095 bytes: skipped by its size.
    let mut f = feeds(&parts);
    let big = &mut f[3];
    big.gap = (big.data.len() - 4095) as u64;
    big.data.truncate(4095);
    let (ev, s) = run(&f);
    assert_eq!(ev, whole);
    assert_eq!(s.stats().malformed, 0);
    assert_eq!(s.losses(), 1);
    // A gap covering the end of one frame and the start of the next loses the boundary:
    // the content in progress ends there, the next complete frame is found again.
    let mut f = feeds(&parts);
    let mut joined = f[3].data.clone();
    joined.extend(&f[4].data);
    joined.extend(publish(1, "ex", "k3"));
    joined.extend(content(1, 2, None, None));
    let big_len = f[3].data.len();
    f[3].data = joined[..100].to_vec();
    f[3].gap = (big_len + 10 - 100) as u64;
    f[4].data = joined[f[3].data.len() + f[3].gap as usize..].to_vec();
    let (ev, s) = run(&f);
    assert_eq!(
        briefs(&ev),
        [
            "publish ex rk=k size=10000 id=big",
            "publish ex rk=k3 size=2"
        ]
    );
    assert_eq!(s.stats().malformed, 0);
    assert!(s.losses() > 1);
}

#[test]
fn garbage_gives_the_connection_up() {
    let mut parts = open(1);
    parts.push((UP, cat(&[&publish(1, "ex", "k"), &header(1, 5, 0, &[])])));
    // A frame whose end byte is wrong.
    let mut bad = publish(1, "ex", "k2");
    *bad.last_mut().unwrap() = 0;
    parts.push((UP, bad));
    parts.push((UP, publish(1, "ex", "k3")));
    let (ev, s) = session_with(&parts);
    assert_eq!(briefs(&ev), ["publish ex rk=k size=5 aborted"]);
    assert_eq!(s.stats().malformed, 1);
    // Unknown frame type, absurd size.
    for junk in [frame(9, 1, b"xx"), {
        let mut v = vec![1, 0, 1];
        v.extend(u32::MAX.to_be_bytes());
        v
    }] {
        let mut parts = open(1);
        parts.push((UP, junk));
        parts.push((
            UP,
            cat(&[&publish(1, "ex", "k"), &content(1, 1, None, None)]),
        ));
        let (ev, s) = session_with(&parts);
        assert!(ops(&ev).is_empty());
        assert_eq!(s.stats().malformed, 1);
    }
    // An unknown method or one whose arguments do not parse: counted and skipped.
    let mut parts = open(1);
    parts.push((UP, meth(1, 60, 99, &[])));
    parts.push((UP, meth(1, 60, 40, &[0, 0, 200])));
    parts.push((UP, body(1, 3))); // no content expected
    parts.push((
        UP,
        cat(&[&publish(1, "ex", "k"), &content(1, 1, None, None)]),
    ));
    let (ev, s) = session_with(&parts);
    assert_eq!(briefs(&ev), ["publish ex rk=k size=1"]);
    assert_eq!(s.stats().malformed, 3);
}

#[test]
fn midstream_start() {
    // The collector started while a consumer was connected: no protocol header, the
    // broker's bytes begin in the middle of a frame.
    let tail = cat(&[&deliver(1, "c", 1, "", "q"), &content(1, 9, None, None)]);
    let parts = vec![
        (DOWN, cat(&[&[0x33, 0x01, 0x02, 0xCE], &heartbeat(), &tail])),
        (UP, ack(1, 1, false)),
        (
            DOWN,
            cat(&[&deliver(1, "c", 2, "", "q"), &content(1, 2, None, None)]),
        ),
    ];
    let (ev, s) = session_with(&parts);
    assert_eq!(
        briefs(&ev),
        [
            "process q rk=q size=9 id=1 tag=1",
            "process q rk=q size=2 id=2 tag=2"
        ]
    );
    assert_eq!(s.stats().malformed, 0);
    assert!(plausible_midstream(DOWN, &tail));
    assert!(plausible_midstream(UP, &publish(1, "", "k")));
    assert!(!plausible_midstream(DOWN, &tail[1..]));
    assert!(!plausible_midstream(UP, b"GET / HTTP/1.1\r\n\r\n"));
    assert!(!plausible_midstream(UP, &body(1, 10)));
}

#[test]
fn sniffing() {
    assert_eq!(sniff(UP, PROTOCOL_HEADER), Sniff::Yes);
    assert_eq!(sniff(UP, b"AMQ"), Sniff::NeedMore);
    assert_eq!(sniff(UP, b""), Sniff::NeedMore);
    assert_eq!(sniff(UP, b"AMQP\x00\x01\x00\x00"), Sniff::No); // AMQP 1.0
    assert_eq!(sniff(UP, b"AMQP\x03\x01\x00\x00"), Sniff::No); // AMQP 1.0 SASL
    assert_eq!(sniff(DOWN, PROTOCOL_HEADER), Sniff::No);
    assert_eq!(sniff(UP, b"GET / "), Sniff::No);
}

#[test]
fn bounds_on_open_operations() {
    let mut s = AmqpSession::new();
    let mut out = Vec::new();
    s.feed(UP, &consume(1, "q", "c", false), 0, 1, 1, &mut out);
    s.feed(DOWN, &consume_ok(1, "c"), 0, 2, 2, &mut out);
    let n = MAX_OPEN + 10;
    let mut batch = Vec::new();
    for tag in 1..=n as u64 {
        batch.extend(deliver(1, "c", tag, "", "q"));
        batch.extend(content(1, 0, None, None));
    }
    s.feed(DOWN, &batch, 0, 3, 2, &mut out);
    let done = ops(&out);
    assert_eq!(done.len(), 10);
    assert!(done.iter().all(|op| op.aborted));
    assert_eq!(done[0].delivery_tag, Some(1));
    s.compact();
    s.feed(UP, &ack(1, 0, true), 0, 4, 1, &mut out);
    assert_eq!(ops(&out).len(), n);
    s.close(5, &mut out);
    check_events(&out);
}

// ---------------------------------------------------------------------------------------
// Field tables and properties

#[test]
fn every_field_type() {
    let nested = cat(&[&ss(b"inner"), b"S", &ls(b"v")]);
    let arr = cat(&[
        b"I",
        &5i32.to_be_bytes(),
        b"S",
        &ls(b"two"),
        b"F",
        &ls(&nested),
    ]);
    let t = cat(&[
        &ss(b"t"),
        b"t",
        &[1],
        &ss(b"b"),
        b"b",
        &[0xff],
        &ss(b"B"),
        b"B",
        &[200],
        &ss(b"s"),
        b"s",
        &(-2i16).to_be_bytes(),
        &ss(b"U"),
        b"U",
        &(-3i16).to_be_bytes(),
        &ss(b"u"),
        b"u",
        &60000u16.to_be_bytes(),
        &ss(b"I"),
        b"I",
        &(-4i32).to_be_bytes(),
        &ss(b"i"),
        b"i",
        &4_000_000_000u32.to_be_bytes(),
        &ss(b"l"),
        b"l",
        &(-5i64).to_be_bytes(),
        &ss(b"L"),
        b"L",
        &u64::MAX.to_be_bytes(),
        &ss(b"f"),
        b"f",
        &1.5f32.to_bits().to_be_bytes(),
        &ss(b"d"),
        b"d",
        &2.25f64.to_bits().to_be_bytes(),
        &ss(b"D"),
        b"D",
        &[2],
        &314u32.to_be_bytes(),
        &ss(b"S"),
        b"S",
        &ls(b"long string"),
        &ss(b"x"),
        b"x",
        &ls(&[0, 1, 2]),
        &ss(b"A"),
        b"A",
        &ls(&arr),
        &ss(b"T"),
        b"T",
        &1_700_000_000u64.to_be_bytes(),
        &ss(b"F"),
        b"F",
        &ls(&nested),
        &ss(b"V"),
        b"V",
    ]);
    let got = table(&t).expect("parses");
    let want = [
        Field::Bool(true),
        Field::I8(-1),
        Field::U8(200),
        Field::I16(-2),
        Field::I16(-3),
        Field::U16(60000),
        Field::I32(-4),
        Field::U32(4_000_000_000),
        Field::I64(-5),
        Field::U64(u64::MAX),
        Field::F32(1.5),
        Field::F64(2.25),
        Field::Decimal {
            scale: 2,
            value: 314,
        },
        Field::LongStr(b"long string"),
        Field::Bytes(&[0, 1, 2]),
        Field::Array(&arr),
        Field::Timestamp(1_700_000_000),
        Field::Table(&nested),
        Field::Void,
    ];
    assert_eq!(got.iter().map(|(_, v)| *v).collect::<Vec<_>>(), want);
    assert_eq!(
        got.iter()
            .map(|(k, _)| std::str::from_utf8(k).unwrap())
            .collect::<String>(),
        "tbBsUuIiLlfdDSxATFV".replace("Ll", "lL")
    );
    assert_eq!(
        array(&arr).unwrap(),
        [Field::I32(5), Field::LongStr(b"two"), Field::Table(&nested)]
    );
    assert_eq!(
        table(&nested).unwrap(),
        [(&b"inner"[..], Field::LongStr(b"v"))]
    );
    // Truncated values, unknown types, strings past the end.
    for bad in [
        cat(&[&ss(b"k"), b"I", &[0, 0]]),
        cat(&[&ss(b"k"), b"?", &[0]]),
        cat(&[&ss(b"k"), b"S", &[0, 0, 0, 9, b'x']]),
        cat(&[&ss(b"k")]),
        vec![5, b'a'],
        cat(&[&ss(b"k"), b"F", &ls(&[1, b'a', b'Q'])]),
    ] {
        assert_eq!(table(&bad), None, "{bad:?}");
    }
    // Nesting is bounded.
    let mut deep = cat(&[&ss(b"k"), b"V"]);
    for _ in 0..MAX_DEPTH + 2 {
        deep = cat(&[&ss(b"k"), b"F", &ls(&deep)]);
    }
    assert_eq!(table(&deep), None);
    let mut ok = cat(&[&ss(b"k"), b"V"]);
    for _ in 0..MAX_DEPTH {
        ok = cat(&[&ss(b"k"), b"F", &ls(&ok)]);
    }
    assert!(table(&ok).is_some());
}

#[test]
fn traceparent_in_headers() {
    assert_eq!(traceparent(&tp_headers()), Some(tp_ctx()));
    // As a byte array too; nested ones are not the message's.
    let x = cat(&[&ss(b"traceparent"), b"x", &ls(TP.as_bytes())]);
    assert_eq!(traceparent(&x), Some(tp_ctx()));
    let nested = cat(&[&ss(b"n"), b"F", &ls(&tp_headers())]);
    assert_eq!(traceparent(&nested), None);
    // Malformed values are ignored.
    for v in [
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
        "garbage",
        "",
    ] {
        let h = cat(&[&ss(b"traceparent"), b"S", &ls(v.as_bytes())]);
        assert_eq!(traceparent(&h), None, "{v}");
    }
    let h = cat(&[&ss(b"traceparent"), b"I", &[0, 0, 0, 1]]);
    assert_eq!(traceparent(&h), None);
}

fn header_payload(flags: u16, props: &[u8]) -> Vec<u8> {
    let f = header(1, 42, flags, props);
    f[7..f.len() - 1].to_vec()
}

#[test]
fn content_header_properties() {
    let props = cat(&[
        &ss(b"application/json"),
        &ss(b"gzip"),
        &ls(&tp_headers()),
        &[2],
        &[5],
        &ss(b"corr"),
        &ss(b"reply"),
        &ss(b"60000"),
        &ss(b"the-id"),
        &7u64.to_be_bytes(),
    ]);
    let flags = 0xffc0; // content-type .. timestamp
    let p = header_payload(flags, &props);
    let got = wire::props(&p).unwrap();
    assert_eq!(got.body_size, 42);
    assert_eq!(got.message_id, Some(&b"the-id"[..]));
    assert_eq!(got.headers, Some(&tp_headers()[..]));
    // Cut short: what it holds.
    let got = wire::props(&p[..30]).unwrap();
    assert_eq!(
        (got.body_size, got.message_id, got.headers),
        (42, None, None)
    );
    assert_eq!(wire::props(&p[..11]), None);
}

#[test]
fn headers_slot_for_insertion() {
    // No properties: insert right after the flags word.
    let p = header_payload(0, &[]);
    assert_eq!(
        headers_slot(&p),
        Ok(HeadersSlot::Absent {
            offset: FLAGS_OFFSET + 2
        })
    );
    // content-type and content-encoding come first; delivery-mode after.
    let p = header_payload(
        FLAG_CONTENT_TYPE | FLAG_CONTENT_ENCODING | 1 << 12,
        &cat(&[&ss(b"text/plain"), &ss(b"br"), &[2]]),
    );
    assert_eq!(
        headers_slot(&p),
        Ok(HeadersSlot::Absent {
            offset: 14 + 11 + 3
        })
    );
    // A table already there: where it is, and whether the app set traceparent.
    let app = cat(&[&ss(b"app"), b"S", &ls(b"x")]);
    let p = header_payload(
        FLAG_CONTENT_TYPE | FLAG_HEADERS,
        &cat(&[&ss(b"t"), &ls(&app)]),
    );
    assert_eq!(
        headers_slot(&p),
        Ok(HeadersSlot::Present {
            offset: 16,
            len: app.len() as u32,
            traceparent: false
        })
    );
    assert_eq!(&p[16..20], &(app.len() as u32).to_be_bytes());
    let p = header_payload(FLAG_HEADERS, &ls(&tp_headers()));
    assert_eq!(
        headers_slot(&p),
        Ok(HeadersSlot::Present {
            offset: 14,
            len: tp_headers().len() as u32,
            traceparent: true
        })
    );
    let odd = cat(&[&ss(b"traceparent"), b"I", &[0, 0, 0, 1]]);
    let p = header_payload(FLAG_HEADERS, &ls(&odd));
    assert!(matches!(
        headers_slot(&p),
        Ok(HeadersSlot::Present {
            traceparent: true,
            ..
        })
    ));
    // Inserting at the slot gives a header that parses with the new table.
    let p = header_payload(
        FLAG_CONTENT_TYPE | FLAG_MESSAGE_ID,
        &cat(&[&ss(b"t"), &ss(b"id")]),
    );
    let Ok(HeadersSlot::Absent { offset }) = headers_slot(&p) else {
        panic!()
    };
    let mut q = p.clone();
    q[FLAGS_OFFSET] |= (FLAG_HEADERS >> 8) as u8;
    q.splice(offset..offset, ls(&tp_headers()));
    let got = wire::props(&q).unwrap();
    assert_eq!(
        (got.headers, got.message_id),
        (Some(&tp_headers()[..]), Some(&b"id"[..]))
    );
    // What cannot be placed.
    assert_eq!(headers_slot(&p[..13]), Err(SlotError::Short));
    assert_eq!(
        headers_slot(&header_payload(FLAG_CONTENT_TYPE, &[9, b'a'])),
        Err(SlotError::Short)
    );
    assert_eq!(
        headers_slot(&header_payload(FLAG_HEADERS, &ls(&[3, b'a']))),
        Err(SlotError::BadTable)
    );
    assert_eq!(
        headers_slot(&header_payload(1, &[0, 0])),
        Err(SlotError::FlagsContinued)
    );
    let mut other = p.clone();
    other[1] = 50;
    assert_eq!(headers_slot(&other), Err(SlotError::NotBasic));
}

#[test]
fn reply_code_names() {
    assert_eq!(reply_name(404), "NOT_FOUND");
    assert_eq!(reply_name(406), "PRECONDITION_FAILED");
    assert_eq!(reply_name(541), "INTERNAL_ERROR");
    assert_eq!(reply_name(999), "999");
}

#[test]
fn never_panics_on_prefixes_and_noise() {
    let mut all = Vec::new();
    for name in ["publish", "consume", "get"] {
        for f in golden(name) {
            all.push(f);
        }
    }
    // Every prefix of every record alone, and the records with bytes flipped.
    for f in &all {
        for n in 0..f.data.len().min(64) {
            let _ = run(&[Feed {
                data: f.data[..n].to_vec(),
                ..f.clone()
            }]);
            let _ = plausible_midstream(f.flow, &f.data[n..]);
        }
    }
    for i in (0..all.len()).step_by(3) {
        let mut noisy = all.clone();
        let d = &mut noisy[i].data;
        let k = d.len() / 2;
        d[k] ^= 0x5a;
        let _ = run(&noisy);
    }
}
