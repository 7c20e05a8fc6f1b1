//! Hardening: inputs and behaviours an attacker or an unlucky operator produces, each
//! answered precisely, none able to hold or hurt the server (issue 8's table, one test per
//! row, named by what it pins).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

/// Sends raw bytes and reads until the server closes (or `limit` passes).
fn exchange(sys: &System, raw: &[u8], limit: Duration) -> (String, bool) {
    let mut s = NoEintr(TcpStream::connect(sys.http).unwrap());
    s.0.set_read_timeout(Some(limit)).unwrap();
    s.write_all(raw).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let closed = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

#[test]
fn conflicting_content_lengths_are_refused() {
    let sys = System::start();
    let body = r#"{"guestName":"x"}"#;
    for lengths in [
        format!("content-length: {}\r\ncontent-length: 5\r\n", body.len()),
        format!("content-length: {}, 5\r\n", body.len()),
        "content-length: +17\r\n".to_string(),
        format!(
            "content-length: {}\r\ntransfer-encoding: chunked\r\n",
            body.len()
        ),
    ] {
        let raw = format!(
            "POST /api/auth/guest HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n{lengths}\r\n{body}"
        );
        let (resp, closed) = exchange(&sys, raw.as_bytes(), WAIT);
        let status = &resp[9..12];
        assert!(status == "400" || status == "411", "{lengths:?}: {resp}");
        assert!(closed, "the connection is closed after a framing error");
        assert_eq!(
            resp.matches("HTTP/1.1").count(),
            1,
            "nothing served as a second request"
        );
    }
    // the same length twice is one length
    let raw = format!(
        "POST /api/auth/guest HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {0}\r\ncontent-length: {0}\r\n\r\n{body}",
        body.len()
    );
    let (resp, _) = exchange(&sys, raw.as_bytes(), WAIT);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
}

#[test]
fn a_request_head_dribbled_byte_by_byte_is_cut_off() {
    let sys = System::start_with(&[("RINGCHAT_GATEWAY__HTTP_HEAD_TIMEOUT_SECS", "1")]);
    let mut s = NoEintr(TcpStream::connect(sys.http).unwrap());
    s.0.set_read_timeout(Some(Duration::from_millis(250)))
        .unwrap();
    let start = Instant::now();
    let head =
        b"GET /api/users/info HTTP/1.1\r\nhost: x\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut answer = Vec::new();
    for b in head {
        if s.write_all(&[*b]).is_err() {
            break;
        }
        let mut buf = [0u8; 1024];
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        if start.elapsed() > Duration::from_secs(10) {
            panic!("still open after 10 s of dribbling");
        }
    }
    let elapsed = start.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        elapsed < Duration::from_secs(4),
        "cut off after {elapsed:?}"
    );
}

#[test]
fn http10_closes_unless_keep_alive_was_asked() {
    let sys = System::start();
    let (resp, closed) = exchange(
        &sys,
        b"GET /api/openapi.json HTTP/1.0\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{}", &resp[..40]);
    assert!(resp.contains("connection: close\r\n"));
    assert!(
        closed,
        "an HTTP/1.0 connection is closed after the response"
    );

    let mut s = NoEintr(TcpStream::connect(sys.http).unwrap());
    s.write_all(b"GET /api/users/info HTTP/1.0\r\nconnection: keep-alive\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    let resp = String::from_utf8_lossy(&buf[..n]);
    assert!(resp.contains("connection: keep-alive\r\n"), "{resp}");
    assert!(
        resp.contains("x-content-type-options: nosniff\r\n"),
        "{resp}"
    );
}

#[test]
fn cors_wildcard_never_allows_credentials_and_upgrades_check_origin() {
    // the default: any origin, but as `*`, without credentials
    let sys = System::start();
    let r = sys.api().request(
        "GET",
        "/api/openapi.json",
        None,
        &[("origin", "https://evil.example")],
    );
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("access-control-allow-credentials"), None);

    // restricted origins: a listed one is echoed with credentials; an upgrade from another
    // site's page is refused, one without Origin (not a browser) is not
    let sys = System::start_with(&[("RINGCHAT_GATEWAY__CORS_ORIGINS", "https://app.example")]);
    let u = sys.user("orig");
    let r = sys.api().request(
        "GET",
        "/api/openapi.json",
        None,
        &[("origin", "https://app.example")],
    );
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    let upgrade = |origin: Option<&str>| {
        let origin = origin
            .map(|o| format!("origin: {o}\r\n"))
            .unwrap_or_default();
        let raw = format!(
            "GET /ws?token={} HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n{origin}\r\n",
            u.token
        );
        let mut s = NoEintr(TcpStream::connect(sys.http).unwrap());
        s.0.set_read_timeout(Some(WAIT)).unwrap();
        s.write_all(raw.as_bytes()).unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n.min(12)]).into_owned()
    };
    assert_eq!(upgrade(Some("https://evil.example")), "HTTP/1.1 403");
    assert_eq!(upgrade(Some("https://app.example")), "HTTP/1.1 101");
    assert_eq!(upgrade(None), "HTTP/1.1 101");
}

#[test]
fn the_admin_port_listens_on_loopback_by_default() {
    let s = im_gateway::config::Settings::from_toml_and_env("", &Default::default()).unwrap();
    assert!(s.gateway.admin_listen.starts_with("127.0.0.1:"));
}

fn frame_json(kind: &str, data: serde_json::Value) -> serde_json::Value {
    serde_json::json!({ "type": kind, "data": data, "timestamp": 0 })
}

#[test]
fn every_client_frame_counts_against_the_connections_budget() {
    let sys = System::start_with(&[
        ("RINGCHAT_GATEWAY__RATE_LIMIT_PER_SEC", "2"),
        ("RINGCHAT_GATEWAY__RATE_LIMIT_BURST", "5"),
    ]);
    let u = sys.user("budget");
    let mut ws = u.ws();
    // pings, mark-reads and garbage alike
    for i in 0..12 {
        match i % 3 {
            0 => ws.send_json(&frame_json("ping", serde_json::json!({}))),
            1 => ws.send_json(&frame_json(
                "mark-read",
                serde_json::json!({ "conversationId": "world" }),
            )),
            _ => ws.send_text("not json"),
        }
    }
    let e = ws.wait_for("a rate-limited frame", |e| {
        e["type"] == "error" && e["data"]["code"] == "RATE_LIMITED"
    });
    assert!(e["data"]["message"].as_str().unwrap().contains("slow down"));
    // a send over the budget is refused by name
    ws.send("world", "over", "over-1");
    let err = ws.answer("over-1").unwrap_err();
    assert_eq!(err["code"], "RATE_LIMITED");
    // the connection stays, and the budget comes back
    std::thread::sleep(Duration::from_millis(1500));
    ws.ping();
}

#[test]
fn a_flood_of_mark_read_frames_costs_a_few_writes() {
    let (sys, faults) = System::start_faulty(&[
        ("RINGCHAT_GATEWAY__RATE_LIMIT_PER_SEC", "100000"),
        ("RINGCHAT_GATEWAY__RATE_LIMIT_BURST", "100000"),
    ]);
    let (a, b) = (sys.user("mr_a"), sys.user("mr_b"));
    let conv = a.single_with(&b);
    let mut aw = a.ws();
    for i in 0..5 {
        let t = format!("mr-{i}");
        aw.send(&conv, &t, &t);
        aw.ack(&t);
    }
    let mut bw = b.ws();
    let before = faults.mark_reads.load(std::sync::atomic::Ordering::Relaxed);
    for i in 0..2000 {
        bw.send_json(&frame_json(
            "mark-read",
            serde_json::json!({ "conversationId": conv, "seqId": 1 + i % 5 }),
        ));
    }
    bw.ping();
    // the last write carries the highest seq asked for: b has read everything
    let end = Instant::now() + WAIT;
    loop {
        let list = b.http().get("/api/conversations");
        let row = list.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["conversationId"] == conv.as_str())
            .cloned()
            .unwrap();
        if row["unreadCount"] == 0 {
            break;
        }
        assert!(Instant::now() < end, "still unread: {row}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let writes = faults.mark_reads.load(std::sync::atomic::Ordering::Relaxed) - before;
    assert!(writes <= 10, "2000 mark-read frames made {writes} writes");
}

#[test]
fn connections_are_capped_per_address_and_overall_and_readyz_says_so() {
    let sys = System::start_with(&[
        ("RINGCHAT_GATEWAY__MAX_CONNECTIONS", "4"),
        ("RINGCHAT_GATEWAY__MAX_CONNECTIONS_PER_IP", "3"),
    ]);
    let u = sys.user("cap");
    let _held: Vec<Ws> = (0..3).map(|_| u.ws()).collect();
    // a fourth from the same address is refused at once with a 503
    let start = Instant::now();
    match Ws::connect(sys.http, &u.token) {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 503),
        Err(e) => panic!("not an HTTP refusal: {e:?}"),
        Ok(_) => panic!("a fourth connection from one address was accepted"),
    }
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(sys.metric("ringchat_gateway_connections_refused_total") >= 1.0);
    // the admin port still answers; at the overall cap readiness says not ready
    let admin = Http {
        addr: sys.admin,
        token: None,
    };
    assert_eq!(admin.get("/readyz").status, 200);
    // a fourth connection, from another loopback address, fills the server
    let from_other = {
        use socket2::{Domain, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        let local: std::net::SocketAddr = "127.0.0.2:0".parse().unwrap();
        s.bind(&local.into()).unwrap();
        s.connect(&sys.http.into()).unwrap();
        s
    };
    let _keep = from_other;
    let end = Instant::now() + WAIT;
    while admin.get("/readyz").status != 503 {
        assert!(Instant::now() < end, "readyz never reported the cap");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(admin.get("/healthz").status, 200);
}

#[test]
fn requests_and_new_accounts_are_limited_per_address() {
    let sys = System::start_with(&[
        ("RINGCHAT_GATEWAY__HTTP_REQUESTS_PER_SEC", "1"),
        ("RINGCHAT_GATEWAY__HTTP_REQUESTS_BURST", "8"),
        ("RINGCHAT_GATEWAY__ACCOUNTS_PER_MINUTE", "1"),
        ("RINGCHAT_GATEWAY__ACCOUNTS_BURST", "2"),
    ]);
    let guest = |name: &str| {
        sys.api()
            .post("/api/auth/guest", &serde_json::json!({ "guestName": name }))
    };
    assert_eq!(guest("g1").status, 200);
    assert_eq!(guest("g2").status, 200);
    let r = guest("g3");
    assert_eq!(r.status, 429, "{}", r.text);
    assert_eq!(r.body["code"], "RATE_LIMITED");
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(sys.api().get("/api/openapi.json").status);
    }
    assert!(statuses.contains(&429), "{statuses:?}");
}

#[test]
fn a_users_sends_are_limited_across_its_connections() {
    let sys = System::start_with(&[
        ("RINGCHAT_LOGIC__USER_SENDS_PER_SEC", "1"),
        ("RINGCHAT_LOGIC__USER_SENDS_BURST", "4"),
    ]);
    let u = sys.user("us");
    let (mut w1, mut w2) = (u.ws(), u.ws());
    let mut limited = 0;
    for i in 0..5 {
        for (j, w) in [&mut w1, &mut w2].into_iter().enumerate() {
            let t = format!("us-{i}-{j}");
            w.send("world", &t, &t);
            if let Err(e) = w.answer(&t) {
                assert_eq!(e["code"], "RATE_LIMITED", "{e}");
                limited += 1;
            }
        }
    }
    assert!(
        limited >= 5,
        "only {limited} of 10 refused with a burst of 4"
    );
    // over HTTP too
    let r = u.http().post(
        "/api/messages",
        &serde_json::json!({ "conversationId": "world", "content": "x" }),
    );
    assert_eq!(r.status, 429, "{}", r.text);
}

#[test]
fn a_socket_is_closed_when_its_token_expires() {
    let sys = System::start_with(&[
        ("RINGCHAT_AUTH__TOKEN_TTL_SECS", "2"),
        ("RINGCHAT_GATEWAY__HEARTBEAT_TIMEOUT_SECS", "3"),
    ]);
    let u = sys.user("exp");
    let mut ws = u.ws();
    let start = Instant::now();
    let e = ws.error();
    assert_eq!(e["code"], "AUTH_FAILED", "{e}");
    assert_eq!(ws.close_code(), Some(4001));
    assert!(
        start.elapsed() < Duration::from_secs(6),
        "{:?}",
        start.elapsed()
    );
}

/// A token signed with `secret` for `user`.
fn forge(secret: &[u8], user_id: &str, name: &str) -> String {
    use base64::Engine;
    use hmac::Mac;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let head = b64.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = serde_json::json!({ "sub": user_id, "name": name, "guest": false, "jti": "forged", "iat": 1, "exp": 4_000_000_000i64 });
    let body = b64.encode(claims.to_string());
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(format!("{head}.{body}").as_bytes());
    format!("{head}.{body}.{}", b64.encode(mac.finalize().into_bytes()))
}

#[test]
fn no_known_default_secret_and_tokens_die_with_their_data() {
    use std::os::unix::fs::PermissionsExt;
    let mut sys = System::start_with(&[("RINGCHAT_AUTH__JWT_SECRET", "")]);
    let u = sys.user("sec");
    assert_eq!(u.http().get("/api/users/info").status, 200);
    // the secret was made for this data directory, private
    let secret_file = sys.db.parent().unwrap().join("jwt.secret");
    let meta = std::fs::metadata(&secret_file).expect("jwt.secret is made on first start");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let secret = std::fs::read_to_string(&secret_file).unwrap();
    assert!(secret.trim().len() >= 64);
    // the old published development default opens nothing
    let forged = forge(b"ringchat-dev-secret-change-me", &u.id, &u.name);
    let r = Http {
        addr: sys.http,
        token: Some(forged),
    }
    .get("/api/users/info");
    assert_eq!(r.status, 401);
    // the same data directory keeps its secret across restarts: the token still works
    let db = sys.db.clone();
    sys.shutdown();
    drop(sys);
    let mut sys = System::start_on(db.clone(), &[("RINGCHAT_AUTH__JWT_SECRET", "")]);
    let r = Http {
        addr: sys.http,
        token: Some(u.token.clone()),
    }
    .get("/api/users/info");
    assert_eq!(r.status, 200, "{}", r.text);
    // a wiped data directory: a new secret, and the old token opens nothing, not even
    // the new "user 1"
    sys.shutdown();
    drop(sys);
    std::fs::remove_dir_all(db.parent().unwrap()).unwrap();
    let sys = System::start_on(db, &[("RINGCHAT_AUTH__JWT_SECRET", "")]);
    let _newcomer = sys.user("new");
    let r = Http {
        addr: sys.http,
        token: Some(u.token.clone()),
    }
    .get("/api/users/info");
    assert_eq!(r.status, 401, "{}", r.text);
}

#[test]
fn with_a_fixed_secret_a_token_does_not_outlive_its_account() {
    // the operator keeps the secret but wipes the data: "user 1" is someone else now
    let mut sys = System::start();
    let old = sys.user("first");
    sys.shutdown();
    drop(sys);
    // wiped data = a new, empty database (not the old path: the old pool's SQLite
    // connections close on their own threads and may unlink a WAL file by name after
    // the new database made its own there)
    let db = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(ringchat_core::testkit::unique("wiped"))
        .join("ringchat.db");
    let sys = System::start_on(db, &[]);
    let newcomer = sys.user("second");
    assert_eq!(newcomer.id, old.id, "the new account got the old id");
    let r = Http {
        addr: sys.http,
        token: Some(old.token.clone()),
    }
    .get("/api/users/info");
    assert_eq!(r.status, 401, "{}", r.text);
}

#[test]
fn usernames_are_normalized_and_look_alikes_refused() {
    let sys = System::start();
    let register = |name: &str| {
        sys.api().post(
            "/api/auth/register",
            &serde_json::json!({ "username": name, "password": "secret12" }),
        )
    };
    // fullwidth folds to plain (NFKC), and logs in either way
    let r = register("ｍａｌｌｏｒｙ");
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["data"]["user"]["username"], "mallory");
    let r = sys.api().post(
        "/api/auth/login",
        &serde_json::json!({ "username": "ｍａｌｌｏｒｙ", "password": "secret12" }),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    // invisible and format characters are refused
    for bad in [
        "mal\u{200b}lory",
        "mal\u{202e}lory",
        "\u{feff}mallory",
        "mal\u{ad}lory",
    ] {
        let r = register(bad);
        assert_eq!(r.status, 400, "{bad:?}: {}", r.text);
        assert_eq!(r.body["code"], "INVALID_ARGUMENT");
    }
    // look-alikes of an existing name are taken
    for look_alike in ["m\u{430}llory", "maIlory", "MALLORY"] {
        let r = register(look_alike);
        assert_eq!(r.status, 409, "{look_alike:?}: {}", r.text);
        assert_eq!(r.body["code"], "USERNAME_TAKEN");
    }
}

#[test]
fn a_revoked_token_stays_revoked_across_a_restart() {
    let mut sys = System::start();
    let u = sys.user("rev");
    assert_eq!(
        u.http()
            .post("/api/auth/logout", &serde_json::json!({}))
            .status,
        200
    );
    assert_eq!(u.http().get("/api/users/info").status, 401);
    let db = sys.db.clone();
    sys.shutdown();
    drop(sys);
    let sys = System::start_on(db, &[]);
    let r = Http {
        addr: sys.http,
        token: Some(u.token.clone()),
    }
    .get("/api/users/info");
    assert_eq!(r.status, 401, "{}", r.text);
    assert!(matches!(
        Ws::connect(sys.http, &u.token),
        Err(tungstenite::Error::Http(r)) if r.status() == 401
    ));
}

#[test]
fn out_of_range_numbers_are_clear_answers() {
    let sys = System::start();
    let u = sys.user("num");
    let mut ws = u.ws();
    ws.send("world", "one", "n-1");
    ws.ack("n-1");
    let get = |q: &str| {
        u.http()
            .get(&format!("/api/conversations/world/messages?{q}"))
    };
    let r = get("afterSeq=9223372036854775807");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"], serde_json::json!([]));
    for q in [
        "page=9223372036854775807",
        "page=4611686018427387904&size=200",
    ] {
        let r = get(q);
        assert_eq!(r.status, 200, "{q}: {}", r.text);
        assert_eq!(r.body["data"], serde_json::json!([]));
        assert_eq!(r.body["pagination"]["hasMore"], false, "{q}");
    }
    for q in [
        "page=x",
        "size=0",
        "afterSeq=-1",
        "page=99999999999999999999",
    ] {
        let r = get(q);
        assert_eq!(r.status, 400, "{q}: {}", r.text);
    }
}

#[test]
fn member_lists_and_avatars_are_capped() {
    let sys = System::start();
    let u = sys.user("caps");
    let many: Vec<i64> = (1..=100_000).collect();
    let r = u.http().post(
        "/api/groups",
        &serde_json::json!({ "groupName": "huge", "members": many }),
    );
    assert_eq!(r.status, 400, "{}", &r.text[..r.text.len().min(200)]);
    assert!(r.body["message"].as_str().unwrap().contains("at most"));
    for avatar in [
        "javascript:alert(1)".to_string(),
        "data:image/png;base64,AAAA".to_string(),
        format!("https://x.example/{}", "a".repeat(600)),
    ] {
        let r = u.http().post(
            "/api/groups",
            &serde_json::json!({ "groupName": "g", "members": [], "avatar": avatar }),
        );
        assert_eq!(r.status, 400, "{avatar:.40}: {}", r.text);
    }
    let r = u.http().post(
        "/api/groups",
        &serde_json::json!({ "groupName": "g", "members": [], "avatar": "https://img.example/a.png" }),
    );
    assert_eq!(r.status, 201, "{}", r.text);
}

#[test]
fn a_damaged_database_is_refused_at_start_with_its_report() {
    let mut sys = System::start();
    let u = sys.user("dmg");
    let mut ws = u.ws();
    for i in 0..200 {
        let t = format!("d-{i}-{}", "x".repeat(200));
        ws.send("world", &t, &format!("d-{i}"));
    }
    ws.ack("d-199");
    drop(ws);
    let db = sys.db.clone();
    sys.shutdown();
    drop(sys);
    // move everything from the WAL into the main file (the pool may not have checkpointed
    // at close), then overwrite a page in the middle of it
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut c)
            .await
            .unwrap();
        c.close().await.unwrap();
    });
    {
        use std::io::{Seek, SeekFrom};
        let mut f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
        let len = f.metadata().unwrap().len();
        assert!(len > 8 * 4096, "the database is only {len} bytes");
        f.seek(SeekFrom::Start((len / 4096 / 2) * 4096)).unwrap();
        f.write_all(&[0xA5; 4096]).unwrap();
    }
    let config = config_for(&db, &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = rt
        .block_on(im_gateway::embedded::Embedded::start(&config))
        .err()
        .expect("a damaged database is refused");
    assert!(err.to_string().contains("integrity check"), "{err}");
}

#[test]
fn a_second_server_on_the_same_data_exits_with_a_clear_error() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(ringchat_core::testkit::unique("twice"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut first = start_binary(&dir, &[]);
    let second = std::process::Command::new(env!("CARGO_BIN_EXE_ringchat"))
        .env("RINGCHAT_GATEWAY__LISTEN", "127.0.0.1:0")
        .env("RINGCHAT_GATEWAY__ADMIN_LISTEN", "127.0.0.1:0")
        .env(
            "RINGCHAT_STORE__URL",
            format!("sqlite://{}/ringchat.db", dir.display()),
        )
        .output()
        .unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("one process per data directory"),
        "{stderr}"
    );
    // and the first one still serves
    let r = Http {
        addr: first.http,
        token: None,
    }
    .get("/api/openapi.json");
    assert_eq!(r.status, 200);
    first.child.kill().unwrap();
    first.child.wait().unwrap();
}
