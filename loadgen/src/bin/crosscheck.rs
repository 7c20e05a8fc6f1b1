//! `crosscheck`: a second, deliberately plain load client, to check loadgen's figures.
//!
//! loadgen is an epoll loop tuned to outrun the servers it measures; an instrument can be
//! the bottleneck it measures, so every peak it reports is checked with this client, which
//! shares none of its receive code: tokio + tokio-tungstenite, one task per connection
//! reading frames through tungstenite, one task per sender writing on a timer, a
//! `String` search per frame. It reuses only loadgen's *plan* (the accounts, tokens and
//! rooms `loadgen plan` provisioned), not its schedule: it offers the deliveries/s it is
//! told, spread evenly over the plan's senders, open-loop (each message carries its intended
//! send time, and latency is measured from it).
//!
//! Usage:
//!   crosscheck --plan PLAN.json --deliveries-per-sec N [--secs 10] [--drain-secs 3]
//!              [--server-pid PID] [--label NAME] [--out FILE.json] [--threads 1]
//!
//! It reports what arrived within the send window and after the drain, duplicates,
//! latency percentiles, its own CPU share (above ~90% its figures are a lower bound: the
//! client was the limit) and, with `--server-pid`, the server's CPU per delivery.
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const HELP: &str = "crosscheck: a plain tokio-tungstenite client that checks loadgen's figures

USAGE:
  crosscheck --plan PLAN.json --deliveries-per-sec N [options]

  --plan FILE              accounts and rooms, as `loadgen plan --out FILE` writes them
  --deliveries-per-sec N   offered deliveries/s (messages/s x recipients), spread evenly
                           over the plan's senders
  --secs S                 send window (default 10)
  --drain-secs S           wait after the window for what is in flight (default 3)
  --payload-bytes N        message content size (default 100)
  --server-pid PID         report the server's CPU per delivery and busy share
  --label NAME             the server's name in the report (default: server)
  --out FILE               also write the report as JSON
  --threads N              tokio worker threads (default 1)
";

#[derive(Deserialize)]
struct Plan {
    target: std::net::SocketAddr,
    #[serde(default)]
    targets: Vec<std::net::SocketAddr>,
    peer: bool,
    conns: Vec<ConnPlan>,
    senders: Vec<SenderPlan>,
    rooms: Vec<RoomPlan>,
}

#[derive(Deserialize)]
struct ConnPlan {
    token: String,
    room: usize,
}

#[derive(Deserialize)]
struct SenderPlan {
    conn: usize,
    room: usize,
}

#[derive(Deserialize)]
struct RoomPlan {
    conversation_id: String,
    members: usize,
}

struct Opts {
    plan: String,
    rate: f64,
    secs: f64,
    drain: f64,
    payload: usize,
    server_pid: Option<u32>,
    label: String,
    out: Option<String>,
    threads: usize,
}

fn parse_args() -> Result<Opts, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() || args.iter().any(|a| a == "-h" || a == "--help") {
        print!("{HELP}");
        std::process::exit(0);
    }
    let get = |k: &str| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let num = |k: &str, d: f64| -> Result<f64, String> {
        get(k).map_or(Ok(d), |v| v.parse().map_err(|e| format!("{k} {v:?}: {e}")))
    };
    let o = Opts {
        plan: get("--plan").ok_or("--plan FILE is required")?,
        rate: num("--deliveries-per-sec", f64::NAN)?,
        secs: num("--secs", 10.0)?,
        drain: num("--drain-secs", 3.0)?,
        payload: num("--payload-bytes", 100.0)? as usize,
        server_pid: get("--server-pid")
            .map(|v| v.parse().map_err(|e| format!("--server-pid {v:?}: {e}")))
            .transpose()?,
        label: get("--label").unwrap_or_else(|| "server".into()),
        out: get("--out"),
        threads: num("--threads", 1.0)?.max(1.0) as usize,
    };
    if o.rate.is_nan() || o.rate <= 0.0 {
        return Err("--deliveries-per-sec N (> 0) is required".into());
    }
    if o.secs.is_nan() || o.secs <= 0.0 || o.drain.is_nan() || o.drain < 0.0 {
        return Err("--secs must be > 0 and --drain-secs >= 0".into());
    }
    Ok(o)
}

fn main() {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("crosscheck: {e} (see --help)");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(o.threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(o)) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("crosscheck: {e}");
            std::process::exit(1);
        }
    }
}

/// CPU seconds (user + system) of a process, from /proc (USER_HZ is 100 on Linux).
fn cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
}

type Ws = WebSocketStream<TcpStream>;

async fn connect(plan: &Plan, i: usize) -> Result<Ws, String> {
    let target = if plan.targets.is_empty() {
        plan.target
    } else {
        plan.targets[i % plan.targets.len()]
    };
    let tcp = TcpStream::connect(target)
        .await
        .map_err(|e| format!("connect {target}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let url = format!("ws://{target}/ws?token={}", plan.conns[i].token);
    let (mut ws, _) = tokio_tungstenite::client_async(url, tcp)
        .await
        .map_err(|e| format!("upgrade: {e}"))?;
    if plan.peer {
        let room = &plan.rooms[plan.conns[i].room].conversation_id;
        ws.send(Message::text(format!(
            r#"{{"type":"join","data":{{"conversationId":"{room}"}}}}"#
        )))
        .await
        .map_err(|e| format!("join: {e}"))?;
    }
    Ok(ws)
}

/// What one connection received.
struct Got {
    hist: Histogram<u64>,
    received: u64,
    in_window: u64,
    duplicates: u64,
}

impl Got {
    fn new() -> Got {
        Got {
            // 1 us to 10 min, 3 significant digits
            hist: Histogram::new_with_bounds(1_000, 600_000_000_000, 3).expect("bounds"),
            received: 0,
            in_window: 0,
            duplicates: 0,
        }
    }

    fn add(&mut self, other: &Got) -> Result<(), String> {
        self.hist.add(&other.hist).map_err(|e| e.to_string())?;
        self.received += other.received;
        self.in_window += other.in_window;
        self.duplicates += other.duplicates;
        Ok(())
    }
}

/// `CC|sender|k|intended_ns|` in a frame.
fn marker(text: &str) -> Option<(usize, u64, u64)> {
    let at = text.find("CC|")? + 3;
    let mut it = text[at..].splitn(4, '|');
    let s = it.next()?.parse().ok()?;
    let k = it.next()?.parse().ok()?;
    let t = it.next()?.parse().ok()?;
    Some((s, k, t))
}

async fn run(o: Opts) -> Result<(), String> {
    let plan: Plan = serde_json::from_str(
        &std::fs::read_to_string(&o.plan).map_err(|e| format!("reading {}: {e}", o.plan))?,
    )
    .map_err(|e| format!("{}: not a loadgen plan: {e}", o.plan))?;
    let plan = Arc::new(plan);
    let n = plan.conns.len();
    if plan.senders.is_empty() {
        return Err("the plan has no senders".into());
    }
    // the schedule: every sender at the same interval, staggered evenly
    let fanout = |room: usize| plan.rooms[room].members.saturating_sub(1) as f64;
    let mean_fanout =
        plan.senders.iter().map(|s| fanout(s.room)).sum::<f64>() / plan.senders.len() as f64;
    let msgs_per_sec = o.rate / mean_fanout.max(1.0);
    let nsend = plan.senders.len();
    let period_ns = (nsend as f64 / msgs_per_sec * 1e9) as u64;
    let mut sender_of = vec![usize::MAX; n];
    for (si, s) in plan.senders.iter().enumerate() {
        sender_of[s.conn] = si;
    }

    // connect everyone, 64 at a time
    eprintln!("[crosscheck] {}: connecting {n}", o.label);
    let t0 = Instant::now();
    let results: Vec<(usize, Result<Ws, String>)> = futures_util::stream::iter(0..n)
        .map(|i| {
            let plan = plan.clone();
            async move { (i, connect(&plan, i).await) }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let mut socks: Vec<Option<Ws>> = (0..n).map(|_| None).collect();
    let mut failed = 0;
    for (i, r) in results {
        match r {
            Ok(ws) => socks[i] = Some(ws),
            Err(e) => {
                failed += 1;
                if failed <= 5 {
                    eprintln!("[crosscheck] connection {i}: {e}");
                }
            }
        }
    }
    eprintln!(
        "[crosscheck] {} connected, {failed} failed in {:.1} s; offering {:.0} deliveries/s ({:.1} msg/s) for {} s",
        n - failed,
        t0.elapsed().as_secs_f64(),
        o.rate,
        msgs_per_sec,
        o.secs
    );

    let base = Instant::now();
    let ns = move |t: Instant| t.duration_since(base).as_nanos() as u64;
    let start = Instant::now() + Duration::from_millis(500);
    let end = start + Duration::from_secs_f64(o.secs);
    let stop = end + Duration::from_secs_f64(o.drain);
    let sent = Arc::new(AtomicU64::new(0));
    let expected = Arc::new(AtomicU64::new(0));
    let received_live = Arc::new(AtomicU64::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let pad = o.payload;

    let mut readers = Vec::with_capacity(n);
    let mut writers = Vec::new();
    for (i, ws) in socks.into_iter().enumerate() {
        let Some(ws) = ws else { continue };
        let (mut sink, mut stream) = ws.split();
        let (received_live, closed) = (received_live.clone(), closed.clone());
        let me = sender_of[i];
        readers.push(tokio::spawn(async move {
            let mut got = Got::new();
            let mut seen: Vec<u64> = Vec::new();
            let deadline = tokio::time::sleep_until(stop.into());
            tokio::pin!(deadline);
            loop {
                let msg = tokio::select! {
                    _ = &mut deadline => break,
                    m = stream.next() => m,
                };
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => {
                        closed.fetch_add(1, Relaxed);
                        break;
                    }
                };
                let now = Instant::now();
                let Some((s, k, t)) = marker(text.as_str()) else {
                    continue;
                };
                if s == me || s >= nsend {
                    continue;
                }
                let gid = k as usize * nsend + s;
                if seen.len() <= gid / 64 {
                    seen.resize(gid / 64 + 1, 0);
                }
                let bit = 1u64 << (gid % 64);
                if seen[gid / 64] & bit != 0 {
                    got.duplicates += 1;
                    continue;
                }
                seen[gid / 64] |= bit;
                got.received += 1;
                if now <= end {
                    got.in_window += 1;
                }
                got.hist
                    .saturating_record(ns(now).saturating_sub(t).max(1_000));
                received_live.fetch_add(1, Relaxed);
            }
            got
        }));
        let si = sender_of[i];
        if si == usize::MAX {
            // keep the write half alive (dropping it would not close the socket, but the
            // connection stays as every client's: open both ways)
            writers.push(tokio::spawn(async move {
                tokio::time::sleep_until(stop.into()).await;
                drop(sink);
            }));
            continue;
        }
        let room = plan.senders[si].room;
        let conv = plan.rooms[room].conversation_id.clone();
        let fan = fanout(room) as u64;
        let (sent, expected) = (sent.clone(), expected.clone());
        let offset = Duration::from_secs_f64(si as f64 / msgs_per_sec);
        writers.push(tokio::spawn(async move {
            let mut k = 0u64;
            loop {
                let intended = start + offset + Duration::from_nanos(period_ns * k);
                if intended >= end {
                    break;
                }
                tokio::time::sleep_until(intended.into()).await;
                let mut content = format!("CC|{si}|{k}|{}|", ns(intended));
                while content.len() < pad {
                    content.push('x');
                }
                let frame = format!(
                    r#"{{"type":"send-message","data":{{"conversationId":"{conv}","content":"{content}","messageType":"text","tempMessageId":"cc-{}-{si}-{k}"}},"timestamp":0}}"#,
                    ns(start)
                );
                if sink.send(Message::text(frame)).await.is_err() {
                    break;
                }
                sent.fetch_add(1, Relaxed);
                expected.fetch_add(fan, Relaxed);
                k += 1;
            }
            tokio::time::sleep_until(stop.into()).await;
            drop(sink);
        }));
    }

    // progress, and the CPU of both sides over the send window
    tokio::time::sleep_until(start.into()).await;
    let me = std::process::id().to_string();
    let server = o.server_pid.map(|p| p.to_string());
    let (my_cpu0, srv_cpu0) = (cpu_secs(&me), server.as_deref().and_then(cpu_secs));
    let mut last = (0, 0);
    let mut tick = tokio::time::interval_at(
        (start + Duration::from_secs(1)).into(),
        Duration::from_secs(1),
    );
    let mut at_end = None;
    loop {
        let t = tick.tick().await.into_std();
        if at_end.is_none() && t >= end {
            at_end = Some((
                cpu_secs(&me),
                server.as_deref().and_then(cpu_secs),
                received_live.load(Relaxed),
            ));
        }
        let (s, r) = (sent.load(Relaxed), received_live.load(Relaxed));
        eprintln!(
            "[crosscheck] {}: t={:>3.0} s  sent {}/s  received {}/s",
            o.label,
            t.duration_since(start).as_secs_f64(),
            s - last.0,
            r - last.1
        );
        last = (s, r);
        if t >= stop {
            break;
        }
    }
    let mut total = Got::new();
    for r in readers {
        total.add(&r.await.map_err(|e| e.to_string())?)?;
    }
    for w in writers {
        let _ = w.await;
    }
    let (sent, expected) = (sent.load(Relaxed), expected.load(Relaxed));
    let share = |x: u64| {
        if expected > 0 {
            x as f64 / expected as f64
        } else {
            0.0
        }
    };
    let (my_cpu1, srv_cpu1, _) = at_end.unwrap_or((None, None, 0));
    let client_cpu = my_cpu0.zip(my_cpu1).map(|(a, b)| (b - a) / o.secs);
    let server_cpu = srv_cpu0.zip(srv_cpu1).map(|(a, b)| b - a);
    let q = |p: f64| total.hist.value_at_quantile(p) as f64 / 1e6;
    let client_bound = client_cpu.is_some_and(|c| c >= 0.9);
    let report = json!({
        "kind": "crosscheck",
        "client": "crosscheck (tokio + tokio-tungstenite, one task per connection)",
        "label": o.label,
        "plan": o.plan,
        "connections": { "planned": n, "failed": failed, "closed_early": closed.load(Relaxed) },
        "offered_deliveries_per_sec": o.rate,
        "messages_per_sec": msgs_per_sec,
        "secs": o.secs,
        "drain_secs": o.drain,
        "messages_sent": sent,
        "expected_deliveries": expected,
        "received": total.received,
        "received_in_window": total.in_window,
        "duplicates": total.duplicates,
        "missing_after_drain": expected.saturating_sub(total.received),
        "delivered_share": share(total.received),
        "in_window_share": share(total.in_window),
        "deliveries_per_sec_in_window": total.in_window as f64 / o.secs,
        "latency_ms": {
            "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p999": q(0.999),
            "max": total.hist.max() as f64 / 1e6, "mean": total.hist.mean() / 1e6,
        },
        "client_cpu_share": client_cpu,
        "client_bound": client_bound,
        "server_busy_share": server_cpu.map(|c| c / o.secs),
        "server_cpu_us_per_delivery": server_cpu
            .filter(|_| total.in_window > 0)
            .map(|c| c * 1e6 / total.in_window as f64),
    });
    println!(
        "crosscheck {}: offered {:.0}/s, {} messages, delivered {:.2}% ({:.2}% in the window), {} duplicates, p50 {:.2} p99 {:.2} p99.9 {:.2} ms; client CPU {}{}; server {}",
        o.label,
        o.rate,
        sent,
        share(total.received) * 100.0,
        share(total.in_window) * 100.0,
        total.duplicates,
        q(0.5),
        q(0.99),
        q(0.999),
        client_cpu.map_or("n/a".into(), |c| format!("{:.0}%", c * 100.0)),
        if client_bound { " (the client was the limit: figures are a lower bound)" } else { "" },
        match (server_cpu, report["server_cpu_us_per_delivery"].as_f64()) {
            (Some(c), Some(u)) => format!("{:.0}% busy, {u:.3} us CPU per delivery", c / o.secs * 100.0),
            _ => "CPU not measured".into(),
        }
    );
    if let Some(out) = &o.out {
        std::fs::write(out, serde_json::to_string_pretty(&report).expect("json"))
            .map_err(|e| format!("writing {out}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::marker;

    #[test]
    fn a_marker_is_read_from_any_server_s_json() {
        let f = r#"{"data":{"message":{"content":"CC|12|345|6789|xxxx","seqId":3}},"type":"new-message"}"#;
        assert_eq!(marker(f), Some((12, 345, 6789)));
        assert_eq!(marker(r#"{"type":"connected"}"#), None);
        assert_eq!(marker("CC|1|x|3|"), None);
    }
}
