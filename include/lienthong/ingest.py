"""One library's export, end to end: source → landing → parse → normalise → validate → load.

The DAG's mapped task and ``lienthong ingest`` both call :func:`ingest_library`. Every record read ends
loaded, quarantined or unreadable (conservation), and the counts say which.
"""
from __future__ import annotations

import dataclasses
import gc
import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import sqlalchemy as sa

from lienthong import landing, load, quality, scorecard, sources, warehouse, workers
from lienthong.model import CanonicalRecord
from lienthong.normalise import to_canonical
from lienthong.parse import ParsedRecord, ParseError, Unreadable, detect_format, read_records
from lienthong.registry import Registry, load_registry
from lienthong.validate import ELEMENTS, Failure, Policy, get_context, validate_export, validate_records

log = logging.getLogger(__name__)

CHUNK_SIZE = 20_000
TAIL_CHUNK_DIVISOR = 8  # near the end of a large file, chunks shrink down to an eighth of the chunk size
DEFAULT_HOLD_DROP = 0.5  # an export with half the records of the last accepted one is held, not applied
MAX_REASONS = 20
TABULAR_FORMATS = ("csv", "xlsx")


class IngestError(RuntimeError):
    """A library's ingest failed as a whole; the message names the library and the file."""


@dataclass
class IngestResult:
    library: str
    status: str  # applied | held | unchanged | no_export | failed
    batch_id: int | None = None
    file: str | None = None
    sha256: str | None = None
    read: int = 0
    loaded: int = 0
    quarantined: int = 0
    unreadable: int = 0
    items: int = 0
    records_inserted: int = 0
    records_closed: int = 0
    message: str | None = None
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    warning_reasons: dict[str, int] = field(default_factory=dict)
    unreadable_reasons: list[str] = field(default_factory=list)
    accepted: int = 0  # failures covered by an accepted exception
    tier: str | None = None
    batch_checks: dict[str, bool] = field(default_factory=dict)  # "rule:field" → passed

    @property
    def conserved(self) -> bool:
        return self.read == self.loaded + self.quarantined + self.unreadable

    def to_dict(self) -> dict:
        data = asdict(self)
        data["conserved"] = self.conserved
        return data


def _duplicate_failure(rec: CanonicalRecord) -> Failure:
    return Failure(
        record_key=str(rec.record_index), local_id=rec.local_id, record_index=rec.record_index,
        rule="duplicate_local_id", field="001", value=rec.local_id, severity="error",
        message_vi=f"Số kiểm soát (001) '{rec.local_id}' xuất hiện nhiều lần trong cùng tệp xuất.",
        fix_vi="Mỗi biểu ghi phải có một số kiểm soát 001 riêng; sửa hoặc xóa biểu ghi trùng rồi xuất lại.",
        record_hash=rec.record_hash, default_severity="error",
    )


def _chunks(stream: Iterator, size: int, file_size: int | None = None) -> Iterator[list]:
    """Chunks of ``size`` entries; with ``file_size``, smaller ones toward the end of the file.

    The last chunk is validated, then COPYed, while nothing else runs: the ingesting process waits for the
    COPY and one core idles. Halving the chunks once less than a chunk is left (as estimated from the byte
    offsets read so far) lets each COPY run while the next, smaller, chunk is validated.
    """
    chunk: list = []
    target, count = size, 0
    for entry in stream:
        chunk.append(entry)
        count += 1
        if len(chunk) >= target:
            yield chunk
            chunk = []
            offset = getattr(entry, "byte_offset", None) or getattr(entry, "offset", None)
            if file_size and offset:
                remaining = (file_size - offset) * count / offset
                target = max(min(size, int(remaining / 2)), size // TAIL_CHUNK_DIVISOR, 1)
    if chunk:
        yield chunk


def _last_batch(conn: sa.Connection, library_code: str):
    return conn.execute(
        sa.text(
            """SELECT batch_id, sha256, status, records_read, records_loaded, records_quarantined,
                      records_unreadable, items_loaded, status_reason, started_at
               FROM core.batch WHERE library_code = :l AND status IN ('applied', 'held')
               ORDER BY batch_id DESC LIMIT 1"""
        ),
        {"l": library_code},
    ).mappings().first()


class _BatchRun:
    """The parse → validate → stage loop of one batch, accumulating counts and reasons."""

    names: tuple[str, str] | None = None  # (landed name, original name) for reasons
    sink: load.Stager | load.FirstSnapshot  # where run() puts each chunk's loadable records

    def __init__(self, engine: sa.Engine, batch_id: int, library_code: str, item_field: str,
                 field_mapping=None, policy: Policy | None = None, exceptions: dict | None = None,
                 decode_workers: int = 1, snapshot: load.FirstSnapshot | None = None):
        self.engine = engine
        self.snapshot = snapshot  # a first snapshot goes straight into core, chunk by chunk (see load.FirstSnapshot)
        self.workers = decode_workers  # processes decoding a large ISO 2709 file (see lienthong.workers)
        self.policy = policy or Policy()
        self.exceptions = exceptions or {}  # local_id → [(exception_id, rule, record_hash)]
        self.reopened: dict[int, str] = {}  # exception_id → why
        self.accession_seen: set[str] = set()  # ĐKCB keys of the whole export, across chunks
        self.elements = {name: [0, 0] for name in ELEMENTS}
        self.quality_counts = Counter()
        self.chunk_number = 0
        self.field_mapping = field_mapping
        self.batch_id = batch_id
        self.library_code = library_code
        self.item_field = item_field
        self.result_counts = Counter()
        self.quarantine_reasons: Counter = Counter()
        self.warning_reasons: Counter = Counter()
        self.unreadable_reasons: list[str] = []
        self.seen_ids: set[str] = set()
        self.file_size: int | None = None

    def run(self, path: Path, file_format: str, encoding: str | None, chunk_size: int,
            original_name: str | None = None) -> None:
        """Read the landed copy; reasons name the file as the library sent it, not its sha256."""
        self.names = (path.name, original_name) if original_name and original_name != path.name else None
        # A chunk allocates hundreds of thousands of small objects that live until it is loaded; the default
        # collector thresholds spend about half of the ingest's CPU scanning them (measured: 11.2 s → 5.7 s).
        thresholds = gc.get_threshold()
        gc.set_threshold(100_000, 50, 100)
        try:
            with load.Stager(self.engine, self.batch_id) if self.snapshot is None else nullcontext() as stager:
                self.sink = stager or self.snapshot
                stream = self._stream(path, file_format, encoding)
                for chunk in _chunks(stream, chunk_size, self.file_size):
                    self._chunk(chunk)
                if stager is not None:
                    stager.wait()
        finally:
            gc.set_threshold(*thresholds)

    def _named(self, entry: Unreadable) -> Unreadable:
        if self.names is None:
            return entry
        return dataclasses.replace(entry, reason=entry.reason.replace(*self.names))

    def _stream(self, path: Path, file_format: str, encoding: str | None) -> Iterator:
        """MARC formats go through parse → normalise; spreadsheets come out of tabular as canonical records."""
        if file_format == "auto":
            with open(path, "rb") as head:
                try:
                    file_format = detect_format(head.read(65536))
                except ParseError:
                    file_format = "auto"  # read_records reports an empty or unknown file with its reason
        if file_format in TABULAR_FORMATS:
            from lienthong.tabular import read_tabular

            return read_tabular(path, format=file_format, encoding=encoding, mapping=self.field_mapping,
                                library_code=self.library_code)
        if self.workers > 1 and (file_size := path.stat().st_size) >= workers.PARALLEL_MIN_BYTES:
            records = workers.canonical_records(path, format=file_format, encoding=encoding,
                                                library_code=self.library_code, item_field=self.item_field,
                                                workers=self.workers, meanwhile=get_context)
            if records is not None:
                self.file_size = file_size  # a lone large file: its last chunks shrink (see _chunks)
                return records
        return self._normalised(read_records(path, format=file_format, encoding=encoding, light=True))

    def _normalised(self, entries: Iterator[ParsedRecord | Unreadable]) -> Iterator[CanonicalRecord | Unreadable]:
        """Each record normalised as it is read, so a chunk holds canonical records, not MARC objects."""
        for entry in entries:
            yield entry if isinstance(entry, Unreadable) else to_canonical(entry, self.library_code,
                                                                           item_field=self.item_field)

    def _chunk(self, chunk: list[CanonicalRecord | Unreadable]) -> None:
        unreadable = [self._named(entry) for entry in chunk if isinstance(entry, Unreadable)]
        records = [entry for entry in chunk if not isinstance(entry, Unreadable)]
        self.result_counts["read"] += len(chunk)
        self.result_counts["unreadable"] += len(unreadable)
        for entry in unreadable:
            if len(self.unreadable_reasons) < MAX_REASONS:
                self.unreadable_reasons.append(entry.reason)

        validation = validate_records(records, self.policy, accession_seen=self.accession_seen)
        failures = list(validation.failures)
        for rec in records:
            if rec.local_id in self.seen_ids:
                failures.append(_duplicate_failure(rec))
            self.seen_ids.add(rec.local_id)
        self._apply_exceptions(records, failures)

        errors_by_index: dict[int, list[str]] = {}
        warned: set[int] = set()
        incomplete: set[int] = set()
        invalid: set[int] = set()
        for failure in failures:
            if failure.rule.startswith("missing_"):
                incomplete.add(failure.record_index)
            if failure.accepted:
                continue
            if not failure.rule.startswith("missing_"):
                invalid.add(failure.record_index)
            if failure.severity == "error":
                errors_by_index.setdefault(failure.record_index, []).append(failure.rule)
            else:
                warned.add(failure.record_index)
        for name, (present, evaluated) in validation.statistics["elements"].items():
            self.elements[name][0] += present
            self.elements[name][1] += evaluated
        self.quality_counts.update(
            records=len(records), complete=len(records) - len(incomplete), valid=len(records) - len(invalid),
            errors=len(errors_by_index), warnings=len(warned - set(errors_by_index)),
            accepted=sum(1 for f in failures if f.accepted))

        loadable, quarantined = [], []
        for rec in records:
            reasons = errors_by_index.get(rec.record_index)
            if reasons:
                quarantined.append((rec, reasons))
                self.quarantine_reasons.update(set(reasons))
            else:
                loadable.append(rec)
        for failure in failures:
            if (failure.severity == "warning" and not failure.accepted
                    and failure.record_index not in errors_by_index):
                self.warning_reasons[failure.rule] += 1

        flags = {rec.record_index: (rec.record_index in warned, rec.record_index not in incomplete)
                 for rec in loadable}
        self.sink.stage(loadable, flags)
        with self.engine.begin() as conn:
            load.write_quarantine(conn, self.batch_id, self.library_code, quarantined)
            load.write_failures(conn, self.batch_id, self.library_code, failures)
            load.write_unreadable(conn, self.batch_id, self.library_code, unreadable)
            quality.write_gx_results(conn, self.batch_id, self.library_code, self.chunk_number,
                                     validation.gx_results)
        self.chunk_number += 1
        self.result_counts["loaded"] += len(loadable)
        self.result_counts["items"] += sum(len(rec.items) for rec in loadable)
        self.result_counts["quarantined"] += len(quarantined)


    def _apply_exceptions(self, records: list[CanonicalRecord], failures: list[Failure]) -> None:
        """Accepted exceptions cover a failure while the record is unchanged; a changed record re-opens them."""
        if not self.exceptions:
            return
        hashes = {rec.local_id: rec.record_hash for rec in records}
        active: dict[tuple[str, str], int] = {}
        for local_id, record_hash in hashes.items():
            for exception_id, rule, accepted_hash in self.exceptions.get(local_id, ()):
                if accepted_hash == record_hash:
                    active[(local_id, rule)] = exception_id
                else:
                    self.reopened[exception_id] = "the record changed since the exception was accepted"
        for failure in failures:
            exception_id = active.get((failure.local_id, failure.rule))
            if exception_id is not None:
                failure.accepted, failure.exception_id = True, exception_id


def ingest_library(
    library_code: str,
    file: str | Path | None = None,
    *,
    registry: Registry | None = None,
    engine: sa.Engine | None = None,
    chunk_size: int = CHUNK_SIZE,
    decode_workers: int | None = None,
) -> IngestResult:
    """Ingest the library's newest export (or ``file``) as a full snapshot of its catalogue.

    ``decode_workers`` processes decode a large ISO 2709 export (default: LIENTHONG_INGEST_WORKERS or the
    cores available); the result is the same with one.
    """
    registry = registry or load_registry()
    library = registry.libraries.get(library_code)
    if library is None:
        raise IngestError(f"library {library_code!r} is not in the registry {registry.path}")
    source = library.source
    path = Path(file) if file else sources.fetch_export(library)
    if path is None:
        folder = sources.drop_folder(library_code, source.location)
        return IngestResult(library_code, "no_export", message=f"no export file in {folder}")
    if not path.is_file():
        raise IngestError(f"library {library_code}: export file {path} does not exist")

    engine = engine or warehouse.engine()
    delivery = landing.land(engine, library_code, path, f"{source.transport}:{source.location or library_code}")
    result = IngestResult(library_code, "failed", file=str(path), sha256=delivery.sha256)

    # A session-level advisory lock serialises two runs of the same library for the whole run.
    with engine.connect() as lock_conn:
        lock_conn.execute(sa.text("SELECT pg_advisory_lock(:ns, hashtext(:l))"),
                          {"ns": load.LIBRARY_LOCK_NAMESPACE, "l": library_code})
        lock_pid = lock_conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        try:
            return _ingest_locked(engine, library, delivery, path, result, chunk_size, registry, lock_pid,
                                  decode_workers or workers.ingest_workers())
        finally:
            try:
                lock_conn.execute(sa.text("SELECT pg_advisory_unlock(:ns, hashtext(:l))"),
                                  {"ns": load.LIBRARY_LOCK_NAMESPACE, "l": library_code})
                lock_conn.commit()
            except sa.exc.DBAPIError as exc:  # the lock died with its connection; keep the real error visible
                log.warning("library %s: could not release the library lock (%s)", library_code,
                            type(exc.orig).__name__)


_LOCK_HELD = sa.text(
    """SELECT EXISTS (SELECT 1 FROM pg_locks
                      WHERE locktype = 'advisory' AND granted AND pid = :pid AND classid = :ns
                        AND objid = hashtext(:l)::oid AND objsubid = 2)"""
)


def _discard_batch(conn: sa.Connection, batch_id: int, message: str) -> None:
    """Drop a batch's staging and quality rows and mark it failed; core is untouched."""
    load.clear_staging(conn, batch_id)
    for table in ("quality.check_failure", "quality.quarantine", "quality.unreadable", "quality.gx_result",
                  "quality.batch_check"):
        conn.execute(sa.text(f"DELETE FROM {table} WHERE batch_id = :b"), {"b": batch_id})
    conn.execute(
        sa.text("UPDATE core.batch SET status = 'failed', status_reason = :r, finished_at = now() "
                "WHERE batch_id = :b"),
        {"r": message, "b": batch_id},
    )


def _discard_interrupted(conn: sa.Connection, library_code: str) -> None:
    """A run killed mid-way leaves its batch 'loading'; under the library lock no such run is alive."""
    stale = conn.execute(sa.text("SELECT batch_id FROM core.batch WHERE library_code = :l AND status = 'loading'"),
                         {"l": library_code}).scalars().all()
    for batch_id in stale:
        log.warning("library %s: batch %s was interrupted before it finished; discarding it", library_code, batch_id)
        _discard_batch(conn, batch_id, "interrupted: the run stopped before finishing; its partial rows were dropped")


def _ingest_locked(engine, library, delivery, path: Path, result: IngestResult, chunk_size: int,
                   registry: Registry, lock_pid: int, decode_workers: int) -> IngestResult:
    code = library.code
    with engine.begin() as conn:
        _discard_interrupted(conn, code)
        current = load.current_record_count(conn, code)  # unchanged until this run commits: we hold the lock
        last = _last_batch(conn, code)
        newly_accepted = 0 if last is None else quality.exceptions_accepted_since(conn, code, last["started_at"])
        if last is not None and last["sha256"] == delivery.sha256 and not newly_accepted:
            result.status = "unchanged"
            result.read, result.loaded = last["records_read"], last["records_loaded"]
            result.quarantined, result.unreadable = last["records_quarantined"], last["records_unreadable"]
            result.items = last["items_loaded"]
            result.message = f"same export as batch {last['batch_id']} ({last['status']}); nothing changed"
            # The re-delivery is recorded (it counts for reporting periods); core is untouched.
            result.batch_id = conn.execute(
                sa.text(
                    """INSERT INTO core.batch (library_code, delivery_id, sha256, file_name, file_format, status,
                                               status_reason, finished_at, records_read, records_loaded,
                                               records_quarantined, records_unreadable, items_loaded, same_as_batch)
                       VALUES (:l, :d, :s, :n, :f, 'unchanged', :reason, now(), :read, :loaded, :quarantined,
                               :unreadable, :items, :same) RETURNING batch_id"""
                ),
                {"l": code, "d": delivery.delivery_id, "s": delivery.sha256, "n": delivery.original_name,
                 "f": library.source.format, "reason": result.message, "read": result.read,
                 "loaded": result.loaded, "quarantined": result.quarantined, "unreadable": result.unreadable,
                 "items": result.items, "same": last["batch_id"]},
            ).scalar_one()
            return result
        file_format = library.source.format
        batch_id = conn.execute(
            sa.text(
                """INSERT INTO core.batch (library_code, delivery_id, sha256, file_name, file_format)
                   VALUES (:l, :d, :s, :n, :f) RETURNING batch_id"""
            ),
            {"l": code, "d": delivery.delivery_id, "s": delivery.sha256, "n": delivery.original_name,
             "f": file_format},
        ).scalar_one()
    result.batch_id = batch_id
    if newly_accepted and last["sha256"] == delivery.sha256:
        result.message = (f"same export as batch {last['batch_id']}, checked again: {newly_accepted} exception(s) "
                          f"accepted since")

    with engine.connect() as conn:
        exceptions = quality.load_exceptions(conn, code)
    # A library's first snapshot goes into core chunk by chunk, in the transaction that records the outcome.
    with load.FirstSnapshot(engine, batch_id, code) if current == 0 else nullcontext() as snapshot:
        run = _BatchRun(engine, batch_id, code, library.source.item_field, library.source.field_mapping,
                        policy=quality.policy_for(registry, code), exceptions=exceptions,
                        decode_workers=decode_workers, snapshot=snapshot)
        try:
            run.run(delivery.stored_path, library.source.format, library.source.encoding, chunk_size, path.name)
            first = snapshot.wait() if snapshot is not None else None
        except ParseError as exc:
            if snapshot is not None:
                snapshot.close()
            reason = str(exc).replace(Path(delivery.stored_path).name, path.name)
            return _fail(engine, result, f"library {code}, file {path.name}: {reason}")
        except Exception as exc:
            if snapshot is not None:
                snapshot.close()
            _fail(engine, result, f"library {code}, file {path.name}: {type(exc).__name__}: {exc}")
            raise IngestError(result.message) from exc

        counts = run.result_counts
        result.read, result.loaded, result.quarantined = counts["read"], counts["loaded"], counts["quarantined"]
        result.unreadable, result.items = counts["unreadable"], counts["items"]
        result.quarantine_reasons = dict(run.quarantine_reasons.most_common())
        result.warning_reasons = dict(run.warning_reasons.most_common())
        result.unreadable_reasons = run.unreadable_reasons

        result.accepted = run.quality_counts["accepted"]

        with snapshot.finishing() if snapshot is not None else engine.begin() as conn:
            lock = {"pid": lock_pid, "ns": load.LIBRARY_LOCK_NAMESPACE, "l": code}
            if not conn.execute(_LOCK_HELD, lock).scalar_one():
                raise IngestError(f"library {code}: the connection holding the library lock was lost during the run; "
                                  f"nothing was applied (batch {batch_id} is discarded on the next run)")
            incoming = result.loaded + result.quarantined
            threshold = getattr(library.source, "hold_drop", None) or DEFAULT_HOLD_DROP
            checks, gx_result = validate_export(incoming, run.elements, min_records=current * (1 - threshold),
                                                policy=run.policy)
            held = any(not c.success and c.severity == "error" for c in checks)
            if snapshot is not None and held:  # first: rolling back to the savepoint undoes every later write
                snapshot.discard()
            elif snapshot is not None:
                snapshot.keep()
            quality.write_batch_checks(conn, batch_id, code, checks)
            quality.write_gx_results(conn, batch_id, code, 0, {"batch_level": gx_result})
            result.batch_checks = {f"{c.rule}:{c.field}": c.success for c in checks}
            if held:
                result.status = "held"
                result.message = (f"held: the export has {incoming} records against {current} in the last accepted "
                                  f"state (a drop over {threshold:.0%}); the library keeps its last good data")
            else:
                # A first snapshot's records are all in already, and there was nothing current to close or compare.
                applied = first if first is not None else load.apply_snapshot(conn, batch_id, code)
                result.status = "applied"
                result.records_inserted = applied["records_inserted"]
                result.records_closed = applied["records_closed"]
            load.clear_staging(conn, batch_id)
            quality.reopen_exceptions(conn, batch_id, run.reopened)
            counts = run.quality_counts
            result.tier = scorecard.write_batch_scorecard(
                conn, batch_id, code, records=counts["records"], complete=counts["complete"], valid=counts["valid"],
                errors=counts["errors"], warnings=counts["warnings"], accepted=counts["accepted"],
                elements=run.elements)
            conn.execute(
                sa.text(
                    """UPDATE core.batch SET status = :status, status_reason = :reason, finished_at = now(),
                              records_read = :read, records_loaded = :loaded, records_quarantined = :quarantined,
                              records_unreadable = :unreadable, items_loaded = :items,
                              records_inserted = :inserted, records_closed = :closed
                       WHERE batch_id = :b"""
                ),
                {"status": result.status, "reason": result.message, "read": result.read, "loaded": result.loaded,
                 "quarantined": result.quarantined, "unreadable": result.unreadable, "items": result.items,
                 "inserted": result.records_inserted, "closed": result.records_closed, "b": batch_id},
            )
        if not result.conserved:  # a bug, never bad input: fail loudly
            raise IngestError(f"library {code}: conservation broken: {result.to_dict()}")
        log.info("library %s: %s read=%d loaded=%d quarantined=%d unreadable=%d", code, result.status,
                 result.read, result.loaded, result.quarantined, result.unreadable)
        return result


def _fail(engine: sa.Engine, result: IngestResult, message: str) -> IngestResult:
    """Mark the batch failed and drop its partial rows; core is untouched."""
    result.status = "failed"
    result.message = message
    result.read = result.loaded = result.quarantined = result.unreadable = result.items = 0
    with engine.begin() as conn:
        _discard_batch(conn, result.batch_id, message)
    return result
