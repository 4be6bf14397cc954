-- Delivery: when each chat is next due, and the outbox of messages to send.
-- Same tables and meaning as the SQLite 0002; instants are timestamptz.

-- NULL: not scheduled yet. The scheduler fills it from the chat's settings; the triggers
-- below clear it whenever those settings change, so a new time takes effect at once.
ALTER TABLE chats ADD COLUMN next_run_at timestamptz;

-- id too: due chats are read in (next_run_at, id) order, and a million chats due at one
-- instant must not be sorted again for every batch.
CREATE INDEX chats_next_run ON chats (next_run_at, id) WHERE active;

CREATE FUNCTION paperboy_chats_reschedule() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.timezone IS DISTINCT FROM OLD.timezone
       OR NEW.delivery_time IS DISTINCT FROM OLD.delivery_time
       OR NEW.weekdays IS DISTINCT FROM OLD.weekdays
       OR (NEW.active AND NOT OLD.active) THEN
        NEW.next_run_at := NULL;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER chats_reschedule BEFORE UPDATE ON chats
FOR EACH ROW EXECUTE FUNCTION paperboy_chats_reschedule();

-- A chat's first subscription starts its schedule from now, not from a stale next run.
CREATE FUNCTION paperboy_subscriptions_first() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM subscriptions WHERE chat = NEW.chat AND id <> NEW.id) THEN
        UPDATE chats SET next_run_at = NULL WHERE id = NEW.chat AND next_run_at IS NOT NULL;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER subscriptions_first AFTER INSERT ON subscriptions
FOR EACH ROW EXECUTE FUNCTION paperboy_subscriptions_first();

-- One row per message to send. The scheduler writes a digest's rows in the transaction
-- that advances the chat's next_run_at. Senders claim rows with FOR UPDATE SKIP LOCKED and
-- a lease, one chat at a time per worker, so several workers share the table safely and
-- the rows of a worker that died become claimable again once their lease expires.
CREATE TABLE outbox (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    idem_key        text NOT NULL UNIQUE,
    chat            bigint NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    platform        text NOT NULL,  -- the chat's, copied so claims need no join
    seq             integer NOT NULL,
    body            text NOT NULL,  -- the Message as JSON (bot/serialize.py)
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'sending', 'sent', 'dead')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    lease_until     timestamptz,
    worker          text,
    message_ids     text,  -- JSON list of the platform's ids, once sent
    error           text,
    created_at      timestamptz NOT NULL,
    sent_at         timestamptz
);

-- Claims look for work by status and time; done rows ('sent', 'dead') are not indexed.
CREATE INDEX outbox_ready ON outbox (platform, next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX outbox_leased ON outbox (platform, lease_until, id) WHERE status = 'sending';
CREATE INDEX outbox_chat ON outbox (chat, status);
