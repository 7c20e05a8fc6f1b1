//! The data directory of a file-backed store: one process at a time, private files.
//!
//! Two processes on one SQLite file would split clients between servers that do not see
//! each other's messages, fight over the write lock, and (with the same worker id) mint
//! colliding message ids. So the store takes an exclusive advisory lock (`File::try_lock`, `flock` on Unix) on
//! `<db>.lock` for as long as it lives; a second process gets a clear error at start-up
//! instead of a half-working server. The directory is created `0700` and the database
//! `0600` (SQLite gives its `-wal` and `-shm` files the database's mode).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ringchat_core::error::{Error, ErrorCode, Result};

/// Held while the store is open; dropping it releases the lock.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    pub path: PathBuf,
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::unavailable(format!("{what} {}: {e}", path.display()))
}

/// Creates the database's directory (private) and file (private), and locks it for this
/// process. Fails with `CONFLICT` when another process holds the lock.
pub fn lock(db: &Path) -> Result<DataDirLock> {
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(|e| io_err("cannot create", dir, e))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| io_err("cannot set the mode of", dir, e))?;
        }
    }
    let mut lock_path = db.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|e| io_err("cannot open", &lock_path, e))?;
    // flock(LOCK_EX | LOCK_NB) on Unix
    if let Err(e) = file.try_lock() {
        if let std::fs::TryLockError::Error(e) = e {
            return Err(io_err("cannot lock", &lock_path, e));
        }
        let holder = std::fs::read_to_string(&lock_path).unwrap_or_default();
        return Err(Error::new(
            ErrorCode::Conflict,
            format!(
                "another ringchat process ({}) is using {}: one process per data directory",
                holder
                    .trim()
                    .trim_start_matches("pid ")
                    .to_string()
                    .replace('\n', " "),
                db.display()
            ),
        ));
    }
    let _ = file.set_len(0);
    let _ = writeln!(file, "pid {}", std::process::id());
    // the database itself: private from the first byte
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(db)
        .map_err(|e| io_err("cannot create", db, e))?;
    std::fs::set_permissions(db, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| io_err("cannot set the mode of", db, e))?;
    Ok(DataDirLock {
        _file: file,
        path: lock_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_database_is_refused_until_the_first_is_dropped() {
        let dir = std::env::temp_dir().join(ringchat_core::testkit::unique("lock"));
        let db = dir.join("ringchat.db");
        let first = lock(&db).unwrap();
        let e = lock(&db).unwrap_err();
        assert_eq!(e.code, ErrorCode::Conflict);
        assert!(e.message.contains("one process per data directory"), "{e}");
        assert!(e.message.contains(&std::process::id().to_string()), "{e}");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&db), 0o600);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&first.path), 0o600);
        drop(first);
        lock(&db).unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[cfg(test)]
mod store_tests {
    #[tokio::test]
    async fn dropping_the_store_releases_the_lock() {
        let dir = std::env::temp_dir().join(ringchat_core::testkit::unique("lockstore"));
        let db = dir.join("ringchat.db");
        let url = format!("sqlite://{}", db.display());
        let store = crate::SqliteStore::connect(&url, 2, 1).await.unwrap();
        assert!(super::lock(&db).is_err());
        drop(store);
        super::lock(&db).expect("free once the store is dropped");
    }
}

/// The embedded profile's JWT secret: read from `jwt.secret` beside the database, or made
/// (32 random bytes, hex) and written there with mode 0600 on first start. Wiping the
/// data directory therefore also invalidates every token issued for it.
pub fn jwt_secret(db: &Path) -> Result<String> {
    let path = db
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .join("jwt.secret");
    match std::fs::read_to_string(&path) {
        Ok(s) if s.trim().len() >= 32 => return Ok(s.trim().to_string()),
        Ok(_) => {
            return Err(Error::invalid(format!(
                "{} is too short: delete it to have a new secret made",
                path.display()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("cannot read", &path, e)),
    }
    use rand::RngCore;
    let mut key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    let secret: String = key.iter().map(|b| format!("{b:02x}")).collect();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io_err("cannot create", dir, e))?;
    }
    let mut f = OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| io_err("cannot create", &path, e))?;
    writeln!(f, "{secret}").map_err(|e| io_err("cannot write", &path, e))?;
    f.sync_all().map_err(|e| io_err("cannot sync", &path, e))?;
    tracing::info!(path = %path.display(), "generated a JWT secret for this data directory");
    Ok(secret)
}
