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
    /// Relays a member's typing state to the conversation's other online members (single
    /// chats and groups up to the large-group threshold); nothing is stored.
    async fn typing(&self, req: pb::CallerTypingRequest) -> Result<()>;

    async fn add_friend(&self, req: pb::TargetUserRequest) -> Result<pb::ConversationView>;
    async fn list_friends(&self, req: pb::CallerRequest) -> Result<pb::FriendList>;

    async fn create_group(&self, req: pb::CallerCreateGroupRequest) -> Result<pb::GroupCreated>;
    async fn get_group(&self, req: pb::CallerGroupRequest) -> Result<pb::Group>;
    async fn add_group_members(&self, req: pb::CallerGroupMembersRequest) -> Result<pb::Group>;
    async fn remove_group_member(&self, req: pb::CallerGroupMemberRequest) -> Result<pb::Group>;

    async fn user_connected(&self, req: pb::PresenceRequest) -> Result<()>;
    async fn user_disconnected(&self, req: pb::PresenceRequest) -> Result<()>;
    async fn heartbeat(&self, req: pb::HeartbeatRequest) -> Result<()>;
}
