"""Schema migrations: Alembic revisions in bot/store/migrations/versions, run at open.

There is no alembic.ini or env.py: `upgrade` runs the revisions on the store's own
connection, in one transaction (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock
besides), so concurrent openers wait for each other and a failed revision leaves nothing
half-done. A new revision is a file in versions/ with `revision`, `down_revision` and an
`upgrade()` using alembic.op, written once for both databases.

Databases made by the old numbered SQL migrations (a `schema_version` table; SQLite up to
0009, PostgreSQL up to 0008) have exactly the schema of revision 0001: they are stamped
with it, their old bookkeeping table dropped, and upgraded from there.
"""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

PACKAGED = Path(__file__).with_name("migrations")
FOLDER = PACKAGED  # where `upgrade` reads revisions (tests point it elsewhere)
# The newest revision (a test checks it against versions/): a database already there opens
# without importing Alembic at all, which keeps a restarted worker's start short.
HEAD = "0004"
# The last old numbered migration of each database, which revision 0001 reproduces.
LEGACY_FINAL = {"sqlite": 9, "postgresql": 8}
LEGACY_REVISION = "0001"
# Serialises migrations across processes on PostgreSQL (and across schemas, harmlessly).
_LOCK = 0x7061_7065_7262_6F79  # "paperboy"


def _config(folder: Path) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(folder))
    return config


@functools.cache
def load_script(folder: Path = PACKAGED) -> ScriptDirectory:
    """The revisions, read and imported. Blocking: call it through `asyncio.to_thread`."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_config(folder))
    script.revision_map.get_revisions("heads")  # imports every revision file now
    return script


async def upgrade(conn: Any, folder: Path | None = None) -> None:
    """Bring the database under `conn` (an AsyncConnection inside a write transaction) to
    the newest revision of `folder` (default: FOLDER)."""
    folder = folder or FOLDER
    # The usual open finds the newest revision, and revisions only go forward: no lock to
    # wait for then (workers starting together queued on it). Otherwise lock and look again.
    if folder == PACKAGED and await conn.run_sync(_revision) == HEAD:
        return
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK})
        if folder == PACKAGED and await conn.run_sync(_revision) == HEAD:
            return
    script = await asyncio.to_thread(load_script, folder)
    await conn.run_sync(_upgrade, script)


def _revision(conn: sa.Connection) -> str | None:
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def _upgrade(conn: sa.Connection, script: ScriptDirectory) -> None:
    from alembic.runtime.environment import EnvironmentContext

    _adopt_legacy(conn, script)

    def steps(revision: Any, _context: Any) -> Any:
        return script._upgrade_revs("heads", revision)

    with EnvironmentContext(_config(Path(script.dir)), script, fn=steps) as env:
        env.configure(connection=conn, target_metadata=None)
        with env.begin_transaction():  # joins the caller's transaction
            env.run_migrations()


def _adopt_legacy(conn: sa.Connection, script: ScriptDirectory) -> None:
    from alembic.runtime.migration import MigrationContext

    inspector = sa.inspect(conn)
    if not inspector.has_table("schema_version") or inspector.has_table("alembic_version"):
        return
    version = conn.execute(sa.text("SELECT MAX(version) FROM schema_version")).scalar()
    final = LEGACY_FINAL[conn.dialect.name]
    if version != final:
        raise RuntimeError(
            f"this database is at old schema version {version}; open it once with a"
            f" release from before the Alembic migrations (up to version {final}) first"
        )
    MigrationContext.configure(conn).stamp(script, LEGACY_REVISION)
    conn.execute(sa.text("DROP TABLE schema_version"))


async def current_revision(conn: Any) -> int:
    """The database's revision as a number (revision ids are '0001', '0002', ...)."""
    result = await conn.execute(sa.text("SELECT version_num FROM alembic_version"))
    value = result.scalar()
    return int(value) if value is not None else 0
