//! Running one part of a plan: connect (ramp), wait for the common start, send on the
//! open-loop schedule, receive and measure, report.
//!
//! Each I/O thread runs a monoio runtime. Per connection: a reader task (parses server
//! frames, records latency = receive time - the message's *intended* send time) and, for
//! senders, a sender task that writes on schedule whatever the server does, so a stall
//! shows up as latency instead of hiding as a lower send rate (no coordinated omission).

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, Splitable};
use monoio::net::TcpStream;

use crate::clock::now_ns;
use crate::plan::Plan;
use crate::stats::{hist, PartResult, Second};

/// Shared between the I/O threads of a process.
pub struct Shared {
    pub connected: AtomicUsize,
    pub failed: AtomicUsize,
    pub sent: AtomicU64,
    pub received: AtomicU64,
    /// The common start (CLOCK_MONOTONIC ns); 0 until known.
    pub start_ns: AtomicU64,
    /// Latencies of the last progress interval, for the live p99.
    pub recent: Mutex<Histogram<u64>>,
}

impl Shared {
    pub fn new() -> Arc<Shared> {
        Arc::new(Shared {
            connected: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            start_ns: AtomicU64::new(0),
            recent: Mutex::new(hist()),
        })
    }
}

/// What one thread measured.
struct ThreadStats {
    delivery: Histogram<u64>,
    handshake: Histogram<u64>,
    seconds: Vec<Second>,
    /// (room, gid) -> (deliveries, latest latency)
    fanout: HashMap<(u32, u64), (u32, u64)>,
    /// per connection: bitset of room message numbers received
    seen: HashMap<usize, Vec<u64>>,
    duplicates: u64,
    sent_per_sender: HashMap<usize, u64>,
    foreign_frames: u64,
    recent: Histogram<u64>,
}

impl ThreadStats {
    fn new() -> Self {
        ThreadStats {
            delivery: hist(),
            handshake: hist(),
            seconds: Vec::new(),
            fanout: HashMap::new(),
            seen: HashMap::new(),
            duplicates: 0,
            sent_per_sender: HashMap::new(),
            foreign_frames: 0,
            recent: hist(),
        }
    }

    fn second(&mut self, t: usize) -> &mut Second {
        while self.seconds.len() <= t {
            let i = self.seconds.len();
            self.seconds.push(Second::new(i));
        }
        &mut self.seconds[t]
    }
}

/// Connects to the target from a loopback source address (spreading ephemeral ports).
fn connect_std(
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
    s.set_nonblocking(true)?;
    Ok(s.into())
}

async fn handshake(
    stream: &mut TcpStream,
    target: SocketAddr,
    token: &str,
) -> anyhow::Result<Vec<u8>> {
    let req = format!(
        "GET /ws?token={token} HTTP/1.1\r\nhost: {target}\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-key: bG9hZGdlbi1rZXktMDAwMA==\r\nsec-websocket-version: 13\r\n\r\n"
    );
    let (r, _) = stream.write_all(req.into_bytes()).await;
    r?;
    let mut buf = Vec::new();
    loop {
        let (r, chunk) = stream.read(Vec::with_capacity(4096)).await;
        let n = r?;
        anyhow::ensure!(n > 0, "closed during the handshake");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]);
            anyhow::ensure!(
                head.starts_with("HTTP/1.1 101"),
                "upgrade refused: {}",
                head.lines().next().unwrap_or("")
            );
            return Ok(buf[end + 4..].to_vec());
        }
    }
}

/// A masked client text frame (mask key 0: legal, and XOR-free).
fn client_text(payload: &[u8]) -> Vec<u8> {
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

/// Finds `"content":"LG|room|gid|sender|intended|` near the start of a frame.
fn parse_marker(payload: &[u8]) -> Option<(u32, u64, usize, u64)> {
    const KEY: &[u8] = b"\"content\":\"LG|";
    let window = &payload[..payload.len().min(512)];
    let at = window.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let rest = &payload[at..payload.len().min(at + 80)];
    let mut it = rest.split(|b| *b == b'|');
    let mut num = || -> Option<u64> { std::str::from_utf8(it.next()?).ok()?.parse().ok() };
    Some((num()? as u32, num()?, num()? as usize, num()?))
}

/// Runs the connections `mine` of the plan on `threads` threads; `ready` is called once all
/// are connected, and must arrange for `shared.start_ns` to be set.
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
    let handles: Vec<_> = per_thread
        .into_iter()
        .enumerate()
        .map(|(t, conns)| {
            let (plan, shared) = (plan.clone(), shared.clone());
            std::thread::Builder::new()
                .name(format!("lg-io-{t}"))
                .spawn(move || thread_main(plan, conns, shared, ramp_each))
                .expect("spawn io thread")
        })
        .collect();
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
    ready();
    let (window_cpu0, _) = crate::clock::cpu_seconds();
    let window_start = now_ns();
    // live progress while running
    let mut prev = (0, 0);
    while handles.iter().any(|h| !h.is_finished()) {
        std::thread::sleep(Duration::from_millis(1000));
        if !progress || shared.start_ns.load(Relaxed) == 0 {
            continue;
        }
        let (sent, recv) = (shared.sent.load(Relaxed), shared.received.load(Relaxed));
        let p99 = {
            let mut r = shared.recent.lock().unwrap();
            let v = r.value_at_quantile(0.99);
            r.reset();
            v
        };
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
        connected: shared.connected.load(Relaxed),
        failed: shared.failed.load(Relaxed),
        ..PartResult::default()
    };
    for h in handles {
        let st = h.join().expect("io thread");
        result.absorb(
            st.delivery,
            st.handshake,
            st.seconds,
            st.fanout,
            st.seen,
            st.duplicates,
            st.sent_per_sender,
            st.foreign_frames,
        );
    }
    result
}

fn thread_main(
    plan: Arc<Plan>,
    conns: Vec<usize>,
    shared: Arc<Shared>,
    ramp_per_sec: f64,
) -> ThreadStats {
    let stats = Rc::new(RefCell::new(ThreadStats::new()));
    let fut = thread_async(plan, conns, shared, ramp_per_sec, stats.clone());
    let built = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build();
    match built {
        Ok(mut rt) => rt.block_on(fut),
        Err(e) => eprintln!("loadgen: cannot build a runtime: {e}"),
    }
    // reader tasks may still hold the Rc: take the contents
    let taken = std::mem::replace(&mut *stats.borrow_mut(), ThreadStats::new());
    taken
}

async fn thread_async(
    plan: Arc<Plan>,
    conns: Vec<usize>,
    shared: Arc<Shared>,
    ramp_per_sec: f64,
    stats: Rc<RefCell<ThreadStats>>,
) {
    let s = &plan.scenario;
    // paced by schedule (connection i at ramp_start + i/rate), sleeping only when ahead:
    // fixed sleeps between connects would add the timer's granularity to every gap
    let gap_ns = (1e9 / ramp_per_sec.max(1.0)) as u64;
    let ramp_start = now_ns();
    let mut writers = HashMap::new();
    for (i, c) in conns.iter().enumerate() {
        let due = ramp_start + i as u64 * gap_ns;
        let now = now_ns();
        if due > now + 1_000_000 {
            monoio::time::sleep(Duration::from_nanos(due - now)).await;
        }
        let t0 = now_ns();
        let conn = &plan.conns[*c];
        let stream =
            connect_std(plan.target_of(*c), *c, s.source_addrs).and_then(TcpStream::from_std);
        let mut stream = match stream {
            Ok(st) => st,
            Err(e) => {
                shared.failed.fetch_add(1, Relaxed);
                eprintln!("loadgen: connect {c}: {e}");
                continue;
            }
        };
        match handshake(&mut stream, plan.target_of(*c), &conn.token).await {
            Ok(leftover) => {
                stats
                    .borrow_mut()
                    .handshake
                    .saturating_record(now_ns() - t0);
                let (rd, mut wr) = stream.into_split();
                if plan.peer {
                    let join = format!(
                        r#"{{"type":"join","data":{{"conversationId":"{}"}}}}"#,
                        plan.rooms[conn.room].conversation_id
                    );
                    let _ = wr.write_all(client_text(join.as_bytes())).await;
                }
                monoio::spawn(reader(rd, leftover, *c, shared.clone(), stats.clone()));
                writers.insert(*c, wr);
                shared.connected.fetch_add(1, Relaxed);
            }
            Err(e) => {
                shared.failed.fetch_add(1, Relaxed);
                eprintln!("loadgen: handshake {c}: {e}");
            }
        }
    }
    // the common start
    let start = loop {
        let v = shared.start_ns.load(Relaxed);
        if v != 0 {
            break v;
        }
        monoio::time::sleep(Duration::from_millis(5)).await;
    };
    let (end, stop) = if s.kind == crate::scenario::Kind::Idle {
        let e = start + (s.hold_secs * 1e9) as u64;
        (e, e)
    } else {
        let e = start + (s.duration_secs * 1e9) as u64;
        (e, e + (s.drain_secs * 1e9) as u64)
    };
    let keep = Rc::new(RefCell::new(Vec::new()));
    for sp in plan.senders.iter() {
        let Some(wr) = writers.remove(&sp.conn) else {
            continue;
        };
        monoio::spawn(sender(
            plan.clone(),
            sp.clone(),
            wr,
            keep.clone(),
            start,
            end,
            shared.clone(),
            stats.clone(),
        ));
    }
    let now = now_ns();
    if stop > now {
        monoio::time::sleep(Duration::from_nanos(stop - now)).await;
    }
    // keep every writer alive until here, so the sockets stay open
    drop(writers);
    drop(keep);
}

type Writer = monoio::io::OwnedWriteHalf<TcpStream>;

#[allow(clippy::too_many_arguments)]
async fn sender(
    plan: Arc<Plan>,
    sp: crate::plan::SenderPlan,
    mut wr: Writer,
    keep: Rc<RefCell<Vec<Writer>>>,
    start: u64,
    end: u64,
    shared: Arc<Shared>,
    stats: Rc<RefCell<ThreadStats>>,
) {
    let room = &plan.rooms[sp.room];
    let pad = plan.scenario.payload_bytes;
    let mut k: u64 = 0;
    loop {
        let intended = start + sp.offset_ns + k * sp.interval_ns;
        if intended >= end {
            break;
        }
        // the timer wheel has millisecond granularity: a send can leave up to ~1 ms after
        // its intended time, and that lateness counts as latency (the same for every server)
        let now = now_ns();
        if intended > now {
            monoio::time::sleep(Duration::from_nanos(intended - now)).await;
        }
        let gid = k * sp.stride + sp.slot;
        let mut content = format!("LG|{}|{gid}|{}|{intended}|", sp.room, sp.conn);
        while content.len() < pad {
            content.push('x');
        }
        let frame = format!(
            r#"{{"type":"send-message","data":{{"conversationId":"{}","content":"{content}","messageType":"text","tempMessageId":"lg-{}-{}-{k}"}},"timestamp":0}}"#,
            room.conversation_id, plan.run_id, sp.conn
        );
        let (r, _) = wr.write_all(client_text(frame.as_bytes())).await;
        if r.is_err() {
            break;
        }
        shared.sent.fetch_add(1, Relaxed);
        {
            let mut st = stats.borrow_mut();
            *st.sent_per_sender.entry(sp.conn).or_insert(0) += 1;
            let sec = ((intended - start) / 1_000_000_000) as usize;
            st.second(sec).sent += 1;
        }
        k += 1;
    }
    // hand the socket back: it stays open until the thread ends (a monoio task parked
    // on a future that holds no waker would be freed, closing the socket with it)
    keep.borrow_mut().push(wr);
}

async fn reader<R: AsyncReadRent>(
    mut rd: R,
    leftover: Vec<u8>,
    conn: usize,
    shared: Arc<Shared>,
    stats: Rc<RefCell<ThreadStats>>,
) {
    let mut buf = leftover;
    let mut chunk = Vec::with_capacity(64 * 1024);
    loop {
        // parse complete frames
        let mut at = 0;
        while buf.len() - at >= 2 {
            let b1 = buf[at + 1];
            let mut len = (b1 & 0x7f) as usize;
            let mut hdr = 2;
            if len == 126 {
                if buf.len() - at < 4 {
                    break;
                }
                len = u16::from_be_bytes([buf[at + 2], buf[at + 3]]) as usize;
                hdr = 4;
            } else if len == 127 {
                if buf.len() - at < 10 {
                    break;
                }
                len =
                    u64::from_be_bytes(buf[at + 2..at + 10].try_into().expect("8 bytes")) as usize;
                hdr = 10;
            }
            if buf.len() - at < hdr + len {
                break;
            }
            let opcode = buf[at] & 0x0f;
            if opcode == 0x8 {
                return;
            }
            if opcode == 0x1 {
                on_text(&buf[at + hdr..at + hdr + len], conn, &shared, &stats);
            }
            at += hdr + len;
        }
        buf.drain(..at);
        chunk.clear();
        let (r, c) = rd.read(chunk).await;
        chunk = c;
        match r {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn on_text(payload: &[u8], conn: usize, shared: &Shared, stats: &RefCell<ThreadStats>) {
    let now = now_ns();
    let Some((room, gid, sender, intended)) = parse_marker(payload) else {
        stats.borrow_mut().foreign_frames += 1;
        return;
    };
    if sender == conn {
        return; // our own message on this connection (a server that echoes)
    }
    shared.received.fetch_add(1, Relaxed);
    let start = shared.start_ns.load(Relaxed);
    let lat = now.saturating_sub(intended);
    let mut st = stats.borrow_mut();
    let bits = st.seen.entry(conn).or_default();
    let (word, bit) = ((gid / 64) as usize, gid % 64);
    if bits.len() <= word {
        bits.resize(word + 1, 0);
    }
    if bits[word] & (1 << bit) != 0 {
        st.duplicates += 1;
        return;
    }
    bits[word] |= 1 << bit;
    st.delivery.saturating_record(lat);
    st.recent.saturating_record(lat);
    let sec = (now.saturating_sub(start) / 1_000_000_000) as usize;
    let second = st.second(sec);
    second.received += 1;
    second.latency.saturating_record(lat);
    let e = st.fanout.entry((room, gid)).or_insert((0, 0));
    e.0 += 1;
    e.1 = e.1.max(lat);
    if st.recent.len() >= 256 {
        if let Ok(mut r) = shared.recent.try_lock() {
            let _ = r.add(&st.recent);
            st.recent.reset();
        }
    }
}
