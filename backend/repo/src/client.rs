//! [`GrpcStore`]: the [`Store`] port implemented by calls to a remote im-repo. Calls made
//! in a trace carry its id (`x-trace-id`, see [`ringchat_core::trace`]).

use async_trait::async_trait;
use pb::repo_client::RepoClient;
use ringchat_core::ports::Store;
use ringchat_core::trace::{self, Inject};
use ringchat_core::{Error, Result};
use ringchat_proto as pb;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

type Client = RepoClient<InterceptedService<Channel, Inject>>;

#[derive(Clone)]
pub struct GrpcStore {
    client: Client,
}

impl GrpcStore {
    /// A lazily connecting client: the first call connects, later calls reconnect as needed.
    pub fn connect_lazy(url: &str) -> Result<Self> {
        let endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| Error::invalid(format!("repo url {url:?}: {e}")))?
            .connect_timeout(std::time::Duration::from_secs(5))
            .tcp_nodelay(true);
        Ok(Self::from_channel(endpoint.connect_lazy()))
    }

    /// A client over a given channel (for instance one balanced over the instances that
    /// discovery lists).
    pub fn from_channel(channel: Channel) -> Self {
        GrpcStore {
            client: RepoClient::with_interceptor(channel, trace::inject as Inject)
                .max_decoding_message_size(16 * 1024 * 1024),
        }
    }

    fn c(&self) -> Client {
        self.client.clone()
    }
}

fn unwrap<T>(r: std::result::Result<tonic::Response<T>, tonic::Status>) -> Result<T> {
    r.map(tonic::Response::into_inner).map_err(Error::from)
}

#[async_trait]
impl Store for GrpcStore {
    async fn create_user(&self, req: pb::CreateUserRequest) -> Result<pb::User> {
        unwrap(self.c().create_user(req).await)
    }
    async fn credentials(&self, username: &str) -> Result<pb::Credentials> {
        unwrap(
            self.c()
                .get_credentials(pb::UsernameRequest {
                    username: username.into(),
                })
                .await,
        )
    }
    async fn user(&self, user_id: i64) -> Result<pb::User> {
        unwrap(self.c().get_user(pb::UserIdRequest { user_id }).await)
    }
    async fn user_by_name(&self, username: &str) -> Result<pb::User> {
        unwrap(
            self.c()
                .get_user_by_name(pb::UsernameRequest {
                    username: username.into(),
                })
                .await,
        )
    }
    async fn users(&self, user_ids: &[i64]) -> Result<Vec<pb::User>> {
        unwrap(
            self.c()
                .get_users(pb::UserIdsRequest {
                    user_ids: user_ids.to_vec(),
                })
                .await,
        )
        .map(|l| l.users)
    }
    async fn search_users(
        &self,
        prefix: &str,
        after_user_id: i64,
        limit: i64,
    ) -> Result<Vec<pb::User>> {
        unwrap(
            self.c()
                .search_users(pb::SearchUsersRequest {
                    prefix: prefix.to_string(),
                    after_user_id,
                    limit,
                })
                .await,
        )
        .map(|l| l.users)
    }
    async fn update_profile(&self, req: pb::UpdateProfileRequest) -> Result<pb::User> {
        unwrap(self.c().update_profile(req).await)
    }
    async fn send_friend_request(
        &self,
        req: pb::NewFriendRequest,
    ) -> Result<pb::FriendRequestSent> {
        unwrap(self.c().send_friend_request(req).await)
    }
    async fn friend_requests(&self, q: pb::FriendRequestsQuery) -> Result<Vec<pb::FriendRequest>> {
        unwrap(self.c().list_friend_requests(q).await).map(|l| l.requests)
    }
    async fn answer_friend_request(&self, a: pb::FriendRequestAnswer) -> Result<pb::FriendRequest> {
        unwrap(self.c().answer_friend_request(a).await)
    }
    async fn add_friend(&self, user_id: i64, other_user_id: i64) -> Result<pb::ConversationMeta> {
        unwrap(
            self.c()
                .add_friend(pb::UserPairRequest {
                    user_id,
                    other_user_id,
                })
                .await,
        )
    }
    async fn friends(&self, user_id: i64) -> Result<Vec<pb::User>> {
        unwrap(self.c().list_friends(pb::UserIdRequest { user_id }).await).map(|l| l.users)
    }
    async fn single_conversation(
        &self,
        user_id: i64,
        other_user_id: i64,
    ) -> Result<pb::ConversationMeta> {
        unwrap(
            self.c()
                .single_conversation(pb::UserPairRequest {
                    user_id,
                    other_user_id,
                })
                .await,
        )
    }
    async fn create_group(&self, req: pb::CreateGroupRequest) -> Result<pb::Group> {
        unwrap(self.c().create_group(req).await)
    }
    async fn group(&self, group_id: i64) -> Result<pb::Group> {
        unwrap(self.c().get_group(pb::GroupIdRequest { group_id }).await)
    }
    async fn add_group_members(
        &self,
        group_id: i64,
        user_ids: &[i64],
        role: pb::GroupRole,
    ) -> Result<Vec<i64>> {
        unwrap(
            self.c()
                .add_group_members(pb::GroupMembersRequest {
                    group_id,
                    user_ids: user_ids.to_vec(),
                    role: role as i32,
                })
                .await,
        )
        .map(|l| l.user_ids)
    }
    async fn remove_group_member(&self, group_id: i64, user_id: i64) -> Result<bool> {
        unwrap(
            self.c()
                .remove_group_member(pb::GroupMemberRequest { group_id, user_id })
                .await,
        )
        .map(|r| r.removed)
    }
    async fn set_group_role(&self, group_id: i64, user_id: i64, role: pb::GroupRole) -> Result<()> {
        unwrap(
            self.c()
                .set_group_role(pb::GroupRoleRequest {
                    group_id,
                    user_id,
                    role: role as i32,
                })
                .await,
        )
        .map(|_| ())
    }
    async fn update_group(&self, req: pb::UpdateGroupRequest) -> Result<pb::Group> {
        unwrap(self.c().update_group(req).await)
    }
    async fn dissolve_group(&self, group_id: i64) -> Result<Vec<i64>> {
        unwrap(
            self.c()
                .dissolve_group(pb::GroupIdRequest { group_id })
                .await,
        )
        .map(|l| l.user_ids)
    }
    async fn hide_conversation(&self, conversation_id: &str, user_id: i64) -> Result<()> {
        unwrap(
            self.c()
                .hide_conversation(pb::MemberRequest {
                    conversation_id: conversation_id.to_string(),
                    user_id,
                })
                .await,
        )
        .map(|_| ())
    }
    async fn conversation(&self, conversation_id: &str) -> Result<pb::ConversationMeta> {
        unwrap(
            self.c()
                .get_conversation(pb::ConversationIdRequest {
                    conversation_id: conversation_id.into(),
                })
                .await,
        )
    }
    async fn is_member(&self, conversation_id: &str, user_id: i64) -> Result<bool> {
        unwrap(
            self.c()
                .is_member(pb::MemberRequest {
                    conversation_id: conversation_id.into(),
                    user_id,
                })
                .await,
        )
        .map(|m| m.member)
    }
    async fn member_ids(
        &self,
        conversation_id: &str,
        after_user_id: i64,
        limit: i64,
    ) -> Result<Vec<i64>> {
        unwrap(
            self.c()
                .list_member_ids(pb::MemberPageRequest {
                    conversation_id: conversation_id.into(),
                    after_user_id,
                    limit,
                })
                .await,
        )
        .map(|l| l.user_ids)
    }
    async fn conversations(&self, user_id: i64) -> Result<Vec<pb::ConversationView>> {
        unwrap(
            self.c()
                .list_conversations(pb::UserIdRequest { user_id })
                .await,
        )
        .map(|l| l.conversations)
    }
    async fn append(&self, messages: Vec<pb::MessageDraft>) -> Result<Vec<pb::AppendOutcome>> {
        unwrap(self.c().append(pb::AppendRequest { messages }).await).map(|r| r.outcomes)
    }
    async fn messages(&self, req: pb::HistoryRequest) -> Result<pb::HistoryPage> {
        unwrap(self.c().get_messages(req).await)
    }
    async fn message(&self, message_id: i64) -> Result<pb::ChatMessage> {
        unwrap(
            self.c()
                .get_message(pb::MessageIdRequest { message_id })
                .await,
        )
    }
    async fn amend_message(&self, req: pb::AmendMessageRequest) -> Result<pb::ChatMessage> {
        unwrap(self.c().amend_message(req).await)
    }
    async fn readers(&self, req: pb::ReadersRequest) -> Result<pb::Readers> {
        unwrap(self.c().list_readers(req).await)
    }
    async fn mark_read(
        &self,
        user_id: i64,
        conversation_id: &str,
        seq_id: i64,
    ) -> Result<pb::ReadPointer> {
        unwrap(
            self.c()
                .mark_read(pb::MarkReadRequest {
                    user_id,
                    conversation_id: conversation_id.into(),
                    seq_id,
                })
                .await,
        )
    }
    async fn peer_ids(&self, user_id: i64) -> Result<Vec<i64>> {
        unwrap(self.c().list_peer_ids(pb::UserIdRequest { user_id }).await).map(|l| l.user_ids)
    }
    async fn revoke_token(&self, token_id: &str, expires_at: i64) -> Result<bool> {
        unwrap(
            self.c()
                .revoke_token(pb::RevokedToken {
                    token_id: token_id.to_string(),
                    expires_at,
                })
                .await,
        )
        .map(|r| r.first)
    }
    async fn revoked_tokens(&self, now: i64) -> Result<Vec<pb::RevokedToken>> {
        unwrap(self.c().list_revoked_tokens(pb::RevokedSince { now }).await).map(|l| l.tokens)
    }
}
