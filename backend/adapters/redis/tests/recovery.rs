//! Outages: a killed connection, a Redis that stops answering, a Redis that is not there.
//! Calls fail fast as UNAVAILABLE during the outage and succeed again after it, with no
//! help from the caller.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use ringchat_core::ports::Cache;
use ringchat_core::testkit::{eventually, unique};
use ringchat_core::ErrorCode;
use ringchat_redis::{RedisCache, DEFAULT_TIMEOUT};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

const LONG: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_succeed_again_after_the_connection_is_killed() {
    let cache = common::cache().await;
    cache
        .set("k", Bytes::from_static(b"v"), LONG)
        .await
        .unwrap();
    let id = cache.client_id().await.unwrap();

    let mut admin = common::admin().await;
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(id)
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(killed, 1, "the adapter's connection was not found");

    // the first call may still meet the dead connection: it fails as UNAVAILABLE, quickly
    let start = Instant::now();
    if let Err(e) = cache.get("k").await {
        assert_eq!(e.code, ErrorCode::Unavailable, "{e}");
        assert!(start.elapsed() <= DEFAULT_TIMEOUT + Duration::from_secs(1));
    }
    let c = cache.clone();
    eventually("calls to succeed again", Duration::from_secs(5), || {
        let c = c.clone();
        async move { c.get("k").await.ok().flatten() }
    })
    .await;
    assert_ne!(
        cache.client_id().await.unwrap(),
        id,
        "still the killed connection"
    );
    assert_eq!(
        cache
            .presence_add(
                1,
                &ringchat_core::ports::Endpoint {
                    gateway_id: "gw".into(),
                    conn_id: 1
                },
                LONG
            )
            .await
            .unwrap(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_stops_answering_fails_calls_within_the_deadline() {
    let proxy = Proxy::start(&common::redis_url()).await;
    let prefix = format!("{}:", unique("ringchat-test"));
    let cache = RedisCache::connect(&proxy.url, &prefix).await.unwrap();
    cache
        .set("k", Bytes::from_static(b"v"), LONG)
        .await
        .unwrap();

    proxy.hang();
    for _ in 0..2 {
        let start = Instant::now();
        let e = cache.get("k").await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Unavailable, "{e}");
        assert!(e.is_retryable());
        let took = start.elapsed();
        assert!(
            took <= DEFAULT_TIMEOUT + Duration::from_millis(500),
            "a call hung for {took:?}"
        );
    }
    let e = cache.presence(&[1, 2]).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Unavailable, "{e}");

    proxy.resume();
    let c = cache.clone();
    eventually("calls to succeed again", Duration::from_secs(10), || {
        let c = c.clone();
        async move { c.get("k").await.ok().flatten() }
    })
    .await;
    cache.ping().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_no_redis_fails_fast_as_unavailable() {
    // a port nothing listens on: bound, then released
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let start = Instant::now();
    let e = RedisCache::connect(&format!("redis://127.0.0.1:{port}"), "x:")
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Unavailable, "{e}");
    assert!(start.elapsed() <= DEFAULT_TIMEOUT + Duration::from_millis(500));

    let e = RedisCache::connect("redis://user:secret@[bad", "x:")
        .await
        .unwrap_err();
    assert!(!e.message.contains("secret"), "{e}");
}

/// A TCP proxy in front of the test Redis that can stop answering (connections stay open,
/// nothing is forwarded) and resume (the held connections are dropped, new ones forward).
struct Proxy {
    url: String,
    hung: watch::Sender<bool>,
}

impl Proxy {
    async fn start(redis_url: &str) -> Proxy {
        // redis://[userinfo@]host:port[/db]: the proxy stands in for host:port
        let (scheme, rest) = redis_url.split_once("://").expect("redis url");
        let (userinfo, hostpath) = match rest.rsplit_once('@') {
            Some((u, h)) => (format!("{u}@"), h),
            None => (String::new(), rest),
        };
        let (hostport, path) = hostpath.split_once('/').unwrap_or((hostpath, ""));
        let upstream: SocketAddr = tokio::net::lookup_host(hostport)
            .await
            .expect("resolve redis host")
            .next()
            .expect("an address for the redis host");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "{scheme}://{userinfo}{}/{path}",
            listener.local_addr().unwrap()
        );
        let (hung, _) = watch::channel(false);
        let h = hung.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                tokio::spawn(forward(inbound, upstream, h.subscribe()));
            }
        });
        Proxy { url, hung }
    }

    fn hang(&self) {
        self.hung.send_replace(true);
    }

    fn resume(&self) {
        self.hung.send_replace(false);
    }
}

async fn forward(mut inbound: TcpStream, upstream: SocketAddr, mut hung: watch::Receiver<bool>) {
    if !*hung.borrow_and_update() {
        let Ok(mut outbound) = TcpStream::connect(upstream).await else {
            return;
        };
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => return,
            _ = hung.wait_for(|h| *h) => {}
        }
    }
    // hung: hold the connection open, answering nothing, until resumed; then drop it
    let _ = hung.wait_for(|h| !*h).await;
}
