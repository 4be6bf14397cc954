-- What a chat adapter must remember about messages it sent, kept here rather than in one
-- process's memory so that every worker, and every restart, sees it. Rows are pruned
-- after a while (Store.prune_message_memory); created_at is fixed-width UTC text as in 0002.

-- Which paper a sent message (an explanation, an answer) is about: a reply to it is a
-- follow-up question on that paper. Keyed by the platform's chat and message ids; no
-- foreign key to chats, as one-off commands create no chat row.
CREATE TABLE message_papers (
    platform   TEXT NOT NULL,
    chat_id    TEXT NOT NULL,
    message_id TEXT NOT NULL,
    paper_id   TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (platform, chat_id, message_id)
) WITHOUT ROWID;

CREATE INDEX message_papers_created ON message_papers (created_at);

-- Button data too long for the platform (Telegram: 64 bytes), under a short key derived
-- from the data itself, so every worker computes the same key for the same button.
CREATE TABLE callbacks (
    key        TEXT PRIMARY KEY,
    data       TEXT NOT NULL,
    created_at TEXT NOT NULL  -- refreshed whenever the button is sent again
) WITHOUT ROWID;

CREATE INDEX callbacks_created ON callbacks (created_at);
