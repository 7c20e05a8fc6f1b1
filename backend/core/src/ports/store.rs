use async_trait::async_trait;
use ringchat_proto as pb;

use crate::error::Result;

/// The message store: users, friends, conversations, groups, members, messages, read
/// pointers and per-conversation sequence numbers.
///
/// It speaks the im-repo wire types so that the gRPC server and client are plain
/// forwarding; the im-repo gRPC client is itself an adapter of this port.
///
/// Contract highlights (pinned by [`crate::testkit::store`]):
/// - `seq_id` is per conversation, assigned in the append transaction, strictly +1, never
///   reused; `append` commits all its items in one transaction (group commit).
/// - `(sender, temp_message_id)` is unique: appending it again returns the original message
///   with `duplicate = true` and stores nothing.
/// - The sender's read pointer follows its own messages, so they never count as unread.
/// - Every user is a member of the world room (`"world"`) from creation on.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Fails with `USERNAME_TAKEN` if the name exists.
    async fn create_user(&self, req: pb::CreateUserRequest) -> Result<pb::User>;
    /// `USER_NOT_FOUND` if no such user.
    async fn credentials(&self, username: &str) -> Result<pb::Credentials>;
    async fn user(&self, user_id: i64) -> Result<pb::User>;
    async fn user_by_name(&self, username: &str) -> Result<pb::User>;
    /// The users that exist among `user_ids`, in id order.
    async fn users(&self, user_ids: &[i64]) -> Result<Vec<pb::User>>;
    /// Registered users (no guests) whose name starts with `prefix`, ASCII case ignored
    /// (`%`, `_` and `!` in it match themselves), in id order after `after_user_id`, at
    /// most `limit`.
    async fn search_users(
        &self,
        prefix: &str,
        after_user_id: i64,
        limit: i64,
    ) -> Result<Vec<pb::User>>;

    /// Sets the fields given (avatar, nickname) and returns the user; `USER_NOT_FOUND`.
    async fn update_profile(&self, req: pb::UpdateProfileRequest) -> Result<pb::User>;

    /// Friend requests, one per (requester, target): a new one is pending; asking again
    /// after a rejection reopens it (`changed`); a pending, accepted or blocked one is
    /// returned untouched. `USER_NOT_FOUND` if either user is missing.
    async fn send_friend_request(&self, req: pb::NewFriendRequest)
        -> Result<pb::FriendRequestSent>;
    /// A user's received or sent requests, newest change first, with both users.
    async fn friend_requests(&self, q: pb::FriendRequestsQuery) -> Result<Vec<pb::FriendRequest>>;
    /// The target's answer to a request: `NOT_FOUND` if it is not the target's, `CONFLICT`
    /// if it was answered otherwise already (the same answer again returns it). Accepting
    /// does not make friends: the caller does, with [`Store::add_friend`] (idempotent).
    async fn answer_friend_request(&self, a: pb::FriendRequestAnswer) -> Result<pb::FriendRequest>;

    /// Makes the two users friends (both ways) and returns their single conversation.
    async fn add_friend(&self, user_id: i64, other_user_id: i64) -> Result<pb::ConversationMeta>;
    async fn friends(&self, user_id: i64) -> Result<Vec<pb::User>>;
    /// The single conversation of two users, created on first use (idempotent); shown
    /// again in `user_id`'s list if hidden.
    async fn single_conversation(
        &self,
        user_id: i64,
        other_user_id: i64,
    ) -> Result<pb::ConversationMeta>;

    /// Creates a group and its conversation; the owner gets `OWNER`, members `MEMBER`.
    async fn create_group(&self, req: pb::CreateGroupRequest) -> Result<pb::Group>;
    /// `GROUP_NOT_FOUND` if missing.
    async fn group(&self, group_id: i64) -> Result<pb::Group>;
    /// Adds members (existing ones are left as they are); returns the ids actually added.
    async fn add_group_members(
        &self,
        group_id: i64,
        user_ids: &[i64],
        role: pb::GroupRole,
    ) -> Result<Vec<i64>>;
    async fn remove_group_member(&self, group_id: i64, user_id: i64) -> Result<bool>;
    /// `NOT_FOUND` if the user is not a member. Making a member the `OWNER` also makes the
    /// owner before an `ADMIN` and the group's `owner_id` the new one (one transaction).
    async fn set_group_role(&self, group_id: i64, user_id: i64, role: pb::GroupRole) -> Result<()>;
    /// Sets the fields given (name, description, avatar); `GROUP_NOT_FOUND`.
    async fn update_group(&self, req: pb::UpdateGroupRequest) -> Result<pb::Group>;
    /// Deletes the group with its conversation, messages and memberships; returns the ids
    /// of the members it had. `GROUP_NOT_FOUND`.
    async fn dissolve_group(&self, group_id: i64) -> Result<Vec<i64>>;
    /// Hides a conversation from the user's list (`ConversationView::hidden`) until a
    /// message after its current last one, or until [`Store::single_conversation`] opens it
    /// for the user again. `CONVERSATION_NOT_FOUND` unless the user is a member.
    async fn hide_conversation(&self, conversation_id: &str, user_id: i64) -> Result<()>;

    /// `CONVERSATION_NOT_FOUND` if missing.
    async fn conversation(&self, conversation_id: &str) -> Result<pb::ConversationMeta>;
    async fn is_member(&self, conversation_id: &str, user_id: i64) -> Result<bool>;
    /// Member ids in ascending order, after `after_user_id`, at most `limit`.
    async fn member_ids(
        &self,
        conversation_id: &str,
        after_user_id: i64,
        limit: i64,
    ) -> Result<Vec<i64>>;
    /// The user's conversations, the world room first, then by last activity, each with
    /// its unread and mention counts (mentions among the newest
    /// [`crate::model::MENTION_SCAN`] unread messages; none in the world room).
    async fn conversations(&self, user_id: i64) -> Result<Vec<pb::ConversationView>>;

    /// Appends messages in one transaction. Each item gets its own outcome; an item whose
    /// conversation does not exist is rejected without affecting the others.
    async fn append(&self, messages: Vec<pb::MessageDraft>) -> Result<Vec<pb::AppendOutcome>>;
    async fn messages(&self, req: pb::HistoryRequest) -> Result<pb::HistoryPage>;
    /// A message by id; `NOT_FOUND`.
    async fn message(&self, message_id: i64) -> Result<pb::ChatMessage>;
    /// Changes a stored message in place: a revoke empties its content and marks it
    /// `revoked`; an edit sets the content and marks it `edited`. Its seq, sender and time
    /// stay. `NOT_FOUND`.
    async fn amend_message(&self, req: pb::AmendMessageRequest) -> Result<pb::ChatMessage>;
    /// The members whose read pointer is at `seq` or beyond (see [`pb::ReadersRequest`]).
    async fn readers(&self, req: pb::ReadersRequest) -> Result<pb::Readers>;
    /// Moves the read pointer forward to `seq_id` (0 = latest); never backwards.
    async fn mark_read(
        &self,
        user_id: i64,
        conversation_id: &str,
        seq_id: i64,
    ) -> Result<pb::ReadPointer>;
    /// Friends and group peers of a user (who sees its presence), without the user.
    async fn peer_ids(&self, user_id: i64) -> Result<Vec<i64>>;

    /// Records a revoked token until `expires_at` (unix seconds); idempotent.
    /// `true` when this call revoked it (it was not revoked before): of concurrent
    /// revocations of one token exactly one is first, which makes a refresh single-use.
    async fn revoke_token(&self, token_id: &str, expires_at: i64) -> Result<bool>;
    /// The revocations still in force at `now`; expired ones may be forgotten.
    async fn revoked_tokens(&self, now: i64) -> Result<Vec<pb::RevokedToken>>;
}
