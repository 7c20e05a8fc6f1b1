//! History, read pointers, and the HTTP alternative to the WebSocket send.

use ringchat_core::model::DEFAULT_PAGE_SIZE;
use ringchat_core::{Error, ErrorCode};
use ringchat_proto as pb;
use serde::Serialize;

use super::{query_int, seq_field, Ctx, Reply};
use crate::http::Response;
use crate::protocol::objects::{Message, Pagination};
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
            })
            .await
        })
        .await?;
    Ok(Response::ok(201, "sent", Message::from(&sent)))
}
