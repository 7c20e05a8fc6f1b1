//! A cloneable shutdown signal for long-running loops (consumers, servers).

use tokio::sync::watch;

/// Triggers shutdown of every [`ShutdownSignal`] cloned from it.
pub struct Shutdown {
    tx: watch::Sender<bool>,
}

/// Resolves once shutdown was triggered (or the trigger was dropped).
#[derive(Clone)]
pub struct ShutdownSignal {
    rx: watch::Receiver<bool>,
}

impl Shutdown {
    pub fn new() -> (Shutdown, ShutdownSignal) {
        let (tx, rx) = watch::channel(false);
        (Shutdown { tx }, ShutdownSignal { rx })
    }

    pub fn trigger(&self) {
        let _ = self.tx.send(true);
    }
}

impl ShutdownSignal {
    /// A signal that never fires.
    pub fn never() -> ShutdownSignal {
        let (tx, rx) = watch::channel(false);
        std::mem::forget(tx);
        ShutdownSignal { rx }
    }

    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    pub async fn wait(&mut self) {
        while !*self.rx.borrow_and_update() {
            if self.rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Waits by value, for APIs that take an owned `impl Future<Output = ()>`.
    pub async fn into_future(mut self) {
        self.wait().await
    }
}
