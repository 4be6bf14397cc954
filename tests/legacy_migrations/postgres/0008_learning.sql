-- What a chat teaches its ranking (issue 14): votes, saved papers, topics in plain words,
-- its learning preferences and its fitted model. Same tables and meaning as the SQLite 0009;
-- every row goes with its chat row (ON DELETE CASCADE).

CREATE TABLE votes (
    chat       bigint NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    paper_id   text NOT NULL,
    user_id    text NOT NULL,
    value      smallint NOT NULL CHECK (value IN (-1, 1)),
    voted_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chat, paper_id, user_id)
);

CREATE TABLE saved_papers (
    chat       bigint NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    paper_id   text NOT NULL,
    saved_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chat, paper_id)
);

CREATE TABLE topics (
    chat       bigint NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    feed       text NOT NULL,
    topic      text NOT NULL,
    PRIMARY KEY (chat, feed, topic)
);

CREATE TABLE chat_learning (
    chat            bigint PRIMARY KEY REFERENCES chats (id) ON DELETE CASCADE,
    quality         text NOT NULL DEFAULT 'normal' CHECK (quality IN ('strict', 'normal', 'all')),
    cadence         text NOT NULL DEFAULT 'daily' CHECK (cadence IN ('daily', 'weekly')),
    weekly_day      smallint NOT NULL DEFAULT 0 CHECK (weekly_day BETWEEN 0 AND 6),
    topic_threshold real,
    model           bytea,
    model_votes     integer NOT NULL DEFAULT 0,
    last_weekly     date,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
