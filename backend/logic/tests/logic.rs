//! im-logic behaviour through its gRPC API, with im-repo over gRPC and im-task running.

mod common;

use std::collections::HashSet;

use common::*;
use pb::downstream_batch::Body;
use ringchat_core::model::WORLD_ID;
use ringchat_core::ErrorCode;
use ringchat_proto as pb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_login_guest_logout() {
    let b = start().await;
    let u = b
        .api
        .register(pb::RegisterRequest {
            username: "alice_reg".into(),
            password: "secret1".into(),
        })
        .await
        .unwrap();
    assert!(!u.is_guest);
    let taken = b
        .api
        .register(pb::RegisterRequest {
            username: "alice_reg".into(),
            password: "secret1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(taken.code, ErrorCode::UsernameTaken);

    let auth = b
        .api
        .login(pb::LoginRequest {
            username: "alice_reg".into(),
            password: "secret1".into(),
            client_addr: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(auth.user.as_ref().unwrap().user_id, u.user_id);
    let me = b
        .api
        .authenticate(pb::TokenRequest {
            token: auth.token.clone(),
        })
        .await
        .unwrap();
    assert_eq!(me.user.as_ref(), Some(&u));
    assert!(!me.token_id.is_empty());
    assert_eq!(me.expires_at, auth.expires_at);
    for (name, pw) in [("alice_reg", "wrong-pw"), ("nobody_here", "secret1")] {
        let e = b
            .api
            .login(pb::LoginRequest {
                username: name.into(),
                password: pw.into(),
                client_addr: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::AuthFailed, "{name}");
        assert_eq!(e.message, "invalid username or password");
    }

    let guest = b
        .api
        .guest(pb::GuestRequest {
            guest_name: "visitor".into(),
        })
        .await
        .unwrap();
    let gu = guest.user.unwrap();
    assert!(gu.is_guest);
    assert!(gu.username.starts_with("visitor_"));
    let anon = b.api.guest(pb::GuestRequest::default()).await.unwrap();
    assert!(anon.user.unwrap().username.starts_with("guest_"));
    // a guest account has no password to log in with
    let e = b
        .api
        .login(pb::LoginRequest {
            username: gu.username.clone(),
            password: "anything".into(),
            client_addr: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::AuthFailed);
    assert!(
        b.api
            .authenticate(pb::TokenRequest {
                token: guest.token.clone()
            })
            .await
            .unwrap()
            .user
            .unwrap()
            .is_guest
    );

    // logout revokes the token, and only that token
    let second = b
        .api
        .login(pb::LoginRequest {
            username: "alice_reg".into(),
            password: "secret1".into(),
            client_addr: String::new(),
        })
        .await
        .unwrap();
    b.api
        .logout(pb::TokenRequest {
            token: auth.token.clone(),
        })
        .await
        .unwrap();
    let auth_token_again = auth.token.clone();
    let e = b
        .api
        .authenticate(pb::TokenRequest { token: auth.token })
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::AuthFailed);
    assert_eq!(e.message, "token has been revoked");
    b.api
        .authenticate(pb::TokenRequest {
            token: second.token,
        })
        .await
        .unwrap();
    // logout is idempotent: nothing to revoke is still a success (clients call it from
    // their 401 handler)
    for token in [auth_token_again, "garbage".to_string(), String::new()] {
        b.api.logout(pb::TokenRequest { token }).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_forged_tokens_are_rejected() {
    use im_logic::auth::{Claims, TokenKeys};
    let b = start().await;
    let u = b.user("tok").await;
    let claims = |exp: i64| Claims {
        sub: u.id().to_string(),
        name: u.user.username.clone(),
        guest: false,
        jti: "jti-1".into(),
        iat: 1,
        exp,
    };
    let keys = TokenKeys::new(b.config.auth.jwt_secret.expose().as_bytes());
    let expired = keys.sign(&claims(1_000));
    let forged = TokenKeys::new(b"not-the-server-secret-at-all!!!!").sign(&claims(i64::MAX / 2));
    let valid = keys.sign(&claims(i64::MAX / 2));
    let cases = [
        (expired, "token expired"),
        (forged, "token signature is invalid"),
        ("garbage".to_string(), "malformed token"),
        (String::new(), "malformed token"),
    ];
    for (token, why) in cases {
        let e = b
            .api
            .authenticate(pb::TokenRequest { token })
            .await
            .unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (ErrorCode::AuthFailed, why));
    }
    assert_eq!(
        b.api
            .authenticate(pb::TokenRequest { token: valid })
            .await
            .unwrap()
            .user,
        Some(u.user.clone())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_conversation_is_idempotent_and_guests_cannot_open_one() {
    let b = start().await;
    let (x, y) = (b.user("sx").await, b.user("sy").await);
    let c1 = b
        .api
        .create_single_conversation(pb::TargetUserRequest {
            caller_id: x.id(),
            target_user_id: y.id(),
        })
        .await
        .unwrap();
    let c2 = b
        .api
        .create_single_conversation(pb::TargetUserRequest {
            caller_id: y.id(),
            target_user_id: x.id(),
        })
        .await
        .unwrap();
    assert_eq!(c1.conversation_id, c2.conversation_id);
    match c1.target {
        Some(pb::conversation_view::Target::Peer(p)) => assert_eq!(p.user_id, y.id()),
        other => panic!("{other:?}"),
    }
    let guest = b
        .api
        .guest(pb::GuestRequest::default())
        .await
        .unwrap()
        .user
        .unwrap();
    for e in [
        b.api
            .create_single_conversation(pb::TargetUserRequest {
                caller_id: guest.user_id,
                target_user_id: x.id(),
            })
            .await
            .unwrap_err(),
        b.api
            .add_friend(pb::TargetUserRequest {
                caller_id: guest.user_id,
                target_user_id: x.id(),
            })
            .await
            .unwrap_err(),
        b.api
            .create_group(pb::CallerCreateGroupRequest {
                caller_id: guest.user_id,
                group_name: "nope".into(),
                ..Default::default()
            })
            .await
            .unwrap_err(),
    ] {
        assert_eq!(e.code, ErrorCode::Forbidden);
    }
    // but a guest may chat in a single conversation someone else opened with them
    let opened = b
        .api
        .create_single_conversation(pb::TargetUserRequest {
            caller_id: x.id(),
            target_user_id: guest.user_id,
        })
        .await
        .unwrap();
    let sent = b
        .api
        .send_message(pb::SendMessageRequest {
            caller_id: guest.user_id,
            conversation_id: opened.conversation_id.clone(),
            content: "hi from a guest".into(),
            r#type: pb::MessageType::Text as i32,
            temp_message_id: String::new(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(sent.seq_id, 1);
    // and in the world room
    b.api
        .send_message(pb::SendMessageRequest {
            caller_id: guest.user_id,
            conversation_id: WORLD_ID.into(),
            content: "hello world".into(),
            r#type: pb::MessageType::Text as i32,
            temp_message_id: String::new(),
            ..Default::default()
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn friends_and_online_status() {
    let b = start().await;
    let (x, y, z) = (b.user("fx").await, b.user("fy").await, b.user("fz").await);
    let view = b
        .api
        .add_friend(pb::TargetUserRequest {
            caller_id: x.id(),
            target_user_id: y.id(),
        })
        .await
        .unwrap()
        .conversation
        .expect("friends at once: the conversation");
    assert_eq!(view.r#type, pb::ConversationType::Single as i32);
    let gw = b.gateway().await;
    let conn = gw.connect(&y).await;
    let friends = b
        .api
        .list_friends(pb::CallerRequest { caller_id: x.id() })
        .await
        .unwrap()
        .friends;
    assert_eq!(friends.len(), 1);
    assert_eq!(friends[0].user.as_ref().unwrap().user_id, y.id());
    assert!(friends[0].online);
    let status = b
        .api
        .online_status(pb::CallerRequest { caller_id: x.id() })
        .await
        .unwrap()
        .statuses;
    assert_eq!(
        status,
        vec![pb::OnlineStatus {
            user_id: y.id(),
            online: true
        }]
    );
    // x comes online: y (online friend) hears of it; z (a stranger) does not matter
    let xc = gw.connect(&x).await;
    match gw
        .recv_matching(|b| matches!(b, Body::Presence(p) if p.user_id == x.id()))
        .await
    {
        Body::Presence(p) => {
            assert!(p.online);
            assert_eq!(p.event, "friend-online");
            assert_eq!(p.recipient_user_ids, vec![y.id()]);
        }
        _ => unreachable!(),
    }
    gw.disconnect(&y, conn).await;
    let status = b
        .api
        .online_status(pb::CallerRequest { caller_id: x.id() })
        .await
        .unwrap()
        .statuses;
    assert_eq!(
        status,
        vec![pb::OnlineStatus {
            user_id: y.id(),
            online: false
        }]
    );
    let _ = (z, xc);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_roles_are_enforced() {
    let b = start().await;
    let owner = b.user("go").await;
    let admin = b.user("ga").await;
    let m1 = b.user("gm").await;
    let m2 = b.user("gn").await;
    let outsider = b.user("gx").await;
    let created = b
        .api
        .create_group(pb::CallerCreateGroupRequest {
            caller_id: owner.id(),
            group_name: " Team ".into(),
            member_ids: vec![admin.id(), m1.id()],
            avatar: String::new(),
        })
        .await
        .unwrap();
    let g = created.group.unwrap();
    assert_eq!(g.group_name, "Team");
    assert_eq!(
        created.conversation.unwrap().conversation_id,
        g.conversation_id
    );
    let gid = g.group_id;

    // only members see the group
    b.api
        .get_group(pb::CallerGroupRequest {
            caller_id: m1.id(),
            group_id: gid,
        })
        .await
        .unwrap();
    let e = b
        .api
        .get_group(pb::CallerGroupRequest {
            caller_id: outsider.id(),
            group_id: gid,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Forbidden);

    // a plain member cannot add; the owner can
    let add = |caller: i64, users: Vec<i64>| {
        b.api.add_group_members(pb::CallerGroupMembersRequest {
            caller_id: caller,
            group_id: gid,
            user_ids: users,
        })
    };
    assert_eq!(
        add(m1.id(), vec![m2.id()]).await.unwrap_err().code,
        ErrorCode::Forbidden
    );
    assert_eq!(
        add(outsider.id(), vec![m2.id()]).await.unwrap_err().code,
        ErrorCode::Forbidden
    );
    let g = add(owner.id(), vec![m2.id()]).await.unwrap();
    assert_eq!(g.members.len(), 4);
    b.ports
        .store
        .set_group_role(gid, admin.id(), pb::GroupRole::Admin)
        .await
        .unwrap();

    let remove = |caller: i64, user: i64| {
        b.api.remove_group_member(pb::CallerGroupMemberRequest {
            caller_id: caller,
            group_id: gid,
            user_id: user,
        })
    };
    // member cannot remove others; admin cannot remove the owner; owner cannot leave
    assert_eq!(
        remove(m1.id(), m2.id()).await.unwrap_err().code,
        ErrorCode::Forbidden
    );
    assert_eq!(
        remove(admin.id(), owner.id()).await.unwrap_err().code,
        ErrorCode::Forbidden
    );
    assert_eq!(
        remove(owner.id(), owner.id()).await.unwrap_err().code,
        ErrorCode::Forbidden
    );
    assert_eq!(
        remove(owner.id(), outsider.id()).await.unwrap_err().code,
        ErrorCode::NotFound
    );
    // admin removes a member; a member leaves by itself
    assert_eq!(remove(admin.id(), m2.id()).await.unwrap().members.len(), 3);
    assert_eq!(remove(m1.id(), m1.id()).await.unwrap().members.len(), 2);
    // a removed member can no longer post
    let e = b
        .api
        .send_message(pb::SendMessageRequest {
            caller_id: m1.id(),
            conversation_id: g.conversation_id.clone(),
            content: "still here?".into(),
            r#type: 1,
            temp_message_id: String::new(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Forbidden);
    assert_eq!(
        b.api
            .get_group(pb::CallerGroupRequest {
                caller_id: owner.id(),
                group_id: 999_999
            })
            .await
            .unwrap_err()
            .code,
        ErrorCode::GroupNotFound
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_concurrent_senders_get_gapless_seqs_and_acks() {
    let b = start().await;
    let owner = b.user("co").await;
    let mut users = vec![owner.clone()];
    for i in 0..7 {
        users.push(b.user(&format!("c{i}")).await);
    }
    let g = b
        .api
        .create_group(pb::CallerCreateGroupRequest {
            caller_id: owner.id(),
            group_name: "busy".into(),
            member_ids: users.iter().map(|u| u.id()).collect(),
            avatar: String::new(),
        })
        .await
        .unwrap()
        .group
        .unwrap();
    let conv = g.conversation_id.clone();
    const PER: usize = 25;
    let mut tasks = Vec::new();
    for u in users.clone() {
        let gw = b.gateway().await;
        let conv = conv.clone();
        tasks.push(tokio::spawn(async move {
            let conn = gw.connect(&u).await;
            for i in 0..PER {
                gw.send(
                    &u,
                    conn,
                    &conv,
                    &format!("{} #{i}", u.user.username),
                    &format!("{}-{i}", u.id()),
                )
                .await;
            }
            let mut acks = Vec::new();
            for i in 0..PER {
                let a = gw
                    .ack(&format!("{}-{i}", u.id()))
                    .await
                    .expect("ack, not error");
                assert_eq!(a.conn_id, conn);
                acks.push(a.seq_id);
            }
            // one sender's messages keep their order
            assert!(acks.windows(2).all(|w| w[0] < w[1]), "{acks:?}");
            acks
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    let n = (users.len() * PER) as i64;
    assert_eq!(all, (1..=n).collect::<Vec<_>>());
    // history agrees: every seq once, no gap
    let mut seqs = Vec::new();
    let mut after = 0;
    loop {
        let page = b
            .api
            .get_messages(pb::GetMessagesRequest {
                caller_id: owner.id(),
                conversation_id: conv.clone(),
                after_seq: Some(after),
                size: 60,
                ..Default::default()
            })
            .await
            .unwrap();
        seqs.extend(page.messages.iter().map(|m| m.seq_id));
        if !page.pagination.unwrap().has_more {
            break;
        }
        after = *seqs.last().unwrap();
    }
    assert_eq!(seqs, (1..=n).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resend_is_acked_again_stored_once_and_routed_identically() {
    let b = start().await;
    let (x, y) = (b.user("rx").await, b.user("ry").await);
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
    let _yc = gw.connect(&y).await;
    gw.send(&x, xc, &conv, "hello", "t-1").await;
    let first = gw.ack("t-1").await.unwrap();
    assert!(!first.duplicate);
    let delivered = gw.new_message(&conv).await;
    assert_eq!(
        delivered
            .recipient_user_ids
            .iter()
            .copied()
            .collect::<HashSet<_>>(),
        HashSet::from([x.id(), y.id()])
    );
    assert_eq!(
        delivered.exclude_conn_id, xc,
        "the sending connection gets the ack instead"
    );
    let m = delivered.message.unwrap();
    assert_eq!((m.seq_id, m.message_id), (first.seq_id, first.message_id));

    // the resend (same tempMessageId), then a marker message
    gw.send(&x, xc, &conv, "hello", "t-1").await;
    let again = gw.ack("t-1").await.unwrap();
    assert!(again.duplicate);
    assert_eq!(
        (again.message_id, again.seq_id),
        (first.message_id, first.seq_id)
    );
    gw.send(&x, xc, &conv, "marker", "t-2").await;
    // a duplicate is routed again, identical (it may be the redelivery of a batch whose
    // routing a crash cut short); gateways drop the copy (gateway/src/dispatch.rs), so it
    // is stored once and shown once. Same partition, in order: then the marker.
    let copy = gw.new_message(&conv).await;
    assert_eq!(copy.recipient_user_ids, delivered.recipient_user_ids);
    let copied = copy.message.unwrap();
    assert_eq!((copied.message_id, copied.seq_id), (m.message_id, m.seq_id));
    let next = gw.new_message(&conv).await.message.unwrap();
    assert_eq!(
        (next.content.as_str(), next.seq_id),
        ("marker", first.seq_id + 1)
    );
    let history = b
        .api
        .get_messages(pb::GetMessagesRequest {
            caller_id: y.id(),
            conversation_id: conv.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let contents: Vec<&str> = history
        .messages
        .iter()
        .map(|m| m.content.as_str())
        .collect();
    assert_eq!(contents, vec!["hello", "marker"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_counts_and_mark_read() {
    let b = start().await;
    let (x, y) = (b.user("ux").await, b.user("uy").await);
    let conv = b
        .api
        .create_single_conversation(pb::TargetUserRequest {
            caller_id: x.id(),
            target_user_id: y.id(),
        })
        .await
        .unwrap()
        .conversation_id;
    for i in 0..4 {
        b.api
            .send_message(pb::SendMessageRequest {
                caller_id: x.id(),
                conversation_id: conv.clone(),
                content: format!("m{i}"),
                r#type: 1,
                temp_message_id: String::new(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let unread = |user: i64| {
        let api = b.api.clone();
        let conv = conv.clone();
        async move {
            api.list_conversations(pb::CallerRequest { caller_id: user })
                .await
                .unwrap()
                .conversations
                .into_iter()
                .find(|c| c.conversation_id == conv)
                .unwrap()
        }
    };
    let view = unread(y.id()).await;
    assert_eq!(view.unread_count, 4);
    assert_eq!(view.last_message.unwrap().content, "m3");
    assert_eq!(unread(x.id()).await.unread_count, 0);
    let p = b
        .api
        .mark_read(pb::CallerMarkReadRequest {
            caller_id: y.id(),
            conversation_id: conv.clone(),
            seq_id: 2,
        })
        .await
        .unwrap();
    assert_eq!((p.read_seq, p.last_seq), (2, 4));
    assert_eq!(unread(y.id()).await.unread_count, 2);
    b.api
        .mark_read(pb::CallerMarkReadRequest {
            caller_id: y.id(),
            conversation_id: conv.clone(),
            seq_id: 0,
        })
        .await
        .unwrap();
    assert_eq!(unread(y.id()).await.unread_count, 0);
    // the list starts with the world room
    let list = b
        .api
        .list_conversations(pb::CallerRequest { caller_id: y.id() })
        .await
        .unwrap()
        .conversations;
    assert_eq!(list[0].conversation_id, WORLD_ID);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_by_number_and_by_cursor() {
    let b = start().await;
    let (x, y) = (b.user("hx").await, b.user("hy").await);
    let conv = b
        .api
        .create_single_conversation(pb::TargetUserRequest {
            caller_id: x.id(),
            target_user_id: y.id(),
        })
        .await
        .unwrap()
        .conversation_id;
    for i in 1..=12 {
        b.api
            .send_message(pb::SendMessageRequest {
                caller_id: if i % 2 == 0 { x.id() } else { y.id() },
                conversation_id: conv.clone(),
                content: format!("m{i}"),
                r#type: 1,
                temp_message_id: format!("h{i}"),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let get = |page, size, after_seq: i64, before_seq: i64| {
        b.api.get_messages(pb::GetMessagesRequest {
            after_seq: (after_seq > 0).then_some(after_seq),
            before_seq: (before_seq > 0).then_some(before_seq),
            caller_id: x.id(),
            conversation_id: conv.clone(),
            page,
            size,
        })
    };
    let seqs = |p: &pb::HistoryPage| p.messages.iter().map(|m| m.seq_id).collect::<Vec<_>>();
    let newest = get(1, 5, 0, 0).await.unwrap();
    assert_eq!(seqs(&newest), vec![8, 9, 10, 11, 12]);
    assert_eq!(newest.messages[4].content, "m12");
    assert_eq!(newest.messages[4].sender_name, x.user.username);
    let older = get(0, 5, 0, 8).await.unwrap();
    assert_eq!(seqs(&older), vec![3, 4, 5, 6, 7]);
    assert!(older.pagination.unwrap().has_more);
    let sync = get(0, 50, 9, 0).await.unwrap();
    assert_eq!(seqs(&sync), vec![10, 11, 12]);
    assert!(!sync.pagination.unwrap().has_more);
    let outsider = b.user("hz").await;
    let e = b
        .api
        .get_messages(pb::GetMessagesRequest {
            caller_id: outsider.id(),
            conversation_id: conv.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Forbidden);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_member_gets_an_offline_push() {
    let b = start().await;
    let (x, y, z) = (b.user("ox").await, b.user("oy").await, b.user("oz").await);
    let g = b.group(&x, "push", &[&y, &z]).await;
    let gw = b.gateway().await;
    let xc = gw.connect(&x).await;
    gw.connect(&y).await;
    gw.send(&x, xc, &g.conversation_id, "are you there?", "p-1")
        .await;
    let ack = gw.ack("p-1").await.unwrap();
    let n = gw.new_message(&g.conversation_id).await;
    let mut online = n.recipient_user_ids.clone();
    online.sort_unstable();
    let mut expect = vec![x.id(), y.id()];
    expect.sort_unstable();
    assert_eq!(online, expect);
    let push = b
        .notifier
        .wait_for(|p| p.message_id == ack.message_id.to_string())
        .await;
    assert_eq!(push.user_ids, vec![z.id().to_string()]);
    assert_eq!(push.preview, "are you there?");
    assert_eq!(push.sender_name, x.user.username);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn world_and_large_groups_fan_out_through_im_task() {
    // threshold 2: a group of three is "large"; im-task pages members 2 at a time
    let b = start_with(&[("RINGCHAT_LOGIC__LARGE_GROUP_THRESHOLD", "2")]).await;
    let (x, y, z) = (b.user("wx").await, b.user("wy").await, b.user("wz").await);
    let gw1 = b.gateway().await;
    let gw2 = b.gateway().await;
    let xc = gw1.connect(&x).await;
    gw1.connect(&y).await;
    gw2.connect(&z).await;

    gw1.send(&x, xc, WORLD_ID, "hello world", "w-1").await;
    gw1.ack("w-1").await.unwrap();
    let on1 = gw1.new_message(WORLD_ID).await;
    assert!(on1.broadcast && on1.recipient_user_ids.is_empty());
    assert_eq!(on1.exclude_conn_id, xc);
    let on2 = gw2.new_message(WORLD_ID).await;
    assert!(on2.broadcast);
    assert_eq!(on2.exclude_conn_id, 0);
    assert_eq!(on2.message.unwrap().content, "hello world");

    let w = b.user("ww").await; // offline member
    let g = b
        .api
        .create_group(pb::CallerCreateGroupRequest {
            caller_id: x.id(),
            group_name: "big".into(),
            member_ids: vec![y.id(), z.id(), w.id()],
            avatar: String::new(),
        })
        .await
        .unwrap()
        .group
        .unwrap();
    gw1.send(&x, xc, &g.conversation_id, "to the big group", "g-1")
        .await;
    let ack = gw1.ack("g-1").await.unwrap();
    // members are paged two at a time, so gw1 may get x and y in separate batches
    let mut on_gw1 = HashSet::new();
    while on_gw1.len() < 2 {
        let n = gw1.new_message(&g.conversation_id).await;
        assert_eq!(n.exclude_conn_id, xc);
        on_gw1.extend(n.recipient_user_ids);
    }
    assert_eq!(on_gw1, HashSet::from([x.id(), y.id()]));
    assert_eq!(
        gw2.new_message(&g.conversation_id).await.recipient_user_ids,
        vec![z.id()]
    );
    let push = b
        .notifier
        .wait_for(|p| p.message_id == ack.message_id.to_string())
        .await;
    assert_eq!(push.user_ids, vec![w.id().to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mentioned_offline_member_is_named_in_the_push() {
    let b = start().await;
    let (x, y, z) = (b.user("mx").await, b.user("my").await, b.user("mz").await);
    let g = b.group(&x, "mentions", &[&y, &z]).await;
    // y and z are offline; only z is mentioned
    let sent = b
        .api
        .send_message(pb::SendMessageRequest {
            caller_id: x.id(),
            conversation_id: g.conversation_id.clone(),
            content: "@z look".into(),
            r#type: pb::MessageType::Text as i32,
            mentions: vec![z.id()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(sent.mentions, vec![z.id()]);
    let push = b
        .notifier
        .wait_for(|p| p.message_id == sent.message_id.to_string())
        .await;
    let mut users = push.user_ids.clone();
    users.sort();
    let mut both = vec![y.id().to_string(), z.id().to_string()];
    both.sort();
    assert_eq!(users, both);
    assert_eq!(push.mentioned_user_ids, vec![z.id().to_string()]);
    // a plain member may not mention everyone; the owner may
    let e = b
        .api
        .send_message(pb::SendMessageRequest {
            caller_id: y.id(),
            conversation_id: g.conversation_id.clone(),
            content: "@all".into(),
            r#type: pb::MessageType::Text as i32,
            mention_all: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Forbidden);
    let all = b
        .api
        .send_message(pb::SendMessageRequest {
            caller_id: x.id(),
            conversation_id: g.conversation_id.clone(),
            content: "@all meeting".into(),
            r#type: pb::MessageType::Text as i32,
            mention_all: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let push = b
        .notifier
        .wait_for(|p| p.message_id == all.message_id.to_string())
        .await;
    assert_eq!(push.mentioned_user_ids.len(), 2, "{push:?}");
    // a revoke is not pushed
    let revoked = b
        .api
        .amend_message(pb::CallerAmendMessageRequest {
            caller_id: x.id(),
            message_id: all.message_id,
            revoke: true,
            content: String::new(),
        })
        .await
        .unwrap();
    let event = revoked.event.unwrap();
    assert_eq!(event.r#type, pb::MessageType::Revoke as i32);
    assert_eq!(event.ref_message_id, all.message_id);
    // the next push is for a later message, never for the revoke
    let later = b
        .api
        .send_message(pb::SendMessageRequest {
            caller_id: x.id(),
            conversation_id: g.conversation_id.clone(),
            content: "after".into(),
            r#type: pb::MessageType::Text as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    b.notifier
        .wait_for(|p| p.message_id == later.message_id.to_string())
        .await;
    let pushed = b.notifier.pushes.lock().unwrap().clone();
    assert!(
        pushed
            .iter()
            .all(|p| p.message_id != event.message_id.to_string()),
        "{pushed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_receipts_of_many_readers_reach_the_sender_in_few_events() {
    let b = start().await;
    let owner = b.user("rcpt").await;
    let mut members = Vec::new();
    for i in 0..30 {
        members.push(b.user(&format!("rd{i}")).await);
    }
    let g = b
        .group(&owner, "receipts", &members.iter().collect::<Vec<_>>())
        .await;
    let gw = b.gateway().await;
    gw.connect(&owner).await;
    let sent = b
        .api
        .send_message(pb::SendMessageRequest {
            caller_id: owner.id(),
            conversation_id: g.conversation_id.clone(),
            content: "read me".into(),
            r#type: pb::MessageType::Text as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    // all 30 read at once
    let mut reads = tokio::task::JoinSet::new();
    for m in &members {
        let (api, caller_id) = (b.api.clone(), m.id());
        let conversation_id = g.conversation_id.clone();
        reads.spawn(async move {
            api.mark_read(pb::CallerMarkReadRequest {
                caller_id,
                conversation_id,
                seq_id: 0,
            })
            .await
        });
    }
    while let Some(r) = reads.join_next().await {
        assert_eq!(r.unwrap().unwrap().read_seq, sent.seq_id);
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut events = 0;
    while seen.len() < members.len() {
        let body = gw
            .recv_matching(|b| {
                matches!(b, pb::downstream_batch::Body::Notice(n)
                    if matches!(n.event, Some(pb::notice::Event::ReadReceipt(_))))
            })
            .await;
        let pb::downstream_batch::Body::Notice(n) = body else {
            unreachable!()
        };
        let Some(pb::notice::Event::ReadReceipt(r)) = n.event else {
            unreachable!()
        };
        assert_eq!(n.recipient_user_ids, vec![owner.id()]);
        assert_eq!(r.conversation_id, g.conversation_id);
        for p in r.readers {
            assert_eq!(p.read_seq, sent.seq_id);
            seen.insert(p.user_id);
        }
        events += 1;
    }
    assert!(
        events <= 3,
        "30 reads within the batching delay make a few events, not {events}"
    );
    // the readers, from the read pointers
    let page = b
        .api
        .message_readers(pb::CallerReadersRequest {
            caller_id: owner.id(),
            conversation_id: g.conversation_id.clone(),
            message_id: sent.message_id,
            after_user_id: 0,
            size: 10,
        })
        .await
        .unwrap();
    assert_eq!((page.users.len(), page.has_more), (10, true));
    assert_eq!((page.read_count, page.member_count), (30, 30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_refreshes_once_even_when_refreshed_concurrently() {
    let b = start().await;
    let u = b.user("rfc").await;
    let mut refreshes = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let (api, token) = (b.api.clone(), u.token.clone());
        refreshes.spawn(async move { api.refresh(pb::TokenRequest { token }).await });
    }
    let (mut fresh, mut refused) = (Vec::new(), 0);
    while let Some(r) = refreshes.join_next().await {
        match r.unwrap() {
            Ok(auth) => fresh.push(auth.token),
            Err(e) => {
                assert_eq!(e.code, ErrorCode::AuthFailed, "{e:?}");
                refused += 1;
            }
        }
    }
    assert_eq!((fresh.len(), refused), (1, 5), "exactly one refresh wins");
    // the winner's token works; the old one does not
    b.api
        .authenticate(pb::TokenRequest {
            token: fresh[0].clone(),
        })
        .await
        .unwrap();
    let e = b
        .api
        .authenticate(pb::TokenRequest { token: u.token })
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::AuthFailed);
}
