"""Errors and limits shared by the transports."""
from __future__ import annotations

import os
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

DEFAULT_MAX_BYTES = 2 * 1024**3  # no school catalogue comes near 2 GiB; a runaway server stops here
DEFAULT_CONNECT_TIMEOUT = 15.0
DEFAULT_READ_TIMEOUT = 120.0
DEFAULT_DEADLINE = 3600.0  # one whole fetch, so a server dripping bytes cannot hold a worker slot forever
CHUNK = 1 << 20


class SourceError(RuntimeError):
    """A library's source is misconfigured or cannot be read."""


class FetchError(SourceError):
    """A fetch failed; the message names the library and the address, never a credential."""


def _env_number(name: str, default: float) -> float:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        raise SourceError(f"{name}={value!r} is not a number") from None
    if number <= 0:
        raise SourceError(f"{name}={value!r} must be above 0")
    return number


def max_bytes() -> int:
    return int(_env_number("LIENTHONG_FETCH_MAX_BYTES", DEFAULT_MAX_BYTES))


def timeouts() -> tuple[float, float]:
    """(connect, read) seconds, from LIENTHONG_FETCH_CONNECT_TIMEOUT / LIENTHONG_FETCH_READ_TIMEOUT."""
    return (_env_number("LIENTHONG_FETCH_CONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT),
            _env_number("LIENTHONG_FETCH_READ_TIMEOUT", DEFAULT_READ_TIMEOUT))


def deadline_seconds() -> float:
    return _env_number("LIENTHONG_FETCH_DEADLINE", DEFAULT_DEADLINE)


def public_url(url: str) -> str:
    """The URL as it may appear in messages: no user, no password (the query is kept: it names the export)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Replace every secret (longest first) in a message that came from a library or a server."""
    for secret in sorted((s for s in secrets if s and len(s) >= 3), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
