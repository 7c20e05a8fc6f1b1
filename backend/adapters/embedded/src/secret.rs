//! The embedded profile's JWT secret.

use ringchat_core::config::{Config, Secret};
use ringchat_core::{Error, Result};

/// The embedded profile's configuration with its JWT secret filled in when none was
/// configured: the one kept in the SQLite database's directory (made on first start), or
/// for an in-memory database a random one for this run only.
pub fn with_embedded_secret(config: &Config) -> Result<Config> {
    if config.has_jwt_secret() {
        return Ok(config.clone());
    }
    let mut config = config.clone();
    let url = &config.store.url;
    let secret = if url.starts_with("sqlite:") && !url.contains(":memory:") {
        use std::str::FromStr;
        let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url)
            .map_err(|e| Error::invalid(format!("store url {url:?}: {e}")))?;
        crate::data_dir::jwt_secret(opts.get_filename())?
    } else {
        use rand::RngCore;
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        tracing::warn!("no auth.jwt_secret and no data directory: tokens last for this run only");
        key.iter().map(|b| format!("{b:02x}")).collect()
    };
    config.auth.jwt_secret = Secret::new(secret);
    Ok(config)
}
