//! loadgen: measures what ringchat (or a peer server speaking the same protocol slice)
//! delivers, the way PERF.md asks: open-loop senders on a fixed schedule, delivery latency
//! against the *intended* send time (coordinated omission corrected), fan-out completion
//! per message, loss and duplicates counted, and its own CPU reported so a
//! load-generator-bound run says so.
//!
//! ```text
//! loadgen run --scenario perf/scenarios/world.toml --target 127.0.0.1:8080 [--set connections=500]
//!             [--label ringchat] [--peer] [--server-pid PID] [--out perf/results] [--accounts FILE]
//! loadgen peak --scenario ... --target ... [--bound-ms 50] [--start 100000] [--max 20000000]
//! loadgen calibrate [--scenario perf/scenarios/world.toml] [--server-cpu 0]
//! loadgen serve --listen 127.0.0.1:18095        (the minimal broadcast server calibrate uses)
//! loadgen bench-recv [--conns 2000] [--frames-per-write 64] [--secs 5]
//! loadgen compare --out DIR --stem NAME a.json b.json ...
//! loadgen plan --scenario ... --target ... --out PLAN.json   (accounts only: for crosscheck)
//! ```
#![deny(unsafe_code)]
#![recursion_limit = "256"]

mod bench;
mod clock;
mod peak;
mod plan;
mod recv;
mod report;
mod run;
mod scenario;
mod serve;
mod stats;

use std::io::{BufRead, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use anyhow::Context;

const HELP: &str = "loadgen: ringchat's load generator

USAGE:
    loadgen run --scenario FILE --target HOST:PORT [options]
    loadgen peak --scenario FILE --target HOST:PORT [options] [peak options]
    loadgen calibrate [--scenario FILE] [--server-cpu N] [--flush-us N] [peak options] [--out DIR]
    loadgen serve [--listen HOST:PORT] [--flush-us N] [--drop-every N] [--refuse-every N]
    loadgen bench-recv [--conns N] [--frames-per-write N] [--secs S] [--payload N]
                       [--feeder-cpu N] [--recv-cpu N] [--spin-us US] [--out DIR --stem NAME]
    loadgen compare --out DIR --stem NAME SUMMARY.json...
    loadgen plan --scenario FILE --target HOST:PORT [--peer] [--set K=V] --out PLAN.json
                         provision the accounts and rooms only, for a second client
                         (perf/crosscheck) to use

RUN OPTIONS:
    --scenario FILE      scenario TOML (see perf/scenarios/)
    --target HOST:PORT   the server's HTTP/WebSocket address; several, comma-separated, spread
                         the connections over them round-robin (the distributed profile's
                         gateways); accounts are provisioned through the first
    --set KEY=VALUE      override a scenario field (repeatable), e.g. --set connections=500
    --label NAME         name of the server in reports (default: ringchat, or peer)
    --peer               the target is a peer server: no accounts, tokens u<i>, join frames
    --server-pid PID     read the server's CPU time and RSS from /proc before and after
    --accounts FILE      reuse the accounts (tokens, rooms) of an earlier run with the same shape
    --ceiling FILE       a `loadgen calibrate` result: its ceiling is recorded in the report
    --out DIR            write <DIR>/<stem>.json and SVG plots (default: no files)
    --stem NAME          file name stem (default: <label>-<scenario>)

PEAK OPTIONS (peak, calibrate):
    --bound-ms MS        a step fails when its delivery p99 passes this (default 50)
    --start N            offered deliveries/s of the first step (default 100000)
    --max N              stop raising there (default 20000000)
    --factor F           raise by this factor per passing step (default 1.5)
    --refine N           bisection steps after the first failure (default 3)
    --step-secs S        seconds of sending per step (default 5)
    --drain-secs S       seconds of drain per step (default 2)

A step passes when every expected delivery arrived (none lost, none late), nothing was
duplicated, no connection failed and p99 <= the bound. `calibrate` runs `peak` against
`loadgen serve` (started pinned to --server-cpu, default 0, flushing every --flush-us,
default 10000, so it writes many frames per write and is not the limit) with a p99 bound
of 250 ms unless --bound-ms says otherwise, and reports the highest rate loadgen absorbed:
its ceiling on this machine.

Progress goes to stderr once a second; the report table to stdout.
";

struct Args {
    cmd: String,
    kv: Vec<(String, String)>,
    flags: Vec<String>,
    rest: Vec<String>,
}

fn parse_args() -> Args {
    let mut it = std::env::args().skip(1);
    let cmd = it.next().unwrap_or_else(|| "--help".into());
    let (mut kv, mut flags, mut rest) = (Vec::new(), Vec::new(), Vec::new());
    let takes_value = [
        "--scenario",
        "--target",
        "--set",
        "--label",
        "--server-pid",
        "--accounts",
        "--out",
        "--stem",
        "--plan",
        "--part",
        "--ceiling",
        "--bound-ms",
        "--start",
        "--max",
        "--factor",
        "--refine",
        "--step-secs",
        "--drain-secs",
        "--server-cpu",
        "--flush-us",
        "--listen",
        "--conns",
        "--frames-per-write",
        "--secs",
        "--payload",
        "--feeder-cpu",
        "--recv-cpu",
        "--drop-every",
        "--refuse-every",
        "--spin-us",
    ];
    while let Some(a) = it.next() {
        if takes_value.contains(&a.as_str()) {
            kv.push((a.clone(), it.next().unwrap_or_default()));
        } else if a.starts_with("--") {
            flags.push(a);
        } else {
            rest.push(a);
        }
    }
    Args {
        cmd,
        kv,
        flags,
        rest,
    }
}

impl Args {
    fn get(&self, k: &str) -> Option<&str> {
        self.kv
            .iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }
    fn all(&self, k: &str) -> Vec<&str> {
        self.kv
            .iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .collect()
    }
    fn flag(&self, f: &str) -> bool {
        self.flags.iter().any(|x| x == f)
    }
    fn num<T: std::str::FromStr>(&self, k: &str, default: T) -> anyhow::Result<T>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(k) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e| anyhow::anyhow!("{k} {v:?}: {e}")),
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = parse_args();
    match args.cmd.as_str() {
        "run" => cmd_run(&args),
        "peak" => cmd_peak(&args),
        "calibrate" => cmd_calibrate(&args),
        "serve" => cmd_serve(&args),
        "bench-recv" => cmd_bench(&args),
        "part" => cmd_part(&args),
        "compare" => cmd_compare(&args),
        "plan" => cmd_plan(&args),
        "-h" | "--help" | "help" => {
            print!("{HELP}");
            Ok(())
        }
        "-V" | "--version" => {
            println!("loadgen {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        other => {
            eprint!("unknown command {other:?}\n\n{HELP}");
            std::process::exit(2)
        }
    }
}

fn resolve(target: &str) -> anyhow::Result<SocketAddr> {
    target
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| anyhow::anyhow!("cannot resolve {target}"))
}

/// The scenario file with `--set` overrides, validated, spread over processes when one
/// process's open-file limit is too small.
fn load_scenario(args: &Args, default_path: Option<&str>) -> anyhow::Result<scenario::Scenario> {
    let path = args
        .get("--scenario")
        .or(default_path)
        .context("--scenario FILE is required")?;
    let mut scenario = scenario::Scenario::from_toml(
        &std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
    )?;
    for kv in args.all("--set") {
        scenario.set(kv)?;
    }
    scenario.validate()?;
    let per_process = clock::open_file_limit().saturating_sub(256).max(64) as usize;
    let needed = scenario.connections.div_ceil(per_process);
    if needed > scenario.processes {
        eprintln!(
            "[plan] {} connections exceed one process's open-file limit ({per_process} usable): using {needed} worker processes",
            scenario.connections
        );
        scenario.processes = needed;
    }
    Ok(scenario)
}

/// The plan: provisioned on the first target, or reused from `--accounts` when it matches.
fn make_plan(
    args: &Args,
    scenario: &scenario::Scenario,
    targets: &[SocketAddr],
    peer: bool,
) -> anyhow::Result<plan::Plan> {
    let target = targets[0];
    let reuse = args.get("--accounts").map(PathBuf::from);
    let plan = match reuse.as_ref().filter(|p| p.exists()) {
        Some(p) => {
            let old: plan::Plan = serde_json::from_str(&std::fs::read_to_string(p)?)?;
            let same = old.scenario.kind == scenario.kind
                && old.conns.len() == scenario.connections
                && old.scenario.groups == scenario.groups
                && old.peer == peer;
            if same {
                eprintln!("[plan] reusing accounts from {}", p.display());
                // same accounts and rooms; a fresh schedule and run id
                plan::Plan {
                    scenario: scenario.clone(),
                    senders: plan::schedule(scenario, &old.conns),
                    target,
                    run_id: format!("{:x}", clock::now_ns() % 0xff_ffff),
                    ..old
                }
            } else {
                eprintln!(
                    "[plan] {} does not match this scenario: provisioning anew",
                    p.display()
                );
                plan::build(scenario, target, peer, &|m| eprintln!("[plan] {m}"))?
            }
        }
        None => plan::build(scenario, target, peer, &|m| eprintln!("[plan] {m}"))?,
    };
    let plan = plan::Plan {
        targets: if targets.len() > 1 {
            targets.to_vec()
        } else {
            Vec::new()
        },
        ..plan
    };
    if let Some(p) = &reuse {
        std::fs::write(p, serde_json::to_string(&plan)?)?;
    }
    Ok(plan)
}

fn targets(args: &Args) -> anyhow::Result<Vec<SocketAddr>> {
    args.get("--target")
        .context("--target HOST:PORT is required")?
        .split(',')
        .map(|t| resolve(t.trim()))
        .collect()
}

/// The ceiling recorded in reports: from `--ceiling FILE` (a calibrate result).
fn ceiling(args: &Args) -> anyhow::Result<Option<serde_json::Value>> {
    let Some(f) = args.get("--ceiling") else {
        return Ok(None);
    };
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(f).with_context(|| format!("reading {f}"))?)?;
    let mut c = v["ceiling"].clone();
    anyhow::ensure!(
        c.is_object(),
        "{f} holds no ceiling (not a calibrate result?)"
    );
    c["source"] = f.into();
    Ok(Some(c))
}

/// Who the run is and what it records beside the figures.
struct Meta {
    label: String,
    server_pid: Option<u32>,
    command: String,
    ceiling: Option<serde_json::Value>,
}

/// Runs a plan once (in this process or spread over workers) and summarises it.
fn execute(plan: &plan::Plan, meta: &Meta) -> anyhow::Result<serde_json::Value> {
    let plan = Arc::new(plan.clone());
    let wall_start = clock::now_ns();
    let (cpu0, kids0) = clock::cpu_seconds();
    // the server's RSS before the ramp (memory per connection), its CPU at the common
    // start (CPU per delivery: the ramp's handshakes excluded)
    let pid = meta.server_pid;
    let rss_before = pid.and_then(clock::proc_stats).map(|s| s.1);
    let server_before: Arc<Mutex<Option<(f64, u64, u64)>>> = Arc::default();
    let snap = {
        let server_before = server_before.clone();
        move || {
            *server_before.lock().expect("lock") = pid
                .and_then(clock::proc_stats)
                .map(|(c, r)| (c, r, clock::now_ns()));
        }
    };
    let mut result = if plan.scenario.processes <= 1 {
        let shared = run::Shared::new();
        let s2 = shared.clone();
        let mine: Vec<usize> = (0..plan.conns.len()).collect();
        run::run_part(
            plan.clone(),
            mine,
            shared,
            move || {
                snap();
                s2.start_ns.store(clock::now_ns() + 200_000_000, Relaxed)
            },
            true,
        )
    } else {
        run_processes(&plan, snap)?
    };
    result.settle();
    let wall = (clock::now_ns() - wall_start) as f64 / 1e9;
    let (cpu1, kids1) = clock::cpu_seconds();
    let before = *server_before.lock().expect("lock");
    let server = match (pid, before, pid.and_then(clock::proc_stats)) {
        (Some(pid), Some(b), Some(a)) => Some(report::ServerStats {
            pid,
            secs: (clock::now_ns() - b.2) as f64 / 1e9,
            cpu_before: b.0,
            cpu_after: a.0,
            rss_before: rss_before.unwrap_or(b.1),
            rss_after: a.1,
        }),
        _ => None,
    };
    Ok(report::summarize(
        &plan,
        &meta.label,
        &result,
        wall,
        (cpu1 - cpu0) + (kids1 - kids0),
        server.as_ref(),
        &meta.command,
        meta.ceiling.as_ref(),
    ))
}

fn meta(args: &Args, peer: bool, default_label: &str) -> anyhow::Result<Meta> {
    Ok(Meta {
        label: args
            .get("--label")
            .unwrap_or(if peer { "peer" } else { default_label })
            .to_string(),
        server_pid: args.get("--server-pid").map(str::parse).transpose()?,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        ceiling: ceiling(args)?,
    })
}

fn cmd_run(args: &Args) -> anyhow::Result<()> {
    let scenario = load_scenario(args, None)?;
    let targets = targets(args)?;
    let peer = args.flag("--peer");
    let meta = meta(args, peer, "ringchat")?;
    let plan = make_plan(args, &scenario, &targets, peer)?;
    let summary = execute(&plan, &meta)?;
    report::print_table(&summary);
    if let Some(out) = args.get("--out") {
        let stem = args
            .get("--stem")
            .map(str::to_string)
            .unwrap_or_else(|| format!("{}-{}", meta.label, scenario.name));
        report::write_outputs(&PathBuf::from(out), &stem, std::slice::from_ref(&summary))?;
        eprintln!("[out] {out}/{stem}.json and plots");
    }
    Ok(())
}

/// Provisions the plan (accounts, tokens, rooms, a schedule at the scenario's rate) and
/// writes it, running nothing: `crosscheck` reads it.
fn cmd_plan(args: &Args) -> anyhow::Result<()> {
    let scenario = load_scenario(args, None)?;
    let targets = targets(args)?;
    let out = args.get("--out").context("--out PLAN.json is required")?;
    let plan = make_plan(args, &scenario, &targets, args.flag("--peer"))?;
    std::fs::write(out, serde_json::to_string(&plan)?)?;
    eprintln!(
        "[plan] {} connections, {} senders, {} rooms -> {out}",
        plan.conns.len(),
        plan.senders.len(),
        plan.rooms.len()
    );
    Ok(())
}

fn peak_opts(args: &Args, start: f64, bound_ms: f64) -> anyhow::Result<peak::PeakOpts> {
    Ok(peak::PeakOpts {
        start: args.num("--start", start)?,
        max: args.num("--max", 20e6)?,
        factor: args.num("--factor", 1.5)?,
        refine: args.num("--refine", 3)?,
        bound_ms: args.num("--bound-ms", bound_ms)?,
        step_secs: args.num("--step-secs", 5.0)?,
        drain_secs: args.num("--drain-secs", 2.0)?,
        server_pid: args.get("--server-pid").map(str::parse).transpose()?,
    })
}

fn write_json(args: &Args, default_stem: &str, v: &serde_json::Value) -> anyhow::Result<()> {
    if let Some(out) = args.get("--out") {
        let stem = args.get("--stem").unwrap_or(default_stem);
        std::fs::create_dir_all(out)?;
        let path = PathBuf::from(out).join(format!("{stem}.json"));
        std::fs::write(&path, serde_json::to_string_pretty(v)?)?;
        eprintln!("[out] {}", path.display());
    }
    Ok(())
}

fn cmd_peak(args: &Args) -> anyhow::Result<()> {
    let scenario = load_scenario(args, None)?;
    let targets = targets(args)?;
    let peer = args.flag("--peer");
    let meta = meta(args, peer, "ringchat")?;
    let opts = peak_opts(args, 100_000.0, 50.0)?;
    let plan = make_plan(args, &scenario, &targets, peer)?;
    let v = peak::search(&meta.label, plan, &opts, &mut |p| execute(p, &meta))?;
    peak::print_peak(&v);
    write_json(args, &format!("{}-{}-peak", meta.label, scenario.name), &v)
}

/// Starts `loadgen serve` pinned to a CPU (with `taskset` when there is one), runs `peak`
/// against it, and reports the ceiling.
fn cmd_calibrate(args: &Args) -> anyhow::Result<()> {
    let scenario = load_scenario(args, Some("perf/scenarios/world.toml"))?;
    let cpu = args.get("--server-cpu").unwrap_or("0");
    let flush_us: u64 = args.num("--flush-us", 10_000)?;
    let exe = std::env::current_exe()?;
    let mut cmd = if cpu != "none" && Command::new("taskset").arg("-V").output().is_ok() {
        let mut c = Command::new("taskset");
        c.args(["-c", cpu]).arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    let mut child = cmd
        .args(["serve", "--listen", "127.0.0.1:0", "--flush-us"])
        .arg(flush_us.to_string())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
    let addr = line
        .trim()
        .strip_prefix("listening ")
        .context("loadgen serve did not start")?;
    let target = resolve(addr)?;
    let meta = Meta {
        label: "calibrate".into(),
        server_pid: Some(child.id()),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        ceiling: None,
    };
    let opts = peak::PeakOpts {
        server_pid: Some(child.id()),
        // a ceiling is a rate, not a latency: a looser bound (the serve's 10 ms flushes
        // and 2,000-socket walk alone take tens of ms)
        ..peak_opts(args, 200_000.0, 250.0)?
    };
    let plan = plan::build(&scenario, target, true, &|m| eprintln!("[plan] {m}"))?;
    let searched = peak::search("calibrate", plan, &opts, &mut |p| execute(p, &meta));
    let _ = child.kill();
    let _ = child.wait();
    let mut v = searched?;
    peak::print_peak(&v);
    let limit = v["limit"]["limited_by"].as_str().unwrap_or("").to_string();
    let per_sec = v["peak"]["offered_deliveries_per_sec"].as_f64();
    v["ceiling"] = serde_json::json!({
        "deliveries_per_sec": per_sec,
        "limited_by": limit,
        "meaning": match limit.as_str() {
            "loadgen" => "what loadgen absorbs on this machine",
            "server" => "a lower bound: the calibration server gave out first",
            _ => "a lower bound: --max was reached",
        },
        "scenario": scenario.name,
        "connections": scenario.connections,
        "flush_us": flush_us,
        "server_cpu": cpu,
        "date_unix": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    });
    match per_sec {
        Some(c) => println!(
            "ceiling          {c:.0} deliveries/s ({})",
            v["ceiling"]["meaning"].as_str().unwrap_or("")
        ),
        None => println!("ceiling          not found: the first step failed"),
    }
    write_json(args, "calibrate", &v)
}

fn cmd_serve(args: &Args) -> anyhow::Result<()> {
    let listen = resolve(args.get("--listen").unwrap_or("127.0.0.1:18095"))?;
    let flush = std::time::Duration::from_micros(args.num("--flush-us", 2000)?);
    serve::serve(
        listen,
        flush,
        serve::Faults {
            drop_every: args.num("--drop-every", 0)?,
            refuse_every: args.num("--refuse-every", 0)?,
        },
    )
}

fn cmd_bench(args: &Args) -> anyhow::Result<()> {
    let cpu = |k: &str| -> anyhow::Result<Option<usize>> {
        args.get(k).map(str::parse).transpose().map_err(Into::into)
    };
    let o = bench::BenchOpts {
        conns: args.num("--conns", 2000)?,
        frames_per_write: args.num("--frames-per-write", 64)?,
        secs: args.num("--secs", 5.0)?,
        payload_bytes: args.num("--payload", 100)?,
        feeder_cpu: cpu("--feeder-cpu")?,
        recv_cpu: cpu("--recv-cpu")?,
        spin_us: args.num("--spin-us", 50.0)?,
    };
    let v = bench::bench_recv(&o)?;
    println!(
        "bench-recv       {} conns, {} frame(s) of {} B per write: {:.0} frames/s ({:.0} MB/s), {:.1} frames/read; receiver busy {:.0}%, {:.0} ns CPU/frame; feeder CPU {:.0}%{}",
        o.conns,
        o.frames_per_write,
        v["frame_bytes"],
        v["frames_per_sec"].as_f64().unwrap_or(0.0),
        v["mbytes_per_sec"].as_f64().unwrap_or(0.0),
        v["frames_per_read"].as_f64().unwrap_or(0.0),
        v["receiver_busy_share"].as_f64().unwrap_or(0.0) * 100.0,
        v["receiver_cpu_ns_per_frame"].as_f64().unwrap_or(0.0),
        v["feeder_cpu_share"].as_f64().unwrap_or(0.0) * 100.0,
        if v["feeder_bound"] == true {
            "  << feeder-bound: the receiver waited for data"
        } else {
            ""
        }
    );
    write_json(args, "bench-recv", &v)
}

/// Splits the connections over worker processes (each under the open-file limit), starts
/// them together, and merges their results (serialized HdrHistograms).
fn run_processes(
    plan: &Arc<plan::Plan>,
    at_start: impl FnOnce(),
) -> anyhow::Result<stats::PartResult> {
    let k = plan.scenario.processes;
    let plan_path = std::env::temp_dir().join(format!("loadgen-plan-{}.json", std::process::id()));
    std::fs::write(&plan_path, serde_json::to_string(&**plan)?)?;
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for i in 0..k {
        let child = Command::new(&exe)
            .args(["part", "--plan"])
            .arg(&plan_path)
            .args(["--part", &format!("{i}/{k}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        children.push(child);
    }
    let mut readers: Vec<_> = children
        .iter_mut()
        .map(|c| std::io::BufReader::new(c.stdout.take().expect("piped")))
        .collect();
    for (i, r) in readers.iter_mut().enumerate() {
        let mut line = String::new();
        r.read_line(&mut line)?;
        anyhow::ensure!(
            line.trim() == "READY",
            "worker {i} failed to ramp: {line:?}"
        );
    }
    at_start();
    let start = clock::now_ns() + 300_000_000;
    for c in children.iter_mut() {
        writeln!(c.stdin.as_mut().expect("piped"), "GO {start}")?;
    }
    let mut merged = stats::PartResult::default();
    for (i, r) in readers.iter_mut().enumerate() {
        let mut line = String::new();
        r.read_line(&mut line)?;
        let part: stats::PartResult =
            serde_json::from_str(&line).with_context(|| format!("worker {i} result"))?;
        merged.merge(part);
    }
    for mut c in children {
        let _ = c.wait();
    }
    let _ = std::fs::remove_file(plan_path);
    Ok(merged)
}

/// A worker process: runs its slice, reports READY, waits for GO, prints its result.
fn cmd_part(args: &Args) -> anyhow::Result<()> {
    let plan: plan::Plan = serde_json::from_str(&std::fs::read_to_string(
        args.get("--plan").context("--plan")?,
    )?)?;
    let (i, k) = args
        .get("--part")
        .and_then(|p| p.split_once('/'))
        .context("--part i/k")?;
    let (i, k): (usize, usize) = (i.parse()?, k.parse()?);
    let plan = Arc::new(plan);
    let n = plan.conns.len();
    let mine: Vec<usize> = (n * i / k..n * (i + 1) / k).collect();
    let shared = run::Shared::new();
    let s2 = shared.clone();
    let mut r = run::run_part(
        plan.clone(),
        mine,
        shared,
        move || {
            println!("READY");
            let _ = std::io::stdout().flush();
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
            let start = line
                .trim()
                .strip_prefix("GO ")
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(clock::now_ns);
            s2.start_ns.store(start, Relaxed);
        },
        i == 0,
    );
    r.cpu_secs = clock::cpu_seconds().0;
    println!("{}", serde_json::to_string(&r)?);
    Ok(())
}

fn cmd_compare(args: &Args) -> anyhow::Result<()> {
    let out = PathBuf::from(args.get("--out").context("--out DIR")?);
    let stem = args.get("--stem").unwrap_or("compare");
    let mut summaries = Vec::new();
    let mut peaks = Vec::new();
    for f in &args.rest {
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(f)?)?;
        if v["kind"] == "peak" {
            peaks.push(v);
        } else {
            summaries.extend(v["runs"].as_array().cloned().unwrap_or_default());
        }
    }
    anyhow::ensure!(
        !summaries.is_empty() || !peaks.is_empty(),
        "no summaries given"
    );
    std::fs::create_dir_all(&out)?;
    let md = if !peaks.is_empty() {
        std::fs::write(
            out.join(format!("{stem}.json")),
            serde_json::to_string_pretty(&serde_json::json!({ "peaks": peaks }))?,
        )?;
        peak::compare_peaks(&peaks)
    } else {
        report::write_outputs(&out, stem, &summaries)?;
        report::compare_markdown(&summaries)
    };
    print!("{md}");
    Ok(())
}
