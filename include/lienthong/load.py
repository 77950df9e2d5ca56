"""Load: COPY a batch into staging, then apply it to core as one snapshot in one transaction (a library's first
snapshot, with nothing to compare, is COPYed into core directly: see :class:`FirstSnapshot`).

Core keeps history: a record version lives from ``valid_from`` to ``valid_to``; an unchanged record (same
record hash) keeps its row, a changed one gets a new version, a record gone from a full export is closed.
A record quarantined in this batch keeps its last good version, so a bad export never wipes good data.
"""
from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import msgspec
import sqlalchemy as sa
from msgspec.structs import astuple

from lienthong.model import CanonicalRecord, Item

# Advisory lock namespace: pg_advisory_lock(namespace, hashtext(library_code)) serialises a library's runs.
LIBRARY_LOCK_NAMESPACE = 7426

RECORD_COLUMNS = (
    "batch_id", "local_id", "record_index", "byte_offset", "title", "author", "pub_place", "publisher",
    "pub_year", "isbns", "language", "keywords", "subjects", "call_number", "quantity", "encoding", "repairs",
    "record_hash", "has_warnings", "is_complete",
)
# A copy's columns are its Item fields in their order: a row carries ``astuple(item)`` as it is.
ITEM_COLUMNS = ("batch_id", "local_id", "item_seq", *Item.__struct_fields__)


# PostgreSQL text cannot hold NUL; normalise already replaces it, this is the last line of defence.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\x00": "\ufffd"})


_LINE_BREAKS = re.compile(r"[\n\r\x00]")


def _copy_line(row: Sequence) -> str:
    """One row in COPY's text format: NULL is \\N, so '' and NULL stay distinct.

    Almost no catalogue text holds a tab, a line break or a backslash, so the joined line is checked once:
    as many tabs as separators and as many backslashes as NULLs means no value needs escaping.
    """
    texts = ["\\N" if value is None else value if value.__class__ is str
             else ("t" if value else "f") if value.__class__ is bool else str(value) for value in row]
    line = "\t".join(texts)
    if (line.count("\t") == len(texts) - 1 and line.count("\\") == row.count(None)
            and not _LINE_BREAKS.search(line)):
        return line
    escaped = ["\\N" if value is None else text.translate(_COPY_ESCAPES) for value, text in zip(row, texts)]
    return "\t".join(escaped)


def _copy_text(rows: Iterable[Sequence]) -> str:
    """Rows in COPY's text format, a line each."""
    return "".join(f"{_copy_line(row)}\n" for row in rows)


_AS_TEXT = {None: "\\N"}  # .get(value, value): NULL's marker for None, any text as it is
_BOOL_TEXT = {True: "t", False: "f"}


def _text_rows(rows: Callable[[], Iterable[Sequence[str | None]]], width: int) -> str:
    """A chunk's rows of ``width`` texts or None in COPY's text format, joined without looking at each value.

    The joined chunk is checked once instead: as many tabs as separators, as many line breaks as rows, as many
    backslashes as NULLs, no carriage return or NUL. Only a chunk that fails (a value holding one of them, or
    not text at all) is made again by :func:`_copy_text`, which escapes value by value; ``rows`` makes the rows
    anew for that, so they are never held.
    """
    lines: list[str] = []
    nulls = 0
    as_text = _AS_TEXT.get
    try:
        for row in rows():
            nulls += row.count(None)
            lines.append("\t".join(map(as_text, row, row)))
    except TypeError:  # a number or a list where text was expected
        return _copy_text(rows())
    text = "\n".join(lines) + "\n" if lines else ""
    if (text.count("\t") == len(lines) * (width - 1) and text.count("\n") == len(lines)
            and text.count("\\") == nulls and "\r" not in text and "\x00" not in text):
        return text
    return _copy_text(rows())


def _copy_text_into(raw_connection, table: str, columns: Sequence[str], text: str) -> None:
    if text:
        with raw_connection.cursor() as cursor:
            cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN", io.StringIO(text))


def _copy(raw_connection, table: str, columns: Sequence[str], rows: Iterable[Sequence]) -> int:
    text = _copy_text(rows)
    _copy_text_into(raw_connection, table, columns, text)
    return text.count("\n")  # a line per row: a line break inside a value is escaped


_JSON = msgspec.json.Encoder()  # records (msgspec Structs) as they are


def _json(value) -> str:
    """JSON for a jsonb column, which refuses NUL even escaped."""
    return _JSON.encode(value).decode().replace("\\u0000", "\ufffd")


def _text_array(values: Sequence[str]) -> str:
    """A text[] literal for COPY: every element quoted, so commas, braces and NULL-looking words stay text.

    The literal's own backslashes are doubled again by :func:`_copy_line`, as COPY's text format requires.
    """
    if not values:
        return "{}"
    probe = "".join(values)
    if '"' not in probe and "\\" not in probe:
        return '{"' + '","'.join(values) + '"}'
    return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"


def _number_text(value: int | None) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class ChunkRows:
    """A chunk's loadable records and items as COPY text (for staging, or for core), built before any connection
    is used."""

    records: str
    items: str
    record_count: int
    item_count: int


def staging_rows(batch_id: int, records: Sequence[CanonicalRecord],
                 flags: dict[int, tuple[bool, bool]]) -> ChunkRows:
    """flags[record_index] = (has_warnings, is_complete). Rows are generated, never held: a chunk's tuples kept
    alive at once cost the garbage collector about 0.5 s per 100,000 records (measured)."""
    batch = str(batch_id)

    def record_rows():
        for rec in records:
            has_warnings, is_complete = flags[rec.record_index]
            yield (batch, rec.local_id, str(rec.record_index), _number_text(rec.byte_offset), rec.title, rec.author,
                   rec.pub_place, rec.publisher, rec.pub_year, _text_array(rec.isbns), rec.language,
                   _text_array(rec.keywords), _text_array(rec.subjects), rec.call_number, _number_text(rec.quantity),
                   rec.encoding, _text_array(rec.repairs), rec.record_hash, _BOOL_TEXT[has_warnings],
                   _BOOL_TEXT[is_complete])

    def item_rows():
        for rec in records:
            for seq, item in enumerate(rec.items):
                yield (batch, rec.local_id, str(seq)) + astuple(item)

    return ChunkRows(_text_rows(record_rows, len(RECORD_COLUMNS)), _text_rows(item_rows, len(ITEM_COLUMNS)),
                     len(records), sum(len(rec.items) for rec in records))


def stage_records(engine: sa.Engine, rows: ChunkRows) -> tuple[int, int]:
    """COPY a chunk into staging and commit it: (records, items)."""
    raw = engine.raw_connection()
    try:
        _copy_text_into(raw, "staging.record", RECORD_COLUMNS, rows.records)
        _copy_text_into(raw, "staging.item", ITEM_COLUMNS, rows.items)
        raw.commit()
    finally:
        raw.close()
    return rows.record_count, rows.item_count


CORE_RECORD_COLUMNS = (
    "record_id", "library_code", "local_id", "record_hash", "title", "author", "pub_place", "publisher", "pub_year",
    "isbns", "language", "keywords", "subjects", "call_number", "quantity", "encoding", "repairs", "has_warnings",
    "is_complete", "valid_from", "loaded_by_batch",
)
CORE_ITEM_COLUMNS = ("record_id", "library_code", "item_seq", *Item.__struct_fields__)


def core_rows(batch_id: int, library_code: str, valid_from: str, record_ids: Sequence[int],
              records: Sequence[CanonicalRecord], flags: dict[int, tuple[bool, bool]]) -> ChunkRows:
    """A first snapshot's chunk as COPY text for core itself: new current versions under reserved record ids."""
    batch = str(batch_id)

    def record_rows():
        for record_id, rec in zip(record_ids, records):
            has_warnings, is_complete = flags[rec.record_index]
            yield (str(record_id), library_code, rec.local_id, rec.record_hash, rec.title, rec.author, rec.pub_place,
                   rec.publisher, rec.pub_year, _text_array(rec.isbns), rec.language, _text_array(rec.keywords),
                   _text_array(rec.subjects), rec.call_number, _number_text(rec.quantity), rec.encoding,
                   _text_array(rec.repairs), _BOOL_TEXT[has_warnings], _BOOL_TEXT[is_complete], valid_from, batch)

    def item_rows():
        for record_id, rec in zip(record_ids, records):
            if rec.items:
                record = str(record_id)
                for seq, item in enumerate(rec.items):
                    yield (record, library_code, str(seq)) + astuple(item)

    return ChunkRows(_text_rows(record_rows, len(CORE_RECORD_COLUMNS)),
                     _text_rows(item_rows, len(CORE_ITEM_COLUMNS)), len(records),
                     sum(len(rec.items) for rec in records))


def copy_core_rows(raw_connection, rows: ChunkRows) -> tuple[int, int]:
    """COPY a first snapshot's chunk into core.record and core.item, in the caller's transaction."""
    _copy_text_into(raw_connection, "core.record", CORE_RECORD_COLUMNS, rows.records)
    _copy_text_into(raw_connection, "core.item", CORE_ITEM_COLUMNS, rows.items)
    return rows.record_count, rows.item_count


class Stager:
    """Staging COPYs on a thread of their own, in order, while the ingest reads and validates the next chunk.

    The ingesting process is the pipeline's critical path; it would otherwise wait while PostgreSQL parses each
    COPY. :meth:`wait` returns once every chunk is committed to staging, and raises the first failure; a
    failure also surfaces at the next :meth:`stage`.
    """

    def __init__(self, engine: sa.Engine, batch_id: int) -> None:
        self.engine, self.batch_id = engine, batch_id
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"staging-{batch_id}")
        self._futures: list[Future] = []

    def stage(self, records: Sequence[CanonicalRecord], flags: dict[int, tuple[bool, bool]]) -> None:
        """Queue the chunk's COPY (see :func:`stage_records`); an earlier chunk's failure is raised here."""
        _raise_first_failure(self._futures)
        rows = staging_rows(self.batch_id, records, flags)
        self._futures.append(self._thread.submit(lambda: stage_records(self.engine, rows)))

    def wait(self) -> None:
        for future in self._futures:
            future.result()

    def close(self) -> None:
        self._thread.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Stager:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _raise_first_failure(futures: Sequence[Future]) -> None:
    for future in futures:
        if future.done() and future.exception() is not None:
            raise future.exception()


def _copy_through_temp(conn: sa.Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence]) -> int:
    """COPY into a table under row-level security, which refuses COPY FROM: through a temporary twin.

    Callers skip it when they have no row: the twin is created and dropped in each transaction (about 2 ms).
    """
    twin = "copy_" + table.replace(".", "_")
    names = ", ".join(columns)
    conn.exec_driver_sql(f"CREATE TEMP TABLE IF NOT EXISTS {twin} ON COMMIT DROP AS "
                         f"SELECT {names} FROM {table} WITH NO DATA")
    count = _copy(conn.connection.dbapi_connection, twin, columns, rows)
    if count:
        conn.exec_driver_sql(f"INSERT INTO {table} ({names}) SELECT {names} FROM {twin}")
        conn.exec_driver_sql(f"TRUNCATE {twin}")
    return count


def write_quarantine(conn: sa.Connection, batch_id: int, library_code: str,
                     records: Sequence[tuple[CanonicalRecord, list[str]]]) -> None:
    if not records:
        return
    _copy_through_temp(conn, "quality.quarantine",
          ("batch_id", "library_code", "local_id", "record_index", "record_hash", "title", "reasons", "record"),
          ((batch_id, library_code, rec.local_id, rec.record_index, rec.record_hash, rec.title,
            _text_array(reasons), _json(rec)) for rec, reasons in records))


def write_failures(conn: sa.Connection, batch_id: int, library_code: str, failures: Sequence) -> None:
    if not failures:
        return
    _copy_through_temp(conn, "quality.check_failure",
          ("batch_id", "library_code", "local_id", "record_index", "rule", "field", "value", "severity",
           "message_vi", "fix_vi", "record_hash", "default_severity", "accepted", "exception_id"),
          ((batch_id, library_code, f.local_id, f.record_index, f.rule, f.field,
            None if f.value is None else str(f.value), f.severity, f.message_vi, f.fix_vi,
            getattr(f, "record_hash", None), getattr(f, "default_severity", None) or f.severity,
            bool(getattr(f, "accepted", False)), getattr(f, "exception_id", None)) for f in failures))


def write_unreadable(conn: sa.Connection, batch_id: int, library_code: str, unreadable: Sequence) -> None:
    if not unreadable:
        return
    _copy_through_temp(conn, "quality.unreadable",
          ("batch_id", "library_code", "record_index", "byte_offset", "reason"),
          ((batch_id, library_code, u.index, u.offset, u.reason) for u in unreadable))


def current_record_count(conn: sa.Connection, library_code: str) -> int:
    return conn.execute(
        sa.text("SELECT count(*) FROM core.record WHERE library_code = :l AND valid_to IS NULL"), {"l": library_code}
    ).scalar_one()


_CLOSE_GONE_OR_CHANGED = sa.text(
    """UPDATE core.record r SET valid_to = now(), closed_by_batch = :b
       WHERE r.library_code = :l AND r.valid_to IS NULL
         AND NOT EXISTS (SELECT 1 FROM staging.record s
                         WHERE s.batch_id = :b AND s.local_id = r.local_id AND s.record_hash = r.record_hash)
         AND NOT EXISTS (SELECT 1 FROM quality.quarantine q WHERE q.batch_id = :b AND q.local_id = r.local_id)"""
)

_REFRESH_FLAGS = sa.text(
    """UPDATE core.record r SET has_warnings = s.has_warnings, is_complete = s.is_complete
       FROM staging.record s
       WHERE s.batch_id = :b AND r.library_code = :l AND r.valid_to IS NULL AND s.local_id = r.local_id
         AND (r.has_warnings, r.is_complete) IS DISTINCT FROM (s.has_warnings, s.is_complete)"""
)

_INSERT_NEW_VERSIONS = sa.text(
    """WITH new_version AS (
           INSERT INTO core.record (library_code, local_id, record_hash, title, author, pub_place, publisher,
                                    pub_year, isbns, language, keywords, subjects, call_number, quantity, encoding,
                                    repairs, has_warnings, is_complete, valid_from, loaded_by_batch)
           SELECT :l, s.local_id, s.record_hash, s.title, s.author, s.pub_place, s.publisher, s.pub_year,
                  s.isbns, s.language, s.keywords, s.subjects, s.call_number, s.quantity, s.encoding,
                  s.repairs, s.has_warnings, s.is_complete, now(), :b
           FROM staging.record s
           WHERE s.batch_id = :b AND NOT EXISTS (SELECT 1 FROM core.record r
                                                 WHERE r.library_code = :l AND r.valid_to IS NULL
                                                   AND r.local_id = s.local_id)
           RETURNING record_id, local_id
       ), new_items AS (
           INSERT INTO core.item (record_id, library_code, item_seq, accession_number, call_number, barcode,
                                  collection, item_type, location, status)
           SELECT nv.record_id, :l, si.item_seq, si.accession_number, si.call_number, si.barcode, si.collection,
                  si.item_type, si.location, si.status
           FROM staging.item si JOIN new_version nv ON nv.local_id = si.local_id
           WHERE si.batch_id = :b
           RETURNING 1
       )
       SELECT (SELECT count(*) FROM new_version), (SELECT count(*) FROM new_items)"""
)


def apply_snapshot(conn: sa.Connection, batch_id: int, library_code: str) -> dict:
    """Make core match the staged full export (caller holds the library lock, in one transaction).

    Staging's statistics describe whatever batches were there at the last autoanalyze, often none, and a
    pipeline login that does not own the tables cannot ANALYZE them. Believing a batch is one row, the
    planner nests loops over tens of thousands (measured: minutes for a 44,000-record export), so these
    joins are hashed whatever the estimates say.
    """
    conn.execute(sa.text("SET LOCAL enable_nestloop = off"))
    closed = conn.execute(_CLOSE_GONE_OR_CHANGED, {"b": batch_id, "l": library_code}).rowcount
    conn.execute(_REFRESH_FLAGS, {"b": batch_id, "l": library_code})
    inserted, items = conn.execute(_INSERT_NEW_VERSIONS, {"b": batch_id, "l": library_code}).one()
    conn.execute(sa.text("SET LOCAL enable_nestloop = DEFAULT"))
    return {"records_closed": closed, "records_inserted": int(inserted), "items_inserted": int(items)}


class FirstSnapshot:
    """The snapshot of a library with no current record, COPYed into core chunk by chunk, on a thread of its own.

    None of its records has a version to close or compare with, so a chunk needs no staging: it goes into
    core.record and core.item under record ids reserved from their sequence, while the next chunk is read and
    validated (staging, then an insert from it, cost PostgreSQL twice the writes). Every COPY runs in the one
    transaction that also records the batch's outcome, under a savepoint: a held batch rolls them back, and no
    one sees any of it before the batch commits. Build it only under the library lock, after counting no
    current record.
    """

    def __init__(self, engine: sa.Engine, batch_id: int, library_code: str) -> None:
        self.batch_id, self.library_code = batch_id, library_code
        self.connection = engine.connect()
        self._transaction = self.connection.begin()
        # The transaction's own now(), the valid_from an INSERT in it would give.
        self.valid_from = self.connection.execute(sa.text("SELECT now()")).scalar_one().isoformat()
        self._inserts = self.connection.begin_nested()
        self._sequence = engine.connect()  # nextval is not transactional: reserving ids commits nothing
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"snapshot-{library_code}")
        self._futures: list[Future] = []

    def stage(self, records: Sequence[CanonicalRecord], flags: dict[int, tuple[bool, bool]]) -> None:
        """Queue the chunk's COPY into core (see :func:`core_rows`); an earlier chunk's failure is raised here."""
        _raise_first_failure(self._futures)
        if not records:
            return
        record_ids = self._sequence.execute(_RESERVE_RECORD_IDS, {"n": len(records)}).scalars().all()
        self._sequence.commit()
        rows = core_rows(self.batch_id, self.library_code, self.valid_from, record_ids, records, flags)
        self._futures.append(
            self._thread.submit(lambda: copy_core_rows(self.connection.connection.dbapi_connection, rows)))

    def wait(self) -> dict:
        """Every queued COPY done: the counts :func:`apply_snapshot` gives (nothing was current to close)."""
        done = [future.result() for future in self._futures]
        return {"records_closed": 0, "records_inserted": sum(r for r, _ in done),
                "items_inserted": sum(i for _, i in done)}

    def keep(self) -> None:
        self._inserts.commit()

    def discard(self) -> None:
        self._inserts.rollback()

    @contextmanager
    def finishing(self) -> Iterator[sa.Connection]:
        """The transaction, to record the batch's outcome in: committed on success, else rolled back."""
        try:
            yield self.connection
            self._transaction.commit()
        finally:
            self.close()

    def __enter__(self) -> FirstSnapshot:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Roll back whatever was not committed and let the connection go (idempotent)."""
        self._thread.shutdown(wait=True, cancel_futures=True)
        if self._transaction.is_active:
            self._transaction.rollback()
        self.connection.close()
        self._sequence.close()


_RESERVE_RECORD_IDS = sa.text(
    "SELECT nextval(pg_get_serial_sequence('core.record', 'record_id')) FROM generate_series(1, :n)")


def clear_staging(conn: sa.Connection, batch_id: int) -> None:
    conn.execute(sa.text("DELETE FROM staging.item WHERE batch_id = :b"), {"b": batch_id})
    conn.execute(sa.text("DELETE FROM staging.record WHERE batch_id = :b"), {"b": batch_id})
