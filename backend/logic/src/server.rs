//! The im-logic gRPC service: forwarding to any [`LogicApi`], errors mapped in one place.

use std::future::Future;
use std::sync::Arc;

use pb::logic_server::{Logic, LogicServer};
use ringchat_observe::grpc::GrpcMetrics;
use ringchat_proto as pb;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

use crate::api::LogicApi;

pub struct LogicGrpc {
    api: Arc<dyn LogicApi>,
}

impl LogicGrpc {
    pub fn new(api: Arc<dyn LogicApi>) -> Self {
        LogicGrpc { api }
    }
}

/// Runs the im-logic gRPC server on an already-bound listener until `shutdown` resolves.
pub async fn serve(
    api: Arc<dyn LogicApi>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    serve_with(api, listener, &GrpcMetrics::new(), shutdown).await
}

/// As [`serve`], measuring every call (rate, latency, errors per method) into `metrics`.
pub async fn serve_with(
    api: Arc<dyn LogicApi>,
    listener: TcpListener,
    metrics: &GrpcMetrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .layer(metrics.layer())
        .add_service(ringchat_core::trace::TracedService::new(LogicServer::new(
            LogicGrpc::new(api),
        )))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
}

type R<T> = Result<Response<T>, Status>;

fn ok<T>(r: ringchat_core::Result<T>) -> R<T> {
    r.map(Response::new).map_err(Status::from)
}

fn empty(r: ringchat_core::Result<()>) -> R<pb::Empty> {
    ok(r.map(|()| pb::Empty {}))
}

#[tonic::async_trait]
impl Logic for LogicGrpc {
    async fn register(&self, r: Request<pb::RegisterRequest>) -> R<pb::User> {
        ok(self.api.register(r.into_inner()).await)
    }
    async fn login(&self, r: Request<pb::LoginRequest>) -> R<pb::AuthResponse> {
        ok(self.api.login(r.into_inner()).await)
    }
    async fn guest(&self, r: Request<pb::GuestRequest>) -> R<pb::AuthResponse> {
        ok(self.api.guest(r.into_inner()).await)
    }
    async fn logout(&self, r: Request<pb::TokenRequest>) -> R<pb::Empty> {
        empty(self.api.logout(r.into_inner()).await)
    }
    async fn refresh(&self, r: Request<pb::TokenRequest>) -> R<pb::AuthResponse> {
        ok(self.api.refresh(r.into_inner()).await)
    }
    async fn typing(&self, r: Request<pb::CallerTypingRequest>) -> R<pb::Empty> {
        empty(self.api.typing(r.into_inner()).await)
    }
    async fn authenticate(&self, r: Request<pb::TokenRequest>) -> R<pb::Session> {
        ok(self.api.authenticate(r.into_inner()).await)
    }
    async fn get_user(&self, r: Request<pb::GetUserRequest>) -> R<pb::User> {
        ok(self.api.get_user(r.into_inner()).await)
    }
    async fn search_users(&self, r: Request<pb::CallerSearchUsersRequest>) -> R<pb::UserPage> {
        ok(self.api.search_users(r.into_inner()).await)
    }
    async fn online_status(&self, r: Request<pb::CallerRequest>) -> R<pb::OnlineStatusList> {
        ok(self.api.online_status(r.into_inner()).await)
    }
    async fn list_conversations(&self, r: Request<pb::CallerRequest>) -> R<pb::ConversationList> {
        ok(self.api.list_conversations(r.into_inner()).await)
    }
    async fn create_single_conversation(
        &self,
        r: Request<pb::TargetUserRequest>,
    ) -> R<pb::ConversationView> {
        ok(self.api.create_single_conversation(r.into_inner()).await)
    }
    async fn get_messages(&self, r: Request<pb::GetMessagesRequest>) -> R<pb::HistoryPage> {
        ok(self.api.get_messages(r.into_inner()).await)
    }
    async fn mark_read(&self, r: Request<pb::CallerMarkReadRequest>) -> R<pb::ReadPointer> {
        ok(self.api.mark_read(r.into_inner()).await)
    }
    async fn send_message(&self, r: Request<pb::SendMessageRequest>) -> R<pb::ChatMessage> {
        ok(self.api.send_message(r.into_inner()).await)
    }
    async fn update_profile(&self, r: Request<pb::CallerUpdateProfileRequest>) -> R<pb::User> {
        ok(self.api.update_profile(r.into_inner()).await)
    }
    async fn add_friend(&self, r: Request<pb::TargetUserRequest>) -> R<pb::FriendRequestResult> {
        ok(self.api.add_friend(r.into_inner()).await)
    }
    async fn send_friend_request(
        &self,
        r: Request<pb::CallerFriendRequest>,
    ) -> R<pb::FriendRequestResult> {
        ok(self.api.send_friend_request(r.into_inner()).await)
    }
    async fn list_friend_requests(
        &self,
        r: Request<pb::CallerFriendRequestsQuery>,
    ) -> R<pb::FriendRequestList> {
        ok(self.api.list_friend_requests(r.into_inner()).await)
    }
    async fn answer_friend_request(
        &self,
        r: Request<pb::CallerFriendRequestAnswer>,
    ) -> R<pb::FriendRequestResult> {
        ok(self.api.answer_friend_request(r.into_inner()).await)
    }
    async fn list_friends(&self, r: Request<pb::CallerRequest>) -> R<pb::FriendList> {
        ok(self.api.list_friends(r.into_inner()).await)
    }
    async fn create_group(&self, r: Request<pb::CallerCreateGroupRequest>) -> R<pb::GroupCreated> {
        ok(self.api.create_group(r.into_inner()).await)
    }
    async fn get_group(&self, r: Request<pb::CallerGroupRequest>) -> R<pb::Group> {
        ok(self.api.get_group(r.into_inner()).await)
    }
    async fn add_group_members(&self, r: Request<pb::CallerGroupMembersRequest>) -> R<pb::Group> {
        ok(self.api.add_group_members(r.into_inner()).await)
    }
    async fn remove_group_member(&self, r: Request<pb::CallerGroupMemberRequest>) -> R<pb::Group> {
        ok(self.api.remove_group_member(r.into_inner()).await)
    }
    async fn amend_message(
        &self,
        r: Request<pb::CallerAmendMessageRequest>,
    ) -> R<pb::AmendedMessage> {
        ok(self.api.amend_message(r.into_inner()).await)
    }
    async fn message_readers(&self, r: Request<pb::CallerReadersRequest>) -> R<pb::ReaderPage> {
        ok(self.api.message_readers(r.into_inner()).await)
    }
    async fn get_conversation(
        &self,
        r: Request<pb::CallerConversationRequest>,
    ) -> R<pb::ConversationDetails> {
        ok(self.api.get_conversation(r.into_inner()).await)
    }
    async fn update_conversation(
        &self,
        r: Request<pb::CallerUpdateConversationRequest>,
    ) -> R<pb::ConversationDetails> {
        ok(self.api.update_conversation(r.into_inner()).await)
    }
    async fn delete_conversation(
        &self,
        r: Request<pb::CallerConversationRequest>,
    ) -> R<pb::ConversationDeleted> {
        ok(self.api.delete_conversation(r.into_inner()).await)
    }
    async fn list_members(&self, r: Request<pb::CallerMembersQuery>) -> R<pb::MemberPage> {
        ok(self.api.list_members(r.into_inner()).await)
    }
    async fn add_members(
        &self,
        r: Request<pb::CallerConversationMembersRequest>,
    ) -> R<pb::MemberPage> {
        ok(self.api.add_members(r.into_inner()).await)
    }
    async fn set_member_role(&self, r: Request<pb::CallerMemberRoleRequest>) -> R<pb::GroupMember> {
        ok(self.api.set_member_role(r.into_inner()).await)
    }
    async fn remove_member(&self, r: Request<pb::CallerConversationMemberRequest>) -> R<pb::Empty> {
        ok(self
            .api
            .remove_member(r.into_inner())
            .await
            .map(|()| pb::Empty {}))
    }
    async fn user_connected(&self, r: Request<pb::PresenceRequest>) -> R<pb::Empty> {
        empty(self.api.user_connected(r.into_inner()).await)
    }
    async fn user_disconnected(&self, r: Request<pb::PresenceRequest>) -> R<pb::Empty> {
        empty(self.api.user_disconnected(r.into_inner()).await)
    }
    async fn heartbeat(&self, r: Request<pb::HeartbeatRequest>) -> R<pb::Empty> {
        empty(self.api.heartbeat(r.into_inner()).await)
    }
}
