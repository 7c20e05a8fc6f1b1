//! The port conformance suites, run against the embedded adapters.

use std::sync::Arc;

use ringchat_core::ports::{Bus, Cache, Discovery, Store};
use ringchat_embedded::{MemoryBus, MemoryCache, SqliteStore, StaticDiscovery};

mod bus {
    use super::*;
    ringchat_core::bus_conformance!(async { Arc::new(MemoryBus::new(4, 1024)) as Arc<dyn Bus> });
}

mod store_file {
    use super::*;
    // each case gets its own database file under cargo's per-target scratch directory
    ringchat_core::store_conformance!(async {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(ringchat_core::testkit::unique("store"));
        let url = format!("sqlite://{}/ringchat.db", dir.display());
        Arc::new(SqliteStore::connect(&url, 4, 1).await.unwrap()) as Arc<dyn Store>
    });
}

mod store_memory {
    use super::*;
    ringchat_core::store_conformance!(async {
        Arc::new(SqliteStore::connect("sqlite::memory:", 1, 1).await.unwrap()) as Arc<dyn Store>
    });
}

mod cache {
    use super::*;
    ringchat_core::cache_conformance!(async { Arc::new(MemoryCache::new()) as Arc<dyn Cache> });
}

mod discovery {
    use super::*;
    ringchat_core::discovery_conformance!(async {
        Arc::new(StaticDiscovery::default()) as Arc<dyn Discovery>
    });
}
