//! Friends: adding one (v1: at once, or a request when the server requires consent), the
//! list with presence, and friend requests (GoChat 2.0: send, list, answer).

use ringchat_core::Error;
use ringchat_proto as pb;
use serde::Serialize;

use super::{id_field, opt_str_field, path_id, Ctx, Reply};
use crate::http::Response;
use crate::protocol::objects::{Conversation, Friend, FriendRequest};

#[derive(Serialize)]
struct Added<'a> {
    conversation: Conversation<'a>,
}

/// `POST /api/friends {friendId}`: 200 `{conversation}` once friends; when the server
/// requires consent, 202 `{request}` while the friend has not accepted.
pub(super) async fn add(cx: &Ctx<'_>) -> Reply {
    let target_user_id = id_field(&cx.body()?, "friendId")?;
    let result = cx
        .as_caller(move |l, caller| async move {
            l.add_friend(pb::TargetUserRequest {
                caller_id: caller.user_id,
                target_user_id,
            })
            .await
        })
        .await?;
    match &result.conversation {
        Some(c) => Ok(Response::ok(
            200,
            "friend added",
            Added {
                conversation: Conversation::from(c),
            },
        )),
        None => Ok(requested(202, "friend request sent", &result)),
    }
}

pub(super) async fn list(cx: &Ctx<'_>) -> Reply {
    let list = cx
        .as_caller(|l, caller| async move {
            l.list_friends(pb::CallerRequest {
                caller_id: caller.user_id,
            })
            .await
        })
        .await?;
    let data: Vec<Friend<'_>> = list
        .friends
        .iter()
        .filter_map(|f| {
            f.user.as_ref().map(|u| Friend {
                user_id: u.user_id.to_string(),
                username: &u.username,
                avatar: &u.avatar,
                online: f.online,
            })
        })
        .collect();
    Ok(Response::ok(200, "ok", data))
}

#[derive(Serialize)]
struct Requested<'a> {
    request: Option<FriendRequest<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    conversation: Option<Conversation<'a>>,
}

fn requested(status: u16, message: &str, r: &pb::FriendRequestResult) -> Response {
    Response::ok(
        status,
        message,
        Requested {
            request: r.request.as_ref().map(FriendRequest::from),
            conversation: r.conversation.as_ref().map(Conversation::from),
        },
    )
}

/// `POST /api/friends/requests {targetUserId, message?}`: 201 `{request}` for a new (or
/// reopened) request; 200 `{request}` when one is already pending; 200 `{request,
/// conversation}` when it met the target's own request (now friends).
pub(super) async fn send_request(cx: &Ctx<'_>) -> Reply {
    let body = cx.body()?;
    let target_user_id = id_field(&body, "targetUserId")?;
    let message = opt_str_field(&body, "message")?.unwrap_or_default();
    let result = cx
        .as_caller(move |l, caller| async move {
            l.send_friend_request(pb::CallerFriendRequest {
                caller_id: caller.user_id,
                target_user_id,
                message,
            })
            .await
        })
        .await?;
    Ok(match (result.created, &result.conversation) {
        (true, _) => requested(201, "friend request sent", &result),
        (false, Some(_)) => requested(200, "friend request accepted", &result),
        (false, None) => requested(200, "friend request already sent", &result),
    })
}

#[derive(Serialize)]
struct Requests<'a> {
    requests: Vec<FriendRequest<'a>>,
}

/// `GET /api/friends/requests?type=received|sent&status=N`.
pub(super) async fn list_requests(cx: &Ctx<'_>) -> Reply {
    let received = match cx.req.query_param("type").as_deref() {
        None | Some("") | Some("received") => true,
        Some("sent") => false,
        Some(_) => return Err(Error::invalid("type must be received or sent")),
    };
    let status = match super::query_int(cx, "status")? {
        None => -1,
        Some(s @ 0..=3) => s as i32,
        Some(_) => return Err(Error::invalid("status must be 0, 1, 2 or 3")),
    };
    let list = cx
        .as_caller(move |l, caller| async move {
            l.list_friend_requests(pb::CallerFriendRequestsQuery {
                caller_id: caller.user_id,
                received,
                status,
            })
            .await
        })
        .await?;
    Ok(Response::ok(
        200,
        "ok",
        Requests {
            requests: list.requests.iter().map(FriendRequest::from).collect(),
        },
    ))
}

/// `PUT /api/friends/requests/{id} {action: accept|reject|block}`: 200 `{request}`, with
/// `conversation` when accepted.
pub(super) async fn answer_request(cx: &Ctx<'_>) -> Reply {
    let request_id = path_id(cx.param(0), "request id")?;
    let action = super::str_field(&cx.body()?, "action")?;
    if !matches!(action.as_str(), "accept" | "reject" | "block") {
        return Err(Error::invalid("action must be accept, reject or block"));
    }
    let result = cx
        .as_caller(move |l, caller| async move {
            l.answer_friend_request(pb::CallerFriendRequestAnswer {
                caller_id: caller.user_id,
                request_id,
                action,
            })
            .await
        })
        .await?;
    Ok(requested(200, "friend request answered", &result))
}
