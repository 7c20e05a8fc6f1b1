//! Users: the caller, a user by name, and the online status of the caller's peers.

use std::collections::BTreeMap;

use ringchat_proto as pb;

use super::{Ctx, Reply};
use crate::http::Response;
use crate::protocol::objects::User;

pub(super) async fn me(cx: &Ctx<'_>) -> Reply {
    let u = cx.as_caller(|_, caller| async move { Ok(caller) }).await?;
    Ok(Response::ok(200, "ok", User::from(&u)))
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
