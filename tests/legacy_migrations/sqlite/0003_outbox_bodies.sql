-- Digest messages are often identical across chats (same feeds, same settings): store
-- each distinct body once. outbox.body is '' when body_hash points here.
CREATE TABLE outbox_bodies (
    hash TEXT PRIMARY KEY,
    body TEXT NOT NULL
) WITHOUT ROWID;

ALTER TABLE outbox ADD COLUMN body_hash TEXT;
