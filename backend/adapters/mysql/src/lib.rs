//! ringchat's MySQL/MariaDB adapter: the [`Store`](ringchat_core::ports::Store) port of the
//! distributed profile, where several im-repo processes write one database.
//!
//! It is the SQLite adapter (`ringchat_embedded::SqliteStore`) translated to InnoDB,
//! with the same semantics, pinned by the same conformance suite. What SQLite gets from its
//! single writer, this adapter gets from row locks:
//!
//! - **Sequence numbers.** The `conversations` row is the conversation's counter
//!   (`last_seq`). An append locks the counter rows of its batch with
//!   `SELECT ... FOR UPDATE`, in conversation-id order, and writes them back with the new
//!   `last_seq` before committing; appends to one conversation therefore take turns across
//!   all instances, and its `seq_id`s go up by exactly one with no gap or repeat. Locking
//!   every counter of the batch up front, sorted, means two batches never wait for each
//!   other in opposite orders.
//! - **Idempotency.** `(sender_id, temp_id)` is a unique key. After taking the counters an
//!   append looks its keys up; the lookup is the transaction's first plain read, so its
//!   snapshot includes every append that held those counters before. A resend of the same
//!   key to the same conversation is thus found and answered with the original
//!   (`duplicate = true`). The same key sent to two conversations at once makes one insert
//!   fail on the unique key; that batch is rolled back and retried, and then finds the
//!   original.
//! - **Group commit.** A batch is one transaction: counters, one lookup of idempotency keys,
//!   multi-row `INSERT` of the messages, one `UPDATE` per conversation for the counter and
//!   one for the senders' read pointers. An item of a missing conversation finds no
//!   counter row and is rejected alone.
//! - **Message ids** come from [`ringchat_core::ids::IdGenerator`] with
//!   [`MysqlOptions::worker_id`]: each im-repo sharing a database needs its own worker id.
//! - **Lock order.** Transactions that lock several rows take them as group row, then
//!   conversation row, then member rows; together with the sorted counters this leaves
//!   InnoDB little to deadlock on. A deadlock victim (error 1213) is retried a few times
//!   with a short backoff, then reported as `UNAVAILABLE`, a code callers retry; so is a
//!   lock wait timeout (1205, after 10 s), without a retry.
//! - **Isolation level:** REPEATABLE READ, InnoDB's default, set on every connection so a
//!   server configured otherwise does not change behaviour. Correctness never rests on a
//!   stale snapshot: a read-modify-write reads with a lock (`FOR UPDATE`, `LOCK IN SHARE
//!   MODE`) or through a statement that sees the latest rows (`UPDATE`, `INSERT IGNORE`,
//!   `INSERT ... SELECT`), and a plain read inside a transaction comes after the locks that
//!   make its snapshot current (the idempotency lookup after the counters, a group's
//!   members after the group row). The same holds at READ COMMITTED. REPEATABLE READ rather than READ COMMITTED
//!   because it is safe with every binary log format (statement-based replication refuses
//!   READ COMMITTED writes). Lock waits are capped at 10 s per session.
//! - **Uniqueness of names.** Usernames are unique without ASCII case (SQLite's `NOCASE`)
//!   through a folded `username_key` column, and so is their look-alike key (`skeleton`):
//!   two instances cannot both create `alice` and `аlice`.
//!
//! **Read/write split.** With a `read_url`, history and list reads that tolerate a
//! replica's lag use it: `messages`, `conversations`, `users`, `friends`, `member_ids`,
//! `peer_ids`. Everything else reads the primary, because a caller acts on it right after a
//! write: `credentials`, `user`, `user_by_name` (log-in after sign-up), `group` (after
//! creating it), `conversation` and `is_member` (sending right after joining), and
//! `revoked_tokens` (a log-out must not lag). Transactions always run on the primary. A
//! replica unreachable at start-up is logged and replaced by the primary.
//!
//! **TLS** follows the URL's `ssl-mode` (`disabled`, `preferred` (sqlx's default),
//! `required`, `verify_ca`, `verify_identity`, with `ssl-ca=...`), through rustls.
//!
//! **Schema.** Migrations are the embedded `migrations/*.sql`, recorded in
//! `schema_migrations` and applied under a named lock so that instances starting together
//! do not race (see `src/migrate.rs`). The database named in the URL is created if missing.
#![forbid(unsafe_code)]

mod error;
mod migrate;
mod options;
mod store;

pub use options::{MysqlOptions, MAX_WORKER_ID};
pub use store::MysqlStore;
