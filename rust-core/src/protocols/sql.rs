//! SQL text as spans need it: the operation, the collection, the `db.query.summary`, and
//! the text with literals replaced (`db.query.text`, sanitized by default).
//!
//! (Placeholder bodies: the tokenizer lands with the database parsers.)

use super::db::{QueryTextOptions, SessionStats};

/// What a statement (or several, `;`-separated) says about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SqlInfo {
    /// First statement's operation, upper case: `SELECT`, `INSERT`, `CREATE TABLE`...
    pub operation: Option<String>,
    /// The table when the text names exactly one (`db.collection.name`).
    pub collection: Option<String>,
    /// `{operation} {target}` per statement and sub-query in order, e.g.
    /// `INSERT orders SELECT carts`, `SELECT users; UPDATE users` (semantic conventions'
    /// db.query.summary), at most 255 characters.
    pub summary: Option<String>,
}

pub fn analyze(sql: &str) -> SqlInfo {
    let operation = sql
        .split_whitespace()
        .next()
        .map(|w| w.to_ascii_uppercase());
    SqlInfo {
        summary: operation.clone(),
        operation,
        collection: None,
    }
}

/// Literals become `?`, `IN (1, 2, 3)` becomes `IN (?)`, comments are dropped;
/// placeholders (`$1`, `?`, `:name`) and identifiers stay.
pub fn sanitize(sql: &str) -> String {
    sql.to_string()
}

/// `db.query.text` under `opts`: None when not captured; sanitized unless turned off;
/// cut at a character boundary to `max_len` bytes (counted in `stats.query_truncated`).
pub fn query_text(sql: &str, opts: &QueryTextOptions, stats: &mut SessionStats) -> Option<String> {
    if !opts.capture {
        return None;
    }
    let mut t = if opts.sanitize {
        sanitize(sql)
    } else {
        sql.to_string()
    };
    if t.len() > opts.max_len {
        let mut cut = opts.max_len;
        while !t.is_char_boundary(cut) {
            cut -= 1;
        }
        t.truncate(cut);
        stats.query_truncated += 1;
    }
    Some(t)
}
