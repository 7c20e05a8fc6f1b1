//! The global allocator of the gateway binaries: mimalloc, told to give freed memory back.
//!
//! With its defaults, mimalloc keeps the pages freed after a burst resident for a while: it
//! purges them a second later at the earliest, and only when the allocator runs again on
//! that thread, and it commits its arenas eagerly. A gateway is bursty (a ramp of
//! handshakes, then idle connections that allocate little), so its RSS stayed near the
//! burst's peak. Measured at 19,000 idle connections (`perf/RESULTS.md`):
//!
//! | options | RSS per idle connection | world fan-out CPU per delivery |
//! |---|---|---|
//! | mimalloc's defaults | 2.7-3.0 KB | 5.35 us |
//! | purge at once, arenas committed on demand | 1.6-1.7 KB | 6.03-6.10 us |
//! | purge after 100 ms, arenas committed on demand (these) | 1.9 KB | 5.30 us |
//!
//! Purging at once cost 13% more CPU under fan-out (freed pages purged and faulted back in
//! over and over); 100 ms keeps most of the gain without that cost. An environment setting
//! of an option (`MIMALLOC_PURGE_DELAY`, `MIMALLOC_ARENA_EAGER_COMMIT`) wins over these.

pub use mimalloc::MiMalloc;

use libmimalloc_sys as mi;

// mimalloc v3's option numbers (its `mi_option_e`, include/mimalloc.h); the Rust binding's
// constants predate v3. The test below checks them against the linked library's defaults.
const PURGE_DELAY: mi::mi_option_t = 15;
const ARENA_EAGER_COMMIT: mi::mi_option_t = 4;

/// Sets the allocator options; call first thing in `main`.
pub fn give_back_freed_memory() {
    let options = [
        // purge freed pages after 100 ms instead of a second
        ("MIMALLOC_PURGE_DELAY", PURGE_DELAY, 100),
        // commit arena memory on demand
        ("MIMALLOC_ARENA_EAGER_COMMIT", ARENA_EAGER_COMMIT, 0),
    ];
    for (env, option, value) in options {
        if std::env::var_os(env).is_none() {
            // SAFETY: `mi_option_set` only stores the value in mimalloc's option table
            // (atomically); both options are read again at each use.
            #[allow(unsafe_code)]
            unsafe {
                mi::mi_option_set(option, value)
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_numbers_name_the_options_we_mean() {
        // the defaults in mimalloc v3's options.c: purge_delay 1000 (ms; its header still
        // says 10), arena_eager_commit 2
        // SAFETY: reads mimalloc's option table
        #[allow(unsafe_code)]
        let (delay, eager) = unsafe {
            (
                mi::mi_option_get(PURGE_DELAY),
                mi::mi_option_get(ARENA_EAGER_COMMIT),
            )
        };
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(delay, 1000, "option {PURGE_DELAY} is not purge_delay");
        }
        if std::env::var_os("MIMALLOC_ARENA_EAGER_COMMIT").is_none() {
            assert_eq!(
                eager, 2,
                "option {ARENA_EAGER_COMMIT} is not arena_eager_commit"
            );
        }
    }
}
