//! WebSocket frames and messages: `FrameReader` driven as the gateway's reader task drives
//! it (feed what a read returned, then `next()` until `NeedMore`/`Closed`/`Violation`; on a
//! close: `answer_close` and `take_output`), with text messages decoded as client frames.
//!
//! Input: 3 bytes of settings, then the bytes a client sends after the handshake:
//! - byte 0: `max_frame_bytes`, one of `LIMITS`;
//! - byte 1: how reads split the stream: 0 = one read, n = reads of n bytes;
//! - byte 2: how many bytes arrive with the handshake (`leftover`);
//! - the rest: client frames (`corpus/ws_frames/seed-*`, made by `make_seeds.py`).
//!
//! Properties besides "no panic":
//! - no message longer than `max_frame_bytes`, no control payload over 125 bytes;
//! - the reader makes progress (never more messages than input bytes);
//! - memory stays within a small multiple of `max_frame_bytes` plus the input: a frame or
//!   message over the limit is a `Violation`, not a buffer that keeps growing;
//! - what it reads and writes does not depend on how the stream was split into reads;
//! - what it writes is unmasked pongs and one final close that echoes the peer's code (or
//!   1002 for a code a peer may not send).
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use im_gateway::protocol::ClientFrame;
use im_gateway::ws::{FrameReader, Next};
use libfuzzer_sys::fuzz_target;
use tungstenite::Message;

/// Counts the live bytes of Rust's heap, so the target can see what the reader holds.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(n: usize) {
    let now = LIVE.fetch_add(n, Relaxed) + n;
    PEAK.fetch_max(now, Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = System.alloc(l);
        if !p.is_null() {
            grew(l.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(l);
        if !p.is_null() {
            grew(l.size());
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l);
        LIVE.fetch_sub(l.size(), Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = System.realloc(p, l, new);
        if !q.is_null() {
            LIVE.fetch_sub(l.size(), Relaxed);
            grew(new);
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const LIMITS: [usize; 9] = [8, 16, 125, 126, 127, 200, 1024, 64 * 1024, 1024 * 1024];

/// What the reader did, in order: everything a server acts on.
#[derive(Debug, PartialEq)]
enum Event {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
    Closed,
    Violation(String),
}

struct Run {
    events: Vec<Event>,
    /// What it wrote (pongs, the close reply), all `take_output()`s together.
    output: Vec<u8>,
    /// Peak heap growth while reading.
    peak: usize,
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let max = LIMITS[data[0] as usize % LIMITS.len()];
    let chunk = data[1] as usize;
    let stream = &data[3..];
    let leftover = (data[2] as usize).min(stream.len());

    let split = drive(max, stream, leftover, chunk);
    let whole = drive(max, stream, 0, 0);
    assert_eq!(
        split.events, whole.events,
        "reads of {chunk} bytes after {leftover} leftover differ from one read"
    );
    assert_eq!(
        split.output, whole.output,
        "reads of {chunk} bytes after {leftover} leftover write other bytes than one read"
    );
    for run in [&split, &whole] {
        let bound = 3 * max + 8 * stream.len() + 64 * 1024;
        assert!(
            run.peak <= bound,
            "heap grew by {} bytes reading {} bytes with max_frame_bytes {max} (bound {bound})",
            run.peak,
            stream.len()
        );
        check_events(&run.events, &run.output, max, stream.len());
    }
});

/// Reads `stream` like the gateway: `leftover` bytes come with the handshake, the rest in
/// reads of `chunk` bytes (0: one read).
fn drive(max: usize, stream: &[u8], leftover: usize, chunk: usize) -> Run {
    let base = LIVE.load(Relaxed);
    PEAK.store(base, Relaxed);
    let mut events = Vec::new();
    let mut output = Vec::new();
    let mut reader = FrameReader::new(max, &stream[..leftover]);
    let rest = &stream[leftover..];
    let chunk = if chunk == 0 { rest.len().max(1) } else { chunk };
    let mut reads = rest.chunks(chunk);
    loop {
        // parse everything buffered
        let done = drain(&mut reader, &mut events, stream.len());
        if let Some(out) = reader.take_output() {
            output.extend_from_slice(&out);
        }
        if done {
            break;
        }
        match reads.next() {
            Some(bytes) => reader.feed(bytes),
            None => break,
        }
    }
    drop(reader);
    // the events' own copies are the harness's, not the reader's
    let held: usize = events.iter().map(event_size).sum::<usize>() + output.capacity();
    let peak = PEAK.load(Relaxed).saturating_sub(base).saturating_sub(held);
    Run {
        events,
        output,
        peak,
    }
}

fn event_size(e: &Event) -> usize {
    std::mem::size_of::<Event>()
        + match e {
            Event::Text(s) | Event::Violation(s) => s.capacity(),
            Event::Binary(b) | Event::Ping(b) | Event::Pong(b) => b.capacity(),
            Event::Close(Some((_, s))) => s.capacity(),
            _ => 0,
        }
}

/// `next()` until more bytes are needed; true when the connection is over.
fn drain(reader: &mut FrameReader, events: &mut Vec<Event>, input_len: usize) -> bool {
    let mut messages = 0usize;
    loop {
        match reader.next() {
            Next::Message(msg) => {
                messages += 1;
                assert!(
                    messages <= input_len + 1,
                    "{messages} messages out of {input_len} bytes"
                );
                match msg {
                    Message::Text(t) => {
                        let _ = ClientFrame::decode(t.as_str());
                        events.push(Event::Text(t.as_str().to_string()));
                    }
                    Message::Binary(b) => events.push(Event::Binary(b.to_vec())),
                    Message::Ping(b) => events.push(Event::Ping(b.to_vec())),
                    Message::Pong(b) => events.push(Event::Pong(b.to_vec())),
                    Message::Frame(_) => panic!("a raw frame from read()"),
                    Message::Close(frame) => {
                        events.push(Event::Close(
                            frame.map(|f| (u16::from(f.code), f.reason.as_str().to_string())),
                        ));
                        // the gateway answers and stops reading
                        reader.answer_close();
                        return true;
                    }
                }
            }
            Next::NeedMore => return false,
            Next::Closed => {
                events.push(Event::Closed);
                return true;
            }
            Next::Violation(e) => {
                events.push(Event::Violation(e.to_string()));
                return true;
            }
        }
    }
}

fn check_events(events: &[Event], output: &[u8], max: usize, input_len: usize) {
    let mut pings = Vec::new();
    let mut close: Option<&Option<(u16, String)>> = None;
    for (i, e) in events.iter().enumerate() {
        match e {
            Event::Text(t) => assert!(t.len() <= max, "text of {} over {max}", t.len()),
            Event::Binary(b) => assert!(b.len() <= max, "binary of {} over {max}", b.len()),
            Event::Ping(p) => {
                assert!(p.len() <= 125);
                pings.push(p.clone());
            }
            Event::Pong(p) => assert!(p.len() <= 125),
            Event::Close(c) => {
                if let Some((code, reason)) = c {
                    assert!(
                        matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999),
                        "close code {code} handed on"
                    );
                    assert!(reason.len() <= 123);
                }
                close = Some(c);
            }
            Event::Closed | Event::Violation(_) => {
                assert_eq!(i, events.len() - 1, "events after the end: {events:?}");
            }
        }
    }
    // what the server wrote: unmasked final pongs, then at most one close, last
    let frames = server_frames(output);
    assert!(frames.len() <= input_len, "more frames written than read");
    for (i, (opcode, payload)) in frames.iter().enumerate() {
        match opcode {
            0xA => assert!(
                pings.contains(payload),
                "a pong that answers no ping: {payload:?}"
            ),
            0x8 => {
                assert_eq!(i, frames.len() - 1, "frames written after a close");
                let Some(c) = close else {
                    panic!("a close written without a close from the peer")
                };
                let expected = match c {
                    None => Vec::new(),
                    Some((code, reason)) => {
                        let mut p = code.to_be_bytes().to_vec();
                        p.extend_from_slice(reason.as_bytes());
                        p
                    }
                };
                assert_eq!(payload, &expected, "the close reply does not echo the close");
            }
            other => panic!("the reader wrote an opcode {other:#x} frame"),
        }
    }
    if close.is_some() {
        assert!(
            frames.last().is_some_and(|(op, _)| *op == 0x8),
            "a close from the peer was not answered"
        );
    }
}

/// Splits what the server wrote into (opcode, payload); each must be a final, unmasked frame
/// with a minimal length encoding.
fn server_frames(mut b: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while !b.is_empty() {
        assert!(b.len() >= 2, "a truncated frame written");
        assert_eq!(b[0] & 0xF0, 0x80, "FIN and no RSV bits");
        assert_eq!(b[1] & 0x80, 0, "a server frame must not be masked");
        let (len, head) = match b[1] & 0x7F {
            126 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
            127 => (u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize, 10),
            n => (n as usize, 2),
        };
        assert!(b.len() >= head + len, "a truncated frame written");
        out.push((b[0] & 0x0F, b[head..head + len].to_vec()));
        b = &b[head + len..];
    }
    out
}
