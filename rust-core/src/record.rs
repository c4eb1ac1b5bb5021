//! The span as the core builds it, before OTLP encoding: the one model the span builders
//! (`spans`) write and the encoder (`otlp`) reads, so neither imports the other.

use std::sync::Arc;

use crate::process::ProcessInfo;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    Server,
    Client,
    Producer,
    Consumer,
}

/// A span link: another span this one relates to without being its child (the records a
/// poll returned, each from the span that produced it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// W3C trace flags.
    pub flags: u8,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Str(String),
    /// A string shared by many spans (a connection's address).
    Shared(Arc<str>),
    Static(&'static str),
    Int(i64),
}

impl AttrValue {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            AttrValue::Str(s) => Some(s),
            AttrValue::Shared(s) => Some(s),
            AttrValue::Static(s) => Some(s),
            AttrValue::Int(_) => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SpanRecord {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    pub trace_state: String,
    /// OTLP span flags: W3C trace flags plus the has/is-remote-parent bits.
    pub flags: u32,
    pub name: String,
    pub kind: SpanKind,
    pub start_ns: u64,
    pub end_ns: u64,
    pub attrs: Vec<(&'static str, AttrValue)>,
    pub error: Option<String>,
    pub links: Vec<Link>,
    pub process: Arc<ProcessInfo>,
}
