//! Conversations and their members (GoChat 2.0): details, rename and description, delete
//! (hide a single chat, leave or dissolve a group), and members with roles. Each change
//! tells the members with a `member-added`, `member-removed`, `member-updated` or
//! `conversation-updated` event. The v1 group endpoints share the member changes.

use pb::downstream_batch::Body;
use pb::notice::Event;
use pb::GroupRole::{Admin, Member, Owner};
use ringchat_core::model::WORLD_ID;
use ringchat_core::{Error, ErrorCode, Result};
use ringchat_proto as pb;

use super::rules::{check_avatar, check_member_list, role_of, MAX_GROUP_MEMBERS};
use super::{char_len, LogicService};

/// Longest group name and description, in characters.
const MAX_GROUP_NAME_CHARS: usize = 50;
const MAX_DESCRIPTION_CHARS: usize = 500;
/// Member pages: the default size and the largest.
const MEMBERS_DEFAULT_SIZE: i64 = 50;
const MEMBERS_MAX_SIZE: i64 = 200;

fn not_a_group_member() -> Error {
    Error::forbidden("you are not a member of this group")
}

fn only_groups(what: &str) -> Error {
    Error::invalid(format!("only groups {what}"))
}

/// A group name: 1-50 characters once trimmed.
pub(super) fn check_group_name(raw: &str) -> Result<String> {
    let name = raw.trim();
    if !(1..=MAX_GROUP_NAME_CHARS).contains(&char_len(name)) {
        return Err(Error::invalid(format!(
            "groupName must be 1-{MAX_GROUP_NAME_CHARS} characters"
        )));
    }
    Ok(name.to_string())
}

fn check_description(raw: &str) -> Result<String> {
    super::friends::check_text(raw, "description", MAX_DESCRIPTION_CHARS)
}

impl LogicService {
    /// A group conversation and its group, when `caller_id` is a member (403 otherwise);
    /// `INVALID_ARGUMENT` naming `what` for single chats and the world room.
    async fn member_group(
        &self,
        caller_id: i64,
        conversation_id: &str,
        what: &str,
    ) -> Result<(pb::Group, pb::GroupRole)> {
        let meta = self.member_conversation(caller_id, conversation_id).await?;
        if meta.r#type != pb::ConversationType::Group as i32 {
            return Err(only_groups(what));
        }
        let group = self.ports.store.group(meta.group_id).await?;
        let role = role_of(&group, caller_id).ok_or_else(not_a_group_member)?;
        Ok((group, role))
    }

    /// Tells `user_ids` (their online connections) of a change, keyed by `key` (events
    /// with one key arrive in order).
    pub(super) async fn tell_members(
        &self,
        user_ids: &[i64],
        conversation_id: &str,
        event: Event,
    ) -> Result<()> {
        self.tell_online(user_ids, conversation_id, |users| {
            Body::Notice(Box::new(pb::Notice {
                recipient_user_ids: users,
                event: Some(event.clone()),
            }))
        })
        .await
    }

    /// The group's details as a `conversation-updated` event.
    fn changed(group: &pb::Group, by_user_id: i64, dissolved: bool) -> Event {
        Event::ConversationUpdated(pb::ConversationChanged {
            conversation_id: group.conversation_id.clone(),
            group_id: group.group_id,
            name: group.group_name.clone(),
            avatar: group.avatar.clone(),
            description: group.description.clone(),
            owner_id: group.owner_id,
            member_count: if dissolved {
                0
            } else {
                group.members.len() as i64
            },
            dissolved,
            by_user_id,
        })
    }
}

fn ids(group: &pb::Group) -> Vec<i64> {
    group.members.iter().map(|m| m.user_id).collect()
}

fn members_changed(
    group: &pb::Group,
    members: Vec<pb::GroupMember>,
    by: i64,
) -> pb::MembersChanged {
    pb::MembersChanged {
        conversation_id: group.conversation_id.clone(),
        group_id: group.group_id,
        members,
        by_user_id: by,
    }
}

pub(super) async fn get_conversation(
    svc: &LogicService,
    req: pb::CallerConversationRequest,
) -> Result<pb::ConversationDetails> {
    let meta = svc
        .member_conversation(req.caller_id, &req.conversation_id)
        .await?;
    let group = if meta.r#type == pb::ConversationType::Group as i32 {
        Some(svc.ports.store.group(meta.group_id).await?)
    } else {
        None
    };
    details(
        svc,
        req.caller_id,
        &meta.conversation_id,
        meta.member_count,
        group.as_ref(),
    )
    .await
}

/// A conversation's details as `caller_id` (a member) sees them: its list row, and a
/// group's description, owner, member count and the caller's role.
async fn details(
    svc: &LogicService,
    caller_id: i64,
    conversation_id: &str,
    member_count: i64,
    group: Option<&pb::Group>,
) -> Result<pb::ConversationDetails> {
    let conversation = svc.view_of(caller_id, conversation_id).await?;
    let mut details = pb::ConversationDetails {
        conversation: Some(conversation),
        member_count,
        ..Default::default()
    };
    if let Some(group) = group {
        details.my_role = role_of(group, caller_id).unwrap_or(Member) as i32;
        details.description = group.description.clone();
        details.owner_id = group.owner_id;
        details.member_count = group.members.len() as i64;
    }
    Ok(details)
}

pub(super) async fn update_conversation(
    svc: &LogicService,
    req: pb::CallerUpdateConversationRequest,
) -> Result<pb::ConversationDetails> {
    if req.name.is_none() && req.description.is_none() && req.avatar.is_none() {
        return Err(Error::invalid(
            "give groupName, description, avatar or some of them",
        ));
    }
    let name = req.name.as_deref().map(check_group_name).transpose()?;
    let description = req
        .description
        .as_deref()
        .map(check_description)
        .transpose()?;
    if let Some(avatar) = &req.avatar {
        check_avatar(avatar)?;
    }
    let (group, role) = svc
        .member_group(
            req.caller_id,
            &req.conversation_id,
            "have a name and a description",
        )
        .await?;
    if !matches!(role, Owner | Admin) {
        return Err(Error::forbidden(
            "only the owner or an admin can change the group",
        ));
    }
    let group = svc
        .ports
        .store
        .update_group(pb::UpdateGroupRequest {
            group_id: group.group_id,
            name,
            description,
            avatar: req.avatar,
        })
        .await?;
    svc.tell_members(
        &ids(&group),
        &group.conversation_id,
        LogicService::changed(&group, req.caller_id, false),
    )
    .await?;
    // the caller's membership was checked above: the changed group is all it takes
    details(svc, req.caller_id, &group.conversation_id, 0, Some(&group)).await
}

/// A single chat is hidden from the caller's list (it returns with the next message); a
/// group is dissolved by its owner and left by anyone else; the world room stays.
pub(super) async fn delete_conversation(
    svc: &LogicService,
    req: pb::CallerConversationRequest,
) -> Result<pb::ConversationDeleted> {
    if req.conversation_id == WORLD_ID {
        return Err(Error::forbidden("the world room cannot be deleted or left"));
    }
    let meta = svc
        .member_conversation(req.caller_id, &req.conversation_id)
        .await?;
    let outcome = if meta.r#type == pb::ConversationType::Single as i32 {
        svc.ports
            .store
            .hide_conversation(&meta.conversation_id, req.caller_id)
            .await?;
        "hidden"
    } else {
        let group = svc.ports.store.group(meta.group_id).await?;
        match role_of(&group, req.caller_id) {
            Some(Owner) => {
                let former = svc.ports.store.dissolve_group(group.group_id).await?;
                svc.tell_members(
                    &former,
                    &group.conversation_id,
                    LogicService::changed(&group, req.caller_id, true),
                )
                .await?;
                "dissolved"
            }
            Some(_) => {
                remove(svc, req.caller_id, group, req.caller_id).await?;
                "left"
            }
            None => return Err(not_a_group_member()),
        }
    };
    Ok(pb::ConversationDeleted {
        outcome: outcome.to_string(),
    })
}

pub(super) async fn list_members(
    svc: &LogicService,
    req: pb::CallerMembersQuery,
) -> Result<pb::MemberPage> {
    let size = super::page_size(
        req.after_user_id,
        req.size,
        MEMBERS_DEFAULT_SIZE,
        MEMBERS_MAX_SIZE,
    )?;
    let meta = svc
        .member_conversation(req.caller_id, &req.conversation_id)
        .await?;
    let mut members: Vec<pb::GroupMember> = if meta.r#type == pb::ConversationType::Group as i32 {
        let mut all = svc.ports.store.group(meta.group_id).await?.members;
        all.retain(|m| m.user_id > req.after_user_id);
        all.sort_by_key(|m| m.user_id);
        all.truncate(size as usize + 1);
        all
    } else {
        let ids = if meta.r#type == pb::ConversationType::Single as i32 {
            [meta.user_a, meta.user_b]
                .into_iter()
                .filter(|id| *id > req.after_user_id)
                .collect()
        } else {
            svc.ports
                .store
                .member_ids(&meta.conversation_id, req.after_user_id, size + 1)
                .await?
        };
        svc.ports
            .store
            .users(&ids)
            .await?
            .into_iter()
            .map(|u| pb::GroupMember {
                user_id: u.user_id,
                username: u.username,
                avatar: u.avatar,
                role: Member as i32,
                nickname: u.nickname,
            })
            .collect()
    };
    let has_more = members.len() as i64 > size;
    members.truncate(size as usize);
    Ok(pb::MemberPage { members, has_more })
}

/// Adds members to a group (owner or admin); tells every member, the new ones included,
/// with one `member-added`. Returns the group after and the members added.
pub(super) async fn add(
    svc: &LogicService,
    caller_id: i64,
    group: pb::Group,
    user_ids: &[i64],
) -> Result<(pb::Group, Vec<pb::GroupMember>)> {
    match role_of(&group, caller_id) {
        Some(Owner | Admin) => {}
        Some(_) => {
            return Err(Error::forbidden(
                "only the owner or an admin can add members",
            ))
        }
        None => return Err(not_a_group_member()),
    }
    if user_ids.is_empty() {
        return Err(Error::invalid("no members to add"));
    }
    check_member_list(user_ids)?;
    if group.members.len() + user_ids.len() > MAX_GROUP_MEMBERS {
        return Err(Error::invalid(format!(
            "a group has at most {MAX_GROUP_MEMBERS} members"
        )));
    }
    let added = svc
        .ports
        .store
        .add_group_members(group.group_id, user_ids, Member)
        .await?;
    let after = svc.ports.store.group(group.group_id).await?;
    let new: Vec<pb::GroupMember> = after
        .members
        .iter()
        .filter(|m| added.contains(&m.user_id))
        .cloned()
        .collect();
    if !new.is_empty() {
        svc.tell_members(
            &ids(&after),
            &after.conversation_id,
            Event::MembersAdded(members_changed(&after, new.clone(), caller_id)),
        )
        .await?;
    }
    Ok((after, new))
}

/// Removes a member with the role checks (the owner cannot leave; an admin removes plain
/// members; anyone else leaves); tells the members and the removed one with one
/// `member-removed`. Returns the group after.
pub(super) async fn remove(
    svc: &LogicService,
    caller_id: i64,
    group: pb::Group,
    user_id: i64,
) -> Result<pb::Group> {
    let caller = role_of(&group, caller_id).ok_or_else(not_a_group_member)?;
    let target = group
        .members
        .iter()
        .find(|m| m.user_id == user_id)
        .cloned()
        .ok_or_else(|| {
            Error::new(
                ErrorCode::NotFound,
                format!("user {user_id} is not in this group"),
            )
        })?;
    let target_role = pb::GroupRole::try_from(target.role).unwrap_or(Member);
    let allowed = if caller_id == user_id {
        caller != Owner
    } else {
        match caller {
            Owner => true,
            Admin => !matches!(target_role, Owner | Admin),
            _ => false,
        }
    };
    if !allowed {
        return Err(Error::forbidden(if caller_id == user_id {
            "the owner cannot leave the group: hand it over or dissolve it"
        } else {
            "your role cannot remove this member"
        }));
    }
    svc.ports
        .store
        .remove_group_member(group.group_id, user_id)
        .await?;
    let told: Vec<i64> = ids(&group);
    svc.tell_members(
        &told,
        &group.conversation_id,
        Event::MembersRemoved(members_changed(&group, vec![target], caller_id)),
    )
    .await?;
    svc.ports.store.group(group.group_id).await
}

pub(super) async fn add_members(
    svc: &LogicService,
    req: pb::CallerConversationMembersRequest,
) -> Result<pb::MemberPage> {
    let (group, _) = svc
        .member_group(req.caller_id, &req.conversation_id, "have members to add")
        .await?;
    let (_, added) = add(svc, req.caller_id, group, &req.user_ids).await?;
    Ok(pb::MemberPage {
        members: added,
        has_more: false,
    })
}

pub(super) async fn remove_member(
    svc: &LogicService,
    req: pb::CallerConversationMemberRequest,
) -> Result<()> {
    let (group, _) = svc
        .member_group(
            req.caller_id,
            &req.conversation_id,
            "have members to remove",
        )
        .await?;
    remove(svc, req.caller_id, group, req.user_id).await?;
    Ok(())
}

/// The owner sets a member's role: member, admin, or owner (hands the group over: the
/// owner becomes an admin). Tells the members with `member-updated` (and, on a hand-over,
/// `conversation-updated`).
pub(super) async fn set_member_role(
    svc: &LogicService,
    req: pb::CallerMemberRoleRequest,
) -> Result<pb::GroupMember> {
    let role = match pb::GroupRole::try_from(req.role) {
        Ok(r @ (Member | Admin | Owner)) => r,
        _ => {
            return Err(Error::invalid(
                "role must be 1 (member), 2 (admin) or 3 (owner)",
            ))
        }
    };
    let (group, caller_role) = svc
        .member_group(req.caller_id, &req.conversation_id, "have roles")
        .await?;
    if caller_role != Owner {
        return Err(Error::forbidden("only the owner can change roles"));
    }
    if req.user_id == req.caller_id {
        return Err(Error::invalid(
            "the owner's role changes only by handing the group to another member (role 3)",
        ));
    }
    if role_of(&group, req.user_id).is_none() {
        return Err(ringchat_core::model::not_in_group(
            group.group_id,
            req.user_id,
        ));
    }
    svc.ports
        .store
        .set_group_role(group.group_id, req.user_id, role)
        .await?;
    let after = svc.ports.store.group(group.group_id).await?;
    let changed: Vec<pb::GroupMember> = after
        .members
        .iter()
        .filter(|m| m.user_id == req.user_id || (role == Owner && m.user_id == req.caller_id))
        .cloned()
        .collect();
    let everyone = ids(&after);
    svc.tell_members(
        &everyone,
        &after.conversation_id,
        Event::MembersUpdated(members_changed(&after, changed.clone(), req.caller_id)),
    )
    .await?;
    if role == Owner {
        svc.tell_members(
            &everyone,
            &after.conversation_id,
            LogicService::changed(&after, req.caller_id, false),
        )
        .await?;
    }
    changed
        .into_iter()
        .find(|m| m.user_id == req.user_id)
        .ok_or_else(|| Error::internal("the member vanished during the change"))
}
