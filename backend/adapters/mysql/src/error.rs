//! From MySQL errors to ringchat errors, and the retry of transactions InnoDB aborted.
//!
//! sqlx reports a MySQL error's SQLSTATE as its `code()` (`40001` for a deadlock, the
//! generic `HY000` for a lock wait timeout), so the core's `From<sqlx::Error>` cannot see
//! the MySQL error numbers; this module reads them from [`MySqlDatabaseError::number`].
//! Inside the adapter a database error stays a `sqlx::Error` (in [`Failure`]) until the
//! retry loop has decided, and becomes an [`Error`] at the port's boundary.

use std::future::Future;
use std::time::Duration;

use ringchat_core::{Error, Result};
use sqlx::mysql::MySqlDatabaseError;

/// MySQL/MariaDB error numbers the adapter acts on.
mod number {
    pub const CON_COUNT: u16 = 1040;
    pub const SERVER_SHUTDOWN: u16 = 1053;
    pub const DUP_ENTRY: u16 = 1062;
    pub const LOCK_WAIT_TIMEOUT: u16 = 1205;
    pub const LOCK_DEADLOCK: u16 = 1213;
    pub const OPTION_PREVENTS_STATEMENT: u16 = 1290;
    pub const DATA_TOO_LONG: u16 = 1406;
    pub const MARIADB_CONNECTION_KILLED: u16 = 1927;
}

/// Attempts before a transaction InnoDB keeps choosing as a deadlock victim is reported
/// as `UNAVAILABLE`.
const MAX_ATTEMPTS: u32 = 5;

/// A failed attempt: a database error kept whole for the retry decision, or a domain
/// error (not found, taken...) that no retry changes.
#[derive(Debug)]
pub(crate) enum Failure {
    Db(sqlx::Error),
    Domain(Error),
}

pub(crate) type Attempt<T> = std::result::Result<T, Failure>;

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        Failure::Db(e)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Domain(e)
    }
}

impl From<Failure> for Error {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Db(e) => store_error(e),
            Failure::Domain(e) => e,
        }
    }
}

/// The MySQL error number of a database error.
pub(crate) fn mysql_number(e: &sqlx::Error) -> Option<u16> {
    e.as_database_error()?
        .try_downcast_ref::<MySqlDatabaseError>()
        .map(MySqlDatabaseError::number)
}

pub(crate) fn is_duplicate_key(e: &sqlx::Error) -> bool {
    mysql_number(e) == Some(number::DUP_ENTRY)
}

/// The ringchat error for a database error: InnoDB's aborts, a full or read-only
/// (failing-over) server are `UNAVAILABLE` (a retry may succeed); a value too long for
/// its column is `INVALID_ARGUMENT`; the rest as the core maps them (I/O and pool errors
/// `UNAVAILABLE`, anything else `INTERNAL`).
pub(crate) fn store_error(e: sqlx::Error) -> Error {
    use number::*;
    match mysql_number(&e) {
        Some(
            LOCK_WAIT_TIMEOUT
            | LOCK_DEADLOCK
            | CON_COUNT
            | SERVER_SHUTDOWN
            | OPTION_PREVENTS_STATEMENT
            | MARIADB_CONNECTION_KILLED,
        ) => Error::unavailable(format!("store: {e}")),
        Some(DATA_TOO_LONG) => Error::invalid(format!("store: {e}")),
        _ => Error::from(e),
    }
}

/// Which failed attempts are run again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetryOn {
    /// InnoDB rolled the transaction back as a deadlock victim. (A lock wait timeout is
    /// not retried: it has already waited `innodb_lock_wait_timeout`, and the caller's
    /// deadline is better spent by the caller.)
    Aborted,
    /// Also a duplicate key: two instances raced on a unique key (an idempotency key), and
    /// the next attempt reads the row that won.
    AbortedOrDuplicate,
}

impl RetryOn {
    fn covers(self, e: &sqlx::Error) -> bool {
        let n = mysql_number(e);
        n == Some(number::LOCK_DEADLOCK)
            || (self == RetryOn::AbortedOrDuplicate && n == Some(number::DUP_ENTRY))
    }
}

/// Runs `attempt` (one whole transaction) until it succeeds, fails for good, or has been
/// aborted [`MAX_ATTEMPTS`] times. InnoDB has rolled a deadlock victim back entirely (and a
/// dropped `sqlx::Transaction` rolls back whatever else failed), so every attempt starts
/// clean.
pub(crate) async fn retrying<T, F, Fut>(
    what: &'static str,
    on: RetryOn,
    mut attempt: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Attempt<T>>,
{
    let mut tries = 1;
    loop {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(Failure::Db(e)) if tries < MAX_ATTEMPTS && on.covers(&e) => {
                tracing::debug!(what, tries, error = %e, "store transaction aborted, retrying");
                tokio::time::sleep(backoff(tries)).await;
                tries += 1;
            }
            Err(f) => return Err(f.into()),
        }
    }
}

/// 2, 4, 8, 16 ms, plus up to as much again of jitter so that two aborted instances do
/// not collide again in step.
fn backoff(tries: u32) -> Duration {
    let base = Duration::from_millis(1 << tries);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    base + base.mul_f64(f64::from(nanos % 1000) / 1000.0)
}

/// One attempt, with its failure turned into a ringchat error (reads are not retried:
/// plain InnoDB reads take no locks).
pub(crate) async fn once<T>(attempt: impl Future<Output = Attempt<T>>) -> Result<T> {
    attempt.await.map_err(Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_short() {
        assert!(backoff(1) >= Duration::from_millis(2));
        assert!(backoff(4) <= Duration::from_millis(32));
    }

    /// Provokes a real deadlock between two sessions on the test server
    /// (`RINGCHAT_TEST_MYSQL_URL`, as in `tests/conformance.rs`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_deadlock_is_unavailable_and_retried() {
        use sqlx::{Connection, Executor, MySqlConnection};
        let server = std::env::var("RINGCHAT_TEST_MYSQL_URL")
            .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into());
        let db = format!(
            "ringchat_t_{}_deadlock{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
            std::process::id()
        );
        let url = format!("{}/{db}", server.trim_end_matches('/'));
        let connect = || async {
            MySqlConnection::connect(&url).await.unwrap_or_else(|e| {
                panic!("MySQL/MariaDB at {server} ({e}): start it with `deploy/engines.sh up`")
            })
        };
        let mut admin = MySqlConnection::connect(&format!(
            "{}/information_schema",
            server.trim_end_matches('/')
        ))
        .await
        .unwrap_or_else(|e| {
            panic!("MySQL/MariaDB at {server} ({e}): start it with `deploy/engines.sh up`")
        });
        admin
            .execute(&*format!("CREATE DATABASE `{db}`"))
            .await
            .unwrap();
        let (mut c1, mut c2) = (connect().await, connect().await);
        c1.execute("CREATE TABLE t (id INT PRIMARY KEY, v INT) ENGINE = InnoDB")
            .await
            .unwrap();
        c1.execute("INSERT INTO t VALUES (1, 0), (2, 0)")
            .await
            .unwrap();
        c1.execute("BEGIN").await.unwrap();
        c2.execute("BEGIN").await.unwrap();
        c1.execute("UPDATE t SET v = 1 WHERE id = 1").await.unwrap();
        c2.execute("UPDATE t SET v = 2 WHERE id = 2").await.unwrap();
        // each now wants the other's row: InnoDB aborts one of them at once
        let (r1, r2) = tokio::join!(
            c1.execute("UPDATE t SET v = 1 WHERE id = 2"),
            c2.execute("UPDATE t SET v = 2 WHERE id = 1"),
        );
        let victim = match (r1, r2) {
            (Err(e), Ok(_)) | (Ok(_), Err(e)) => e,
            other => panic!("expected one deadlock victim: {other:?}"),
        };
        assert_eq!(mysql_number(&victim), Some(number::LOCK_DEADLOCK));
        assert!(RetryOn::Aborted.covers(&victim));
        let e = store_error(victim);
        assert!(e.is_retryable(), "{e}");
        let _ = c1.close().await;
        let _ = c2.close().await;
        admin
            .execute(&*format!("DROP DATABASE `{db}`"))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn domain_errors_are_not_retried() {
        let mut calls = 0;
        let e = retrying("test", RetryOn::AbortedOrDuplicate, || {
            calls += 1;
            async { Err::<(), _>(Failure::Domain(Error::forbidden("no"))) }
        })
        .await
        .unwrap_err();
        assert_eq!((calls, e.code), (1, ringchat_core::ErrorCode::Forbidden));
    }

    #[test]
    fn non_database_errors_map_like_the_core() {
        let e = store_error(sqlx::Error::PoolTimedOut);
        assert!(e.is_retryable());
        assert_eq!(mysql_number(&sqlx::Error::RowNotFound), None);
    }
}
