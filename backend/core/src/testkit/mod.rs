//! Conformance suites: one per port, run against every adapter of that port (embedded
//! here, real engines in the distributed profile's tests), so adapters cannot drift apart.
//!
//! Each suite is a set of async functions taking the adapter; a macro per port turns them
//! into one `#[tokio::test]` each:
//!
//! ```ignore
//! ringchat_core::store_conformance!(async { Arc::new(SqliteStore::connect(..).await.unwrap()) });
//! ```
//!
//! Cases share one engine instance safely: they use unique names (topics, usernames, keys)
//! so they run in parallel and against a long-lived server.

pub mod bus;
pub mod cache;
pub mod discovery;
pub mod faulty;
pub mod store;

use std::future::Future;
use std::time::Duration;

/// A name unique to this process run: `prefix-<random>`.
pub fn unique(prefix: &str) -> String {
    use rand::Rng;
    let n: u64 = rand::thread_rng().gen();
    format!("{prefix}-{n:016x}")
}

/// Polls `check` until it returns `Some`, failing the test after `deadline`.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > end {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Generates one test per bus conformance case. `$make` is an async expression giving an
/// `Arc<dyn Bus>`; it is evaluated once per case.
#[macro_export]
macro_rules! bus_conformance {
    ($make:expr) => {
        $crate::__conformance!(
            bus,
            $make,
            [
                keyed_records_keep_their_order,
                every_group_reads_every_record,
                uncommitted_records_are_read_again,
                a_waiting_subscriber_wakes_on_publish,
                a_dropped_member_hands_its_partitions_over,
                headers_travel_with_the_record,
            ]
        );
    };
}

#[macro_export]
macro_rules! store_conformance {
    ($make:expr) => {
        $crate::__conformance!(
            store,
            $make,
            [
                users_are_unique_by_name,
                users_are_found_by_name_prefix,
                profiles_keep_what_is_not_updated,
                friend_requests_wait_for_the_targets_answer,
                single_conversation_is_idempotent,
                friends_are_mutual,
                groups_have_roles_and_members,
                groups_are_described_handed_over_and_dissolved,
                a_hidden_conversation_returns_with_a_new_message,
                seq_is_strictly_increasing_and_idempotent,
                concurrent_appends_leave_no_gap,
                history_pages_both_ways,
                unread_counts_follow_read_pointers,
                messages_are_amended_in_place,
                mentions_are_stored_and_counted,
                readers_come_from_read_pointers,
                conversation_list_has_world_first_and_last_message,
                revocations_last_until_the_token_expires,
            ]
        );
    };
}

#[macro_export]
macro_rules! cache_conformance {
    ($make:expr) => {
        $crate::__conformance!(
            cache,
            $make,
            [
                values_expire,
                presence_tracks_every_endpoint,
                presence_expires_unless_refreshed,
            ]
        );
    };
}

#[macro_export]
macro_rules! discovery_conformance {
    ($make:expr) => {
        $crate::__conformance!(
            discovery,
            $make,
            [instances_register_and_leave, config_values_round_trip,]
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance {
    ($suite:ident, $make:expr, [$($case:ident),* $(,)?]) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let port = $make.await;
                $crate::testkit::$suite::$case(port).await;
            }
        )*
    };
}
