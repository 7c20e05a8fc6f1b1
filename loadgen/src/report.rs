//! The final report: a terminal table, a JSON summary, and SVG plots (an HdrHistogram-style
//! latency-percentile plot on a log axis, and a per-second p50/p99/throughput series).
//! `compare` puts several summaries (ringchat and its peers, one run) side by side.

use std::fmt::Write as _;
use std::path::Path;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::plan::Plan;
use crate::stats::{hist, PartResult};

pub struct ServerStats {
    pub pid: u32,
    /// Seconds between the two readings.
    pub secs: f64,
    pub cpu_before: f64,
    pub cpu_after: f64,
    pub rss_before: u64,
    pub rss_after: u64,
}

fn ms(ns: u64) -> f64 {
    (ns as f64 / 1e6 * 1000.0).round() / 1000.0
}

fn latency_summary(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return Value::Null;
    }
    json!({
        "p50": ms(h.value_at_quantile(0.50)),
        "p90": ms(h.value_at_quantile(0.90)),
        "p99": ms(h.value_at_quantile(0.99)),
        "p999": ms(h.value_at_quantile(0.999)),
        "max": ms(h.max()),
        "mean": ms(h.mean() as u64),
        "count": h.len(),
    })
}

/// (percentile, ms) points from p0 to p99.999, evenly spaced on the 1/(1-p) log axis.
fn percentile_points(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    (0..=100)
        .map(|i| {
            let x = i as f64 * 0.05; // 10^x = 1/(1-p)
            let p = 1.0 - 10f64.powf(-x);
            (p * 100.0, ms(h.value_at_quantile(p)))
        })
        .collect()
}

fn ms_summary(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return Value::Null;
    }
    json!({
        "p50": ms(h.value_at_quantile(0.50)),
        "p99": ms(h.value_at_quantile(0.99)),
        "max": ms(h.max()),
    })
}

/// Why a run is load-generator-bound (empty: it is not). The thresholds:
/// - the receive loop was busy (outside `epoll_wait`) >= 90% of its busiest second of the
///   send window: it never waited for data, so data waited for it;
/// - its own lag (readable -> processed) p99 is >= 1 ms and at least half the delivery p99;
/// - sends left >= 1 ms late at p99 and that is at least half the delivery p99;
/// - messages were late (in flight at the end) while the loop was >= 75% busy.
pub fn verdict(
    busy_max: f64,
    own_p99_ns: u64,
    send_p99_ns: u64,
    delivery_p99_ns: u64,
    late: u64,
) -> Vec<String> {
    let mut why = Vec::new();
    if busy_max >= 0.90 {
        why.push(format!(
            "receive loop busy {:.0}% of its busiest second: data waited in the kernel for loadgen",
            busy_max * 100.0
        ));
    }
    if own_p99_ns >= 1_000_000 && own_p99_ns * 2 >= delivery_p99_ns {
        why.push(format!(
            "own lag p99 {:.2} ms is over half the delivery p99 {:.2} ms",
            own_p99_ns as f64 / 1e6,
            delivery_p99_ns as f64 / 1e6
        ));
    }
    if send_p99_ns >= 1_000_000 && send_p99_ns * 2 >= delivery_p99_ns {
        why.push(format!(
            "sends left late (p99 {:.2} ms), over half the delivery p99",
            send_p99_ns as f64 / 1e6
        ));
    }
    if late > 0 && busy_max >= 0.75 {
        why.push(format!(
            "{late} deliveries late while the receive loop was {:.0}% busy",
            busy_max * 100.0
        ));
    }
    why
}

#[allow(clippy::too_many_arguments)]
pub fn summarize(
    plan: &Plan,
    label: &str,
    r: &PartResult,
    wall_secs: f64,
    own_cpu: f64,
    server: Option<&ServerStats>,
    command: &str,
    ceiling: Option<&Value>,
) -> Value {
    let s = &plan.scenario;
    let members: Vec<usize> = plan.rooms.iter().map(|r| r.members).collect();
    let sent: u64 = r.sent_per_sender.iter().sum();
    let mut expected: u64 = 0;
    for (i, sp) in plan.senders.iter().enumerate() {
        // a refused send is stored nowhere, so it is expected nowhere
        expected += r.accepted_by(i) * (members[sp.room] as u64).saturating_sub(1);
    }
    let delivered = r.delivered;
    let lost = r.lost;
    let late = r.late();
    let gaps_by_sender = r.lost_per_sender.iter().filter(|n| **n > 0).count();
    let mut fan = hist();
    let (mut incomplete, mut fanned_messages) = (0u64, 0u64);
    for (room, gids) in r.fanout.iter().enumerate() {
        for (count, max) in gids {
            if *count == 0 {
                continue;
            }
            fanned_messages += 1;
            if *count as usize + 1 >= members[room] {
                fan.saturating_record(*max);
            } else {
                incomplete += 1;
            }
        }
    }
    let window = s.duration_secs.max(1e-9);
    let deliveries_per_sec = delivered as f64 / window;
    let threads = r.threads.max(1);
    // busy share of the receive loops per second of the send window
    let send_secs = s.duration_secs.floor().max(1.0) as usize;
    let busy: Vec<f64> = r
        .busy_ns
        .iter()
        .map(|ns| *ns as f64 / (1e9 * threads as f64))
        .collect();
    let busy_max = busy.iter().take(send_secs).fold(0.0f64, |a, b| a.max(*b));
    let busy_mean = if busy.is_empty() {
        0.0
    } else {
        busy.iter().take(send_secs).sum::<f64>() / busy.len().min(send_secs) as f64
    };
    let cpu_util = r.window_cpu_secs / (r.window_secs * threads as f64).max(1e-9);
    let q = |h: &Histogram<u64>, p: f64| {
        if h.is_empty() {
            0
        } else {
            h.value_at_quantile(p)
        }
    };
    let mut why = verdict(
        busy_max,
        q(&r.own_lag, 0.99),
        q(&r.send_lag, 0.99),
        q(&r.delivery, 0.99),
        late,
    );
    // busy (outside epoll_wait) but not on a CPU: the machine's other work held it off
    let full = s.duration_secs + s.drain_secs;
    let recv_cpu_share = r.recv_cpu_secs / (full * threads as f64).max(1e-9);
    let busy_full = r.busy_ns.iter().sum::<u64>() as f64 / 1e9 / (full * threads as f64).max(1e-9);
    if !why.is_empty() && recv_cpu_share < 0.7 * busy_full {
        why.push(format!(
            "the receive loop was busy {:.0}% of the run but on a CPU only {:.0}%: other work on its CPU held it off",
            busy_full * 100.0,
            recv_cpu_share * 100.0
        ));
    }
    let server_json = server.map(|st| {
        let cpu = st.cpu_after - st.cpu_before;
        let per = if delivered > 0 { cpu * 1e6 / delivered as f64 } else { 0.0 };
        json!({
            "pid": st.pid,
            "cpu_secs": cpu,
            // the run's CPU (the drain's work included) over the send window: an upper
            // estimate of how busy the server was while it was sent to
            "busy_share": cpu / s.duration_secs.max(1e-9),
            "busy_share_whole_run": cpu / st.secs.max(1e-9),
            "cpu_us_per_delivery": per,
            "cpu_secs_per_million_deliveries": per,
            "rss_before_bytes": st.rss_before,
            "rss_after_bytes": st.rss_after,
            "rss_per_connection_bytes": if r.connected > 0 { (st.rss_after as f64 - st.rss_before as f64) / r.connected as f64 } else { 0.0 },
        })
    });
    let seconds: Vec<Value> = r
        .seconds
        .iter()
        .map(|sec| {
            json!({
                "t": sec.t,
                "sent": sec.sent,
                "received": sec.received,
                "p50_ms": if sec.latency.is_empty() { 0.0 } else { ms(sec.latency.value_at_quantile(0.5)) },
                "p99_ms": if sec.latency.is_empty() { 0.0 } else { ms(sec.latency.value_at_quantile(0.99)) },
                "loadgen_busy": busy.get(sec.t).copied().unwrap_or(0.0),
            })
        })
        .collect();
    json!({
        "label": label,
        "scenario": s,
        "target": if plan.targets.is_empty() {
            plan.target.to_string()
        } else {
            plan.targets.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(",")
        },
        "command": command,
        "connections": {
            "ok": r.connected,
            "failed": r.failed,
            "ramp_secs": r.ramp_secs,
            "connect_rate_per_sec": if r.ramp_secs > 0.0 { r.connected as f64 / r.ramp_secs } else { 0.0 },
            "handshake_ms": latency_summary(&r.handshake),
        },
        "sent": sent,
        "offered_msgs_per_sec": if s.kind == crate::scenario::Kind::Group { s.rate_per_sec * s.groups as f64 } else if s.kind == crate::scenario::Kind::Single { s.rate_per_sec * plan.conns.len() as f64 } else { s.rate_per_sec },
        "expected_deliveries": expected,
        "delivered": delivered,
        "delivered_share": if expected > 0 { delivered as f64 / expected as f64 } else { 1.0 },
        "lost": lost,
        "refused": r.refused_sends(),
        "refused_gaps": r.refused_gaps,
        "late": late,
        "unaccounted": expected as i64 - (delivered + lost + late) as i64,
        "duplicates": r.duplicates,
        "senders_with_gaps": gaps_by_sender,
        "foreign_frames": r.foreign_frames,
        "deliveries_per_sec": deliveries_per_sec,
        "offered_deliveries_per_sec": expected as f64 / window,
        "delivery_latency_ms": latency_summary(&r.delivery),
        "fanout_completion_ms": latency_summary(&fan),
        "fanout_messages": fanned_messages,
        "fanout_incomplete": incomplete,
        "loadgen": {
            "cpu_secs": own_cpu,
            "wall_secs": wall_secs,
            "threads": threads,
            "window_cpu_secs": r.window_cpu_secs,
            "window_secs": r.window_secs,
            "cpu_utilisation": cpu_util,
            "recv_busy_max": busy_max,
            "recv_busy_mean": busy_mean,
            "recv_cpu_share": recv_cpu_share,
            "own_lag_ms": ms_summary(&r.own_lag),
            "unread_bytes": if r.unread.is_empty() { Value::Null } else { json!({
                "p50": r.unread.value_at_quantile(0.5),
                "p99": r.unread.value_at_quantile(0.99),
                "max": r.unread.max(),
            })},
            "send_lag_ms": ms_summary(&r.send_lag),
            "send_stalls": r.send_stalls,
            "reads": r.reads,
            "wakes": r.wakes,
            "frames_per_read": if r.reads > 0 { delivered as f64 / r.reads as f64 } else { 0.0 },
            "bound": !why.is_empty(),
            "bound_reasons": why,
            "ceiling": ceiling.cloned().unwrap_or(Value::Null),
        },
        "server": server_json,
        "seconds": seconds,
        "percentiles": percentile_points(&r.delivery).iter().map(|(p, v)| json!([p, v])).collect::<Vec<_>>(),
    })
}

pub fn print_table(v: &Value) {
    let l = &v["delivery_latency_ms"];
    let f = &v["fanout_completion_ms"];
    println!(
        "\n== {} / {} ==",
        v["label"].as_str().unwrap_or(""),
        v["scenario"]["name"].as_str().unwrap_or("")
    );
    println!(
        "connections      {} ok, {} failed, ramp {:.1}s ({:.0}/s), handshake p99 {} ms",
        v["connections"]["ok"],
        v["connections"]["failed"],
        v["connections"]["ramp_secs"].as_f64().unwrap_or(0.0),
        v["connections"]["connect_rate_per_sec"]
            .as_f64()
            .unwrap_or(0.0),
        v["connections"]["handshake_ms"]["p99"]
    );
    println!(
        "messages         {} sent, {} refused by the server (error frames); deliveries {} of {} expected ({:.2}%), lost {} (gaps), late {} (in flight at the end), duplicates {}",
        v["sent"],
        v["refused"],
        v["delivered"],
        v["expected_deliveries"],
        v["delivered_share"].as_f64().unwrap_or(0.0) * 100.0,
        v["lost"],
        v["late"],
        v["duplicates"]
    );
    println!(
        "throughput       {:.0} deliveries/s (offered {:.0}/s)",
        v["deliveries_per_sec"].as_f64().unwrap_or(0.0),
        v["offered_deliveries_per_sec"].as_f64().unwrap_or(0.0)
    );
    println!(
        "delivery ms      p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
        l["p50"], l["p90"], l["p99"], l["p999"], l["max"]
    );
    println!(
        "fan-out done ms  p50 {}  p99 {}  p99.9 {}  max {}  (incomplete {})",
        f["p50"], f["p99"], f["p999"], f["max"], v["fanout_incomplete"]
    );
    if let Some(sv) = v["server"].as_object() {
        println!(
            "server           {:.2} CPU s ({:.0}% of one core), {:.3} us CPU/delivery, RSS {:.1} MiB ({:.0} B/conn)",
            sv["cpu_secs"].as_f64().unwrap_or(0.0),
            sv["busy_share"].as_f64().unwrap_or(0.0) * 100.0,
            sv["cpu_us_per_delivery"].as_f64().unwrap_or(0.0),
            sv["rss_after_bytes"].as_f64().unwrap_or(0.0) / 1048576.0,
            sv["rss_per_connection_bytes"].as_f64().unwrap_or(0.0)
        );
    }
    let lg = &v["loadgen"];
    println!(
        "loadgen          receive loop busy {:.0}% (busiest second {:.0}%; on a CPU {:.0}% of the run), own lag p50 {} p99 {} ms, unread per read p50 {} p99 {} B, {:.1} frames/read; sends late p99 {} ms; CPU {:.0}% of {} thread(s)",
        lg["recv_busy_mean"].as_f64().unwrap_or(0.0) * 100.0,
        lg["recv_busy_max"].as_f64().unwrap_or(0.0) * 100.0,
        lg["recv_cpu_share"].as_f64().unwrap_or(0.0) * 100.0,
        lg["own_lag_ms"]["p50"],
        lg["own_lag_ms"]["p99"],
        lg["unread_bytes"]["p50"],
        lg["unread_bytes"]["p99"],
        lg["frames_per_read"].as_f64().unwrap_or(0.0),
        lg["send_lag_ms"]["p99"],
        lg["cpu_utilisation"].as_f64().unwrap_or(0.0) * 100.0,
        lg["threads"],
    );
    if let Some(c) = lg["ceiling"]["deliveries_per_sec"].as_f64() {
        println!("loadgen ceiling  {c:.0} deliveries/s on this machine (loadgen calibrate)");
    }
    if lg["bound"] == true {
        for why in lg["bound_reasons"].as_array().into_iter().flatten() {
            println!(
                "LOAD-GENERATOR-BOUND: {} (figures understate the server)",
                why.as_str().unwrap_or("")
            );
        }
    } else {
        println!("verdict          not load-generator-bound");
    }
}

const COLORS: [&str; 5] = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;")
}

/// Latency by percentile, x = 1/(1-p) on a log axis, one line per summary.
pub fn percentile_svg(summaries: &[Value]) -> String {
    let (w, h, ml, mb) = (760.0, 420.0, 70.0, 50.0);
    let ymax = summaries
        .iter()
        .flat_map(|s| s["percentiles"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p[1].as_f64())
        .fold(0.0f64, f64::max)
        .max(0.001)
        * 1.1;
    let x = |p: f64| ml + (1.0 / (1.0 - (p / 100.0).min(0.99999))).log10() / 5.0 * (w - ml - 20.0);
    let y = |v: f64| h - mb - v / ymax * (h - mb - 30.0);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/><text x="{}" y="18" text-anchor="middle" font-size="14">Delivery latency by percentile</text>"#,
        w / 2.0
    );
    for (i, lab) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]
        .iter()
        .enumerate()
    {
        let px = ml + i as f64 / 5.0 * (w - ml - 20.0);
        let _ = write!(
            svg,
            r##"<line x1="{px}" y1="30" x2="{px}" y2="{}" stroke="#ddd"/><text x="{px}" y="{}" text-anchor="middle">{lab}</text>"##,
            h - mb,
            h - mb + 16.0
        );
    }
    for i in 0..=5 {
        let v = ymax * i as f64 / 5.0;
        let py = y(v);
        let _ = write!(
            svg,
            r##"<line x1="{ml}" y1="{py}" x2="{}" y2="{py}" stroke="#eee"/><text x="{}" y="{}" text-anchor="end">{v:.2}</text>"##,
            w - 20.0,
            ml - 6.0,
            py + 4.0
        );
    }
    let _ = write!(
        svg,
        r#"<text x="16" y="{}" transform="rotate(-90 16 {})" text-anchor="middle">latency (ms)</text><text x="{}" y="{}" text-anchor="middle">percentile</text>"#,
        h / 2.0,
        h / 2.0,
        w / 2.0,
        h - 8.0
    );
    for (i, s) in summaries.iter().enumerate() {
        let pts: Vec<String> = s["percentiles"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|p| Some(format!("{:.1},{:.1}", x(p[0].as_f64()?), y(p[1].as_f64()?))))
            .collect();
        let c = COLORS[i % COLORS.len()];
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/><text x="{}" y="{}" fill="{c}">{}</text>"#,
            pts.join(" "),
            ml + 10.0,
            45.0 + 16.0 * i as f64,
            esc(s["label"].as_str().unwrap_or(""))
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Per-second p50/p99 (top) and deliveries/s (bottom), one colour per summary.
pub fn timeseries_svg(summaries: &[Value]) -> String {
    let (w, h, ml) = (760.0, 520.0, 70.0);
    let secs = |s: &Value| s["seconds"].as_array().cloned().unwrap_or_default();
    let tmax = summaries
        .iter()
        .map(|s| secs(s).len())
        .max()
        .unwrap_or(1)
        .max(2) as f64;
    let lmax = summaries
        .iter()
        .flat_map(secs)
        .filter_map(|p| p["p99_ms"].as_f64())
        .fold(0.0f64, f64::max)
        .max(0.001)
        * 1.1;
    let rmax = summaries
        .iter()
        .flat_map(secs)
        .filter_map(|p| p["received"].as_f64())
        .fold(0.0f64, f64::max)
        .max(1.0)
        * 1.1;
    let x = |t: f64| ml + t / (tmax - 1.0) * (w - ml - 20.0);
    let (top, mid, bot) = (40.0, 250.0, 480.0);
    let yl = |v: f64| mid - v / lmax * (mid - top);
    let yr = |v: f64| bot - v / rmax * (bot - mid - 30.0);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/><text x="{}" y="18" text-anchor="middle" font-size="14">Per second: delivery p50 (dashed) and p99 (solid), deliveries/s</text>"#,
        w / 2.0
    );
    for i in 0..=4 {
        let v = lmax * i as f64 / 4.0;
        let r = rmax * i as f64 / 4.0;
        let _ = write!(
            svg,
            r##"<line x1="{ml}" y1="{}" x2="{}" y2="{}" stroke="#eee"/><text x="{}" y="{}" text-anchor="end">{v:.2} ms</text>"##,
            yl(v),
            w - 20.0,
            yl(v),
            ml - 4.0,
            yl(v) + 4.0
        );
        let _ = write!(
            svg,
            r##"<line x1="{ml}" y1="{}" x2="{}" y2="{}" stroke="#eee"/><text x="{}" y="{}" text-anchor="end">{:.0}</text>"##,
            yr(r),
            w - 20.0,
            yr(r),
            ml - 4.0,
            yr(r) + 4.0,
            r
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">seconds since start</text>"#,
        w / 2.0,
        h - 8.0
    );
    for (i, s) in summaries.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let pts = |key: &str, f: &dyn Fn(f64) -> f64| -> String {
            secs(s)
                .iter()
                .filter_map(|p| {
                    Some(format!(
                        "{:.1},{:.1}",
                        x(p["t"].as_f64()?),
                        f(p[key].as_f64()?)
                    ))
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/>"#,
            pts("p99_ms", &yl)
        );
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{c}" stroke-width="1.5" stroke-dasharray="4 3" points="{}"/>"#,
            pts("p50_ms", &yl)
        );
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/>"#,
            pts("received", &yr)
        );
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" fill="{c}">{}</text>"#,
            ml + 10.0,
            top + 14.0 * (i as f64 + 1.0),
            esc(s["label"].as_str().unwrap_or(""))
        );
    }
    svg.push_str("</svg>");
    svg
}

pub fn write_outputs(dir: &Path, stem: &str, summaries: &[Value]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join(format!("{stem}.json")),
        serde_json::to_string_pretty(&json!({ "runs": summaries }))?,
    )?;
    std::fs::write(
        dir.join(format!("{stem}-percentiles.svg")),
        percentile_svg(summaries),
    )?;
    std::fs::write(
        dir.join(format!("{stem}-timeseries.svg")),
        timeseries_svg(summaries),
    )?;
    Ok(())
}

fn get(v: &Value, path: &[&str]) -> Option<f64> {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_f64()
}

/// The summary ratios are taken against: ringchat's when present (whatever the order the
/// servers ran in), else the first.
pub fn base_index(summaries: &[Value]) -> usize {
    summaries
        .iter()
        .position(|s| s["label"] == "ringchat")
        .unwrap_or(0)
}

/// A markdown table of the summaries with ratios base / peer (base: ringchat).
pub fn compare_markdown(summaries: &[Value]) -> String {
    let mut md = String::new();
    let bi = base_index(summaries);
    let base = &summaries[bi];
    let base_label = base["label"].as_str().unwrap_or("");
    let peers: Vec<&Value> = summaries
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != bi)
        .map(|(_, s)| s)
        .collect();
    let rows: [(&str, &[&str]); 10] = [
        ("deliveries/s", &["deliveries_per_sec"]),
        ("delivered share", &["delivered_share"]),
        ("p50 delivery (ms)", &["delivery_latency_ms", "p50"]),
        ("p99 delivery (ms)", &["delivery_latency_ms", "p99"]),
        ("p99.9 delivery (ms)", &["delivery_latency_ms", "p999"]),
        (
            "p99 fan-out completion (ms)",
            &["fanout_completion_ms", "p99"],
        ),
        (
            "server CPU s per 1M deliveries",
            &["server", "cpu_secs_per_million_deliveries"],
        ),
        (
            "server RSS per connection (B)",
            &["server", "rss_per_connection_bytes"],
        ),
        (
            "loadgen receive loop busy (busiest s)",
            &["loadgen", "recv_busy_max"],
        ),
        ("lost / late / duplicates", &["lost"]),
    ];
    let _ = write!(md, "| metric | {base_label} |");
    for s in &peers {
        let _ = write!(md, " {} |", s["label"].as_str().unwrap_or(""));
    }
    for s in &peers {
        let _ = write!(
            md,
            " {base_label} / {} |",
            s["label"].as_str().unwrap_or("")
        );
    }
    md.push('\n');
    md.push_str(&"|---".repeat(2 + peers.len() * 2));
    md.push_str("|\n");
    let all: Vec<&Value> = std::iter::once(base).chain(peers.iter().copied()).collect();
    for (name, path) in rows {
        let _ = write!(md, "| {name} |");
        for s in &all {
            if name.starts_with("lost") {
                let _ = write!(md, " {} / {} / {} |", s["lost"], s["late"], s["duplicates"]);
            } else if name.starts_with("server RSS") && get(s, path).is_some_and(|v| v < 0.0) {
                // the server freed more (e.g. provisioning buffers) than the connections took
                md.push_str(" n/a (RSS fell) |");
            } else {
                match get(s, path) {
                    Some(v) => {
                        let _ = write!(md, " {v:.3} |");
                    }
                    None => md.push_str(" n/a |"),
                }
            }
        }
        for s in &peers {
            match (get(base, path), get(s, path)) {
                (Some(a), Some(b))
                    if b != 0.0
                        && !name.starts_with("lost")
                        && !name.starts_with("loadgen")
                        && a >= 0.0
                        && b >= 0.0 =>
                {
                    let _ = write!(md, " {:.2}x |", a / b);
                }
                _ => md.push_str(" - |"),
            }
        }
        md.push('\n');
    }
    let _ = write!(md, "| load-generator-bound |");
    for s in &all {
        let lg = &s["loadgen"];
        if lg["bound"] == true {
            let why: Vec<&str> = lg["bound_reasons"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|w| w.as_str())
                .collect();
            let _ = write!(md, " **yes**: {} |", why.join("; "));
        } else {
            md.push_str(" no |");
        }
    }
    for _ in &peers {
        md.push_str(" - |");
    }
    md.push('\n');
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(label: &str, per_sec: f64) -> Value {
        json!({ "label": label, "deliveries_per_sec": per_sec, "lost": 0, "late": 0, "duplicates": 0, "loadgen": { "bound": false } })
    }

    #[test]
    fn ratios_are_ringchat_over_the_peer_whatever_the_order() {
        let md = compare_markdown(&[run("uws", 200.0), run("ringchat", 100.0)]);
        let head = md.lines().next().unwrap();
        assert_eq!(head, "| metric | ringchat | uws | ringchat / uws |");
        let row = md
            .lines()
            .find(|l| l.starts_with("| deliveries/s"))
            .unwrap();
        assert!(row.ends_with("| 100.000 | 200.000 | 0.50x |"), "{row}");
    }
}
