//! Accounts and sessions: register, login, guest, logout, refresh.

use ringchat_core::Error;
use ringchat_proto as pb;
use serde_json::Value;

use super::{str_field, Ctx, Reply};
use crate::http::Response;
use crate::protocol::objects::{Auth, User};

#[derive(serde::Serialize)]
struct Registered<'a> {
    user: User<'a>,
}

pub(super) async fn register(cx: &Ctx<'_>) -> Reply {
    let body = cx.body()?;
    let (username, password) = (str_field(&body, "username")?, str_field(&body, "password")?);
    let user = cx
        .call(move |l| async move { l.register(pb::RegisterRequest { username, password }).await })
        .await?;
    Ok(Response::ok(
        201,
        "registered",
        Registered {
            user: User::from(&user),
        },
    ))
}

pub(super) async fn login(cx: &Ctx<'_>) -> Reply {
    let body = cx.body()?;
    let (username, password) = (str_field(&body, "username")?, str_field(&body, "password")?);
    let client_addr = cx.req.peer.map(|ip| ip.to_string()).unwrap_or_default();
    let auth = cx
        .call(move |l| async move {
            l.login(pb::LoginRequest {
                username,
                password,
                client_addr,
            })
            .await
        })
        .await?;
    Ok(Response::ok(200, "logged in", Auth::from(&auth)))
}

pub(super) async fn guest(cx: &Ctx<'_>) -> Reply {
    let body = cx.body()?;
    let guest_name = match body.get("guestName") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(Error::invalid("guestName must be a string")),
    };
    let auth = cx
        .call(move |l| async move { l.guest(pb::GuestRequest { guest_name }).await })
        .await?;
    Ok(Response::ok(
        200,
        "guest session created",
        Auth::from(&auth),
    ))
}

/// Always 200 for a missing, malformed, expired or revoked token (clients call logout from
/// their 401 handler, and a 401 here would loop). A valid token is revoked and its open
/// WebSockets closed (im-logic tells their gateways). Only a backend failure is an error.
pub(super) async fn logout(cx: &Ctx<'_>) -> Reply {
    if let Ok(token) = cx.token() {
        cx.call(move |l| async move { l.logout(pb::TokenRequest { token }).await })
            .await?;
    }
    Ok(Response::ok(200, "logged out", ()))
}

/// A new token for a valid one (the same account and lifetime), which is revoked: 401 for
/// a missing, bad, expired or revoked token. The WebSockets opened with the old token stay
/// open.
pub(super) async fn refresh(cx: &Ctx<'_>) -> Reply {
    let token = cx.token()?;
    let auth = cx
        .call(move |l| async move { l.refresh(pb::TokenRequest { token }).await })
        .await?;
    Ok(Response::ok(200, "token refreshed", Auth::from(&auth)))
}
