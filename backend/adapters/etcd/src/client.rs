//! A thin client over the etcd v3 gRPC API: the few calls discovery makes (range, put,
//! delete, lease grant/revoke/keep-alive, watch), each unary call with a deadline.
//!
//! Calls return `tonic::Status` so that callers can tell the failures they handle (a lost
//! lease) from the others; [`to_error`] maps a status to ringchat's error once, at the
//! port's boundary.

use std::time::Duration;

use ringchat_core::{Error, Result};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status, Streaming};

use crate::pb::etcdserverpb as rpc;
use crate::pb::etcdserverpb::kv_client::KvClient;
use crate::pb::etcdserverpb::lease_client::LeaseClient;
use crate::pb::etcdserverpb::watch_client::WatchClient;
use crate::pb::mvccpb::KeyValue;

/// The deadline of one unary call, and of opening a stream.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone)]
pub(crate) struct Etcd {
    kv: KvClient<Channel>,
    lease: LeaseClient<Channel>,
    watch: WatchClient<Channel>,
}

/// A keep-alive stream of one lease: send a request, read its answer.
pub(crate) struct KeepAlive {
    pub tx: mpsc::Sender<rpc::LeaseKeepAliveRequest>,
    pub rx: Streaming<rpc::LeaseKeepAliveResponse>,
}

/// A watch stream; `_tx` keeps the request side open (closing it may end the watch).
/// As with keep-alives, the create request goes before the call: etcd sends the stream's
/// headers with its first response.
pub(crate) struct WatchStream {
    _tx: mpsc::Sender<rpc::WatchRequest>,
    pub rx: Streaming<rpc::WatchResponse>,
}

impl Etcd {
    /// A lazily connecting client over `endpoints` (`http://host:port`, or bare
    /// `host:port`), balanced when there are several. Nothing is dialled yet.
    pub fn new(endpoints: &[String]) -> Result<Etcd> {
        if endpoints.is_empty() {
            return Err(Error::invalid("etcd: no endpoint given"));
        }
        let mut eps = Vec::with_capacity(endpoints.len());
        for e in endpoints {
            let url = if e.contains("://") {
                e.clone()
            } else {
                format!("http://{e}")
            };
            let ep = Endpoint::from_shared(url)
                .map_err(|err| Error::invalid(format!("etcd endpoint {e:?}: {err}")))?
                .connect_timeout(CALL_TIMEOUT)
                .tcp_nodelay(true)
                // a watch or keep-alive stream on a dead connection is noticed within
                // seconds, not at the kernel's TCP timeout
                .http2_keep_alive_interval(Duration::from_secs(5))
                .keep_alive_timeout(Duration::from_secs(3))
                .keep_alive_while_idle(true);
            eps.push(ep);
        }
        let channel = match eps.len() {
            1 => eps.remove(0).connect_lazy(),
            _ => Channel::balance_list(eps.into_iter()),
        };
        const MAX_MESSAGE: usize = 64 * 1024 * 1024;
        Ok(Etcd {
            kv: KvClient::new(channel.clone()).max_decoding_message_size(MAX_MESSAGE),
            lease: LeaseClient::new(channel.clone()).max_decoding_message_size(MAX_MESSAGE),
            watch: WatchClient::new(channel).max_decoding_message_size(MAX_MESSAGE),
        })
    }

    /// Every key starting with `prefix`, and the store's revision they were read at.
    pub async fn range_prefix(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64), Status> {
        let req = rpc::RangeRequest {
            key: prefix.as_bytes().to_vec(),
            range_end: prefix_end(prefix.as_bytes()),
            ..Default::default()
        };
        let resp = deadline(self.kv.clone().range(req)).await?;
        Ok((resp.kvs, revision(&resp.header)))
    }

    /// The value of `key`, if any, and the store's revision it was read at.
    pub async fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, i64), Status> {
        let req = rpc::RangeRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        };
        let resp = deadline(self.kv.clone().range(req)).await?;
        let revision = revision(&resp.header);
        Ok((resp.kvs.into_iter().next().map(|kv| kv.value), revision))
    }

    /// Puts `key` (attached to `lease` unless 0); returns the revision of the write.
    pub async fn put(&self, key: &str, value: Vec<u8>, lease: i64) -> Result<i64, Status> {
        let req = rpc::PutRequest {
            key: key.as_bytes().to_vec(),
            value,
            lease,
            ..Default::default()
        };
        let resp = deadline(self.kv.clone().put(req)).await?;
        Ok(revision(&resp.header))
    }

    /// Deletes `key`; returns how many keys went (0 or 1) and the store's revision.
    pub async fn delete(&self, key: &str) -> Result<(i64, i64), Status> {
        let req = rpc::DeleteRangeRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        };
        let resp = deadline(self.kv.clone().delete_range(req)).await?;
        Ok((resp.deleted, revision(&resp.header)))
    }

    /// A new lease; returns its id and the TTL the server chose (it may raise a small one).
    pub async fn grant(&self, ttl_secs: i64) -> Result<(i64, i64), Status> {
        let req = rpc::LeaseGrantRequest {
            ttl: ttl_secs,
            id: 0,
        };
        let resp = deadline(self.lease.clone().lease_grant(req)).await?;
        if !resp.error.is_empty() {
            return Err(Status::unavailable(format!("lease grant: {}", resp.error)));
        }
        Ok((resp.id, resp.ttl))
    }

    /// Revokes a lease, deleting its keys. A lease already gone is not an error.
    pub async fn revoke(&self, lease: i64) -> Result<(), Status> {
        let req = rpc::LeaseRevokeRequest { id: lease };
        match deadline(self.lease.clone().lease_revoke(req)).await {
            Err(s) if is_lease_not_found(&s) => Ok(()),
            r => r.map(drop),
        }
    }

    /// Opens a keep-alive stream for `lease`, with its first request already sent (etcd
    /// answers the stream's headers only with the first response).
    pub async fn keep_alive(&self, lease: i64) -> Result<KeepAlive, Status> {
        let (tx, rx) = mpsc::channel(4);
        tx.send(rpc::LeaseKeepAliveRequest { id: lease })
            .await
            .map_err(|_| Status::internal("keep-alive request channel closed"))?;
        let rx = deadline(self.lease.clone().lease_keep_alive(ReceiverStream::new(rx))).await?;
        Ok(KeepAlive { tx, rx })
    }

    /// Watches every key starting with `prefix`, from `start_revision` on.
    pub async fn watch_prefix(
        &self,
        prefix: &str,
        start_revision: i64,
    ) -> Result<WatchStream, Status> {
        let (tx, rx) = mpsc::channel(1);
        let create = rpc::WatchRequest {
            request_union: Some(rpc::watch_request::RequestUnion::CreateRequest(
                rpc::WatchCreateRequest {
                    key: prefix.as_bytes().to_vec(),
                    range_end: prefix_end(prefix.as_bytes()),
                    start_revision,
                    // empty responses now and then tell how far the watch has come
                    progress_notify: true,
                    ..Default::default()
                },
            )),
        };
        tx.send(create)
            .await
            .map_err(|_| Status::internal("watch request channel closed"))?;
        let rx = deadline(self.watch.clone().watch(ReceiverStream::new(rx))).await?;
        Ok(WatchStream { _tx: tx, rx })
    }
}

async fn deadline<T>(
    call: impl std::future::Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T, Status> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(r) => r.map(tonic::Response::into_inner),
        Err(_) => Err(Status::deadline_exceeded(format!(
            "no answer within {CALL_TIMEOUT:?}"
        ))),
    }
}

fn revision(header: &Option<rpc::ResponseHeader>) -> i64 {
    header.as_ref().map_or(0, |h| h.revision)
}

/// The end of the range of keys starting with `prefix`: the prefix with its last byte
/// below 0xff incremented (etcd's `GetPrefixRangeEnd`).
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // every byte 0xff (or empty): to the end of the keyspace
    vec![0]
}

/// etcd answers `NotFound` "etcdserver: requested lease not found" for a put or revoke on
/// an expired or revoked lease.
pub(crate) fn is_lease_not_found(s: &Status) -> bool {
    s.code() == Code::NotFound && s.message().contains("lease not found")
}

/// An outage (no connection, no leader, a timeout) is `UNAVAILABLE`; a request etcd
/// refuses is `INVALID_ARGUMENT`; anything else is `INTERNAL`.
pub(crate) fn to_error(what: &str, s: &Status) -> Error {
    let message = format!("etcd {what}: {:?}: {}", s.code(), s.message());
    match s.code() {
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Cancelled
        | Code::Unknown
        | Code::Aborted
        | Code::ResourceExhausted => Error::unavailable(message),
        Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => {
            Error::invalid(message)
        }
        _ => Error::internal(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_bound_exactly_the_keys_with_the_prefix() {
        assert_eq!(prefix_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
    }

    #[test]
    fn outages_are_retriable_and_refusals_are_not() {
        use ringchat_core::ErrorCode;
        let e = to_error("put", &Status::unavailable("etcdserver: no leader"));
        assert_eq!(e.code, ErrorCode::Unavailable);
        let e = to_error("put", &Status::deadline_exceeded("slow"));
        assert!(e.is_retryable());
        let e = to_error("put", &Status::invalid_argument("request is too large"));
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        assert!(is_lease_not_found(&Status::not_found(
            "etcdserver: requested lease not found"
        )));
        assert!(!is_lease_not_found(&Status::not_found("key")));
    }
}
