-- Profiles (a nickname beside the avatar), group descriptions, hidden single chats, and
-- friend requests with consent (GoChat 2.0): one row per (requester, target); status 0
-- pending, 1 accepted, 2 rejected, 3 blocked; times in unix seconds.
ALTER TABLE users ADD COLUMN nickname TEXT NOT NULL DEFAULT '';
ALTER TABLE chat_groups ADD COLUMN description TEXT NOT NULL DEFAULT '';
-- a member deleted the conversation from their list when its last seq was this: it stays
-- hidden until a later message (NULL: shown)
ALTER TABLE conversation_members ADD COLUMN hidden_seq INTEGER;

CREATE TABLE friend_requests (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    requester_id INTEGER NOT NULL,
    target_id    INTEGER NOT NULL,
    status       INTEGER NOT NULL DEFAULT 0,
    message      TEXT    NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    UNIQUE (requester_id, target_id)
);
CREATE INDEX friend_requests_by_target ON friend_requests (target_id, updated_at);
