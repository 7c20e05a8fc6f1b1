//! CORS: browser clients are usually served from another origin than the API.

use ringchat_core::{Error, ErrorCode};

use super::request::Request;
use super::response::Response;

/// Response headers a browser page may read besides the simple ones.
const EXPOSED: &str = "X-Trace-Id";

/// CORS headers for a request's `Origin`, if that origin is allowed. An origin listed by
/// name gets itself back with credentials allowed; any other origin under `*` gets `*`
/// without credentials (a wildcard must never vouch for credentials). Both may read the
/// `X-Trace-Id` of API responses.
pub fn headers(allowed: &[String], req: &Request) -> Vec<(&'static str, String)> {
    let Some(origin) = req.header("origin") else {
        return Vec::new();
    };
    if allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
        vec![
            ("access-control-allow-origin", origin.to_string()),
            ("access-control-allow-credentials", "true".into()),
            ("access-control-expose-headers", EXPOSED.into()),
            ("vary", "Origin".into()),
        ]
    } else if allowed.iter().any(|a| a == "*") {
        vec![
            ("access-control-allow-origin", "*".into()),
            ("access-control-expose-headers", EXPOSED.into()),
        ]
    } else {
        Vec::new()
    }
}

/// Whether a WebSocket upgrade from this request's `Origin` is allowed: always without an
/// `Origin` (not a browser) or under `*`; else only from a listed origin, so another site's
/// page cannot open sockets with a token it got hold of.
pub fn upgrade_allowed(allowed: &[String], req: &Request) -> bool {
    match req.header("origin") {
        None => true,
        Some(origin) => allowed
            .iter()
            .any(|a| a == "*" || a.eq_ignore_ascii_case(origin)),
    }
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
