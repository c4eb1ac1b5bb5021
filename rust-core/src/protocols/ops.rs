//! Operation-shaped protocols (databases, messaging) on the protocol seam. Their parsers
//! report two events per operation, `Started` (the request's first byte: the span's ids
//! are given then) and `Done` (everything its span needs); `OpAdapter` turns them into
//! exchange events keyed by the operation's sequence number. Their `stream_id` is 0:
//! what the kernel inserted into a request (an AMQP publish) is found by thread and time. A `Done` whose `Started` was not reported (a Kafka fetch known to be worth
//! a span only when its records came) starts where the operation says.

use std::collections::HashSet;

use super::session::{Counts, Event, Flow, Reply, Session};
use crate::conn::Message;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpEvent<T> {
    Started {
        seq: u64,
        ts: u64,
        tid: u32,
    },
    /// Started, with what its span's ids depend on known already (a delivery's message
    /// context: the CONSUMER span is its child).
    StartedWith(T),
    Done(T),
}

/// One protocol family's operation, and how its sessions are driven.
pub trait Op: Sized + Send + 'static {
    /// The family's session trait object (`dyn DbSession + Send`, `dyn MsgSession`).
    type Session: ?Sized + Send;

    fn seq(&self) -> u64;
    /// Time and thread of the request's first byte.
    fn start(&self) -> (u64, u32);
    fn end_ts(&self) -> u64;
    /// The exchange's part while only its start is known.
    fn started(seq: u64, ts: u64, tid: u32) -> Message;
    /// The exchange's part from an operation known in part at its start.
    fn into_message(self) -> Message;
    fn into_reply(self) -> Reply;
    fn feed(
        s: &mut Self::Session,
        flow: Flow,
        data: &[u8],
        gap: u64,
        ts: u64,
        tid: u32,
        out: &mut Vec<OpEvent<Self>>,
    );
    fn close(s: &mut Self::Session, ts: u64, out: &mut Vec<OpEvent<Self>>);
    fn counts(s: &Self::Session) -> Counts;
    fn compact(_s: &mut Self::Session) {}
}

pub struct OpAdapter<T: Op> {
    session: Box<T::Session>,
    /// Operations whose `Started` was reported and whose `Done` was not yet.
    started: HashSet<u64>,
    evs: Vec<OpEvent<T>>,
}

impl<T: Op> OpAdapter<T> {
    pub fn new(session: Box<T::Session>) -> Self {
        OpAdapter {
            session,
            started: HashSet::new(),
            evs: Vec::new(),
        }
    }

    fn events(&mut self, out: &mut Vec<Event>) {
        for ev in self.evs.drain(..) {
            match ev {
                OpEvent::Started { seq, ts, tid } => {
                    self.started.insert(seq);
                    out.push(Event::RequestStarted {
                        key: seq,
                        ts,
                        tid,
                        stream_id: 0,
                        msg: T::started(seq, ts, tid),
                    });
                }
                OpEvent::StartedWith(op) => {
                    let seq = op.seq();
                    let (ts, tid) = op.start();
                    self.started.insert(seq);
                    out.push(Event::RequestStarted {
                        key: seq,
                        ts,
                        tid,
                        stream_id: 0,
                        msg: op.into_message(),
                    });
                }
                OpEvent::Done(op) => {
                    let seq = op.seq();
                    if !self.started.remove(&seq) {
                        let (ts, tid) = op.start();
                        out.push(Event::RequestStarted {
                            key: seq,
                            ts,
                            tid,
                            stream_id: 0,
                            msg: T::started(seq, ts, tid),
                        });
                    }
                    out.push(Event::ResponseEnded {
                        key: seq,
                        ts: op.end_ts(),
                        body: None,
                        reply: Some(op.into_reply()),
                    });
                }
            }
        }
    }
}

impl<T: Op> Session for OpAdapter<T> {
    fn feed(&mut self, flow: Flow, data: &[u8], gap: u64, ts: u64, tid: u32, out: &mut Vec<Event>) {
        T::feed(&mut self.session, flow, data, gap, ts, tid, &mut self.evs);
        self.events(out);
    }

    fn close(&mut self, ts: u64, out: &mut Vec<Event>) {
        T::close(&mut self.session, ts, &mut self.evs);
        self.events(out);
    }

    fn counts(&self) -> Counts {
        T::counts(&self.session)
    }

    fn compact(&mut self) {
        T::compact(&mut self.session);
        self.evs.shrink_to_fit();
        self.started.shrink_to_fit();
    }
}
