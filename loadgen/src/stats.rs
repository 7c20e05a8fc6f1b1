//! Measurements and how parts (threads, processes) merge into one result.

use std::collections::HashMap;

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

/// What a part of the run (a process) measured.
#[derive(Serialize, Deserialize)]
pub struct PartResult {
    #[serde(with = "hist_b64")]
    pub delivery: Histogram<u64>,
    #[serde(with = "hist_b64")]
    pub handshake: Histogram<u64>,
    pub seconds: Vec<Second>,
    /// (room, gid, deliveries, slowest latency)
    pub fanout: Vec<(u32, u64, u32, u64)>,
    pub duplicates: u64,
    pub sent_per_sender: HashMap<usize, u64>,
    pub delivered_per_sender: HashMap<usize, u64>,
    pub foreign_frames: u64,
    pub connected: usize,
    pub failed: usize,
    pub ramp_secs: f64,
    pub cpu_secs: f64,
    /// CPU seconds of this process from the common start to the end of the drain, and
    /// that window's length: the basis of the load-generator-bound verdict.
    pub window_cpu_secs: f64,
    pub window_secs: f64,
    #[serde(skip)]
    pub seen: HashMap<usize, Vec<u64>>,
}

impl Default for PartResult {
    fn default() -> Self {
        PartResult {
            delivery: hist(),
            handshake: hist(),
            seconds: Vec::new(),
            fanout: Vec::new(),
            duplicates: 0,
            sent_per_sender: HashMap::new(),
            delivered_per_sender: HashMap::new(),
            foreign_frames: 0,
            connected: 0,
            failed: 0,
            ramp_secs: 0.0,
            cpu_secs: 0.0,
            window_cpu_secs: 0.0,
            window_secs: 0.0,
            seen: HashMap::new(),
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

impl PartResult {
    #[allow(clippy::too_many_arguments)]
    pub fn absorb(
        &mut self,
        delivery: Histogram<u64>,
        handshake: Histogram<u64>,
        seconds: Vec<Second>,
        fanout: HashMap<(u32, u64), (u32, u64)>,
        seen: HashMap<usize, Vec<u64>>,
        duplicates: u64,
        sent: HashMap<usize, u64>,
        foreign: u64,
    ) {
        let _ = self.delivery.add(&delivery);
        let _ = self.handshake.add(&handshake);
        merge_seconds(&mut self.seconds, seconds);
        let mut map: HashMap<(u32, u64), (u32, u64)> = self
            .fanout
            .drain(..)
            .map(|(r, g, c, m)| ((r, g), (c, m)))
            .collect();
        for (k, (c, m)) in fanout {
            let e = map.entry(k).or_insert((0, 0));
            e.0 += c;
            e.1 = e.1.max(m);
        }
        self.fanout = map
            .into_iter()
            .map(|((r, g), (c, m))| (r, g, c, m))
            .collect();
        self.seen.extend(seen);
        self.duplicates += duplicates;
        for (k, v) in sent {
            *self.sent_per_sender.entry(k).or_insert(0) += v;
        }
        self.foreign_frames += foreign;
    }

    /// Merges another process's result.
    pub fn merge(&mut self, other: PartResult) {
        let fan: HashMap<(u32, u64), (u32, u64)> = other
            .fanout
            .into_iter()
            .map(|(r, g, c, m)| ((r, g), (c, m)))
            .collect();
        self.absorb(
            other.delivery,
            other.handshake,
            other.seconds,
            fan,
            HashMap::new(),
            other.duplicates,
            other.sent_per_sender,
            other.foreign_frames,
        );
        for (k, v) in other.delivered_per_sender {
            *self.delivered_per_sender.entry(k).or_insert(0) += v;
        }
        self.connected += other.connected;
        self.failed += other.failed;
        self.ramp_secs = self.ramp_secs.max(other.ramp_secs);
        self.cpu_secs += other.cpu_secs;
        self.window_cpu_secs += other.window_cpu_secs;
        self.window_secs = self.window_secs.max(other.window_secs);
    }
}
