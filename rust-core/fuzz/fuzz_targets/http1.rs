//! Fuzz the HTTP/1 parser (both roles) and the route helpers.
//!
//! Input layout: bytes 0..2 choose the split point and options, the rest is
//! the stream, fed as two Data segments. Checked invariants: no panic; feeding
//! the stream whole, split in two, or in pieces of 1..=8 bytes gives the same
//! events and result; a variant with
//! a gap between the halves and `close()` do not panic either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otelcol_ebpf_core::protocols::http1::{
    detect, Http1Event, Http1Parser, ParseError, ResponseTo, Role, Segment,
};
use otelcol_ebpf_core::spans::route::{path_of, query_of, route_of};

fn feed_all(
    role: Role,
    expect: ResponseTo,
    segs: &[Segment<'_>],
) -> (Vec<Http1Event>, Result<(), ParseError>, Http1Parser) {
    let mut p = Http1Parser::new(role);
    for _ in 0..4 {
        p.expect_response_to(expect);
    }
    let mut out = Vec::new();
    let mut res = Ok(());
    for seg in segs {
        let r = p.feed(*seg, 1, &mut out);
        if res.is_ok() {
            res = r;
        } else {
            assert_eq!(r, Ok(()), "feed after an error must be a no-op");
        }
    }
    assert_eq!(res.is_err(), p.is_broken());
    (out, res, p)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let ctl = u16::from_le_bytes([data[0], data[1]]);
    let stream = &data[2..];
    let split = usize::from(ctl) % (stream.len() + 1);
    let (a, b) = stream.split_at(split);
    let expect = match ctl >> 14 {
        1 => ResponseTo::Head,
        2 => ResponseTo::Connect,
        _ => ResponseTo::Other,
    };

    let _ = detect(stream);
    for role in [Role::Requests, Role::Responses] {
        let (whole, whole_res, _) = feed_all(role, expect, &[Segment::Data(stream)]);
        let (split_ev, split_res, mut p) =
            feed_all(role, expect, &[Segment::Data(a), Segment::Data(b)]);
        assert_eq!(whole_res, split_res, "result differs when split at {split}");
        assert_eq!(whole, split_ev, "events differ when split at {split}");
        // Small pieces (1..=8 bytes) must agree too.
        let piece = 1 + usize::from(ctl >> 8) % 8;
        let pieces: Vec<_> = stream.chunks(piece).map(Segment::Data).collect();
        let (piece_ev, piece_res, _) = feed_all(role, expect, &pieces);
        assert_eq!(
            (&whole, whole_res),
            (&piece_ev, piece_res),
            "pieces of {piece}"
        );
        let mut out = Vec::new();
        let _ = p.close(&mut out);
        assert!(p.is_idle());

        let gap = u64::from(ctl & 0x3fff);
        let (ev, _, mut p) = feed_all(
            role,
            expect,
            &[Segment::Data(a), Segment::Gap(gap), Segment::Data(b)],
        );
        let _ = p.close(&mut out);
        for e in whole.iter().chain(ev.iter()) {
            if let Http1Event::Request { head, .. } = e {
                let _ = route_of(&head.target);
                let _ = path_of(&head.target);
                let _ = query_of(&head.target);
            }
        }
    }
    if let Ok(s) = std::str::from_utf8(stream) {
        let r = route_of(s);
        assert!(!r.is_empty());
        let _ = path_of(s);
        let _ = query_of(s);
    }
});
