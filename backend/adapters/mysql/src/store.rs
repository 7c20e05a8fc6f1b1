//! [`MysqlStore`]: the [`Store`] port on MySQL/MariaDB, the SQLite adapter's logic in
//! InnoDB's terms. The design (counter rows, lock order, isolation level) is in the crate
//! docs.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use ringchat_core::ids::{now_ms, IdGenerator};
use ringchat_core::model::{self, MENTION_SCAN, WORLD_ID};
use ringchat_core::ports::Store;
use ringchat_core::{Error, ErrorCode, Result};
use ringchat_proto as pb;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlRow};
use sqlx::{Executor, MySql, QueryBuilder, Row, Transaction};

use crate::error::{is_duplicate_key, once, retrying, Attempt, RetryOn};
use crate::migrate;
use crate::options::{redact, MysqlOptions, MAX_WORKER_ID};

/// Rows per multi-row statement (each binds at most 8 values; MySQL allows 65535).
const CHUNK: usize = 1000;

/// Run on every new connection: the isolation level the design assumes (whatever the
/// server's default), and lock waits short enough that a stuck transaction surfaces as
/// `UNAVAILABLE` within an RPC deadline instead of after InnoDB's default 50 s.
const SESSION_SETUP: [&str; 2] = [
    "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
    "SET SESSION innodb_lock_wait_timeout = 10",
];

/// The message store of the distributed profile: a pool on the primary and, optionally, one
/// on a read replica. Several instances (im-repo processes) may share one database.
pub struct MysqlStore {
    primary: MySqlPool,
    /// The replica's pool, or a clone of `primary` when there is none (or it was
    /// unreachable at start-up).
    reads: MySqlPool,
    replica: bool,
    ids: IdGenerator,
}

impl MysqlStore {
    /// Connects to the primary, creates its database if missing, applies pending
    /// migrations and connects to the read replica if one is configured. A replica that
    /// cannot be reached is logged and replaced by the primary; an unreachable primary is
    /// `UNAVAILABLE`, a malformed URL `INVALID_ARGUMENT`.
    pub async fn connect(opts: &MysqlOptions) -> Result<MysqlStore> {
        if opts.worker_id > MAX_WORKER_ID {
            return Err(Error::invalid(format!(
                "store worker id {} is above {MAX_WORKER_ID}",
                opts.worker_id
            )));
        }
        let primary_opts = parse_url("url", &opts.url)?;
        let database = primary_opts
            .get_database()
            .filter(|d| !d.is_empty())
            .ok_or_else(|| {
                Error::invalid(format!(
                    "store url {} names no database (mysql://user:password@host/database)",
                    redact(&opts.url)
                ))
            })?
            .to_owned();
        migrate::check_database_name(&database)?;
        migrate::ensure_database(&primary_opts, &database).await?;
        migrate::run(&primary_opts, &database).await?;
        let primary = pool_options(opts.max_connections)
            .connect_with(primary_opts)
            .await
            .map_err(crate::error::store_error)?;
        let (reads, replica) = match &opts.read_url {
            None => (primary.clone(), false),
            Some(url) => {
                let mut read_opts = parse_url("read_url", url)?;
                if read_opts.get_database().is_none_or(str::is_empty) {
                    read_opts = read_opts.database(&database);
                }
                match migrate::connect_one(&read_opts).await {
                    Ok(probe) => {
                        use sqlx::Connection;
                        let _ = probe.close().await;
                        let pool = pool_options(opts.max_connections).connect_lazy_with(read_opts);
                        (pool, true)
                    }
                    Err(e) => {
                        tracing::warn!(
                            read_url = %redact(url),
                            error = %e,
                            "read replica unreachable, reading from the primary"
                        );
                        (primary.clone(), false)
                    }
                }
            }
        };
        tracing::info!(
            database,
            replica,
            worker_id = opts.worker_id,
            "mysql store ready"
        );
        Ok(MysqlStore {
            primary,
            reads,
            replica,
            ids: IdGenerator::new(opts.worker_id),
        })
    }

    /// Whether history and list reads go to a replica (false: no replica configured, or it
    /// was unreachable at start-up).
    pub fn has_read_replica(&self) -> bool {
        self.replica
    }

    /// Closes both pools, waiting for connections in use to come back.
    pub async fn close(&self) {
        self.reads.close().await;
        self.primary.close().await;
    }
}

fn parse_url(what: &str, url: &str) -> Result<MySqlConnectOptions> {
    MySqlConnectOptions::from_str(url)
        .map_err(|e| Error::invalid(format!("store {what} {}: {e}", redact(url))))
}

fn pool_options(max_connections: u32) -> MySqlPoolOptions {
    MySqlPoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                for statement in SESSION_SETUP {
                    conn.execute(statement).await?;
                }
                Ok(())
            })
        })
}

/// The SQLite adapter's `COLLATE NOCASE`: names equal but for ASCII case are one name.
fn name_key(username: &str) -> String {
    username.to_ascii_lowercase()
}

/// A string column. Decoded through bytes: sqlx 0.8 refuses `String` for columns with a
/// binary collation (`utf8mb4_bin`), which every string column here has.
fn text(row: &MySqlRow, column: &str) -> std::result::Result<String, sqlx::Error> {
    let bytes: Vec<u8> = row.try_get(column)?;
    utf8(column, bytes)
}

fn opt_text(row: &MySqlRow, column: &str) -> std::result::Result<Option<String>, sqlx::Error> {
    let bytes: Option<Vec<u8>> = row.try_get(column)?;
    bytes.map(|b| utf8(column, b)).transpose()
}

fn utf8(column: &str, bytes: Vec<u8>) -> std::result::Result<String, sqlx::Error> {
    String::from_utf8(bytes).map_err(|e| sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: Box::new(e),
    })
}

fn user_from_row(row: &MySqlRow) -> std::result::Result<pb::User, sqlx::Error> {
    Ok(pb::User {
        user_id: row.try_get("id")?,
        username: text(row, "username")?,
        avatar: text(row, "avatar")?,
        is_guest: row.try_get::<i64, _>("is_guest")? != 0,
        nickname: text(row, "nickname")?,
    })
}

/// The columns [`friend_request_from_row`] reads: the request `r`, its requester `a` and
/// its target `b`.
const FRIEND_REQUEST_SELECT: &str = "SELECT r.id, r.requester_id, r.target_id, r.status, \
     r.message, r.created_at, r.updated_at, \
     a.username AS a_username, a.avatar AS a_avatar, a.is_guest AS a_is_guest, a.nickname AS a_nickname, \
     b.username AS b_username, b.avatar AS b_avatar, b.is_guest AS b_is_guest, b.nickname AS b_nickname \
     FROM friend_requests r JOIN users a ON a.id = r.requester_id JOIN users b ON b.id = r.target_id";

fn friend_request_from_row(row: &MySqlRow) -> std::result::Result<pb::FriendRequest, sqlx::Error> {
    let user = |id: i64, p: &str| -> std::result::Result<pb::User, sqlx::Error> {
        Ok(pb::User {
            user_id: id,
            username: text(row, &format!("{p}_username"))?,
            avatar: text(row, &format!("{p}_avatar"))?,
            is_guest: row.try_get::<i64, _>(format!("{p}_is_guest").as_str())? != 0,
            nickname: text(row, &format!("{p}_nickname"))?,
        })
    };
    let (requester_id, target_id): (i64, i64) =
        (row.try_get("requester_id")?, row.try_get("target_id")?);
    Ok(pb::FriendRequest {
        request_id: row.try_get("id")?,
        requester_id,
        target_id,
        status: row.try_get("status")?,
        message: text(row, "message")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        requester: Some(user(requester_id, "a")?),
        target: Some(user(target_id, "b")?),
    })
}

fn message_from_row(row: &MySqlRow) -> std::result::Result<pb::ChatMessage, sqlx::Error> {
    Ok(pb::ChatMessage {
        message_id: row.try_get("message_id")?,
        conversation_id: text(row, "conversation_id")?,
        sender_id: row.try_get("sender_id")?,
        sender_name: opt_text(row, "sender_name")?.unwrap_or_default(),
        content: text(row, "content")?,
        r#type: row.try_get("type")?,
        send_time_ms: row.try_get("send_time")?,
        seq_id: row.try_get("seq")?,
        temp_message_id: opt_text(row, "temp_id")?.unwrap_or_default(),
        ..model::message_extras(
            row.try_get("ref_id")?,
            i64::from(row.try_get::<i32, _>("flags")?),
            text(row, "mentions")?,
        )
    })
}

const USER_COLUMNS: &str = "id, username, avatar, is_guest, nickname";

fn users_from_rows(rows: &[MySqlRow]) -> std::result::Result<Vec<pb::User>, sqlx::Error> {
    rows.iter().map(user_from_row).collect()
}

const MESSAGE_COLUMNS: &str =
    "m.message_id, m.conversation_id, m.sender_id, u.username AS sender_name, \
     m.content, m.type, m.send_time, m.seq, m.temp_id, m.ref_id, m.flags, m.mentions";

/// `(?, ?, ...)` of `ids` appended to `qb`.
fn push_id_list(qb: &mut QueryBuilder<'_, MySql>, ids: impl IntoIterator<Item = i64>) {
    let mut sep = qb.separated(", ");
    for id in ids {
        sep.push_bind(id);
    }
    sep.push_unseparated(")");
}

/// How a read inside a transaction sees rows other transactions changed.
#[derive(Clone, Copy)]
enum Read {
    /// The transaction's snapshot (or, outside one, the latest committed rows).
    Plain,
    /// The latest committed rows, share-locked until commit: for a row that another
    /// instance may have created after this transaction's snapshot was taken.
    Latest,
}

async fn meta_on<'e>(
    exec: impl Executor<'e, Database = MySql>,
    id: &str,
    read: Read,
) -> Attempt<pb::ConversationMeta> {
    let lock = match read {
        Read::Plain => "",
        Read::Latest => " LOCK IN SHARE MODE",
    };
    let row = sqlx::query(&format!(
        "SELECT c.id, c.type, c.group_id, c.user_a, c.user_b, c.last_seq, \
         COALESCE(g.member_count, c.member_count) AS member_count \
         FROM conversations c LEFT JOIN chat_groups g ON g.id = c.group_id AND c.type = 2 \
         WHERE c.id = ?{lock}"
    ))
    .bind(id)
    .fetch_optional(exec)
    .await?
    .ok_or_else(|| Error::conversation_not_found(id))?;
    let kind: i32 = row.try_get("type")?;
    let member_count = match kind {
        1 => 2,
        _ => row.try_get("member_count")?,
    };
    Ok(pb::ConversationMeta {
        conversation_id: text(&row, "id")?,
        r#type: kind,
        group_id: row.try_get("group_id")?,
        user_a: row.try_get("user_a")?,
        user_b: row.try_get("user_b")?,
        last_seq: row.try_get("last_seq")?,
        member_count,
    })
}

/// The first of `ids` that is not a user.
async fn missing_users(tx: &mut Transaction<'_, MySql>, ids: &[i64]) -> Attempt<Option<i64>> {
    let mut found = HashSet::new();
    for chunk in ids.chunks(CHUNK) {
        let mut qb = QueryBuilder::<MySql>::new("SELECT id FROM users WHERE id IN (");
        push_id_list(&mut qb, chunk.iter().copied());
        found.extend(qb.build_query_scalar::<i64>().fetch_all(&mut **tx).await?);
    }
    Ok(ids.iter().copied().find(|id| !found.contains(id)))
}

/// The conversation of a group, with the group's row locked: membership changes of one
/// group take turns. `GROUP_NOT_FOUND` if there is no such group.
async fn lock_group(tx: &mut Transaction<'_, MySql>, group_id: i64) -> Attempt<String> {
    let conv: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT conversation_id FROM chat_groups WHERE id = ? FOR UPDATE")
            .bind(group_id)
            .fetch_optional(&mut **tx)
            .await?;
    let conv = conv.ok_or_else(|| Error::group_not_found(group_id))?;
    Ok(utf8("conversation_id", conv)?)
}

/// Get-or-create of the single conversation of two users. `INSERT IGNORE` makes a
/// concurrent creator wait for the first and then find the row.
async fn ensure_single(
    tx: &mut Transaction<'_, MySql>,
    a: i64,
    b: i64,
    now: i64,
) -> Attempt<String> {
    let (lo, hi) = (a.min(b), a.max(b));
    let id = model::single_conversation_id(lo, hi);
    let created = sqlx::query(
        "INSERT IGNORE INTO conversations (id, type, user_a, user_b, created_at) VALUES (?, 1, ?, ?, ?)",
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
            "INSERT INTO conversation_members (conversation_id, user_id, read_seq, joined_at) \
             VALUES (?, ?, 0, ?), (?, ?, 0, ?)",
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

/// Inserts `(conversation, user, read_seq, now)` membership rows, ignoring existing ones.
async fn insert_conversation_members(
    tx: &mut Transaction<'_, MySql>,
    conversation_id: &str,
    users: &[i64],
    read_seq: i64,
    now: i64,
) -> Attempt<()> {
    for chunk in users.chunks(CHUNK) {
        let mut qb = QueryBuilder::<MySql>::new(
            "INSERT IGNORE INTO conversation_members (conversation_id, user_id, read_seq, joined_at) ",
        );
        qb.push_values(chunk, |mut row, user| {
            row.push_bind(conversation_id)
                .push_bind(*user)
                .push_bind(read_seq)
                .push_bind(now);
        });
        qb.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// Inserts group member rows with their roles.
async fn insert_group_members(
    tx: &mut Transaction<'_, MySql>,
    group_id: i64,
    members: &[(i64, pb::GroupRole)],
    now: i64,
) -> Attempt<()> {
    for chunk in members.chunks(CHUNK) {
        let mut qb = QueryBuilder::<MySql>::new(
            "INSERT IGNORE INTO group_members (group_id, user_id, role, joined_at) ",
        );
        qb.push_values(chunk, |mut row, (user, role)| {
            row.push_bind(group_id)
                .push_bind(*user)
                .push_bind(*role as i32)
                .push_bind(now);
        });
        qb.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// A message about to be inserted by an append.
struct NewRow<'a> {
    message_id: i64,
    conversation_id: &'a str,
    seq: i64,
    sender_id: i64,
    kind: i32,
    content: &'a str,
    send_time: i64,
    temp_id: Option<&'a str>,
    ref_id: i64,
    flags: i64,
    mentions: String,
}

impl MysqlStore {
    async fn create_user_once(&self, req: &pb::CreateUserRequest) -> Attempt<pb::User> {
        let now = now_ms();
        let skeleton = model::username_skeleton(&req.username);
        let mut tx = self.primary.begin().await?;
        let look_alike: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT username FROM users WHERE skeleton = ? LIMIT 1")
                .bind(&skeleton)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(existing) = look_alike {
            let existing = String::from_utf8_lossy(&existing);
            return Err(Error::new(
                ErrorCode::UsernameTaken,
                format!(
                    "username {:?} looks like the existing {existing:?}: choose another",
                    req.username
                ),
            )
            .into());
        }
        let res = sqlx::query(
            "INSERT INTO users (username, username_key, skeleton, password_hash, avatar, is_guest, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&req.username)
        .bind(name_key(&req.username))
        .bind(&skeleton)
        .bind(&req.password_hash)
        .bind(&req.avatar)
        .bind(i64::from(req.is_guest))
        .bind(now)
        .execute(&mut *tx)
        .await;
        let id = match res {
            Ok(r) => r.last_insert_id() as i64,
            // the name or a look-alike was created since the check (another instance)
            Err(e) if is_duplicate_key(&e) => {
                return Err(Error::new(
                    ErrorCode::UsernameTaken,
                    format!("username {:?} is taken", req.username),
                )
                .into())
            }
            Err(e) => return Err(e.into()),
        };
        // the world row last and briefly: every user creation and world message locks it
        sqlx::query("UPDATE conversations SET member_count = member_count + 1 WHERE id = ?")
            .bind(WORLD_ID)
            .execute(&mut *tx)
            .await?;
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
        tx.commit().await?;
        Ok(pb::User {
            user_id: id,
            username: req.username.clone(),
            avatar: req.avatar.clone(),
            is_guest: req.is_guest,
            nickname: String::new(),
        })
    }

    /// A user's row (with the password hash) by id, from the primary.
    async fn user_row_by_id(&self, user_id: i64) -> Attempt<MySqlRow> {
        let sql = format!("SELECT {USER_COLUMNS}, password_hash FROM users WHERE id = ?");
        let row = sqlx::query(&sql)
            .bind(user_id)
            .fetch_optional(&self.primary)
            .await?;
        Ok(row.ok_or_else(|| Error::user_not_found(user_id))?)
    }

    /// A user's row (with the password hash) by name, ASCII case folded, from the primary.
    async fn user_row_by_name(&self, username: &str) -> Attempt<MySqlRow> {
        let sql = format!("SELECT {USER_COLUMNS}, password_hash FROM users WHERE username_key = ?");
        let row = sqlx::query(&sql)
            .bind(name_key(username))
            .fetch_optional(&self.primary)
            .await?;
        Ok(row.ok_or_else(|| Error::user_not_found(username))?)
    }

    async fn users_once(&self, user_ids: &[i64]) -> Attempt<Vec<pb::User>> {
        let mut out = Vec::with_capacity(user_ids.len());
        for chunk in user_ids.chunks(CHUNK) {
            let mut qb = QueryBuilder::<MySql>::new(format!(
                "SELECT {USER_COLUMNS} FROM users WHERE id IN ("
            ));
            push_id_list(&mut qb, chunk.iter().copied());
            for row in qb.build().fetch_all(&self.reads).await? {
                out.push(user_from_row(&row)?);
            }
        }
        out.sort_by_key(|u| u.user_id);
        Ok(out)
    }

    async fn update_profile_once(&self, req: &pb::UpdateProfileRequest) -> Attempt<pb::User> {
        let mut tx = self.primary.begin().await?;
        // rows matched, not changed: sqlx asks the server for CLIENT_FOUND_ROWS
        let found = sqlx::query(
            "UPDATE users SET avatar = COALESCE(?, avatar), nickname = COALESCE(?, nickname) \
             WHERE id = ?",
        )
        .bind(req.avatar.as_deref())
        .bind(req.nickname.as_deref())
        .bind(req.user_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if found == 0 {
            return Err(Error::user_not_found(req.user_id).into());
        }
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?"))
            .bind(req.user_id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(user_from_row(&row)?)
    }

    async fn send_friend_request_once(
        &self,
        req: &pb::NewFriendRequest,
    ) -> Attempt<pb::FriendRequestSent> {
        let now = now_ms() / 1000;
        let mut tx = self.primary.begin().await?;
        if let Some(missing) = missing_users(&mut tx, &[req.requester_id, req.target_id]).await? {
            return Err(Error::user_not_found(missing).into());
        }
        let inserted = sqlx::query(
            "INSERT IGNORE INTO friend_requests \
             (requester_id, target_id, status, message, created_at, updated_at) VALUES (?, ?, 0, ?, ?, ?)",
        )
        .bind(req.requester_id)
        .bind(req.target_id)
        .bind(&req.message)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        // a rejected request is reopened; a pending, accepted or blocked one stays
        let reopened = !inserted
            && sqlx::query(
                "UPDATE friend_requests SET status = 0, message = ?, updated_at = ? \
                 WHERE requester_id = ? AND target_id = ? AND status = 2",
            )
            .bind(&req.message)
            .bind(now)
            .bind(req.requester_id)
            .bind(req.target_id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                > 0;
        let row = sqlx::query(&format!(
            "{FRIEND_REQUEST_SELECT} WHERE r.requester_id = ? AND r.target_id = ? LOCK IN SHARE MODE"
        ))
        .bind(req.requester_id)
        .bind(req.target_id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(pb::FriendRequestSent {
            request: Some(friend_request_from_row(&row)?),
            changed: inserted || reopened,
        })
    }

    async fn answer_friend_request_once(
        &self,
        a: &pb::FriendRequestAnswer,
    ) -> Attempt<pb::FriendRequest> {
        let mut tx = self.primary.begin().await?;
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
            "{FRIEND_REQUEST_SELECT} WHERE r.id = ? AND r.target_id = ? LOCK IN SHARE MODE"
        ))
        .bind(a.request_id)
        .bind(a.target_id)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        let request = match row {
            Some(row) => friend_request_from_row(&row)?,
            None => return Err(model::no_friend_request(a.request_id).into()),
        };
        model::check_answered(&request, a.status)?;
        Ok(request)
    }

    async fn add_friend_once(&self, user_id: i64, other: i64) -> Attempt<pb::ConversationMeta> {
        let mut tx = self.primary.begin().await?;
        if let Some(missing) = missing_users(&mut tx, &[user_id, other]).await? {
            return Err(Error::user_not_found(missing).into());
        }
        let now = now_ms();
        // both rows in one order whoever asks, so two requests of the pair cannot deadlock
        let (lo, hi) = (user_id.min(other), user_id.max(other));
        sqlx::query(
            "INSERT IGNORE INTO friends (user_id, friend_id, created_at) VALUES (?, ?, ?), (?, ?, ?)",
        )
        .bind(lo)
        .bind(hi)
        .bind(now)
        .bind(hi)
        .bind(lo)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let id = ensure_single(&mut tx, user_id, other, now).await?;
        // INSERT IGNORE saw a conversation another instance created after this
        // transaction's snapshot; a plain read would not
        let meta = meta_on(&mut *tx, &id, Read::Latest).await?;
        tx.commit().await?;
        Ok(meta)
    }

    async fn single_conversation_once(
        &self,
        user_id: i64,
        other: i64,
    ) -> Attempt<pb::ConversationMeta> {
        let mut tx = self.primary.begin().await?;
        if let Some(missing) = missing_users(&mut tx, &[user_id, other]).await? {
            return Err(Error::user_not_found(missing).into());
        }
        let id = ensure_single(&mut tx, user_id, other, now_ms()).await?;
        // opening it again shows it again in the caller's list
        sqlx::query(
            "UPDATE conversation_members SET hidden_seq = NULL WHERE conversation_id = ? AND user_id = ?",
        )
        .bind(&id)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        // INSERT IGNORE saw a conversation another instance created after this
        // transaction's snapshot; a plain read would not
        let meta = meta_on(&mut *tx, &id, Read::Latest).await?;
        tx.commit().await?;
        Ok(meta)
    }

    async fn create_group_once(&self, req: &pb::CreateGroupRequest) -> Attempt<i64> {
        let mut members: Vec<i64> = req
            .member_ids
            .iter()
            .copied()
            .filter(|id| *id != req.owner_id)
            .collect();
        members.sort_unstable();
        members.dedup();
        let now = now_ms();
        let mut tx = self.primary.begin().await?;
        let mut all = members.clone();
        all.push(req.owner_id);
        if let Some(missing) = missing_users(&mut tx, &all).await? {
            return Err(Error::user_not_found(missing).into());
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
        .last_insert_id() as i64;
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
        let roles: Vec<(i64, pb::GroupRole)> =
            std::iter::once((req.owner_id, pb::GroupRole::Owner))
                .chain(members.iter().map(|m| (*m, pb::GroupRole::Member)))
                .collect();
        insert_group_members(&mut tx, group_id, &roles, now).await?;
        let users: Vec<i64> = roles.iter().map(|(u, _)| *u).collect();
        insert_conversation_members(&mut tx, &conv, &users, 0, now).await?;
        tx.commit().await?;
        Ok(group_id)
    }

    async fn group_once(&self, group_id: i64) -> Attempt<pb::Group> {
        let g = sqlx::query(
            "SELECT id, name, avatar, owner_id, conversation_id, description FROM chat_groups WHERE id = ?",
        )
        .bind(group_id)
        .fetch_optional(&self.primary)
        .await?
        .ok_or_else(|| Error::group_not_found(group_id))?;
        let rows = sqlx::query(
            "SELECT gm.user_id, u.username, u.avatar, u.nickname, gm.role FROM group_members gm \
             JOIN users u ON u.id = gm.user_id WHERE gm.group_id = ? ORDER BY gm.role DESC, gm.user_id",
        )
        .bind(group_id)
        .fetch_all(&self.primary)
        .await?;
        let mut members = Vec::with_capacity(rows.len());
        for r in &rows {
            members.push(pb::GroupMember {
                user_id: r.try_get("user_id")?,
                username: text(r, "username")?,
                avatar: text(r, "avatar")?,
                role: r.try_get("role")?,
                nickname: text(r, "nickname")?,
            });
        }
        Ok(pb::Group {
            group_id: g.try_get("id")?,
            group_name: text(&g, "name")?,
            avatar: text(&g, "avatar")?,
            owner_id: g.try_get("owner_id")?,
            conversation_id: text(&g, "conversation_id")?,
            members,
            description: text(&g, "description")?,
        })
    }

    async fn add_group_members_once(
        &self,
        group_id: i64,
        user_ids: &[i64],
        role: pb::GroupRole,
    ) -> Attempt<Vec<i64>> {
        let mut tx = self.primary.begin().await?;
        let conv = lock_group(&mut tx, group_id).await?;
        if let Some(missing) = missing_users(&mut tx, user_ids).await? {
            return Err(Error::user_not_found(missing).into());
        }
        let mut ids = user_ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        // with the group's row locked, no other transaction changes its membership
        let mut existing = HashSet::new();
        for chunk in ids.chunks(CHUNK) {
            let mut qb =
                QueryBuilder::<MySql>::new("SELECT user_id FROM group_members WHERE group_id = ");
            qb.push_bind(group_id).push(" AND user_id IN (");
            push_id_list(&mut qb, chunk.iter().copied());
            existing.extend(qb.build_query_scalar::<i64>().fetch_all(&mut *tx).await?);
        }
        let added: Vec<i64> = ids.into_iter().filter(|u| !existing.contains(u)).collect();
        if added.is_empty() {
            tx.commit().await?;
            return Ok(added);
        }
        // a new member starts with the history read; the share lock holds appends to the
        // group back until the members are in, so nothing sent meanwhile is missed or
        // counted twice
        let last_seq: i64 = sqlx::query_scalar(
            "SELECT last_seq FROM conversations WHERE id = ? LOCK IN SHARE MODE",
        )
        .bind(&conv)
        .fetch_optional(&mut *tx)
        .await?
        .unwrap_or(0);
        let now = now_ms();
        let with_roles: Vec<(i64, pb::GroupRole)> = added.iter().map(|u| (*u, role)).collect();
        insert_group_members(&mut tx, group_id, &with_roles, now).await?;
        insert_conversation_members(&mut tx, &conv, &added, last_seq, now).await?;
        sqlx::query("UPDATE chat_groups SET member_count = member_count + ? WHERE id = ?")
            .bind(added.len() as i64)
            .bind(group_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(added)
    }

    async fn remove_group_member_once(&self, group_id: i64, user_id: i64) -> Attempt<bool> {
        let mut tx = self.primary.begin().await?;
        let conv = lock_group(&mut tx, group_id).await?;
        let removed = sqlx::query("DELETE FROM group_members WHERE group_id = ? AND user_id = ?")
            .bind(group_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
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

    async fn set_group_role_once(
        &self,
        group_id: i64,
        user_id: i64,
        role: pb::GroupRole,
    ) -> Attempt<()> {
        let mut tx = self.primary.begin().await?;
        lock_group(&mut tx, group_id).await?;
        // rows matched, not changed: sqlx asks the server for CLIENT_FOUND_ROWS
        let r = sqlx::query("UPDATE group_members SET role = ? WHERE group_id = ? AND user_id = ?")
            .bind(role as i32)
            .bind(group_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            return Err(model::not_in_group(group_id, user_id).into());
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

    async fn dissolve_group_once(&self, group_id: i64) -> Attempt<Vec<i64>> {
        let mut tx = self.primary.begin().await?;
        let conv = lock_group(&mut tx, group_id).await?;
        let members: Vec<i64> = sqlx::query_scalar(
            "SELECT user_id FROM group_members WHERE group_id = ? ORDER BY user_id",
        )
        .bind(group_id)
        .fetch_all(&mut *tx)
        .await?;
        // the conversation's row first: appends to it (which lock it) wait, then find it gone
        sqlx::query("DELETE FROM conversations WHERE id = ?")
            .bind(&conv)
            .execute(&mut *tx)
            .await?;
        for sql in [
            "DELETE FROM conversation_members WHERE conversation_id = ?",
            "DELETE FROM messages WHERE conversation_id = ?",
        ] {
            sqlx::query(sql).bind(&conv).execute(&mut *tx).await?;
        }
        for sql in [
            "DELETE FROM group_members WHERE group_id = ?",
            "DELETE FROM chat_groups WHERE id = ?",
        ] {
            sqlx::query(sql).bind(group_id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(members)
    }

    async fn conversations_once(&self, user_id: i64) -> Attempt<Vec<pb::ConversationView>> {
        let rows = sqlx::query(&format!(
            "SELECT c.id AS cid, c.type AS ctype, c.group_id, c.user_a, c.user_b, c.last_seq, \
             c.last_message_time, c.member_count AS world_members, cm.read_seq, cm.hidden_seq, \
             CASE WHEN c.type = 3 THEN 0 ELSE (SELECT COUNT(*) FROM messages mm \
               WHERE mm.conversation_id = c.id \
               AND mm.seq > GREATEST(cm.read_seq, c.last_seq - {MENTION_SCAN}) \
               AND mm.sender_id != cm.user_id \
               AND ((mm.flags & 4) != 0 OR LOCATE(CONCAT(',', cm.user_id, ','), mm.mentions) > 0)) \
             END AS mention_count, \
             {MESSAGE_COLUMNS} \
             FROM conversation_members cm JOIN conversations c ON c.id = cm.conversation_id \
             LEFT JOIN messages m ON m.message_id = c.last_message_id AND c.last_message_id != 0 \
             LEFT JOIN users u ON u.id = m.sender_id \
             WHERE cm.user_id = ? \
             ORDER BY (c.type = 3) DESC, c.last_message_time DESC, c.created_at DESC"
        ))
        .bind(user_id)
        .fetch_all(&self.reads)
        .await?;

        let peer_of = |r: &MySqlRow| -> std::result::Result<i64, sqlx::Error> {
            let (a, b): (i64, i64) = (r.try_get("user_a")?, r.try_get("user_b")?);
            Ok(if a == user_id { b } else { a })
        };
        let mut peer_ids = Vec::new();
        let mut group_ids = Vec::new();
        for r in &rows {
            match r.try_get::<i32, _>("ctype")? {
                1 => peer_ids.push(peer_of(r)?),
                2 => group_ids.push(r.try_get::<i64, _>("group_id")?),
                _ => {}
            }
        }
        let peers: HashMap<i64, pb::User> = self
            .users_once(&peer_ids)
            .await?
            .into_iter()
            .map(|u| (u.user_id, u))
            .collect();
        let mut groups: HashMap<i64, pb::GroupTarget> = HashMap::new();
        for chunk in group_ids.chunks(CHUNK) {
            let mut qb = QueryBuilder::<MySql>::new(
                "SELECT id, name, avatar, member_count FROM chat_groups WHERE id IN (",
            );
            push_id_list(&mut qb, chunk.iter().copied());
            for g in qb.build().fetch_all(&self.reads).await? {
                let id: i64 = g.try_get("id")?;
                groups.insert(
                    id,
                    pb::GroupTarget {
                        group_id: id,
                        group_name: text(&g, "name")?,
                        avatar: text(&g, "avatar")?,
                        member_count: g.try_get("member_count")?,
                    },
                );
            }
        }

        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let kind: i32 = r.try_get("ctype")?;
            let target = match kind {
                1 => peers
                    .get(&peer_of(r)?)
                    .cloned()
                    .map(pb::conversation_view::Target::Peer),
                2 => groups
                    .get(&r.try_get::<i64, _>("group_id")?)
                    .cloned()
                    .map(pb::conversation_view::Target::Group),
                _ => Some(pb::conversation_view::Target::World(model::world_target(
                    r.try_get("world_members")?,
                ))),
            };
            let last_message = match r.try_get::<Option<i64>, _>("message_id")? {
                Some(_) => Some(message_from_row(r)?),
                None => None,
            };
            let last_seq: i64 = r.try_get("last_seq")?;
            let read_seq: i64 = r.try_get("read_seq")?;
            out.push(pb::ConversationView {
                conversation_id: text(r, "cid")?,
                r#type: kind,
                target,
                last_message,
                last_message_time_ms: r.try_get("last_message_time")?,
                unread_count: (last_seq - read_seq).max(0),
                last_seq,
                read_seq,
                hidden: r
                    .try_get::<Option<i64>, _>("hidden_seq")?
                    .is_some_and(|h| last_seq <= h),
                mention_count: r.try_get("mention_count")?,
            });
        }
        Ok(out)
    }

    /// One attempt at a batch; see the crate docs for the steps and why they are safe
    /// with several writers.
    async fn append_once(&self, drafts: &[pb::MessageDraft]) -> Attempt<Vec<pb::AppendOutcome>> {
        let mut tx = self.primary.begin().await?;

        // 1. the counter rows, locked in id order (two batches never wait on each other in
        //    opposite orders); a missing conversation simply has no row
        let conv_ids: BTreeSet<&str> = drafts.iter().map(|d| d.conversation_id.as_str()).collect();
        let mut last_seq: HashMap<String, i64> = HashMap::new();
        let conv_ids: Vec<&str> = conv_ids.into_iter().collect();
        for chunk in conv_ids.chunks(CHUNK) {
            let mut qb =
                QueryBuilder::<MySql>::new("SELECT id, last_seq FROM conversations WHERE id IN (");
            let mut sep = qb.separated(", ");
            for id in chunk {
                sep.push_bind(*id);
            }
            sep.push_unseparated(") ORDER BY id FOR UPDATE");
            for row in qb.build().fetch_all(&mut *tx).await? {
                last_seq.insert(text(&row, "id")?, row.try_get("last_seq")?);
            }
        }

        // 2. messages stored before under the batch's idempotency keys; the first plain read
        //    of the transaction, so its snapshot includes every append that held these
        //    counters before us
        let keys: BTreeSet<(i64, &str)> = drafts
            .iter()
            .filter(|d| !d.temp_message_id.is_empty())
            .map(|d| (d.sender_id, d.temp_message_id.as_str()))
            .collect();
        let keys: Vec<(i64, &str)> = keys.into_iter().collect();
        let mut known: HashMap<(i64, String), pb::ChatMessage> = HashMap::new();
        for chunk in keys.chunks(CHUNK) {
            let mut qb = QueryBuilder::<MySql>::new(format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages m LEFT JOIN users u ON u.id = m.sender_id WHERE "
            ));
            for (i, (sender, temp)) in chunk.iter().enumerate() {
                if i > 0 {
                    qb.push(" OR ");
                }
                qb.push("(m.sender_id = ")
                    .push_bind(*sender)
                    .push(" AND m.temp_id = ")
                    .push_bind(*temp)
                    .push(")");
            }
            for row in qb.build().fetch_all(&mut *tx).await? {
                let m = message_from_row(&row)?;
                known.insert((m.sender_id, m.temp_message_id.clone()), m);
            }
        }

        // 3. the senders' names, for drafts without one and for duplicates inside the batch
        //    (which read as stored: with the user's name)
        let senders: BTreeSet<i64> = drafts.iter().map(|d| d.sender_id).collect();
        let mut names: HashMap<i64, String> = HashMap::new();
        let senders: Vec<i64> = senders.into_iter().collect();
        for chunk in senders.chunks(CHUNK) {
            let mut qb = QueryBuilder::<MySql>::new("SELECT id, username FROM users WHERE id IN (");
            push_id_list(&mut qb, chunk.iter().copied());
            for row in qb.build().fetch_all(&mut *tx).await? {
                names.insert(row.try_get("id")?, text(&row, "username")?);
            }
        }

        // 4. seqs, ids and outcomes, in the batch's order
        let mut outcomes = Vec::with_capacity(drafts.len());
        let mut rows: Vec<NewRow<'_>> = Vec::with_capacity(drafts.len());
        // conversation -> (last seq, last message id, its time)
        let mut heads: BTreeMap<&str, (i64, i64, i64)> = BTreeMap::new();
        // conversation -> sender -> its newest seq
        let mut pointers: BTreeMap<&str, BTreeMap<i64, i64>> = BTreeMap::new();
        for d in drafts {
            let key =
                (!d.temp_message_id.is_empty()).then(|| (d.sender_id, d.temp_message_id.clone()));
            if let Some(original) = key.as_ref().and_then(|k| known.get(k)) {
                outcomes.push(pb::AppendOutcome {
                    message: Some(original.clone()),
                    duplicate: true,
                    ..Default::default()
                });
                continue;
            }
            let Some(seq) = last_seq.get_mut(&d.conversation_id) else {
                outcomes.push(pb::AppendOutcome {
                    error_code: ErrorCode::ConversationNotFound.as_str().into(),
                    error_message: format!("conversation {} not found", d.conversation_id),
                    ..Default::default()
                });
                continue;
            };
            *seq += 1;
            let seq = *seq;
            let message_id = self.ids.next_id();
            let send_time = now_ms();
            let stored_name = names.get(&d.sender_id).cloned().unwrap_or_default();
            let message = pb::ChatMessage {
                message_id,
                conversation_id: d.conversation_id.clone(),
                sender_id: d.sender_id,
                sender_name: if d.sender_name.is_empty() {
                    stored_name.clone()
                } else {
                    d.sender_name.clone()
                },
                content: d.content.clone(),
                r#type: d.r#type,
                send_time_ms: send_time,
                seq_id: seq,
                temp_message_id: d.temp_message_id.clone(),
                ref_message_id: d.ref_message_id,
                mentions: d.mentions.clone(),
                mention_all: d.mention_all,
                ..Default::default()
            };
            if let Some(k) = key {
                known.insert(
                    k,
                    pb::ChatMessage {
                        sender_name: stored_name,
                        ..message.clone()
                    },
                );
            }
            rows.push(NewRow {
                message_id,
                conversation_id: &d.conversation_id,
                seq,
                sender_id: d.sender_id,
                kind: d.r#type,
                content: &d.content,
                send_time,
                temp_id: (!d.temp_message_id.is_empty()).then_some(d.temp_message_id.as_str()),
                ref_id: d.ref_message_id,
                flags: model::draft_flags(d),
                mentions: model::mention_list(&d.mentions),
            });
            heads.insert(&d.conversation_id, (seq, message_id, send_time));
            pointers
                .entry(&d.conversation_id)
                .or_default()
                .insert(d.sender_id, seq);
            outcomes.push(pb::AppendOutcome {
                message: Some(message),
                duplicate: false,
                ..Default::default()
            });
        }
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(outcomes);
        }

        // 5. the messages, many per statement
        for chunk in rows.chunks(CHUNK) {
            let mut qb = QueryBuilder::<MySql>::new(
                "INSERT INTO messages (message_id, conversation_id, seq, sender_id, type, content, send_time, temp_id, \
                 ref_id, flags, mentions) ",
            );
            qb.push_values(chunk, |mut b, r| {
                b.push_bind(r.message_id)
                    .push_bind(r.conversation_id)
                    .push_bind(r.seq)
                    .push_bind(r.sender_id)
                    .push_bind(r.kind)
                    .push_bind(r.content)
                    .push_bind(r.send_time)
                    .push_bind(r.temp_id)
                    .push_bind(r.ref_id)
                    .push_bind(r.flags)
                    .push_bind(r.mentions.as_str());
            });
            qb.build().execute(&mut *tx).await?;
        }

        // 6. the counters, and each sender's read pointer (its own messages are not unread)
        for (conv, (seq, message_id, send_time)) in &heads {
            sqlx::query(
                "UPDATE conversations SET last_seq = ?, last_message_id = ?, last_message_time = ? WHERE id = ?",
            )
            .bind(seq)
            .bind(message_id)
            .bind(send_time)
            .bind(*conv)
            .execute(&mut *tx)
            .await?;
        }
        for (conv, by_sender) in &pointers {
            let by_sender: Vec<(i64, i64)> = by_sender.iter().map(|(s, q)| (*s, *q)).collect();
            for chunk in by_sender.chunks(CHUNK) {
                let mut qb = QueryBuilder::<MySql>::new(
                    "UPDATE conversation_members SET read_seq = GREATEST(read_seq, CASE user_id",
                );
                for (sender, seq) in chunk {
                    qb.push(" WHEN ")
                        .push_bind(*sender)
                        .push(" THEN ")
                        .push_bind(*seq);
                }
                qb.push(" ELSE read_seq END) WHERE conversation_id = ")
                    .push_bind(*conv)
                    .push(" AND user_id IN (");
                push_id_list(&mut qb, chunk.iter().map(|(s, _)| *s));
                qb.build().execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    async fn messages_once(&self, req: &pb::HistoryRequest) -> Attempt<pb::HistoryPage> {
        let q = model::HistoryQuery::from_request(req)?;
        let last_seq: i64 = sqlx::query_scalar("SELECT last_seq FROM conversations WHERE id = ?")
            .bind(&req.conversation_id)
            .fetch_optional(&self.reads)
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
        .fetch_all(&self.reads)
        .await?;
        let mut messages = Vec::with_capacity(rows.len());
        for r in &rows {
            messages.push(message_from_row(r)?);
        }
        Ok(q.finish(&mut messages, last_seq))
    }

    async fn mark_read_once(
        &self,
        user_id: i64,
        conversation_id: &str,
        seq_id: i64,
    ) -> Attempt<pb::ReadPointer> {
        let mut tx = self.primary.begin().await?;
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
        sqlx::query(
            "UPDATE conversation_members SET read_seq = GREATEST(read_seq, ?) \
             WHERE conversation_id = ? AND user_id = ?",
        )
        .bind(target)
        .bind(conversation_id)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        // locking: the latest pointer even when the UPDATE changed nothing because another
        // instance moved it further after this transaction's snapshot
        let read_seq: Option<i64> = sqlx::query_scalar(
            "SELECT read_seq FROM conversation_members WHERE conversation_id = ? AND user_id = ? \
             FOR UPDATE",
        )
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

    async fn revoke_token_once(&self, token_id: &str, expires_at: i64) -> Attempt<bool> {
        // statements without a transaction: the sweep's range lock would make concurrent
        // revocations deadlock on the expiry index, and each statement is atomic alone.
        // INSERT IGNORE inserts for exactly one of concurrent revocations: the first.
        let first =
            sqlx::query("INSERT IGNORE INTO revoked_tokens (token_id, expires_at) VALUES (?, ?)")
                .bind(token_id)
                .bind(expires_at)
                .execute(&self.primary)
                .await?
                .rows_affected()
                == 1;
        if !first {
            sqlx::query(
                "UPDATE revoked_tokens SET expires_at = GREATEST(expires_at, ?) WHERE token_id = ?",
            )
            .bind(expires_at)
            .bind(token_id)
            .execute(&self.primary)
            .await?;
        }
        sqlx::query("DELETE FROM revoked_tokens WHERE expires_at <= ?")
            .bind(now_ms() / 1000)
            .execute(&self.primary)
            .await?;
        Ok(first)
    }
}

#[async_trait]
impl Store for MysqlStore {
    async fn create_user(&self, req: pb::CreateUserRequest) -> Result<pb::User> {
        retrying("create_user", RetryOn::Aborted, || {
            self.create_user_once(&req)
        })
        .await
    }

    async fn credentials(&self, username: &str) -> Result<pb::Credentials> {
        once(async {
            let row = self.user_row_by_name(username).await?;
            Ok(pb::Credentials {
                user: Some(user_from_row(&row)?),
                password_hash: text(&row, "password_hash")?,
            })
        })
        .await
    }

    async fn user(&self, user_id: i64) -> Result<pb::User> {
        once(async { Ok(user_from_row(&self.user_row_by_id(user_id).await?)?) }).await
    }

    async fn user_by_name(&self, username: &str) -> Result<pb::User> {
        once(async { Ok(user_from_row(&self.user_row_by_name(username).await?)?) }).await
    }

    async fn users(&self, user_ids: &[i64]) -> Result<Vec<pb::User>> {
        once(self.users_once(user_ids)).await
    }

    async fn search_users(
        &self,
        prefix: &str,
        after_user_id: i64,
        limit: i64,
    ) -> Result<Vec<pb::User>> {
        // username_key is the name in ASCII lower case (SQLite's NOCASE)
        let pattern = ringchat_core::model::like_prefix(&name_key(prefix));
        once(async {
            let sql = format!(
                "SELECT {USER_COLUMNS} FROM users \
                 WHERE is_guest = 0 AND username_key LIKE ? ESCAPE '!' AND id > ? ORDER BY id LIMIT ?"
            );
            let rows = sqlx::query(&sql)
                .bind(&pattern)
                .bind(after_user_id)
                .bind(limit.max(0))
                .fetch_all(&self.reads)
                .await?;
            Ok(users_from_rows(&rows)?)
        })
        .await
    }

    async fn update_profile(&self, req: pb::UpdateProfileRequest) -> Result<pb::User> {
        retrying("update_profile", RetryOn::Aborted, || {
            self.update_profile_once(&req)
        })
        .await
    }

    async fn send_friend_request(
        &self,
        req: pb::NewFriendRequest,
    ) -> Result<pb::FriendRequestSent> {
        if req.requester_id == req.target_id {
            return Err(Error::invalid("cannot befriend yourself"));
        }
        retrying("send_friend_request", RetryOn::Aborted, || {
            self.send_friend_request_once(&req)
        })
        .await
    }

    async fn friend_requests(&self, q: pb::FriendRequestsQuery) -> Result<Vec<pb::FriendRequest>> {
        let side = if q.received {
            "target_id"
        } else {
            "requester_id"
        };
        once(async {
            let rows = sqlx::query(&format!(
                "{FRIEND_REQUEST_SELECT} WHERE r.{side} = ? AND (? < 0 OR r.status = ?) \
                 ORDER BY r.updated_at DESC, r.id DESC LIMIT ?"
            ))
            .bind(q.user_id)
            .bind(q.status)
            .bind(q.status)
            .bind(q.limit.max(0))
            .fetch_all(&self.primary)
            .await?;
            Ok(rows
                .iter()
                .map(friend_request_from_row)
                .collect::<std::result::Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn answer_friend_request(&self, a: pb::FriendRequestAnswer) -> Result<pb::FriendRequest> {
        retrying("answer_friend_request", RetryOn::Aborted, || {
            self.answer_friend_request_once(&a)
        })
        .await
    }

    async fn add_friend(&self, user_id: i64, other_user_id: i64) -> Result<pb::ConversationMeta> {
        if user_id == other_user_id {
            return Err(Error::invalid("cannot befriend yourself"));
        }
        retrying("add_friend", RetryOn::Aborted, || {
            self.add_friend_once(user_id, other_user_id)
        })
        .await
    }

    async fn friends(&self, user_id: i64) -> Result<Vec<pb::User>> {
        once(async {
            let rows = sqlx::query(
                "SELECT u.id, u.username, u.avatar, u.is_guest, u.nickname FROM friends f JOIN users u ON u.id = f.friend_id \
                 WHERE f.user_id = ? ORDER BY u.username_key",
            )
            .bind(user_id)
            .fetch_all(&self.reads)
            .await?;
            Ok(users_from_rows(&rows)?)
        })
        .await
    }

    async fn single_conversation(
        &self,
        user_id: i64,
        other_user_id: i64,
    ) -> Result<pb::ConversationMeta> {
        if user_id == other_user_id {
            return Err(Error::invalid("cannot open a conversation with yourself"));
        }
        retrying("single_conversation", RetryOn::Aborted, || {
            self.single_conversation_once(user_id, other_user_id)
        })
        .await
    }

    async fn create_group(&self, req: pb::CreateGroupRequest) -> Result<pb::Group> {
        let group_id = retrying("create_group", RetryOn::Aborted, || {
            self.create_group_once(&req)
        })
        .await?;
        once(self.group_once(group_id)).await
    }

    async fn group(&self, group_id: i64) -> Result<pb::Group> {
        once(self.group_once(group_id)).await
    }

    async fn add_group_members(
        &self,
        group_id: i64,
        user_ids: &[i64],
        role: pb::GroupRole,
    ) -> Result<Vec<i64>> {
        retrying("add_group_members", RetryOn::Aborted, || {
            self.add_group_members_once(group_id, user_ids, role)
        })
        .await
    }

    async fn remove_group_member(&self, group_id: i64, user_id: i64) -> Result<bool> {
        retrying("remove_group_member", RetryOn::Aborted, || {
            self.remove_group_member_once(group_id, user_id)
        })
        .await
    }

    async fn set_group_role(&self, group_id: i64, user_id: i64, role: pb::GroupRole) -> Result<()> {
        retrying("set_group_role", RetryOn::Aborted, || {
            self.set_group_role_once(group_id, user_id, role)
        })
        .await
    }

    async fn update_group(&self, req: pb::UpdateGroupRequest) -> Result<pb::Group> {
        let req = &req;
        retrying("update_group", RetryOn::Aborted, || async move {
            // rows matched, not changed: sqlx asks the server for CLIENT_FOUND_ROWS
            let found = sqlx::query(
                "UPDATE chat_groups SET name = COALESCE(?, name), \
                 description = COALESCE(?, description), avatar = COALESCE(?, avatar) WHERE id = ?",
            )
            .bind(req.name.as_deref())
            .bind(req.description.as_deref())
            .bind(req.avatar.as_deref())
            .bind(req.group_id)
            .execute(&self.primary)
            .await?
            .rows_affected();
            if found == 0 {
                return Err(Error::group_not_found(req.group_id).into());
            }
            Ok(())
        })
        .await?;
        once(self.group_once(req.group_id)).await
    }

    async fn dissolve_group(&self, group_id: i64) -> Result<Vec<i64>> {
        retrying("dissolve_group", RetryOn::Aborted, || {
            self.dissolve_group_once(group_id)
        })
        .await
    }

    async fn hide_conversation(&self, conversation_id: &str, user_id: i64) -> Result<()> {
        retrying("hide_conversation", RetryOn::Aborted, || async move {
            let r = sqlx::query(
                "UPDATE conversation_members cm JOIN conversations c ON c.id = cm.conversation_id \
                 SET cm.hidden_seq = c.last_seq WHERE cm.conversation_id = ? AND cm.user_id = ?",
            )
            .bind(conversation_id)
            .bind(user_id)
            .execute(&self.primary)
            .await?;
            if r.rows_affected() == 0 {
                return Err(Error::conversation_not_found(conversation_id).into());
            }
            Ok(())
        })
        .await
    }

    async fn conversation(&self, conversation_id: &str) -> Result<pb::ConversationMeta> {
        once(meta_on(&self.primary, conversation_id, Read::Plain)).await
    }

    async fn is_member(&self, conversation_id: &str, user_id: i64) -> Result<bool> {
        once(async {
            let found: Option<i64> = sqlx::query_scalar(
                "SELECT 1 FROM conversation_members WHERE conversation_id = ? AND user_id = ?",
            )
            .bind(conversation_id)
            .bind(user_id)
            .fetch_optional(&self.primary)
            .await?;
            Ok(found.is_some())
        })
        .await
    }

    async fn member_ids(
        &self,
        conversation_id: &str,
        after_user_id: i64,
        limit: i64,
    ) -> Result<Vec<i64>> {
        once(async {
            Ok(sqlx::query_scalar(
                "SELECT user_id FROM conversation_members WHERE conversation_id = ? AND user_id > ? \
                 ORDER BY user_id LIMIT ?",
            )
            .bind(conversation_id)
            .bind(after_user_id)
            .bind(limit.max(0))
            .fetch_all(&self.reads)
            .await?)
        })
        .await
    }

    async fn conversations(&self, user_id: i64) -> Result<Vec<pb::ConversationView>> {
        once(self.conversations_once(user_id)).await
    }

    async fn append(&self, messages: Vec<pb::MessageDraft>) -> Result<Vec<pb::AppendOutcome>> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        // a duplicate key means another instance stored one of our idempotency keys (to
        // another conversation) meanwhile: the next attempt finds it and reports it
        retrying("append", RetryOn::AbortedOrDuplicate, || {
            self.append_once(&messages)
        })
        .await
    }

    async fn messages(&self, req: pb::HistoryRequest) -> Result<pb::HistoryPage> {
        once(self.messages_once(&req)).await
    }

    async fn message(&self, message_id: i64) -> Result<pb::ChatMessage> {
        once(async {
            let row = sqlx::query(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages m LEFT JOIN users u ON u.id = m.sender_id \
                 WHERE m.message_id = ?"
            ))
            .bind(message_id)
            .fetch_optional(&self.primary)
            .await?
            .ok_or_else(|| model::message_not_found(message_id))?;
            Ok(message_from_row(&row)?)
        })
        .await
    }

    async fn amend_message(&self, req: pb::AmendMessageRequest) -> Result<pb::ChatMessage> {
        let (content, flag) = if req.revoke {
            (Some(String::new()), model::FLAG_REVOKED)
        } else {
            (req.content.clone(), model::FLAG_EDITED)
        };
        let content = &content;
        retrying("amend_message", RetryOn::Aborted, || async move {
            // rows matched, not changed: sqlx asks the server for CLIENT_FOUND_ROWS
            let found = sqlx::query(
                "UPDATE messages SET content = COALESCE(?, content), flags = flags | ? WHERE message_id = ?",
            )
            .bind(content.as_deref())
            .bind(flag)
            .bind(req.message_id)
            .execute(&self.primary)
            .await?
            .rows_affected();
            if found == 0 {
                return Err(model::message_not_found(req.message_id).into());
            }
            Ok(())
        })
        .await?;
        self.message(req.message_id).await
    }

    async fn readers(&self, req: pb::ReadersRequest) -> Result<pb::Readers> {
        once(async {
            let user_ids: Vec<i64> = sqlx::query_scalar(
                "SELECT user_id FROM conversation_members WHERE conversation_id = ? AND read_seq >= ? \
                 AND user_id != ? AND user_id > ? ORDER BY user_id LIMIT ?",
            )
            .bind(&req.conversation_id)
            .bind(req.seq)
            .bind(req.exclude_user_id)
            .bind(req.after_user_id)
            .bind(req.limit.max(0))
            .fetch_all(&self.primary)
            .await?;
            let total: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM conversation_members WHERE conversation_id = ? AND read_seq >= ? \
                 AND user_id != ?",
            )
            .bind(&req.conversation_id)
            .bind(req.seq)
            .bind(req.exclude_user_id)
            .fetch_one(&self.primary)
            .await?;
            Ok(pb::Readers { user_ids, total })
        })
        .await
    }

    async fn mark_read(
        &self,
        user_id: i64,
        conversation_id: &str,
        seq_id: i64,
    ) -> Result<pb::ReadPointer> {
        retrying("mark_read", RetryOn::Aborted, || {
            self.mark_read_once(user_id, conversation_id, seq_id)
        })
        .await
    }

    async fn peer_ids(&self, user_id: i64) -> Result<Vec<i64>> {
        once(async {
            Ok(sqlx::query_scalar(
                "SELECT friend_id FROM friends WHERE user_id = ? \
                 UNION SELECT b.user_id FROM group_members a JOIN group_members b ON a.group_id = b.group_id \
                 WHERE a.user_id = ? AND b.user_id != ? ORDER BY 1",
            )
            .bind(user_id)
            .bind(user_id)
            .bind(user_id)
            .fetch_all(&self.reads)
            .await?)
        })
        .await
    }

    async fn revoke_token(&self, token_id: &str, expires_at: i64) -> Result<bool> {
        retrying("revoke_token", RetryOn::Aborted, || {
            self.revoke_token_once(token_id, expires_at)
        })
        .await
    }

    async fn revoked_tokens(&self, now: i64) -> Result<Vec<pb::RevokedToken>> {
        once(async {
            let rows = sqlx::query(
                "SELECT token_id, expires_at FROM revoked_tokens WHERE expires_at > ? ORDER BY expires_at",
            )
            .bind(now)
            .fetch_all(&self.primary)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(pb::RevokedToken {
                    token_id: text(r, "token_id")?,
                    expires_at: r.try_get("expires_at")?,
                });
            }
            Ok(out)
        })
        .await
    }
}
