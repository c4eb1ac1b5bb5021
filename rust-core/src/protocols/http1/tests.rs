//! Unit tables of the HTTP/1 parser.

#[test]
fn any_method_with_a_whole_request_line() {
    assert_eq!(
        detect(b"PURGE /x HTTP/1.1\r\nHost: a\r\n\r\n"),
        Some(Role::Requests)
    );
    assert_eq!(detect(b"MKCOL /d HTTP/1.0\n"), Some(Role::Requests));
    assert_eq!(detect(b"PURGE /x HTTP/1.1"), None); // not all there yet
    assert_eq!(detect(b"HELLO world\r\n"), None);
    assert_eq!(detect(b"purge /x HTTP/1.1\r\n"), None);
    assert_eq!(detect(b"PURGE x HTTP/1.1\r\n"), None);
    assert_eq!(detect(b"PURGE /x HTTP/2.0\r\n"), None);
}

use super::*;
use Http1Event as E;

/// Short name of an event, for the case table.
fn kind(e: &Http1Event) -> &'static str {
    match e {
        E::Request { .. } => "Req",
        E::RequestEnd { .. } => "ReqEnd",
        E::Interim { .. } => "Interim",
        E::Response { .. } => "Resp",
        E::ResponseEnd { .. } => "RespEnd",
        E::Upgraded => "Upgraded",
    }
}

fn kinds(ev: &[Http1Event]) -> Vec<&'static str> {
    ev.iter().map(kind).collect()
}

/// Feed segments in order (each with its own ts); returns the events and
/// the first error. Checks that feeds after an error are no-ops.
fn run(role: Role, segs: &[(Segment<'_>, u64)]) -> (Vec<Http1Event>, Result<(), ParseError>) {
    let mut p = Http1Parser::new(role);
    let mut out = Vec::new();
    let mut res = Ok(());
    for (seg, ts) in segs {
        let r = p.feed(*seg, *ts, &mut out);
        if res.is_ok() {
            res = r;
        } else {
            assert_eq!(r, Ok(()), "feed after an error must be a no-op");
        }
    }
    if res.is_err() {
        assert!(p.is_broken());
        let n = out.len();
        assert_eq!(
            p.feed(Segment::Data(b"GET / HTTP/1.1\r\n\r\n"), 99, &mut out),
            Ok(())
        );
        assert_eq!(out.len(), n);
    }
    (out, res)
}

fn whole(role: Role, input: &[u8]) -> (Vec<Http1Event>, Result<(), ParseError>) {
    run(role, &[(Segment::Data(input), 0)])
}

fn bytewise(role: Role, input: &[u8]) -> (Vec<Http1Event>, Result<(), ParseError>) {
    let segs: Vec<_> = input.chunks(1).map(|c| (Segment::Data(c), 0)).collect();
    run(role, &segs)
}

fn req_head(ev: &[Http1Event], i: usize) -> &RequestHead {
    match &ev[i] {
        E::Request { head, .. } => head,
        e => panic!("event {i} is not a request: {e:?}"),
    }
}

fn resp_head(ev: &[Http1Event], i: usize) -> &ResponseHead {
    match &ev[i] {
        E::Response { head, .. } => head,
        e => panic!("event {i} is not a response: {e:?}"),
    }
}

/// Each case: role, input => expected event kinds, expected result. The
/// input is fed whole and one byte at a time; both must agree.
macro_rules! cases {
    ($($name:ident: $role:ident, $input:expr => [$($k:ident),*], $res:expr;)*) => {$(
        #[test]
        fn $name() {
            let input: &[u8] = &($input)[..];
            let want: Vec<&str> = vec![$(stringify!($k)),*];
            let want_res: Result<(), ParseError> = $res;
            let (ev, res) = whole(Role::$role, input);
            assert_eq!((kinds(&ev), res), (want.clone(), want_res), "whole: {ev:?}");
            let (ev1, res1) = bytewise(Role::$role, input);
            assert_eq!(ev1, ev, "byte-by-byte events differ");
            assert_eq!(res1, res, "byte-by-byte result differs");
        }
    )*};
}

use ParseError::*;

fn big_head(len: usize) -> Vec<u8> {
    // A request head of exactly `len` bytes.
    let mut v = b"GET / HTTP/1.1\r\nX-Pad: ".to_vec();
    let fill = len - v.len() - 4;
    v.extend(std::iter::repeat_n(b'a', fill));
    v.extend_from_slice(b"\r\n\r\n");
    assert_eq!(v.len(), len);
    v
}

const TLS_HELLO: &[u8] = &[
    0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, b'\n', b'\n',
];

cases! {
    // --- accepted requests ---
    get_simple: Requests, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n" => [Req, ReqEnd], Ok(());
    get_lf_only: Requests, b"GET / HTTP/1.1\nHost: a\n\n" => [Req, ReqEnd], Ok(());
    get_mixed_endings: Requests, b"GET / HTTP/1.1\r\nHost: a\n\r\n" => [Req, ReqEnd], Ok(());
    get_http10: Requests, b"GET / HTTP/1.0\r\n\r\n" => [Req, ReqEnd], Ok(());
    get_http19_as_11: Requests, b"GET / HTTP/1.9\r\n\r\n" => [Req, ReqEnd], Ok(());
    custom_method_token: Requests, b"PURGE /x HTTP/1.1\r\n\r\n" => [Req, ReqEnd], Ok(());
    leading_crlf_skipped: Requests, b"\r\n\r\nGET / HTTP/1.1\r\n\r\n" => [Req, ReqEnd], Ok(());
    extra_spaces_request_line: Requests, b"GET  /a  HTTP/1.1 \r\n\r\n" => [Req, ReqEnd], Ok(());
    ows_and_empty_value: Requests, b"GET / HTTP/1.1\r\nHost:   a  \r\nX-Empty:\r\n\r\n" => [Req, ReqEnd], Ok(());
    identical_content_lengths: Requests, b"POST / HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\nabc" => [Req, ReqEnd], Ok(());
    content_length_list: Requests, b"POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\nabc" => [Req, ReqEnd], Ok(());
    content_length_zero: Requests, b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n" => [Req, ReqEnd], Ok(());
    body_incomplete: Requests, b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc" => [Req], Ok(());
    head_incomplete: Requests, b"GET / HTTP/1.1\r\nHost: a\r\n" => [], Ok(());
    chunked_wins_over_cl: Requests, b"POST / HTTP/1.1\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" => [Req, ReqEnd], Ok(());
    chunk_16_digits: Requests, b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nabc" => [Req], Ok(());
    chunk_bare_lf: Requests, b"POST / HTTP/1.1\nTransfer-Encoding: chunked\n\n3\nabc\n0\n\n" => [Req, ReqEnd], Ok(());
    obs_fold_ignored: Requests, b"GET / HTTP/1.1\r\nX-A: a\r\n  folded\r\n\r\n" => [Req, ReqEnd], Ok(());
    long_method_later_ok: Requests, b"GET / HTTP/1.1\r\n\r\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA / HTTP/1.1\r\n\r\n" => [Req, ReqEnd, Req, ReqEnd], Ok(());
    head_at_limit: Requests, big_head(MAX_HEAD) => [Req, ReqEnd], Ok(());
    // --- accepted responses ---
    resp_cl: Responses, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" => [Resp, RespEnd], Ok(());
    resp_no_reason: Responses, b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n" => [Resp, RespEnd], Ok(());
    resp_empty_reason: Responses, b"HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n" => [Resp, RespEnd], Ok(());
    resp_chunked: Responses, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n" => [Resp, RespEnd], Ok(());
    resp_204: Responses, b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" => [Resp, RespEnd, Resp, RespEnd], Ok(());
    resp_304: Responses, b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n" => [Resp, RespEnd], Ok(());
    resp_100_then_200: Responses, b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" => [Interim, Resp, RespEnd], Ok(());
    resp_103_then_200: Responses, b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" => [Interim, Resp, RespEnd], Ok(());
    resp_101: Responses, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello" => [Resp, RespEnd, Upgraded], Ok(());
    resp_close_delimited: Responses, b"HTTP/1.0 200 OK\r\n\r\nsome body" => [Resp], Ok(());
    resp_te_gzip_close_delimited: Responses, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx" => [Resp], Ok(());
    // --- another protocol ---
    garbage_binary: Requests, b"\x00\x01\x02garbage\r\n\r\n" => [], Err(NotHttp);
    tls_client_hello: Requests, TLS_HELLO => [], Err(NotHttp);
    tls_on_response_side: Responses, TLS_HELLO => [], Err(NotHttp);
    ssh_banner_req: Requests, b"SSH-2.0-OpenSSH_8.9\r\n" => [], Err(NotHttp);
    ssh_banner_resp: Responses, b"SSH-2.0-OpenSSH_8.9\r\n" => [], Err(NotHttp);
    word_then_text: Requests, b"hello world\r\n\r\n" => [], Err(NotHttp);
    h2_preface: Requests, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" => [], Err(NotHttp);
    long_first_token: Requests, b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA / HTTP/1.1\r\n\r\n" => [], Err(NotHttp);
    leading_space: Requests, b" GET / HTTP/1.1\r\n\r\n" => [], Err(NotHttp);
    redis_resp: Responses, b"+OK\r\n" => [], Err(NotHttp);
    // --- bad request lines ---
    get_without_target: Requests, b"GET\r\n\r\n" => [], Err(BadRequestLine);
    get_without_version: Requests, b"GET /\r\n\r\n" => [], Err(BadRequestLine);
    get_http2_version: Requests, b"GET / HTTP/2.0\r\n\r\n" => [], Err(BadRequestLine);
    get_bad_version: Requests, b"GET / HTTX/1.1\r\n\r\n" => [], Err(BadRequestLine);
    target_with_ctl: Requests, b"GET /a\x01b HTTP/1.1\r\n\r\n" => [], Err(BadRequestLine);
    later_tls_is_bad_line: Requests, [b"GET / HTTP/1.1\r\n\r\n".as_slice(), TLS_HELLO].concat() => [Req, ReqEnd], Err(BadRequestLine);
    later_garbage_word: Requests, b"GET / HTTP/1.1\r\n\r\nhello world\r\n\r\n" => [Req, ReqEnd], Err(BadRequestLine);
    // --- bad status lines ---
    status_letters: Responses, b"HTTP/1.1 abc OK\r\n\r\n" => [], Err(BadStatusLine);
    status_two_digits: Responses, b"HTTP/1.1 20 OK\r\n\r\n" => [], Err(BadStatusLine);
    status_four_digits: Responses, b"HTTP/1.1 2000 OK\r\n\r\n" => [], Err(BadStatusLine);
    status_below_100: Responses, b"HTTP/1.1 099 X\r\n\r\n" => [], Err(BadStatusLine);
    status_http2: Responses, b"HTTP/2.0 200 OK\r\n\r\n" => [], Err(BadStatusLine);
    status_no_space: Responses, b"HTTP/1.1200 OK\r\n\r\n" => [], Err(BadStatusLine);
    later_bad_status: Responses, b"HTTP/1.1 204 OK\r\n\r\nSSH-2.0\r\n\r\n" => [Resp, RespEnd], Err(BadStatusLine);
    // --- bad headers ---
    header_without_colon: Requests, b"GET / HTTP/1.1\r\nHost a\r\n\r\n" => [], Err(BadHeader);
    space_before_colon: Requests, b"GET / HTTP/1.1\r\nHost : a\r\n\r\n" => [], Err(BadHeader);
    empty_header_name: Requests, b"GET / HTTP/1.1\r\n: a\r\n\r\n" => [], Err(BadHeader);
    ctl_in_value: Requests, b"GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n" => [], Err(BadHeader);
    bare_cr_in_value: Requests, b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n" => [], Err(BadHeader);
    cl_abc: Requests, b"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n" => [], Err(BadHeader);
    cl_negative: Requests, b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n" => [], Err(BadHeader);
    cl_plus: Requests, b"POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n" => [], Err(BadHeader);
    cl_empty: Requests, b"POST / HTTP/1.1\r\nContent-Length:\r\n\r\n" => [], Err(BadHeader);
    cl_overflow: Requests, b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n" => [], Err(BadHeader);
    cl_conflict: Requests, b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n" => [], Err(BadHeader);
    cl_list_conflict: Requests, b"POST / HTTP/1.1\r\nContent-Length: 3, 4\r\n\r\n" => [], Err(BadHeader);
    cl_conflict_response: Responses, b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n" => [], Err(BadHeader);
    te_not_chunked_request: Requests, b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n" => [], Err(BadHeader);
    obs_fold_first: Requests, b"GET / HTTP/1.1\r\n folded\r\n\r\n" => [], Err(BadHeader);
    obs_fold_after_cl: Requests, b"GET / HTTP/1.1\r\nContent-Length: 1\r\n 2\r\n\r\n" => [], Err(BadHeader);
    // --- bad chunks ---
    chunk_size_zz: Requests, b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n" => [Req], Err(BadChunk);
    chunk_size_empty: Requests, b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\r\n" => [Req], Err(BadChunk);
    chunk_17_digits: Requests, b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n" => [Req], Err(BadChunk);
    chunk_size_junk_after: Requests, b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3x\r\n" => [Req], Err(BadChunk);
    chunk_data_no_crlf: Requests, b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX" => [Req], Err(BadChunk);
    chunk_cr_without_lf: Requests, b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\rX" => [Req], Err(BadChunk);
    // --- limits ---
    head_too_long: Requests, big_head(MAX_HEAD + 1) => [], Err(HeadTooLong);
    head_too_long_unterminated: Requests, [b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'a'; MAX_HEAD]].concat() => [], Err(HeadTooLong);
    response_head_too_long: Responses, [b"HTTP/1.1 200 OK\r\nX: ".as_slice(), &[b'a'; MAX_HEAD]].concat() => [], Err(HeadTooLong);
}

// ----------------------------------------------------------- scenarios

#[test]
fn keep_alive_three_requests() {
    let r1 = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n";
    let r2 = b"POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello";
    let r3 = b"DELETE /c/9 HTTP/1.1\r\nHost: h\r\n\r\n";
    let (ev, res) = run(
        Role::Requests,
        &[
            (Segment::Data(r1), 10),
            (Segment::Data(r2), 20),
            (Segment::Data(r3), 30),
        ],
    );
    assert_eq!(res, Ok(()));
    assert_eq!(
        kinds(&ev),
        ["Req", "ReqEnd", "Req", "ReqEnd", "Req", "ReqEnd"]
    );
    assert_eq!(req_head(&ev, 0).target, "/a");
    assert_eq!(req_head(&ev, 2).method, "POST");
    assert_eq!(req_head(&ev, 2).content_length, Some(5));
    assert_eq!(req_head(&ev, 4).method, "DELETE");
    assert_eq!(
        ev[3],
        E::RequestEnd {
            end_ts: 20,
            body_bytes: 5
        }
    );
    assert_eq!(
        ev[5],
        E::RequestEnd {
            end_ts: 30,
            body_bytes: 0
        }
    );
    assert!(matches!(ev[4], E::Request { start_ts: 30, .. }));
}

#[test]
fn pipelined_three_requests_in_one_segment() {
    let input = b"GET /1 HTTP/1.1\r\n\r\nPOST /2 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /3 HTTP/1.1\r\n\r\n";
    let mut p = Http1Parser::new(Role::Requests);
    let mut ev = Vec::new();
    assert_eq!(p.feed(Segment::Data(input), 7, &mut ev), Ok(()));
    assert_eq!(
        kinds(&ev),
        ["Req", "ReqEnd", "Req", "ReqEnd", "Req", "ReqEnd"]
    );
    let targets: Vec<_> = [0, 2, 4]
        .iter()
        .map(|&i| req_head(&ev, i).target.clone())
        .collect();
    assert_eq!(targets, ["/1", "/2", "/3"]);
    assert_eq!(
        ev[3],
        E::RequestEnd {
            end_ts: 7,
            body_bytes: 3
        }
    );
    assert!(p.is_idle());
}

const SPLIT_REQ: &[u8] = b"POST /upload?x=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t/1\r\n\
Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n\
4;name=val\r\nWiki\r\n5 ; a=\"b\"\r\npedia\r\n0\r\nX-Trailer: 1\r\n\r\n\
GET /next HTTP/1.1\r\n\r\n";
const SPLIT_RESP: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n\
HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7;ext\r\nchunked\r\n0\r\nTrailer: x\r\n\r\n\
HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody";

#[test]
fn split_at_every_position_gives_same_events() {
    for (role, input) in [(Role::Requests, SPLIT_REQ), (Role::Responses, SPLIT_RESP)] {
        let (want, res) = whole(role, input);
        assert_eq!(res, Ok(()));
        for i in 0..=input.len() {
            let (a, b) = input.split_at(i);
            let (ev, res) = run(role, &[(Segment::Data(a), 0), (Segment::Data(b), 0)]);
            assert_eq!(res, Ok(()), "split at {i}");
            assert_eq!(ev, want, "split at {i}");
        }
        // Every pair of split points (three segments).
        for i in 0..=input.len() {
            for j in i..=input.len() {
                let segs = [
                    (Segment::Data(&input[..i]), 0),
                    (Segment::Data(&input[i..j]), 0),
                    (Segment::Data(&input[j..]), 0),
                ];
                let (ev, res) = run(role, &segs);
                assert_eq!(res, Ok(()), "split at {i},{j}");
                assert_eq!(ev, want, "split at {i},{j}");
            }
        }
    }
}

#[test]
fn split_pair_events_are_right() {
    let (ev, _) = whole(Role::Requests, SPLIT_REQ);
    assert_eq!(kinds(&ev), ["Req", "ReqEnd", "Req", "ReqEnd"]);
    let h = req_head(&ev, 0);
    assert_eq!(h.method, "POST");
    assert_eq!(h.target, "/upload?x=1");
    assert!(h.chunked && h.expect_continue);
    assert_eq!(h.host.as_deref(), Some("example.com"));
    assert_eq!(h.user_agent.as_deref(), Some("t/1"));
    assert_eq!(
        ev[1],
        E::RequestEnd {
            end_ts: 0,
            body_bytes: 9
        }
    );
    let (ev, _) = whole(Role::Responses, SPLIT_RESP);
    assert_eq!(
        kinds(&ev),
        ["Interim", "Resp", "RespEnd", "Resp", "RespEnd"]
    );
    assert_eq!(ev[0], E::Interim { status: 100, ts: 0 });
    assert!(resp_head(&ev, 1).chunked);
    assert_eq!(
        ev[2],
        E::ResponseEnd {
            end_ts: 0,
            body_bytes: 7
        }
    );
    assert_eq!(
        ev[4],
        E::ResponseEnd {
            end_ts: 0,
            body_bytes: 4
        }
    );
}

#[test]
fn one_byte_segments_with_timestamps() {
    let input = b"\r\nPOST /p HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
    // Byte k arrives at ts 100 + k.
    let segs: Vec<_> = input
        .iter()
        .enumerate()
        .map(|(k, b)| (Segment::Data(std::slice::from_ref(b)), 100 + k as u64))
        .collect();
    let (ev, res) = run(Role::Requests, &segs);
    assert_eq!(res, Ok(()));
    assert_eq!(kinds(&ev), ["Req", "ReqEnd"]);
    // The leading CRLF is not part of the message.
    assert!(matches!(ev[0], E::Request { start_ts: 102, .. }));
    let last = 100 + input.len() as u64 - 1;
    assert_eq!(
        ev[1],
        E::RequestEnd {
            end_ts: last,
            body_bytes: 3
        }
    );
}

#[test]
fn start_ts_is_segment_of_first_byte() {
    let (ev, _) = run(
        Role::Requests,
        &[
            (Segment::Data(b"GE"), 10),
            (Segment::Data(b"T / HTTP/1.1\r\nHost: x\r\n"), 20),
            (Segment::Data(b"\r\n"), 30),
        ],
    );
    assert!(matches!(ev[0], E::Request { start_ts: 10, .. }));
    assert_eq!(
        ev[1],
        E::RequestEnd {
            end_ts: 30,
            body_bytes: 0
        }
    );
    let (ev, _) = run(
        Role::Responses,
        &[
            (
                Segment::Data(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab"),
                5,
            ),
            (Segment::Data(b"cd"), 6),
        ],
    );
    assert!(matches!(ev[0], E::Response { start_ts: 5, .. }));
    assert_eq!(
        ev[1],
        E::ResponseEnd {
            end_ts: 6,
            body_bytes: 4
        }
    );
}

#[test]
fn chunked_response_with_extensions_and_trailers() {
    let input = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
1a;foo=bar;baz\r\nabcdefghijklmnopqrstuvwxyz\r\n\
10 \t;q=\"x;y\"\r\n0123456789abcdef\r\n\
0;last\r\nExpires: never\r\nX-Checksum: abc\r\n\r\n";
    let (ev, res) = whole(Role::Responses, input);
    assert_eq!(res, Ok(()));
    assert_eq!(kinds(&ev), ["Resp", "RespEnd"]);
    assert!(resp_head(&ev, 0).chunked);
    assert_eq!(
        ev[1],
        E::ResponseEnd {
            end_ts: 0,
            body_bytes: 26 + 16
        }
    );
    assert_eq!(bytewise(Role::Responses, input).0, ev);
}

#[test]
fn chunked_split_across_segments() {
    let segs = [
        (
            Segment::Data(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            1,
        ),
        (Segment::Data(b"5\r\nhel"), 2),
        (Segment::Data(b"lo\r"), 3),
        (Segment::Data(b"\nA"), 4),
        (Segment::Data(b"\r\n0123456789"), 5),
        (Segment::Data(b"\r\n0\r"), 6),
        (Segment::Data(b"\n"), 7),
        (Segment::Data(b"\r"), 8),
        (Segment::Data(b"\n"), 9),
    ];
    let (ev, res) = run(Role::Responses, &segs);
    assert_eq!(res, Ok(()));
    assert_eq!(
        ev[1],
        E::ResponseEnd {
            end_ts: 9,
            body_bytes: 15
        }
    );
}

#[test]
fn content_length_body_with_gap() {
    let head = b"POST /big HTTP/1.1\r\nContent-Length: 10000\r\n\r\n";
    let segs = [
        (Segment::Data(head), 1),
        (Segment::Data(&[b'x'; 100]), 2),
        (Segment::Gap(9800), 3),
        (Segment::Data(&[b'y'; 100]), 4),
        (Segment::Data(b"GET / HTTP/1.1\r\n\r\n"), 5),
    ];
    let (ev, res) = run(Role::Requests, &segs);
    assert_eq!(res, Ok(()));
    assert_eq!(kinds(&ev), ["Req", "ReqEnd", "Req", "ReqEnd"]);
    assert_eq!(
        ev[1],
        E::RequestEnd {
            end_ts: 4,
            body_bytes: 10000
        }
    );
    // Gap ending exactly at the body end.
    let segs = [(Segment::Data(head), 1), (Segment::Gap(10000), 2)];
    let (ev, res) = run(Role::Requests, &segs);
    assert_eq!(res, Ok(()));
    assert_eq!(
        ev[1],
        E::RequestEnd {
            end_ts: 2,
            body_bytes: 10000
        }
    );
}

#[test]
fn gap_past_body_end_is_gap_in_head() {
    let head = b"POST /big HTTP/1.1\r\nContent-Length: 10\r\n\r\n";
    let (ev, res) = run(
        Role::Requests,
        &[(Segment::Data(head), 1), (Segment::Gap(11), 2)],
    );
    assert_eq!(kinds(&ev), ["Req", "ReqEnd"]);
    assert_eq!(res, Err(GapInHead));
}

#[test]
fn chunked_body_with_gap_inside_chunk_data() {
    let segs = [
        (
            Segment::Data(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2710\r\n"),
            1,
        ),
        (Segment::Data(&[b'z'; 50]), 2),
        (Segment::Gap(9950), 3),
        (Segment::Data(b"\r\n3\r\nabc\r\n0\r\n\r\n"), 4),
    ];
    let (ev, res) = run(Role::Responses, &segs);
    assert_eq!(res, Ok(()));
    assert_eq!(
        ev[1],
        E::ResponseEnd {
            end_ts: 4,
            body_bytes: 10003
        }
    );
}

#[test]
fn gaps_in_framing_and_heads() {
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    // In a chunk-size line.
    let (_, res) = run(
        Role::Responses,
        &[
            (Segment::Data(chunked), 1),
            (Segment::Data(b"1"), 2),
            (Segment::Gap(3), 3),
        ],
    );
    assert_eq!(res, Err(GapInChunkFraming));
    // Past the end of chunk data and its CRLF, into the next size line.
    let (_, res) = run(
        Role::Responses,
        &[
            (Segment::Data(chunked), 1),
            (Segment::Data(b"4\r\n"), 2),
            (Segment::Gap(7), 3),
        ],
    );
    assert_eq!(res, Err(GapInChunkFraming));
    // Chunk data plus its CRLF uncaptured: framing survives.
    for (gap, rest) in [(6u64, &b"0\r\n\r\n"[..]), (5, &b"\n0\r\n\r\n"[..])] {
        let (ev, res) = run(
            Role::Responses,
            &[
                (Segment::Data(chunked), 1),
                (Segment::Data(b"4\r\n"), 2),
                (Segment::Gap(gap), 3),
                (Segment::Data(rest), 4),
            ],
        );
        assert_eq!(res, Ok(()), "gap {gap}");
        assert!(
            matches!(
                ev.last(),
                Some(Http1Event::ResponseEnd { body_bytes: 4, .. })
            ),
            "{ev:?}"
        );
    }
    // In trailers.
    let (_, res) = run(
        Role::Responses,
        &[
            (Segment::Data(chunked), 1),
            (Segment::Data(b"0\r\nX: "), 2),
            (Segment::Gap(5), 3),
        ],
    );
    assert_eq!(res, Err(GapInChunkFraming));
    // In a header block, and between messages.
    let (_, res) = run(
        Role::Requests,
        &[
            (Segment::Data(b"GET / HTTP/1.1\r\nHo"), 1),
            (Segment::Gap(5), 2),
        ],
    );
    assert_eq!(res, Err(GapInHead));
    let (_, res) = run(Role::Requests, &[(Segment::Gap(5), 2)]);
    assert_eq!(res, Err(GapInHead));
    // A zero-length gap is nothing.
    let (ev, res) = run(
        Role::Requests,
        &[
            (Segment::Gap(0), 1),
            (Segment::Data(b"GET / HTTP/1.1\r\n\r\n"), 2),
        ],
    );
    assert_eq!((kinds(&ev), res), (vec!["Req", "ReqEnd"], Ok(())));
    // Close-delimited bodies absorb gaps.
    let mut p = Http1Parser::new(Role::Responses);
    let mut ev = Vec::new();
    p.feed(
        Segment::Data(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nab"),
        1,
        &mut ev,
    )
    .unwrap();
    p.feed(Segment::Gap(u64::MAX), 2, &mut ev).unwrap();
    p.feed(Segment::Gap(u64::MAX), 3, &mut ev).unwrap();
    assert!(!p.close(&mut ev));
    assert_eq!(
        ev[1],
        E::ResponseEnd {
            end_ts: 3,
            body_bytes: u64::MAX
        }
    );
}

#[test]
fn head_response_with_content_length_has_no_body() {
    let mut p = Http1Parser::new(Role::Responses);
    let mut ev = Vec::new();
    p.expect_response(true);
    p.expect_response(false);
    let input = b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    p.feed(Segment::Data(input), 1, &mut ev).unwrap();
    assert_eq!(kinds(&ev), ["Resp", "RespEnd", "Resp", "RespEnd"]);
    assert_eq!(resp_head(&ev, 0).content_length, Some(1234));
    assert_eq!(
        ev[1],
        E::ResponseEnd {
            end_ts: 1,
            body_bytes: 0
        }
    );
    assert_eq!(
        ev[3],
        E::ResponseEnd {
            end_ts: 1,
            body_bytes: 2
        }
    );
    assert!(p.is_idle());
    // Chunked HEAD response: no body either.
    let mut p = Http1Parser::new(Role::Responses);
    let mut ev = Vec::new();
    p.expect_response_to(ResponseTo::for_method("HEAD"));
    p.feed(
        Segment::Data(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
        1,
        &mut ev,
    )
    .unwrap();
    assert_eq!(kinds(&ev), ["Resp", "RespEnd"]);
}

#[test]
fn expect_100_continue_flow() {
    let mut req = Http1Parser::new(Role::Requests);
    let mut resp = Http1Parser::new(Role::Responses);
    let mut rq = Vec::new();
    let mut rs = Vec::new();
    req.feed(
        Segment::Data(b"PUT /f HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\n"),
        1,
        &mut rq,
    )
    .unwrap();
    assert_eq!(kinds(&rq), ["Req"]);
    let h = req_head(&rq, 0).clone();
    assert!(h.expect_continue);
    resp.expect_response_for(&h);
    resp.feed(Segment::Data(b"HTTP/1.1 100 Continue\r\n\r\n"), 2, &mut rs)
        .unwrap();
    assert_eq!(rs, [E::Interim { status: 100, ts: 2 }]);
    assert!(resp.is_idle());
    req.feed(Segment::Data(b"12345"), 3, &mut rq).unwrap();
    assert_eq!(
        rq[1],
        E::RequestEnd {
            end_ts: 3,
            body_bytes: 5
        }
    );
    resp.feed(
        Segment::Data(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"),
        4,
        &mut rs,
    )
    .unwrap();
    assert_eq!(kinds(&rs), ["Interim", "Resp", "RespEnd"]);
    assert_eq!(resp_head(&rs, 1).status, 201);
    assert!(matches!(rs[1], E::Response { start_ts: 4, .. }));
}

#[test]
fn interim_does_not_consume_head_expectation() {
    let mut p = Http1Parser::new(Role::Responses);
    let mut ev = Vec::new();
    p.expect_response(true);
    p.expect_response(false);
    let input = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n\
HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    p.feed(Segment::Data(input), 1, &mut ev).unwrap();
    assert_eq!(
        kinds(&ev),
        ["Interim", "Resp", "RespEnd", "Resp", "RespEnd"]
    );
    assert_eq!(
        ev[2],
        E::ResponseEnd {
            end_ts: 1,
            body_bytes: 0
        }
    );
    assert_eq!(
        ev[4],
        E::ResponseEnd {
            end_ts: 1,
            body_bytes: 2
        }
    );
}

#[test]
fn no_body_statuses() {
    for status in ["204 No Content", "304 Not Modified"] {
        let input = format!("HTTP/1.1 {status}\r\nContent-Length: 50\r\nTransfer-Encoding: chunked\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx");
        let (ev, res) = whole(Role::Responses, input.as_bytes());
        assert_eq!(res, Ok(()));
        assert_eq!(
            kinds(&ev),
            ["Resp", "RespEnd", "Resp", "RespEnd"],
            "{status}"
        );
        assert_eq!(
            ev[1],
            E::ResponseEnd {
                end_ts: 0,
                body_bytes: 0
            }
        );
    }
}

#[test]
fn close_delimited_response_ended_by_close() {
    for head in [
        &b"HTTP/1.0 200 OK\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\r\n",
    ] {
        let mut p = Http1Parser::new(Role::Responses);
        let mut ev = Vec::new();
        p.feed(Segment::Data(head), 1, &mut ev).unwrap();
        p.feed(Segment::Data(b"hello "), 2, &mut ev).unwrap();
        p.feed(Segment::Gap(100), 3, &mut ev).unwrap();
        p.feed(Segment::Data(b"world"), 4, &mut ev).unwrap();
        assert_eq!(kinds(&ev), ["Resp"]);
        assert!(!p.is_idle());
        assert!(!p.close(&mut ev));
        assert_eq!(
            ev[1],
            E::ResponseEnd {
                end_ts: 4,
                body_bytes: 111
            }
        );
        assert!(p.is_idle());
        // Closed: further input is ignored.
        p.feed(Segment::Data(b"HTTP/1.1 200 OK\r\n\r\n"), 5, &mut ev)
            .unwrap();
        assert_eq!(ev.len(), 2);
    }
    let (ev, _) = whole(Role::Responses, b"HTTP/1.0 200 OK\r\n\r\n");
    assert!(resp_head(&ev, 0).connection_close);
    let (ev, _) = whole(
        Role::Responses,
        b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(!resp_head(&ev, 0).connection_close);
    let (ev, _) = whole(
        Role::Responses,
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(resp_head(&ev, 0).connection_close);
}

#[test]
fn close_reports_incomplete_messages() {
    let check = |role: Role, input: &[u8], want: bool| {
        let mut p = Http1Parser::new(role);
        let mut ev = Vec::new();
        let _ = p.feed(Segment::Data(input), 1, &mut ev);
        let n = ev.len();
        assert_eq!(
            p.close(&mut ev),
            want,
            "{:?}",
            String::from_utf8_lossy(input)
        );
        assert_eq!(ev.len(), n, "close emits nothing here");
    };
    check(Role::Requests, b"GET / HTTP/1.1\r\nHost:", true);
    check(Role::Requests, b"G", true);
    check(
        Role::Requests,
        b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab",
        true,
    );
    check(
        Role::Requests,
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n",
        true,
    );
    check(Role::Requests, b"GET / HTTP/1.1\r\n\r\n", false);
    check(Role::Requests, b"GET / HTTP/1.1\r\n\r\n\r\n", false);
    check(Role::Requests, b"", false);
    check(Role::Requests, b"\x16\x03\x01", false); // broken: nothing pending
    check(
        Role::Responses,
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab",
        true,
    );
}

#[test]
fn upgrade_101_stops_parsing() {
    let mut resp = Http1Parser::new(Role::Responses);
    let mut ev = Vec::new();
    resp.feed(Segment::Data(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x02hi"), 5, &mut ev).unwrap();
    assert_eq!(kinds(&ev), ["Resp", "RespEnd", "Upgraded"]);
    assert_eq!(resp_head(&ev, 0).status, 101);
    assert_eq!(
        ev[1],
        E::ResponseEnd {
            end_ts: 5,
            body_bytes: 0
        }
    );
    resp.feed(Segment::Data(b"\x82\x7e\x00\x00garbage"), 6, &mut ev)
        .unwrap();
    resp.feed(Segment::Gap(1000), 7, &mut ev).unwrap();
    assert_eq!(ev.len(), 3);
    assert!(resp.is_upgraded() && !resp.is_broken() && resp.is_idle());
    assert!(!resp.close(&mut ev));

    // Request side: the client's frames after an Upgrade request are not an error.
    let mut req = Http1Parser::new(Role::Requests);
    let mut ev = Vec::new();
    req.feed(
        Segment::Data(
            b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        ),
        1,
        &mut ev,
    )
    .unwrap();
    assert_eq!(
        req.feed(Segment::Data(b"\x81\x85abcd12345"), 2, &mut ev),
        Ok(())
    );
    assert_eq!(kinds(&ev), ["Req", "ReqEnd", "Upgraded"]);
    assert!(req.is_upgraded());
    // h2c: the HTTP/2 preface after the upgrade request.
    let (ev, res) = whole(Role::Requests, b"GET / HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    assert_eq!(
        (kinds(&ev), res),
        (vec!["Req", "ReqEnd", "Upgraded"], Ok(()))
    );
    // A refused upgrade: the next request parses normally.
    let (ev, res) = whole(
        Role::Requests,
        b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\nGET /2 HTTP/1.1\r\n\r\n\x16\x03",
    );
    assert_eq!(
        (kinds(&ev), res),
        (vec!["Req", "ReqEnd", "Req", "ReqEnd"], Err(BadRequestLine))
    );
    // The caller can stop the other direction explicitly.
    let mut p = Http1Parser::new(Role::Requests);
    p.mark_upgraded();
    let mut ev = Vec::new();
    assert_eq!(p.feed(Segment::Data(b"\x00\x00"), 1, &mut ev), Ok(()));
    assert!(ev.is_empty());
}

#[test]
fn connect_tunnel() {
    let (ev, res) = whole(Role::Requests, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\x16\x03\x01\x00\x05hello");
    assert_eq!(
        (kinds(&ev), res),
        (vec!["Req", "ReqEnd", "Upgraded"], Ok(()))
    );
    assert_eq!(req_head(&ev, 0).target, "example.com:443");
    let mut p = Http1Parser::new(Role::Responses);
    let mut ev = Vec::new();
    p.expect_response_to(ResponseTo::Connect);
    p.feed(
        Segment::Data(b"HTTP/1.1 200 Connection Established\r\n\r\n\x16\x03\x03"),
        1,
        &mut ev,
    )
    .unwrap();
    assert_eq!(kinds(&ev), ["Resp", "RespEnd", "Upgraded"]);
    // A refused CONNECT is an ordinary response.
    let mut p = Http1Parser::new(Role::Responses);
    let mut ev = Vec::new();
    p.expect_response_to(ResponseTo::Connect);
    p.feed(
        Segment::Data(b"HTTP/1.1 407 Proxy Auth\r\nContent-Length: 2\r\n\r\nno"),
        1,
        &mut ev,
    )
    .unwrap();
    assert_eq!(kinds(&ev), ["Resp", "RespEnd"]);
    assert!(!p.is_upgraded());
}

#[test]
fn request_fields() {
    let input = b"GET /a?b=c HTTP/1.0\r\nHOST: example.com:8080\r\nuser-agent:  curl/8.0 \r\n\
TraceParent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\
tracestate: a=1\r\ntracestate: b=2\r\nHost: other\r\nConnection: keep-alive\r\n\r\n";
    let (ev, _) = whole(Role::Requests, input);
    let h = req_head(&ev, 0);
    assert_eq!(
        *h,
        RequestHead {
            method: "GET".into(),
            target: "/a?b=c".into(),
            version: 10,
            host: Some("example.com:8080".into()),
            user_agent: Some("curl/8.0".into()),
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
            tracestate: Some("a=1,b=2".into()),
            content_length: None,
            chunked: false,
            expect_continue: false,
            connection_close: false,
        }
    );
    let (ev, _) = whole(Role::Requests, b"GET / HTTP/1.0\r\n\r\n");
    assert!(req_head(&ev, 0).connection_close);
    assert_eq!(req_head(&ev, 0).version, 10);
    let (ev, _) = whole(
        Role::Requests,
        b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n",
    );
    assert!(req_head(&ev, 0).connection_close);
    assert_eq!(req_head(&ev, 0).version, 11);
}

#[test]
fn secrets_never_appear_in_events() {
    let secrets = [
        "Bearer-SECRET-TOKEN",
        "sid=COOKIE-SECRET",
        "PROXY-SECRET",
        "SETCOOKIE-SECRET",
        "APIKEY-SECRET",
    ];
    let req = b"POST /login HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer-SECRET-TOKEN\r\n\
Cookie: sid=COOKIE-SECRET\r\nProxy-Authorization: PROXY-SECRET\r\nX-Api-Key: APIKEY-SECRET\r\n\
Content-Length: 0\r\n\r\n";
    let resp = b"HTTP/1.1 200 OK\r\nSet-Cookie: SETCOOKIE-SECRET\r\nContent-Length: 0\r\n\r\n";
    let mut dumps = Vec::new();
    for (role, input) in [(Role::Requests, &req[..]), (Role::Responses, &resp[..])] {
        let (ev, res) = whole(role, input);
        assert_eq!(res, Ok(()));
        assert_eq!(ev.len(), 2);
        dumps.push(format!("{ev:?} {ev:#?}"));
        // A parser holding a partial head must not show it either.
        let mut p = Http1Parser::new(role);
        let mut ev = Vec::new();
        p.feed(Segment::Data(&input[..input.len() - 3]), 1, &mut ev)
            .unwrap();
        dumps.push(format!("{p:?} {p:#?} {ev:?}"));
    }
    for d in &dumps {
        for s in secrets {
            assert!(!d.contains(s), "secret {s} leaked in {d}");
        }
    }
}

#[test]
fn idle_tracking() {
    let mut p = Http1Parser::new(Role::Requests);
    let mut ev = Vec::new();
    assert!(p.is_idle());
    p.feed(Segment::Data(b"\r\n"), 1, &mut ev).unwrap();
    assert!(p.is_idle());
    p.feed(Segment::Data(b"GET / HT"), 1, &mut ev).unwrap();
    assert!(!p.is_idle());
    p.feed(
        Segment::Data(b"TP/1.1\r\nContent-Length: 1\r\n\r\n"),
        1,
        &mut ev,
    )
    .unwrap();
    assert!(!p.is_idle());
    p.feed(Segment::Data(b"x"), 1, &mut ev).unwrap();
    assert!(p.is_idle());
    assert!(!p.is_broken());
}

#[test]
fn detect_roles() {
    assert_eq!(detect(b"GET / HTTP/1.1\r\n"), Some(Role::Requests));
    assert_eq!(detect(b"POST /x HTTP/1.1"), Some(Role::Requests));
    for m in KNOWN_METHODS {
        assert_eq!(
            detect(format!("{m} /").as_bytes()),
            Some(Role::Requests),
            "{m}"
        );
    }
    assert_eq!(detect(b"HTTP/1.1 200 OK\r\n"), Some(Role::Responses));
    assert_eq!(detect(b"HTTP/1.0 404"), Some(Role::Responses));
    assert_eq!(detect(b"HTTP/2.0 200"), None);
    assert_eq!(detect(b"PURGE / HTTP/1.1"), None);
    assert_eq!(detect(b"get / HTTP/1.1"), None);
    assert_eq!(detect(b"GET"), None);
    assert_eq!(detect(b"GET/"), None);
    assert_eq!(detect(b"PRI * HTTP/2.0\r\n"), None);
    assert_eq!(detect(&[0x16, 0x03, 0x01, 0x02]), None);
    assert_eq!(detect(b""), None);
}

#[test]
fn expectation_fifo_is_bounded() {
    let mut p = Http1Parser::new(Role::Responses);
    for _ in 0..10_000 {
        p.expect_response(true);
    }
    assert!(format!("{p:?}").contains("pending: 256"));
}

/// Cheap deterministic fuzzing in the unit tests: random mutations of
/// valid messages, fed in random splits with random gaps, must never panic
/// and whole-vs-split feeding of Data must agree.
#[test]
fn random_inputs_never_panic() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let corpus: [&[u8]; 3] = [
        SPLIT_REQ,
        SPLIT_RESP,
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
    ];
    for _ in 0..3000 {
        let mut input = corpus[(rnd() % 3) as usize].to_vec();
        for _ in 0..(rnd() % 4) {
            let i = (rnd() as usize) % input.len();
            match rnd() % 3 {
                0 => input[i] = rnd() as u8,
                1 => {
                    input.remove(i);
                }
                _ => input.insert(i, b"\r\n:; 0F"[(rnd() % 7) as usize]),
            }
        }
        for role in [Role::Requests, Role::Responses] {
            let (want, want_res) = whole(role, &input);
            let cut = (rnd() as usize) % (input.len() + 1);
            let (a, b) = input.split_at(cut);
            let (ev, res) = run(role, &[(Segment::Data(a), 0), (Segment::Data(b), 0)]);
            assert_eq!(
                (&ev, res),
                (&want, want_res),
                "input {:?} cut {cut}",
                String::from_utf8_lossy(&input)
            );
            let gap = rnd() % 64;
            let (_ev, _res) = run(
                role,
                &[
                    (Segment::Data(a), 0),
                    (Segment::Gap(gap), 1),
                    (Segment::Data(b), 2),
                ],
            );
        }
    }
}
