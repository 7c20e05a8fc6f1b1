//! Users: the caller, a user by name, a search by name prefix, and the online status of
//! the caller's peers.

use std::collections::BTreeMap;

use ringchat_proto as pb;

use super::{opt_str_field, paging, Ctx, Reply};
use crate::http::Response;
use crate::protocol::objects::User;

/// The caller as stored now (a token's session remembers the user as it was at login).
pub(super) async fn me(cx: &Ctx<'_>) -> Reply {
    let u = cx
        .as_caller(|l, caller| async move {
            l.get_user(pb::GetUserRequest {
                caller_id: caller.user_id,
                user_id: caller.user_id,
                username: String::new(),
            })
            .await
        })
        .await?;
    Ok(Response::ok(200, "ok", User::from(&u)))
}

/// `PUT /api/users/profile {avatar?, nickname?}`: sets the fields given (an empty string
/// clears one) and answers the user.
pub(super) async fn update_profile(cx: &Ctx<'_>) -> Reply {
    let body = cx.body()?;
    let (avatar, nickname) = (
        opt_str_field(&body, "avatar")?,
        opt_str_field(&body, "nickname")?,
    );
    let u = cx
        .as_caller(move |l, caller| async move {
            l.update_profile(pb::CallerUpdateProfileRequest {
                caller_id: caller.user_id,
                avatar,
                nickname,
            })
            .await
        })
        .await?;
    Ok(Response::ok(200, "profile updated", User::from(&u)))
}

/// `{"<userId>": true|false}` for the caller's friends and group peers (contract v1.1:
/// the GoChat web client iterates it with `Object.entries`).
pub(super) async fn online(cx: &Ctx<'_>) -> Reply {
    let list = cx
        .as_caller(|l, caller| async move {
            l.online_status(pb::CallerRequest {
                caller_id: caller.user_id,
            })
            .await
        })
        .await?;
    let map: BTreeMap<String, bool> = list
        .statuses
        .iter()
        .map(|s| (s.user_id.to_string(), s.online))
        .collect();
    Ok(Response::ok(200, "ok", map))
}

pub(super) async fn by_name(cx: &Ctx<'_>) -> Reply {
    let username = cx.param(0).to_string();
    let found = cx
        .as_caller(|l, caller| async move {
            l.get_user(pb::GetUserRequest {
                caller_id: caller.user_id,
                user_id: 0,
                username,
            })
            .await
        })
        .await?;
    Ok(Response::ok(200, "ok", User::from(&found)))
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct SearchPage<'a> {
    users: Vec<User<'a>>,
    has_more: bool,
}

/// `GET /api/users/search?q=<prefix>&after=<userId>&size=<n>`: registered users whose name
/// starts with `q`, in id order; the next page is `after=` the last id while `hasMore`.
pub(super) async fn search(cx: &Ctx<'_>) -> Reply {
    let query = cx.req.query_param("q").unwrap_or_default();
    let (after_user_id, size) = paging(cx)?;
    let page = cx
        .as_caller(move |l, caller| async move {
            l.search_users(pb::CallerSearchUsersRequest {
                caller_id: caller.user_id,
                query,
                after_user_id,
                size,
            })
            .await
        })
        .await?;
    Ok(Response::ok(
        200,
        "ok",
        SearchPage {
            users: page.users.iter().map(User::from).collect(),
            has_more: page.has_more,
        },
    ))
}
