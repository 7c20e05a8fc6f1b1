//! The message store of the embedded profile, on SQLite through sqlx.
//!
//! SQLite allows one writer at a time, so writes go through a pool of exactly one
//! connection (no `SQLITE_BUSY` between our own writers) and reads through a separate
//! pool. WAL journal with `synchronous = FULL`: a committed append survives a crash or
//! power loss, which is what `message-ack` promises. Appends arrive in batches and are
//! committed in one transaction (group commit), so durability costs one fsync per batch.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use ringchat_proto as pb;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite};

use ringchat_core::error::{Error, ErrorCode, Result};
use ringchat_core::ids::{now_ms, IdGenerator};
use ringchat_core::model::{self, MENTION_SCAN, WORLD_ID};
use ringchat_core::ports::Store;

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/0001_init.sql")),
    (2, include_str!("../migrations/0002_world_member_count.sql")),
    (3, include_str!("../migrations/0003_username_skeleton.sql")),
    (4, include_str!("../migrations/0004_revoked_tokens.sql")),
    (5, include_str!("../migrations/0005_append_trigger.sql")),
    (
        6,
        include_str!("../migrations/0006_profiles_groups_friend_requests.sql"),
    ),
    (
        7,
        include_str!("../migrations/0007_message_amendments_mentions.sql"),
    ),
];

pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    ids: IdGenerator,
    /// One process per database file (none for an in-memory database).
    _lock: Option<crate::data_dir::DataDirLock>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` (`sqlite://path` or
    /// `sqlite::memory:`) and applies pending migrations.
    pub async fn connect(url: &str, max_readers: u32, worker_id: u16) -> Result<Self> {
        let memory = url.contains(":memory:");
        let mut opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| Error::invalid(format!("store url {url:?}: {e}")))?
            .create_if_missing(true)
            .foreign_keys(false)
            .busy_timeout(Duration::from_secs(10));
        let lock = if memory {
            None
        } else {
            Some(crate::data_dir::lock(opts.get_filename())?)
        };
        if !memory {
            opts = opts
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full);
        }
        // no ping before each acquire: a connection to a file in this process cannot have
        // gone away, and sqlx's ping is a round trip to its worker thread (three per message)
        let writer = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(opts.clone())
            .await?;
        // an in-memory database exists once per connection: share the writer
        let reader = if memory {
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .test_before_acquire(false)
                .max_connections(max_readers.max(1))
                .connect_with(opts)
                .await?
        };
        let store = SqliteStore {
            writer,
            reader,
            ids: IdGenerator::new(worker_id),
            _lock: lock,
        };
        store.check_integrity().await?;
        store.migrate().await?;
        store.fill_skeletons().await?;
        Ok(store)
    }

    /// Appends each message on `conn`, in order; the caller decides whether `conn` is a
    /// transaction (a batch) or an autocommit connection (one message).
    async fn append_all(
        &self,
        conn: &mut sqlx::SqliteConnection,
        messages: Vec<pb::MessageDraft>,
    ) -> Result<Vec<pb::AppendOutcome>> {
        // a batch looks a sender's name up once
        let mut names: HashMap<i64, String> = HashMap::new();
        let mut outcomes = Vec::with_capacity(messages.len());
        for m in messages {
            outcomes.push(self.append_on(conn, m, &mut names).await?);
        }
        Ok(outcomes)
    }

    /// Appends one message on `conn` (a transaction's or, alone, in autocommit): one
    /// statement. The INSERT takes the conversation's next seq, the trigger of migration 5
    /// moves the conversation and the sender's read pointer; no row comes back for a resend
    /// (the same sender and tempMessageId) or for a conversation that does not exist, told
    /// apart below (rare paths).
    async fn append_on(
        &self,
        conn: &mut sqlx::SqliteConnection,
        m: pb::MessageDraft,
        names: &mut HashMap<i64, String>,
    ) -> Result<pb::AppendOutcome> {
        let message_id = self.ids.next_id();
        let send_time = now_ms();
        let temp = (!m.temp_message_id.is_empty()).then_some(m.temp_message_id.as_str());
        // fetch_all steps the statement to its end: in autocommit the commit (and its
        // fsync) happens there and its failure is an error, not a silently reset statement
        let seq: Option<i64> = sqlx::query_scalar(
            "INSERT INTO messages (message_id, conversation_id, seq, sender_id, type, content, send_time, temp_id, \
             ref_id, flags, mentions) \
             SELECT ?, id, last_seq + 1, ?, ?, ?, ?, ?, ?, ?, ? FROM conversations WHERE id = ? \
             ON CONFLICT (sender_id, temp_id) DO NOTHING RETURNING seq",
        )
        .bind(message_id)
        .bind(m.sender_id)
        .bind(m.r#type)
        .bind(&m.content)
        .bind(send_time)
        .bind(temp)
        .bind(m.ref_message_id)
        .bind(model::draft_flags(&m))
        .bind(model::mention_list(&m.mentions))
        .bind(&m.conversation_id)
        .fetch_all(&mut *conn)
        .await?
        .pop();
        let Some(seq) = seq else {
            let existing = match temp {
                Some(temp) => {
                    sqlx::query(&format!(
                        "SELECT {MESSAGE_COLUMNS} FROM messages m LEFT JOIN users u ON u.id = m.sender_id \
                         WHERE m.sender_id = ? AND m.temp_id = ?"
                    ))
                    .bind(m.sender_id)
                    .bind(temp)
                    .fetch_optional(&mut *conn)
                    .await?
                }
                None => None,
            };
            return Ok(match existing {
                Some(row) => pb::AppendOutcome {
                    message: Some(message_from_row(&row)),
                    duplicate: true,
                    ..Default::default()
                },
                None => pb::AppendOutcome {
                    error_code: ErrorCode::ConversationNotFound.as_str().into(),
                    error_message: format!("conversation {} not found", m.conversation_id),
                    ..Default::default()
                },
            });
        };
        let sender_name = if !m.sender_name.is_empty() {
            m.sender_name
        } else if let Some(n) = names.get(&m.sender_id) {
            n.clone()
        } else {
            let n: String = sqlx::query_scalar("SELECT username FROM users WHERE id = ?")
                .bind(m.sender_id)
                .fetch_optional(&mut *conn)
                .await?
                .unwrap_or_default();
            names.insert(m.sender_id, n.clone());
            n
        };
        Ok(pb::AppendOutcome {
            message: Some(pb::ChatMessage {
                message_id,
                conversation_id: m.conversation_id,
                sender_id: m.sender_id,
                sender_name,
                content: m.content,
                r#type: m.r#type,
                send_time_ms: send_time,
                seq_id: seq,
                temp_message_id: m.temp_message_id,
                ref_message_id: m.ref_message_id,
                mentions: m.mentions,
                mention_all: m.mention_all,
                ..Default::default()
            }),
            duplicate: false,
            ..Default::default()
        })
    }

    /// `PRAGMA quick_check` at start: a damaged file is refused with its report instead
    /// of serving some requests and failing others.
    async fn check_integrity(&self) -> Result<()> {
        let report: Vec<String> = sqlx::query_scalar("PRAGMA quick_check(5)")
            .fetch_all(&self.writer)
            .await
            .map_err(|e| Error::internal(format!("store: integrity check failed: {e}")))?;
        if report.len() == 1 && report[0] == "ok" {
            return Ok(());
        }
        Err(Error::internal(format!(
            "store: the database fails its integrity check ({}): restore it from a backup",
            report.join("; ")
        )))
    }

    /// Computes the look-alike key of users created before it existed.
    async fn fill_skeletons(&self) -> Result<()> {
        let rows: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, username FROM users WHERE skeleton IS NULL")
                .fetch_all(&self.writer)
                .await?;
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.writer.begin().await?;
        for (id, name) in &rows {
            sqlx::query("UPDATE users SET skeleton = ? WHERE id = ?")
                .bind(model::username_skeleton(name))
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        tracing::info!(users = rows.len(), "filled username look-alike keys");
        Ok(())
    }

    async fn migrate(&self) -> Result<()> {
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
        )
        .execute(&self.writer)
        .await?;
        for (version, sql) in MIGRATIONS {
            let done: Option<i64> =
                sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = ?")
                    .bind(version)
                    .fetch_optional(&self.writer)
                    .await?;
            if done.is_some() {
                continue;
            }
            let mut tx = self.writer.begin().await?;
            sqlx::raw_sql(sql).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)")
                .bind(version)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            tracing::info!(version, "applied store migration");
        }
        Ok(())
    }

    async fn meta_on(
        &self,
        exec: impl sqlx::Executor<'_, Database = Sqlite>,
        id: &str,
    ) -> Result<pb::ConversationMeta> {
        let row = sqlx::query(
            "SELECT c.id, c.type, c.group_id, c.user_a, c.user_b, c.last_seq, \
             COALESCE(g.member_count, c.member_count) AS member_count \
             FROM conversations c LEFT JOIN chat_groups g ON g.id = c.group_id AND c.type = 2 \
             WHERE c.id = ?",
        )
        .bind(id)
        .fetch_optional(exec)
        .await?
        .ok_or_else(|| Error::conversation_not_found(id))?;
        let kind: i32 = row.get("type");
        let member_count = match kind {
            1 => 2,
            _ => row.get("member_count"),
        };
        Ok(pb::ConversationMeta {
            conversation_id: row.get("id"),
            r#type: kind,
            group_id: row.get("group_id"),
            user_a: row.get("user_a"),
            user_b: row.get("user_b"),
            last_seq: row.get("last_seq"),
            member_count,
        })
    }

    async fn missing_users(
        &self,
        exec: impl sqlx::Executor<'_, Database = Sqlite>,
        ids: &[i64],
    ) -> Result<Option<i64>> {
        if ids.is_empty() {
            return Ok(None);
        }
        let mut qb = QueryBuilder::<Sqlite>::new("SELECT id FROM users WHERE id IN (");
        let mut sep = qb.separated(", ");
        for id in ids {
            sep.push_bind(*id);
        }
        sep.push_unseparated(")");
        let found: HashSet<i64> = qb
            .build_query_scalar::<i64>()
            .fetch_all(exec)
            .await?
            .into_iter()
            .collect();
        Ok(ids.iter().copied().find(|id| !found.contains(id)))
    }
}

fn user_from_row(row: &SqliteRow) -> pb::User {
    pb::User {
        user_id: row.get("id"),
        username: row.get("username"),
        avatar: row.get("avatar"),
        is_guest: row.get::<i64, _>("is_guest") != 0,
        nickname: row.get("nickname"),
    }
}

/// The columns [`friend_request_from_row`] reads: the request `r`, its requester `a` and
/// its target `b`.
const FRIEND_REQUEST_SELECT: &str = "SELECT r.id, r.requester_id, r.target_id, r.status, \
     r.message, r.created_at, r.updated_at, \
     a.username AS a_username, a.avatar AS a_avatar, a.is_guest AS a_is_guest, a.nickname AS a_nickname, \
     b.username AS b_username, b.avatar AS b_avatar, b.is_guest AS b_is_guest, b.nickname AS b_nickname \
     FROM friend_requests r JOIN users a ON a.id = r.requester_id JOIN users b ON b.id = r.target_id";

fn friend_request_from_row(row: &SqliteRow) -> pb::FriendRequest {
    let user = |id: i64, p: &str| pb::User {
        user_id: id,
        username: row.get(format!("{p}_username").as_str()),
        avatar: row.get(format!("{p}_avatar").as_str()),
        is_guest: row.get::<i64, _>(format!("{p}_is_guest").as_str()) != 0,
        nickname: row.get(format!("{p}_nickname").as_str()),
    };
    let (requester_id, target_id): (i64, i64) = (row.get("requester_id"), row.get("target_id"));
    pb::FriendRequest {
        request_id: row.get("id"),
        requester_id,
        target_id,
        status: row.get("status"),
        message: row.get("message"),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
        requester: Some(user(requester_id, "a")),
        target: Some(user(target_id, "b")),
    }
}

fn message_from_row(row: &SqliteRow) -> pb::ChatMessage {
    pb::ChatMessage {
        message_id: row.get("message_id"),
        conversation_id: row.get("conversation_id"),
        sender_id: row.get("sender_id"),
        sender_name: row
            .try_get::<Option<String>, _>("sender_name")
            .ok()
            .flatten()
            .unwrap_or_default(),
        content: row.get("content"),
        r#type: row.get("type"),
        send_time_ms: row.get("send_time"),
        seq_id: row.get("seq"),
        temp_message_id: row.get::<Option<String>, _>("temp_id").unwrap_or_default(),
        ..model::message_extras(row.get("ref_id"), row.get("flags"), row.get("mentions"))
    }
}

const MESSAGE_COLUMNS: &str =
    "m.message_id, m.conversation_id, m.sender_id, u.username AS sender_name, \
     m.content, m.type, m.send_time, m.seq, m.temp_id, m.ref_id, m.flags, m.mentions";

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .map(|d| d.is_unique_violation())
        .unwrap_or(false)
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_user(&self, req: pb::CreateUserRequest) -> Result<pb::User> {
        let now = now_ms();
        let skeleton = model::username_skeleton(&req.username);
        let mut tx = self.writer.begin().await?;
        let look_alike: Option<String> =
            sqlx::query_scalar("SELECT username FROM users WHERE skeleton = ? LIMIT 1")
                .bind(&skeleton)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(existing) = look_alike {
            return Err(Error::new(
                ErrorCode::UsernameTaken,
                format!(
                    "username {:?} looks like the existing {existing:?}: choose another",
                    req.username
                ),
            ));
        }
        let res = sqlx::query(
            "INSERT INTO users (username, password_hash, avatar, is_guest, created_at, skeleton) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&req.username)
        .bind(&req.password_hash)
        .bind(&req.avatar)
        .bind(i64::from(req.is_guest))
        .bind(now)
        .bind(&skeleton)
        .execute(&mut *tx)
        .await;
        let id = match res {
            Ok(r) => r.last_insert_rowid(),
            Err(e) if is_unique_violation(&e) => {
                return Err(Error::new(
                    ErrorCode::UsernameTaken,
                    format!("username {:?} is taken", req.username),
                ))
            }
            Err(e) => return Err(e.into()),
        };
        // every user reads the world room; history before joining does not count as unread
        sqlx::query(
            "INSERT INTO conversation_members (conversation_id, user_id, read_seq, joined_at) \
             SELECT id, ?, last_seq, ? FROM conversations WHERE id = ?",
        )
        .bind(id)
        .bind(now)
        .bind(WORLD_ID)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE conversations SET member_count = member_count + 1 WHERE id = ?")
            .bind(WORLD_ID)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(pb::User {
            user_id: id,
            username: req.username,
            avatar: req.avatar,
            is_guest: req.is_guest,
            nickname: String::new(),
        })
    }

    async fn credentials(&self, username: &str) -> Result<pb::Credentials> {
        let row = sqlx::query(
            "SELECT id, username, avatar, is_guest, nickname, password_hash FROM users WHERE username = ?",
        )
        .bind(username)
        .fetch_optional(&self.reader)
        .await?
        .ok_or_else(|| Error::user_not_found(username))?;
        Ok(pb::Credentials {
            user: Some(user_from_row(&row)),
            password_hash: row.get("password_hash"),
        })
    }

    async fn user(&self, user_id: i64) -> Result<pb::User> {
        let row =
            sqlx::query("SELECT id, username, avatar, is_guest, nickname FROM users WHERE id = ?")
                .bind(user_id)
                .fetch_optional(&self.reader)
                .await?
                .ok_or_else(|| Error::user_not_found(user_id))?;
        Ok(user_from_row(&row))
    }

    async fn user_by_name(&self, username: &str) -> Result<pb::User> {
        let row = sqlx::query(
            "SELECT id, username, avatar, is_guest, nickname FROM users WHERE username = ?",
        )
        .bind(username)
        .fetch_optional(&self.reader)
        .await?
        .ok_or_else(|| Error::user_not_found(username))?;
        Ok(user_from_row(&row))
    }

    async fn users(&self, user_ids: &[i64]) -> Result<Vec<pb::User>> {
        if user_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut qb = QueryBuilder::<Sqlite>::new(
            "SELECT id, username, avatar, is_guest, nickname FROM users WHERE id IN (",
        );
        let mut sep = qb.separated(", ");
        for id in user_ids {
            sep.push_bind(*id);
        }
        sep.push_unseparated(") ORDER BY id");
        let rows = qb.build().fetch_all(&self.reader).await?;
        Ok(rows.iter().map(user_from_row).collect())
    }

    async fn search_users(
        &self,
        prefix: &str,
        after_user_id: i64,
        limit: i64,
    ) -> Result<Vec<pb::User>> {
        // LIKE ignores ASCII case in SQLite, as the names' COLLATE NOCASE does
        let rows = sqlx::query(
            "SELECT id, username, avatar, is_guest, nickname FROM users \
             WHERE is_guest = 0 AND username LIKE ? ESCAPE '!' AND id > ? ORDER BY id LIMIT ?",
        )
        .bind(model::like_prefix(prefix))
        .bind(after_user_id)
        .bind(limit.max(0))
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.iter().map(user_from_row).collect())
    }

    async fn update_profile(&self, req: pb::UpdateProfileRequest) -> Result<pb::User> {
        let mut tx = self.writer.begin().await?;
        let found = sqlx::query(
            "UPDATE users SET avatar = COALESCE(?, avatar), nickname = COALESCE(?, nickname) \
             WHERE id = ?",
        )
        .bind(req.avatar)
        .bind(req.nickname)
        .bind(req.user_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if found == 0 {
            return Err(Error::user_not_found(req.user_id));
        }
        let row =
            sqlx::query("SELECT id, username, avatar, is_guest, nickname FROM users WHERE id = ?")
                .bind(req.user_id)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(user_from_row(&row))
    }

    async fn send_friend_request(
        &self,
        req: pb::NewFriendRequest,
    ) -> Result<pb::FriendRequestSent> {
        if req.requester_id == req.target_id {
            return Err(Error::invalid("cannot befriend yourself"));
        }
        let now = now_ms() / 1000;
        let mut tx = self.writer.begin().await?;
        if let Some(missing) = self
            .missing_users(&mut *tx, &[req.requester_id, req.target_id])
            .await?
        {
            return Err(Error::user_not_found(missing));
        }
        // a new request, or a rejected one reopened; the others stay as they are
        let changed = sqlx::query(
            "INSERT INTO friend_requests (requester_id, target_id, status, message, created_at, updated_at) \
             VALUES (?, ?, 0, ?, ?, ?) \
             ON CONFLICT (requester_id, target_id) DO UPDATE SET \
             status = 0, message = excluded.message, updated_at = excluded.updated_at \
             WHERE friend_requests.status = 2",
        )
        .bind(req.requester_id)
        .bind(req.target_id)
        .bind(&req.message)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        let row = sqlx::query(&format!(
            "{FRIEND_REQUEST_SELECT} WHERE r.requester_id = ? AND r.target_id = ?"
        ))
        .bind(req.requester_id)
        .bind(req.target_id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(pb::FriendRequestSent {
            request: Some(friend_request_from_row(&row)),
            changed,
        })
    }

    async fn friend_requests(&self, q: pb::FriendRequestsQuery) -> Result<Vec<pb::FriendRequest>> {
        let side = if q.received {
            "target_id"
        } else {
            "requester_id"
        };
        let rows = sqlx::query(&format!(
            "{FRIEND_REQUEST_SELECT} WHERE r.{side} = ? AND (? < 0 OR r.status = ?) \
             ORDER BY r.updated_at DESC, r.id DESC LIMIT ?"
        ))
        .bind(q.user_id)
        .bind(q.status)
        .bind(q.status)
        .bind(q.limit.max(0))
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.iter().map(friend_request_from_row).collect())
    }

    async fn answer_friend_request(&self, a: pb::FriendRequestAnswer) -> Result<pb::FriendRequest> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "UPDATE friend_requests SET status = ?, updated_at = ? \
             WHERE id = ? AND target_id = ? AND status = 0",
        )
        .bind(a.status)
        .bind(now_ms() / 1000)
        .bind(a.request_id)
        .bind(a.target_id)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(&format!(
            "{FRIEND_REQUEST_SELECT} WHERE r.id = ? AND r.target_id = ?"
        ))
        .bind(a.request_id)
        .bind(a.target_id)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        let request = row
            .as_ref()
            .map(friend_request_from_row)
            .ok_or_else(|| model::no_friend_request(a.request_id))?;
        model::check_answered(&request, a.status)?;
        Ok(request)
    }

    async fn add_friend(&self, user_id: i64, other_user_id: i64) -> Result<pb::ConversationMeta> {
        if user_id == other_user_id {
            return Err(Error::invalid("cannot befriend yourself"));
        }
        let mut tx = self.writer.begin().await?;
        if let Some(missing) = self
            .missing_users(&mut *tx, &[user_id, other_user_id])
            .await?
        {
            return Err(Error::user_not_found(missing));
        }
        let now = now_ms();
        sqlx::query("INSERT OR IGNORE INTO friends (user_id, friend_id, created_at) VALUES (?, ?, ?), (?, ?, ?)")
            .bind(user_id)
            .bind(other_user_id)
            .bind(now)
            .bind(other_user_id)
            .bind(user_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let id = ensure_single(&mut tx, user_id, other_user_id, now).await?;
        let meta = self.meta_on(&mut *tx, &id).await?;
        tx.commit().await?;
        Ok(meta)
    }

    async fn friends(&self, user_id: i64) -> Result<Vec<pb::User>> {
        let rows = sqlx::query(
            "SELECT u.id, u.username, u.avatar, u.is_guest, u.nickname FROM friends f JOIN users u ON u.id = f.friend_id \
             WHERE f.user_id = ? ORDER BY u.username",
        )
        .bind(user_id)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.iter().map(user_from_row).collect())
    }

    async fn single_conversation(
        &self,
        user_id: i64,
        other_user_id: i64,
    ) -> Result<pb::ConversationMeta> {
        if user_id == other_user_id {
            return Err(Error::invalid("cannot open a conversation with yourself"));
        }
        let mut tx = self.writer.begin().await?;
        if let Some(missing) = self
            .missing_users(&mut *tx, &[user_id, other_user_id])
            .await?
        {
            return Err(Error::user_not_found(missing));
        }
        let id = ensure_single(&mut tx, user_id, other_user_id, now_ms()).await?;
        // opening it again shows it again in the caller's list
        sqlx::query(
            "UPDATE conversation_members SET hidden_seq = NULL WHERE conversation_id = ? AND user_id = ?",
        )
        .bind(&id)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        let meta = self.meta_on(&mut *tx, &id).await?;
        tx.commit().await?;
        Ok(meta)
    }

    async fn create_group(&self, req: pb::CreateGroupRequest) -> Result<pb::Group> {
        let mut members: Vec<i64> = req
            .member_ids
            .iter()
            .copied()
            .filter(|id| *id != req.owner_id)
            .collect();
        members.sort_unstable();
        members.dedup();
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let mut all = members.clone();
        all.push(req.owner_id);
        if let Some(missing) = self.missing_users(&mut *tx, &all).await? {
            return Err(Error::user_not_found(missing));
        }
        let group_id = sqlx::query(
            "INSERT INTO chat_groups (name, avatar, owner_id, member_count, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&req.group_name)
        .bind(&req.avatar)
        .bind(req.owner_id)
        .bind(all.len() as i64)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .last_insert_rowid();
        let conv = model::group_conversation_id(group_id);
        sqlx::query("UPDATE chat_groups SET conversation_id = ? WHERE id = ?")
            .bind(&conv)
            .bind(group_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO conversations (id, type, group_id, created_at) VALUES (?, 2, ?, ?)",
        )
        .bind(&conv)
        .bind(group_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        for (user, role) in std::iter::once((req.owner_id, pb::GroupRole::Owner))
            .chain(members.iter().map(|m| (*m, pb::GroupRole::Member)))
        {
            sqlx::query("INSERT INTO group_members (group_id, user_id, role, joined_at) VALUES (?, ?, ?, ?)")
                .bind(group_id)
                .bind(user)
                .bind(role as i32)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO conversation_members (conversation_id, user_id, read_seq, joined_at) VALUES (?, ?, 0, ?)",
            )
            .bind(&conv)
            .bind(user)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.group(group_id).await
    }

    async fn group(&self, group_id: i64) -> Result<pb::Group> {
        let g = sqlx::query(
            "SELECT id, name, avatar, owner_id, conversation_id, description FROM chat_groups WHERE id = ?",
        )
        .bind(group_id)
        .fetch_optional(&self.reader)
        .await?
        .ok_or_else(|| Error::group_not_found(group_id))?;
        let members = sqlx::query(
            "SELECT gm.user_id, u.username, u.avatar, u.nickname, gm.role FROM group_members gm \
             JOIN users u ON u.id = gm.user_id WHERE gm.group_id = ? ORDER BY gm.role DESC, gm.user_id",
        )
        .bind(group_id)
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(|r| pb::GroupMember {
            user_id: r.get("user_id"),
            username: r.get("username"),
            avatar: r.get("avatar"),
            role: r.get("role"),
            nickname: r.get("nickname"),
        })
        .collect();
        Ok(pb::Group {
            group_id: g.get("id"),
            group_name: g.get("name"),
            avatar: g.get("avatar"),
            owner_id: g.get("owner_id"),
            conversation_id: g.get("conversation_id"),
            members,
            description: g.get("description"),
        })
    }

    async fn add_group_members(
        &self,
        group_id: i64,
        user_ids: &[i64],
        role: pb::GroupRole,
    ) -> Result<Vec<i64>> {
        let mut tx = self.writer.begin().await?;
        let conv = group_conversation(&mut tx, group_id).await?;
        if let Some(missing) = self.missing_users(&mut *tx, user_ids).await? {
            return Err(Error::user_not_found(missing));
        }
        let now = now_ms();
        let mut added = Vec::new();
        let mut ids = user_ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        for user in ids {
            let r = sqlx::query(
                "INSERT OR IGNORE INTO group_members (group_id, user_id, role, joined_at) VALUES (?, ?, ?, ?)",
            )
            .bind(group_id)
            .bind(user)
            .bind(role as i32)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if r.rows_affected() == 1 {
                // a new member starts with the history read
                sqlx::query(
                    "INSERT OR IGNORE INTO conversation_members (conversation_id, user_id, read_seq, joined_at) \
                     SELECT id, ?, last_seq, ? FROM conversations WHERE id = ?",
                )
                .bind(user)
                .bind(now)
                .bind(&conv)
                .execute(&mut *tx)
                .await?;
                added.push(user);
            }
        }
        sqlx::query("UPDATE chat_groups SET member_count = member_count + ? WHERE id = ?")
            .bind(added.len() as i64)
            .bind(group_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(added)
    }

    async fn remove_group_member(&self, group_id: i64, user_id: i64) -> Result<bool> {
        let mut tx = self.writer.begin().await?;
        let conv = group_conversation(&mut tx, group_id).await?;
        let r = sqlx::query("DELETE FROM group_members WHERE group_id = ? AND user_id = ?")
            .bind(group_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        let removed = r.rows_affected() == 1;
        if removed {
            sqlx::query(
                "DELETE FROM conversation_members WHERE conversation_id = ? AND user_id = ?",
            )
            .bind(&conv)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE chat_groups SET member_count = member_count - 1 WHERE id = ?")
                .bind(group_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(removed)
    }

    async fn set_group_role(&self, group_id: i64, user_id: i64, role: pb::GroupRole) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        group_conversation(&mut tx, group_id).await?;
        let r = sqlx::query("UPDATE group_members SET role = ? WHERE group_id = ? AND user_id = ?")
            .bind(role as i32)
            .bind(group_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            return Err(model::not_in_group(group_id, user_id));
        }
        if role == pb::GroupRole::Owner {
            // one owner: the one before becomes an admin
            sqlx::query(
                "UPDATE group_members SET role = ? WHERE group_id = ? AND role = ? AND user_id != ?",
            )
            .bind(pb::GroupRole::Admin as i32)
            .bind(group_id)
            .bind(pb::GroupRole::Owner as i32)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE chat_groups SET owner_id = ? WHERE id = ?")
                .bind(user_id)
                .bind(group_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn update_group(&self, req: pb::UpdateGroupRequest) -> Result<pb::Group> {
        let found = sqlx::query(
            "UPDATE chat_groups SET name = COALESCE(?, name), description = COALESCE(?, description), \
             avatar = COALESCE(?, avatar) WHERE id = ?",
        )
        .bind(req.name)
        .bind(req.description)
        .bind(req.avatar)
        .bind(req.group_id)
        .execute(&self.writer)
        .await?
        .rows_affected();
        if found == 0 {
            return Err(Error::group_not_found(req.group_id));
        }
        self.group(req.group_id).await
    }

    async fn dissolve_group(&self, group_id: i64) -> Result<Vec<i64>> {
        let mut tx = self.writer.begin().await?;
        let conv = group_conversation(&mut tx, group_id).await?;
        let members: Vec<i64> = sqlx::query_scalar(
            "SELECT user_id FROM group_members WHERE group_id = ? ORDER BY user_id",
        )
        .bind(group_id)
        .fetch_all(&mut *tx)
        .await?;
        for sql in [
            "DELETE FROM group_members WHERE group_id = ?",
            "DELETE FROM chat_groups WHERE id = ?",
        ] {
            sqlx::query(sql).bind(group_id).execute(&mut *tx).await?;
        }
        for sql in [
            "DELETE FROM conversation_members WHERE conversation_id = ?",
            "DELETE FROM messages WHERE conversation_id = ?",
            "DELETE FROM conversations WHERE id = ?",
        ] {
            sqlx::query(sql).bind(&conv).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(members)
    }

    async fn hide_conversation(&self, conversation_id: &str, user_id: i64) -> Result<()> {
        let r = sqlx::query(
            "UPDATE conversation_members SET hidden_seq = \
             (SELECT last_seq FROM conversations WHERE id = ?) \
             WHERE conversation_id = ? AND user_id = ?",
        )
        .bind(conversation_id)
        .bind(conversation_id)
        .bind(user_id)
        .execute(&self.writer)
        .await?;
        if r.rows_affected() == 0 {
            return Err(Error::conversation_not_found(conversation_id));
        }
        Ok(())
    }

    async fn conversation(&self, conversation_id: &str) -> Result<pb::ConversationMeta> {
        self.meta_on(&self.reader, conversation_id).await
    }

    async fn is_member(&self, conversation_id: &str, user_id: i64) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM conversation_members WHERE conversation_id = ? AND user_id = ?",
        )
        .bind(conversation_id)
        .bind(user_id)
        .fetch_optional(&self.reader)
        .await?;
        Ok(found.is_some())
    }

    async fn member_ids(
        &self,
        conversation_id: &str,
        after_user_id: i64,
        limit: i64,
    ) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT user_id FROM conversation_members WHERE conversation_id = ? AND user_id > ? \
             ORDER BY user_id LIMIT ?",
        )
        .bind(conversation_id)
        .bind(after_user_id)
        .bind(limit.max(0))
        .fetch_all(&self.reader)
        .await?)
    }

    async fn conversations(&self, user_id: i64) -> Result<Vec<pb::ConversationView>> {
        let rows = sqlx::query(&format!(
            "SELECT c.id AS cid, c.type AS ctype, c.group_id, c.user_a, c.user_b, c.last_seq, \
             c.last_message_time, c.member_count AS world_members, cm.read_seq, cm.hidden_seq, \
             CASE WHEN c.type = 3 THEN 0 ELSE (SELECT COUNT(*) FROM messages mm \
               WHERE mm.conversation_id = c.id AND mm.seq > MAX(cm.read_seq, c.last_seq - {MENTION_SCAN}) \
               AND mm.sender_id != cm.user_id \
               AND ((mm.flags & 4) != 0 OR instr(mm.mentions, ',' || cm.user_id || ',') > 0)) END AS mention_count, \
             {MESSAGE_COLUMNS} \
             FROM conversation_members cm JOIN conversations c ON c.id = cm.conversation_id \
             LEFT JOIN messages m ON m.message_id = c.last_message_id AND c.last_message_id != 0 \
             LEFT JOIN users u ON u.id = m.sender_id \
             WHERE cm.user_id = ? \
             ORDER BY (c.type = 3) DESC, c.last_message_time DESC, c.created_at DESC"
        ))
        .bind(user_id)
        .fetch_all(&self.reader)
        .await?;

        let mut peer_ids = Vec::new();
        let mut group_ids = Vec::new();
        for r in &rows {
            match r.get::<i32, _>("ctype") {
                1 => {
                    let (a, b): (i64, i64) = (r.get("user_a"), r.get("user_b"));
                    peer_ids.push(if a == user_id { b } else { a });
                }
                2 => group_ids.push(r.get::<i64, _>("group_id")),
                _ => {}
            }
        }
        let peers: HashMap<i64, pb::User> = self
            .users(&peer_ids)
            .await?
            .into_iter()
            .map(|u| (u.user_id, u))
            .collect();
        let mut groups: HashMap<i64, pb::GroupTarget> = HashMap::new();
        if !group_ids.is_empty() {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "SELECT id, name, avatar, member_count FROM chat_groups WHERE id IN (",
            );
            let mut sep = qb.separated(", ");
            for id in &group_ids {
                sep.push_bind(*id);
            }
            sep.push_unseparated(")");
            for g in qb.build().fetch_all(&self.reader).await? {
                groups.insert(
                    g.get("id"),
                    pb::GroupTarget {
                        group_id: g.get("id"),
                        group_name: g.get("name"),
                        avatar: g.get("avatar"),
                        member_count: g.get("member_count"),
                    },
                );
            }
        }

        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let kind: i32 = r.get("ctype");
            let target = match kind {
                1 => {
                    let (a, b): (i64, i64) = (r.get("user_a"), r.get("user_b"));
                    let peer = if a == user_id { b } else { a };
                    peers
                        .get(&peer)
                        .cloned()
                        .map(pb::conversation_view::Target::Peer)
                }
                2 => groups
                    .get(&r.get::<i64, _>("group_id"))
                    .cloned()
                    .map(pb::conversation_view::Target::Group),
                _ => Some(pb::conversation_view::Target::World(model::world_target(
                    r.get("world_members"),
                ))),
            };
            let last_message = r
                .try_get::<Option<i64>, _>("message_id")
                .ok()
                .flatten()
                .map(|_| message_from_row(r));
            let last_seq: i64 = r.get("last_seq");
            let read_seq: i64 = r.get("read_seq");
            let hidden_seq: Option<i64> = r.get("hidden_seq");
            out.push(pb::ConversationView {
                conversation_id: r.get("cid"),
                r#type: kind,
                target,
                last_message,
                last_message_time_ms: r.get("last_message_time"),
                unread_count: (last_seq - read_seq).max(0),
                last_seq,
                read_seq,
                hidden: hidden_seq.is_some_and(|h| last_seq <= h),
                mention_count: r.get("mention_count"),
            });
        }
        Ok(out)
    }

    async fn append(&self, messages: Vec<pb::MessageDraft>) -> Result<Vec<pb::AppendOutcome>> {
        if messages.len() == 1 {
            // one message: its INSERT is a transaction of its own (autocommit, stepped to
            // the end so a failed commit is reported), one round trip to sqlx's worker
            // thread instead of three (BEGIN, INSERT, COMMIT)
            let mut conn = self.writer.acquire().await?;
            return self.append_all(&mut conn, messages).await;
        }
        // a batch: one transaction, one fsync for all (group commit)
        let mut tx = self.writer.begin().await?;
        let outcomes = self.append_all(&mut tx, messages).await?;
        tx.commit().await?;
        Ok(outcomes)
    }

    async fn messages(&self, req: pb::HistoryRequest) -> Result<pb::HistoryPage> {
        let q = model::HistoryQuery::from_request(&req)?;
        let last_seq: i64 = sqlx::query_scalar("SELECT last_seq FROM conversations WHERE id = ?")
            .bind(&req.conversation_id)
            .fetch_optional(&self.reader)
            .await?
            .ok_or_else(|| Error::conversation_not_found(&req.conversation_id))?;
        let (lo, hi, newest_first) = q.seq_window(last_seq);
        let order = if newest_first { "DESC" } else { "ASC" };
        let rows = sqlx::query(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m LEFT JOIN users u ON u.id = m.sender_id \
             WHERE m.conversation_id = ? AND m.seq >= ? AND m.seq <= ? ORDER BY m.seq {order} LIMIT ?"
        ))
        .bind(&req.conversation_id)
        .bind(lo)
        .bind(hi)
        .bind(q.size + 1)
        .fetch_all(&self.reader)
        .await?;
        let mut messages: Vec<pb::ChatMessage> = rows.iter().map(message_from_row).collect();
        Ok(q.finish(&mut messages, last_seq))
    }

    async fn message(&self, message_id: i64) -> Result<pb::ChatMessage> {
        let row = sqlx::query(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m LEFT JOIN users u ON u.id = m.sender_id \
             WHERE m.message_id = ?"
        ))
        .bind(message_id)
        .fetch_optional(&self.reader)
        .await?
        .ok_or_else(|| model::message_not_found(message_id))?;
        Ok(message_from_row(&row))
    }

    async fn amend_message(&self, req: pb::AmendMessageRequest) -> Result<pb::ChatMessage> {
        let (content, flag) = if req.revoke {
            (Some(String::new()), model::FLAG_REVOKED)
        } else {
            (req.content, model::FLAG_EDITED)
        };
        let mut tx = self.writer.begin().await?;
        let found = sqlx::query(
            "UPDATE messages SET content = COALESCE(?, content), flags = flags | ? WHERE message_id = ?",
        )
        .bind(content)
        .bind(flag)
        .bind(req.message_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if found == 0 {
            return Err(model::message_not_found(req.message_id));
        }
        let row = sqlx::query(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m LEFT JOIN users u ON u.id = m.sender_id \
             WHERE m.message_id = ?"
        ))
        .bind(req.message_id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(message_from_row(&row))
    }

    async fn readers(&self, req: pb::ReadersRequest) -> Result<pb::Readers> {
        let user_ids: Vec<i64> = sqlx::query_scalar(
            "SELECT user_id FROM conversation_members WHERE conversation_id = ? AND read_seq >= ? \
             AND user_id != ? AND user_id > ? ORDER BY user_id LIMIT ?",
        )
        .bind(&req.conversation_id)
        .bind(req.seq)
        .bind(req.exclude_user_id)
        .bind(req.after_user_id)
        .bind(req.limit.max(0))
        .fetch_all(&self.reader)
        .await?;
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM conversation_members WHERE conversation_id = ? AND read_seq >= ? \
             AND user_id != ?",
        )
        .bind(&req.conversation_id)
        .bind(req.seq)
        .bind(req.exclude_user_id)
        .fetch_one(&self.reader)
        .await?;
        Ok(pb::Readers { user_ids, total })
    }

    async fn mark_read(
        &self,
        user_id: i64,
        conversation_id: &str,
        seq_id: i64,
    ) -> Result<pb::ReadPointer> {
        let mut tx = self.writer.begin().await?;
        let last_seq: i64 = sqlx::query_scalar("SELECT last_seq FROM conversations WHERE id = ?")
            .bind(conversation_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| Error::conversation_not_found(conversation_id))?;
        let target = if seq_id <= 0 || seq_id > last_seq {
            last_seq
        } else {
            seq_id
        };
        let read_seq: Option<i64> = sqlx::query_scalar(
            "UPDATE conversation_members SET read_seq = MAX(read_seq, ?) \
             WHERE conversation_id = ? AND user_id = ? RETURNING read_seq",
        )
        .bind(target)
        .bind(conversation_id)
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        let read_seq = read_seq.ok_or_else(|| {
            Error::forbidden(format!(
                "user {user_id} is not a member of {conversation_id}"
            ))
        })?;
        Ok(pb::ReadPointer { read_seq, last_seq })
    }

    async fn revoke_token(&self, token_id: &str, expires_at: i64) -> Result<bool> {
        let mut tx = self.writer.begin().await?;
        sqlx::query("DELETE FROM revoked_tokens WHERE expires_at <= ?")
            .bind(now_ms() / 1000)
            .execute(&mut *tx)
            .await?;
        // the one writer connection takes transactions in turn: the first of concurrent
        // revocations finds no row
        let before: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM revoked_tokens WHERE token_id = ?")
                .bind(token_id)
                .fetch_optional(&mut *tx)
                .await?;
        sqlx::query(
            "INSERT INTO revoked_tokens (token_id, expires_at) VALUES (?, ?) \
             ON CONFLICT (token_id) DO UPDATE SET expires_at = MAX(expires_at, excluded.expires_at)",
        )
        .bind(token_id)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(before.is_none())
    }

    async fn revoked_tokens(&self, now: i64) -> Result<Vec<pb::RevokedToken>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT token_id, expires_at FROM revoked_tokens WHERE expires_at > ? ORDER BY expires_at",
        )
        .bind(now)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(token_id, expires_at)| pb::RevokedToken {
                token_id,
                expires_at,
            })
            .collect())
    }

    async fn peer_ids(&self, user_id: i64) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT friend_id FROM friends WHERE user_id = ? \
             UNION SELECT b.user_id FROM group_members a JOIN group_members b ON a.group_id = b.group_id \
             WHERE a.user_id = ? AND b.user_id != ? ORDER BY 1",
        )
        .bind(user_id)
        .bind(user_id)
        .bind(user_id)
        .fetch_all(&self.reader)
        .await?)
    }
}

/// The conversation id of a group, inside `tx`; `GROUP_NOT_FOUND` if there is no such group.
async fn group_conversation(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    group_id: i64,
) -> Result<String> {
    sqlx::query_scalar("SELECT conversation_id FROM chat_groups WHERE id = ?")
        .bind(group_id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| Error::group_not_found(group_id))
}

/// Get-or-create of the single conversation of two users, inside `tx`.
async fn ensure_single(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    a: i64,
    b: i64,
    now: i64,
) -> Result<String> {
    let (lo, hi) = (a.min(b), a.max(b));
    let id = model::single_conversation_id(lo, hi);
    let created = sqlx::query(
        "INSERT OR IGNORE INTO conversations (id, type, user_a, user_b, created_at) VALUES (?, 1, ?, ?, ?)",
    )
    .bind(&id)
    .bind(lo)
    .bind(hi)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if created == 1 {
        sqlx::query(
            "INSERT INTO conversation_members (conversation_id, user_id, read_seq, joined_at) VALUES (?, ?, 0, ?), (?, ?, 0, ?)",
        )
        .bind(&id)
        .bind(lo)
        .bind(now)
        .bind(&id)
        .bind(hi)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(id)
}
