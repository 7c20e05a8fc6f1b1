//! ringchat's wire contracts, generated from `proto/ringchat/*.proto` at build time.
//!
//! - `Logic` (im-logic, gRPC 9001) and `Repo` (im-repo, gRPC 9002) services,
//! - the bus envelopes `UpstreamMessage`, `DownstreamBatch` and `TaskMessage`.
//!
//! Generated code is never edited by hand.
#![forbid(unsafe_code)]

#[allow(clippy::all, clippy::pedantic, missing_docs, rust_2018_idioms)]
pub mod v1 {
    tonic::include_proto!("ringchat.v1");
}

pub use v1::*;

/// Topic names of the bus (the seed's Kafka topics).
pub mod topics {
    /// Client sends, consumed by im-logic.
    pub const UPSTREAM: &str = "im-upstream-topic";
    /// Large-group / world fan-out and offline push, consumed by im-task.
    pub const TASK: &str = "im-task-topic";

    /// The downstream topic a gateway consumes.
    pub fn downstream(gateway_id: &str) -> String {
        format!("im-downstream-topic-{gateway_id}")
    }
}
