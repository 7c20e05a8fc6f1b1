//! im-logic: authentication, the client API's rules and message routing.
//!
//! - [`LogicService`] implements [`LogicApi`], the port gateways call (in-process in the
//!   embedded profile, through [`GrpcLogic`] and the gRPC server in the distributed one);
//! - [`consumer`] reads `im-upstream-topic`, has the store append (group commit), acks the
//!   sender's connection and routes the message to the gateways of its online recipients.
#![forbid(unsafe_code)]

mod api;
pub mod auth;
mod client;
pub mod consumer;
pub mod metrics;
mod server;
mod service;

pub use api::LogicApi;
pub use client::GrpcLogic;
pub use server::{serve, serve_with, LogicGrpc};
pub use service::LogicService;
