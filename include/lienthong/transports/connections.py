"""Airflow connections resolved without Airflow's metadata database.

The registry names a connection id (``connection: lienthong_sftp_thpt_chvt``); the secret itself lives only
in the environment as ``AIRFLOW_CONN_<ID>`` (URI or JSON, parsed the way Airflow parses them), or, inside a
running Airflow task, in whatever secrets backend Airflow is configured with.
"""
from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping
from urllib.parse import parse_qsl, unquote, urlsplit

from lienthong.transports.base import SourceError

CONN_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,250}$")
EXTRA_KEY = "__extra__"
SECRET_EXTRA_KEYS = ("private_key", "private_key_passphrase", "passphrase", "token", "password", "headers")


class ConnectionProblem(SourceError):
    """A connection is missing or unreadable; the message never quotes its value."""


@dataclass(frozen=True)
class Connection:
    conn_id: str
    conn_type: str | None = None
    host: str | None = None
    login: str | None = None
    password: str | None = field(default=None, repr=False)
    schema: str | None = None
    port: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False, hash=False)

    def secrets(self) -> list[str]:
        """Every value that must never reach a message or a log."""
        values = [self.password]
        for key in SECRET_EXTRA_KEYS:
            value = self.extra.get(key)
            if isinstance(value, dict):
                values.extend(str(v) for v in value.values())
            elif value is not None:
                values.append(str(value))
        return [v for v in values if v]


def env_name(conn_id: str) -> str:
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def _normalize_conn_type(conn_type: str | None) -> str | None:
    if conn_type == "postgresql":
        return "postgres"
    return conn_type.replace("-", "_") if conn_type else conn_type


def _extra(value: Any, conn_id: str) -> Mapping[str, Any]:
    if value is None or value == "":
        return MappingProxyType({})
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ConnectionProblem(f"connection {conn_id}: its extra is not JSON") from None
    if not isinstance(value, dict):
        raise ConnectionProblem(f"connection {conn_id}: its extra must be a JSON object")
    return MappingProxyType(value)


def parse_uri(uri: str, conn_id: str) -> Connection:
    """Airflow's URI form: ``type://login:password@host:port/schema?extra_key=value`` (or ``__extra__=<json>``)."""
    if uri.count("://") > 2 or "://" not in uri:
        raise ConnectionProblem(f"connection {conn_id}: {env_name(conn_id)} is not a connection URI")
    conn_type = uri.split("://", 1)[0]
    with_protocol = uri.count("://") == 2
    rest = uri[len(conn_type) + 3:]
    if not with_protocol:
        rest = "//" + rest
    elif "@" in rest.split("://", 1)[0] or ":" in rest.split("://", 1)[0]:
        raise ConnectionProblem(f"connection {conn_id}: {env_name(conn_id)} is not a connection URI")
    try:
        parts = urlsplit(rest)
        port = parts.port
    except ValueError:
        raise ConnectionProblem(f"connection {conn_id}: {env_name(conn_id)} has an invalid host or port") from None
    host = unquote(parts.hostname or "")
    if "/" in host:  # a host that is itself a path (Airflow keeps the raw netloc then)
        host = parts.netloc.rsplit("@", 1)[-1].split(":", 1)[0]
        host = unquote(host)
    if host and with_protocol:
        host = f"{parts.scheme}://{host}"
    extra: Any = None
    if parts.query:
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        extra = query[EXTRA_KEY] if EXTRA_KEY in query else query
    return Connection(
        conn_id=conn_id, conn_type=_normalize_conn_type(conn_type), host=host or None,
        login=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        schema=unquote(parts.path[1:]) if parts.path[1:] else None, port=port, extra=_extra(extra, conn_id),
    )


def parse_json(text: str, conn_id: str) -> Connection:
    """Airflow's JSON form: ``{"conn_type": ..., "login": ..., "password": ..., "extra": {...}}``."""
    try:
        data = json.loads(text)
    except ValueError:
        raise ConnectionProblem(f"connection {conn_id}: {env_name(conn_id)} is neither a URI nor JSON") from None
    if not isinstance(data, dict):
        raise ConnectionProblem(f"connection {conn_id}: {env_name(conn_id)} must be a JSON object")
    unknown = set(data) - {"conn_type", "description", "host", "login", "password", "schema", "port", "extra"}
    if unknown:
        raise ConnectionProblem(f"connection {conn_id}: unknown keys {', '.join(sorted(unknown))}")
    port = data.get("port")
    if port not in (None, ""):
        try:
            port = int(port)
        except (TypeError, ValueError):
            raise ConnectionProblem(f"connection {conn_id}: port must be a number") from None
    return Connection(
        conn_id=conn_id, conn_type=_normalize_conn_type(data.get("conn_type")), host=data.get("host") or None,
        login=data.get("login") or None, password=data.get("password") or None,
        schema=data.get("schema") or None, port=port or None, extra=_extra(data.get("extra"), conn_id),
    )


def _in_airflow_task() -> bool:
    runner = sys.modules.get("airflow.sdk.execution_time.task_runner")
    return getattr(runner, "SUPERVISOR_COMMS", None) is not None


def _from_airflow(conn_id: str) -> Connection | None:
    from airflow.sdk import BaseHook  # only inside a task: Airflow's configured secrets backends

    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception:  # noqa: BLE001 — "not found" has several types across Airflow versions
        return None
    return Connection(
        conn_id=conn_id, conn_type=conn.conn_type, host=conn.host or None, login=conn.login or None,
        password=conn.password or None, schema=conn.schema or None, port=conn.port or None,
        extra=MappingProxyType(dict(conn.extra_dejson or {})),
    )


def get_connection(conn_id: str) -> Connection:
    """The connection from ``AIRFLOW_CONN_<ID>``; inside an Airflow task, Airflow's backends as a fallback."""
    if not CONN_ID_RE.match(conn_id or ""):
        raise ConnectionProblem(f"{conn_id!r} is not a valid connection id")
    value = os.environ.get(env_name(conn_id))
    if value is not None and value.strip():
        value = value.strip()
        return parse_json(value, conn_id) if value.startswith("{") else parse_uri(value, conn_id)
    if _in_airflow_task():
        conn = _from_airflow(conn_id)
        if conn is not None:
            return conn
    raise ConnectionProblem(
        f"connection {conn_id} is not defined: set {env_name(conn_id)} (URI or JSON) or create it in Airflow")
