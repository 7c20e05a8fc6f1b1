//! loadgen against its own broadcast server (`loadgen serve`): the accounting is honest
//! (a dropped message is loss when later ones from its sender arrived, late when none did,
//! a refused send is neither, and delivered + lost + late = expected), and `peak`, `calibrate` and `bench-recv` run and
//! write their reports. Nothing about speed is asserted.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const LOADGEN: &str = env!("CARGO_BIN_EXE_loadgen");

fn scenario() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../perf/scenarios/smoke.toml")
}

fn out_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "loadgen-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

struct Server(Child, String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(extra: &[&str]) -> Server {
    let mut child = Command::new(LOADGEN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().strip_prefix("listening ").unwrap().to_string();
    Server(child, addr)
}

fn run(target: &str, dir: &Path, stem: &str, sets: &[&str]) -> serde_json::Value {
    let mut cmd = Command::new(LOADGEN);
    cmd.args([
        "run",
        "--scenario",
        scenario(),
        "--target",
        target,
        "--peer",
    ])
    .args(["--out", dir.to_str().unwrap(), "--stem", stem]);
    for s in sets {
        cmd.args(["--set", s]);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{stem}.json"))).unwrap())
            .unwrap();
    v["runs"][0].clone()
}

fn n(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"))
}

#[test]
fn everything_sent_is_delivered_lost_or_late_and_each_is_told_apart() {
    let dir = out_dir("accounting");
    // ten connections: each sender sends several messages, so a drop has later ones
    let sets = [
        "connections=10",
        "rate_per_sec=50.0",
        "duration_secs=2.0",
        "drain_secs=1.0",
    ];
    let clean = serve(&[]);
    let r = run(&clean.1, &dir, "clean", &sets);
    assert!(n(&r, "sent") > 0);
    assert_eq!(n(&r, "delivered"), n(&r, "expected_deliveries"), "{r}");
    assert_eq!(
        (n(&r, "lost"), n(&r, "late"), n(&r, "duplicates")),
        (0, 0, 0)
    );

    let lossy = serve(&["--drop-every", "7"]);
    let r = run(&lossy.1, &dir, "lossy", &sets);
    assert!(
        n(&r, "lost") > 0,
        "a dropped message followed by others is loss: {r}"
    );
    assert_eq!(
        n(&r, "delivered") + n(&r, "lost") + n(&r, "late"),
        n(&r, "expected_deliveries"),
        "{r}"
    );
    assert_eq!(n(&r, "duplicates"), 0);

    // a server that refuses sends (an error frame naming the send, as ringchat does when
    // overloaded): refused, never lost, and not expected anywhere
    // (every 7th: prime to the number of senders, so the refusals fall on every sender
    // in turn instead of on all of one sender's messages)
    let refusing = serve(&["--refuse-every", "7"]);
    let r = run(&refusing.1, &dir, "refusing", &sets);
    assert!(n(&r, "refused") > 0, "{r}");
    assert!(
        n(&r, "refused_gaps") > 0,
        "refused sends followed by others leave gaps: {r}"
    );
    assert_eq!(
        (n(&r, "lost"), n(&r, "late"), n(&r, "duplicates")),
        (0, 0, 0),
        "a refusal is not a loss: {r}"
    );
    assert_eq!(n(&r, "delivered"), n(&r, "expected_deliveries"), "{r}");
    assert_eq!(
        n(&r, "expected_deliveries") + n(&r, "refused") * 9,
        n(&r, "sent") * 9,
        "ten in the room: each accepted send is expected at nine receivers: {r}"
    );

    // a server that holds every frame longer than the drain: late, never lost
    let slow = serve(&["--flush-us", "1500000"]);
    let r = run(
        &slow.1,
        &dir,
        "slow",
        &[sets[0], sets[1], "duration_secs=1.0", "drain_secs=0.2"],
    );
    assert!(n(&r, "late") > 0, "{r}");
    assert_eq!(n(&r, "lost"), 0, "in flight at the end is late: {r}");
    assert_eq!(
        n(&r, "delivered") + n(&r, "late"),
        n(&r, "expected_deliveries")
    );
}

#[test]
fn peak_and_calibrate_report_a_rate_and_who_limited_it() {
    let dir = out_dir("peak");
    let server = serve(&[]);
    let common = [
        "--set",
        "connections=20",
        "--start",
        "1000",
        "--max",
        "2000",
        "--step-secs",
        "1",
        "--drain-secs",
        "0.5",
        "--refine",
        "1",
        "--out",
        dir.to_str().unwrap(),
    ];
    let out = Command::new(LOADGEN)
        .args(["peak", "--scenario", scenario(), "--target", &server.1])
        .args(["--peer", "--label", "serve", "--stem", "peak"])
        .args(common)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("peak.json")).unwrap()).unwrap();
    assert_eq!(v["kind"], "peak");
    assert!(!v["steps"].as_array().unwrap().is_empty());
    assert!(v["limit"]["limited_by"].is_string());

    let out = Command::new(LOADGEN)
        .args([
            "calibrate",
            "--scenario",
            scenario(),
            "--server-cpu",
            "none",
        ])
        .args(["--stem", "calibrate"])
        .args(common)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("calibrate.json")).unwrap())
            .unwrap();
    assert!(v["ceiling"].is_object(), "{v}");
    assert!(v["ceiling"]["limited_by"].is_string());

    // a run records the ceiling it was given
    let out = Command::new(LOADGEN)
        .args([
            "run",
            "--scenario",
            scenario(),
            "--target",
            &server.1,
            "--peer",
        ])
        .args(["--set", "connections=20", "--set", "duration_secs=1.0"])
        .arg("--ceiling")
        .arg(dir.join("calibrate.json"))
        .args(["--out", dir.to_str().unwrap(), "--stem", "with-ceiling"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("with-ceiling.json")).unwrap())
            .unwrap();
    assert!(v["runs"][0]["loadgen"]["ceiling"]["limited_by"].is_string());
}

#[test]
fn the_receive_benchmark_parses_every_frame_it_is_fed() {
    let dir = out_dir("bench");
    let out = Command::new(LOADGEN)
        .args(["bench-recv", "--conns", "20", "--secs", "0.5"])
        .args(["--out", dir.to_str().unwrap(), "--stem", "bench"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("bench.json")).unwrap()).unwrap();
    assert!(v["frames"].as_u64().unwrap() > 0);
    assert_eq!(v["duplicates"], 0);
    assert_eq!(v["foreign_frames"], 0);
}
