-- Paperboy schema, PostgreSQL dialect. Same tables and meaning as the SQLite one; instants
-- are timestamptz, days are date, list fields are text[].

-- A cache of what the sources returned, keyed by the versionless arXiv id.
CREATE TABLE papers (
    id            text PRIMARY KEY,
    version       integer,
    title         text NOT NULL,
    authors       text[] NOT NULL DEFAULT '{}',
    abstract      text NOT NULL DEFAULT '',
    categories    text[] NOT NULL DEFAULT '{}',
    published     timestamptz,
    updated       timestamptz,
    comment       text,
    journal_ref   text,
    doi           text,
    upvotes       integer,
    ai_summary    text,
    ai_keywords   text[] NOT NULL DEFAULT '{}',
    github_repo   text,
    github_stars  integer,
    project_page  text,
    announce_type text,
    fetched_at    timestamptz NOT NULL DEFAULT now()
);

-- One fetch per feed per day, however many chats follow the feed.
CREATE TABLE feed_fetches (
    feed       text NOT NULL,
    day        date NOT NULL,
    announced  date,  -- NULL: nothing was announced that day (weekend, holiday)
    fetched_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (feed, day)
);

-- No foreign key to papers: a feed may be saved before (or without) its papers.
CREATE TABLE feed_items (
    feed     text NOT NULL,
    day      date NOT NULL,
    position integer NOT NULL,
    paper_id text NOT NULL,
    PRIMARY KEY (feed, day, position),
    FOREIGN KEY (feed, day) REFERENCES feed_fetches (feed, day) ON DELETE CASCADE
);

-- thread_id is '' rather than NULL so the unique constraint also covers thread-less chats.
CREATE TABLE chats (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    platform      text NOT NULL,
    chat_id       text NOT NULL,
    thread_id     text NOT NULL DEFAULT '',
    timezone      text NOT NULL DEFAULT 'UTC',
    delivery_time text NOT NULL DEFAULT '09:00' CHECK (delivery_time ~ '^[0-2][0-9]:[0-5][0-9]$'),
    count         integer NOT NULL DEFAULT 10,
    format        text NOT NULL DEFAULT 'compact',
    language      text NOT NULL DEFAULT 'en',
    weekdays      text,  -- '0,2,4' (0 = Monday); NULL = every day
    active        boolean NOT NULL DEFAULT true,
    title         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (platform, chat_id, thread_id)
);

CREATE TABLE subscriptions (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chat       bigint NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    feed       text NOT NULL,
    keywords   text[] NOT NULL DEFAULT '{}',
    exclude    text[] NOT NULL DEFAULT '{}',
    authors    text[] NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (chat, feed)
);

-- The scheduler asks "who follows this feed?".
CREATE INDEX subscriptions_feed ON subscriptions (feed);

-- A paper reaches a chat once, whatever the feed.
CREATE TABLE delivered (
    chat         bigint NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    paper_id     text NOT NULL,
    delivered_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chat, paper_id)
);
