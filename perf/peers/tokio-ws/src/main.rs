//! The ordinary Rust WebSocket broadcast server, as a benchmark peer: tokio +
//! tokio-tungstenite, one task per connection for reading, one writer task per connection
//! fed by an unbounded channel, one `send` (and flush) per frame per connection, rooms in
//! a `Mutex<HashMap>`. It serves the slice of the ringchat client protocol the scenarios
//! use: token in the URL, `join`, `send-message` in, `new-message` out.
//!
//! Usage: `peer-tokio-ws [ADDR]` (default 127.0.0.1:8091).
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

type Rooms = Arc<Mutex<HashMap<String, Vec<(u64, mpsc::UnboundedSender<Message>)>>>>;

static NEXT: AtomicU64 = AtomicU64::new(1);

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8091".into());
    let listener = TcpListener::bind(&addr).await.expect("bind");
    println!("tokio-ws peer listening on {addr}");
    let rooms: Rooms = Arc::default();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(serve(stream, rooms.clone()));
    }
}

// the handshake callback's error type is tungstenite's (an HTTP response); it is never
// built here, so its size costs nothing
#[allow(clippy::result_large_err)]
async fn serve(stream: TcpStream, rooms: Rooms) {
    let _ = stream.set_nodelay(true);
    let mut token = String::new();
    let callback = |req: &tokio_tungstenite::tungstenite::handshake::server::Request, resp| {
        token = req
            .uri()
            .query()
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("token=")))
            .unwrap_or("")
            .to_string();
        Ok(resp)
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.send(m).await.is_err() {
                break;
            }
        }
    });
    let _ = tx.send(Message::text(
        json!({ "data": { "userId": token }, "type": "connected" }).to_string(),
    ));
    let mut joined: Vec<String> = Vec::new();
    let mut seq = 0u64;
    while let Some(Ok(msg)) = stream.next().await {
        let Message::Text(text) = msg else { continue };
        let Ok(f) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        let d = &f["data"];
        match f["type"].as_str() {
            Some("join") => {
                let room = d["conversationId"].as_str().unwrap_or("").to_string();
                rooms
                    .lock()
                    .unwrap()
                    .entry(room.clone())
                    .or_default()
                    .push((id, tx.clone()));
                joined.push(room);
            }
            Some("send-message") => {
                seq += 1;
                let room = d["conversationId"].as_str().unwrap_or("");
                let out = Message::text(
                    json!({
                        "data": {
                            "conversationId": room,
                            "message": { "content": d["content"], "conversationId": room, "messageId": format!("{id}-{seq}"), "senderId": token, "seqId": seq, "type": "text" },
                        },
                        "type": "new-message",
                    })
                    .to_string(),
                );
                if let Some(members) = rooms.lock().unwrap().get(room) {
                    for (member, mtx) in members {
                        if *member != id {
                            let _ = mtx.send(out.clone());
                        }
                    }
                }
                let _ = tx.send(Message::text(
                    json!({ "data": { "tempMessageId": d["tempMessageId"], "seqId": seq, "status": "success" }, "type": "message-ack" }).to_string(),
                ));
            }
            Some("ping") => {
                let _ = tx.send(Message::text(r#"{"data":{},"type":"pong"}"#));
            }
            _ => {}
        }
    }
    let mut r = rooms.lock().unwrap();
    for room in joined {
        if let Some(v) = r.get_mut(&room) {
            v.retain(|(m, _)| *m != id);
        }
    }
    drop(r);
    writer.abort();
}
