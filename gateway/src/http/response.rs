//! HTTP responses: the client API's JSON envelope and the bytes on the wire.

use ringchat_core::Error;
use serde::Serialize;

pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
}

/// `{"success": true, "message": ..., "data": ...}`
#[derive(Serialize)]
struct Success<'a, T> {
    success: bool,
    message: &'a str,
    data: T,
}

/// `{"success": false, "message": ..., "code": ...}`
#[derive(Serialize)]
struct Failure<'a> {
    success: bool,
    message: &'a str,
    code: ringchat_core::ErrorCode,
}

impl Response {
    /// Any serializable body as JSON.
    pub fn json<T: Serialize + ?Sized>(status: u16, v: &T) -> Response {
        Response {
            status,
            body: serde_json::to_vec(v).expect("response bodies always serialize"),
            content_type: "application/json",
            headers: Vec::new(),
        }
    }

    /// The success envelope around `data`.
    pub fn ok<T: Serialize>(status: u16, message: &str, data: T) -> Response {
        Response::json(
            status,
            &Success {
                success: true,
                message,
                data,
            },
        )
    }

    /// The failure envelope, with the status the error's code maps to.
    pub fn error(e: &Error) -> Response {
        Response::error_with_status(e.code.http_status(), e)
    }

    /// The failure envelope with a status of the HTTP layer's own (411, 426, 431).
    pub fn error_with_status(status: u16, e: &Error) -> Response {
        let mut r = Response::json(
            status,
            &Failure {
                success: false,
                message: &e.message,
                code: e.code,
            },
        );
        if let Some(secs) = e.retry_after_secs {
            r.headers.push(("retry-after", secs.to_string()));
        }
        r
    }

    pub fn text(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            body: body.into(),
            content_type,
            headers: Vec::new(),
        }
    }

    /// The response on the wire: status line, headers (`extra` first), body.
    pub fn encode(&self, extra: &[(&'static str, String)], keep_alive: bool) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: {}\r\nx-content-type-options: nosniff\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len(),
            if keep_alive { "keep-alive" } else { "close" }
        );
        for (k, v) in extra.iter().chain(self.headers.iter()) {
            head.push_str(k);
            head.push_str(": ");
            head.push_str(v);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(&self.body);
        out
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
