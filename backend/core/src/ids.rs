//! Snowflake message ids: 41 bits of milliseconds since 2024-01-01, 10 bits of worker id,
//! 12 bits of sequence. Unique across store writers with distinct worker ids, roughly
//! time-ordered, and safe in a JavaScript number's 53 bits only as a string (ids are
//! strings in the client API).

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

const EPOCH_MS: i64 = 1_704_067_200_000;

pub struct IdGenerator {
    worker: i64,
    state: Mutex<(i64, i64)>,
}

impl IdGenerator {
    pub fn new(worker_id: u16) -> Self {
        IdGenerator {
            worker: i64::from(worker_id & 0x3ff),
            state: Mutex::new((0, 0)),
        }
    }

    pub fn next_id(&self) -> i64 {
        let mut st = self.state.lock().expect("id lock");
        let mut now = now_ms() - EPOCH_MS;
        // never go backwards, even if the wall clock does
        if now < st.0 {
            now = st.0;
        }
        if now == st.0 {
            st.1 = (st.1 + 1) & 0xfff;
            if st.1 == 0 {
                // 4096 ids in this millisecond: borrow the next one
                now += 1;
            }
        } else {
            st.1 = 0;
        }
        st.0 = now;
        (now << 22) | (self.worker << 12) | st.1
    }
}

/// Wall-clock unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_increasing() {
        let g = IdGenerator::new(7);
        let mut last = 0;
        for _ in 0..20_000 {
            let id = g.next_id();
            assert!(id > last);
            assert_eq!((id >> 12) & 0x3ff, 7);
            last = id;
        }
    }
}
