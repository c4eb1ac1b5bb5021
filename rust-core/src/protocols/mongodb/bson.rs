//! A small BSON reader over borrowed, possibly truncated bytes (a capture may end inside
//! a document): top-level and nested elements are read as far as the bytes go, never
//! past a document's declared length, and rendered as JSON for `db.query.text`.
//!
//! Nothing here allocates but the rendered text (bounded by its limit); recursion is
//! bounded by [`MAX_DEPTH`].

/// Nesting rendered at most (deeper documents show as `"?"`).
pub(crate) const MAX_DEPTH: usize = 32;

/// A document: the bytes of its elements (after the length, at most up to the declared
/// end), and whether all of them were captured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Doc<'a> {
    elems: &'a [u8],
    /// The declared length was within the bytes given (the document is whole).
    pub complete: bool,
}

/// A value. Strings are raw bytes (BSON says UTF-8; a capture may say otherwise).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Double(f64),
    Str(&'a [u8]),
    Doc(Doc<'a>),
    Array(Doc<'a>),
    Binary(u8),
    ObjectId(&'a [u8]),
    Bool(bool),
    DateTime(i64),
    Null,
    Undefined,
    Regex,
    Int32(i32),
    Timestamp(u64),
    Int64(i64),
    Decimal128,
    MinKey,
    MaxKey,
    /// JavaScript code, symbol, DBPointer...: shown as `"?"` only.
    Other(u8),
}

impl<'a> Value<'a> {
    /// A number (or bool) as f64, for `ok`.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Double(d) => Some(d),
            Value::Int32(i) => Some(f64::from(i)),
            Value::Int64(i) => Some(i as f64),
            Value::Bool(b) => Some(if b { 1.0 } else { 0.0 }),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Int32(i) => Some(i64::from(i)),
            Value::Int64(i) => Some(i),
            Value::Double(d) if d.fract() == 0.0 && d.abs() < 9.0e15 => Some(d as i64),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&'a [u8]> {
        match *self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    fn is_container(&self) -> bool {
        matches!(self, Value::Doc(_) | Value::Array(_))
    }
}

fn le32(b: &[u8]) -> Option<i32> {
    Some(i32::from_le_bytes(b.get(..4)?.try_into().ok()?))
}

fn le64(b: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(..8)?.try_into().ok()?))
}

impl<'a> Doc<'a> {
    /// The document starting at `b[0]`: None when its length is unreadable or impossible
    /// (below 5). `b` may end before the declared length (the document is then not
    /// `complete`).
    pub fn parse(b: &'a [u8]) -> Option<(Doc<'a>, usize)> {
        let len = usize::try_from(le32(b)?).ok()?;
        if len < 5 {
            return None;
        }
        let complete = b.len() >= len;
        let end = len.min(b.len());
        Some((
            Doc {
                elems: &b[4..end],
                complete,
            },
            len,
        ))
    }

    pub fn iter(&self) -> Elems<'a> {
        Elems {
            rest: self.elems,
            complete: self.complete,
            state: State::Going,
        }
    }

    /// The first element named `key`.
    pub fn get(&self, key: &str) -> Option<Value<'a>> {
        self.iter()
            .find(|(k, _)| *k == key.as_bytes())
            .map(|(_, v)| v)
    }

    /// The first element.
    pub fn first(&self) -> Option<(&'a [u8], Value<'a>)> {
        self.iter().next()
    }

    /// Elements in this document (as far as captured and well formed).
    pub fn count(&self) -> usize {
        self.iter().count()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Going,
    /// The terminating zero was read.
    Ended,
    /// The bytes ran out (a truncated capture).
    Cut,
    /// Not BSON.
    Bad,
}

/// Iterates a document's elements; [`Elems::state`] tells how iteration ended.
#[derive(Debug, Clone)]
pub struct Elems<'a> {
    rest: &'a [u8],
    complete: bool,
    state: State,
}

impl<'a> Elems<'a> {
    pub fn state(&self) -> State {
        self.state
    }

    fn stop(&mut self) -> Option<(&'a [u8], Value<'a>)> {
        // Running out of bytes within a whole document is malformed; otherwise cut.
        self.state = if self.complete {
            State::Bad
        } else {
            State::Cut
        };
        None
    }
}

impl<'a> Iterator for Elems<'a> {
    type Item = (&'a [u8], Value<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.state != State::Going {
            return None;
        }
        let Some((&t, after)) = self.rest.split_first() else {
            return self.stop();
        };
        if t == 0 {
            self.state = State::Ended;
            return None;
        }
        let Some(nul) = after.iter().position(|&c| c == 0) else {
            return self.stop();
        };
        let key = &after[..nul];
        let v = &after[nul + 1..];
        let fixed = |n: usize| -> Option<&'a [u8]> { v.get(..n) };
        let (value, used): (Value<'a>, usize) = match t {
            0x01 => match le64(v) {
                Some(x) => (Value::Double(f64::from_bits(x)), 8),
                None => return self.stop(),
            },
            0x02 | 0x0D | 0x0E => {
                let Some(n) = le32(v) else {
                    return self.stop();
                };
                let Ok(n) = usize::try_from(n) else {
                    self.state = State::Bad;
                    return None;
                };
                if n == 0 {
                    self.state = State::Bad;
                    return None;
                }
                let Some(s) = v.get(4..4 + n) else {
                    return self.stop();
                };
                let s = &s[..n - 1];
                if t == 0x02 {
                    (Value::Str(s), 4 + n)
                } else {
                    (Value::Other(t), 4 + n)
                }
            }
            0x03 | 0x04 => {
                let Some((d, len)) = Doc::parse(v) else {
                    if v.len() < 4 {
                        return self.stop();
                    }
                    self.state = State::Bad;
                    return None;
                };
                if !d.complete && self.complete {
                    self.state = State::Bad;
                    return None;
                }
                let value = if t == 0x03 {
                    Value::Doc(d)
                } else {
                    Value::Array(d)
                };
                if !d.complete {
                    // Yield what was captured of it; nothing follows.
                    self.rest = &[];
                    self.state = State::Cut;
                    return Some((key, value));
                }
                (value, len)
            }
            0x05 => {
                let (Some(n), Some(&sub)) = (le32(v), v.get(4)) else {
                    return self.stop();
                };
                let Ok(n) = usize::try_from(n) else {
                    self.state = State::Bad;
                    return None;
                };
                if v.len() < 5 + n {
                    return self.stop();
                }
                (Value::Binary(sub), 5 + n)
            }
            0x06 => (Value::Undefined, 0),
            0x07 => match fixed(12) {
                Some(b) => (Value::ObjectId(b), 12),
                None => return self.stop(),
            },
            0x08 => match v.first() {
                Some(&b) => (Value::Bool(b != 0), 1),
                None => return self.stop(),
            },
            0x09 => match le64(v) {
                Some(x) => (Value::DateTime(x as i64), 8),
                None => return self.stop(),
            },
            0x0A => (Value::Null, 0),
            0x0B => {
                let Some(a) = v.iter().position(|&c| c == 0) else {
                    return self.stop();
                };
                let Some(b) = v[a + 1..].iter().position(|&c| c == 0) else {
                    return self.stop();
                };
                (Value::Regex, a + b + 2)
            }
            0x0C => {
                let Some(n) = le32(v).and_then(|n| usize::try_from(n).ok()) else {
                    return self.stop();
                };
                if v.len() < 4 + n + 12 {
                    return self.stop();
                }
                (Value::Other(t), 4 + n + 12)
            }
            0x0F => {
                let Some(n) = le32(v).and_then(|n| usize::try_from(n).ok()) else {
                    return self.stop();
                };
                if n < 4 {
                    self.state = State::Bad;
                    return None;
                }
                if v.len() < n {
                    return self.stop();
                }
                (Value::Other(t), n)
            }
            0x10 => match le32(v) {
                Some(x) => (Value::Int32(x), 4),
                None => return self.stop(),
            },
            0x11 => match le64(v) {
                Some(x) => (Value::Timestamp(x), 8),
                None => return self.stop(),
            },
            0x12 => match le64(v) {
                Some(x) => (Value::Int64(x as i64), 8),
                None => return self.stop(),
            },
            0x13 => match fixed(16) {
                Some(_) => (Value::Decimal128, 16),
                None => return self.stop(),
            },
            0xFF => (Value::MinKey, 0),
            0x7F => (Value::MaxKey, 0),
            _ => {
                self.state = State::Bad;
                return None;
            }
        };
        self.rest = &v[used..];
        Some((key, value))
    }
}

/// Appends `s` as a JSON string.
pub fn json_str(out: &mut String, s: &[u8]) {
    out.push('"');
    for c in String::from_utf8_lossy(s).chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Renders values as JSON into a string of at most about `limit` bytes (rendering stops
/// once past it: the caller cuts).
pub struct Render {
    pub out: String,
    pub limit: usize,
    pub sanitize: bool,
    /// Something was not captured (a document cut short): the text is a prefix.
    pub cut: bool,
}

impl Render {
    pub fn new(limit: usize, sanitize: bool) -> Self {
        Render {
            out: String::new(),
            limit,
            sanitize,
            cut: false,
        }
    }

    /// Past the limit: stop rendering.
    pub fn full(&self) -> bool {
        self.out.len() > self.limit
    }

    /// `"key":` (with a comma before unless `first`).
    pub fn key(&mut self, key: &[u8], first: bool) {
        if !first {
            self.out.push(',');
        }
        json_str(&mut self.out, key);
        self.out.push(':');
    }

    /// A value: scalars as `"?"` when sanitizing, documents and arrays by shape.
    pub fn value(&mut self, v: &Value<'_>, depth: usize) {
        if self.full() {
            return;
        }
        match v {
            Value::Doc(d) | Value::Array(d) if depth < MAX_DEPTH => {
                let array = matches!(v, Value::Array(_));
                self.out.push(if array { '[' } else { '{' });
                let mut it = d.iter();
                let mut first = true;
                for (k, e) in it.by_ref() {
                    if self.full() {
                        return;
                    }
                    if array {
                        if !first {
                            self.out.push(',');
                        }
                    } else {
                        self.key(k, first);
                    }
                    first = false;
                    self.value(&e, depth + 1);
                }
                if it.state() != State::Ended {
                    // Cut (or garbage): leave it open, visibly unfinished.
                    self.cut = true;
                    return;
                }
                self.out.push(if array { ']' } else { '}' });
            }
            _ if self.sanitize || v.is_container() => self.out.push_str("\"?\""),
            Value::Str(s) => json_str(&mut self.out, s),
            Value::Double(d) if d.is_finite() => self.out.push_str(&format!("{d:?}")),
            Value::Int32(i) => self.out.push_str(&i.to_string()),
            Value::Int64(i) => self.out.push_str(&i.to_string()),
            Value::Bool(b) => self.out.push_str(if *b { "true" } else { "false" }),
            Value::Null | Value::Undefined => self.out.push_str("null"),
            Value::ObjectId(b) => {
                self.out.push_str("{\"$oid\":\"");
                for x in b.iter() {
                    self.out.push_str(&format!("{x:02x}"));
                }
                self.out.push_str("\"}");
            }
            Value::DateTime(ms) => self.out.push_str(&format!("{{\"$date\":{ms}}}")),
            Value::Timestamp(t) => self.out.push_str(&format!(
                "{{\"$timestamp\":{{\"t\":{},\"i\":{}}}}}",
                t >> 32,
                t & 0xffff_ffff
            )),
            Value::MinKey => self.out.push_str("{\"$minKey\":1}"),
            Value::MaxKey => self.out.push_str("{\"$maxKey\":1}"),
            _ => self.out.push_str("\"?\""),
        }
    }
}
