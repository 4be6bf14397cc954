"""PostgreSQL checks that delivered and outbox rows name a chat once per statement, not
once per row.

A scheduler round inserts hundreds of thousands of `delivered` and `outbox` rows (a
realistic 100k-chat round: 750k and 165k). Their foreign keys to chats ran a look-up and
a row lock per inserted row, half of those inserts' time (delivered: 13 of 25 s). The keys
are replaced by triggers that do the same work per statement:

- after an INSERT, every chat the new rows name is locked (FOR KEY SHARE, as a foreign key
  does, in id order) and a missing one fails the statement with SQLSTATE 23503, the
  foreign key's own error; an UPDATE that moves a row to another chat is checked alike;
- after a DELETE of chats, their delivered and outbox rows go (the keys' ON DELETE
  CASCADE), and a TRUNCATE of chats empties both tables.

The lock is what makes it safe against a concurrent delete: a chat locked by the check
cannot be deleted before the inserting transaction ends, and a chat deleted first is not
found by it. SQLite keeps its foreign keys (a round turns their checks off for its own
writes, see Database.transaction(parents_checked)).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

CHILDREN = ("delivered", "outbox")


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    inspector = sa.inspect(bind)
    for table in CHILDREN:
        for key in inspector.get_foreign_keys(table):
            if key["referred_table"] == "chats" and key["name"]:
                op.drop_constraint(key["name"], table, type_="foreignkey")
    op.execute(
        """CREATE FUNCTION paperboy_rows_have_chats() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    wanted bigint;
    locked bigint;
BEGIN
    SELECT count(DISTINCT chat) INTO wanted FROM new_rows;
    PERFORM 1 FROM chats c WHERE c.id IN (SELECT chat FROM new_rows)
        ORDER BY c.id FOR KEY SHARE OF c;
    GET DIAGNOSTICS locked = ROW_COUNT;
    IF locked <> wanted THEN
        RAISE EXCEPTION 'insert or update on table "%" names a chat that does not exist',
            TG_TABLE_NAME USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END
$$"""
    )
    op.execute(
        """CREATE FUNCTION paperboy_row_has_chat() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM chats WHERE id = NEW.chat FOR KEY SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'update on table "%" names a chat that does not exist',
            TG_TABLE_NAME USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END
$$"""
    )
    for table in CHILDREN:
        op.execute(
            f"CREATE TRIGGER {table}_chats_exist AFTER INSERT ON {table}"
            " REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT"
            " EXECUTE FUNCTION paperboy_rows_have_chats()"
        )
        # Only the rare update that moves a row to another chat (a chat's migration).
        op.execute(
            f"CREATE TRIGGER {table}_chat_moved AFTER UPDATE OF chat ON {table}"
            " FOR EACH ROW WHEN (NEW.chat IS DISTINCT FROM OLD.chat)"
            " EXECUTE FUNCTION paperboy_row_has_chat()"
        )
    op.execute(
        """CREATE FUNCTION paperboy_chats_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM delivered WHERE chat IN (SELECT id FROM old_rows);
    DELETE FROM outbox WHERE chat IN (SELECT id FROM old_rows);
    RETURN NULL;
END
$$"""
    )
    op.execute(
        "CREATE TRIGGER chats_deleted AFTER DELETE ON chats REFERENCING OLD TABLE AS old_rows"
        " FOR EACH STATEMENT EXECUTE FUNCTION paperboy_chats_deleted()"
    )
    op.execute(
        """CREATE FUNCTION paperboy_chats_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE delivered, outbox;
    RETURN NULL;
END
$$"""
    )
    op.execute(
        "CREATE TRIGGER chats_truncated AFTER TRUNCATE ON chats"
        " FOR EACH STATEMENT EXECUTE FUNCTION paperboy_chats_truncated()"
    )


def downgrade() -> None:
    raise NotImplementedError("revisions only go forward")
