//! Trace ids through im-logic and im-task (in one process, over gRPC and the in-process
//! bus): whatever is published on a send's behalf carries the send's `trace-id` header.

mod common;

use std::collections::HashMap;

use bytes::Bytes;
use common::*;
use pb::downstream_batch::Body;
use prost::Message as _;
use ringchat_core::model::WORLD_ID;
use ringchat_core::ports::{Record, Subscription};
use ringchat_core::testkit::bus::read_n;
use ringchat_core::trace::{self, TraceId};
use ringchat_proto as pb;

/// What the records of a topic say: (kind, trace id) per record.
fn kinds(records: &[Record]) -> Vec<(&'static str, Option<TraceId>)> {
    records
        .iter()
        .map(|r| {
            let kind = match pb::DownstreamBatch::decode(r.payload.clone())
                .ok()
                .and_then(|b| b.body)
            {
                Some(Body::Ack(_)) => "ack",
                Some(Body::NewMessage(_)) => "new-message",
                Some(Body::Error(_)) => "error",
                Some(Body::Presence(_)) => "presence",
                _ => "other",
            };
            (kind, TraceId::of_record(r))
        })
        .collect()
}

/// Reads `sub` until `n` records of the kinds in `want` arrived; returns them by kind.
async fn read_kinds(
    sub: &mut dyn Subscription,
    want: &[&str],
    n: usize,
) -> HashMap<&'static str, Vec<Option<TraceId>>> {
    let mut out: HashMap<&'static str, Vec<Option<TraceId>>> = HashMap::new();
    while out.values().map(Vec::len).sum::<usize>() < n {
        for (kind, id) in kinds(&read_n(sub, 1).await) {
            if want.contains(&kind) {
                out.entry(kind).or_default().push(id);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sends_trace_id_rides_on_its_ack_its_task_and_its_deliveries() {
    let b = start().await;
    let (x, y) = (b.user("tx").await, b.user("ty").await);
    let gw = b.gateway().await;
    let xc = gw.connect(&x).await;
    gw.connect(&y).await;
    // a second group on the gateway's topic and on the task topic sees every record
    let bus = b.ports.bus.clone();
    let mut down = bus
        .subscribe(&pb::topics::downstream(&gw.id), "trace-check")
        .await
        .unwrap();
    let mut tasks = bus
        .subscribe(pb::topics::TASK, "trace-check")
        .await
        .unwrap();

    // a world send with the id in its header and field, as the gateway publishes it
    let id = TraceId::random();
    let up = pb::UpstreamMessage {
        trace_id: id.to_string(),
        user_id: x.id(),
        gateway_id: gw.id.clone(),
        conn_id: xc,
        conversation_id: WORLD_ID.into(),
        r#type: pb::MessageType::Text as i32,
        content: "traced".into(),
        temp_message_id: "t-world".into(),
        timestamp_ms: 0,
        username: x.user.username.clone(),
        ..Default::default()
    };
    bus.publish_with_headers(
        pb::topics::UPSTREAM,
        WORLD_ID.as_bytes(),
        Bytes::from(up.encode_to_vec()),
        &[(trace::HEADER, id.hex().as_bytes())],
    )
    .await
    .unwrap();
    let task = read_n(tasks.as_mut(), 1).await;
    assert_eq!(
        TraceId::of_record(&task[0]),
        Some(id),
        "the task for im-task"
    );
    let got = read_kinds(down.as_mut(), &["ack", "new-message"], 2).await;
    assert_eq!(got["ack"], vec![Some(id)]);
    assert_eq!(got["new-message"], vec![Some(id)], "im-task's delivery");

    // a send whose record has no header: the field's id is used
    let single = b
        .api
        .create_single_conversation(pb::TargetUserRequest {
            caller_id: x.id(),
            target_user_id: y.id(),
        })
        .await
        .unwrap()
        .conversation_id;
    let field_only = TraceId::random();
    let up = pb::UpstreamMessage {
        trace_id: field_only.to_string(),
        conversation_id: single.clone(),
        temp_message_id: "t-field".into(),
        ..up
    };
    bus.publish(
        pb::topics::UPSTREAM,
        single.as_bytes(),
        Bytes::from(up.encode_to_vec()),
    )
    .await
    .unwrap();
    let got = read_kinds(down.as_mut(), &["ack", "new-message"], 2).await;
    assert_eq!(got["ack"], vec![Some(field_only)]);
    assert_eq!(got["new-message"], vec![Some(field_only)]);

    // a send over gRPC (the HTTP API's path): the id goes in the call's metadata
    let over_grpc = TraceId::random();
    trace::in_message(
        Some(over_grpc),
        b.api.send_message(pb::SendMessageRequest {
            caller_id: x.id(),
            conversation_id: single.clone(),
            content: "over grpc".into(),
            r#type: pb::MessageType::Text as i32,
            temp_message_id: "t-grpc".into(),
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    let got = read_kinds(down.as_mut(), &["new-message"], 1).await;
    assert_eq!(got["new-message"], vec![Some(over_grpc)]);

    // and one made outside any trace carries none
    b.api
        .send_message(pb::SendMessageRequest {
            caller_id: x.id(),
            conversation_id: single,
            content: "untraced".into(),
            r#type: pb::MessageType::Text as i32,
            temp_message_id: "t-plain".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let got = read_kinds(down.as_mut(), &["new-message"], 1).await;
    assert_eq!(got["new-message"], vec![None]);
}
