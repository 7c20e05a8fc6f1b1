//! An in-process backend for tests: im-repo and im-logic gRPC servers on port 0, the
//! logic upstream consumers and im-task running, and fake gateways that speak the bus.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use im_logic::{consumer, GrpcLogic, LogicApi, LogicService};
use im_repo::GrpcStore;
use prost::Message as _;
use ringchat_core::model::GATEWAY_SERVICE;
use ringchat_core::ports::{Instance, Notifier, OfflinePush, Subscription};
use ringchat_core::shutdown::Shutdown;
use ringchat_core::testkit::unique;
use ringchat_core::{Config, Ports};
use ringchat_embedded::{MemoryBus, MemoryCache, SqliteStore, StaticDiscovery};
use ringchat_proto as pb;
use tokio::sync::Notify;

pub const WAIT: Duration = Duration::from_secs(20);

/// Collects offline pushes (stands in for APNs/FCM).
#[derive(Default)]
pub struct RecordingNotifier {
    pub pushes: Mutex<Vec<OfflinePush>>,
    pub notify: Notify,
}

#[async_trait]
impl Notifier for RecordingNotifier {
    async fn notify(&self, push: &OfflinePush) -> ringchat_core::Result<()> {
        self.pushes.lock().unwrap().push(push.clone());
        self.notify.notify_waiters();
        Ok(())
    }
}

impl RecordingNotifier {
    pub async fn wait_for(&self, pred: impl Fn(&OfflinePush) -> bool) -> OfflinePush {
        let end = tokio::time::Instant::now() + WAIT;
        loop {
            let n = self.notify.notified();
            if let Some(p) = self.pushes.lock().unwrap().iter().find(|p| pred(p)) {
                return p.clone();
            }
            if tokio::time::timeout_at(end, n).await.is_err() {
                panic!("no matching offline push arrived");
            }
        }
    }
}

pub struct Backend {
    /// The gRPC client: every test call goes through the wire.
    pub api: Arc<dyn LogicApi>,
    pub logic: Arc<LogicService>,
    pub ports: Ports,
    pub config: Config,
    pub notifier: Arc<RecordingNotifier>,
    _stop: Shutdown,
}

pub fn test_config(extra: &[(&str, &str)]) -> Config {
    let mut env: HashMap<String, String> = [
        (
            "RINGCHAT_AUTH__JWT_SECRET",
            "test-secret-test-secret-test-secret",
        ),
        ("RINGCHAT_AUTH__ARGON2_MEMORY_KIB", "64"),
        ("RINGCHAT_AUTH__ARGON2_ITERATIONS", "1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    Config::from_toml_and_env("", &env).unwrap()
}

pub async fn start() -> Backend {
    start_with(&[]).await
}

pub async fn start_with(extra: &[(&str, &str)]) -> Backend {
    let config = test_config(extra);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(unique("logic"));
    let url = format!("sqlite://{}/ringchat.db", dir.display());
    let sqlite = Arc::new(SqliteStore::connect(&url, 4, 1).await.unwrap());
    let (stop, signal) = Shutdown::new();

    let repo_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let repo_addr = repo_listener.local_addr().unwrap();
    tokio::spawn(im_repo::serve(
        sqlite,
        repo_listener,
        signal.clone().into_future(),
    ));
    let store = Arc::new(GrpcStore::connect_lazy(&format!("http://{repo_addr}")).unwrap());

    let notifier = Arc::new(RecordingNotifier::default());
    let ports = Ports {
        bus: Arc::new(MemoryBus::new(4, 4096)),
        store,
        cache: Arc::new(MemoryCache::new()),
        discovery: Arc::new(StaticDiscovery::default()),
        notifier: notifier.clone(),
        cache_health: Default::default(),
    };
    let logic = Arc::new(LogicService::new(&config, ports.clone()).unwrap());
    consumer::spawn_upstream_consumers(&logic, 2, 64, Duration::from_secs(5), &signal);
    let task = Arc::new(im_task::TaskService::new(ports.clone(), 2));
    tokio::spawn(im_task::run(task, signal.clone()));

    let logic_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let logic_addr = logic_listener.local_addr().unwrap();
    tokio::spawn(im_logic::serve(
        logic.clone(),
        logic_listener,
        signal.clone().into_future(),
    ));
    let api = Arc::new(GrpcLogic::connect_lazy(&format!("http://{logic_addr}")).unwrap());
    Backend {
        api,
        logic,
        ports,
        config,
        notifier,
        _stop: stop,
    }
}

/// A registered user with a token.
#[derive(Clone, Debug)]
pub struct TestUser {
    pub user: pb::User,
    pub token: String,
}

impl TestUser {
    pub fn id(&self) -> i64 {
        self.user.user_id
    }
}

impl Backend {
    pub async fn user(&self, prefix: &str) -> TestUser {
        let username = format!("{prefix}{}", &unique("")[1..9]);
        self.api
            .register(pb::RegisterRequest {
                username: username.clone(),
                password: "password1".into(),
            })
            .await
            .unwrap();
        let auth = self
            .api
            .login(pb::LoginRequest {
                username,
                password: "password1".into(),
                client_addr: String::new(),
            })
            .await
            .unwrap();
        TestUser {
            user: auth.user.unwrap(),
            token: auth.token,
        }
    }

    /// A group of `owner` with `members`, created through the API.
    pub async fn group(&self, owner: &TestUser, name: &str, members: &[&TestUser]) -> pb::Group {
        self.api
            .create_group(pb::CallerCreateGroupRequest {
                caller_id: owner.id(),
                group_name: name.into(),
                member_ids: members.iter().map(|m| m.id()).collect(),
                avatar: String::new(),
            })
            .await
            .unwrap()
            .group
            .unwrap()
    }

    pub async fn gateway(&self) -> FakeGateway {
        let id = unique("gw");
        self.ports
            .discovery
            .register(&Instance {
                service: GATEWAY_SERVICE.into(),
                id: id.clone(),
                addr: "127.0.0.1:0".into(),
            })
            .await
            .unwrap();
        let sub = self
            .ports
            .bus
            .subscribe(&pb::topics::downstream(&id), &format!("gateway-{id}"))
            .await
            .unwrap();
        FakeGateway {
            id,
            sub: tokio::sync::Mutex::new((sub, Vec::new())),
            backend_api: self.api.clone(),
            bus: self.ports.bus.clone(),
            next_conn: std::sync::atomic::AtomicU64::new(1),
        }
    }
}

/// Plays a gateway: reports connections, publishes sends, reads its downstream topic.
pub struct FakeGateway {
    pub id: String,
    sub: tokio::sync::Mutex<(Box<dyn Subscription>, Vec<pb::downstream_batch::Body>)>,
    backend_api: Arc<dyn LogicApi>,
    bus: Arc<dyn ringchat_core::ports::Bus>,
    next_conn: std::sync::atomic::AtomicU64,
}

impl FakeGateway {
    /// Connects `user`; returns the connection id.
    pub async fn connect(&self, user: &TestUser) -> u64 {
        let conn = self
            .next_conn
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.backend_api
            .user_connected(pb::PresenceRequest {
                user_id: user.id(),
                gateway_id: self.id.clone(),
                conn_id: conn,
            })
            .await
            .unwrap();
        conn
    }

    pub async fn disconnect(&self, user: &TestUser, conn: u64) {
        self.backend_api
            .user_disconnected(pb::PresenceRequest {
                user_id: user.id(),
                gateway_id: self.id.clone(),
                conn_id: conn,
            })
            .await
            .unwrap();
    }

    pub async fn send(
        &self,
        user: &TestUser,
        conn: u64,
        conversation_id: &str,
        content: &str,
        temp: &str,
    ) {
        self.send_typed(
            user,
            conn,
            conversation_id,
            content,
            temp,
            pb::MessageType::Text as i32,
        )
        .await
    }

    pub async fn send_typed(
        &self,
        user: &TestUser,
        conn: u64,
        conversation_id: &str,
        content: &str,
        temp: &str,
        kind: i32,
    ) {
        let up = pb::UpstreamMessage {
            trace_id: unique("trace"),
            user_id: user.id(),
            gateway_id: self.id.clone(),
            conn_id: conn,
            conversation_id: conversation_id.into(),
            r#type: kind,
            content: content.into(),
            temp_message_id: temp.into(),
            timestamp_ms: 0,
            username: user.user.username.clone(),
            ..Default::default()
        };
        self.bus
            .publish(
                pb::topics::UPSTREAM,
                conversation_id.as_bytes(),
                Bytes::from(up.encode_to_vec()),
            )
            .await
            .unwrap();
    }

    /// The next event on this gateway's downstream topic.
    pub async fn recv(&self) -> pb::downstream_batch::Body {
        self.recv_matching(|_| true).await
    }

    /// The first event (buffered or new) that matches; others stay buffered, since events
    /// of different conversations may arrive in any order.
    pub async fn recv_matching(
        &self,
        pred: impl Fn(&pb::downstream_batch::Body) -> bool,
    ) -> pb::downstream_batch::Body {
        let mut guard = self.sub.lock().await;
        let (sub, pending) = &mut *guard;
        if let Some(i) = pending.iter().position(&pred) {
            return pending.remove(i);
        }
        let end = tokio::time::Instant::now() + WAIT;
        loop {
            let records = tokio::time::timeout_at(end, sub.next_batch(1))
                .await
                .expect("no downstream event arrived in time")
                .unwrap();
            sub.commit(&records).await.unwrap();
            for r in records {
                let batch = pb::DownstreamBatch::decode(r.payload).unwrap();
                assert_eq!(batch.gateway_id, self.id);
                let body = batch.body.unwrap();
                if pred(&body) {
                    return body;
                }
                pending.push(body);
            }
        }
    }

    /// Waits for the ack (or error) of `temp`.
    pub async fn ack(&self, temp: &str) -> Result<pb::SendAck, pb::SendError> {
        let temp = temp.to_string();
        match self
            .recv_matching(|b| match b {
                pb::downstream_batch::Body::Ack(a) => a.temp_message_id == temp,
                pb::downstream_batch::Body::Error(e) => e.temp_message_id == temp,
                _ => false,
            })
            .await
        {
            pb::downstream_batch::Body::Ack(a) => Ok(a),
            pb::downstream_batch::Body::Error(e) => Err(e),
            _ => unreachable!(),
        }
    }

    /// Waits for a new-message event of a conversation.
    pub async fn new_message(&self, conversation_id: &str) -> pb::NewMessage {
        let id = conversation_id.to_string();
        match self
            .recv_matching(|b| {
                matches!(b, pb::downstream_batch::Body::NewMessage(n)
                if n.message.as_ref().map(|m| m.conversation_id == id).unwrap_or(false))
            })
            .await
        {
            pb::downstream_batch::Body::NewMessage(n) => n,
            _ => unreachable!(),
        }
    }
}
