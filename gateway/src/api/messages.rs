//! History, read pointers, and the HTTP alternative to the WebSocket send.

use ringchat_core::model::DEFAULT_PAGE_SIZE;
use ringchat_core::{Error, ErrorCode};
use ringchat_proto as pb;
use serde::Serialize;

use super::{paging, path_id, query_int, seq_field, str_field, Ctx, Reply};
use crate::http::Response;
use crate::protocol::objects::{Message, Pagination, User};
use crate::protocol::SendMessage;

/// The history page: `data` is the messages, `pagination` sits beside it (contract).
#[derive(Serialize)]
struct HistoryBody<'a> {
    success: bool,
    message: &'static str,
    data: Vec<Message<'a>>,
    pagination: Pagination,
}

pub(super) async fn history(cx: &Ctx<'_>) -> Reply {
    let conversation_id = cx.param(0).to_string();
    let page = query_int(cx, "page")?.unwrap_or(1);
    let size = query_int(cx, "size")?.unwrap_or(DEFAULT_PAGE_SIZE);
    let (after_seq, before_seq) = (query_int(cx, "afterSeq")?, query_int(cx, "beforeSeq")?);
    // a size over MAX_PAGE_SIZE is served as MAX_PAGE_SIZE (the store caps it)
    if page < 1 || size < 1 {
        return Err(Error::invalid("page and size must be at least 1"));
    }
    let page = cx
        .as_caller(move |l, caller| async move {
            l.get_messages(pb::GetMessagesRequest {
                caller_id: caller.user_id,
                conversation_id,
                page,
                size,
                after_seq,
                before_seq,
            })
            .await
        })
        .await?;
    let p = page.pagination.unwrap_or_default();
    let body = HistoryBody {
        success: true,
        message: "ok",
        data: page.messages.iter().map(Message::from).collect(),
        pagination: Pagination {
            page: p.page,
            size: p.size,
            total: p.total,
            has_more: p.has_more,
        },
    };
    Ok(Response::json(200, &body))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReadState {
    read_seq: i64,
    unread_count: i64,
}

pub(super) async fn mark_read(cx: &Ctx<'_>) -> Reply {
    let seq_id = seq_field(&cx.body()?, "seqId")?;
    let conversation_id = cx.param(0).to_string();
    let p = cx
        .as_caller(move |l, caller| async move {
            l.mark_read(pb::CallerMarkReadRequest {
                caller_id: caller.user_id,
                conversation_id,
                seq_id,
            })
            .await
        })
        .await?;
    Ok(Response::ok(
        200,
        "read",
        ReadState {
            read_seq: p.read_seq,
            unread_count: p.last_seq - p.read_seq,
        },
    ))
}

pub(super) async fn send(cx: &Ctx<'_>) -> Reply {
    let m = SendMessage::from_json(&cx.req.body)
        .map_err(|e| Error::new(ErrorCode::InvalidMessage, e.message))?;
    let sent = cx
        .as_caller(move |l, caller| async move {
            l.send_message(pb::SendMessageRequest {
                caller_id: caller.user_id,
                conversation_id: m.conversation_id,
                content: m.content,
                r#type: m.kind as i32,
                temp_message_id: m.temp_message_id.unwrap_or_default(),
                mentions: m.mentions,
                mention_all: m.mention_all,
            })
            .await
        })
        .await?;
    Ok(Response::ok(201, "sent", Message::from(&sent)))
}

#[derive(Serialize)]
struct Amended<'a> {
    /// The message after the change.
    message: Option<Message<'a>>,
    /// The revoke or edit event: a new message in the conversation's seq stream.
    event: Option<Message<'a>>,
}

async fn amend(cx: &Ctx<'_>, revoke: bool, content: String) -> Reply {
    let message_id = path_id(cx.param(0), "messageId")?;
    let done = cx
        .as_caller(move |l, caller| async move {
            l.amend_message(pb::CallerAmendMessageRequest {
                caller_id: caller.user_id,
                message_id,
                revoke,
                content,
            })
            .await
        })
        .await?;
    Ok(Response::ok(
        200,
        if revoke {
            "message revoked"
        } else {
            "message edited"
        },
        Amended {
            message: done.message.as_ref().map(Message::from),
            event: done.event.as_ref().map(Message::from),
        },
    ))
}

/// `DELETE /api/messages/{messageId}`: revokes the message.
pub(super) async fn revoke(cx: &Ctx<'_>) -> Reply {
    amend(cx, true, String::new()).await
}

/// `PUT /api/messages/{messageId} {content}`: edits a text message.
pub(super) async fn edit(cx: &Ctx<'_>) -> Reply {
    let content = str_field(&cx.body()?, "content")?;
    amend(cx, false, content).await
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Readers<'a> {
    readers: Vec<User<'a>>,
    has_more: bool,
    read_count: i64,
    member_count: i64,
}

/// `GET /api/conversations/{conversationId}/messages/{messageId}/readers?after=&size=`.
pub(super) async fn readers(cx: &Ctx<'_>) -> Reply {
    let conversation_id = cx.param(0).to_string();
    let message_id = path_id(cx.param(1), "messageId")?;
    let (after_user_id, size) = paging(cx)?;
    let page = cx
        .as_caller(move |l, caller| async move {
            l.message_readers(pb::CallerReadersRequest {
                caller_id: caller.user_id,
                conversation_id,
                message_id,
                after_user_id,
                size,
            })
            .await
        })
        .await?;
    Ok(Response::ok(
        200,
        "ok",
        Readers {
            readers: page.users.iter().map(User::from).collect(),
            has_more: page.has_more,
            read_count: page.read_count,
            member_count: page.member_count,
        },
    ))
}
