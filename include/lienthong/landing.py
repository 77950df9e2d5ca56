"""Landing: the raw bytes of every export, content-addressed by sha256 and kept forever.

The stored name is the digest alone, so a hostile original name (``../../etc``, control characters) can
never choose where bytes go; the original name is only recorded, cleaned, in the manifest.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from lienthong import config

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Delivery:
    delivery_id: int
    library_code: str
    sha256: str
    size_bytes: int
    stored_path: Path
    original_name: str
    is_new: bool


def clean_name(name: str) -> str:
    """The original file name as a printable label: no path, no control characters."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    printable = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C")
    return unicodedata.normalize("NFC", printable).strip() or "unnamed"


def store_bytes(source: Path) -> tuple[str, int, Path]:
    """Copy a file into the landing store while hashing it; returns (sha256, size, stored path)."""
    root = config.landing_root()
    root.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    with open(source, "rb") as src, tempfile.NamedTemporaryFile(dir=root, prefix=".incoming-", delete=False) as tmp:
        try:
            while chunk := src.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
                tmp.write(chunk)
            tmp.flush()
            os.fsync(tmp.fileno())
        except BaseException:
            os.unlink(tmp.name)
            raise
    sha = digest.hexdigest()
    target = root / sha[:2] / sha
    if target.exists():
        os.unlink(tmp.name)
    else:
        target.parent.mkdir(exist_ok=True)
        os.replace(tmp.name, target)
        os.chmod(target, 0o444)
    return sha, size, target


def land(engine: sa.Engine, library_code: str, source_path: Path, source: str) -> Delivery:
    """Keep the file's bytes and record a manifest row; the same content again is a no-op."""
    sha, size, stored = store_bytes(source_path)
    name = clean_name(source_path.name)
    with engine.begin() as conn:
        row = conn.execute(
            sa.text(
                """INSERT INTO landing.delivery (library_code, source, original_name, sha256, size_bytes, stored_path)
                   VALUES (:library, :source, :name, :sha, :size, :path)
                   ON CONFLICT (library_code, sha256) DO NOTHING
                   RETURNING delivery_id"""
            ),
            {"library": library_code, "source": source, "name": name, "sha": sha, "size": size,
             "path": str(stored.relative_to(config.landing_root()))},
        ).first()
        is_new = row is not None
        if not is_new:
            row = conn.execute(
                sa.text("SELECT delivery_id FROM landing.delivery WHERE library_code = :l AND sha256 = :s"),
                {"l": library_code, "s": sha},
            ).first()
    return Delivery(row[0], library_code, sha, size, stored, name, is_new)


def path_of(sha256: str) -> Path:
    return config.landing_root() / sha256[:2] / sha256


def copy_out(sha256: str, target: Path) -> Path:
    shutil.copyfile(path_of(sha256), target)
    return target
