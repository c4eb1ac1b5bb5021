//! SQL text as spans need it: the operation, the collection, the `db.query.summary`, and
//! the text with literals replaced (`db.query.text`, sanitized by default).
//!
//! Hand-written tokenizer, no crate: on the ten queries of benches/sql.rs `sanitize` takes
//! ~0.6 µs a query and `analyze` ~1.4 µs, while sqlparser 0.64's `Tokenizer` alone (it
//! builds with Rust 1.95) takes ~5.3 µs (PostgreSqlDialect) to ~6.2 µs (MySqlDialect).
//!
//! One tokenizer serves PostgreSQL and MySQL, which nothing here tells apart; where the
//! dialects disagree it picks the reading that leaks no literal:
//! - `'...'` takes `''` and backslash escapes (MySQL; PostgreSQL's `E'...'`). When that
//!   leaves a literal open at the end, the text is read again without backslash escapes
//!   (PostgreSQL's standard strings, `'C:\'`) and that reading is kept if it ends cleanly.
//! - `"..."` is an identifier (PostgreSQL; MySQL under ANSI_QUOTES) and kept, except where
//!   only a value can stand (a MySQL string): after an operator, after LIKE, ILIKE, REGEXP,
//!   RLIKE, THEN, ELSE, DEFAULT or COMMENT, and as an item of `IN (...)` or `VALUES (...)`,
//!   unless a `.` follows (`"t"."c"`). An open one becomes `?`. Backticks are identifiers.
//! - `?` is a placeholder, also where PostgreSQL means its jsonb operator: it is kept
//!   either way, as are `?|`, `?&`, `$1`, `:name`, `%s` and `%(name)s`.
//! - `--` and nested `/* */` comments are dropped, and so is `#` to the end of the line
//!   (MySQL) except PostgreSQL's `#>`, `#>>` and `#-` operators.
//! - TRUE, FALSE and NULL are keywords and kept; a sign after an operator, `(`, `,` or
//!   start is part of its number (`= -1` → `= ?`).
//! - `IN (...)` of literals only becomes `IN (?)` (a sub-query or placeholders stay);
//!   `VALUES` rows equal to the first one once sanitized are dropped, so a batch insert
//!   reads `VALUES (?, ?)` whatever its row count.
//! - Whitespace and comments between tokens become one space; the rest is copied as is.
//!
//! The summary follows the conventions' "Generating a summary of the query": per
//! statement (`; `-separated), each operation then the collections it targets, in the
//! order they appear, sub-queries included (`INSERT orders SELECT carts`); targets are
//! written as in the text (schema, quotes), operations in upper case; CTE names and
//! `DUAL` are no targets; at most 255 characters, never cutting a word.

use std::collections::VecDeque;

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

/// `db.query.summary` is cut (between words) to this many characters.
const SUMMARY_MAX: usize = 255;
/// Parentheses followed this deep; deeper ones are only counted.
const MAX_DEPTH: usize = 64;
/// CTE names remembered per text.
const MAX_CTES: usize = 32;

// ------------------------------------------------------------------------------- tokens

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Unquoted identifier or keyword.
    Word,
    /// `"..."`: identifier, or a MySQL string (decided by context).
    Quoted,
    /// `` `...` ``: MySQL identifier.
    Backtick,
    /// String literal: `'...'`, `E'...'`, `X'...'`, `_utf8mb4'...'`, `$tag$...$tag$`.
    Str,
    Num,
    /// `$1`, `?1`.
    Param,
    /// A run of operator characters (`=`, `->>`, `::`, `?`, `@>`...).
    Op,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Semi,
    Dot,
    Other,
}

#[derive(Debug, Clone, Copy)]
struct Tok {
    kind: Kind,
    start: usize,
    end: usize,
    /// Whitespace or a comment came before it.
    space: bool,
    /// A literal or quoted identifier the text ended in.
    open: bool,
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

fn is_op(c: u8) -> bool {
    matches!(
        c,
        b'+' | b'-'
            | b'*'
            | b'/'
            | b'<'
            | b'>'
            | b'='
            | b'~'
            | b'!'
            | b'@'
            | b'#'
            | b'%'
            | b'^'
            | b'&'
            | b'|'
            | b'?'
            | b':'
            | b'\\'
    )
}

/// Single pass over the text; every token ends at an ASCII byte or the end, so token
/// bounds are always character boundaries.
struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
    /// Backslash escapes in `'...'` and `"..."` (MySQL); `E'...'` always has them.
    backslash: bool,
    /// The current token is a literal that the text ended in.
    open: bool,
    /// Some literal was left open.
    unterminated: bool,
}

impl<'a> Lexer<'a> {
    fn new(sql: &'a str, backslash: bool) -> Self {
        Lexer {
            s: sql.as_bytes(),
            i: 0,
            backslash,
            open: false,
            unterminated: false,
        }
    }

    fn at(&self, i: usize) -> u8 {
        self.s.get(i).copied().unwrap_or(0)
    }

    /// `#` at `i` starts a MySQL comment, unless it begins PostgreSQL's `#>`, `#>>`, `#-`.
    fn hash_comment(&self, i: usize) -> bool {
        match self.at(i + 1) {
            b'>' => false,
            b'-' => self.at(i + 2) == b'-',
            _ => true,
        }
    }

    /// Skips whitespace and comments; true when there were some.
    fn skip_space(&mut self) -> bool {
        let mut space = false;
        while self.i < self.s.len() {
            let c = self.s[self.i];
            if matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) {
                self.i += 1;
            } else if (c == b'-' && self.at(self.i + 1) == b'-')
                || (c == b'#' && self.hash_comment(self.i))
            {
                while self.i < self.s.len() && self.s[self.i] != b'\n' {
                    self.i += 1;
                }
            } else if c == b'/' && self.at(self.i + 1) == b'*' {
                // PostgreSQL nests them; an open one runs to the end.
                let mut depth = 0usize;
                while self.i < self.s.len() {
                    if self.s[self.i] == b'/' && self.at(self.i + 1) == b'*' {
                        depth += 1;
                        self.i += 2;
                    } else if self.s[self.i] == b'*' && self.at(self.i + 1) == b'/' {
                        depth -= 1;
                        self.i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        self.i += 1;
                    }
                }
            } else {
                break;
            }
            space = true;
        }
        space
    }

    /// From the opening quote `q` at `self.i` to past the closing one (a doubled one does
    /// not close), or to the end.
    fn quoted(&mut self, q: u8, backslash: bool) {
        self.i += 1;
        while self.i < self.s.len() {
            let c = self.s[self.i];
            if backslash && c == b'\\' {
                self.i += 2;
                continue;
            }
            self.i += 1;
            if c == q {
                if self.at(self.i) == q {
                    self.i += 1;
                    continue;
                }
                return;
            }
        }
        self.i = self.s.len();
        self.open = true;
    }

    /// `$tag$...$tag$` from the `$` at `self.i` (the tag empty or an identifier without
    /// `$`); false when no such opening is there.
    fn dollar(&mut self) -> bool {
        let start = self.i;
        let mut j = start + 1;
        if j < self.s.len() && is_ident_start(self.s[j]) {
            j += 1;
            while j < self.s.len() && is_ident(self.s[j]) && self.s[j] != b'$' {
                j += 1;
            }
        }
        if self.at(j) != b'$' {
            return false;
        }
        let tag = &self.s[start..=j];
        let body = j + 1;
        match self.s[body..].windows(tag.len()).position(|w| w == tag) {
            Some(p) => self.i = body + p + tag.len(),
            None => {
                self.i = self.s.len();
                self.open = true;
            }
        }
        true
    }

    fn digits(&mut self, hex: bool) {
        while self.i < self.s.len() {
            let c = self.s[self.i];
            if c.is_ascii_digit() || c == b'_' || (hex && c.is_ascii_hexdigit()) {
                self.i += 1;
            } else {
                break;
            }
        }
    }

    /// A number at `self.i` (a digit, or `.` and a digit); digits followed by identifier
    /// characters are a MySQL identifier (`1st_table`).
    fn number(&mut self) -> Kind {
        let mut plain = true;
        if self.s[self.i] == b'0'
            && matches!(self.at(self.i + 1), b'x' | b'X' | b'b' | b'B' | b'o' | b'O')
            && self.at(self.i + 2).is_ascii_hexdigit()
        {
            self.i += 2;
            self.digits(true);
        } else {
            self.digits(false);
            if self.at(self.i) == b'.' && self.at(self.i + 1) != b'.' {
                self.i += 1;
                plain = false;
                self.digits(false);
            }
            if matches!(self.at(self.i), b'e' | b'E') {
                let k = if matches!(self.at(self.i + 1), b'+' | b'-') {
                    self.i + 2
                } else {
                    self.i + 1
                };
                if self.at(k).is_ascii_digit() {
                    self.i = k;
                    plain = false;
                    self.digits(false);
                }
            }
        }
        if plain && self.i < self.s.len() && is_ident(self.s[self.i]) {
            while self.i < self.s.len() && is_ident(self.s[self.i]) {
                self.i += 1;
            }
            return Kind::Word;
        }
        Kind::Num
    }

    /// A word, or a literal with a prefix: `E'..'`, `B'..'`, `X'..'`, `N'..'`,
    /// `_charset'..'`, `U&'..'` (and the identifier `U&".."`).
    fn word(&mut self) -> Kind {
        let start = self.i;
        while self.i < self.s.len() && is_ident(self.s[self.i]) {
            self.i += 1;
        }
        let w = &self.s[start..self.i];
        let next = self.at(self.i);
        if next == b'\'' {
            let one = if w.len() == 1 { w[0] | 0x20 } else { 0 };
            if matches!(one, b'e' | b'b' | b'x' | b'n') || w[0] == b'_' {
                self.quoted(b'\'', one == b'e' || self.backslash);
                return Kind::Str;
            }
        }
        if w.len() == 1 && w[0] | 0x20 == b'u' && next == b'&' {
            match self.at(self.i + 1) {
                b'\'' => {
                    self.i += 1;
                    self.quoted(b'\'', false);
                    return Kind::Str;
                }
                b'"' => {
                    self.i += 1;
                    self.quoted(b'"', false);
                    return Kind::Quoted;
                }
                _ => {}
            }
        }
        Kind::Word
    }

    /// An operator run; it stops before a comment and before a sign that starts a
    /// number (`=-1` is `=` then `-1`).
    fn op(&mut self) -> Kind {
        if self.s[self.i] == b'?' && self.at(self.i + 1).is_ascii_digit() {
            self.i += 1;
            self.digits(false);
            return Kind::Param;
        }
        self.i += 1;
        while self.i < self.s.len() {
            let c = self.s[self.i];
            if !is_op(c) {
                break;
            }
            let n = self.at(self.i + 1);
            if (c == b'-' && n == b'-')
                || (c == b'/' && n == b'*')
                || (c == b'#' && self.hash_comment(self.i))
                || ((c == b'-' || c == b'+')
                    && (n.is_ascii_digit() || (n == b'.' && self.at(self.i + 2).is_ascii_digit())))
            {
                break;
            }
            self.i += 1;
        }
        Kind::Op
    }
}

impl Iterator for Lexer<'_> {
    type Item = Tok;

    fn next(&mut self) -> Option<Tok> {
        let space = self.skip_space();
        if self.i >= self.s.len() {
            return None;
        }
        let start = self.i;
        self.open = false;
        let c = self.s[start];
        let kind = match c {
            b'\'' => {
                self.quoted(b'\'', self.backslash);
                Kind::Str
            }
            b'"' => {
                self.quoted(b'"', self.backslash);
                Kind::Quoted
            }
            b'`' => {
                self.quoted(b'`', false);
                Kind::Backtick
            }
            b'$' if self.at(start + 1).is_ascii_digit() => {
                self.i += 1;
                self.digits(false);
                Kind::Param
            }
            b'$' if self.dollar() => Kind::Str,
            b'0'..=b'9' => self.number(),
            b'.' if self.at(start + 1).is_ascii_digit()
                && !(start > 0 && is_ident(self.s[start - 1])) =>
            {
                self.number()
            }
            b'.' => {
                self.i += 1;
                Kind::Dot
            }
            b'(' | b')' | b'[' | b']' | b',' | b';' => {
                self.i += 1;
                match c {
                    b'(' => Kind::LParen,
                    b')' => Kind::RParen,
                    b'[' => Kind::LBracket,
                    b']' => Kind::RBracket,
                    b',' => Kind::Comma,
                    _ => Kind::Semi,
                }
            }
            c if is_ident_start(c) => self.word(),
            c if is_op(c) => self.op(),
            _ => {
                self.i += 1;
                Kind::Other
            }
        };
        if self.open {
            self.unterminated = true;
        }
        Some(Tok {
            kind,
            start,
            end: self.i,
            space,
            open: self.open,
        })
    }
}

// ----------------------------------------------------------------------------- keywords

macro_rules! keywords {
    ($($name:ident = $text:literal,)*) => {
        /// Words that mean something here (`Kw::None`: any other word).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Kw {
            None,
            $($name,)*
        }

        impl Kw {
            /// In the order of their text, for `of`'s binary search (a test checks it).
            const ALL: &'static [Kw] = &[$(Kw::$name,)*];

            const fn text(self) -> &'static str {
                match self {
                    Kw::None => "",
                    $(Kw::$name => $text,)*
                }
            }
        }
    };
}

keywords! {
    Abort = "ABORT", Aggregate = "AGGREGATE", All = "ALL", Alter = "ALTER",
    Analyze = "ANALYZE", And = "AND", As = "AS", Begin = "BEGIN", Call = "CALL",
    Checkpoint = "CHECKPOINT", Close = "CLOSE", Cluster = "CLUSTER",
    Collation = "COLLATION", Comment = "COMMENT", Commit = "COMMIT",
    Concurrently = "CONCURRENTLY", Copy = "COPY", Create = "CREATE", Cross = "CROSS",
    Database = "DATABASE", Deallocate = "DEALLOCATE", Declare = "DECLARE",
    Default = "DEFAULT", Delayed = "DELAYED", Delete = "DELETE", Desc = "DESC",
    Describe = "DESCRIBE", Discard = "DISCARD", Distinct = "DISTINCT", Do = "DO",
    Domain = "DOMAIN", Drop = "DROP", Dual = "DUAL", Else = "ELSE", End = "END",
    Event = "EVENT", Except = "EXCEPT", Exec = "EXEC", Execute = "EXECUTE",
    Exists = "EXISTS", Explain = "EXPLAIN", Extension = "EXTENSION", Fetch = "FETCH",
    Flush = "FLUSH", For = "FOR", Force = "FORCE", Foreign = "FOREIGN", From = "FROM",
    Full = "FULL", Function = "FUNCTION", Global = "GLOBAL", Grant = "GRANT",
    Group = "GROUP", Handler = "HANDLER", Having = "HAVING", HighPriority = "HIGH_PRIORITY",
    If = "IF", Ignore = "IGNORE", Ilike = "ILIKE", Import = "IMPORT", In = "IN",
    Index = "INDEX", Inner = "INNER", Insert = "INSERT", Intersect = "INTERSECT",
    Into = "INTO", Join = "JOIN", Kill = "KILL", Lateral = "LATERAL", Left = "LEFT",
    Like = "LIKE", Limit = "LIMIT", Listen = "LISTEN", Load = "LOAD", Local = "LOCAL",
    Lock = "LOCK", LowPriority = "LOW_PRIORITY", Materialized = "MATERIALIZED",
    Merge = "MERGE", Minus = "MINUS", Move = "MOVE", Natural = "NATURAL", Not = "NOT",
    Notify = "NOTIFY", Offset = "OFFSET", On = "ON", Only = "ONLY", Optimize = "OPTIMIZE",
    Or = "OR", Order = "ORDER", Outer = "OUTER", Overriding = "OVERRIDING",
    Partition = "PARTITION", Policy = "POLICY", Prepare = "PREPARE",
    Procedure = "PROCEDURE", Publication = "PUBLICATION", Purge = "PURGE", Quick = "QUICK",
    Reassign = "REASSIGN", Recursive = "RECURSIVE", Refresh = "REFRESH", Regexp = "REGEXP",
    Reindex = "REINDEX", Release = "RELEASE", Rename = "RENAME", Repair = "REPAIR",
    Replace = "REPLACE", Reset = "RESET", Returning = "RETURNING", Revoke = "REVOKE",
    Right = "RIGHT", Rlike = "RLIKE", Role = "ROLE", Rollback = "ROLLBACK", Rule = "RULE",
    Savepoint = "SAVEPOINT", Schema = "SCHEMA", Select = "SELECT", Sequence = "SEQUENCE",
    Server = "SERVER", Set = "SET", Show = "SHOW", Start = "START",
    StraightJoin = "STRAIGHT_JOIN", Subscription = "SUBSCRIPTION", Table = "TABLE",
    Tables = "TABLES", Tablesample = "TABLESAMPLE", Tablespace = "TABLESPACE",
    Temp = "TEMP", Temporary = "TEMPORARY", Then = "THEN", To = "TO", Trigger = "TRIGGER",
    Truncate = "TRUNCATE", Type = "TYPE", Union = "UNION", Unique = "UNIQUE",
    Unlisten = "UNLISTEN", Unlock = "UNLOCK", Unlogged = "UNLOGGED", Update = "UPDATE",
    Upsert = "UPSERT", Use = "USE", User = "USER", Using = "USING", Vacuum = "VACUUM",
    Values = "VALUES", Verbose = "VERBOSE", View = "VIEW", When = "WHEN", Where = "WHERE",
    Window = "WINDOW", With = "WITH",
}

/// A word of at most 16 bytes, upper case, as a number that sorts as the text does.
const fn kw_key(w: &[u8]) -> u128 {
    let mut buf = [0u8; 16];
    let mut i = 0;
    while i < w.len() && i < buf.len() {
        buf[i] = w[i].to_ascii_uppercase();
        i += 1;
    }
    u128::from_be_bytes(buf)
}

/// `kw_key` of `Kw::ALL`, in the same order.
const KW_KEYS: [u128; Kw::ALL.len()] = {
    let mut keys = [0u128; Kw::ALL.len()];
    let mut i = 0;
    while i < keys.len() {
        keys[i] = kw_key(Kw::ALL[i].text().as_bytes());
        i += 1;
    }
    keys
};

impl Kw {
    fn of(word: &str) -> Kw {
        let b = word.as_bytes();
        if b.len() < 2 || b.len() > 16 {
            return Kw::None;
        }
        match KW_KEYS.binary_search(&kw_key(b)) {
            Ok(i) => Kw::ALL[i],
            Err(_) => Kw::None,
        }
    }

    /// The few words `sanitize` needs, without the search.
    fn for_sanitize(word: &str) -> Kw {
        let b = word.as_bytes();
        let is = |k: &str| b.eq_ignore_ascii_case(k.as_bytes());
        match b.len() {
            2 if is("IN") => Kw::In,
            4 if is("LIKE") => Kw::Like,
            4 if is("THEN") => Kw::Then,
            4 if is("ELSE") => Kw::Else,
            5 if is("ILIKE") => Kw::Ilike,
            5 if is("RLIKE") => Kw::Rlike,
            5 if is("VALUE") => Kw::Values,
            6 if is("VALUES") => Kw::Values,
            6 if is("REGEXP") => Kw::Regexp,
            7 if is("DEFAULT") => Kw::Default,
            7 if is("COMMENT") => Kw::Comment,
            _ => Kw::None,
        }
    }

    /// Words that begin a statement whose operation is that word alone.
    fn starts_statement(self) -> bool {
        use Kw::*;
        matches!(
            self,
            Abort
                | Analyze
                | Begin
                | Checkpoint
                | Close
                | Cluster
                | Comment
                | Commit
                | Deallocate
                | Declare
                | Discard
                | Do
                | End
                | Exec
                | Execute
                | Explain
                | Fetch
                | Flush
                | Grant
                | Handler
                | Import
                | Kill
                | Listen
                | Load
                | Move
                | Notify
                | Optimize
                | Prepare
                | Purge
                | Reassign
                | Refresh
                | Reindex
                | Release
                | Rename
                | Repair
                | Reset
                | Revoke
                | Rollback
                | Savepoint
                | Set
                | Show
                | Start
                | Unlisten
                | Unlock
                | Vacuum
                | Values
        )
    }

    /// Words passed over where a table name is expected.
    fn skipped(self) -> bool {
        use Kw::*;
        matches!(
            self,
            Into | Only
                | Lateral
                | If
                | Not
                | Exists
                | Concurrently
                | LowPriority
                | Delayed
                | HighPriority
                | Ignore
                | Quick
                | Table
                | Tables
                | Or
                | Replace
        )
    }

    /// Words that cannot be a table or an alias: clauses and joins.
    fn reserved(self) -> bool {
        use Kw::*;
        matches!(
            self,
            As | Cross
                | Default
                | Delete
                | Do
                | Except
                | Fetch
                | For
                | Force
                | From
                | Full
                | Group
                | Having
                | Ignore
                | In
                | Inner
                | Insert
                | Intersect
                | Into
                | Join
                | Left
                | Limit
                | Lock
                | Minus
                | Natural
                | Offset
                | On
                | Order
                | Outer
                | Overriding
                | Partition
                | Returning
                | Right
                | Select
                | Set
                | StraightJoin
                | Tablesample
                | Then
                | To
                | Union
                | Update
                | Use
                | Using
                | Values
                | When
                | Where
                | Window
                | With
        )
    }
}

// ----------------------------------------------------------------------------- sanitize

/// Literals become `?`, `IN (1, 2, 3)` becomes `IN (?)`, comments are dropped;
/// placeholders (`$1`, `?`, `:name`) and identifiers stay.
pub fn sanitize(sql: &str) -> String {
    let (out, open) = sanitize_with(sql, true);
    if open {
        let (plain, plain_open) = sanitize_with(sql, false);
        if !plain_open {
            return plain;
        }
    }
    out
}

/// What came before, as far as sanitizing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prev {
    Start,
    /// Identifier, literal, placeholder, `)`: a sign after it is an operator.
    Value,
    Op,
    Cast,
    Open,
    Comma,
    Dot,
    Kw(Kw),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ParenKind {
    /// `IN (`: collapsed to `(?)` when it holds literals only.
    InList,
    /// A `VALUES` row.
    Row,
    Other,
}

struct Paren {
    kind: ParenKind,
    /// Where its `(` is in the output.
    start: usize,
    /// Only literals and commas so far.
    literals: bool,
    /// Some literal.
    any: bool,
}

/// A `VALUES` list being written.
struct Rows {
    depth: usize,
    /// A `(` here opens a row.
    want: bool,
    /// The first row, in the output.
    first: Option<(usize, usize)>,
    /// Where the separator before the current row starts in the output.
    sep: usize,
}

fn put(out: &mut String, space: bool, s: &str) {
    if space && !out.is_empty() {
        out.push(' ');
    }
    out.push_str(s);
}

/// Rows equal but for spaces.
fn same_row(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a
            .bytes()
            .filter(|&c| c != b' ')
            .eq(b.bytes().filter(|&c| c != b' ')),
        _ => false,
    }
}

fn truncate(out: &mut String, at: usize) {
    if out.is_char_boundary(at) {
        out.truncate(at);
    }
}

fn literal(out: &mut String, parens: &mut [Paren], space: bool) {
    put(out, space, "?");
    if let Some(p) = parens.last_mut() {
        p.any = true;
    }
}

fn not_literal(parens: &mut [Paren]) {
    if let Some(p) = parens.last_mut() {
        p.literals = false;
    }
}

/// Whether `"..."` is a MySQL string rather than an identifier.
fn dq_literal(prev: Prev, next: Option<&Tok>, paren: Option<&Paren>) -> bool {
    if next.is_some_and(|n| n.kind == Kind::Dot) {
        return false;
    }
    match prev {
        Prev::Op => true,
        Prev::Kw(k) => matches!(
            k,
            Kw::Like
                | Kw::Ilike
                | Kw::Regexp
                | Kw::Rlike
                | Kw::Then
                | Kw::Else
                | Kw::Default
                | Kw::Comment
        ),
        Prev::Open | Prev::Comma => paren.is_some_and(|p| p.kind != ParenKind::Other),
        _ => false,
    }
}

/// The sanitized text, and whether a literal was left open.
fn sanitize_with(sql: &str, backslash: bool) -> (String, bool) {
    let mut lx = Lexer::new(sql, backslash);
    let mut out = String::with_capacity(sql.len());
    let mut prev = Prev::Start;
    let mut parens: Vec<Paren> = Vec::new();
    let mut deep = 0usize;
    let mut rows: Option<Rows> = None;
    let mut next = lx.next();
    while let Some(t) = next {
        next = lx.next();
        let text = &sql[t.start..t.end];
        let depth = parens.len() + deep;
        // A VALUES list goes on with rows and commas at its level only.
        if let Some(r) = &rows {
            if depth < r.depth
                || (depth == r.depth && !matches!(t.kind, Kind::LParen | Kind::Comma))
            {
                rows = None;
            }
        }
        match t.kind {
            Kind::Str | Kind::Num => {
                literal(&mut out, &mut parens, t.space);
                prev = Prev::Value;
            }
            Kind::Quoted => {
                if t.open || dq_literal(prev, next.as_ref(), parens.last()) {
                    literal(&mut out, &mut parens, t.space);
                } else {
                    put(&mut out, t.space, text);
                    not_literal(&mut parens);
                }
                prev = Prev::Value;
            }
            Kind::Op => {
                let unary = (text == "-" || text == "+")
                    && next.is_some_and(|n| n.kind == Kind::Num)
                    && !matches!(prev, Prev::Value | Prev::Dot);
                if unary {
                    next = lx.next();
                    literal(&mut out, &mut parens, t.space);
                    prev = Prev::Value;
                } else {
                    put(&mut out, t.space, text);
                    not_literal(&mut parens);
                    prev = match text {
                        "::" => Prev::Cast,
                        "?" => Prev::Value,
                        _ => Prev::Op,
                    };
                }
            }
            Kind::LParen => {
                not_literal(&mut parens);
                let mut kind = if prev == Prev::Kw(Kw::In) {
                    ParenKind::InList
                } else {
                    ParenKind::Other
                };
                if let Some(r) = rows.as_mut() {
                    if r.want && r.depth == depth {
                        r.want = false;
                        kind = ParenKind::Row;
                    }
                }
                put(&mut out, t.space, "");
                let start = out.len();
                out.push('(');
                if deep == 0 && parens.len() < MAX_DEPTH {
                    parens.push(Paren {
                        kind,
                        start,
                        literals: true,
                        any: false,
                    });
                } else {
                    deep += 1;
                }
                prev = Prev::Open;
            }
            Kind::RParen => {
                put(&mut out, t.space, ")");
                if deep > 0 {
                    deep -= 1;
                } else if let Some(p) = parens.pop() {
                    match p.kind {
                        ParenKind::InList if p.literals && p.any => {
                            truncate(&mut out, p.start);
                            out.push_str("(?)");
                        }
                        ParenKind::Row => {
                            if let Some(r) = rows.as_mut() {
                                match r.first {
                                    Some((a, b)) => {
                                        if same_row(out.get(a..b), out.get(p.start..)) {
                                            truncate(&mut out, r.sep);
                                        }
                                    }
                                    None => r.first = Some((p.start, out.len())),
                                }
                            }
                        }
                        _ => {}
                    }
                }
                prev = Prev::Value;
            }
            Kind::Comma => {
                let before = out.len();
                put(&mut out, t.space, ",");
                if let Some(r) = rows.as_mut() {
                    if r.depth == depth {
                        r.sep = before;
                        r.want = true;
                    }
                }
                prev = Prev::Comma;
            }
            Kind::Word => {
                put(&mut out, t.space, text);
                not_literal(&mut parens);
                let kw = Kw::for_sanitize(text);
                if kw == Kw::Values {
                    rows = Some(Rows {
                        depth,
                        want: true,
                        first: None,
                        sep: 0,
                    });
                }
                prev = if kw == Kw::None {
                    Prev::Value
                } else {
                    Prev::Kw(kw)
                };
            }
            Kind::Semi => {
                put(&mut out, t.space, text);
                parens.clear();
                deep = 0;
                rows = None;
                prev = Prev::Start;
            }
            Kind::Backtick | Kind::Param | Kind::RBracket => {
                put(&mut out, t.space, text);
                not_literal(&mut parens);
                prev = Prev::Value;
            }
            Kind::LBracket => {
                put(&mut out, t.space, text);
                not_literal(&mut parens);
                prev = Prev::Open;
            }
            Kind::Dot => {
                put(&mut out, t.space, text);
                not_literal(&mut parens);
                prev = Prev::Dot;
            }
            Kind::Other => {
                put(&mut out, t.space, text);
                not_literal(&mut parens);
                prev = Prev::Op;
            }
        }
    }
    (out, lx.unterminated)
}

// ------------------------------------------------------------------------------ analyze

pub fn analyze(sql: &str) -> SqlInfo {
    let (info, open) = Analyzer::new(sql, true).run();
    if open {
        let (plain, plain_open) = Analyzer::new(sql, false).run();
        if !plain_open {
            return plain;
        }
    }
    info
}

/// The operation a parenthesis level is in, as far as its targets go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Op {
    #[default]
    None,
    Select,
    Insert,
    Update,
    Delete,
    Merge,
    /// CREATE / DROP / ALTER; `on_target`: `ON table` names a target (index, trigger...).
    Ddl {
        on_target: bool,
    },
    Other,
}

/// What the next name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Expect {
    #[default]
    None,
    /// A table; `func`: unless `(` follows (a function in FROM).
    Table { func: bool },
    /// A target that is not a table: index, procedure, database...
    Name,
}

const FROM_ITEM: Expect = Expect::Table { func: true };
const TABLE: Expect = Expect::Table { func: false };

/// One parenthesis level.
#[derive(Debug, Clone, Copy, Default)]
struct Frame {
    op: Op,
    op_id: usize,
    expect: Expect,
    /// What a `,` at this level expects (FROM lists, `DROP TABLE a, b`).
    on_comma: Expect,
    /// A name was just read: an alias may follow.
    after_target: bool,
    /// `AS` after a name: the alias comes next.
    alias_next: bool,
    /// In a `WITH` list: a `,` is followed by a CTE name.
    with: bool,
    cte_next: bool,
}

/// Tokens with look-ahead.
struct Stream<'a> {
    lx: Lexer<'a>,
    ahead: VecDeque<Tok>,
}

impl Stream<'_> {
    fn peek(&mut self, n: usize) -> Option<Tok> {
        while self.ahead.len() <= n {
            let t = self.lx.next()?;
            self.ahead.push_back(t);
        }
        Some(self.ahead[n])
    }

    fn bump(&mut self) -> Option<Tok> {
        self.ahead.pop_front().or_else(|| self.lx.next())
    }
}

struct Analyzer<'a> {
    sql: &'a str,
    st: Stream<'a>,
    frames: Vec<Frame>,
    /// Parentheses opened past MAX_DEPTH.
    deep: usize,
    stmt_start: bool,
    /// The statement does not start with a known word: ignored to its `;`.
    skip_stmt: bool,
    stmt_kw: Kw,
    /// The statement's operation: the first one at the lowest level (after WITH's CTEs).
    stmt_op: Option<(usize, String)>,
    prev: Option<Kind>,
    prev_kw: Kw,
    ops: usize,
    operation: Option<String>,
    summary: String,
    chars: usize,
    /// Items of the current statement in the summary.
    items: usize,
    full: bool,
    /// Targets in the summary, by operation, for not writing one twice.
    seen: Vec<(usize, String)>,
    ctes: Vec<String>,
    table: Option<String>,
    tables: bool,
}

impl<'a> Analyzer<'a> {
    fn new(sql: &'a str, backslash: bool) -> Self {
        Analyzer {
            sql,
            st: Stream {
                lx: Lexer::new(sql, backslash),
                ahead: VecDeque::new(),
            },
            frames: vec![Frame::default()],
            deep: 0,
            stmt_start: true,
            skip_stmt: false,
            stmt_kw: Kw::None,
            stmt_op: None,
            prev: None,
            prev_kw: Kw::None,
            ops: 0,
            operation: None,
            summary: String::new(),
            chars: 0,
            items: 0,
            full: false,
            seen: Vec::new(),
            ctes: Vec::new(),
            table: None,
            tables: false,
        }
    }

    fn text(&self, t: Tok) -> &'a str {
        &self.sql[t.start..t.end]
    }

    fn top(&mut self) -> &mut Frame {
        // Never empty: statements start with one frame and the first is never popped.
        let last = self.frames.len() - 1;
        &mut self.frames[last]
    }

    fn kw(&self, t: Tok) -> Kw {
        if t.kind == Kind::Word {
            Kw::of(self.text(t))
        } else {
            Kw::None
        }
    }

    fn peek_kw(&mut self, n: usize) -> Kw {
        match self.st.peek(n) {
            Some(t) => self.kw(t),
            None => Kw::None,
        }
    }

    fn run(mut self) -> (SqlInfo, bool) {
        while let Some(t) = self.st.bump() {
            if t.kind == Kind::Semi {
                self.end_stmt();
            } else if self.stmt_start {
                self.stmt_start = false;
                self.start(t);
            } else if !self.skip_stmt {
                self.step(t);
            }
        }
        self.end_stmt();
        let info = SqlInfo {
            operation: self.operation,
            collection: if self.tables { None } else { self.table },
            summary: (!self.summary.is_empty()).then_some(self.summary),
        };
        (info, self.st.lx.unterminated)
    }

    fn end_stmt(&mut self) {
        if self.operation.is_none() {
            self.operation = self.stmt_op.take().map(|(_, op)| op);
        }
        self.stmt_op = None;
        self.frames.clear();
        self.frames.push(Frame::default());
        self.deep = 0;
        self.stmt_start = true;
        self.skip_stmt = false;
        self.stmt_kw = Kw::None;
        self.items = 0;
        self.prev = None;
        self.prev_kw = Kw::None;
    }

    fn push_item(&mut self, item: &str) {
        if self.full {
            return;
        }
        let sep = if self.items > 0 {
            " "
        } else if self.summary.is_empty() {
            ""
        } else {
            "; "
        };
        let n = sep.len() + item.chars().count();
        if self.chars + n > SUMMARY_MAX {
            self.full = true;
            return;
        }
        self.summary.push_str(sep);
        self.summary.push_str(item);
        self.chars += n;
        self.items += 1;
    }

    /// An operation starts at the current level.
    fn begin(&mut self, name: &str, op: Op, expect: Expect) {
        self.ops += 1;
        let depth = self.frames.len() - 1;
        let id = self.ops;
        *self.top() = Frame {
            op,
            op_id: id,
            expect,
            on_comma: if op == Op::Update {
                FROM_ITEM
            } else {
                Expect::None
            },
            ..Frame::default()
        };
        if self.stmt_op.as_ref().is_none_or(|(d, _)| depth < *d) {
            self.stmt_op = Some((depth, name.to_string()));
        }
        self.push_item(name);
    }

    fn target(&mut self, name: String, table: bool) {
        if table {
            if name.eq_ignore_ascii_case("dual")
                || self.ctes.iter().any(|c| c.eq_ignore_ascii_case(&name))
            {
                return;
            }
            match &self.table {
                None => self.table = Some(name.clone()),
                Some(t) if *t != name => self.tables = true,
                Some(_) => {}
            }
        }
        if self.full {
            return;
        }
        let id = self.top().op_id;
        if self.seen.iter().any(|(i, n)| *i == id && *n == name) {
            return;
        }
        self.push_item(&name);
        self.seen.push((id, name));
    }

    /// A name from `first`, with its `.`-separated parts, as written.
    fn read_name(&mut self, first: Tok) -> String {
        let mut name = self.text(first).to_string();
        if first.kind == Kind::Str {
            return name;
        }
        while let (Some(d), Some(p)) = (self.st.peek(0), self.st.peek(1)) {
            if d.kind != Kind::Dot || !matches!(p.kind, Kind::Word | Kind::Quoted | Kind::Backtick)
            {
                break;
            }
            self.st.bump();
            self.st.bump();
            name.push('.');
            name.push_str(self.text(p));
        }
        name
    }

    /// The first token of a statement.
    fn start(&mut self, t: Tok) {
        match t.kind {
            Kind::LParen => return self.step(t),
            Kind::Word => {}
            _ => {
                self.skip_stmt = true;
                return;
            }
        }
        let kw = self.kw(t);
        self.stmt_kw = kw;
        match kw {
            Kw::Select | Kw::Insert | Kw::Update | Kw::Delete | Kw::Merge | Kw::With => {
                return self.step(t)
            }
            Kw::Replace | Kw::Upsert => self.begin(kw.text(), Op::Insert, TABLE),
            Kw::Create | Kw::Drop | Kw::Alter => self.ddl(kw),
            Kw::Truncate => {
                let name = if self.peek_kw(0) == Kw::Table {
                    self.st.bump();
                    "TRUNCATE TABLE"
                } else {
                    "TRUNCATE"
                };
                self.begin(name, Op::Other, TABLE);
                self.top().on_comma = TABLE;
            }
            Kw::Lock => {
                self.begin(kw.text(), Op::Other, TABLE);
                self.top().on_comma = TABLE;
            }
            Kw::Table | Kw::Copy | Kw::Describe | Kw::Desc => {
                self.begin(kw.text(), Op::Other, TABLE)
            }
            Kw::Call | Kw::Use => self.begin(kw.text(), Op::Other, Expect::Name),
            k if k.starts_statement() => self.begin(k.text(), Op::Other, Expect::None),
            _ => {
                self.skip_stmt = true;
                return;
            }
        }
        self.prev = Some(t.kind);
        self.prev_kw = kw;
    }

    /// CREATE / DROP / ALTER [modifiers] type name: the operation is the verb and the
    /// type (`CREATE TABLE`, `DROP MATERIALIZED VIEW`), the name a target.
    fn ddl(&mut self, verb: Kw) {
        use Kw::*;
        while matches!(
            self.peek_kw(0),
            Or | Replace | Temp | Temporary | Unlogged | Global | Local | Unique | Recursive
        ) {
            self.st.bump();
        }
        let mut name = String::from(verb.text());
        let ty = self.peek_kw(0);
        let (mut expect, on_target) = match ty {
            Table | View => (TABLE, false),
            Index | Trigger | Policy | Rule => (Expect::Name, true),
            Sequence | Schema | Database | Function | Procedure | Type | Extension | Role
            | User | Domain | Event | Server | Tablespace | Publication | Subscription
            | Aggregate | Collation => (Expect::Name, false),
            Materialized | Foreign if matches!(self.peek_kw(1), View | Table) => (TABLE, false),
            _ => (Expect::None, false),
        };
        if expect != Expect::None {
            self.st.bump();
            name.push(' ');
            name.push_str(ty.text());
            if matches!(ty, Materialized | Foreign) {
                let second = self.peek_kw(0);
                self.st.bump();
                name.push(' ');
                name.push_str(second.text());
            }
        }
        if on_target && self.peek_kw(0) == On {
            expect = Expect::None; // CREATE INDEX ON t: no name
        }
        self.begin(&name, Op::Ddl { on_target }, expect);
        if verb == Drop {
            self.top().on_comma = expect;
        }
    }

    /// Whether `kw` starts an operation here.
    fn op_position(&mut self, kw: Kw, after_name: bool) -> bool {
        use Kw::*;
        let prev = self.prev;
        let common = prev.is_none()
            || prev == Some(Kind::LParen)
            || matches!(self.prev_kw, As | Explain | Analyze | Verbose);
        let rparen = prev == Some(Kind::RParen);
        match kw {
            Select => {
                common
                    || rparen
                    || after_name
                    || matches!(
                        self.prev_kw,
                        Union | Intersect | Except | Minus | All | Distinct
                    )
                    || (self.prev_kw == For && self.stmt_kw == Declare)
            }
            Insert | Update | Delete | Merge => {
                common || (rparen && (self.top().with || self.stmt_kw == Explain))
            }
            With => (common || rparen || after_name) && self.cte_ahead(),
            _ => false,
        }
    }

    /// After WITH: `[RECURSIVE] name [(columns)] AS`.
    fn cte_ahead(&mut self) -> bool {
        let n = usize::from(self.peek_kw(0) == Kw::Recursive);
        let name = self
            .st
            .peek(n)
            .is_some_and(|t| matches!(t.kind, Kind::Word | Kind::Quoted | Kind::Backtick));
        name && (self.st.peek(n + 1).is_some_and(|t| t.kind == Kind::LParen)
            || self.peek_kw(n + 1) == Kw::As)
    }

    fn step(&mut self, t: Tok) {
        let f = self.top();
        let after_name = f.after_target;
        let alias_next = f.alias_next;
        f.after_target = false;
        f.alias_next = false;
        let kw = self.kw(t);
        match t.kind {
            Kind::LParen => {
                // A derived table, column list or function call: the expected name is not coming.
                self.top().expect = Expect::None;
                if self.deep == 0 && self.frames.len() < MAX_DEPTH {
                    self.frames.push(Frame::default());
                } else {
                    self.deep += 1;
                }
            }
            Kind::RParen => {
                if self.deep > 0 {
                    self.deep -= 1;
                } else if self.frames.len() > 1 {
                    self.frames.pop();
                }
            }
            Kind::Comma => {
                let f = self.top();
                if f.with {
                    f.cte_next = true;
                } else {
                    f.expect = f.on_comma;
                }
            }
            Kind::Word | Kind::Quoted | Kind::Backtick | Kind::Str => {
                if self.name_or_word(t, kw, after_name, alias_next) {
                    self.prev = Some(Kind::Word);
                    self.prev_kw = Kw::None;
                    return;
                }
            }
            _ => self.top().expect = Expect::None,
        }
        self.prev = Some(t.kind);
        self.prev_kw = kw;
    }

    /// A word or quoted token; true when it was a name (target, alias, CTE).
    fn name_or_word(&mut self, t: Tok, kw: Kw, after_name: bool, alias_next: bool) -> bool {
        let word = t.kind == Kind::Word;
        if alias_next && !(word && kw.reserved()) && t.kind != Kind::Str {
            return true;
        }
        if word && self.op_position(kw, after_name) {
            match kw {
                Kw::Select => self.begin("SELECT", Op::Select, Expect::None),
                Kw::Insert => self.begin("INSERT", Op::Insert, TABLE),
                Kw::Update => self.begin("UPDATE", Op::Update, FROM_ITEM),
                Kw::Delete => self.begin("DELETE", Op::Delete, Expect::None),
                Kw::Merge => self.begin("MERGE", Op::Merge, Expect::None),
                _ => {
                    let f = self.top();
                    f.with = true;
                    f.cte_next = true;
                }
            }
            return false;
        }
        let f = *self.top();
        if f.cte_next && t.kind != Kind::Str {
            if kw == Kw::Recursive {
                return false;
            }
            self.top().cte_next = false;
            if self.ctes.len() < MAX_CTES {
                self.ctes.push(self.text(t).to_string());
            }
            return true;
        }
        if f.expect != Expect::None {
            if word && kw.skipped() {
                return false;
            }
            self.top().expect = Expect::None;
            let plain_str = t.kind == Kind::Str && self.text(t).starts_with('\'');
            if !(word && kw.reserved())
                && (t.kind != Kind::Str || (plain_str && f.expect != Expect::Name))
            {
                let name = self.read_name(t);
                let func = f.expect == FROM_ITEM
                    && self.st.peek(0).is_some_and(|n| n.kind == Kind::LParen);
                if !func {
                    self.target(name, f.expect != Expect::Name);
                    self.top().after_target = true;
                }
                return true;
            }
        }
        if after_name && t.kind != Kind::Str {
            if kw == Kw::As {
                self.top().alias_next = true;
                return false;
            }
            if !(word && kw.reserved()) {
                return true; // an alias
            }
        }
        if word {
            self.clause(kw);
        }
        false
    }

    /// Clause words: what their level expects next.
    fn clause(&mut self, kw: Kw) {
        use Kw::*;
        let prev_kw = self.prev_kw;
        let f = self.top();
        let from_op = matches!(f.op, Op::Select | Op::Delete | Op::Update);
        match kw {
            From if from_op && prev_kw != Distinct => {
                f.expect = FROM_ITEM;
                f.on_comma = FROM_ITEM;
            }
            Join | StraightJoin if from_op => {
                f.expect = FROM_ITEM;
                f.on_comma = FROM_ITEM;
            }
            Into if matches!(f.op, Op::Insert | Op::Merge) => f.expect = TABLE,
            Using if matches!(f.op, Op::Delete | Op::Merge) => {
                f.expect = FROM_ITEM;
                f.on_comma = FROM_ITEM;
            }
            On => {
                f.on_comma = Expect::None;
                if let Op::Ddl { on_target: true } = f.op {
                    f.expect = TABLE;
                }
            }
            Where | Group | Order | Having | Limit | Offset | Window | Set | Values | Returning
            | Union | Intersect | Except | Minus | For | Fetch | When | Into | Do | Default => {
                f.expect = Expect::None;
                f.on_comma = Expect::None;
            }
            _ => {}
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// (text, sanitized)
    const SANITIZE: &[(&str, &str)] = &[
        ("SELECT * FROM users WHERE id = 42", "SELECT * FROM users WHERE id = ?"),
        (
            "SELECT * FROM t WHERE name = 'O''Brien' AND x = 1.5e-3",
            "SELECT * FROM t WHERE name = ? AND x = ?",
        ),
        // E'' always has backslash escapes; 'C:\' is then read as PostgreSQL's.
        (r"SELECT E'it\'s', 'C:\' FROM t", "SELECT ?, ? FROM t"),
        // MySQL backslash escape.
        (
            r"SELECT * FROM t WHERE a = 'it\'s' AND b = 'x'",
            "SELECT * FROM t WHERE a = ? AND b = ?",
        ),
        // Read with backslash escapes, `hunter2` would be outside a literal.
        (
            r"SELECT * FROM t WHERE path = 'C:\' AND secret = 'hunter2'",
            "SELECT * FROM t WHERE path = ? AND secret = ?",
        ),
        (
            "SELECT $$it's a $1 -- not a comment$$, $fn$ a $$ b $ c $fn$ FROM t",
            "SELECT ?, ? FROM t",
        ),
        ("SELECT $a$ $b$ inner $b$ $a$", "SELECT ?"),
        // Placeholders stay.
        (
            "SELECT * FROM t WHERE a = $1 AND b = ? AND c = :name AND d = %s AND e = %(e)s",
            "SELECT * FROM t WHERE a = $1 AND b = ? AND c = :name AND d = %s AND e = %(e)s",
        ),
        ("SELECT ?1, ?2", "SELECT ?1, ?2"),
        (
            "SELECT /* a /* nested */ 'x' */ 1 -- trailing 'y'\nFROM t # mysql 'z'",
            "SELECT ? FROM t",
        ),
        (
            "SELECT '--not a comment', '/* nor this */', 2 FROM t",
            "SELECT ?, ?, ? FROM t",
        ),
        (
            "SELECT a FROM t # comment 'x'\nWHERE b = 1",
            "SELECT a FROM t WHERE b = ?",
        ),
        ("SELECT/*x*/1", "SELECT ?"),
        ("SELECT 1 -- comment only", "SELECT ?"),
        // jsonb operators are neither comments nor placeholders.
        (
            "SELECT data->'a'->>'b', data#>'{a,b}', data #>> '{a}', data @> '{\"a\":1}', \
             data ?| array['a'], data ?& array['b'], data #- '{a}' FROM t",
            "SELECT data->?->>?, data#>?, data #>> ?, data @> ?, \
             data ?| array[?], data ?& array[?], data #- ? FROM t",
        ),
        // PostgreSQL's `?` operator reads as a placeholder: kept either way.
        (
            "SELECT * FROM t WHERE doc ? 'key' AND id = ?",
            "SELECT * FROM t WHERE doc ? ? AND id = ?",
        ),
        (
            "SELECT '1'::int, x::text, CAST(3 AS bigint) FROM t",
            "SELECT ?::int, x::text, CAST(? AS bigint) FROM t",
        ),
        // Digits in identifiers, quoted identifiers that look like numbers.
        (
            "SELECT t1.col_2, x1e5, \"123\", `2nd` FROM t1",
            "SELECT t1.col_2, x1e5, \"123\", `2nd` FROM t1",
        ),
        ("SELECT * FROM 1st_table", "SELECT * FROM 1st_table"),
        ("SELECT a$b, $1 FROM t$x", "SELECT a$b, $1 FROM t$x"),
        (
            "SELECT a.b.c FROM s.t WHERE a.x = 1.0",
            "SELECT a.b.c FROM s.t WHERE a.x = ?",
        ),
        (
            "SELECT 1e10, 1.5E+3, .5, 0x1F, 0b101, X'1F', B'01', 1_000, 5.",
            "SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?",
        ),
        (
            "DELETE FROM t WHERE a = 0x1F AND b = x'ff'",
            "DELETE FROM t WHERE a = ? AND b = ?",
        ),
        // A sign is part of its number after an operator, `(` or `,`.
        (
            "SELECT * FROM t WHERE a = -1 AND b > - 2.5 AND c = d-1 AND e = (-3)",
            "SELECT * FROM t WHERE a = ? AND b > ? AND c = d-? AND e = (?)",
        ),
        ("SELECT -5", "SELECT -?"),
        (
            "SELECT * FROM t WHERE id IN (1, 2, 3) AND s IN ('a','b') AND n NOT IN (-1, 2.5)",
            "SELECT * FROM t WHERE id IN (?) AND s IN (?) AND n NOT IN (?)",
        ),
        (
            "SELECT * FROM t WHERE id IN (SELECT id FROM u WHERE x = 1)",
            "SELECT * FROM t WHERE id IN (SELECT id FROM u WHERE x = ?)",
        ),
        (
            "SELECT * FROM t WHERE id IN ($1, $2) OR id IN (?, ?)",
            "SELECT * FROM t WHERE id IN ($1, $2) OR id IN (?, ?)",
        ),
        (
            "SELECT * FROM t WHERE (a, b) IN ((1, 2), (3, 4))",
            "SELECT * FROM t WHERE (a, b) IN ((?, ?), (?, ?))",
        ),
        // Rows equal to the first once sanitized are dropped.
        (
            "INSERT INTO t (a, b) VALUES (1, 'a'), (2, 'b'),(3,'c')",
            "INSERT INTO t (a, b) VALUES (?, ?)",
        ),
        (
            "INSERT INTO t VALUES (1, now()), (2, 'x'), (3, now())",
            "INSERT INTO t VALUES (?, now()), (?, ?)",
        ),
        (
            "INSERT INTO t (a) VALUES (1), (2) ON CONFLICT (a) DO UPDATE SET b = 3",
            "INSERT INTO t (a) VALUES (?) ON CONFLICT (a) DO UPDATE SET b = ?",
        ),
        // MySQL strings in double quotes where a value stands.
        (
            "SELECT * FROM t WHERE name = \"john\" AND x IN (\"a\", \"b\") AND y LIKE \"%z%\"",
            "SELECT * FROM t WHERE name = ? AND x IN (?) AND y LIKE ?",
        ),
        (
            "INSERT INTO t (a, b) VALUES (\"x\", \"y\")",
            "INSERT INTO t (a, b) VALUES (?, ?)",
        ),
        // PostgreSQL identifiers in double quotes stay.
        (
            "SELECT \"User\".\"id\", \"name\" FROM \"public\".\"User\" WHERE \"User\".\"email\" = $1",
            "SELECT \"User\".\"id\", \"name\" FROM \"public\".\"User\" WHERE \"User\".\"email\" = $1",
        ),
        (
            "INSERT INTO \"Users\" (\"id\",\"name\") VALUES (DEFAULT,$1) RETURNING \"id\",\"name\"",
            "INSERT INTO \"Users\" (\"id\",\"name\") VALUES (DEFAULT,$1) RETURNING \"id\",\"name\"",
        ),
        (
            "SELECT `order` FROM `db`.`t` WHERE `id` = 5",
            "SELECT `order` FROM `db`.`t` WHERE `id` = ?",
        ),
        (
            "SELECT * FROM t ORDER BY id LIMIT 10 OFFSET 20",
            "SELECT * FROM t ORDER BY id LIMIT ? OFFSET ?",
        ),
        // Booleans and NULL are keywords.
        (
            "UPDATE t SET a = TRUE, b = NULL WHERE c = false",
            "UPDATE t SET a = TRUE, b = NULL WHERE c = false",
        ),
        (
            "SELECT DATE '2024-01-01' + INTERVAL '1 day', INTERVAL 3 DAY",
            "SELECT DATE ? + INTERVAL ?, INTERVAL ? DAY",
        ),
        (
            "SELECT _utf8mb4'x', N'y', U&'d\\0061t', U&\"col\" FROM t",
            "SELECT ?, ?, ?, U&\"col\" FROM t",
        ),
        ("SELECT\n\t*  FROM   t\r\n", "SELECT * FROM t"),
        ("SELECT 1; SELECT 'a';", "SELECT ?; SELECT ?;"),
        (
            "SELECT 'héllo', naïve FROM café WHERE ü = 'ß'",
            "SELECT ?, naïve FROM café WHERE ü = ?",
        ),
        // What the text ends in.
        ("SELECT 'abc", "SELECT ?"),
        (r"SELECT 'abc\", "SELECT ?"),
        ("SELECT 1 /* abc", "SELECT ?"),
        ("SELECT $$abc", "SELECT ?"),
        ("SELECT * FROM t WHERE a = \"abc", "SELECT * FROM t WHERE a = ?"),
        ("SELECT * FROM t WHERE a IN (1, 2", "SELECT * FROM t WHERE a IN (?, ?"),
        ("", ""),
        ("  -- nothing\n", ""),
    ];

    /// (text, operation, collection, summary)
    type Row = (
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
        Option<&'static str>,
    );
    const ANALYZE: &[Row] = &[
        // The conventions' examples.
        (
            "SELECT * FROM wuser_table WHERE username = ?",
            Some("SELECT"),
            Some("wuser_table"),
            Some("SELECT wuser_table"),
        ),
        (
            "INSERT INTO shipping_details (order_id, address) SELECT order_id, address FROM orders WHERE order_id = ?",
            Some("INSERT"),
            None,
            Some("INSERT shipping_details SELECT orders"),
        ),
        (
            "SELECT * FROM songs, artists WHERE songs.artist_id == artists.id",
            Some("SELECT"),
            None,
            Some("SELECT songs artists"),
        ),
        (
            "SELECT order_date FROM (SELECT * FROM orders o JOIN customers c ON o.customer_id = c.customer_id)",
            Some("SELECT"),
            None,
            Some("SELECT SELECT orders customers"),
        ),
        (
            "SELECT * FROM \"song list\", 'artists'",
            Some("SELECT"),
            None,
            Some("SELECT \"song list\" 'artists'"),
        ),
        // Operations upper case, names as written.
        (
            "select id from public.users u where u.id = $1",
            Some("SELECT"),
            Some("public.users"),
            Some("SELECT public.users"),
        ),
        ("select * from Orders", Some("SELECT"), Some("Orders"), Some("SELECT Orders")),
        (
            "SELECT * FROM \"Users\" AS \"u\" WHERE \"u\".\"id\" = $1",
            Some("SELECT"),
            Some("\"Users\""),
            Some("SELECT \"Users\""),
        ),
        (
            "SELECT `id` FROM `shop`.`orders` WHERE `id` = 1",
            Some("SELECT"),
            Some("`shop`.`orders`"),
            Some("SELECT `shop`.`orders`"),
        ),
        (
            "UPDATE users SET name = $1 WHERE id = $2",
            Some("UPDATE"),
            Some("users"),
            Some("UPDATE users"),
        ),
        (
            "UPDATE orders o SET total = s.total FROM staging s WHERE o.id = s.id",
            Some("UPDATE"),
            None,
            Some("UPDATE orders staging"),
        ),
        (
            "UPDATE t1 JOIN t2 ON t1.id = t2.id SET t1.x = t2.x",
            Some("UPDATE"),
            None,
            Some("UPDATE t1 t2"),
        ),
        (
            "DELETE FROM sessions USING users WHERE sessions.user_id = users.id",
            Some("DELETE"),
            None,
            Some("DELETE sessions users"),
        ),
        (
            "DELETE a FROM t1 a JOIN t2 b ON a.id = b.id",
            Some("DELETE"),
            None,
            Some("DELETE t1 t2"),
        ),
        (
            "DELETE FROM t WHERE id IN (SELECT id FROM t WHERE expired)",
            Some("DELETE"),
            Some("t"),
            Some("DELETE t SELECT t"),
        ),
        (
            "INSERT INTO t1 SELECT * FROM t1",
            Some("INSERT"),
            Some("t1"),
            Some("INSERT t1 SELECT t1"),
        ),
        (
            "INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET a = excluded.a",
            Some("INSERT"),
            Some("t"),
            Some("INSERT t"),
        ),
        (
            "INSERT INTO t (a) VALUES (1) ON DUPLICATE KEY UPDATE a = VALUES(a)",
            Some("INSERT"),
            Some("t"),
            Some("INSERT t"),
        ),
        ("INSERT IGNORE INTO t SET a = 1", Some("INSERT"), Some("t"), Some("INSERT t")),
        (
            "REPLACE INTO kv (k, v) VALUES (?, ?)",
            Some("REPLACE"),
            Some("kv"),
            Some("REPLACE kv"),
        ),
        (
            "MERGE INTO stock s USING deliveries d ON s.id = d.id WHEN MATCHED THEN UPDATE SET qty = s.qty + d.qty \
             WHEN NOT MATCHED THEN INSERT (id, qty) VALUES (d.id, d.qty)",
            Some("MERGE"),
            None,
            Some("MERGE stock deliveries"),
        ),
        // Joins, sub-queries, set operations.
        (
            "SELECT count(*) FROM a LEFT JOIN b ON a.id = b.aid INNER JOIN c USING (id)",
            Some("SELECT"),
            None,
            Some("SELECT a b c"),
        ),
        (
            "SELECT * FROM t1 NATURAL JOIN t2 CROSS JOIN t3",
            Some("SELECT"),
            None,
            Some("SELECT t1 t2 t3"),
        ),
        (
            "SELECT * FROM t1 JOIN t1 p ON p.id = t1.parent",
            Some("SELECT"),
            Some("t1"),
            Some("SELECT t1"),
        ),
        (
            "SELECT * FROM a WHERE EXISTS (SELECT 1 FROM b WHERE b.id = a.id)",
            Some("SELECT"),
            None,
            Some("SELECT a SELECT b"),
        ),
        (
            "SELECT a FROM t WHERE b IN (SELECT c FROM u UNION SELECT d FROM v)",
            Some("SELECT"),
            None,
            Some("SELECT t SELECT u SELECT v"),
        ),
        (
            "SELECT * FROM t1, LATERAL (SELECT * FROM t2 WHERE t2.a = t1.a) x",
            Some("SELECT"),
            None,
            Some("SELECT t1 SELECT t2"),
        ),
        (
            "SELECT a FROM t1 UNION ALL SELECT b FROM t2",
            Some("SELECT"),
            None,
            Some("SELECT t1 SELECT t2"),
        ),
        (
            "(SELECT a FROM t1) UNION (SELECT b FROM t2)",
            Some("SELECT"),
            None,
            Some("SELECT t1 SELECT t2"),
        ),
        // Functions and keywords that are no tables.
        ("SELECT * FROM generate_series(1, 10) g", Some("SELECT"), None, Some("SELECT")),
        ("SELECT 1 FROM DUAL", Some("SELECT"), None, Some("SELECT")),
        (
            "SELECT * FROM t WHERE a IS DISTINCT FROM b",
            Some("SELECT"),
            Some("t"),
            Some("SELECT t"),
        ),
        (
            "SELECT EXTRACT(YEAR FROM created_at) FROM events",
            Some("SELECT"),
            Some("events"),
            Some("SELECT events"),
        ),
        (
            "SELECT * FROM jobs WHERE state = 'new' FOR UPDATE SKIP LOCKED",
            Some("SELECT"),
            Some("jobs"),
            Some("SELECT jobs"),
        ),
        (
            "GRANT SELECT, INSERT ON orders TO app",
            Some("GRANT"),
            None,
            Some("GRANT"),
        ),
        // Keywords in literals and comments.
        ("SELECT 'FROM x' FROM t -- FROM y", Some("SELECT"), Some("t"), Some("SELECT t")),
        (
            r"SELECT * FROM t WHERE s = 'it\'s; DROP TABLE x'",
            Some("SELECT"),
            Some("t"),
            Some("SELECT t"),
        ),
        (
            "SELECT * FROM t WHERE x = $tag$ FROM fake; $tag$",
            Some("SELECT"),
            Some("t"),
            Some("SELECT t"),
        ),
        // CTEs: their names are no targets; the operation is the main statement's.
        (
            "WITH recent AS (SELECT * FROM orders WHERE ts > now() - interval '1 day') \
             SELECT * FROM recent JOIN users ON users.id = recent.user_id",
            Some("SELECT"),
            None,
            Some("SELECT orders SELECT users"),
        ),
        (
            "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 10) SELECT sum(n) FROM t",
            Some("SELECT"),
            None,
            Some("SELECT SELECT SELECT"),
        ),
        (
            "WITH a AS (SELECT 1), b AS (SELECT * FROM a) SELECT * FROM b JOIN orders ON true",
            Some("SELECT"),
            Some("orders"),
            Some("SELECT SELECT SELECT orders"),
        ),
        (
            "WITH moved AS (DELETE FROM a WHERE x RETURNING *) INSERT INTO b SELECT * FROM moved",
            Some("INSERT"),
            None,
            Some("DELETE a INSERT b SELECT"),
        ),
        // Several statements.
        (
            "SELECT 1; UPDATE users SET x = 1;",
            Some("SELECT"),
            Some("users"),
            Some("SELECT; UPDATE users"),
        ),
        (
            "BEGIN; INSERT INTO audit VALUES ($1); COMMIT",
            Some("BEGIN"),
            Some("audit"),
            Some("BEGIN; INSERT audit; COMMIT"),
        ),
        ("1; SELECT 1", Some("SELECT"), None, Some("SELECT")),
        // DDL and others.
        (
            "CREATE TABLE IF NOT EXISTS public.accounts (id serial PRIMARY KEY, owner int REFERENCES users(id))",
            Some("CREATE TABLE"),
            Some("public.accounts"),
            Some("CREATE TABLE public.accounts"),
        ),
        (
            "CREATE TEMP TABLE t AS SELECT * FROM s",
            Some("CREATE TABLE"),
            None,
            Some("CREATE TABLE t SELECT s"),
        ),
        (
            "CREATE OR REPLACE VIEW v AS SELECT * FROM t",
            Some("CREATE VIEW"),
            None,
            Some("CREATE VIEW v SELECT t"),
        ),
        (
            "CREATE MATERIALIZED VIEW IF NOT EXISTS mv AS SELECT 1",
            Some("CREATE MATERIALIZED VIEW"),
            Some("mv"),
            Some("CREATE MATERIALIZED VIEW mv SELECT"),
        ),
        (
            "DROP INDEX CONCURRENTLY IF EXISTS idx_a",
            Some("DROP INDEX"),
            None,
            Some("DROP INDEX idx_a"),
        ),
        (
            "CREATE UNIQUE INDEX idx_email ON users (email)",
            Some("CREATE INDEX"),
            Some("users"),
            Some("CREATE INDEX idx_email users"),
        ),
        (
            "ALTER TABLE ONLY orders ADD CONSTRAINT fk FOREIGN KEY (uid) REFERENCES users (id)",
            Some("ALTER TABLE"),
            Some("orders"),
            Some("ALTER TABLE orders"),
        ),
        ("DROP TABLE a, b CASCADE", Some("DROP TABLE"), None, Some("DROP TABLE a b")),
        (
            "CREATE DATABASE shop",
            Some("CREATE DATABASE"),
            None,
            Some("CREATE DATABASE shop"),
        ),
        (
            "TRUNCATE TABLE logs",
            Some("TRUNCATE TABLE"),
            Some("logs"),
            Some("TRUNCATE TABLE logs"),
        ),
        ("CALL refresh_stats($1)", Some("CALL"), None, Some("CALL refresh_stats")),
        ("USE shop", Some("USE"), None, Some("USE shop")),
        ("DESCRIBE users", Some("DESCRIBE"), Some("users"), Some("DESCRIBE users")),
        (
            "EXPLAIN ANALYZE SELECT * FROM t",
            Some("EXPLAIN"),
            Some("t"),
            Some("EXPLAIN SELECT t"),
        ),
        ("BEGIN", Some("BEGIN"), None, Some("BEGIN")),
        ("SET search_path TO public", Some("SET"), None, Some("SET")),
        ("SHOW TABLES", Some("SHOW"), None, Some("SHOW")),
        // Nothing known.
        ("SELECT * FROM", Some("SELECT"), None, Some("SELECT")),
        ("hello world", None, None, None),
        ("FROM t", None, None, None),
        ("", None, None, None),
        ("-- only a comment", None, None, None),
        ("(", None, None, None),
    ];

    #[test]
    fn sanitize_table() {
        for (sql, want) in SANITIZE {
            assert_eq!(sanitize(sql), *want, "sanitize({sql:?})");
        }
    }

    #[test]
    fn analyze_table() {
        for &(sql, op, coll, summary) in ANALYZE {
            let want = SqlInfo {
                operation: op.map(String::from),
                collection: coll.map(String::from),
                summary: summary.map(String::from),
            };
            assert_eq!(analyze(sql), want, "analyze({sql:?})");
        }
    }

    #[test]
    fn summary_is_cut_between_words() {
        let names: Vec<String> = (0..100).map(|i| format!("table_{i:03}")).collect();
        let info = analyze(&format!("SELECT * FROM {}", names.join(", ")));
        let s = info.summary.unwrap();
        assert!(s.chars().count() <= SUMMARY_MAX, "{s}");
        let words: Vec<&str> = s.split(' ').collect();
        assert_eq!(words[0], "SELECT");
        assert_eq!(
            words[1..],
            names[..words.len() - 1]
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()[..]
        );
        assert_eq!(words.len(), 25);
        assert_eq!(info.collection, None);
        // Characters, not bytes.
        let long = format!("SELECT * FROM {}", "é".repeat(254));
        assert_eq!(analyze(&long).summary.as_deref(), Some("SELECT"));
        let fits = format!("SELECT * FROM {}", "é".repeat(248));
        assert_eq!(analyze(&fits).summary.unwrap().chars().count(), 255);
    }

    #[test]
    fn keywords_sorted() {
        for w in Kw::ALL.windows(2) {
            assert!(w[0].text() < w[1].text(), "{:?} {:?}", w[0], w[1]);
        }
        assert!(KW_KEYS.windows(2).all(|w| w[0] < w[1]));
        for &k in Kw::ALL {
            assert_eq!(Kw::of(k.text()), k);
            assert_eq!(Kw::of(&k.text().to_ascii_lowercase()), k);
        }
        assert_eq!(Kw::of("users"), Kw::None);
        assert_eq!(Kw::of("a_very_long_identifier_name"), Kw::None);
    }

    #[test]
    fn never_panics_and_never_grows() {
        const PIECES: &[&str] = &[
            "'",
            "\"",
            "`",
            "$",
            "$$",
            "$a$",
            "--",
            "/*",
            "*/",
            "#",
            "#>",
            "\\",
            "E'",
            "U&",
            "(",
            ")",
            ",",
            ";",
            ".",
            "1",
            "1e",
            "0x",
            "-",
            "?",
            ":",
            "::",
            "[",
            "SELECT",
            "FROM",
            "IN",
            "VALUES",
            "WITH",
            "RECURSIVE",
            "AS",
            "JOIN",
            "INTO",
            "INSERT",
            "UPDATE",
            "CREATE",
            "TABLE",
            "INDEX",
            "ON",
            "x",
            " ",
            "\n",
            "é",
            "\u{0}",
            "%s",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut rand = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let n = (rand() % 16) as usize;
            let sql: String = (0..n)
                .map(|_| PIECES[(rand() % PIECES.len() as u64) as usize])
                .collect();
            let s = sanitize(&sql);
            assert!(s.len() <= sql.len(), "{sql:?} -> {s:?}");
            let info = analyze(&sql);
            assert!(info.summary.map_or(0, |s| s.chars().count()) <= SUMMARY_MAX);
        }
        // Every text of the tables cut anywhere.
        let texts = SANITIZE
            .iter()
            .map(|r| r.0)
            .chain(ANALYZE.iter().map(|r| r.0));
        for sql in texts {
            for (i, _) in sql.char_indices() {
                let cut = &sql[..i];
                assert!(sanitize(cut).len() <= cut.len());
                analyze(cut);
            }
        }
        // Deep nesting.
        let deep = format!("SELECT {}1{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(sanitize(&deep).len() <= deep.len());
        assert_eq!(analyze(&deep).operation.as_deref(), Some("SELECT"));
    }

    #[test]
    fn query_text_options() {
        let mut stats = SessionStats::default();
        let opts = QueryTextOptions::default();
        assert_eq!(
            query_text("SELECT * FROM t WHERE a = 'x'", &opts, &mut stats).as_deref(),
            Some("SELECT * FROM t WHERE a = ?")
        );
        let raw = QueryTextOptions {
            sanitize: false,
            ..opts
        };
        assert_eq!(
            query_text("SELECT 'x'", &raw, &mut stats).as_deref(),
            Some("SELECT 'x'")
        );
        let short = QueryTextOptions { max_len: 9, ..opts };
        assert_eq!(
            query_text("SELECT 'é', 1", &short, &mut stats).as_deref(),
            Some("SELECT ?,")
        );
        assert_eq!(
            query_text(
                "SELECT é",
                &QueryTextOptions {
                    max_len: 8,
                    sanitize: false,
                    ..opts
                },
                &mut stats
            )
            .as_deref(),
            Some("SELECT ")
        );
        assert_eq!(stats.query_truncated, 2);
        let off = QueryTextOptions {
            capture: false,
            ..opts
        };
        assert_eq!(query_text("SELECT 1", &off, &mut stats), None);
    }
}
