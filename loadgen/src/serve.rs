//! `loadgen serve`: a minimal broadcast server, so that `loadgen calibrate` can measure
//! what loadgen itself absorbs on a machine. It speaks the peers' protocol slice (token in
//! the URL, `join`, `send-message` in, `new-message` out, the uWebSockets peer's JSON) and
//! is built to cost little per delivery: one thread, epoll (mio), and each room's new
//! frames are queued and written to every member in one `write` per member per flush
//! (every `--flush-us`, default 2 ms), so a flush carries every message of that interval.
//! Unlike the peers it also sends a message back to its sender (loadgen skips its own), and
//! sends no acks. `--drop-every N` drops every Nth message (a test aid: loss must be
//! counted as loss); `--refuse-every N` answers every Nth send with an `error` frame naming
//! its `tempMessageId`, as ringchat refuses a send when it is overloaded (a refusal must
//! not be counted as loss).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use sha1::{Digest, Sha1};

use crate::recv::{new_message_json, server_text};

const LISTENER: Token = Token(usize::MAX);
/// A member whose unsent backlog passes this is dropped (it stopped reading).
const MAX_BACKLOG: usize = 64 << 20;

struct Client {
    stream: TcpStream,
    inbuf: Vec<u8>,
    upgraded: bool,
    token: String,
    rooms: Vec<String>,
    /// Bytes the socket did not take yet.
    out: Vec<u8>,
    writable: bool,
}

struct Server {
    poll: Poll,
    clients: Vec<Option<Client>>,
    free: Vec<usize>,
    rooms: HashMap<String, Vec<usize>>,
    /// Frames per room since the last flush.
    pending: HashMap<String, Vec<u8>>,
    seq: u64,
    faults: Faults,
}

/// Test aids: messages the server loses or refuses on purpose.
#[derive(Clone, Copy, Default)]
pub struct Faults {
    /// Drop every Nth message silently (0: none).
    pub drop_every: u64,
    /// Refuse every Nth send with an `error` frame to its sender (0: none).
    pub refuse_every: u64,
}

/// Runs the server until killed; prints `listening ADDR` on stdout once bound.
pub fn serve(listen: SocketAddr, flush: Duration, faults: Faults) -> anyhow::Result<()> {
    let mut listener = TcpListener::bind(listen)?;
    println!("listening {}", listener.local_addr()?);
    io::stdout().flush()?;
    let poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut srv = Server {
        poll,
        clients: Vec::new(),
        free: Vec::new(),
        rooms: HashMap::new(),
        pending: HashMap::new(),
        seq: 0,
        faults,
    };
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 256 * 1024];
    let mut flush_at: Option<Instant> = None;
    loop {
        let timeout = flush_at.map(|t| t.saturating_duration_since(Instant::now()));
        if let Err(e) = srv.poll.poll(&mut events, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e.into());
            }
        }
        for ev in events.iter() {
            if ev.token() == LISTENER {
                srv.accept(&listener);
                continue;
            }
            let i = ev.token().0;
            if ev.is_writable() {
                srv.write_backlog(i);
            }
            if ev.is_readable() || ev.is_read_closed() {
                srv.read(i, &mut buf);
            }
        }
        if !srv.pending.is_empty() && flush_at.is_none() {
            flush_at = Some(Instant::now() + flush);
        }
        if flush_at.is_some_and(|t| Instant::now() >= t) {
            srv.flush();
            flush_at = None;
        }
    }
}

impl Server {
    fn accept(&mut self, listener: &TcpListener) {
        loop {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let i = self.free.pop().unwrap_or_else(|| {
                        self.clients.push(None);
                        self.clients.len() - 1
                    });
                    if self
                        .poll
                        .registry()
                        .register(&mut stream, Token(i), Interest::READABLE)
                        .is_err()
                    {
                        self.free.push(i);
                        continue;
                    }
                    self.clients[i] = Some(Client {
                        stream,
                        inbuf: Vec::new(),
                        upgraded: false,
                        token: String::new(),
                        rooms: Vec::new(),
                        out: Vec::new(),
                        writable: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    eprintln!("loadgen serve: accept: {e}");
                    return;
                }
            }
        }
    }

    fn read(&mut self, i: usize, buf: &mut [u8]) {
        let mut closed = false;
        {
            let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) else {
                return;
            };
            loop {
                match c.stream.read(buf) {
                    Ok(0) => {
                        closed = true;
                        break;
                    }
                    Ok(n) => c.inbuf.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        closed = true;
                        break;
                    }
                }
            }
        }
        if !self.handle_input(i) || closed {
            self.close(i);
        }
    }

    /// Handles what a client sent; false: close it.
    fn handle_input(&mut self, i: usize) -> bool {
        let Some(c) = self.clients[i].as_mut() else {
            return false;
        };
        if !c.upgraded {
            let Some(end) = c.inbuf.windows(4).position(|w| w == b"\r\n\r\n") else {
                return c.inbuf.len() < 16 * 1024;
            };
            let head = String::from_utf8_lossy(&c.inbuf[..end]).into_owned();
            c.inbuf.drain(..end + 4);
            let Some(key) = head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case("sec-websocket-key")
                    .then(|| v.trim().to_string())
            }) else {
                return false;
            };
            c.token = head
                .lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|path| path.split_once('?'))
                .and_then(|(_, q)| q.split('&').find_map(|kv| kv.strip_prefix("token=")))
                .unwrap_or("")
                .to_string();
            let mut sha = Sha1::new();
            sha.update(key.as_bytes());
            sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
            let accept = base64::engine::general_purpose::STANDARD.encode(sha.finalize());
            let mut resp = format!(
                "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {accept}\r\n\r\n"
            )
            .into_bytes();
            let hello = format!(
                r#"{{"data":{{"userId":"{}"}},"type":"connected"}}"#,
                c.token
            );
            server_text(&mut resp, hello.as_bytes());
            c.upgraded = true;
            if !self.send(i, &resp) {
                return false;
            }
        }
        // client frames: masked
        loop {
            let Some(c) = self.clients[i].as_mut() else {
                return false;
            };
            let b = &c.inbuf;
            if b.len() < 2 {
                return true;
            }
            let (op, b1) = (b[0] & 0x0f, b[1]);
            let mut len = (b1 & 0x7f) as usize;
            let mut hdr = 2;
            if len == 126 {
                if b.len() < 4 {
                    return true;
                }
                len = u16::from_be_bytes([b[2], b[3]]) as usize;
                hdr = 4;
            } else if len == 127 {
                if b.len() < 10 {
                    return true;
                }
                len = u64::from_be_bytes(b[2..10].try_into().expect("8 bytes")) as usize;
                hdr = 10;
            }
            let mask = if b1 & 0x80 != 0 {
                if b.len() < hdr + 4 {
                    return true;
                }
                let m = [b[hdr], b[hdr + 1], b[hdr + 2], b[hdr + 3]];
                hdr += 4;
                Some(m)
            } else {
                None
            };
            if len > 1 << 20 {
                return false;
            }
            if b.len() < hdr + len {
                return true;
            }
            let mut payload = b[hdr..hdr + len].to_vec();
            c.inbuf.drain(..hdr + len);
            if let Some(m) = mask {
                for (k, x) in payload.iter_mut().enumerate() {
                    *x ^= m[k % 4];
                }
            }
            match op {
                0x1 => self.on_text(i, &payload),
                0x8 => return false,
                _ => {}
            }
        }
    }

    fn on_text(&mut self, i: usize, payload: &[u8]) {
        let Ok(f) = serde_json::from_slice::<serde_json::Value>(payload) else {
            return;
        };
        let d = &f["data"];
        let room = d["conversationId"].as_str().unwrap_or("").to_string();
        match f["type"].as_str() {
            Some("join") => {
                let members = self.rooms.entry(room.clone()).or_default();
                if !members.contains(&i) {
                    members.push(i);
                }
                if let Some(c) = self.clients[i].as_mut() {
                    c.rooms.push(room);
                }
            }
            Some("send-message") => {
                self.seq += 1;
                let every = |n: u64| n > 0 && self.seq.is_multiple_of(n);
                if every(self.faults.drop_every) {
                    return;
                }
                if every(self.faults.refuse_every) {
                    let error = serde_json::json!({
                        "type": "error",
                        "data": {
                            "code": "RATE_LIMITED",
                            "message": "server busy: resend shortly",
                            "tempMessageId": d["tempMessageId"],
                        },
                    });
                    let mut frame = Vec::new();
                    server_text(&mut frame, error.to_string().as_bytes());
                    if !self.send(i, &frame) {
                        self.close(i);
                    }
                    return;
                }
                let sender = self.clients[i]
                    .as_ref()
                    .map(|c| c.token.as_str())
                    .unwrap_or("");
                let json =
                    new_message_json(&room, d["content"].as_str().unwrap_or(""), self.seq, sender);
                server_text(self.pending.entry(room).or_default(), json.as_bytes());
            }
            _ => {}
        }
    }

    /// Writes each room's queued frames to every member, one write per member.
    fn flush(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        for (room, bytes) in pending {
            let members = self.rooms.get(&room).cloned().unwrap_or_default();
            for m in members {
                if !self.send(m, &bytes) {
                    self.close(m);
                }
            }
        }
    }

    /// Writes or queues `bytes`; false: the client is gone or stopped reading.
    fn send(&mut self, i: usize, bytes: &[u8]) -> bool {
        let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) else {
            return false;
        };
        if !c.out.is_empty() {
            c.out.extend_from_slice(bytes);
            return c.out.len() <= MAX_BACKLOG;
        }
        let mut at = 0;
        while at < bytes.len() {
            match c.stream.write(&bytes[at..]) {
                Ok(n) => at += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        if at < bytes.len() {
            c.out.extend_from_slice(&bytes[at..]);
            if !c.writable {
                c.writable = true;
                let _ = self.poll.registry().reregister(
                    &mut c.stream,
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                );
            }
        }
        true
    }

    fn write_backlog(&mut self, i: usize) {
        let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        let mut at = 0;
        let mut dead = false;
        while at < c.out.len() {
            match c.stream.write(&c.out[at..]) {
                Ok(n) => at += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    dead = true;
                    break;
                }
            }
        }
        c.out.drain(..at);
        if c.out.is_empty() && c.writable {
            c.writable = false;
            let _ = self
                .poll
                .registry()
                .reregister(&mut c.stream, Token(i), Interest::READABLE);
        }
        if dead {
            self.close(i);
        }
    }

    fn close(&mut self, i: usize) {
        let Some(mut c) = self.clients.get_mut(i).and_then(Option::take) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut c.stream);
        for room in &c.rooms {
            if let Some(m) = self.rooms.get_mut(room) {
                m.retain(|x| *x != i);
            }
        }
        self.free.push(i);
    }
}
