//! What every span has, whatever its protocol: ids from the exchange's context (in-process
//! parent, same-node link, incoming or injected header: see context.rs), timing, process,
//! port exclusion, sampling, and the endpoint attributes. One builder per span kind fills
//! in the name, the protocol's attributes and the error.

use std::sync::Arc;

use super::{db, http, messaging, AttrValue, Clock, SpanKind, SpanRecord};
use crate::config::Config;
use crate::conn::{Done, Message, Peer, Side};
use crate::process::ProcessInfo;
use crate::record::Link;

pub enum Built {
    Span(Box<SpanRecord>),
    /// The span's parent said "not sampled".
    Unsampled,
    /// Excluded by path or port.
    Excluded,
}

/// Name, attributes and error of a span.
pub type Parts = (String, Vec<(&'static str, AttrValue)>, Option<String>);

pub fn build(
    d: &Done,
    peer: &Peer,
    process: &Arc<ProcessInfo>,
    cfg: &Config,
    clock: &Clock,
) -> Built {
    if let Message::Http(h) = &d.ex.msg {
        if http::excluded(h, cfg) {
            return Built::Excluded;
        }
    }
    if cfg.exclude_ports.contains(&peer.local_port) || cfg.exclude_ports.contains(&peer.remote_port)
    {
        return Built::Excluded;
    }
    if matches!(d.ex.msg, Message::Messaging(_)) && d.side == Side::Server {
        // A broker's view of its clients' operations: their spans come from the clients.
        return Built::Excluded;
    }
    let Some(ctx) = d.ex.ctx.clone() else {
        return Built::Excluded;
    };
    if !ctx.sampled() {
        return Built::Unsampled;
    }
    let mut kind = match d.side {
        Side::Server => SpanKind::Server,
        Side::Client => SpanKind::Client,
    };
    let mut links = Vec::new();
    let (name, attrs, error) = match &d.ex.msg {
        Message::Http(h) => http::parts(d, h, peer, kind),
        Message::Db(op) => db::parts(d, op, peer, kind),
        Message::Messaging(op) => {
            kind = op.op_type.kind();
            // A CONSUMER span's parent is its message's context: not a link too.
            let parent = ctx.parent_span_id.filter(|_| d.ex.consumer().is_some());
            links = op
                .links
                .iter()
                .filter(|c| Some(c.span_id) != parent)
                .map(|c| Link {
                    trace_id: c.trace_id,
                    span_id: c.span_id,
                    flags: c.flags,
                })
                .collect();
            messaging::parts(d, op, peer)
        }
    };
    Built::Span(Box::new(SpanRecord {
        trace_id: ctx.trace_id,
        span_id: ctx.span_id,
        parent_span_id: ctx.parent_span_id,
        trace_state: ctx.trace_state,
        flags: ctx.flags,
        name,
        kind,
        start_ns: clock.unix(d.ex.req_start),
        end_ns: clock.unix(d.resp_end.max(d.ex.req_start)),
        attrs,
        error,
        links,
        process: process.clone(),
    }))
}

/// Splits a Host header into host and port.
pub fn split_host(h: &str) -> (String, Option<u16>) {
    let h = h.trim();
    if let Some(rest) = h.strip_prefix('[') {
        if let Some((addr, tail)) = rest.split_once(']') {
            return (
                addr.to_string(),
                tail.strip_prefix(':').and_then(|p| p.parse().ok()),
            );
        }
    }
    match h.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host.to_string(), port.parse().ok()),
        _ => (h.to_string(), None),
    }
}

/// server.* (from `host`, e.g. an HTTP Host header, when there is one, else the socket),
/// the peer and local ports, and client.* on the server side.
pub fn push_endpoints(
    attrs: &mut Vec<(&'static str, AttrValue)>,
    host: Option<&str>,
    peer: &Peer,
    kind: SpanKind,
) {
    let (ip, port) = match kind {
        SpanKind::Server => (&peer.local_ip, peer.local_port),
        _ => (&peer.remote_ip, peer.remote_port),
    };
    match host.map(split_host) {
        Some((h, p)) => {
            attrs.push(("server.address", AttrValue::Str(h)));
            attrs.push(("server.port", AttrValue::Int(p.unwrap_or(port) as i64)));
        }
        None => {
            attrs.push(("server.address", AttrValue::Shared(ip.clone())));
            attrs.push(("server.port", AttrValue::Int(port as i64)));
        }
    }
    attrs.push((
        "network.peer.address",
        AttrValue::Shared(peer.remote_ip.clone()),
    ));
    attrs.push(("network.peer.port", AttrValue::Int(peer.remote_port as i64)));
    attrs.push(("network.local.port", AttrValue::Int(peer.local_port as i64)));
    if kind == SpanKind::Server {
        attrs.push(("client.address", AttrValue::Shared(peer.remote_ip.clone())));
        attrs.push(("client.port", AttrValue::Int(peer.remote_port as i64)));
    }
}
