//! Application-protocol parsers fed with the byte streams captured per connection.

pub mod http1;
pub mod http2;
