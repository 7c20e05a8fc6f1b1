//! [`LogicService`]: the client API's rules (auth, who may do what, message validation)
//! and message routing. It owns no state: everything lives behind the ports. By concern:
//! [`sessions`] (accounts, tokens, sessions), [`rules`] (who may do what) and [`routing`]
//! (sends, fan-out, presence); this module holds the service and the [`LogicApi`] entry
//! points, each a call into one of them.

use std::time::Duration;

use async_trait::async_trait;
use ringchat_core::dynamic::Reconfigure;
use ringchat_core::ids::now_ms;
use ringchat_core::limits::{KeyedLimiter, Rate};
use ringchat_core::{Config, Error, Ports, Result};
use ringchat_proto as pb;

use crate::api::LogicApi;
use crate::auth::{Passwords, TokenKeys};

mod friends;
mod members;
mod messages;
mod routing;
mod rules;
mod sessions;
mod singles;

pub struct LogicService {
    pub(crate) ports: Ports,
    keys: TokenKeys,
    passwords: Passwords,
    token_ttl_secs: i64,
    session_ttl: Duration,
    presence_ttl: Duration,
    /// Dynamic (see [`ringchat_core::dynamic`]).
    large_group_threshold: std::sync::atomic::AtomicI64,
    max_content_bytes: usize,
    /// Sends per user, over all of the user's connections and HTTP.
    user_sends: KeyedLimiter<i64>,
    /// Failed logins per (lowercased) username and per client address.
    login_names: KeyedLimiter<String>,
    login_addrs: KeyedLimiter<String>,
    /// Single chats already read: a send to one is authorised without the store.
    singles: singles::SingleChats,
    /// User searches per caller ([`SEARCHES_PER_SEC`], [`SEARCHES_BURST`]).
    searches: KeyedLimiter<i64>,
    /// Friend requests per caller ([`FRIEND_REQUESTS_PER_MINUTE`]).
    friend_requests: KeyedLimiter<i64>,
    /// `logic.friends_need_consent`: the v1 `POST /api/friends` sends a request.
    friends_need_consent: bool,
    /// `logic.revoke_window_secs` and `logic.edit_window_secs`, in milliseconds.
    revoke_window_ms: i64,
    edit_window_ms: i64,
    /// Read receipts waiting to be sent, batched per conversation.
    receipts: std::sync::Arc<messages::ReceiptBatcher>,
}

/// Friend requests a user may send per minute (and the burst).
pub const FRIEND_REQUESTS_PER_MINUTE: f64 = 20.0;

/// User searches per caller and second (a client searching as its user types), and the
/// burst allowed.
pub const SEARCHES_PER_SEC: f64 = 5.0;
pub const SEARCHES_BURST: f64 = 20.0;

pub(super) fn now_secs() -> i64 {
    now_ms() / 1000
}

/// The size of a page of users listed by id after `after_user_id` (0: the first page):
/// `size` 0 is `default`, larger than `max` is `max`; a negative one or a negative
/// `after_user_id` is a 400.
pub(super) fn page_size(after_user_id: i64, size: i64, default: i64, max: i64) -> Result<i64> {
    if after_user_id < 0 {
        return Err(Error::invalid("after must be a user id (0 or more)"));
    }
    match size {
        0 => Ok(default),
        s if s < 0 => Err(Error::invalid("size must be at least 1")),
        s => Ok(s.min(max)),
    }
}

pub(super) fn char_len(s: &str) -> usize {
    s.chars().count()
}

impl LogicService {
    pub fn new(config: &Config, ports: Ports) -> Result<Self> {
        if !config.has_jwt_secret() {
            return Err(Error::invalid(
                "auth.jwt_secret is not set: tokens cannot be signed",
            ));
        }
        Ok(LogicService {
            ports: ports.clone(),
            keys: TokenKeys::new(config.auth.jwt_secret.expose().as_bytes()),
            passwords: Passwords::bounded(
                config.auth.argon2_memory_kib,
                config.auth.argon2_iterations,
                config.auth.hash_workers,
                config.auth.hash_queue,
            )?,
            login_names: KeyedLimiter::new(Rate::per_minute(
                f64::from(config.auth.login_failures_per_minute),
                f64::from(config.auth.login_failures_burst),
            )),
            login_addrs: KeyedLimiter::new(Rate::per_minute(
                f64::from(config.auth.login_address_per_minute),
                f64::from(config.auth.login_address_burst),
            )),
            token_ttl_secs: config.auth.token_ttl_secs as i64,
            session_ttl: config.cache.session_ttl(),
            presence_ttl: config.cache.presence_ttl(),
            large_group_threshold: std::sync::atomic::AtomicI64::new(i64::from(
                config.logic.large_group_threshold,
            )),
            max_content_bytes: config.logic.max_content_bytes,
            user_sends: KeyedLimiter::new(Rate::new(
                f64::from(config.logic.user_sends_per_sec),
                f64::from(config.logic.user_sends_burst),
            )),
            singles: singles::SingleChats::default(),
            searches: KeyedLimiter::new(Rate::new(SEARCHES_PER_SEC, SEARCHES_BURST)),
            friend_requests: KeyedLimiter::new(Rate::per_minute(
                FRIEND_REQUESTS_PER_MINUTE,
                FRIEND_REQUESTS_PER_MINUTE,
            )),
            friends_need_consent: config.logic.friends_need_consent,
            revoke_window_ms: (config.logic.revoke_window_secs as i64).saturating_mul(1000),
            edit_window_ms: (config.logic.edit_window_secs as i64).saturating_mul(1000),
            receipts: std::sync::Arc::new(messages::ReceiptBatcher::new(ports.clone())),
        })
    }

    /// Groups with more members than this fan out through im-task.
    pub fn large_group_threshold(&self) -> i64 {
        self.large_group_threshold
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn ports(&self) -> &Ports {
        &self.ports
    }
}

/// The settings im-logic takes from discovery without a restart.
impl Reconfigure for LogicService {
    fn reconfigure(&self, key: &str, value: &str) -> Result<bool> {
        use ringchat_core::dynamic::number;
        let per_minute = |l: &KeyedLimiter<String>, per_min: Option<u32>, burst: Option<u32>| {
            let r = l.rate();
            l.set_rate(Rate::per_minute(
                per_min.map(f64::from).unwrap_or(r.per_sec * 60.0),
                burst.map(f64::from).unwrap_or(r.burst),
            ));
        };
        match key {
            "logic.large_group_threshold" => self.large_group_threshold.store(
                i64::from(number::<u32>(key, value, 1..=10_000_000)?),
                std::sync::atomic::Ordering::Relaxed,
            ),
            "logic.user_sends_per_sec" => {
                let r = self.user_sends.rate();
                self.user_sends.set_rate(Rate::new(
                    f64::from(number::<u32>(key, value, 1..=1_000_000)?),
                    r.burst,
                ));
            }
            "logic.user_sends_burst" => {
                let r = self.user_sends.rate();
                self.user_sends.set_rate(Rate::new(
                    r.per_sec,
                    f64::from(number::<u32>(key, value, 1..=1_000_000)?),
                ));
            }
            "auth.login_failures_per_minute" => per_minute(
                &self.login_names,
                Some(number(key, value, 1..=1_000_000)?),
                None,
            ),
            "auth.login_failures_burst" => per_minute(
                &self.login_names,
                None,
                Some(number(key, value, 1..=1_000_000)?),
            ),
            "auth.login_address_per_minute" => per_minute(
                &self.login_addrs,
                Some(number(key, value, 1..=1_000_000)?),
                None,
            ),
            "auth.login_address_burst" => per_minute(
                &self.login_addrs,
                None,
                Some(number(key, value, 1..=1_000_000)?),
            ),
            _ => return Ok(false),
        }
        Ok(true)
    }
}

#[async_trait]
impl LogicApi for LogicService {
    async fn register(&self, req: pb::RegisterRequest) -> Result<pb::User> {
        sessions::register(self, req).await
    }

    async fn login(&self, req: pb::LoginRequest) -> Result<pb::AuthResponse> {
        sessions::login(self, req).await
    }

    async fn guest(&self, req: pb::GuestRequest) -> Result<pb::AuthResponse> {
        sessions::guest(self, req).await
    }

    async fn logout(&self, req: pb::TokenRequest) -> Result<()> {
        sessions::logout(self, req).await
    }

    async fn refresh(&self, req: pb::TokenRequest) -> Result<pb::AuthResponse> {
        sessions::refresh(self, req).await
    }

    async fn amend_message(
        &self,
        req: pb::CallerAmendMessageRequest,
    ) -> Result<pb::AmendedMessage> {
        messages::amend_message(self, req).await
    }

    async fn message_readers(&self, req: pb::CallerReadersRequest) -> Result<pb::ReaderPage> {
        messages::readers(self, req).await
    }

    async fn typing(&self, req: pb::CallerTypingRequest) -> Result<()> {
        routing::typing(self, req).await
    }

    async fn authenticate(&self, req: pb::TokenRequest) -> Result<pb::Session> {
        sessions::authenticate(self, req).await
    }

    async fn get_user(&self, req: pb::GetUserRequest) -> Result<pb::User> {
        rules::get_user(self, req).await
    }

    async fn online_status(&self, req: pb::CallerRequest) -> Result<pb::OnlineStatusList> {
        rules::online_status(self, req).await
    }

    async fn search_users(&self, req: pb::CallerSearchUsersRequest) -> Result<pb::UserPage> {
        rules::search_users(self, req).await
    }

    async fn list_conversations(&self, req: pb::CallerRequest) -> Result<pb::ConversationList> {
        rules::list_conversations(self, req).await
    }

    async fn create_single_conversation(
        &self,
        req: pb::TargetUserRequest,
    ) -> Result<pb::ConversationView> {
        rules::create_single_conversation(self, req).await
    }

    async fn get_messages(&self, req: pb::GetMessagesRequest) -> Result<pb::HistoryPage> {
        rules::get_messages(self, req).await
    }

    async fn mark_read(&self, req: pb::CallerMarkReadRequest) -> Result<pb::ReadPointer> {
        rules::mark_read(self, req).await
    }

    async fn send_message(&self, req: pb::SendMessageRequest) -> Result<pb::ChatMessage> {
        routing::send_message(self, req).await
    }

    async fn update_profile(&self, req: pb::CallerUpdateProfileRequest) -> Result<pb::User> {
        friends::update_profile(self, req).await
    }

    async fn add_friend(&self, req: pb::TargetUserRequest) -> Result<pb::FriendRequestResult> {
        friends::add_friend(self, req).await
    }

    async fn send_friend_request(
        &self,
        req: pb::CallerFriendRequest,
    ) -> Result<pb::FriendRequestResult> {
        friends::send_request(self, req).await
    }

    async fn list_friend_requests(
        &self,
        req: pb::CallerFriendRequestsQuery,
    ) -> Result<pb::FriendRequestList> {
        friends::list_requests(self, req).await
    }

    async fn answer_friend_request(
        &self,
        req: pb::CallerFriendRequestAnswer,
    ) -> Result<pb::FriendRequestResult> {
        friends::answer_request(self, req).await
    }

    async fn list_friends(&self, req: pb::CallerRequest) -> Result<pb::FriendList> {
        rules::list_friends(self, req).await
    }

    async fn create_group(&self, req: pb::CallerCreateGroupRequest) -> Result<pb::GroupCreated> {
        rules::create_group(self, req).await
    }

    async fn get_group(&self, req: pb::CallerGroupRequest) -> Result<pb::Group> {
        rules::get_group(self, req).await
    }

    async fn add_group_members(&self, req: pb::CallerGroupMembersRequest) -> Result<pb::Group> {
        rules::add_group_members(self, req).await
    }

    async fn remove_group_member(&self, req: pb::CallerGroupMemberRequest) -> Result<pb::Group> {
        rules::remove_group_member(self, req).await
    }

    async fn get_conversation(
        &self,
        req: pb::CallerConversationRequest,
    ) -> Result<pb::ConversationDetails> {
        members::get_conversation(self, req).await
    }

    async fn update_conversation(
        &self,
        req: pb::CallerUpdateConversationRequest,
    ) -> Result<pb::ConversationDetails> {
        members::update_conversation(self, req).await
    }

    async fn delete_conversation(
        &self,
        req: pb::CallerConversationRequest,
    ) -> Result<pb::ConversationDeleted> {
        members::delete_conversation(self, req).await
    }

    async fn list_members(&self, req: pb::CallerMembersQuery) -> Result<pb::MemberPage> {
        members::list_members(self, req).await
    }

    async fn add_members(
        &self,
        req: pb::CallerConversationMembersRequest,
    ) -> Result<pb::MemberPage> {
        members::add_members(self, req).await
    }

    async fn set_member_role(&self, req: pb::CallerMemberRoleRequest) -> Result<pb::GroupMember> {
        members::set_member_role(self, req).await
    }

    async fn remove_member(&self, req: pb::CallerConversationMemberRequest) -> Result<()> {
        members::remove_member(self, req).await
    }

    async fn user_connected(&self, req: pb::PresenceRequest) -> Result<()> {
        routing::user_connected(self, req).await
    }

    async fn user_disconnected(&self, req: pb::PresenceRequest) -> Result<()> {
        routing::user_disconnected(self, req).await
    }

    async fn heartbeat(&self, req: pb::HeartbeatRequest) -> Result<()> {
        routing::heartbeat(self, req).await
    }
}

/// Presence for display (online dots): in degraded mode (cache unreachable) everybody
/// shows offline rather than the request failing.
pub(super) async fn presence_or_unknown(
    cache: &dyn ringchat_core::ports::Cache,
    users: &[i64],
) -> Result<std::collections::HashMap<i64, Vec<ringchat_core::ports::Endpoint>>> {
    match cache.presence(users).await {
        Err(e) if e.is_retryable() => Ok(Default::default()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use ringchat_core::dynamic::{follow, Reconfigure};
    use ringchat_core::shutdown::Shutdown;
    use ringchat_core::testkit::eventually;

    use super::*;

    #[tokio::test]
    async fn settings_set_in_discovery_apply_without_a_restart() {
        let mut config = Config::default();
        config.store.url = "sqlite::memory:".into();
        config.auth.jwt_secret = ringchat_core::config::Secret::new("0123456789abcdef0123");
        let ports = ringchat_wiring::embedded(&config).await.unwrap();
        let logic = Arc::new(LogicService::new(&config, ports.clone()).unwrap());
        let (stop, signal) = Shutdown::new();
        let task = tokio::spawn(follow(
            ports.discovery.clone(),
            vec![logic.clone() as Arc<dyn Reconfigure>],
            signal,
        ));
        assert_eq!(logic.large_group_threshold(), 500);
        let d = ports.discovery.clone();
        d.set_config("logic.large_group_threshold", "3")
            .await
            .unwrap();
        d.set_config("logic.user_sends_per_sec", "7").await.unwrap();
        d.set_config("auth.login_failures_burst", "2")
            .await
            .unwrap();
        eventually("the threshold applied", Duration::from_secs(5), || async {
            (logic.large_group_threshold() == 3).then_some(())
        })
        .await;
        eventually("the send rate applied", Duration::from_secs(5), || async {
            (logic.user_sends.rate().per_sec == 7.0).then_some(())
        })
        .await;
        eventually(
            "the login burst applied",
            Duration::from_secs(5),
            || async { (logic.login_names.rate().burst == 2.0).then_some(()) },
        )
        .await;
        // a refused value leaves the setting as it was
        d.set_config("logic.large_group_threshold", "0")
            .await
            .unwrap();
        d.set_config("logic.user_sends_burst", "9").await.unwrap();
        eventually(
            "the next good value applied",
            Duration::from_secs(5),
            || async { (logic.user_sends.rate().burst == 9.0).then_some(()) },
        )
        .await;
        assert_eq!(logic.large_group_threshold(), 3);
        stop.trigger();
        task.await.unwrap();
    }
}
