//! Trace ids: one per client send (and per HTTP API request), made at the gateway and
//! carried with the message wherever it goes, so that every log line on its path names it.
//!
//! How an id travels between processes:
//! - in `UpstreamMessage.trace_id`, and as the bus record header [`HEADER`] (`trace-id`)
//!   on every record published on the message's behalf: the upstream send, the downstream
//!   ack, error and new-message batches, the task for im-task ([`publish`]);
//! - as the gRPC metadata [`METADATA`] (`x-trace-id`) of calls made on its behalf
//!   ([`inject`] on the clients, [`TracedService`] on the servers);
//! - as the `X-Trace-Id` response header of the gateway's HTTP API, for support.
//!
//! Within a process the id is a tokio task-local ([`current`]), set together with a
//! tracing span that carries it ([`in_message`], [`in_request`], and `rpc{trace_id, path}`
//! in [`TracedService`]): every log line inside shows `message{trace_id=...}:` (text) or
//! the span's fields (JSON). The task-local works on any executor (it is set while the
//! future is polled), so the gateway's monoio cores use it too.
//!
//! The spans are at `ERROR` level on purpose: a span's level only filters the span, and a
//! `warn!` inside an `info` span that `RUST_LOG=warn` filters out would lose its trace id.
//! Their target is `ringchat_core::trace`.

use std::fmt;
use std::future::Future;
use std::num::NonZeroU64;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::task::futures::TaskLocalFuture;
use tracing::instrument::Instrumented;
use tracing::{Instrument, Span};

use crate::error::Result;
use crate::ports::{Bus, Record};

/// The bus record header that carries a trace id (16 hex digits).
pub const HEADER: &str = "trace-id";
/// The gRPC metadata key, and the gateway's HTTP response header, that carry a trace id.
pub const METADATA: &str = "x-trace-id";

/// A trace id: 64 random bits, written as 16 lowercase hex digits. `Copy` and
/// allocation-free; its text form is made only where it is written out.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId(NonZeroU64);

impl TraceId {
    /// A new random id.
    pub fn random() -> TraceId {
        loop {
            if let Some(n) = NonZeroU64::new(rand::random()) {
                return TraceId(n);
            }
        }
    }

    /// Reads an id in its text form (16 hex digits, either case); anything else is no id.
    pub fn parse(text: impl AsRef<[u8]>) -> Option<TraceId> {
        let text = text.as_ref();
        if text.len() != 16 {
            return None;
        }
        let mut n = 0u64;
        for b in text {
            let digit = match b {
                b'0'..=b'9' => b - b'0',
                b'a'..=b'f' => b - b'a' + 10,
                b'A'..=b'F' => b - b'A' + 10,
                _ => return None,
            };
            n = (n << 4) | u64::from(digit);
        }
        NonZeroU64::new(n).map(TraceId)
    }

    /// The text form, on the stack.
    pub fn hex(self) -> Hex {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 16];
        let n = self.0.get();
        for (i, b) in out.iter_mut().enumerate() {
            *b = DIGITS[((n >> (60 - 4 * i)) & 0xf) as usize];
        }
        Hex(out)
    }

    /// The id a bus record carries in its [`HEADER`].
    pub fn of_record(record: &Record) -> Option<TraceId> {
        record.header(HEADER).and_then(TraceId::parse)
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hex().as_str())
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

/// A trace id's 16 hex digits.
#[derive(Clone, Copy)]
pub struct Hex([u8; 16]);

impl Hex {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        // only ASCII hex digits are ever written
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

tokio::task_local! {
    static CURRENT: Option<TraceId>;
}

/// The trace id of the work the calling task does now, if it does some on a trace's behalf.
pub fn current() -> Option<TraceId> {
    CURRENT.try_with(|id| *id).ok().flatten()
}

/// A future run as part of a trace: the id is [`current`] and its span entered whenever
/// the future is polled.
pub type Traced<F> = TaskLocalFuture<Option<TraceId>, Instrumented<F>>;

fn scoped<F: Future>(id: Option<TraceId>, span: Span, fut: F) -> Traced<F> {
    CURRENT.scope(id, fut.instrument(span))
}

/// Runs `fut`, the processing of one message, in the span `message{trace_id}`; as it is
/// when there is no id, or when it runs in that trace already (no nested copy of the span).
pub fn in_message<F: Future>(id: Option<TraceId>, fut: F) -> Traced<F> {
    let outer = current();
    match id {
        Some(id) if outer != Some(id) => {
            let span = tracing::error_span!("message", trace_id = %id);
            scoped(Some(id), span, fut)
        }
        _ => scoped(outer, Span::none(), fut),
    }
}

/// Runs `fut`, one HTTP API request, in the span `request{trace_id}`.
pub fn in_request<F: Future>(id: TraceId, fut: F) -> Traced<F> {
    let span = tracing::error_span!("request", trace_id = %id);
    scoped(Some(id), span, fut)
}

/// `fut` with the caller's trace id and span, for running it on another task or runtime
/// (the gateway's bridge from its cores to the tokio side).
pub fn carried<F: Future>(fut: F) -> Traced<F> {
    scoped(current(), Span::current(), fut)
}

/// [`Bus::publish`], with the [`HEADER`] of the current trace when there is one: what
/// every publish on a message's behalf goes through.
pub async fn publish(bus: &dyn Bus, topic: &str, key: &[u8], payload: Bytes) -> Result<()> {
    match current() {
        Some(id) => {
            let hex = id.hex();
            bus.publish_with_headers(topic, key, payload, &[(HEADER, hex.as_bytes())])
                .await
        }
        None => bus.publish(topic, key, payload).await,
    }
}

/// The client side of gRPC propagation: a tonic interceptor that puts the current trace id
/// in the call's [`METADATA`]. `Client::with_interceptor(channel, trace::inject)`.
pub fn inject(
    mut req: tonic::Request<()>,
) -> std::result::Result<tonic::Request<()>, tonic::Status> {
    if let Some(id) = current() {
        if let Ok(v) = tonic::metadata::AsciiMetadataValue::try_from(id.hex().as_str()) {
            req.metadata_mut().insert(METADATA, v);
        }
    }
    Ok(req)
}

/// The type of [`inject`], to name intercepted clients.
pub type Inject = fn(tonic::Request<()>) -> std::result::Result<tonic::Request<()>, tonic::Status>;

/// The server side of gRPC propagation: wraps a generated tonic server so that each call
/// that came with a trace id runs in the span `rpc{trace_id, path}`, with the id current
/// for the calls it makes in turn; it logs `rpc received` at debug level.
/// `Server::builder().add_service(TracedService::new(svc))`.
#[derive(Debug, Clone)]
pub struct TracedService<S> {
    inner: S,
}

impl<S> TracedService<S> {
    pub fn new(inner: S) -> Self {
        TracedService { inner }
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for TracedService<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tonic::codegen::Service<http::Request<B>> for TracedService<S>
where
    S: tonic::codegen::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Traced<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let id = req
            .headers()
            .get(METADATA)
            .and_then(|v| TraceId::parse(v.as_bytes()));
        let span = match id {
            Some(id) => {
                let span = tracing::error_span!("rpc", trace_id = %id, path = %req.uri().path());
                tracing::debug!(parent: &span, "rpc received");
                span
            }
            None => Span::none(),
        };
        scoped(id, span, self.inner.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_reads_back_from_its_text() {
        for _ in 0..100 {
            let id = TraceId::random();
            let text = id.to_string();
            assert_eq!(text.len(), 16);
            assert!(text
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
            assert_eq!(TraceId::parse(&text), Some(id));
            assert_eq!(TraceId::parse(text.to_uppercase()), Some(id));
        }
        assert_eq!(
            TraceId::parse("00000000000000ff").map(|i| i.to_string()),
            Some("00000000000000ff".into())
        );
        for bad in [
            "",
            "abc",
            "0000000000000000",
            "4bf92f3577b34da6x",
            "4bf92f3577b34dag",
        ] {
            assert_eq!(TraceId::parse(bad), None, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn the_id_is_current_inside_its_scope_and_carried_across_tasks() {
        assert_eq!(current(), None);
        let id = TraceId::random();
        let seen = in_message(Some(id), async {
            let here = current();
            let there = tokio::spawn(carried(async { current() })).await.unwrap();
            let not_carried = tokio::spawn(async { current() }).await.unwrap();
            (here, there, not_carried)
        })
        .await;
        assert_eq!(seen, (Some(id), Some(id), None));
        assert_eq!(current(), None);
    }

    #[tokio::test]
    async fn an_inner_scope_keeps_the_trace_it_runs_in() {
        let (outer, other) = (TraceId::random(), TraceId::random());
        let seen = in_message(Some(outer), async {
            let same = in_message(Some(outer), async { current() }).await;
            let none = in_message(None, async { current() }).await;
            let new = in_message(Some(other), async { current() }).await;
            (same, none, new, current())
        })
        .await;
        assert_eq!(seen, (Some(outer), Some(outer), Some(other), Some(outer)));
    }

    #[test]
    fn inject_writes_the_metadata_of_the_current_trace() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let id = TraceId::random();
        let req = rt
            .block_on(in_message(Some(id), async {
                inject(tonic::Request::new(()))
            }))
            .unwrap();
        assert_eq!(
            req.metadata().get(METADATA).map(|v| v.to_str().unwrap()),
            Some(id.to_string().as_str())
        );
        let plain = inject(tonic::Request::new(())).unwrap();
        assert!(plain.metadata().get(METADATA).is_none());
    }
}
