//! The bus as the wiring hands it out with a topic prefix (the `Prefixed` wrapper around the
//! in-process bus) passes the bus conformance suite: prefixing loses nothing, headers
//! included.

use std::sync::Arc;

use ringchat_core::ports::Bus;
use ringchat_core::Config;

ringchat_core::bus_conformance!(async {
    let mut config = Config::default();
    config.bus.topic_prefix = "prefixed.".into();
    ringchat_wiring::bus(&config).await.expect("a memory bus") as Arc<dyn Bus>
});
