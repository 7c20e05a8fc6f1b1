//! HTTP/1.1 on a core: request parsing (httparse), keep-alive, limits, CORS, and the
//! WebSocket upgrade. Routes live in [`crate::api`] (client API) and [`crate::admin`].

use std::rc::Rc;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use ringchat_core::{Error, ErrorCode};
use ringchat_proto as pb;
use serde_json::Value;

use crate::core::Core;
use crate::json;

/// How long an idle keep-alive connection (or a slow request head) may take.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A query parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k) == name).then(|| percent_decode(v))
        })
    }

    pub fn bearer(&self) -> Option<&str> {
        let h = self.header("authorization")?;
        let (scheme, token) = h.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then_some(token.trim())
    }

    /// The body as JSON (an empty body is `{}`).
    pub fn json(&self) -> Result<Value, Error> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Object(Default::default()));
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| Error::invalid(format!("invalid JSON body: {e}")))
    }
}

pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
}

impl Response {
    pub fn json(status: u16, v: &Value) -> Response {
        Response {
            status,
            body: v.to_string().into_bytes(),
            content_type: "application/json",
            headers: Vec::new(),
        }
    }

    pub fn ok(status: u16, message: &str, data: Value) -> Response {
        Response::json(status, &json::ok(message, data))
    }

    pub fn error(e: &Error) -> Response {
        Response::json(e.code.http_status(), &json::error(e))
    }

    pub fn raw_error(status: u16, code: &str, message: &str) -> Response {
        Response::json(
            status,
            &serde_json::json!({ "success": false, "message": message, "code": code }),
        )
    }

    pub fn text(status: u16, content_type: &'static str, body: String) -> Response {
        Response {
            status,
            body: body.into_bytes(),
            content_type,
            headers: Vec::new(),
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

fn encode(resp: &Response, cors: &[(&'static str, String)], keep_alive: bool) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: {}\r\n",
        resp.status,
        reason(resp.status),
        resp.content_type,
        resp.body.len(),
        if keep_alive { "keep-alive" } else { "close" }
    );
    for (k, v) in cors.iter().chain(resp.headers.iter()) {
        head.push_str(k);
        head.push_str(": ");
        head.push_str(v);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(&resp.body);
    out
}

/// CORS headers for a request's `Origin`, if that origin is allowed.
fn cors_headers(allowed: &[String], req: &Request) -> Vec<(&'static str, String)> {
    let Some(origin) = req.header("origin") else {
        return Vec::new();
    };
    if !allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
    {
        return Vec::new();
    }
    vec![
        ("access-control-allow-origin", origin.to_string()),
        ("access-control-allow-credentials", "true".into()),
        ("vary", "Origin".into()),
    ]
}

/// What serves the requests of a listener.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Site {
    Api,
    Admin,
}

enum Head {
    Request(Request, usize),
    Reply(Response),
    Closed,
}

/// Serves one TCP connection: requests until it closes, or a WebSocket after an upgrade.
pub async fn serve_conn(core: Rc<Core>, mut stream: TcpStream, site: Site) {
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    loop {
        let head = read_head(&core, &mut stream, &mut buf).await;
        let (mut req, head_len) = match head {
            Head::Request(r, n) => (r, n),
            Head::Reply(resp) => {
                let _ = stream.write_all(encode(&resp, &[], false)).await;
                return;
            }
            Head::Closed => return,
        };
        buf.drain(..head_len);
        core.metrics
            .http_requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);

        if site == Site::Api && req.path == "/ws" && is_upgrade(&req) {
            upgrade(core, stream, req, buf).await;
            return;
        }

        // body
        let len = match req
            .header("content-length")
            .map(str::trim)
            .map(str::parse::<usize>)
        {
            None => 0,
            Some(Ok(n)) => n,
            Some(Err(_)) => {
                let r = Response::raw_error(400, "INVALID_ARGUMENT", "bad content-length");
                let _ = stream.write_all(encode(&r, &[], false)).await;
                return;
            }
        };
        if req.header("transfer-encoding").is_some() {
            let r = Response::raw_error(
                411,
                "INVALID_ARGUMENT",
                "chunked bodies are not supported: send content-length",
            );
            let _ = stream.write_all(encode(&r, &[], false)).await;
            return;
        }
        if len > core.config.http_max_body_bytes {
            core.metrics.error(ErrorCode::MessageTooLarge);
            let r = Response::raw_error(
                413,
                "MESSAGE_TOO_LARGE",
                &format!(
                    "request body over {} bytes",
                    core.config.http_max_body_bytes
                ),
            );
            let _ = stream
                .write_all(encode(
                    &r,
                    &cors_headers(&core.config.cors_origins, &req),
                    false,
                ))
                .await;
            return;
        }
        if len > buf.len()
            && req
                .header("expect")
                .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
        {
            let (res, _) = stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec())
                .await;
            if res.is_err() {
                return;
            }
        }
        while buf.len() < len {
            let chunk = Vec::with_capacity((len - buf.len()).min(64 * 1024));
            let read = monoio::time::timeout(IDLE_TIMEOUT, stream.read(chunk)).await;
            match read {
                Ok((Ok(n), chunk)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => return,
            }
        }
        req.body = buf.drain(..len).collect();

        let keep_alive = !req
            .header("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"));
        let cors = cors_headers(&core.config.cors_origins, &req);
        let resp = if req.method == "OPTIONS" {
            if cors.is_empty() {
                core.metrics.error(ErrorCode::Forbidden);
            }
            preflight(&req, !cors.is_empty())
        } else {
            match site {
                Site::Api => crate::api::route(&core, &req).await,
                Site::Admin => crate::admin::route(&core, &req).await,
            }
        };
        let (res, _) = stream.write_all(encode(&resp, &cors, keep_alive)).await;
        if res.is_err() || !keep_alive {
            return;
        }
    }
}

fn preflight(req: &Request, allowed: bool) -> Response {
    if !allowed {
        return Response::raw_error(403, "FORBIDDEN", "origin not allowed");
    }
    let mut r = Response::text(204, "text/plain", String::new());
    r.headers.push((
        "access-control-allow-methods",
        "GET, POST, PUT, DELETE, OPTIONS".into(),
    ));
    r.headers.push((
        "access-control-allow-headers",
        req.header("access-control-request-headers")
            .unwrap_or("Authorization, Content-Type")
            .to_string(),
    ));
    r.headers.push(("access-control-max-age", "86400".into()));
    r
}

async fn read_head(core: &Core, stream: &mut TcpStream, buf: &mut Vec<u8>) -> Head {
    loop {
        if !buf.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut parsed = httparse::Request::new(&mut headers);
            match parsed.parse(buf) {
                Ok(httparse::Status::Complete(n)) if n > core.config.http_max_head_bytes => {
                    return Head::Reply(Response::raw_error(
                        431,
                        "INVALID_ARGUMENT",
                        "request head too large",
                    ));
                }
                Ok(httparse::Status::Complete(n)) => {
                    let target = parsed.path.unwrap_or("/");
                    let (path, query) = target.split_once('?').unwrap_or((target, ""));
                    let req = Request {
                        method: parsed.method.unwrap_or("GET").to_string(),
                        path: path.to_string(),
                        query: query.to_string(),
                        headers: parsed
                            .headers
                            .iter()
                            .map(|h| {
                                (
                                    h.name.to_string(),
                                    String::from_utf8_lossy(h.value).into_owned(),
                                )
                            })
                            .collect(),
                        body: Vec::new(),
                    };
                    return Head::Request(req, n);
                }
                Ok(httparse::Status::Partial) => {}
                Err(httparse::Error::TooManyHeaders) => {
                    return Head::Reply(Response::raw_error(
                        431,
                        "INVALID_ARGUMENT",
                        "too many headers",
                    ))
                }
                Err(e) => {
                    return Head::Reply(Response::raw_error(
                        400,
                        "INVALID_ARGUMENT",
                        &format!("malformed HTTP request: {e}"),
                    ))
                }
            }
            if buf.len() > core.config.http_max_head_bytes {
                return Head::Reply(Response::raw_error(
                    431,
                    "INVALID_ARGUMENT",
                    "request head too large",
                ));
            }
        }
        let chunk = Vec::with_capacity(2048);
        match monoio::time::timeout(IDLE_TIMEOUT, stream.read(chunk)).await {
            Ok((Ok(n), chunk)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return Head::Closed,
        }
    }
}

fn is_upgrade(req: &Request) -> bool {
    req.method == "GET"
        && req
            .header("upgrade")
            .is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
}

/// The WebSocket handshake: token check first (401 on failure), then 101.
async fn upgrade(core: Rc<Core>, mut stream: TcpStream, req: Request, leftover: Vec<u8>) {
    let cors = cors_headers(&core.config.cors_origins, &req);
    let refuse = |status: u16, code: &str, msg: &str| {
        encode(&Response::raw_error(status, code, msg), &cors, false)
    };
    let Some(key) = req.header("sec-websocket-key").map(str::to_string) else {
        let _ = stream
            .write_all(refuse(400, "INVALID_ARGUMENT", "missing Sec-WebSocket-Key"))
            .await;
        return;
    };
    if req.header("sec-websocket-version") != Some("13") {
        let mut r = Response::raw_error(426, "INVALID_ARGUMENT", "WebSocket version 13 required");
        r.headers.push(("sec-websocket-version", "13".into()));
        let _ = stream.write_all(encode(&r, &cors, false)).await;
        return;
    }
    if core.draining.get() {
        let _ = stream
            .write_all(refuse(503, "UNAVAILABLE", "server is shutting down"))
            .await;
        return;
    }
    let token = req
        .query_param("token")
        .or_else(|| req.bearer().map(str::to_string))
        .unwrap_or_default();
    let user: Result<pb::User, Error> = if token.is_empty() {
        Err(Error::auth("missing token: connect to /ws?token=<jwt>"))
    } else {
        core.bridge
            .call(move |logic| async move { logic.authenticate(pb::TokenRequest { token }).await })
            .await
    };
    let user = match user {
        Ok(u) => u,
        Err(e) => {
            // AUTH_FAILED answers 401, a backend outage 503
            core.metrics.error(e.code);
            let _ = stream
                .write_all(encode(&Response::error(&e), &cors, false))
                .await;
            return;
        }
    };
    // nothing of the request is needed past the handshake: free it before the long wait
    drop(req);
    drop(cors);
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {accept}\r\n\r\n"
    );
    let (res, _) = stream.write_all(resp.into_bytes()).await;
    if res.is_err() {
        return;
    }
    crate::ws::serve(core, stream, user, leftover).await;
}
