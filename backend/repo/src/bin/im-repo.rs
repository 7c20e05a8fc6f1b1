//! im-repo: serves the message store over gRPC.

use anyhow::Context;
use ringchat_core::bootstrap::{self, About};
use ringchat_core::wiring::store_from_config;

const ABOUT: About = About {
    name: "im-repo",
    summary: "ringchat's persistence service: users, conversations, groups, messages (gRPC)",
    details: "Listens on [repo] listen (default 127.0.0.1:9002); stores in [store] url.",
};

fn main() -> anyhow::Result<()> {
    let path = bootstrap::config_path_from_args(&ABOUT);
    bootstrap::init_logging();
    let config = bootstrap::load_config(path.as_deref())?;
    let rt = bootstrap::build_runtime(&config, "im-repo")?;
    rt.block_on(async move {
        let store = store_from_config(&config)
            .await
            .context("opening the store")?;
        let listener = tokio::net::TcpListener::bind(&config.repo.listen)
            .await
            .with_context(|| format!("binding {}", config.repo.listen))?;
        tracing::info!(addr = %listener.local_addr()?, store = %config.store.url, "im-repo serving");
        im_repo::serve(store, listener, bootstrap::shutdown_signal()).await?;
        tracing::info!("im-repo stopped");
        Ok(())
    })
}
