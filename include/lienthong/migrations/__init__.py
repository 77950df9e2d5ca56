"""Versioned warehouse migrations (Alembic). Each version applies one DDL file kept in sql/.

The foundation (0001, 0002) is one line; each later feature (quality, catalogue, circulation, reports,
access) is its own branch off the foundation, ordered by ``depends_on`` where one needs another's tables.
The warehouse is "at head" when every branch is at its head; a revision is written as the sorted heads
joined by ``+``.
"""
from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from lienthong import config

VERSION_TABLE_SCHEMA = "public"


def alembic_config(connection: sa.Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent))
    cfg.attributes["connection"] = connection
    return cfg


def sql_file(name: str) -> str:
    path = config.sql_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"migration DDL {path} not found (set LIENTHONG_SQL_DIR to the sql/ folder)")
    return path.read_text(encoding="utf-8")


def _joined(heads) -> str | None:
    return "+".join(sorted(heads)) or None


def current_revision(connection: sa.Connection) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table_schema": VERSION_TABLE_SCHEMA})
    return _joined(context.get_current_heads())


def head_revision() -> str:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent))
    return _joined(ScriptDirectory.from_config(cfg).get_heads())


def upgrade(engine: sa.Engine) -> tuple[str | None, str]:
    """Bring the warehouse to the newest version; returns (revision before, revision after)."""
    with engine.begin() as connection:
        # Serialise concurrent `db init`s (two tasks starting at once) on one advisory lock.
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(7426001)"))
        before = current_revision(connection)
        command.upgrade(alembic_config(connection), "heads")
        after = current_revision(connection)
        if after != before and connection.execute(
                sa.text("SELECT to_regprocedure('access.secure()') IS NOT NULL")).scalar_one():
            # Branches apply in any order: grants and row-level security cover the tables of every branch.
            connection.execute(sa.text("SELECT * FROM access.secure()"))
    return before, after
