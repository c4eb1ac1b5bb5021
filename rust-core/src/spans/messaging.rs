//! The messaging span builder: one operation (protocols/messaging.rs `MsgOp`) → name,
//! attributes and error with the messaging semantic conventions (the envelope does the
//! rest; the kind comes from the operation type).

use super::envelope::{push_endpoints, Parts};
use super::{AttrValue, SpanKind};
use crate::conn::{Done, Peer};
use crate::protocols::messaging::{MsgOp, MsgSystem};

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
}
