//! Friends: adding one (which opens the single chat) and the list with presence.

use ringchat_proto as pb;
use serde::Serialize;

use super::{id_field, Ctx, Reply};
use crate::http::Response;
use crate::protocol::objects::{Conversation, Friend};

#[derive(Serialize)]
struct Added<'a> {
    conversation: Conversation<'a>,
}

pub(super) async fn add(cx: &Ctx<'_>) -> Reply {
    let target_user_id = id_field(&cx.body()?, "friendId")?;
    let c = cx
        .as_caller(move |l, caller| async move {
            l.add_friend(pb::TargetUserRequest {
                caller_id: caller.user_id,
                target_user_id,
            })
            .await
        })
        .await?;
    Ok(Response::ok(
        200,
        "friend added",
        Added {
            conversation: Conversation::from(&c),
        },
    ))
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
