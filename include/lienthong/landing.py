"""Landing: the raw bytes of every export, content-addressed by sha256 and kept forever.

The stored name is the digest alone, so a hostile original name (``../../etc``, control characters) can
never choose where bytes go; the original name is only recorded, cleaned, in the manifest.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from lienthong import config

_CHUNK = 1 << 20
MAX_NAME_CHARS = 200  # label in the manifest
MAX_FILE_NAME_BYTES = 200  # a name written to disk: under every file system's 255-byte limit
# Names Windows refuses whatever the extension (a share exported over SMB would choke on them).
_WINDOWS_RESERVED = re.compile(r"^(CON|PRN|AUX|NUL|CONIN\$|CONOUT\$|COM[0-9¹²³]|LPT[0-9¹²³])(\..*)?$", re.I)
_UNSAFE_CHARS = re.compile(r'[<>:"/\\|?*]')


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
    """The original file name as a printable label: no path, no control characters, bounded length."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    printable = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C")
    label = unicodedata.normalize("NFC", printable).strip()
    if label in ("", ".", ".."):
        return "unnamed"
    if len(label) > MAX_NAME_CHARS:
        stem, dot, suffix = label.rpartition(".")
        suffix = f".{suffix}" if dot and stem and len(suffix) <= 10 else ""
        label = label[: MAX_NAME_CHARS - len(suffix) - 1] + "…" + suffix
    return label


def safe_file_name(name: str) -> str:
    """A name that is safe to create on any file system, for a file a server or a library named.

    Beyond :func:`clean_name`: no separators or characters Windows refuses, no leading dot (hidden, or
    ``..``), no trailing dots or spaces, no reserved device names, at most MAX_FILE_NAME_BYTES in UTF-8.
    """
    label = _UNSAFE_CHARS.sub("_", clean_name(name)).strip(" .")
    label = label.lstrip(".") or "unnamed"
    if _WINDOWS_RESERVED.match(label):
        label = f"_{label}"
    if len(label.encode("utf-8")) > MAX_FILE_NAME_BYTES:
        stem, dot, suffix = label.rpartition(".")
        suffix = f".{suffix}" if dot and stem and len(suffix.encode()) <= 16 else ""
        budget = MAX_FILE_NAME_BYTES - len(suffix.encode("utf-8"))
        stem = (stem if suffix else label).encode("utf-8")[:budget].decode("utf-8", "ignore").rstrip(" .")
        label = (stem or "unnamed") + suffix
    return label


def workspace(library_code: str) -> Path:
    """The library's own folder beside the store: downloads and fetch state (``<landing>/sources/<code>``)."""
    root = (config.landing_root() / "sources").resolve()
    folder = (root / safe_file_name(library_code)).resolve()
    if folder.parent != root:
        raise ValueError(f"library code {library_code!r} cannot name a landing folder")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def download_path(library_code: str, name: str) -> Path:
    """Where a downloaded export named ``name`` by its server is kept; always inside the library's folder."""
    folder = workspace(library_code) / "download"
    folder.mkdir(exist_ok=True)
    target = folder / safe_file_name(name)
    if target.resolve().parent != folder.resolve():
        raise ValueError(f"file name {name!r} would leave the landing folder")
    return target


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
