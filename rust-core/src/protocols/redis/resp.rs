//! The reply direction: an incremental RESP2/RESP3 value parser that keeps nothing of a
//! value but what pairing and spans need (its type, the error prefix, and for a top-level
//! aggregate its length, first string element and third integer element: enough to tell
//! pub/sub pushes from replies).
//!
//! Aggregates nest to any depth without recursion (a stack of element counts, at most
//! [`MAX_DEPTH`] deep); bulk payloads are skipped by their length, fed bytes or `gap`.

use super::MAX_LINE;

/// Aggregates nested deeper than this are taken for garbage.
pub(crate) const MAX_DEPTH: usize = 64;
/// An aggregate announcing more elements than this is taken for garbage (a map or an
/// attribute counts its pairs).
pub const MAX_ELEMENTS: u64 = 1 << 20;
/// The largest bulk length accepted (4 GiB; Redis's own default limit is 512 MiB).
pub const MAX_BULK: u64 = 1 << 32;
/// Bytes kept of an error text (for its prefix) and of a first element (for its name).
const KEEP_ERROR: usize = 64;
const KEEP_FIRST: usize = 16;
/// Number lines longer than this (sign and digits) are malformed.
const MAX_NUMBER_LINE: usize = 24;

/// One complete top-level value (never an attribute: those are skipped).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Value {
    /// The RESP type byte: `+ - : $ * _ , # ! = ( % ~ >`.
    pub kind: u8,
    /// `-` line or `!` blob: the first word of the error text (at most 32 bytes).
    pub error: Option<String>,
    /// Aggregates: the announced number of elements (-1 for a RESP2 null array).
    pub len: i64,
    /// Aggregates: the first element when it is a (simple or bulk) string, at most 16 bytes.
    pub first: Option<Vec<u8>>,
    /// Aggregates: the third element when it is an integer (pub/sub subscription count).
    pub third: Option<i64>,
    /// ts of the feed holding the value's first / last byte.
    pub first_ts: u64,
    pub last_ts: u64,
}

impl Value {
    pub fn is_aggregate(&self) -> bool {
        matches!(self.kind, b'*' | b'%' | b'~' | b'>')
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting a type byte.
    Type,
    /// Reading the line after type byte `t`: `len` bytes so far, `cr` after a `\r`.
    Line { t: u8, len: usize, cr: bool },
    /// Inside the payload of a `$ ! =` value: `left` bytes to go, then CRLF.
    Bulk { t: u8, left: u64 },
    /// The CRLF after a payload: `seen` of its 2 bytes so far.
    Crlf { seen: u8 },
}

#[derive(Debug, Clone, Copy)]
struct Frame {
    /// Elements still to come.
    left: u64,
    /// Elements done so far (attributes inside do not count).
    done: u64,
    /// An attribute: when complete it is no value of its parent.
    attr: bool,
}

/// Why the reply stream cannot be followed any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broken {
    /// Bytes that are not RESP (bad type byte, bad number, missing CRLF, bounds).
    Malformed,
    /// Uncaptured bytes where framing was needed.
    Gap,
}

#[derive(Debug)]
pub struct ReplyParser {
    state: State,
    stack: Vec<Frame>,
    /// The current line's first bytes (numbers are parsed from here; errors keep a prefix).
    line: Vec<u8>,
    /// The current bulk's first bytes when worth keeping.
    keep: Vec<u8>,
    keep_max: usize,
    /// The value being built at top level.
    top: Value,
    /// A top-level value is in progress (its first byte was seen).
    in_value: bool,
    /// No value completed since the parser was (re)started at a feed's start: a failure
    /// means the bytes were no reply stream's start rather than garbage.
    pub strict: bool,
}

impl Default for ReplyParser {
    fn default() -> Self {
        ReplyParser::new()
    }
}

impl ReplyParser {
    pub fn new() -> Self {
        ReplyParser {
            state: State::Type,
            stack: Vec::new(),
            line: Vec::new(),
            keep: Vec::new(),
            keep_max: 0,
            top: Value::default(),
            in_value: false,
            strict: true,
        }
    }

    /// Back to a value boundary (after a resynchronisation).
    pub fn reset(&mut self) {
        self.state = State::Type;
        self.stack.clear();
        self.line.clear();
        self.keep.clear();
        self.in_value = false;
        self.top = Value::default();
    }

    /// A top-level value has started and not ended.
    pub fn in_value(&self) -> bool {
        self.in_value
    }

    /// Parses `data` (bytes of one feed with time `ts`), appending complete top-level
    /// values to `out`. On error the parser is left as is: the caller resets it.
    pub fn feed(&mut self, data: &[u8], ts: u64, out: &mut Vec<Value>) -> Result<(), Broken> {
        let mut i = 0;
        while i < data.len() {
            match self.state {
                State::Type => {
                    let t = data[i];
                    i += 1;
                    self.start(t, ts)?;
                }
                State::Line { t, len, cr } => {
                    // Scan to the end of the line inside this piece.
                    let rest = &data[i..];
                    let mut j = 0;
                    let mut len = len;
                    let mut cr = cr;
                    let mut ended = false;
                    while j < rest.len() {
                        let b = rest[j];
                        j += 1;
                        if cr {
                            if b != b'\n' {
                                return Err(Broken::Malformed);
                            }
                            ended = true;
                            break;
                        }
                        if b == b'\r' {
                            cr = true;
                            continue;
                        }
                        if b == b'\n' {
                            return Err(Broken::Malformed);
                        }
                        len += 1;
                        if len > line_limit(t) {
                            return Err(Broken::Malformed);
                        }
                        if self.line.len() < KEEP_ERROR.max(MAX_NUMBER_LINE) {
                            self.line.push(b);
                        }
                    }
                    i += j;
                    if ended {
                        self.end_line(t, ts, out)?;
                    } else {
                        self.state = State::Line { t, len, cr };
                    }
                }
                State::Bulk { t, left } => {
                    let n = (data.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                    if self.keep.len() < self.keep_max {
                        let k = n.min(self.keep_max - self.keep.len());
                        self.keep.extend_from_slice(&data[i..i + k]);
                    }
                    i += n;
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::Crlf { seen: 0 }
                    } else {
                        State::Bulk { t, left }
                    };
                    if left == 0 {
                        self.bulk_payload_done(t);
                    }
                }
                State::Crlf { seen } => {
                    let want = if seen == 0 { b'\r' } else { b'\n' };
                    if data[i] != want {
                        return Err(Broken::Malformed);
                    }
                    i += 1;
                    if seen == 0 {
                        self.state = State::Crlf { seen: 1 };
                    } else {
                        self.state = State::Type;
                        self.value_done(ts, out);
                    }
                }
            }
        }
        Ok(())
    }

    /// `n` bytes crossed the connection uncaptured: skipped when they fall inside a bulk
    /// payload (and its CRLF); anywhere else the framing is lost.
    pub fn gap(&mut self, n: u64, ts: u64, out: &mut Vec<Value>) -> Result<(), Broken> {
        let mut n = n;
        if n == 0 {
            return Ok(());
        }
        if let State::Bulk { t, left } = self.state {
            let k = n.min(left);
            n -= k;
            if k == left {
                self.state = State::Crlf { seen: 0 };
                self.bulk_payload_done(t);
            } else {
                self.state = State::Bulk { t, left: left - k };
            }
        }
        if n > 0 {
            if let State::Crlf { seen } = self.state {
                let k = n.min(u64::from(2 - seen));
                n -= k;
                if u64::from(seen) + k == 2 {
                    self.state = State::Type;
                    self.value_done(ts, out);
                } else {
                    self.state = State::Crlf { seen: 1 };
                }
            }
        }
        if n > 0 {
            return Err(Broken::Gap);
        }
        Ok(())
    }

    fn start(&mut self, t: u8, ts: u64) -> Result<(), Broken> {
        if !matches!(
            t,
            b'+' | b'-'
                | b':'
                | b'$'
                | b'*'
                | b'_'
                | b','
                | b'#'
                | b'!'
                | b'='
                | b'('
                | b'%'
                | b'~'
                | b'>'
                | b'|'
        ) {
            return Err(Broken::Malformed);
        }
        if self.stack.is_empty() && !self.in_value && t != b'|' {
            self.in_value = true;
            self.top = Value {
                kind: t,
                first_ts: ts,
                ..Value::default()
            };
        }
        self.line.clear();
        self.state = State::Line {
            t,
            len: 0,
            cr: false,
        };
        Ok(())
    }

    /// Where the current value sits: at top level, or as the n-th element of the top-level
    /// aggregate (attributes excluded).
    fn top_index(&self) -> Option<u64> {
        match self.stack.as_slice() {
            [f] if !f.attr && self.in_value => Some(f.done),
            _ => None,
        }
    }

    fn end_line(&mut self, t: u8, ts: u64, out: &mut Vec<Value>) -> Result<(), Broken> {
        self.state = State::Type;
        let at_top = self.stack.is_empty();
        let index = self.top_index();
        match t {
            b'+' => {
                if index == Some(0) {
                    self.top.first = Some(self.line[..self.line.len().min(KEEP_FIRST)].to_vec());
                }
                self.value_done(ts, out);
            }
            b'-' => {
                if at_top {
                    self.top.error = Some(error_prefix(&self.line));
                }
                self.value_done(ts, out);
            }
            b':' => {
                let v = number(&self.line).ok_or(Broken::Malformed)?;
                if index == Some(2) {
                    self.top.third = Some(v);
                }
                self.value_done(ts, out);
            }
            b'(' => {
                let digits = self.line.strip_prefix(b"-").unwrap_or(&self.line);
                let digits = digits.strip_prefix(b"+").unwrap_or(digits);
                if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                    return Err(Broken::Malformed);
                }
                self.value_done(ts, out);
            }
            b'_' => {
                if !self.line.is_empty() {
                    return Err(Broken::Malformed);
                }
                self.value_done(ts, out);
            }
            b'#' => {
                if self.line != b"t" && self.line != b"f" {
                    return Err(Broken::Malformed);
                }
                self.value_done(ts, out);
            }
            b',' => {
                if self.line.is_empty() || !self.line.iter().all(|b| b.is_ascii_graphic()) {
                    return Err(Broken::Malformed);
                }
                self.value_done(ts, out);
            }
            b'$' | b'!' | b'=' => {
                let v = number(&self.line).ok_or(Broken::Malformed)?;
                if v == -1 && t == b'$' {
                    self.value_done(ts, out);
                    return Ok(());
                }
                let len = u64::try_from(v).map_err(|_| Broken::Malformed)?;
                if len > MAX_BULK {
                    return Err(Broken::Malformed);
                }
                self.keep.clear();
                self.keep_max = if at_top && t == b'!' {
                    KEEP_ERROR
                } else if index == Some(0) && t != b'!' {
                    KEEP_FIRST
                } else {
                    0
                };
                if len == 0 {
                    self.state = State::Crlf { seen: 0 };
                    self.bulk_payload_done(t);
                } else {
                    self.state = State::Bulk { t, left: len };
                }
            }
            _ => {
                // Aggregates: * % ~ > |
                let v = number(&self.line).ok_or(Broken::Malformed)?;
                if v == -1 && t == b'*' {
                    if at_top {
                        self.top.len = -1;
                    }
                    self.value_done(ts, out);
                    return Ok(());
                }
                let n = u64::try_from(v).map_err(|_| Broken::Malformed)?;
                if n > MAX_ELEMENTS {
                    return Err(Broken::Malformed);
                }
                if at_top && t != b'|' {
                    self.top.len = v;
                }
                if self.stack.len() >= MAX_DEPTH {
                    return Err(Broken::Malformed);
                }
                let elements = if matches!(t, b'%' | b'|') { n * 2 } else { n };
                if elements == 0 {
                    if t == b'|' {
                        // An empty attribute: no value.
                        return Ok(());
                    }
                    self.value_done(ts, out);
                } else {
                    self.stack.push(Frame {
                        left: elements,
                        done: 0,
                        attr: t == b'|',
                    });
                }
            }
        }
        Ok(())
    }

    fn bulk_payload_done(&mut self, t: u8) {
        if self.keep_max == 0 {
            return;
        }
        if t == b'!' && self.stack.is_empty() {
            self.top.error = Some(error_prefix(&self.keep));
        } else if self.top_index() == Some(0) {
            let mut v = std::mem::take(&mut self.keep);
            if t == b'=' {
                // Verbatim strings: `txt:` before the text.
                v = v.get(4..).unwrap_or_default().to_vec();
            }
            self.top.first = Some(v);
        }
        self.keep.clear();
        self.keep_max = 0;
    }

    /// A value (scalar or finished aggregate) is complete: count it in its parent,
    /// closing every aggregate it completes.
    fn value_done(&mut self, ts: u64, out: &mut Vec<Value>) {
        loop {
            let Some(f) = self.stack.last_mut() else {
                if self.in_value {
                    self.in_value = false;
                    let mut v = std::mem::take(&mut self.top);
                    v.last_ts = ts;
                    out.push(v);
                    self.strict = false;
                }
                return;
            };
            f.left -= 1;
            f.done += 1;
            if f.left > 0 {
                return;
            }
            let attr = f.attr;
            self.stack.pop();
            if attr {
                // An attribute annotates the next value: it is none itself.
                return;
            }
        }
    }
}

/// Longest line accepted for each type.
fn line_limit(t: u8) -> usize {
    match t {
        b'+' | b'-' | b',' | b'(' => MAX_LINE,
        _ => MAX_NUMBER_LINE,
    }
}

fn number(b: &[u8]) -> Option<i64> {
    let (neg, digits) = match b.strip_prefix(b"-") {
        Some(d) => (true, d),
        None => (false, b.strip_prefix(b"+").unwrap_or(b)),
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut v: i64 = 0;
    for d in digits {
        v = v.checked_mul(10)?.checked_add(i64::from(d - b'0'))?;
    }
    Some(if neg { -v } else { v })
}

/// The error code: the first word of the error text (`ERR`, `WRONGTYPE`, `MOVED`...).
fn error_prefix(text: &[u8]) -> String {
    let word = text
        .split(|b| *b == b' ')
        .next()
        .unwrap_or_default()
        .iter()
        .take(32)
        .map(|b| {
            if b.is_ascii_graphic() {
                *b as char
            } else {
                '?'
            }
        })
        .collect::<String>();
    word
}

/// Whether `data` can be the start of a reply stream: every byte parses as RESP (a value
/// may be cut at the end) and at least one header line is complete.
pub fn plausible_replies(data: &[u8]) -> bool {
    if data.is_empty() {
        return false;
    }
    // The first line ends at the first LF (the parser checks its syntax).
    data.contains(&b'\n') && ReplyParser::new().feed(data, 0, &mut Vec::new()).is_ok()
}
