//! Static discovery of the embedded profile: instances come from config, plus whatever the
//! process itself registers (the embedded gateway registers here so im-task can find it).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;

use ringchat_core::error::Result;
use ringchat_core::ports::{Discovery, Instance};

#[derive(Default)]
pub struct StaticDiscovery {
    inner: Mutex<Inner>,
    /// Config values, published on every `set_config` (dynamic config in one process).
    updates: std::sync::OnceLock<tokio::sync::watch::Sender<HashMap<String, String>>>,
}

#[derive(Default)]
struct Inner {
    /// service -> id -> instance
    instances: HashMap<String, BTreeMap<String, Instance>>,
    config: HashMap<String, String>,
}

impl StaticDiscovery {
    /// Seeds the registry from `[discovery.services]`: each address becomes an instance
    /// whose id is the address.
    pub fn new(services: &HashMap<String, Vec<String>>) -> Self {
        let d = StaticDiscovery::default();
        {
            let mut inner = d.inner.lock().expect("discovery lock");
            for (service, addrs) in services {
                for addr in addrs {
                    inner.instances.entry(service.clone()).or_default().insert(
                        addr.clone(),
                        Instance {
                            service: service.clone(),
                            id: addr.clone(),
                            addr: addr.clone(),
                        },
                    );
                }
            }
        }
        d
    }
}

impl StaticDiscovery {
    fn updates(&self) -> &tokio::sync::watch::Sender<HashMap<String, String>> {
        self.updates.get_or_init(|| {
            let now = self.inner.lock().expect("discovery lock").config.clone();
            tokio::sync::watch::Sender::new(now)
        })
    }
}

#[async_trait]
impl Discovery for StaticDiscovery {
    async fn register(&self, instance: &Instance) -> Result<()> {
        let mut inner = self.inner.lock().expect("discovery lock");
        inner
            .instances
            .entry(instance.service.clone())
            .or_default()
            .insert(instance.id.clone(), instance.clone());
        Ok(())
    }

    async fn deregister(&self, instance: &Instance) -> Result<()> {
        let mut inner = self.inner.lock().expect("discovery lock");
        if let Some(m) = inner.instances.get_mut(&instance.service) {
            m.remove(&instance.id);
        }
        Ok(())
    }

    async fn instances(&self, service: &str) -> Result<Vec<Instance>> {
        let inner = self.inner.lock().expect("discovery lock");
        Ok(inner
            .instances
            .get(service)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default())
    }

    async fn config(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .inner
            .lock()
            .expect("discovery lock")
            .config
            .get(key)
            .cloned())
    }

    async fn set_config(&self, key: &str, value: &str) -> Result<()> {
        let all = {
            let mut inner = self.inner.lock().expect("discovery lock");
            inner.config.insert(key.to_string(), value.to_string());
            inner.config.clone()
        };
        self.updates().send_replace(all);
        Ok(())
    }

    fn config_updates(&self) -> Option<tokio::sync::watch::Receiver<HashMap<String, String>>> {
        Some(self.updates().subscribe())
    }
}
