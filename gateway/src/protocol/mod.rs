//! The client protocol (docs/client-api.md) in one place: the WebSocket frames both ways
//! ([`frames`]) and the JSON objects of the HTTP API and of the frames ([`objects`]).
//! The gateway's HTTP handlers, its WebSocket reader and its dispatcher all speak through
//! these types; nothing else builds or picks apart client JSON.

pub mod frames;
pub mod objects;

pub use frames::{ClientFrame, FrameError, Loose, MarkRead, SendMessage, ServerEvent};
