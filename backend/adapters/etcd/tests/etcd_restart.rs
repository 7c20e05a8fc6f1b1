//! etcd itself goes away: restarted with its data, or replaced by an empty one. These
//! cases run an etcd of their own (the `etcd` binary, as `deploy/engines.sh up` installs
//! it) on free ports, so the shared one is never disturbed.

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{connect_to, prefix};
use ringchat_core::ports::{Discovery, Instance};
use ringchat_core::testkit::{eventually, unique};
use ringchat_etcd::EtcdDiscovery;

/// A single-member etcd in a scratch directory, killed (SIGKILL) when dropped.
struct PrivateEtcd {
    dir: PathBuf,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl PrivateEtcd {
    async fn start() -> PrivateEtcd {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(unique("etcd"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut etcd = PrivateEtcd {
            dir,
            client_port: free_port(),
            peer_port: free_port(),
            child: None,
        };
        etcd.run().await;
        etcd
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Starts etcd on the data directory (as it is) and waits until it answers.
    async fn run(&mut self) {
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::File::create(self.dir.join("etcd.log")).unwrap();
        let child = Command::new("etcd")
            .args(["--name", "restart-test"])
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .args(["--listen-client-urls", &self.endpoint()])
            .args(["--advertise-client-urls", &self.endpoint()])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("restart-test={peer}")])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run `etcd` ({e}): install it with `deploy/engines.sh up`")
            });
        self.child = Some(child);
        let endpoint = self.endpoint();
        let log = self.dir.join("etcd.log");
        eventually(
            &format!("etcd at {endpoint} to answer (log: {})", log.display()),
            Duration::from_secs(20),
            || {
                let endpoint = endpoint.clone();
                async move {
                    EtcdDiscovery::connect(&[endpoint], "/probe", 10)
                        .await
                        .ok()
                        .map(drop)
                }
            },
        )
        .await;
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateEtcd {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn instance(id: &str) -> Instance {
    Instance {
        service: "logic".into(),
        id: id.into(),
        addr: format!("http://127.0.0.1:1/{id}"),
    }
}

async fn until_listed(d: &EtcdDiscovery, want: &[Instance], deadline: Duration) {
    eventually(&format!("logic to list {want:?}"), deadline, || async {
        (d.instances("logic").await.ok()? == want).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_and_views_survive_an_etcd_restart() {
    let mut etcd = PrivateEtcd::start().await;
    let endpoints = [etcd.endpoint()];
    let p = prefix();
    let d = connect_to(&endpoints, &p, 2).await;
    let observer = connect_to(&endpoints, &p, 2).await;
    let x = instance("x");
    d.register(&x).await.unwrap();
    until_listed(&observer, std::slice::from_ref(&x), Duration::from_secs(2)).await;

    etcd.kill();
    etcd.run().await;
    // the keep-alive and both watches reconnect by themselves
    until_listed(&observer, std::slice::from_ref(&x), Duration::from_secs(10)).await;
    let y = instance("y");
    d.register(&y).await.unwrap();
    until_listed(&observer, &[x, y], Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_come_back_when_etcd_is_replaced_by_an_empty_one() {
    let mut etcd = PrivateEtcd::start().await;
    let endpoints = [etcd.endpoint()];
    let p = prefix();
    let d = connect_to(&endpoints, &p, 2).await;
    let x = instance("x");
    d.register(&x).await.unwrap();
    d.set_config("k", "v").await.unwrap();
    // writes move the revision well past what the new etcd will start from
    for i in 0..20 {
        d.set_config("churn", &i.to_string()).await.unwrap();
    }

    etcd.kill();
    std::fs::remove_dir_all(etcd.dir.join("data")).unwrap();
    etcd.run().await;

    // the lease is unknown to the new etcd: the keep-alive registers x again under a new
    // one (meanwhile this process's own view still shows the old etcd's content: it is
    // rebuilt once its watch reconnects)
    let observer = connect_to(&endpoints, &p, 2).await;
    until_listed(&observer, std::slice::from_ref(&x), Duration::from_secs(10)).await;
    // and the process's own reads follow the new store: the config set before is gone
    eventually(
        "the lost config to leave the view",
        Duration::from_secs(5),
        || async { d.config("k").await.unwrap().is_none().then_some(()) },
    )
    .await;
    d.set_config("k", "v2").await.unwrap();
    assert_eq!(d.config("k").await.unwrap().as_deref(), Some("v2"));
}
