//! Bad input to every im-logic RPC gives a typed error over gRPC, never a panic, and the
//! service keeps serving afterwards.

mod common;

use common::*;
use ringchat_core::ErrorCode;
use ringchat_proto as pb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_rejects_bad_input_with_a_typed_error() {
    let b = start().await;
    let u = b.user("bad").await;
    let other = b.user("oth").await;
    let api = &b.api;
    let text = pb::MessageType::Text as i32;
    use ErrorCode::*;

    let cases: Vec<(&str, ErrorCode, ringchat_core::Result<()>)> = vec![
        (
            "register short name",
            InvalidArgument,
            api.register(pb::RegisterRequest {
                username: "ab".into(),
                password: "secret1".into(),
            })
            .await
            .map(|_| ()),
        ),
        (
            "register long name",
            InvalidArgument,
            api.register(pb::RegisterRequest {
                username: "a".repeat(21),
                password: "secret1".into(),
            })
            .await
            .map(|_| ()),
        ),
        (
            "register spaces",
            InvalidArgument,
            api.register(pb::RegisterRequest {
                username: "a b c".into(),
                password: "secret1".into(),
            })
            .await
            .map(|_| ()),
        ),
        (
            "register short password",
            InvalidArgument,
            api.register(pb::RegisterRequest {
                username: "validname".into(),
                password: "12345".into(),
            })
            .await
            .map(|_| ()),
        ),
        (
            "register long password",
            InvalidArgument,
            api.register(pb::RegisterRequest {
                username: "validname".into(),
                password: "x".repeat(51),
            })
            .await
            .map(|_| ()),
        ),
        (
            "login empty",
            InvalidArgument,
            api.login(pb::LoginRequest::default()).await.map(|_| ()),
        ),
        (
            "guest long name",
            InvalidArgument,
            api.guest(pb::GuestRequest {
                guest_name: "x".repeat(40),
            })
            .await
            .map(|_| ()),
        ),
        (
            "authenticate empty",
            AuthFailed,
            api.authenticate(pb::TokenRequest::default())
                .await
                .map(|_| ()),
        ),
        (
            "get user nothing",
            InvalidArgument,
            api.get_user(pb::GetUserRequest::default())
                .await
                .map(|_| ()),
        ),
        (
            "get user missing id",
            UserNotFound,
            api.get_user(pb::GetUserRequest {
                caller_id: u.id(),
                user_id: 987_654_321,
                username: String::new(),
            })
            .await
            .map(|_| ()),
        ),
        (
            "get user missing name",
            UserNotFound,
            api.get_user(pb::GetUserRequest {
                caller_id: u.id(),
                user_id: 0,
                username: "no-such-user".into(),
            })
            .await
            .map(|_| ()),
        ),
        (
            "single with self",
            InvalidArgument,
            api.create_single_conversation(pb::TargetUserRequest {
                caller_id: u.id(),
                target_user_id: u.id(),
            })
            .await
            .map(|_| ()),
        ),
        (
            "single with nobody",
            UserNotFound,
            api.create_single_conversation(pb::TargetUserRequest {
                caller_id: u.id(),
                target_user_id: 987_654_321,
            })
            .await
            .map(|_| ()),
        ),
        (
            "single by unknown caller",
            AuthFailed,
            api.create_single_conversation(pb::TargetUserRequest {
                caller_id: 987_654_321,
                target_user_id: u.id(),
            })
            .await
            .map(|_| ()),
        ),
        (
            "messages unknown conversation",
            ConversationNotFound,
            api.get_messages(pb::GetMessagesRequest {
                caller_id: u.id(),
                conversation_id: "s_0_0".into(),
                ..Default::default()
            })
            .await
            .map(|_| ()),
        ),
        (
            "messages negative page",
            InvalidArgument,
            api.get_messages(pb::GetMessagesRequest {
                caller_id: u.id(),
                conversation_id: "world".into(),
                page: -1,
                ..Default::default()
            })
            .await
            .map(|_| ()),
        ),
        (
            "messages both cursors",
            InvalidArgument,
            api.get_messages(pb::GetMessagesRequest {
                caller_id: u.id(),
                conversation_id: "world".into(),
                after_seq: Some(1),
                before_seq: Some(9),
                ..Default::default()
            })
            .await
            .map(|_| ()),
        ),
        (
            "mark read unknown",
            ConversationNotFound,
            api.mark_read(pb::CallerMarkReadRequest {
                caller_id: u.id(),
                conversation_id: "nope".into(),
                seq_id: 0,
            })
            .await
            .map(|_| ()),
        ),
        (
            "mark read negative",
            InvalidArgument,
            api.mark_read(pb::CallerMarkReadRequest {
                caller_id: u.id(),
                conversation_id: "world".into(),
                seq_id: -4,
            })
            .await
            .map(|_| ()),
        ),
        (
            "send empty",
            InvalidMessage,
            api.send_message(pb::SendMessageRequest {
                caller_id: u.id(),
                conversation_id: "world".into(),
                content: "  ".into(),
                r#type: text,
                temp_message_id: String::new(),
                ..Default::default()
            })
            .await
            .map(|_| ()),
        ),
        (
            "send bad type",
            InvalidMessage,
            api.send_message(pb::SendMessageRequest {
                caller_id: u.id(),
                conversation_id: "world".into(),
                content: "x".into(),
                r#type: 42,
                temp_message_id: String::new(),
                ..Default::default()
            })
            .await
            .map(|_| ()),
        ),
        (
            "send unspecified type",
            InvalidMessage,
            api.send_message(pb::SendMessageRequest {
                caller_id: u.id(),
                conversation_id: "world".into(),
                content: "x".into(),
                r#type: 0,
                temp_message_id: String::new(),
                ..Default::default()
            })
            .await
            .map(|_| ()),
        ),
        (
            "send too large",
            MessageTooLarge,
            api.send_message(pb::SendMessageRequest {
                caller_id: u.id(),
                conversation_id: "world".into(),
                content: "x".repeat(64 * 1024 + 1),
                r#type: text,
                temp_message_id: String::new(),
                ..Default::default()
            })
            .await
            .map(|_| ()),
        ),
        (
            "send long temp id",
            InvalidMessage,
            api.send_message(pb::SendMessageRequest {
                caller_id: u.id(),
                conversation_id: "world".into(),
                content: "x".into(),
                r#type: text,
                temp_message_id: "t".repeat(200),
                ..Default::default()
            })
            .await
            .map(|_| ()),
        ),
        (
            "send no conversation",
            InvalidMessage,
            api.send_message(pb::SendMessageRequest {
                caller_id: u.id(),
                conversation_id: String::new(),
                content: "x".into(),
                r#type: text,
                temp_message_id: String::new(),
                ..Default::default()
            })
            .await
            .map(|_| ()),
        ),
        (
            "send unknown conversation",
            ConversationNotFound,
            api.send_message(pb::SendMessageRequest {
                caller_id: u.id(),
                conversation_id: "g_424242".into(),
                content: "x".into(),
                r#type: text,
                temp_message_id: String::new(),
                ..Default::default()
            })
            .await
            .map(|_| ()),
        ),
        (
            "add friend self",
            InvalidArgument,
            api.add_friend(pb::TargetUserRequest {
                caller_id: u.id(),
                target_user_id: u.id(),
            })
            .await
            .map(|_| ()),
        ),
        (
            "add friend nobody",
            UserNotFound,
            api.add_friend(pb::TargetUserRequest {
                caller_id: u.id(),
                target_user_id: 987_654_321,
            })
            .await
            .map(|_| ()),
        ),
        (
            "group empty name",
            InvalidArgument,
            api.create_group(pb::CallerCreateGroupRequest {
                caller_id: u.id(),
                group_name: "   ".into(),
                ..Default::default()
            })
            .await
            .map(|_| ()),
        ),
        (
            "group long name",
            InvalidArgument,
            api.create_group(pb::CallerCreateGroupRequest {
                caller_id: u.id(),
                group_name: "g".repeat(51),
                ..Default::default()
            })
            .await
            .map(|_| ()),
        ),
        (
            "group unknown member",
            UserNotFound,
            api.create_group(pb::CallerCreateGroupRequest {
                caller_id: u.id(),
                group_name: "g".into(),
                member_ids: vec![987_654_321],
                avatar: String::new(),
            })
            .await
            .map(|_| ()),
        ),
        (
            "get unknown group",
            GroupNotFound,
            api.get_group(pb::CallerGroupRequest {
                caller_id: u.id(),
                group_id: 987_654_321,
            })
            .await
            .map(|_| ()),
        ),
        (
            "add to unknown group",
            GroupNotFound,
            api.add_group_members(pb::CallerGroupMembersRequest {
                caller_id: u.id(),
                group_id: 987_654_321,
                user_ids: vec![other.id()],
            })
            .await
            .map(|_| ()),
        ),
        (
            "remove from unknown group",
            GroupNotFound,
            api.remove_group_member(pb::CallerGroupMemberRequest {
                caller_id: u.id(),
                group_id: 987_654_321,
                user_id: other.id(),
            })
            .await
            .map(|_| ()),
        ),
    ];
    for (what, want, got) in cases {
        match got {
            Ok(()) => panic!("{what}: accepted"),
            Err(e) => assert_eq!(e.code, want, "{what}: {e}"),
        }
    }

    // a group exists: non-members and plain members are refused, empty adds are invalid
    let g = api
        .create_group(pb::CallerCreateGroupRequest {
            caller_id: u.id(),
            group_name: "g".into(),
            member_ids: vec![other.id()],
            avatar: String::new(),
        })
        .await
        .unwrap()
        .group
        .unwrap();
    let e = api
        .add_group_members(pb::CallerGroupMembersRequest {
            caller_id: u.id(),
            group_id: g.group_id,
            user_ids: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code, InvalidArgument);
    let e = api
        .add_group_members(pb::CallerGroupMembersRequest {
            caller_id: u.id(),
            group_id: g.group_id,
            user_ids: vec![987_654_321],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code, UserNotFound);

    // and the service still works
    api.send_message(pb::SendMessageRequest {
        caller_id: u.id(),
        conversation_id: g.conversation_id,
        content: "still alive".into(),
        r#type: text,
        temp_message_id: String::new(),
        ..Default::default()
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sends_on_the_bus_get_an_error_event_and_do_not_block_others() {
    let b = start().await;
    let (x, y) = (b.user("ex").await, b.user("ey").await);
    let stranger = b.user("es").await;
    let conv = b
        .api
        .create_single_conversation(pb::TargetUserRequest {
            caller_id: x.id(),
            target_user_id: y.id(),
        })
        .await
        .unwrap()
        .conversation_id;
    let gw = b.gateway().await;
    let xc = gw.connect(&x).await;
    let sc = gw.connect(&stranger).await;
    gw.send(&stranger, sc, &conv, "let me in", "e-1").await;
    gw.send(&x, xc, "g_777777", "nowhere", "e-2").await;
    gw.send(&x, xc, &conv, "", "e-3").await;
    gw.send_typed(&x, xc, &conv, "typed", "e-4", 99).await;
    gw.send(&x, xc, &conv, &"x".repeat(64 * 1024 + 1), "e-5")
        .await;
    gw.send(&x, xc, &conv, "fine", "e-6").await;
    for (temp, code) in [
        ("e-1", "FORBIDDEN"),
        ("e-2", "CONVERSATION_NOT_FOUND"),
        ("e-3", "INVALID_MESSAGE"),
        ("e-4", "INVALID_MESSAGE"),
        ("e-5", "MESSAGE_TOO_LARGE"),
    ] {
        let e = gw.ack(temp).await.expect_err("an error event");
        assert_eq!(e.code, code, "{temp}");
        assert!(!e.message.is_empty());
    }
    let ok = gw.ack("e-6").await.expect("the good send is acked");
    assert_eq!(ok.seq_id, 1);
}
