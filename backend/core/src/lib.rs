//! ringchat's domain core, shared by im-logic, im-repo, im-task and the gateway:
//! the error type, typed configuration, the ports (one trait per external system) and
//! their conformance suites, and the domain rules every service applies the same way.
//! No engine client: the adapters live in `backend/adapters/` (`ringchat-embedded` for
//! the one-process profile, one crate per real engine) and `ringchat-wiring` picks them.
#![forbid(unsafe_code)]

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
