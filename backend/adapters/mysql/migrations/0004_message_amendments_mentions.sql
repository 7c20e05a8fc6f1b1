-- Revoke, edit and @-mentions (issue 12). flags: 1 edited, 2 revoked, 4 mentions everyone;
-- mentions: the mentioned user ids as ",1,2," (empty: none); ref_id: the message a revoke
-- or edit event (types 7 and 8) changes. (A rerun after a crash finds the columns: the
-- runner takes "duplicate column" of an ADD COLUMN as done.)
ALTER TABLE messages ADD COLUMN ref_id BIGINT NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN flags INT NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN mentions VARCHAR(2048) NOT NULL DEFAULT '';
