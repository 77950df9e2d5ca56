"""Decode and normalise a large ISO 2709 export on every core, in file order, with bounded memory.

Framing a file is cheap and stays in the ingesting process; decoding and normalising cost most of an
ingest's CPU and need nothing but the bytes, so worker processes do them batch by batch while the ingesting
process validates and loads what came before. Results come back in file order, so the chunks, the
cross-chunk checks (duplicate local ids, ĐKCB across the export) and every count are the same as the
sequential path's.

Workers are forked: they start at once with lienthong already imported, and they never touch the
warehouse connections they inherit (a worker only turns bytes into records and exits with ``os._exit``).
"""
from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import msgspec

from lienthong.model import CanonicalRecord
from lienthong.normalise import to_canonical
from lienthong.parse import FrameBatch, Unreadable, decode_batch, iso2709_batches

__all__ = ["PARALLEL_MIN_BYTES", "canonical_records", "ingest_workers"]

PARALLEL_MIN_BYTES = 8 << 20  # about 10,000 records: below that, starting workers costs more than it saves
BATCH_RECORDS = 1000
WORKER_NICENESS = 10  # see _yield_to_ingest
IN_FLIGHT_PER_WORKER = 10  # batches queued per worker: about one chunk in all, so workers go on while a chunk loads
# Before ``meanwhile`` runs (a fresh process importing GX, ~1.7 s of CPU that holds the ingesting process), the
# workers get enough batches to stay busy through it: with ten each they ran dry for about 0.4 s (measured).
IN_FLIGHT_WHILE_MEANWHILE = 30


def ingest_workers() -> int:
    """LIENTHONG_INGEST_WORKERS, else the number of cores this process may use."""
    value = os.environ.get("LIENTHONG_INGEST_WORKERS")
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            raise ValueError(f"LIENTHONG_INGEST_WORKERS must be a whole number, not {value!r}") from None
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def canonical_records(path: str | os.PathLike, *, encoding: str | None, library_code: str, item_field: str,
                      workers: int, format: str = "auto", batch_records: int | None = None,
                      meanwhile: Callable[[], object] | None = None
                      ) -> Iterator[CanonicalRecord | Unreadable] | None:
    """The file's records, decoded and normalised by ``workers`` processes; None when it is not ISO 2709.

    ``meanwhile`` runs once, when every worker has :data:`IN_FLIGHT_WHILE_MEANWHILE` batches queued and before
    the first result is awaited: work the ingesting process would otherwise do later, while the workers sit idle
    (importing GX: ~1.7 s).
    None too inside a daemonic process (a multiprocessing pool's worker), which may not start processes.
    """
    if multiprocessing.current_process().daemon:
        return None
    batches = iso2709_batches(Path(path), format=format, encoding=encoding, size=batch_records or BATCH_RECORDS)
    if batches is None:
        return None
    return _in_order(batches, library_code, item_field, workers, meanwhile)


def _in_order(batches: Iterator[FrameBatch], library_code: str, item_field: str, workers: int,
              meanwhile: Callable[[], object] | None = None) -> Iterator[CanonicalRecord | Unreadable]:
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"), initializer=_yield_to_ingest)
    pending: deque = deque()
    depth = workers * (IN_FLIGHT_PER_WORKER if meanwhile is None else IN_FLIGHT_WHILE_MEANWHILE)
    try:
        for batch in batches:
            pending.append(pool.submit(_decode_and_normalise, batch, library_code, item_field))
            if len(pending) >= depth:
                if meanwhile is not None:  # the workers were forked at the first submit: nothing is half-imported
                    meanwhile()
                    meanwhile = None
                    depth = workers * IN_FLIGHT_PER_WORKER
                while len(pending) >= depth:
                    yield from _entries(*pending.popleft().result())
        if meanwhile is not None:
            meanwhile()
        while pending:
            yield from _entries(*pending.popleft().result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _yield_to_ingest() -> None:
    """Run a worker below the ingesting process: that process (validate, stage, load) is the pipeline's critical
    path, and workers that are a few batches ahead lose nothing by waiting for an idle core."""
    os.nice(WORKER_NICENESS)


# Records cross between processes as msgpack, decoded straight into their Structs: a fraction of pickle's CPU.
_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(list[CanonicalRecord])


def _decode_and_normalise(batch: FrameBatch, library_code: str, item_field: str
                          ) -> tuple[bytes, list[tuple[int, Unreadable]]]:
    """(the batch's canonical records as msgpack, each unreadable entry with its position in the batch)."""
    records: list[CanonicalRecord] = []
    unreadable: list[tuple[int, Unreadable]] = []
    for position, entry in enumerate(decode_batch(batch, light=True)):
        if isinstance(entry, Unreadable):
            unreadable.append((position, entry))
        else:
            records.append(to_canonical(entry, library_code, item_field=item_field))
    return _ENCODER.encode(records), unreadable


def _entries(encoded: bytes, unreadable: list[tuple[int, Unreadable]]) -> list[CanonicalRecord | Unreadable]:
    entries: list[CanonicalRecord | Unreadable] = _DECODER.decode(encoded)
    for position, entry in unreadable:
        entries.insert(position, entry)
    return entries
