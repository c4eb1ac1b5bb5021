//! Application-protocol parsers fed with the byte streams captured per connection.

pub mod amqp;
pub mod capture;
pub mod db;
pub mod http1;
pub mod http2;
pub mod kafka;
pub mod messaging;
pub mod mongodb;
pub mod mysql;
pub mod ops;
pub mod postgres;
pub mod redis;
pub mod session;
pub mod sql;

/// Protocols recognised by content, in the order their sniffers are tried on a new
/// connection's first bytes (after HTTP/2, TLS and HTTP/1). Adding one is a parser module
/// and an entry here.
pub const PROTOCOLS: &[session::Protocol] = &[
    session::Protocol {
        name: "postgresql",
        sniff: postgres::sniff,
        port: 5432,
        midstream: postgres::plausible_midstream,
        session: |opts| db::session(postgres::PgSession::new(opts)),
    },
    session::Protocol {
        name: "redis",
        sniff: redis::sniff,
        port: 6379,
        midstream: redis::plausible_midstream,
        session: |opts| db::session(redis::RedisSession::new(opts)),
    },
    session::Protocol {
        name: "mysql",
        sniff: mysql::sniff,
        port: 3306,
        midstream: mysql::plausible_midstream,
        session: |opts| db::session(mysql::MySqlSession::new(opts)),
    },
    session::Protocol {
        name: "mongodb",
        sniff: mongodb::sniff,
        port: 27017,
        midstream: mongodb::plausible_midstream,
        session: |opts| db::session(mongodb::MongoSession::new(opts)),
    },
    session::Protocol {
        name: "kafka",
        sniff: kafka::sniff,
        port: 9092,
        midstream: kafka::plausible_midstream,
        session: |_| messaging::session(kafka::KafkaSession::new()),
    },
    session::Protocol {
        name: "amqp",
        sniff: amqp::sniff,
        port: 5672,
        midstream: amqp::plausible_midstream,
        session: |_| messaging::session(amqp::AmqpSession::new()),
    },
];
