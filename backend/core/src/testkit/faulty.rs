//! A store that fails on purpose: it wraps a real one and, on command, makes `append`
//! (the write every client send goes through) fail with a chosen error. The fault suite
//! uses it to prove that no send is lost or doubled whatever the store does.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use ringchat_proto as pb;

use crate::error::{Error, Result};
use crate::ports::Store;

/// The faults to inject, shared between the test and the store.
#[derive(Default)]
pub struct Faults {
    /// Errors the next appends fail with, one each.
    next: Mutex<VecDeque<Error>>,
    /// Until then, every append fails with this error.
    until: Mutex<Option<(Instant, Error)>>,
    /// Appends refused so far.
    pub injected: std::sync::atomic::AtomicU64,
    /// Read-pointer writes that reached the store.
    pub mark_reads: std::sync::atomic::AtomicU64,
}

impl Faults {
    /// The next `n` appends fail with `error`.
    pub fn fail_next(&self, n: usize, error: Error) {
        let mut q = self.next.lock().expect("faults lock");
        q.extend(std::iter::repeat_n(error, n));
    }

    /// Every append fails with `error` until `until`.
    pub fn fail_until(&self, until: Instant, error: Error) {
        *self.until.lock().expect("faults lock") = Some((until, error));
    }

    /// No more faults.
    pub fn clear(&self) {
        self.next.lock().expect("faults lock").clear();
        *self.until.lock().expect("faults lock") = None;
    }

    fn take(&self) -> Option<Error> {
        let e = self
            .next
            .lock()
            .expect("faults lock")
            .pop_front()
            .or_else(|| {
                let until = self.until.lock().expect("faults lock");
                until
                    .as_ref()
                    .filter(|(t, _)| Instant::now() < *t)
                    .map(|(_, e)| e.clone())
            });
        if e.is_some() {
            self.injected
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        e
    }
}

/// SQLite's errors as the adapter reports them (see `impl From<sqlx::Error> for Error`).
pub mod errors {
    use crate::error::{Error, ErrorCode};

    pub fn busy() -> Error {
        Error::new(
            ErrorCode::Unavailable,
            "store: database is locked (SQLITE_BUSY)",
        )
    }
    pub fn locked() -> Error {
        Error::new(
            ErrorCode::Unavailable,
            "store: database table is locked (SQLITE_LOCKED)",
        )
    }
    pub fn io() -> Error {
        Error::new(
            ErrorCode::Unavailable,
            "store: disk I/O error (SQLITE_IOERR)",
        )
    }
    /// Not transient: not retried.
    pub fn corrupt() -> Error {
        Error::new(
            ErrorCode::Internal,
            "store: database disk image is malformed",
        )
    }
}

pub struct FaultyStore {
    inner: Arc<dyn Store>,
    pub faults: Arc<Faults>,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn Store>) -> (Arc<FaultyStore>, Arc<Faults>) {
        let faults = Arc::new(Faults::default());
        (
            Arc::new(FaultyStore {
                inner,
                faults: faults.clone(),
            }),
            faults,
        )
    }
}

#[async_trait]
impl Store for FaultyStore {
    async fn create_user(&self, req: pb::CreateUserRequest) -> Result<pb::User> {
        self.inner.create_user(req).await
    }
    async fn credentials(&self, username: &str) -> Result<pb::Credentials> {
        self.inner.credentials(username).await
    }
    async fn user(&self, user_id: i64) -> Result<pb::User> {
        self.inner.user(user_id).await
    }
    async fn user_by_name(&self, username: &str) -> Result<pb::User> {
        self.inner.user_by_name(username).await
    }
    async fn users(&self, user_ids: &[i64]) -> Result<Vec<pb::User>> {
        self.inner.users(user_ids).await
    }
    async fn search_users(&self, prefix: &str, after: i64, limit: i64) -> Result<Vec<pb::User>> {
        self.inner.search_users(prefix, after, limit).await
    }
    async fn update_profile(&self, req: pb::UpdateProfileRequest) -> Result<pb::User> {
        self.inner.update_profile(req).await
    }
    async fn send_friend_request(&self, r: pb::NewFriendRequest) -> Result<pb::FriendRequestSent> {
        self.inner.send_friend_request(r).await
    }
    async fn friend_requests(&self, q: pb::FriendRequestsQuery) -> Result<Vec<pb::FriendRequest>> {
        self.inner.friend_requests(q).await
    }
    async fn answer_friend_request(&self, a: pb::FriendRequestAnswer) -> Result<pb::FriendRequest> {
        self.inner.answer_friend_request(a).await
    }
    async fn add_friend(&self, user_id: i64, other: i64) -> Result<pb::ConversationMeta> {
        self.inner.add_friend(user_id, other).await
    }
    async fn friends(&self, user_id: i64) -> Result<Vec<pb::User>> {
        self.inner.friends(user_id).await
    }
    async fn single_conversation(&self, user_id: i64, other: i64) -> Result<pb::ConversationMeta> {
        self.inner.single_conversation(user_id, other).await
    }
    async fn create_group(&self, req: pb::CreateGroupRequest) -> Result<pb::Group> {
        self.inner.create_group(req).await
    }
    async fn group(&self, group_id: i64) -> Result<pb::Group> {
        self.inner.group(group_id).await
    }
    async fn add_group_members(
        &self,
        group_id: i64,
        user_ids: &[i64],
        role: pb::GroupRole,
    ) -> Result<Vec<i64>> {
        self.inner.add_group_members(group_id, user_ids, role).await
    }
    async fn remove_group_member(&self, group_id: i64, user_id: i64) -> Result<bool> {
        self.inner.remove_group_member(group_id, user_id).await
    }
    async fn set_group_role(&self, group_id: i64, user_id: i64, role: pb::GroupRole) -> Result<()> {
        self.inner.set_group_role(group_id, user_id, role).await
    }
    async fn update_group(&self, req: pb::UpdateGroupRequest) -> Result<pb::Group> {
        self.inner.update_group(req).await
    }
    async fn dissolve_group(&self, group_id: i64) -> Result<Vec<i64>> {
        self.inner.dissolve_group(group_id).await
    }
    async fn hide_conversation(&self, conversation_id: &str, user_id: i64) -> Result<()> {
        self.inner.hide_conversation(conversation_id, user_id).await
    }
    async fn conversation(&self, conversation_id: &str) -> Result<pb::ConversationMeta> {
        self.inner.conversation(conversation_id).await
    }
    async fn is_member(&self, conversation_id: &str, user_id: i64) -> Result<bool> {
        self.inner.is_member(conversation_id, user_id).await
    }
    async fn member_ids(&self, conversation_id: &str, after: i64, limit: i64) -> Result<Vec<i64>> {
        self.inner.member_ids(conversation_id, after, limit).await
    }
    async fn conversations(&self, user_id: i64) -> Result<Vec<pb::ConversationView>> {
        self.inner.conversations(user_id).await
    }
    async fn append(&self, messages: Vec<pb::MessageDraft>) -> Result<Vec<pb::AppendOutcome>> {
        if let Some(e) = self.faults.take() {
            return Err(e);
        }
        self.inner.append(messages).await
    }
    async fn messages(&self, req: pb::HistoryRequest) -> Result<pb::HistoryPage> {
        self.inner.messages(req).await
    }
    async fn message(&self, message_id: i64) -> Result<pb::ChatMessage> {
        self.inner.message(message_id).await
    }
    async fn amend_message(&self, req: pb::AmendMessageRequest) -> Result<pb::ChatMessage> {
        self.inner.amend_message(req).await
    }
    async fn readers(&self, req: pb::ReadersRequest) -> Result<pb::Readers> {
        self.inner.readers(req).await
    }
    async fn mark_read(
        &self,
        user_id: i64,
        conversation_id: &str,
        seq_id: i64,
    ) -> Result<pb::ReadPointer> {
        self.inner.mark_read(user_id, conversation_id, seq_id).await
    }
    async fn peer_ids(&self, user_id: i64) -> Result<Vec<i64>> {
        self.inner.peer_ids(user_id).await
    }
    async fn revoke_token(&self, token_id: &str, expires_at: i64) -> Result<bool> {
        self.inner.revoke_token(token_id, expires_at).await
    }
    async fn revoked_tokens(&self, now: i64) -> Result<Vec<pb::RevokedToken>> {
        self.inner.revoked_tokens(now).await
    }
}
