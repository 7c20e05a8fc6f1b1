//! [`LogicService`]: the client API's rules (auth, who may do what, message validation)
//! and message routing. It owns no state: everything lives behind the ports.

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pb::downstream_batch::Body;
use prost::Message as _;
use rand::Rng;
use ringchat_core::fanout::{self, send_downstream};
use ringchat_core::ids::now_ms;
use ringchat_core::limits::{KeyedLimiter, Rate};
use ringchat_core::model::{self, GATEWAY_SERVICE, MAX_TEMP_ID_LEN, WORLD_ID};
use ringchat_core::ports::Endpoint;
use ringchat_core::{Config, Error, ErrorCode, Ports, Result};
use ringchat_proto as pb;

use crate::api::LogicApi;
use crate::auth::{new_jti, Claims, Passwords, TokenKeys};

pub struct LogicService {
    pub(crate) ports: Ports,
    keys: TokenKeys,
    passwords: Passwords,
    token_ttl_secs: i64,
    session_ttl: Duration,
    presence_ttl: Duration,
    large_group_threshold: i64,
    max_content_bytes: usize,
    /// Sends per user, over all of the user's connections and HTTP.
    user_sends: KeyedLimiter<i64>,
    /// Failed logins per (lowercased) username and per client address.
    login_names: KeyedLimiter<String>,
    login_addrs: KeyedLimiter<String>,
}

fn session_key(jti: &str) -> String {
    format!("session:{jti}")
}

fn revoked_key(jti: &str) -> String {
    format!("revoked:{jti}")
}

fn now_secs() -> i64 {
    now_ms() / 1000
}

fn char_len(s: &str) -> usize {
    s.chars().count()
}

/// The stored form of a username ([`model::normalize_username`]), 3-20 characters.
fn validate_username(raw: &str) -> Result<String> {
    let name = model::normalize_username(raw)?;
    if !(3..=20).contains(&char_len(&name)) {
        return Err(Error::invalid("username must be 3-20 characters"));
    }
    Ok(name)
}

/// Most members a group may have, and most added by one request (one store statement
/// binds them all, and SQLite binds at most 32766 values).
const MAX_GROUP_MEMBERS: usize = 10_000;
const MAX_MEMBERS_PER_REQUEST: usize = 1_000;
/// Longest avatar URL.
const MAX_AVATAR_LEN: usize = 512;

fn check_member_list(ids: &[i64]) -> Result<()> {
    if ids.len() > MAX_MEMBERS_PER_REQUEST {
        return Err(Error::invalid(format!(
            "at most {MAX_MEMBERS_PER_REQUEST} members per request ({} given)",
            ids.len()
        )));
    }
    Ok(())
}

/// An avatar is empty or an http(s) URL of bounded length (no `javascript:` or `data:`).
fn check_avatar(avatar: &str) -> Result<()> {
    if avatar.is_empty() {
        return Ok(());
    }
    let lower = avatar.to_ascii_lowercase();
    if avatar.len() > MAX_AVATAR_LEN
        || !(lower.starts_with("https://") || lower.starts_with("http://"))
        || avatar.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(Error::invalid(format!(
            "avatar must be an http(s) URL of at most {MAX_AVATAR_LEN} bytes"
        )));
    }
    Ok(())
}

fn validate_password(pw: &str) -> Result<()> {
    if !(6..=50).contains(&char_len(pw)) {
        return Err(Error::invalid("password must be 6-50 characters"));
    }
    Ok(())
}

fn role_of(group: &pb::Group, user_id: i64) -> Option<pb::GroupRole> {
    group
        .members
        .iter()
        .find(|m| m.user_id == user_id)
        .map(|m| pb::GroupRole::try_from(m.role).unwrap_or(pb::GroupRole::Member))
}

impl LogicService {
    pub fn new(config: &Config, ports: Ports) -> Result<Self> {
        if !config.has_jwt_secret() {
            return Err(Error::invalid(
                "auth.jwt_secret is not set: tokens cannot be signed",
            ));
        }
        Ok(LogicService {
            ports,
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
            large_group_threshold: i64::from(config.logic.large_group_threshold),
            max_content_bytes: config.logic.max_content_bytes,
            user_sends: KeyedLimiter::new(Rate::new(
                f64::from(config.logic.user_sends_per_sec),
                f64::from(config.logic.user_sends_burst),
            )),
        })
    }

    pub fn ports(&self) -> &Ports {
        &self.ports
    }

    /// Loads the revocations still in force from the store into the cache (at start-up:
    /// a restart must not bring a logged-out token back).
    pub async fn load_revocations(&self) -> Result<usize> {
        let now = now_secs();
        let revoked = self.ports.store.revoked_tokens(now).await?;
        for r in &revoked {
            self.ports
                .cache
                .set(
                    &revoked_key(&r.token_id),
                    Bytes::from_static(b"1"),
                    Duration::from_secs((r.expires_at - now).max(1) as u64),
                )
                .await?;
        }
        Ok(revoked.len())
    }

    async fn issue_token(&self, user: pb::User) -> Result<pb::AuthResponse> {
        let iat = now_secs();
        let claims = Claims {
            sub: user.user_id.to_string(),
            name: user.username.clone(),
            guest: user.is_guest,
            jti: new_jti(),
            iat,
            exp: iat + self.token_ttl_secs,
        };
        let token = self.keys.sign(&claims);
        self.ports
            .cache
            .set(
                &session_key(&claims.jti),
                Bytes::from(user.encode_to_vec()),
                self.session_ttl,
            )
            .await?;
        Ok(pb::AuthResponse {
            token,
            user: Some(user),
            expires_at: claims.exp,
        })
    }

    async fn caller(&self, caller_id: i64) -> Result<pb::User> {
        self.ports
            .store
            .user(caller_id)
            .await
            .map_err(|e| match e.code {
                ErrorCode::UserNotFound => Error::auth("the caller no longer exists"),
                _ => e,
            })
    }

    async fn view_of(&self, user_id: i64, conversation_id: &str) -> Result<pb::ConversationView> {
        self.ports
            .store
            .conversations(user_id)
            .await?
            .into_iter()
            .find(|c| c.conversation_id == conversation_id)
            .ok_or_else(|| Error::conversation_not_found(conversation_id))
    }

    async fn ensure_member(&self, meta: &pb::ConversationMeta, user_id: i64) -> Result<()> {
        if meta.conversation_id == WORLD_ID
            || self
                .ports
                .store
                .is_member(&meta.conversation_id, user_id)
                .await?
        {
            Ok(())
        } else {
            Err(Error::forbidden(
                "you are not a member of this conversation",
            ))
        }
    }

    /// Validates a send and authorises the sender; returns the conversation.
    pub(crate) async fn check_send(
        &self,
        sender_id: i64,
        conversation_id: &str,
        content: &str,
        kind: i32,
        temp_message_id: &str,
    ) -> Result<pb::ConversationMeta> {
        match pb::MessageType::try_from(kind) {
            Ok(pb::MessageType::Unspecified) | Err(_) => {
                return Err(Error::invalid_message(format!(
                    "unknown message type {kind}"
                )))
            }
            Ok(_) => {}
        }
        if content.trim().is_empty() {
            return Err(Error::invalid_message("message content is empty"));
        }
        if content.len() > self.max_content_bytes {
            return Err(Error::new(
                ErrorCode::MessageTooLarge,
                format!(
                    "message content is {} bytes, the limit is {}",
                    content.len(),
                    self.max_content_bytes
                ),
            ));
        }
        if temp_message_id.len() > MAX_TEMP_ID_LEN {
            return Err(Error::invalid_message(format!(
                "tempMessageId is longer than {MAX_TEMP_ID_LEN} bytes"
            )));
        }
        if conversation_id.is_empty() {
            return Err(Error::invalid_message("conversationId is required"));
        }
        let meta = self.ports.store.conversation(conversation_id).await?;
        self.ensure_member(&meta, sender_id).await?;
        Ok(meta)
    }

    fn is_large(&self, meta: &pb::ConversationMeta) -> bool {
        meta.r#type == pb::ConversationType::World as i32
            || (meta.r#type == pb::ConversationType::Group as i32
                && meta.member_count > self.large_group_threshold)
    }

    /// Delivers a stored message to its online recipients (the sending connection
    /// excluded) and queues an offline push for the others. Worlds and large groups are
    /// handed to im-task.
    pub(crate) async fn route(
        &self,
        message: &pb::ChatMessage,
        meta: &pb::ConversationMeta,
        origin: Option<(&str, u64)>,
    ) -> Result<()> {
        if self.is_large(meta) {
            let task = pb::TaskMessage {
                task: Some(pb::task_message::Task::FanOut(pb::FanOutTask {
                    message: Some(message.clone()),
                    sender_gateway_id: origin.map(|o| o.0.to_string()).unwrap_or_default(),
                    sender_conn_id: origin.map(|o| o.1).unwrap_or(0),
                    world: meta.r#type == pb::ConversationType::World as i32,
                })),
            };
            return self
                .ports
                .bus
                .publish(
                    pb::topics::TASK,
                    message.conversation_id.as_bytes(),
                    Bytes::from(task.encode_to_vec()),
                )
                .await;
        }
        let members = if meta.r#type == pb::ConversationType::Single as i32 {
            vec![meta.user_a, meta.user_b]
        } else {
            self.ports
                .store
                .member_ids(&meta.conversation_id, 0, self.large_group_threshold + 1)
                .await?
        };
        let located = fanout::locate_or_everywhere(
            self.ports.cache.as_ref(),
            self.ports.discovery.as_ref(),
            &members,
        )
        .await?;
        fanout::deliver(self.ports.bus.as_ref(), &located, message, origin).await?;
        let offline: Vec<i64> = located
            .offline
            .into_iter()
            .filter(|u| *u != message.sender_id)
            .collect();
        if !offline.is_empty() {
            let task = pb::TaskMessage {
                task: Some(pb::task_message::Task::OfflinePush(pb::OfflinePushTask {
                    user_ids: offline,
                    message: Some(message.clone()),
                })),
            };
            self.ports
                .bus
                .publish(
                    pb::topics::TASK,
                    message.conversation_id.as_bytes(),
                    Bytes::from(task.encode_to_vec()),
                )
                .await?;
        }
        Ok(())
    }

    async fn announce_presence(&self, user_id: i64, online: bool) -> Result<()> {
        let friends: HashSet<i64> = self
            .ports
            .store
            .friends(user_id)
            .await?
            .into_iter()
            .map(|u| u.user_id)
            .collect();
        let peers = self.ports.store.peer_ids(user_id).await?;
        let (friend_ids, group_ids): (Vec<i64>, Vec<i64>) =
            peers.into_iter().partition(|p| friends.contains(p));
        for (ids, event) in [
            (friend_ids, "friend-online"),
            (group_ids, "group-member-online"),
        ] {
            if ids.is_empty() {
                continue;
            }
            let located = fanout::locate_or_everywhere(
                self.ports.cache.as_ref(),
                self.ports.discovery.as_ref(),
                &ids,
            )
            .await?;
            for (gw, users) in located.by_gateway {
                send_downstream(
                    self.ports.bus.as_ref(),
                    &gw,
                    &user_id.to_string(),
                    Body::Presence(pb::PresenceChange {
                        recipient_user_ids: users,
                        user_id,
                        online,
                        event: event.into(),
                    }),
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Processes a batch of client sends from the upstream topic: validate, append in one
    /// transaction, ack each sender's connection, route. A retryable error (store or bus
    /// down) is returned so the caller retries the whole batch without committing it;
    /// appends are idempotent on (sender, tempMessageId), so a retry stores nothing twice.
    pub async fn process_upstream(&self, batch: &[pb::UpstreamMessage]) -> Result<()> {
        let mut drafts = Vec::with_capacity(batch.len());
        let mut accepted = Vec::with_capacity(batch.len());
        for up in batch {
            if let Err(wait) = self.user_sends.take(&up.user_id) {
                let e = Error::rate_limited("too many messages: slow down", wait);
                self.send_error(up, &e).await?;
                continue;
            }
            match self
                .check_send(
                    up.user_id,
                    &up.conversation_id,
                    &up.content,
                    up.r#type,
                    &up.temp_message_id,
                )
                .await
            {
                Ok(meta) => {
                    drafts.push(pb::MessageDraft {
                        conversation_id: up.conversation_id.clone(),
                        sender_id: up.user_id,
                        sender_name: up.username.clone(),
                        r#type: up.r#type,
                        content: up.content.clone(),
                        temp_message_id: up.temp_message_id.clone(),
                    });
                    accepted.push((up, meta));
                }
                Err(e) if e.is_retryable() => return Err(e),
                Err(e) => self.send_error(up, &e).await?,
            }
        }
        if drafts.is_empty() {
            return Ok(());
        }
        let outcomes = self.ports.store.append(drafts).await?;
        for (outcome, (up, meta)) in outcomes.into_iter().zip(accepted) {
            let Some(message) = outcome.message else {
                let code = ErrorCode::parse(&outcome.error_code).unwrap_or(ErrorCode::Internal);
                self.send_error(up, &Error::new(code, outcome.error_message))
                    .await?;
                continue;
            };
            send_downstream(
                self.ports.bus.as_ref(),
                &up.gateway_id,
                &message.conversation_id,
                Body::Ack(pb::SendAck {
                    conn_id: up.conn_id,
                    user_id: up.user_id,
                    temp_message_id: up.temp_message_id.clone(),
                    message_id: message.message_id,
                    seq_id: message.seq_id,
                    conversation_id: message.conversation_id.clone(),
                    duplicate: outcome.duplicate,
                }),
            )
            .await?;
            // a duplicate is routed again: it may be the redelivery of a batch whose
            // routing a crash cut short; gateways drop what they already delivered
            // (dispatch.rs), so recipients see each message once
            self.route(&message, &meta, Some((&up.gateway_id, up.conn_id)))
                .await?;
        }
        Ok(())
    }

    /// Runs until `shutdown`: whenever the cache recovers from a degraded mode, asks every
    /// gateway to report its connections again (a restarted Redis forgot them all).
    pub async fn run_presence_resync(&self, mut shutdown: ringchat_core::shutdown::ShutdownSignal) {
        loop {
            tokio::select! {
                _ = self.ports.cache_health.recovered() => {}
                _ = shutdown.wait() => return,
            }
            let gateways = match self.ports.discovery.instances(GATEWAY_SERVICE).await {
                Ok(g) => g,
                Err(e) => {
                    tracing::warn!(error = %e, "presence resync: cannot list the gateways");
                    continue;
                }
            };
            tracing::info!(
                gateways = gateways.len(),
                "cache recovered: asking the gateways to report their connections"
            );
            for gw in gateways {
                if let Err(e) = send_downstream(
                    self.ports.bus.as_ref(),
                    &gw.id,
                    "presence",
                    Body::Resync(pb::PresenceResync {}),
                )
                .await
                {
                    tracing::warn!(error = %e, gateway = %gw.id, "presence resync not sent");
                }
            }
        }
    }

    /// Answers a client send with an `error` frame naming its `tempMessageId`.
    pub(crate) async fn send_error(&self, up: &pb::UpstreamMessage, e: &Error) -> Result<()> {
        send_downstream(
            self.ports.bus.as_ref(),
            &up.gateway_id,
            &up.conversation_id,
            Body::Error(pb::SendError {
                conn_id: up.conn_id,
                user_id: up.user_id,
                temp_message_id: up.temp_message_id.clone(),
                code: e.code.as_str().into(),
                message: e.message.clone(),
                conversation_id: up.conversation_id.clone(),
            }),
        )
        .await
    }
}

#[async_trait]
impl LogicApi for LogicService {
    async fn register(&self, req: pb::RegisterRequest) -> Result<pb::User> {
        let username = validate_username(&req.username)?;
        validate_password(&req.password)?;
        let hash = self.passwords.hash_bounded(req.password).await?;
        self.ports
            .store
            .create_user(pb::CreateUserRequest {
                username,
                password_hash: hash,
                avatar: String::new(),
                is_guest: false,
            })
            .await
    }

    async fn login(&self, req: pb::LoginRequest) -> Result<pb::AuthResponse> {
        let refused = || Error::auth("invalid username or password");
        if req.username.is_empty() || req.password.is_empty() {
            return Err(Error::invalid("username and password are required"));
        }
        // the name as stored (a fullwidth form logs in as the plain one)
        let Ok(username) = model::normalize_username(&req.username) else {
            return Err(refused());
        };
        // failed attempts are limited per name and per client address; a success gives
        // its tokens back
        let name_key = username.to_lowercase();
        let throttled = |wait| Error::rate_limited("too many failed logins: retry later", wait);
        self.login_names.take(&name_key).map_err(throttled)?;
        if let Err(wait) = self.login_addrs.take(&req.client_addr) {
            self.login_names.give_back(&name_key);
            return Err(throttled(wait));
        }
        let user = match self.ports.store.credentials(&username).await {
            Ok(c) => c.user.filter(|u| !u.is_guest).map(|u| (u, c.password_hash)),
            Err(e) if e.code == ErrorCode::UserNotFound => None,
            Err(e) => return Err(e),
        };
        // unknown users and guests cost a full check too (against a hash nobody knows)
        let (user, phc) = match user {
            Some((u, phc)) => (Some(u), Some(phc)),
            None => (None, None),
        };
        let ok = self.passwords.verify_bounded(req.password, phc).await?;
        match user {
            Some(user) if ok => {
                self.login_names.give_back(&name_key);
                self.login_addrs.give_back(&req.client_addr);
                self.issue_token(user).await
            }
            _ => Err(refused()),
        }
    }

    async fn guest(&self, req: pb::GuestRequest) -> Result<pb::AuthResponse> {
        let name = model::normalize_username(req.guest_name.trim())?;
        let name = name.as_str();
        if char_len(name) > 14 {
            return Err(Error::invalid("guestName must be at most 14 characters"));
        }
        for _ in 0..8 {
            let username = if name.is_empty() {
                let n: u32 = rand::thread_rng().gen_range(0..1_000_000);
                format!("guest_{n:06}")
            } else {
                let n: u32 = rand::thread_rng().gen_range(0..10_000);
                format!("{name}_{n:04}")
            };
            match self
                .ports
                .store
                .create_user(pb::CreateUserRequest {
                    username,
                    password_hash: String::new(),
                    avatar: String::new(),
                    is_guest: true,
                })
                .await
            {
                Ok(user) => return self.issue_token(user).await,
                Err(e) if e.code == ErrorCode::UsernameTaken => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::new(
            ErrorCode::Conflict,
            "could not find a free guest name, try another guestName",
        ))
    }

    /// Idempotent: a missing, malformed, expired or already revoked token has nothing
    /// left to revoke and succeeds (clients call logout from their 401 handler). A valid
    /// token is revoked until it expires, and the gateways holding its open WebSockets
    /// are told to close them.
    async fn logout(&self, req: pb::TokenRequest) -> Result<()> {
        let Ok(claims) = self.keys.verify(&req.token, now_secs()) else {
            return Ok(());
        };
        let Ok(user_id) = claims.user_id() else {
            return Ok(());
        };
        let left = claims.exp - now_secs();
        // the store keeps it across restarts, the cache answers every request
        self.ports
            .store
            .revoke_token(&claims.jti, claims.exp)
            .await?;
        self.ports
            .cache
            .set(
                &revoked_key(&claims.jti),
                Bytes::from_static(b"1"),
                Duration::from_secs(left.max(1) as u64),
            )
            .await?;
        self.ports.cache.delete(&session_key(&claims.jti)).await?;
        let located = fanout::locate_or_everywhere(
            self.ports.cache.as_ref(),
            self.ports.discovery.as_ref(),
            &[user_id],
        )
        .await?;
        for gw in located.by_gateway.keys() {
            send_downstream(
                self.ports.bus.as_ref(),
                gw,
                &user_id.to_string(),
                Body::Revoked(pb::TokenRevoked {
                    user_id,
                    token_id: claims.jti.clone(),
                }),
            )
            .await?;
        }
        Ok(())
    }

    async fn authenticate(&self, req: pb::TokenRequest) -> Result<pb::Session> {
        let now = now_secs();
        let claims = self.keys.verify(&req.token, now)?;
        if self
            .ports
            .cache
            .get(&revoked_key(&claims.jti))
            .await?
            .is_some()
        {
            return Err(Error::auth("token has been revoked"));
        }
        let session = |user| pb::Session {
            user: Some(user),
            token_id: claims.jti.clone(),
            expires_at: claims.exp,
        };
        let key = session_key(&claims.jti);
        if let Some(bytes) = self.ports.cache.get(&key).await? {
            if let Ok(user) = pb::User::decode(bytes) {
                return Ok(session(user));
            }
        }
        let user = self
            .caller(claims.user_id()?)
            .await
            .map_err(|e| match e.code {
                ErrorCode::UserNotFound => Error::auth("the token's account no longer exists"),
                _ => e,
            })?;
        // a token names its account by id and name: after a data wipe, "user 1" may be
        // someone else, and the old token must not open their account
        if user.username != claims.name {
            return Err(Error::auth("the token was issued for another account"));
        }
        let ttl = self
            .session_ttl
            .min(Duration::from_secs((claims.exp - now).max(1) as u64));
        self.ports
            .cache
            .set(&key, Bytes::from(user.encode_to_vec()), ttl)
            .await?;
        Ok(session(user))
    }

    async fn get_user(&self, req: pb::GetUserRequest) -> Result<pb::User> {
        if req.user_id > 0 {
            self.ports.store.user(req.user_id).await
        } else if !req.username.is_empty() {
            let name = model::normalize_username(&req.username).unwrap_or(req.username);
            self.ports.store.user_by_name(&name).await
        } else {
            Err(Error::invalid("give a user id or a username"))
        }
    }

    async fn online_status(&self, req: pb::CallerRequest) -> Result<pb::OnlineStatusList> {
        let peers = self.ports.store.peer_ids(req.caller_id).await?;
        let presence = presence_or_unknown(self.ports.cache.as_ref(), &peers).await?;
        Ok(pb::OnlineStatusList {
            statuses: peers
                .into_iter()
                .map(|user_id| pb::OnlineStatus {
                    user_id,
                    online: presence.contains_key(&user_id),
                })
                .collect(),
        })
    }

    async fn list_conversations(&self, req: pb::CallerRequest) -> Result<pb::ConversationList> {
        Ok(pb::ConversationList {
            conversations: self.ports.store.conversations(req.caller_id).await?,
        })
    }

    async fn create_single_conversation(
        &self,
        req: pb::TargetUserRequest,
    ) -> Result<pb::ConversationView> {
        let caller = self.caller(req.caller_id).await?;
        if caller.is_guest {
            return Err(Error::forbidden("guests cannot start conversations"));
        }
        if req.target_user_id == req.caller_id {
            return Err(Error::invalid("cannot start a conversation with yourself"));
        }
        let meta = self
            .ports
            .store
            .single_conversation(req.caller_id, req.target_user_id)
            .await?;
        self.view_of(req.caller_id, &meta.conversation_id).await
    }

    async fn get_messages(&self, req: pb::GetMessagesRequest) -> Result<pb::HistoryPage> {
        let meta = self.ports.store.conversation(&req.conversation_id).await?;
        self.ensure_member(&meta, req.caller_id).await?;
        self.ports
            .store
            .messages(pb::HistoryRequest {
                conversation_id: req.conversation_id,
                page: req.page,
                size: req.size,
                after_seq: req.after_seq,
                before_seq: req.before_seq,
            })
            .await
    }

    async fn mark_read(&self, req: pb::CallerMarkReadRequest) -> Result<pb::ReadPointer> {
        if req.seq_id < 0 {
            return Err(Error::invalid("seqId must not be negative"));
        }
        self.ports
            .store
            .mark_read(req.caller_id, &req.conversation_id, req.seq_id)
            .await
    }

    async fn send_message(&self, req: pb::SendMessageRequest) -> Result<pb::ChatMessage> {
        self.user_sends
            .take(&req.caller_id)
            .map_err(|wait| Error::rate_limited("too many messages: slow down", wait))?;
        let meta = self
            .check_send(
                req.caller_id,
                &req.conversation_id,
                &req.content,
                req.r#type,
                &req.temp_message_id,
            )
            .await?;
        let mut outcomes = self
            .ports
            .store
            .append(vec![pb::MessageDraft {
                conversation_id: req.conversation_id,
                sender_id: req.caller_id,
                sender_name: String::new(),
                r#type: req.r#type,
                content: req.content,
                temp_message_id: req.temp_message_id,
            }])
            .await?;
        let outcome = outcomes
            .pop()
            .ok_or_else(|| Error::internal("append returned nothing"))?;
        let Some(message) = outcome.message else {
            let code = ErrorCode::parse(&outcome.error_code).unwrap_or(ErrorCode::Internal);
            return Err(Error::new(code, outcome.error_message));
        };
        // durable already: a routing failure is logged, not reported as a failed send; a
        // duplicate is routed again (gateways drop what they already delivered)
        if let Err(e) = self.route(&message, &meta, None).await {
            tracing::warn!(error = %e, message_id = message.message_id, "routing failed after append");
        }
        Ok(message)
    }

    async fn add_friend(&self, req: pb::TargetUserRequest) -> Result<pb::ConversationView> {
        let caller = self.caller(req.caller_id).await?;
        if caller.is_guest {
            return Err(Error::forbidden("guests cannot add friends"));
        }
        if req.target_user_id == req.caller_id {
            return Err(Error::invalid("cannot befriend yourself"));
        }
        let meta = self
            .ports
            .store
            .add_friend(req.caller_id, req.target_user_id)
            .await?;
        self.view_of(req.caller_id, &meta.conversation_id).await
    }

    async fn list_friends(&self, req: pb::CallerRequest) -> Result<pb::FriendList> {
        let friends = self.ports.store.friends(req.caller_id).await?;
        let ids: Vec<i64> = friends.iter().map(|f| f.user_id).collect();
        let presence = presence_or_unknown(self.ports.cache.as_ref(), &ids).await?;
        Ok(pb::FriendList {
            friends: friends
                .into_iter()
                .map(|user| pb::Friend {
                    online: presence.contains_key(&user.user_id),
                    user: Some(user),
                })
                .collect(),
        })
    }

    async fn create_group(&self, req: pb::CallerCreateGroupRequest) -> Result<pb::GroupCreated> {
        let caller = self.caller(req.caller_id).await?;
        if caller.is_guest {
            return Err(Error::forbidden("guests cannot create groups"));
        }
        let name = req.group_name.trim();
        if !(1..=50).contains(&char_len(name)) {
            return Err(Error::invalid("groupName must be 1-50 characters"));
        }
        check_member_list(&req.member_ids)?;
        check_avatar(&req.avatar)?;
        let group = self
            .ports
            .store
            .create_group(pb::CreateGroupRequest {
                owner_id: req.caller_id,
                group_name: name.to_string(),
                avatar: req.avatar,
                member_ids: req.member_ids,
            })
            .await?;
        let conversation = self.view_of(req.caller_id, &group.conversation_id).await?;
        Ok(pb::GroupCreated {
            group: Some(group),
            conversation: Some(conversation),
        })
    }

    async fn get_group(&self, req: pb::CallerGroupRequest) -> Result<pb::Group> {
        let group = self.ports.store.group(req.group_id).await?;
        if role_of(&group, req.caller_id).is_none() {
            return Err(Error::forbidden("you are not a member of this group"));
        }
        Ok(group)
    }

    async fn add_group_members(&self, req: pb::CallerGroupMembersRequest) -> Result<pb::Group> {
        let group = self.ports.store.group(req.group_id).await?;
        match role_of(&group, req.caller_id) {
            Some(pb::GroupRole::Owner | pb::GroupRole::Admin) => {}
            Some(_) => {
                return Err(Error::forbidden(
                    "only the owner or an admin can add members",
                ))
            }
            None => return Err(Error::forbidden("you are not a member of this group")),
        }
        if req.user_ids.is_empty() {
            return Err(Error::invalid("no members to add"));
        }
        check_member_list(&req.user_ids)?;
        if group.members.len() + req.user_ids.len() > MAX_GROUP_MEMBERS {
            return Err(Error::invalid(format!(
                "a group has at most {MAX_GROUP_MEMBERS} members"
            )));
        }
        self.ports
            .store
            .add_group_members(req.group_id, &req.user_ids, pb::GroupRole::Member)
            .await?;
        self.ports.store.group(req.group_id).await
    }

    async fn remove_group_member(&self, req: pb::CallerGroupMemberRequest) -> Result<pb::Group> {
        use pb::GroupRole::{Admin, Owner};
        let group = self.ports.store.group(req.group_id).await?;
        let caller = role_of(&group, req.caller_id)
            .ok_or_else(|| Error::forbidden("you are not a member of this group"))?;
        let target = role_of(&group, req.user_id).ok_or_else(|| {
            Error::new(
                ErrorCode::NotFound,
                format!("user {} is not in this group", req.user_id),
            )
        })?;
        let allowed = if req.caller_id == req.user_id {
            caller != Owner
        } else {
            match caller {
                Owner => true,
                Admin => !matches!(target, Owner | Admin),
                _ => false,
            }
        };
        if !allowed {
            return Err(Error::forbidden(if req.caller_id == req.user_id {
                "the owner cannot leave the group"
            } else {
                "your role cannot remove this member"
            }));
        }
        self.ports
            .store
            .remove_group_member(req.group_id, req.user_id)
            .await?;
        self.ports.store.group(req.group_id).await
    }

    async fn user_connected(&self, req: pb::PresenceRequest) -> Result<()> {
        let n = self
            .ports
            .cache
            .presence_add(
                req.user_id,
                &Endpoint {
                    gateway_id: req.gateway_id,
                    conn_id: req.conn_id,
                },
                self.presence_ttl,
            )
            .await?;
        if n == 1 {
            self.announce_presence(req.user_id, true).await?;
        }
        Ok(())
    }

    async fn user_disconnected(&self, req: pb::PresenceRequest) -> Result<()> {
        let n = self
            .ports
            .cache
            .presence_remove(
                req.user_id,
                &Endpoint {
                    gateway_id: req.gateway_id,
                    conn_id: req.conn_id,
                },
            )
            .await?;
        if n == 0 {
            self.announce_presence(req.user_id, false).await?;
        }
        Ok(())
    }

    async fn heartbeat(&self, req: pb::HeartbeatRequest) -> Result<()> {
        let entries: Vec<(i64, u64)> = req.entries.iter().map(|e| (e.user_id, e.conn_id)).collect();
        self.ports
            .cache
            .presence_refresh(&req.gateway_id, &entries, self.presence_ttl)
            .await
    }
}

/// Presence for display (online dots): in degraded mode (cache unreachable) everybody
/// shows offline rather than the request failing.
async fn presence_or_unknown(
    cache: &dyn ringchat_core::ports::Cache,
    users: &[i64],
) -> Result<std::collections::HashMap<i64, Vec<ringchat_core::ports::Endpoint>>> {
    match cache.presence(users).await {
        Err(e) if e.is_retryable() => Ok(Default::default()),
        other => other,
    }
}
