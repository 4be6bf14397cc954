"""Outbox bodies are kept once, by hash, on both databases.

Digest messages are often identical across chats (same feeds, same settings). SQLite
already kept them so (its old migration 0003); PostgreSQL kept a body per row. Rows that
still carry their own body move it to outbox_bodies; `outbox.body` is '' then.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_BATCH = 1000


def body_hash(body: str) -> str:
    """The key of a body in outbox_bodies (the store computes it the same way)."""
    return hashlib.blake2b(body.encode(), digest_size=16).hexdigest()


def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    if not inspector.has_table("outbox_bodies"):
        keyless = {} if bind.dialect.name == "postgresql" else {"sqlite_with_rowid": False}
        op.create_table(
            "outbox_bodies",
            sa.Column("hash", sa.Text, primary_key=True),
            sa.Column("body", sa.Text, nullable=False),
            **keyless,
        )
    if "body_hash" not in {c["name"] for c in inspector.get_columns("outbox")}:
        op.add_column("outbox", sa.Column("body_hash", sa.Text))
    outbox = sa.table("outbox", sa.column("id"), sa.column("body"), sa.column("body_hash", sa.Text))
    bodies = sa.table("outbox_bodies", sa.column("hash"), sa.column("body"))
    while True:
        rows = bind.execute(
            sa.select(outbox.c.id, outbox.c.body)
            .where(outbox.c.body_hash.is_(None))
            .order_by(outbox.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            return
        hashes = {body: body_hash(body) for _, body in rows}
        existing = set(
            bind.execute(
                sa.select(bodies.c.hash).where(bodies.c.hash.in_(list(hashes.values())))
            ).scalars()
        )
        fresh = [{"hash": h, "body": b} for b, h in hashes.items() if h not in existing]
        if fresh:
            bind.execute(bodies.insert(), fresh)
        bind.execute(
            outbox.update()
            .where(outbox.c.id == sa.bindparam("row_id"))
            .values(body="", body_hash=sa.bindparam("digest")),
            [{"row_id": row_id, "digest": hashes[body]} for row_id, body in rows],
        )


def downgrade() -> None:
    raise NotImplementedError("outbox bodies are not moved back")
