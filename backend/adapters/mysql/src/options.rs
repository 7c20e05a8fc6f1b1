//! How an im-repo reaches its database: the primary, an optional read replica, the pool
//! size and the worker id its message ids carry.

use std::fmt;

/// The largest worker id a snowflake id can carry (10 bits, see [`ringchat_core::ids`]).
pub const MAX_WORKER_ID: u16 = 1023;

/// Connection settings of a [`crate::MysqlStore`].
///
/// `Debug` shows the URLs with their passwords masked, so the options can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct MysqlOptions {
    /// The primary: `mysql://user:password@host:3306/database`, plus sqlx's parameters
    /// (`?ssl-mode=required`, `ssl-ca=...`). It takes every write and every read that must
    /// see the latest write. The database is created if missing.
    pub url: String,
    /// A replica for history and list reads (see the crate docs for which calls use it);
    /// `None` reads everything from the primary. Without a database in its path it reads
    /// the primary's database name.
    pub read_url: Option<String>,
    /// Connections per pool (the primary's, and the replica's if any).
    pub max_connections: u32,
    /// The worker id in this store's message ids, `0..=1023`. Every im-repo writing the
    /// same database needs its own: two writers with the same worker id can mint the same
    /// message id in the same millisecond (the unique key then fails their append, which
    /// is retried, but ids are meant to be unique by construction).
    pub worker_id: u16,
}

impl MysqlOptions {
    /// The primary at `url`, no replica, 10 connections, worker 0.
    pub fn new(url: impl Into<String>) -> Self {
        MysqlOptions {
            url: url.into(),
            read_url: None,
            max_connections: 10,
            worker_id: 0,
        }
    }
}

impl fmt::Debug for MysqlOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MysqlOptions")
            .field("url", &redact(&self.url))
            .field("read_url", &self.read_url.as_deref().map(redact))
            .field("max_connections", &self.max_connections)
            .field("worker_id", &self.worker_id)
            .finish()
    }
}

/// `url` with the password of its user info replaced by `***`.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((user_info, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    match user_info.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_masks_passwords() {
        let mut o = MysqlOptions::new("mysql://im:s3cret@db:3306/ringchat?ssl-mode=required");
        o.read_url = Some("mysql://ro:an@ther@replica/ringchat".into());
        let shown = format!("{o:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("an@ther"),
            "{shown}"
        );
        assert!(shown.contains("mysql://im:***@db:3306/ringchat?ssl-mode=required"));
        assert!(shown.contains("mysql://ro:***@replica/ringchat"));
        assert_eq!(
            redact("mysql://root@127.0.0.1/x"),
            "mysql://root@127.0.0.1/x"
        );
    }
}
