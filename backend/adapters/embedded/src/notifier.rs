//! Offline-push notifiers: a log line (the embedded default) and a webhook that POSTs the
//! push as JSON to a configured URL (the seam for APNs/FCM relays).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use ringchat_core::error::{Error, Result};
use ringchat_core::ports::{Notifier, OfflinePush};

/// Logs each push; counts them so a process can expose the figure.
#[derive(Default)]
pub struct LogNotifier {
    sent: AtomicU64,
}

impl LogNotifier {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl Notifier for LogNotifier {
    async fn notify(&self, push: &OfflinePush) -> Result<()> {
        self.sent.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            users = push.user_ids.len(),
            conversation_id = %push.conversation_id,
            message_id = %push.message_id,
            "offline push"
        );
        Ok(())
    }
}

/// POSTs each push as JSON (`OfflinePush`, camelCase) to an `http://` URL.
/// A non-2xx answer or a timeout is an `UNAVAILABLE` error, so the caller may retry.
pub struct WebhookNotifier {
    url: http::Uri,
    timeout: Duration,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl WebhookNotifier {
    pub fn new(url: &str, timeout: Duration) -> Result<Self> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| Error::invalid(format!("webhook url {url:?}: {e}")))?;
        if uri.scheme_str() != Some("http") {
            return Err(Error::invalid("webhook url must be http://"));
        }
        Ok(WebhookNotifier {
            url: uri,
            timeout,
            client: Client::builder(TokioExecutor::new()).build_http(),
        })
    }
}

#[async_trait]
impl Notifier for WebhookNotifier {
    async fn notify(&self, push: &OfflinePush) -> Result<()> {
        let body = serde_json::to_vec(push).map_err(|e| Error::internal(e.to_string()))?;
        let req = http::Request::post(self.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| Error::internal(e.to_string()))?;
        let resp = tokio::time::timeout(self.timeout, self.client.request(req))
            .await
            .map_err(|_| Error::unavailable("webhook timed out"))?
            .map_err(|e| Error::unavailable(format!("webhook: {e}")))?;
        let status = resp.status();
        // drain the body so the connection can be reused
        let _ = resp.into_body().collect().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(Error::unavailable(format!("webhook answered {status}")))
        }
    }
}
