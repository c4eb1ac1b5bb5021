//! Fuzz the AMQP 0-9-1 session (both directions), its detection helpers and the wire
//! readers (field tables, content-header properties, the headers slot).
//!
//! Input layout (as common/two_streams.rs): bytes 0..2 (little-endian u16, modulo the
//! rest's length + 1) split the rest into the client's bytes and the server's; byte 2
//! chooses the piece size (1..=8); byte 3 the conversation's chunk size and gaps. The two
//! streams are fed as alternating chunks with increasing ts. Checked: no panic (sniff,
//! plausible_midstream, feed with and without gaps, close, a feed after close); every
//! `Started` gets exactly one `Done` by close, none twice, an operation ends no earlier
//! than it started; whole and piecewise feeding (same ts) give the same events and
//! counters as long as neither run lost the framing.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use otelcol_ebpf_core::protocols::amqp::{plausible_midstream, sniff, wire, AmqpSession};
use otelcol_ebpf_core::protocols::messaging::{MsgEvent, MsgSession, MsgStats};
use otelcol_ebpf_core::protocols::session::Flow;

struct Feed<'a> {
    flow: Flow,
    data: &'a [u8],
    gap: u64,
    ts: u64,
}

fn run(feeds: &[Feed<'_>]) -> (Vec<MsgEvent>, MsgStats, u64) {
    let mut s = AmqpSession::new();
    let mut out = Vec::new();
    for f in feeds {
        s.feed(f.flow, f.data, f.gap, f.ts, 7, &mut out);
    }
    let stats = s.stats();
    let losses = s.losses();
    s.compact();
    s.close(u64::MAX, &mut out);
    let mut started = HashSet::new();
    let mut done = HashSet::new();
    for e in &out {
        match e {
            MsgEvent::Started { seq, .. } => {
                assert!(!done.contains(seq), "seq {seq} started after done");
                assert!(started.insert(*seq), "seq {seq} started twice")
            }
            MsgEvent::StartedWith(op) => {
                assert!(!done.contains(&op.seq), "seq {} started after done", op.seq);
                assert!(started.insert(op.seq), "seq {} started twice", op.seq)
            }
            MsgEvent::Done(op) => {
                assert!(done.insert(op.seq), "seq {} done twice", op.seq);
                assert!(op.end_ts >= op.start_ts, "{op:?}");
            }
        }
    }
    assert!(
        started.is_subset(&done),
        "every Started gets a Done by close"
    );
    // A session used after close must not panic either.
    s.feed(
        Flow::ToServer,
        wire::PROTOCOL_HEADER,
        0,
        u64::MAX,
        7,
        &mut out,
    );
    (out, stats, losses)
}

fuzz_target!(|data: &[u8]| {
    let _ = wire::table(data);
    let _ = wire::array(data);
    let _ = wire::props(data);
    let _ = wire::headers_slot(data);
    let _ = wire::method(data);
    let _ = wire::traceparent(data);
    if data.len() < 4 {
        return;
    }
    let rest = &data[4..];
    let split = usize::from(u16::from_le_bytes([data[0], data[1]])) % (rest.len() + 1);
    let (client, server) = rest.split_at(split);
    let piece = 1 + usize::from(data[2] % 8);
    let ctl = data[3];
    for flow in [Flow::ToServer, Flow::ToClient] {
        for d in [client, server] {
            let _ = sniff(flow, d);
            let _ = plausible_midstream(flow, d);
        }
    }
    let chunk = 8 + usize::from(ctl & 0x3f) * 4;
    let mut feeds = Vec::new();
    let (mut c, mut s) = (client.chunks(chunk), server.chunks(chunk));
    loop {
        let (a, b) = (c.next(), s.next());
        if a.is_none() && b.is_none() {
            break;
        }
        for (flow, d) in [(Flow::ToServer, a), (Flow::ToClient, b)] {
            if let Some(d) = d {
                let ts = feeds.len() as u64 + 1;
                feeds.push(Feed {
                    flow,
                    data: d,
                    gap: 0,
                    ts,
                });
            }
        }
    }
    let (whole, whole_stats, whole_losses) = run(&feeds);
    let pieces: Vec<Feed<'_>> = feeds
        .iter()
        .flat_map(|f| {
            f.data.chunks(piece).map(|p| Feed {
                flow: f.flow,
                data: p,
                gap: 0,
                ts: f.ts,
            })
        })
        .collect();
    let (split_ev, split_stats, split_losses) = run(&pieces);
    if whole_losses == 0 && split_losses == 0 {
        assert_eq!(whole, split_ev, "events differ in pieces of {piece}");
        assert_eq!(
            whole_stats, split_stats,
            "stats differ in pieces of {piece}"
        );
    }
    if ctl & 0x80 != 0 {
        let gapped: Vec<Feed<'_>> = feeds
            .iter()
            .enumerate()
            .map(|(i, f)| Feed {
                flow: f.flow,
                data: f.data,
                gap: if i % 3 == 2 {
                    u64::from(data[2]) * 3
                } else {
                    0
                },
                ts: f.ts,
            })
            .collect();
        let _ = run(&gapped);
    }
});
