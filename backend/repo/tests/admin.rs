//! The im-repo binary's admin port: health, readiness over its store and discovery, and
//! the metrics of its gRPC calls.

use std::time::Duration;

use im_repo::{GrpcStore, Store};
use ringchat_core::testkit::unique;
use ringchat_core::ErrorCode;
use ringchat_observe::testkit::Spawned;

fn im_repo() -> Spawned {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(unique("repo-admin"));
    let url = format!("sqlite://{}/ringchat.db", dir.display());
    Spawned::start(
        env!("CARGO_BIN_EXE_im-repo"),
        &[
            ("RINGCHAT_STORE__URL", url.as_str()),
            ("RINGCHAT_REPO__LISTEN", "127.0.0.1:0"),
            ("RINGCHAT_REPO__ADMIN_LISTEN", "127.0.0.1:0"),
            ("RINGCHAT_NODE__ID", "repo-test"),
        ],
        "im-repo serving addr=",
    )
}

#[test]
fn im_repo_answers_health_readiness_and_metrics_on_its_admin_port() {
    let repo = im_repo();
    assert_eq!(repo.get("/healthz").status, 200);
    let ready = repo.get("/readyz");
    assert_eq!(ready.status, 200, "{}", ready.body);
    let body = ready.json();
    assert_eq!(body["status"], "ready", "{body}");
    assert_eq!(body["checks"]["store"], "ok", "{body}");
    assert_eq!(body["checks"]["discovery"], "ok", "{body}");

    // one call that succeeds, one that fails with a domain error
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = GrpcStore::connect_lazy(&format!("http://{}", repo.ready)).unwrap();
        store.users(&[1, 2]).await.unwrap();
        let e = store.user(424242).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::UserNotFound);
    });

    let m = repo.get("/metrics");
    assert_eq!(m.status, 200);
    assert!(
        m.header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
        "{}",
        m.head
    );
    let service = "{service=\"ringchat.v1.Repo\",";
    for (prefix, at_least) in [
        (
            format!("ringchat_grpc_server_requests_total{service}method=\"GetUsers\",code=\"OK\"}}"),
            1.0,
        ),
        (
            format!("ringchat_grpc_server_errors_total{service}method=\"GetUser\",code=\"USER_NOT_FOUND\"}}"),
            1.0,
        ),
        (
            format!("ringchat_grpc_server_request_duration_seconds_count{service}method=\"GetUsers\"}}"),
            1.0,
        ),
        ("ringchat_build_info{".to_string(), 1.0),
        ("process_resident_memory_bytes".to_string(), 1.0),
        ("process_open_fds".to_string(), 1.0),
        ("process_threads".to_string(), 1.0),
        ("process_cpu_seconds_total".to_string(), 0.0),
    ] {
        let v = m.sample(&prefix);
        assert!(
            v.is_some_and(|v| v >= at_least),
            "{prefix}: {v:?}\n{}",
            m.body
        );
    }
    assert!(
        m.body
            .contains("service=\"im-repo\",node_id=\"repo-test\"} 1"),
        "{}",
        m.body
    );
    // the store answered readiness checks too, and the admin port still answers
    repo.wait_for("/readyz", Duration::from_secs(5), |a| a.status == 200);
}
