//! The client HTTP API (docs/client-api.md, docs/openapi.json), served by every core.
//!
//! [`ROUTES`] is the API: one row per operation, matched in order, and the same set as the
//! OpenAPI document's operations (a test holds them together). Handlers live by area
//! ([`auth`], [`users`], [`conversations`], [`messages`], [`friends`], [`groups`]); each is
//! "read the request, [`Ctx::as_caller`] (authenticate and call im-logic in one trip to the
//! tokio side), answer in the envelope". The gateway also serves the web client at `/`.
//!
//! Each API request gets a trace id: its handler runs in `request{trace_id}` (the id goes
//! on to im-logic and im-repo with the calls it makes), and the response names it in
//! `X-Trace-Id`, which a user can quote to support.

mod auth;
mod conversations;
mod friends;
mod groups;
mod members;
mod messages;
mod users;

use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;

use im_logic::LogicApi;
use ringchat_core::trace::{self, TraceId};
use ringchat_core::{Error, ErrorCode, Result};
use ringchat_proto as pb;
use serde_json::Value;

use crate::cores::Core;
use crate::http::{percent_decode, Request, Response, Routes};
use crate::protocol::Loose;

/// The OpenAPI 3.1 description of this API, served at `GET /api/openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("../../../docs/openapi.json");
/// The web client, served at `GET /`.
const INDEX_HTML: &str = include_str!("../../web/index.html");

/// One operation of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Register,
    Login,
    Guest,
    Logout,
    Refresh,
    Me,
    UpdateProfile,
    Online,
    SearchUsers,
    UserByName,
    Conversations,
    OpenSingle,
    ConversationDetails,
    UpdateConversation,
    DeleteConversation,
    Members,
    AddConversationMembers,
    SetMemberRole,
    RemoveConversationMember,
    History,
    MarkRead,
    Readers,
    Send,
    Revoke,
    Edit,
    AddFriend,
    Friends,
    SendFriendRequest,
    FriendRequests,
    AnswerFriendRequest,
    CreateGroup,
    Group,
    AddMembers,
    RemoveMember,
    OpenApi,
}

pub struct Route {
    pub method: &'static str,
    /// Segments in braces (`{id}`) match any one segment and are passed to the handler.
    pub path: &'static str,
    op: Op,
}

const fn r(method: &'static str, path: &'static str, op: Op) -> Route {
    Route { method, path, op }
}

/// Every operation of the client API, matched in order (literal paths before the
/// patterns that would also match them).
pub const ROUTES: &[Route] = &[
    r("POST", "/api/auth/register", Op::Register),
    r("POST", "/api/auth/login", Op::Login),
    r("POST", "/api/auth/guest", Op::Guest),
    r("POST", "/api/auth/logout", Op::Logout),
    r("POST", "/api/auth/refresh", Op::Refresh),
    r("GET", "/api/users/info", Op::Me),
    r("GET", "/api/user/info", Op::Me),
    r("GET", "/api/users/profile", Op::Me),
    r("PUT", "/api/users/profile", Op::UpdateProfile),
    r("GET", "/api/users/status/online", Op::Online),
    r("GET", "/api/users/search", Op::SearchUsers),
    r("GET", "/api/users/{username}", Op::UserByName),
    r("GET", "/api/conversations", Op::Conversations),
    r("POST", "/api/conversations", Op::OpenSingle),
    r(
        "GET",
        "/api/conversations/{conversationId}",
        Op::ConversationDetails,
    ),
    r(
        "PUT",
        "/api/conversations/{conversationId}",
        Op::UpdateConversation,
    ),
    r(
        "DELETE",
        "/api/conversations/{conversationId}",
        Op::DeleteConversation,
    ),
    r(
        "GET",
        "/api/conversations/{conversationId}/members",
        Op::Members,
    ),
    r(
        "POST",
        "/api/conversations/{conversationId}/members",
        Op::AddConversationMembers,
    ),
    r(
        "PUT",
        "/api/conversations/{conversationId}/members/{userId}",
        Op::SetMemberRole,
    ),
    r(
        "DELETE",
        "/api/conversations/{conversationId}/members/{userId}",
        Op::RemoveConversationMember,
    ),
    r(
        "GET",
        "/api/conversations/{conversationId}/messages",
        Op::History,
    ),
    r(
        "PUT",
        "/api/conversations/{conversationId}/read",
        Op::MarkRead,
    ),
    r(
        "POST",
        "/api/conversations/{conversationId}/read",
        Op::MarkRead,
    ),
    r(
        "GET",
        "/api/conversations/{conversationId}/messages/{messageId}/readers",
        Op::Readers,
    ),
    r("POST", "/api/messages", Op::Send),
    r("DELETE", "/api/messages/{messageId}", Op::Revoke),
    r("PUT", "/api/messages/{messageId}", Op::Edit),
    r("POST", "/api/friends", Op::AddFriend),
    r("GET", "/api/friends", Op::Friends),
    r("POST", "/api/friends/requests", Op::SendFriendRequest),
    r("GET", "/api/friends/requests", Op::FriendRequests),
    r(
        "PUT",
        "/api/friends/requests/{requestId}",
        Op::AnswerFriendRequest,
    ),
    r("POST", "/api/groups", Op::CreateGroup),
    r("GET", "/api/groups/{groupId}", Op::Group),
    r("POST", "/api/groups/{groupId}/members", Op::AddMembers),
    r(
        "DELETE",
        "/api/groups/{groupId}/members/{userId}",
        Op::RemoveMember,
    ),
    r("GET", "/api/openapi.json", Op::OpenApi),
];

/// A path's segments, percent-decoded.
fn segments(path: &str) -> Vec<String> {
    path.trim_matches('/')
        .split('/')
        .map(percent_decode)
        .collect()
}

/// The values of `pattern`'s `{param}` segments in `segs`, if the path matches.
fn match_path(pattern: &str, segs: &[String]) -> Option<Vec<String>> {
    let pat: Vec<&str> = pattern.trim_matches('/').split('/').collect();
    if pat.len() != segs.len() {
        return None;
    }
    let mut params = Vec::new();
    for (p, s) in pat.iter().zip(segs) {
        if p.starts_with('{') && p.ends_with('}') {
            params.push(s.clone());
        } else if p != s {
            return None;
        }
    }
    Some(params)
}

enum Lookup {
    Found(Op, Vec<String>),
    /// The path exists with other methods.
    WrongMethod(Vec<&'static str>),
    NotFound,
}

fn lookup(method: &str, path: &str) -> Lookup {
    let segs = segments(path);
    let mut allowed = Vec::new();
    for route in ROUTES {
        if let Some(params) = match_path(route.path, &segs) {
            if route.method == method {
                return Lookup::Found(route.op, params);
            }
            allowed.push(route.method);
        }
    }
    if allowed.is_empty() {
        Lookup::NotFound
    } else {
        Lookup::WrongMethod(allowed)
    }
}

/// The client API and the web page: the routes of the public listener.
#[derive(Clone, Copy)]
pub struct Api;

impl Routes for Api {
    const PUBLIC: bool = true;

    async fn route(self, core: &Rc<Core>, req: &Request) -> Response {
        if req.method == "GET" && matches!(req.path.as_str(), "/" | "/index.html") {
            let mut page = Response::text(200, "text/html; charset=utf-8", INDEX_HTML);
            page.headers.push(("cache-control", "no-cache".into()));
            return page;
        }
        let (op, params) = match lookup(&req.method, &req.path) {
            Lookup::Found(op, params) => (op, params),
            Lookup::WrongMethod(allowed) => {
                let e = Error::new(
                    ErrorCode::MethodNotAllowed,
                    format!("{} is not allowed here", req.method),
                );
                core.metrics.error(e.code);
                let mut resp = Response::error(&e);
                resp.headers.push(("allow", allowed.join(", ")));
                return resp;
            }
            Lookup::NotFound => {
                let e = Error::new(ErrorCode::NotFound, "no such endpoint");
                core.metrics.error(e.code);
                return Response::error(&e);
            }
        };
        if matches!(op, Op::Register | Op::Guest) {
            if let Some(ip) = req.peer {
                if let Err(wait) = core.limits.accounts.take(&ip) {
                    let e = Error::rate_limited("too many new accounts from your address", wait);
                    core.metrics.error(e.code);
                    return Response::error(&e);
                }
            }
        }
        let trace_id = TraceId::random();
        let mut resp = trace::in_request(trace_id, handle(core, req, op, params)).await;
        resp.headers.push((trace::METADATA, trace_id.to_string()));
        resp
    }
}

/// Runs the handler of `op` and answers its error in the envelope.
async fn handle(core: &Rc<Core>, req: &Request, op: Op, params: Vec<String>) -> Response {
    let cx = Ctx { core, req, params };
    let result = match op {
        Op::Register => auth::register(&cx).await,
        Op::Login => auth::login(&cx).await,
        Op::Guest => auth::guest(&cx).await,
        Op::Logout => auth::logout(&cx).await,
        Op::Refresh => auth::refresh(&cx).await,
        Op::Me => users::me(&cx).await,
        Op::UpdateProfile => users::update_profile(&cx).await,
        Op::Online => users::online(&cx).await,
        Op::SearchUsers => users::search(&cx).await,
        Op::UserByName => users::by_name(&cx).await,
        Op::Conversations => conversations::list(&cx).await,
        Op::OpenSingle => conversations::open_single(&cx).await,
        Op::ConversationDetails => members::details(&cx).await,
        Op::UpdateConversation => members::update(&cx).await,
        Op::DeleteConversation => members::delete(&cx).await,
        Op::Members => members::list(&cx).await,
        Op::AddConversationMembers => members::add(&cx).await,
        Op::SetMemberRole => members::set_role(&cx).await,
        Op::RemoveConversationMember => members::remove(&cx).await,
        Op::History => messages::history(&cx).await,
        Op::MarkRead => messages::mark_read(&cx).await,
        Op::Readers => messages::readers(&cx).await,
        Op::Send => messages::send(&cx).await,
        Op::Revoke => messages::revoke(&cx).await,
        Op::Edit => messages::edit(&cx).await,
        Op::AddFriend => friends::add(&cx).await,
        Op::Friends => friends::list(&cx).await,
        Op::SendFriendRequest => friends::send_request(&cx).await,
        Op::FriendRequests => friends::list_requests(&cx).await,
        Op::AnswerFriendRequest => friends::answer_request(&cx).await,
        Op::CreateGroup => groups::create(&cx).await,
        Op::Group => groups::get(&cx).await,
        Op::AddMembers => groups::add_members(&cx).await,
        Op::RemoveMember => groups::remove_member(&cx).await,
        Op::OpenApi => Ok(Response::text(200, "application/json", OPENAPI_JSON)),
    };
    result.unwrap_or_else(|e| {
        core.metrics.error(e.code);
        if e.code.http_status() >= 500 {
            // every server-side failure is logged with its cause
            tracing::error!(
                code = %e.code,
                error = %e.message,
                method = %req.method,
                path = %req.path,
                "request failed"
            );
        }
        Response::error(&e)
    })
}

type Reply = Result<Response>;

/// What a handler has: the core, the request and the path's `{param}` values.
struct Ctx<'a> {
    core: &'a Rc<Core>,
    req: &'a Request,
    params: Vec<String>,
}

impl Ctx<'_> {
    /// The `i`-th `{param}` of the route's path.
    fn param(&self, i: usize) -> &str {
        self.params.get(i).map_or("", String::as_str)
    }

    /// The bearer token, or `AUTH_FAILED`.
    fn token(&self) -> Result<String> {
        self.req
            .bearer()
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .ok_or_else(|| Error::auth("missing Authorization: Bearer <token>"))
    }

    /// The body as a JSON object (`{}` when empty).
    fn body(&self) -> Result<Value> {
        match self.req.json::<Value>()? {
            v @ Value::Object(_) => Ok(v),
            _ => Err(Error::invalid("the body must be a JSON object")),
        }
    }

    /// Runs `f` against im-logic on the tokio side.
    async fn call<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: FnOnce(Arc<dyn LogicApi>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        self.core.bridge.call(f).await
    }

    /// Authenticates the bearer token and runs `f(logic, caller)`, in one trip to the
    /// tokio side.
    async fn as_caller<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: FnOnce(Arc<dyn LogicApi>, pb::User) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let token = self.token()?;
        self.call(move |logic| async move {
            let session = logic.authenticate(pb::TokenRequest { token }).await?;
            let caller = session
                .user
                .ok_or_else(|| Error::auth("the token names no user"))?;
            f(logic, caller).await
        })
        .await
    }
}

/// An integer query parameter; absent or empty is None.
fn query_int(cx: &Ctx<'_>, key: &str) -> Result<Option<i64>> {
    match cx.req.query_param(key) {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => s
            .parse::<i64>()
            .map(Some)
            .map_err(|_| Error::invalid(format!("{key} must be an integer"))),
    }
}

/// A page of a list by id: `after` (the last id of the previous page; absent: 0) and
/// `size` (absent: 0, im-logic's default; below 1: a 400).
fn paging(cx: &Ctx<'_>) -> Result<(i64, i64)> {
    let after = query_int(cx, "after")?.unwrap_or(0);
    let size = match query_int(cx, "size")? {
        None => 0,
        Some(s) if s >= 1 => s,
        Some(_) => return Err(Error::invalid("size must be at least 1")),
    };
    Ok((after, size))
}

/// An optional string field of a JSON body: absent or `null` is None; any other type is
/// a 400.
fn opt_str_field(v: &Value, key: &str) -> Result<Option<String>> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Error::invalid(format!("{key} must be a string"))),
    }
}

/// A required string field of a JSON body.
fn str_field(v: &Value, key: &str) -> Result<String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| Error::invalid(format!("{key} is required")))
}

/// An id: a positive integer, given as a number or a string.
fn as_id(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::String(s) => s.trim().parse::<i64>().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
    .filter(|i| *i > 0)
}

/// A required id field of a JSON body.
fn id_field(v: &Value, key: &str) -> Result<i64> {
    as_id(v.get(key)).ok_or_else(|| Error::invalid(format!("{key} must be an id")))
}

/// An id taken from the path.
fn path_id(s: &str, what: &str) -> Result<i64> {
    s.parse::<i64>()
        .ok()
        .filter(|i| *i > 0)
        .ok_or_else(|| Error::invalid(format!("{what} must be an id")))
}

/// An optional list of ids.
fn id_list(v: &Value, key: &str) -> Result<Vec<i64>> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                as_id(Some(item))
                    .ok_or_else(|| Error::invalid(format!("{key} must be a list of user ids")))
            })
            .collect(),
        Some(_) => Err(Error::invalid(format!("{key} must be a list of user ids"))),
    }
}

/// A field that is a read position (`seqId`): absent is 0, the latest.
fn seq_field(v: &Value, key: &str) -> Result<i64> {
    let loose: Option<Loose> = v
        .get(key)
        .map(|x| serde_json::from_value(x.clone()))
        .transpose()
        .map_err(|e| Error::invalid(format!("{key}: {e}")))?;
    crate::protocol::frames::seq_id(loose.as_ref()).map_err(Error::invalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn routes_and_the_openapi_document_describe_the_same_operations() {
        let spec: Value = serde_json::from_str(OPENAPI_JSON).expect("docs/openapi.json parses");
        assert_eq!(spec["openapi"].as_str().map(|v| &v[..3]), Some("3.1"));
        let mut documented = BTreeSet::new();
        for (path, item) in spec["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                if ["get", "put", "post", "delete", "patch", "options", "head"]
                    .contains(&method.as_str())
                {
                    documented.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        let routed: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|r| (r.method.to_string(), r.path.to_string()))
            .collect();
        assert_eq!(routed.len(), ROUTES.len(), "a route is listed twice");
        let missing: Vec<_> = routed.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&routed).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "routed but not documented: {missing:?}; documented but not routed: {extra:?}"
        );
    }

    #[test]
    fn lookup_prefers_literal_paths_and_knows_other_methods() {
        assert!(matches!(
            lookup("GET", "/api/users/info"),
            Lookup::Found(Op::Me, _)
        ));
        match lookup("GET", "/api/users/al%20ice") {
            Lookup::Found(Op::UserByName, p) => assert_eq!(p, ["al ice"]),
            _ => panic!("user by name"),
        }
        match lookup("DELETE", "/api/groups/4/members/9") {
            Lookup::Found(Op::RemoveMember, p) => assert_eq!(p, ["4", "9"]),
            _ => panic!("remove member"),
        }
        match lookup("DELETE", "/api/conversations") {
            Lookup::WrongMethod(m) => assert_eq!(m, ["GET", "POST"]),
            _ => panic!("wrong method"),
        }
        assert!(matches!(lookup("GET", "/api/nope"), Lookup::NotFound));
        assert!(matches!(
            lookup("GET", "/api/users/a/b/c"),
            Lookup::NotFound
        ));
    }
}
