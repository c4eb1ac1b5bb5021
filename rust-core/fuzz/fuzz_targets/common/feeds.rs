//! The fuzz harness of the PostgreSQL and MySQL targets: a list of feeds of either flow.
//!
//! Input layout: byte 0 chooses the piece size (1..=8, low 3 bits) and the gaps (the
//! other bits); the rest is a list of feeds, each one header byte (bit 0: the flow,
//! 0 toward the server; bits 1..8: the length, 0..=127) and that many bytes (fewer at
//! the end). Checked invariants: no panic (whole, in pieces, with gaps, close); every
//! Started is followed by exactly one Done with the same seq and start ts, and close
//! leaves none open; feeding each feed whole or in small pieces (same ts) gives the same
//! events and counters as long as neither run lost its message boundaries; sniff and
//! plausible_midstream never panic, and a prefix never contradicts the whole's answer.

use std::collections::BTreeMap;

use otelcol_ebpf_core::protocols::db::{DbEvent, DbSession, Flow, QueryTextOptions, Sniff};

/// A database protocol's parts the harness drives.
pub struct Parser<S> {
    pub new: fn(QueryTextOptions) -> S,
    /// Times the session lost its message boundaries.
    pub lost_sync: fn(&S) -> u64,
    pub sniff: fn(Flow, &[u8]) -> Sniff,
    pub midstream: fn(Flow, &[u8]) -> bool,
    /// Prefix lengths checked against the whole input's sniff.
    pub sniff_prefixes: usize,
    /// The session looked for TLS plaintext after an upgrade request: it finds it at feed
    /// boundaries only (the probes deliver it as feeds of its own), so feeding in pieces
    /// may find it elsewhere and whole and piecewise runs need not agree.
    pub went_tls: fn(&S) -> bool,
}

fn feeds(data: &[u8]) -> Vec<(Flow, &[u8])> {
    let mut v = Vec::new();
    let mut p = data;
    while let Some((&h, rest)) = p.split_first() {
        let n = usize::from(h >> 1).min(rest.len());
        let flow = if h & 1 == 0 {
            Flow::ToServer
        } else {
            Flow::ToClient
        };
        v.push((flow, &rest[..n]));
        p = &rest[n..];
    }
    v
}

fn check(events: &[DbEvent], closed: bool) {
    let mut open = BTreeMap::new();
    for e in events {
        match e {
            DbEvent::Started { seq, ts, .. } => assert!(open.insert(*seq, *ts).is_none()),
            DbEvent::StartedWith(_) => panic!("databases report plain Started"),
            DbEvent::Done(op) => {
                let ts = open.remove(&op.seq).expect("Done without Started");
                assert_eq!(ts, op.start_ts);
                assert!(op.end_ts >= op.start_ts);
            }
        }
    }
    if closed {
        assert!(open.is_empty(), "close left operations open");
    }
}

fn run<S: DbSession>(p: &Parser<S>, feeds: &[(Flow, &[u8])], piece: usize) -> (Vec<DbEvent>, S) {
    let mut s = (p.new)(QueryTextOptions::default());
    let mut out = Vec::new();
    for (i, (flow, data)) in feeds.iter().enumerate() {
        if data.is_empty() {
            continue;
        }
        for chunk in data.chunks(piece) {
            s.feed(*flow, chunk, 0, i as u64, 1, &mut out);
        }
    }
    check(&out, false);
    (out, s)
}

/// One fuzz input through `p`.
pub fn fuzz<S: DbSession>(p: &Parser<S>, data: &[u8]) {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let feeds = feeds(rest);
    let (whole, mut s) = run(p, &feeds, usize::MAX);
    let piece = 1 + usize::from(ctl & 7);
    let (pieces, mut q) = run(p, &feeds, piece);
    let clean = |s: &S| (p.lost_sync)(s) == 0 && s.stats().malformed == 0 && !(p.went_tls)(s);
    if clean(&s) && clean(&q) {
        assert_eq!(whole, pieces, "pieces of {piece}");
        assert_eq!(s.stats(), q.stats(), "pieces of {piece}");
    }
    let mut out = whole;
    s.close(u64::MAX, &mut out);
    check(&out, true);
    let mut out = pieces;
    q.close(u64::MAX, &mut out);
    check(&out, true);

    // Gaps after some feeds.
    let mut g = (p.new)(QueryTextOptions::default());
    let mut out = Vec::new();
    for (i, (flow, data)) in feeds.iter().enumerate() {
        let gap = if (ctl >> 3) != 0 && i % usize::from(ctl >> 3) == 0 {
            u64::from(ctl) * 3
        } else {
            0
        };
        g.feed(*flow, data, gap, i as u64, 1, &mut out);
    }
    g.close(u64::MAX, &mut out);
    check(&out, true);

    for flow in [Flow::ToServer, Flow::ToClient] {
        let verdict = (p.sniff)(flow, rest);
        for n in 0..rest.len().min(p.sniff_prefixes) {
            // A prefix never contradicts the full answer.
            match (p.sniff)(flow, &rest[..n]) {
                Sniff::No => assert_eq!(verdict, Sniff::No, "prefix {n}"),
                Sniff::Yes => assert_eq!(verdict, Sniff::Yes, "prefix {n}"),
                Sniff::NeedMore => {}
            }
        }
        let _ = (p.midstream)(flow, rest);
    }
}
