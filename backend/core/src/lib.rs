//! ringchat's domain core, shared by im-logic, im-repo, im-task and the gateway:
//! the error type, typed configuration, the ports (one trait per external system) with
//! their embedded adapters, and the domain rules every service applies the same way.
#![forbid(unsafe_code)]

pub mod adapters;
pub mod bootstrap;
pub mod config;
pub mod consume;
pub mod degraded;
pub mod dynamic;
pub mod error;
pub mod fanout;
pub mod ids;
pub mod limits;
pub mod model;
pub mod ports;
pub mod shutdown;
pub mod trace;

#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

pub use config::Config;
pub use error::{Error, ErrorCode, Result};
pub use ports::Ports;
