//! Client frames from raw bytes: the server side of RFC 6455's framing (masking,
//! fragmentation, UTF-8, control frames, size limits, the closing handshake) over an
//! in-memory buffer. Pure (no socket), so the reader task and the fuzz targets drive the
//! same code.
//!
//! It keeps as little as it can per connection, since idle connections are most
//! connections: no buffer at all between messages (the bytes of a read are copied in once,
//! and a complete frame's payload is handed on without another copy), a fragmented
//! message's state only while one is being assembled. Its messages, errors and close
//! replies are tungstenite's types, with tungstenite's rules (the gateway used
//! tungstenite's `WebSocketContext` here before; the fuzz target `ws_frames` checks the
//! rules that matter to a server).

use bytes::{Buf, Bytes, BytesMut};
use tungstenite::error::{CapacityError, ProtocolError};
use tungstenite::protocol::frame::coding::{CloseCode, Data as OpData};
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::{Error, Message, Utf8Bytes};

use crate::frame;

/// What [`FrameReader::next`] found.
pub enum Next {
    Message(Message),
    /// Everything buffered is consumed: feed more bytes.
    NeedMore,
    /// The peer's close has been read; nothing more will be.
    Closed,
    /// The peer broke the protocol; close with the fitting code.
    Violation(Error),
}

pub struct FrameReader {
    /// Received bytes not parsed yet; unallocated while idle.
    buf: BytesMut,
    /// The largest frame and message.
    max: usize,
    /// The data message being assembled from fragments.
    partial: Option<Box<Partial>>,
    /// What to send: pongs, the close reply.
    out: Vec<u8>,
    /// The reply to the peer's close, until [`FrameReader::answer_close`].
    close_reply: Option<Bytes>,
    closed: bool,
}

struct Partial {
    text: bool,
    data: BytesMut,
    /// How much of `data` is known to be valid UTF-8 (text only).
    valid: usize,
}

/// A frame's header: what the first 2-14 bytes say.
struct Header {
    fin: bool,
    rsv: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    len: u64,
    /// Its own length in bytes.
    size: usize,
}

fn parse_header(b: &[u8]) -> Option<Header> {
    if b.len() < 2 {
        return None;
    }
    let (len, mut size) = match b[1] & 0x7F {
        126 => (u16::from_be_bytes(b.get(2..4)?.try_into().ok()?) as u64, 4),
        127 => (u64::from_be_bytes(b.get(2..10)?.try_into().ok()?), 10),
        n => (n as u64, 2),
    };
    let mask = if b[1] & 0x80 != 0 {
        let m: [u8; 4] = b.get(size..size + 4)?.try_into().ok()?;
        size += 4;
        Some(m)
    } else {
        None
    };
    Some(Header {
        fin: b[0] & 0x80 != 0,
        rsv: b[0] & 0x70 != 0,
        opcode: b[0] & 0x0F,
        mask,
        len,
        size,
    })
}

fn unmask(data: &mut [u8], mask: [u8; 4]) {
    for (i, b) in data.iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

fn too_long(size: usize, max_size: usize) -> Error {
    Error::Capacity(CapacityError::MessageTooLong { size, max_size })
}

fn protocol(e: ProtocolError) -> Next {
    Next::Violation(Error::Protocol(e))
}

fn utf8(e: std::str::Utf8Error) -> Error {
    Error::Utf8(e.to_string())
}

impl FrameReader {
    /// A server-side reader; `max_frame_bytes` bounds frames and messages. `leftover` is
    /// what arrived with the handshake.
    pub fn new(max_frame_bytes: usize, leftover: &[u8]) -> FrameReader {
        FrameReader {
            buf: BytesMut::from(leftover),
            max: max_frame_bytes,
            partial: None,
            out: Vec::new(),
            close_reply: None,
            closed: false,
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    // not an Iterator: `NeedMore` is not the end, more bytes can follow
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Next {
        loop {
            if self.closed {
                return Next::Closed;
            }
            let Some(h) = parse_header(&self.buf) else {
                return self.need_more();
            };
            // the size limit as soon as the header says it, before any payload is held
            if h.len > self.max as u64 {
                return Next::Violation(too_long(
                    usize::try_from(h.len).unwrap_or(usize::MAX),
                    self.max,
                ));
            }
            let len = h.len as usize;
            if self.buf.len() < h.size + len {
                self.buf.reserve(h.size + len - self.buf.len());
                return Next::NeedMore;
            }
            let Some(mask) = h.mask else {
                // RFC 6455 5.1: a server closes on an unmasked frame
                return protocol(ProtocolError::UnmaskedFrameFromClient);
            };
            if h.rsv {
                // no extension is negotiated, so no reserved bit may be set
                return protocol(ProtocolError::NonZeroReservedBits);
            }
            self.buf.advance(h.size);
            // an emptied buffer is let go in `need_more` (the caller reads until NeedMore)
            let mut payload = self.buf.split_to(len);
            unmask(&mut payload, mask);
            if let Some(next) = self.on_frame(h.fin, h.opcode, payload) {
                return next;
            }
        }
    }

    /// Everything buffered is parsed: an emptied buffer lets go of the read's allocation
    /// (shared with the payloads handed on, freed when they are).
    fn need_more(&mut self) -> Next {
        if self.buf.is_empty() && self.buf.capacity() > 0 {
            self.buf = BytesMut::new();
        }
        Next::NeedMore
    }

    /// One whole frame; None when it completes no message (a fragment).
    fn on_frame(&mut self, fin: bool, opcode: u8, payload: BytesMut) -> Option<Next> {
        if opcode & 0x8 != 0 {
            // control frames (RFC 6455 5.5): final, at most 125 bytes
            if !fin {
                return Some(protocol(ProtocolError::FragmentedControlFrame));
            }
            if payload.len() > 125 {
                return Some(protocol(ProtocolError::ControlFrameTooBig));
            }
            return Some(match opcode {
                0x8 => self.on_close(payload.freeze()),
                0x9 => {
                    let data = payload.freeze();
                    let pong = frame::pong(&data);
                    self.out.extend_from_slice(&pong);
                    Next::Message(Message::Ping(data))
                }
                0xA => Next::Message(Message::Pong(payload.freeze())),
                other => protocol(ProtocolError::UnknownControlFrameType(other)),
            });
        }
        let data = match opcode {
            0 => OpData::Continue,
            1 => OpData::Text,
            2 => OpData::Binary,
            other => OpData::Reserved(other),
        };
        match (data, self.partial.is_some()) {
            (OpData::Continue, false) => Some(protocol(ProtocolError::UnexpectedContinueFrame)),
            (OpData::Continue, true) => {
                if let Err(e) = self.extend(&payload) {
                    return Some(Next::Violation(e));
                }
                fin.then(|| self.complete())
            }
            (_, true) => Some(protocol(ProtocolError::ExpectedFragment(data))),
            (OpData::Reserved(i), false) => Some(protocol(ProtocolError::UnknownDataFrameType(i))),
            (_, false) if fin => Some(match data {
                OpData::Text => match Utf8Bytes::try_from(payload.freeze()) {
                    Ok(text) => Next::Message(Message::Text(text)),
                    Err(e) => Next::Violation(utf8(e)),
                },
                _ => Next::Message(Message::Binary(payload.freeze())),
            }),
            (_, false) => {
                self.partial = Some(Box::new(Partial {
                    text: data == OpData::Text,
                    data: BytesMut::new(),
                    valid: 0,
                }));
                self.extend(&payload).err().map(Next::Violation)
            }
        }
    }

    /// Adds a fragment to the message being assembled: within the size limit, and for
    /// text, failing as soon as the bytes so far cannot be UTF-8 (a character may still be
    /// cut at the end).
    fn extend(&mut self, fragment: &[u8]) -> Result<(), Error> {
        let p = self.partial.as_mut().expect("a message is being assembled");
        let size = p.data.len();
        if size > self.max || fragment.len() > self.max - size {
            return Err(too_long(size.saturating_add(fragment.len()), self.max));
        }
        p.data.extend_from_slice(fragment);
        if p.text {
            match std::str::from_utf8(&p.data[p.valid..]) {
                Ok(_) => p.valid = p.data.len(),
                Err(e) if e.error_len().is_none() => p.valid += e.valid_up_to(),
                Err(e) => return Err(utf8(e)),
            }
        }
        Ok(())
    }

    fn complete(&mut self) -> Next {
        let p = self.partial.take().expect("a message is being assembled");
        let data = p.data.freeze();
        if !p.text {
            return Next::Message(Message::Binary(data));
        }
        match Utf8Bytes::try_from(data) {
            Ok(text) => Next::Message(Message::Text(text)),
            Err(e) => Next::Violation(utf8(e)),
        }
    }

    /// The peer's close: its code and reason (checked), and the reply for
    /// [`FrameReader::answer_close`]: the same close, or 1002 for a code a peer may not send.
    fn on_close(&mut self, payload: Bytes) -> Next {
        let close = match payload.len() {
            0 => None,
            1 => return protocol(ProtocolError::InvalidCloseSequence),
            _ => {
                let code = CloseCode::from(u16::from_be_bytes([payload[0], payload[1]]));
                let reason = match Utf8Bytes::try_from(payload.slice(2..)) {
                    Ok(r) => r,
                    Err(e) => return Next::Violation(utf8(e)),
                };
                Some(if code.is_allowed() {
                    CloseFrame { code, reason }
                } else {
                    CloseFrame {
                        code: CloseCode::Protocol,
                        reason: Utf8Bytes::from_static("Protocol violation"),
                    }
                })
            }
        };
        self.closed = true;
        self.buf = BytesMut::new();
        self.partial = None;
        self.close_reply = Some(match &close {
            None => frame::close_empty(),
            Some(f) => frame::close(u16::from(f.code), f.reason.as_str()),
        });
        Next::Message(Message::Close(close))
    }

    /// After a close from the peer: writes the reply (the client's code echoed, or 1002
    /// for a code a peer may not send) into the output.
    pub fn answer_close(&mut self) {
        if let Some(reply) = self.close_reply.take() {
            self.out.extend_from_slice(&reply);
        }
    }

    /// What the reader wrote (pongs, the close reply), as one buffer to send.
    pub fn take_output(&mut self) -> Option<Bytes> {
        (!self.out.is_empty()).then(|| Bytes::from(std::mem::take(&mut self.out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame.
    fn client(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut f = vec![first];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        let mut p = payload.to_vec();
        unmask(&mut p, mask);
        f.extend_from_slice(&p);
        f
    }

    fn text(r: &mut FrameReader) -> String {
        match r.next() {
            Next::Message(Message::Text(t)) => t.as_str().to_string(),
            Next::Message(m) => panic!("expected text, got {m:?}"),
            Next::NeedMore => panic!("expected text, got NeedMore"),
            Next::Closed => panic!("expected text, got Closed"),
            Next::Violation(e) => panic!("expected text, got {e}"),
        }
    }

    fn violation(r: &mut FrameReader) -> String {
        match r.next() {
            Next::Violation(e) => e.to_string(),
            _ => panic!("expected a violation"),
        }
    }

    #[test]
    fn a_frame_split_anywhere_reads_the_same() {
        let f = client(0x81, "héllo, wörld".as_bytes());
        for cut in 0..f.len() {
            let mut r = FrameReader::new(1024, &f[..cut]);
            assert!(matches!(r.next(), Next::NeedMore), "cut at {cut}");
            r.feed(&f[cut..]);
            assert_eq!(text(&mut r), "héllo, wörld");
            assert!(matches!(r.next(), Next::NeedMore));
            assert_eq!(r.buf.capacity(), 0, "no buffer kept while idle");
        }
    }

    #[test]
    fn extended_lengths_and_fragments() {
        let long = "x".repeat(300);
        let mut bytes = client(0x81, long.as_bytes());
        bytes.extend(client(0x01, "frag".as_bytes()));
        bytes.extend(client(0x89, b"p")); // a ping between fragments
        bytes.extend(client(0x80, "ment é".as_bytes()));
        let mut r = FrameReader::new(1024, &bytes);
        assert_eq!(text(&mut r), long);
        assert!(matches!(r.next(), Next::Message(Message::Ping(p)) if &p[..] == b"p"));
        assert_eq!(text(&mut r), "fragment é");
        assert_eq!(&r.take_output().unwrap()[..], &[0x8A, 1, b'p']);
    }

    #[test]
    fn a_character_cut_between_fragments_is_fine_and_bad_utf8_is_not() {
        let e = "é".as_bytes();
        let mut bytes = client(0x01, &e[..1]);
        bytes.extend(client(0x80, &e[1..]));
        let mut r = FrameReader::new(64, &bytes);
        assert_eq!(text(&mut r), "é");
        let mut r = FrameReader::new(64, &client(0x01, &[b'a', 0xFF]));
        assert!(violation(&mut r).contains("UTF-8"));
        let mut r = FrameReader::new(64, &client(0x81, &[0xC3]));
        assert!(violation(&mut r).contains("UTF-8"));
    }

    #[test]
    fn limits_hold_before_the_payload_arrives() {
        let f = client(0x81, &[b'a'; 200]);
        let mut r = FrameReader::new(100, &f[..8]);
        assert!(violation(&mut r).contains("200 > 100"));
        // fragments add up
        let mut bytes = client(0x01, &[b'a'; 60]);
        bytes.extend(client(0x80, &[b'a'; 60]));
        let mut r = FrameReader::new(100, &bytes);
        assert!(violation(&mut r).contains("120 > 100"));
    }

    #[test]
    fn protocol_violations() {
        let unmasked = [0x81, 1, b'a'];
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (unmasked.to_vec(), "unmasked"),
            (client(0xC1, b"a"), "reserved bits"),
            (client(0x09, b""), "fragmented control"),
            (client(0x89, &[0; 126]), "too big"),
            (client(0x8B, b""), "control frame"),
            (client(0x83, b""), "data frame"),
            (client(0x80, b"a"), "continue frame"),
            (client(0x88, b"x"), "close"),
            (
                [client(0x01, b"a"), client(0x81, b"b")].concat(),
                "fragment",
            ),
        ];
        for (bytes, what) in cases {
            let mut r = FrameReader::new(1024, &bytes);
            let e = violation(&mut r);
            assert!(
                e.to_lowercase().contains(what),
                "{what}: got {e} for {bytes:?}"
            );
        }
    }

    #[test]
    fn close_is_echoed_or_refused() {
        let mut payload = 1000u16.to_be_bytes().to_vec();
        payload.extend_from_slice(b"bye");
        let mut r = FrameReader::new(64, &client(0x88, &payload));
        match r.next() {
            Next::Message(Message::Close(Some(f))) => {
                assert_eq!(u16::from(f.code), 1000);
                assert_eq!(f.reason.as_str(), "bye");
            }
            _ => panic!("expected a close"),
        }
        assert!(
            r.take_output().is_none(),
            "the reply waits for answer_close"
        );
        r.answer_close();
        assert_eq!(
            &r.take_output().unwrap()[..],
            &[0x88, 5, 0x03, 0xE8, b'b', b'y', b'e']
        );
        assert!(matches!(r.next(), Next::Closed));

        // 1005 may not be sent by a peer: answered with 1002
        let mut r = FrameReader::new(64, &client(0x88, &1005u16.to_be_bytes()));
        assert!(
            matches!(r.next(), Next::Message(Message::Close(Some(f))) if u16::from(f.code) == 1002)
        );
        r.answer_close();
        let out = r.take_output().unwrap();
        assert_eq!(&out[2..4], &1002u16.to_be_bytes());

        // an empty close is answered with an empty close
        let mut r = FrameReader::new(64, &client(0x88, b""));
        assert!(matches!(r.next(), Next::Message(Message::Close(None))));
        r.answer_close();
        assert_eq!(&r.take_output().unwrap()[..], &[0x88, 0]);
    }
}
