//! PostgreSQL v3 wire protocol (being written: see protocols/db.rs for the interface).
