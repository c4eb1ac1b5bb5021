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
    meth(ch, 60, 40, &cat(&[&[0, 0], &ss(exchange.as_bytes()), &ss(rk.as_bytes()), &[0]]))
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
        &cat(&[&ss(ctag.as_bytes()), &tag.to_be_bytes(), &[0], &ss(exchange.as_bytes()), &ss(rk.as_bytes())]),
    )
}

fn consume(ch: u16, queue: &str, ctag: &str, no_ack: bool) -> Vec<u8> {
    let bits = if no_ack { 2 } else { 0 };
    meth(ch, 60, 20, &cat(&[&[0, 0], &ss(queue.as_bytes()), &ss(ctag.as_bytes()), &[bits], &ls(b"")]))
}

fn consume_ok(ch: u16, ctag: &str) -> Vec<u8> {
    meth(ch, 60, 21, &ss(ctag.as_bytes()))
}

fn ack(ch: u16, tag: u64, multiple: bool) -> Vec<u8> {
    meth(ch, 60, 80, &cat(&[&tag.to_be_bytes(), &[u8::from(multiple)]]))
}

fn nack(ch: u16, tag: u64, multiple: bool) -> Vec<u8> {
    meth(ch, 60, 120, &cat(&[&tag.to_be_bytes(), &[u8::from(multiple) | 2]]))
}

fn reject(ch: u16, tag: u64) -> Vec<u8> {
    meth(ch, 60, 90, &cat(&[&tag.to_be_bytes(), &[0]]))
}

fn close(ch: u16, code: u16) -> Vec<u8> {
    let (class, id) = if ch == 0 { (10, 50) } else { (20, 40) };
    meth(ch, class, id, &cat(&[&code.to_be_bytes(), &ss(b"text"), &[0, 60, 0, 40]]))
}

fn confirm_select(ch: u16) -> Vec<u8> {
    meth(ch, 85, 10, &[0])
}

fn get(ch: u16, queue: &str) -> Vec<u8> {
    meth(ch, 60, 70, &cat(&[&[0, 0], &ss(queue.as_bytes()), &[0]]))
}

fn get_ok(ch: u16, tag: u64, rk: &str) -> Vec<u8> {
    meth(ch, 60, 71, &cat(&[&tag.to_be_bytes(), &[0], &ss(b""), &ss(rk.as_bytes()), &[0, 0, 0, 0]]))
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
    cat(&[&ss(b"traceparent"), b"S", &ls(TP.as_bytes()), &ss(b"app"), b"S", &ls(b"x")])
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
            MsgEvent::Started { seq, .. } => assert!(started.insert(*seq) && !done.contains(seq), "{ev:?}"),
            MsgEvent::Done(op) => {
                assert!(done.insert(op.seq), "{op:?} done twice");
                assert!(op.end_ts >= op.start_ts, "{op:?}");
                assert_eq!(op.system, MsgSystem::Rabbitmq);
            }
        }
    }
    assert!(started.is_subset(&done), "every Started gets a Done by close");
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
    let mut s = format!("{} {}", op.op_name, op.destination.as_deref().unwrap_or("?"));
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
    let path = format!("{}/../test/golden/amqp_{name}.bin", env!("CARGO_MANIFEST_DIR"));
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let recs = crate::protocols::capture::read(&data).unwrap_or_else(|e| panic!("{path}: {e}"));
    recs.into_iter()
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
        assert!(plausible_midstream(DOWN, &f.data), "{name}: {:?}", &f.data[..f.data.len().min(16)]);
    }
    // Ops: ends after starts, the start the thread of the frame that began it.
    let o = ops(&ev);
    for op in &o {
        let f = feeds.iter().find(|f| f.ts == op.start_ts).unwrap();
        assert_eq!(f.tid, op.tid, "{op:?}");
        let want = if op.op_type == OpType::Process { DOWN } else { UP };
        assert_eq!(f.flow, want, "{op:?}");
    }
    (o, s.stats())
}

#[test]
fn golden_dump() {
    for name in ["publish", "consume", "get", "bigbody"] {
        let feeds = golden(name);
        let (ev, s) = run(&feeds);
        eprintln!("{name}: {:#?} {:?}", briefs(&ev), s.stats());
    }
}
