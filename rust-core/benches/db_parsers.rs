//! Each database protocol's session (protocols::PROTOCOLS) on its recorded conversations
//! (test/golden/<name>_*.bin, both directions as the kernel would capture them): bytes and
//! operations per second on one core, what parsing costs before any span is built.
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use otelcol_ebpf_core::protocols::db::QueryTextOptions;
use otelcol_ebpf_core::protocols::session::Event;
use otelcol_ebpf_core::protocols::{capture, PROTOCOLS};

fn captures(name: &str) -> Vec<Vec<capture::Record>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../test/golden");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("test/golden")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|f| f.to_str())
                .is_some_and(|f| f.starts_with(&format!("{name}_")) && f.ends_with(".bin"))
        })
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| capture::read(&std::fs::read(p).expect("capture")).expect("capture format"))
        .collect()
}

fn bench(c: &mut Criterion) {
    for proto in PROTOCOLS {
        let convs = captures(proto.name);
        if convs.is_empty() {
            continue;
        }
        let bytes: usize = convs.iter().flatten().map(|r| r.data.len()).sum();
        let replay = || {
            let mut ops = 0u64;
            let mut out = Vec::new();
            for conv in &convs {
                let mut s = (proto.session)(QueryTextOptions::default());
                for (i, r) in conv.iter().enumerate() {
                    s.feed(r.flow, black_box(&r.data), 0, r.ts, i as u32, &mut out);
                    ops += out
                        .iter()
                        .filter(|e| matches!(e, Event::ResponseEnded { .. }))
                        .count() as u64;
                    out.clear();
                }
                s.close(u64::MAX, &mut out);
                out.clear();
            }
            ops
        };
        let ops = replay();
        let mut g = c.benchmark_group(format!(
            "{} ({} captures, {} bytes, {} operations)",
            proto.name,
            convs.len(),
            bytes,
            ops
        ));
        // Operations per second; bytes per second follow from the bytes in the name.
        g.throughput(Throughput::Elements(ops));
        g.bench_function("replay", |b| b.iter(replay));
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
