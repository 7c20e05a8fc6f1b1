//! Store conformance: the persistence contract of [`crate::ports::Store`].

use std::collections::HashSet;
use std::sync::Arc;

use ringchat_proto as pb;

use super::unique;
use crate::error::ErrorCode;
use crate::model::WORLD_ID;
use crate::ports::Store;

pub async fn new_user(store: &dyn Store, prefix: &str) -> pb::User {
    // usernames are at most 20 characters in the client API; the store does not care
    store
        .create_user(pb::CreateUserRequest {
            username: unique(prefix),
            password_hash: "hash".into(),
            avatar: String::new(),
            is_guest: false,
        })
        .await
        .expect("create user")
}

pub fn text(
    conversation_id: &str,
    sender: &pb::User,
    content: &str,
    temp: &str,
) -> pb::MessageDraft {
    pb::MessageDraft {
        conversation_id: conversation_id.into(),
        sender_id: sender.user_id,
        sender_name: sender.username.clone(),
        r#type: pb::MessageType::Text as i32,
        content: content.into(),
        temp_message_id: temp.into(),
        ..Default::default()
    }
}

/// A group of `owner` with these members (the store takes the owner out of them).
pub async fn new_group(
    store: &dyn Store,
    owner: &pb::User,
    name: &str,
    members: &[i64],
) -> pb::Group {
    store
        .create_group(pb::CreateGroupRequest {
            owner_id: owner.user_id,
            group_name: name.into(),
            avatar: String::new(),
            member_ids: members.to_vec(),
        })
        .await
        .expect("create group")
}

async fn append_one(store: &dyn Store, m: pb::MessageDraft) -> pb::AppendOutcome {
    let mut out = store.append(vec![m]).await.expect("append");
    assert_eq!(out.len(), 1);
    out.pop().unwrap()
}

pub async fn users_are_unique_by_name(store: Arc<dyn Store>) {
    let u = new_user(store.as_ref(), "u").await;
    assert!(u.user_id > 0);
    let again = store
        .create_user(pb::CreateUserRequest {
            username: u.username.to_uppercase(),
            password_hash: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(again.code, ErrorCode::UsernameTaken);
    let creds = store.credentials(&u.username).await.unwrap();
    assert_eq!(creds.user.as_ref().unwrap(), &u);
    assert_eq!(creds.password_hash, "hash");
    assert_eq!(store.user(u.user_id).await.unwrap(), u);
    assert_eq!(store.user_by_name(&u.username).await.unwrap(), u);
    // names are found without ASCII case, as they are unique without it
    assert_eq!(
        store
            .user_by_name(&u.username.to_uppercase())
            .await
            .unwrap(),
        u
    );
    // and keep every character
    let zoe = store
        .create_user(pb::CreateUserRequest {
            username: unique("zoë"),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(store.user_by_name(&zoe.username).await.unwrap(), zoe);
    let v = new_user(store.as_ref(), "v").await;
    let both = store.users(&[v.user_id, u.user_id, -5]).await.unwrap();
    assert_eq!(both.len(), 2);
    assert_eq!(
        store.user(-1).await.unwrap_err().code,
        ErrorCode::UserNotFound
    );
    assert_eq!(
        store.credentials(&unique("nobody")).await.unwrap_err().code,
        ErrorCode::UserNotFound
    );
    // a guest is flagged as such
    let g = store
        .create_user(pb::CreateUserRequest {
            username: unique("guest"),
            is_guest: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(g.is_guest);
    assert!(store.user(g.user_id).await.unwrap().is_guest);
    // every user is in the world room
    assert!(store.is_member(WORLD_ID, g.user_id).await.unwrap());
    // a look-alike of an existing name (Cyrillic a, capital I for l) is taken too
    let base = unique("alice");
    store
        .create_user(pb::CreateUserRequest {
            username: base.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    for look_alike in [base.replacen('a', "\u{430}", 1), base.replacen('l', "I", 1)] {
        let e = store
            .create_user(pb::CreateUserRequest {
                username: look_alike.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::UsernameTaken, "{look_alike:?}");
    }
}

pub async fn users_are_found_by_name_prefix(store: Arc<dyn Store>) {
    let stem = unique("Srch");
    let make = |name: String, is_guest: bool| pb::CreateUserRequest {
        username: name,
        password_hash: "hash".into(),
        avatar: String::new(),
        is_guest,
    };
    let mut ids = Vec::new();
    for suffix in ["a", "b", "c"] {
        let u = store
            .create_user(make(format!("{stem}{suffix}"), false))
            .await
            .unwrap();
        ids.push(u.user_id);
    }
    let guest = store
        .create_user(make(format!("{stem}g"), true))
        .await
        .unwrap();
    // a name with the pattern characters in it, found only by its literal prefix
    let odd = store
        .create_user(make(format!("{stem}%_!x"), false))
        .await
        .unwrap();

    // ASCII case ignored; guests never listed; id order
    let found = store
        .search_users(&stem.to_lowercase(), 0, 100)
        .await
        .unwrap();
    let found_ids: Vec<i64> = found.iter().map(|u| u.user_id).collect();
    let mut want = ids.clone();
    want.push(odd.user_id);
    assert_eq!(found_ids, want, "{found:?}");
    assert!(found
        .iter()
        .all(|u| !u.is_guest && u.user_id != guest.user_id));

    // paged by id
    let first = store.search_users(&stem, 0, 2).await.unwrap();
    assert_eq!(first.len(), 2);
    let rest = store
        .search_users(&stem, first[1].user_id, 10)
        .await
        .unwrap();
    assert_eq!(rest.len(), 2, "{rest:?}");
    assert_eq!(rest[0].user_id, ids[2]);

    // `%`, `_` and `!` match themselves, not anything
    let literal = store
        .search_users(&format!("{stem}%_!"), 0, 10)
        .await
        .unwrap();
    assert_eq!(literal.len(), 1, "{literal:?}");
    assert_eq!(literal[0].user_id, odd.user_id);
    assert!(store
        .search_users(&format!("{stem}_"), 0, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .search_users(&format!("{stem}zz"), 0, 10)
        .await
        .unwrap()
        .is_empty());
}

pub async fn profiles_keep_what_is_not_updated(store: Arc<dyn Store>) {
    let u = new_user(store.as_ref(), "p").await;
    assert_eq!(u.nickname, "");
    let set = |avatar: Option<&str>, nickname: Option<&str>| pb::UpdateProfileRequest {
        user_id: u.user_id,
        avatar: avatar.map(Into::into),
        nickname: nickname.map(Into::into),
    };
    let p = store
        .update_profile(set(Some("https://a.example/x.png"), Some("Pé 🐙")))
        .await
        .unwrap();
    assert_eq!(
        (p.avatar.as_str(), p.nickname.as_str()),
        ("https://a.example/x.png", "Pé 🐙")
    );
    // a field not given stays; an empty one clears
    let p = store.update_profile(set(None, Some(""))).await.unwrap();
    assert_eq!(
        (p.avatar.as_str(), p.nickname.as_str()),
        ("https://a.example/x.png", "")
    );
    let p = store.update_profile(set(None, Some("N"))).await.unwrap();
    // every read of the user has the profile
    assert_eq!(store.user(u.user_id).await.unwrap(), p);
    assert_eq!(store.user_by_name(&u.username).await.unwrap(), p);
    assert_eq!(store.users(&[u.user_id]).await.unwrap(), vec![p.clone()]);
    assert_eq!(
        store.credentials(&u.username).await.unwrap().user,
        Some(p.clone())
    );
    let missing = store
        .update_profile(pb::UpdateProfileRequest {
            user_id: i64::MAX,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code, ErrorCode::UserNotFound);
}

pub async fn friend_requests_wait_for_the_targets_answer(store: Arc<dyn Store>) {
    use crate::model::{REQUEST_ACCEPTED, REQUEST_BLOCKED, REQUEST_PENDING, REQUEST_REJECTED};
    let a = new_user(store.as_ref(), "fa").await;
    let b = new_user(store.as_ref(), "fb").await;
    let c = new_user(store.as_ref(), "fc").await;
    let ask = |from: &pb::User, to: &pb::User, message: &str| pb::NewFriendRequest {
        requester_id: from.user_id,
        target_id: to.user_id,
        message: message.into(),
    };
    let sent = store.send_friend_request(ask(&a, &b, "hi")).await.unwrap();
    assert!(sent.changed);
    let r = sent.request.unwrap();
    assert_eq!(
        (r.requester_id, r.target_id, r.status, r.message.as_str()),
        (a.user_id, b.user_id, REQUEST_PENDING, "hi")
    );
    assert!(
        r.created_at > 1_600_000_000 && r.created_at < 100_000_000_000,
        "unix seconds"
    );
    assert_eq!(r.requester.as_ref().unwrap().username, a.username);
    assert_eq!(r.target.as_ref().unwrap().username, b.username);
    // asking again while pending changes nothing
    let again = store
        .send_friend_request(ask(&a, &b, "hello?"))
        .await
        .unwrap();
    assert!(!again.changed);
    assert_eq!(again.request.as_ref().unwrap(), &r);
    // no friendship before the answer
    assert!(store.friends(a.user_id).await.unwrap().is_empty());

    let list = |user: &pb::User, received: bool, status: i32| pb::FriendRequestsQuery {
        user_id: user.user_id,
        received,
        status,
        limit: 100,
    };
    let got = store.friend_requests(list(&b, true, -1)).await.unwrap();
    assert_eq!(got, vec![r.clone()]);
    assert_eq!(
        store.friend_requests(list(&a, false, -1)).await.unwrap(),
        vec![r.clone()]
    );
    assert!(store
        .friend_requests(list(&a, true, -1))
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .friend_requests(list(&b, true, REQUEST_ACCEPTED))
        .await
        .unwrap()
        .is_empty());

    let answer = |by: &pb::User, id: i64, status: i32| pb::FriendRequestAnswer {
        request_id: id,
        target_id: by.user_id,
        status,
    };
    // only the target answers
    let e = store
        .answer_friend_request(answer(&a, r.request_id, REQUEST_ACCEPTED))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
    let rejected = store
        .answer_friend_request(answer(&b, r.request_id, REQUEST_REJECTED))
        .await
        .unwrap();
    assert_eq!(rejected.status, REQUEST_REJECTED);
    // the same answer again is returned as it is; another one is a conflict
    assert_eq!(
        store
            .answer_friend_request(answer(&b, r.request_id, REQUEST_REJECTED))
            .await
            .unwrap()
            .status,
        REQUEST_REJECTED
    );
    let e = store
        .answer_friend_request(answer(&b, r.request_id, REQUEST_ACCEPTED))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Conflict);
    // asking after a rejection reopens the same request
    let reopened = store
        .send_friend_request(ask(&a, &b, "please"))
        .await
        .unwrap();
    assert!(reopened.changed);
    let r2 = reopened.request.unwrap();
    assert_eq!(
        (r2.request_id, r2.status, r2.message.as_str()),
        (r.request_id, REQUEST_PENDING, "please")
    );
    let accepted = store
        .answer_friend_request(answer(&b, r.request_id, REQUEST_ACCEPTED))
        .await
        .unwrap();
    assert_eq!(accepted.status, REQUEST_ACCEPTED);
    assert!(accepted.updated_at >= r.created_at);
    let after = store.send_friend_request(ask(&a, &b, "x")).await.unwrap();
    assert!(!after.changed && after.request.unwrap().status == REQUEST_ACCEPTED);

    // a block stays: asking again does not reopen it
    let rc = store
        .send_friend_request(ask(&c, &b, ""))
        .await
        .unwrap()
        .request
        .unwrap();
    store
        .answer_friend_request(answer(&b, rc.request_id, REQUEST_BLOCKED))
        .await
        .unwrap();
    let blocked = store
        .send_friend_request(ask(&c, &b, "let me in"))
        .await
        .unwrap();
    assert!(!blocked.changed);
    assert_eq!(blocked.request.unwrap().status, REQUEST_BLOCKED);
    // newest change first
    let received: Vec<i64> = store
        .friend_requests(list(&b, true, -1))
        .await
        .unwrap()
        .iter()
        .map(|r| r.requester_id)
        .collect();
    assert_eq!(received.len(), 2);
    assert!(received.contains(&a.user_id) && received.contains(&c.user_id));

    let e = store
        .send_friend_request(pb::NewFriendRequest {
            requester_id: a.user_id,
            target_id: i64::MAX,
            message: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::UserNotFound);
}

pub async fn single_conversation_is_idempotent(store: Arc<dyn Store>) {
    let a = new_user(store.as_ref(), "a").await;
    let b = new_user(store.as_ref(), "b").await;
    let c1 = store
        .single_conversation(a.user_id, b.user_id)
        .await
        .unwrap();
    let c2 = store
        .single_conversation(b.user_id, a.user_id)
        .await
        .unwrap();
    assert_eq!(c1, c2);
    assert_eq!(c1.r#type, pb::ConversationType::Single as i32);
    assert_eq!(c1.member_count, 2);
    assert!(store
        .is_member(&c1.conversation_id, a.user_id)
        .await
        .unwrap());
    assert!(store
        .is_member(&c1.conversation_id, b.user_id)
        .await
        .unwrap());
    let members = store.member_ids(&c1.conversation_id, 0, 10).await.unwrap();
    let mut expect = vec![a.user_id, b.user_id];
    expect.sort_unstable();
    assert_eq!(members, expect);
    assert_eq!(
        store
            .single_conversation(a.user_id, a.user_id)
            .await
            .unwrap_err()
            .code,
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        store
            .single_conversation(a.user_id, -7)
            .await
            .unwrap_err()
            .code,
        ErrorCode::UserNotFound
    );
    assert_eq!(
        store
            .conversation(&unique("s_nope"))
            .await
            .unwrap_err()
            .code,
        ErrorCode::ConversationNotFound
    );
}

pub async fn friends_are_mutual(store: Arc<dyn Store>) {
    let a = new_user(store.as_ref(), "fa").await;
    let b = new_user(store.as_ref(), "fb").await;
    let conv = store.add_friend(a.user_id, b.user_id).await.unwrap();
    let again = store.add_friend(b.user_id, a.user_id).await.unwrap();
    assert_eq!(conv, again);
    assert_eq!(store.friends(a.user_id).await.unwrap(), vec![b.clone()]);
    assert_eq!(store.friends(b.user_id).await.unwrap(), vec![a.clone()]);
    assert_eq!(store.peer_ids(a.user_id).await.unwrap(), vec![b.user_id]);
    assert_eq!(
        store
            .single_conversation(a.user_id, b.user_id)
            .await
            .unwrap(),
        conv
    );
    assert_eq!(
        store.add_friend(a.user_id, -3).await.unwrap_err().code,
        ErrorCode::UserNotFound
    );
}

pub async fn groups_are_described_handed_over_and_dissolved(store: Arc<dyn Store>) {
    let owner = new_user(store.as_ref(), "gown").await;
    let m1 = new_user(store.as_ref(), "gm1").await;
    let m2 = new_user(store.as_ref(), "gm2").await;
    let g = new_group(store.as_ref(), &owner, "before", &[m1.user_id, m2.user_id]).await;
    assert_eq!(g.description, "");
    let set = |name: Option<&str>, description: Option<&str>| pb::UpdateGroupRequest {
        group_id: g.group_id,
        name: name.map(Into::into),
        description: description.map(Into::into),
        avatar: None,
    };
    let u = store
        .update_group(set(Some("after"), Some("what we do 🐙")))
        .await
        .unwrap();
    assert_eq!(
        (u.group_name.as_str(), u.description.as_str()),
        ("after", "what we do 🐙")
    );
    let u = store.update_group(set(None, Some(""))).await.unwrap();
    assert_eq!(
        (u.group_name.as_str(), u.description.as_str()),
        ("after", "")
    );
    let e = store
        .update_group(pb::UpdateGroupRequest {
            group_id: i64::MAX,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::GroupNotFound);

    // handing the group over: one owner, the one before is an admin
    store
        .set_group_role(g.group_id, m1.user_id, pb::GroupRole::Owner)
        .await
        .unwrap();
    let h = store.group(g.group_id).await.unwrap();
    assert_eq!(h.owner_id, m1.user_id);
    let role_of = |id: i64| h.members.iter().find(|m| m.user_id == id).unwrap().role;
    assert_eq!(role_of(m1.user_id), pb::GroupRole::Owner as i32);
    assert_eq!(role_of(owner.user_id), pb::GroupRole::Admin as i32);
    assert_eq!(role_of(m2.user_id), pb::GroupRole::Member as i32);
    let e = store
        .set_group_role(g.group_id, i64::MAX, pb::GroupRole::Admin)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);

    // dissolving: the group, its conversation and its messages are gone
    let out = append_one(
        store.as_ref(),
        text(&g.conversation_id, &m2, "last words", ""),
    )
    .await;
    assert!(out.error_code.is_empty(), "{out:?}");
    let mut members = store.dissolve_group(g.group_id).await.unwrap();
    members.sort_unstable();
    let mut want = vec![owner.user_id, m1.user_id, m2.user_id];
    want.sort_unstable();
    assert_eq!(members, want);
    assert_eq!(
        store.group(g.group_id).await.unwrap_err().code,
        ErrorCode::GroupNotFound
    );
    assert_eq!(
        store
            .conversation(&g.conversation_id)
            .await
            .unwrap_err()
            .code,
        ErrorCode::ConversationNotFound
    );
    assert!(!store
        .is_member(&g.conversation_id, m2.user_id)
        .await
        .unwrap());
    assert!(store
        .conversations(m2.user_id)
        .await
        .unwrap()
        .iter()
        .all(|c| c.conversation_id != g.conversation_id));
    let late = append_one(store.as_ref(), text(&g.conversation_id, &m2, "late", "")).await;
    assert_eq!(late.error_code, "CONVERSATION_NOT_FOUND", "{late:?}");
    assert_eq!(
        store.dissolve_group(g.group_id).await.unwrap_err().code,
        ErrorCode::GroupNotFound
    );
}

pub async fn a_hidden_conversation_returns_with_a_new_message(store: Arc<dyn Store>) {
    let a = new_user(store.as_ref(), "ha").await;
    let b = new_user(store.as_ref(), "hb").await;
    let c = store
        .single_conversation(a.user_id, b.user_id)
        .await
        .unwrap();
    let id = c.conversation_id.clone();
    let hidden = |user: i64| {
        let store = store.clone();
        let id = id.clone();
        async move {
            store
                .conversations(user)
                .await
                .unwrap()
                .into_iter()
                .find(|v| v.conversation_id == id)
                .expect("still listed, flagged")
                .hidden
        }
    };
    assert!(!hidden(a.user_id).await);
    // an empty conversation hides too; only the one who hid it
    store.hide_conversation(&id, a.user_id).await.unwrap();
    assert!(hidden(a.user_id).await && !hidden(b.user_id).await);
    let out = append_one(store.as_ref(), text(&id, &b, "back?", "")).await;
    assert!(out.error_code.is_empty(), "{out:?}");
    assert!(!hidden(a.user_id).await, "a new message shows it again");
    // hidden again, then opened again by its user
    store.hide_conversation(&id, a.user_id).await.unwrap();
    assert!(hidden(a.user_id).await);
    store
        .single_conversation(a.user_id, b.user_id)
        .await
        .unwrap();
    assert!(!hidden(a.user_id).await);
    // membership is untouched by hiding; outsiders cannot hide
    assert!(store.is_member(&id, a.user_id).await.unwrap());
    let outsider = new_user(store.as_ref(), "hc").await;
    assert_eq!(
        store
            .hide_conversation(&id, outsider.user_id)
            .await
            .unwrap_err()
            .code,
        ErrorCode::ConversationNotFound
    );
}

pub async fn groups_have_roles_and_members(store: Arc<dyn Store>) {
    let owner = new_user(store.as_ref(), "own").await;
    let m1 = new_user(store.as_ref(), "m1").await;
    let m2 = new_user(store.as_ref(), "m2").await;
    let m3 = new_user(store.as_ref(), "m3").await;
    let g = new_group(
        store.as_ref(),
        &owner,
        "team",
        &[m1.user_id, m2.user_id, m1.user_id, owner.user_id],
    )
    .await;
    assert_eq!(g.owner_id, owner.user_id);
    assert_eq!(g.members.len(), 3);
    let role_of =
        |g: &pb::Group, id: i64| g.members.iter().find(|m| m.user_id == id).map(|m| m.role);
    assert_eq!(
        role_of(&g, owner.user_id),
        Some(pb::GroupRole::Owner as i32)
    );
    assert_eq!(role_of(&g, m1.user_id), Some(pb::GroupRole::Member as i32));
    let meta = store.conversation(&g.conversation_id).await.unwrap();
    assert_eq!(meta.r#type, pb::ConversationType::Group as i32);
    assert_eq!(meta.group_id, g.group_id);
    assert_eq!(meta.member_count, 3);

    let added = store
        .add_group_members(g.group_id, &[m2.user_id, m3.user_id], pb::GroupRole::Member)
        .await
        .unwrap();
    assert_eq!(added, vec![m3.user_id]);
    assert!(store
        .is_member(&g.conversation_id, m3.user_id)
        .await
        .unwrap());
    store
        .set_group_role(g.group_id, m1.user_id, pb::GroupRole::Admin)
        .await
        .unwrap();
    assert!(store
        .remove_group_member(g.group_id, m2.user_id)
        .await
        .unwrap());
    assert!(!store
        .remove_group_member(g.group_id, m2.user_id)
        .await
        .unwrap());
    assert!(!store
        .is_member(&g.conversation_id, m2.user_id)
        .await
        .unwrap());
    let g = store.group(g.group_id).await.unwrap();
    assert_eq!(g.members.len(), 3);
    assert_eq!(role_of(&g, m1.user_id), Some(pb::GroupRole::Admin as i32));
    assert_eq!(
        store
            .conversation(&g.conversation_id)
            .await
            .unwrap()
            .member_count,
        3
    );

    let peers: HashSet<i64> = store
        .peer_ids(m3.user_id)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(peers, HashSet::from([owner.user_id, m1.user_id]));
    // member ids page in ascending order
    let first = store.member_ids(&g.conversation_id, 0, 2).await.unwrap();
    let rest = store
        .member_ids(&g.conversation_id, *first.last().unwrap(), 10)
        .await
        .unwrap();
    assert_eq!(first.len() + rest.len(), 3);
    assert!(first
        .iter()
        .chain(rest.iter())
        .collect::<Vec<_>>()
        .windows(2)
        .all(|w| w[0] < w[1]));

    assert_eq!(
        store.group(-1).await.unwrap_err().code,
        ErrorCode::GroupNotFound
    );
    assert_eq!(
        store
            .add_group_members(g.group_id, &[-9], pb::GroupRole::Member)
            .await
            .unwrap_err()
            .code,
        ErrorCode::UserNotFound
    );
    assert_eq!(
        store
            .set_group_role(g.group_id, m2.user_id, pb::GroupRole::Admin)
            .await
            .unwrap_err()
            .code,
        ErrorCode::NotFound
    );
}

pub async fn seq_is_strictly_increasing_and_idempotent(store: Arc<dyn Store>) {
    let a = new_user(store.as_ref(), "sa").await;
    let b = new_user(store.as_ref(), "sb").await;
    let conv = store
        .single_conversation(a.user_id, b.user_id)
        .await
        .unwrap();
    let id = conv.conversation_id.as_str();
    let temp1 = unique("t");
    let first = append_one(store.as_ref(), text(id, &a, "one", &temp1)).await;
    let m1 = first.message.unwrap();
    assert!(!first.duplicate);
    assert_eq!(m1.seq_id, 1);
    assert_eq!(m1.sender_name, a.username);
    assert!(m1.send_time_ms > 0);

    // a batch: new, resend of temp1, duplicate inside the batch, unknown conversation
    let temp2 = unique("t");
    let out = store
        .append(vec![
            text(id, &b, "two", &temp2),
            text(id, &a, "one again", &temp1),
            text(id, &b, "two again", &temp2),
            text(&unique("missing"), &a, "lost", ""),
            text(id, &a, "three", ""),
        ])
        .await
        .unwrap();
    assert_eq!(out.len(), 5);
    assert_eq!(out[0].message.as_ref().unwrap().seq_id, 2);
    assert!(out[1].duplicate);
    assert_eq!(out[1].message.as_ref().unwrap(), &m1);
    assert!(out[2].duplicate);
    assert_eq!(
        out[2].message.as_ref().unwrap().message_id,
        out[0].message.as_ref().unwrap().message_id
    );
    assert_eq!(out[3].error_code, "CONVERSATION_NOT_FOUND");
    assert!(out[3].message.is_none());
    assert_eq!(out[4].message.as_ref().unwrap().seq_id, 3);
    assert_eq!(store.conversation(id).await.unwrap().last_seq, 3);
    // the same temp id from another sender is a different message
    let other = append_one(
        store.as_ref(),
        text(id, &b, "same key, other sender", &temp1),
    )
    .await;
    assert!(!other.duplicate);
    assert_eq!(other.message.unwrap().seq_id, 4);
    let page = store
        .messages(pb::HistoryRequest {
            conversation_id: id.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let seqs: Vec<i64> = page.messages.iter().map(|m| m.seq_id).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4]);
    let ids: HashSet<i64> = page.messages.iter().map(|m| m.message_id).collect();
    assert_eq!(ids.len(), 4);
    // a key is an exact string: another case is another key; content keeps 4-byte
    // characters and may be longer than 64 KiB (the default content limit)
    let big = "\u{1f44b}".repeat(20_000);
    let fifth = append_one(store.as_ref(), text(id, &a, &big, &temp1.to_uppercase())).await;
    assert!(!fifth.duplicate);
    let page = store
        .messages(pb::HistoryRequest {
            conversation_id: id.into(),
            after_seq: Some(4),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.messages.len(), 1);
    assert_eq!(page.messages[0].seq_id, 5);
    assert!(
        page.messages[0].content == big,
        "content changed on the way"
    );
    assert_eq!(page.messages[0].temp_message_id, temp1.to_uppercase());
}

pub async fn concurrent_appends_leave_no_gap(store: Arc<dyn Store>) {
    let owner = new_user(store.as_ref(), "co").await;
    let mut senders = vec![owner.clone()];
    for i in 0..7 {
        senders.push(new_user(store.as_ref(), &format!("c{i}")).await);
    }
    let g = new_group(
        store.as_ref(),
        &owner,
        "busy",
        &senders.iter().map(|u| u.user_id).collect::<Vec<_>>(),
    )
    .await;
    const PER_SENDER: usize = 40;
    let mut tasks = Vec::new();
    for s in senders.clone() {
        let store = store.clone();
        let conv = g.conversation_id.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..PER_SENDER {
                // alternate single appends and small batches
                let batch: Vec<_> = (0..(i % 3 + 1))
                    .map(|j| text(&conv, &s, "x", &format!("{}-{i}-{j}", s.user_id)))
                    .collect();
                for o in store.append(batch).await.unwrap() {
                    assert!(!o.duplicate);
                    seqs.push(o.message.unwrap().seq_id);
                }
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let seqs = t.await.unwrap();
        // each sender sees its own seqs increase
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
        all.extend(seqs);
    }
    all.sort_unstable();
    let n = all.len() as i64;
    assert_eq!(all, (1..=n).collect::<Vec<_>>(), "gap or duplicate seq");
    assert_eq!(
        store
            .conversation(&g.conversation_id)
            .await
            .unwrap()
            .last_seq,
        n
    );
}

pub async fn history_pages_both_ways(store: Arc<dyn Store>) {
    let a = new_user(store.as_ref(), "ha").await;
    let b = new_user(store.as_ref(), "hb").await;
    let id = store
        .single_conversation(a.user_id, b.user_id)
        .await
        .unwrap()
        .conversation_id;
    let batch: Vec<_> = (1..=25)
        .map(|i| text(&id, &a, &format!("m{i}"), ""))
        .collect();
    store.append(batch).await.unwrap();
    let get = |page, size, after_seq: i64, before_seq: i64| {
        let store = store.clone();
        let id = id.clone();
        async move {
            store
                .messages(pb::HistoryRequest {
                    conversation_id: id,
                    page,
                    size,
                    after_seq: (after_seq > 0).then_some(after_seq),
                    before_seq: (before_seq > 0).then_some(before_seq),
                })
                .await
                .unwrap()
        }
    };
    let seqs = |p: &pb::HistoryPage| p.messages.iter().map(|m| m.seq_id).collect::<Vec<_>>();
    let p1 = get(1, 10, 0, 0).await;
    assert_eq!(seqs(&p1), (16..=25).collect::<Vec<_>>());
    let pg = p1.pagination.unwrap();
    assert_eq!((pg.total, pg.has_more), (25, true));
    let p3 = get(3, 10, 0, 0).await;
    assert_eq!(seqs(&p3), (1..=5).collect::<Vec<_>>());
    assert!(!p3.pagination.unwrap().has_more);
    assert!(get(4, 10, 0, 0).await.messages.is_empty());
    assert_eq!(p3.messages[0].content, "m1");

    let after = get(0, 10, 20, 0).await;
    assert_eq!(seqs(&after), (21..=25).collect::<Vec<_>>());
    assert!(!after.pagination.unwrap().has_more);
    let after = get(0, 3, 5, 0).await;
    assert_eq!(seqs(&after), vec![6, 7, 8]);
    assert!(after.pagination.unwrap().has_more);
    let before = get(0, 4, 0, 10).await;
    assert_eq!(seqs(&before), vec![6, 7, 8, 9]);
    assert!(before.pagination.unwrap().has_more);
    let before = get(0, 50, 0, 3).await;
    assert_eq!(seqs(&before), vec![1, 2]);
    assert!(!before.pagination.unwrap().has_more);
    assert_eq!(get(0, 0, 0, 0).await.messages.len(), 25);
    // afterSeq = 0 is a sync from the first message, not "no cursor"
    let from_start = store
        .messages(pb::HistoryRequest {
            conversation_id: id.clone(),
            size: 3,
            after_seq: Some(0),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(seqs(&from_start), vec![1, 2, 3]);

    let err = store
        .messages(pb::HistoryRequest {
            conversation_id: unique("nope"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::ConversationNotFound);
    let err = store
        .messages(pb::HistoryRequest {
            conversation_id: id.clone(),
            page: -1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidArgument);
}

pub async fn messages_are_amended_in_place(store: Arc<dyn Store>) {
    let a = new_user(store.as_ref(), "ama").await;
    let b = new_user(store.as_ref(), "amb").await;
    let c = store
        .single_conversation(a.user_id, b.user_id)
        .await
        .unwrap();
    let id = c.conversation_id.as_str();
    let first = append_one(store.as_ref(), text(id, &a, "helo", ""))
        .await
        .message
        .unwrap();
    let second = append_one(store.as_ref(), text(id, &a, "bye", ""))
        .await
        .message
        .unwrap();
    assert_eq!(store.message(first.message_id).await.unwrap(), first);
    let edited = store
        .amend_message(pb::AmendMessageRequest {
            message_id: first.message_id,
            content: Some("hello".into()),
            revoke: false,
        })
        .await
        .unwrap();
    assert_eq!(
        (edited.content.as_str(), edited.edited, edited.revoked),
        ("hello", true, false)
    );
    assert_eq!(
        (edited.seq_id, edited.sender_id),
        (first.seq_id, first.sender_id)
    );
    let revoked = store
        .amend_message(pb::AmendMessageRequest {
            message_id: second.message_id,
            content: None,
            revoke: true,
        })
        .await
        .unwrap();
    assert_eq!((revoked.content.as_str(), revoked.revoked), ("", true));
    // an event in the seq stream names the message it changes
    let mut event = text(id, &a, "", "");
    event.r#type = pb::MessageType::Revoke as i32;
    event.ref_message_id = second.message_id;
    let stored = append_one(store.as_ref(), event).await.message.unwrap();
    assert_eq!(stored.seq_id, second.seq_id + 1);
    assert_eq!(stored.ref_message_id, second.message_id);
    // history has it all: the latest text, the marks, the event
    let page = store
        .messages(pb::HistoryRequest {
            conversation_id: id.into(),
            after_seq: Some(0),
            ..Default::default()
        })
        .await
        .unwrap();
    let got: Vec<(&str, bool, bool, i32)> = page
        .messages
        .iter()
        .map(|m| (m.content.as_str(), m.edited, m.revoked, m.r#type))
        .collect();
    assert_eq!(
        got,
        vec![
            ("hello", true, false, 1),
            ("", false, true, 1),
            ("", false, false, 7)
        ]
    );
    assert_eq!(page.messages[2].ref_message_id, second.message_id);
    assert_eq!(
        store.message(i64::MAX).await.unwrap_err().code,
        ErrorCode::NotFound
    );
    let e = store
        .amend_message(pb::AmendMessageRequest {
            message_id: i64::MAX,
            revoke: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
}

pub async fn mentions_are_stored_and_counted(store: Arc<dyn Store>) {
    let owner = new_user(store.as_ref(), "mo").await;
    let m1 = new_user(store.as_ref(), "mm1").await;
    let m2 = new_user(store.as_ref(), "mm2").await;
    let g = new_group(
        store.as_ref(),
        &owner,
        "mentions",
        &[m1.user_id, m2.user_id],
    )
    .await;
    let conv = g.conversation_id.as_str();
    let mention = |users: Vec<i64>, all: bool| {
        let mut d = text(conv, &owner, "@you", "");
        d.mentions = users;
        d.mention_all = all;
        d
    };
    let stored = append_one(store.as_ref(), mention(vec![m1.user_id], false))
        .await
        .message
        .unwrap();
    assert_eq!(stored.mentions, vec![m1.user_id]);
    append_one(store.as_ref(), text(conv, &owner, "plain", "")).await;
    append_one(store.as_ref(), mention(vec![], true)).await;
    let count = |user: i64| {
        let store = store.clone();
        let conv = conv.to_string();
        async move {
            store
                .conversations(user)
                .await
                .unwrap()
                .into_iter()
                .find(|c| c.conversation_id == conv)
                .unwrap()
                .mention_count
        }
    };
    assert_eq!(count(m1.user_id).await, 2, "one for m1, one for everyone");
    assert_eq!(count(m2.user_id).await, 1);
    assert_eq!(
        count(owner.user_id).await,
        0,
        "one's own mentions do not count"
    );
    let page = store
        .messages(pb::HistoryRequest {
            conversation_id: conv.into(),
            after_seq: Some(0),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.messages[0].mentions, vec![m1.user_id]);
    assert!(page.messages[2].mention_all && page.messages[2].mentions.is_empty());
    // reading clears them
    store.mark_read(m1.user_id, conv, 0).await.unwrap();
    assert_eq!(count(m1.user_id).await, 0);
}

pub async fn readers_come_from_read_pointers(store: Arc<dyn Store>) {
    let owner = new_user(store.as_ref(), "ro").await;
    let mut members = Vec::new();
    for i in 0..3 {
        members.push(new_user(store.as_ref(), &format!("r{i}")).await);
    }
    let g = new_group(
        store.as_ref(),
        &owner,
        "readers",
        &members.iter().map(|m| m.user_id).collect::<Vec<_>>(),
    )
    .await;
    let conv = g.conversation_id.as_str();
    let m = append_one(store.as_ref(), text(conv, &owner, "read me", ""))
        .await
        .message
        .unwrap();
    let readers = |after: i64, limit: i64| pb::ReadersRequest {
        conversation_id: conv.into(),
        seq: m.seq_id,
        exclude_user_id: owner.user_id,
        after_user_id: after,
        limit,
    };
    let none = store.readers(readers(0, 10)).await.unwrap();
    assert_eq!(
        (none.user_ids.len(), none.total),
        (0, 0),
        "the sender is not a reader"
    );
    store
        .mark_read(members[0].user_id, conv, m.seq_id)
        .await
        .unwrap();
    store.mark_read(members[2].user_id, conv, 0).await.unwrap();
    let r = store.readers(readers(0, 10)).await.unwrap();
    assert_eq!(r.user_ids, vec![members[0].user_id, members[2].user_id]);
    assert_eq!(r.total, 2);
    let page = store.readers(readers(members[0].user_id, 1)).await.unwrap();
    assert_eq!((page.user_ids, page.total), (vec![members[2].user_id], 2));
}

pub async fn unread_counts_follow_read_pointers(store: Arc<dyn Store>) {
    let a = new_user(store.as_ref(), "ra").await;
    let b = new_user(store.as_ref(), "rb").await;
    let outsider = new_user(store.as_ref(), "rx").await;
    let id = store
        .single_conversation(a.user_id, b.user_id)
        .await
        .unwrap()
        .conversation_id;
    let unread = |user: i64| {
        let store = store.clone();
        let id = id.clone();
        async move {
            store
                .conversations(user)
                .await
                .unwrap()
                .into_iter()
                .find(|c| c.conversation_id == id)
                .map(|c| c.unread_count)
                .unwrap()
        }
    };
    store
        .append((0..5).map(|i| text(&id, &a, &format!("{i}"), "")).collect())
        .await
        .unwrap();
    assert_eq!(unread(b.user_id).await, 5);
    assert_eq!(unread(a.user_id).await, 0, "own messages are not unread");
    let p = store.mark_read(b.user_id, &id, 3).await.unwrap();
    assert_eq!((p.read_seq, p.last_seq), (3, 5));
    assert_eq!(unread(b.user_id).await, 2);
    // never backwards
    assert_eq!(
        store.mark_read(b.user_id, &id, 1).await.unwrap().read_seq,
        3
    );
    assert_eq!(
        store.mark_read(b.user_id, &id, 0).await.unwrap().read_seq,
        5
    );
    assert_eq!(unread(b.user_id).await, 0);
    // a pointer past the end stops at the last message
    assert_eq!(
        store.mark_read(b.user_id, &id, 99).await.unwrap().read_seq,
        5
    );
    assert_eq!(
        store
            .mark_read(outsider.user_id, &id, 0)
            .await
            .unwrap_err()
            .code,
        ErrorCode::Forbidden
    );
    assert_eq!(
        store
            .mark_read(b.user_id, &unique("nope"), 0)
            .await
            .unwrap_err()
            .code,
        ErrorCode::ConversationNotFound
    );
}

pub async fn conversation_list_has_world_first_and_last_message(store: Arc<dyn Store>) {
    let a = new_user(store.as_ref(), "la").await;
    let b = new_user(store.as_ref(), "lb").await;
    let c = new_user(store.as_ref(), "lc").await;
    let s = store
        .single_conversation(a.user_id, b.user_id)
        .await
        .unwrap();
    let g = new_group(store.as_ref(), &a, "list", &[c.user_id]).await;
    store
        .append(vec![text(&s.conversation_id, &b, "hello a", "")])
        .await
        .unwrap();
    let list = store.conversations(a.user_id).await.unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(list[0].conversation_id, WORLD_ID);
    assert_eq!(list[0].r#type, pb::ConversationType::World as i32);
    assert!(matches!(
        list[0].target,
        Some(pb::conversation_view::Target::World(_))
    ));
    let single = list
        .iter()
        .find(|c| c.conversation_id == s.conversation_id)
        .unwrap();
    match &single.target {
        Some(pb::conversation_view::Target::Peer(p)) => assert_eq!(p, &b),
        other => panic!("single target {other:?}"),
    }
    let last = single.last_message.as_ref().unwrap();
    assert_eq!(
        (last.content.as_str(), last.sender_name.as_str()),
        ("hello a", b.username.as_str())
    );
    assert_eq!(single.last_message_time_ms, last.send_time_ms);
    assert_eq!(single.unread_count, 1);
    let group = list
        .iter()
        .find(|c| c.conversation_id == g.conversation_id)
        .unwrap();
    match &group.target {
        Some(pb::conversation_view::Target::Group(t)) => {
            assert_eq!(
                (t.group_id, t.group_name.as_str(), t.member_count),
                (g.group_id, "list", 2)
            )
        }
        other => panic!("group target {other:?}"),
    }
    assert!(group.last_message.is_none());
    // the conversation with the newest message comes right after the world room
    assert_eq!(list[1].conversation_id, s.conversation_id);
    // world history before a user joined is not unread for them
    assert_eq!(list[0].unread_count, 0);

    // the world room counts its members (every user), and the count follows new users
    let world_members = |list: &[pb::ConversationView]| match &list[0].target {
        Some(pb::conversation_view::Target::World(w)) => w.member_count,
        other => panic!("world target {other:?}"),
    };
    let before = world_members(&list);
    assert!(before >= 3, "world member count {before} with three users");
    assert_eq!(
        store.conversation(WORLD_ID).await.unwrap().member_count,
        before
    );
    new_user(store.as_ref(), "ld").await;
    let list = store.conversations(a.user_id).await.unwrap();
    assert_eq!(world_members(&list), before + 1);
}

pub async fn revocations_last_until_the_token_expires(store: Arc<dyn Store>) {
    let now = crate::ids::now_ms() / 1000;
    let (live, dead) = (unique("jti-live"), unique("jti-dead"));
    assert!(
        store.revoke_token(&live, now + 3600).await.unwrap(),
        "first"
    );
    assert!(
        !store.revoke_token(&live, now + 3600).await.unwrap(),
        "again"
    );
    store.revoke_token(&dead, now - 1).await.unwrap();
    // of concurrent revocations of one token, exactly one is first
    let raced = unique("jti-raced");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (store, raced) = (store.clone(), raced.clone());
        tasks.spawn(async move { store.revoke_token(&raced, now + 60).await.unwrap() });
    }
    let mut firsts = 0;
    while let Some(first) = tasks.join_next().await {
        firsts += usize::from(first.unwrap());
    }
    assert_eq!(firsts, 1, "one first revocation of {raced}");
    let revoked = store.revoked_tokens(now).await.unwrap();
    let ids: Vec<&str> = revoked.iter().map(|r| r.token_id.as_str()).collect();
    assert_eq!(ids.iter().filter(|t| **t == live).count(), 1, "{ids:?}");
    assert!(
        !ids.contains(&dead.as_str()),
        "an expired revocation is still listed"
    );
    let r = revoked.iter().find(|r| r.token_id == live).unwrap();
    assert_eq!(r.expires_at, now + 3600);
}
