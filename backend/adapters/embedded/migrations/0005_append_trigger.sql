-- An appended message moves its conversation's last message and its sender's read pointer
-- here, in the same statement as its INSERT (which takes the conversation's next seq
-- itself): each SQL statement is a round trip to sqlx's SQLite worker thread, and an
-- append was four of them per message before (issue 11).
CREATE TRIGGER messages_appended AFTER INSERT ON messages
BEGIN
    UPDATE conversations
        SET last_seq = NEW.seq, last_message_id = NEW.message_id, last_message_time = NEW.send_time
        WHERE id = NEW.conversation_id;
    UPDATE conversation_members SET read_seq = NEW.seq
        WHERE conversation_id = NEW.conversation_id AND user_id = NEW.sender_id;
END;
