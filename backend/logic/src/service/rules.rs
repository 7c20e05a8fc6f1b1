//! Who may do what: users, conversations, history, read pointers, friends and groups,
//! and the checks a send must pass.

use ringchat_core::model::{self, MAX_TEMP_ID_LEN, WORLD_ID};
use ringchat_core::{Error, ErrorCode, Result};
use ringchat_proto as pb;

use super::{char_len, presence_or_unknown, LogicService};

/// Most members a group may have, and most added by one request (one store statement
/// binds them all, and SQLite binds at most 32766 values).
pub(super) const MAX_GROUP_MEMBERS: usize = 10_000;
pub(super) const MAX_MEMBERS_PER_REQUEST: usize = 1_000;
/// Longest avatar URL.
pub(super) const MAX_AVATAR_LEN: usize = 512;

pub(super) fn check_member_list(ids: &[i64]) -> Result<()> {
    if ids.len() > MAX_MEMBERS_PER_REQUEST {
        return Err(Error::invalid(format!(
            "at most {MAX_MEMBERS_PER_REQUEST} members per request ({} given)",
            ids.len()
        )));
    }
    Ok(())
}

/// An avatar is empty or an http(s) URL of bounded length (no `javascript:` or `data:`).
pub(super) fn check_avatar(avatar: &str) -> Result<()> {
    if avatar.is_empty() {
        return Ok(());
    }
    let lower = avatar.to_ascii_lowercase();
    if avatar.len() > MAX_AVATAR_LEN
        || !(lower.starts_with("https://") || lower.starts_with("http://"))
        || avatar.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(Error::invalid(format!(
            "avatar must be an http(s) URL of at most {MAX_AVATAR_LEN} bytes"
        )));
    }
    Ok(())
}

/// A send as the rules see it, from the WebSocket (an upstream message) or from HTTP.
pub(crate) struct Outgoing<'a> {
    pub sender_id: i64,
    pub conversation_id: &'a str,
    pub content: &'a str,
    pub kind: i32,
    pub temp_message_id: &'a str,
    pub mentions: &'a [i64],
    pub mention_all: bool,
}

fn not_a_member() -> Error {
    Error::forbidden("you are not a member of this conversation")
}

pub(super) fn role_of(group: &pb::Group, user_id: i64) -> Option<pb::GroupRole> {
    group
        .members
        .iter()
        .find(|m| m.user_id == user_id)
        .map(|m| pb::GroupRole::try_from(m.role).unwrap_or(pb::GroupRole::Member))
}

impl LogicService {
    pub(crate) async fn caller(&self, caller_id: i64) -> Result<pb::User> {
        self.ports
            .store
            .user(caller_id)
            .await
            .map_err(|e| match e.code {
                ErrorCode::UserNotFound => Error::auth("the caller no longer exists"),
                _ => e,
            })
    }

    pub(crate) async fn view_of(
        &self,
        user_id: i64,
        conversation_id: &str,
    ) -> Result<pb::ConversationView> {
        self.ports
            .store
            .conversations(user_id)
            .await?
            .into_iter()
            .find(|c| c.conversation_id == conversation_id)
            .ok_or_else(|| Error::conversation_not_found(conversation_id))
    }

    pub(crate) async fn ensure_member(
        &self,
        meta: &pb::ConversationMeta,
        user_id: i64,
    ) -> Result<()> {
        if meta.conversation_id == WORLD_ID
            || self
                .ports
                .store
                .is_member(&meta.conversation_id, user_id)
                .await?
        {
            Ok(())
        } else {
            Err(not_a_member())
        }
    }

    /// Validates a send and authorises the sender; returns the conversation.
    pub(crate) async fn check_send(&self, s: Outgoing<'_>) -> Result<pb::ConversationMeta> {
        let kind = s.kind;
        match pb::MessageType::try_from(kind) {
            Ok(pb::MessageType::Unspecified) | Err(_) => {
                return Err(Error::invalid_message(format!(
                    "unknown message type {kind}"
                )))
            }
            Ok(pb::MessageType::Revoke | pb::MessageType::Edit) => {
                return Err(Error::invalid_message(
                    "revoke and edit are not sent as messages: DELETE or PUT /api/messages/{id}",
                ))
            }
            Ok(_) => {}
        }
        self.check_content(s.content)?;
        if s.temp_message_id.len() > MAX_TEMP_ID_LEN {
            return Err(Error::invalid_message(format!(
                "tempMessageId is longer than {MAX_TEMP_ID_LEN} bytes"
            )));
        }
        let meta = self
            .member_conversation(s.sender_id, s.conversation_id)
            .await?;
        self.check_mentions(&meta, s.sender_id, s.mentions, s.mention_all)
            .await?;
        Ok(meta)
    }

    /// A message's content (a send's, or an edit's): not blank, and within
    /// `logic.max_content_bytes`.
    pub(crate) fn check_content(&self, content: &str) -> Result<()> {
        if content.trim().is_empty() {
            return Err(Error::invalid_message("message content is empty"));
        }
        if content.len() > self.max_content_bytes {
            return Err(Error::new(
                ErrorCode::MessageTooLarge,
                format!(
                    "message content is {} bytes, the limit is {}",
                    content.len(),
                    self.max_content_bytes
                ),
            ));
        }
        Ok(())
    }

    /// @-mentions of a send: at most [`model::MAX_MENTIONS`] user ids, none in the world
    /// room; everyone (`all`) only in a group, by its owner or an admin.
    async fn check_mentions(
        &self,
        meta: &pb::ConversationMeta,
        sender_id: i64,
        mentions: &[i64],
        mention_all: bool,
    ) -> Result<()> {
        if mentions.is_empty() && !mention_all {
            return Ok(());
        }
        if meta.conversation_id == WORLD_ID {
            return Err(Error::invalid_message(
                "mentions are not allowed in the world room",
            ));
        }
        if mentions.len() > model::MAX_MENTIONS {
            return Err(Error::invalid_message(format!(
                "at most {} mentions per message",
                model::MAX_MENTIONS
            )));
        }
        if mentions.iter().any(|id| *id <= 0) {
            return Err(Error::invalid_message("mentions must be user ids"));
        }
        if mention_all {
            if meta.r#type != pb::ConversationType::Group as i32 {
                return Err(Error::invalid_message("mentioning everyone is for groups"));
            }
            let group = self.ports.store.group(meta.group_id).await?;
            if !matches!(
                role_of(&group, sender_id),
                Some(pb::GroupRole::Owner | pb::GroupRole::Admin)
            ) {
                return Err(Error::forbidden(
                    "only the owner or an admin can mention everyone",
                ));
            }
        }
        Ok(())
    }

    /// The conversation, when `user_id` is a member of it: `INVALID_MESSAGE` without an id,
    /// `CONVERSATION_NOT_FOUND`, or the not-a-member error. Single chats are answered from
    /// memory after their first time.
    pub(crate) async fn member_conversation(
        &self,
        user_id: i64,
        conversation_id: &str,
    ) -> Result<pb::ConversationMeta> {
        if conversation_id.is_empty() {
            return Err(Error::invalid_message("conversationId is required"));
        }
        if let Some(meta) = self.singles.get(conversation_id) {
            return if user_id == meta.user_a || user_id == meta.user_b {
                Ok(meta)
            } else {
                Err(not_a_member())
            };
        }
        let meta = self.ports.store.conversation(conversation_id).await?;
        self.ensure_member(&meta, user_id).await?;
        self.singles.remember(&meta);
        Ok(meta)
    }
}

/// The longest page of a user search, and its default size.
const SEARCH_MAX_SIZE: i64 = 50;
const SEARCH_DEFAULT_SIZE: i64 = 20;

pub(super) async fn search_users(
    svc: &LogicService,
    req: pb::CallerSearchUsersRequest,
) -> Result<pb::UserPage> {
    svc.searches
        .take(&req.caller_id)
        .map_err(|wait| Error::rate_limited("too many searches: slow down", wait))?;
    let query = req.query.trim();
    if query.is_empty() {
        return Err(Error::invalid("q (a username prefix) is required"));
    }
    if char_len(query) > 20 {
        return Err(Error::invalid(
            "q must be at most 20 characters (a username's length)",
        ));
    }
    // the prefix as names are stored (NFKC); a character no name may hold is a 400
    let prefix = model::normalize_username(query)?;
    let size = super::page_size(
        req.after_user_id,
        req.size,
        SEARCH_DEFAULT_SIZE,
        SEARCH_MAX_SIZE,
    )?;
    let mut users = svc
        .ports
        .store
        .search_users(&prefix, req.after_user_id, size + 1)
        .await?;
    let has_more = users.len() as i64 > size;
    users.truncate(size as usize);
    Ok(pb::UserPage { users, has_more })
}

pub(super) async fn get_user(svc: &LogicService, req: pb::GetUserRequest) -> Result<pb::User> {
    if req.user_id > 0 {
        svc.ports.store.user(req.user_id).await
    } else if !req.username.is_empty() {
        let name = model::normalize_username(&req.username).unwrap_or(req.username);
        svc.ports.store.user_by_name(&name).await
    } else {
        Err(Error::invalid("give a user id or a username"))
    }
}

pub(super) async fn online_status(
    svc: &LogicService,
    req: pb::CallerRequest,
) -> Result<pb::OnlineStatusList> {
    let peers = svc.ports.store.peer_ids(req.caller_id).await?;
    let presence = presence_or_unknown(svc.ports.cache.as_ref(), &peers).await?;
    Ok(pb::OnlineStatusList {
        statuses: peers
            .into_iter()
            .map(|user_id| pb::OnlineStatus {
                user_id,
                online: presence.contains_key(&user_id),
            })
            .collect(),
    })
}

pub(super) async fn list_conversations(
    svc: &LogicService,
    req: pb::CallerRequest,
) -> Result<pb::ConversationList> {
    let mut conversations = svc.ports.store.conversations(req.caller_id).await?;
    // single chats the user deleted stay out until a new message
    conversations.retain(|c| !c.hidden);
    Ok(pb::ConversationList { conversations })
}

pub(super) async fn create_single_conversation(
    svc: &LogicService,
    req: pb::TargetUserRequest,
) -> Result<pb::ConversationView> {
    let caller = svc.caller(req.caller_id).await?;
    if caller.is_guest {
        return Err(Error::forbidden("guests cannot start conversations"));
    }
    if req.target_user_id == req.caller_id {
        return Err(Error::invalid("cannot start a conversation with yourself"));
    }
    let meta = svc
        .ports
        .store
        .single_conversation(req.caller_id, req.target_user_id)
        .await?;
    svc.view_of(req.caller_id, &meta.conversation_id).await
}

pub(super) async fn get_messages(
    svc: &LogicService,
    req: pb::GetMessagesRequest,
) -> Result<pb::HistoryPage> {
    let meta = svc.ports.store.conversation(&req.conversation_id).await?;
    svc.ensure_member(&meta, req.caller_id).await?;
    svc.ports
        .store
        .messages(pb::HistoryRequest {
            conversation_id: req.conversation_id,
            page: req.page,
            size: req.size,
            after_seq: req.after_seq,
            before_seq: req.before_seq,
        })
        .await
}

pub(super) async fn mark_read(
    svc: &LogicService,
    req: pb::CallerMarkReadRequest,
) -> Result<pb::ReadPointer> {
    if req.seq_id < 0 {
        return Err(Error::invalid("seqId must not be negative"));
    }
    let pointer = svc
        .ports
        .store
        .mark_read(req.caller_id, &req.conversation_id, req.seq_id)
        .await?;
    // in a group, the senders hear of it (batched per conversation)
    if req.conversation_id.starts_with(model::GROUP_ID_PREFIX) {
        svc.receipts
            .record(&req.conversation_id, req.caller_id, pointer.read_seq);
    }
    Ok(pointer)
}

pub(super) async fn list_friends(
    svc: &LogicService,
    req: pb::CallerRequest,
) -> Result<pb::FriendList> {
    let friends = svc.ports.store.friends(req.caller_id).await?;
    let ids: Vec<i64> = friends.iter().map(|f| f.user_id).collect();
    let presence = presence_or_unknown(svc.ports.cache.as_ref(), &ids).await?;
    Ok(pb::FriendList {
        friends: friends
            .into_iter()
            .map(|user| pb::Friend {
                online: presence.contains_key(&user.user_id),
                user: Some(user),
            })
            .collect(),
    })
}

pub(super) async fn create_group(
    svc: &LogicService,
    req: pb::CallerCreateGroupRequest,
) -> Result<pb::GroupCreated> {
    let caller = svc.caller(req.caller_id).await?;
    if caller.is_guest {
        return Err(Error::forbidden("guests cannot create groups"));
    }
    let name = super::members::check_group_name(&req.group_name)?;
    check_member_list(&req.member_ids)?;
    check_avatar(&req.avatar)?;
    let group = svc
        .ports
        .store
        .create_group(pb::CreateGroupRequest {
            owner_id: req.caller_id,
            group_name: name,
            avatar: req.avatar,
            member_ids: req.member_ids,
        })
        .await?;
    let conversation = svc.view_of(req.caller_id, &group.conversation_id).await?;
    Ok(pb::GroupCreated {
        group: Some(group),
        conversation: Some(conversation),
    })
}

pub(super) async fn get_group(
    svc: &LogicService,
    req: pb::CallerGroupRequest,
) -> Result<pb::Group> {
    let group = svc.ports.store.group(req.group_id).await?;
    if role_of(&group, req.caller_id).is_none() {
        return Err(Error::forbidden("you are not a member of this group"));
    }
    Ok(group)
}

pub(super) async fn add_group_members(
    svc: &LogicService,
    req: pb::CallerGroupMembersRequest,
) -> Result<pb::Group> {
    let group = svc.ports.store.group(req.group_id).await?;
    Ok(
        super::members::add(svc, req.caller_id, group, &req.user_ids)
            .await?
            .0,
    )
}

pub(super) async fn remove_group_member(
    svc: &LogicService,
    req: pb::CallerGroupMemberRequest,
) -> Result<pb::Group> {
    let group = svc.ports.store.group(req.group_id).await?;
    super::members::remove(svc, req.caller_id, group, req.user_id).await
}
