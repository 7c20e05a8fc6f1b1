//! `loadgen bench-recv`: the receive path alone, over real sockets. A feeder thread writes
//! pre-built `new-message` frames (the uWebSockets peer's JSON, ~200 bytes with the default
//! 100-byte content) to `conns` loopback TCP connections, `frames_per_write` frames per
//! `write`, every connection getting every message as in a world-room broadcast; this
//! thread receives them with the same [`Receiver`] and loop as `loadgen run` (parser, bitset,
//! fan-out array, histograms). It reports frames/s received, and how busy each side was,
//! so a feeder-bound figure says so. Pin the feeder and receiver apart (`--feeder-cpu 0
//! --recv-cpu 1`) as perf/run pins server and loadgen.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use mio::{Interest, Poll, Token};
use serde_json::{json, Value};

use crate::clock::{now_ns, pin_thread, thread_cpu_seconds};
use crate::recv::{marker_content, new_message_json, server_text, Receiver};

pub struct BenchOpts {
    pub conns: usize,
    pub frames_per_write: usize,
    pub secs: f64,
    pub payload_bytes: usize,
    pub feeder_cpu: Option<usize>,
    pub recv_cpu: Option<usize>,
    /// How long the receive loop polls without sleeping after a wake-up with work.
    pub spin_us: f64,
}

pub fn bench_recv(o: &BenchOpts) -> anyhow::Result<Value> {
    anyhow::ensure!(o.conns > 0 && o.frames_per_write > 0 && o.secs > 0.0);
    if let Some(c) = o.recv_cpu {
        anyhow::ensure!(pin_thread(c), "cannot pin the receiver to CPU {c}");
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let poll = Poll::new()?;
    let mut rx = Receiver::new(1);
    let mut feeds = Vec::with_capacity(o.conns);
    for i in 0..o.conns {
        let client = crate::run::connect_std(addr, i, 4)?;
        let (server_side, _) = listener.accept()?;
        server_side.set_nodelay(true)?;
        feeds.push(server_side);
        client.set_nonblocking(true)?;
        let mut ms = mio::net::TcpStream::from_std(client);
        poll.registry()
            .register(&mut ms, Token(i), Interest::READABLE)?;
        rx.add(i, 0, ms, &[]);
    }
    // enough messages that the feeder cannot run out below 20M frames/s
    let per_conn = ((20e6 * o.secs) as usize / o.conns).max(o.frames_per_write);
    let batches = per_conn.div_ceil(o.frames_per_write);
    let sender = o.conns; // no receiver's own messages
    let t0 = now_ns();
    let mut frame_bytes = 0usize;
    let mut pre: Vec<Vec<u8>> = Vec::with_capacity(batches);
    for b in 0..batches {
        let mut out = Vec::new();
        for f in 0..o.frames_per_write {
            let gid = (b * o.frames_per_write + f) as u64;
            let content = marker_content(0, gid, sender, t0, o.payload_bytes);
            let json = new_message_json("world", &content, gid + 1, "u0");
            let before = out.len();
            server_text(&mut out, json.as_bytes());
            frame_bytes = out.len() - before;
        }
        pre.push(out);
    }
    rx.reserve_gids(&[(batches * o.frames_per_write) as u64]);
    let stop_flag = Arc::new(AtomicBool::new(false));
    let feeder = {
        let stop_flag = stop_flag.clone();
        let cpu = o.feeder_cpu;
        std::thread::Builder::new()
            .name("bench-feeder".into())
            .spawn(move || -> (f64, bool) {
                if let Some(c) = cpu {
                    pin_thread(c);
                }
                let cpu0 = thread_cpu_seconds();
                for batch in &pre {
                    for s in feeds.iter_mut() {
                        if stop_flag.load(Relaxed) || s.write_all(batch).is_err() {
                            return (thread_cpu_seconds() - cpu0, false);
                        }
                    }
                }
                (thread_cpu_seconds() - cpu0, true)
            })?
    };
    let start = now_ns();
    rx.start_ns = start;
    rx.spin_ns = (o.spin_us * 1e3) as u64;
    let stop = start + (o.secs * 1e9) as u64;
    let mut poll = poll;
    let cpu0 = thread_cpu_seconds();
    crate::run::receive_until(&mut poll, &mut rx, start, stop, None);
    let recv_cpu = thread_cpu_seconds() - cpu0;
    let elapsed = (now_ns() - start) as f64 / 1e9;
    stop_flag.store(true, Relaxed);
    // let a blocked feeder finish: close our ends
    let received = rx.tally.received;
    let t = std::mem::take(&mut rx.tally);
    let reads = t.reads;
    let busy: u64 = t.busy_ns.iter().sum();
    drop(rx);
    let (feeder_cpu, ran_out) = feeder.join().expect("feeder thread");
    let per_sec = received as f64 / elapsed;
    let feeder_share = feeder_cpu / elapsed;
    let recv_busy = busy as f64 / 1e9 / elapsed;
    Ok(json!({
        "kind": "bench-recv",
        "conns": o.conns,
        "frames_per_write": o.frames_per_write,
        "frame_bytes": frame_bytes,
        "secs": elapsed,
        "frames": received,
        "frames_per_sec": per_sec,
        "mbytes_per_sec": per_sec * frame_bytes as f64 / 1e6,
        "reads": reads,
        "frames_per_read": if reads > 0 { received as f64 / reads as f64 } else { 0.0 },
        "duplicates": t.duplicates,
        "foreign_frames": t.foreign_frames,
        "receiver_busy_share": recv_busy,
        "receiver_cpu_share": recv_cpu / elapsed,
        "receiver_cpu_ns_per_frame": if received > 0 { recv_cpu * 1e9 / received as f64 } else { 0.0 },
        "feeder_cpu_share": feeder_share,
        "feeder_ran_out": ran_out,
        "feeder_cpu": o.feeder_cpu,
        "recv_cpu": o.recv_cpu,
        "spin_us": o.spin_us,
        // the receiver waited for data while the feeder was saturated: the feeder's figure
        "feeder_bound": recv_busy < 0.9 && feeder_share > 0.9,
    }))
}
