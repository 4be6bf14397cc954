"""The schema as the numbered SQL migrations left it (SQLite 0009, PostgreSQL 0008).

A database made by those is stamped with this revision instead of running it (see
bot/store/migrate.py). The two databases differ only where they must: row ids, list and
instant types (bot/store/types.py), defaults, CHECKs and the scheduling triggers.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.store.types import Day, Instant, RowId, TextList

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    # PostgreSQL fills instants and lists by default; SQLite rows always carry them.
    now = sa.text("now()") if pg else None
    empty = sa.text("'{}'") if pg else sa.text("'[]'")
    false, true = (sa.false(), sa.true()) if pg else (sa.text("0"), sa.text("1"))
    keyless = {} if pg else {"sqlite_with_rowid": False}

    def row_id() -> sa.Column[int]:
        return sa.Column("id", RowId, sa.Identity(always=True), primary_key=True)

    def chat_fk(primary_key: bool = False) -> sa.Column[int]:
        fk = sa.ForeignKey("chats.id", ondelete="CASCADE")
        return sa.Column("chat", RowId, fk, nullable=False, primary_key=primary_key)

    op.create_table(
        "papers",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("version", sa.Integer),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("authors", TextList, nullable=False, server_default=empty),
        sa.Column("abstract", sa.Text, nullable=False, server_default=""),
        sa.Column("categories", TextList, nullable=False, server_default=empty),
        sa.Column("published", Instant),
        sa.Column("updated", Instant),
        sa.Column("comment", sa.Text),
        sa.Column("journal_ref", sa.Text),
        sa.Column("doi", sa.Text),
        sa.Column("upvotes", sa.Integer),
        sa.Column("ai_summary", sa.Text),
        sa.Column("ai_keywords", TextList, nullable=False, server_default=empty),
        sa.Column("github_repo", sa.Text),
        sa.Column("github_stars", sa.Integer),
        sa.Column("project_page", sa.Text),
        sa.Column("announce_type", sa.Text),
        sa.Column("fetched_at", Instant, nullable=False, server_default=now),
    )
    op.create_table(
        "feed_fetches",
        sa.Column("feed", sa.Text, primary_key=True),
        sa.Column("day", Day, primary_key=True),
        sa.Column("announced", Day),  # NULL: nothing was announced that day
        sa.Column("fetched_at", Instant, nullable=False, server_default=now),
    )
    # No foreign key to papers: a feed may be saved before (or without) its papers.
    op.create_table(
        "feed_items",
        sa.Column("feed", sa.Text, primary_key=True),
        sa.Column("day", Day, primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("paper_id", sa.Text, nullable=False),
        sa.ForeignKeyConstraint(
            ["feed", "day"], ["feed_fetches.feed", "feed_fetches.day"], ondelete="CASCADE"
        ),
    )
    hhmm = (
        "delivery_time ~ '^[0-2][0-9]:[0-5][0-9]$'"
        if pg
        else ("delivery_time GLOB '[0-2][0-9]:[0-5][0-9]'")
    )
    op.create_table(
        "chats",
        row_id(),
        sa.Column("platform", sa.Text, nullable=False),
        sa.Column("chat_id", sa.Text, nullable=False),
        sa.Column("thread_id", sa.Text, nullable=False, server_default=""),
        sa.Column("timezone", sa.Text, nullable=False, server_default="UTC"),
        sa.Column(
            "delivery_time",
            sa.Text,
            sa.CheckConstraint(hhmm),
            server_default="09:00",
            nullable=False,
        ),
        sa.Column("count", sa.Integer, nullable=False, server_default="10"),
        sa.Column("format", sa.Text, nullable=False, server_default="compact"),
        sa.Column("language", sa.Text, nullable=False, server_default="en"),
        sa.Column("weekdays", sa.Text),  # '0,2,4' (0 = Monday); NULL = every day
        sa.Column("active", sa.Boolean, nullable=False, server_default=true),
        sa.Column("title", sa.Text),
        sa.Column("created_at", Instant, nullable=False, server_default=now),
        sa.Column("updated_at", Instant, nullable=False, server_default=now),
        # NULL: not scheduled yet; the triggers below clear it when the schedule changes.
        sa.Column("next_run_at", Instant),
        sa.Column("explain_digest", sa.Boolean, nullable=False, server_default=false),
        sa.UniqueConstraint("platform", "chat_id", "thread_id"),
    )
    op.create_table(
        "subscriptions",
        row_id(),
        chat_fk(),
        sa.Column("feed", sa.Text, nullable=False),
        sa.Column("keywords", TextList, nullable=False, server_default=empty),
        sa.Column("exclude", TextList, nullable=False, server_default=empty),
        sa.Column("authors", TextList, nullable=False, server_default=empty),
        sa.Column("created_at", Instant, nullable=False, server_default=now),
        sa.UniqueConstraint("chat", "feed"),
    )
    op.create_index("subscriptions_feed", "subscriptions", ["feed"])
    op.create_table(
        "delivered",
        chat_fk(primary_key=True),
        sa.Column("paper_id", sa.Text, primary_key=True),
        sa.Column("delivered_at", Instant, nullable=False, server_default=now),
        **keyless,
    )
    # Due chats are read in (next_run_at, id) order on PostgreSQL.
    op.create_index(
        "chats_next_run",
        "chats",
        ["next_run_at", "id"] if pg else ["next_run_at"],
        postgresql_where=sa.text("active"),
        sqlite_where=sa.text("active = 1"),
    )
    _triggers(pg)

    op.create_table(
        "outbox",
        row_id(),
        sa.Column("idem_key", sa.Text, nullable=False, unique=True),
        chat_fk(),
        sa.Column("platform", sa.Text, nullable=False),  # the chat's: claims need no join
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("body", sa.Text, nullable=False),  # the Message as JSON (bot/serialize.py)
        sa.Column(
            "status",
            sa.Text,
            sa.CheckConstraint("status IN ('pending', 'sending', 'sent', 'dead')"),
            nullable=False,
            server_default="pending",
        ),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", Instant, nullable=False),
        sa.Column("lease_until", Instant),
        sa.Column("worker", sa.Text),
        sa.Column("message_ids", sa.Text),  # JSON list of the platform's ids, once sent
        sa.Column("error", sa.Text),
        sa.Column("created_at", Instant, nullable=False),
        sa.Column("sent_at", Instant),
    )

    # Claims look for work by status and time; done rows are not indexed.
    def partial(name: str, columns: list[str], where: str) -> None:
        clause = sa.text(where)
        op.create_index(name, "outbox", columns, postgresql_where=clause, sqlite_where=clause)

    partial("outbox_ready", ["platform", "next_attempt_at", "id"], "status = 'pending'")
    partial("outbox_leased", ["platform", "lease_until", "id"], "status = 'sending'")
    op.create_index("outbox_chat", "outbox", ["chat", "status"])
    # A chat's first unsent row (its messages go out in order) is one probe here.
    partial("outbox_unsent", ["chat", "id"], "status IN ('pending', 'sending')")

    # Message memory: no foreign key to chats, one-off commands create no chat row.
    op.create_table(
        "message_papers",
        sa.Column("platform", sa.Text, primary_key=True),
        sa.Column("chat_id", sa.Text, primary_key=True),
        sa.Column("message_id", sa.Text, primary_key=True),
        sa.Column("paper_id", sa.Text, nullable=False),
        sa.Column("created_at", Instant, nullable=False, server_default=now),
        **keyless,
    )
    op.create_index("message_papers_created", "message_papers", ["created_at"])
    op.create_table(
        "callbacks",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("created_at", Instant, nullable=False, server_default=now),
        **keyless,
    )
    op.create_index("callbacks_created", "callbacks", ["created_at"])

    # Learning (issue 14): every row goes with its chat row.
    op.create_table(
        "votes",
        chat_fk(primary_key=True),
        sa.Column("paper_id", sa.Text, primary_key=True),
        sa.Column("user_id", sa.Text, primary_key=True),
        sa.Column(
            "value",
            sa.SmallInteger if pg else sa.Integer,
            sa.CheckConstraint("value IN (-1, 1)"),
            nullable=False,
        ),
        sa.Column("voted_at", Instant, nullable=False, server_default=now),
        **keyless,
    )
    op.create_table(
        "saved_papers",
        chat_fk(primary_key=True),
        sa.Column("paper_id", sa.Text, primary_key=True),
        sa.Column("saved_at", Instant, nullable=False, server_default=now),
        **keyless,
    )
    op.create_table(
        "topics",
        chat_fk(primary_key=True),
        sa.Column("feed", sa.Text, primary_key=True),
        sa.Column("topic", sa.Text, primary_key=True),
        **keyless,
    )
    op.create_table(
        "chat_learning",
        chat_fk(primary_key=True),
        sa.Column(
            "quality",
            sa.Text,
            sa.CheckConstraint("quality IN ('strict', 'normal', 'all')"),
            nullable=False,
            server_default="normal",
        ),
        sa.Column(
            "cadence",
            sa.Text,
            sa.CheckConstraint("cadence IN ('daily', 'weekly')"),
            nullable=False,
            server_default="daily",
        ),
        sa.Column(
            "weekly_day",
            sa.SmallInteger if pg else sa.Integer,
            sa.CheckConstraint("weekly_day BETWEEN 0 AND 6"),
            nullable=False,
            server_default="0",
        ),
        sa.Column("topic_threshold", sa.REAL),
        sa.Column("model", sa.LargeBinary),
        sa.Column("model_votes", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_weekly", Day),  # local date of the last weekly digest
        sa.Column("updated_at", Instant, nullable=False, server_default=now),
    )


def _triggers(pg: bool) -> None:
    """A changed schedule (time, zone, days, switched back on) or a chat's first
    subscription clears next_run_at, so the scheduler plans the chat again at once."""
    if not pg:
        op.execute(
            "CREATE TRIGGER chats_reschedule AFTER UPDATE OF timezone, delivery_time, weekdays,"
            " active ON chats WHEN NEW.timezone IS NOT OLD.timezone"
            " OR NEW.delivery_time IS NOT OLD.delivery_time OR NEW.weekdays IS NOT OLD.weekdays"
            " OR (NEW.active = 1 AND OLD.active = 0)"
            " BEGIN UPDATE chats SET next_run_at = NULL WHERE id = NEW.id; END"
        )
        op.execute(
            "CREATE TRIGGER subscriptions_first AFTER INSERT ON subscriptions"
            " WHEN (SELECT COUNT(*) FROM subscriptions WHERE chat = NEW.chat) = 1"
            " BEGIN UPDATE chats SET next_run_at = NULL WHERE id = NEW.chat; END"
        )
        return
    op.execute(
        """CREATE FUNCTION paperboy_chats_reschedule() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.timezone IS DISTINCT FROM OLD.timezone
       OR NEW.delivery_time IS DISTINCT FROM OLD.delivery_time
       OR NEW.weekdays IS DISTINCT FROM OLD.weekdays
       OR (NEW.active AND NOT OLD.active) THEN
        NEW.next_run_at := NULL;
    END IF;
    RETURN NEW;
END
$$"""
    )
    op.execute(
        "CREATE TRIGGER chats_reschedule BEFORE UPDATE ON chats"
        " FOR EACH ROW EXECUTE FUNCTION paperboy_chats_reschedule()"
    )
    op.execute(
        """CREATE FUNCTION paperboy_subscriptions_first() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM subscriptions WHERE chat = NEW.chat AND id <> NEW.id) THEN
        UPDATE chats SET next_run_at = NULL WHERE id = NEW.chat AND next_run_at IS NOT NULL;
    END IF;
    RETURN NULL;
END
$$"""
    )
    op.execute(
        "CREATE TRIGGER subscriptions_first AFTER INSERT ON subscriptions"
        " FOR EACH ROW EXECUTE FUNCTION paperboy_subscriptions_first()"
    )


def downgrade() -> None:
    raise NotImplementedError("the baseline is not undone")
