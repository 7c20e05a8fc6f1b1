//! The plan of a run: who connects with which token, which room each connection is in,
//! and who sends when. Built by provisioning accounts through the public HTTP API (or,
//! against a peer server, by convention), and shared with worker processes as JSON.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::scenario::{Kind, Scenario};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnPlan {
    pub token: String,
    /// Index into `rooms`.
    pub room: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SenderPlan {
    pub conn: usize,
    pub room: usize,
    /// The sender's k-th message is scheduled at start + offset + k * interval, and gets
    /// room-level message number gid = k * stride + slot.
    pub offset_ns: u64,
    pub interval_ns: u64,
    pub stride: u64,
    pub slot: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoomPlan {
    pub conversation_id: String,
    /// Connections in the room (each message is expected by all but its sender).
    pub members: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub scenario: Scenario,
    /// Where accounts and rooms are provisioned (the first `--target`).
    pub target: SocketAddr,
    /// Every gateway connections go to, round-robin by connection index (several
    /// `--target`s: the distributed profile's gateways); empty = `target` alone.
    #[serde(default)]
    pub targets: Vec<SocketAddr>,
    /// A peer server: no accounts, `join` frames instead.
    pub peer: bool,
    pub conns: Vec<ConnPlan>,
    pub senders: Vec<SenderPlan>,
    pub rooms: Vec<RoomPlan>,
    /// Unique per run (also when accounts are reused): part of every tempMessageId, so a
    /// rerun's messages are new messages, not idempotent resends of the last run's.
    #[serde(default)]
    pub run_id: String,
}

impl Plan {
    /// The gateway connection `c` goes to.
    pub fn target_of(&self, c: usize) -> SocketAddr {
        if self.targets.is_empty() {
            self.target
        } else {
            self.targets[c % self.targets.len()]
        }
    }
}

/// A blocking HTTP/1.1 request to the server's API.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &Value,
) -> anyhow::Result<Value> {
    let body = body.to_string();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    if let Some(t) = token {
        req.push_str(&format!("authorization: Bearer {t}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    s.write_all(req.as_bytes())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let text = String::from_utf8_lossy(&out);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    if v["success"] != true {
        anyhow::bail!(
            "{method} {path}: {} {}",
            head.lines().next().unwrap_or(""),
            body
        );
    }
    Ok(v["data"].clone())
}

/// Runs `f(i)` for i in 0..n on `concurrency` threads, in order of results.
fn parallel<T: Send>(
    n: usize,
    concurrency: usize,
    f: impl Fn(usize) -> anyhow::Result<T> + Sync,
) -> anyhow::Result<Vec<T>> {
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<Option<T>>> = Mutex::new((0..n).map(|_| None).collect());
    let err: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..concurrency.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n || err.lock().unwrap().is_some() {
                    return;
                }
                match f(i) {
                    Ok(v) => out.lock().unwrap()[i] = Some(v),
                    Err(e) => *err.lock().unwrap() = Some(e),
                }
            });
        }
    });
    if let Some(e) = err.into_inner().unwrap() {
        return Err(e);
    }
    Ok(out
        .into_inner()
        .unwrap()
        .into_iter()
        .map(|v| v.expect("filled"))
        .collect())
}

fn guest(addr: SocketAddr, name: &str) -> anyhow::Result<(String, String)> {
    let d = http(
        addr,
        "POST",
        "/api/auth/guest",
        None,
        &json!({ "guestName": name }),
    )?;
    Ok((
        d["token"].as_str().unwrap_or_default().to_string(),
        d["user"]["userId"].as_str().unwrap_or_default().to_string(),
    ))
}

fn registered(addr: SocketAddr, run: &str, i: usize) -> anyhow::Result<(String, String)> {
    let name = format!("lg{run}o{i}");
    http(
        addr,
        "POST",
        "/api/auth/register",
        None,
        &json!({ "username": name, "password": "loadgen-pass" }),
    )?;
    let d = http(
        addr,
        "POST",
        "/api/auth/login",
        None,
        &json!({ "username": name, "password": "loadgen-pass" }),
    )?;
    Ok((
        d["token"].as_str().unwrap_or_default().to_string(),
        d["user"]["userId"].as_str().unwrap_or_default().to_string(),
    ))
}

/// Builds the plan: accounts and rooms on the server (or a peer's conventions), and the
/// send schedule.
pub fn build(
    scenario: &Scenario,
    target: SocketAddr,
    peer: bool,
    progress: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<Plan> {
    let s = scenario;
    let n = s.connections;
    let run = format!("{:x}", crate::clock::now_ns() % 0xff_ffff);
    let provisioned = Arc::new(AtomicUsize::new(0));
    let tick = |what: &str| {
        let done = provisioned.fetch_add(1, Ordering::Relaxed) + 1;
        if done.is_multiple_of(500) || done == n {
            progress(&format!("provisioning: {done}/{n} {what}"));
        }
    };
    let mut conns = Vec::with_capacity(n);
    let mut rooms = Vec::new();
    match s.kind {
        Kind::World | Kind::Idle => {
            rooms.push(RoomPlan {
                conversation_id: "world".into(),
                members: n,
            });
            let tokens = if peer {
                (0..n).map(|i| format!("u{i}")).collect()
            } else {
                parallel(n, 16, |i| {
                    let t = guest(target, &format!("lg{i}"))?.0;
                    tick("guests");
                    Ok(t)
                })?
            };
            conns.extend(tokens.into_iter().map(|token| ConnPlan { token, room: 0 }));
        }
        Kind::Group => {
            let g = s.group_size;
            let groups = parallel(s.groups, if peer { 1 } else { 8 }, |gi| {
                if peer {
                    let tokens = (0..g).map(|j| format!("u{}", gi * g + j)).collect();
                    return Ok((format!("g{gi}"), tokens));
                }
                let (owner_token, _) = registered(target, &run, gi)?;
                let members: Vec<(String, String)> = (1..g)
                    .map(|j| guest(target, &format!("lg{gi}m{j}")))
                    .collect::<anyhow::Result<_>>()?;
                let ids: Vec<&str> = members.iter().map(|m| m.1.as_str()).collect();
                let d = http(
                    target,
                    "POST",
                    "/api/groups",
                    Some(&owner_token),
                    &json!({ "groupName": format!("lg-{gi}"), "members": ids }),
                )?;
                let conv = d["conversation"]["conversationId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                for _ in 0..g {
                    tick("group members");
                }
                let mut tokens = vec![owner_token];
                tokens.extend(members.into_iter().map(|m| m.0));
                Ok((conv, tokens))
            })?;
            for (gi, (conv, tokens)) in groups.into_iter().enumerate() {
                rooms.push(RoomPlan {
                    conversation_id: conv,
                    members: g,
                });
                conns.extend(tokens.into_iter().map(|token| ConnPlan { token, room: gi }));
            }
        }
        Kind::Single => {
            let pairs = parallel(n / 2, if peer { 1 } else { 8 }, |p| {
                if peer {
                    return Ok((
                        format!("p{p}"),
                        format!("u{}", 2 * p),
                        format!("u{}", 2 * p + 1),
                    ));
                }
                let (a, _) = registered(target, &run, p)?;
                let (b, b_id) = guest(target, &format!("lg{p}b"))?;
                let d = http(
                    target,
                    "POST",
                    "/api/conversations",
                    Some(&a),
                    &json!({ "targetUserId": b_id }),
                )?;
                tick("pairs");
                tick("pairs");
                Ok((
                    d["conversationId"].as_str().unwrap_or_default().to_string(),
                    a,
                    b,
                ))
            })?;
            for (p, (conv, a, b)) in pairs.into_iter().enumerate() {
                rooms.push(RoomPlan {
                    conversation_id: conv,
                    members: 2,
                });
                conns.push(ConnPlan { token: a, room: p });
                conns.push(ConnPlan { token: b, room: p });
            }
        }
    }
    let senders = schedule(s, &conns);
    Ok(Plan {
        scenario: s.clone(),
        target,
        targets: Vec::new(),
        peer,
        conns,
        senders,
        rooms,
        run_id: run,
    })
}

/// The send schedule of a scenario over given connections.
pub fn schedule(s: &Scenario, conns: &[ConnPlan]) -> Vec<SenderPlan> {
    let ns = |secs: f64| (secs * 1e9) as u64;
    match s.kind {
        Kind::Idle => Vec::new(),
        // a rotating sender: message k of the room comes from connection k % n
        Kind::World => {
            let n = conns.len() as u64;
            (0..conns.len())
                .map(|i| SenderPlan {
                    conn: i,
                    room: 0,
                    offset_ns: ns(i as f64 / s.rate_per_sec),
                    interval_ns: ns(n as f64 / s.rate_per_sec),
                    stride: n,
                    slot: i as u64,
                })
                .collect()
        }
        // the first member of each group sends; groups are staggered over one interval
        Kind::Group => (0..s.groups)
            .map(|g| SenderPlan {
                conn: g * s.group_size,
                room: g,
                offset_ns: ns(g as f64 / (s.groups as f64 * s.rate_per_sec)),
                interval_ns: ns(1.0 / s.rate_per_sec),
                stride: 1,
                slot: 0,
            })
            .collect(),
        Kind::Single => (0..conns.len())
            .map(|i| SenderPlan {
                conn: i,
                room: i / 2,
                offset_ns: ns((i as f64 / conns.len() as f64) / s.rate_per_sec),
                interval_ns: ns(1.0 / s.rate_per_sec),
                stride: 2,
                slot: (i % 2) as u64,
            })
            .collect(),
    }
}
