//! HTTP/1.1 request heads and body framing: `parse_head`, `body_length`, the request's
//! accessors, and the responses built from a fuzzed request (CORS, preflight, errors).
//!
//! Input: raw bytes as a client sends them (`corpus/http_head/seed-*` are real requests).
//!
//! Properties besides "no panic":
//! - a complete head's length is within the buffer and within `max_head`;
//! - the head alone (`buf[..n]`) parses to the same request, and every proper prefix of it
//!   is `Partial` (a head read in pieces is never refused half-way);
//! - `Partial` only while the buffer is within `max_head`;
//! - `body_length` never exceeds `max_body`, and agrees with the `Content-Length` items;
//!   the body it frames reads as JSON (an empty one as `{}`) without panicking;
//! - `percent_decode` decodes exactly `%XX` (two hex digits) and `+`;
//! - every response built from the request is a well-formed HTTP response whose headers are
//!   exactly the ones put in (no header injection through echoed request values).
#![no_main]

use im_gateway::http::request::{body_length, parse_head, Parsed, Request};
use im_gateway::http::{cors, percent_decode, upgrade, Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // the gateway's default, one that cuts the input in two, and a tiny one
    for max_head in [16 * 1024, data.len() / 2 + 1, 64] {
        check(data, max_head);
    }
});

fn check(buf: &[u8], max_head: usize) {
    match parse_head(buf, max_head) {
        Parsed::Complete(req, n) => {
            assert!(
                n <= buf.len(),
                "head length {n} beyond the buffer ({})",
                buf.len()
            );
            assert!(n <= max_head, "head length {n} beyond max_head {max_head}");
            assert!(n > 0, "an empty head");
            match parse_head(&buf[..n], max_head) {
                Parsed::Complete(again, m) => {
                    assert_eq!(m, n, "the head alone parses to another length");
                    assert_same(&req, &again);
                }
                other => panic!("the head alone ({n} bytes) parses as {}", kind(&other)),
            }
            let pick = buf.first().map_or(0, |&b| b as usize) % n;
            for k in [n - 1, n / 2, pick] {
                match parse_head(&buf[..k], max_head) {
                    Parsed::Partial => {}
                    other => panic!(
                        "a {k}-byte prefix of a complete {n}-byte head parses as {}",
                        kind(&other)
                    ),
                }
            }
            check_request(&req);
            // the body that follows, as a handler reads it
            if let Ok(len) = body_length(&req, 1024 * 1024) {
                if let Some(body) = buf.get(n..n + len) {
                    let mut req = req;
                    req.body = body.to_vec();
                    let json = req.json::<serde_json::Value>();
                    if body.iter().all(u8::is_ascii_whitespace) {
                        assert_eq!(json.ok(), Some(serde_json::json!({})));
                    }
                }
            }
        }
        Parsed::Partial => assert!(
            buf.len() <= max_head,
            "Partial for {} bytes, over max_head {max_head}",
            buf.len()
        ),
        Parsed::Reject(resp) => {
            assert!(
                matches!(resp.status, 400 | 431),
                "a head rejected with {}",
                resp.status
            );
            check_response(&resp, &[], false);
        }
    }
}

fn kind(p: &Parsed) -> String {
    match p {
        Parsed::Complete(_, n) => format!("Complete({n})"),
        Parsed::Partial => "Partial".into(),
        Parsed::Reject(r) => format!("Reject({})", r.status),
    }
}

fn assert_same(a: &Request, b: &Request) {
    assert_eq!(a.method, b.method);
    assert_eq!(a.http10, b.http10);
    assert_eq!(a.path, b.path);
    assert_eq!(a.query, b.query);
    assert_eq!(a.headers, b.headers);
    assert_eq!(a.body, b.body);
}

fn check_request(req: &Request) {
    let keep_alive = req.keep_alive();
    let _ = upgrade::is_upgrade(req);

    // percent-decoding, against a reference
    assert_eq!(percent_decode(&req.path), reference_decode(&req.path));
    assert_eq!(percent_decode(&req.query), reference_decode(&req.query));
    for (_, v) in &req.headers {
        assert_eq!(percent_decode(v), reference_decode(v));
    }
    // every parameter named in the query is found
    for kv in req.query.split('&') {
        let name = kv.split_once('=').map_or(kv, |(k, _)| k);
        assert!(
            req.query_param(&percent_decode(name)).is_some(),
            "query parameter {name:?} of {:?} not found",
            req.query
        );
    }
    if let Some(token) = req.bearer() {
        assert_eq!(token, token.trim());
        assert!(req.header("authorization").is_some());
    }

    // body framing
    let unbounded = body_length(req, usize::MAX);
    for max_body in [0, 1, 100, 16 * 1024, 1024 * 1024, usize::MAX] {
        match body_length(req, max_body) {
            Ok(len) => {
                assert!(len <= max_body, "body length {len} over max_body {max_body}");
                assert!(req.header("transfer-encoding").is_none());
                assert_eq!(unbounded.as_ref().ok(), Some(&len));
                for (k, v) in &req.headers {
                    if k.eq_ignore_ascii_case("content-length") {
                        for item in v.split(',') {
                            assert_eq!(item.trim().parse::<usize>().ok(), Some(len));
                        }
                    }
                }
            }
            Err(resp) => {
                assert!(matches!(resp.status, 400 | 411 | 413), "{}", resp.status);
                if let Ok(len) = unbounded.as_ref() {
                    // only the limit can refuse what an unbounded read accepts
                    assert!(*len > max_body && resp.status == 413);
                }
                check_response(&resp, &[], false);
            }
        }
    }

    // responses that echo parts of the request
    let origin = req.header("origin").unwrap_or("http://a.example").to_string();
    for allowed in [vec!["*".to_string()], vec![origin], Vec::new()] {
        let extra = cors::headers(&allowed, req);
        let _ = cors::upgrade_allowed(&allowed, req);
        let ok = Response::ok(200, "ok", serde_json::Value::Null);
        check_response(&ok, &extra, keep_alive);
        check_response(&cors::preflight(req, !extra.is_empty()), &extra, keep_alive);
    }
}

/// `%XX` with two hex digits is a byte, `+` a space, anything else itself.
fn reference_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && b[i + 1].is_ascii_hexdigit()
            && b[i + 2].is_ascii_hexdigit()
        {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The encoded response parses as HTTP with the body length and exactly the headers given.
fn check_response(resp: &Response, extra: &[(&'static str, String)], keep_alive: bool) {
    let wire = resp.encode(extra, keep_alive);
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Response::new(&mut headers);
    let n = match parsed.parse(&wire) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!(
            "response does not parse ({other:?}): {:?}",
            String::from_utf8_lossy(&wire)
        ),
    };
    assert_eq!(parsed.code, Some(resp.status));
    assert_eq!(wire.len() - n, resp.body.len(), "body length");
    let expected: Vec<(&str, &str)> = extra
        .iter()
        .chain(resp.headers.iter())
        .map(|(k, v)| (*k, v.as_str()))
        .collect();
    // content-type, content-length, connection, x-content-type-options, then ours
    assert_eq!(
        parsed.headers.len(),
        4 + expected.len(),
        "header count: {:?}",
        String::from_utf8_lossy(&wire[..n])
    );
    for (h, (k, v)) in parsed.headers[4..].iter().zip(&expected) {
        assert_eq!(h.name, *k);
        assert_eq!(
            String::from_utf8_lossy(h.value).trim_matches([' ', '\t']),
            v.trim_matches([' ', '\t'])
        );
    }
    let length = parsed.headers[1].value;
    assert_eq!(length, resp.body.len().to_string().as_bytes());
}
