//! CORS: browser clients are usually served from another origin than the API.

use ringchat_core::{Error, ErrorCode};

use super::request::Request;
use super::response::Response;

/// CORS headers for a request's `Origin`, if that origin is allowed.
pub fn headers(allowed: &[String], req: &Request) -> Vec<(&'static str, String)> {
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

/// The answer to a preflight `OPTIONS`.
pub fn preflight(req: &Request, allowed: bool) -> Response {
    if !allowed {
        return Response::error(&Error::new(ErrorCode::Forbidden, "origin not allowed"));
    }
    let mut r = Response::text(204, "text/plain", Vec::new());
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
