//! Batches of finished spans → OTLP `ExportTraceServiceRequest` bytes (prost), one
//! ResourceSpans per process.

use std::collections::HashMap;
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use prost::Message;

use crate::process::ProcessInfo;
use crate::spans::{AttrValue, SpanKind, SpanRecord};

pub const SCOPE_NAME: &str = "otelcol-ebpf";

pub struct BatchBuilder {
    host_name: String,
    by_pid: HashMap<u32, (Arc<ProcessInfo>, Vec<Span>)>,
    spans: usize,
}

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn s(key: &str, v: impl Into<String>) -> KeyValue {
    kv(key, any_value::Value::StringValue(v.into()))
}

impl BatchBuilder {
    pub fn new() -> Self {
        BatchBuilder {
            host_name: host_name(),
            by_pid: HashMap::new(),
            spans: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.spans
    }

    pub fn is_empty(&self) -> bool {
        self.spans == 0
    }

    pub fn push(&mut self, rec: SpanRecord) {
        let span = Span {
            trace_id: rec.trace_id.to_vec(),
            span_id: rec.span_id.to_vec(),
            trace_state: rec.trace_state,
            parent_span_id: rec.parent_span_id.map(|p| p.to_vec()).unwrap_or_default(),
            flags: rec.flags,
            name: rec.name,
            kind: match rec.kind {
                SpanKind::Server => span::SpanKind::Server as i32,
                SpanKind::Client => span::SpanKind::Client as i32,
            },
            start_time_unix_nano: rec.start_ns,
            end_time_unix_nano: rec.end_ns,
            attributes: rec
                .attrs
                .into_iter()
                .map(|(k, v)| match v {
                    AttrValue::Str(v) => s(k, v),
                    AttrValue::Int(v) => kv(k, any_value::Value::IntValue(v)),
                })
                .collect(),
            status: rec.error.map(|message| Status {
                message,
                code: status::StatusCode::Error as i32,
            }),
            ..Default::default()
        };
        self.by_pid
            .entry(rec.process.pid)
            .or_insert_with(|| (rec.process.clone(), Vec::new()))
            .1
            .push(span);
        self.spans += 1;
    }

    /// Encodes and empties the batch; returns (bytes, span count).
    pub fn take(&mut self) -> (Vec<u8>, u64) {
        let n = self.spans as u64;
        self.spans = 0;
        let resource_spans = self
            .by_pid
            .drain()
            .map(|(_, (p, spans))| ResourceSpans {
                resource: Some(resource(&p, &self.host_name)),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: SCOPE_NAME.into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    spans,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect();
        (
            ExportTraceServiceRequest { resource_spans }.encode_to_vec(),
            n,
        )
    }
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

fn resource(p: &ProcessInfo, host: &str) -> Resource {
    let mut attributes = vec![s("service.name", p.service_name.clone())];
    for (k, v) in &p.resource_attrs {
        if k != "service.name" {
            attributes.push(s(k, v.clone()));
        }
    }
    attributes.push(kv("process.pid", any_value::Value::IntValue(p.pid as i64)));
    attributes.push(s("process.executable.name", p.exe_name.clone()));
    if !p.exe_path.is_empty() {
        attributes.push(s("process.executable.path", p.exe_path.clone()));
    }
    attributes.push(s("host.name", host));
    attributes.push(s("telemetry.distro.name", SCOPE_NAME));
    Resource {
        attributes,
        ..Default::default()
    }
}

fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    crate::events::cstr(&buf)
}
