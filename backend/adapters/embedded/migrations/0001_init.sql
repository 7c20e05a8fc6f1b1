-- ringchat schema (SQLite). Tables follow the GoChat seed: users, conversations, messages,
-- groups (chat_groups: GROUPS is reserved in MySQL 8), group_members, plus friends and
-- conversation_members (membership and read pointers).

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT    NOT NULL DEFAULT '',
    avatar        TEXT    NOT NULL DEFAULT '',
    is_guest      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL
);

CREATE TABLE friends (
    user_id    INTEGER NOT NULL,
    friend_id  INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, friend_id)
);

CREATE TABLE chat_groups (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT    NOT NULL,
    avatar          TEXT    NOT NULL DEFAULT '',
    owner_id        INTEGER NOT NULL,
    conversation_id TEXT    NOT NULL DEFAULT '',
    member_count    INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL
);

CREATE TABLE group_members (
    group_id  INTEGER NOT NULL,
    user_id   INTEGER NOT NULL,
    role      INTEGER NOT NULL,
    joined_at INTEGER NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_by_user ON group_members (user_id);

-- type: 1 single, 2 group, 3 world
CREATE TABLE conversations (
    id                TEXT    PRIMARY KEY,
    type              INTEGER NOT NULL,
    group_id          INTEGER NOT NULL DEFAULT 0,
    user_a            INTEGER NOT NULL DEFAULT 0,
    user_b            INTEGER NOT NULL DEFAULT 0,
    last_seq          INTEGER NOT NULL DEFAULT 0,
    last_message_id   INTEGER NOT NULL DEFAULT 0,
    last_message_time INTEGER NOT NULL DEFAULT 0,
    created_at        INTEGER NOT NULL
);

CREATE TABLE conversation_members (
    conversation_id TEXT    NOT NULL,
    user_id         INTEGER NOT NULL,
    read_seq        INTEGER NOT NULL DEFAULT 0,
    joined_at       INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX conversation_members_by_user ON conversation_members (user_id);

CREATE TABLE messages (
    message_id      INTEGER PRIMARY KEY,
    conversation_id TEXT    NOT NULL,
    seq             INTEGER NOT NULL,
    sender_id       INTEGER NOT NULL,
    type            INTEGER NOT NULL,
    content         TEXT    NOT NULL,
    send_time       INTEGER NOT NULL,
    temp_id         TEXT,
    UNIQUE (conversation_id, seq),
    UNIQUE (sender_id, temp_id)
);

INSERT INTO conversations (id, type, created_at) VALUES ('world', 3, 0);
