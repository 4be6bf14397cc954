-- Paperboy schema, SQLite dialect. Dates and times are ISO 8601 text (UTC for instants);
-- list fields are JSON arrays. The runner records this file in schema_version.

-- A cache of what the sources returned, keyed by the versionless arXiv id.
CREATE TABLE papers (
    id            TEXT PRIMARY KEY,
    version       INTEGER,
    title         TEXT NOT NULL,
    authors       TEXT NOT NULL DEFAULT '[]',
    abstract      TEXT NOT NULL DEFAULT '',
    categories    TEXT NOT NULL DEFAULT '[]',
    published     TEXT,
    updated       TEXT,
    comment       TEXT,
    journal_ref   TEXT,
    doi           TEXT,
    upvotes       INTEGER,
    ai_summary    TEXT,
    ai_keywords   TEXT NOT NULL DEFAULT '[]',
    github_repo   TEXT,
    github_stars  INTEGER,
    project_page  TEXT,
    announce_type TEXT,
    fetched_at    TEXT NOT NULL
);

-- One fetch per feed per day, however many chats follow the feed.
CREATE TABLE feed_fetches (
    feed       TEXT NOT NULL,
    day        TEXT NOT NULL,
    announced  TEXT,  -- NULL: nothing was announced that day (weekend, holiday)
    fetched_at TEXT NOT NULL,
    PRIMARY KEY (feed, day)
);

-- No foreign key to papers: a feed may be saved before (or without) its papers.
CREATE TABLE feed_items (
    feed     TEXT NOT NULL,
    day      TEXT NOT NULL,
    position INTEGER NOT NULL,
    paper_id TEXT NOT NULL,
    PRIMARY KEY (feed, day, position),
    FOREIGN KEY (feed, day) REFERENCES feed_fetches (feed, day) ON DELETE CASCADE
);

-- thread_id is '' rather than NULL so the unique constraint also covers thread-less chats.
CREATE TABLE chats (
    id            INTEGER PRIMARY KEY,
    platform      TEXT NOT NULL,
    chat_id       TEXT NOT NULL,
    thread_id     TEXT NOT NULL DEFAULT '',
    timezone      TEXT NOT NULL DEFAULT 'UTC',
    delivery_time TEXT NOT NULL DEFAULT '09:00' CHECK (delivery_time GLOB '[0-2][0-9]:[0-5][0-9]'),
    count         INTEGER NOT NULL DEFAULT 10,
    format        TEXT NOT NULL DEFAULT 'compact',
    language      TEXT NOT NULL DEFAULT 'en',
    weekdays      TEXT,  -- '0,2,4' (0 = Monday); NULL = every day
    active        INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    title         TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    UNIQUE (platform, chat_id, thread_id)
);

CREATE TABLE subscriptions (
    id         INTEGER PRIMARY KEY,
    chat       INTEGER NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    feed       TEXT NOT NULL,
    keywords   TEXT NOT NULL DEFAULT '[]',
    exclude    TEXT NOT NULL DEFAULT '[]',
    authors    TEXT NOT NULL DEFAULT '[]',
    created_at TEXT NOT NULL,
    UNIQUE (chat, feed)
);

-- The scheduler asks "who follows this feed?".
CREATE INDEX subscriptions_feed ON subscriptions (feed);

-- A paper reaches a chat once, whatever the feed.
CREATE TABLE delivered (
    chat         INTEGER NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    paper_id     TEXT NOT NULL,
    delivered_at TEXT NOT NULL,
    PRIMARY KEY (chat, paper_id)
) WITHOUT ROWID;
