//! The im-repo gRPC service: plain forwarding to a [`Store`], errors mapped in one place
//! (`ringchat_core::Error` -> `tonic::Status`).

use std::future::Future;
use std::sync::Arc;

use pb::repo_server::{Repo, RepoServer};
use ringchat_core::ports::Store;
use ringchat_observe::grpc::GrpcMetrics;
use ringchat_proto as pb;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

/// Serves `store` over gRPC.
pub struct RepoService {
    store: Arc<dyn Store>,
}

impl RepoService {
    pub fn new(store: Arc<dyn Store>) -> Self {
        RepoService { store }
    }

    pub fn into_server(self) -> RepoServer<Self> {
        RepoServer::new(self).max_decoding_message_size(16 * 1024 * 1024)
    }
}

/// Runs the im-repo gRPC server on an already-bound listener until `shutdown` resolves.
pub async fn serve(
    store: Arc<dyn Store>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    serve_with(store, listener, &GrpcMetrics::new(), shutdown).await
}

/// As [`serve`], measuring every call (rate, latency, errors per method) into `metrics`.
pub async fn serve_with(
    store: Arc<dyn Store>,
    listener: TcpListener,
    metrics: &GrpcMetrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .layer(metrics.layer())
        .add_service(ringchat_core::trace::TracedService::new(
            RepoService::new(store).into_server(),
        ))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
}

type R<T> = Result<Response<T>, Status>;

fn ok<T>(r: ringchat_core::Result<T>) -> R<T> {
    r.map(Response::new).map_err(Status::from)
}

fn role(r: i32) -> Result<pb::GroupRole, Status> {
    match pb::GroupRole::try_from(r) {
        Ok(pb::GroupRole::Unspecified) | Err(_) => {
            Err(ringchat_core::Error::invalid(format!("unknown group role {r}")).into())
        }
        Ok(role) => Ok(role),
    }
}

#[tonic::async_trait]
impl Repo for RepoService {
    async fn create_user(&self, r: Request<pb::CreateUserRequest>) -> R<pb::User> {
        ok(self.store.create_user(r.into_inner()).await)
    }
    async fn get_credentials(&self, r: Request<pb::UsernameRequest>) -> R<pb::Credentials> {
        ok(self.store.credentials(&r.into_inner().username).await)
    }
    async fn get_user(&self, r: Request<pb::UserIdRequest>) -> R<pb::User> {
        ok(self.store.user(r.into_inner().user_id).await)
    }
    async fn get_user_by_name(&self, r: Request<pb::UsernameRequest>) -> R<pb::User> {
        ok(self.store.user_by_name(&r.into_inner().username).await)
    }
    async fn get_users(&self, r: Request<pb::UserIdsRequest>) -> R<pb::UserList> {
        ok(self
            .store
            .users(&r.into_inner().user_ids)
            .await
            .map(|users| pb::UserList { users }))
    }
    async fn search_users(&self, r: Request<pb::SearchUsersRequest>) -> R<pb::UserList> {
        let r = r.into_inner();
        ok(self
            .store
            .search_users(&r.prefix, r.after_user_id, r.limit)
            .await
            .map(|users| pb::UserList { users }))
    }
    async fn update_profile(&self, r: Request<pb::UpdateProfileRequest>) -> R<pb::User> {
        ok(self.store.update_profile(r.into_inner()).await)
    }
    async fn send_friend_request(
        &self,
        r: Request<pb::NewFriendRequest>,
    ) -> R<pb::FriendRequestSent> {
        ok(self.store.send_friend_request(r.into_inner()).await)
    }
    async fn list_friend_requests(
        &self,
        r: Request<pb::FriendRequestsQuery>,
    ) -> R<pb::FriendRequestList> {
        ok(self
            .store
            .friend_requests(r.into_inner())
            .await
            .map(|requests| pb::FriendRequestList { requests }))
    }
    async fn answer_friend_request(
        &self,
        r: Request<pb::FriendRequestAnswer>,
    ) -> R<pb::FriendRequest> {
        ok(self.store.answer_friend_request(r.into_inner()).await)
    }
    async fn add_friend(&self, r: Request<pb::UserPairRequest>) -> R<pb::ConversationMeta> {
        let r = r.into_inner();
        ok(self.store.add_friend(r.user_id, r.other_user_id).await)
    }
    async fn list_friends(&self, r: Request<pb::UserIdRequest>) -> R<pb::UserList> {
        ok(self
            .store
            .friends(r.into_inner().user_id)
            .await
            .map(|users| pb::UserList { users }))
    }
    async fn single_conversation(
        &self,
        r: Request<pb::UserPairRequest>,
    ) -> R<pb::ConversationMeta> {
        let r = r.into_inner();
        ok(self
            .store
            .single_conversation(r.user_id, r.other_user_id)
            .await)
    }
    async fn create_group(&self, r: Request<pb::CreateGroupRequest>) -> R<pb::Group> {
        ok(self.store.create_group(r.into_inner()).await)
    }
    async fn get_group(&self, r: Request<pb::GroupIdRequest>) -> R<pb::Group> {
        ok(self.store.group(r.into_inner().group_id).await)
    }
    async fn add_group_members(&self, r: Request<pb::GroupMembersRequest>) -> R<pb::UserIdList> {
        let r = r.into_inner();
        let role = role(r.role)?;
        ok(self
            .store
            .add_group_members(r.group_id, &r.user_ids, role)
            .await
            .map(|user_ids| pb::UserIdList { user_ids }))
    }
    async fn remove_group_member(&self, r: Request<pb::GroupMemberRequest>) -> R<pb::Removed> {
        let r = r.into_inner();
        ok(self
            .store
            .remove_group_member(r.group_id, r.user_id)
            .await
            .map(|removed| pb::Removed { removed }))
    }
    async fn set_group_role(&self, r: Request<pb::GroupRoleRequest>) -> R<pb::Empty> {
        let r = r.into_inner();
        let role = role(r.role)?;
        ok(self
            .store
            .set_group_role(r.group_id, r.user_id, role)
            .await
            .map(|()| pb::Empty {}))
    }
    async fn update_group(&self, r: Request<pb::UpdateGroupRequest>) -> R<pb::Group> {
        ok(self.store.update_group(r.into_inner()).await)
    }
    async fn dissolve_group(&self, r: Request<pb::GroupIdRequest>) -> R<pb::UserIdList> {
        ok(self
            .store
            .dissolve_group(r.into_inner().group_id)
            .await
            .map(|user_ids| pb::UserIdList { user_ids }))
    }
    async fn hide_conversation(&self, r: Request<pb::MemberRequest>) -> R<pb::Empty> {
        let r = r.into_inner();
        ok(self
            .store
            .hide_conversation(&r.conversation_id, r.user_id)
            .await
            .map(|()| pb::Empty {}))
    }
    async fn get_conversation(
        &self,
        r: Request<pb::ConversationIdRequest>,
    ) -> R<pb::ConversationMeta> {
        ok(self
            .store
            .conversation(&r.into_inner().conversation_id)
            .await)
    }
    async fn is_member(&self, r: Request<pb::MemberRequest>) -> R<pb::Membership> {
        let r = r.into_inner();
        ok(self
            .store
            .is_member(&r.conversation_id, r.user_id)
            .await
            .map(|member| pb::Membership { member }))
    }
    async fn list_member_ids(&self, r: Request<pb::MemberPageRequest>) -> R<pb::UserIdList> {
        let r = r.into_inner();
        ok(self
            .store
            .member_ids(&r.conversation_id, r.after_user_id, r.limit)
            .await
            .map(|user_ids| pb::UserIdList { user_ids }))
    }
    async fn list_conversations(&self, r: Request<pb::UserIdRequest>) -> R<pb::ConversationList> {
        ok(self
            .store
            .conversations(r.into_inner().user_id)
            .await
            .map(|conversations| pb::ConversationList { conversations }))
    }
    async fn append(&self, r: Request<pb::AppendRequest>) -> R<pb::AppendResponse> {
        ok(self
            .store
            .append(r.into_inner().messages)
            .await
            .map(|outcomes| pb::AppendResponse { outcomes }))
    }
    async fn get_messages(&self, r: Request<pb::HistoryRequest>) -> R<pb::HistoryPage> {
        ok(self.store.messages(r.into_inner()).await)
    }
    async fn get_message(&self, r: Request<pb::MessageIdRequest>) -> R<pb::ChatMessage> {
        ok(self.store.message(r.into_inner().message_id).await)
    }
    async fn amend_message(&self, r: Request<pb::AmendMessageRequest>) -> R<pb::ChatMessage> {
        ok(self.store.amend_message(r.into_inner()).await)
    }
    async fn list_readers(&self, r: Request<pb::ReadersRequest>) -> R<pb::Readers> {
        ok(self.store.readers(r.into_inner()).await)
    }
    async fn mark_read(&self, r: Request<pb::MarkReadRequest>) -> R<pb::ReadPointer> {
        let r = r.into_inner();
        ok(self
            .store
            .mark_read(r.user_id, &r.conversation_id, r.seq_id)
            .await)
    }
    async fn revoke_token(&self, r: Request<pb::RevokedToken>) -> R<pb::Revocation> {
        let r = r.into_inner();
        ok(self
            .store
            .revoke_token(&r.token_id, r.expires_at)
            .await
            .map(|first| pb::Revocation { first }))
    }
    async fn list_revoked_tokens(&self, r: Request<pb::RevokedSince>) -> R<pb::RevokedTokens> {
        ok(self
            .store
            .revoked_tokens(r.into_inner().now)
            .await
            .map(|tokens| pb::RevokedTokens { tokens }))
    }
    async fn list_peer_ids(&self, r: Request<pb::UserIdRequest>) -> R<pb::UserIdList> {
        ok(self
            .store
            .peer_ids(r.into_inner().user_id)
            .await
            .map(|user_ids| pb::UserIdList { user_ids }))
    }
}
