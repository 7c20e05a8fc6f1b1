//! Server-to-client WebSocket frames, encoded once into one buffer (header + payload) so
//! the same `Bytes` can be queued on any number of connections. Server frames are never
//! masked (RFC 6455 5.1), so the bytes are identical for every recipient.

use bytes::{BufMut, Bytes, BytesMut};

const FIN: u8 = 0x80;
const OP_TEXT: u8 = 0x1;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

fn encode(opcode: u8, payload: &[u8]) -> Bytes {
    let len = payload.len();
    let mut b = BytesMut::with_capacity(len + 10);
    b.put_u8(FIN | opcode);
    if len < 126 {
        b.put_u8(len as u8);
    } else if len <= u16::MAX as usize {
        b.put_u8(126);
        b.put_u16(len as u16);
    } else {
        b.put_u8(127);
        b.put_u64(len as u64);
    }
    b.put_slice(payload);
    b.freeze()
}

/// A final text frame.
pub fn text(payload: &str) -> Bytes {
    encode(OP_TEXT, payload.as_bytes())
}

/// A close frame with a status code and a (truncated) reason.
pub fn close(code: u16, reason: &str) -> Bytes {
    let mut p = Vec::with_capacity(2 + reason.len().min(123));
    p.extend_from_slice(&code.to_be_bytes());
    // control frame payloads are at most 125 bytes; cut on a char boundary
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    p.extend_from_slice(&reason.as_bytes()[..end]);
    encode(OP_CLOSE, &p)
}

/// A close frame without a status code (the reply to an empty close).
pub fn close_empty() -> Bytes {
    encode(OP_CLOSE, b"")
}

pub fn ping() -> Bytes {
    encode(OP_PING, b"")
}

/// The answer to a ping: its payload (at most 125 bytes) echoed.
pub fn pong(payload: &[u8]) -> Bytes {
    encode(OP_PONG, payload)
}

/// RFC 6455 close codes the gateway uses.
pub mod code {
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL_ERROR: u16 = 1011;
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// The client API's "authentication failed" close.
    pub const AUTH_FAILED: u16 = 4001;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_use_the_right_encoding() {
        assert_eq!(&text("hi")[..], &[0x81, 2, b'h', b'i']);
        let mid = text(&"x".repeat(300));
        assert_eq!(&mid[..4], &[0x81, 126, 1, 44]);
        assert_eq!(mid.len(), 304);
        let big = text(&"x".repeat(70_000));
        assert_eq!(big[1], 127);
        assert_eq!(u64::from_be_bytes(big[2..10].try_into().unwrap()), 70_000);
    }

    #[test]
    fn close_frames_stay_within_control_limits() {
        let c = close(1001, &"é".repeat(200));
        assert_eq!(c[0], 0x88);
        assert!(c[1] as usize <= 125);
        assert_eq!(u16::from_be_bytes([c[2], c[3]]), 1001);
        assert!(std::str::from_utf8(&c[4..]).is_ok());
    }
}
