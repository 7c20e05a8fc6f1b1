//! Discovery conformance: registration and dynamic config.

use std::sync::Arc;

use super::unique;
use crate::ports::{Discovery, Instance};

pub async fn instances_register_and_leave(d: Arc<dyn Discovery>) {
    let service = unique("svc");
    let a = Instance {
        service: service.clone(),
        id: "a".into(),
        addr: "127.0.0.1:1".into(),
    };
    let b = Instance {
        service: service.clone(),
        id: "b".into(),
        addr: "127.0.0.1:2".into(),
    };
    assert!(d.instances(&service).await.unwrap().is_empty());
    d.register(&b).await.unwrap();
    d.register(&a).await.unwrap();
    assert_eq!(
        d.instances(&service).await.unwrap(),
        vec![a.clone(), b.clone()]
    );
    // registering again replaces, it does not duplicate
    let b2 = Instance {
        addr: "127.0.0.1:3".into(),
        ..b.clone()
    };
    d.register(&b2).await.unwrap();
    assert_eq!(
        d.instances(&service).await.unwrap(),
        vec![a.clone(), b2.clone()]
    );
    d.deregister(&a).await.unwrap();
    assert_eq!(d.instances(&service).await.unwrap(), vec![b2.clone()]);
    // leaving twice is not an error
    d.deregister(&a).await.unwrap();

    // services are apart, even when their names share a beginning
    let other = Instance {
        service: format!("{service}-other"),
        id: "a".into(),
        addr: "127.0.0.1:4".into(),
    };
    d.register(&other).await.unwrap();
    assert_eq!(
        d.instances(&other.service).await.unwrap(),
        vec![other.clone()]
    );
    assert_eq!(d.instances(&service).await.unwrap(), vec![b2.clone()]);
    d.deregister(&other).await.unwrap();
    d.deregister(&b2).await.unwrap();
    assert!(d.instances(&service).await.unwrap().is_empty());
    assert!(d.instances(&other.service).await.unwrap().is_empty());
}

pub async fn config_values_round_trip(d: Arc<dyn Discovery>) {
    let key = unique("conf/key");
    assert_eq!(d.config(&key).await.unwrap(), None);
    d.set_config(&key, "1").await.unwrap();
    assert_eq!(d.config(&key).await.unwrap().as_deref(), Some("1"));
    d.set_config(&key, "2").await.unwrap();
    assert_eq!(d.config(&key).await.unwrap().as_deref(), Some("2"));
    // keys are apart, even when one begins with the other
    let longer = format!("{key}/sub");
    assert_eq!(d.config(&longer).await.unwrap(), None);
    d.set_config(&longer, "3").await.unwrap();
    assert_eq!(d.config(&key).await.unwrap().as_deref(), Some("2"));
    assert_eq!(d.config(&longer).await.unwrap().as_deref(), Some("3"));
}
