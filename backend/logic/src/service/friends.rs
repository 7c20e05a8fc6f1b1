//! Profiles and friends with consent (GoChat 2.0): a request, the target's answer, and the
//! `friend-request` events that tell each side.

use ringchat_core::model::{REQUEST_ACCEPTED, REQUEST_BLOCKED, REQUEST_PENDING, REQUEST_REJECTED};
use ringchat_core::{Error, Result};
use ringchat_proto as pb;

use super::rules::check_avatar;
use super::{char_len, LogicService};

/// Longest nickname and friend request message, in characters.
pub(super) const MAX_NICKNAME_CHARS: usize = 32;
pub(super) const MAX_REQUEST_MESSAGE_CHARS: usize = 200;
/// Most requests one list returns (the newest changes).
const MAX_LISTED_REQUESTS: i64 = 100;

/// Characters that render as nothing or reorder text: a name or message holding one can
/// pose as another.
pub(super) fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// A nickname: at most [`MAX_NICKNAME_CHARS`] characters once trimmed, no control or
/// invisible characters; empty clears it.
pub(super) fn check_nickname(raw: &str) -> Result<String> {
    let name = raw.trim();
    if char_len(name) > MAX_NICKNAME_CHARS {
        return Err(Error::invalid(format!(
            "nickname must be at most {MAX_NICKNAME_CHARS} characters"
        )));
    }
    if let Some(c) = name.chars().find(|&c| is_invisible(c)) {
        return Err(Error::invalid(format!(
            "nickname may not contain U+{:04X} (a control or invisible character)",
            c as u32
        )));
    }
    Ok(name.to_string())
}

/// A free text a user writes for others (a request's message, a group's description):
/// trimmed, at most `max` characters, lines allowed but no other control or invisible
/// character. `what` names the field in the error.
pub(super) fn check_text(raw: &str, what: &str, max: usize) -> Result<String> {
    let text = raw.trim();
    if char_len(text) > max {
        return Err(Error::invalid(format!(
            "{what} must be at most {max} characters"
        )));
    }
    if text.chars().any(|c| c != '\n' && is_invisible(c)) {
        return Err(Error::invalid(format!(
            "{what} may not contain control or invisible characters"
        )));
    }
    Ok(text.to_string())
}

fn check_request_message(raw: &str) -> Result<String> {
    check_text(raw, "message", MAX_REQUEST_MESSAGE_CHARS)
}

pub(super) async fn update_profile(
    svc: &LogicService,
    req: pb::CallerUpdateProfileRequest,
) -> Result<pb::User> {
    if req.avatar.is_none() && req.nickname.is_none() {
        return Err(Error::invalid("give avatar, nickname or both"));
    }
    if let Some(avatar) = &req.avatar {
        check_avatar(avatar)?;
    }
    let nickname = req.nickname.as_deref().map(check_nickname).transpose()?;
    svc.ports
        .store
        .update_profile(pb::UpdateProfileRequest {
            user_id: req.caller_id,
            avatar: req.avatar,
            nickname,
        })
        .await
}

/// The v1 `POST /api/friends`: friends at once, or a request when consent is required.
pub(super) async fn add_friend(
    svc: &LogicService,
    req: pb::TargetUserRequest,
) -> Result<pb::FriendRequestResult> {
    if svc.friends_need_consent {
        return send_request(
            svc,
            pb::CallerFriendRequest {
                caller_id: req.caller_id,
                target_user_id: req.target_user_id,
                message: String::new(),
            },
        )
        .await;
    }
    registered_caller(svc, req.caller_id, req.target_user_id).await?;
    let meta = svc
        .ports
        .store
        .add_friend(req.caller_id, req.target_user_id)
        .await?;
    Ok(pb::FriendRequestResult {
        request: None,
        created: false,
        conversation: Some(svc.view_of(req.caller_id, &meta.conversation_id).await?),
    })
}

/// A registered caller befriending someone else: guests may not, nor may one oneself.
async fn registered_caller(svc: &LogicService, caller_id: i64, target_id: i64) -> Result<()> {
    let caller = svc.caller(caller_id).await?;
    if caller.is_guest {
        return Err(Error::forbidden("guests cannot add friends"));
    }
    if target_id == caller_id {
        return Err(Error::invalid("cannot befriend yourself"));
    }
    Ok(())
}

pub(super) async fn send_request(
    svc: &LogicService,
    req: pb::CallerFriendRequest,
) -> Result<pb::FriendRequestResult> {
    registered_caller(svc, req.caller_id, req.target_user_id).await?;
    let message = check_request_message(&req.message)?;
    // the target must exist before a request counts against the caller's rate
    svc.ports.store.user(req.target_user_id).await?;
    let store = &svc.ports.store;
    if store
        .friends(req.caller_id)
        .await?
        .iter()
        .any(|f| f.user_id == req.target_user_id)
    {
        return Err(Error::new(
            ringchat_core::ErrorCode::Conflict,
            format!("you are already friends with user {}", req.target_user_id),
        ));
    }
    // the target asked first: this request is the answer
    let theirs = store
        .friend_requests(pb::FriendRequestsQuery {
            user_id: req.caller_id,
            received: true,
            status: REQUEST_PENDING,
            limit: i64::MAX,
        })
        .await?
        .into_iter()
        .find(|r| r.requester_id == req.target_user_id);
    if let Some(theirs) = theirs {
        return accept(svc, req.caller_id, theirs.request_id).await;
    }
    svc.friend_requests
        .take(&req.caller_id)
        .map_err(|wait| Error::rate_limited("too many friend requests: slow down", wait))?;
    let sent = store
        .send_friend_request(pb::NewFriendRequest {
            requester_id: req.caller_id,
            target_id: req.target_user_id,
            message,
        })
        .await?;
    let request = sent
        .request
        .ok_or_else(|| Error::internal("the store returned no friend request"))?;
    match request.status {
        REQUEST_BLOCKED => Err(Error::forbidden(
            "this user does not take friend requests from you",
        )),
        // friends before (a friendship the store lost): make it whole again
        REQUEST_ACCEPTED => {
            let meta = store
                .add_friend(request.requester_id, request.target_id)
                .await?;
            Ok(pb::FriendRequestResult {
                conversation: Some(svc.view_of(req.caller_id, &meta.conversation_id).await?),
                request: Some(request),
                created: false,
            })
        }
        _ => {
            if sent.changed {
                tell(svc, request.target_id, &request).await?;
            }
            Ok(pb::FriendRequestResult {
                request: Some(request),
                created: sent.changed,
                conversation: None,
            })
        }
    }
}

pub(super) async fn list_requests(
    svc: &LogicService,
    req: pb::CallerFriendRequestsQuery,
) -> Result<pb::FriendRequestList> {
    if !(-1..=REQUEST_BLOCKED).contains(&req.status) {
        return Err(Error::invalid("status must be 0, 1, 2 or 3"));
    }
    Ok(pb::FriendRequestList {
        requests: svc
            .ports
            .store
            .friend_requests(pb::FriendRequestsQuery {
                user_id: req.caller_id,
                received: req.received,
                status: req.status,
                limit: MAX_LISTED_REQUESTS,
            })
            .await?,
    })
}

pub(super) async fn answer_request(
    svc: &LogicService,
    req: pb::CallerFriendRequestAnswer,
) -> Result<pb::FriendRequestResult> {
    let status = match req.action.as_str() {
        "accept" => return accept(svc, req.caller_id, req.request_id).await,
        "reject" => REQUEST_REJECTED,
        "block" => REQUEST_BLOCKED,
        other => {
            return Err(Error::invalid(format!(
                "action must be accept, reject or block, not {other:?}"
            )))
        }
    };
    let request = svc
        .ports
        .store
        .answer_friend_request(pb::FriendRequestAnswer {
            request_id: req.request_id,
            target_id: req.caller_id,
            status,
        })
        .await?;
    // a block is not announced to the one blocked
    if status == REQUEST_REJECTED {
        tell(svc, request.requester_id, &request).await?;
    }
    Ok(pb::FriendRequestResult {
        request: Some(request),
        created: false,
        conversation: None,
    })
}

/// Accepts a request to `caller_id` and makes the two friends (both steps are idempotent:
/// a retry after a failure between them completes it).
async fn accept(
    svc: &LogicService,
    caller_id: i64,
    request_id: i64,
) -> Result<pb::FriendRequestResult> {
    let request = svc
        .ports
        .store
        .answer_friend_request(pb::FriendRequestAnswer {
            request_id,
            target_id: caller_id,
            status: REQUEST_ACCEPTED,
        })
        .await?;
    let meta = svc
        .ports
        .store
        .add_friend(request.requester_id, request.target_id)
        .await?;
    tell(svc, request.requester_id, &request).await?;
    Ok(pb::FriendRequestResult {
        conversation: Some(svc.view_of(caller_id, &meta.conversation_id).await?),
        request: Some(request),
        created: false,
    })
}

/// A `friend-request` event to `user_id`'s connections.
async fn tell(svc: &LogicService, user_id: i64, request: &pb::FriendRequest) -> Result<()> {
    svc.tell_members(
        &[user_id],
        &user_id.to_string(),
        pb::notice::Event::FriendRequest(request.clone()),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nicknames_are_bounded_and_visible() {
        assert_eq!(check_nickname("  Zoë 🐙 ").unwrap(), "Zoë 🐙");
        assert_eq!(check_nickname("").unwrap(), "");
        assert!(check_nickname(&"n".repeat(MAX_NICKNAME_CHARS)).is_ok());
        assert!(check_nickname(&"n".repeat(MAX_NICKNAME_CHARS + 1)).is_err());
        for bad in ["a\u{202e}b", "a\u{200b}", "a\nb", "a\u{7}"] {
            assert!(check_nickname(bad).is_err(), "{bad:?}");
        }
        assert!(check_request_message("hi\nthere").is_ok());
        assert!(check_request_message("a\u{202e}").is_err());
        assert!(check_request_message(&"m".repeat(MAX_REQUEST_MESSAGE_CHARS + 1)).is_err());
    }
}
