//! Runs the core without the collector and prints one line per span: a debugging aid and
//! the driver `make bench` uses to measure the core's CPU cost.
//! Usage: trace [seconds] [config-json]
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use otelcol_ebpf_core::{
    config::Config,
    runtime::{Batch, Receiver},
    stats,
};
use prost::Message;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let secs: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    let cfg = Config::from_json(args.get(2).map(String::as_str).unwrap_or("{}").as_bytes())
        .expect("config");
    let quiet = std::env::var_os("QUIET").is_some();
    let mut r = Receiver::new(cfg);
    let t0 = Instant::now();
    if let Err(e) = r.start() {
        eprintln!("start: {e}");
        std::process::exit(1);
    }
    eprintln!("started in {} ms", t0.elapsed().as_millis());
    eprintln!("{}", r.info());
    let end = Instant::now() + Duration::from_secs(secs);
    let mut total = 0;
    while Instant::now() < end {
        if let Batch::Data { bytes, .. } = r.next_batch(Duration::from_millis(100)) {
            let req = ExportTraceServiceRequest::decode(bytes.as_slice()).expect("decode");
            for rs in req.resource_spans {
                for ss in rs.scope_spans {
                    for s in ss.spans {
                        total += 1;
                        if !quiet {
                            let attrs: Vec<String> = s
                                .attributes
                                .iter()
                                .map(|kv| {
                                    format!(
                                        "{}={:?}",
                                        kv.key,
                                        kv.value.as_ref().and_then(|v| v.value.as_ref())
                                    )
                                })
                                .collect();
                            println!(
                                "{} kind={} dur={}us {}",
                                s.name,
                                s.kind,
                                (s.end_time_unix_nano - s.start_time_unix_nano) / 1000,
                                attrs.join(" ")
                            );
                        }
                    }
                }
            }
        }
    }
    r.stop();
    while let Batch::Data { .. } = r.next_batch(Duration::from_millis(10)) {}
    for (n, v) in stats::NAMES.iter().zip(r.stats()) {
        eprintln!("{n} = {v}");
    }
    eprintln!("spans printed = {total}");
}
