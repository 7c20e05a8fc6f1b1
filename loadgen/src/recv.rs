//! The receive path: everything loadgen does per delivered frame, so that it outruns the
//! servers it measures.
//!
//! One I/O thread owns many connections and one reusable read buffer. It learns which
//! sockets are readable from one `epoll_wait` (mio, edge-triggered) and reads each of them
//! into that buffer until a short read says the socket is drained; frames are parsed in
//! place. Per connection it keeps only a bitset of the room message numbers it received and
//! the bytes of a frame cut by the end of a read (almost always empty). Per frame the work is
//! a header decode, one substring search for the `"LG|` marker, four integers, one bit, one
//! slot of a dense per-room array (fan-out completion) and one histogram record: no hash
//! map, no allocation, no clock read (one clock read per `read`, shared by its frames).
//!
//! Why not io_uring (monoio, as before): an io_uring read owns its buffer until it
//! completes, so 2,000 idle connections pin 2,000 buffers and each frame costs a completion
//! and a task wake-up; readiness lets one thread walk all ready sockets with one buffer.
//!
//! The same code serves `loadgen run` and `loadgen bench-recv`, which feeds it pre-built
//! frames over real sockets.

use std::io::{self, Read};

use hdrhistogram::Histogram;
use memchr::memmem::Finder;

use crate::clock::now_ns;
use crate::stats::{hist, Second};

/// Bytes per read into the thread's buffer.
pub const READ_BUF: usize = 256 * 1024;

/// One connection's receive state, by index (the mio token).
pub struct Conn {
    /// Index in the plan's connections.
    pub global: usize,
    pub room: u32,
    pub stream: mio::net::TcpStream,
    /// The start of a frame cut by the end of the last read.
    pending: Vec<u8>,
    /// Room message numbers (gid) received, one bit each.
    pub seen: Vec<u64>,
    pub open: bool,
}

/// What one receive loop measured.
pub struct Tally {
    /// Per second since the start: deliveries and their latency (the run's latency
    /// histogram is the sum of these, so each frame is recorded once).
    pub seconds: Vec<Second>,
    /// Per room, by gid: deliveries seen here and the slowest latency.
    pub fanout: Vec<Vec<(u32, u64)>>,
    pub received: u64,
    pub duplicates: u64,
    pub foreign_frames: u64,
    /// Sends the server refused: an `error` frame naming a loadgen `tempMessageId`, as
    /// (the sending connection, its message number). Never stored, so never delivered:
    /// not a loss.
    pub refused: Vec<(usize, u64)>,
    /// Per frame: ns from the wake-up that reported its socket readable to its processing
    /// (the walk over the other ready sockets first).
    pub own_lag: Histogram<u64>,
    /// Bytes found in a socket per read (what had piled up unread).
    pub unread: Histogram<u64>,
    pub reads: u64,
    pub wakes: u64,
    /// Per second since the start: ns the loop spent outside `epoll_wait`.
    pub busy_ns: Vec<u64>,
}

impl Tally {
    pub fn new() -> Tally {
        Tally {
            seconds: Vec::new(),
            fanout: Vec::new(),
            received: 0,
            duplicates: 0,
            foreign_frames: 0,
            refused: Vec::new(),
            own_lag: hist(),
            unread: Histogram::new_with_bounds(1, 1 << 32, 2).expect("valid bounds"),
            reads: 0,
            wakes: 0,
            busy_ns: Vec::new(),
        }
    }

    fn second(&mut self, t: usize) -> &mut Second {
        while self.seconds.len() <= t {
            let i = self.seconds.len();
            self.seconds.push(Second::new(i));
        }
        &mut self.seconds[t]
    }

    /// Adds `ns` of busy time at time `at` (ns since the start).
    pub fn add_busy(&mut self, at: u64, ns: u64) {
        let t = (at / 1_000_000_000) as usize;
        if self.busy_ns.len() <= t {
            self.busy_ns.resize(t + 1, 0);
        }
        self.busy_ns[t] += ns;
    }
}

impl Default for Tally {
    fn default() -> Self {
        Tally::new()
    }
}

/// A thread's connections, its read buffer and its tally.
pub struct Receiver {
    pub conns: Vec<Conn>,
    buf: Vec<u8>,
    pub tally: Tally,
    /// The common start (ns); receive times before it count in second 0.
    pub start_ns: u64,
    /// How long the loop polls without sleeping after a wake-up with work (ns).
    pub spin_ns: u64,
    marker: Finder<'static>,
    refusal: Refusal,
}

/// Finds a refused send in an `error` frame (see [`find_refusal`]).
struct Refusal {
    error: Finder<'static>,
    temp: Finder<'static>,
}

impl Refusal {
    fn new() -> Refusal {
        Refusal {
            error: Finder::new(br#""type":"error""#),
            temp: Finder::new(br#""tempMessageId":"lg-"#),
        }
    }
}

/// A parsed `LG|room|gid|sender|intended|` marker.
#[derive(Debug, PartialEq, Eq)]
pub struct Marker {
    pub room: u32,
    pub gid: u64,
    pub sender: usize,
    pub intended: u64,
}

impl Receiver {
    pub fn new(rooms: usize) -> Receiver {
        let mut tally = Tally::new();
        tally.fanout = vec![Vec::new(); rooms];
        Receiver {
            conns: Vec::new(),
            buf: vec![0; READ_BUF],
            tally,
            start_ns: 0,
            spin_ns: 50_000,
            marker: Finder::new(b"\"LG|"),
            refusal: Refusal::new(),
        }
    }

    /// Adds a connection (its token is its index); `leftover` is what followed the
    /// handshake response in the same read.
    pub fn add(
        &mut self,
        global: usize,
        room: u32,
        stream: mio::net::TcpStream,
        leftover: &[u8],
    ) -> usize {
        let i = self.conns.len();
        self.conns.push(Conn {
            global,
            room,
            stream,
            pending: Vec::new(),
            seen: Vec::new(),
            open: true,
        });
        // parsed with the first bytes read after the start (frames sent before the
        // start are greetings, not deliveries)
        self.conns[i].pending.extend_from_slice(leftover);
        i
    }

    /// Sizes every connection's bitset for gids below `gids` (saves regrowth in the loop).
    pub fn reserve_gids(&mut self, gids_per_room: &[u64]) {
        for c in &mut self.conns {
            let g = gids_per_room.get(c.room as usize).copied().unwrap_or(0);
            c.seen.resize(g.div_ceil(64) as usize, 0);
        }
        for (r, f) in self.tally.fanout.iter_mut().enumerate() {
            let g = gids_per_room.get(r).copied().unwrap_or(0);
            f.resize(g as usize, (0, 0));
        }
    }

    fn ensure_buf(&mut self, carried: usize) {
        if self.buf.len() < carried + READ_BUF / 2 {
            self.buf.resize(carried + READ_BUF, 0);
        }
    }

    /// Reads connection `i` until it is drained (edge-triggered readiness: a short read
    /// means nothing is left; new bytes raise a new event). `wake_ns`: when the poll that
    /// reported it returned.
    pub fn on_readable(&mut self, i: usize, wake_ns: u64) {
        loop {
            if !self.conns[i].open {
                return;
            }
            let carried = self.conns[i].pending.len();
            if carried > 0 {
                self.ensure_buf(carried);
                let conn = &mut self.conns[i];
                self.buf[..carried].copy_from_slice(&conn.pending);
                conn.pending.clear();
            }
            let cap = self.buf.len() - carried;
            let r = (&self.conns[i].stream).read(&mut self.buf[carried..]);
            let n = match r {
                Ok(0) => {
                    self.conns[i].open = false;
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let conn = &mut self.conns[i];
                    conn.pending.extend_from_slice(&self.buf[..carried]);
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    let conn = &mut self.conns[i];
                    conn.pending.extend_from_slice(&self.buf[..carried]);
                    continue;
                }
                Err(_) => {
                    self.conns[i].open = false;
                    return;
                }
            };
            let now = now_ns();
            self.tally.reads += 1;
            self.tally.unread.saturating_record(n as u64);
            let end = carried + n;
            let used = self.parse(i, end, now, now.saturating_sub(wake_ns));
            if used < end {
                let conn = &mut self.conns[i];
                conn.pending.extend_from_slice(&self.buf[used..end]);
            }
            if n < cap {
                return;
            }
        }
    }

    /// Parses the complete frames in `buf[..end]` of connection `i`; returns the bytes used.
    fn parse(&mut self, i: usize, end: usize, now: u64, lag: u64) -> usize {
        let sec = (now.saturating_sub(self.start_ns) / 1_000_000_000) as usize;
        // make sure the second exists before borrowing pieces of self
        self.tally.second(sec);
        let Receiver {
            conns,
            buf,
            tally,
            marker,
            refusal,
            ..
        } = self;
        let conn = &mut conns[i];
        let buf = &buf[..end];
        let mut at = 0;
        let mut frames = 0u64;
        while end - at >= 2 {
            let b0 = buf[at];
            let b1 = buf[at + 1];
            let mut len = (b1 & 0x7f) as usize;
            let mut hdr = 2;
            if len == 126 {
                if end - at < 4 {
                    break;
                }
                len = u16::from_be_bytes([buf[at + 2], buf[at + 3]]) as usize;
                hdr = 4;
            } else if len == 127 {
                if end - at < 10 {
                    break;
                }
                len =
                    u64::from_be_bytes(buf[at + 2..at + 10].try_into().expect("8 bytes")) as usize;
                hdr = 10;
            }
            if b1 & 0x80 != 0 {
                hdr += 4; // servers do not mask; a masked frame is counted as foreign
            }
            if end - at < hdr + len {
                break;
            }
            let payload = &buf[at + hdr..at + hdr + len];
            at += hdr + len;
            match b0 & 0x0f {
                0x1 if b1 & 0x80 == 0 => {
                    let Some(m) = find_marker(marker, payload) else {
                        match find_refusal(refusal, payload) {
                            Some(r) => tally.refused.push(r),
                            None => tally.foreign_frames += 1,
                        }
                        continue;
                    };
                    if m.sender == conn.global {
                        continue; // our own message (a server that echoes)
                    }
                    let (w, bit) = ((m.gid / 64) as usize, 1u64 << (m.gid % 64));
                    if conn.seen.len() <= w {
                        conn.seen.resize(w + 1, 0);
                    }
                    if conn.seen[w] & bit != 0 {
                        tally.duplicates += 1;
                        continue;
                    }
                    conn.seen[w] |= bit;
                    let lat = now.saturating_sub(m.intended);
                    frames += 1;
                    let s = &mut tally.seconds[sec];
                    s.received += 1;
                    s.latency.saturating_record(lat);
                    if let Some(room) = tally.fanout.get_mut(m.room as usize) {
                        let g = m.gid as usize;
                        if room.len() <= g {
                            room.resize(g + 1, (0, 0));
                        }
                        let slot = &mut room[g];
                        slot.0 += 1;
                        slot.1 = slot.1.max(lat);
                    }
                }
                0x8 => {
                    conn.open = false;
                    return at;
                }
                _ => tally.foreign_frames += 1,
            }
        }
        if frames > 0 {
            tally.received += frames;
            tally.own_lag.saturating_record_n(lag, frames);
        }
        at
    }
}

/// Finds `"LG|room|gid|sender|intended|` in a frame's payload.
fn find_marker(finder: &Finder<'_>, payload: &[u8]) -> Option<Marker> {
    let at = finder.find(payload)? + 4;
    let mut p = at;
    let room = number(payload, &mut p)?;
    let gid = number(payload, &mut p)?;
    let sender = number(payload, &mut p)?;
    let intended = number(payload, &mut p)?;
    Some(Marker {
        room: room as u32,
        gid,
        sender: sender as usize,
        intended,
    })
}

/// The sending connection and message number of a send an `error` frame refuses: its
/// `tempMessageId` is `lg-{run}-{conn}-{k}` (run.rs). Acks name it too but are not errors.
fn find_refusal(r: &Refusal, payload: &[u8]) -> Option<(usize, u64)> {
    r.error.find(payload)?;
    let mut p = r.temp.find(payload)? + r.temp.needle().len();
    // the run id (hex), then the connection and the message number
    p += payload.get(p..)?.iter().position(|b| *b == b'-')? + 1;
    let conn = digits_until(payload, &mut p, b'-')?;
    let k = digits_until(payload, &mut p, b'"')?;
    Some((conn as usize, k))
}

/// Parses a refusal: the payload of a frame.
#[cfg(test)]
pub fn parse_refusal(payload: &[u8]) -> Option<(usize, u64)> {
    find_refusal(&Refusal::new(), payload)
}

/// Parses a marker: the payload of a frame.
#[cfg(test)]
pub fn parse_marker(payload: &[u8]) -> Option<Marker> {
    find_marker(&Finder::new(b"\"LG|"), payload)
}

/// Decimal digits up to the next `|` (which is skipped); at most 19 digits, so plain
/// arithmetic cannot overflow (this runs four times per frame).
#[inline(always)]
fn number(b: &[u8], at: &mut usize) -> Option<u64> {
    digits_until(b, at, b'|')
}

/// Decimal digits up to the next `end` byte (which is skipped); at most 19 digits.
#[inline(always)]
fn digits_until(b: &[u8], at: &mut usize, end_byte: u8) -> Option<u64> {
    let start = *at;
    let end = b.len().min(start + 20);
    let mut v: u64 = 0;
    let mut i = start;
    while i < end {
        let d = b[i].wrapping_sub(b'0');
        if d > 9 {
            if b[i] == end_byte && i > start {
                *at = i + 1;
                return Some(v);
            }
            return None;
        }
        v = v * 10 + d as u64;
        i += 1;
    }
    None
}

/// The content a sender puts in a message: the marker, padded with `x` to `pad` bytes.
pub fn marker_content(room: usize, gid: u64, sender: usize, intended: u64, pad: usize) -> String {
    let mut content = format!("LG|{room}|{gid}|{sender}|{intended}|");
    while content.len() < pad {
        content.push('x');
    }
    content
}

/// A server text frame (unmasked) around `payload`, appended to `out`.
pub fn server_text(out: &mut Vec<u8>, payload: &[u8]) {
    out.push(0x81);
    if payload.len() < 126 {
        out.push(payload.len() as u8);
    } else if payload.len() <= 65535 {
        out.push(126);
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
}

/// A `new-message` frame as the uWebSockets peer writes it (about 200 bytes with a
/// 100-byte content).
pub fn new_message_json(conversation: &str, content: &str, seq: u64, sender: &str) -> String {
    format!(
        r#"{{"data":{{"conversationId":"{conversation}","message":{{"content":"{content}","conversationId":"{conversation}","messageId":"{seq}","senderId":"{sender}","seqId":{seq},"type":"text"}}}},"type":"new-message"}}"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_is_found_in_any_server_s_json() {
        let c = marker_content(0, 42, 7, 123456789, 100);
        let json = new_message_json("world", &c, 1, "u7");
        assert_eq!(
            parse_marker(json.as_bytes()),
            Some(Marker {
                room: 0,
                gid: 42,
                sender: 7,
                intended: 123456789
            })
        );
        assert_eq!(parse_marker(b"{\"type\":\"connected\"}"), None);
        assert_eq!(parse_marker(b"\"LG|1|2|x|"), None);
    }

    #[test]
    fn a_refusal_is_an_error_frame_naming_a_loadgen_send() {
        let error = br#"{"type":"error","data":{"code":"RATE_LIMITED","message":"server busy","tempMessageId":"lg-a3f-17-42"}}"#;
        assert_eq!(parse_refusal(error), Some((17, 42)));
        let ack = br#"{"type":"message-ack","data":{"tempMessageId":"lg-a3f-17-42","seqId":3}}"#;
        assert_eq!(parse_refusal(ack), None, "an ack is not a refusal");
        let other = br#"{"type":"error","data":{"code":"INVALID_MESSAGE","message":"bad json"}}"#;
        assert_eq!(parse_refusal(other), None, "an error naming no send");
        let cut = br#"{"type":"error","data":{"tempMessageId":"lg-a3f-17-"}}"#;
        assert_eq!(parse_refusal(cut), None);
    }
}
