//! [`LogicApi`]: what a gateway asks of im-logic. Implemented in-process by
//! [`crate::LogicService`] (embedded profile) and remotely by [`crate::GrpcLogic`].
//! The gRPC server serves any implementation, so both paths run the same code.

use async_trait::async_trait;
use ringchat_core::Result;
use ringchat_proto as pb;

#[async_trait]
pub trait LogicApi: Send + Sync + 'static {
    async fn register(&self, req: pb::RegisterRequest) -> Result<pb::User>;
    async fn login(&self, req: pb::LoginRequest) -> Result<pb::AuthResponse>;
    async fn guest(&self, req: pb::GuestRequest) -> Result<pb::AuthResponse>;
    async fn logout(&self, req: pb::TokenRequest) -> Result<()>;
    /// A new token for the same account; the presented one is revoked. `AUTH_FAILED` for a
    /// bad, expired or revoked token.
    async fn refresh(&self, req: pb::TokenRequest) -> Result<pb::AuthResponse>;
    /// The session a token stands for (user, token id, expiry); `AUTH_FAILED` for a bad,
    /// expired or revoked token.
    async fn authenticate(&self, req: pb::TokenRequest) -> Result<pb::Session>;

    async fn get_user(&self, req: pb::GetUserRequest) -> Result<pb::User>;
    async fn online_status(&self, req: pb::CallerRequest) -> Result<pb::OnlineStatusList>;
    /// Registered users by name prefix (guests never listed), paged by id; limited per
    /// caller.
    async fn search_users(&self, req: pb::CallerSearchUsersRequest) -> Result<pb::UserPage>;

    async fn list_conversations(&self, req: pb::CallerRequest) -> Result<pb::ConversationList>;
    async fn create_single_conversation(
        &self,
        req: pb::TargetUserRequest,
    ) -> Result<pb::ConversationView>;
    async fn get_messages(&self, req: pb::GetMessagesRequest) -> Result<pb::HistoryPage>;
    async fn mark_read(&self, req: pb::CallerMarkReadRequest) -> Result<pb::ReadPointer>;
    /// The synchronous (HTTP) send: durable when it returns, then delivered.
    async fn send_message(&self, req: pb::SendMessageRequest) -> Result<pb::ChatMessage>;
    /// Revokes or edits a message (see the client API's rules); the change is also a new
    /// message in the conversation's seq stream (type revoke or edit), delivered as one.
    async fn amend_message(&self, req: pb::CallerAmendMessageRequest)
        -> Result<pb::AmendedMessage>;
    /// Who has read a message, from the members' read pointers.
    async fn message_readers(&self, req: pb::CallerReadersRequest) -> Result<pb::ReaderPage>;
    /// Relays a member's typing state to the conversation's other online members (single
    /// chats and groups up to the large-group threshold); nothing is stored.
    async fn typing(&self, req: pb::CallerTypingRequest) -> Result<()>;

    /// Sets the caller's avatar and nickname (the fields given).
    async fn update_profile(&self, req: pb::CallerUpdateProfileRequest) -> Result<pb::User>;

    /// The v1 "add friend": friends at once, or a friend request when
    /// `logic.friends_need_consent` is set (the result has a conversation once friends).
    async fn add_friend(&self, req: pb::TargetUserRequest) -> Result<pb::FriendRequestResult>;
    /// A friend request to the target, who is told with a `friend-request` event; one that
    /// meets the target's own pending request to the caller accepts it instead.
    async fn send_friend_request(
        &self,
        req: pb::CallerFriendRequest,
    ) -> Result<pb::FriendRequestResult>;
    async fn list_friend_requests(
        &self,
        req: pb::CallerFriendRequestsQuery,
    ) -> Result<pb::FriendRequestList>;
    /// The target's answer (accept, reject, block); accepting makes the two friends.
    async fn answer_friend_request(
        &self,
        req: pb::CallerFriendRequestAnswer,
    ) -> Result<pb::FriendRequestResult>;
    async fn list_friends(&self, req: pb::CallerRequest) -> Result<pb::FriendList>;

    async fn create_group(&self, req: pb::CallerCreateGroupRequest) -> Result<pb::GroupCreated>;
    async fn get_group(&self, req: pb::CallerGroupRequest) -> Result<pb::Group>;
    async fn add_group_members(&self, req: pb::CallerGroupMembersRequest) -> Result<pb::Group>;
    async fn remove_group_member(&self, req: pb::CallerGroupMemberRequest) -> Result<pb::Group>;

    /// A conversation of the caller with a group's description, owner and the caller's role.
    async fn get_conversation(
        &self,
        req: pb::CallerConversationRequest,
    ) -> Result<pb::ConversationDetails>;
    /// Renames, describes or re-avatars a group (owner or admin); tells the members.
    async fn update_conversation(
        &self,
        req: pb::CallerUpdateConversationRequest,
    ) -> Result<pb::ConversationDetails>;
    /// Hides a single chat from the caller's list; dissolves a group (its owner) or leaves
    /// it (anyone else).
    async fn delete_conversation(
        &self,
        req: pb::CallerConversationRequest,
    ) -> Result<pb::ConversationDeleted>;
    /// A conversation's members by user id, paged.
    async fn list_members(&self, req: pb::CallerMembersQuery) -> Result<pb::MemberPage>;
    /// Adds members to a group (owner or admin); returns those added.
    async fn add_members(
        &self,
        req: pb::CallerConversationMembersRequest,
    ) -> Result<pb::MemberPage>;
    /// The owner sets a member's role (3: hands the group over).
    async fn set_member_role(&self, req: pb::CallerMemberRoleRequest) -> Result<pb::GroupMember>;
    /// Removes a member, or the caller leaves, with the role checks.
    async fn remove_member(&self, req: pb::CallerConversationMemberRequest) -> Result<()>;

    async fn user_connected(&self, req: pb::PresenceRequest) -> Result<()>;
    async fn user_disconnected(&self, req: pb::PresenceRequest) -> Result<()>;
    async fn heartbeat(&self, req: pb::HeartbeatRequest) -> Result<()>;
}
