"""Per-library fetch state, kept in SQLite in the library's landing folder (``state.sqlite3``).

What a transport must remember between runs lives beside the bytes it describes, not in the warehouse, so a
fetch needs no database connection: the validators of the last HTTP download, the last SFTP file, and an
OAI-PMH harvest's current records and datestamp.
"""
from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from lienthong import landing

SCHEMA = """
CREATE TABLE IF NOT EXISTS fetch_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS oai_record (
    identifier TEXT PRIMARY KEY,
    datestamp  TEXT NOT NULL,
    marcxml    BLOB NOT NULL
);
"""


class SourceState:
    def __init__(self, library_code: str):
        self.library_code = library_code
        self.path: Path = landing.workspace(library_code) / "state.sqlite3"
        with closing(self._connect()) as conn, conn:
            conn.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One SQLite transaction: a harvest's changes are applied whole or not at all."""
        with closing(self._connect()) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            conn.commit()

    def get(self, key: str) -> Any:
        with closing(self._connect()) as conn:
            row = conn.execute("SELECT value FROM fetch_state WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: Any, conn: sqlite3.Connection | None = None) -> None:
        sql = ("INSERT INTO fetch_state (key, value) VALUES (?, ?) "
               "ON CONFLICT (key) DO UPDATE SET value = excluded.value")
        if conn is not None:
            conn.execute(sql, (key, json.dumps(value)))
            return
        with closing(self._connect()) as own, own:
            own.execute(sql, (key, json.dumps(value)))

    def record_count(self) -> int:
        with closing(self._connect()) as conn:
            return conn.execute("SELECT count(*) FROM oai_record").fetchone()[0]

    def records(self) -> Iterable[tuple[str, bytes]]:
        """(identifier, MARCXML record) in identifier order, so the same records give the same snapshot bytes."""
        with closing(self._connect()) as conn:
            yield from conn.execute("SELECT identifier, marcxml FROM oai_record ORDER BY identifier")
