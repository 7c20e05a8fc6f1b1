//! The bridge from the monoio cores to the tokio side.
//!
//! Cores never run tokio futures themselves: the backend clients (the in-process
//! [`LogicApi`] of the embedded profile, or the tonic client of the distributed one) need a
//! tokio runtime. A core hands a closure to [`Bridge::call`], which spawns it
//! on the tokio runtime and awaits the answer over a oneshot channel (tokio's sync
//! primitives are runtime-agnostic wakers, safe to await on monoio). A call takes the
//! caller's trace id and span along ([`ringchat_core::trace::carried`]).

use std::future::Future;
use std::sync::Arc;

use im_logic::LogicApi;
use ringchat_core::{Error, ErrorCode, Result};

#[derive(Clone)]
pub struct Bridge {
    rt: tokio::runtime::Handle,
    logic: Arc<dyn LogicApi>,
}

impl Bridge {
    pub fn new(rt: tokio::runtime::Handle, logic: Arc<dyn LogicApi>) -> Self {
        Bridge { rt, logic }
    }

    /// Runs `f(logic)` on the tokio side and awaits its result from any executor (a tokio
    /// `JoinHandle` wakes whatever waker polls it). A call that panics is an `INTERNAL`
    /// error, logged; one cut short by the runtime stopping is `UNAVAILABLE`.
    pub async fn call<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: FnOnce(Arc<dyn LogicApi>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let logic = self.logic.clone();
        let call = ringchat_core::trace::carried(async move { f(logic).await });
        match self.rt.spawn(call).await {
            Ok(r) => r,
            Err(e) if e.is_panic() => {
                tracing::error!(error = %e, "backend call panicked");
                Err(Error::new(ErrorCode::Internal, "internal error"))
            }
            Err(_) => Err(Error::unavailable("the backend runtime is shutting down")),
        }
    }

    /// Fire-and-forget on the tokio side; failures are logged.
    pub fn spawn<F, Fut>(&self, what: &'static str, f: F)
    where
        F: FnOnce(Arc<dyn LogicApi>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        let logic = self.logic.clone();
        self.rt.spawn(ringchat_core::trace::carried(async move {
            if let Err(e) = f(logic).await {
                tracing::warn!(error = %e, what, "backend call failed");
            }
        }));
    }
}
