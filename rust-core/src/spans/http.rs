//! The HTTP and gRPC span builders: an HTTP/1 or HTTP/2 exchange → name, attributes and
//! error with the stable semantic-convention names (the envelope does the rest).

use super::envelope::{push_endpoints, Parts};
use super::route::{path_of, route_of};
use super::{AttrValue, SpanKind};
use crate::config::Config;
use crate::conn::{Done, HttpMessage, Peer};
use crate::protocols::{http1, http2};

/// Query parameters that carry credentials (semantic conventions, `url.full`): their
/// values are replaced by `REDACTED`.
const SECRET_PARAMS: &[&str] = &["AWSAccessKeyId", "Signature", "sig", "X-Goog-Signature"];

fn redact_query(target: &str) -> std::borrow::Cow<'_, str> {
    let Some((path, query)) = target.split_once('?') else {
        return target.into();
    };
    let secret = |p: &str| SECRET_PARAMS.iter().any(|k| p.split('=').next() == Some(k));
    if !query.split('&').any(secret) {
        return target.into();
    }
    let q: Vec<String> = query
        .split('&')
        .map(|p| {
            if secret(p) {
                format!("{}=REDACTED", p.split('=').next().unwrap_or(""))
            } else {
                p.to_string()
            }
        })
        .collect();
    format!("{path}?{}", q.join("&")).into()
}

/// Excluded by path (`exclude_paths`).
pub fn excluded(h: &HttpMessage, cfg: &Config) -> bool {
    cfg.path_excluded(path_of(&h.req.target))
}

pub fn parts(d: &Done, h: &HttpMessage, peer: &Peer, kind: SpanKind) -> Parts {
    if h.grpc {
        return grpc(d, h, peer, kind);
    }
    let path = path_of(&h.req.target);
    let route = route_of(&h.req.target);
    let status = h.resp.as_ref().map(|(r, _)| r.status);
    http(d, h, peer, kind, path, &route, status)
}

/// An HTTP exchange: named "{method} {route}", HTTP attributes, error from the status.
fn http(
    d: &Done,
    h: &HttpMessage,
    peer: &Peer,
    kind: SpanKind,
    path: &str,
    route: &str,
    status: Option<u16>,
) -> Parts {
    let req = &h.req;
    // Opt-in attributes that say nothing here (network.transport "tcp", network.protocol.name
    // "http", network.local.address) are left out: each one costs in the core and again
    // when the collector decodes the batch.
    let mut attrs: Vec<(&'static str, AttrValue)> = Vec::with_capacity(20);
    let s = AttrValue::Str;
    // An HTTP/2 request whose header block did not decode (seen mid-stream) has no
    // target: its path, route and URL are left out rather than made up.
    let known_target = !req.target.is_empty();
    // Semantic conventions: a method outside the known set is `_OTHER`, the original
    // kept apart (any token parses as a method; the set keeps the attribute low-cardinality).
    let method = if http1::KNOWN_METHODS.contains(&req.method.as_str()) || req.method == "_OTHER" {
        req.method.as_str()
    } else {
        attrs.push(("http.request.method_original", s(req.method.clone())));
        "_OTHER"
    };
    attrs.push(("http.request.method", s(method.to_string())));
    if known_target {
        attrs.push(("url.path", s(path.to_string())));
    }
    let scheme = if peer.tls { "https" } else { "http" };
    attrs.push(("url.scheme", AttrValue::Static(scheme)));
    if known_target {
        attrs.push(("http.route", s(route.to_string())));
    }
    if let Some(st) = status {
        attrs.push(("http.response.status_code", AttrValue::Int(st as i64)));
    }
    // The version in use is the lower of the two ends' (an HTTP/1.0 server answers a 1.1 client in 1.0).
    let version = h
        .resp
        .as_ref()
        .map_or(req.version, |(r, _)| r.version.min(req.version));
    attrs.push((
        "network.protocol.version",
        AttrValue::Static(match version {
            10 => "1.0",
            20 => "2",
            _ => "1.1",
        }),
    ));
    push_endpoints(&mut attrs, req.host.as_deref(), peer, kind);
    if kind == SpanKind::Client && known_target {
        let target = redact_query(&req.target);
        let full = if target.starts_with("http://") || target.starts_with("https://") {
            target.into_owned()
        } else {
            match &req.host {
                Some(h) => format!("{scheme}://{}{target}", h.trim()),
                None => format!("{scheme}://{}:{}{target}", peer.remote_ip, peer.remote_port),
            }
        };
        attrs.push(("url.full", s(full)));
    }
    if let Some(ua) = &req.user_agent {
        attrs.push(("user_agent.original", s(ua.clone())));
    }
    if let Some(n) = h.req_body.filter(|&n| n > 0) {
        attrs.push(("http.request.body.size", AttrValue::Int(n as i64)));
    }
    if let Some(n) = d.resp_body {
        attrs.push(("http.response.body.size", AttrValue::Int(n as i64)));
    }

    let error = match (d.error, status) {
        (Some(why), _) => {
            attrs.push((
                "error.type",
                s(if kind == SpanKind::Server {
                    "no_response"
                } else {
                    "connection_closed"
                }
                .into()),
            ));
            Some(why.to_string())
        }
        (None, Some(st)) if st >= 500 || (kind == SpanKind::Client && st >= 400) => {
            attrs.push(("error.type", s(st.to_string())));
            Some(String::new())
        }
        _ => None,
    };

    // Semantic conventions: `HTTP` stands for a method not known as such.
    let name = match (method, known_target) {
        ("_OTHER", true) => format!("HTTP {route}"),
        ("_OTHER", false) => "HTTP".to_string(),
        (m, true) => format!("{m} {route}"),
        (m, false) => m.to_string(),
    };
    (name, attrs, error)
}

/// A gRPC call: named "{service}/{method}", rpc.* attributes, status from grpc-status.
fn grpc(d: &Done, h: &HttpMessage, peer: &Peer, kind: SpanKind) -> Parts {
    let path = h.req.target.as_str();
    let mut attrs: Vec<(&'static str, AttrValue)> = Vec::with_capacity(12);
    attrs.push(("rpc.system", AttrValue::Static("grpc")));
    let name = match http2::grpc_method(path) {
        Some((service, method)) => {
            attrs.push(("rpc.service", AttrValue::Str(service.to_string())));
            attrs.push(("rpc.method", AttrValue::Str(method.to_string())));
            format!("{service}/{method}")
        }
        None if path.is_empty() => "grpc".to_string(), // :path did not decode
        None => path.trim_start_matches('/').to_string(),
    };
    push_endpoints(&mut attrs, h.req.host.as_deref(), peer, kind);
    attrs.push(("network.protocol.name", AttrValue::Static("http")));
    attrs.push(("network.protocol.version", AttrValue::Static("2")));
    let error = match (d.error, h.grpc_status) {
        (Some(why), _) => {
            attrs.push(("error.type", AttrValue::Static("stream_reset")));
            Some(why.to_string())
        }
        (None, Some(code)) => {
            attrs.push(("rpc.grpc.status_code", AttrValue::Int(code as i64)));
            let failed = match kind {
                SpanKind::Server => http2::grpc_server_error(code),
                _ => http2::grpc_client_error(code),
            };
            failed.then(|| {
                attrs.push(("error.type", AttrValue::Str(code.to_string())));
                String::new()
            })
        }
        (None, None) => None,
    };
    (name, attrs, error)
}

#[cfg(test)]
mod tests {
    use super::redact_query;
    use crate::spans::envelope::split_host;

    #[test]
    fn query_secrets_are_redacted() {
        assert_eq!(
            redact_query("/a?x=1&sig=abc&Signature=zz"),
            "/a?x=1&sig=REDACTED&Signature=REDACTED"
        );
        assert_eq!(redact_query("/a?x=1"), "/a?x=1");
        assert_eq!(redact_query("/a"), "/a");
        assert_eq!(redact_query("/a?signal=1"), "/a?signal=1");
    }

    #[test]
    fn hosts() {
        assert_eq!(
            split_host("example.com:8080"),
            ("example.com".into(), Some(8080))
        );
        assert_eq!(split_host("example.com"), ("example.com".into(), None));
        assert_eq!(split_host("[::1]:80"), ("::1".into(), Some(80)));
        assert_eq!(split_host("::1"), ("::1".into(), None));
    }
}
