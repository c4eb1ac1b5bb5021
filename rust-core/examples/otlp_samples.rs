//! Writes OTLP batches as the core encodes them (otlp.rs) for the Go receiver's decoder
//! tests and benchmark (go-receiver/testdata/otlp/*.pb): the spans of every recorded
//! stream (test/golden/*.rec), hand-made ones (databases, unicode, empty values, errors,
//! several processes), and `bench_nginx.pb`, one batch of BATCH_MAX_SPANS server spans
//! like those of the nginx benchmark (scripts/cpu_profile.py).
//! Usage: otlp_samples DIR
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use otelcol_ebpf_core::config::Config;
use otelcol_ebpf_core::events::decode;
use otelcol_ebpf_core::otlp::BatchBuilder;
use otelcol_ebpf_core::process::ProcessInfo;
use otelcol_ebpf_core::record::{AttrValue, Link, SpanKind, SpanRecord};
use otelcol_ebpf_core::spans::{Assembler, Clock};
use otelcol_ebpf_core::stats::Stats;
use prost::Message;

const BENCH_SPANS: usize = 512;

fn proc_with_env(pid: u32, comm: &str, _exec: Option<&str>) -> ProcessInfo {
    let env = b"OTEL_RESOURCE_ATTRIBUTES=deployment.environment.name=test,service.version=1.2.3\0";
    ProcessInfo::from_parts(pid, comm, &format!("/usr/sbin/{comm}"), env)
}

/// The batch the assembler makes of a recorded stream.
fn replay(path: &std::path::Path) -> Vec<u8> {
    let data = std::fs::read(path).expect("recording");
    let stats = Arc::new(Stats::default());
    let mut asm = Assembler::new(
        Arc::new(Config::default()),
        stats,
        Clock {
            offset_ns: 1_700_000_000_000_000_000,
        },
    )
    .with_proc_reader(proc_with_env);
    asm.set_propagating(path.ends_with("inject.rec"));
    let mut off = 0;
    while off + 4 <= data.len() {
        let n = u32::from_le_bytes(data[off..off + 4].try_into().unwrap()) as usize;
        asm.handle(decode(&data[off + 4..off + 4 + n]).expect("record decodes"));
        off += 4 + n;
    }
    asm.flush_waiting(u64::MAX);
    asm.batch.take().0
}

fn span(
    p: &Arc<ProcessInfo>,
    i: u8,
    name: &str,
    attrs: Vec<(&'static str, AttrValue)>,
) -> SpanRecord {
    SpanRecord {
        trace_id: [i; 16],
        span_id: [i.wrapping_add(1); 8],
        parent_span_id: None,
        trace_state: String::new(),
        flags: 0x101,
        name: name.to_string(),
        kind: SpanKind::Client,
        start_ns: 1_700_000_000_000_000_000 + i as u64,
        end_ns: 1_700_000_000_000_500_000 + i as u64,
        attrs,
        error: None,
        links: Vec::new(),
        process: p.clone(),
    }
}

/// Database spans, unusual strings and values, errors, three processes.
fn handmade() -> Vec<u8> {
    let s = |v: &str| AttrValue::Str(v.to_string());
    let pg = Arc::new(ProcessInfo::from_parts(
        10,
        "app",
        "/srv/app",
        b"OTEL_SERVICE_NAME=shop\0",
    ));
    let odd = Arc::new(ProcessInfo::from_parts(
        11,
        "ünï",
        "",
        "OTEL_RESOURCE_ATTRIBUTES=team=,k=€\0".as_bytes(),
    ));
    let bare = Arc::new(ProcessInfo::from_parts(12, "", "", b""));
    let mut b = BatchBuilder::new();
    let db = vec![
        ("db.system.name", AttrValue::Static("postgresql")),
        ("db.namespace", s("shop")),
        ("db.collection.name", s("public.users")),
        ("db.operation.name", s("SELECT")),
        ("db.query.summary", s("SELECT public.users")),
        ("db.query.text", s("SELECT * FROM users WHERE id = $1")),
        ("server.address", s("127.0.0.1")),
        ("server.port", AttrValue::Int(5432)),
        ("db.operation.batch.size", AttrValue::Int(3)),
    ];
    b.push(span(&pg, 1, "SELECT public.users", db.clone()));
    let mut failed = span(&pg, 2, "SELECT public.users", db);
    failed.error = Some("ERROR: relation \"users\" does not exist".into());
    failed.attrs.push(("db.response.status_code", s("42P01")));
    failed.attrs.push(("error.type", s("42P01")));
    b.push(failed);
    let mut closed = span(
        &pg,
        3,
        "redis",
        vec![("db.system.name", AttrValue::Static("redis"))],
    );
    closed.error = Some(String::new());
    closed.kind = SpanKind::Server;
    closed.parent_span_id = Some([7; 8]);
    closed.trace_state = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7".into();
    b.push(closed);
    b.push(span(
        &odd,
        4,
        "GET /ünïcödé/日本語",
        vec![
            ("url.path", s("/ünïcödé/日本語")),
            ("http.route", s("")),
            ("user_agent.original", s("")),
            ("http.response.status_code", AttrValue::Int(-1)),
            ("server.port", AttrValue::Int(i64::MIN)),
            ("client.port", AttrValue::Int(i64::MAX)),
            ("long", s(&"x".repeat(5000))),
            ("", s("empty key")),
        ],
    ));
    b.push(span(&odd, 5, "", vec![]));
    // Messaging: a producer, and a poll linked to two records' producers.
    let mut send = span(
        &pg,
        7,
        "send orders",
        vec![("messaging.system", AttrValue::Static("kafka"))],
    );
    send.kind = SpanKind::Producer;
    b.push(send);
    let mut poll = span(
        &pg,
        8,
        "poll orders",
        vec![("messaging.system", AttrValue::Static("kafka"))],
    );
    poll.kind = SpanKind::Consumer;
    poll.links = vec![
        Link {
            trace_id: [7; 16],
            span_id: [8; 8],
            flags: 1,
        },
        Link {
            trace_id: [9; 16],
            span_id: [10; 8],
            flags: 0,
        },
    ];
    b.push(poll);
    let mut zero = span(&bare, 6, "", vec![]);
    zero.trace_id = [0; 16];
    zero.span_id = [0; 8];
    zero.flags = 0;
    zero.start_ns = 0;
    zero.end_ns = 0;
    b.push(zero);
    b.take().0
}

/// A resource attribute set twice. The core writes each key once (the environment's
/// value wins), but OTLP allows repeats and keeps both, so the Go side's fast path must
/// leave such a batch to pdata: the repeat is added here to the core's encoding.
fn duplicate_key() -> Vec<u8> {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
    let env = b"OTEL_RESOURCE_ATTRIBUTES=host.name=dup\0";
    let p = Arc::new(ProcessInfo::from_parts(13, "dup", "/bin/dup", env));
    let mut b = BatchBuilder::new();
    b.push(span(&p, 1, "GET", vec![]));
    let mut req = ExportTraceServiceRequest::decode(b.take().0.as_slice()).unwrap();
    let res = req.resource_spans[0].resource.as_mut().unwrap();
    res.attributes.push(KeyValue {
        key: "host.name".into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue("again".into())),
        }),
        ..Default::default()
    });
    req.encode_to_vec()
}

/// A process in a Kubernetes pod's container with service attributes from its
/// environment and a version from its build info.
fn container_resource() -> Vec<u8> {
    use otelcol_ebpf_core::cgroup::CgroupInfo;
    use otelcol_ebpf_core::process::Facts;
    let id = "3f4e2b1c0d9a8b7c6d5e4f30211203948576afbecd0123456789abcdef012345";
    let p = Arc::new(ProcessInfo::build(Facts {
        pid: 14,
        comm: "cart",
        exe_path: "/app/cart",
        environ: b"OTEL_RESOURCE_ATTRIBUTES=service.namespace=shop,k8s.container.name=cart\0",
        cgroup: CgroupInfo::parse(&format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod8a1b2c3d_4e5f_6071_8293_a4b5c6d7e8f9.slice/cri-containerd-{id}.scope\n"
        )),
        go_version: Some("v1.4.2".into()),
        ..Default::default()
    }));
    let mut b = BatchBuilder::new();
    b.push(span(&p, 1, "GET /cart", vec![]));
    b.take().0
}

/// BENCH_SPANS server spans of one process, made from a recorded nginx span.
fn bench_nginx(golden: &std::path::Path) -> Vec<u8> {
    let req =
        ExportTraceServiceRequest::decode(replay(&golden.join("nginx.rec")).as_slice()).unwrap();
    let model = req
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .find(|s| s.kind == 2 && s.name == "GET /small.txt")
        .expect("a server span");
    let attrs: Vec<(&'static str, AttrValue)> = model
        .attributes
        .iter()
        .map(|kv| {
            let key: &'static str = Box::leak(kv.key.clone().into_boxed_str());
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::IntValue(i)) => AttrValue::Int(*i),
                Some(Value::StringValue(s)) => AttrValue::Str(s.clone()),
                other => panic!("{key}: {other:?}"),
            };
            (key, v)
        })
        .collect();
    let p = Arc::new(proc_with_env(4242, "nginx", None));
    let mut b = BatchBuilder::new();
    for i in 0..BENCH_SPANS {
        let mut r = span(&p, i as u8, &model.name, attrs.clone());
        r.kind = SpanKind::Server;
        r.trace_id[..8].copy_from_slice(&(i as u64).to_le_bytes());
        r.span_id = (i as u64 * 7919).to_le_bytes();
        for (k, v) in r.attrs.iter_mut() {
            if *k == "client.port" || *k == "network.peer.port" {
                *v = AttrValue::Int(40000 + (i % 32) as i64);
            }
        }
        b.push(r);
    }
    b.take().0
}

fn main() {
    let out = std::path::PathBuf::from(std::env::args().nth(1).expect("usage: otlp_samples DIR"));
    let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../test/golden");
    std::fs::create_dir_all(&out).unwrap();
    let mut names: Vec<_> = std::fs::read_dir(&golden)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rec"))
        .collect();
    names.sort();
    let write = |name: String, bytes: Vec<u8>| {
        let req = ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();
        let spans: usize = req
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        println!("{name}: {} bytes, {spans} spans", bytes.len());
        std::fs::write(out.join(name), bytes).unwrap();
    };
    for p in names {
        let stem = p.file_stem().unwrap().to_string_lossy().to_string();
        write(format!("rec_{stem}.pb"), replay(&p));
    }
    write("handmade.pb".into(), handmade());
    write("duplicate_key.pb".into(), duplicate_key());
    write("container.pb".into(), container_resource());
    write("bench_nginx.pb".into(), bench_nginx(&golden));
}
