//! A single-threaded wake-up flag: one task waits, any code on the same core sets it.
//! Cheaper than a channel for "there is work" notifications inside a core.

use std::cell::Cell;
use std::future::poll_fn;
use std::task::{Poll, Waker};

#[derive(Default)]
pub struct LocalSignal {
    set: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl LocalSignal {
    pub fn notify(&self) {
        self.set.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Waits until notified (since the last wait returned), then clears the flag.
    pub async fn wait(&self) {
        poll_fn(|cx| {
            if self.set.replace(false) {
                Poll::Ready(())
            } else {
                self.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }

    pub fn is_set(&self) -> bool {
        self.set.get()
    }
}
