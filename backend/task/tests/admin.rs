//! The im-task binary's admin port: readiness over im-repo, the bus and discovery, and
//! the metrics of its fan-outs, its consumer lag and its cache.

use std::sync::Arc;
use std::time::Duration;

use ringchat_core::shutdown::Shutdown;
use ringchat_core::testkit::unique;
use ringchat_embedded::SqliteStore;
use ringchat_observe::testkit::Spawned;

#[test]
fn im_task_answers_health_readiness_and_metrics_on_its_admin_port() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(unique("task-admin"));
    let url = format!("sqlite://{}/ringchat.db", dir.display());
    let (_stop, signal) = Shutdown::new();
    let repo = rt.block_on(async {
        let store = Arc::new(SqliteStore::connect(&url, 2, 1).await.unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(im_repo::serve(store, listener, signal.into_future()));
        format!("http://{addr}")
    });
    let task = Spawned::start(
        env!("CARGO_BIN_EXE_im-task"),
        &[
            ("RINGCHAT_TASK__REPO_URL", repo.as_str()),
            ("RINGCHAT_TASK__ADMIN_LISTEN", "127.0.0.1:0"),
            ("RINGCHAT_NODE__ID", "task-test"),
        ],
        "im-task running",
    );
    assert_eq!(task.get("/healthz").status, 200);
    let ready = task.wait_for("/readyz", Duration::from_secs(20), |a| a.status == 200);
    let body = ready.json();
    assert_eq!(body["status"], "ready", "{body}");
    for check in ["store", "bus", "discovery", "cache"] {
        assert_eq!(body["checks"][check], "ok", "{check}: {body}");
    }
    // the consumer's group shows once it has joined
    let m = task.wait_for("/metrics", Duration::from_secs(20), |a| {
        a.sample("ringchat_bus_consumer_lag{topic=\"im-task-topic\",group=\"im-task\"")
            .is_some()
    });
    for name in [
        "ringchat_task_fanouts_total",
        "ringchat_task_deliveries_total",
        "ringchat_task_offline_pushes_total",
        "ringchat_task_offline_push_failures_total",
        "ringchat_cache_degraded",
        "ringchat_cache_failures_total",
        "ringchat_cache_recoveries_total",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_threads",
    ] {
        assert!(m.sample(name).is_some(), "{name} missing:\n{}", m.body);
    }
    assert!(
        m.body
            .contains("service=\"im-task\",node_id=\"task-test\"} 1"),
        "{}",
        m.body
    );
}
