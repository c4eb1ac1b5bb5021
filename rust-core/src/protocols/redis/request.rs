//! The request direction: an incremental parser of commands (RESP arrays of bulk strings,
//! and inline command lines), keeping of each argument only its first
//! [`KEEP_ARG`] bytes and its length. Argument payloads are skipped by their length, fed
//! bytes or `gap`; only an inline line is buffered (at most [`MAX_LINE`] bytes, Redis's
//! own limit for inline requests).

use super::commands::{
    is_container, is_known, is_known_prefix, is_module_command, is_operation, redaction, Redact,
    LONGEST_KNOWN,
};
use super::resp::{Broken, MAX_BULK};
use super::MAX_LINE;
use crate::protocols::db::QueryTextOptions;

/// Bytes kept (and shown in query text) of each argument.
pub const KEEP_ARG: usize = 64;
/// Redis's limit of arguments in one command (`INT_MAX`).
const MAX_ARGS: i64 = i32::MAX as i64;
const MAX_NUMBER_LINE: usize = 24;

/// One command, as much as was seen of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Command {
    /// The command name, upper case (lossy, at most 64 bytes).
    pub name: String,
    /// The name is a plausible command token (letters, digits, `._:|-`).
    pub name_ok: bool,
    /// The subcommand of a container command (`CLIENT SETNAME`), upper case.
    pub sub: Option<String>,
    /// Arguments after the name (a subcommand counts).
    pub args: u64,
    /// First bytes of the first two arguments after the name.
    pub arg1: Vec<u8>,
    pub arg2: Vec<u8>,
    /// `db.query.text` as configured (empty when not captured).
    pub text: String,
    /// Some argument or the whole text was cut.
    pub truncated: bool,
    pub start_ts: u64,
    pub tid: u32,
    /// The name (and subcommand) are final: the command can be classified.
    pub head: bool,
    text_full: bool,
    redact: Redact,
}

impl Command {
    fn new(start_ts: u64, tid: u32) -> Self {
        Command {
            start_ts,
            tid,
            ..Command::default()
        }
    }

    /// `db.operation.name`: the name, with the subcommand of container commands.
    pub fn operation(&self) -> Option<String> {
        if !self.name_ok {
            return None;
        }
        Some(match &self.sub {
            Some(s) => format!("{} {s}", self.name),
            None => self.name.clone(),
        })
    }

    /// Takes one argument (`b`: its first bytes, `full`: its length); true when this
    /// argument made the head known.
    fn push_arg(&mut self, b: &[u8], full: u64, opts: &QueryTextOptions) -> bool {
        let cut = full > b.len() as u64;
        let mut became_head = false;
        if self.name.is_empty() {
            self.name = String::from_utf8_lossy(b).to_ascii_uppercase();
            self.name_ok = !cut && !b.is_empty() && b.iter().all(|c| is_token_byte(*c));
            if self.name.is_empty() {
                // An empty name still takes the name's place.
                self.name_ok = false;
                self.name.push('?');
            }
            self.redact = redaction(&self.name, None);
            if !is_container(&self.name) {
                self.head = true;
                became_head = true;
            }
            if opts.capture {
                let shown = if self.name_ok {
                    self.name.clone()
                } else {
                    render(b, cut)
                };
                self.append(&shown, opts);
                if cut {
                    self.truncated = true;
                }
            }
            return became_head;
        }
        self.args += 1;
        if self.args == 1 {
            self.arg1 = b.to_vec();
        } else if self.args == 2 {
            self.arg2 = b.to_vec();
        }
        let is_sub = self.args == 1
            && is_container(&self.name)
            && !cut
            && !b.is_empty()
            && b.len() <= 32
            && b.iter().all(|c| is_token_byte(*c));
        if is_sub {
            let sub = String::from_utf8_lossy(b).to_ascii_uppercase();
            self.redact = redaction(&self.name, Some(&sub));
            self.sub = Some(sub);
        }
        if self.args == 1 && !self.head {
            self.head = true;
            became_head = true;
        }
        if opts.capture && !self.text_full {
            // Position among the arguments proper (after name and subcommand).
            let k = (self.args - 1).saturating_sub(u64::from(self.sub.is_some()));
            let piece = if is_sub {
                self.sub.clone().unwrap_or_default()
            } else if self.redact == Redact::All {
                "?".to_string()
            } else if k == 0 {
                if cut {
                    self.truncated = true;
                }
                render(b, cut)
            } else if opts.sanitize || self.redact == Redact::Sanitize {
                "?".to_string()
            } else {
                if cut {
                    self.truncated = true;
                }
                render(b, cut)
            };
            self.append(" ", opts);
            self.append(&piece, opts);
        }
        became_head
    }

    fn append(&mut self, s: &str, opts: &QueryTextOptions) {
        if self.text_full {
            return;
        }
        if self.text.len() + s.len() <= opts.max_len {
            self.text.push_str(s);
            return;
        }
        let mut room = opts.max_len.saturating_sub(self.text.len());
        while room > 0 && !s.is_char_boundary(room) {
            room -= 1;
        }
        self.text.push_str(&s[..room]);
        // A separator left last means nothing of the next piece fit.
        if self.text.ends_with(' ') {
            self.text.pop();
        }
        self.text_full = true;
        self.truncated = true;
    }

    fn head_event(&self) -> ReqEvent {
        ReqEvent::Head {
            operation: is_operation(&self.name, self.sub.as_deref()),
            start_ts: self.start_ts,
            tid: self.tid,
        }
    }

    /// The command is complete: the head is final even without arguments.
    fn finish(&mut self) -> bool {
        let became = !self.head;
        self.head = true;
        became
    }
}

pub fn is_token_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'|' | b'-')
}

/// An argument as shown in query text: as is when it is a plain word, else quoted with
/// escapes (`"a b"`, `"\x00\xff"`). `cut`: the bytes are a prefix (an incomplete UTF-8
/// sequence at the end is dropped; `?` when nothing was captured).
pub fn render(b: &[u8], cut: bool) -> String {
    if b.is_empty() && cut {
        // Nothing of it was captured.
        return "?".to_string();
    }
    let plain = !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_graphic() && !matches!(c, b'"' | b'\'' | b'\\'));
    if plain {
        return String::from_utf8_lossy(b).into_owned();
    }
    let mut s = String::with_capacity(b.len() + 2);
    s.push('"');
    let mut chunks = b.utf8_chunks().peekable();
    while let Some(chunk) = chunks.next() {
        for ch in chunk.valid().chars() {
            match ch {
                '"' => s.push_str("\\\""),
                '\\' => s.push_str("\\\\"),
                '\n' => s.push_str("\\n"),
                '\r' => s.push_str("\\r"),
                '\t' => s.push_str("\\t"),
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for byte in c.encode_utf8(&mut buf).bytes() {
                        s.push_str(&format!("\\x{byte:02x}"));
                    }
                }
                c => s.push(c),
            }
        }
        let last = chunks.peek().is_none();
        if !(last && cut && chunk.invalid().len() < 4) {
            for byte in chunk.invalid() {
                s.push_str(&format!("\\x{byte:02x}"));
            }
        }
    }
    s.push('"');
    s
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between commands.
    Idle,
    /// The `*<n>` line: `len` bytes so far, `cr` after a `\r`.
    Count { len: usize, cr: bool },
    /// Expecting the `$` of argument header.
    ArgType,
    /// The `$<len>` line.
    ArgLen { len: usize, cr: bool },
    /// Inside an argument's payload.
    ArgBody { left: u64, full: u64 },
    /// The CRLF after a payload.
    ArgCrlf { seen: u8, full: u64 },
    /// An inline command line.
    Inline,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReqEvent {
    /// The command in progress is classified (name and subcommand known): `operation`
    /// when it makes a span; the ts and tid of the feed holding its first byte.
    Head {
        operation: bool,
        start_ts: u64,
        tid: u32,
    },
    /// A complete command, with the ts of the feed holding its last byte.
    Done(Box<Command>, u64),
}

#[derive(Debug)]
pub struct RequestParser {
    state: State,
    /// Arguments announced and not yet seen.
    left: i64,
    line: Vec<u8>,
    arg: Vec<u8>,
    cmd: Option<Box<Command>>,
    opts: QueryTextOptions,
    /// Until a command completes, its name must be a known command (and an inline line
    /// no HTTP request): the stream is being (re)synchronised from a feed's start.
    pub strict: bool,
}

impl RequestParser {
    pub fn new(opts: QueryTextOptions) -> Self {
        RequestParser {
            state: State::Idle,
            left: 0,
            line: Vec::new(),
            arg: Vec::new(),
            cmd: None,
            opts,
            strict: true,
        }
    }

    /// After a failure: back to a command boundary, returning the command in progress
    /// when its head was known (it was sent: its reply comes).
    pub fn reset(&mut self) -> Option<Box<Command>> {
        self.state = State::Idle;
        self.left = 0;
        self.line = Vec::new();
        self.arg.clear();
        self.cmd.take().filter(|c| c.head)
    }

    fn start(&mut self, ts: u64, tid: u32) {
        self.cmd = Some(Box::new(Command::new(ts, tid)));
    }

    fn arg_done(&mut self, full: u64, out: &mut Vec<ReqEvent>) -> Result<(), Broken> {
        let Some(cmd) = self.cmd.as_mut() else {
            return Ok(());
        };
        let plausible = |name: &[u8]| is_known(name) || is_module_command(name);
        if self.strict && cmd.name.is_empty() && (full > KEEP_ARG as u64 || !plausible(&self.arg)) {
            return Err(Broken::Malformed);
        }
        if cmd.push_arg(&self.arg, full, &self.opts) {
            out.push(cmd.head_event());
        }
        self.arg.clear();
        self.left -= 1;
        if self.left <= 0 {
            self.state = State::Idle;
        } else {
            self.state = State::ArgType;
        }
        Ok(())
    }

    fn command_done(&mut self, ts: u64, out: &mut Vec<ReqEvent>) {
        if let Some(mut cmd) = self.cmd.take() {
            if cmd.finish() {
                out.push(cmd.head_event());
            }
            out.push(ReqEvent::Done(cmd, ts));
            self.strict = false;
        }
    }

    pub fn feed(
        &mut self,
        data: &[u8],
        ts: u64,
        tid: u32,
        out: &mut Vec<ReqEvent>,
    ) -> Result<(), Broken> {
        let mut i = 0;
        while i < data.len() {
            match self.state {
                State::Idle => {
                    self.line.clear();
                    self.start(ts, tid);
                    if data[i] == b'*' {
                        i += 1;
                        self.state = State::Count { len: 0, cr: false };
                    } else {
                        self.state = State::Inline;
                    }
                }
                State::Count { len, cr } | State::ArgLen { len, cr } => {
                    let count = matches!(self.state, State::Count { .. });
                    let (used, end) = scan_line(&data[i..], len, cr, &mut self.line)?;
                    i += used;
                    match end {
                        LineEnd::More { len, cr } => {
                            self.state = if count {
                                State::Count { len, cr }
                            } else {
                                State::ArgLen { len, cr }
                            };
                        }
                        LineEnd::Done => {
                            let n = number(&self.line).ok_or(Broken::Malformed)?;
                            self.line.clear();
                            if count {
                                if n > MAX_ARGS {
                                    return Err(Broken::Malformed);
                                }
                                if n <= 0 {
                                    // `*0` / `*-1`: Redis ignores them (no reply).
                                    self.cmd = None;
                                    self.state = State::Idle;
                                } else {
                                    self.left = n;
                                    self.state = State::ArgType;
                                }
                            } else {
                                let full = u64::try_from(n).map_err(|_| Broken::Malformed)?;
                                let name = self.cmd.as_ref().is_some_and(|c| c.name.is_empty());
                                if full > MAX_BULK
                                    || (self.strict && name && full > KEEP_ARG as u64)
                                {
                                    return Err(Broken::Malformed);
                                }
                                self.state = if full == 0 {
                                    State::ArgCrlf { seen: 0, full }
                                } else {
                                    State::ArgBody { left: full, full }
                                };
                            }
                        }
                    }
                }
                State::ArgType => {
                    if data[i] != b'$' {
                        return Err(Broken::Malformed);
                    }
                    i += 1;
                    self.state = State::ArgLen { len: 0, cr: false };
                }
                State::ArgBody { left, full } => {
                    let n = (data.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                    if self.arg.len() < KEEP_ARG {
                        let k = n.min(KEEP_ARG - self.arg.len());
                        self.arg.extend_from_slice(&data[i..i + k]);
                    }
                    i += n;
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::ArgCrlf { seen: 0, full }
                    } else {
                        State::ArgBody { left, full }
                    };
                }
                State::ArgCrlf { seen, full } => {
                    let want = if seen == 0 { b'\r' } else { b'\n' };
                    if data[i] != want {
                        return Err(Broken::Malformed);
                    }
                    i += 1;
                    if seen == 0 {
                        self.state = State::ArgCrlf { seen: 1, full };
                    } else {
                        self.arg_done(full, out)?;
                        if self.state == State::Idle {
                            self.command_done(ts, out);
                        }
                    }
                }
                State::Inline => {
                    let rest = &data[i..];
                    match rest.iter().position(|b| *b == b'\n') {
                        None => {
                            if self.line.len() + rest.len() > MAX_LINE {
                                return Err(Broken::Malformed);
                            }
                            self.line.extend_from_slice(rest);
                            i = data.len();
                            if self.strict && !inline_start_plausible(&self.line, false) {
                                return Err(Broken::Malformed);
                            }
                        }
                        Some(p) => {
                            if self.line.len() + p > MAX_LINE {
                                return Err(Broken::Malformed);
                            }
                            self.line.extend_from_slice(&rest[..p]);
                            i += p + 1;
                            if self.line.last() == Some(&b'\r') {
                                self.line.pop();
                            }
                            if self.strict && !inline_start_plausible(&self.line, true) {
                                return Err(Broken::Malformed);
                            }
                            let line = std::mem::take(&mut self.line);
                            let args = split_args(&line).ok_or(Broken::Malformed)?;
                            self.state = State::Idle;
                            if args.is_empty() {
                                // An empty line: no command, no reply.
                                self.cmd = None;
                                continue;
                            }
                            self.left = args.len() as i64;
                            for a in &args {
                                self.arg.clear();
                                let k = a.len().min(KEEP_ARG);
                                self.arg.extend_from_slice(&a[..k]);
                                self.arg_done(a.len() as u64, out)?;
                            }
                            self.state = State::Idle;
                            self.command_done(ts, out);
                            self.line = line;
                            self.line.clear();
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// `n` uncaptured bytes: skipped inside an argument's payload (and its CRLF).
    pub fn gap(&mut self, n: u64, ts: u64, out: &mut Vec<ReqEvent>) -> Result<(), Broken> {
        let mut n = n;
        if n == 0 {
            return Ok(());
        }
        if let State::ArgBody { left, full } = self.state {
            let k = n.min(left);
            n -= k;
            self.state = if k == left {
                State::ArgCrlf { seen: 0, full }
            } else {
                State::ArgBody {
                    left: left - k,
                    full,
                }
            };
        }
        if n > 0 {
            if let State::ArgCrlf { seen, full } = self.state {
                let k = n.min(u64::from(2 - seen));
                n -= k;
                if u64::from(seen) + k == 2 {
                    self.arg_done(full, out)?;
                    if self.state == State::Idle {
                        self.command_done(ts, out);
                    }
                } else {
                    self.state = State::ArgCrlf { seen: 1, full };
                }
            }
        }
        if n > 0 {
            return Err(Broken::Gap);
        }
        Ok(())
    }
}

/// While resynchronising: an inline line (`whole`: up to its end) can be a command: its
/// first word is (or, cut, begins) a known command, and it is no HTTP request line.
fn inline_start_plausible(line: &[u8], whole: bool) -> bool {
    let blank = |c: &u8| matches!(c, b' ' | b'\t' | b'\r' | 0x0b | 0x0c);
    let start = line.iter().position(|c| !blank(c)).unwrap_or(line.len());
    let rest = &line[start..];
    if rest.is_empty() {
        // Blank so far (an empty line is no command).
        return true;
    }
    match rest.iter().position(blank) {
        None if !whole => rest.len() <= LONGEST_KNOWN && is_known_prefix(rest),
        None => is_known(rest),
        Some(end) => is_known(&rest[..end]) && !(whole && line.windows(6).any(|w| w == b" HTTP/")),
    }
}

enum LineEnd {
    Done,
    More { len: usize, cr: bool },
}

/// Reads a `<number>\r\n` line from `data` into `line`; returns the bytes used.
fn scan_line(
    data: &[u8],
    len: usize,
    cr: bool,
    line: &mut Vec<u8>,
) -> Result<(usize, LineEnd), Broken> {
    let mut len = len;
    let mut cr = cr;
    for (j, &b) in data.iter().enumerate() {
        if cr {
            if b != b'\n' {
                return Err(Broken::Malformed);
            }
            return Ok((j + 1, LineEnd::Done));
        }
        if b == b'\r' {
            cr = true;
            continue;
        }
        if !b.is_ascii_digit() && b != b'-' {
            return Err(Broken::Malformed);
        }
        len += 1;
        if len > MAX_NUMBER_LINE {
            return Err(Broken::Malformed);
        }
        line.push(b);
    }
    Ok((data.len(), LineEnd::More { len, cr }))
}

fn number(b: &[u8]) -> Option<i64> {
    let (neg, digits) = match b.strip_prefix(b"-") {
        Some(d) => (true, d),
        None => (false, b),
    };
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v = digits
        .iter()
        .fold(0i64, |v, d| v * 10 + i64::from(d - b'0'));
    Some(if neg { -v } else { v })
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Splits an inline command line as Redis does (`sdssplitargs`): words separated by
/// blanks, `"..."` with `\n \r \t \b \a \xHH` escapes, `'...'` with `\'`; None for
/// unbalanced quotes (Redis answers a protocol error and closes the connection).
pub fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    // Redis splits a C string: a NUL ends the line.
    let line = &line[..line.iter().position(|b| *b == 0).unwrap_or(line.len())];
    let mut args = Vec::new();
    let mut p = 0;
    let blank = |c: u8| matches!(c, b' ' | b'\n' | b'\r' | b'\t' | 0x0b | 0x0c);
    loop {
        while p < line.len() && blank(line[p]) {
            p += 1;
        }
        if p >= line.len() {
            return Some(args);
        }
        let mut cur = Vec::new();
        let mut inq = false;
        let mut insq = false;
        loop {
            let c = line.get(p).copied();
            if inq {
                match c {
                    None => return None,
                    Some(b'\\')
                        if line.get(p + 1) == Some(&b'x')
                            && line.get(p + 2).and_then(|c| hex(*c)).is_some()
                            && line.get(p + 3).and_then(|c| hex(*c)).is_some() =>
                    {
                        let hi = hex(line[p + 2]).unwrap_or(0);
                        let lo = hex(line[p + 3]).unwrap_or(0);
                        cur.push(hi * 16 + lo);
                        p += 3;
                    }
                    Some(b'\\') if p + 1 < line.len() => {
                        p += 1;
                        cur.push(match line[p] {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => 0x08,
                            b'a' => 0x07,
                            o => o,
                        });
                    }
                    Some(b'"') => {
                        // The closing quote must be followed by a blank or the end.
                        if line.get(p + 1).is_some_and(|c| !blank(*c)) {
                            return None;
                        }
                        p += 1;
                        break;
                    }
                    Some(o) => cur.push(o),
                }
            } else if insq {
                match c {
                    None => return None,
                    Some(b'\\') if line.get(p + 1) == Some(&b'\'') => {
                        p += 1;
                        cur.push(b'\'');
                    }
                    Some(b'\'') => {
                        if line.get(p + 1).is_some_and(|c| !blank(*c)) {
                            return None;
                        }
                        p += 1;
                        break;
                    }
                    Some(o) => cur.push(o),
                }
            } else {
                match c {
                    None | Some(b' ' | b'\n' | b'\r' | b'\t') => break,
                    Some(b'"') => inq = true,
                    Some(b'\'') => insq = true,
                    Some(o) => cur.push(o),
                }
            }
            p += 1;
        }
        args.push(cur);
    }
}
