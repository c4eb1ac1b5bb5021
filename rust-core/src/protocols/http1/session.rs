//! HTTP/1 on the protocol seam: one connection's two parsers (requests toward the
//! server, responses toward the client) pairing requests with responses by order.
//!
//! Besides framing, the session handles what the stream can do to HTTP/1 exchanges:
//! - a 101 response (or an accepted upgrade / tunnel) ends the response's exchange at its
//!   head, and the session stops parsing: the rest is not HTTP/1;
//! - uncaptured bytes that hide a response's framing (a gap inside chunk framing or a
//!   head) do not end the connection: the response's remaining bytes are skipped until the
//!   next response starts, or its last chunk, or (client) the next request (`drain`);
//! - any other parse error gives the stream up: open exchanges are aborted.

use std::collections::VecDeque;

use super::{Http1Event, Http1Parser, ParseError, Role, Segment};
use crate::conn::{HttpMessage, Message};
use crate::protocols::session::{Counts, Event, Flow, Reply, Session};

/// An exchange the session reported and has not ended, in request order.
#[derive(Debug)]
struct Open {
    key: u64,
    req_ended: bool,
    /// The response head's ts, once seen.
    resp: Option<u64>,
    /// A HEAD request: its response has no body.
    head: bool,
}

/// A response whose end we can no longer find by framing.
#[derive(Debug)]
struct Draining {
    /// Its exchange, if its response head had been seen.
    key: Option<u64>,
    last_ts: u64,
}

#[derive(Debug)]
pub struct Http1Session {
    requests: Http1Parser,
    responses: Http1Parser,
    /// This process is the client (it sends the requests).
    client: bool,
    open: VecDeque<Open>,
    next_key: u64,
    /// Set when uncaptured bytes hid the response framing: the response's remaining
    /// bytes are skipped until the next response starts (see `drain`).
    draining: Option<Draining>,
    /// Upgraded or unparsable: the parsers are no longer fed.
    stopped: bool,
    counts: Counts,
}

impl Http1Session {
    /// `client`: this process writes the requests.
    pub fn new(client: bool) -> Self {
        Http1Session {
            requests: Http1Parser::new(Role::Requests),
            responses: Http1Parser::new(Role::Responses),
            client,
            open: VecDeque::new(),
            next_key: 0,
            draining: None,
            stopped: false,
            counts: Counts::default(),
        }
    }

    /// The first open exchange whose response head was seen, taken out.
    fn take_answered(&mut self) -> Option<Open> {
        let pos = self.open.iter().position(|o| o.resp.is_some())?;
        self.open.remove(pos)
    }

    /// While a response is drained: returns true when the segment belongs to it.
    fn drain(
        &mut self,
        is_request_dir: bool,
        data: &[u8],
        gap: u64,
        ts: u64,
        out: &mut Vec<Event>,
    ) -> bool {
        let Some(dr) = self.draining.as_mut() else {
            return false;
        };
        if is_request_dir {
            // A client only sends its next request once the response is complete
            // (pipelining aside): the drained response ended with its last bytes.
            if self.client {
                if let Some(key) = dr.key.take() {
                    out.push(drained(key, dr.last_ts));
                }
            }
            return false;
        }
        if data.starts_with(b"HTTP/1.") {
            // The next response starts: the parser restarts on it.
            self.end_draining(out);
            return false;
        }
        dr.last_ts = ts;
        if data.ends_with(b"0\r\n\r\n") && gap == 0 {
            // The last chunk: the response ends here.
            self.end_draining(out);
        }
        true
    }

    /// Completes the drained response (if its exchange is still open) and restarts the
    /// response parser, telling it again which open requests were HEAD.
    fn end_draining(&mut self, out: &mut Vec<Event>) {
        let Some(dr) = self.draining.take() else {
            return;
        };
        if let Some(key) = dr.key {
            out.push(drained(key, dr.last_ts));
        }
        if !self.stopped {
            self.responses = Http1Parser::new(Role::Responses);
            for o in self.open.iter().filter(|o| o.resp.is_none()) {
                self.responses.expect_response(o.head);
            }
        }
    }
}

thread_local! {
    /// The parsers' events, one buffer for every connection of the thread (the pump).
    static SCRATCH: std::cell::RefCell<Vec<Http1Event>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn take_scratch() -> Vec<Http1Event> {
    SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()))
}

fn give_back_scratch(mut v: Vec<Http1Event>) {
    v.clear();
    SCRATCH.with(|s| *s.borrow_mut() = v);
}

/// A response whose end was found by resynchronising: its body size is unknown.
fn drained(key: u64, ts: u64) -> Event {
    Event::ResponseEnded {
        key,
        ts,
        body: None,
        reply: None,
    }
}

impl Session for Http1Session {
    fn compact(&mut self) {
        self.requests.compact();
        self.responses.compact();
        self.open.shrink_to_fit();
    }

    fn feed(&mut self, flow: Flow, data: &[u8], gap: u64, ts: u64, tid: u32, out: &mut Vec<Event>) {
        let is_request_dir = flow == Flow::ToServer;
        if self.drain(is_request_dir, data, gap, ts, out) || self.stopped {
            return;
        }
        let parser = if is_request_dir {
            &mut self.requests
        } else {
            &mut self.responses
        };
        let mut events = take_scratch();
        let mut failed = false;
        let mut lost_framing = false;
        if !data.is_empty() && parser.feed(Segment::Data(data), ts, &mut events).is_err() {
            failed = true;
        }
        if !failed && gap > 0 {
            if let Err(e) = parser.feed(Segment::Gap(gap), ts, &mut events) {
                failed = true;
                lost_framing = !is_request_dir
                    && matches!(e, ParseError::GapInChunkFraming | ParseError::GapInHead);
            }
        }
        let mut upgraded = false;
        for ev in events.drain(..) {
            match ev {
                Http1Event::Request { head, start_ts } => {
                    let is_head = head.method == "HEAD";
                    self.responses.expect_response(is_head);
                    let key = self.next_key;
                    self.next_key += 1;
                    self.open.push_back(Open {
                        key,
                        req_ended: false,
                        resp: None,
                        head: is_head,
                    });
                    out.push(Event::RequestStarted {
                        key,
                        ts: start_ts,
                        tid,
                        stream_id: 0,
                        msg: Message::Http(HttpMessage {
                            req: head,
                            req_body: None,
                            resp: None,
                            grpc: false,
                            grpc_status: None,
                        }),
                    });
                }
                Http1Event::RequestEnd { end_ts, body_bytes } => {
                    if let Some(o) = self.open.iter_mut().rev().find(|o| !o.req_ended) {
                        o.req_ended = true;
                        out.push(Event::RequestEnded {
                            key: o.key,
                            ts: end_ts,
                            body: Some(body_bytes),
                        });
                    }
                }
                Http1Event::Interim { .. } => {}
                Http1Event::Response { head, start_ts } => {
                    if head.status == 101 {
                        upgraded = true;
                    }
                    match self.open.iter_mut().find(|o| o.resp.is_none()) {
                        Some(o) => {
                            o.resp = Some(start_ts);
                            out.push(Event::ResponseStarted {
                                key: o.key,
                                ts: start_ts,
                                reply: Reply::Http(head),
                            });
                        }
                        None => self.counts.orphan_responses += 1,
                    }
                }
                Http1Event::ResponseEnd { end_ts, body_bytes } => {
                    if let Some(o) = self.take_answered() {
                        out.push(Event::ResponseEnded {
                            key: o.key,
                            ts: end_ts,
                            body: Some(body_bytes),
                            reply: None,
                        });
                    }
                }
                Http1Event::Upgraded => upgraded = true,
            }
        }
        give_back_scratch(events);
        if upgraded {
            // 101: the response head completes the exchange; the rest is not HTTP/1.
            if let Some(o) = self.take_answered() {
                out.push(Event::ResponseEnded {
                    key: o.key,
                    ts: o.resp.unwrap_or(ts),
                    body: None,
                    reply: None,
                });
            }
            self.stopped = true;
        } else if lost_framing {
            // Keep the connection: skip to the next response instead of giving up.
            self.counts.framing_lost += 1;
            let key = self.take_answered().map(|o| o.key);
            self.draining = Some(Draining { key, last_ts: ts });
        } else if failed {
            self.counts.unparsable += 1;
            self.stopped = true;
            for o in self.open.drain(..) {
                out.push(Event::Aborted {
                    key: o.key,
                    ts,
                    why: "unparsable HTTP stream",
                });
            }
        }
    }

    fn close(&mut self, ts: u64, out: &mut Vec<Event>) {
        self.end_draining(out);
        if !self.stopped {
            self.stopped = true;
            let mut events = Vec::new();
            self.responses.close(&mut events);
            for ev in events {
                if let Http1Event::ResponseEnd { end_ts, body_bytes } = ev {
                    if let Some(o) = self.take_answered() {
                        out.push(Event::ResponseEnded {
                            key: o.key,
                            ts: end_ts,
                            body: Some(body_bytes),
                            reply: None,
                        });
                    }
                }
            }
        }
        for o in self.open.drain(..) {
            out.push(Event::Aborted {
                key: o.key,
                ts,
                why: "connection closed before the response completed",
            });
        }
    }

    fn counts(&self) -> Counts {
        self.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The events in short: (kind, key, ts).
    fn short(evs: &[Event]) -> Vec<(&'static str, u64, u64)> {
        evs.iter()
            .map(|e| match e {
                Event::RequestStarted { key, ts, .. } => ("req", *key, *ts),
                Event::RequestEnded { key, ts, .. } => ("req_end", *key, *ts),
                Event::ResponseStarted { key, ts, .. } => ("resp", *key, *ts),
                Event::ResponseEnded { key, ts, .. } => ("resp_end", *key, *ts),
                Event::Aborted { key, ts, .. } => ("aborted", *key, *ts),
            })
            .collect()
    }

    #[test]
    fn pipelined_requests_pair_by_order() {
        let mut s = Http1Session::new(false);
        let mut out = Vec::new();
        s.feed(
            Flow::ToServer,
            b"GET /a HTTP/1.1\r\n\r\nHEAD /b HTTP/1.1\r\n\r\n",
            0,
            1,
            9,
            &mut out,
        );
        s.feed(
            Flow::ToClient,
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            0,
            2,
            9,
            &mut out,
        );
        // The answer to HEAD has no body whatever its length says.
        s.feed(
            Flow::ToClient,
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
            0,
            3,
            9,
            &mut out,
        );
        assert_eq!(
            short(&out),
            [
                ("req", 0, 1),
                ("req_end", 0, 1),
                ("req", 1, 1),
                ("req_end", 1, 1),
                ("resp", 0, 2),
                ("resp_end", 0, 2),
                ("resp", 1, 3),
                ("resp_end", 1, 3)
            ]
        );
        assert!(matches!(out[5], Event::ResponseEnded { body: Some(2), .. }));
        assert!(matches!(out[7], Event::ResponseEnded { body: Some(0), .. }));
        assert_eq!(s.counts(), Counts::default());
    }

    #[test]
    fn a_101_ends_the_exchange_and_the_parsing() {
        let mut s = Http1Session::new(true);
        let mut out = Vec::new();
        s.feed(
            Flow::ToServer,
            b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            0,
            1,
            1,
            &mut out,
        );
        s.feed(
            Flow::ToClient,
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n\x81\x05hello",
            0,
            2,
            1,
            &mut out,
        );
        s.feed(Flow::ToServer, b"\x81\x85garbage", 0, 3, 1, &mut out);
        s.close(4, &mut out);
        assert_eq!(
            short(&out),
            [
                ("req", 0, 1),
                ("req_end", 0, 1),
                ("resp", 0, 2),
                ("resp_end", 0, 2)
            ]
        );
        assert_eq!(s.counts(), Counts::default());
    }

    #[test]
    fn an_unparsable_stream_aborts_what_is_open() {
        let mut s = Http1Session::new(false);
        let mut out = Vec::new();
        s.feed(Flow::ToServer, b"GET / HTTP/1.1\r\n\r\n", 0, 1, 1, &mut out);
        s.feed(Flow::ToServer, b"GET / HTTP/9.9\r\n\r\n", 0, 2, 1, &mut out);
        s.feed(Flow::ToServer, b"GET / HTTP/1.1\r\n\r\n", 0, 3, 1, &mut out);
        assert_eq!(
            short(&out),
            [("req", 0, 1), ("req_end", 0, 1), ("aborted", 0, 2)]
        );
        assert_eq!(s.counts().unparsable, 1);
        // A response with no request is counted.
        let mut s = Http1Session::new(false);
        s.feed(
            Flow::ToClient,
            b"HTTP/1.1 204 No\r\n\r\n",
            0,
            1,
            1,
            &mut out,
        );
        assert_eq!(s.counts().orphan_responses, 1);
    }

    #[test]
    fn lost_chunk_framing_is_drained_to_the_next_response() {
        let mut s = Http1Session::new(true);
        let mut out = Vec::new();
        s.feed(
            Flow::ToServer,
            b"GET /a HTTP/1.1\r\n\r\n",
            0,
            1,
            1,
            &mut out,
        );
        s.feed(
            Flow::ToServer,
            b"GET /b HTTP/1.1\r\n\r\n",
            0,
            2,
            1,
            &mut out,
        );
        // A gap inside a chunk-size line: the end of /a can no longer be found by framing.
        s.feed(
            Flow::ToClient,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1",
            7,
            3,
            1,
            &mut out,
        );
        assert_eq!(s.counts().framing_lost, 1);
        s.feed(Flow::ToClient, b"more body", 0, 4, 1, &mut out);
        // The next response starts: /a ended with the last bytes drained.
        s.feed(
            Flow::ToClient,
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            0,
            5,
            1,
            &mut out,
        );
        assert_eq!(
            short(&out)[4..],
            [
                ("resp", 0, 3),
                ("resp_end", 0, 4),
                ("resp", 1, 5),
                ("resp_end", 1, 5)
            ]
        );
        assert!(matches!(out[5], Event::ResponseEnded { body: None, .. }));
    }

    #[test]
    fn close_ends_a_close_delimited_response_and_aborts_the_rest() {
        let mut s = Http1Session::new(true);
        let mut out = Vec::new();
        s.feed(
            Flow::ToServer,
            b"GET /a HTTP/1.0\r\n\r\n",
            0,
            1,
            1,
            &mut out,
        );
        s.feed(
            Flow::ToServer,
            b"GET /b HTTP/1.0\r\n\r\n",
            0,
            2,
            1,
            &mut out,
        );
        s.feed(
            Flow::ToClient,
            b"HTTP/1.0 200 OK\r\n\r\nbody",
            0,
            3,
            1,
            &mut out,
        );
        out.clear();
        s.close(9, &mut out);
        assert_eq!(short(&out), [("resp_end", 0, 3), ("aborted", 1, 9)]);
        assert!(matches!(out[0], Event::ResponseEnded { body: Some(4), .. }));
    }
}
