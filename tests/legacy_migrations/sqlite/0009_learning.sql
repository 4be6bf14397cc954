-- What a chat teaches its ranking (issue 14): votes, saved papers, topics in plain words,
-- its learning preferences and its fitted model. Every row belongs to one chat row and
-- goes with it (ON DELETE CASCADE; a Telegram migration re-keys the chat row itself).
-- Instants are fixed-width UTC text as in 0002.

-- One row per member and paper: a group's members all vote for the group; voting again
-- replaces the member's vote (idempotent), and retracting deletes it.
CREATE TABLE votes (
    chat       INTEGER NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    paper_id   TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    value      INTEGER NOT NULL CHECK (value IN (-1, 1)),
    voted_at   TEXT NOT NULL,
    PRIMARY KEY (chat, paper_id, user_id)
) WITHOUT ROWID;

-- The chat's library (/save, /saved, /export bibtex).
CREATE TABLE saved_papers (
    chat       INTEGER NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    paper_id   TEXT NOT NULL,
    saved_at   TEXT NOT NULL,
    PRIMARY KEY (chat, paper_id)
) WITHOUT ROWID;

-- Plain-words topics of a subscription (`topic:"…"`), matched by meaning.
CREATE TABLE topics (
    chat       INTEGER NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    feed       TEXT NOT NULL,
    topic      TEXT NOT NULL,
    PRIMARY KEY (chat, feed, topic)
) WITHOUT ROWID;

-- Learning preferences and the fitted model (float32 weights), one row per chat.
CREATE TABLE chat_learning (
    chat            INTEGER PRIMARY KEY REFERENCES chats (id) ON DELETE CASCADE,
    quality         TEXT NOT NULL DEFAULT 'normal' CHECK (quality IN ('strict', 'normal', 'all')),
    cadence         TEXT NOT NULL DEFAULT 'daily' CHECK (cadence IN ('daily', 'weekly')),
    weekly_day      INTEGER NOT NULL DEFAULT 0 CHECK (weekly_day BETWEEN 0 AND 6),
    topic_threshold REAL,
    model           BLOB,
    model_votes     INTEGER NOT NULL DEFAULT 0,
    last_weekly     TEXT,  -- local date of the last weekly digest
    updated_at      TEXT NOT NULL
);
