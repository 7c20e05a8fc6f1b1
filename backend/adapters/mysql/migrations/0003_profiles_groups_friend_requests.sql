-- Profiles (a nickname beside the avatar), group descriptions, hidden single chats, and
-- friend requests with consent (GoChat 2.0): one row per (requester, target); status 0
-- pending, 1 accepted, 2 rejected, 3 blocked; times in unix seconds. (A rerun after a
-- crash finds the columns: the runner takes "duplicate column" of an ADD COLUMN as done.)
ALTER TABLE users ADD COLUMN nickname VARCHAR(255) NOT NULL DEFAULT '';
ALTER TABLE chat_groups ADD COLUMN description VARCHAR(2048) NOT NULL DEFAULT '';
-- a member deleted the conversation from their list when its last seq was this: it stays
-- hidden until a later message (NULL: shown)
ALTER TABLE conversation_members ADD COLUMN hidden_seq BIGINT NULL;

CREATE TABLE IF NOT EXISTS friend_requests (
    id           BIGINT        NOT NULL AUTO_INCREMENT,
    requester_id BIGINT        NOT NULL,
    target_id    BIGINT        NOT NULL,
    status       INT           NOT NULL DEFAULT 0,
    message      VARCHAR(1024) NOT NULL DEFAULT '',
    created_at   BIGINT        NOT NULL,
    updated_at   BIGINT        NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY friend_requests_pair (requester_id, target_id),
    KEY friend_requests_by_target (target_id, updated_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
