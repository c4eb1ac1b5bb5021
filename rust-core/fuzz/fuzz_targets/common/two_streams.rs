//! The fuzz harness of the Redis and MongoDB targets: a client stream and a server stream.
//!
//! Input layout: bytes 0..2 (little-endian u16, modulo the rest's length + 1) split the
//! rest into the client's bytes and the server's; byte 2 chooses the piece size (1..=8)
//! and `max_len`; byte 3 the conversation's chunk size, sanitization and gaps. The two
//! streams are fed as alternating chunks (client, server, client...) with increasing
//! ts. Checked invariants: no panic (sniff, plausible_midstream, feed with and without
//! gaps, close, a feed after close); every `Started` gets exactly one `Done` by close,
//! seqs are unique, an operation ends no earlier than it started, query text fits
//! `max_len`; feeding every chunk whole or in small pieces (same ts) gives the same
//! events and counters as long as neither run lost the framing.

use std::collections::HashSet;

use otelcol_ebpf_core::protocols::db::{
    DbEvent, DbSession, Flow, QueryTextOptions, SessionStats, Sniff,
};

/// A database protocol's parts the harness drives.
pub struct Parser<S> {
    pub new: fn(QueryTextOptions) -> S,
    /// Bytes the session dropped after losing its framing.
    pub losses: fn(&S) -> u64,
    pub sniff: fn(Flow, &[u8]) -> Sniff,
    pub midstream: fn(Flow, &[u8]) -> bool,
    /// A valid request, fed after close.
    pub after_close: &'static [u8],
}

struct Feed<'a> {
    flow: Flow,
    data: &'a [u8],
    gap: u64,
    ts: u64,
}

fn run<S: DbSession>(
    p: &Parser<S>,
    opts: QueryTextOptions,
    feeds: &[Feed<'_>],
) -> (Vec<DbEvent>, SessionStats, u64) {
    let mut s = (p.new)(opts);
    let mut out = Vec::new();
    for f in feeds {
        s.feed(f.flow, f.data, f.gap, f.ts, 7, &mut out);
    }
    let stats = s.stats();
    let losses = (p.losses)(&s);
    s.close(u64::MAX, &mut out);
    let mut started = HashSet::new();
    let mut done = HashSet::new();
    for e in &out {
        match e {
            DbEvent::Started { seq, .. } => {
                assert!(started.insert(*seq), "seq {seq} started twice")
            }
            DbEvent::StartedWith(_) => panic!("databases report plain Started"),
            DbEvent::Done(op) => {
                assert!(
                    started.contains(&op.seq),
                    "seq {} done before started",
                    op.seq
                );
                assert!(done.insert(op.seq), "seq {} done twice", op.seq);
                assert!(op.end_ts >= op.start_ts, "{op:?}");
                if let Some(t) = &op.query_text {
                    assert!(t.len() <= opts.max_len, "{op:?}");
                }
            }
        }
    }
    assert_eq!(started, done, "every Started gets a Done by close");
    // A session used after close must not panic either.
    s.feed(Flow::ToServer, p.after_close, 0, u64::MAX, 7, &mut out);
    (out, stats, losses)
}

/// One fuzz input through `p`.
pub fn fuzz<S: DbSession>(p: &Parser<S>, data: &[u8]) {
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
            let _ = (p.sniff)(flow, d);
            let _ = (p.midstream)(flow, d);
        }
    }

    let opts = QueryTextOptions {
        capture: true,
        sanitize: ctl & 0x40 == 0,
        max_len: 1 + usize::from(data[2] >> 3) * 8,
    };
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
    let (whole, whole_stats, whole_losses) = run(p, opts, &feeds);

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
    let (split_ev, split_stats, split_losses) = run(p, opts, &pieces);
    if whole_losses == 0 && split_losses == 0 {
        assert_eq!(whole, split_ev, "events differ in pieces of {piece}");
        assert_eq!(
            whole_stats, split_stats,
            "stats differ in pieces of {piece}"
        );
    }

    if ctl & 0x80 != 0 {
        // Every third feed followed by uncaptured bytes.
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
        let _ = run(p, opts, &gapped);
    }
}
