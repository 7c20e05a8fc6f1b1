//! A parsed HTTP/1.1 request head (httparse) and reading one off a socket within the
//! head size limit.

use std::time::Duration;

use monoio::io::AsyncReadRent;
use monoio::net::TcpStream;
use ringchat_core::{Error, ErrorCode};
use serde::de::DeserializeOwned;

use super::response::Response;

/// How long an idle keep-alive connection (or a slow request head) may take.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

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

pub(super) enum Head {
    Request(Request, usize),
    Reply(Response),
    Closed,
}

fn head_too_large(what: &str) -> Head {
    Head::Reply(Response::error_with_status(
        431,
        &Error::new(ErrorCode::InvalidArgument, what),
    ))
}

/// Reads until `buf` holds a whole request head (or the limit or the idle timeout ends
/// it). Returns the request and the head's length in `buf`.
pub(super) async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>, max_head: usize) -> Head {
    loop {
        if !buf.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut parsed = httparse::Request::new(&mut headers);
            match parsed.parse(buf) {
                Ok(httparse::Status::Complete(n)) if n > max_head => {
                    return head_too_large("request head too large");
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
                Err(httparse::Error::TooManyHeaders) => return head_too_large("too many headers"),
                Err(e) => {
                    return Head::Reply(Response::error(&Error::invalid(format!(
                        "malformed HTTP request: {e}"
                    ))))
                }
            }
            if buf.len() > max_head {
                return head_too_large("request head too large");
            }
        }
        let chunk = Vec::with_capacity(2048);
        match monoio::time::timeout(IDLE_TIMEOUT, stream.read(chunk)).await {
            Ok((Ok(n), chunk)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return Head::Closed,
        }
    }
}
