//! Running one part of a plan: connect (ramp), wait for the common start, send on the
//! open-loop schedule, receive and measure, account, report.
//!
//! Threads of a part (one process):
//! - `threads` receive threads (`lg-io-i`), each owning its connections and one
//!   [`Receiver`](crate::recv::Receiver): it ramps its connections (blocking connect and
//!   handshake), then runs an edge-triggered epoll loop (mio) until the end of the drain;
//! - one sender thread (`lg-send`) holding a duplicate of each sender's socket, which
//!   writes every message at its *intended* time (a precise sleep, timer slack 1 us) whatever
//!   the server or the receive loops do, so a stall shows up as latency instead of hiding
//!   as a lower send rate (no coordinated omission), and the receive loops' load cannot
//!   delay the sends.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use mio::{Events, Interest, Poll, Token};

use crate::clock::now_ns;
use crate::plan::Plan;
use crate::recv::Receiver;
use crate::stats::{PartResult, Second};

/// Shared between the threads of a process.
pub struct Shared {
    pub connected: AtomicUsize,
    pub failed: AtomicUsize,
    pub sent: AtomicU64,
    pub received: AtomicU64,
    /// The common start (CLOCK_MONOTONIC ns); 0 until known.
    pub start_ns: AtomicU64,
    /// The largest p99 (ns) of a receive thread's last full second, for the live line.
    pub recent_p99: AtomicU64,
}

impl Shared {
    pub fn new() -> Arc<Shared> {
        Arc::new(Shared {
            connected: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            start_ns: AtomicU64::new(0),
            recent_p99: AtomicU64::new(0),
        })
    }
}

/// Connects to the target from a loopback source address (spreading ephemeral ports).
pub fn connect_std(
    target: SocketAddr,
    src: usize,
    sources: usize,
) -> std::io::Result<std::net::TcpStream> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(target), Type::STREAM, None)?;
    if target.ip().is_loopback() && target.is_ipv4() && sources > 0 {
        let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (src % sources) as u8));
        s.bind(&SocketAddr::new(ip, 0).into())?;
    }
    s.set_nodelay(true)?;
    s.connect(&target.into())?;
    Ok(s.into())
}

/// The WebSocket upgrade on a blocking socket; returns the bytes that followed the 101.
fn handshake(
    stream: &mut std::net::TcpStream,
    target: SocketAddr,
    token: &str,
) -> anyhow::Result<Vec<u8>> {
    let req = format!(
        "GET /ws?token={token} HTTP/1.1\r\nhost: {target}\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-key: bG9hZGdlbi1rZXktMDAwMA==\r\nsec-websocket-version: 13\r\n\r\n"
    );
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(req.as_bytes())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk)?;
        anyhow::ensure!(n > 0, "closed during the handshake");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]);
            anyhow::ensure!(
                head.starts_with("HTTP/1.1 101"),
                "upgrade refused: {}",
                head.lines().next().unwrap_or("")
            );
            stream.set_read_timeout(None)?;
            return Ok(buf[end + 4..].to_vec());
        }
    }
}

/// A masked client text frame (mask key 0: legal, and XOR-free).
pub fn client_text(payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 14);
    f.push(0x81);
    if payload.len() < 126 {
        f.push(0x80 | payload.len() as u8);
    } else if payload.len() <= 65535 {
        f.push(0x80 | 126);
        f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    } else {
        f.push(0x80 | 127);
        f.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    }
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend_from_slice(payload);
    f
}

/// Messages sender `sp` sends in the window (its schedule is fixed in advance).
pub fn scheduled(sp: &crate::plan::SenderPlan, duration_ns: u64) -> u64 {
    if sp.offset_ns >= duration_ns || sp.interval_ns == 0 {
        return 0;
    }
    (duration_ns - sp.offset_ns - 1) / sp.interval_ns + 1
}

/// One past the largest gid per room: the size of the bitsets and fan-out arrays.
fn gids_per_room(plan: &Plan) -> Vec<u64> {
    let dur = (plan.scenario.duration_secs * 1e9) as u64;
    let mut g = vec![0u64; plan.rooms.len()];
    for sp in &plan.senders {
        let n = scheduled(sp, dur);
        if n > 0 {
            g[sp.room] = g[sp.room].max((n - 1) * sp.stride + sp.slot + 1);
        }
    }
    g
}

/// Runs the connections `mine` of the plan; `ready` is called once all are connected, and
/// must arrange for `shared.start_ns` to be set.
pub fn run_part(
    plan: Arc<Plan>,
    mine: Vec<usize>,
    shared: Arc<Shared>,
    ready: impl FnOnce(),
    progress: bool,
) -> PartResult {
    let s = &plan.scenario;
    let threads = s.threads.min(mine.len()).max(1);
    let mut per_thread: Vec<Vec<usize>> = vec![Vec::new(); threads];
    for (i, c) in mine.iter().enumerate() {
        per_thread[i % threads].push(*c);
    }
    let total = mine.len();
    let ramp_each = s.ramp_per_sec / (threads as f64 * s.processes as f64);
    let mut sender_of = vec![usize::MAX; plan.conns.len()];
    for (i, sp) in plan.senders.iter().enumerate() {
        sender_of[sp.conn] = i;
    }
    let sender_of = Arc::new(sender_of);
    let (wtx, wrx) = mpsc::channel();
    let handles: Vec<_> = per_thread
        .into_iter()
        .enumerate()
        .map(|(t, conns)| {
            let (plan, shared, sender_of, wtx) =
                (plan.clone(), shared.clone(), sender_of.clone(), wtx.clone());
            std::thread::Builder::new()
                .name(format!("lg-io-{t}"))
                .spawn(move || thread_main(plan, conns, shared, ramp_each, &sender_of, wtx))
                .expect("spawn io thread")
        })
        .collect();
    drop(wtx);
    // wait for the ramp
    let ramp_start = now_ns();
    let mut last = 0;
    while shared.connected.load(Relaxed) + shared.failed.load(Relaxed) < total {
        std::thread::sleep(Duration::from_millis(50));
        let c = shared.connected.load(Relaxed);
        if progress && c / 1000 != last / 1000 {
            eprintln!("[ramp] {c}/{total} connected");
            last = c;
        }
    }
    let ramp_secs = (now_ns() - ramp_start) as f64 / 1e9;
    // each receive thread hands over its senders' sockets once, after its ramp
    let writers: Vec<(usize, std::net::TcpStream)> = wrx.iter().take(threads).flatten().collect();
    ready();
    let (window_cpu0, _) = crate::clock::cpu_seconds();
    let window_start = now_ns();
    let sender = {
        let (plan, shared) = (plan.clone(), shared.clone());
        std::thread::Builder::new()
            .name("lg-send".into())
            .spawn(move || sender_main(&plan, writers, &shared))
            .expect("spawn sender thread")
    };
    // live progress while running
    let mut prev = (0, 0);
    while handles.iter().any(|h| !h.is_finished()) {
        std::thread::sleep(Duration::from_millis(1000));
        if !progress || shared.start_ns.load(Relaxed) == 0 {
            continue;
        }
        let (sent, recv) = (shared.sent.load(Relaxed), shared.received.load(Relaxed));
        let p99 = shared.recent_p99.swap(0, Relaxed);
        eprintln!(
            "[run] conns {} | sent {}/s | recv {}/s | p99 {:.2} ms",
            shared.connected.load(Relaxed),
            sent - prev.0,
            recv - prev.1,
            p99 as f64 / 1e6
        );
        prev = (sent, recv);
    }
    let mut result = PartResult {
        window_cpu_secs: crate::clock::cpu_seconds().0 - window_cpu0,
        window_secs: (now_ns() - window_start) as f64 / 1e9,
        ramp_secs,
        ..PartResult::default()
    };
    for h in handles {
        result.merge(h.join().expect("io thread"));
    }
    result.merge(sender.join().expect("sender thread"));
    result.connected = shared.connected.load(Relaxed);
    result.failed = shared.failed.load(Relaxed);
    result
}

/// A receive thread: ramp, hand the senders' sockets over, receive until the end of the
/// drain, account.
fn thread_main(
    plan: Arc<Plan>,
    conns: Vec<usize>,
    shared: Arc<Shared>,
    ramp_per_sec: f64,
    sender_of: &[usize],
    writers: mpsc::Sender<Vec<(usize, std::net::TcpStream)>>,
) -> PartResult {
    let s = &plan.scenario;
    let mut out = PartResult {
        threads: 1,
        ..PartResult::default()
    };
    let mut poll = match Poll::new() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("loadgen: cannot create a poll: {e}");
            shared.failed.fetch_add(conns.len(), Relaxed);
            let _ = writers.send(Vec::new());
            return out;
        }
    };
    let mut rx = Receiver::new(plan.rooms.len());
    let mut mine_writers = Vec::new();
    // paced by schedule (connection i at ramp_start + i/rate), sleeping only when ahead
    let gap_ns = (1e9 / ramp_per_sec.max(1.0)) as u64;
    let ramp_start = now_ns();
    for (i, &c) in conns.iter().enumerate() {
        let due = ramp_start + i as u64 * gap_ns;
        let now = now_ns();
        if due > now + 200_000 {
            std::thread::sleep(Duration::from_nanos(due - now));
        }
        let t0 = now_ns();
        let target = plan.target_of(c);
        let conn = &plan.conns[c];
        let attempt = (|| -> anyhow::Result<(std::net::TcpStream, Vec<u8>)> {
            let mut st = connect_std(target, c, s.source_addrs)?;
            let leftover = handshake(&mut st, target, &conn.token)?;
            if plan.peer {
                let join = format!(
                    r#"{{"type":"join","data":{{"conversationId":"{}"}}}}"#,
                    plan.rooms[conn.room].conversation_id
                );
                st.write_all(&client_text(join.as_bytes()))?;
            }
            Ok((st, leftover))
        })();
        let (st, leftover) = match attempt {
            Ok(x) => x,
            Err(e) => {
                shared.failed.fetch_add(1, Relaxed);
                eprintln!("loadgen: connect {c}: {e}");
                continue;
            }
        };
        out.handshake.saturating_record(now_ns() - t0);
        if sender_of[c] != usize::MAX {
            match st.try_clone() {
                Ok(w) => mine_writers.push((sender_of[c], w)),
                Err(e) => eprintln!("loadgen: cannot share socket {c} with the sender: {e}"),
            }
        }
        let registered = st.set_nonblocking(true).and_then(|_| {
            let mut ms = mio::net::TcpStream::from_std(st);
            poll.registry()
                .register(&mut ms, Token(rx.conns.len()), Interest::READABLE)?;
            Ok(ms)
        });
        match registered {
            Ok(ms) => {
                rx.add(c, conn.room as u32, ms, &leftover);
                shared.connected.fetch_add(1, Relaxed);
            }
            Err(e) => {
                shared.failed.fetch_add(1, Relaxed);
                eprintln!("loadgen: register {c}: {e}");
            }
        }
    }
    let _ = writers.send(mine_writers);
    rx.reserve_gids(&gids_per_room(&plan));
    // the common start
    let start = loop {
        let v = shared.start_ns.load(Relaxed);
        if v != 0 {
            break v;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    rx.start_ns = start;
    rx.spin_ns = (s.recv_spin_us * 1e3) as u64;
    let stop = if s.kind == crate::scenario::Kind::Idle {
        start + (s.hold_secs * 1e9) as u64
    } else {
        start + ((s.duration_secs + s.drain_secs) * 1e9) as u64
    };
    let cpu0 = crate::clock::thread_cpu_seconds();
    receive_until(&mut poll, &mut rx, start, stop, Some(&shared));
    out.recv_cpu_secs = crate::clock::thread_cpu_seconds() - cpu0;
    account(&plan, &rx, &mut out);
    let t = std::mem::take(&mut rx.tally);
    for sec in &t.seconds {
        let _ = out.delivery.add(&sec.latency);
    }
    out.seconds = t.seconds;
    out.fanout = t.fanout;
    out.duplicates = t.duplicates;
    out.foreign_frames = t.foreign_frames;
    out.own_lag = t.own_lag;
    out.unread = t.unread;
    out.busy_ns = t.busy_ns;
    out.reads = t.reads;
    out.wakes = t.wakes;
    out
}

/// The receive loop: waits for readiness, reads every ready socket, until `stop`; counts
/// the time spent outside `epoll_wait` per second (busy) and publishes live figures.
pub fn receive_until(
    poll: &mut Poll,
    rx: &mut Receiver,
    start: u64,
    stop: u64,
    shared: Option<&Shared>,
) {
    let mut events = Events::with_capacity(1024);
    let mut last_wake = now_ns().max(start);
    let mut published = (0u64, 0usize);
    // after a wake-up with work, poll without sleeping for a while: frames of one fan-out
    // arrive microseconds apart, and a sleep/wake-up per frame (an IPI and two context
    // switches, dear on a VM) would cost more than the frame
    let mut spin_until = 0u64;
    loop {
        let before = now_ns();
        if before >= stop {
            break;
        }
        if before > start {
            rx.tally
                .add_busy(before - start, before.saturating_sub(last_wake));
        }
        let timeout = if before < spin_until {
            Duration::ZERO
        } else {
            Duration::from_nanos((stop - before).min(50_000_000))
        };
        if let Err(e) = poll.poll(&mut events, Some(timeout)) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                eprintln!("loadgen: poll: {e}");
                break;
            }
        }
        let wake = now_ns();
        last_wake = wake.max(start);
        if events.is_empty() {
            continue; // a spin or a timeout: idle, not busy
        }
        spin_until = wake + rx.spin_ns;
        rx.tally.wakes += 1;
        for ev in events.iter() {
            rx.on_readable(ev.token().0, wake);
        }
        let Some(shared) = shared else { continue };
        // live figures: deliveries, and the p99 of the last full second
        if rx.tally.received != published.0 {
            shared
                .received
                .fetch_add(rx.tally.received - published.0, Relaxed);
            published.0 = rx.tally.received;
        }
        let sec = (wake.saturating_sub(start) / 1_000_000_000) as usize;
        if sec > published.1 {
            if let Some(last) = rx.tally.seconds.get(sec - 1) {
                shared
                    .recent_p99
                    .fetch_max(last.latency.value_at_quantile(0.99), Relaxed);
            }
            published.1 = sec;
        }
    }
}

/// For each receiver and each sender in its room: how many of the sender's messages
/// arrived, and the latest one. Missing before the latest: a gap, lost unless the server
/// refused that send ([`PartResult::settle`] decides, once every process's refusals are
/// in). After it: late, decided later against the sender's count.
fn account(plan: &Plan, rx: &Receiver, out: &mut PartResult) {
    let mut by_room: Vec<Vec<usize>> = vec![Vec::new(); plan.rooms.len()];
    let mut by_conn: Vec<Option<usize>> = vec![None; plan.conns.len()];
    for (i, sp) in plan.senders.iter().enumerate() {
        by_room[sp.room].push(i);
        if let Some(c) = by_conn.get_mut(sp.conn) {
            *c = Some(i);
        }
    }
    out.reach = vec![Vec::new(); plan.senders.len()];
    out.gaps = vec![Vec::new(); plan.senders.len()];
    out.refused = vec![Vec::new(); plan.senders.len()];
    for &(conn, k) in &rx.tally.refused {
        match by_conn.get(conn).copied().flatten() {
            Some(si) => out.refused[si].push(k),
            None => out.foreign_frames += 1,
        }
    }
    for c in &rx.conns {
        let bits = &c.seen;
        let limit = bits.len() as u64 * 64;
        for &si in &by_room[c.room as usize] {
            let sp = &plan.senders[si];
            if sp.conn == c.global {
                continue;
            }
            let (mut count, mut latest) = (0u64, 0u64);
            let mut k = 0u64;
            loop {
                let gid = k * sp.stride + sp.slot;
                if gid >= limit {
                    break;
                }
                if bits[(gid / 64) as usize] & (1 << (gid % 64)) != 0 {
                    count += 1;
                    latest = k + 1;
                }
                k += 1;
            }
            out.delivered += count;
            if count < latest {
                let gaps = &mut out.gaps[si];
                if gaps.len() < latest as usize {
                    gaps.resize(latest as usize, 0);
                }
                for k in 0..latest {
                    let gid = k * sp.stride + sp.slot;
                    if bits[(gid / 64) as usize] & (1 << (gid % 64)) == 0 {
                        gaps[k as usize] += 1;
                    }
                }
            }
            let reach = &mut out.reach[si];
            if reach.len() <= latest as usize {
                reach.resize(latest as usize + 1, 0);
            }
            reach[latest as usize] += 1;
        }
    }
}

/// Makes this thread's sleeps precise (the default timer slack is 50 us).
pub fn precise_sleeps() {
    // SAFETY: PR_SET_TIMERSLACK takes an integer and touches no memory of ours.
    #[allow(unsafe_code)]
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1u64, 0u64, 0u64, 0u64);
    }
}

/// The sender thread: every message at its intended time, on its sender's socket.
fn sender_main(
    plan: &Plan,
    mut writers: Vec<(usize, std::net::TcpStream)>,
    shared: &Shared,
) -> PartResult {
    precise_sleeps();
    let mut out = PartResult {
        sent_per_sender: vec![0; plan.senders.len()],
        ..PartResult::default()
    };
    let mut per_second: Vec<u64> = Vec::new();
    let start = loop {
        let v = shared.start_ns.load(Relaxed);
        if v != 0 {
            break v;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let s = &plan.scenario;
    if s.kind == crate::scenario::Kind::Idle {
        return out;
    }
    let end = start + (s.duration_secs * 1e9) as u64;
    let mut due: BinaryHeap<Reverse<(u64, usize, u64)>> = writers
        .iter()
        .enumerate()
        .map(|(w, (si, _))| Reverse((start + plan.senders[*si].offset_ns, w, 0)))
        .collect();
    while let Some(Reverse((intended, w, k))) = due.pop() {
        if intended >= end {
            continue;
        }
        let now = now_ns();
        if intended > now {
            std::thread::sleep(Duration::from_nanos(intended - now));
        }
        let (si, stream) = &mut writers[w];
        let sp = &plan.senders[*si];
        let gid = k * sp.stride + sp.slot;
        let content = crate::recv::marker_content(sp.room, gid, sp.conn, intended, s.payload_bytes);
        let frame = format!(
            r#"{{"type":"send-message","data":{{"conversationId":"{}","content":"{content}","messageType":"text","tempMessageId":"lg-{}-{}-{k}"}},"timestamp":0}}"#,
            plan.rooms[sp.room].conversation_id, plan.run_id, sp.conn
        );
        match write_all_nb(stream, &client_text(frame.as_bytes())) {
            Ok(stalled) => {
                out.send_stalls += stalled as u64;
                out.send_lag
                    .saturating_record(now_ns().saturating_sub(intended));
                out.sent_per_sender[*si] += 1;
                shared.sent.fetch_add(1, Relaxed);
                let sec = ((intended - start) / 1_000_000_000) as usize;
                if per_second.len() <= sec {
                    per_second.resize(sec + 1, 0);
                }
                per_second[sec] += 1;
                due.push(Reverse((intended + sp.interval_ns, w, k + 1)));
            }
            Err(e) => eprintln!("loadgen: sender {} stops: {e}", sp.conn),
        }
    }
    out.seconds = per_second
        .into_iter()
        .enumerate()
        .map(|(t, n)| Second {
            sent: n,
            ..Second::new(t)
        })
        .collect();
    out
}

/// Writes all of `frame` to a non-blocking socket, waiting while it is full; says whether
/// it had to wait.
fn write_all_nb(stream: &mut std::net::TcpStream, frame: &[u8]) -> std::io::Result<bool> {
    let mut at = 0;
    let mut stalled = false;
    while at < frame.len() {
        match stream.write(&frame[at..]) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => at += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                stalled = true;
                std::thread::sleep(Duration::from_micros(50));
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(stalled)
}
