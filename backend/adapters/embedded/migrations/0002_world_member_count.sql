-- The world room's member count (every user is a member), kept in the row instead of
-- counted per request: clients show it in the room's header.
ALTER TABLE conversations ADD COLUMN member_count INTEGER NOT NULL DEFAULT 0;
UPDATE conversations
   SET member_count = (SELECT COUNT(*) FROM conversation_members WHERE conversation_id = 'world')
 WHERE id = 'world';
