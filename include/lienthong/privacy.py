"""Patron pseudonyms: a keyed hash (HMAC-SHA256) replaces every reader identifier before the warehouse.

Pupils are minors (Decree 13/2023/ND-CP, Law on Personal Data Protection 2025): the warehouse holds no name,
phone, address or birth date and no raw reader identifier, only a pseudonym that links one reader's loans,
requests and card without saying who the reader is. The key is the secret that keeps pseudonyms from being
recomputed from a card number: it comes from ``LIENTHONG_PATRON_KEY`` or the Airflow connection
``lienthong_patron_key`` (``AIRFLOW_CONN_LIENTHONG_PATRON_KEY``), never from the repository, and it never
appears in a log line, an XCom value, an exception message or ``repr``. See docs/privacy.md.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import unicodedata
from pathlib import Path
from urllib.parse import unquote, urlsplit

KEY_ENV = "LIENTHONG_PATRON_KEY"
CONNECTION_ENV = "AIRFLOW_CONN_LIENTHONG_PATRON_KEY"
MIN_KEY_BYTES = 16


class PatronKeyError(RuntimeError):
    """No usable pseudonymisation key; the message says where to put one and never shows a key."""


def _from_connection(value: str) -> str | None:
    """The secret of an Airflow connection given as JSON (password, or extra.key) or as a URI (password)."""
    value = value.strip()
    if value.startswith("{"):
        try:
            data = json.loads(value)
        except json.JSONDecodeError:
            raise PatronKeyError(f"{CONNECTION_ENV} is not valid JSON") from None
        extra = data.get("extra") or {}
        if isinstance(extra, str):
            try:
                extra = json.loads(extra)
            except json.JSONDecodeError:
                extra = {}
        return data.get("password") or (extra.get("key") if isinstance(extra, dict) else None)
    try:
        password = urlsplit(value).password
    except ValueError:
        raise PatronKeyError(f"{CONNECTION_ENV} is not a connection URI") from None
    return unquote(password) if password else None


def load_key() -> bytes:
    """The key from the environment or the Airflow connection; refuses to go on without one."""
    secret = os.environ.get(KEY_ENV) or None
    source = KEY_ENV
    if secret is None and os.environ.get(CONNECTION_ENV):
        secret, source = _from_connection(os.environ[CONNECTION_ENV]), CONNECTION_ENV
    if not secret:
        raise PatronKeyError(
            f"no patron pseudonymisation key: set {KEY_ENV} or the Airflow connection lienthong_patron_key "
            f"({CONNECTION_ENV}, password field); circulation data is not read without it (docs/privacy.md)")
    key = secret.encode("utf-8")
    if len(key) < MIN_KEY_BYTES:
        raise PatronKeyError(f"the patron key from {source} is shorter than {MIN_KEY_BYTES} bytes; "
                             "use a long random secret, e.g. from secrets.token_hex(32)")
    return key


def ensure_demo_key(path: Path | None = None) -> Path | None:
    """For the sample province only: when no key is configured, use a random one kept in
    ``var/demo-patron.key`` (owner-readable, created once). Returns the file used, None if a key was set."""
    if os.environ.get(KEY_ENV) or os.environ.get(CONNECTION_ENV):
        return None
    from lienthong import config

    path = path or config.var_dir() / "demo-patron.key"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(32))
    os.environ[KEY_ENV] = path.read_text().strip()
    return path


def normalise_identifier(value: str) -> str:
    """One spelling per reader identifier: NFC, no surrounding or inner blanks, case-folded."""
    return "".join(unicodedata.normalize("NFC", value).split()).casefold()


class Pseudonymiser:
    """Turns reader identifiers into pseudonyms; holds the key without ever showing it."""

    __slots__ = ("_key", "key_id")

    def __init__(self, key: bytes | None = None):
        self._key = key if key is not None else load_key()
        # Which key made a pseudonym, so a key rotation is visible (pseudonyms of two keys never match).
        self.key_id = hmac.new(self._key, b"lienthong key id", hashlib.sha256).hexdigest()[:12]

    def __repr__(self) -> str:
        return f"Pseudonymiser(key_id={self.key_id!r})"

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError("a Pseudonymiser is not serialisable: each process loads the key itself")

    def pseudonym(self, identifier: str | None) -> str | None:
        """64 hex characters for a reader identifier, None when there is none."""
        if identifier is None:
            return None
        text = normalise_identifier(str(identifier))
        if not text:
            return None
        return hmac.new(self._key, text.encode("utf-8"), hashlib.sha256).hexdigest()
