-- Delivery: when each chat is next due, and the outbox of messages to send.
-- Instants here are UTC ISO 8601 with microseconds ('YYYY-MM-DDTHH:MM:SS.ffffff+00:00'),
-- one fixed width, so comparing the text compares the instants.

-- NULL: not scheduled yet. The scheduler fills it from the chat's settings; the triggers
-- below clear it whenever those settings change, so a new time takes effect at once.
ALTER TABLE chats ADD COLUMN next_run_at TEXT;

CREATE INDEX chats_next_run ON chats (next_run_at) WHERE active = 1;

CREATE TRIGGER chats_reschedule AFTER UPDATE OF timezone, delivery_time, weekdays, active
ON chats
WHEN NEW.timezone IS NOT OLD.timezone
  OR NEW.delivery_time IS NOT OLD.delivery_time
  OR NEW.weekdays IS NOT OLD.weekdays
  OR (NEW.active = 1 AND OLD.active = 0)
BEGIN
    UPDATE chats SET next_run_at = NULL WHERE id = NEW.id;
END;

-- A chat's first subscription starts its schedule from now, not from a stale next run.
CREATE TRIGGER subscriptions_first AFTER INSERT ON subscriptions
WHEN (SELECT COUNT(*) FROM subscriptions WHERE chat = NEW.chat) = 1
BEGIN
    UPDATE chats SET next_run_at = NULL WHERE id = NEW.chat;
END;

-- One row per message to send. The scheduler writes a digest's rows in the transaction
-- that advances the chat's next_run_at; senders claim rows with a lease, so rows of a
-- crashed sender become claimable again once their lease expires.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    idem_key        TEXT NOT NULL UNIQUE,
    chat            INTEGER NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    platform        TEXT NOT NULL,  -- the chat's, copied so claims need no join
    seq             INTEGER NOT NULL,
    body            TEXT NOT NULL,  -- the Message as JSON (bot/serialize.py)
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'sending', 'sent', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    lease_until     TEXT,
    worker          TEXT,
    message_ids     TEXT,  -- JSON list of the platform's ids, once sent
    error           TEXT,
    created_at      TEXT NOT NULL,
    sent_at         TEXT
);

-- Claims look for work by status and time; done rows ('sent', 'dead') are not indexed.
CREATE INDEX outbox_ready ON outbox (platform, next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX outbox_leased ON outbox (platform, lease_until, id) WHERE status = 'sending';
CREATE INDEX outbox_chat ON outbox (chat, status);
