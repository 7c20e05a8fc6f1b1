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

/// The filter of the running process's log, reloadable (`log.level`, dynamic).
static LOG_FILTER: std::sync::OnceLock<
    tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>,
> = std::sync::OnceLock::new();

/// Logs to stderr, as text or JSON (`[log] format`), filtered by `RUST_LOG`, else by
/// `[log] level` (default `info`). Called once the config is loaded (a config error is
/// printed without it). The filter can change while the process runs: [`LogLevel`].
pub fn init_logging(log: &LogConfig) {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{fmt, reload, EnvFilter};
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let layer = fmt::layer().with_target(false).with_writer(std::io::stderr);
    let installed = match log.format {
        LogFormat::Text => registry
            .with(layer.with_ansi(std::io::stderr().is_terminal()))
            .try_init(),
        LogFormat::Json => registry.with(layer.json().flatten_event(true)).try_init(),
    };
    if installed.is_ok() {
        let _ = LOG_FILTER.set(handle);
    }
}

/// A log filter from text, or `None`; tracing-subscriber 0.3.23 panics on some inputs
/// (found by the config fuzz target), which count as invalid here.
pub fn parse_log_filter(text: &str) -> Option<tracing_subscriber::EnvFilter> {
    std::panic::catch_unwind(|| tracing_subscriber::EnvFilter::try_new(text).ok())
        .ok()
        .flatten()
}

/// The dynamic setting `log.level`: a new filter for this process's log (`warn`,
/// `info,im_logic=debug`, ... as `RUST_LOG` takes), applied at once.
pub struct LogLevel;

impl crate::dynamic::Reconfigure for LogLevel {
    fn reconfigure(&self, key: &str, value: &str) -> crate::Result<bool> {
        if key != "log.level" {
            return Ok(false);
        }
        let filter = parse_log_filter(value.trim()).ok_or_else(|| {
            crate::Error::invalid(format!("log.level = {value:?}: not a log filter"))
        })?;
        let handle = LOG_FILTER
            .get()
            .ok_or_else(|| crate::Error::invalid("this process's log is not reloadable"))?;
        handle
            .reload(filter)
            .map_err(|e| crate::Error::internal(format!("log.level: {e}")))?;
        Ok(true)
    }
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
