"""Where lienthong keeps things: every path comes from the environment, with defaults under the project."""
from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def project_root() -> Path:
    """The folder holding pyproject.toml (a source checkout), else LIENTHONG_HOME, else the current folder."""
    if os.environ.get("LIENTHONG_HOME"):
        return Path(os.environ["LIENTHONG_HOME"]).resolve()
    for parent in _PACKAGE_DIR.parents:
        if (parent / "pyproject.toml").is_file():
            return parent
    return Path.cwd()


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).resolve() if value else default


def var_dir() -> Path:
    return _env_path("LIENTHONG_VAR", project_root() / "var")


def drop_root() -> Path:
    return _env_path("LIENTHONG_DROP_ROOT", var_dir() / "drop")


def landing_root() -> Path:
    return _env_path("LIENTHONG_LANDING_ROOT", var_dir() / "landing")


def pgdata_dir() -> Path:
    return _env_path("LIENTHONG_PGDATA", var_dir() / "pgdata")


def sql_dir() -> Path:
    return _env_path("LIENTHONG_SQL_DIR", project_root() / "sql")


def expectations_dir() -> Path:
    return _env_path("LIENTHONG_EXPECTATIONS_DIR", project_root() / "expectations")


def demo_dir() -> Path:
    return _env_path("LIENTHONG_DEMO_DIR", var_dir() / "demo")


def warehouse_url_override() -> str | None:
    """An explicit server; when unset the embedded PostgreSQL is used."""
    return os.environ.get("LIENTHONG_WAREHOUSE_URL") or None


def embedded_database() -> str:
    return os.environ.get("LIENTHONG_WAREHOUSE_DB", "lienthong")
