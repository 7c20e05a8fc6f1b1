//! Accounts and sessions: registration, login (bounded password hashing, throttles),
//! guests, tokens (issue, verify, revoke) and the session and revocation cache.

use std::time::Duration;

use bytes::Bytes;
use pb::downstream_batch::Body;
use prost::Message as _;
use rand::Rng;
use ringchat_core::fanout::{self, send_downstream};
use ringchat_core::model;
use ringchat_core::{Error, ErrorCode, Result};
use ringchat_proto as pb;

use crate::auth::{new_jti, Claims};

use super::{char_len, now_secs, LogicService};

pub(super) fn session_key(jti: &str) -> String {
    format!("session:{jti}")
}

pub(super) fn revoked_key(jti: &str) -> String {
    format!("revoked:{jti}")
}

/// The stored form of a username ([`model::normalize_username`]), 3-20 characters.
pub(super) fn validate_username(raw: &str) -> Result<String> {
    let name = model::normalize_username(raw)?;
    if !(3..=20).contains(&char_len(&name)) {
        return Err(Error::invalid("username must be 3-20 characters"));
    }
    Ok(name)
}

pub(super) fn validate_password(pw: &str) -> Result<()> {
    if !(6..=50).contains(&char_len(pw)) {
        return Err(Error::invalid("password must be 6-50 characters"));
    }
    Ok(())
}

impl LogicService {
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

    pub(crate) async fn issue_token(&self, user: pb::User) -> Result<pb::AuthResponse> {
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
}

pub(super) async fn register(svc: &LogicService, req: pb::RegisterRequest) -> Result<pb::User> {
    let username = validate_username(&req.username)?;
    validate_password(&req.password)?;
    let hash = svc.passwords.hash_bounded(req.password).await?;
    svc.ports
        .store
        .create_user(pb::CreateUserRequest {
            username,
            password_hash: hash,
            avatar: String::new(),
            is_guest: false,
        })
        .await
}

pub(super) async fn login(svc: &LogicService, req: pb::LoginRequest) -> Result<pb::AuthResponse> {
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
    svc.login_names.take(&name_key).map_err(throttled)?;
    if let Err(wait) = svc.login_addrs.take(&req.client_addr) {
        svc.login_names.give_back(&name_key);
        return Err(throttled(wait));
    }
    let user = match svc.ports.store.credentials(&username).await {
        Ok(c) => c.user.filter(|u| !u.is_guest).map(|u| (u, c.password_hash)),
        Err(e) if e.code == ErrorCode::UserNotFound => None,
        Err(e) => return Err(e),
    };
    // unknown users and guests cost a full check too (against a hash nobody knows)
    let (user, phc) = match user {
        Some((u, phc)) => (Some(u), Some(phc)),
        None => (None, None),
    };
    let ok = svc.passwords.verify_bounded(req.password, phc).await?;
    match user {
        Some(user) if ok => {
            svc.login_names.give_back(&name_key);
            svc.login_addrs.give_back(&req.client_addr);
            svc.issue_token(user).await
        }
        _ => Err(refused()),
    }
}

pub(super) async fn guest(svc: &LogicService, req: pb::GuestRequest) -> Result<pb::AuthResponse> {
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
        match svc
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
            Ok(user) => return svc.issue_token(user).await,
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
pub(super) async fn logout(svc: &LogicService, req: pb::TokenRequest) -> Result<()> {
    let Ok(claims) = svc.keys.verify(&req.token, now_secs()) else {
        return Ok(());
    };
    let Ok(user_id) = claims.user_id() else {
        return Ok(());
    };
    revoke(svc, &claims.jti, claims.exp).await?;
    let located = fanout::locate_or_everywhere(
        svc.ports.cache.as_ref(),
        svc.ports.discovery.as_ref(),
        &[user_id],
    )
    .await?;
    for gw in located.by_gateway.keys() {
        send_downstream(
            svc.ports.bus.as_ref(),
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

/// A new token for the account a valid token stands for, then that token revoked. The
/// connections opened with the old token stay open (unlike logout: the same client goes
/// on with the new token). Two refreshes racing with one token may both succeed; once one
/// has finished, the old token is refused everywhere.
pub(super) async fn refresh(svc: &LogicService, req: pb::TokenRequest) -> Result<pb::AuthResponse> {
    // the session names the token's id and expiry: no second check of the signature
    let session = authenticate(svc, req).await?;
    let user = session
        .user
        .ok_or_else(|| Error::internal("a session without its user"))?;
    // single use: of concurrent refreshes with one token, only the one that revokes it
    // first gets a new token
    if !revoke(svc, &session.token_id, session.expires_at).await? {
        return Err(Error::auth("token has been revoked"));
    }
    svc.issue_token(user).await
}

/// Revokes token `jti` until it expires at `exp`: the store keeps it across restarts, the
/// cache answers every request; its cached session goes.
/// `true` when this call revoked it first (see [`ringchat_core::ports::Store::revoke_token`]).
async fn revoke(svc: &LogicService, jti: &str, exp: i64) -> Result<bool> {
    let left = exp - now_secs();
    let first = svc.ports.store.revoke_token(jti, exp).await?;
    svc.ports
        .cache
        .set(
            &revoked_key(jti),
            Bytes::from_static(b"1"),
            Duration::from_secs(left.max(1) as u64),
        )
        .await?;
    svc.ports.cache.delete(&session_key(jti)).await?;
    Ok(first)
}

pub(super) async fn authenticate(svc: &LogicService, req: pb::TokenRequest) -> Result<pb::Session> {
    let now = now_secs();
    let claims = svc.keys.verify(&req.token, now)?;
    if svc
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
    if let Some(bytes) = svc.ports.cache.get(&key).await? {
        if let Ok(user) = pb::User::decode(bytes) {
            return Ok(session(user));
        }
    }
    let user = svc
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
    let ttl = svc
        .session_ttl
        .min(Duration::from_secs((claims.exp - now).max(1) as u64));
    svc.ports
        .cache
        .set(&key, Bytes::from(user.encode_to_vec()), ttl)
        .await?;
    Ok(session(user))
}
