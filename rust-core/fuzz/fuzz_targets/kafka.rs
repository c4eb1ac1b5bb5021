//! Fuzz the Kafka session (both directions) and its detection helpers.
//!
//! Input layout (as `common/feeds.rs`): byte 0 chooses the piece size (1..=8, low 3
//! bits) and the gaps (the other bits); the rest is a list of feeds, each one header
//! byte (bit 0: the flow, 0 toward the server; bits 1..8: the length, 0..=127) and that
//! many bytes. Checked invariants: no panic (whole, in pieces, with gaps, close, a feed
//! after close); a `Done` of a started operation has its start ts, ends no earlier, and
//! close leaves no started operation open; seqs are never reported done twice; feeding
//! whole or in pieces (same ts) gives the same events and counters while neither run lost
//! its framing nor met garbage (topic names come from a host-wide registry the first run
//! may have filled, so they are compared only as counts); sniff never contradicts itself
//! on a prefix.
#![no_main]

use std::collections::{BTreeMap, HashSet};

use libfuzzer_sys::fuzz_target;
use otelcol_ebpf_core::protocols::kafka::{plausible_midstream, sniff, KafkaSession};
use otelcol_ebpf_core::protocols::messaging::{MsgEvent, MsgSession};
use otelcol_ebpf_core::protocols::ops::OpEvent;
use otelcol_ebpf_core::protocols::session::{Flow, Sniff};

fn feeds(data: &[u8]) -> Vec<(Flow, &[u8])> {
    let mut v = Vec::new();
    let mut p = data;
    while let Some((&h, rest)) = p.split_first() {
        let n = usize::from(h >> 1).min(rest.len());
        let flow = if h & 1 == 0 { Flow::ToServer } else { Flow::ToClient };
        v.push((flow, &rest[..n]));
        p = &rest[n..];
    }
    v
}

fn check(events: &[MsgEvent], closed: bool) {
    let mut open = BTreeMap::new();
    let mut done = HashSet::new();
    for e in events {
        match e {
            OpEvent::Started { seq, ts, .. } => assert!(open.insert(*seq, *ts).is_none()),
            OpEvent::StartedWith(_) => panic!("Kafka reports plain Started"),
            OpEvent::Done(op) => {
                assert!(done.insert(op.seq), "seq {} done twice", op.seq);
                if let Some(ts) = open.remove(&op.seq) {
                    assert_eq!(ts, op.start_ts);
                }
                assert!(op.end_ts >= op.start_ts);
                assert!(op.links.len() <= 64);
            }
        }
    }
    if closed {
        assert!(open.is_empty(), "close left operations open");
    }
}

/// Events without the names a host-wide registry may fill differently between runs.
fn comparable(events: &[MsgEvent]) -> Vec<MsgEvent> {
    events
        .iter()
        .cloned()
        .map(|e| match e {
            OpEvent::Done(mut op) => {
                op.destination = None;
                op.consumer_group = None;
                OpEvent::Done(op)
            }
            e => e,
        })
        .collect()
}

fn run(feeds: &[(Flow, &[u8])], piece: usize) -> (Vec<MsgEvent>, KafkaSession) {
    let mut s = KafkaSession::new();
    let mut out = Vec::new();
    for (i, (flow, data)) in feeds.iter().enumerate() {
        for chunk in data.chunks(piece) {
            s.feed(*flow, chunk, 0, i as u64, 1, &mut out);
        }
    }
    check(&out, false);
    (out, s)
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let feeds = feeds(rest);
    let (whole, mut s) = run(&feeds, usize::MAX);
    let piece = 1 + usize::from(ctl & 7);
    let (pieces, mut q) = run(&feeds, piece);
    let clean = |s: &KafkaSession| s.losses() == 0 && s.stats().malformed == 0;
    if clean(&s) && clean(&q) {
        assert_eq!(comparable(&whole), comparable(&pieces), "pieces of {piece}");
        let (mut a, mut b) = (s.stats(), q.stats());
        a.topic_unknown = 0;
        b.topic_unknown = 0;
        assert_eq!(a, b, "pieces of {piece}");
    }
    let mut out = whole;
    s.close(u64::MAX, &mut out);
    check(&out, true);
    s.feed(Flow::ToServer, &[0, 0, 0, 10, 0, 18, 0, 3, 0, 0, 0, 1, 0, 0], 0, 1, 1, &mut out);
    let mut out = pieces;
    q.close(u64::MAX, &mut out);
    check(&out, true);

    // Gaps after some feeds.
    let mut g = KafkaSession::new();
    let mut out = Vec::new();
    for (i, (flow, data)) in feeds.iter().enumerate() {
        let gap = if (ctl >> 3) != 0 && i % usize::from(ctl >> 3) == 0 { u64::from(ctl) * 3 } else { 0 };
        g.feed(*flow, data, gap, i as u64, 1, &mut out);
    }
    g.close(u64::MAX, &mut out);
    check(&out, true);

    for flow in [Flow::ToServer, Flow::ToClient] {
        let verdict = sniff(flow, rest);
        for n in 0..rest.len().min(64) {
            match sniff(flow, &rest[..n]) {
                Sniff::No => assert_eq!(verdict, Sniff::No, "prefix {n}"),
                Sniff::Yes => assert_eq!(verdict, Sniff::Yes, "prefix {n}"),
                Sniff::NeedMore => {}
            }
        }
        let _ = plausible_midstream(flow, rest);
    }
});
