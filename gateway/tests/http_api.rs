//! Every endpoint of the client API contract over real HTTP, with its envelope, status
//! codes and CORS.

mod common;

use common::*;
use serde_json::json;

#[test]
fn every_endpoint_of_the_contract() {
    let sys = System::start();
    let api = sys.api();

    // register / login / guest
    let r = api.post(
        "/api/auth/register",
        &json!({ "username": "alice_api", "password": "secret12" }),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["success"], true);
    let alice_id = r.body["data"]["user"]["userId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(r.body["data"]["user"]["isGuest"], false);
    assert_error(
        &api.post(
            "/api/auth/register",
            &json!({ "username": "alice_api", "password": "secret12" }),
        ),
        409,
        "USERNAME_TAKEN",
    );
    assert_error(
        &api.post(
            "/api/auth/register",
            &json!({ "username": "al", "password": "secret12" }),
        ),
        400,
        "INVALID_ARGUMENT",
    );
    assert_error(
        &api.post(
            "/api/auth/register",
            &json!({ "username": "alice2", "password": "123" }),
        ),
        400,
        "INVALID_ARGUMENT",
    );
    assert_error(
        &api.post(
            "/api/auth/login",
            &json!({ "username": "alice_api", "password": "wrong-one" }),
        ),
        401,
        "AUTH_FAILED",
    );
    let r = api.post(
        "/api/auth/login",
        &json!({ "username": "alice_api", "password": "secret12" }),
    );
    assert_eq!(r.status, 200);
    let token = r.body["data"]["token"].as_str().unwrap().to_string();
    assert_eq!(r.body["data"]["user"]["userId"], alice_id.as_str());
    let alice = Http {
        addr: sys.http,
        token: Some(token.clone()),
    };
    let bob = sys.user("bob");
    let carol = sys.user("carol");
    let r = api.post("/api/auth/guest", &json!({}));
    assert_eq!(r.status, 200);
    assert_eq!(r.body["data"]["user"]["isGuest"], true);
    let r = api.post("/api/auth/guest", &json!({ "guestName": "visitor" }));
    assert!(r.body["data"]["user"]["username"]
        .as_str()
        .unwrap()
        .starts_with("visitor"));

    // users
    for path in ["/api/users/info", "/api/user/info"] {
        let r = alice.get(path);
        assert_eq!(r.status, 200);
        assert_eq!(r.body["data"]["username"], "alice_api");
    }
    assert_error(&api.get("/api/users/info"), 401, "AUTH_FAILED");
    let r = alice.get(&format!("/api/users/{}", bob.name));
    assert_eq!(r.body["data"]["userId"], bob.id.as_str());
    assert_error(&alice.get("/api/users/nobody_here"), 404, "USER_NOT_FOUND");

    // conversations: world first; single chat idempotent
    let r = alice.get("/api/conversations");
    assert_eq!(r.body["data"][0]["conversationId"], "world");
    assert_eq!(r.body["data"][0]["type"], "world");
    assert_eq!(r.body["data"][0]["target"]["groupId"], "world");
    let r1 = alice.post("/api/conversations", &json!({ "targetUserId": bob.id }));
    let r2 = bob.http().post(
        "/api/conversations",
        &json!({ "targetUserId": alice_id.parse::<i64>().unwrap() }),
    );
    assert_eq!(
        r1.body["data"]["conversationId"],
        r2.body["data"]["conversationId"]
    );
    assert_eq!(r1.body["data"]["type"], "single");
    assert_eq!(r1.body["data"]["target"]["userId"], bob.id.as_str());
    let single = r1.body["data"]["conversationId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_error(
        &alice.post("/api/conversations", &json!({ "targetUserId": "987654" })),
        404,
        "USER_NOT_FOUND",
    );
    assert_error(
        &alice.post("/api/conversations", &json!({})),
        400,
        "INVALID_ARGUMENT",
    );

    // messages over HTTP, history, read state
    for i in 1..=3 {
        let r = alice.post(
            "/api/messages",
            &json!({ "conversationId": single, "content": format!("m{i}"), "type": "text" }),
        );
        assert_eq!(r.status, 201, "{}", r.text);
        assert_eq!(r.body["data"]["seqId"], i);
        assert_eq!(r.body["data"]["senderId"], alice_id.as_str());
        assert!(r.body["data"]["messageId"].is_string());
        assert!(r.body["data"]["sendTime"].as_str().unwrap().ends_with('Z'));
    }
    let r = bob.http().get(&format!(
        "/api/conversations/{single}/messages?page=1&size=2"
    ));
    assert_eq!(r.status, 200);
    let seqs: Vec<i64> = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seqId"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, vec![2, 3]);
    assert_eq!(
        r.body["pagination"],
        json!({ "page": 1, "size": 2, "total": 3, "hasMore": true })
    );
    let r = bob
        .http()
        .get(&format!("/api/conversations/{single}/messages?afterSeq=1"));
    assert_eq!(r.body["data"].as_array().unwrap().len(), 2);
    let r = bob.http().get(&format!(
        "/api/conversations/{single}/messages?beforeSeq=3&size=1"
    ));
    assert_eq!(r.body["data"][0]["seqId"], 2);
    let unread = |who: &Http| -> i64 {
        who.get("/api/conversations").body["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["conversationId"] == single.as_str())
            .unwrap()["unreadCount"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(unread(&bob.http()), 3);
    let r = bob.http().put(
        &format!("/api/conversations/{single}/read"),
        &json!({ "seqId": 2 }),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(unread(&bob.http()), 1);
    let r = bob.http().request(
        "PUT",
        &format!("/api/conversations/{single}/read"),
        None,
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(unread(&bob.http()), 0);
    assert_error(
        &carol
            .http()
            .get(&format!("/api/conversations/{single}/messages")),
        403,
        "FORBIDDEN",
    );
    assert_error(
        &alice.get("/api/conversations/s_999_1000/messages"),
        404,
        "CONVERSATION_NOT_FOUND",
    );
    assert_error(
        &alice.get(&format!("/api/conversations/{single}/messages?page=x")),
        400,
        "INVALID_ARGUMENT",
    );

    // friends
    let r = alice.post("/api/friends", &json!({ "friendId": carol.id }));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["conversation"]["type"], "single");
    let r = alice.get("/api/friends");
    let friends = r.body["data"].as_array().unwrap();
    assert_eq!(friends.len(), 1);
    assert_eq!(friends[0]["userId"], carol.id.as_str());
    assert_eq!(friends[0]["online"], false);
    let _carol_ws = carol.ws();
    let r = alice.get("/api/users/status/online");
    let st = r.body["data"].as_object().unwrap();
    assert_eq!(st.get(&carol.id), Some(&json!(true)), "{st:?}");

    // groups
    let r = alice.post(
        "/api/groups",
        &json!({ "groupName": "team", "members": [bob.id, carol.id] }),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let g = &r.body["data"]["group"];
    assert_eq!(g["groupName"], "team");
    assert_eq!(g["members"].as_array().unwrap().len(), 3);
    let owner = g["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["userId"] == alice_id.as_str())
        .unwrap();
    assert_eq!(owner["role"], "owner");
    assert_eq!(r.body["data"]["conversation"]["type"], "group");
    let gid = g["groupId"].as_str().unwrap().to_string();
    let r = bob.http().get(&format!("/api/groups/{gid}"));
    assert_eq!(r.status, 200);
    assert!(r.body["data"]["members"][0]["username"].is_string());
    assert_error(
        &bob.http().get("/api/groups/999999"),
        404,
        "GROUP_NOT_FOUND",
    );
    assert_error(&bob.http().get("/api/groups/abc"), 400, "INVALID_ARGUMENT");
    let dave = sys.user("dave");
    assert_error(
        &bob.http().post(
            &format!("/api/groups/{gid}/members"),
            &json!({ "userIds": [dave.id] }),
        ),
        403,
        "FORBIDDEN",
    );
    let r = alice.post(
        &format!("/api/groups/{gid}/members"),
        &json!({ "userIds": [dave.id] }),
    );
    assert_eq!(r.body["data"]["members"].as_array().unwrap().len(), 4);
    let r = dave.http().request(
        "DELETE",
        &format!("/api/groups/{gid}/members/{}", dave.id),
        None,
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["members"].as_array().unwrap().len(), 3);

    // guests: no friends, no groups
    let guest = sys.guest("g");
    assert_error(
        &guest
            .http()
            .post("/api/friends", &json!({ "friendId": bob.id })),
        403,
        "FORBIDDEN",
    );
    assert_error(
        &guest
            .http()
            .post("/api/groups", &json!({ "groupName": "x", "members": [] })),
        403,
        "FORBIDDEN",
    );

    // logout revokes the token
    let r = alice.post("/api/auth/logout", &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_error(&alice.get("/api/users/info"), 401, "AUTH_FAILED");

    // unknown endpoints and methods
    assert_error(&api.get("/api/nope"), 404, "NOT_FOUND");
    assert_error(
        &api.request("DELETE", "/api/conversations", None, &[]),
        405,
        "METHOD_NOT_ALLOWED",
    );
}

#[test]
fn cors_preflight_and_headers_for_browser_clients() {
    let sys = System::start();
    let r = sys.api().request(
        "OPTIONS",
        "/api/auth/login",
        None,
        &[
            ("origin", "http://localhost:5173"),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "content-type, authorization",
            ),
        ],
    );
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("*"),
        "the default allows any origin, as a wildcard (no credentials)"
    );
    assert!(r
        .header("access-control-allow-methods")
        .unwrap()
        .contains("POST"));
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("content-type, authorization")
    );
    let r = sys.api().request(
        "POST",
        "/api/auth/guest",
        Some(b"{}"),
        &[("origin", "http://localhost:5173")],
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("*"),
        "the default allows any origin, as a wildcard (no credentials)"
    );
    // an error answer carries the headers too, so the browser can read it
    let r = sys.api().request(
        "GET",
        "/api/users/info",
        None,
        &[("origin", "http://localhost:5173")],
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("*"),
        "the default allows any origin, as a wildcard (no credentials)"
    );
}

#[test]
fn malformed_http_gets_a_400_envelope_and_limits_hold() {
    let sys = System::start_with(&[("RINGCHAT_GATEWAY__HTTP_MAX_BODY_BYTES", "1024")]);
    let r = send_raw(sys.http, b"THIS IS NOT HTTP\r\n\r\n");
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.body["success"], false);
    let r = sys
        .api()
        .request("POST", "/api/auth/login", Some(b"{not json"), &[]);
    assert_eq!(r.status, 400);
    assert_eq!(r.body["code"], "INVALID_ARGUMENT");
    let big = vec![b'x'; 4096];
    let r = sys
        .api()
        .request("POST", "/api/auth/login", Some(&big), &[]);
    assert_eq!(r.status, 413);
    assert_eq!(r.body["code"], "MESSAGE_TOO_LARGE");
    let huge_header = format!(
        "GET /api/users/info HTTP/1.1\r\nx-big: {}\r\n\r\n",
        "y".repeat(20_000)
    );
    let r = send_raw(sys.http, huge_header.as_bytes());
    assert_eq!(r.status, 431);
    // keep-alive: two requests on one connection
    let raw = b"GET /api/nope HTTP/1.1\r\nhost: x\r\n\r\nPOST /api/auth/guest HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}";
    let r = send_raw(sys.http, raw);
    assert_eq!(r.status, 404);
    assert!(
        r.text.contains("HTTP/1.1 200 OK"),
        "second response missing: {}",
        r.text
    );
}

#[test]
fn admin_port_serves_health_readiness_and_metrics() {
    let sys = System::start();
    let admin = Http {
        addr: sys.admin,
        token: None,
    };
    assert_eq!(admin.get("/healthz").status, 200);
    let r = admin.get("/readyz");
    assert_eq!(r.status, 200, "{}", r.text);
    let u = sys.user("m");
    let _ws = u.ws();
    let r = admin.get("/metrics");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    assert!(r.text.contains("ringchat_gateway_connections{core=\"0\"}"));
    assert!(r.text.contains("ringchat_build_info{"));
    assert!(r.text.contains("driver=\""));
    assert!(sys.metric("ringchat_gateway_connections{") >= 1.0);
    assert!(sys.metric("ringchat_gateway_http_requests_total") >= 2.0);
}

#[test]
fn cors_origins_can_be_restricted() {
    let sys = System::start_with(&[("RINGCHAT_GATEWAY__CORS_ORIGINS", "http://app.example")]);
    let allowed = sys.api().request(
        "POST",
        "/api/auth/guest",
        Some(b"{}"),
        &[("origin", "http://app.example")],
    );
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("http://app.example")
    );
    let other = sys.api().request(
        "POST",
        "/api/auth/guest",
        Some(b"{}"),
        &[("origin", "http://evil.example")],
    );
    assert_eq!(other.header("access-control-allow-origin"), None);
    let pre = sys.api().request(
        "OPTIONS",
        "/api/auth/login",
        None,
        &[("origin", "http://evil.example")],
    );
    assert_eq!(pre.status, 403);
}

#[test]
fn every_api_response_names_its_trace_id_and_browsers_may_read_it() {
    let sys = System::start();
    let trace_id = |r: &HttpResponse| -> String {
        let id = r
            .header("x-trace-id")
            .expect("an X-Trace-Id header")
            .to_string();
        assert!(
            id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{id:?}"
        );
        id
    };
    let a = sys.api().post("/api/auth/guest", &json!({}));
    assert_eq!(a.status, 200, "{}", a.text);
    let b = sys.api().post("/api/auth/guest", &json!({}));
    assert_ne!(trace_id(&a), trace_id(&b), "one id per request");
    // failures too: that is when a user quotes it
    let r = sys.api().get("/api/conversations");
    assert_eq!(r.status, 401);
    trace_id(&r);
    let r = sys.api().request(
        "POST",
        "/api/auth/guest",
        Some(b"{}"),
        &[("origin", "http://localhost:5173")],
    );
    trace_id(&r);
    assert_eq!(
        r.header("access-control-expose-headers"),
        Some("X-Trace-Id")
    );
}
