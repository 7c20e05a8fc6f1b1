//! Measurements and how parts (threads, processes) merge into one result.

use base64::Engine;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Latencies in nanoseconds from 1 ns to 10 minutes, 3 significant digits.
pub fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000_000, 3).expect("valid bounds")
}

pub fn hist_to_b64(h: &Histogram<u64>) -> String {
    let mut buf = Vec::new();
    V2Serializer::new()
        .serialize(h, &mut buf)
        .expect("serialize histogram");
    base64::engine::general_purpose::STANDARD.encode(buf)
}

pub fn hist_from_b64(s: &str) -> anyhow::Result<Histogram<u64>> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(s)?;
    let h: Histogram<u64> = Deserializer::new().deserialize(&mut &bytes[..])?;
    Ok(h)
}

mod hist_b64 {
    use super::*;
    pub fn serialize<S: serde::Serializer>(h: &Histogram<u64>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hist_to_b64(h))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Histogram<u64>, D::Error> {
        let s = String::deserialize(d)?;
        hist_from_b64(&s).map_err(serde::de::Error::custom)
    }
}

/// One second of the run (by intended send time for sends, receive time for receives).
#[derive(Serialize, Deserialize, Clone)]
pub struct Second {
    pub t: usize,
    pub sent: u64,
    pub received: u64,
    #[serde(with = "hist_b64")]
    pub latency: Histogram<u64>,
}

impl Second {
    pub fn new(t: usize) -> Second {
        Second {
            t,
            sent: 0,
            received: 0,
            latency: hist(),
        }
    }
}

/// What a part of the run (an I/O thread, then a process) measured. Per-sender vectors are
/// indexed by the sender's position in `Plan::senders`.
#[derive(Serialize, Deserialize)]
pub struct PartResult {
    #[serde(with = "hist_b64")]
    pub delivery: Histogram<u64>,
    #[serde(with = "hist_b64")]
    pub handshake: Histogram<u64>,
    pub seconds: Vec<Second>,
    /// Per room, by gid: deliveries and the slowest latency.
    pub fanout: Vec<Vec<(u32, u64)>>,
    pub duplicates: u64,
    pub foreign_frames: u64,
    /// Messages each sender wrote.
    pub sent_per_sender: Vec<u64>,
    /// Distinct deliveries (duplicates excluded).
    pub delivered: u64,
    /// Gaps: a message missing at a receiver that got a later one from the same sender,
    /// and the server did not refuse it. Set by [`PartResult::settle`].
    pub lost: u64,
    pub lost_per_sender: Vec<u64>,
    /// Per sender, by message number: receivers missing it while holding a later one
    /// (empty for a sender without gaps).
    #[serde(default)]
    pub gaps: Vec<Vec<u32>>,
    /// Per sender: the message numbers the server refused with an `error` frame (never
    /// stored, so expected nowhere).
    #[serde(default)]
    pub refused: Vec<Vec<u64>>,
    /// Gaps that are refused sends (not losses). Set by [`PartResult::settle`].
    #[serde(default)]
    pub refused_gaps: u64,
    /// `reach[s][j]`: receivers whose latest message from sender s was its number j - 1
    /// (j = 0: none arrived). With the sender's count, what is still in flight ("late").
    pub reach: Vec<Vec<u64>>,
    /// ns from the poll that reported a socket readable to a frame's processing.
    #[serde(with = "hist_b64")]
    pub own_lag: Histogram<u64>,
    /// Bytes a read found waiting in a socket.
    #[serde(with = "hist_b64")]
    pub unread: Histogram<u64>,
    /// ns from a message's intended send time to its write.
    #[serde(with = "hist_b64")]
    pub send_lag: Histogram<u64>,
    /// Writes that found the socket full and had to wait.
    pub send_stalls: u64,
    /// Per second since the start: ns the receive loops spent outside `epoll_wait`
    /// (summed over threads).
    pub busy_ns: Vec<u64>,
    /// CPU seconds the receive threads used from the start to the end of the drain (with
    /// the busy share: whether a busy loop was working or waiting for a CPU).
    #[serde(default)]
    pub recv_cpu_secs: f64,
    pub reads: u64,
    pub wakes: u64,
    pub connected: usize,
    pub failed: usize,
    pub ramp_secs: f64,
    pub cpu_secs: f64,
    /// CPU seconds of this process from the common start to the end of the drain, and
    /// that window's length.
    pub window_cpu_secs: f64,
    pub window_secs: f64,
    /// Receive threads (all processes).
    pub threads: usize,
}

impl Default for PartResult {
    fn default() -> Self {
        PartResult {
            delivery: hist(),
            handshake: hist(),
            seconds: Vec::new(),
            fanout: Vec::new(),
            duplicates: 0,
            foreign_frames: 0,
            sent_per_sender: Vec::new(),
            delivered: 0,
            lost: 0,
            lost_per_sender: Vec::new(),
            gaps: Vec::new(),
            refused: Vec::new(),
            refused_gaps: 0,
            reach: Vec::new(),
            own_lag: hist(),
            unread: hist(),
            send_lag: hist(),
            send_stalls: 0,
            busy_ns: Vec::new(),
            recv_cpu_secs: 0.0,
            reads: 0,
            wakes: 0,
            connected: 0,
            failed: 0,
            ramp_secs: 0.0,
            cpu_secs: 0.0,
            window_cpu_secs: 0.0,
            window_secs: 0.0,
            threads: 0,
        }
    }
}

fn merge_seconds(into: &mut Vec<Second>, from: Vec<Second>) {
    for s in from {
        while into.len() <= s.t {
            let i = into.len();
            into.push(Second::new(i));
        }
        let d = &mut into[s.t];
        d.sent += s.sent;
        d.received += s.received;
        let _ = d.latency.add(&s.latency);
    }
}

/// Element-wise `into += from`, growing `into`.
pub fn add_vec(into: &mut Vec<u64>, from: &[u64]) {
    if into.len() < from.len() {
        into.resize(from.len(), 0);
    }
    for (a, b) in into.iter_mut().zip(from) {
        *a += b;
    }
}

impl PartResult {
    /// Adds another part (a thread's or a process's): counts add, histograms merge, the
    /// window is the longest.
    pub fn merge(&mut self, o: PartResult) {
        let _ = self.delivery.add(&o.delivery);
        let _ = self.handshake.add(&o.handshake);
        merge_seconds(&mut self.seconds, o.seconds);
        if self.fanout.len() < o.fanout.len() {
            self.fanout.resize(o.fanout.len(), Vec::new());
        }
        for (into, from) in self.fanout.iter_mut().zip(o.fanout) {
            if into.len() < from.len() {
                into.resize(from.len(), (0, 0));
            }
            for (a, b) in into.iter_mut().zip(from) {
                a.0 += b.0;
                a.1 = a.1.max(b.1);
            }
        }
        self.duplicates += o.duplicates;
        self.foreign_frames += o.foreign_frames;
        add_vec(&mut self.sent_per_sender, &o.sent_per_sender);
        self.delivered += o.delivered;
        if self.gaps.len() < o.gaps.len() {
            self.gaps.resize(o.gaps.len(), Vec::new());
        }
        for (into, from) in self.gaps.iter_mut().zip(&o.gaps) {
            if into.len() < from.len() {
                into.resize(from.len(), 0);
            }
            for (a, b) in into.iter_mut().zip(from) {
                *a += b;
            }
        }
        if self.refused.len() < o.refused.len() {
            self.refused.resize(o.refused.len(), Vec::new());
        }
        for (into, from) in self.refused.iter_mut().zip(o.refused) {
            into.extend(from);
        }
        if self.reach.len() < o.reach.len() {
            self.reach.resize(o.reach.len(), Vec::new());
        }
        for (into, from) in self.reach.iter_mut().zip(&o.reach) {
            add_vec(into, from);
        }
        let _ = self.own_lag.add(&o.own_lag);
        let _ = self.unread.add(&o.unread);
        let _ = self.send_lag.add(&o.send_lag);
        self.send_stalls += o.send_stalls;
        add_vec(&mut self.busy_ns, &o.busy_ns);
        self.recv_cpu_secs += o.recv_cpu_secs;
        self.reads += o.reads;
        self.wakes += o.wakes;
        self.connected += o.connected;
        self.failed += o.failed;
        self.ramp_secs = self.ramp_secs.max(o.ramp_secs);
        self.cpu_secs += o.cpu_secs;
        self.window_cpu_secs += o.window_cpu_secs;
        self.window_secs = self.window_secs.max(o.window_secs);
        self.threads += o.threads;
    }

    /// Once every part is merged: splits the gaps into losses and refused sends (a refusal
    /// is seen by the sender's connection, which another process may hold).
    pub fn settle(&mut self) {
        for r in &mut self.refused {
            r.sort_unstable();
            r.dedup();
        }
        self.lost_per_sender = vec![0; self.gaps.len()];
        (self.lost, self.refused_gaps) = (0, 0);
        for (s, gaps) in self.gaps.iter().enumerate() {
            let refused = self.refused.get(s).map(Vec::as_slice).unwrap_or(&[]);
            for (k, n) in gaps.iter().enumerate() {
                let n = u64::from(*n);
                if refused.binary_search(&(k as u64)).is_ok() {
                    self.refused_gaps += n;
                } else {
                    self.lost += n;
                    self.lost_per_sender[s] += n;
                }
            }
        }
    }

    /// Sends the server refused, over all senders (after [`PartResult::settle`]).
    pub fn refused_sends(&self) -> u64 {
        self.refused.iter().map(|r| r.len() as u64).sum()
    }

    /// Messages a sender wrote that the server did not refuse (after `settle`).
    pub fn accepted_by(&self, sender: usize) -> u64 {
        let sent = self.sent_per_sender.get(sender).copied().unwrap_or(0);
        let refused = self.refused.get(sender).map_or(0, |r| r.len() as u64);
        sent.saturating_sub(refused)
    }

    /// Messages still in flight at the end of the drain: for each sender and receiver,
    /// those after the latest one that arrived, refused sends excepted (after `settle`).
    pub fn late(&self) -> u64 {
        let mut late = 0;
        for (s, reach) in self.reach.iter().enumerate() {
            let sent = self.sent_per_sender.get(s).copied().unwrap_or(0);
            let refused = self.refused.get(s).map(Vec::as_slice).unwrap_or(&[]);
            for (j, receivers) in reach.iter().enumerate() {
                if *receivers == 0 {
                    continue;
                }
                // refused sends numbered j or later (the list is sorted)
                let refused_after =
                    (refused.len() - refused.partition_point(|k| *k < j as u64)) as u64;
                late += receivers * sent.saturating_sub(j as u64).saturating_sub(refused_after);
            }
        }
        late
    }
}
