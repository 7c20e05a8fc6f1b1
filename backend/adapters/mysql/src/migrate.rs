//! The schema: creating the database, and applying the embedded migrations once.
//!
//! Several im-repo instances may start at once against a new database. Each takes the
//! named lock `ringchat_migrate.<database>` (`GET_LOCK`, held by its connection, waited for
//! up to 60 s), reads `schema_migrations` and applies what is missing; the others wait and
//! then find nothing to do. MySQL commits DDL implicitly, so a migration cannot be rolled
//! back: each file is written to be re-runnable (`IF NOT EXISTS`), and its version is
//! recorded only after its last statement, so a crash half-way reruns it whole.

use std::time::Duration;

use ringchat_core::ids::now_ms;
use ringchat_core::{Error, Result};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{Connection, Executor};

use crate::error::{store_error, Failure};

/// Version, name and SQL of each migration, in order.
pub(crate) const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "0001_init", include_str!("../migrations/0001_init.sql")),
    (
        2,
        "0002_revoked_tokens",
        include_str!("../migrations/0002_revoked_tokens.sql"),
    ),
    (
        3,
        "0003_profiles_groups_friend_requests",
        include_str!("../migrations/0003_profiles_groups_friend_requests.sql"),
    ),
    (
        4,
        "0004_message_amendments_mentions",
        include_str!("../migrations/0004_message_amendments_mentions.sql"),
    ),
];

/// How long an instance waits for another one's migration before giving up.
const LOCK_WAIT_SECS: i64 = 60;
/// How long a connection attempt at start-up may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens one connection (not pooled), failing as `UNAVAILABLE` after [`CONNECT_TIMEOUT`].
pub(crate) async fn connect_one(opts: &MySqlConnectOptions) -> Result<MySqlConnection> {
    match tokio::time::timeout(CONNECT_TIMEOUT, MySqlConnection::connect_with(opts)).await {
        Ok(conn) => conn.map_err(store_error),
        Err(_) => Err(Error::unavailable(format!(
            "store: no connection to {}:{} within {CONNECT_TIMEOUT:?}",
            opts.get_host(),
            opts.get_port()
        ))),
    }
}

/// A database name safe to put between backquotes.
pub(crate) fn check_database_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "store url: database name {name:?} must be 1-64 of A-Z a-z 0-9 _ $ -"
        )))
    }
}

/// Creates `database` (utf8mb4, binary collation) unless it exists. Connects to
/// `information_schema`, which every account may use, so that it works before the
/// database exists; an account without the CREATE privilege works on an existing one.
pub(crate) async fn ensure_database(opts: &MySqlConnectOptions, database: &str) -> Result<()> {
    let mut conn = connect_one(&opts.clone().database("information_schema")).await?;
    let result = async {
        let exists: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?")
                .bind(database)
                .fetch_optional(&mut conn)
                .await?;
        if exists.is_none() {
            conn.execute(&*format!(
                "CREATE DATABASE IF NOT EXISTS `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
            ))
            .await?;
            tracing::info!(database, "created the store database");
        }
        Ok::<_, sqlx::Error>(())
    }
    .await;
    let _ = conn.close().await;
    result.map_err(store_error)
}

/// Applies the pending migrations under the migration lock.
pub(crate) async fn run(opts: &MySqlConnectOptions, database: &str) -> Result<()> {
    let mut conn = connect_one(opts).await?;
    // at most 64 characters; a longer name only shares its lock with a few others
    let lock: String = format!("ringchat_migrate.{database}")
        .chars()
        .take(64)
        .collect();
    let got: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, ?)")
        .bind(&lock)
        .bind(LOCK_WAIT_SECS)
        .fetch_one(&mut conn)
        .await
        .map_err(store_error)?;
    if got != Some(1) {
        let _ = conn.close().await;
        return Err(Error::unavailable(format!(
            "store: another instance has been migrating {database} for {LOCK_WAIT_SECS} s"
        )));
    }
    let result = apply_pending(&mut conn, database).await;
    // closing the session releases the lock as well; releasing first is just tidier
    let _ = sqlx::query("SELECT RELEASE_LOCK(?)")
        .bind(&lock)
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
    result.map_err(Error::from)
}

async fn apply_pending(conn: &mut MySqlConnection, database: &str) -> Result<(), Failure> {
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (\
         version BIGINT NOT NULL PRIMARY KEY, name VARCHAR(255) NOT NULL, applied_at BIGINT NOT NULL\
         ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin",
    )
    .await?;
    let done: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations")
        .fetch_all(&mut *conn)
        .await?;
    for (version, name, sql) in MIGRATIONS {
        if done.contains(version) {
            continue;
        }
        for (i, statement) in statements(sql).iter().enumerate() {
            match conn.execute(statement.as_str()).await {
                // MySQL has no ADD COLUMN IF NOT EXISTS: a rerun after a crash finds it
                Err(e) if is_duplicate_column(&e) && statement.starts_with("ALTER TABLE") => {
                    continue
                }
                other => other,
            }
            .map_err(|e| {
                Error::internal(format!(
                    "store: migration {name} of {database}, statement {}: {}",
                    i + 1,
                    store_error(e)
                ))
            })?;
        }
        sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)")
            .bind(version)
            .bind(name)
            .bind(now_ms())
            .execute(&mut *conn)
            .await?;
        tracing::info!(database, version, name, "applied store migration");
    }
    Ok(())
}

/// "Duplicate column name" (SQLSTATE 42S21, error 1060).
fn is_duplicate_column(e: &sqlx::Error) -> bool {
    e.as_database_error().and_then(|d| d.code()).as_deref() == Some("42S21")
}

/// The statements of a migration file: `--` comment lines dropped, split at the `;` that
/// ends a line (the files keep `;` out of strings and comments).
fn statements(sql: &str) -> Vec<String> {
    let code: String = sql
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .map(|l| format!("{l}\n"))
        .collect();
    code.split(";\n")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_files_split_into_statements() {
        let all: Vec<String> = MIGRATIONS
            .iter()
            .flat_map(|(_, _, s)| statements(s))
            .collect();
        assert!(
            all.iter().all(|s| !s.ends_with(';') && !s.contains("--")),
            "{all:#?}"
        );
        assert_eq!(
            all.iter().filter(|s| s.starts_with("CREATE TABLE")).count(),
            9
        );
        assert!(MIGRATIONS.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn database_names_are_checked() {
        assert!(check_database_name("ringchat_t_1").is_ok());
        for bad in ["", "a`b", "a b", "x;drop", &"y".repeat(65)] {
            assert!(check_database_name(bad).is_err(), "{bad:?}");
        }
    }
}
