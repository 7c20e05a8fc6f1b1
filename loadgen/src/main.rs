//! loadgen: measures what ringchat (or a peer server speaking the same protocol slice)
//! delivers, the way PERF.md asks: open-loop senders on a fixed schedule, delivery latency
//! against the *intended* send time (coordinated omission corrected), fan-out completion
//! per message, loss and duplicates counted, and its own CPU reported so a
//! load-generator-bound run says so.
//!
//! ```text
//! loadgen run --scenario perf/scenarios/world.toml --target 127.0.0.1:8080 [--set connections=500]
//!             [--label ringchat] [--peer] [--server-pid PID] [--out perf/results] [--accounts FILE]
//! loadgen compare --out DIR --stem NAME a.json b.json ...
//! ```
#![deny(unsafe_code)]

mod clock;
mod plan;
mod report;
mod run;
mod scenario;
mod stats;

use std::io::{BufRead, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use anyhow::Context;

const HELP: &str = "loadgen: ringchat's load generator

USAGE:
    loadgen run --scenario FILE --target HOST:PORT [options]
    loadgen compare --out DIR --stem NAME SUMMARY.json...

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
    --out DIR            write <DIR>/<stem>.json and SVG plots (default: no files)
    --stem NAME          file name stem (default: <label>-<scenario>)

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
}

fn main() -> anyhow::Result<()> {
    let args = parse_args();
    match args.cmd.as_str() {
        "run" => cmd_run(&args),
        "part" => cmd_part(&args),
        "compare" => cmd_compare(&args),
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

fn cmd_run(args: &Args) -> anyhow::Result<()> {
    let path = args
        .get("--scenario")
        .context("--scenario FILE is required")?;
    let mut scenario = scenario::Scenario::from_toml(
        &std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
    )?;
    for kv in args.all("--set") {
        scenario.set(kv)?;
    }
    scenario.validate()?;
    // one process holds at most its open-file limit: spread beyond it over workers
    let per_process = clock::open_file_limit().saturating_sub(256).max(64) as usize;
    let needed = scenario.connections.div_ceil(per_process);
    if needed > scenario.processes {
        eprintln!(
            "[plan] {} connections exceed one process's open-file limit ({per_process} usable): using {needed} worker processes",
            scenario.connections
        );
        scenario.processes = needed;
    }
    let targets = args
        .get("--target")
        .context("--target HOST:PORT is required")?
        .split(',')
        .map(|t| resolve(t.trim()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let target = targets[0];
    let peer = args.flag("--peer");
    let label = args
        .get("--label")
        .unwrap_or(if peer { "peer" } else { "ringchat" })
        .to_string();
    let server_pid: Option<u32> = args.get("--server-pid").map(str::parse).transpose()?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");

    // the plan, reused when asked and still matching
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
                    senders: plan::schedule(&scenario, &old.conns),
                    target,
                    run_id: format!("{:x}", clock::now_ns() % 0xff_ffff),
                    ..old
                }
            } else {
                eprintln!(
                    "[plan] {} does not match this scenario: provisioning anew",
                    p.display()
                );
                plan::build(&scenario, target, peer, &|m| eprintln!("[plan] {m}"))?
            }
        }
        None => plan::build(&scenario, target, peer, &|m| eprintln!("[plan] {m}"))?,
    };
    let plan = plan::Plan {
        targets: if targets.len() > 1 {
            targets
        } else {
            Vec::new()
        },
        ..plan
    };
    if let Some(p) = &reuse {
        std::fs::write(p, serde_json::to_string(&plan)?)?;
    }
    let plan = Arc::new(plan);
    let server_before = server_pid.and_then(clock::proc_stats);
    let wall_start = clock::now_ns();
    let (cpu0, kids0) = clock::cpu_seconds();

    let result = if scenario.processes <= 1 {
        let shared = run::Shared::new();
        let s2 = shared.clone();
        let mine: Vec<usize> = (0..plan.conns.len()).collect();
        let mut r = run::run_part(
            plan.clone(),
            mine,
            shared,
            move || s2.start_ns.store(clock::now_ns() + 200_000_000, Relaxed),
            true,
        );
        attribute(&plan, &mut r);
        r
    } else {
        run_processes(&plan)?
    };

    let wall = (clock::now_ns() - wall_start) as f64 / 1e9;
    let (cpu1, kids1) = clock::cpu_seconds();
    let server = match (
        server_pid,
        server_before,
        server_pid.and_then(clock::proc_stats),
    ) {
        (Some(pid), Some(b), Some(a)) => Some(report::ServerStats {
            pid,
            cpu_before: b.0,
            cpu_after: a.0,
            rss_before: b.1,
            rss_after: a.1,
        }),
        _ => None,
    };
    let threads = scenario.threads * scenario.processes;
    let summary = report::summarize(
        &plan,
        &label,
        &result,
        wall,
        (cpu1 - cpu0) + (kids1 - kids0),
        threads,
        server.as_ref(),
        &command,
    );
    report::print_table(&summary);
    if let Some(out) = args.get("--out") {
        let stem = args
            .get("--stem")
            .map(str::to_string)
            .unwrap_or_else(|| format!("{label}-{}", scenario.name));
        report::write_outputs(&PathBuf::from(out), &stem, std::slice::from_ref(&summary))?;
        eprintln!("[out] {out}/{stem}.json and plots");
    }
    Ok(())
}

/// Counts deliveries per sender from each receiver's bitset of room message numbers.
fn attribute(plan: &plan::Plan, r: &mut stats::PartResult) {
    let mut by_room: Vec<Vec<(u64, u64, usize)>> = vec![Vec::new(); plan.rooms.len()];
    for sp in &plan.senders {
        by_room[sp.room].push((sp.stride, sp.slot, sp.conn));
    }
    for (conn, bits) in std::mem::take(&mut r.seen) {
        let room = plan.conns[conn].room;
        for (w, word) in bits.iter().enumerate() {
            let mut word = *word;
            while word != 0 {
                let b = word.trailing_zeros() as u64;
                word &= word - 1;
                let gid = w as u64 * 64 + b;
                if let Some((_, _, sender)) = by_room[room]
                    .iter()
                    .find(|(stride, slot, _)| gid % stride == *slot)
                {
                    *r.delivered_per_sender.entry(*sender).or_insert(0) += 1;
                }
            }
        }
    }
}

/// Splits the connections over worker processes (each under the open-file limit), starts
/// them together, and merges their results (serialized HdrHistograms).
fn run_processes(plan: &Arc<plan::Plan>) -> anyhow::Result<stats::PartResult> {
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
    attribute(&plan, &mut r);
    r.cpu_secs = clock::cpu_seconds().0;
    println!("{}", serde_json::to_string(&r)?);
    Ok(())
}

fn cmd_compare(args: &Args) -> anyhow::Result<()> {
    let out = PathBuf::from(args.get("--out").context("--out DIR")?);
    let stem = args.get("--stem").unwrap_or("compare");
    let mut summaries = Vec::new();
    for f in &args.rest {
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(f)?)?;
        summaries.extend(v["runs"].as_array().cloned().unwrap_or_default());
    }
    anyhow::ensure!(!summaries.is_empty(), "no summaries given");
    report::write_outputs(&out, stem, &summaries)?;
    let md = report::compare_markdown(&summaries);
    std::fs::write(out.join(format!("{stem}.md")), &md)?;
    print!("{md}");
    Ok(())
}
