//! Replays recorded kernel event streams (test/golden/*.rec, made by
//! test/golden/record.py) through the assembler and checks the OTLP spans it produces.

use std::collections::HashMap;
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use otelcol_ebpf_core::config::Config;
use otelcol_ebpf_core::events::{decode, encode, Event};
use otelcol_ebpf_core::process::ProcessInfo;
use otelcol_ebpf_core::spans::{Assembler, Clock};
use otelcol_ebpf_core::stats::{Stats, NAMES};
use prost::Message;

#[derive(Debug)]
struct S {
    name: String,
    kind: i32,
    service: String,
    trace_id: String,
    span_id: String,
    parent: String,
    trace_state: String,
    error: bool,
    start: u64,
    end: u64,
    attrs: HashMap<String, Value>,
}

impl S {
    fn str(&self, k: &str) -> &str {
        match self.attrs.get(k) {
            Some(Value::StringValue(s)) => s,
            other => panic!("{k}: {other:?} in {self:?}"),
        }
    }
    fn int(&self, k: &str) -> i64 {
        match self.attrs.get(k) {
            Some(Value::IntValue(v)) => *v,
            other => panic!("{k}: {other:?} in {self:?}"),
        }
    }
    fn server(&self) -> bool {
        self.kind == 2
    }
}

fn fake_proc(pid: u32, comm: &str, _exec: Option<&str>) -> ProcessInfo {
    ProcessInfo::from_parts(pid, comm, "", b"")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The records of a recorded stream, in order.
fn load(name: &str) -> Vec<Vec<u8>> {
    let path = format!("{}/../test/golden/{name}.rec", env!("CARGO_MANIFEST_DIR"));
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut recs = Vec::new();
    let mut off = 0;
    while off + 4 <= data.len() {
        let n = u32::from_le_bytes(data[off..off + 4].try_into().unwrap()) as usize;
        recs.push(data[off + 4..off + 4 + n].to_vec());
        off += 4 + n;
    }
    assert_eq!(off, data.len(), "trailing bytes in {path}");
    recs
}

fn replay_with(name: &str, cfg: Config) -> (Vec<S>, HashMap<&'static str, u64>) {
    // Recorded with context_propagation: headers (the kernel's ids are in the stream).
    replay_records(&load(name), cfg, name == "inject")
}

fn replay_records(
    recs: &[Vec<u8>],
    cfg: Config,
    propagating: bool,
) -> (Vec<S>, HashMap<&'static str, u64>) {
    let stats = Arc::new(Stats::default());
    let mut asm = Assembler::new(Arc::new(cfg), stats.clone(), Clock { offset_ns: 0 })
        .with_proc_reader(fake_proc);
    asm.set_propagating(propagating);
    for rec in recs {
        asm.handle(decode(rec).expect("record decodes"));
    }
    asm.flush_waiting(u64::MAX);
    let (bytes, count) = asm.batch.take();
    let req = ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();
    let mut spans = Vec::new();
    for rs in req.resource_spans {
        let service = rs
            .resource
            .unwrap()
            .attributes
            .into_iter()
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value?.value)
            .map(|v| match v {
                Value::StringValue(s) => s,
                _ => String::new(),
            })
            .unwrap();
        for ss in rs.scope_spans {
            for sp in ss.spans {
                spans.push(S {
                    name: sp.name,
                    kind: sp.kind,
                    service: service.clone(),
                    trace_id: hex(&sp.trace_id),
                    span_id: hex(&sp.span_id),
                    parent: hex(&sp.parent_span_id),
                    trace_state: sp.trace_state,
                    error: sp.status.map(|s| s.code == 2).unwrap_or(false),
                    start: sp.start_time_unix_nano,
                    end: sp.end_time_unix_nano,
                    attrs: sp
                        .attributes
                        .into_iter()
                        .filter_map(|kv| Some((kv.key, kv.value?.value?)))
                        .collect(),
                });
            }
        }
    }
    assert_eq!(spans.len() as u64, count);
    spans.sort_by_key(|s| (s.kind, s.start));
    let st: HashMap<_, _> = NAMES.iter().copied().zip(stats.values()).collect();
    (spans, st)
}

fn replay(name: &str) -> (Vec<S>, HashMap<&'static str, u64>) {
    replay_with(name, Config::default())
}

fn of_kind(spans: &[S], server: bool) -> Vec<&S> {
    spans.iter().filter(|s| s.server() == server).collect()
}

#[test]
fn keepalive_many_requests_on_one_connection() {
    let (spans, _) = replay("keepalive");
    let servers = of_kind(&spans, true);
    let clients = of_kind(&spans, false);
    assert_eq!(servers.len(), 5);
    assert_eq!(clients.len(), 5);
    for (i, s) in servers.iter().enumerate() {
        assert_eq!(s.name, "GET /users/{id}");
        assert_eq!(s.str("url.path"), format!("/users/{}", i + 1));
        assert_eq!(s.str("http.route"), "/users/{id}");
        assert_eq!(s.int("http.response.status_code"), 200);
        assert_eq!(s.str("user_agent.original"), "golden/1");
        assert_eq!(s.str("network.protocol.version"), "1.1");
        assert_eq!(s.int("client.port"), clients[0].int("network.local.port"));
        assert!(s.end >= s.start);
        assert!(!s.error);
    }
    assert!(servers
        .iter()
        .all(|s| s.int("network.peer.port") == servers[0].int("network.peer.port")));
    for c in &clients {
        assert!(
            c.str("url.full").starts_with("http://127.0.0.1:"),
            "{}",
            c.str("url.full")
        );
        assert!(c.str("url.full").ends_with("?verbose=1"));
    }
    // Secrets never leave the parser.
    let dump = format!("{spans:?}");
    assert!(!dump.contains("SECRET-TOKEN"));
}

#[test]
fn a_new_socket_at_a_closed_ones_address_is_a_new_connection() {
    // The keep-alive exchange twice: the second time from other sockets (another client
    // port) at the same kernel addresses, the first sockets' close never seen (a record
    // that came after it re-created them).
    let first = load("keepalive");
    let (orig, _) = replay("keepalive");
    let port = of_kind(&orig, false)[0].int("network.local.port");
    let shift = 1_000_000_000;
    let mut recs: Vec<Vec<u8>> = first
        .iter()
        .filter(|r| !matches!(decode(r), Ok(Event::Close { .. })))
        .cloned()
        .collect();
    for r in &first {
        let mut ev = decode(r).unwrap();
        match &mut ev {
            Event::Data { hdr, tuple, .. } => {
                hdr.ts_ns += shift;
                for p in [&mut tuple.sport, &mut tuple.dport] {
                    if i64::from(*p) == port {
                        *p -= 1000;
                    }
                }
            }
            Event::Close { hdr } | Event::Exit { hdr } | Event::Exec { hdr, .. } => {
                hdr.ts_ns += shift
            }
            Event::Ctx(c) => c.hdr.ts_ns += shift,
        }
        recs.push(encode(&ev));
    }
    let (spans, _) = replay_records(&recs, Config::default(), false);
    let servers = of_kind(&spans, true);
    let clients = of_kind(&spans, false);
    assert_eq!((servers.len(), clients.len()), (10, 10));
    for (i, (s, c)) in servers.iter().zip(&clients).enumerate() {
        let want = if i < 5 { port } else { port - 1000 };
        assert_eq!(c.int("network.local.port"), want, "{c:?}");
        assert_eq!(s.int("client.port"), want, "{s:?}");
        assert_eq!(s.str("url.path"), format!("/users/{}", i % 5 + 1));
    }
}

#[test]
fn calls_made_while_serving_are_children_of_the_server_span() {
    // 8 concurrent requests through a thread-per-request app to a backend.
    let (spans, _) = replay("chain");
    let proxy_servers: Vec<_> = spans
        .iter()
        .filter(|s| s.server() && s.str("url.path").starts_with("/proxy/"))
        .collect();
    let proxy_clients: Vec<_> = spans
        .iter()
        .filter(|s| !s.server() && !s.str("url.path").starts_with("/proxy/"))
        .collect();
    assert_eq!(proxy_servers.len(), 8);
    assert_eq!(proxy_clients.len(), 8);
    for srv in &proxy_servers {
        let user = srv.str("url.path").rsplit('/').next().unwrap().to_string();
        let kids: Vec<_> = proxy_clients
            .iter()
            .filter(|c| c.parent == srv.span_id)
            .collect();
        assert_eq!(kids.len(), 1, "{srv:?}");
        assert_eq!(kids[0].trace_id, srv.trace_id);
        assert_eq!(kids[0].str("url.path"), format!("/users/{user}"));
        assert_eq!(kids[0].service, srv.service);
        assert!(kids[0].start >= srv.start && kids[0].end <= srv.end);
    }
    // Same-node linking: both ends of every connection are traced here, so each request
    // is one trace: outer CLIENT → proxy SERVER → proxy CLIENT → backend SERVER.
    let outer: Vec<_> = spans
        .iter()
        .filter(|s| !s.server() && s.str("url.path").starts_with("/proxy/"))
        .collect();
    let backend: Vec<_> = spans
        .iter()
        .filter(|s| s.server() && !s.str("url.path").starts_with("/proxy/"))
        .collect();
    assert_eq!((outer.len(), backend.len()), (8, 8));
    for srv in &proxy_servers {
        let caller: Vec<_> = outer.iter().filter(|c| c.span_id == srv.parent).collect();
        assert_eq!(caller.len(), 1, "{srv:?}");
        assert!(
            caller[0].parent.is_empty(),
            "the outer client starts the trace"
        );
        assert_eq!(caller[0].trace_id, srv.trace_id);
        assert_eq!(caller[0].str("url.path"), srv.str("url.path"));
        let call = proxy_clients
            .iter()
            .find(|c| c.parent == srv.span_id)
            .unwrap();
        let answer: Vec<_> = backend
            .iter()
            .filter(|b| b.parent == call.span_id)
            .collect();
        assert_eq!(answer.len(), 1, "{call:?}");
        assert_eq!(answer[0].trace_id, srv.trace_id);
        assert_eq!(answer[0].str("url.path"), call.str("url.path"));
    }
}

#[test]
fn headers_the_kernel_inserted_connect_the_chain() {
    // The chain with traceparent inserted by the kernel: odd clients sent their own
    // traceparent and tracestate, even ones none (then their own request got one).
    let (spans, st) = replay("inject");
    let pick = |server: bool, proxy: bool| -> Vec<&S> {
        spans
            .iter()
            .filter(|s| s.server() == server && s.str("url.path").starts_with("/proxy/") == proxy)
            .collect()
    };
    let (outer, front, calls, back) = (
        pick(false, true),
        pick(true, true),
        pick(false, false),
        pick(true, false),
    );
    assert_eq!(
        (outer.len(), front.len(), calls.len(), back.len()),
        (8, 8, 8, 8)
    );
    for srv in &front {
        let i: u64 = srv
            .str("url.path")
            .rsplit('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        if i % 2 == 1 {
            // Continues the caller's own header.
            assert_eq!(srv.trace_id, format!("{i:032x}"));
            assert_eq!(srv.parent, format!("{i:016x}"));
            assert_eq!(srv.trace_state, format!("vendor=v{i}"));
        } else {
            // The kernel's header in the outer client's request: its CLIENT span's ids.
            let caller: Vec<_> = outer.iter().filter(|c| c.span_id == srv.parent).collect();
            assert_eq!(caller.len(), 1, "{srv:?}");
            assert_eq!(caller[0].trace_id, srv.trace_id);
            assert_eq!(caller[0].str("url.path"), srv.str("url.path"));
        }
        // The call made while serving it carries a header the kernel wrote from the
        // server span's ids, tracestate included, and the backend continues it.
        let call: Vec<_> = calls.iter().filter(|c| c.parent == srv.span_id).collect();
        assert_eq!(call.len(), 1, "{srv:?}");
        assert_eq!(call[0].trace_id, srv.trace_id);
        assert_eq!(call[0].trace_state, srv.trace_state);
        assert_eq!(call[0].str("url.path"), format!("/users/{i}"));
        let answer: Vec<_> = back
            .iter()
            .filter(|b| b.parent == call[0].span_id)
            .collect();
        assert_eq!(answer.len(), 1, "{:?}", call[0]);
        assert_eq!(answer[0].trace_id, srv.trace_id);
        assert_eq!(answer[0].trace_state, srv.trace_state);
    }
    // Every link came from a header: nothing needed same-node linking, nothing missed.
    assert_eq!(st["links_made"], 0);
    assert_eq!(st["requests_not_injected"], 0);
    assert_eq!(st["context_mismatch"], 0);
}

#[test]
fn connections_the_kernel_did_not_mark_are_adopted_once() {
    // A keep-alive client whose requests went out without inserted headers (recorded with
    // propagation off, replayed as if it were on): counted, and its socket handed to the
    // kernel once so the next requests get headers.
    let path = format!(
        "{}/../test/golden/keepalive.rec",
        env!("CARGO_MANIFEST_DIR")
    );
    let data = std::fs::read(&path).unwrap();
    let stats = Arc::new(Stats::default());
    let mut asm = Assembler::new(
        Arc::new(Config::default()),
        stats.clone(),
        Clock { offset_ns: 0 },
    )
    .with_proc_reader(fake_proc);
    asm.set_propagating(true);
    let (mut off, mut adopted) = (0, vec![]);
    while off + 4 <= data.len() {
        let n = u32::from_le_bytes(data[off..off + 4].try_into().unwrap()) as usize;
        asm.handle(decode(&data[off + 4..off + 4 + n]).unwrap());
        adopted.extend(asm.take_adoptions());
        off += 4 + n;
    }
    let st: HashMap<_, _> = NAMES.iter().copied().zip(stats.values()).collect();
    assert_eq!(st["requests_not_injected"], 5);
    assert_eq!(adopted.len(), 1, "{adopted:?}");
    // The client's end: its local port is the server's peer port.
    assert_ne!(adopted[0].tuple.dport, 0);
    assert!(adopted[0].fd > 2);
}

#[test]
fn grpc_calls_multiplexed_on_one_channel() {
    // grpcio: 6 concurrent unary calls on one HTTP/2 connection, a server-streaming call
    // (5 messages 50 ms apart), NOT_FOUND, INTERNAL; both ends traced.
    let (spans, st) = replay("grpc");
    for server in [true, false] {
        let side: Vec<_> = spans.iter().filter(|s| s.server() == server).collect();
        assert_eq!(side.len(), 9, "{side:?}");
        let mut codes: Vec<i64> = side.iter().map(|s| s.int("rpc.grpc.status_code")).collect();
        codes.sort();
        assert_eq!(codes, [0, 0, 0, 0, 0, 0, 0, 5, 13]);
        for s in &side {
            assert_eq!(s.str("rpc.system"), "grpc");
            assert_eq!(s.str("rpc.service"), "demo.Shop");
            assert_eq!(s.name, format!("demo.Shop/{}", s.str("rpc.method")));
            assert_eq!(s.str("network.protocol.version"), "2");
            let code = s.int("rpc.grpc.status_code");
            assert_eq!(s.error, code == 13 || (!server && code != 0), "{s:?}");
        }
        let list = side.iter().find(|s| s.name == "demo.Shop/List").unwrap();
        assert!(list.end - list.start >= 200_000_000, "{list:?}");
    }
    // Same-node linking pairs the streams of one connection in order.
    for srv in spans.iter().filter(|s| s.server()) {
        let c: Vec<_> = spans
            .iter()
            .filter(|c| !c.server() && c.span_id == srv.parent)
            .collect();
        assert_eq!(c.len(), 1, "{srv:?}");
        assert_eq!(c[0].trace_id, srv.trace_id);
        assert_eq!(c[0].name, srv.name);
    }
    assert_eq!(st["h2_headers_undecodable"], 0);
}

#[test]
fn pipelined_requests_in_one_write() {
    let (spans, _) = replay("pipelined");
    let paths: Vec<_> = of_kind(&spans, true)
        .iter()
        .map(|s| s.str("url.path").to_string())
        .collect();
    assert_eq!(paths, ["/users/7", "/users/8", "/users/9"]);
    assert_eq!(of_kind(&spans, false).len(), 3);
}

#[test]
fn request_split_over_many_writes() {
    let (spans, _) = replay("split");
    let servers = of_kind(&spans, true);
    assert_eq!(servers.len(), 1, "{spans:?}");
    assert_eq!(servers[0].str("url.path"), "/users/42");
    assert_eq!(servers[0].str("user_agent.original"), "split/1");
    // The span starts at the first byte (the first of five writes 20 ms apart).
    assert!(
        servers[0].end - servers[0].start >= 60_000_000,
        "{:?}",
        servers[0]
    );
}

#[test]
fn chunked_response_keeps_the_stream_in_sync() {
    let (spans, st) = replay("chunked");
    for server in [true, false] {
        let names: Vec<_> = of_kind(&spans, server)
            .iter()
            .map(|s| s.name.clone())
            .collect();
        assert_eq!(
            names,
            ["GET /chunked", "GET /users/{id}"],
            "server={server} {st:?}"
        );
    }
}

#[test]
fn chunks_larger_than_the_capture_resynchronise() {
    let (spans, st) = replay("chunkedbig");
    for server in [true, false] {
        let names: Vec<_> = of_kind(&spans, server)
            .iter()
            .map(|s| s.str("url.path").to_string())
            .collect();
        assert_eq!(
            names,
            ["/chunked-big", "/users/3", "/chunked-big", "/users/4"],
            "server={server} {st:?}"
        );
        assert!(of_kind(&spans, server)
            .iter()
            .all(|s| !s.error && s.int("http.response.status_code") == 200));
    }
    assert_eq!(st["streams_unparsable"], 0);
}

#[test]
fn bodies_larger_than_the_capture() {
    let (spans, st) = replay("bigbody");
    let servers = of_kind(&spans, true);
    assert_eq!(servers.len(), 3, "{st:?}");
    assert_eq!(servers[0].int("http.response.body.size"), 1 << 20);
    assert_eq!(servers[1].str("url.path"), "/users/1");
    assert_eq!(servers[2].int("http.request.body.size"), 200_000);
    assert_eq!(of_kind(&spans, false).len(), 3);
    // The bodies travelled mostly as uncaptured counts: framing kept without a resync.
    assert_eq!(st["streams_unparsable"], 0);
    assert_eq!(st["responses_framing_lost"], 0);
}

#[test]
fn expect_100_continue() {
    let (spans, _) = replay("expect100");
    for server in [true, false] {
        let s = of_kind(&spans, server);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].name, "POST /echo");
        assert_eq!(s[0].int("http.response.status_code"), 200);
        assert_eq!(s[0].int("http.request.body.size"), 10_000);
    }
}

#[test]
fn head_has_no_body() {
    let (spans, _) = replay("head");
    for server in [true, false] {
        let m: Vec<_> = of_kind(&spans, server)
            .iter()
            .map(|s| s.str("http.request.method").to_string())
            .collect();
        assert_eq!(m, ["HEAD", "GET"]);
    }
}

#[test]
fn connection_closed_without_response() {
    let (spans, st) = replay("noresponse");
    let servers = of_kind(&spans, true);
    assert_eq!(servers.len(), 1);
    assert!(servers[0].error);
    assert!(!servers[0].attrs.contains_key("http.response.status_code"));
    assert_eq!(st["requests_without_response"], 2);
}

#[test]
fn traceparent_is_honoured() {
    let (spans, st) = replay("traceparent");
    let servers = of_kind(&spans, true);
    // The unsampled request produced no server span.
    assert_eq!(servers.len(), 2, "{servers:?}");
    assert_eq!(servers[0].trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(servers[0].parent, "00f067aa0ba902b7");
    assert_eq!(servers[0].trace_state, "vendor=abc");
    assert_eq!(servers[1].str("url.path"), "/users/7");
    assert_ne!(servers[1].trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    // The malformed header is ignored: the client span starts a new trace, and the server
    // span (both ends traced here) is linked to it.
    let bad_client = of_kind(&spans, false)
        .into_iter()
        .find(|c| c.str("url.path") == "/users/7")
        .unwrap();
    assert_eq!(bad_client.parent, "");
    assert_eq!(servers[1].parent, bad_client.span_id);
    assert_eq!(servers[1].trace_id, bad_client.trace_id);
    assert_eq!(
        st["traceparent_invalid"], 2,
        "server and client both saw the bad header"
    );
    assert_eq!(st["spans_unsampled"], 2);
}

#[test]
fn nginx_writev_and_sendfile() {
    let (spans, _) = replay("nginx");
    let servers = of_kind(&spans, true);
    let paths: Vec<_> = servers
        .iter()
        .map(|s| s.str("url.path").to_string())
        .collect();
    assert_eq!(paths, ["/big.bin", "/small.txt", "/missing"]);
    assert_eq!(servers[0].int("http.response.body.size"), 100_000);
    assert_eq!(servers[0].service, "nginx");
    assert_eq!(servers[2].int("http.response.status_code"), 404);
    assert!(!servers[2].error, "404 is not a server error");
    let clients = of_kind(&spans, false);
    assert_eq!(clients.len(), 3);
    assert!(clients[2].error, "404 is a client error");
}

#[test]
fn exclude_paths_and_ports() {
    let cfg = Config {
        exclude_paths: vec!["/users/*".into()],
        ..Default::default()
    };
    let (spans, st) = replay_with("keepalive", cfg);
    assert!(spans.is_empty());
    assert_eq!(st["spans_excluded"], 10);
}
