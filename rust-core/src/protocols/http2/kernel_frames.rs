//! Records of HTTP/2 connections the kernel follows frame by frame (ebpf-programs/h2.h):
//! they hold the frame headers and non-DATA payloads of a call, DATA payloads left out,
//! after the state the direction was in when the call started. This walks the same frames
//! and gives the call back as segments: bytes that are here, and counts of bytes that
//! crossed the wire but are not (DATA payloads, or what did not fit in the record).

use super::Segment;

/// Size of `struct h2_frame_state` at the start of such a record.
pub const STATE_LEN: usize = 16;
const HEADER_LEN: u8 = 9;

/// The call's segments, in order, covering `total` bytes; None if the record is too short
/// to hold the state.
pub fn segments(data: &[u8], total: u64) -> Option<Vec<Segment<'_>>> {
    if data.len() < STATE_LEN {
        return None;
    }
    let word = |i: usize| u32::from_ne_bytes(data[i..i + 4].try_into().unwrap());
    let mut rem = u64::from(word(0));
    let mut head = word(4);
    let mut have = data[8].min(HEADER_LEN - 1);
    let mut is_data = data[9] != 0;
    let body = &data[STATE_LEN..];

    let mut out = Vec::new();
    let mut run = 0; // start in `body` of bytes not pushed yet
    let mut c = 0; // bytes of `body` walked
    let mut v = 0; // bytes of the call walked
    let gap = |out: &mut Vec<Segment<'_>>, n: u64| match out.last_mut() {
        Some(Segment::Gap(g)) => *g += n,
        _ => out.push(Segment::Gap(n)),
    };
    while v < total {
        let avail = (body.len() - c) as u64;
        if rem > 0 {
            let n = rem.min(total - v);
            if is_data {
                if c > run {
                    out.push(Segment::Data(&body[run..c]));
                }
                run = c;
                gap(&mut out, n);
            } else if n > avail {
                // The record ran out of room: the rest of the call is unknown.
                c += avail as usize;
                v += avail;
                break;
            } else {
                c += n as usize;
            }
            rem -= n;
            v += n;
        } else {
            let n = u64::from(HEADER_LEN - have).min(total - v);
            if n > avail {
                c += avail as usize;
                v += avail;
                break;
            }
            for &b in &body[c..c + n as usize] {
                if have < 4 {
                    head = head << 8 | u32::from(b);
                }
                have += 1;
            }
            c += n as usize;
            v += n;
            if have == HEADER_LEN {
                rem = u64::from(head >> 8);
                is_data = head & 0xff == 0;
                head = 0;
                have = 0;
            }
        }
    }
    if c > run {
        out.push(Segment::Data(&body[run..c]));
    }
    if v < total {
        gap(&mut out, total - v);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What ebpf-programs/h2.h makes of one call, given the direction's state: the record
    /// (state, then bytes kept, at most `room` of them) and the state after the call.
    fn kernel(st: &mut ([u32; 2], u8, bool), call: &[u8], room: usize) -> Vec<u8> {
        let (ref mut rh, ref mut have, ref mut is_data) = *st;
        let mut rec = Vec::new();
        rec.extend_from_slice(&rh[0].to_ne_bytes());
        rec.extend_from_slice(&rh[1].to_ne_bytes());
        rec.extend_from_slice(&[*have, *is_data as u8, 0, 0, 0, 0, 0, 0]);
        let mut full = false;
        let mut keep = |rec: &mut Vec<u8>, b: &[u8]| {
            let k = b.len().min((STATE_LEN + room).saturating_sub(rec.len()));
            if !full {
                rec.extend_from_slice(&b[..k]);
            }
            full |= k < b.len();
        };
        let mut i = 0;
        while i < call.len() {
            if rh[0] > 0 {
                let n = (rh[0] as usize).min(call.len() - i);
                if !*is_data {
                    keep(&mut rec, &call[i..i + n]);
                }
                rh[0] -= n as u32;
                i += n;
            } else {
                let b = call[i];
                keep(&mut rec, &[b]);
                if *have < 4 {
                    rh[1] = rh[1] << 8 | u32::from(b);
                }
                *have += 1;
                if *have == 9 {
                    rh[0] = rh[1] >> 8;
                    *is_data = rh[1] & 0xff == 0;
                    rh[1] = 0;
                    *have = 0;
                }
                i += 1;
            }
        }
        rec
    }

    fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let n = payload.len() as u32;
        let mut f = vec![(n >> 16) as u8, (n >> 8) as u8, n as u8, ty, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// The stream as userspace sees it: DATA payloads as `None`.
    fn expected(stream: &[u8], preface: usize) -> Vec<Option<u8>> {
        let mut out: Vec<Option<u8>> = stream[..preface].iter().map(|&b| Some(b)).collect();
        let mut i = preface;
        while i < stream.len() {
            let n = (usize::from(stream[i]) << 16)
                | (usize::from(stream[i + 1]) << 8)
                | usize::from(stream[i + 2]);
            let data = stream[i + 3] == 0;
            out.extend(stream[i..i + 9].iter().map(|&b| Some(b)));
            out.extend(
                stream[i + 9..i + 9 + n]
                    .iter()
                    .map(|&b| if data { None } else { Some(b) }),
            );
            i += 9 + n;
        }
        out
    }

    fn flatten(segs: &[Segment<'_>]) -> Vec<Option<u8>> {
        let mut out = Vec::new();
        for s in segs {
            match s {
                Segment::Data(d) => out.extend(d.iter().map(|&b| Some(b))),
                Segment::Gap(n) => out.extend(std::iter::repeat_n(None, *n as usize)),
            }
        }
        out
    }

    fn sample() -> Vec<u8> {
        let mut s = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        s.extend(frame(4, 0, 0, &[0, 3, 0, 0, 0, 100]));
        s.extend(frame(1, 4, 1, b"header block one"));
        s.extend(frame(0, 0, 1, &[7; 20_000]));
        s.extend(frame(1, 5, 3, b"second stream's headers"));
        s.extend(frame(0, 1, 1, &[8; 9000]));
        s.extend(frame(0, 1, 3, &[]));
        s.extend(frame(3, 0, 5, &[0, 0, 0, 8]));
        s
    }

    #[test]
    fn every_split_gives_back_headers_and_control_payloads() {
        let s = sample();
        let want = expected(&s, 24);
        // Calls cut everywhere: inside headers, inside payloads, one byte long.
        for cut in [1usize, 2, 5, 9, 13, 24, 100, 4096, 16_384, 65_536] {
            let mut st = ([24, 0], 0, false);
            let mut got = Vec::new();
            for call in s.chunks(cut) {
                let rec = kernel(&mut st, call, 4095);
                let segs = segments(&rec, call.len() as u64).unwrap();
                assert_eq!(flatten(&segs).len(), call.len(), "cut {cut}");
                got.extend(flatten(&segs));
            }
            assert_eq!(got, want, "cut {cut}");
        }
    }

    #[test]
    fn a_full_record_ends_in_a_gap_and_the_next_call_is_whole_again() {
        let mut s = frame(1, 4, 1, &[b'h'; 5000]);
        let second = frame(1, 5, 3, b"next");
        s.extend(&second);
        let mut st = ([0, 0], 0, false);
        let rec = kernel(&mut st, &s[..4600], 4095);
        let segs = segments(&rec, 4600).unwrap();
        assert!(
            matches!(segs[..], [Segment::Data(d), Segment::Gap(g)] if d.len() == 4095 && g == 505)
        );
        // The kernel kept walking: the next call starts exactly where it should.
        let rec = kernel(&mut st, &s[4600..], 4095);
        assert_eq!(
            flatten(&segments(&rec, (s.len() - 4600) as u64).unwrap()),
            expected(&s, 0)[4600..]
        );
    }

    #[test]
    fn data_payloads_cost_nothing_and_merge_into_one_gap() {
        let mut s = Vec::new();
        for _ in 0..4 {
            s.extend(frame(0, 0, 1, &[1; 16_384]));
        }
        let mut st = ([0, 0], 0, false);
        let rec = kernel(&mut st, &s, 4095);
        assert_eq!(rec.len(), STATE_LEN + 4 * 9);
        let segs = segments(&rec, s.len() as u64).unwrap();
        assert_eq!(segs.len(), 8); // header, payload gap, four times
    }

    #[test]
    fn short_records_are_refused() {
        assert!(segments(&[0; 15], 10).is_none());
    }
}
