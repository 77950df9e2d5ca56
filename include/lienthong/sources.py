"""Sources: where a library's newest export comes from, by the transport its registry entry names.

``local`` reads the library's drop folder; ``http``, ``sftp`` and ``oai-pmh`` fetch from the library's
server into its landing folder (see :mod:`lienthong.transports`), with credentials taken only from the
Airflow connection the registry names.
"""
from __future__ import annotations

import fnmatch
import logging
from pathlib import Path

from lienthong import config
from lienthong.transports.base import FetchError, SourceError

__all__ = ["EXPORT_SUFFIXES", "FetchError", "SourceError", "drop_folder", "fetch_export", "location_label",
           "newest_export"]

log = logging.getLogger(__name__)

EXPORT_SUFFIXES = frozenset({".mrc", ".marc", ".iso", ".xml", ".marcxml", ".dat", ".csv", ".xlsx"})


def drop_folder(library_code: str, location: str | None = None) -> Path:
    """The library's drop folder, always inside the drop root whatever the registry says."""
    root = config.drop_root().resolve()
    folder = (root / (location or library_code)).resolve()
    if root != folder and root not in folder.parents:
        raise SourceError(f"drop folder {location!r} of library {library_code} is outside the drop root {root}")
    return folder


def _is_export(path: Path, pattern: str | None) -> bool:
    if path.name.startswith(".") or not path.is_file():
        return False
    if pattern:
        return fnmatch.fnmatchcase(path.name, pattern)
    return path.suffix.lower() in EXPORT_SUFFIXES


def newest_export(library_code: str, location: str | None = None, pattern: str | None = None) -> Path | None:
    """The most recently modified export file in the drop folder (name breaks ties), or None.

    Only regular files that stay inside the drop folder count: a symlink pointing elsewhere is ignored.
    """
    folder = drop_folder(library_code, location)
    if not folder.is_dir():
        return None
    candidates = [p for p in folder.iterdir() if _is_export(p, pattern) and p.resolve().parent == folder]
    if not candidates:
        return None
    return max(candidates, key=lambda p: (p.stat().st_mtime_ns, p.name))


def location_label(library) -> str:
    """Where the library's exports come from, for messages: its drop folder or its server (no credentials)."""
    from lienthong.transports.base import public_url

    source = library.source
    if source.transport == "local":
        return f"drop folder {drop_folder(library.code, source.location)}"
    return f"{source.transport} {public_url(source.location or '')}"


def fetch_export(library, *, registry=None) -> Path | None:
    """The local file to ingest for ``library`` (a registry Library or its code), or None if there is none.

    Remote transports keep the last download: an export the server reports unchanged is not downloaded
    again, and its kept copy is returned so ingest recognises it by its sha256.
    """
    if isinstance(library, str):
        from lienthong.registry import load_registry

        registry = registry or load_registry()
        if library not in registry.libraries:
            raise SourceError(f"library {library!r} is not in the registry {registry.path}")
        library = registry.libraries[library]
    source = library.source
    transport = source.transport
    pattern = getattr(source, "pattern", None)
    if transport == "local":
        return newest_export(library.code, source.location, pattern)

    from lienthong.transports import http, oai, sftp
    from lienthong.transports.connections import get_connection
    from lienthong.transports.state import SourceState

    conn_id = getattr(source, "connection", None)
    conn = get_connection(conn_id) if conn_id else None
    state = SourceState(library.code)
    if transport == "http":
        return http.fetch(library.code, source.location, conn, state)
    if transport == "sftp":
        if conn is None:
            raise SourceError(f"library {library.code}: transport sftp needs a `connection` in the registry")
        return sftp.fetch(library.code, source.location, conn, state, pattern, EXPORT_SUFFIXES)
    if transport == "oai-pmh":
        return oai.harvest(library.code, source.location, conn, state,
                           metadata_prefix=getattr(source, "metadata_prefix", None) or oai.DEFAULT_METADATA_PREFIX,
                           oai_set=getattr(source, "set", None))
    raise SourceError(f"library {library.code}: unknown transport {transport!r}")
