//! Accounts beyond the web client's first generation (issue 12), end to end with real
//! clients in the embedded profile; `distributed.rs` runs the same checks on the real
//! engines.

mod common;

use common::*;
use serde_json::json;

#[test]
fn refresh_gives_a_new_token_and_revokes_the_old_one_keeping_open_sockets() {
    let sys = System::start();
    let (alice, bob) = (sys.user("rf"), sys.user("rf_peer"));
    let fresh = check_token_refresh(&alice, &bob);
    // the new token can be refreshed in turn
    let r = fresh.http().post("/api/auth/refresh", &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);

    // an expired token, however well signed, is refused
    let expired = expired_token(&sys, &bob);
    let r = Http {
        addr: sys.http,
        token: Some(expired),
    }
    .post("/api/auth/refresh", &json!({}));
    assert_error(&r, 401, "AUTH_FAILED");

    // guests refresh too, and stay guests
    let guest = sys.guest("rfg");
    let r = guest.http().post("/api/auth/refresh", &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["user"]["isGuest"], true, "{}", r.text);
    assert_eq!(r.body["data"]["user"]["userId"], guest.id.as_str());
}

#[test]
fn users_are_searched_by_name_prefix_paged_and_limited() {
    let sys = System::start();
    let searcher = sys.user("srch");
    check_user_search(sys.http, &searcher);
}

#[test]
fn profiles_set_and_clear_nickname_and_avatar() {
    let sys = System::start();
    let (user, viewer) = (sys.user("pf"), sys.user("pf_view"));
    check_profile(&user, &viewer);
}
