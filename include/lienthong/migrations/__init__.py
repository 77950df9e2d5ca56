"""Versioned warehouse migrations (Alembic). Each version applies one DDL file kept in sql/."""
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


def current_revision(connection: sa.Connection) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table_schema": VERSION_TABLE_SCHEMA})
    return context.get_current_revision()


def head_revision() -> str:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent))
    return ScriptDirectory.from_config(cfg).get_current_head()


def upgrade(engine: sa.Engine) -> tuple[str | None, str]:
    """Bring the warehouse to the newest version; returns (revision before, revision after)."""
    with engine.begin() as connection:
        # Serialise concurrent `db init`s (two tasks starting at once) on one advisory lock.
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(7426001)"))
        before = current_revision(connection)
        command.upgrade(alembic_config(connection), "head")
        after = current_revision(connection)
    return before, after
