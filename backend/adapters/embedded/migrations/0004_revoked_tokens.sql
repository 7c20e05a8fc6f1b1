-- Logged-out tokens, kept until they would have expired: a restart must not bring a
-- revoked token back to life.
CREATE TABLE revoked_tokens (
    token_id   TEXT    PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
CREATE INDEX revoked_tokens_by_expiry ON revoked_tokens (expires_at);
