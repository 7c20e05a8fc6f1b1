//! The Redis the tests run against: `RINGCHAT_TEST_REDIS_URL` (default
//! `redis://127.0.0.1:6379`). A missing Redis fails the tests, it never skips them.

use ringchat_redis::RedisCache;

pub fn redis_url() -> String {
    std::env::var("RINGCHAT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A cache whose keys live under a prefix of its own, so cases run in parallel.
pub async fn cache() -> RedisCache {
    let url = redis_url();
    let prefix = format!("{}:", ringchat_core::testkit::unique("ringchat-test"));
    match RedisCache::connect(&url, &prefix).await {
        Ok(c) => c,
        Err(e) => panic!(
            "redis is not reachable at {url} ({e}): start it with `deploy/engines.sh up` \
             (or `redis-server --port 6379 --save ''`), or point RINGCHAT_TEST_REDIS_URL at one"
        ),
    }
}

/// An admin connection of the tests' own (to kill the adapter's connection from outside).
#[allow(dead_code)]
pub async fn admin() -> redis::aio::MultiplexedConnection {
    let url = redis_url();
    redis::Client::open(url.as_str())
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| {
            panic!("redis is not reachable at {url} ({e}): start it with `deploy/engines.sh up`")
        })
}
