//! The etcd the tests run against: `RINGCHAT_TEST_ETCD_URL` (default
//! `http://127.0.0.1:2379`, several endpoints comma-separated). A missing etcd fails the
//! tests, it never skips them.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use ringchat_etcd::EtcdDiscovery;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub fn etcd_endpoints() -> Vec<String> {
    std::env::var("RINGCHAT_TEST_ETCD_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:2379".into())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// A key prefix of the test's own, so cases run in parallel on one etcd.
pub fn prefix() -> String {
    format!("/{}", ringchat_core::testkit::unique("ringchat-test"))
}

pub async fn connect_to(endpoints: &[String], prefix: &str, ttl_secs: u64) -> EtcdDiscovery {
    match EtcdDiscovery::connect(endpoints, prefix, ttl_secs).await {
        Ok(d) => d,
        Err(e) => panic!(
            "etcd is not reachable at {} ({e}): start it with `deploy/engines.sh up`, or point \
             RINGCHAT_TEST_ETCD_URL at one",
            endpoints.join(",")
        ),
    }
}

pub async fn connect(prefix: &str, ttl_secs: u64) -> EtcdDiscovery {
    connect_to(&etcd_endpoints(), prefix, ttl_secs).await
}

/// A POST to etcd's JSON gateway (`/v3/...`), for what the adapter does not expose (e.g.
/// revoking its lease behind its back). Returns the response body.
pub async fn etcd_json(path: &str, body: &str) -> String {
    let endpoint = &etcd_endpoints()[0];
    let hostport = endpoint
        .split_once("://")
        .map_or(endpoint.as_str(), |(_, h)| h)
        .trim_end_matches('/');
    let mut s = TcpStream::connect(hostport).await.expect("etcd reachable");
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {hostport}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").expect("http response");
    assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
    body.to_string()
}

/// A TCP proxy in front of the test etcd whose connections can all be cut at once.
pub struct Proxy {
    pub endpoint: String,
    cut: watch::Sender<u64>,
}

impl Proxy {
    pub async fn start() -> Proxy {
        let endpoint = &etcd_endpoints()[0];
        let hostport = endpoint
            .split_once("://")
            .map_or(endpoint.as_str(), |(_, h)| h)
            .trim_end_matches('/')
            .to_string();
        let upstream: SocketAddr = tokio::net::lookup_host(hostport)
            .await
            .expect("resolve etcd host")
            .next()
            .expect("an address for the etcd host");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let (cut, _) = watch::channel(0u64);
        let c = cut.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut cut = c.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Proxy { endpoint, cut }
    }

    /// Drops every connection open through the proxy (new ones are served again).
    pub fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

pub const QUICK: Duration = Duration::from_secs(2);
