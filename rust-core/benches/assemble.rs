//! Events → spans → OTLP bytes on recorded streams: the core's cost per span on one core.
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use otelcol_ebpf_core::config::Config;
use otelcol_ebpf_core::events::{decode, Event};
use otelcol_ebpf_core::process::ProcessInfo;
use otelcol_ebpf_core::spans::{Assembler, Clock};
use otelcol_ebpf_core::stats::Stats;

fn records(name: &str) -> Vec<Vec<u8>> {
    let data = std::fs::read(format!(
        "{}/../test/golden/{name}.rec",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let mut out = Vec::new();
    let mut off = 0;
    while off + 4 <= data.len() {
        let n = u32::from_le_bytes(data[off..off + 4].try_into().unwrap()) as usize;
        out.push(data[off + 4..off + 4 + n].to_vec());
        off += 4 + n;
    }
    out
}

fn fake_proc(pid: u32, comm: &str, _: Option<&str>) -> ProcessInfo {
    ProcessInfo::from_parts(pid, comm, "/usr/bin/app", b"")
}

/// Replays the records through a new assembler; returns it with its batch filled.
fn replay(recs: &[Vec<u8>]) -> Assembler {
    let mut a = Assembler::new(
        Arc::new(Config::default()),
        Arc::new(Stats::default()),
        Clock { offset_ns: 0 },
    )
    .with_proc_reader(fake_proc);
    for r in recs {
        let ev: Event = decode(r).unwrap();
        a.handle(ev);
    }
    a.flush_waiting(u64::MAX);
    a
}

fn bench(c: &mut Criterion) {
    for name in ["keepalive", "nginx", "grpc"] {
        let recs = records(name);
        // The spans one replay yields, for the throughput figure.
        let spans = replay(&recs).batch.len() as u64;
        let mut g = c.benchmark_group("assemble");
        g.throughput(Throughput::Elements(spans));
        g.bench_function(format!("{name} ({spans} spans)"), |b| {
            b.iter(|| replay(&recs).batch.take().0.len())
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
