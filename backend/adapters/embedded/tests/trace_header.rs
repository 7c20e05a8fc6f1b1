//! `ringchat_core::trace::publish` adds the `trace-id` header only inside a message's
//! trace, through a real bus adapter.

use bytes::Bytes;
use ringchat_core::ports::Bus;
use ringchat_core::trace::{in_message, publish, TraceId};
use ringchat_embedded::MemoryBus;

#[tokio::test]
async fn publish_adds_the_header_only_inside_a_trace() {
    let bus = MemoryBus::new(1, 16);
    let mut sub = bus.subscribe("t", "g").await.unwrap();
    let id = TraceId::random();
    in_message(Some(id), publish(&bus, "t", b"k", Bytes::from_static(b"a")))
        .await
        .unwrap();
    publish(&bus, "t", b"k", Bytes::from_static(b"b"))
        .await
        .unwrap();
    let got = ringchat_core::testkit::bus::read_n(sub.as_mut(), 2).await;
    assert_eq!(TraceId::of_record(&got[0]), Some(id));
    assert!(got[1].headers.is_empty());
}
