//! The client HTTP API (CLIENT_API.md), served by every core. Handlers authenticate the
//! bearer token, translate JSON to the [`im_logic::LogicApi`] calls, and answer in the
//! `{success, message, data}` envelope. Backend calls run on the tokio side through the
//! bridge.

use std::rc::Rc;

use ringchat_core::model::{message_type_from_int, parse_message_type_name};
use ringchat_core::{Error, ErrorCode};
use ringchat_proto as pb;
use serde_json::{json, Value};

use crate::core::Core;
use crate::http::{percent_decode, Request, Response};
use crate::json;

type R = Result<Response, Error>;

pub async fn route(core: &Rc<Core>, req: &Request) -> Response {
    let segs: Vec<String> = req
        .path
        .trim_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let m = req.method.as_str();
    let result = match (m, s.as_slice()) {
        ("POST", ["api", "auth", "register"]) => register(core, req).await,
        ("POST", ["api", "auth", "login"]) => login(core, req).await,
        ("POST", ["api", "auth", "guest"]) => guest(core, req).await,
        ("POST", ["api", "auth", "logout"]) => logout(core, req).await,
        ("GET", ["api", "users" | "user", "info"]) => me(core, req).await,
        ("GET", ["api", "users", "status", "online"]) => online(core, req).await,
        ("GET", ["api", "users", name]) => user_by_name(core, req, name).await,
        ("GET", ["api", "conversations"]) => conversations(core, req).await,
        ("POST", ["api", "conversations"]) => open_single(core, req).await,
        ("GET", ["api", "conversations", id, "messages"]) => messages(core, req, id).await,
        ("PUT" | "POST", ["api", "conversations", id, "read"]) => mark_read(core, req, id).await,
        ("POST", ["api", "messages"]) => send(core, req).await,
        ("POST", ["api", "friends"]) => add_friend(core, req).await,
        ("GET", ["api", "friends"]) => friends(core, req).await,
        ("POST", ["api", "groups"]) => create_group(core, req).await,
        ("GET", ["api", "groups", id]) => group(core, req, id).await,
        ("POST", ["api", "groups", id, "members"]) => add_members(core, req, id).await,
        ("DELETE", ["api", "groups", id, "members", user]) => {
            remove_member(core, req, id, user).await
        }
        (_, path) => return not_routed(core, m, path),
    };
    result.unwrap_or_else(|e| {
        core.metrics.error(e.code);
        Response::error(&e)
    })
}

fn not_routed(core: &Core, method: &str, path: &[&str]) -> Response {
    let known = matches!(
        path,
        ["api", "auth", _]
            | ["api", "users" | "user", ..]
            | ["api", "conversations", ..]
            | ["api", "messages"]
            | ["api", "friends"]
            | ["api", "groups", ..]
    );
    if known {
        Response::raw_error(
            405,
            "METHOD_NOT_ALLOWED",
            &format!("{method} is not allowed here"),
        )
    } else {
        core.metrics.error(ErrorCode::NotFound);
        Response::error(&Error::new(ErrorCode::NotFound, "no such endpoint"))
    }
}

async fn authed(core: &Core, req: &Request) -> Result<pb::User, Error> {
    let token = req
        .bearer()
        .ok_or_else(|| Error::auth("missing Authorization: Bearer <token>"))?
        .to_string();
    core.bridge
        .call(move |logic| async move { logic.authenticate(pb::TokenRequest { token }).await })
        .await
}

/// An id field given as a string or a number.
fn id_field(v: &Value, key: &str) -> Result<i64, Error> {
    let id = match v.get(key) {
        Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
        Some(Value::Number(n)) => n.as_i64(),
        _ => None,
    };
    id.filter(|i| *i > 0)
        .ok_or_else(|| Error::invalid(format!("{key} must be an id")))
}

fn str_field<'a>(v: &'a Value, key: &str) -> Result<&'a str, Error> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| Error::invalid(format!("{key} is required")))
}

fn parse_id(s: &str, what: &str) -> Result<i64, Error> {
    s.parse::<i64>()
        .ok()
        .filter(|i| *i > 0)
        .ok_or_else(|| Error::invalid(format!("{what} must be an id")))
}

fn auth_data(a: &pb::AuthResponse) -> Value {
    json!({
        "token": a.token,
        "user": a.user.as_ref().map(json::user),
        "expiresAt": json::rfc3339(a.expires_at * 1000),
    })
}

async fn register(core: &Core, req: &Request) -> R {
    let body = req.json()?;
    let username = str_field(&body, "username")?.to_string();
    let password = str_field(&body, "password")?.to_string();
    let user = core
        .bridge
        .call(move |l| async move { l.register(pb::RegisterRequest { username, password }).await })
        .await?;
    Ok(Response::ok(
        201,
        "registered",
        json!({ "user": json::user(&user) }),
    ))
}

async fn login(core: &Core, req: &Request) -> R {
    let body = req.json()?;
    let username = str_field(&body, "username")?.to_string();
    let password = str_field(&body, "password")?.to_string();
    let auth = core
        .bridge
        .call(move |l| async move { l.login(pb::LoginRequest { username, password }).await })
        .await?;
    Ok(Response::ok(200, "logged in", auth_data(&auth)))
}

async fn guest(core: &Core, req: &Request) -> R {
    let body = req.json()?;
    let guest_name = match body.get("guestName") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(Error::invalid("guestName must be a string")),
    };
    let auth = core
        .bridge
        .call(move |l| async move { l.guest(pb::GuestRequest { guest_name }).await })
        .await?;
    Ok(Response::ok(200, "guest session created", auth_data(&auth)))
}

async fn logout(core: &Core, req: &Request) -> R {
    authed(core, req).await?;
    let token = req.bearer().unwrap_or_default().to_string();
    core.bridge
        .call(move |l| async move { l.logout(pb::TokenRequest { token }).await })
        .await?;
    Ok(Response::ok(200, "logged out", Value::Null))
}

async fn me(core: &Core, req: &Request) -> R {
    let u = authed(core, req).await?;
    Ok(Response::ok(200, "ok", json::user(&u)))
}

async fn online(core: &Core, req: &Request) -> R {
    let u = authed(core, req).await?;
    let caller_id = u.user_id;
    let list = core
        .bridge
        .call(move |l| async move { l.online_status(pb::CallerRequest { caller_id }).await })
        .await?;
    let data: Vec<Value> = list
        .statuses
        .iter()
        .map(|s| json!({ "userId": s.user_id.to_string(), "online": s.online }))
        .collect();
    Ok(Response::ok(200, "ok", Value::Array(data)))
}

async fn user_by_name(core: &Core, req: &Request, name: &str) -> R {
    let u = authed(core, req).await?;
    let (caller_id, username) = (u.user_id, name.to_string());
    let found = core
        .bridge
        .call(move |l| async move {
            l.get_user(pb::GetUserRequest {
                caller_id,
                user_id: 0,
                username,
            })
            .await
        })
        .await?;
    Ok(Response::ok(200, "ok", json::user(&found)))
}

async fn conversations(core: &Core, req: &Request) -> R {
    let u = authed(core, req).await?;
    let caller_id = u.user_id;
    let list = core
        .bridge
        .call(move |l| async move { l.list_conversations(pb::CallerRequest { caller_id }).await })
        .await?;
    let data: Vec<Value> = list.conversations.iter().map(json::conversation).collect();
    Ok(Response::ok(200, "ok", Value::Array(data)))
}

async fn open_single(core: &Core, req: &Request) -> R {
    let u = authed(core, req).await?;
    let body = req.json()?;
    let target_user_id = id_field(&body, "targetUserId")?;
    let caller_id = u.user_id;
    let c = core
        .bridge
        .call(move |l| async move {
            l.create_single_conversation(pb::TargetUserRequest {
                caller_id,
                target_user_id,
            })
            .await
        })
        .await?;
    Ok(Response::ok(200, "ok", json::conversation(&c)))
}

fn query_int(req: &Request, key: &str) -> Result<Option<i64>, Error> {
    match req.query_param(key) {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => s
            .parse::<i64>()
            .map(Some)
            .map_err(|_| Error::invalid(format!("{key} must be an integer"))),
    }
}

async fn messages(core: &Core, req: &Request, id: &str) -> R {
    let u = authed(core, req).await?;
    let r = pb::GetMessagesRequest {
        caller_id: u.user_id,
        conversation_id: id.to_string(),
        page: query_int(req, "page")?.unwrap_or(1),
        size: query_int(req, "size")?.unwrap_or(50),
        after_seq: query_int(req, "afterSeq")?,
        before_seq: query_int(req, "beforeSeq")?,
    };
    if r.page < 1 || r.size < 1 {
        return Err(Error::invalid("page and size must be at least 1"));
    }
    let page = core
        .bridge
        .call(move |l| async move { l.get_messages(r).await })
        .await?;
    let p = page.pagination.unwrap_or_default();
    let body = json!({
        "success": true,
        "message": "ok",
        "data": page.messages.iter().map(json::message).collect::<Vec<_>>(),
        "pagination": { "page": p.page, "size": p.size, "total": p.total, "hasMore": p.has_more },
    });
    Ok(Response::json(200, &body))
}

async fn mark_read(core: &Core, req: &Request, id: &str) -> R {
    let u = authed(core, req).await?;
    let body = req.json()?;
    let seq_id = match body.get("seqId") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .filter(|n| *n >= 0)
            .ok_or_else(|| Error::invalid("seqId must be a non-negative integer"))?,
    };
    let (caller_id, conversation_id) = (u.user_id, id.to_string());
    let p = core
        .bridge
        .call(move |l| async move {
            l.mark_read(pb::CallerMarkReadRequest {
                caller_id,
                conversation_id,
                seq_id,
            })
            .await
        })
        .await?;
    Ok(Response::ok(
        200,
        "read",
        json!({ "readSeq": p.read_seq, "unreadCount": p.last_seq - p.read_seq }),
    ))
}

async fn send(core: &Core, req: &Request) -> R {
    let u = authed(core, req).await?;
    let body = req.json()?;
    let conversation_id = match body.get("conversationId") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(Error::invalid_message("conversationId is required")),
    };
    let content = body
        .get("content")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::invalid_message("content must be a string"))?
        .to_string();
    let kind = match body.get("type").or_else(|| body.get("messageType")) {
        None | Some(Value::Null) => Some(pb::MessageType::Text),
        Some(Value::String(s)) => parse_message_type_name(s),
        Some(Value::Number(n)) => n.as_i64().and_then(message_type_from_int),
        Some(_) => None,
    }
    .ok_or_else(|| Error::invalid_message("unknown message type"))?;
    let temp_message_id = match body.get("tempMessageId") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    let caller_id = u.user_id;
    let m = core
        .bridge
        .call(move |l| async move {
            l.send_message(pb::SendMessageRequest {
                caller_id,
                conversation_id,
                content,
                r#type: kind as i32,
                temp_message_id,
            })
            .await
        })
        .await?;
    Ok(Response::ok(201, "sent", json::message(&m)))
}

async fn add_friend(core: &Core, req: &Request) -> R {
    let u = authed(core, req).await?;
    let body = req.json()?;
    let target_user_id = id_field(&body, "friendId")?;
    let caller_id = u.user_id;
    let c = core
        .bridge
        .call(move |l| async move {
            l.add_friend(pb::TargetUserRequest {
                caller_id,
                target_user_id,
            })
            .await
        })
        .await?;
    Ok(Response::ok(
        200,
        "friend added",
        json!({ "conversation": json::conversation(&c) }),
    ))
}

async fn friends(core: &Core, req: &Request) -> R {
    let u = authed(core, req).await?;
    let caller_id = u.user_id;
    let list = core
        .bridge
        .call(move |l| async move { l.list_friends(pb::CallerRequest { caller_id }).await })
        .await?;
    let data: Vec<Value> = list
        .friends
        .iter()
        .filter_map(|f| {
            f.user.as_ref().map(|u| {
                json!({
                    "userId": u.user_id.to_string(),
                    "username": u.username,
                    "avatar": u.avatar,
                    "online": f.online,
                })
            })
        })
        .collect();
    Ok(Response::ok(200, "ok", Value::Array(data)))
}

fn id_list(v: &Value, key: &str) -> Result<Vec<i64>, Error> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                match item {
                    Value::String(s) => s.trim().parse::<i64>().ok(),
                    Value::Number(n) => n.as_i64(),
                    _ => None,
                }
                .filter(|i| *i > 0)
                .ok_or_else(|| Error::invalid(format!("{key} must be a list of user ids")))
            })
            .collect(),
        Some(_) => Err(Error::invalid(format!("{key} must be a list of user ids"))),
    }
}

async fn create_group(core: &Core, req: &Request) -> R {
    let u = authed(core, req).await?;
    let body = req.json()?;
    let group_name = str_field(&body, "groupName")?.to_string();
    let member_ids = id_list(&body, "members")?;
    let avatar = body
        .get("avatar")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let caller_id = u.user_id;
    let created = core
        .bridge
        .call(move |l| async move {
            l.create_group(pb::CallerCreateGroupRequest {
                caller_id,
                group_name,
                member_ids,
                avatar,
            })
            .await
        })
        .await?;
    Ok(Response::ok(
        201,
        "group created",
        json!({
            "group": created.group.as_ref().map(json::group),
            "conversation": created.conversation.as_ref().map(json::conversation),
        }),
    ))
}

async fn group(core: &Core, req: &Request, id: &str) -> R {
    let u = authed(core, req).await?;
    let (caller_id, group_id) = (u.user_id, parse_id(id, "groupId")?);
    let g = core
        .bridge
        .call(move |l| async move {
            l.get_group(pb::CallerGroupRequest {
                caller_id,
                group_id,
            })
            .await
        })
        .await?;
    Ok(Response::ok(200, "ok", json::group(&g)))
}

async fn add_members(core: &Core, req: &Request, id: &str) -> R {
    let u = authed(core, req).await?;
    let body = req.json()?;
    let user_ids = match id_list(&body, "userIds")? {
        v if v.is_empty() => id_list(&body, "members")?,
        v => v,
    };
    let (caller_id, group_id) = (u.user_id, parse_id(id, "groupId")?);
    let g = core
        .bridge
        .call(move |l| async move {
            l.add_group_members(pb::CallerGroupMembersRequest {
                caller_id,
                group_id,
                user_ids,
            })
            .await
        })
        .await?;
    Ok(Response::ok(200, "members added", json::group(&g)))
}

async fn remove_member(core: &Core, req: &Request, id: &str, user: &str) -> R {
    let u = authed(core, req).await?;
    let (caller_id, group_id, user_id) = (
        u.user_id,
        parse_id(id, "groupId")?,
        parse_id(user, "userId")?,
    );
    let g = core
        .bridge
        .call(move |l| async move {
            l.remove_group_member(pb::CallerGroupMemberRequest {
                caller_id,
                group_id,
                user_id,
            })
            .await
        })
        .await?;
    Ok(Response::ok(200, "member removed", json::group(&g)))
}
