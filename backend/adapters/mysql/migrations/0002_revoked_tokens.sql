-- Logged-out tokens, kept until they would have expired: a restart must not bring a
-- revoked token back to life.
CREATE TABLE IF NOT EXISTS revoked_tokens (
    token_id   VARCHAR(255) NOT NULL,
    expires_at BIGINT       NOT NULL,
    PRIMARY KEY (token_id),
    KEY revoked_tokens_by_expiry (expires_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
