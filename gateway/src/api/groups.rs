//! Groups: creating one, reading it, adding and removing members.

use ringchat_proto as pb;
use serde::Serialize;
use serde_json::Value;

use super::{id_list, path_id, str_field, Ctx, Reply};
use crate::http::Response;
use crate::protocol::objects::{Conversation, Group};

#[derive(Serialize)]
struct Created<'a> {
    group: Option<Group<'a>>,
    conversation: Option<Conversation<'a>>,
}

pub(super) async fn create(cx: &Ctx<'_>) -> Reply {
    let body = cx.body()?;
    let group_name = str_field(&body, "groupName")?;
    let member_ids = id_list(&body, "members")?;
    let avatar = body
        .get("avatar")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let created = cx
        .as_caller(move |l, caller| async move {
            l.create_group(pb::CallerCreateGroupRequest {
                caller_id: caller.user_id,
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
        Created {
            group: created.group.as_ref().map(Group::from),
            conversation: created.conversation.as_ref().map(Conversation::from),
        },
    ))
}

pub(super) async fn get(cx: &Ctx<'_>) -> Reply {
    let group_id = path_id(cx.param(0), "groupId")?;
    let g = cx
        .as_caller(move |l, caller| async move {
            l.get_group(pb::CallerGroupRequest {
                caller_id: caller.user_id,
                group_id,
            })
            .await
        })
        .await?;
    Ok(Response::ok(200, "ok", Group::from(&g)))
}

pub(super) async fn add_members(cx: &Ctx<'_>) -> Reply {
    let body = cx.body()?;
    let user_ids = match id_list(&body, "userIds")? {
        v if v.is_empty() => id_list(&body, "members")?,
        v => v,
    };
    let group_id = path_id(cx.param(0), "groupId")?;
    let g = cx
        .as_caller(move |l, caller| async move {
            l.add_group_members(pb::CallerGroupMembersRequest {
                caller_id: caller.user_id,
                group_id,
                user_ids,
            })
            .await
        })
        .await?;
    Ok(Response::ok(200, "members added", Group::from(&g)))
}

pub(super) async fn remove_member(cx: &Ctx<'_>) -> Reply {
    let (group_id, user_id) = (
        path_id(cx.param(0), "groupId")?,
        path_id(cx.param(1), "userId")?,
    );
    let g = cx
        .as_caller(move |l, caller| async move {
            l.remove_group_member(pb::CallerGroupMemberRequest {
                caller_id: caller.user_id,
                group_id,
                user_id,
            })
            .await
        })
        .await?;
    Ok(Response::ok(200, "member removed", Group::from(&g)))
}
