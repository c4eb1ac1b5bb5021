//! Application-protocol parsers fed with the byte streams captured per connection.

pub mod capture;
pub mod db;
pub mod http1;
pub mod http2;
pub mod mongodb;
pub mod mysql;
pub mod postgres;
pub mod redis;
pub mod session;
pub mod sql;

/// Database protocols, in the order their sniffers are tried on a new connection's first
/// bytes (after HTTP/2, TLS and HTTP/1). Adding one is a parser module and a line here.
pub const DATABASES: &[db::DbProtocol] = &[
    db::DbProtocol {
        name: "postgresql",
        sniff: postgres::sniff,
        port: 5432,
        midstream: postgres::plausible_midstream,
        session: |opts| Box::new(postgres::PgSession::new(opts)),
    },
    db::DbProtocol {
        name: "redis",
        sniff: redis::sniff,
        port: 6379,
        midstream: redis::plausible_midstream,
        session: |opts| Box::new(redis::RedisSession::new(opts)),
    },
    db::DbProtocol {
        name: "mysql",
        sniff: mysql::sniff,
        port: 3306,
        midstream: mysql::plausible_midstream,
        session: |opts| Box::new(mysql::MySqlSession::new(opts)),
    },
    db::DbProtocol {
        name: "mongodb",
        sniff: mongodb::sniff,
        port: 27017,
        midstream: mongodb::plausible_midstream,
        session: |opts| Box::new(mongodb::MongoSession::new(opts)),
    },
];
