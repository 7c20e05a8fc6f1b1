//! Hardening: inputs and behaviours an attacker or an unlucky operator produces, each
//! answered precisely, none able to hold or hurt the server (issue 8's table, one test per
//! row, named by what it pins).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

/// Sends raw bytes and reads until the server closes (or `limit` passes).
fn exchange(sys: &System, raw: &[u8], limit: Duration) -> (String, bool) {
    let mut s = NoEintr(TcpStream::connect(sys.http).unwrap());
    s.0.set_read_timeout(Some(limit)).unwrap();
    s.write_all(raw).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let closed = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

#[test]
fn conflicting_content_lengths_are_refused() {
    let sys = System::start();
    let body = r#"{"guestName":"x"}"#;
    for lengths in [
        format!("content-length: {}\r\ncontent-length: 5\r\n", body.len()),
        format!("content-length: {}, 5\r\n", body.len()),
        "content-length: +17\r\n".to_string(),
        format!(
            "content-length: {}\r\ntransfer-encoding: chunked\r\n",
            body.len()
        ),
    ] {
        let raw = format!(
            "POST /api/auth/guest HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n{lengths}\r\n{body}"
        );
        let (resp, closed) = exchange(&sys, raw.as_bytes(), WAIT);
        let status = &resp[9..12];
        assert!(status == "400" || status == "411", "{lengths:?}: {resp}");
        assert!(closed, "the connection is closed after a framing error");
        assert_eq!(
            resp.matches("HTTP/1.1").count(),
            1,
            "nothing served as a second request"
        );
    }
    // the same length twice is one length
    let raw = format!(
        "POST /api/auth/guest HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {0}\r\ncontent-length: {0}\r\n\r\n{body}",
        body.len()
    );
    let (resp, _) = exchange(&sys, raw.as_bytes(), WAIT);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
}

#[test]
fn a_request_head_dribbled_byte_by_byte_is_cut_off() {
    let sys = System::start_with(&[("RINGCHAT_GATEWAY__HTTP_HEAD_TIMEOUT_SECS", "1")]);
    let mut s = NoEintr(TcpStream::connect(sys.http).unwrap());
    s.0.set_read_timeout(Some(Duration::from_millis(250)))
        .unwrap();
    let start = Instant::now();
    let head =
        b"GET /api/users/info HTTP/1.1\r\nhost: x\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut answer = Vec::new();
    for b in head {
        if s.write_all(&[*b]).is_err() {
            break;
        }
        let mut buf = [0u8; 1024];
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        if start.elapsed() > Duration::from_secs(10) {
            panic!("still open after 10 s of dribbling");
        }
    }
    let elapsed = start.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        elapsed < Duration::from_secs(4),
        "cut off after {elapsed:?}"
    );
}

#[test]
fn http10_closes_unless_keep_alive_was_asked() {
    let sys = System::start();
    let (resp, closed) = exchange(
        &sys,
        b"GET /api/openapi.json HTTP/1.0\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{}", &resp[..40]);
    assert!(resp.contains("connection: close\r\n"));
    assert!(
        closed,
        "an HTTP/1.0 connection is closed after the response"
    );

    let mut s = NoEintr(TcpStream::connect(sys.http).unwrap());
    s.write_all(b"GET /api/users/info HTTP/1.0\r\nconnection: keep-alive\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    let resp = String::from_utf8_lossy(&buf[..n]);
    assert!(resp.contains("connection: keep-alive\r\n"), "{resp}");
    assert!(
        resp.contains("x-content-type-options: nosniff\r\n"),
        "{resp}"
    );
}

#[test]
fn cors_wildcard_never_allows_credentials_and_upgrades_check_origin() {
    // the default: any origin, but as `*`, without credentials
    let sys = System::start();
    let r = sys.api().request(
        "GET",
        "/api/openapi.json",
        None,
        &[("origin", "https://evil.example")],
    );
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("access-control-allow-credentials"), None);

    // restricted origins: a listed one is echoed with credentials; an upgrade from another
    // site's page is refused, one without Origin (not a browser) is not
    let sys = System::start_with(&[("RINGCHAT_GATEWAY__CORS_ORIGINS", "https://app.example")]);
    let u = sys.user("orig");
    let r = sys.api().request(
        "GET",
        "/api/openapi.json",
        None,
        &[("origin", "https://app.example")],
    );
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    let upgrade = |origin: Option<&str>| {
        let origin = origin
            .map(|o| format!("origin: {o}\r\n"))
            .unwrap_or_default();
        let raw = format!(
            "GET /ws?token={} HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n{origin}\r\n",
            u.token
        );
        let mut s = NoEintr(TcpStream::connect(sys.http).unwrap());
        s.0.set_read_timeout(Some(WAIT)).unwrap();
        s.write_all(raw.as_bytes()).unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n.min(12)]).into_owned()
    };
    assert_eq!(upgrade(Some("https://evil.example")), "HTTP/1.1 403");
    assert_eq!(upgrade(Some("https://app.example")), "HTTP/1.1 101");
    assert_eq!(upgrade(None), "HTTP/1.1 101");
}

#[test]
fn the_admin_port_listens_on_loopback_by_default() {
    let config = ringchat_core::Config::from_toml_and_env("", &Default::default()).unwrap();
    assert!(config.gateway.admin_listen.starts_with("127.0.0.1:"));
}
