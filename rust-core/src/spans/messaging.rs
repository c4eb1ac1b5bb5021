//! The messaging span builder: one operation (protocols/messaging.rs `MsgOp`) → name,
//! attributes and error with the messaging semantic conventions (the envelope does the
//! rest; the kind comes from the operation type).

use std::collections::{HashMap, VecDeque};

use super::envelope::{push_endpoints, Parts};
use super::{AttrValue, SpanKind};
use crate::conn::{Done, Peer};
use crate::protocols::messaging::{MsgOp, MsgSystem, OpType};
use crate::record::{Link, SpanRecord};

pub fn parts(d: &Done, op: &MsgOp, peer: &Peer) -> Parts {
    let mut attrs: Vec<(&'static str, AttrValue)> = Vec::with_capacity(16);
    let s = |v: &String| AttrValue::Str(v.clone());
    attrs.push(("messaging.system", AttrValue::Static(op.system.name())));
    attrs.push((
        "messaging.operation.type",
        AttrValue::Static(op.op_type.name()),
    ));
    if !op.op_name.is_empty() {
        attrs.push(("messaging.operation.name", AttrValue::Static(op.op_name)));
    }
    for (key, v) in [
        ("messaging.destination.name", &op.destination),
        ("messaging.client.id", &op.client_id),
        ("messaging.consumer.group.name", &op.consumer_group),
        (
            "messaging.rabbitmq.destination.routing_key",
            &op.routing_key,
        ),
        ("messaging.message.id", &op.message_id),
    ] {
        if let Some(v) = v {
            attrs.push((key, s(v)));
        }
    }
    if let Some(p) = op.partition {
        attrs.push((
            "messaging.destination.partition.id",
            AttrValue::Str(p.to_string()),
        ));
    }
    if let Some(o) = op.offset {
        attrs.push(("messaging.kafka.offset", AttrValue::Int(o)));
    }
    if let Some(n) = op.message_count {
        attrs.push(("messaging.batch.message_count", AttrValue::Int(n as i64)));
    }
    if let Some(n) = op.body_size {
        attrs.push(("messaging.message.body.size", AttrValue::Int(n as i64)));
    }
    if let Some(t) = op.delivery_tag {
        attrs.push((
            "messaging.rabbitmq.message.delivery_tag",
            AttrValue::Int(t as i64),
        ));
    }
    push_endpoints(&mut attrs, None, peer, SpanKind::Client);
    let error = if let Some(why) = d.error {
        attrs.push(("error.type", AttrValue::Static("connection_closed")));
        Some(why.to_string())
    } else if op.aborted {
        attrs.push(("error.type", AttrValue::Static("connection_closed")));
        Some("connection closed before the reply".to_string())
    } else if let Some(t) = &op.error_type {
        attrs.push(("error.type", s(t)));
        Some(String::new())
    } else {
        None
    };
    // Semantic conventions: "{operation name} {destination}"; an unknown destination is
    // left out rather than guessed.
    let name = match &op.destination {
        Some(dest) if !dest.is_empty() => format!("{} {dest}", op.op_name),
        Some(_) if op.system == MsgSystem::Rabbitmq => format!("{} amq.default", op.op_name),
        _ => op.op_name.to_string(),
    };
    (name, attrs, error)
}

/// The Kafka records this collector saw produced, by topic and partition: offset ranges and
/// the PRODUCER span that wrote each, so a poll that returns those offsets links to it
/// (records whose producer set no `traceparent` header still continue their trace).
/// Bounded: the newest `PER_PARTITION` produces of at most `PARTITIONS` partitions.
#[derive(Default)]
pub struct Produced {
    ranges: HashMap<(String, i32), VecDeque<Range>>,
}

/// Offsets `[first, end)` and the span that produced them.
type Range = (i64, i64, Link);

const PER_PARTITION: usize = 1024;
const PARTITIONS: usize = 4096;
/// Links one span carries at most (a poll of many small produces).
const MAX_LINKS: usize = 128;

impl Produced {
    /// Notes a finished span: a Kafka produce's offsets, or a poll's links to the produces
    /// of the offsets it returned.
    pub fn observe(&mut self, op: &MsgOp, rec: &mut SpanRecord) {
        let (Some(topic), Some(part), Some(first), Some(n)) = (
            op.destination.as_ref(),
            op.partition,
            op.offset,
            op.message_count,
        ) else {
            return;
        };
        if op.system != MsgSystem::Kafka || n == 0 || op.error_type.is_some() {
            return;
        }
        let end = first.saturating_add(n as i64);
        match op.op_type {
            OpType::Send => {
                if self.ranges.len() >= PARTITIONS
                    && !self.ranges.contains_key(&(topic.clone(), part))
                {
                    // Forget some partition: a bounded table over a perfect one.
                    let k = self.ranges.keys().next().cloned();
                    k.map(|k| self.ranges.remove(&k));
                }
                let q = self.ranges.entry((topic.clone(), part)).or_default();
                if q.len() >= PER_PARTITION {
                    q.pop_front();
                }
                q.push_back((
                    first,
                    end,
                    Link {
                        trace_id: rec.trace_id,
                        span_id: rec.span_id,
                        flags: (rec.flags & 0xff) as u8,
                    },
                ));
            }
            OpType::Receive | OpType::Process => {
                let Some(q) = self.ranges.get(&(topic.clone(), part)) else {
                    return;
                };
                for (s, e, l) in q {
                    if rec.links.len() >= MAX_LINKS {
                        break;
                    }
                    if *s < end && first < *e && !rec.links.iter().any(|x| x.span_id == l.span_id) {
                        rec.links.push(*l);
                    }
                }
            }
            OpType::Settle => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::{Exchange, Message, Side};
    use crate::events::ConnTuple;
    use crate::protocols::messaging::OpType;

    fn done(op: MsgOp) -> (Done, Peer) {
        let mut t = ConnTuple {
            family: 2,
            sport: 40000,
            dport: 9092,
            ..Default::default()
        };
        t.saddr[..4].copy_from_slice(&[10, 0, 0, 1]);
        t.daddr[..4].copy_from_slice(&[10, 0, 0, 2]);
        let d = Done {
            side: Side::Client,
            ex: Exchange {
                tid: 1,
                ctx: None,
                req_start: 1,
                req_end: Some(2),
                stream_id: 0,
                key: 0,
                msg: Message::Messaging(Box::new(op)),
            },
            resp_end: 3,
            resp_body: None,
            error: None,
        };
        (d, Peer::of(&t))
    }

    fn attr<'a>(p: &'a Parts, k: &str) -> Option<&'a AttrValue> {
        p.1.iter().find(|(n, _)| *n == k).map(|(_, v)| v)
    }

    #[test]
    fn names_attributes_and_errors() {
        let op = MsgOp {
            system: MsgSystem::Kafka,
            op_type: OpType::Send,
            op_name: "send",
            destination: Some("orders".into()),
            partition: Some(3),
            offset: Some(42),
            message_count: Some(2),
            client_id: Some("svc".into()),
            ..Default::default()
        };
        let (d, peer) = done(op.clone());
        let p = parts(&d, &op, &peer);
        assert_eq!(p.0, "send orders");
        assert_eq!(p.2, None);
        assert_eq!(
            attr(&p, "messaging.system"),
            Some(&AttrValue::Static("kafka"))
        );
        assert_eq!(
            attr(&p, "messaging.operation.type"),
            Some(&AttrValue::Static("send"))
        );
        assert_eq!(
            attr(&p, "messaging.destination.partition.id").and_then(|v| v.as_str()),
            Some("3")
        );
        assert_eq!(
            attr(&p, "messaging.kafka.offset"),
            Some(&AttrValue::Int(42))
        );
        assert_eq!(
            attr(&p, "messaging.batch.message_count"),
            Some(&AttrValue::Int(2))
        );
        assert_eq!(attr(&p, "server.port"), Some(&AttrValue::Int(9092)));

        // An error reply; an unknown topic is not named.
        let failed = MsgOp {
            destination: None,
            error_type: Some("NOT_LEADER_OR_FOLLOWER".into()),
            ..op.clone()
        };
        let (d, peer) = done(failed.clone());
        let p = parts(&d, &failed, &peer);
        assert_eq!(p.0, "send");
        assert_eq!(p.2, Some(String::new()));
        assert_eq!(
            attr(&p, "error.type").and_then(|v| v.as_str()),
            Some("NOT_LEADER_OR_FOLLOWER")
        );

        // RabbitMQ's default exchange has an empty name.
        let publish = MsgOp {
            system: MsgSystem::Rabbitmq,
            op_name: "publish",
            destination: Some(String::new()),
            routing_key: Some("tasks".into()),
            ..Default::default()
        };
        let (d, peer) = done(publish.clone());
        let p = parts(&d, &publish, &peer);
        assert_eq!(p.0, "publish amq.default");
    }

    fn record(span: u8) -> SpanRecord {
        SpanRecord {
            trace_id: [span; 16],
            span_id: [span; 8],
            parent_span_id: None,
            trace_state: String::new(),
            flags: 1,
            name: String::new(),
            kind: SpanKind::Producer,
            start_ns: 0,
            end_ns: 0,
            attrs: Vec::new(),
            error: None,
            links: Vec::new(),
            process: std::sync::Arc::new(crate::process::ProcessInfo::from_parts(1, "", "", b"")),
        }
    }

    #[test]
    fn polls_link_to_the_produces_of_their_offsets() {
        let op = |t: OpType, first: i64, n: u64| MsgOp {
            system: MsgSystem::Kafka,
            op_type: t,
            destination: Some("orders".into()),
            partition: Some(0),
            offset: Some(first),
            message_count: Some(n),
            ..Default::default()
        };
        let mut p = Produced::default();
        p.observe(&op(OpType::Send, 0, 2), &mut record(1)); // offsets 0, 1
        p.observe(&op(OpType::Send, 2, 1), &mut record(2)); // 2
        p.observe(&op(OpType::Send, 3, 5), &mut record(3)); // 3..7
        let other = MsgOp {
            partition: Some(1),
            ..op(OpType::Send, 0, 9)
        };
        p.observe(&other, &mut record(4));

        let mut poll = record(9);
        p.observe(&op(OpType::Receive, 1, 3), &mut poll); // 1, 2, 3
        let ids: Vec<u8> = poll.links.iter().map(|l| l.span_id[0]).collect();
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!(poll.links[0].trace_id, [1; 16]);
        assert_eq!(poll.links[0].flags, 1);

        // Offsets nobody was seen producing: no link; a link already there is not doubled.
        let mut late = record(10);
        p.observe(&op(OpType::Receive, 8, 4), &mut late);
        assert!(late.links.is_empty());
        let mut again = record(11);
        again.links.push(poll.links[0]);
        p.observe(&op(OpType::Receive, 0, 1), &mut again);
        assert_eq!(again.links.len(), 1);
    }
}
