-- ringchat schema (MySQL 8 / MariaDB 10.6+, InnoDB, utf8mb4): the SQLite schema of
-- backend/core/migrations/sqlite/0001..0003 in one step, since a MySQL database starts
-- fresh. Tables follow the GoChat seed: users, conversations, messages, groups
-- (chat_groups: GROUPS is reserved in MySQL 8), group_members, plus friends and
-- conversation_members (membership and read pointers).
--
-- Every string column compares byte for byte (utf8mb4_bin), as SQLite's TEXT does:
-- conversation ids, temp ids and token ids are case-sensitive. Usernames compare without
-- ASCII case (SQLite's COLLATE NOCASE) through `username_key`, which the adapter fills.
--
-- MySQL commits DDL implicitly, so a migration is not atomic: every statement here may be
-- run again after a crash half-way (IF NOT EXISTS, INSERT IGNORE).

CREATE TABLE IF NOT EXISTS users (
    id            BIGINT        NOT NULL AUTO_INCREMENT,
    username      VARCHAR(255)  NOT NULL,
    -- the username folded to ASCII lowercase: unique, and the key every lookup uses
    username_key  VARCHAR(255)  NOT NULL,
    -- the look-alike key (model::username_skeleton); unique, so two instances cannot
    -- both create look-alike names (SQLite checks it under its single writer)
    skeleton      VARCHAR(700)  NOT NULL,
    password_hash VARCHAR(512)  NOT NULL DEFAULT '',
    avatar        VARCHAR(2048) NOT NULL DEFAULT '',
    is_guest      TINYINT       NOT NULL DEFAULT 0,
    created_at    BIGINT        NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY users_by_name (username_key),
    UNIQUE KEY users_by_skeleton (skeleton)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS friends (
    user_id    BIGINT NOT NULL,
    friend_id  BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, friend_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS chat_groups (
    id              BIGINT        NOT NULL AUTO_INCREMENT,
    name            VARCHAR(512)  NOT NULL,
    avatar          VARCHAR(2048) NOT NULL DEFAULT '',
    owner_id        BIGINT        NOT NULL,
    conversation_id VARCHAR(64)   NOT NULL DEFAULT '',
    member_count    BIGINT        NOT NULL DEFAULT 0,
    created_at      BIGINT        NOT NULL,
    PRIMARY KEY (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS group_members (
    group_id  BIGINT NOT NULL,
    user_id   BIGINT NOT NULL,
    role      INT    NOT NULL,
    joined_at BIGINT NOT NULL,
    PRIMARY KEY (group_id, user_id),
    KEY group_members_by_user (user_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- type: 1 single, 2 group, 3 world. The row is also the conversation's sequence counter:
-- an append locks it (SELECT ... FOR UPDATE) and moves last_seq forward.
CREATE TABLE IF NOT EXISTS conversations (
    id                VARCHAR(64) NOT NULL,
    type              INT         NOT NULL,
    group_id          BIGINT      NOT NULL DEFAULT 0,
    user_a            BIGINT      NOT NULL DEFAULT 0,
    user_b            BIGINT      NOT NULL DEFAULT 0,
    last_seq          BIGINT      NOT NULL DEFAULT 0,
    last_message_id   BIGINT      NOT NULL DEFAULT 0,
    last_message_time BIGINT      NOT NULL DEFAULT 0,
    -- the world room's member count (every user is a member); groups keep theirs in
    -- chat_groups
    member_count      BIGINT      NOT NULL DEFAULT 0,
    created_at        BIGINT      NOT NULL,
    PRIMARY KEY (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS conversation_members (
    conversation_id VARCHAR(64) NOT NULL,
    user_id         BIGINT      NOT NULL,
    read_seq        BIGINT      NOT NULL DEFAULT 0,
    joined_at       BIGINT      NOT NULL,
    PRIMARY KEY (conversation_id, user_id),
    KEY conversation_members_by_user (user_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Clustered by (conversation, seq): a history page is one range of the primary key.
-- MEDIUMTEXT: the default content limit (64 KiB) is just over TEXT's 65535 bytes.
CREATE TABLE IF NOT EXISTS messages (
    conversation_id VARCHAR(64)  NOT NULL,
    seq             BIGINT       NOT NULL,
    message_id      BIGINT       NOT NULL,
    sender_id       BIGINT       NOT NULL,
    type            INT          NOT NULL,
    content         MEDIUMTEXT   NOT NULL,
    send_time       BIGINT       NOT NULL,
    temp_id         VARCHAR(255) NULL,
    PRIMARY KEY (conversation_id, seq),
    UNIQUE KEY messages_by_id (message_id),
    UNIQUE KEY messages_by_temp_id (sender_id, temp_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

INSERT IGNORE INTO conversations (id, type, created_at) VALUES ('world', 3, 0);
