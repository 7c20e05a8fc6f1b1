//! The distributed profile end to end: im-repo, im-logic, im-task and two im-gateways as
//! separate processes on the real engines (MariaDB, Redis, etcd and a Kafka-protocol
//! broker, as `deploy/engines.sh` starts them), driven by real HTTP and WebSocket clients.
//!
//! Each test runs its own cluster, isolated on the shared engines by names: its own MariaDB
//! database, Redis key prefix, etcd prefix and Kafka topic prefix; the Redis test runs a
//! private redis-server it can stop. The engines' addresses come from
//! `RINGCHAT_TEST_MYSQL_URL`, `RINGCHAT_TEST_REDIS_URL`, `RINGCHAT_TEST_ETCD_URL` and
//! `RINGCHAT_TEST_KAFKA_BROKERS` (defaults: the standard ports on 127.0.0.1). A missing
//! engine fails the test: `deploy/engines.sh up` starts them.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Client, Http, Ws, WAIT};
use ringchat_core::testkit::unique;
use serde_json::json;

fn engine(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_string())
}

fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let rest = rest.rsplit_once('@').map(|(_, r)| r).unwrap_or(rest);
    rest.split(['/', '?', ',']).next().unwrap().to_string()
}

fn require(name: &str, addr: &str) {
    if std::net::TcpStream::connect(addr).is_err() {
        panic!(
            "{name} is not reachable at {addr}: the distributed tests need the real engines \
             (start them with `deploy/engines.sh up`, which deploy/test.sh runs)"
        );
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A binary of the workspace: built beside this test's executable by `cargo test --workspace`.
fn binary(name: &str) -> PathBuf {
    if name == "im-gateway" {
        return PathBuf::from(env!("CARGO_BIN_EXE_im-gateway"));
    }
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first (`cargo build -p {name}`; `cargo test --workspace` does)",
        path.display()
    );
    path
}

/// The line each service logs once it serves.
fn ready_line(bin: &str) -> &'static str {
    match bin {
        "im-gateway" => "gateway listening addr=",
        "im-logic" => "im-logic serving",
        "im-repo" => "im-repo serving",
        "im-task" => "im-task running",
        _ => unreachable!(),
    }
}

struct Proc {
    child: Child,
    bin: &'static str,
    env: Vec<(String, String)>,
    log: PathBuf,
}

/// One distributed ringchat: five processes on the shared engines.
struct Cluster {
    name: String,
    env: Vec<(String, String)>,
    /// Processes that log JSON (`RINGCHAT_LOG__FORMAT=json`) instead of text.
    json_logs: Vec<String>,
    dir: PathBuf,
    procs: BTreeMap<String, Proc>,
    gateways: BTreeMap<String, SocketAddr>,
    database: String,
    mysql: String,
    private_redis: Option<Child>,
}

impl Cluster {
    /// im-repo, im-logic, im-task, gw-1 and gw-2 of a new cluster; `own_redis` gives it a
    /// private redis-server (which the test may stop and start).
    fn start(own_redis: bool) -> Cluster {
        Cluster::start_logging(own_redis, "info", &[])
    }

    /// As [`Cluster::start`], every process logging by `rust_log` (`RUST_LOG`), and those
    /// named in `json` as JSON lines.
    fn start_logging(own_redis: bool, rust_log: &str, json: &[&str]) -> Cluster {
        Cluster::start_full(own_redis, rust_log, json, &[])
    }

    /// As [`Cluster::start`], with `extra` settings for every process.
    fn start_with(extra: &[(&str, &str)]) -> Cluster {
        Cluster::start_full(false, "info", &[], extra)
    }

    fn start_full(
        own_redis: bool,
        rust_log: &str,
        json: &[&str],
        extra: &[(&str, &str)],
    ) -> Cluster {
        let mysql = engine("RINGCHAT_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306");
        let etcd = engine("RINGCHAT_TEST_ETCD_URL", "http://127.0.0.1:2379");
        let kafka = engine("RINGCHAT_TEST_KAFKA_BROKERS", "127.0.0.1:9092");
        let mut redis = engine("RINGCHAT_TEST_REDIS_URL", "redis://127.0.0.1:6379");
        require("MariaDB", &host_port(&mysql));
        require("etcd", &host_port(&etcd));
        require("the Kafka broker", &host_port(&kafka));
        let name = unique("d")[..12].replace('-', "");
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cluster-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut private_redis = None;
        if own_redis {
            let port = free_port();
            private_redis = Some(start_redis(port, &dir));
            redis = format!("redis://127.0.0.1:{port}");
        } else {
            require("Redis", &host_port(&redis));
        }
        let database = format!("rc_{name}");
        let env = vec![
            (
                "RINGCHAT_STORE__URL",
                format!("{}/{database}", mysql.trim_end_matches('/')),
            ),
            ("RINGCHAT_CACHE__URL", redis),
            ("RINGCHAT_CACHE__KEY_PREFIX", format!("{name}:")),
            (
                "RINGCHAT_BUS__URL",
                format!("kafka://{}", host_port(&kafka)),
            ),
            ("RINGCHAT_BUS__TOPIC_PREFIX", format!("{name}.")),
            ("RINGCHAT_BUS__PARTITIONS", "4".into()),
            (
                "RINGCHAT_DISCOVERY__URL",
                format!("etcd://{}", host_port(&etcd)),
            ),
            ("RINGCHAT_DISCOVERY__PREFIX", format!("/{name}")),
            ("RINGCHAT_DISCOVERY__TTL_SECS", "2".into()),
            (
                "RINGCHAT_AUTH__JWT_SECRET",
                "distributed-test-secret-0123456789".into(),
            ),
            ("RINGCHAT_AUTH__ARGON2_MEMORY_KIB", "64".into()),
            ("RINGCHAT_AUTH__ARGON2_ITERATIONS", "1".into()),
            ("RINGCHAT_AUTH__LOGIN_ADDRESS_PER_MINUTE", "100000".into()),
            ("RINGCHAT_AUTH__LOGIN_ADDRESS_BURST", "100000".into()),
            ("RINGCHAT_GATEWAY__WORKERS", "2".into()),
            ("RINGCHAT_GATEWAY__HTTP_REQUESTS_PER_SEC", "100000".into()),
            ("RINGCHAT_GATEWAY__HTTP_REQUESTS_BURST", "100000".into()),
            ("RINGCHAT_GATEWAY__ACCOUNTS_PER_MINUTE", "100000".into()),
            ("RINGCHAT_GATEWAY__ACCOUNTS_BURST", "100000".into()),
            ("RINGCHAT_GATEWAY__SHUTDOWN_GRACE_SECS", "2".into()),
            ("RINGCHAT_LOGIC__RETRY_BUDGET_SECS", "60".into()),
            ("RINGCHAT_RUNTIME__WORKER_THREADS", "2".into()),
            // admin ports picked by the kernel (each service logs its own)
            ("RINGCHAT_LOGIC__ADMIN_LISTEN", "127.0.0.1:0".into()),
            ("RINGCHAT_REPO__ADMIN_LISTEN", "127.0.0.1:0".into()),
            ("RINGCHAT_TASK__ADMIN_LISTEN", "127.0.0.1:0".into()),
            ("RUST_LOG", rust_log.into()),
            ("NO_COLOR", "1".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .chain(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .collect();
        let mut c = Cluster {
            name,
            env,
            json_logs: json.iter().map(|n| n.to_string()).collect(),
            dir,
            procs: BTreeMap::new(),
            gateways: BTreeMap::new(),
            database,
            mysql,
            private_redis,
        };
        c.spawn(
            "im-repo",
            "im-repo",
            &[("RINGCHAT_REPO__LISTEN", "127.0.0.1:0")],
        );
        c.spawn(
            "im-logic",
            "im-logic",
            &[("RINGCHAT_LOGIC__LISTEN", "127.0.0.1:0")],
        );
        c.spawn("im-task", "im-task", &[]);
        c.spawn_gateway("gw-1");
        c.spawn_gateway("gw-2");
        for gw in ["gw-1", "gw-2"] {
            c.wait_until_serving(gw);
        }
        c
    }

    fn spawn_gateway(&mut self, id: &str) {
        self.spawn(
            id,
            "im-gateway",
            &[
                ("RINGCHAT_GATEWAY__LISTEN", "127.0.0.1:0"),
                ("RINGCHAT_GATEWAY__ADMIN_LISTEN", "127.0.0.1:0"),
            ],
        );
    }

    /// Starts `bin` as `name` (also its node id) and waits for its ready line.
    fn spawn(&mut self, name: &str, bin: &'static str, extra: &[(&str, &str)]) {
        let mut env = self.env.clone();
        env.push(("RINGCHAT_NODE__ID".into(), format!("{}-{name}", self.name)));
        if bin == "im-gateway" {
            // the gateway id is part of topic names; the cluster's prefix keeps it unique
            env.last_mut().unwrap().1 = name.to_string();
        }
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        if self.json_logs.iter().any(|n| n == name) {
            env.push(("RINGCHAT_LOG__FORMAT".into(), "json".into()));
        }
        self.launch(name, bin, env);
    }

    fn launch(&mut self, name: &str, bin: &'static str, env: Vec<(String, String)>) {
        let log = self.dir.join(format!("{name}.log"));
        let mut child = Command::new(binary(bin))
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {bin}: {e}"));
        let out = BufReader::new(child.stderr.take().unwrap());
        let (tx, rx) = mpsc::channel();
        let ready = ready_line(bin);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in out.lines().map_while(Result::ok) {
                let _ = writeln!(file, "{line}");
                if let Some(rest) = line.split(ready).nth(1) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
                    }
                }
            }
        });
        let got = rx.recv_timeout(Duration::from_secs(60));
        let Ok(rest) = got else {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("{name} ({bin}) did not become ready; its log:\n{text}");
        };
        if bin == "im-gateway" {
            self.gateways
                .insert(name.to_string(), rest.parse().expect("gateway address"));
        }
        self.procs.insert(
            name.to_string(),
            Proc {
                child,
                bin,
                env,
                log,
            },
        );
    }

    /// Waits until a gateway answers API calls end to end (it has found im-logic).
    fn wait_until_serving(&self, gw: &str) {
        let addr = self.gateways[gw];
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let r =
                Http { addr, token: None }.post("/api/auth/guest", &json!({"guestName": "probe"}));
            if r.status == 200 {
                return;
            }
            assert!(
                Instant::now() < end,
                "{gw} does not serve: last answer {} {:?}\n{}",
                r.status,
                r.body,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill9(&mut self, name: &str) -> Proc {
        let mut p = self.procs.remove(name).expect("running");
        p.child.kill().unwrap();
        p.child.wait().unwrap();
        self.gateways.remove(name);
        p
    }

    fn restart(&mut self, name: &str, p: Proc) {
        self.launch(name, p.bin, p.env);
    }

    fn user(&self, gw: &str, prefix: &str) -> Client {
        let addr = self.gateways[gw];
        let name = format!("{prefix}{}", &unique("")[1..8]);
        let api = Http { addr, token: None };
        let r = api.post(
            "/api/auth/register",
            &json!({ "username": name, "password": "secret12" }),
        );
        assert_eq!(r.status, 201, "{:?}", r.body);
        let r = api.post(
            "/api/auth/login",
            &json!({ "username": name, "password": "secret12" }),
        );
        assert_eq!(r.status, 200, "{:?}", r.body);
        let data = &r.body["data"];
        Client {
            id: data["user"]["userId"].as_str().unwrap().to_string(),
            name,
            token: data["token"].as_str().unwrap().to_string(),
            addr,
        }
    }

    fn guest(&self, gw: &str, name: &str) -> Client {
        let addr = self.gateways[gw];
        let r = Http { addr, token: None }.post("/api/auth/guest", &json!({ "guestName": name }));
        assert_eq!(r.status, 200, "{:?}", r.body);
        let data = &r.body["data"];
        Client {
            id: data["user"]["userId"].as_str().unwrap().to_string(),
            name: data["user"]["username"].as_str().unwrap().to_string(),
            token: data["token"].as_str().unwrap().to_string(),
            addr,
        }
    }

    /// Discovery's live instances of a service, as etcdctl lists them.
    fn registered(&self, service: &str) -> Vec<String> {
        let out = self.etcdctl(&[
            "get",
            "--prefix",
            "--keys-only",
            &format!("/{}/services/{service}/", self.name),
        ]);
        let mut ids: Vec<String> = out
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| l.rsplit('/').next().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    }

    fn etcdctl(&self, args: &[&str]) -> String {
        let etcd = engine("RINGCHAT_TEST_ETCD_URL", "http://127.0.0.1:2379");
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &host_port(&etcd)])
            .args(args)
            .output()
            .expect("etcdctl runs (Debian's etcd-client)");
        assert!(out.status.success(), "etcdctl {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until `name`'s log has a line containing `text`.
    fn wait_for_log(&self, name: &str, text: &str) {
        let end = Instant::now() + WAIT;
        loop {
            let log = std::fs::read_to_string(&self.procs[name].log).unwrap_or_default();
            if log.contains(text) {
                return;
            }
            assert!(
                Instant::now() < end,
                "{name} never logged {text:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `name`'s log has a line containing every one of `parts`; returns it.
    fn wait_for_line(&self, name: &str, parts: &[&str]) -> String {
        let end = Instant::now() + WAIT;
        loop {
            let log = std::fs::read_to_string(&self.procs[name].log).unwrap_or_default();
            if let Some(line) = log.lines().find(|l| parts.iter().all(|p| l.contains(p))) {
                return line.to_string();
            }
            assert!(
                Instant::now() < end,
                "{name} never logged a line with {parts:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `name`'s admin port, as it logged it.
    fn admin(&self, name: &str) -> Http {
        let marker = if self.procs[name].bin == "im-gateway" {
            "admin_addr="
        } else {
            "admin listening addr="
        };
        let line = self.wait_for_line(name, &[marker]);
        let addr = line.split(marker).nth(1).unwrap().split_whitespace().next();
        Http {
            addr: addr.unwrap().parse().expect("an admin address"),
            token: None,
        }
    }

    /// Scrapes `name`'s metrics until a sample line starts with each of `prefixes`.
    fn wait_for_metrics(&self, name: &str, prefixes: &[String]) -> String {
        let admin = self.admin(name);
        let end = Instant::now() + WAIT;
        loop {
            let r = admin.get("/metrics");
            let missing: Vec<&String> = prefixes
                .iter()
                .filter(|p| !r.text.lines().any(|l| l.starts_with(p.as_str())))
                .collect();
            if r.status == 200 && missing.is_empty() {
                return r.text;
            }
            assert!(
                Instant::now() < end,
                "{name}'s metrics lack {missing:?}:\n{}",
                r.text
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for (name, p) in &self.procs {
            let text = std::fs::read_to_string(&p.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            out += &format!("--- {name} (last lines)\n");
            for l in tail.into_iter().rev() {
                out += l;
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "cluster {} logs in {}\n{}",
                self.name,
                self.dir.display(),
                self.logs()
            );
        }
        for p in self.procs.values_mut() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        if let Some(r) = &mut self.private_redis {
            let _ = r.kill();
            let _ = r.wait();
        }
        // best effort: the test database goes with the cluster
        let _ = Command::new("mariadb")
            .args(["-h", "127.0.0.1", "-u", "root", "-e"])
            .arg(format!("DROP DATABASE IF EXISTS {}", self.database))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = &self.mysql;
    }
}

fn start_redis(port: u16, dir: &std::path::Path) -> Child {
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
        ])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server runs (Debian's redis-server)");
    let end = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "private redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn create_group(owner: &Client, name: &str, members: &[&Client]) -> String {
    let ids: Vec<&str> = members.iter().map(|c| c.id.as_str()).collect();
    let r = owner
        .http()
        .post("/api/groups", &json!({ "groupName": name, "members": ids }));
    assert!(r.status == 200 || r.status == 201, "{:?}", r.body);
    r.body["data"]["conversation"]["conversationId"]
        .as_str()
        .unwrap_or_else(|| panic!("conversation id in {}", r.body))
        .to_string()
}

/// Reads `ws` until a new-message of `conversation` whose content is `marker`; returns
/// every new-message of that conversation before it (message id -> count).
fn read_until_marker(ws: &mut Ws, conversation: &str, marker: &str) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < end, "no marker {marker} within 60 s");
        let e = ws.next_event();
        if e["type"] != "new-message" || e["data"]["conversationId"] != conversation {
            continue;
        }
        let m = &e["data"]["message"];
        if m["content"] == marker {
            return seen;
        }
        *seen
            .entry(m["messageId"].as_str().unwrap_or_default().to_string())
            .or_insert(0) += 1;
    }
}

#[test]
fn users_on_two_gateways_chat_alone_in_a_group_and_in_the_world() {
    let cluster = Cluster::start(false);
    let a = cluster.user("gw-1", "alice");
    let b = cluster.user("gw-2", "bob");
    let c = cluster.user("gw-2", "carol");
    let (mut wa, mut wb, mut wc) = (a.ws(), b.ws(), c.ws());

    // single chat across the gateways, both ways
    let single = a.single_with(&b);
    wa.send(&single, "hello from gw-1", "s1");
    wa.ack("s1");
    let m = wb.new_message(&single);
    assert_eq!(m["content"].as_str(), Some("hello from gw-1"), "{m}");
    wb.send(&single, "hello from gw-2", "s2");
    wb.ack("s2");
    wa.new_message(&single);

    // a group spanning both gateways
    let group = create_group(&a, "both sides", &[&b, &c]);
    wa.send(&group, "to the group", "g1");
    wa.ack("g1");
    wb.new_message(&group);
    wc.new_message(&group);

    // the world room: everyone, whichever gateway
    wc.send("world", "to the world", "w1");
    wc.ack("w1");
    wa.new_message("world");
    wb.new_message("world");

    // history is the same through either gateway
    let h1 = a.history(&group, "");
    let other = Client {
        addr: cluster.gateways["gw-2"],
        ..a.clone()
    };
    assert_eq!(h1, other.history(&group, ""));
    assert_eq!(h1.len(), 1);

    // a setting changed in etcd applies without a restart: with the large-group threshold
    // at 1, the group of three fans out through im-task, and still arrives
    cluster.etcdctl(&[
        "put",
        &format!("/{}/config/logic.large_group_threshold", cluster.name),
        "1",
    ]);
    cluster.wait_for_log(
        "im-logic",
        "dynamic setting applied key=\"logic.large_group_threshold\" value=\"1\"",
    );
    wa.send(&group, "through im-task", "g2");
    wa.ack("g2");
    assert_eq!(wb.new_message(&group)["content"], "through im-task");
    assert_eq!(wc.new_message(&group)["content"], "through im-task");

    // so do the gateways' limits: at one connection per address, gw-1 (where alice's
    // WebSocket is open) refuses a new one from the same address, and takes it again
    // once the limit is raised
    let prefix = format!("/{}/config", cluster.name);
    let gw1 = Http {
        addr: cluster.gateways["gw-1"],
        token: None,
    };
    cluster.etcdctl(&[
        "put",
        &format!("{prefix}/gateway.max_connections_per_ip"),
        "1",
    ]);
    cluster.wait_for_log(
        "gw-1",
        "dynamic setting applied key=\"gateway.max_connections_per_ip\" value=\"1\"",
    );
    let r = gw1.get("/api/conversations");
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(r.text.contains("too many connections"), "{}", r.text);
    cluster.etcdctl(&[
        "put",
        &format!("{prefix}/gateway.max_connections_per_ip"),
        "1000",
    ]);
    cluster.wait_for_log(
        "gw-1",
        "dynamic setting applied key=\"gateway.max_connections_per_ip\" value=\"1000\"",
    );
    assert_eq!(gw1.get("/api/conversations").status, 401);

    // and the log level: at `info` im-logic writes no line per message; at `debug` it
    // does, from the next message on
    assert!(!std::fs::read_to_string(&cluster.procs["im-logic"].log)
        .unwrap()
        .contains(" DEBUG "));
    cluster.etcdctl(&["put", &format!("{prefix}/log.level"), "info,im_logic=debug"]);
    cluster.wait_for_log("im-logic", "dynamic setting applied key=\"log.level\"");
    wa.send(&group, "now in the debug log", "g3");
    wa.ack("g3");
    cluster.wait_for_log("im-logic", " DEBUG ");
}

/// The 16 hex digits after `trace_id=` in a text log line.
/// Issue 12's account features on the real engines, the checks the embedded profile runs
/// (`accounts.rs`): the token a refresh revokes is refused on every gateway (the
/// revocation is in Redis and MariaDB, not in one process); the user search reads MariaDB.
#[test]
fn accounts_refresh_and_search_across_two_gateways() {
    let cluster = Cluster::start(false);
    let a = cluster.user("gw-1", "rf");
    let b = cluster.user("gw-2", "rf_peer");
    let fresh = common::check_token_refresh(&a, &b);
    // the old token on the other gateway: refused; the new one: served
    let other = cluster.gateways["gw-2"];
    let old = Http {
        addr: other,
        token: Some(a.token.clone()),
    };
    common::assert_error(&old.get("/api/users/info"), 401, "AUTH_FAILED");
    let new = Http {
        addr: other,
        token: Some(fresh.token.clone()),
    };
    let me = new.get("/api/users/info");
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.body["data"]["userId"], a.id.as_str());

    // user search on MariaDB through im-repo, asked at the other gateway
    common::check_user_search(other, &b);
}

/// Profiles and friend requests across two gateways on the real engines: the checks of
/// `accounts.rs` and `friends.rs`, with each `friend-request` event crossing Kafka.
#[test]
fn profiles_and_friend_requests_across_two_gateways() {
    let cluster = Cluster::start(false);
    let (p, viewer) = (cluster.user("gw-1", "pf"), cluster.user("gw-2", "pf_view"));
    common::check_profile(&p, &viewer);
    let a = cluster.user("gw-1", "fr_a");
    let b = cluster.user("gw-2", "fr_b");
    let c = cluster.user("gw-1", "fr_c");
    let guest = cluster.guest("gw-2", "frg");
    common::check_friend_requests(&a, &b, &c, &guest);
}

/// Conversation details and member management across two gateways on the real engines:
/// the check of `friends.rs`, with each member event crossing Kafka.
#[test]
fn conversations_and_members_across_two_gateways() {
    let cluster = Cluster::start(false);
    let owner = cluster.user("gw-1", "cm_o");
    let m1 = cluster.user("gw-2", "cm_1");
    let m2 = cluster.user("gw-1", "cm_2");
    let outsider = cluster.user("gw-2", "cm_x");
    common::check_conversations_and_members(&owner, &m1, &m2, &outsider);
}

/// A webhook that records the JSON bodies POSTed to it (stands in for APNs/FCM).
fn webhook_recorder() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/push", listener.local_addr().unwrap());
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_ok() {
                if let Ok(v) = serde_json::from_slice(&body) {
                    seen.lock().unwrap().push(v);
                }
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, bodies)
}

/// On the real engines with `logic.friends_need_consent` and im-task's webhook notifier:
/// the v1 `POST /api/friends` sends a request (202) that the other side's own v1 add
/// accepts, and a mention reaches an offline member through im-task's webhook, naming them.
#[test]
fn consent_and_mention_pushes_on_the_real_engines() {
    let (url, pushes) = webhook_recorder();
    let cluster = Cluster::start_with(&[
        ("RINGCHAT_LOGIC__FRIENDS_NEED_CONSENT", "true"),
        ("RINGCHAT_TASK__NOTIFIER", "webhook"),
        ("RINGCHAT_TASK__WEBHOOK_URL", &url),
    ]);
    let a = cluster.user("gw-1", "cs_a");
    let b = cluster.user("gw-2", "cs_b");
    let c = cluster.user("gw-2", "cs_c");
    let r = a.http().post("/api/friends", &json!({ "friendId": b.id }));
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.body["data"]["request"]["status"], 0, "{}", r.text);
    let r = b.http().post("/api/friends", &json!({ "friendId": a.id }));
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.body["data"]["conversation"]["conversationId"].is_string(),
        "{}",
        r.text
    );

    // b and c are offline; a mentions c in a group
    let r = a.http().post(
        "/api/groups",
        &json!({ "groupName": "pushes", "members": [b.id, c.id] }),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let conv = r.body["data"]["conversation"]["conversationId"]
        .as_str()
        .unwrap()
        .to_string();
    let r = a.http().post(
        "/api/messages",
        &json!({ "conversationId": conv, "content": "@c look", "mentions": [c.id] }),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let message_id = r.body["data"]["messageId"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let push = loop {
        let found = pushes
            .lock()
            .unwrap()
            .iter()
            .find(|p| p["messageId"] == message_id.as_str())
            .cloned();
        if let Some(p) = found {
            break p;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no push for {message_id}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut users: Vec<String> = push["userIds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap().to_string())
        .collect();
    users.sort();
    let mut want = vec![b.id.clone(), c.id.clone()];
    want.sort();
    assert_eq!(users, want, "{push}");
    assert_eq!(push["mentionedUserIds"], json!([c.id]), "{push}");
}

/// Edit, revoke, mentions and read receipts across two gateways on the real engines: the
/// check of `social.rs`, with every event crossing Kafka and each change stored in
/// MariaDB.
#[test]
fn message_changes_and_read_receipts_across_two_gateways() {
    let cluster = Cluster::start(false);
    let owner = cluster.user("gw-1", "mc_o");
    let m1 = cluster.user("gw-2", "mc_1");
    let m2 = cluster.user("gw-1", "mc_2");
    let outsider = cluster.user("gw-2", "mc_x");
    common::check_message_changes(&owner, &m1, &m2, &outsider);
}

/// Typing indicators across two gateways on the real engines: the checks of `typing.rs`,
/// relayed through Kafka to the other gateway.
#[test]
fn typing_indicators_cross_gateways() {
    let cluster = Cluster::start(false);
    let a = cluster.user("gw-1", "ty_a");
    let b = cluster.user("gw-2", "ty_b");
    let outsider = cluster.user("gw-2", "ty_o");
    common::check_typing(&a, &b, &outsider);
}

fn trace_id_in(line: &str) -> String {
    let id: String = line
        .split("trace_id=")
        .nth(1)
        .unwrap_or_else(|| panic!("no trace_id in {line:?}"))
        .chars()
        .take(16)
        .collect();
    assert!(
        id.len() == 16 && id.chars().all(|c| c.is_ascii_hexdigit()),
        "a trace id is 16 hex digits: {line:?}"
    );
    id
}

#[test]
fn a_trace_id_follows_each_message_through_kafka_and_grpc_into_every_log() {
    // the per-message lines are at debug level; im-repo logs JSON
    let cluster = Cluster::start_logging(
        false,
        "info,im_gateway::dispatch=debug,im_logic=debug,im_task=debug,ringchat_core::trace=debug",
        &["im-repo"],
    );
    let a = cluster.user("gw-1", "tracer");
    let b = cluster.user("gw-2", "traced");
    let (mut wa, mut wb) = (a.ws(), b.ws());

    // a WebSocket send to the world room: gateway -> Kafka -> im-logic -> Kafka -> im-task
    // -> Kafka -> both gateways, the trace id in the record headers all the way
    wa.send("world", "traced through the world", "trace-w1");
    wa.ack("trace-w1");
    wb.new_message("world");
    let published = cluster.wait_for_line("gw-1", &["send published", "temp_message_id=trace-w1"]);
    let id = trace_id_in(&published);
    let span = format!("message{{trace_id={id}}}");
    cluster.wait_for_line(
        "im-logic",
        &[&span, "send received", "temp_message_id=trace-w1"],
    );
    cluster.wait_for_line("im-logic", &[&span, "send stored"]);
    cluster.wait_for_line("im-logic", &[&span, "fan-out handed to im-task"]);
    cluster.wait_for_line("im-task", &[&span, "task received", "world fan-out"]);
    let traced = format!("trace_id={id}");
    cluster.wait_for_line("gw-1", &["event received", &traced, "event=ack"]);
    cluster.wait_for_line("gw-2", &["event received", &traced, "event=new-message"]);

    // an HTTP send: the response names its trace id, which goes gateway -(gRPC)-> im-logic
    // -(gRPC)-> im-repo, and on the Kafka record of the delivery to the other gateway
    let single = b.single_with(&a);
    let r = b.http().post(
        "/api/messages",
        &json!({"conversationId": single, "content": "traced over http", "messageType": "text"}),
    );
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r
        .header("x-trace-id")
        .expect("an API response names its trace id")
        .to_string();
    assert!(
        id.len() == 16 && id.chars().all(|c| c.is_ascii_hexdigit()),
        "{id}"
    );
    assert_eq!(wa.new_message(&single)["content"], "traced over http");
    let span = format!("rpc{{trace_id={id} path=/ringchat.v1.Logic/SendMessage}}");
    cluster.wait_for_line("im-logic", &[&span, "rpc received"]);
    cluster.wait_for_line(
        "gw-1",
        &[
            "event received",
            &format!("trace_id={id}"),
            "event=new-message",
        ],
    );
    // im-repo's JSON lines: the append of that message ran in the trace
    let end = Instant::now() + WAIT;
    loop {
        let log = std::fs::read_to_string(&cluster.procs["im-repo"].log).unwrap();
        // every whole line is one JSON object (the last may be half written yet)
        let lines: Vec<serde_json::Value> = log
            .split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
            .collect();
        let appended = lines.iter().any(|l| {
            l["message"] == "rpc received"
                && l["span"]["trace_id"] == id.as_str()
                && l["span"]["path"] == "/ringchat.v1.Repo/Append"
        });
        if appended {
            break;
        }
        assert!(
            Instant::now() < end,
            "im-repo logged no append in trace {id}\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn im_logic_killed_while_messages_flow_loses_and_doubles_nothing() {
    let mut cluster = Cluster::start(false);
    let a = cluster.user("gw-1", "sender");
    let b = cluster.user("gw-2", "near");
    let c = cluster.user("gw-1", "far");
    let group = create_group(&a, "kill -9", &[&b, &c]);
    let (mut wa, mut wb, mut wc) = (a.ws(), b.ws(), c.ws());
    const N: usize = 120;

    let mut logic = None;
    for i in 0..N {
        wa.send(&group, &format!("m{i}"), &format!("t{i}"));
        if i == N / 3 {
            logic = Some(cluster.kill9("im-logic"));
        }
        if i == 2 * N / 3 {
            cluster.restart("im-logic", logic.take().unwrap());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // every send is answered; a refused one is sent again until acknowledged
    let mut acked: HashMap<String, String> = HashMap::new();
    let mut refused = 0;
    for i in 0..N {
        let temp = format!("t{i}");
        loop {
            match wa.answer(&temp) {
                Ok(ack) => {
                    let id = ack["messageId"].as_str().unwrap().to_string();
                    if let Some(prev) = acked.insert(temp.clone(), id.clone()) {
                        assert_eq!(prev, id, "two ids for one send");
                    }
                    break;
                }
                Err(e) => {
                    refused += 1;
                    // the bus or im-logic was unavailable for longer than the retry budget
                    assert_eq!(
                        e["code"], "INTERNAL",
                        "only a transient failure is expected: {e}"
                    );
                    wa.send(&group, &format!("m{i}"), &temp);
                }
            }
        }
    }
    wa.send(&group, "marker", "marker");
    wa.ack("marker");
    for (who, ws) in [("near (gw-2)", &mut wb), ("far (gw-1)", &mut wc)] {
        let got = read_until_marker(ws, &group, "marker");
        let doubled: Vec<_> = got.iter().filter(|(_, n)| **n > 1).collect();
        assert!(doubled.is_empty(), "{who} got duplicates: {doubled:?}");
        let ids: HashSet<&String> = acked.values().collect();
        let missing: Vec<_> = ids.iter().filter(|id| !got.contains_key(**id)).collect();
        assert!(
            missing.is_empty(),
            "{who} missed {} of {N} acknowledged messages: {missing:?}",
            missing.len()
        );
        assert_eq!(got.len(), N, "{who} got messages nobody acknowledged");
    }
    // and the store holds each once, seqs 1..=N+1 without a gap
    let history = a.history(&group, "?afterSeq=0&size=200");
    let mut seqs: Vec<i64> = history
        .iter()
        .map(|m| m["seqId"].as_i64().unwrap())
        .collect();
    seqs.sort();
    assert_eq!(seqs, (1..=(N as i64 + 1)).collect::<Vec<_>>());
    eprintln!("kill -9 im-logic: {N} sends, {refused} refused and resent, 0 lost, 0 doubled");
}

#[test]
fn a_killed_gateways_clients_move_to_the_other_and_sync_what_they_missed() {
    let mut cluster = Cluster::start(false);
    let a = cluster.user("gw-1", "stay");
    let b = cluster.user("gw-2", "move");
    let single = a.single_with(&b);
    let (mut wa, mut wb) = (a.ws(), b.ws());
    let mut last_seq = 0;
    for i in 0..5 {
        wa.send(&single, &format!("before {i}"), &format!("b{i}"));
        wa.ack(&format!("b{i}"));
        let m = wb.new_message(&single);
        last_seq = m["seqId"].as_i64().unwrap();
    }
    assert_eq!(
        cluster.registered("im-gateway"),
        vec!["gw-1".to_string(), "gw-2".to_string()]
    );
    cluster.kill9("gw-2");
    drop(wb);
    for i in 0..5 {
        wa.send(&single, &format!("while away {i}"), &format!("a{i}"));
        wa.ack(&format!("a{i}"));
    }
    // the client reconnects to the gateway that lives and syncs with afterSeq
    let moved = Client {
        addr: cluster.gateways["gw-1"],
        ..b.clone()
    };
    let mut wb = moved.ws();
    let missed = moved.history(&single, &format!("?afterSeq={last_seq}"));
    let contents: Vec<&str> = missed
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        contents,
        (0..5)
            .map(|i| format!("while away {i}"))
            .collect::<Vec<_>>()
    );
    wa.send(&single, "live again", "l");
    wa.ack("l");
    let m = wb.new_message(&single);
    assert_eq!(m["content"].as_str(), Some("live again"));

    // killed without deregistering, gw-2 leaves discovery when its lease (2 s) ends
    let end = Instant::now() + Duration::from_secs(10);
    while cluster.registered("im-gateway") != vec!["gw-1".to_string()] {
        assert!(
            Instant::now() < end,
            "gw-2 still registered after its lease: {:?}",
            cluster.registered("im-gateway")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // a clean stop leaves at once
    assert_eq!(cluster.registered("im-task").len(), 1);
    let task = cluster.procs.get_mut("im-task").unwrap();
    unsafe_free_sigterm(task.child.id());
    let _ = task.child.wait();
    let end = Instant::now() + WAIT;
    while !cluster.registered("im-task").is_empty() {
        assert!(
            Instant::now() < end,
            "im-task still registered after a clean stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM through kill(1), so the test needs no unsafe code.
fn unsafe_free_sigterm(pid: u32) {
    let ok = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[test]
fn messaging_survives_redis_stopping_and_starting() {
    let mut cluster = Cluster::start(true);
    let a = cluster.user("gw-1", "x");
    let b = cluster.user("gw-2", "y");
    let single = a.single_with(&b);
    let (mut wa, mut wb) = (a.ws(), b.ws());
    wa.send(&single, "before", "r0");
    wa.ack("r0");
    wb.new_message(&single);

    let port: u16 = host_port(
        &cluster
            .env
            .iter()
            .find(|(k, _)| k == "RINGCHAT_CACHE__URL")
            .unwrap()
            .1,
    )
    .rsplit(':')
    .next()
    .unwrap()
    .parse()
    .unwrap();
    let mut redis = cluster.private_redis.take().unwrap();
    redis.kill().unwrap();
    redis.wait().unwrap();
    // degraded: routed to every gateway, still delivered once
    for i in 0..5 {
        wa.send(&single, &format!("during {i}"), &format!("d{i}"));
        wa.ack(&format!("d{i}"));
        let m = wb.new_message(&single);
        assert_eq!(m["content"].as_str(), Some(format!("during {i}").as_str()));
    }
    // ... and says so on its admin port: still ready, degraded, in the body, a header and
    // the gauge
    let logic_admin = cluster.admin("im-logic");
    let r = logic_admin.get("/readyz");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["status"], "degraded: cache unreachable",
        "{}",
        r.text
    );
    assert_eq!(r.header("x-ringchat-degraded"), Some("cache"));
    let m = cluster.wait_for_metrics("im-logic", &["ringchat_cache_degraded 1".into()]);
    assert!(!m.contains("\nringchat_cache_failures_total 0\n"), "{m}");
    cluster.private_redis = Some(start_redis(port, &cluster.dir.clone()));
    // a new connection registers its presence again; messages flow as before
    let c = cluster.user("gw-2", "z");
    let mut wc = c.ws();
    let s2 = a.single_with(&c);
    wa.send(&s2, "after", "r1");
    wa.ack("r1");
    wc.new_message(&s2);
    wa.send(&single, "after too", "r2");
    wa.ack("r2");
    wb.new_message(&single);
    cluster.wait_for_metrics("im-logic", &["ringchat_cache_degraded 0".into()]);
    assert_eq!(logic_admin.get("/readyz").body["status"], "ready");
    let _ = &mut cluster;
}

#[test]
fn every_service_answers_health_readiness_and_metrics_on_its_admin_port() {
    let cluster = Cluster::start(false);
    let a = cluster.user("gw-1", "p");
    let b = cluster.user("gw-2", "q");
    let single = a.single_with(&b);
    let (mut wa, mut wb) = (a.ws(), b.ws());
    wa.send(&single, "measured", "m0");
    wa.ack("m0");
    wb.new_message(&single);

    for name in ["im-repo", "im-logic", "im-task", "gw-1", "gw-2"] {
        let admin = cluster.admin(name);
        assert_eq!(admin.get("/healthz").status, 200, "{name}");
        let r = admin.get("/readyz");
        assert_eq!(r.status, 200, "{name}: {}", r.text);
        assert_eq!(r.body["status"], "ready", "{name}: {}", r.text);
    }
    let checks = cluster.admin("im-logic").get("/readyz").body["checks"].clone();
    for check in ["store", "bus", "discovery", "cache"] {
        assert_eq!(checks[check], "ok", "{check}: {checks}");
    }

    // consumer lag is measured on Kafka per scrape, per partition of each group
    let p = &cluster.name;
    let lag = |topic: &str, group: &str| {
        format!(
            "ringchat_bus_consumer_lag{{topic=\"{p}.{topic}\",group=\"{p}.{group}\",partition=\""
        )
    };
    let process = [
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
        "process_open_fds ",
        "process_threads ",
    ];
    let expect: [(&str, Vec<String>); 4] = [
        (
            "im-repo",
            vec![
                "ringchat_grpc_server_requests_total{service=\"ringchat.v1.Repo\",method=\"Append\",code=\"OK\"}".into(),
                "ringchat_grpc_server_request_duration_seconds_bucket{service=\"ringchat.v1.Repo\",method=\"Append\",le=\"+Inf\"}".into(),
            ],
        ),
        (
            "im-logic",
            vec![
                "ringchat_grpc_server_requests_total{service=\"ringchat.v1.Logic\",method=\"Login\",code=\"OK\"}".into(),
                "ringchat_logic_upstream_messages_total ".into(),
                "ringchat_cache_degraded 0".into(),
                lag("im-upstream-topic", "im-logic"),
            ],
        ),
        (
            "im-task",
            vec!["ringchat_task_fanouts_total ".into(), lag("im-task-topic", "im-task")],
        ),
        (
            "gw-1",
            vec![
                "ringchat_gateway_connections{core=\"0\"}".into(),
                "ringchat_gateway_upstream_published_total ".into(),
                lag("im-downstream-topic-gw-1", "gateway-gw-1"),
            ],
        ),
    ];
    for (name, mut prefixes) in expect {
        prefixes.extend(process.iter().map(|s| s.to_string()));
        let text = cluster.wait_for_metrics(name, &prefixes);
        if name == "im-logic" {
            let sent: f64 = text
                .lines()
                .find_map(|l| l.strip_prefix("ringchat_logic_upstream_messages_total "))
                .and_then(|v| v.parse().ok())
                .unwrap();
            assert!(sent >= 1.0, "{text}");
        }
    }
}
