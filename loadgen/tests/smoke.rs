//! The perf harness's smoke run, so it never rots: the real `loadgen` binary drives a few
//! hundred connections for a few seconds against the embedded system started in-process.
//! Nothing about speed is asserted; delivery is (no loss, no duplicates), and so is the
//! report's shape.

use std::collections::HashMap;
use std::process::Command;

use im_gateway::embedded::Embedded;
use ringchat_core::Config;

#[test]
fn smoke_run_delivers_everything_and_writes_its_report() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(ringchat_core::testkit::unique("smoke"));
    let db = format!("sqlite://{}/ringchat.db", dir.display());
    let env: HashMap<String, String> = [
        (
            "RINGCHAT_AUTH__JWT_SECRET",
            "smoke-secret-smoke-secret-smoke",
        ),
        ("RINGCHAT_AUTH__ARGON2_MEMORY_KIB", "64"),
        ("RINGCHAT_AUTH__ARGON2_ITERATIONS", "1"),
        ("RINGCHAT_GATEWAY__LISTEN", "127.0.0.1:0"),
        ("RINGCHAT_GATEWAY__ADMIN_LISTEN", "127.0.0.1:0"),
        ("RINGCHAT_GATEWAY__WORKERS", "2"),
        ("RINGCHAT_GATEWAY__HTTP_REQUESTS_PER_SEC", "100000"),
        ("RINGCHAT_GATEWAY__HTTP_REQUESTS_BURST", "100000"),
        ("RINGCHAT_GATEWAY__ACCOUNTS_PER_MINUTE", "100000"),
        ("RINGCHAT_GATEWAY__ACCOUNTS_BURST", "100000"),
        ("RINGCHAT_GATEWAY__MAX_CONNECTIONS_PER_IP", "100000"),
        ("RINGCHAT_STORE__URL", db.as_str()),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let config = Config::from_toml_and_env("", &env).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let system = rt.block_on(Embedded::start(&config)).unwrap();
    let target = system.gateway.addr.to_string();
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/../perf/scenarios/smoke.toml");

    let accounts = dir.join("accounts.json");
    let accounts = accounts.to_str().unwrap();
    for (name, extra) in [
        ("world", vec![]),
        // two worker processes, merged; reusing the accounts the first run saved
        ("world-2proc", vec!["processes=2"]),
        (
            "group",
            vec![
                "kind=\"group\"",
                "groups=10",
                "group_size=10",
                "rate_per_sec=5.0",
            ],
        ),
        (
            "single",
            vec!["kind=\"single\"", "connections=60", "rate_per_sec=2.0"],
        ),
    ] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_loadgen"));
        cmd.args(["run", "--scenario", scenario, "--target", &target, "--out"])
            .arg(&dir)
            .args([
                "--stem",
                name,
                "--set",
                "duration_secs=2.0",
                "--set",
                "drain_secs=2.0",
            ]);
        for e in &extra {
            cmd.args(["--set", e]);
        }
        if name.starts_with("world") {
            cmd.args(["--accounts", accounts]);
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name}: {}\n{}",
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap(),
        )
        .unwrap();
        let run = &report["runs"][0];
        assert!(run["sent"].as_u64().unwrap() > 0, "{name}: nothing sent");
        assert_eq!(run["lost"], 0, "{name}: {stdout}");
        assert_eq!(run["duplicates"], 0, "{name}: {stdout}");
        assert_eq!(run["delivered"], run["expected_deliveries"], "{name}");
        assert!(run["delivery_latency_ms"]["p99"].is_number(), "{name}");
        assert!(dir.join(format!("{name}-percentiles.svg")).exists());
        assert!(dir.join(format!("{name}-timeseries.svg")).exists());
        assert!(
            stdout.contains("delivery ms"),
            "{name}: the table is printed"
        );
    }

    // the second client, on the world run's accounts (`loadgen plan` with --accounts reuses
    // them: nothing is provisioned anew)
    let plan = dir.join("plan.json");
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["plan", "--scenario", scenario, "--target", &target])
        .args(["--accounts", accounts, "--out"])
        .arg(&plan)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "loadgen plan: {stderr}");
    assert!(stderr.contains("reusing accounts"), "{stderr}");
    let report = dir.join("crosscheck.json");
    let out = Command::new(env!("CARGO_BIN_EXE_crosscheck"))
        .arg("--plan")
        .arg(&plan)
        .args([
            "--deliveries-per-sec",
            "2000",
            "--secs",
            "2",
            "--drain-secs",
            "2",
        ])
        .args(["--label", "ringchat", "--server-pid"])
        .arg(std::process::id().to_string())
        .arg("--out")
        .arg(&report)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "crosscheck: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert!(r["messages_sent"].as_u64().unwrap() > 0, "{r}");
    assert!(r["expected_deliveries"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["received"], r["expected_deliveries"], "{r}");
    assert_eq!(r["duplicates"], 0, "{r}");
    assert_eq!(r["connections"]["failed"], 0, "{r}");
    assert!(r["latency_ms"]["p99"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["server_cpu_us_per_delivery"].is_number(), "{r}");
    assert!(
        stdout.contains("crosscheck ringchat: offered 2000/s"),
        "{stdout}"
    );
    rt.block_on(system.shutdown());
}
