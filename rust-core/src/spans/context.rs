//! Trace context for each exchange, fixed when its request is seen, and in-process
//! parenting: a request a thread sends while it serves another becomes that one's child.
//!
//! Exact for thread-per-request servers (the thread that read the request makes the
//! calls). An event-loop thread serves many requests at once: its calls are attributed to
//! the request it read most recently, which is right only when requests do not overlap.

use std::collections::HashMap;

use super::ids::{IdGen, SpanCtx, TraceParent};
use crate::conn::{Exchange, Side};
use crate::stats::{self, Stats};

#[derive(Default)]
pub struct Contexts {
    ids: IdGen,
    /// (pid, tid) → the server span that thread is serving.
    serving: HashMap<(u32, u32), SpanCtx>,
}

impl Contexts {
    /// Gives `ex` its ids unless it has them.
    pub fn assign(&mut self, pid: u32, side: Side, ex: &mut Exchange, stats: &Stats) {
        if ex.ctx.is_some() {
            return;
        }
        let header = ex.req.traceparent.as_deref().map(TraceParent::parse);
        let invalid = matches!(header, Some(None));
        if invalid {
            stats::inc(&stats.traceparent_invalid);
        }
        let tp = header.flatten();
        let mut ctx = match (side, tp) {
            (Side::Server, Some(tp)) => {
                SpanCtx::from_remote(&tp, ex.req.tracestate.as_deref(), &mut self.ids)
            }
            // The app propagates itself: the header's parent-id is its client span's id.
            (Side::Client, Some(tp)) => SpanCtx {
                trace_id: tp.trace_id,
                span_id: tp.span_id,
                parent_span_id: None,
                flags: tp.flags as u32,
                trace_state: ex.req.tracestate.clone().unwrap_or_default(),
                invalid_parent: false,
            },
            (Side::Client, None) => match self.serving.get(&(pid, ex.tid)) {
                Some(parent) => SpanCtx::child_of(parent, &mut self.ids),
                None => SpanCtx::root(&mut self.ids),
            },
            (Side::Server, None) => SpanCtx::root(&mut self.ids),
        };
        ctx.invalid_parent = invalid;
        if side == Side::Server {
            self.serving.insert((pid, ex.tid), ctx.clone());
        }
        ex.ctx = Some(ctx);
    }

    /// A server exchange ended: its thread no longer serves it.
    pub fn ended(&mut self, pid: u32, side: Side, ex: &Exchange) {
        if side != Side::Server {
            return;
        }
        if let (Some(cur), Some(ctx)) = (self.serving.get(&(pid, ex.tid)), &ex.ctx) {
            if cur.span_id == ctx.span_id {
                self.serving.remove(&(pid, ex.tid));
            }
        }
    }

    /// The process exited: forget its threads.
    pub fn exited(&mut self, pid: u32) {
        self.serving.retain(|k, _| k.0 != pid);
    }
}
