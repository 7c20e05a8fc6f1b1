//! Domain rules shared by the store adapters, im-logic and the gateway: conversation ids,
//! the world room, message types and history paging.

use ringchat_proto as pb;

use crate::error::{Error, Result};

/// The world room's conversation id: every user reads and writes it.
pub const WORLD_ID: &str = "world";
/// The service name gateways register under in discovery.
pub const GATEWAY_SERVICE: &str = "im-gateway";
/// Service names in discovery.
pub const LOGIC_SERVICE: &str = "im-logic";
pub const REPO_SERVICE: &str = "im-repo";
pub const TASK_SERVICE: &str = "im-task";
/// Consumer groups of the bus topics.
pub const LOGIC_GROUP: &str = "im-logic";
pub const TASK_GROUP: &str = "im-task";
/// Longest client idempotency key accepted.
pub const MAX_TEMP_ID_LEN: usize = 128;
/// History page size when the client does not ask for one, and the largest it may ask for.
pub const DEFAULT_PAGE_SIZE: i64 = 50;
pub const MAX_PAGE_SIZE: i64 = 200;

pub fn single_conversation_id(a: i64, b: i64) -> String {
    format!("s_{}_{}", a.min(b), a.max(b))
}

/// Group conversation ids start with this.
pub const GROUP_ID_PREFIX: &str = "g_";

pub fn group_conversation_id(group_id: i64) -> String {
    format!("{GROUP_ID_PREFIX}{group_id}")
}

pub fn world_target(member_count: i64) -> pb::WorldTarget {
    pb::WorldTarget {
        member_count,
        group_name: "World".into(),
        avatar: String::new(),
        description: "Everyone, everywhere: the room every user is in".into(),
    }
}

/// A username as stored and looked up: NFKC-normalized, so compatibility forms (fullwidth
/// letters, ligatures) fold into their plain form. Refused (`INVALID_ARGUMENT`): whitespace,
/// control and format characters (zero-width, bidi overrides, BOM, soft hyphen), `/`, and
/// any non-ASCII character that UTS #39 does not allow in identifiers.
pub fn normalize_username(raw: &str) -> Result<String> {
    use unicode_normalization::UnicodeNormalization;
    use unicode_security::GeneralSecurityProfile;
    let name: String = raw.nfkc().collect();
    let bad = name.chars().find(|&c| {
        c.is_whitespace()
            || c.is_control()
            || c == '/'
            || (!c.is_ascii() && !c.identifier_allowed())
            || (c.is_ascii() && !(c.is_ascii_alphanumeric() || "_-.".contains(c)))
    });
    if let Some(c) = bad {
        return Err(Error::invalid(format!(
            "usernames may not contain {:?} (U+{:04X}): use letters, digits, '_', '-' or '.'",
            c, c as u32
        )));
    }
    Ok(name)
}

/// The look-alike key of a username (the UTS #39 skeleton of its lowercase form): names
/// with the same key look the same to a reader (`alice`, `аlice` with a Cyrillic a,
/// `ALICE`), so a store refuses a new name whose key an existing name has.
pub fn username_skeleton(name: &str) -> String {
    use unicode_security::confusable_detection::skeleton;
    // names are unique regardless of case, so the key is case-folded first; that turns a
    // capital I (which looks like l) into i, so i and l share the key too
    skeleton(&name.to_lowercase())
        .map(|c| if c == 'i' { 'l' } else { c })
        .collect()
}

/// Parses a client message type: a name (`"text"`) or the matching integer (`1`).
pub fn parse_message_type_name(s: &str) -> Option<pb::MessageType> {
    Some(match s.to_ascii_lowercase().as_str() {
        "text" => pb::MessageType::Text,
        "image" => pb::MessageType::Image,
        "file" => pb::MessageType::File,
        "system" => pb::MessageType::System,
        "voice" => pb::MessageType::Voice,
        "video" => pb::MessageType::Video,
        other => return other.parse::<i64>().ok().and_then(message_type_from_int),
    })
}

pub fn message_type_from_int(i: i64) -> Option<pb::MessageType> {
    match i {
        1..=6 => pb::MessageType::try_from(i as i32).ok(),
        _ => None,
    }
}

pub fn message_type_name(t: i32) -> &'static str {
    match pb::MessageType::try_from(t).unwrap_or(pb::MessageType::Text) {
        pb::MessageType::Image => "image",
        pb::MessageType::File => "file",
        pb::MessageType::System => "system",
        pb::MessageType::Voice => "voice",
        pb::MessageType::Video => "video",
        pb::MessageType::Revoke => "revoke",
        pb::MessageType::Edit => "edit",
        _ => "text",
    }
}

/// A validated history request: newest page by number, or a cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryQuery {
    pub page: i64,
    pub size: i64,
    pub cursor: Cursor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// Page `page` counted from the newest message.
    Page,
    /// Messages with seq > n, oldest first (n = 0: from the first message): sync.
    After(i64),
    /// Messages with seq < n, the newest `size` of them: scrolling back.
    Before(i64),
}

impl HistoryQuery {
    pub fn from_request(req: &pb::HistoryRequest) -> Result<Self> {
        if req.page < 0 || req.size < 0 {
            return Err(Error::invalid("page and size must not be negative"));
        }
        let cursor = match (req.after_seq, req.before_seq) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid("give afterSeq or beforeSeq, not both"))
            }
            (Some(a), None) if a >= 0 => Cursor::After(a),
            (None, Some(b)) if b >= 0 => Cursor::Before(b),
            (None, None) => Cursor::Page,
            _ => {
                return Err(Error::invalid(
                    "afterSeq and beforeSeq must not be negative",
                ))
            }
        };
        let size = if req.size == 0 {
            DEFAULT_PAGE_SIZE
        } else {
            req.size.min(MAX_PAGE_SIZE)
        };
        Ok(HistoryQuery {
            page: req.page.max(1),
            size,
            cursor,
        })
    }

    /// The inclusive seq range to read, and whether to read it newest first. The caller
    /// reads at most `size + 1` rows in that order, then calls [`HistoryQuery::finish`].
    pub fn seq_window(&self, last_seq: i64) -> (i64, i64, bool) {
        match self.cursor {
            // saturating: any i64 a client sends is a valid (perhaps empty) window
            Cursor::After(a) => (a.saturating_add(1), i64::MAX, false),
            Cursor::Before(b) => (1, b.saturating_sub(1), true),
            Cursor::Page => {
                let hi = self.page_top(last_seq);
                let lo = hi.saturating_sub(self.size - 1).max(1);
                (lo, hi, false)
            }
        }
    }

    /// The newest seq on page `page` (below 1: the page is past the oldest message).
    fn page_top(&self, last_seq: i64) -> i64 {
        last_seq.saturating_sub((self.page - 1).saturating_mul(self.size))
    }

    /// Trims the extra row, orders oldest first and builds the pagination.
    pub fn finish(&self, rows: &mut Vec<pb::ChatMessage>, last_seq: i64) -> pb::HistoryPage {
        let has_more = match self.cursor {
            Cursor::Page => self.page_top(last_seq).saturating_sub(self.size) >= 1,
            Cursor::After(_) | Cursor::Before(_) => {
                let more = rows.len() as i64 > self.size;
                rows.truncate(self.size as usize);
                more
            }
        };
        if matches!(self.cursor, Cursor::Before(_)) {
            rows.reverse();
        }
        pb::HistoryPage {
            messages: std::mem::take(rows),
            pagination: Some(pb::Pagination {
                page: self.page,
                size: self.size,
                total: last_seq,
                has_more,
            }),
        }
    }
}

/// The error for a user who is not in a group.
pub fn not_in_group(group_id: i64, user_id: i64) -> Error {
    Error::new(
        crate::ErrorCode::NotFound,
        format!("user {user_id} is not a member of group {group_id}"),
    )
}

/// Friend request statuses (GoChat 2.0).
pub const REQUEST_PENDING: i32 = 0;
pub const REQUEST_ACCEPTED: i32 = 1;
pub const REQUEST_REJECTED: i32 = 2;
pub const REQUEST_BLOCKED: i32 = 3;

/// The error for a request that is not the caller's to answer (or does not exist).
pub fn no_friend_request(request_id: i64) -> Error {
    Error::new(
        crate::ErrorCode::NotFound,
        format!("no friend request {request_id} was sent to you"),
    )
}

/// After an answer: the request must now be in the answered status (a pending one took
/// it, or it had it already); otherwise it was answered differently before (`CONFLICT`).
pub fn check_answered(request: &pb::FriendRequest, status: i32) -> Result<()> {
    if request.status == status {
        return Ok(());
    }
    let was = match request.status {
        REQUEST_ACCEPTED => "accepted",
        REQUEST_REJECTED => "rejected",
        REQUEST_BLOCKED => "blocked",
        _ => "pending",
    };
    Err(Error::new(
        crate::ErrorCode::Conflict,
        format!("friend request {} was already {was}", request.request_id),
    ))
}

/// A revoke or edit event (stored by the server in the seq stream, never sent by clients).
pub fn is_amendment(t: i32) -> bool {
    t == pb::MessageType::Revoke as i32 || t == pb::MessageType::Edit as i32
}

/// Bits of a stored message's `flags`.
pub const FLAG_EDITED: i64 = 1;
pub const FLAG_REVOKED: i64 = 2;
pub const FLAG_MENTION_ALL: i64 = 4;
/// Most users one message may @-mention.
pub const MAX_MENTIONS: usize = 50;
/// Mentions are counted among this many of a conversation's newest unread messages.
pub const MENTION_SCAN: i64 = 1000;

/// The `flags` a new message is stored with.
pub fn draft_flags(d: &pb::MessageDraft) -> i64 {
    if d.mention_all {
        FLAG_MENTION_ALL
    } else {
        0
    }
}

/// Mentioned user ids as stored: `,1,2,` (so `,<id>,` finds one), or empty.
pub fn mention_list(ids: &[i64]) -> String {
    if ids.is_empty() {
        return String::new();
    }
    let mut s = String::from(",");
    for id in ids {
        s.push_str(&id.to_string());
        s.push(',');
    }
    s
}

/// The stored extras of a message (its `ref_id`, `flags` and `mentions` columns), as the
/// rest of a [`pb::ChatMessage`].
pub fn message_extras(ref_id: i64, flags: i64, mentions: String) -> pb::ChatMessage {
    pb::ChatMessage {
        ref_message_id: ref_id,
        edited: flags & FLAG_EDITED != 0,
        revoked: flags & FLAG_REVOKED != 0,
        mention_all: flags & FLAG_MENTION_ALL != 0,
        mentions: mentions.split(',').filter_map(|s| s.parse().ok()).collect(),
        ..Default::default()
    }
}

/// `NOT_FOUND` for a message id.
pub fn message_not_found(message_id: i64) -> Error {
    Error::new(
        crate::ErrorCode::NotFound,
        format!("message {message_id} not found"),
    )
}

/// A SQL `LIKE` pattern for names starting with `prefix`, with `!` as the escape character
/// (`... LIKE ? ESCAPE '!'`): `%`, `_` and `!` in the prefix match themselves.
pub fn like_prefix(prefix: &str) -> String {
    let mut p = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '!') {
            p.push('!');
        }
        p.push(c);
    }
    p.push('%');
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_types_by_name_and_number() {
        assert_eq!(parse_message_type_name("text"), Some(pb::MessageType::Text));
        assert_eq!(
            parse_message_type_name("VIDEO"),
            Some(pb::MessageType::Video)
        );
        assert_eq!(parse_message_type_name("5"), Some(pb::MessageType::Voice));
        assert_eq!(parse_message_type_name("7"), None);
        assert_eq!(parse_message_type_name("gif"), None);
        assert_eq!(message_type_from_int(4), Some(pb::MessageType::System));
        assert_eq!(message_type_from_int(0), None);
    }

    #[test]
    fn extreme_cursors_and_pages_are_empty_windows_not_overflows() {
        let q = |page, after_seq, before_seq| {
            HistoryQuery::from_request(&pb::HistoryRequest {
                conversation_id: "c".into(),
                page,
                size: MAX_PAGE_SIZE,
                after_seq,
                before_seq,
            })
            .unwrap()
        };
        let (lo, hi, _) = q(1, Some(i64::MAX), None).seq_window(10);
        assert!(
            lo > hi || lo > 10,
            "after i64::MAX reads nothing: {lo}..{hi}"
        );
        for page in [i64::MAX, i64::MAX / 2, 1 << 62] {
            let query = q(page, None, None);
            let (_, hi, _) = query.seq_window(10);
            assert!(hi < 1, "page {page} is past the first message");
            let done = query.finish(&mut Vec::new(), 10);
            assert!(!done.pagination.unwrap().has_more);
        }
        let (lo, hi, newest_first) = q(1, None, Some(0)).seq_window(10);
        assert!(lo > hi && newest_first);
    }

    #[test]
    fn usernames_fold_compatibility_forms_and_refuse_invisible_characters() {
        assert_eq!(normalize_username("ａｌｉｃｅ").unwrap(), "alice");
        assert_eq!(normalize_username("bob_1.x-y").unwrap(), "bob_1.x-y");
        assert_eq!(normalize_username("José").unwrap(), "José");
        for bad in [
            "ali\u{200b}ce", // zero-width space
            "ali\u{202e}ce", // right-to-left override
            "\u{feff}alice", // BOM
            "ali\u{ad}ce",   // soft hyphen
            "ali ce",
            "ali/ce",
            "a\u{7}b",
        ] {
            assert!(normalize_username(bad).is_err(), "{bad:?} accepted");
        }
        let key = username_skeleton("alice");
        for look_alike in ["ALICE", "\u{430}lice", "aIice"] {
            assert_eq!(username_skeleton(look_alike), key, "{look_alike:?}");
        }
        assert_ne!(username_skeleton("alicia"), key);
    }

    #[test]
    fn page_windows() {
        let q = HistoryQuery::from_request(&pb::HistoryRequest {
            page: 2,
            size: 10,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(q.seq_window(25), (6, 15, false));
        let q = HistoryQuery::from_request(&pb::HistoryRequest {
            size: 1000,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(q.size, MAX_PAGE_SIZE);
        assert!(HistoryQuery::from_request(&pb::HistoryRequest {
            after_seq: Some(1),
            before_seq: Some(5),
            ..Default::default()
        })
        .is_err());
        let sync = HistoryQuery::from_request(&pb::HistoryRequest {
            after_seq: Some(0),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(sync.seq_window(9), (1, i64::MAX, false));
    }
}
