//! HTTP/1 head parsing: pure functions over a complete header block.

use super::*;

pub(super) enum Parsed {
    Request(RequestHead, Framing, bool),
    Response(ResponseHead, Framing),
}

#[inline]
pub(super) fn is_tchar(b: u8) -> bool {
    TCHAR[b as usize]
}

/// `is_tchar` as a table: header names are checked a byte at a time, without branches.
static TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = tchar(i as u8);
        i += 1;
    }
    t
};

const fn tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

#[inline]
pub(super) fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

pub(super) fn is_known_method(m: &[u8]) -> bool {
    KNOWN_METHODS.iter().any(|k| k.as_bytes() == m)
}

pub(super) fn trim_end_ows(mut v: &[u8]) -> &[u8] {
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

pub(super) fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    trim_end_ows(v)
}

/// Early check of a partial head so that another protocol is rejected without
/// buffering 16 KiB. Returns Ok(true) once the prefix is known to be fine,
/// Ok(false) while undecided.
pub(super) fn check_prefix(p: &[u8], role: Role, first: bool) -> Result<bool, ParseError> {
    match role {
        Role::Requests => {
            let n = p.iter().take_while(|&&b| is_tchar(b)).count();
            let bad = if first {
                ParseError::NotHttp
            } else {
                ParseError::BadRequestLine
            };
            if first && n > MAX_FIRST_METHOD {
                return Err(ParseError::NotHttp);
            }
            if n == p.len() {
                return Ok(false);
            }
            if n == 0 {
                return Err(bad);
            }
            if p[n] == b' ' {
                return Ok(true);
            }
            if first && !is_known_method(&p[..n]) {
                Err(ParseError::NotHttp)
            } else {
                Err(ParseError::BadRequestLine)
            }
        }
        Role::Responses => {
            const PFX: &[u8] = b"HTTP/";
            let m = p.len().min(PFX.len());
            if p[..m] != PFX[..m] {
                return Err(if first {
                    ParseError::NotHttp
                } else {
                    ParseError::BadStatusLine
                });
            }
            Ok(m == PFX.len())
        }
    }
}

/// Lines of a header block, with the trailing CR stripped.
pub(super) fn lines(head: &[u8]) -> impl Iterator<Item = &[u8]> {
    head.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

pub(super) fn parse_version(v: &[u8]) -> Option<u8> {
    match v {
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', minor] if minor.is_ascii_digit() => {
            Some(if *minor == b'0' { 10 } else { 11 })
        }
        _ => None,
    }
}

pub(super) fn parse_head(
    head: &[u8],
    role: Role,
    first: bool,
    to: Option<ResponseTo>,
) -> Result<Parsed, ParseError> {
    let mut it = lines(head);
    let start = it.next().unwrap_or(&[]);
    match role {
        Role::Requests => {
            let (method, target, version) = match parse_request_line(start) {
                Ok(v) => v,
                Err(e) => {
                    let tok = start.split(|&b| b == b' ').next().unwrap_or(&[]);
                    return Err(if first && !is_known_method(tok) {
                        ParseError::NotHttp
                    } else {
                        e
                    });
                }
            };
            let f = parse_fields(it)?;
            let chunked = f.te_present && f.chunked;
            let framing = if chunked {
                Framing::Chunked
            } else if f.te_present {
                return Err(ParseError::BadHeader);
            } else {
                match f.content_length {
                    Some(n) => Framing::Length(n),
                    None => Framing::None,
                }
            };
            let tunnel = method == b"CONNECT" || f.upgrade_present;
            let head = RequestHead {
                method: String::from_utf8_lossy(method).into_owned(),
                target: String::from_utf8_lossy(target).into_owned(),
                version,
                host: f.host,
                user_agent: f.user_agent,
                traceparent: f.traceparent,
                tracestate: f.tracestate,
                content_length: f.content_length,
                chunked,
                expect_continue: f.expect_continue,
                connection_close: f.conn_close || (version == 10 && !f.conn_keep_alive),
            };
            Ok(Parsed::Request(head, framing, tunnel))
        }
        Role::Responses => {
            let (version, status) = match parse_status_line(start) {
                Ok(v) => v,
                Err(e) => {
                    return Err(if first && !start.starts_with(b"HTTP/") {
                        ParseError::NotHttp
                    } else {
                        e
                    })
                }
            };
            let f = parse_fields(it)?;
            let chunked = f.te_present && f.chunked;
            let to = to.unwrap_or_default();
            let framing = if (100..200).contains(&status) {
                if status == 101 {
                    Framing::Upgrade
                } else {
                    Framing::Interim
                }
            } else if to == ResponseTo::Head || status == 204 || status == 304 {
                Framing::None
            } else if to == ResponseTo::Connect && (200..300).contains(&status) {
                Framing::Upgrade
            } else if chunked {
                Framing::Chunked
            } else if f.te_present {
                Framing::UntilClose
            } else {
                match f.content_length {
                    Some(n) => Framing::Length(n),
                    None => Framing::UntilClose,
                }
            };
            let head = ResponseHead {
                status,
                version,
                content_length: f.content_length,
                chunked,
                connection_close: f.conn_close || (version == 10 && !f.conn_keep_alive),
            };
            Ok(Parsed::Response(head, framing))
        }
    }
}

pub(super) fn parse_request_line(line: &[u8]) -> Result<(&[u8], &[u8], u8), ParseError> {
    let bad = ParseError::BadRequestLine;
    let line = trim_end_ows(line);
    let sp1 = line.iter().position(|&b| b == b' ').ok_or(bad)?;
    let method = &line[..sp1];
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(bad);
    }
    let rest = &line[sp1 + 1..];
    let sp2 = rest.iter().rposition(|&b| b == b' ').ok_or(bad)?;
    let target = trim_ows(&rest[..sp2]);
    let version = parse_version(&rest[sp2 + 1..]).ok_or(bad)?;
    if target.is_empty() || target.iter().any(|&b| b <= 0x20 || b == 0x7f) {
        return Err(bad);
    }
    Ok((method, target, version))
}

pub(super) fn parse_status_line(line: &[u8]) -> Result<(u8, u16), ParseError> {
    let bad = ParseError::BadStatusLine;
    let version = parse_version(line.get(..8).ok_or(bad)?).ok_or(bad)?;
    let rest = &line[8..];
    let digits_at = rest.iter().take_while(|&&b| b == b' ').count();
    if digits_at == 0 {
        return Err(bad);
    }
    let rest = &rest[digits_at..];
    let code = match rest {
        [a, b, c, tail @ ..] if a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit() => {
            if !matches!(tail.first(), None | Some(b' ') | Some(b'\t')) {
                return Err(bad);
            }
            u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
        }
        _ => return Err(bad),
    };
    if code < 100 {
        return Err(bad);
    }
    Ok((version, code))
}

#[derive(Default)]
pub(super) struct Fields {
    content_length: Option<u64>,
    te_present: bool,
    /// Last transfer coding seen is `chunked`.
    chunked: bool,
    conn_close: bool,
    conn_keep_alive: bool,
    upgrade_present: bool,
    expect_continue: bool,
    host: Option<String>,
    user_agent: Option<String>,
    traceparent: Option<String>,
    tracestate: Option<String>,
}

pub(super) fn kept(v: &[u8]) -> String {
    String::from_utf8_lossy(v).into_owned()
}

pub(super) fn parse_content_length(v: &[u8]) -> Result<u64, ParseError> {
    // A list of identical values ("42, 42") is allowed (RFC 9110 §8.6).
    let mut val: Option<u64> = None;
    for part in v.split(|&b| b == b',') {
        let part = trim_ows(part);
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return Err(ParseError::BadHeader);
        }
        let mut n: u64 = 0;
        for &b in part {
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(b - b'0')))
                .ok_or(ParseError::BadHeader)?;
        }
        match val {
            Some(prev) if prev != n => return Err(ParseError::BadHeader),
            _ => val = Some(n),
        }
    }
    val.ok_or(ParseError::BadHeader)
}

pub(super) fn parse_fields<'a>(
    lines: impl Iterator<Item = &'a [u8]>,
) -> Result<Fields, ParseError> {
    let mut f = Fields::default();
    // Whether an obs-fold continuation may follow the previous line.
    let mut fold_ok: Option<bool> = None;
    for line in lines {
        if line.is_empty() {
            break;
        }
        if matches!(line[0], b' ' | b'\t') {
            // obs-fold: ignored unless it would change framing.
            match fold_ok {
                Some(true) => continue,
                _ => return Err(ParseError::BadHeader),
            }
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(ParseError::BadHeader)?;
        let name = &line[..colon];
        // Folds rather than early exits: no branch per byte.
        if name.is_empty() || !name.iter().fold(true, |ok, &b| ok & is_tchar(b)) {
            return Err(ParseError::BadHeader);
        }
        let value = trim_ows(&line[colon + 1..]);
        if value.iter().fold(false, |bad, &b| {
            bad | ((b < 0x20) & (b != b'\t')) | (b == 0x7f)
        }) {
            return Err(ParseError::BadHeader);
        }
        fold_ok = Some(true);
        // Only names of a length we read are compared (most fields are of none).
        let is = |n: &str| name.len() == n.len() && name.eq_ignore_ascii_case(n.as_bytes());
        if !matches!(name.len(), 4 | 6 | 7 | 10 | 11 | 14 | 17) {
            continue;
        }
        if is("content-length") {
            fold_ok = Some(false);
            let n = parse_content_length(value)?;
            match f.content_length {
                Some(prev) if prev != n => return Err(ParseError::BadHeader),
                _ => f.content_length = Some(n),
            }
        } else if is("transfer-encoding") {
            fold_ok = Some(false);
            f.te_present = true;
            for coding in value.split(|&b| b == b',') {
                let coding = trim_ows(coding);
                if !coding.is_empty() {
                    f.chunked = coding.eq_ignore_ascii_case(b"chunked");
                }
            }
        } else if is("connection") {
            for tok in value.split(|&b| b == b',') {
                let tok = trim_ows(tok);
                if tok.eq_ignore_ascii_case(b"close") {
                    f.conn_close = true;
                } else if tok.eq_ignore_ascii_case(b"keep-alive") {
                    f.conn_keep_alive = true;
                }
            }
        } else if is("expect") {
            if value.eq_ignore_ascii_case(b"100-continue") {
                f.expect_continue = true;
            }
        } else if is("upgrade") {
            f.upgrade_present = true;
        } else if is("host") {
            if f.host.is_none() {
                f.host = Some(kept(value));
            }
        } else if is("user-agent") {
            if f.user_agent.is_none() {
                f.user_agent = Some(kept(value));
            }
        } else if is("traceparent") {
            if f.traceparent.is_none() {
                f.traceparent = Some(kept(value));
            }
        } else if is("tracestate") {
            // Several tracestate fields combine as one comma-separated list.
            match &mut f.tracestate {
                Some(ts) => {
                    if !value.is_empty() {
                        ts.push(',');
                        ts.push_str(&String::from_utf8_lossy(value));
                    }
                }
                None => f.tracestate = Some(kept(value)),
            }
        }
        // Every other field (Authorization, Cookie, ...) is skipped unread.
    }
    Ok(f)
}
