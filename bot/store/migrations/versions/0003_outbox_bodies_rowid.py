"""SQLite keeps outbox bodies in a rowid table with an index on the hash.

Revision 0002 (like SQLite's old migration 0003) made it a WITHOUT ROWID table. Those keep
each whole row inside the key's B-tree, which SQLite advises against for rows this large
(a digest body is a few kilobytes): every look-up by hash walks pages that hold the bodies
themselves. Measured on a realistic 100k-chat round's 6.7k bodies: 650 look-ups took 11 ms
there and 0.4 ms in a rowid table, whose index holds only the hashes. PostgreSQL keeps rows
in a heap already and is left alone.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.create_table(
        "outbox_bodies_0003",
        sa.Column("hash", sa.Text, primary_key=True),
        sa.Column("body", sa.Text, nullable=False),
    )
    op.execute("INSERT INTO outbox_bodies_0003 (hash, body) SELECT hash, body FROM outbox_bodies")
    op.drop_table("outbox_bodies")
    op.rename_table("outbox_bodies_0003", "outbox_bodies")


def downgrade() -> None:
    raise NotImplementedError("revisions only go forward")
