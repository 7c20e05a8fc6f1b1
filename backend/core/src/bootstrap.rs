//! Start-up plumbing shared by the thin `main`s: command line, config, logging, runtime,
//! shutdown signal.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::config::{Config, ConfigError, LogConfig, LogFormat};

/// What a binary says about itself in `--help`.
pub struct About {
    pub name: &'static str,
    pub summary: &'static str,
    /// Extra lines after the options (ports, profile).
    pub details: &'static str,
}

/// Parses `--config PATH`, `--help` and `--version`; exits the process for the latter two
/// and on bad usage. The config path may also come from `RINGCHAT_CONFIG`.
pub fn config_path_from_args(about: &About) -> Option<PathBuf> {
    let mut args = std::env::args().skip(1);
    let mut path = std::env::var_os("RINGCHAT_CONFIG").map(PathBuf::from);
    while let Some(a) = args.next() {
        match a.as_str() {
            "-h" | "--help" => {
                println!(
                    "{name} {version}\n{summary}\n\n\
                     USAGE:\n    {name} [--config FILE]\n\n\
                     OPTIONS:\n    \
                     -c, --config FILE   TOML config file (also RINGCHAT_CONFIG); every key can be\n                        \
                     overridden by RINGCHAT_<SECTION>__<KEY>, e.g. RINGCHAT_NODE__ID=gw-2\n    \
                     -h, --help          this text\n    \
                     -V, --version       the version\n\n{details}",
                    name = about.name,
                    version = env!("CARGO_PKG_VERSION"),
                    summary = about.summary,
                    details = about.details,
                );
                std::process::exit(0);
            }
            "-V" | "--version" => {
                println!("{} {}", about.name, env!("CARGO_PKG_VERSION"));
                std::process::exit(0);
            }
            "-c" | "--config" => match args.next() {
                Some(p) => path = Some(PathBuf::from(p)),
                None => usage_error(about, "--config needs a file"),
            },
            other => usage_error(about, &format!("unknown argument {other:?}")),
        }
    }
    path
}

fn usage_error(about: &About, msg: &str) -> ! {
    eprintln!("{}: {msg} (see --help)", about.name);
    std::process::exit(2);
}

/// Loads config from the optional file and the process environment.
pub fn load_config(path: Option<&std::path::Path>) -> Result<Config, ConfigError> {
    let env: HashMap<String, String> = std::env::vars().collect();
    Config::load(path, &env)
}

/// Logs to stderr, as text or JSON (`[log] format`); `RUST_LOG` filters (default `info`).
/// Called once the config is loaded (a config error is printed without it).
pub fn init_logging(log: &LogConfig) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr);
    let _ = match log.format {
        LogFormat::Text => fmt.with_ansi(std::io::stderr().is_terminal()).try_init(),
        LogFormat::Json => fmt.json().flatten_event(true).try_init(),
    };
}

/// The backend's tokio runtime, sized by `[runtime] worker_threads` (0 = one per CPU).
pub fn build_runtime(
    config: &Config,
    thread_name: &str,
) -> std::io::Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if config.runtime.worker_threads > 0 {
        b.worker_threads(config.runtime.worker_threads);
    }
    b.thread_name(thread_name).enable_all().build()
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutdown signal received");
}

/// The embedded profile's configuration with its JWT secret filled in when none was
/// configured: the one kept in the SQLite database's directory (made on first start), or
/// for an in-memory database a random one for this run only.
pub fn with_embedded_secret(config: &Config) -> crate::Result<Config> {
    if config.has_jwt_secret() {
        return Ok(config.clone());
    }
    let mut config = config.clone();
    let url = &config.store.url;
    let secret = if url.starts_with("sqlite:") && !url.contains(":memory:") {
        use std::str::FromStr;
        let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url)
            .map_err(|e| crate::Error::invalid(format!("store url {url:?}: {e}")))?;
        crate::adapters::data_dir::jwt_secret(opts.get_filename())?
    } else {
        use rand::RngCore;
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        tracing::warn!("no auth.jwt_secret and no data directory: tokens last for this run only");
        key.iter().map(|b| format!("{b:02x}")).collect()
    };
    config.auth.jwt_secret = crate::config::Secret::new(secret);
    Ok(config)
}
