//! A parsed HTTP/1.1 request head (httparse) and reading one off a socket within the
//! head size limit.

use std::time::{Duration, Instant};

use monoio::io::AsyncReadRent;
use monoio::net::TcpStream;
use ringchat_core::{Error, ErrorCode};
use serde::de::DeserializeOwned;

use super::response::Response;

/// How long a request body may take once its head arrived.
pub(super) const BODY_DEADLINE: Duration = Duration::from_secs(30);

pub struct Request {
    pub method: String,
    /// HTTP/1.0: the connection closes after the response unless the client asked to
    /// keep it alive.
    pub http10: bool,
    /// The client's address (set by the connection that read the request).
    pub peer: Option<std::net::IpAddr>,
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

    /// Whether the connection stays open after this request (RFC 9112 9.3).
    pub fn keep_alive(&self) -> bool {
        let has = |token: &str| {
            self.headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case("connection"))
                .flat_map(|(_, v)| v.split(','))
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        };
        if self.http10 {
            has("keep-alive")
        } else {
            !has("close")
        }
    }

    pub fn bearer(&self) -> Option<&str> {
        let h = self.header("authorization")?;
        let (scheme, token) = h.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then_some(token.trim())
    }

    /// The body as JSON of type `T` (an empty body reads as `{}`).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        let body: &[u8] = if self.body.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &self.body
        };
        serde_json::from_slice(body).map_err(|e| Error::invalid(format!("invalid JSON body: {e}")))
    }
}

/// Decodes `%XX` escapes (two hex digits, RFC 3986 2.1; anything else is literal) and `+`
/// as a space (form encoding).
pub fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => match (
                b.get(i + 1).and_then(|c| hex(*c)),
                b.get(i + 2).and_then(|c| hex(*c)),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The result of parsing what a connection has sent so far.
pub enum Parsed {
    /// A whole head: the request (without its body) and the head's length in bytes.
    Complete(Request, usize),
    /// More bytes are needed.
    Partial,
    /// The head is unacceptable: answer this and close.
    Reject(Response),
}

fn head_too_large(what: &str) -> Parsed {
    Parsed::Reject(Response::error_with_status(
        431,
        &Error::new(ErrorCode::InvalidArgument, what),
    ))
}

/// Parses a request head from the start of `buf` (httparse), within `max_head` bytes.
/// Pure, so it can be fuzzed.
pub fn parse_head(buf: &[u8], max_head: usize) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n > max_head => {
            head_too_large("request head too large")
        }
        Ok(httparse::Status::Complete(n)) => {
            let target = parsed.path.unwrap_or("/");
            let (path, query) = target.split_once('?').unwrap_or((target, ""));
            let req = Request {
                method: parsed.method.unwrap_or("GET").to_string(),
                http10: parsed.version == Some(0),
                peer: None,
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
            Parsed::Complete(req, n)
        }
        Ok(httparse::Status::Partial) if buf.len() > max_head => {
            head_too_large("request head too large")
        }
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => head_too_large("too many headers"),
        Err(e) => Parsed::Reject(Response::error(&Error::invalid(format!(
            "malformed HTTP request: {e}"
        )))),
    }
}

/// How long the body of a request announces, checked against RFC 9112 6.3: one
/// `Content-Length` of digits only (several that disagree are an error, not "the first
/// wins"), no `Transfer-Encoding` (chunked bodies are not supported, and a message with
/// both is a smuggling attempt), at most `max_body` bytes. Pure, so it can be fuzzed.
pub fn body_length(req: &Request, max_body: usize) -> Result<usize, Response> {
    if req.header("transfer-encoding").is_some() {
        return Err(Response::error_with_status(
            411,
            &Error::invalid("chunked bodies are not supported: send content-length"),
        ));
    }
    let mut len: Option<usize> = None;
    for (k, v) in &req.headers {
        if !k.eq_ignore_ascii_case("content-length") {
            continue;
        }
        // a list value ("5, 5") counts as several
        for item in v.split(',') {
            let item = item.trim();
            let n = (!item.is_empty() && item.bytes().all(|b| b.is_ascii_digit()))
                .then(|| item.parse::<usize>().ok())
                .flatten()
                .ok_or_else(|| Response::error(&Error::invalid("bad content-length")))?;
            if len.is_some_and(|l| l != n) {
                return Err(Response::error(&Error::invalid(
                    "conflicting content-length headers",
                )));
            }
            len = Some(n);
        }
    }
    let len = len.unwrap_or(0);
    if len > max_body {
        return Err(Response::error(&Error::new(
            ErrorCode::MessageTooLarge,
            format!("request body over {max_body} bytes"),
        )));
    }
    Ok(len)
}

pub(super) enum Head {
    Request(Request, usize),
    Reply(Response),
    Closed,
}

/// How long [`read_head`] may wait.
pub(super) struct HeadLimits {
    pub max_bytes: usize,
    /// For the first byte of the next request on an idle connection.
    pub idle: Duration,
    /// For the whole head once its first byte arrived (a byte a second does not keep a
    /// socket: slowloris).
    pub head: Duration,
}

/// Reads until `buf` holds a whole request head, within `limits`.
pub(super) async fn read_head(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    limits: &HeadLimits,
) -> Head {
    let max_head = limits.max_bytes;
    let mut deadline = (!buf.is_empty()).then(|| Instant::now() + limits.head);
    loop {
        if !buf.is_empty() {
            match parse_head(buf, max_head) {
                Parsed::Complete(req, n) => return Head::Request(req, n),
                Parsed::Reject(resp) => return Head::Reply(resp),
                Parsed::Partial => {}
            }
        }
        let wait = match deadline {
            None => limits.idle,
            Some(d) => d.saturating_duration_since(Instant::now()),
        };
        let chunk = Vec::with_capacity(2048);
        match monoio::time::timeout(wait, stream.read(chunk)).await {
            Ok((Ok(n), chunk)) if n > 0 => {
                buf.extend_from_slice(&chunk[..n]);
                deadline.get_or_insert_with(|| Instant::now() + limits.head);
            }
            Ok(_) => return Head::Closed,
            Err(_) if deadline.is_some() => {
                return Head::Reply(Response::error_with_status(
                    408,
                    &Error::invalid("request head not complete in time"),
                ))
            }
            Err(_) => return Head::Closed,
        }
    }
}
