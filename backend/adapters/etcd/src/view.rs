//! The local view of the registry: every instance and config value under the prefix, kept
//! in step with etcd by one watch, so `instances`, `pick` and `config` are local reads.
//!
//! The sync task reads the whole prefix (a snapshot at revision R), then watches from
//! R + 1; when the watch fails or is cancelled (its start revision compacted) it starts
//! over from a new snapshot, after a backoff. The view records the revision it has
//! applied, so that a caller can wait until its own write shows (read-your-writes).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ringchat_core::ports::Instance;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tonic::Status;

use crate::client::Etcd;
use crate::pb::mvccpb::{event::EventType, Event, KeyValue};

/// What an instance key holds (JSON).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Record {
    pub service: String,
    pub id: String,
    pub addr: String,
}

/// Where things live under the prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    /// `{prefix}/`: everything the view watches
    pub root: String,
    /// `{prefix}/services/`
    pub services: String,
    /// `{prefix}/config/`
    pub config: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        let p = prefix.trim_end_matches('/');
        Keys {
            root: format!("{p}/"),
            services: format!("{p}/services/"),
            config: format!("{p}/config/"),
        }
    }

    pub fn instance(&self, service: &str, id: &str) -> String {
        format!("{}{service}/{id}", self.services)
    }

    pub fn service(&self, service: &str) -> String {
        format!("{}{service}/", self.services)
    }

    pub fn config(&self, key: &str) -> String {
        format!("{}{key}", self.config)
    }
}

enum Entry {
    Instance { service: String, id: String },
    Config(String),
}

#[derive(Default)]
struct State {
    /// service -> id -> instance (ids sorted, as `instances` answers)
    services: HashMap<String, BTreeMap<String, Instance>>,
    config: HashMap<String, String>,
}

pub(crate) struct View {
    keys: Keys,
    state: RwLock<State>,
    /// The revision the view reflects: every change up to it is applied.
    applied: watch::Sender<i64>,
    config_tx: watch::Sender<HashMap<String, String>>,
    /// Round-robin position per service.
    cursors: std::sync::Mutex<HashMap<String, usize>>,
}

impl View {
    pub fn new(keys: Keys) -> View {
        View {
            keys,
            state: RwLock::new(State::default()),
            applied: watch::channel(0).0,
            config_tx: watch::channel(HashMap::new()).0,
            cursors: std::sync::Mutex::new(HashMap::new()),
        }
    }

    fn entry(&self, key: &[u8]) -> Option<Entry> {
        let key = std::str::from_utf8(key).ok()?;
        if let Some(rest) = key.strip_prefix(&self.keys.services) {
            let (service, id) = rest.split_once('/')?;
            return Some(Entry::Instance {
                service: service.to_string(),
                id: id.to_string(),
            });
        }
        key.strip_prefix(&self.keys.config)
            .map(|k| Entry::Config(k.to_string()))
    }

    /// Replaces the whole view with a snapshot read at `revision`.
    pub fn reset(&self, kvs: &[KeyValue], revision: i64) {
        let config = {
            let mut st = self.state.write().expect("view lock");
            *st = State::default();
            for kv in kvs {
                self.put(&mut st, kv);
            }
            st.config.clone()
        };
        self.publish_config(config);
        self.applied.send_replace(revision);
    }

    /// Applies one watch response's events; `revision` is how far the view then is.
    pub fn apply(&self, events: &[Event], revision: i64) {
        let mut config_changed = false;
        let config = {
            let mut st = self.state.write().expect("view lock");
            for ev in events {
                let Some(kv) = &ev.kv else { continue };
                if matches!(self.entry(&kv.key), Some(Entry::Config(_))) {
                    config_changed = true;
                }
                if ev.r#type == EventType::Delete as i32 {
                    self.delete(&mut st, &kv.key);
                } else {
                    self.put(&mut st, kv);
                }
            }
            config_changed.then(|| st.config.clone())
        };
        if let Some(config) = config {
            self.publish_config(config);
        }
        self.applied.send_if_modified(|r| {
            let newer = revision > *r;
            if newer {
                *r = revision;
            }
            newer
        });
    }

    fn put(&self, st: &mut State, kv: &KeyValue) {
        match self.entry(&kv.key) {
            Some(Entry::Instance { service, id }) => {
                match serde_json::from_slice::<Record>(&kv.value) {
                    Ok(r) => {
                        let instance = Instance {
                            service: r.service,
                            id: r.id,
                            addr: r.addr,
                        };
                        st.services.entry(service).or_default().insert(id, instance);
                    }
                    Err(e) => tracing::warn!(
                        key = %String::from_utf8_lossy(&kv.key), error = %e,
                        "unreadable instance record, ignored"
                    ),
                }
            }
            Some(Entry::Config(key)) => {
                st.config
                    .insert(key, String::from_utf8_lossy(&kv.value).into_owned());
            }
            None => {}
        }
    }

    fn delete(&self, st: &mut State, key: &[u8]) {
        match self.entry(key) {
            Some(Entry::Instance { service, id }) => {
                if let Some(m) = st.services.get_mut(&service) {
                    m.remove(&id);
                    if m.is_empty() {
                        st.services.remove(&service);
                    }
                }
            }
            Some(Entry::Config(key)) => {
                st.config.remove(&key);
            }
            None => {}
        }
    }

    fn publish_config(&self, config: HashMap<String, String>) {
        self.config_tx.send_if_modified(|c| {
            let changed = *c != config;
            if changed {
                *c = config;
            }
            changed
        });
    }

    pub fn instances(&self, service: &str) -> Vec<Instance> {
        let st = self.state.read().expect("view lock");
        st.services
            .get(service)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    pub fn config(&self, key: &str) -> Option<String> {
        self.state
            .read()
            .expect("view lock")
            .config
            .get(key)
            .cloned()
    }

    /// The next live instance of `service` in round-robin order.
    pub fn pick(&self, service: &str) -> Option<Instance> {
        let live = self.instances(service);
        if live.is_empty() {
            return None;
        }
        let mut cursors = self.cursors.lock().expect("cursor lock");
        let c = cursors.entry(service.to_string()).or_default();
        let i = *c % live.len();
        *c = c.wrapping_add(1);
        Some(live[i].clone())
    }

    pub fn watch_config(&self) -> watch::Receiver<HashMap<String, String>> {
        self.config_tx.subscribe()
    }

    /// Waits (at most `patience`) until the view reflects `revision`; false on timeout.
    pub async fn caught_up(&self, revision: i64, patience: Duration) -> bool {
        let mut rx = self.applied.subscribe();
        if *rx.borrow_and_update() >= revision {
            return true;
        }
        let reached = tokio::time::timeout(patience, rx.wait_for(|r| *r >= revision))
            .await
            .is_ok_and(|r| r.is_ok());
        reached
    }
}

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Keeps `view` in step with etcd until aborted. `snapshot_revision`: the revision of
/// the snapshot the view was just reset to (the first round then only watches).
pub(crate) async fn sync(etcd: Etcd, view: Arc<View>, mut snapshot_revision: Option<i64>) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let from = snapshot_revision.take();
        match sync_once(&etcd, &view, from, &mut backoff).await {
            // one warning per outage, not one per retry
            Err(e) if backoff == MIN_BACKOFF => tracing::warn!(
                code = ?e.code(), error = e.message(),
                "etcd watch failed, rebuilding the discovery view"
            ),
            Err(e) => tracing::debug!(error = e.message(), "etcd watch failed again"),
            Ok(()) => tracing::info!("etcd watch ended, rebuilding the discovery view"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One snapshot-then-watch round; returns when the watch ends.
async fn sync_once(
    etcd: &Etcd,
    view: &View,
    snapshot_revision: Option<i64>,
    backoff: &mut Duration,
) -> Result<(), Status> {
    let revision = match snapshot_revision {
        Some(r) => r,
        None => {
            let (kvs, r) = etcd.range_prefix(&view.keys.root).await?;
            view.reset(&kvs, r);
            r
        }
    };
    let mut stream = etcd.watch_prefix(&view.keys.root, revision + 1).await?;
    while let Some(resp) = stream.rx.message().await? {
        if resp.canceled {
            return Err(Status::aborted(format!(
                "watch cancelled: {:?} (compacted at {})",
                resp.cancel_reason, resp.compact_revision
            )));
        }
        // the watch works: a later failure starts over quickly
        *backoff = MIN_BACKOFF;
        if resp.created {
            // its header is the store's revision at creation, not how far this watch
            // has delivered: it must not advance the view
            continue;
        }
        // an event response brings everything up to its last event; an empty one is a
        // progress notification: nothing is pending up to its header's revision
        let revision = match resp.events.iter().filter_map(|e| e.kv.as_ref()).next_back() {
            Some(kv) => kv.mod_revision,
            None => resp.header.as_ref().map_or(0, |h| h.revision),
        };
        view.apply(&resp.events, revision);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str, rev: i64) -> KeyValue {
        KeyValue {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            mod_revision: rev,
            ..Default::default()
        }
    }

    fn record(service: &str, id: &str, addr: &str) -> String {
        serde_json::to_string(&Record {
            service: service.into(),
            id: id.into(),
            addr: addr.into(),
        })
        .unwrap()
    }

    #[test]
    fn snapshots_and_events_build_the_view() {
        let view = View::new(Keys::new("/p/"));
        let mut config = view.watch_config();
        view.reset(
            &[
                kv("/p/services/logic/b", &record("logic", "b", "http://b"), 5),
                kv("/p/services/logic/a", &record("logic", "a", "http://a"), 6),
                kv("/p/services/bad/x", "not json", 6),
                kv("/p/config/limits/rate", "10", 7),
                kv("/p/other", "ignored", 7),
            ],
            7,
        );
        let ids: Vec<String> = view.instances("logic").into_iter().map(|i| i.id).collect();
        assert_eq!(ids, ["a", "b"]);
        assert!(view.instances("bad").is_empty());
        assert_eq!(view.config("limits/rate").as_deref(), Some("10"));
        assert!(config.has_changed().unwrap());
        assert_eq!(config.borrow_and_update()["limits/rate"], "10");

        view.apply(
            &[Event {
                r#type: EventType::Delete as i32,
                kv: Some(kv("/p/services/logic/a", "", 8)),
                prev_kv: None,
            }],
            8,
        );
        assert_eq!(view.instances("logic").len(), 1);
        // an instance-only change leaves config watchers alone
        assert!(!config.has_changed().unwrap());
        assert_eq!(*view.applied.borrow(), 8);
    }

    #[test]
    fn picks_go_round_the_live_instances() {
        let view = View::new(Keys::new("/p"));
        assert_eq!(view.pick("logic"), None);
        view.reset(
            &[
                kv("/p/services/logic/a", &record("logic", "a", "http://a"), 2),
                kv("/p/services/logic/b", &record("logic", "b", "http://b"), 3),
            ],
            3,
        );
        let picks: Vec<String> = (0..4).map(|_| view.pick("logic").unwrap().id).collect();
        assert_eq!(picks, ["a", "b", "a", "b"]);
    }
}
