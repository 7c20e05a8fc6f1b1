//! The webhook notifier POSTs JSON to a real HTTP listener, and reports failures as
//! retryable.

use std::time::Duration;

use ringchat_core::ports::{Notifier, OfflinePush};
use ringchat_core::ErrorCode;
use ringchat_embedded::WebhookNotifier;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn push() -> OfflinePush {
    OfflinePush {
        user_ids: vec!["7".into()],
        conversation_id: "g_1".into(),
        message_id: "99".into(),
        sender_id: "3".into(),
        sender_name: "ann".into(),
        preview: "hi".into(),
        send_time_ms: 1,
        mentioned_user_ids: vec!["7".into()],
    }
}

/// Accepts one connection, answers with `status`, returns the raw request.
async fn one_shot_server(status: &'static str) -> (String, tokio::task::JoinHandle<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/push", listener.local_addr().unwrap());
    let handle = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = sock.read(&mut chunk).await.unwrap();
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some(head_end) = text.find("\r\n\r\n") {
                let len: usize = text
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if buf.len() >= head_end + 4 + len {
                    break;
                }
            }
            if n == 0 {
                break;
            }
        }
        let resp = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        sock.write_all(resp.as_bytes()).await.unwrap();
        String::from_utf8(buf).unwrap()
    });
    (url, handle)
}

#[tokio::test]
async fn posts_the_push_as_json() {
    let (url, server) = one_shot_server("204 No Content").await;
    let n = WebhookNotifier::new(&url, Duration::from_secs(5)).unwrap();
    n.notify(&push()).await.unwrap();
    let req = server.await.unwrap();
    assert!(req.starts_with("POST /push HTTP/1.1"), "{req}");
    assert!(req
        .to_ascii_lowercase()
        .contains("content-type: application/json"));
    let body = &req[req.find("\r\n\r\n").unwrap() + 4..];
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["userIds"][0], "7");
    assert_eq!(v["messageId"], "99");
    assert_eq!(v["senderName"], "ann");
}

#[tokio::test]
async fn an_error_status_is_retryable() {
    let (url, server) = one_shot_server("503 Service Unavailable").await;
    let n = WebhookNotifier::new(&url, Duration::from_secs(5)).unwrap();
    let e = n.notify(&push()).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Unavailable);
    server.await.unwrap();
}

#[tokio::test]
async fn only_http_urls_are_accepted() {
    assert!(WebhookNotifier::new("https://example.invalid/x", Duration::from_secs(1)).is_err());
    assert!(WebhookNotifier::new("not a url", Duration::from_secs(1)).is_err());
}
