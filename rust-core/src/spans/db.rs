//! The database span builder: one operation (protocols/db.rs `DbOp`) → name, attributes and
//! error with the stable database semantic conventions (the envelope does the rest).

use super::envelope::{push_endpoints, Parts};
use super::{AttrValue, SpanKind};
use crate::conn::{Done, Peer};
use crate::protocols::db::DbOp;

pub fn parts(d: &Done, op: &DbOp, peer: &Peer, kind: SpanKind) -> Parts {
    let mut attrs: Vec<(&'static str, AttrValue)> = Vec::with_capacity(14);
    let s = |v: &String| AttrValue::Str(v.clone());
    let system = op.system.map(|sys| sys.name());
    if let Some(sys) = system {
        attrs.push(("db.system.name", AttrValue::Static(sys)));
    }
    for (key, v) in [
        ("db.namespace", &op.namespace),
        ("db.collection.name", &op.collection),
        ("db.operation.name", &op.operation),
        ("db.query.summary", &op.summary),
        ("db.query.text", &op.query_text),
        ("db.response.status_code", &op.status_code),
    ] {
        if let Some(v) = v {
            attrs.push((key, s(v)));
        }
    }
    if let Some(n) = op.batch_size.filter(|&n| n >= 2) {
        attrs.push(("db.operation.batch.size", AttrValue::Int(n as i64)));
    }
    push_endpoints(&mut attrs, None, peer, kind);
    let error = if let Some(why) = d.error {
        attrs.push(("error.type", AttrValue::Static("connection_closed")));
        Some(why.to_string())
    } else if op.aborted {
        attrs.push(("error.type", AttrValue::Static("connection_closed")));
        Some("connection closed before the reply".to_string())
    } else if op.error {
        let t = op.error_type.as_ref().or(op.status_code.as_ref());
        attrs.push((
            "error.type",
            t.map_or(AttrValue::Static("_OTHER"), |t| AttrValue::Str(t.clone())),
        ));
        Some(String::new())
    } else {
        None
    };
    // Semantic conventions: the summary, else "{operation} {target}", else the system.
    let name = match (&op.summary, &op.operation, &op.collection) {
        (Some(sum), _, _) => sum.clone(),
        (None, Some(o), Some(c)) => format!("{o} {c}"),
        (None, Some(o), None) => o.clone(),
        (None, None, _) => system.unwrap_or("db").to_string(),
    };
    (name, attrs, error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::{Exchange, Message, Side};
    use crate::events::ConnTuple;
    use crate::protocols::db::DbSystem;

    fn done(op: DbOp, error: Option<&'static str>) -> (Done, Peer) {
        let mut t = ConnTuple {
            family: 2,
            sport: 40000,
            dport: 5432,
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
                msg: Message::Db(Box::new(op)),
            },
            resp_end: 3,
            resp_body: None,
            error,
        };
        (d, Peer::of(&t))
    }

    fn attr<'a>(p: &'a Parts, k: &str) -> Option<&'a AttrValue> {
        p.1.iter().find(|(n, _)| *n == k).map(|(_, v)| v)
    }

    #[test]
    fn names_attributes_and_errors() {
        let op = DbOp {
            system: Some(DbSystem::Postgresql),
            namespace: Some("shop".into()),
            operation: Some("SELECT".into()),
            collection: Some("users".into()),
            summary: Some("SELECT users".into()),
            query_text: Some("SELECT * FROM users WHERE id = $1".into()),
            ..Default::default()
        };
        let (d, peer) = done(op.clone(), None);
        let p = parts(&d, &op, &peer, SpanKind::Client);
        assert_eq!(p.0, "SELECT users");
        assert_eq!(p.2, None);
        assert_eq!(
            attr(&p, "db.system.name"),
            Some(&AttrValue::Static("postgresql"))
        );
        assert_eq!(
            attr(&p, "db.namespace").and_then(|v| v.as_str()),
            Some("shop")
        );
        assert_eq!(
            attr(&p, "server.address").and_then(|v| v.as_str()),
            Some("10.0.0.2")
        );
        assert_eq!(attr(&p, "server.port"), Some(&AttrValue::Int(5432)));
        assert_eq!(attr(&p, "error.type"), None);
        assert_eq!(attr(&p, "db.operation.batch.size"), None);

        // An error reply: SQLSTATE as status code and error type.
        let failed = DbOp {
            error: true,
            status_code: Some("22012".into()),
            error_type: Some("22012".into()),
            summary: None,
            collection: None,
            ..op.clone()
        };
        let (d, peer) = done(failed.clone(), None);
        let p = parts(&d, &failed, &peer, SpanKind::Client);
        assert_eq!(p.0, "SELECT");
        assert_eq!(p.2, Some(String::new()));
        assert_eq!(
            attr(&p, "error.type").and_then(|v| v.as_str()),
            Some("22012")
        );
        assert_eq!(
            attr(&p, "db.response.status_code").and_then(|v| v.as_str()),
            Some("22012")
        );

        // Nothing known but the system; a batch; the connection closed first.
        let bare = DbOp {
            system: Some(DbSystem::Redis),
            batch_size: Some(3),
            aborted: true,
            ..Default::default()
        };
        let (d, peer) = done(bare.clone(), None);
        let p = parts(&d, &bare, &peer, SpanKind::Client);
        assert_eq!(p.0, "redis");
        assert_eq!(
            attr(&p, "db.operation.batch.size"),
            Some(&AttrValue::Int(3))
        );
        assert_eq!(
            attr(&p, "error.type"),
            Some(&AttrValue::Static("connection_closed"))
        );
        assert!(p.2.is_some());
    }
}
