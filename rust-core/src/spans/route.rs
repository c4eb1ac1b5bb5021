//! Low-cardinality route templates from raw HTTP request-targets.
//!
//! * [`route_of`] gives a template for span names / `http.route`: query and
//!   fragment dropped, absolute-form reduced to its path, id-like path
//!   segments replaced by `{id}`, path parameters (`;jsessionid=...`) dropped.
//! * [`path_of`] gives the path without query/fragment (for `url.path`).
//! * [`query_of`] gives the query without `?` (for `url.query`).
//!
//! A segment is id-like when it is:
//! * all ASCII digits (`42`);
//! * a UUID, 8-4-4-4-12 hex digits, any case;
//! * all hex digits and at least 16 long (sha, object ids);
//! * at least 16 long, made of `[A-Za-z0-9_=~-]`, with at least one digit and
//!   one letter (opaque tokens).
//!
//! Ordinary words (`v1`, `api`, `2fa`, `app.js`) are kept. A signed number
//! (`-1`) is not id-like. No percent-decoding is done.

/// Minimum length of a hex string or opaque token to be templated.
const MIN_OPAQUE_LEN: usize = 16;

/// The part of the target before any `?` or `#`.
fn strip_query_fragment(target: &str) -> &str {
    match target.find(['?', '#']) {
        Some(i) => &target[..i],
        None => target,
    }
}

/// For absolute-form (`scheme://authority/path`), the path part (possibly
/// empty); otherwise the input unchanged.
fn strip_scheme_authority(t: &str) -> &str {
    if let Some(i) = t.find("://") {
        let scheme = &t[..i];
        let is_scheme = !scheme.is_empty()
            && scheme.as_bytes()[0].is_ascii_alphabetic()
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        if is_scheme {
            let after = &t[i + 3..];
            return match after.find('/') {
                Some(j) => &after[j..],
                None => "",
            };
        }
    }
    t
}

/// Path of a request-target, without query or fragment (for `url.path`).
/// Absolute-form targets give their path; an empty path gives `/`.
pub fn path_of(target: &str) -> &str {
    let p = strip_scheme_authority(strip_query_fragment(target));
    if p.is_empty() {
        "/"
    } else {
        p
    }
}

/// Query of a request-target without the leading `?` and without any
/// fragment; `None` when there is no query or it is empty.
pub fn query_of(target: &str) -> Option<&str> {
    let before_fragment = match target.find('#') {
        Some(i) => &target[..i],
        None => target,
    };
    let q = &before_fragment[before_fragment.find('?')? + 1..];
    if q.is_empty() {
        None
    } else {
        Some(q)
    }
}

pub(crate) fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Whether a path segment is an identifier to be replaced by `{id}`.
pub fn is_id_segment(seg: &str) -> bool {
    let b = seg.as_bytes();
    if b.is_empty() {
        return false;
    }
    if b.iter().all(u8::is_ascii_digit) {
        return true;
    }
    if is_uuid(seg) {
        return true;
    }
    if b.len() >= MIN_OPAQUE_LEN {
        if b.iter().all(u8::is_ascii_hexdigit) {
            return true;
        }
        let token_chars = b
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'=' | b'~'));
        let has_digit = b.iter().any(u8::is_ascii_digit);
        let has_alpha = b.iter().any(u8::is_ascii_alphabetic);
        if token_chars && has_digit && has_alpha {
            return true;
        }
    }
    false
}

/// Low-cardinality route template of a request-target.
///
/// `/users/42?x=1` → `/users/{id}`; `http://h/a/1` → `/a/{id}`; `/` and an
/// empty path → `/`; `*` (OPTIONS) stays `*`.
pub fn route_of(target: &str) -> String {
    let path = path_of(target);
    let mut out = String::with_capacity(path.len());
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        // Path parameters (`;jsessionid=...`) are dropped from the template.
        let seg = match seg.find(';') {
            Some(j) => &seg[..j],
            None => seg,
        };
        if is_id_segment(seg) {
            out.push_str("{id}");
        } else {
            out.push_str(seg);
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! route_cases {
        ($($target:expr => $route:expr),* $(,)?) => {
            #[test]
            fn route_table() {
                $(
                    assert_eq!(route_of($target), $route, "route_of({:?})", $target);
                )*
            }
        };
    }

    route_cases! {
        "/" => "/",
        "" => "/",
        "/?q=1" => "/",
        "?q=1" => "/",
        "/#frag" => "/",
        "/users/1" => "/users/{id}",
        "/users/20" => "/users/{id}",
        "/users/1234567890123" => "/users/{id}",
        "/users/42/" => "/users/{id}/",
        "/users//42" => "/users//{id}",
        "/orders/550e8400-e29b-41d4-a716-446655440000/items" => "/orders/{id}/items",
        "/orders/550E8400-E29B-41D4-A716-446655440000" => "/orders/{id}",
        "/orders/550e8400e29b41d4a716446655440000" => "/orders/{id}",
        "/orders/550e8400-e29b-41d4-a716-44665544000" => "/orders/{id}", // opaque token rule
        "/commit/3f786850e387550fdab836ed7e6dc881de23001b" => "/commit/{id}",
        "/blob/deadbeef" => "/blob/deadbeef",
        "/blob/deadbeefdeadbeef" => "/blob/{id}",
        "/t/aZ9kQ2mX7pL4vB8nR1" => "/t/{id}",
        "/t/abcdefghijklmnopqrstuvwxyz" => "/t/abcdefghijklmnopqrstuvwxyz",
        "/t/eyJhbGciOiJIUzI1NiJ9_x-y" => "/t/{id}",
        "/static/app.js" => "/static/app.js",
        "/static/app.2024.bundle.min.js" => "/static/app.2024.bundle.min.js",
        "/api/v1/users" => "/api/v1/users",
        "/api/v2/2fa" => "/api/v2/2fa",
        "/items/-1" => "/items/-1",
        "/items/+1" => "/items/+1",
        "/items/1.5" => "/items/1.5",
        "/a/b/c?x=1#y" => "/a/b/c",
        "http://example.com/users/7?x" => "/users/{id}",
        "https://example.com" => "/",
        "https://example.com?x=1" => "/",
        "http://example.com:8080/a/b" => "/a/b",
        "/redirect?to=http://x/1" => "/redirect",
        "/app;jsessionid=ABC123DEF456GHI789/home" => "/app/home",
        "/users/5;v=1" => "/users/{id}",
        "*" => "*",
        "example.com:443" => "example.com:443",
        "/über/12" => "/über/{id}",
    }

    #[test]
    fn path_and_query() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("/", "/", None),
            ("/a/b?x=1&y=2", "/a/b", Some("x=1&y=2")),
            ("/a?x=1#frag", "/a", Some("x=1")),
            ("/a#frag?notquery", "/a", None),
            ("/a?", "/a", None),
            ("http://h:80/p/q?z", "/p/q", Some("z")),
            ("http://h", "/", None),
            ("?only", "/", Some("only")),
            ("*", "*", None),
        ];
        for &(t, p, q) in cases {
            assert_eq!(path_of(t), p, "path_of({t:?})");
            assert_eq!(query_of(t), q, "query_of({t:?})");
        }
    }

    #[test]
    fn no_panic_on_odd_input() {
        for t in [
            "://", "a://", "1://x", "/%", "/\u{0}", "??", "##", "/;", ";", "http://", "http:///",
        ] {
            let _ = route_of(t);
            let _ = path_of(t);
            let _ = query_of(t);
        }
        assert_eq!(route_of("http:///x/9"), "/x/{id}");
    }
}
