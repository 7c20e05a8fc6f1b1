//! [`GrpcLogic`]: [`LogicApi`] implemented by calls to a remote im-logic. Calls made in a
//! trace carry its id (`x-trace-id`, see [`ringchat_core::trace`]).

use async_trait::async_trait;
use pb::logic_client::LogicClient;
use ringchat_core::trace::{self, Inject};
use ringchat_core::{Error, Result};
use ringchat_proto as pb;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

type Client = LogicClient<InterceptedService<Channel, Inject>>;

use crate::api::LogicApi;

#[derive(Clone)]
pub struct GrpcLogic {
    client: Client,
}

impl GrpcLogic {
    /// A lazily connecting client: the first call connects, later calls reconnect as needed.
    pub fn connect_lazy(url: &str) -> Result<Self> {
        let endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| Error::invalid(format!("logic url {url:?}: {e}")))?
            .connect_timeout(std::time::Duration::from_secs(5))
            .tcp_nodelay(true);
        Ok(Self::from_channel(endpoint.connect_lazy()))
    }

    /// A client over a given channel (for instance one balanced over the instances that
    /// discovery lists).
    pub fn from_channel(channel: Channel) -> Self {
        GrpcLogic {
            client: LogicClient::with_interceptor(channel, trace::inject as Inject),
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
impl LogicApi for GrpcLogic {
    async fn register(&self, req: pb::RegisterRequest) -> Result<pb::User> {
        unwrap(self.c().register(req).await)
    }
    async fn login(&self, req: pb::LoginRequest) -> Result<pb::AuthResponse> {
        unwrap(self.c().login(req).await)
    }
    async fn guest(&self, req: pb::GuestRequest) -> Result<pb::AuthResponse> {
        unwrap(self.c().guest(req).await)
    }
    async fn logout(&self, req: pb::TokenRequest) -> Result<()> {
        unwrap(self.c().logout(req).await).map(|_| ())
    }
    async fn refresh(&self, req: pb::TokenRequest) -> Result<pb::AuthResponse> {
        unwrap(self.c().refresh(req).await)
    }
    async fn typing(&self, req: pb::CallerTypingRequest) -> Result<()> {
        unwrap(self.c().typing(req).await).map(|_| ())
    }
    async fn authenticate(&self, req: pb::TokenRequest) -> Result<pb::Session> {
        unwrap(self.c().authenticate(req).await)
    }
    async fn get_user(&self, req: pb::GetUserRequest) -> Result<pb::User> {
        unwrap(self.c().get_user(req).await)
    }
    async fn online_status(&self, req: pb::CallerRequest) -> Result<pb::OnlineStatusList> {
        unwrap(self.c().online_status(req).await)
    }
    async fn search_users(&self, req: pb::CallerSearchUsersRequest) -> Result<pb::UserPage> {
        unwrap(self.c().search_users(req).await)
    }
    async fn list_conversations(&self, req: pb::CallerRequest) -> Result<pb::ConversationList> {
        unwrap(self.c().list_conversations(req).await)
    }
    async fn create_single_conversation(
        &self,
        req: pb::TargetUserRequest,
    ) -> Result<pb::ConversationView> {
        unwrap(self.c().create_single_conversation(req).await)
    }
    async fn get_messages(&self, req: pb::GetMessagesRequest) -> Result<pb::HistoryPage> {
        unwrap(self.c().get_messages(req).await)
    }
    async fn mark_read(&self, req: pb::CallerMarkReadRequest) -> Result<pb::ReadPointer> {
        unwrap(self.c().mark_read(req).await)
    }
    async fn send_message(&self, req: pb::SendMessageRequest) -> Result<pb::ChatMessage> {
        unwrap(self.c().send_message(req).await)
    }
    async fn update_profile(&self, req: pb::CallerUpdateProfileRequest) -> Result<pb::User> {
        unwrap(self.c().update_profile(req).await)
    }
    async fn add_friend(&self, req: pb::TargetUserRequest) -> Result<pb::FriendRequestResult> {
        unwrap(self.c().add_friend(req).await)
    }
    async fn send_friend_request(
        &self,
        req: pb::CallerFriendRequest,
    ) -> Result<pb::FriendRequestResult> {
        unwrap(self.c().send_friend_request(req).await)
    }
    async fn list_friend_requests(
        &self,
        req: pb::CallerFriendRequestsQuery,
    ) -> Result<pb::FriendRequestList> {
        unwrap(self.c().list_friend_requests(req).await)
    }
    async fn answer_friend_request(
        &self,
        req: pb::CallerFriendRequestAnswer,
    ) -> Result<pb::FriendRequestResult> {
        unwrap(self.c().answer_friend_request(req).await)
    }
    async fn list_friends(&self, req: pb::CallerRequest) -> Result<pb::FriendList> {
        unwrap(self.c().list_friends(req).await)
    }
    async fn create_group(&self, req: pb::CallerCreateGroupRequest) -> Result<pb::GroupCreated> {
        unwrap(self.c().create_group(req).await)
    }
    async fn get_group(&self, req: pb::CallerGroupRequest) -> Result<pb::Group> {
        unwrap(self.c().get_group(req).await)
    }
    async fn add_group_members(&self, req: pb::CallerGroupMembersRequest) -> Result<pb::Group> {
        unwrap(self.c().add_group_members(req).await)
    }
    async fn remove_group_member(&self, req: pb::CallerGroupMemberRequest) -> Result<pb::Group> {
        unwrap(self.c().remove_group_member(req).await)
    }
    async fn amend_message(
        &self,
        req: pb::CallerAmendMessageRequest,
    ) -> Result<pb::AmendedMessage> {
        unwrap(self.c().amend_message(req).await)
    }
    async fn message_readers(&self, req: pb::CallerReadersRequest) -> Result<pb::ReaderPage> {
        unwrap(self.c().message_readers(req).await)
    }
    async fn get_conversation(
        &self,
        req: pb::CallerConversationRequest,
    ) -> Result<pb::ConversationDetails> {
        unwrap(self.c().get_conversation(req).await)
    }
    async fn update_conversation(
        &self,
        req: pb::CallerUpdateConversationRequest,
    ) -> Result<pb::ConversationDetails> {
        unwrap(self.c().update_conversation(req).await)
    }
    async fn delete_conversation(
        &self,
        req: pb::CallerConversationRequest,
    ) -> Result<pb::ConversationDeleted> {
        unwrap(self.c().delete_conversation(req).await)
    }
    async fn list_members(&self, req: pb::CallerMembersQuery) -> Result<pb::MemberPage> {
        unwrap(self.c().list_members(req).await)
    }
    async fn add_members(
        &self,
        req: pb::CallerConversationMembersRequest,
    ) -> Result<pb::MemberPage> {
        unwrap(self.c().add_members(req).await)
    }
    async fn set_member_role(&self, req: pb::CallerMemberRoleRequest) -> Result<pb::GroupMember> {
        unwrap(self.c().set_member_role(req).await)
    }
    async fn remove_member(&self, req: pb::CallerConversationMemberRequest) -> Result<()> {
        unwrap(self.c().remove_member(req).await).map(|_| ())
    }
    async fn user_connected(&self, req: pb::PresenceRequest) -> Result<()> {
        unwrap(self.c().user_connected(req).await).map(|_| ())
    }
    async fn user_disconnected(&self, req: pb::PresenceRequest) -> Result<()> {
        unwrap(self.c().user_disconnected(req).await).map(|_| ())
    }
    async fn heartbeat(&self, req: pb::HeartbeatRequest) -> Result<()> {
        unwrap(self.c().heartbeat(req).await).map(|_| ())
    }
}
