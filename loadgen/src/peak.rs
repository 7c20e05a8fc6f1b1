//! `loadgen peak`: the highest offered rate a server sustains, and who stopped it.
//!
//! Runs the scenario in steps over the same accounts (a fresh schedule and run id each
//! step), raising the offered deliveries/s by `factor` until a step fails, then bisects
//! (geometrically) between the last pass and the first failure. A step passes when every
//! expected delivery arrived within the drain (none lost, none late), nothing was
//! duplicated, no connection failed and the delivery p99 stayed within the bound. The
//! first failing step names its limit: loadgen when its own verdict says load-generator-
//! bound, else the server (with its CPU share, so "server saturated" and "server slow but
//! idle" read apart).

use serde_json::{json, Value};

use crate::plan::Plan;
use crate::scenario::Kind;

pub struct PeakOpts {
    /// Offered deliveries/s of the first step.
    pub start: f64,
    pub max: f64,
    pub factor: f64,
    /// Bisection steps after the first failure.
    pub refine: usize,
    pub bound_ms: f64,
    pub step_secs: f64,
    pub drain_secs: f64,
    /// The server process: between steps, wait until it is idle (a collapsed step leaves
    /// it working off a backlog that would fail the next step too).
    pub server_pid: Option<u32>,
}

/// Waits until the server has been idle (under 10% of a core) for 250 ms, at least 1 s and
/// at most 60 s; returns the seconds waited.
pub fn settle(server_pid: Option<u32>) -> f64 {
    let t0 = std::time::Instant::now();
    std::thread::sleep(std::time::Duration::from_secs(1));
    let Some(pid) = server_pid else {
        return t0.elapsed().as_secs_f64();
    };
    let mut last = crate::clock::proc_stats(pid).map(|s| s.0);
    while t0.elapsed() < std::time::Duration::from_secs(60) {
        std::thread::sleep(std::time::Duration::from_millis(250));
        let now = crate::clock::proc_stats(pid).map(|s| s.0);
        match (last, now) {
            (Some(a), Some(b)) if b - a < 0.025 => break,
            (_, None) => break,
            _ => {}
        }
        last = now;
    }
    t0.elapsed().as_secs_f64()
}

/// Deliveries per second that one unit of `rate_per_sec` offers.
pub fn deliveries_per_rate(plan: &Plan) -> f64 {
    let s = &plan.scenario;
    match s.kind {
        Kind::World => plan.conns.len().saturating_sub(1) as f64,
        Kind::Group => (s.groups * s.group_size.saturating_sub(1)) as f64,
        Kind::Single => plan.conns.len() as f64,
        Kind::Idle => 0.0,
    }
}

/// Why a step fails (empty: it passes).
pub fn failures(v: &Value, bound_ms: f64) -> Vec<String> {
    let mut why = Vec::new();
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    if v["connections"]["failed"].as_u64().unwrap_or(0) > 0 {
        why.push(format!("{} connections failed", v["connections"]["failed"]));
    }
    if n("refused") > 0 {
        why.push(format!("{} sends refused by the server", n("refused")));
    }
    if n("lost") > 0 {
        why.push(format!("{} lost (gaps)", n("lost")));
    }
    if n("late") > 0 {
        why.push(format!(
            "{} late (delivered {:.2}%)",
            n("late"),
            v["delivered_share"].as_f64().unwrap_or(0.0) * 100.0
        ));
    }
    if n("duplicates") > 0 {
        why.push(format!("{} duplicates", n("duplicates")));
    }
    if n("delivered") < n("expected_deliveries") && n("lost") == 0 && n("late") == 0 {
        why.push(format!(
            "delivered {:.2}%",
            v["delivered_share"].as_f64().unwrap_or(0.0) * 100.0
        ));
    }
    let p99 = v["delivery_latency_ms"]["p99"]
        .as_f64()
        .unwrap_or(f64::INFINITY);
    if p99 > bound_ms {
        why.push(format!("p99 {p99:.1} ms > {bound_ms} ms"));
    }
    why
}

fn step_line(offered: f64, v: &Value, why: &[String]) -> Value {
    json!({
        "offered_deliveries_per_sec": offered,
        "deliveries_per_sec": v["deliveries_per_sec"],
        "delivered_share": v["delivered_share"],
        "lost": v["lost"],
        "refused": v["refused"],
        "late": v["late"],
        "duplicates": v["duplicates"],
        "latency_ms": v["delivery_latency_ms"],
        "server_cpu_us_per_delivery": v["server"]["cpu_us_per_delivery"],
        "server_busy_share": v["server"]["busy_share"],
        "loadgen_busy_max": v["loadgen"]["recv_busy_max"],
        "loadgen_bound": v["loadgen"]["bound"],
        "loadgen_bound_reasons": v["loadgen"]["bound_reasons"],
        "pass": why.is_empty(),
        "failures": why,
    })
}

/// Searches the peak; `run` runs one step of the plan and returns its summary.
pub fn search(
    label: &str,
    mut plan: Plan,
    o: &PeakOpts,
    run: &mut dyn FnMut(&Plan) -> anyhow::Result<Value>,
) -> anyhow::Result<Value> {
    let per_rate = deliveries_per_rate(&plan);
    anyhow::ensure!(per_rate > 0.0, "peak needs a scenario that sends");
    plan.scenario.duration_secs = o.step_secs;
    plan.scenario.drain_secs = o.drain_secs;
    let mut steps = Vec::new();
    let mut best: Option<(f64, Value)> = None;
    let mut first_fail: Option<(f64, Value, Vec<String>)> = None;
    let mut step = |offered: f64,
                    plan: &mut Plan,
                    steps: &mut Vec<Value>|
     -> anyhow::Result<(Value, Vec<String>)> {
        plan.scenario.rate_per_sec = offered / per_rate;
        plan.senders = crate::plan::schedule(&plan.scenario, &plan.conns);
        plan.run_id = format!("{:x}", crate::clock::now_ns() % 0xff_ffff);
        eprintln!("[peak] {label}: offering {offered:.0} deliveries/s");
        let v = run(plan)?;
        let why = failures(&v, o.bound_ms);
        eprintln!(
            "[peak] {label}: {offered:.0}/s offered -> {}",
            if why.is_empty() {
                "pass".to_string()
            } else {
                why.join(", ")
            }
        );
        let mut line = step_line(offered, &v, &why);
        // let the server settle between steps: a failed step may leave it seconds of backlog
        let waited = settle(o.server_pid);
        if waited > 1.5 {
            eprintln!("[peak] {label}: the server worked off its backlog for {waited:.1} s");
        }
        line["settle_secs"] = json!(waited);
        steps.push(line);
        Ok((v, why))
    };
    let mut offered = o.start;
    loop {
        let (v, why) = step(offered, &mut plan, &mut steps)?;
        if why.is_empty() {
            best = Some((offered, v));
            if offered >= o.max {
                break;
            }
            offered = (offered * o.factor).min(o.max);
        } else {
            first_fail = Some((offered, v, why));
            break;
        }
    }
    for _ in 0..o.refine {
        let (Some((lo, _)), Some((hi, _, _))) = (&best, &first_fail) else {
            break;
        };
        if hi / lo < 1.05 {
            break;
        }
        let mid = (lo * hi).sqrt();
        let (v, why) = step(mid, &mut plan, &mut steps)?;
        if why.is_empty() {
            best = Some((mid, v));
        } else {
            first_fail = Some((mid, v, why));
        }
    }
    let peak = best.as_ref().map(|(offered, v)| {
        json!({
            "offered_deliveries_per_sec": offered,
            "deliveries_per_sec": v["deliveries_per_sec"],
            "latency_ms": v["delivery_latency_ms"],
            "fanout_completion_ms": v["fanout_completion_ms"],
            "server_cpu_us_per_delivery": v["server"]["cpu_us_per_delivery"],
            "server_busy_share": v["server"]["busy_share"],
            "loadgen_busy_max": v["loadgen"]["recv_busy_max"],
            "loadgen_own_lag_ms": v["loadgen"]["own_lag_ms"],
        })
    });
    let limit = match &first_fail {
        None => json!({ "limited_by": "not reached (--max)", "offered_deliveries_per_sec": o.max }),
        Some((offered, v, why)) => {
            let lg = v["loadgen"]["bound"] == true;
            let server_busy = v["server"]["busy_share"].as_f64();
            json!({
                "offered_deliveries_per_sec": offered,
                "failures": why,
                "limited_by": if lg { "loadgen" } else { "server" },
                "loadgen_bound_reasons": v["loadgen"]["bound_reasons"],
                "server_busy_share": server_busy,
                "server_saturated": server_busy.map(|b| b >= 0.85),
            })
        }
    };
    let last = best.map(|b| b.1).or(first_fail.map(|f| f.1));
    Ok(json!({
        "kind": "peak",
        "label": label,
        "scenario": plan.scenario,
        "bound_ms": o.bound_ms,
        "peak": peak,
        "limit": limit,
        "steps": steps,
        "ceiling": last.as_ref().map(|v| v["loadgen"]["ceiling"].clone()).unwrap_or(Value::Null),
        "environment_command": last.as_ref().map(|v| v["command"].clone()).unwrap_or(Value::Null),
        "best_run": last.unwrap_or(Value::Null),
    }))
}

pub fn print_peak(v: &Value) {
    println!("\n== peak: {} ==", v["label"].as_str().unwrap_or(""));
    for s in v["steps"].as_array().into_iter().flatten() {
        println!(
            "  offered {:>10.0}/s  got {:>10.0}/s  p50 {:>8} p99 {:>8} ms  server {:>4.0}% {:>6.3} us/del  loadgen busy {:>4.0}%  {}",
            s["offered_deliveries_per_sec"].as_f64().unwrap_or(0.0),
            s["deliveries_per_sec"].as_f64().unwrap_or(0.0),
            s["latency_ms"]["p50"],
            s["latency_ms"]["p99"],
            s["server_busy_share"].as_f64().unwrap_or(f64::NAN) * 100.0,
            s["server_cpu_us_per_delivery"].as_f64().unwrap_or(f64::NAN),
            s["loadgen_busy_max"].as_f64().unwrap_or(0.0) * 100.0,
            if s["pass"] == true {
                "pass".to_string()
            } else {
                s["failures"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
    }
    match v["peak"].as_object() {
        Some(p) => println!(
            "peak             {:.0} deliveries/s sustained (p50 {} p99 {} ms, server {:.3} us CPU/delivery)",
            p["offered_deliveries_per_sec"].as_f64().unwrap_or(0.0),
            p["latency_ms"]["p50"],
            p["latency_ms"]["p99"],
            p["server_cpu_us_per_delivery"].as_f64().unwrap_or(f64::NAN)
        ),
        None => println!("peak             none: the first step failed"),
    }
    let l = &v["limit"];
    println!(
        "limited by       {} at {:.0}/s offered{}",
        l["limited_by"].as_str().unwrap_or(""),
        l["offered_deliveries_per_sec"].as_f64().unwrap_or(0.0),
        match l["server_busy_share"].as_f64() {
            Some(b) => format!(" (server CPU {:.0}% of its core)", b * 100.0),
            None => String::new(),
        }
    );
}

/// A markdown table of peak results, with ratios ringchat / peer.
pub fn compare_peaks(v: &[Value]) -> String {
    use std::fmt::Write as _;
    let bi = crate::report::base_index(v);
    let base = &v[bi];
    let bl = base["label"].as_str().unwrap_or("");
    let mut md = String::new();
    md.push_str("| server | peak deliveries/s | p50 / p99 at peak (ms) | server CPU us per delivery at peak | limited by (first failing step) |");
    for p in v.iter().enumerate().filter(|(i, _)| *i != bi) {
        let _ = write!(md, " {bl} / {} |", p.1["label"].as_str().unwrap_or(""));
    }
    md.push('\n');
    md.push_str(&"|---".repeat(5 + v.len() - 1));
    md.push_str("|\n");
    let f = |x: &Value| x.as_f64();
    for (i, s) in v.iter().enumerate() {
        let p = &s["peak"];
        let l = &s["limit"];
        let _ = write!(
            md,
            "| {} | {} | {} / {} | {} | {}{} |",
            s["label"].as_str().unwrap_or(""),
            f(&p["offered_deliveries_per_sec"]).map_or("none".into(), |x| format!("{x:.0}")),
            p["latency_ms"]["p50"],
            p["latency_ms"]["p99"],
            f(&p["server_cpu_us_per_delivery"]).map_or("n/a".into(), |x| format!("{x:.3}")),
            l["limited_by"].as_str().unwrap_or(""),
            match (
                f(&l["offered_deliveries_per_sec"]),
                l["failures"].as_array()
            ) {
                (Some(o), Some(w)) => format!(
                    " at {o:.0}/s: {}{}",
                    w.iter()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    f(&l["server_busy_share"])
                        .map_or(String::new(), |b| format!("; server CPU {:.0}%", b * 100.0))
                ),
                _ => String::new(),
            }
        );
        for (j, peer) in v.iter().enumerate().filter(|(j, _)| *j != bi) {
            let _ = j;
            if i != bi {
                md.push_str(" - |");
                continue;
            }
            match (
                f(&base["peak"]["offered_deliveries_per_sec"]),
                f(&peer["peak"]["offered_deliveries_per_sec"]),
            ) {
                (Some(a), Some(b)) if b > 0.0 => {
                    let _ = write!(md, " {:.2}x peak", a / b);
                }
                _ => md.push_str(" - peak"),
            }
            match (
                f(&base["peak"]["server_cpu_us_per_delivery"]),
                f(&peer["peak"]["server_cpu_us_per_delivery"]),
            ) {
                (Some(a), Some(b)) if b > 0.0 => {
                    let _ = write!(md, ", {:.2}x CPU/delivery |", a / b);
                }
                _ => md.push_str(" |"),
            }
        }
        md.push('\n');
    }
    for s in v {
        let _ = write!(
            md,
            "\n{}: steps (bound p99 <= {} ms)\n\n| offered/s | delivered/s | delivered | lost / late / dup | p50 / p99 (ms) | server CPU | server us/delivery | loadgen busiest s | result |\n|---|---|---|---|---|---|---|---|---|\n",
            s["label"].as_str().unwrap_or(""),
            s["bound_ms"]
        );
        for st in s["steps"].as_array().into_iter().flatten() {
            let pct = |x: &Value| {
                x.as_f64()
                    .map_or("n/a".into(), |x| format!("{:.1}%", x * 100.0))
            };
            let _ = writeln!(
                md,
                "| {:.0} | {:.0} | {} | {} / {} / {} | {} / {} | {} | {} | {} | {} |",
                f(&st["offered_deliveries_per_sec"]).unwrap_or(0.0),
                f(&st["deliveries_per_sec"]).unwrap_or(0.0),
                pct(&st["delivered_share"]),
                st["lost"],
                st["late"],
                st["duplicates"],
                st["latency_ms"]["p50"],
                st["latency_ms"]["p99"],
                pct(&st["server_busy_share"]),
                f(&st["server_cpu_us_per_delivery"]).map_or("n/a".into(), |x| format!("{x:.3}")),
                pct(&st["loadgen_busy_max"]),
                if st["pass"] == true {
                    "pass".to_string()
                } else {
                    let mut w: Vec<String> = st["failures"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect();
                    if st["loadgen_bound"] == true {
                        w.push("**loadgen-bound**".into());
                    }
                    w.join(", ")
                }
            );
        }
    }
    md
}
