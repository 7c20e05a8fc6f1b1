//! Cache conformance: TTL'd values and presence.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::{eventually, unique};
use crate::ports::{Cache, Endpoint};

const LONG: Duration = Duration::from_secs(300);

fn ep(gw: &str, conn: u64) -> Endpoint {
    Endpoint {
        gateway_id: gw.to_string(),
        conn_id: conn,
    }
}

fn user() -> i64 {
    use rand::Rng;
    rand::thread_rng().gen_range(1_000_000_000..i64::MAX / 2)
}

pub async fn values_expire(cache: Arc<dyn Cache>) {
    let k = unique("conf-key");
    assert_eq!(cache.get(&k).await.unwrap(), None);
    cache
        .set(&k, Bytes::from_static(b"v1"), LONG)
        .await
        .unwrap();
    assert_eq!(
        cache.get(&k).await.unwrap(),
        Some(Bytes::from_static(b"v1"))
    );
    cache
        .set(&k, Bytes::from_static(b"v2"), LONG)
        .await
        .unwrap();
    assert_eq!(
        cache.get(&k).await.unwrap(),
        Some(Bytes::from_static(b"v2"))
    );
    cache.delete(&k).await.unwrap();
    assert_eq!(cache.get(&k).await.unwrap(), None);

    let short = unique("conf-short");
    cache
        .set(&short, Bytes::from_static(b"x"), Duration::from_millis(150))
        .await
        .unwrap();
    let c = cache.clone();
    eventually("a value to expire", Duration::from_secs(10), || {
        let c = c.clone();
        let short = short.clone();
        async move { c.get(&short).await.unwrap().is_none().then_some(()) }
    })
    .await;
}

pub async fn presence_tracks_every_endpoint(cache: Arc<dyn Cache>) {
    let (u, v, offline) = (user(), user(), user());
    let gw1 = unique("gw");
    let gw2 = unique("gw");
    assert_eq!(cache.presence_add(u, &ep(&gw1, 1), LONG).await.unwrap(), 1);
    assert_eq!(cache.presence_add(u, &ep(&gw2, 7), LONG).await.unwrap(), 2);
    // adding the same endpoint again refreshes it, it does not count twice
    assert_eq!(cache.presence_add(u, &ep(&gw1, 1), LONG).await.unwrap(), 2);
    assert_eq!(cache.presence_add(v, &ep(&gw1, 2), LONG).await.unwrap(), 1);
    let p = cache.presence(&[u, v, offline]).await.unwrap();
    assert_eq!(p.len(), 2);
    let mut eps = p[&u].clone();
    eps.sort();
    let mut expect = vec![ep(&gw1, 1), ep(&gw2, 7)];
    expect.sort();
    assert_eq!(eps, expect);
    assert_eq!(p[&v], vec![ep(&gw1, 2)]);
    assert_eq!(cache.presence_remove(u, &ep(&gw1, 1)).await.unwrap(), 1);
    assert_eq!(cache.presence_remove(u, &ep(&gw2, 7)).await.unwrap(), 0);
    assert_eq!(cache.presence_remove(u, &ep(&gw2, 7)).await.unwrap(), 0);
    let p = cache.presence(&[u, v]).await.unwrap();
    assert!(!p.contains_key(&u));
    assert!(p.contains_key(&v));
    assert!(cache.presence(&[]).await.unwrap().is_empty());

    counts_stay_exact_under_concurrency(&cache).await;
    many_users_are_looked_up_at_once(&cache).await;
}

/// Endpoints of one user added and removed from many tasks at once: every add sees a
/// different count (no two read-modify-writes interleave) and the last count is exact.
async fn counts_stay_exact_under_concurrency(cache: &Arc<dyn Cache>) {
    const N: u64 = 32;
    let u = user();
    let gw = unique("gw");
    let adds = (0..N).map(|conn| {
        let (c, gw) = (cache.clone(), gw.clone());
        tokio::spawn(async move { c.presence_add(u, &ep(&gw, conn), LONG).await.unwrap() })
    });
    let mut counts = Vec::new();
    for a in adds.collect::<Vec<_>>() {
        counts.push(a.await.unwrap());
    }
    counts.sort_unstable();
    assert_eq!(counts, (1..=N as usize).collect::<Vec<_>>());
    assert_eq!(cache.presence(&[u]).await.unwrap()[&u].len(), N as usize);

    let removes = (0..N).map(|conn| {
        let (c, gw) = (cache.clone(), gw.clone());
        tokio::spawn(async move { c.presence_remove(u, &ep(&gw, conn)).await.unwrap() })
    });
    let mut left = Vec::new();
    for r in removes.collect::<Vec<_>>() {
        left.push(r.await.unwrap());
    }
    left.sort_unstable();
    assert_eq!(left, (0..N as usize).collect::<Vec<_>>());
    assert!(cache.presence(&[u]).await.unwrap().is_empty());
}

/// A fan-out looks up a large group's members in one call, and a gateway refreshes all
/// its connections in one call.
async fn many_users_are_looked_up_at_once(cache: &Arc<dyn Cache>) {
    let gw = unique("gw");
    let users: Vec<i64> = (0..600).map(|_| user()).collect();
    let online: Vec<(i64, u64)> = users
        .iter()
        .step_by(2)
        .enumerate()
        .map(|(i, u)| (*u, i as u64))
        .collect();
    cache.presence_refresh(&gw, &online, LONG).await.unwrap();
    let p = cache.presence(&users).await.unwrap();
    assert_eq!(p.len(), online.len());
    for (u, conn) in &online {
        assert_eq!(p[u], vec![ep(&gw, *conn)]);
    }
    cache.presence_refresh(&gw, &[], LONG).await.unwrap();
}

pub async fn presence_expires_unless_refreshed(cache: Arc<dyn Cache>) {
    let (u, v) = (user(), user());
    let gw = unique("gw");
    let short = Duration::from_millis(300);
    cache.presence_add(u, &ep(&gw, 1), short).await.unwrap();
    cache.presence_add(v, &ep(&gw, 2), short).await.unwrap();
    // v is kept alive by the gateway's heartbeat; u is not
    let c = cache.clone();
    let gw2 = gw.clone();
    eventually("u's presence to expire", Duration::from_secs(10), || {
        let c = c.clone();
        let gw = gw2.clone();
        async move {
            c.presence_refresh(&gw, &[(v, 2)], short).await.unwrap();
            let p = c.presence(&[u, v]).await.unwrap();
            assert!(p.contains_key(&v), "a refreshed endpoint expired");
            (!p.contains_key(&u)).then_some(())
        }
    })
    .await;
    // a refresh restores an endpoint the cache lost (e.g. after a cache restart)
    cache.presence_refresh(&gw, &[(u, 1)], LONG).await.unwrap();
    assert_eq!(cache.presence(&[u]).await.unwrap()[&u], vec![ep(&gw, 1)]);
}
