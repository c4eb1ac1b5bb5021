//! Fuzz the HTTP/2 connection parser, its HPACK decoder and the helpers.
//!
//! Input layout: bytes 0..2 (little-endian u16, modulo the rest's length + 1)
//! split the rest into the client's bytes and the server's; byte 2 chooses the
//! piece size (1..=8) and byte 3 the gaps. Checked invariants: no panic (both
//! constructors, whole / in pieces / with gaps, close); feeding each direction
//! whole or in small pieces gives the same events and counters as long as
//! frame sync was never lost; the stream cap holds; `close` leaves nothing open;
//! a kernel frame record (any bytes) gives segments covering exactly its call.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otelcol_ebpf_core::protocols::http2::hpack::Decoder;
use otelcol_ebpf_core::protocols::http2::kernel_frames;
use otelcol_ebpf_core::protocols::http2::{
    grpc_method, is_client_preface, is_grpc, looks_like_h2, H2Conn, H2Event, Segment, MAX_STREAMS,
};

fn run(mut c: H2Conn, client: &[&[u8]], server: &[&[u8]]) -> (Vec<H2Event>, H2Conn) {
    let mut out = Vec::new();
    // One ts per direction: whole and piecewise feeding must agree.
    for p in client {
        c.feed(true, Segment::Data(p), 1, &mut out);
    }
    for p in server {
        c.feed(false, Segment::Data(p), 2, &mut out);
    }
    assert!(c.open_streams() <= MAX_STREAMS);
    (out, c)
}

fn check_events(ev: &[H2Event]) {
    for e in ev {
        if let H2Event::Request { head, .. } = e {
            if let Some(p) = &head.path {
                let _ = grpc_method(p);
            }
            if let Some(ct) = &head.content_type {
                let _ = is_grpc(ct);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let split = usize::from(u16::from_le_bytes([data[0], data[1]]));
    let piece = 1 + usize::from(data[2] & 7);
    let gaps = data[3];
    let stream = &data[4..];
    let (cb, sb) = stream.split_at(split % (stream.len() + 1));

    // The stream as a kernel frame record of a call of `split` bytes.
    if let Some(segs) = kernel_frames::segments(stream, split as u64) {
        let covered: u64 = segs
            .iter()
            .map(|s| match s {
                Segment::Data(d) => d.len() as u64,
                Segment::Gap(n) => *n,
            })
            .sum();
        assert_eq!(covered, split as u64);
        let mut c = H2Conn::new();
        let mut out = Vec::new();
        for seg in segs {
            c.feed(true, seg, 1, &mut out);
        }
    }
    let _ = looks_like_h2(stream);
    let _ = is_client_preface(stream);
    for fresh in [false, true] {
        let mut d = Decoder::new();
        if fresh {
            d.mark_fresh();
        }
        d.set_limit(u32::from(gaps) * 64);
        let _ = d.decode(stream, true, &mut |_, _| {});
        let _ = d.decode(stream, false, &mut |_, _| {});
        assert!(d.is_desynchronised());
    }

    for unknown_roles in [false, true] {
        let new = || {
            if unknown_roles {
                H2Conn::new_unknown_roles()
            } else {
                H2Conn::new()
            }
        };
        let (whole, c1) = run(new(), &[cb], &[sb]);
        check_events(&whole);
        let cp: Vec<&[u8]> = cb.chunks(piece).collect();
        let sp: Vec<&[u8]> = sb.chunks(piece).collect();
        let (pieces, mut c2) = run(new(), &cp, &sp);
        let (s1, s2) = (*c1.stats(), *c2.stats());
        if s1.frames_invalid == 0 && s2.frames_invalid == 0 {
            assert_eq!(whole, pieces, "pieces of {piece}");
            assert_eq!(s1, s2, "pieces of {piece}");
        }
        let mut out = Vec::new();
        c2.close(9999, &mut out);
        assert_eq!(c2.open_streams(), 0);
        c2.feed(true, Segment::Data(cb), 1, &mut out);
        assert!(out.iter().all(|e| matches!(e, H2Event::Unfinished { .. })));

        // Interleaved directions with gaps between pieces.
        let mut c3 = new();
        let mut out = Vec::new();
        let n = cp.len().max(sp.len());
        for k in 0..n {
            if let Some(p) = cp.get(k) {
                c3.feed(true, Segment::Data(p), k as u64, &mut out);
            }
            if gaps & (1 << (k % 8)) != 0 {
                let g = u64::from(gaps) * (k as u64 + 1) * 7;
                c3.feed(k % 2 == 0, Segment::Gap(g), k as u64, &mut out);
            }
            if let Some(p) = sp.get(k) {
                c3.feed(false, Segment::Data(p), k as u64, &mut out);
            }
        }
        assert!(c3.open_streams() <= MAX_STREAMS);
        check_events(&out);
        c3.close(u64::MAX, &mut out);
        assert_eq!(c3.open_streams(), 0);
    }
});
