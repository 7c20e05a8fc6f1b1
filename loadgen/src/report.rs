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

#[allow(clippy::too_many_arguments)]
pub fn summarize(
    plan: &Plan,
    label: &str,
    r: &PartResult,
    wall_secs: f64,
    own_cpu: f64,
    threads: usize,
    server: Option<&ServerStats>,
    command: &str,
) -> Value {
    let s = &plan.scenario;
    let members: Vec<usize> = plan.rooms.iter().map(|r| r.members).collect();
    let sent: u64 = r.sent_per_sender.values().sum();
    let mut expected: u64 = 0;
    let mut gaps_by_sender = 0u64;
    for sp in &plan.senders {
        let n = *r.sent_per_sender.get(&sp.conn).unwrap_or(&0);
        let e = n * (members[sp.room] as u64 - 1);
        let d = *r.delivered_per_sender.get(&sp.conn).unwrap_or(&0);
        expected += e;
        if d < e {
            gaps_by_sender += 1;
        }
    }
    let delivered: u64 = r.delivered_per_sender.values().sum();
    let mut fan = hist();
    let mut incomplete = 0u64;
    for (room, _, count, max) in &r.fanout {
        if *count as usize + 1 >= members[*room as usize] {
            fan.saturating_record(*max);
        } else {
            incomplete += 1;
        }
    }
    let fanned_messages = r.fanout.len() as u64;
    let lost = expected.saturating_sub(delivered);
    let window = s.duration_secs.max(1e-9);
    let deliveries_per_sec = delivered as f64 / window;
    // busy share of the loadgen's threads while measuring (ramp and provisioning excluded)
    let cpu_util = r.window_cpu_secs / (r.window_secs * threads as f64).max(1e-9);
    let server_json = server.map(|st| {
        let cpu = st.cpu_after - st.cpu_before;
        json!({
            "pid": st.pid,
            "cpu_secs": cpu,
            "cpu_us_per_delivery": if delivered > 0 { cpu * 1e6 / delivered as f64 } else { 0.0 },
            "cpu_secs_per_million_deliveries": if delivered > 0 { cpu * 1e6 / delivered as f64 } else { 0.0 },
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
        "lost": lost,
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
            "bound": cpu_util > 0.85,
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
        "messages         {} sent, deliveries {} of {} expected, lost {}, duplicates {}",
        v["sent"], v["delivered"], v["expected_deliveries"], v["lost"], v["duplicates"]
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
            "server           {:.2} CPU s, {:.3} us CPU/delivery, RSS {:.1} MiB ({:.0} B/conn)",
            sv["cpu_secs"].as_f64().unwrap_or(0.0),
            sv["cpu_us_per_delivery"].as_f64().unwrap_or(0.0),
            sv["rss_after_bytes"].as_f64().unwrap_or(0.0) / 1048576.0,
            sv["rss_per_connection_bytes"].as_f64().unwrap_or(0.0)
        );
    }
    let lg = &v["loadgen"];
    println!(
        "loadgen          {:.2} CPU s in the {:.1} s measured window on {} thread(s): {:.0}% busy{}",
        lg["window_cpu_secs"].as_f64().unwrap_or(0.0),
        lg["window_secs"].as_f64().unwrap_or(0.0),
        lg["threads"],
        lg["cpu_utilisation"].as_f64().unwrap_or(0.0) * 100.0,
        if lg["bound"] == true {
            "  << LOAD-GENERATOR-BOUND: figures understate the server"
        } else {
            ""
        }
    );
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

/// A markdown table of the summaries with ratios against the first (ringchat).
pub fn compare_markdown(summaries: &[Value]) -> String {
    let mut md = String::new();
    let base = &summaries[0];
    let rows: [(&str, &[&str], bool); 9] = [
        ("deliveries/s", &["deliveries_per_sec"], true),
        ("p50 delivery (ms)", &["delivery_latency_ms", "p50"], false),
        ("p99 delivery (ms)", &["delivery_latency_ms", "p99"], false),
        (
            "p99.9 delivery (ms)",
            &["delivery_latency_ms", "p999"],
            false,
        ),
        (
            "p99 fan-out completion (ms)",
            &["fanout_completion_ms", "p99"],
            false,
        ),
        (
            "server CPU s per 1M deliveries",
            &["server", "cpu_secs_per_million_deliveries"],
            false,
        ),
        (
            "server RSS per connection (B)",
            &["server", "rss_per_connection_bytes"],
            false,
        ),
        (
            "loadgen busy while measuring",
            &["loadgen", "cpu_utilisation"],
            false,
        ),
        ("lost / duplicates", &["lost"], false),
    ];
    let _ = write!(md, "| metric |");
    for s in summaries {
        let _ = write!(md, " {} |", s["label"].as_str().unwrap_or(""));
    }
    for s in &summaries[1..] {
        let _ = write!(md, " ringchat / {} |", s["label"].as_str().unwrap_or(""));
    }
    md.push('\n');
    md.push_str(&"|---".repeat(1 + summaries.len() * 2 - 1));
    md.push_str("|\n");
    for (name, path, _higher_better) in rows {
        let _ = write!(md, "| {name} |");
        for s in summaries {
            if name.starts_with("lost") {
                let _ = write!(md, " {} / {} |", s["lost"], s["duplicates"]);
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
        for s in &summaries[1..] {
            match (get(base, path), get(s, path)) {
                (Some(a), Some(b))
                    if b != 0.0 && !name.starts_with("lost") && a >= 0.0 && b >= 0.0 =>
                {
                    let _ = write!(md, " {:.2}x |", a / b);
                }
                _ => md.push_str(" - |"),
            }
        }
        md.push('\n');
    }
    md
}
