"""HTTP(S) download of an export: streamed to disk, conditional, bounded in size and time.

The last download's ``ETag`` and ``Last-Modified`` are remembered in the library's fetch state, so an export
the server reports unchanged (304) is not downloaded again: the kept copy is handed back and ingest sees the
same sha256 as last time.
"""
from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import requests

from lienthong import landing
from lienthong.transports import base
from lienthong.transports.base import FetchError, public_url, redact
from lienthong.transports.connections import Connection
from lienthong.transports.state import SourceState

log = logging.getLogger(__name__)

STATE_KEY = "http"
_FILENAME_STAR = re.compile(r"filename\*\s*=\s*(?:UTF-8|utf-8)''([^;]+)")
_FILENAME = re.compile(r'filename\s*=\s*"?([^";]+)"?')


def session_for(conn: Connection | None) -> requests.Session:
    """A session carrying the connection's credentials: Basic auth from login/password, or extra headers."""
    session = requests.Session()
    session.headers["User-Agent"] = "lienthong (library interconnection, Hòa Bình)"
    if conn is None:
        return session
    if conn.login or conn.password:
        session.auth = (conn.login or "", conn.password or "")
    headers = conn.extra.get("headers")
    if isinstance(headers, dict):
        session.headers.update({str(k): str(v) for k, v in headers.items()})
    token = conn.extra.get("token")
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    verify = conn.extra.get("verify")
    if verify is not None:
        session.verify = verify
    return session


def file_name_of(response: requests.Response, url: str, fallback: str) -> str:
    disposition = response.headers.get("Content-Disposition", "")
    match = _FILENAME_STAR.search(disposition) or _FILENAME.search(disposition)
    if match:
        return unquote(match.group(1).strip())
    last = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    return last or fallback


def stream_to_file(response: requests.Response, target: Path, *, what: str, limit: int,
                   deadline: float) -> int:
    """Write the body to ``target`` through a temporary file; at most ``limit`` bytes, before ``deadline``."""
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise FetchError(f"{what}: the export is {int(declared):,} bytes, over the limit of {limit:,} "
                         f"(LIENTHONG_FETCH_MAX_BYTES)")
    partial = target.with_name(f".partial-{target.name}")
    size = 0
    try:
        with open(partial, "wb") as out:
            for chunk in response.iter_content(base.CHUNK):
                size += len(chunk)
                if size > limit:
                    raise FetchError(f"{what}: the export passed the limit of {limit:,} bytes "
                                     f"(LIENTHONG_FETCH_MAX_BYTES); download stopped")
                if time.monotonic() > deadline:
                    raise FetchError(f"{what}: the download took longer than {base.deadline_seconds():.0f} s "
                                     f"(LIENTHONG_FETCH_DEADLINE); stopped after {size:,} bytes")
                out.write(chunk)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return size


def fetch(library_code: str, url: str, conn: Connection | None, state: SourceState) -> Path:
    """Download ``url`` unless the server says the export is unchanged; returns the local copy either way."""
    where = f"library {library_code}, {public_url(url)}"
    secrets = conn.secrets() if conn else []
    previous = state.get(STATE_KEY) or {}
    kept = landing.download_path(library_code, previous["file"]) if previous.get("file") else None
    headers = {}
    if kept is not None and kept.is_file() and previous.get("url") == url:
        if previous.get("etag"):
            headers["If-None-Match"] = previous["etag"]
        if previous.get("last_modified"):
            headers["If-Modified-Since"] = previous["last_modified"]
    deadline = time.monotonic() + base.deadline_seconds()
    try:
        with session_for(conn) as session, session.get(url, headers=headers, stream=True,
                                                       timeout=base.timeouts()) as response:
            if response.status_code == 304 and headers:
                log.info("%s: not modified since the last download; keeping %s", where, kept.name)
                return kept
            if response.status_code >= 400:
                reason = redact(response.reason or "", secrets)
                hint = " (check the login and password of the connection)" if response.status_code in (401, 403) else ""
                raise FetchError(f"{where}: the server answered HTTP {response.status_code} {reason}{hint}")
            if response.status_code != 200:
                raise FetchError(f"{where}: unexpected HTTP {response.status_code}; expected 200 with the export")
            name = file_name_of(response, url, f"{library_code}-export")
            target = landing.download_path(library_code, name)
            size = stream_to_file(response, target, what=where, limit=base.max_bytes(), deadline=deadline)
            etag, last_modified = response.headers.get("ETag"), response.headers.get("Last-Modified")
    except requests.RequestException as exc:
        raise FetchError(f"{where}: {type(exc).__name__}: {redact(str(exc), secrets)}") from None
    if kept is not None and kept != target:
        kept.unlink(missing_ok=True)
    state.put(STATE_KEY, {"url": url, "file": target.name, "etag": etag, "last_modified": last_modified,
                          "size": size})
    log.info("%s: downloaded %s (%d bytes)", where, target.name, size)
    return target
