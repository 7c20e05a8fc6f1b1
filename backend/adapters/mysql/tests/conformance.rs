//! The store conformance suite against a real MySQL/MariaDB, plus what only a shared
//! database can show: several instances appending at once, replicas, concurrent start-up.
//!
//! The server comes from `RINGCHAT_TEST_MYSQL_URL` (default `mysql://root@127.0.0.1:3306`,
//! which `deploy/engines.sh up` provides). Each test works in its own database
//! `ringchat_t_<unix seconds>_<random>`; the extra tests drop theirs at the end, and
//! databases of this kind older than an hour (left by the suite, or by a failed run) are
//! dropped when the next run starts. An unreachable server fails the tests: they never skip.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringchat_core::model::WORLD_ID;
use ringchat_core::ports::Store;
use ringchat_core::testkit::store::{new_user, text};
use ringchat_core::testkit::unique;
use ringchat_mysql::{MysqlOptions, MysqlStore};
use ringchat_proto as pb;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{Connection, Executor};

const DEFAULT_URL: &str = "mysql://root@127.0.0.1:3306";
const PREFIX: &str = "ringchat_t_";
/// Test databases older than this are leftovers.
const STALE_SECS: u64 = 3600;

fn server_url() -> String {
    std::env::var("RINGCHAT_TEST_MYSQL_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// The server URL with `database` as its path (query parameters kept).
fn url_with_database(database: &str) -> String {
    let server = server_url();
    let (base, query) = match server.split_once('?') {
        Some((b, q)) => (b.to_owned(), format!("?{q}")),
        None => (server.clone(), String::new()),
    };
    // drop a database the variable may name
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[scheme_end..].find('/') {
        Some(i) => base[..scheme_end + i].to_owned(),
        None => base,
    };
    format!("{base}/{database}{query}")
}

/// A connection to the server (no database), or a failed test saying how to get one.
async fn admin() -> MySqlConnection {
    let url = url_with_database("information_schema");
    let opts: MySqlConnectOptions = url
        .parse()
        .expect("RINGCHAT_TEST_MYSQL_URL is not a mysql:// URL");
    let connect = tokio::time::timeout(
        Duration::from_secs(10),
        MySqlConnection::connect_with(&opts),
    );
    match connect.await {
        Ok(Ok(conn)) => conn,
        outcome => {
            let why = match outcome {
                Ok(Err(e)) => e.to_string(),
                _ => "timed out after 10 s".to_owned(),
            };
            panic!(
                "MySQL/MariaDB is not reachable at {}:{} ({why}).\n\
                 Start it with `deploy/engines.sh up` (MariaDB on 127.0.0.1:3306, root without a \
                 password), or point RINGCHAT_TEST_MYSQL_URL at a server \
                 (mysql://user:password@host:port) where the user may create databases.",
                opts.get_host(),
                opts.get_port()
            )
        }
    }
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A new database name; the first call of the process also sweeps stale test databases.
async fn fresh_database() -> String {
    static SWEPT: AtomicBool = AtomicBool::new(false);
    let mut conn = admin().await;
    if !SWEPT.swap(true, Ordering::SeqCst) {
        let names: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'ringchat\\_t\\_%'",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        for name in names {
            let name = String::from_utf8(name).unwrap();
            let born = name[PREFIX.len()..]
                .split('_')
                .next()
                .and_then(|s| s.parse::<u64>().ok());
            if born.is_some_and(|b| b + STALE_SECS < unix_secs()) {
                conn.execute(&*format!("DROP DATABASE IF EXISTS `{name}`"))
                    .await
                    .unwrap();
            }
        }
    }
    conn.close().await.unwrap();
    let random = unique("x").replace("x-", "");
    format!("{PREFIX}{}_{random}", unix_secs())
}

async fn drop_database(name: &str) {
    let mut conn = admin().await;
    conn.execute(&*format!("DROP DATABASE IF EXISTS `{name}`"))
        .await
        .unwrap();
    conn.close().await.unwrap();
}

fn options(database: &str, worker_id: u16) -> MysqlOptions {
    MysqlOptions {
        url: url_with_database(database),
        read_url: None,
        max_connections: 8,
        worker_id,
    }
}

mod suite {
    use super::*;
    // each case gets its own database, swept by a later run
    ringchat_core::store_conformance!(async {
        let db = fresh_database().await;
        Arc::new(MysqlStore::connect(&options(&db, 1)).await.unwrap()) as Arc<dyn Store>
    });
}

/// Every message of a conversation, oldest first, through the history API.
async fn all_messages(store: &dyn Store, conversation_id: &str) -> Vec<pb::ChatMessage> {
    let mut out = Vec::new();
    loop {
        let page = store
            .messages(pb::HistoryRequest {
                conversation_id: conversation_id.into(),
                size: 200,
                after_seq: Some(out.last().map_or(0, |m: &pb::ChatMessage| m.seq_id)),
                ..Default::default()
            })
            .await
            .unwrap();
        let more = page.pagination.unwrap().has_more;
        out.extend(page.messages);
        if !more {
            return out;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_appending_at_once_keep_seqs_gapless_and_ids_unique() {
    let db = fresh_database().await;
    let a = Arc::new(MysqlStore::connect(&options(&db, 1)).await.unwrap());
    let b = Arc::new(MysqlStore::connect(&options(&db, 2)).await.unwrap());
    let mut senders = Vec::new();
    for i in 0..8 {
        senders.push(new_user(a.as_ref(), &format!("w{i}")).await);
    }
    let group = a
        .create_group(pb::CreateGroupRequest {
            owner_id: senders[0].user_id,
            group_name: "busy".into(),
            avatar: String::new(),
            member_ids: senders.iter().map(|u| u.user_id).collect(),
        })
        .await
        .unwrap();
    let single = b
        .single_conversation(senders[0].user_id, senders[1].user_id)
        .await
        .unwrap();
    let conversations = [
        group.conversation_id.clone(),
        single.conversation_id.clone(),
        WORLD_ID.to_owned(),
    ];

    const PER_TASK: usize = 200;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (t, sender) in senders.iter().cloned().enumerate() {
        let store: Arc<dyn Store> = if t % 2 == 0 { a.clone() } else { b.clone() };
        let conversations = conversations.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            let mut i = 0;
            while i < PER_TASK {
                // batches of 1-4 messages spread over the conversations, so batches lock
                // several counters at once
                let n = (i % 4 + 1).min(PER_TASK - i);
                let batch: Vec<_> = (i..i + n)
                    .map(|k| {
                        let conv = &conversations[(t + k) % conversations.len()];
                        text(conv, &sender, &format!("{t}/{k}"), &format!("{t}-{k}"))
                    })
                    .collect();
                for o in store.append(batch).await.unwrap() {
                    assert!(!o.duplicate && o.error_code.is_empty(), "{o:?}");
                    let m = o.message.unwrap();
                    got.push((m.conversation_id, m.seq_id, m.message_id));
                }
                i += n;
            }
            got
        }));
    }
    let mut by_conversation: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut ids = HashSet::new();
    for t in tasks {
        for (conv, seq, id) in t.await.unwrap() {
            assert!(ids.insert(id), "message id {id} minted twice");
            by_conversation.entry(conv).or_default().push(seq);
        }
    }
    let elapsed = started.elapsed();
    assert_eq!(ids.len(), 8 * PER_TASK);
    for (conv, mut seqs) in by_conversation {
        seqs.sort_unstable();
        let n = seqs.len() as i64;
        assert_eq!(
            seqs,
            (1..=n).collect::<Vec<_>>(),
            "{conv}: gap or duplicate seq"
        );
        assert_eq!(a.conversation(&conv).await.unwrap().last_seq, n);
        let stored = all_messages(b.as_ref(), &conv).await;
        assert_eq!(
            stored.iter().map(|m| m.seq_id).collect::<Vec<_>>(),
            (1..=n).collect::<Vec<_>>()
        );
    }
    // both workers minted ids
    let workers: HashSet<i64> = ids.iter().map(|id| (id >> 12) & 0x3ff).collect();
    assert_eq!(workers, HashSet::from([1, 2]));
    eprintln!(
        "{} messages through two instances in {elapsed:?}",
        8 * PER_TASK
    );
    a.close().await;
    b.close().await;
    drop_database(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resend_through_another_instance_is_stored_once() {
    let db = fresh_database().await;
    let a = Arc::new(MysqlStore::connect(&options(&db, 1)).await.unwrap());
    let b = Arc::new(MysqlStore::connect(&options(&db, 2)).await.unwrap());
    let sender = new_user(a.as_ref(), "r").await;
    let peer = new_user(a.as_ref(), "p").await;
    let other = new_user(a.as_ref(), "o").await;
    let one = a
        .single_conversation(sender.user_id, peer.user_id)
        .await
        .unwrap()
        .conversation_id;
    let two = a
        .single_conversation(sender.user_id, other.user_id)
        .await
        .unwrap()
        .conversation_id;
    const ROUNDS: usize = 25;
    for round in 0..ROUNDS {
        let temp = unique("dup");
        // the same conversation both times, or (every other round) two conversations: the
        // key is the sender's, whatever the conversation
        let (conv_a, conv_b) = if round % 2 == 0 {
            (one.clone(), one.clone())
        } else {
            (one.clone(), two.clone())
        };
        let (ra, rb) = tokio::join!(
            {
                let (a, m) = (a.clone(), text(&conv_a, &sender, "hi", &temp));
                tokio::spawn(async move { a.append(vec![m]).await })
            },
            {
                let (b, m) = (b.clone(), text(&conv_b, &sender, "hi", &temp));
                tokio::spawn(async move { b.append(vec![m]).await })
            },
        );
        let (oa, ob) = (
            ra.unwrap().unwrap().pop().unwrap(),
            rb.unwrap().unwrap().pop().unwrap(),
        );
        assert_eq!(
            [oa.duplicate, ob.duplicate].iter().filter(|d| **d).count(),
            1,
            "round {round}: exactly one is the original: {oa:?} {ob:?}"
        );
        assert_eq!(oa.message, ob.message, "round {round}");
    }
    let stored =
        all_messages(a.as_ref(), &one).await.len() + all_messages(a.as_ref(), &two).await.len();
    assert_eq!(stored, ROUNDS);
    a.close().await;
    b.close().await;
    drop_database(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_opening_one_chat_at_once_agree_on_it() {
    let db = fresh_database().await;
    let a = Arc::new(MysqlStore::connect(&options(&db, 1)).await.unwrap());
    let b = Arc::new(MysqlStore::connect(&options(&db, 2)).await.unwrap());
    for round in 0..20 {
        let x = new_user(a.as_ref(), "x").await;
        let y = new_user(a.as_ref(), "y").await;
        // both ends at once, one through each instance: befriending, or just opening
        let (ra, rb) = if round % 2 == 0 {
            let (a, b) = (a.clone(), b.clone());
            let (xa, ya) = (x.user_id, y.user_id);
            tokio::join!(
                tokio::spawn(async move { a.add_friend(xa, ya).await }),
                tokio::spawn(async move { b.add_friend(ya, xa).await }),
            )
        } else {
            let (a, b) = (a.clone(), b.clone());
            let (xa, ya) = (x.user_id, y.user_id);
            tokio::join!(
                tokio::spawn(async move { a.single_conversation(xa, ya).await }),
                tokio::spawn(async move { b.single_conversation(ya, xa).await }),
            )
        };
        let (ma, mb) = (ra.unwrap().unwrap(), rb.unwrap().unwrap());
        assert_eq!(ma.conversation_id, mb.conversation_id, "round {round}");
        assert_eq!(ma.member_count, 2);
        let members = a.member_ids(&ma.conversation_id, 0, 10).await.unwrap();
        assert_eq!(members.len(), 2, "round {round}: {members:?}");
    }
    a.close().await;
    b.close().await;
    drop_database(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn read_pointers_moved_by_two_instances_never_go_back() {
    let db = fresh_database().await;
    let a = Arc::new(MysqlStore::connect(&options(&db, 1)).await.unwrap());
    let b = Arc::new(MysqlStore::connect(&options(&db, 2)).await.unwrap());
    let writer = new_user(a.as_ref(), "pw").await;
    let reader = new_user(a.as_ref(), "pr").await;
    let conv = a
        .single_conversation(writer.user_id, reader.user_id)
        .await
        .unwrap()
        .conversation_id;
    const N: i64 = 60;
    a.append(
        (0..N)
            .map(|i| text(&conv, &writer, &i.to_string(), ""))
            .collect(),
    )
    .await
    .unwrap();
    // the reader's devices report reads through both instances, racing
    let mut tasks = Vec::new();
    for k in 0..2 {
        let store: Arc<dyn Store> = if k == 0 { a.clone() } else { b.clone() };
        let conv = conv.clone();
        let reader = reader.user_id;
        tasks.push(tokio::spawn(async move {
            let mut seq = 1 + k;
            while seq <= N {
                let p = store.mark_read(reader, &conv, seq).await.unwrap();
                assert!(
                    p.read_seq >= seq,
                    "asked for {seq}, the pointer says {}",
                    p.read_seq
                );
                seq += 2;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let p = b.mark_read(reader.user_id, &conv, 1).await.unwrap();
    assert_eq!((p.read_seq, p.last_seq), (N, N));
    a.close().await;
    b.close().await;
    drop_database(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_use_the_replica_and_fall_back_to_the_primary() {
    let db = fresh_database().await;
    // the same server as its own replica
    let mut opts = options(&db, 1);
    opts.read_url = Some(url_with_database(&db));
    let store = MysqlStore::connect(&opts).await.unwrap();
    assert!(store.has_read_replica());
    let a = new_user(&store, "ra").await;
    let b = new_user(&store, "rb").await;
    let conv = store.add_friend(a.user_id, b.user_id).await.unwrap();
    store
        .append(vec![text(&conv.conversation_id, &a, "via primary", "")])
        .await
        .unwrap();
    assert_eq!(store.friends(a.user_id).await.unwrap(), vec![b.clone()]);
    assert_eq!(all_messages(&store, &conv.conversation_id).await.len(), 1);
    assert_eq!(store.conversations(b.user_id).await.unwrap().len(), 2);
    store.close().await;

    // a replica URL without a database reads the primary's
    opts.read_url = Some(url_with_database("").trim_end_matches('/').to_owned());
    let store = MysqlStore::connect(&opts).await.unwrap();
    assert!(store.has_read_replica());
    assert_eq!(store.users(&[a.user_id]).await.unwrap(), vec![a.clone()]);
    store.close().await;

    // a replica that does not answer: a port nobody listens on
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    opts.read_url = Some(format!("mysql://root@127.0.0.1:{closed}/{db}"));
    let started = Instant::now();
    let store = MysqlStore::connect(&opts).await.unwrap();
    assert!(!store.has_read_replica());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(store.friends(b.user_id).await.unwrap(), vec![a.clone()]);
    assert_eq!(all_messages(&store, &conv.conversation_id).await.len(), 1);
    store.close().await;
    drop_database(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrations_run_once_however_many_instances_start() {
    let db = fresh_database().await;
    // four instances start at once on a database that does not exist yet
    let starts = (1..=4).map(|w| {
        let opts = options(&db, w);
        tokio::spawn(async move { MysqlStore::connect(&opts).await })
    });
    let mut stores = Vec::new();
    for s in starts {
        stores.push(s.await.unwrap().expect("concurrent start"));
    }
    let u = new_user(&stores[0], "m").await;
    assert_eq!(stores[3].user(u.user_id).await.unwrap(), u);
    for s in &stores {
        s.close().await;
    }
    // and again on the migrated database: nothing to do, the data stays
    let again = MysqlStore::connect(&options(&db, 5)).await.unwrap();
    assert_eq!(again.user(u.user_id).await.unwrap(), u);
    again.close().await;

    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "sql")
        })
        .count();
    let mut conn = admin().await;
    let versions: Vec<i64> = sqlx::query_scalar(&format!(
        "SELECT version FROM `{db}`.schema_migrations ORDER BY version"
    ))
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(versions, (1..=files as i64).collect::<Vec<_>>());
    let world_rows: i64 = sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM `{db}`.conversations WHERE id = 'world'"
    ))
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(world_rows, 1);
    conn.close().await.unwrap();
    drop_database(&db).await;
}

/// `ssl-mode` from the URL is honoured. The shared test server may run without TLS: then
/// the refusal must be the server check's, not that of a build without TLS support. (With
/// a TLS server, `required`, `verify_ca` and `verify_identity` with `ssl-ca=` have been
/// checked by hand against MariaDB 10.11: TLS 1.3, certificate and name verified.)
#[tokio::test]
async fn ssl_mode_required_is_honoured() {
    let db = fresh_database().await;
    let url = url_with_database(&db);
    let sep = if url.contains('?') { '&' } else { '?' };
    match MysqlStore::connect(&MysqlOptions::new(format!("{url}{sep}ssl-mode=required"))).await {
        Ok(store) => store.close().await,
        Err(e) => assert!(
            e.message.contains("server does not support TLS"),
            "ssl-mode=required: {e}"
        ),
    }
    drop_database(&db).await;
}

#[tokio::test]
async fn bad_options_are_refused_before_connecting() {
    let mut opts = options("ringchat_t_unused", 1);
    opts.worker_id = 1024;
    let e = MysqlStore::connect(&opts).await.err().unwrap();
    assert_eq!(e.code, ringchat_core::ErrorCode::InvalidArgument);
    let e = MysqlStore::connect(&MysqlOptions::new(url_with_database("")))
        .await
        .err()
        .unwrap();
    assert_eq!(e.code, ringchat_core::ErrorCode::InvalidArgument, "{e}");
    let e = MysqlStore::connect(&MysqlOptions::new(url_with_database("bad`name")))
        .await
        .err()
        .unwrap();
    assert_eq!(e.code, ringchat_core::ErrorCode::InvalidArgument, "{e}");
}

#[tokio::test]
async fn an_unreachable_primary_is_unavailable() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let e = MysqlStore::connect(&MysqlOptions::new(format!(
        "mysql://root@127.0.0.1:{closed}/ringchat_t_unused"
    )))
    .await
    .err()
    .unwrap();
    assert_eq!(e.code, ringchat_core::ErrorCode::Unavailable, "{e}");
}
