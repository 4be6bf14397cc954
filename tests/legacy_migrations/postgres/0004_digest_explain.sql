-- /settings explain on|off: a math line (key equation + one sentence) under each paper
-- of the chat's digest. Off by default.
ALTER TABLE chats ADD COLUMN explain_digest boolean NOT NULL DEFAULT false;
