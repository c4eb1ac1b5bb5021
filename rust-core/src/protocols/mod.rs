//! Application-protocol parsers fed with the byte streams captured per connection.

pub mod db;
pub mod http1;
pub mod http2;
pub mod postgres;
pub mod redis;
pub mod sql;
