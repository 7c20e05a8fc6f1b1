//! The store conformance suite run through im-repo's gRPC server and client: a remote
//! store must behave exactly as the local one, errors included.

use std::sync::Arc;

use im_repo::GrpcStore;
use ringchat_core::ports::Store;
use ringchat_embedded::SqliteStore;

async fn remote_store() -> Arc<dyn Store> {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(ringchat_core::testkit::unique("repo"));
    let url = format!("sqlite://{}/ringchat.db", dir.display());
    let store = Arc::new(SqliteStore::connect(&url, 4, 1).await.unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(im_repo::serve(store, listener, std::future::pending()));
    Arc::new(GrpcStore::connect_lazy(&format!("http://{addr}")).unwrap())
}

ringchat_core::store_conformance!(remote_store());
