//! im-repo: the message store served over gRPC (port 9002), and [`GrpcStore`], the gRPC
//! client that implements the same [`Store`] port, so im-logic and im-task use a remote
//! im-repo exactly as they use an in-process store.
#![forbid(unsafe_code)]

mod client;
mod server;

pub use client::GrpcStore;
pub use server::{serve, serve_with, RepoService};

pub use ringchat_core::ports::Store;
