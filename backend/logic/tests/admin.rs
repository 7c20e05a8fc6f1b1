//! The im-logic binary's admin port: readiness over im-repo, the bus and discovery, and
//! the metrics of its gRPC calls, its upstream consumers, its bus and its cache.

use std::sync::Arc;
use std::time::Duration;

use im_logic::{GrpcLogic, LogicApi};
use ringchat_core::shutdown::Shutdown;
use ringchat_core::testkit::unique;
use ringchat_core::ErrorCode;
use ringchat_embedded::SqliteStore;
use ringchat_observe::testkit::Spawned;
use ringchat_proto as pb;

const SECRET: &str = "admin-test-secret-admin-test-secret";

fn im_logic(repo_url: &str) -> Spawned {
    Spawned::start(
        env!("CARGO_BIN_EXE_im-logic"),
        &[
            ("RINGCHAT_AUTH__JWT_SECRET", SECRET),
            ("RINGCHAT_LOGIC__LISTEN", "127.0.0.1:0"),
            ("RINGCHAT_LOGIC__ADMIN_LISTEN", "127.0.0.1:0"),
            ("RINGCHAT_LOGIC__REPO_URL", repo_url),
            ("RINGCHAT_NODE__ID", "logic-test"),
        ],
        "im-logic serving addr=",
    )
}

/// An im-repo served in-process on `rt`, on a fresh database.
fn repo(rt: &tokio::runtime::Runtime) -> (String, Shutdown) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(unique("logic-admin"));
    let url = format!("sqlite://{}/ringchat.db", dir.display());
    let (stop, signal) = Shutdown::new();
    let addr = rt.block_on(async {
        let store = Arc::new(SqliteStore::connect(&url, 2, 1).await.unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(im_repo::serve(store, listener, signal.into_future()));
        addr
    });
    (format!("http://{addr}"), stop)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn im_logic_answers_health_readiness_and_metrics_on_its_admin_port() {
    let rt = runtime();
    let (repo_url, _repo) = repo(&rt);
    let logic = im_logic(&repo_url);
    assert_eq!(logic.get("/healthz").status, 200);
    let ready = logic.wait_for("/readyz", Duration::from_secs(20), |a| a.status == 200);
    let body = ready.json();
    assert_eq!(body["status"], "ready", "{body}");
    for check in ["store", "bus", "discovery", "cache"] {
        assert_eq!(body["checks"][check], "ok", "{check}: {body}");
    }

    rt.block_on(async {
        let api = GrpcLogic::connect_lazy(&format!("http://{}", logic.ready)).unwrap();
        let e = api
            .authenticate(pb::TokenRequest {
                token: "not-a-token".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::AuthFailed);
    });

    let m = logic.get("/metrics");
    assert_eq!(m.status, 200);
    let service = "{service=\"ringchat.v1.Logic\",method=\"Authenticate\"";
    for (prefix, at_least) in [
        (
            format!("ringchat_grpc_server_requests_total{service},code=\"UNAUTHENTICATED\"}}"),
            1.0,
        ),
        (
            format!("ringchat_grpc_server_errors_total{service},code=\"AUTH_FAILED\"}}"),
            1.0,
        ),
        (
            format!("ringchat_grpc_server_request_duration_seconds_bucket{service},le=\"+Inf\"}}"),
            1.0,
        ),
        ("ringchat_logic_upstream_batches_total".into(), 0.0),
        ("ringchat_logic_upstream_messages_total".into(), 0.0),
        ("ringchat_logic_upstream_retries_total".into(), 0.0),
        ("ringchat_logic_upstream_failed_total".into(), 0.0),
        ("ringchat_cache_degraded".into(), 0.0),
        ("ringchat_cache_failures_total".into(), 0.0),
        ("ringchat_bus_lag_measurement_failures_total".into(), 0.0),
        // the upstream consumers' group, one gauge per partition of the in-process bus
        (
            "ringchat_bus_consumer_lag{topic=\"im-upstream-topic\",group=\"im-logic\",partition=\"0\"}"
                .into(),
            0.0,
        ),
        ("process_resident_memory_bytes".into(), 1.0),
        ("ringchat_build_info{".into(), 1.0),
    ] {
        let v = m.sample(&prefix);
        assert!(
            v.is_some_and(|v| v >= at_least),
            "{prefix}: {v:?}\n{}",
            m.body
        );
    }
}

#[test]
fn im_logic_is_not_ready_while_im_repo_does_not_answer() {
    let repo_rt = runtime();
    let (repo_url, _repo) = repo(&repo_rt);
    let logic = im_logic(&repo_url);
    logic.wait_for("/readyz", Duration::from_secs(20), |a| a.status == 200);
    // im-repo goes away: its runtime, listener and connections with it
    repo_rt.shutdown_timeout(Duration::from_secs(5));
    let r = logic.wait_for("/readyz", Duration::from_secs(20), |a| a.status == 503);
    let body = r.json();
    assert_eq!(body["status"], "not ready", "{body}");
    assert_ne!(body["checks"]["store"], "ok", "{body}");
    assert_eq!(body["checks"]["bus"], "ok", "{body}");
    assert_eq!(logic.get("/healthz").status, 200, "alive all the same");
}
