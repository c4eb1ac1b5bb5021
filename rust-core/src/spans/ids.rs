//! Trace and span ids (W3C trace-context) and a fast RNG seeded from the kernel.

/// xoshiro256** seeded from getrandom(2): ids need to be unpredictable enough not to
/// collide, not cryptographic, and a syscall per id would cost more than the span.
pub struct IdGen {
    s: [u64; 4],
}

impl IdGen {
    pub fn new() -> Self {
        let mut seed = [0u8; 32];
        // SAFETY: writes at most 32 bytes into `seed`.
        let n = unsafe { libc::getrandom(seed.as_mut_ptr().cast(), seed.len(), 0) };
        if n != 32 {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1);
            seed[..8].copy_from_slice(&(t ^ std::process::id() as u64).to_le_bytes());
        }
        let mut s = [0u64; 4];
        for (i, w) in s.iter_mut().enumerate() {
            *w = u64::from_le_bytes(seed[i * 8..i * 8 + 8].try_into().unwrap());
        }
        if s == [0; 4] {
            s[0] = 0x9e37_79b9_7f4a_7c15;
        }
        IdGen { s }
    }

    fn next(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    pub fn span_id(&mut self) -> [u8; 8] {
        loop {
            let v = self.next();
            if v != 0 {
                return v.to_be_bytes();
            }
        }
    }

    pub fn trace_id(&mut self) -> [u8; 16] {
        loop {
            let (a, b) = (self.next(), self.next());
            if a | b != 0 {
                let mut id = [0u8; 16];
                id[..8].copy_from_slice(&a.to_be_bytes());
                id[8..].copy_from_slice(&b.to_be_bytes());
                return id;
            }
        }
    }
}

impl Default for IdGen {
    fn default() -> Self {
        Self::new()
    }
}

/// Head sampling as OpenTelemetry's `TraceIdRatioBased` decides it, so SDKs and agents
/// downstream agree on a trace: kept when the top 63 bits of the trace id's last 8 bytes
/// (big endian) are below ratio × 2^63. The kernel decides the traces it starts the same
/// way with `bound()` (ebpf-programs/context.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sampler {
    bound: u64,
    pub parent_based: bool,
}

impl Sampler {
    pub fn new(cfg: &crate::config::Sampling) -> Sampler {
        Sampler {
            bound: (cfg.ratio.clamp(0.0, 1.0) * (1u64 << 63) as f64) as u64,
            parent_based: cfg.parent_based,
        }
    }

    pub fn bound(&self) -> u64 {
        self.bound
    }

    pub fn by_ratio(&self, trace_id: &[u8; 16]) -> bool {
        let low = u64::from_be_bytes(trace_id[8..].try_into().unwrap());
        (low >> 1) < self.bound
    }

    /// W3C trace flags of a span in `trace_id` whose parent has `parent` flags (None: a
    /// new trace).
    pub fn flags(&self, trace_id: &[u8; 16], parent: Option<u8>) -> u8 {
        match parent {
            Some(f) if self.parent_based => f,
            p => (p.unwrap_or(0) & !1) | self.by_ratio(trace_id) as u8,
        }
    }
}

impl Default for Sampler {
    fn default() -> Self {
        Sampler::new(&crate::config::Sampling::default())
    }
}

/// OTLP span flags: bit 8 says whether the parent is known to be remote, bit 9 that it is.
pub const HAS_IS_REMOTE: u32 = 0x100;
pub const IS_REMOTE: u32 = 0x200;

/// A span's identity, fixed when its request is seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanCtx {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    /// OTLP span flags: W3C trace flags plus the remote-parent bits.
    pub flags: u32,
    pub trace_state: String,
    /// The request carried a traceparent that was malformed (and ignored).
    pub invalid_parent: bool,
}

impl SpanCtx {
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// A new trace.
    pub fn root(ids: &mut IdGen) -> SpanCtx {
        SpanCtx {
            trace_id: ids.trace_id(),
            span_id: ids.span_id(),
            parent_span_id: None,
            flags: HAS_IS_REMOTE | 1,
            trace_state: String::new(),
            invalid_parent: false,
        }
    }

    /// A child of `parent`, in the same process.
    pub fn child_of(parent: &SpanCtx, ids: &mut IdGen) -> SpanCtx {
        SpanCtx {
            trace_id: parent.trace_id,
            span_id: ids.span_id(),
            parent_span_id: Some(parent.span_id),
            flags: HAS_IS_REMOTE | (parent.flags & 0xff),
            trace_state: parent.trace_state.clone(),
            invalid_parent: false,
        }
    }

    /// A server span continuing the caller's trace.
    pub fn from_remote(tp: &TraceParent, trace_state: Option<&str>, ids: &mut IdGen) -> SpanCtx {
        SpanCtx {
            trace_id: tp.trace_id,
            span_id: ids.span_id(),
            parent_span_id: Some(tp.span_id),
            flags: HAS_IS_REMOTE | IS_REMOTE | tp.flags as u32,
            trace_state: trace_state.unwrap_or_default().to_string(),
            invalid_parent: false,
        }
    }
}

/// A parsed `traceparent` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub flags: u8,
}

impl TraceParent {
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// Parses version 00 strictly (lowercase hex, no all-zero ids). Future versions are
    /// read by their first four fields, as the spec asks.
    pub fn parse(v: &str) -> Option<TraceParent> {
        let v = v.trim();
        let b = v.as_bytes();
        if b.len() < 55 {
            return None;
        }
        let version = hex_byte(&b[0..2])?;
        if version == 0xff
            || (version == 0 && b.len() != 55)
            || (version > 0 && b.len() > 55 && b[55] != b'-')
        {
            return None;
        }
        if b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return None;
        }
        let mut trace_id = [0u8; 16];
        for (i, out) in trace_id.iter_mut().enumerate() {
            *out = hex_byte(&b[3 + 2 * i..5 + 2 * i])?;
        }
        let mut span_id = [0u8; 8];
        for (i, out) in span_id.iter_mut().enumerate() {
            *out = hex_byte(&b[36 + 2 * i..38 + 2 * i])?;
        }
        let flags = hex_byte(&b[53..55])?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(TraceParent {
            trace_id,
            span_id,
            flags,
        })
    }
}

fn hex_byte(b: &[u8]) -> Option<u8> {
    fn nib(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    Some(nib(b[0])? << 4 | nib(b[1])?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_and_rejects_invalid() {
        let tp =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(tp.trace_id[0], 0x4b);
        assert_eq!(tp.span_id[7], 0xb7);
        assert!(tp.sampled());
        for bad in [
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", // uppercase
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // zero span
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // forbidden version
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "",
        ] {
            assert!(TraceParent::parse(bad).is_none(), "{bad}");
        }
        assert!(TraceParent::parse(
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-later"
        )
        .is_some());
    }

    #[test]
    fn sampling_follows_the_trace_id_like_opentelemetry_sdks() {
        use crate::config::Sampling;
        let half = Sampler::new(&Sampling {
            ratio: 0.5,
            parent_based: true,
        });
        // Go's TraceIdRatioBased: BigEndian.Uint64(id[8:16])>>1 < uint64(0.5 * 2^63).
        let mut id = [0u8; 16];
        id[8] = 0x7f;
        assert!(half.by_ratio(&id));
        id[8] = 0x80;
        assert!(!half.by_ratio(&id));
        assert_eq!(half.flags(&id, Some(1)), 1, "the parent decides");
        assert_eq!(half.flags(&id, None), 0);
        let all = Sampler::default();
        let none = Sampler::new(&Sampling {
            ratio: 0.0,
            parent_based: false,
        });
        id[8..].copy_from_slice(&[0xff; 8]);
        assert!(all.by_ratio(&id));
        assert_eq!(
            none.flags(&id, Some(1)),
            0,
            "not parent based: the ratio decides"
        );
        assert_eq!(none.flags(&id, Some(3)), 2, "other flags stay");
        id[8..].copy_from_slice(&[0; 8]);
        assert!(!none.by_ratio(&id));
        // 10,000 random ids at 0.1: within 6 standard deviations of 1,000.
        let tenth = Sampler::new(&Sampling {
            ratio: 0.1,
            parent_based: true,
        });
        let mut g = IdGen::new();
        let kept = (0..10_000)
            .filter(|_| tenth.by_ratio(&g.trace_id()))
            .count();
        assert!((820..=1180).contains(&kept), "{kept}");
    }

    #[test]
    fn ids_are_nonzero_and_distinct() {
        let mut g = IdGen::new();
        let a = g.trace_id();
        let b = g.trace_id();
        assert_ne!(a, b);
        assert_ne!(g.span_id(), [0; 8]);
    }
}
