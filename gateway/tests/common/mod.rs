//! End-to-end harness: the embedded system started in-process on port 0, driven by real
//! clients (a small blocking HTTP/1.1 client and tungstenite's WebSocket client) over real
//! loopback connections.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use im_gateway::embedded::Embedded;
use ringchat_core::testkit::unique;
use ringchat_core::Config;
use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

/// A TCP stream that retries reads and writes a signal interrupted (the test process also
/// runs the server's threads, and EINTR would otherwise surface as a client error).
pub struct NoEintr(pub TcpStream);

impl Read for NoEintr {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            match self.0.read(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }
}

impl Write for NoEintr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        loop {
            match self.0.write(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

pub const WAIT: Duration = Duration::from_secs(15);

pub struct System {
    pub rt: tokio::runtime::Runtime,
    pub embedded: Option<Embedded>,
    pub http: SocketAddr,
    pub admin: SocketAddr,
    pub db: PathBuf,
    pub config: Config,
}

pub fn config_for(db: &std::path::Path, extra: &[(&str, &str)]) -> Config {
    let url = format!("sqlite://{}", db.display());
    let mut env: HashMap<String, String> = [
        (
            "RINGCHAT_AUTH__JWT_SECRET",
            "e2e-secret-e2e-secret-e2e-secret",
        ),
        ("RINGCHAT_AUTH__ARGON2_MEMORY_KIB", "64"),
        ("RINGCHAT_AUTH__ARGON2_ITERATIONS", "1"),
        ("RINGCHAT_GATEWAY__LISTEN", "127.0.0.1:0"),
        ("RINGCHAT_GATEWAY__ADMIN_LISTEN", "127.0.0.1:0"),
        ("RINGCHAT_GATEWAY__WORKERS", "2"),
        // the limits a test is about are set by that test
        ("RINGCHAT_GATEWAY__HTTP_REQUESTS_PER_SEC", "100000"),
        ("RINGCHAT_GATEWAY__HTTP_REQUESTS_BURST", "100000"),
        ("RINGCHAT_GATEWAY__ACCOUNTS_PER_MINUTE", "100000"),
        ("RINGCHAT_GATEWAY__ACCOUNTS_BURST", "100000"),
        ("RINGCHAT_STORE__URL", url.as_str()),
        ("RINGCHAT_RUNTIME__WORKER_THREADS", "2"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    Config::from_toml_and_env("", &env).unwrap()
}

impl System {
    pub fn start() -> System {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[(&str, &str)]) -> System {
        let db = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(unique("e2e"))
            .join("ringchat.db");
        Self::start_on(db, extra)
    }

    /// Starts with a store that fails on command (the fault suite).
    pub fn start_faulty(
        extra: &[(&str, &str)],
    ) -> (
        System,
        std::sync::Arc<ringchat_core::testkit::faulty::Faults>,
    ) {
        let db = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(unique("faults"))
            .join("ringchat.db");
        let mut faults = None;
        let sys = Self::launch(db, extra, |mut ports| {
            let (store, f) = ringchat_core::testkit::faulty::FaultyStore::new(ports.store);
            ports.store = store;
            faults = Some(f);
            ports
        });
        (sys, faults.expect("the store was wrapped"))
    }

    /// Starts on an existing (or new) database file: restarts keep their data.
    pub fn start_on(db: PathBuf, extra: &[(&str, &str)]) -> System {
        Self::launch(db, extra, |ports| ports)
    }

    /// The embedded system on `db`, with its ports passed through `wrap` first.
    fn launch(
        db: PathBuf,
        extra: &[(&str, &str)],
        wrap: impl FnOnce(ringchat_core::Ports) -> ringchat_core::Ports,
    ) -> System {
        let config = config_for(&db, extra);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let embedded = rt
            .block_on(async {
                let config = ringchat_embedded::with_embedded_secret(&config)?;
                let ports = wrap(ringchat_wiring::embedded(&config).await?);
                Embedded::start_with(&config, ports).await
            })
            .expect("system starts");
        let (http, admin) = (embedded.gateway.addr, embedded.gateway.admin_addr);
        System {
            rt,
            embedded: Some(embedded),
            http,
            admin,
            db,
            config,
        }
    }

    pub fn shutdown(&mut self) {
        if let Some(e) = self.embedded.take() {
            self.rt.block_on(e.shutdown());
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    pub fn api(&self) -> Http {
        Http {
            addr: self.http,
            token: None,
        }
    }

    /// Registers and logs in a fresh user.
    pub fn user(&self, prefix: &str) -> Client {
        let name = format!("{prefix}{}", &unique("")[1..8]);
        let r = self.api().post(
            "/api/auth/register",
            &json!({ "username": name, "password": "secret12" }),
        );
        assert_eq!(r.status, 201, "{:?}", r.body);
        let r = self.api().post(
            "/api/auth/login",
            &json!({ "username": name, "password": "secret12" }),
        );
        assert_eq!(r.status, 200, "{:?}", r.body);
        Client::from_auth(self, &r.body["data"])
    }

    pub fn guest(&self, name: &str) -> Client {
        let r = self
            .api()
            .post("/api/auth/guest", &json!({ "guestName": name }));
        assert_eq!(r.status, 200, "{:?}", r.body);
        Client::from_auth(self, &r.body["data"])
    }

    pub fn metric(&self, name: &str) -> f64 {
        let r = Http {
            addr: self.admin,
            token: None,
        }
        .get("/metrics");
        r.text
            .lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#'))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

impl Drop for System {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A logged-in user.
#[derive(Clone)]
pub struct Client {
    pub id: String,
    pub name: String,
    pub token: String,
    pub addr: SocketAddr,
}

impl Client {
    fn from_auth(sys: &System, data: &Value) -> Client {
        Client {
            id: data["user"]["userId"].as_str().unwrap().to_string(),
            name: data["user"]["username"].as_str().unwrap().to_string(),
            token: data["token"].as_str().unwrap().to_string(),
            addr: sys.http,
        }
    }

    pub fn http(&self) -> Http {
        Http {
            addr: self.addr,
            token: Some(self.token.clone()),
        }
    }

    pub fn ws(&self) -> Ws {
        Ws::connect(self.addr, &self.token).expect("websocket connects")
    }

    pub fn single_with(&self, other: &Client) -> String {
        let r = self
            .http()
            .post("/api/conversations", &json!({ "targetUserId": other.id }));
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.body["data"]["conversationId"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub fn history(&self, conversation: &str, query: &str) -> Vec<Value> {
        let r = self.http().get(&format!(
            "/api/conversations/{conversation}/messages{query}"
        ));
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.body["data"].as_array().unwrap().clone()
    }
}

pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub text: String,
    pub body: Value,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A minimal blocking HTTP/1.1 client: one request per connection.
pub struct Http {
    pub addr: SocketAddr,
    pub token: Option<String>,
}

impl Http {
    pub fn get(&self, path: &str) -> HttpResponse {
        self.request("GET", path, None, &[])
    }
    pub fn post(&self, path: &str, body: &Value) -> HttpResponse {
        self.request("POST", path, Some(body.to_string().as_bytes()), &[])
    }
    pub fn put(&self, path: &str, body: &Value) -> HttpResponse {
        self.request("PUT", path, Some(body.to_string().as_bytes()), &[])
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        headers: &[(&str, &str)],
    ) -> HttpResponse {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n",
            self.addr
        );
        if let Some(t) = &self.token {
            req.push_str(&format!("authorization: Bearer {t}\r\n"));
        }
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(b) = body {
            req.push_str(&format!(
                "content-type: application/json\r\ncontent-length: {}\r\n",
                b.len()
            ));
        }
        req.push_str("\r\n");
        let mut raw = req.into_bytes();
        if let Some(b) = body {
            raw.extend_from_slice(b);
        }
        send_raw(self.addr, &raw)
    }
}

/// Sends raw bytes, reads the response until the server closes.
pub fn send_raw(addr: SocketAddr, raw: &[u8]) -> HttpResponse {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(raw).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    parse_response(&out)
}

pub fn parse_response(out: &[u8]) -> HttpResponse {
    let text = String::from_utf8_lossy(out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    HttpResponse {
        status,
        headers,
        text: body.to_string(),
        body: serde_json::from_str(body).unwrap_or(Value::Null),
    }
}

/// A WebSocket client speaking the GoChat protocol.
pub struct Ws {
    pub ws: WebSocket<NoEintr>,
    pub conn_user: String,
    /// Events read while waiting for something else.
    pending: Vec<Value>,
}

impl Ws {
    pub fn connect(addr: SocketAddr, token: &str) -> Result<Ws, tungstenite::Error> {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let (ws, _) = tungstenite::client(format!("ws://{addr}/ws?token={token}"), NoEintr(stream))
            .map_err(|e| match e {
                tungstenite::HandshakeError::Failure(e) => e,
                tungstenite::HandshakeError::Interrupted(_) => panic!("handshake interrupted"),
            })?;
        let mut ws = Ws {
            ws,
            conn_user: String::new(),
            pending: Vec::new(),
        };
        let connected = ws.next_event();
        assert_eq!(connected["type"], "connected", "{connected}");
        ws.conn_user = connected["data"]["userId"].as_str().unwrap().to_string();
        Ok(ws)
    }

    pub fn send_json(&mut self, v: &Value) {
        self.ws.send(Message::text(v.to_string())).unwrap();
    }

    pub fn send_text(&mut self, s: &str) {
        self.ws.send(Message::text(s.to_string())).unwrap();
    }

    pub fn send(&mut self, conversation: &str, content: &str, temp: &str) {
        self.send_json(&json!({
            "type": "send-message",
            "data": { "conversationId": conversation, "content": content, "messageType": "text", "tempMessageId": temp },
            "timestamp": 0,
        }));
    }

    /// The next JSON event off the socket (pending ones first).
    pub fn next_event(&mut self) -> Value {
        if !self.pending.is_empty() {
            return self.pending.remove(0);
        }
        self.read_event()
    }

    fn read_msg(&mut self) -> Result<Message, tungstenite::Error> {
        self.ws.read()
    }

    fn read_event(&mut self) -> Value {
        loop {
            match self.read_msg().expect("websocket read") {
                Message::Text(t) => return serde_json::from_str(t.as_str()).expect("json event"),
                Message::Close(c) => panic!("connection closed: {c:?}"),
                _ => continue,
            }
        }
    }

    /// The first event (buffered or new) that matches; others stay buffered.
    pub fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.pending.iter().position(&pred) {
            return self.pending.remove(i);
        }
        let end = Instant::now() + WAIT;
        loop {
            assert!(Instant::now() < end, "timed out waiting for {what}");
            let e = self.read_event();
            if pred(&e) {
                return e;
            }
            self.pending.push(e);
        }
    }

    /// The answer to the send `temp`: `Ok(ack data)` or `Err(error data)`.
    pub fn answer(&mut self, temp: &str) -> Result<Value, Value> {
        let t = temp.to_string();
        let e = self.wait_for(&format!("answer to {temp}"), |e| {
            (e["type"] == "message-ack" || e["type"] == "error")
                && e["data"]["tempMessageId"] == t.as_str()
        });
        if e["type"] == "message-ack" {
            Ok(e["data"].clone())
        } else {
            Err(e["data"].clone())
        }
    }

    pub fn ack(&mut self, temp: &str) -> Value {
        let t = temp.to_string();
        let e = self.wait_for(&format!("ack of {temp}"), |e| {
            (e["type"] == "message-ack" || e["type"] == "error")
                && e["data"]["tempMessageId"] == t.as_str()
        });
        assert_eq!(e["type"], "message-ack", "expected an ack, got {e}");
        e["data"].clone()
    }

    pub fn error(&mut self) -> Value {
        let e = self.wait_for("an error frame", |e| e["type"] == "error");
        e["data"].clone()
    }

    pub fn new_message(&mut self, conversation: &str) -> Value {
        let c = conversation.to_string();
        self.wait_for(&format!("new-message in {conversation}"), |e| {
            e["type"] == "new-message" && e["data"]["conversationId"] == c.as_str()
        })["data"]["message"]
            .clone()
    }

    /// Round trip: proves the connection is open and everything sent before was processed
    /// in order by the reader.
    pub fn ping(&mut self) {
        self.send_json(&json!({ "type": "ping", "data": {}, "timestamp": 0 }));
        self.wait_for("pong", |e| e["type"] == "pong");
    }

    pub fn pending(&self) -> &[Value] {
        &self.pending
    }

    /// Reads until the server closes; returns the close code.
    pub fn close_code(&mut self) -> Option<u16> {
        loop {
            match self.read_msg() {
                Ok(Message::Close(c)) => return c.map(|c| u16::from(c.code)),
                Ok(Message::Text(t)) => self
                    .pending
                    .push(serde_json::from_str(t.as_str()).unwrap_or(Value::Null)),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }
}

// Raw WebSocket frames, for what a well-behaved client library will not send.

pub fn raw_ws(sys: &System, token: &str) -> TcpStream {
    let mut s = TcpStream::connect(sys.http).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let req = format!(
        "GET /ws?token={token} HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    s
}

/// The payload of the first complete close frame the server sent in `all` (an HTTP
/// response head, then unmasked server frames), if it is there yet.
pub fn close_payload_in(all: &[u8]) -> Option<Vec<u8>> {
    let mut i = all.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    while i + 2 <= all.len() {
        let op = all[i] & 0x0f;
        let mut len = (all[i + 1] & 0x7f) as usize;
        let mut hdr = 2;
        if len == 126 {
            if i + 4 > all.len() {
                return None;
            }
            len = u16::from_be_bytes([all[i + 2], all[i + 3]]) as usize;
            hdr = 4;
        }
        if i + hdr + len > all.len() {
            return None;
        }
        if op == 0x8 {
            return Some(all[i + hdr..i + hdr + len].to_vec());
        }
        i += hdr + len;
    }
    None
}

/// Reads raw frames until a close frame; returns its code.
pub fn close_code_of(s: &mut TcpStream) -> u16 {
    let mut s = NoEintr(s.try_clone().unwrap());
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s
            .read(&mut buf)
            .expect("the server closes with a close frame");
        assert!(n > 0, "closed without a close frame");
        all.extend_from_slice(&buf[..n]);
        if let Some(p) = close_payload_in(&all) {
            return u16::from_be_bytes([p[0], p[1]]);
        }
    }
}

/// A client frame, masked as clients must (or not).
pub fn client_frame(opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut f = vec![0x80 | opcode];
    let mask_bit = if masked { 0x80 } else { 0 };
    if payload.len() < 126 {
        f.push(mask_bit | payload.len() as u8);
    } else if payload.len() <= 65535 {
        f.push(mask_bit | 126);
        f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    } else {
        f.push(mask_bit | 127);
        f.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    }
    if masked {
        let key = [1u8, 2, 3, 4];
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        f.extend_from_slice(payload);
    }
    f
}

/// The `ringchat` binary on a data dir, on free ports.
pub struct Process {
    pub child: Child,
    pub http: std::net::SocketAddr,
}

pub fn start_binary(dir: &std::path::Path, extra: &[(&str, &str)]) -> Process {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringchat"))
        .env("RINGCHAT_GATEWAY__LISTEN", "127.0.0.1:0")
        .env("RINGCHAT_GATEWAY__ADMIN_LISTEN", "127.0.0.1:0")
        .env("RINGCHAT_GATEWAY__WORKERS", "2")
        .env(
            "RINGCHAT_AUTH__JWT_SECRET",
            "kill-test-secret-kill-test-secret",
        )
        .env("RINGCHAT_AUTH__ARGON2_MEMORY_KIB", "64")
        .env("RINGCHAT_AUTH__ARGON2_ITERATIONS", "1")
        .env(
            "RINGCHAT_STORE__URL",
            format!("sqlite://{}/ringchat.db", dir.display()),
        )
        .envs(extra.iter().copied())
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ringchat starts");
    let out = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in out.lines().map_while(Result::ok) {
            if let Some(rest) = line.split("gateway listening addr=").nth(1) {
                let addr = rest.split_whitespace().next().unwrap().to_string();
                if let Some(tx) = tx.take() {
                    let _ = tx.send(addr);
                }
            }
        }
    });
    let addr = rx
        .recv_timeout(WAIT)
        .expect("ringchat says where it listens");
    Process {
        child,
        http: addr.parse().unwrap(),
    }
}

/// The error envelope: `status`, `success: false`, `code` and a message.
pub fn assert_error(r: &HttpResponse, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.text);
    assert_eq!(r.body["success"], false, "{}", r.text);
    assert_eq!(r.body["code"], code, "{}", r.text);
    assert!(
        !r.body["message"].as_str().unwrap_or("").is_empty(),
        "{}",
        r.text
    );
}

/// `POST /api/auth/refresh` end to end against any running system (both profiles run it):
/// `user` is logged in at the gateway of its `addr`, `peer` (on the same or another
/// gateway) shares a single chat with it. Consumes `user`'s token: it is revoked here.
pub fn check_token_refresh(user: &Client, peer: &Client) -> Client {
    let with = |token: Option<&str>| Http {
        addr: user.addr,
        token: token.map(str::to_string),
    };
    // no token, garbage: 401 AUTH_FAILED, and the server goes on
    for token in [None, Some("garbage"), Some("a.b.c")] {
        let r = with(token).post("/api/auth/refresh", &json!({}));
        assert_error(&r, 401, "AUTH_FAILED");
    }
    let conversation = peer.single_with(user);
    let mut live = user.ws();
    live.ping();

    let r = with(Some(&user.token)).post("/api/auth/refresh", &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["success"], true, "{}", r.text);
    let data = &r.body["data"];
    let token = data["token"].as_str().expect("a new token").to_string();
    assert_ne!(token, user.token, "refresh must issue a new token");
    assert_eq!(data["user"]["userId"], user.id.as_str(), "{}", r.text);
    assert_eq!(data["user"]["username"], user.name.as_str(), "{}", r.text);
    // an ISO 8601 time, as login gives
    let expires = data["expiresAt"].as_str().unwrap_or("");
    assert!(expires.len() >= 20 && expires.ends_with('Z'), "{}", r.text);
    let fresh = Client {
        token,
        ..user.clone()
    };

    // the old token is revoked: requests, upgrades and a second refresh are refused
    assert_error(&user.http().get("/api/users/info"), 401, "AUTH_FAILED");
    assert_error(
        &with(Some(&user.token)).post("/api/auth/refresh", &json!({})),
        401,
        "AUTH_FAILED",
    );
    assert!(matches!(
        Ws::connect(user.addr, &user.token),
        Err(tungstenite::Error::Http(r)) if r.status() == 401
    ));
    // the new one works for both, and the socket opened before the refresh stays open and
    // still receives
    let me = fresh.http().get("/api/users/info");
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.body["data"]["userId"], user.id.as_str());
    let mut again = fresh.ws();
    again.ping();
    let mut peer_ws = peer.ws();
    peer_ws.send(&conversation, "after refresh", "refresh-1");
    peer_ws.ack("refresh-1");
    for ws in [&mut live, &mut again] {
        assert_eq!(ws.new_message(&conversation)["content"], "after refresh");
    }
    live.ping();
    fresh
}

/// A correctly signed token that expired long ago.
pub fn expired_token(sys: &System, user: &Client) -> String {
    use base64::Engine;
    use hmac::Mac;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let head = b64.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = json!({ "sub": user.id, "name": user.name, "guest": false, "jti": "old", "iat": 1, "exp": 2 });
    let body = b64.encode(claims.to_string());
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(sys.config.auth.jwt_secret.expose().as_bytes())
            .unwrap();
    mac.update(format!("{head}.{body}").as_bytes());
    format!("{head}.{body}.{}", b64.encode(mac.finalize().into_bytes()))
}

fn typing_frame(kind: &str, conversation: &str) -> Value {
    json!({ "type": kind, "data": { "conversationId": conversation }, "timestamp": 0 })
}

/// The next `typing-indicator` a connection gets, whichever its conversation.
fn next_typing(ws: &mut Ws) -> Value {
    ws.wait_for("a typing-indicator", |e| e["type"] == "typing-indicator")["data"].clone()
}

/// Typing indicators end to end against any running system (both profiles run it): `a`
/// and `b` share a single chat and a group, `outsider` neither. Checks the relay, the
/// throttle, that the typer and outsiders get nothing, the precise errors, and that
/// nothing is stored.
pub fn check_typing(a: &Client, b: &Client, outsider: &Client) {
    let single = a.single_with(b);
    let ids = [b.id.as_str()];
    let r = a.http().post(
        "/api/groups",
        &json!({ "groupName": "typists", "members": ids }),
    );
    assert!(r.status == 200 || r.status == 201, "{}", r.text);
    let group = r.body["data"]["conversation"]["conversationId"]
        .as_str()
        .expect("the group's conversation")
        .to_string();
    let (mut wa, mut wb, mut wo) = (a.ws(), b.ws(), outsider.ws());

    // single chat: typing, a repeat within the interval (dropped), then stop-typing
    wa.send_json(&typing_frame("typing", &single));
    let t = next_typing(&mut wb);
    assert_eq!(t["conversationId"], single.as_str(), "{t}");
    assert_eq!(t["userId"], a.id.as_str(), "{t}");
    assert_eq!(t["username"], a.name.as_str(), "{t}");
    assert_eq!(t["isTyping"], true, "{t}");
    wa.send_json(&typing_frame("typing", &single));
    wa.send_json(&typing_frame("stop-typing", &single));
    let t = next_typing(&mut wb);
    assert_eq!(
        t["isTyping"], false,
        "the repeated typing must not be relayed: {t}"
    );

    // a group: the other member hears it
    wb.send_json(&typing_frame("typing", &group));
    let t = next_typing(&mut wa);
    assert_eq!(t["conversationId"], group.as_str(), "{t}");
    assert_eq!(t["userId"], b.id.as_str(), "{t}");

    // an outsider is refused with the conversation named; an unknown conversation and the
    // world room get their own errors; a frame without a conversation is invalid
    wo.send_json(&typing_frame("typing", &single));
    let e = wo.error();
    assert_eq!(e["code"], "FORBIDDEN", "{e}");
    assert_eq!(e["conversationId"], single.as_str(), "{e}");
    wo.send_json(&typing_frame("typing", "g_999999999"));
    assert_eq!(wo.error()["code"], "CONVERSATION_NOT_FOUND");
    wa.send_json(&typing_frame("typing", "world"));
    let e = wa.error();
    assert_eq!(e["code"], "INVALID_MESSAGE", "{e}");
    assert!(
        e["message"].as_str().unwrap_or("").contains("typing"),
        "{e}"
    );
    wa.send_text(r#"{"type":"stop-typing","data":{}}"#);
    assert_eq!(wa.error()["code"], "INVALID_MESSAGE");

    // every connection survives; no one got an indicator meant for others or for itself
    for ws in [&mut wa, &mut wb, &mut wo] {
        ws.ping();
    }
    for (who, ws) in [("a", &wa), ("b", &wb), ("outsider", &wo)] {
        let stray: Vec<&Value> = ws
            .pending()
            .iter()
            .filter(|e| e["type"] == "typing-indicator")
            .collect();
        assert!(stray.is_empty(), "{who} got {stray:?}");
    }
    // never stored: both conversations have no messages
    assert!(a.history(&single, "").is_empty());
    assert!(b.history(&group, "").is_empty());
}

/// `GET /api/users/search` end to end against any running system (both profiles run it):
/// registers three users and a guest under a fresh stem at `addr`, then searches as
/// `searcher` (whose search budget it uses up at the end).
pub fn check_user_search(addr: SocketAddr, searcher: &Client) {
    let stem = format!("Se{}", &unique("")[1..9]);
    let api = Http { addr, token: None };
    let mut ids = Vec::new();
    for suffix in ["a", "b", "c"] {
        let r = api.post(
            "/api/auth/register",
            &json!({ "username": format!("{stem}{suffix}"), "password": "secret12" }),
        );
        assert_eq!(r.status, 201, "{}", r.text);
        ids.push(
            r.body["data"]["user"]["userId"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let g = api.post("/api/auth/guest", &json!({ "guestName": stem }));
    assert_eq!(g.status, 200, "{}", g.text);
    let guest_id = g.body["data"]["user"]["userId"]
        .as_str()
        .unwrap()
        .to_string();
    let search = |query: &str| searcher.http().get(&format!("/api/users/search?{query}"));
    let ids_of = |r: &HttpResponse| -> Vec<String> {
        r.body["data"]["users"]
            .as_array()
            .unwrap_or_else(|| panic!("users in {}", r.text))
            .iter()
            .map(|u| u["userId"].as_str().unwrap().to_string())
            .collect()
    };

    // ASCII case ignored, id order, guests never listed
    let r = search(&format!("q={}", stem.to_lowercase()));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(ids_of(&r), ids, "{}", r.text);
    assert_eq!(r.body["data"]["hasMore"], false, "{}", r.text);
    assert!(!ids_of(&r).contains(&guest_id));
    let u = &r.body["data"]["users"][0];
    assert_eq!(u["username"], format!("{stem}a").as_str(), "{u}");
    assert_eq!(u["isGuest"], false, "{u}");

    // pages: two, then the rest after the last id
    let r = search(&format!("q={stem}&size=2"));
    assert_eq!(ids_of(&r), ids[..2].to_vec(), "{}", r.text);
    assert_eq!(r.body["data"]["hasMore"], true, "{}", r.text);
    let r = search(&format!("q={stem}&size=2&after={}", ids[1]));
    assert_eq!(ids_of(&r), ids[2..].to_vec(), "{}", r.text);
    assert_eq!(r.body["data"]["hasMore"], false, "{}", r.text);
    // nothing matches: an empty page
    let r = search(&format!("q={stem}zz"));
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(ids_of(&r).is_empty());

    // bad input: precise 400s; no token: 401
    for bad in [
        String::new(),
        "q=".to_string(),
        "q=%20%20".to_string(),
        format!("q={}", "a".repeat(21)),
        "q=a%20b".to_string(),
        format!("q={stem}&size=0"),
        format!("q={stem}&after=x"),
    ] {
        let r = search(&bad);
        assert_error(&r, 400, "INVALID_ARGUMENT");
    }
    assert_error(
        &api.get(&format!("/api/users/search?q={stem}")),
        401,
        "AUTH_FAILED",
    );

    // rate-limited per user: a burst of 40 searches meets 429 before its end
    let limited = (0..40)
        .map(|_| search(&format!("q={stem}")))
        .find(|r| r.status != 200)
        .expect("40 searches at once must meet the per-user limit");
    assert_error(&limited, 429, "RATE_LIMITED");
}

/// `GET/PUT /api/users/profile` end to end against any running system (both profiles run
/// it): `user` sets and clears its nickname and avatar; `viewer` (on its own gateway) sees
/// them in `GET /api/users/{username}`; bad input gets precise 400s and changes nothing.
pub fn check_profile(user: &Client, viewer: &Client) {
    let r = user.http().get("/api/users/profile");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["userId"], user.id.as_str(), "{}", r.text);
    assert_eq!(r.body["data"]["nickname"], "", "{}", r.text);

    let avatar = "https://img.example/z.png";
    let r = user.http().put(
        "/api/users/profile",
        &json!({ "nickname": "  Zoë 🐙 ", "avatar": avatar }),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["nickname"], "Zoë 🐙", "{}", r.text);
    assert_eq!(r.body["data"]["avatar"], avatar, "{}", r.text);
    assert_eq!(r.body["data"]["username"], user.name.as_str(), "{}", r.text);
    // the caller's own reads and another user's lookup see it at once
    for path in ["/api/users/profile", "/api/users/info"] {
        let r = user.http().get(path);
        assert_eq!(r.body["data"]["nickname"], "Zoë 🐙", "{path}: {}", r.text);
        assert_eq!(r.body["data"]["avatar"], avatar, "{path}: {}", r.text);
    }
    let seen = viewer.http().get(&format!("/api/users/{}", user.name));
    assert_eq!(seen.status, 200, "{}", seen.text);
    assert_eq!(seen.body["data"]["nickname"], "Zoë 🐙", "{}", seen.text);

    // a field left out stays; an empty string clears
    let r = user
        .http()
        .put("/api/users/profile", &json!({ "nickname": "" }));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["nickname"], "", "{}", r.text);
    assert_eq!(r.body["data"]["avatar"], avatar, "{}", r.text);
    let r = user
        .http()
        .put("/api/users/profile", &json!({ "nickname": "Kept" }));
    assert_eq!(r.status, 200, "{}", r.text);

    // bad input: a precise 400 each, and the profile is as it was
    for bad in [
        json!({}),
        json!({ "nickname": 5 }),
        json!({ "avatar": ["x"] }),
        json!({ "nickname": "n".repeat(33) }),
        json!({ "nickname": "evil\u{202e}name" }),
        json!({ "nickname": "zero\u{200b}width" }),
        json!({ "avatar": "javascript:alert(1)" }),
        json!({ "avatar": format!("https://x.example/{}", "a".repeat(600)) }),
        json!([1, 2]),
    ] {
        let r = user.http().put("/api/users/profile", &bad);
        assert_error(&r, 400, "INVALID_ARGUMENT");
    }
    let r = user.http().get("/api/users/profile");
    assert_eq!(r.body["data"]["nickname"], "Kept", "{}", r.text);
    assert_eq!(r.body["data"]["avatar"], avatar, "{}", r.text);
    let anon = Http {
        addr: user.addr,
        token: None,
    };
    assert_error(
        &anon.put("/api/users/profile", &json!({ "nickname": "x" })),
        401,
        "AUTH_FAILED",
    );
}

fn request_of(r: &HttpResponse) -> Value {
    r.body["data"]["request"].clone()
}

/// The next `friend-request` event a connection gets whose request matches `pred`.
fn friend_event(ws: &mut Ws, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    ws.wait_for(what, |e| e["type"] == "friend-request" && pred(&e["data"]))["data"].clone()
}

/// Friend requests with consent end to end against any running system (both profiles run
/// it): `a`, `b` and `c` are fresh registered users (on any gateways), `guest` a guest.
/// `a` asks `b`, who is told, lists and accepts; `a` is told and the two are friends. `c`
/// is rejected (and told), asks again (the request reopens), is blocked (and not told),
/// and is then refused. `a` and `c` ask each other: the second request accepts the first.
pub fn check_friend_requests(a: &Client, b: &Client, c: &Client, guest: &Client) {
    let (mut wa, mut wb, mut wc) = (a.ws(), b.ws(), c.ws());
    let ask = |from: &Client, to: &Client, message: &str| {
        from.http().post(
            "/api/friends/requests",
            &json!({ "targetUserId": to.id, "message": message }),
        )
    };
    let answer = |by: &Client, id: &str, action: &str| {
        by.http().put(
            &format!("/api/friends/requests/{id}"),
            &json!({ "action": action }),
        )
    };
    let ids_in = |r: &HttpResponse| -> Vec<String> {
        r.body["data"]["requests"]
            .as_array()
            .unwrap_or_else(|| panic!("requests in {}", r.text))
            .iter()
            .map(|q| q["id"].as_str().unwrap().to_string())
            .collect()
    };
    let friend_ids = |who: &Client| -> Vec<String> {
        let r = who.http().get("/api/friends");
        assert_eq!(r.status, 200, "{}", r.text);
        r.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["userId"].as_str().unwrap().to_string())
            .collect()
    };

    // a asks b: 201 with the request; b's socket is told
    let r = ask(a, b, "hi b");
    assert_eq!(r.status, 201, "{}", r.text);
    let q = request_of(&r);
    let id = q["id"].as_str().expect("a request id").to_string();
    assert_eq!(q["requesterId"], a.id.as_str(), "{q}");
    assert_eq!(q["targetId"], b.id.as_str(), "{q}");
    assert_eq!(q["status"], 0, "{q}");
    assert_eq!(q["message"], "hi b", "{q}");
    assert_eq!(q["requester"]["username"], a.name.as_str(), "{q}");
    assert!(q["createdAt"].as_i64().unwrap() > 1_600_000_000, "{q}");
    let told = friend_event(&mut wb, "b told of a's request", |d| d["id"] == id.as_str());
    assert_eq!(told["status"], 0, "{told}");
    assert_eq!(told["requester"]["userId"], a.id.as_str(), "{told}");
    // asking again while pending: 200, the same request, no change
    let r = ask(a, b, "hello?");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(request_of(&r)["id"], id.as_str(), "{}", r.text);
    assert_eq!(request_of(&r)["message"], "hi b", "{}", r.text);

    // the lists; nothing is shared before the answer
    let r = b.http().get("/api/friends/requests");
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(ids_in(&r).contains(&id), "{}", r.text);
    let r = a.http().get("/api/friends/requests?type=sent&status=0");
    assert_eq!(ids_in(&r), vec![id.clone()], "{}", r.text);
    let r = b.http().get("/api/friends/requests?type=received&status=1");
    assert!(ids_in(&r).is_empty(), "{}", r.text);
    assert!(!friend_ids(a).contains(&b.id));
    let r = a.http().get("/api/users/status/online");
    assert!(r.body["data"].get(&b.id).is_none(), "{}", r.text);

    // bad input and the wrong people: precise errors
    assert_error(&answer(a, &id, "accept"), 404, "NOT_FOUND");
    assert_error(&answer(c, &id, "accept"), 404, "NOT_FOUND");
    assert_error(&answer(b, &id, "maybe"), 400, "INVALID_ARGUMENT");
    assert_error(&answer(b, "abc", "accept"), 400, "INVALID_ARGUMENT");
    assert_error(&answer(b, "999999999", "accept"), 404, "NOT_FOUND");
    assert_error(&ask(a, a, ""), 400, "INVALID_ARGUMENT");
    let nobody = Client {
        id: "999999999".into(),
        ..b.clone()
    };
    assert_error(&ask(a, &nobody, ""), 404, "USER_NOT_FOUND");
    assert_error(&ask(a, c, &"m".repeat(201)), 400, "INVALID_ARGUMENT");
    let r = a.http().post(
        "/api/friends/requests",
        &json!({ "targetUserId": c.id, "message": 7 }),
    );
    assert_error(&r, 400, "INVALID_ARGUMENT");
    let r = a.http().post("/api/friends/requests", &json!({}));
    assert_error(&r, 400, "INVALID_ARGUMENT");
    assert_error(&ask(guest, b, ""), 403, "FORBIDDEN");
    for query in ["?type=both", "?status=7", "?status=x"] {
        let r = b.http().get(&format!("/api/friends/requests{query}"));
        assert_error(&r, 400, "INVALID_ARGUMENT");
    }
    let anon = Http {
        addr: a.addr,
        token: None,
    };
    assert_error(&anon.get("/api/friends/requests"), 401, "AUTH_FAILED");

    // b accepts: the two are friends with a single chat; a is told
    let r = answer(b, &id, "accept");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(request_of(&r)["status"], 1, "{}", r.text);
    let single = r.body["data"]["conversation"]["conversationId"]
        .as_str()
        .unwrap_or_else(|| panic!("the conversation in {}", r.text))
        .to_string();
    assert_eq!(single, b.single_with(a), "{}", r.text);
    let told = friend_event(&mut wa, "a told of the accept", |d| d["id"] == id.as_str());
    assert_eq!(told["status"], 1, "{told}");
    assert!(friend_ids(a).contains(&b.id) && friend_ids(b).contains(&a.id));
    // the same answer again: as it was; another answer: a conflict; asking again: conflict
    assert_eq!(answer(b, &id, "accept").status, 200);
    assert_error(&answer(b, &id, "reject"), 409, "CONFLICT");
    assert_error(&ask(a, b, ""), 409, "CONFLICT");

    // c is rejected and told; asks again (the same request, reopened); is blocked and not
    // told; and is refused after that
    let r = ask(c, b, "me too");
    assert_eq!(r.status, 201, "{}", r.text);
    let cid = request_of(&r)["id"].as_str().unwrap().to_string();
    friend_event(&mut wb, "b told of c's request", |d| {
        d["id"] == cid.as_str()
    });
    let r = answer(b, &cid, "reject");
    assert_eq!(request_of(&r)["status"], 2, "{}", r.text);
    let told = friend_event(&mut wc, "c told of the rejection", |d| {
        d["id"] == cid.as_str()
    });
    assert_eq!(told["status"], 2, "{told}");
    let r = ask(c, b, "please");
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(request_of(&r)["id"], cid.as_str(), "{}", r.text);
    assert_eq!(request_of(&r)["status"], 0, "{}", r.text);
    assert_eq!(request_of(&r)["message"], "please", "{}", r.text);
    let r = answer(b, &cid, "block");
    assert_eq!(request_of(&r)["status"], 3, "{}", r.text);
    assert_error(&ask(c, b, "let me in"), 403, "FORBIDDEN");
    assert!(!friend_ids(c).contains(&b.id));

    // a and c ask each other: the second request accepts the first
    let r = ask(a, c, "");
    assert_eq!(r.status, 201, "{}", r.text);
    let acid = request_of(&r)["id"].as_str().unwrap().to_string();
    // c's events come in order: this one after any the block would have sent
    friend_event(&mut wc, "c told of a's request", |d| {
        d["id"] == acid.as_str()
    });
    let r = ask(c, a, "");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(request_of(&r)["id"], acid.as_str(), "{}", r.text);
    assert_eq!(request_of(&r)["status"], 1, "{}", r.text);
    assert!(
        r.body["data"]["conversation"]["conversationId"].is_string(),
        "{}",
        r.text
    );
    friend_event(&mut wa, "a told c accepted", |d| {
        d["id"] == acid.as_str() && d["status"] == 1
    });
    assert!(friend_ids(c).contains(&a.id));

    // the block was announced to no one; every socket is still open
    let blocked_told: Vec<&Value> = wc
        .pending()
        .iter()
        .filter(|e| e["type"] == "friend-request" && e["data"]["status"] == 3)
        .collect();
    assert!(blocked_told.is_empty(), "{blocked_told:?}");
    for ws in [&mut wa, &mut wb, &mut wc] {
        ws.ping();
    }

    // limited per user: asking again and again (each ask counts) meets 429 within 25
    let limited = (0..25)
        .map(|_| ask(b, c, "again"))
        .find(|r| r.status != 200 && r.status != 201)
        .expect("25 friend requests at once must meet the per-user limit");
    assert_error(&limited, 429, "RATE_LIMITED");
}

/// The next event of `kind` a connection gets about `conversation`.
fn event_about(ws: &mut Ws, kind: &str, conversation: &str) -> Value {
    event_where(ws, kind, conversation, |_| true)
}

/// The next event of `kind` about `conversation` whose data matches `pred`.
fn event_where(
    ws: &mut Ws,
    kind: &str,
    conversation: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let (k, c) = (kind.to_string(), conversation.to_string());
    ws.wait_for(&format!("{kind} in {conversation}"), |e| {
        e["type"] == k.as_str() && e["data"]["conversationId"] == c.as_str() && pred(&e["data"])
    })["data"]
        .clone()
}

fn member_ids_of(r: &HttpResponse) -> Vec<String> {
    r.body["data"]["members"]
        .as_array()
        .unwrap_or_else(|| panic!("members in {}", r.text))
        .iter()
        .map(|m| m["userId"].as_str().unwrap().to_string())
        .collect()
}

/// Conversation details and member management end to end against any running system
/// (both profiles run it): `owner` creates a group with `m1`; adds `m2` (everyone told
/// with `member-added`); renames and describes it (`conversation-updated`); makes `m1` an
/// admin and then hands the group to `m1` (`member-updated`); `m2` leaves via DELETE; the
/// new owner dissolves the group. `outsider` is refused throughout. A single chat between
/// `owner` and `outsider` is hidden by DELETE and returns with the next message.
pub fn check_conversations_and_members(
    owner: &Client,
    m1: &Client,
    m2: &Client,
    outsider: &Client,
) {
    let (mut wo, mut w1, mut w2) = (owner.ws(), m1.ws(), m2.ws());
    let r = owner.http().post(
        "/api/groups",
        &json!({ "groupName": "crew", "members": [m1.id] }),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let conv = r.body["data"]["conversation"]["conversationId"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/api/conversations/{conv}");
    let members = format!("{path}/members");

    // details: the list row plus the group's description, owner and the caller's role
    let r = m1.http().get(&path);
    assert_eq!(r.status, 200, "{}", r.text);
    let d = &r.body["data"];
    assert_eq!(d["conversationId"], conv.as_str(), "{d}");
    assert_eq!(d["type"], "group", "{d}");
    assert_eq!(d["ownerId"], owner.id.as_str(), "{d}");
    assert_eq!(d["myRole"], "member", "{d}");
    assert_eq!(d["memberCount"], 2, "{d}");
    assert_eq!(d["description"], "", "{d}");
    assert_error(&outsider.http().get(&path), 403, "FORBIDDEN");
    assert_error(
        &owner.http().get("/api/conversations/g_999999999"),
        404,
        "CONVERSATION_NOT_FOUND",
    );

    // add m2: everyone, m2 too, is told
    let r = owner
        .http()
        .post(&members, &json!({ "members": [m2.id, m1.id] }));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        member_ids_of(&r),
        vec![m2.id.clone()],
        "only the new one: {}",
        r.text
    );
    for ws in [&mut wo, &mut w1, &mut w2] {
        let e = event_about(ws, "member-added", &conv);
        assert_eq!(e["members"][0]["userId"], m2.id.as_str(), "{e}");
        assert_eq!(e["byUserId"], owner.id.as_str(), "{e}");
    }
    assert_error(
        &m1.http()
            .post(&members, &json!({ "members": [outsider.id] })),
        403,
        "FORBIDDEN",
    );
    assert_error(
        &owner.http().post(&members, &json!({})),
        400,
        "INVALID_ARGUMENT",
    );

    // the member list, paged by user id
    let r = m2.http().get(&members);
    assert_eq!(r.status, 200, "{}", r.text);
    let mut all = vec![owner.id.clone(), m1.id.clone(), m2.id.clone()];
    all.sort_by_key(|id| id.parse::<i64>().unwrap());
    assert_eq!(member_ids_of(&r), all, "{}", r.text);
    assert_eq!(r.body["data"]["hasMore"], false, "{}", r.text);
    let roles: Vec<&str> = r.body["data"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles.iter().filter(|r| **r == "owner").count(),
        1,
        "{roles:?}"
    );
    let r = m2.http().get(&format!("{members}?size=2"));
    assert_eq!(member_ids_of(&r), all[..2].to_vec(), "{}", r.text);
    assert_eq!(r.body["data"]["hasMore"], true, "{}", r.text);
    let r = m2.http().get(&format!("{members}?size=2&after={}", all[1]));
    assert_eq!(member_ids_of(&r), all[2..].to_vec(), "{}", r.text);
    assert_error(&outsider.http().get(&members), 403, "FORBIDDEN");
    for bad in ["?size=0", "?after=x", "?after=-1"] {
        assert_error(
            &m2.http().get(&format!("{members}{bad}")),
            400,
            "INVALID_ARGUMENT",
        );
    }

    // rename and describe: owner or admin only; everyone told
    let r = owner.http().put(
        &path,
        &json!({ "groupName": " crew 2 ", "description": "we sail" }),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["description"], "we sail", "{}", r.text);
    assert_eq!(
        r.body["data"]["target"]["groupName"], "crew 2",
        "{}",
        r.text
    );
    for ws in [&mut wo, &mut w1, &mut w2] {
        let e = event_about(ws, "conversation-updated", &conv);
        assert_eq!(e["groupName"], "crew 2", "{e}");
        assert_eq!(e["description"], "we sail", "{e}");
        assert_eq!(e["dissolved"], false, "{e}");
    }
    assert_error(
        &m2.http().put(&path, &json!({ "groupName": "mine" })),
        403,
        "FORBIDDEN",
    );
    for bad in [
        json!({}),
        json!({ "groupName": "" }),
        json!({ "groupName": "n".repeat(51) }),
        json!({ "description": "d".repeat(501) }),
        json!({ "description": 3 }),
        json!({ "avatar": "javascript:x" }),
    ] {
        assert_error(&owner.http().put(&path, &bad), 400, "INVALID_ARGUMENT");
    }

    // roles: the owner makes m1 an admin, then hands the group to m1
    let role = |who: &Client, target: &Client, role: Value| {
        who.http().put(
            &format!("{members}/{}", target.id),
            &json!({ "role": role }),
        )
    };
    let r = role(owner, m1, json!(2));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["role"], "admin", "{}", r.text);
    let e = event_about(&mut w2, "member-updated", &conv);
    assert_eq!(e["members"][0]["role"], "admin", "{e}");
    assert_error(&role(m1, m2, json!(2)), 403, "FORBIDDEN");
    assert_error(&role(owner, owner, json!(1)), 400, "INVALID_ARGUMENT");
    assert_error(&role(owner, m2, json!(7)), 400, "INVALID_ARGUMENT");
    assert_error(&role(owner, m2, json!("boss")), 400, "INVALID_ARGUMENT");
    assert_error(&role(owner, outsider, json!(2)), 404, "NOT_FOUND");
    let r = role(owner, m1, json!("owner"));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["role"], "owner", "{}", r.text);
    let m1id = m1.id.clone();
    event_where(&mut w2, "conversation-updated", &conv, |d| {
        d["ownerId"] == m1id.as_str()
    });
    let r = owner.http().get(&path);
    assert_eq!(r.body["data"]["myRole"], "admin", "{}", r.text);
    assert_eq!(r.body["data"]["ownerId"], m1.id.as_str(), "{}", r.text);

    // removal and leaving: an admin cannot remove the owner; m2 leaves with DELETE
    assert_error(
        &owner
            .http()
            .request("DELETE", &format!("{members}/{}", m1.id), None, &[]),
        403,
        "FORBIDDEN",
    );
    let r = m2.http().request("DELETE", &path, None, &[]);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["outcome"], "left", "{}", r.text);
    for ws in [&mut w1, &mut w2] {
        let e = event_about(ws, "member-removed", &conv);
        assert_eq!(e["members"][0]["userId"], m2.id.as_str(), "{e}");
    }
    assert_error(&m2.http().get(&path), 403, "FORBIDDEN");
    // the owner removes the admin through the member path
    let r = m1
        .http()
        .request("DELETE", &format!("{members}/{}", owner.id), None, &[]);
    assert_eq!(r.status, 200, "{}", r.text);
    let oid = owner.id.clone();
    let e = event_where(&mut wo, "member-removed", &conv, |d| {
        d["members"][0]["userId"] == oid.as_str()
    });
    assert_eq!(e["byUserId"], m1.id.as_str(), "{e}");

    // the owner dissolves the group: told, and it is gone
    let r = m1.http().request("DELETE", &path, None, &[]);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["outcome"], "dissolved", "{}", r.text);
    let e = event_where(&mut w1, "conversation-updated", &conv, |d| {
        d["dissolved"] == true
    });
    assert_eq!(e["memberCount"], 0, "{e}");
    assert_error(&m1.http().get(&path), 404, "CONVERSATION_NOT_FOUND");
    let r = m1.http().get("/api/conversations");
    assert!(!r.text.contains(&conv), "{}", r.text);

    // a single chat: DELETE hides it from the list until the next message
    let single = owner.single_with(outsider);
    let listed = |who: &Client| who.http().get("/api/conversations").text.contains(&single);
    let r = owner
        .http()
        .request("DELETE", &format!("/api/conversations/{single}"), None, &[]);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["outcome"], "hidden", "{}", r.text);
    assert!(!listed(owner) && listed(outsider));
    let mut wx = outsider.ws();
    wx.send(&single, "still there?", "hide-1");
    wx.ack("hide-1");
    assert!(listed(owner), "a new message shows it again");
    assert_eq!(owner.history(&single, "").len(), 1);
    // the single chat has no group powers; the world stays
    assert_error(
        &owner.http().put(
            &format!("/api/conversations/{single}"),
            &json!({ "groupName": "x" }),
        ),
        400,
        "INVALID_ARGUMENT",
    );
    assert_error(
        &owner
            .http()
            .request("DELETE", "/api/conversations/world", None, &[]),
        403,
        "FORBIDDEN",
    );
    for ws in [&mut wo, &mut w1, &mut w2, &mut wx] {
        ws.ping();
    }
}

fn send_frame(conversation: &str, content: &str, temp: &str, mentions: Value) -> Value {
    json!({
        "type": "send-message",
        "data": { "conversationId": conversation, "content": content, "tempMessageId": temp, "mentions": mentions },
        "timestamp": 0,
    })
}

/// The `mentionCount` of a conversation in `who`'s list.
fn mention_count(who: &Client, conversation: &str) -> i64 {
    let r = who.http().get("/api/conversations");
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["conversationId"] == conversation)
        .unwrap_or_else(|| panic!("{conversation} in {}", r.text))["mentionCount"]
        .as_i64()
        .unwrap()
}

/// Edit, revoke, @-mentions and group read receipts end to end against any running system
/// (both profiles run it): `owner` makes a group with `m1` and `m2`; `outsider` is not in
/// it.
pub fn check_message_changes(owner: &Client, m1: &Client, m2: &Client, outsider: &Client) {
    let r = owner.http().post(
        "/api/groups",
        &json!({ "groupName": "edits", "members": [m1.id, m2.id] }),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let conv = r.body["data"]["conversation"]["conversationId"]
        .as_str()
        .unwrap()
        .to_string();
    let (mut wo, mut w1, mut w2) = (owner.ws(), m1.ws(), m2.ws());
    let amend = |who: &Client, id: &str, edit: Option<&str>| match edit {
        Some(text) => who
            .http()
            .put(&format!("/api/messages/{id}"), &json!({ "content": text })),
        None => who
            .http()
            .request("DELETE", &format!("/api/messages/{id}"), None, &[]),
    };

    // edit: the message changes in place, and an `edit` event follows it in the seq stream
    w1.send(&conv, "helo", "ed-1");
    let ack = w1.ack("ed-1");
    let (id, seq) = (
        ack["messageId"].as_str().unwrap().to_string(),
        ack["seqId"].as_i64().unwrap(),
    );
    let r = amend(m1, &id, Some("hello"));
    assert_eq!(r.status, 200, "{}", r.text);
    let d = &r.body["data"];
    assert_eq!(d["message"]["content"], "hello", "{d}");
    assert_eq!(d["message"]["edited"], true, "{d}");
    assert_eq!(d["message"]["seqId"], seq, "{d}");
    assert_eq!(d["event"]["type"], "edit", "{d}");
    assert_eq!(d["event"]["refMessageId"], id.as_str(), "{d}");
    assert_eq!(d["event"]["seqId"], seq + 1, "{d}");
    assert_eq!(d["event"]["content"], "hello", "{d}");
    for ws in [&mut wo, &mut w2] {
        let (c, i) = (conv.clone(), id.clone());
        let e = ws.wait_for("the edit event", |e| {
            e["type"] == "new-message"
                && e["data"]["conversationId"] == c.as_str()
                && e["data"]["message"]["refMessageId"] == i.as_str()
        });
        assert_eq!(e["data"]["message"]["type"], "edit", "{e}");
    }
    // offline clients sync it: history after the message has the event; the message
    // itself has the latest text and the mark
    let h = m2.history(&conv, &format!("?afterSeq={}", seq - 1));
    assert_eq!(h[0]["content"], "hello", "{h:?}");
    assert_eq!(h[0]["edited"], true, "{h:?}");
    assert_eq!(h[1]["type"], "edit", "{h:?}");
    // refusals
    assert_error(&amend(m2, &id, Some("mine")), 403, "FORBIDDEN");
    assert_error(&amend(m1, &id, Some("  ")), 400, "INVALID_MESSAGE");
    assert_error(&amend(outsider, &id, Some("x")), 404, "NOT_FOUND");
    assert_error(&amend(m1, "999999999", Some("x")), 404, "NOT_FOUND");
    assert_error(&amend(m1, "abc", None), 400, "INVALID_ARGUMENT");
    let event_id = d["event"]["messageId"].as_str().unwrap().to_string();
    assert_error(&amend(m1, &event_id, None), 400, "INVALID_ARGUMENT");
    let r = m1.http().put(&format!("/api/messages/{id}"), &json!({}));
    assert_error(&r, 400, "INVALID_ARGUMENT");

    // revoke: one's own message; a group's owner may revoke anyone's
    w2.send(&conv, "oops", "rv-1");
    let oops = w2.ack("rv-1")["messageId"].as_str().unwrap().to_string();
    assert_error(&amend(m1, &oops, None), 403, "FORBIDDEN");
    let r = amend(m2, &oops, None);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["message"]["revoked"], true, "{}", r.text);
    assert_eq!(r.body["data"]["message"]["content"], "", "{}", r.text);
    assert_eq!(r.body["data"]["event"]["type"], "revoke", "{}", r.text);
    let o = oops.clone();
    w1.wait_for("the revoke event", |e| {
        e["data"]["message"]["type"] == "revoke"
            && e["data"]["message"]["refMessageId"] == o.as_str()
    });
    assert_error(&amend(m2, &oops, None), 409, "CONFLICT");
    assert_error(&amend(m2, &oops, Some("back")), 409, "CONFLICT");
    let r = amend(owner, &id, None);
    assert_eq!(
        r.status, 200,
        "the owner revokes a member's message: {}",
        r.text
    );

    // mentions: by id over the WebSocket, everyone by the owner, both counted until read
    w1.send_json(&send_frame(&conv, "@m2 see this", "mn-1", json!([m2.id])));
    w1.ack("mn-1");
    let m2id = m2.id.clone();
    let e = w2.wait_for("the mention", |e| {
        e["type"] == "new-message" && e["data"]["message"]["mentions"] == json!([m2id])
    });
    assert_eq!(e["data"]["message"]["content"], "@m2 see this", "{e}");
    let r = owner.http().post(
        "/api/messages",
        &json!({ "conversationId": conv, "content": "@all standup", "mentions": "all" }),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["data"]["mentionAll"], true, "{}", r.text);
    assert_eq!(mention_count(m2, &conv), 2);
    assert_eq!(mention_count(m1, &conv), 1);
    assert_eq!(mention_count(owner, &conv), 0);
    // refused: everyone by a member, mentions in the world room, a bad list
    w2.send_json(&send_frame(&conv, "@all", "mn-2", json!("all")));
    assert_eq!(w2.answer("mn-2").unwrap_err()["code"], "FORBIDDEN");
    w2.send_json(&send_frame("world", "@you", "mn-3", json!([m1.id])));
    assert_eq!(w2.answer("mn-3").unwrap_err()["code"], "INVALID_MESSAGE");
    w2.send_json(&send_frame(&conv, "@?", "mn-4", json!("everyone")));
    assert_eq!(w2.answer("mn-4").unwrap_err()["code"], "INVALID_MESSAGE");

    // read receipts: the sender is told who read, and the readers are listed
    wo.send(&conv, "read me", "rd-1");
    let read_me = wo.ack("rd-1");
    let (rid, rseq) = (
        read_me["messageId"].as_str().unwrap().to_string(),
        read_me["seqId"].as_i64().unwrap(),
    );
    let readers_path = format!("/api/conversations/{conv}/messages/{rid}/readers");
    let r = m1.http().get(&readers_path);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["readCount"], 0, "{}", r.text);
    assert_eq!(r.body["data"]["memberCount"], 2, "{}", r.text);
    for ws in [&mut w1, &mut w2] {
        ws.send_json(&json!({ "type": "mark-read", "data": { "conversationId": conv, "seqId": rseq }, "timestamp": 0 }));
    }
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 2 {
        let c = conv.clone();
        let e = wo.wait_for("a read receipt", |e| {
            e["type"] == "read-receipt" && e["data"]["conversationId"] == c.as_str()
        });
        for p in e["data"]["readers"].as_array().unwrap() {
            assert!(p["readSeq"].as_i64().unwrap() >= rseq, "{e}");
            seen.insert(p["userId"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(seen, [m1.id.clone(), m2.id.clone()].into_iter().collect());
    assert_eq!(mention_count(m2, &conv), 0, "read: no mentions left");
    let r = owner.http().get(&readers_path);
    assert_eq!(r.body["data"]["readCount"], 2, "{}", r.text);
    let mut ids = member_ids_in(&r.body["data"]["readers"]);
    ids.sort();
    let mut want = vec![m1.id.clone(), m2.id.clone()];
    want.sort();
    assert_eq!(ids, want, "{}", r.text);
    let r = owner.http().get(&format!("{readers_path}?size=1"));
    assert_eq!(r.body["data"]["hasMore"], true, "{}", r.text);
    assert_error(&outsider.http().get(&readers_path), 403, "FORBIDDEN");
    assert_error(
        &owner.http().get(&format!(
            "/api/conversations/{conv}/messages/999999999/readers"
        )),
        404,
        "NOT_FOUND",
    );
    assert_error(
        &owner
            .http()
            .get(&format!("/api/conversations/world/messages/{rid}/readers")),
        400,
        "INVALID_ARGUMENT",
    );
    for ws in [&mut wo, &mut w1, &mut w2] {
        ws.ping();
    }
}

fn member_ids_in(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|u| u["userId"].as_str().unwrap().to_string())
        .collect()
}
