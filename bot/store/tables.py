"""The tables as the queries see them (SQLAlchemy Core).

The schema itself is made and changed by the Alembic revisions in bot/store/migrations/;
a change here goes with a new revision there (tests/test_store.py compares them).
"""

from __future__ import annotations

import sqlalchemy as sa

from bot.store.types import Day, Instant, RowId, TextList

metadata = sa.MetaData()


def _id() -> sa.Column[int]:
    return sa.Column("id", RowId, sa.Identity(always=True), primary_key=True)


# A cache of what the sources returned, keyed by the versionless arXiv id.
papers = sa.Table(
    "papers",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("version", sa.Integer),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("authors", TextList, nullable=False),
    sa.Column("abstract", sa.Text, nullable=False),
    sa.Column("categories", TextList, nullable=False),
    sa.Column("published", Instant),
    sa.Column("updated", Instant),
    sa.Column("comment", sa.Text),
    sa.Column("journal_ref", sa.Text),
    sa.Column("doi", sa.Text),
    sa.Column("upvotes", sa.Integer),
    sa.Column("ai_summary", sa.Text),
    sa.Column("ai_keywords", TextList, nullable=False),
    sa.Column("github_repo", sa.Text),
    sa.Column("github_stars", sa.Integer),
    sa.Column("project_page", sa.Text),
    sa.Column("announce_type", sa.Text),
    sa.Column("fetched_at", Instant, nullable=False),
)

# One fetch per feed per day, however many chats follow the feed.
feed_fetches = sa.Table(
    "feed_fetches",
    metadata,
    sa.Column("feed", sa.Text, primary_key=True),
    sa.Column("day", Day, primary_key=True),
    sa.Column("announced", Day),
    sa.Column("fetched_at", Instant, nullable=False),
)

feed_items = sa.Table(
    "feed_items",
    metadata,
    sa.Column("feed", sa.Text, primary_key=True),
    sa.Column("day", Day, primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("paper_id", sa.Text, nullable=False),
)

# thread_id is '' rather than NULL so the unique key also covers thread-less chats.
chats = sa.Table(
    "chats",
    metadata,
    _id(),
    sa.Column("platform", sa.Text, nullable=False),
    sa.Column("chat_id", sa.Text, nullable=False),
    sa.Column("thread_id", sa.Text, nullable=False),
    sa.Column("timezone", sa.Text, nullable=False),
    sa.Column("delivery_time", sa.Text, nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("format", sa.Text, nullable=False),
    sa.Column("language", sa.Text, nullable=False),
    sa.Column("weekdays", sa.Text),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("title", sa.Text),
    sa.Column("created_at", Instant, nullable=False),
    sa.Column("updated_at", Instant, nullable=False),
    sa.Column("next_run_at", Instant),
    sa.Column("explain_digest", sa.Boolean, nullable=False),
    sa.UniqueConstraint("platform", "chat_id", "thread_id"),
)

subscriptions = sa.Table(
    "subscriptions",
    metadata,
    _id(),
    sa.Column("chat", RowId, sa.ForeignKey("chats.id", ondelete="CASCADE"), nullable=False),
    sa.Column("feed", sa.Text, nullable=False),
    sa.Column("keywords", TextList, nullable=False),
    sa.Column("exclude", TextList, nullable=False),
    sa.Column("authors", TextList, nullable=False),
    sa.Column("created_at", Instant, nullable=False),
    sa.UniqueConstraint("chat", "feed"),
)

# A paper reaches a chat once, whatever the feed.
delivered = sa.Table(
    "delivered",
    metadata,
    sa.Column("chat", RowId, sa.ForeignKey("chats.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("paper_id", sa.Text, primary_key=True),
    sa.Column("delivered_at", Instant, nullable=False),
)

# One row per message to send; its body is kept once in outbox_bodies (by hash), since
# digests are often identical across chats. `body` is '' then (a pre-0002 row kept its own).
outbox = sa.Table(
    "outbox",
    metadata,
    _id(),
    sa.Column("idem_key", sa.Text, nullable=False, unique=True),
    sa.Column("chat", RowId, sa.ForeignKey("chats.id", ondelete="CASCADE"), nullable=False),
    sa.Column("platform", sa.Text, nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("body_hash", sa.Text),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", Instant, nullable=False),
    sa.Column("lease_until", Instant),
    sa.Column("worker", sa.Text),
    sa.Column("message_ids", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("created_at", Instant, nullable=False),
    sa.Column("sent_at", Instant),
)

outbox_bodies = sa.Table(
    "outbox_bodies",
    metadata,
    sa.Column("hash", sa.Text, primary_key=True),
    sa.Column("body", sa.Text, nullable=False),
)

# Which paper a sent message is about; button data too long for the platform.
message_papers = sa.Table(
    "message_papers",
    metadata,
    sa.Column("platform", sa.Text, primary_key=True),
    sa.Column("chat_id", sa.Text, primary_key=True),
    sa.Column("message_id", sa.Text, primary_key=True),
    sa.Column("paper_id", sa.Text, nullable=False),
    sa.Column("created_at", Instant, nullable=False),
)

callbacks = sa.Table(
    "callbacks",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("created_at", Instant, nullable=False),
)

# What a chat teaches its ranking: votes, library, plain-words topics, preferences + model.
votes = sa.Table(
    "votes",
    metadata,
    sa.Column("chat", RowId, sa.ForeignKey("chats.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("paper_id", sa.Text, primary_key=True),
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("value", sa.SmallInteger, nullable=False),
    sa.Column("voted_at", Instant, nullable=False),
)

saved_papers = sa.Table(
    "saved_papers",
    metadata,
    sa.Column("chat", RowId, sa.ForeignKey("chats.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("paper_id", sa.Text, primary_key=True),
    sa.Column("saved_at", Instant, nullable=False),
)

topics = sa.Table(
    "topics",
    metadata,
    sa.Column("chat", RowId, sa.ForeignKey("chats.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("feed", sa.Text, primary_key=True),
    sa.Column("topic", sa.Text, primary_key=True),
)

chat_learning = sa.Table(
    "chat_learning",
    metadata,
    sa.Column("chat", RowId, sa.ForeignKey("chats.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("quality", sa.Text, nullable=False),
    sa.Column("cadence", sa.Text, nullable=False),
    sa.Column("weekly_day", sa.SmallInteger, nullable=False),
    sa.Column("topic_threshold", sa.REAL),
    sa.Column("model", sa.LargeBinary),
    sa.Column("model_votes", sa.Integer, nullable=False),
    sa.Column("last_weekly", Day),
    sa.Column("updated_at", Instant, nullable=False),
)
