"""The PostgreSQL warehouse: a server named by LIENTHONG_WAREHOUSE_URL, or an embedded one (pgserver).

The embedded server keeps its data in ``var/pgdata`` and listens only on a unix socket; it is started on
first use and left running, so every command and task of the same checkout reuses it.
"""
from __future__ import annotations

import functools
import logging
import os
import subprocess
import warnings
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from lienthong import config


class WarehouseError(RuntimeError):
    pass


# pgserver logs its bookkeeping at INFO, including from an atexit hook after the streams are closed.
logging.getLogger("pgserver").setLevel(logging.WARNING)


def _embedded_server():
    # platformdirs warns when XDG_RUNTIME_DIR is unset (always, under CI); it is harmless here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        pgdata = config.pgdata_dir()
        pgdata.mkdir(parents=True, exist_ok=True)
        return pgserver.get_server(pgdata, cleanup_mode=None)


def _socket_dir(uri: str) -> str:
    return make_url(uri).query["host"]


def _with_driver(url: str) -> URL:
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg2")
    return parsed


_ensured: set[tuple[str, str]] = set()  # (server, database) seen to exist; forgotten by dispose_engines()


def _ensure_database(server_uri: str, database: str) -> None:
    """Create the database on the embedded server if missing; checked once per process (each check is a new
    server connection, which an ingest would otherwise pay per export)."""
    if (server_uri, database) in _ensured:
        return
    admin = sa.create_engine(_with_driver(server_uri), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        exists = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": database}).scalar()
        if not exists:
            conn.execute(sa.text(f'CREATE DATABASE "{database}"'))
    admin.dispose()
    _ensured.add((server_uri, database))


def is_embedded() -> bool:
    return config.warehouse_url_override() is None


def sqlalchemy_url(database: str | None = None) -> URL:
    """The warehouse URL for SQLAlchemy (psycopg2); starts the embedded server when needed."""
    override = config.warehouse_url_override()
    if override:
        url = _with_driver(override)
        return url.set(database=database) if database else url
    server = _embedded_server()
    name = database or config.embedded_database()
    _ensure_database(server.get_uri(), name)
    return _with_driver(server.get_uri(name))


def psql_url(database: str | None = None, *, with_password: bool = False) -> str:
    """A libpq URL that psql accepts (no SQLAlchemy driver suffix); the password only when asked for."""
    url = sqlalchemy_url(database).set(drivername="postgresql")
    if not with_password:
        url = url.set(password=None)
    return url.render_as_string(hide_password=False)


def password() -> str | None:
    return sqlalchemy_url().password


@functools.cache
def _engine_for(url: str) -> sa.Engine:
    # Four kept: a library's first snapshot holds three at once (its transaction, its id reservations, the
    # chunk's quality rows); with two, each export opened and closed a new server connection.
    return sa.create_engine(url, pool_pre_ping=True, pool_size=4, max_overflow=2)


def engine(database: str | None = None) -> sa.Engine:
    return _engine_for(sqlalchemy_url(database).render_as_string(hide_password=False))


def dispose_engines() -> None:
    """Forget pooled connections and which databases exist (after a fork, a DROP DATABASE, or before stopping
    the server)."""
    _engine_for.cache_clear()
    _ensured.clear()


def stop() -> bool:
    """Stop the embedded server; returns False when there was none running (or a URL is configured)."""
    if not is_embedded():
        return False
    pgdata = config.pgdata_dir()
    if not (pgdata / "postmaster.pid").exists():
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver._commands import pg_ctl
    dispose_engines()
    # pgserver runs the server as its own "pgserver" user when we are root; pg_ctl must run as that user.
    user = "pgserver" if os.geteuid() == 0 else None
    try:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user, timeout=60)
    except subprocess.CalledProcessError:
        return False
    return True


def psql_binary() -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver._commands import POSTGRES_BIN_PATH
    return POSTGRES_BIN_PATH / "psql"
