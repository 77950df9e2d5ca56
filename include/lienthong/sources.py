"""Sources: where a library's newest export is found. Only the local drop folder so far."""
from __future__ import annotations

from pathlib import Path

from lienthong import config

EXPORT_SUFFIXES = {".mrc", ".marc", ".iso", ".xml", ".marcxml", ".dat"}


class SourceError(RuntimeError):
    pass


def drop_folder(library_code: str, location: str | None = None) -> Path:
    """The library's drop folder, always inside the drop root whatever the registry says."""
    root = config.drop_root().resolve()
    folder = (root / (location or library_code)).resolve()
    if root != folder and root not in folder.parents:
        raise SourceError(f"drop folder {location!r} of library {library_code} is outside the drop root {root}")
    return folder


def newest_export(library_code: str, location: str | None = None) -> Path | None:
    """The most recently modified export file in the drop folder (name breaks ties), or None."""
    folder = drop_folder(library_code, location)
    if not folder.is_dir():
        return None
    candidates = [
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in EXPORT_SUFFIXES
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda p: (p.stat().st_mtime_ns, p.name))
