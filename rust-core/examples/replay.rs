//! Prints a recorded event stream (OTELCOL_EBPF_RECORD output, test/golden/*.rec): one
//! line per record, or with `--spans` the spans the assembler makes of it. A debugging aid.
//! Usage: replay FILE [--spans]
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use otelcol_ebpf_core::config::Config;
use otelcol_ebpf_core::events::{decode, Event};
use otelcol_ebpf_core::process::ProcessInfo;
use otelcol_ebpf_core::spans::{Assembler, Clock};
use otelcol_ebpf_core::stats::{Stats, NAMES};
use prost::Message;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let data = std::fs::read(&args[1]).expect("recording");
    let spans = args.iter().any(|a| a == "--spans");
    let stats = Arc::new(Stats::default());
    let fake = |pid: u32, comm: &str, _: Option<&str>| ProcessInfo::from_parts(pid, comm, "", b"");
    let mut asm = Assembler::new(
        Arc::new(Config::default()),
        stats.clone(),
        Clock { offset_ns: 0 },
    )
    .with_proc_reader(fake);
    let mut off = 0;
    while off + 4 <= data.len() {
        let n = u32::from_le_bytes(data[off..off + 4].try_into().unwrap()) as usize;
        let Ok(ev) = decode(&data[off + 4..off + 4 + n]) else {
            println!("malformed record at {off}");
            break;
        };
        off += 4 + n;
        if !spans {
            match &ev {
                Event::Data {
                    hdr,
                    tuple,
                    direction,
                    total_len,
                    data,
                    tls,
                    h2_frames,
                    ..
                } => println!(
                    "{}/{} sock={:x} {}->{} {:?}{}{} total={} {:?}",
                    hdr.pid,
                    hdr.tid,
                    hdr.sock_id,
                    tuple.sport,
                    tuple.dport,
                    direction,
                    if *tls { " tls" } else { "" },
                    if *h2_frames { " h2frames" } else { "" },
                    total_len,
                    String::from_utf8_lossy(&data[..data.len().min(80)])
                ),
                other => println!("{other:?}"),
            }
        }
        asm.handle(ev);
    }
    if spans {
        asm.flush_waiting(u64::MAX);
        let (bytes, _) = asm.batch.take();
        let req = ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();
        for rs in req.resource_spans {
            for s in rs.scope_spans.into_iter().flat_map(|ss| ss.spans) {
                println!(
                    "{} kind={} trace={} span={} parent={}",
                    s.name,
                    s.kind,
                    hex(&s.trace_id),
                    hex(&s.span_id),
                    hex(&s.parent_span_id)
                );
            }
        }
        for (n, v) in NAMES.iter().zip(stats.values()) {
            println!("{n} = {v}");
        }
    }
}
