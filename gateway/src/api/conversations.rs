//! The caller's conversation list, and opening a single chat.

use ringchat_proto as pb;

use super::{id_field, Ctx, Reply};
use crate::http::Response;
use crate::protocol::objects::Conversation;

pub(super) async fn list(cx: &Ctx<'_>) -> Reply {
    let list = cx
        .as_caller(|l, caller| async move {
            l.list_conversations(pb::CallerRequest {
                caller_id: caller.user_id,
            })
            .await
        })
        .await?;
    let data: Vec<Conversation<'_>> = list.conversations.iter().map(Conversation::from).collect();
    Ok(Response::ok(200, "ok", data))
}

pub(super) async fn open_single(cx: &Ctx<'_>) -> Reply {
    let target_user_id = id_field(&cx.body()?, "targetUserId")?;
    let c = cx
        .as_caller(move |l, caller| async move {
            l.create_single_conversation(pb::TargetUserRequest {
                caller_id: caller.user_id,
                target_user_id,
            })
            .await
        })
        .await?;
    Ok(Response::ok(200, "ok", Conversation::from(&c)))
}
