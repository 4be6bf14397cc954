-- What a chat adapter must remember about messages it sent, kept here rather than in one
-- process's memory so that every worker, and every restart, sees it. Same tables and
-- meaning as the SQLite 0004; rows are pruned after a while (Store.prune_message_memory).

-- Which paper a sent message (an explanation, an answer) is about: a reply to it is a
-- follow-up question on that paper. No foreign key to chats: one-off commands create no
-- chat row.
CREATE TABLE message_papers (
    platform   text NOT NULL,
    chat_id    text NOT NULL,
    message_id text NOT NULL,
    paper_id   text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (platform, chat_id, message_id)
);

CREATE INDEX message_papers_created ON message_papers (created_at);

-- Button data too long for the platform (Telegram: 64 bytes), under a short key derived
-- from the data itself, so every worker computes the same key for the same button.
CREATE TABLE callbacks (
    key        text PRIMARY KEY,
    data       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()  -- refreshed when the button is sent again
);

CREATE INDEX callbacks_created ON callbacks (created_at);
