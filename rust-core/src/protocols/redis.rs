//! Redis RESP2/RESP3 (being written: see protocols/db.rs for the interface).
