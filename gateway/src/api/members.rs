//! A conversation's details and its members (GoChat 2.0): read, rename and describe a
//! group, delete (hide a single chat, leave or dissolve a group), and list, add, re-role
//! and remove members.

use ringchat_core::Error;
use ringchat_proto as pb;
use serde::Serialize;
use serde_json::Value;

use super::{id_list, opt_str_field, paging, path_id, Ctx, Reply};
use crate::http::Response;
use crate::protocol::objects::{ConversationDetails, GroupMember};

/// The `{conversationId}` of the path.
fn conversation_id(cx: &Ctx<'_>) -> String {
    cx.param(0).to_string()
}

pub(super) async fn details(cx: &Ctx<'_>) -> Reply {
    let conversation_id = conversation_id(cx);
    let d = cx
        .as_caller(move |l, caller| async move {
            l.get_conversation(pb::CallerConversationRequest {
                caller_id: caller.user_id,
                conversation_id,
            })
            .await
        })
        .await?;
    Ok(Response::ok(200, "ok", ConversationDetails::from(&d)))
}

/// `PUT {groupName?, description?, avatar?}` (groups; owner or admin).
pub(super) async fn update(cx: &Ctx<'_>) -> Reply {
    let body = cx.body()?;
    let (name, description, avatar) = (
        opt_str_field(&body, "groupName")?,
        opt_str_field(&body, "description")?,
        opt_str_field(&body, "avatar")?,
    );
    let conversation_id = conversation_id(cx);
    let d = cx
        .as_caller(move |l, caller| async move {
            l.update_conversation(pb::CallerUpdateConversationRequest {
                caller_id: caller.user_id,
                conversation_id,
                name,
                description,
                avatar,
            })
            .await
        })
        .await?;
    Ok(Response::ok(
        200,
        "conversation updated",
        ConversationDetails::from(&d),
    ))
}

#[derive(Serialize)]
struct Deleted {
    outcome: String,
}

/// `DELETE`: `{outcome: "hidden" | "left" | "dissolved"}`.
pub(super) async fn delete(cx: &Ctx<'_>) -> Reply {
    let conversation_id = conversation_id(cx);
    let d = cx
        .as_caller(move |l, caller| async move {
            l.delete_conversation(pb::CallerConversationRequest {
                caller_id: caller.user_id,
                conversation_id,
            })
            .await
        })
        .await?;
    Ok(Response::ok(
        200,
        "conversation deleted",
        Deleted { outcome: d.outcome },
    ))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Members<'a> {
    members: Vec<GroupMember<'a>>,
    has_more: bool,
}

/// `GET ?after=<userId>&size=<n>`: `{members, hasMore}` by user id.
pub(super) async fn list(cx: &Ctx<'_>) -> Reply {
    let (after_user_id, size) = paging(cx)?;
    let conversation_id = conversation_id(cx);
    let page = cx
        .as_caller(move |l, caller| async move {
            l.list_members(pb::CallerMembersQuery {
                caller_id: caller.user_id,
                conversation_id,
                after_user_id,
                size,
            })
            .await
        })
        .await?;
    Ok(Response::ok(
        200,
        "ok",
        Members {
            members: page.members.iter().map(GroupMember::from).collect(),
            has_more: page.has_more,
        },
    ))
}

/// `POST {members: [userId]}` (or `userIds`): the members added.
pub(super) async fn add(cx: &Ctx<'_>) -> Reply {
    let body = cx.body()?;
    let user_ids = match id_list(&body, "members")? {
        v if v.is_empty() => id_list(&body, "userIds")?,
        v => v,
    };
    let conversation_id = conversation_id(cx);
    let page = cx
        .as_caller(move |l, caller| async move {
            l.add_members(pb::CallerConversationMembersRequest {
                caller_id: caller.user_id,
                conversation_id,
                user_ids,
            })
            .await
        })
        .await?;
    Ok(Response::ok(
        200,
        "members added",
        Members {
            members: page.members.iter().map(GroupMember::from).collect(),
            has_more: false,
        },
    ))
}

/// A role: 1, 2 or 3 (GoChat 2.0), or its name.
fn role_field(body: &Value) -> ringchat_core::Result<pb::GroupRole> {
    let role = match body.get("role") {
        Some(Value::Number(n)) => n.as_i64().and_then(|i| i32::try_from(i).ok()),
        Some(Value::String(s)) => match s.as_str() {
            "member" | "1" => Some(1),
            "admin" | "2" => Some(2),
            "owner" | "3" => Some(3),
            _ => None,
        },
        _ => None,
    };
    match role.map(pb::GroupRole::try_from) {
        Some(Ok(r)) if r != pb::GroupRole::Unspecified => Ok(r),
        _ => Err(Error::invalid(
            "role must be 1 (member), 2 (admin) or 3 (owner)",
        )),
    }
}

/// `PUT {role}` (the owner): the member after the change.
pub(super) async fn set_role(cx: &Ctx<'_>) -> Reply {
    let role = role_field(&cx.body()?)?;
    let user_id = path_id(cx.param(1), "userId")?;
    let conversation_id = conversation_id(cx);
    let m = cx
        .as_caller(move |l, caller| async move {
            l.set_member_role(pb::CallerMemberRoleRequest {
                caller_id: caller.user_id,
                conversation_id,
                user_id,
                role: role as i32,
            })
            .await
        })
        .await?;
    Ok(Response::ok(200, "role changed", GroupMember::from(&m)))
}

/// `DELETE`: removes the member (or the caller leaves); `data: null`.
pub(super) async fn remove(cx: &Ctx<'_>) -> Reply {
    let user_id = path_id(cx.param(1), "userId")?;
    let conversation_id = conversation_id(cx);
    cx.as_caller(move |l, caller| async move {
        l.remove_member(pb::CallerConversationMemberRequest {
            caller_id: caller.user_id,
            conversation_id,
            user_id,
        })
        .await
    })
    .await?;
    Ok(Response::ok(200, "member removed", Value::Null))
}
