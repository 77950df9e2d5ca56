"""Decoding in worker processes gives exactly what the sequential reader gives, and the same warehouse."""
from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from lienthong import workers
from lienthong.ingest import ingest_library
from lienthong.normalise import to_canonical
from lienthong.parse import Unreadable, read_records
from tests.conftest import empty_warehouse
from tests.marc_builders import book, write_marc

FIXTURES = Path(__file__).parent / "fixtures" / "marc-public"
LIBRARY = "THPT-LUONGSON"


def _sequential(path: Path, encoding: str | None = None) -> list:
    return [entry if isinstance(entry, Unreadable) else to_canonical(entry, LIBRARY)
            for entry in read_records(path, encoding=encoding)]


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*/*.m*rc")), ids=lambda p: p.name)
def test_workers_match_the_sequential_reader_on_public_files(path):
    """Broken framing, legacy encodings, MARC-8 and UNIMARC: batch boundaries and processes change nothing."""
    parallel = workers.canonical_records(path, encoding=None, library_code=LIBRARY, item_field="952",
                                         workers=2, batch_records=3)
    assert parallel is not None
    assert list(parallel) == _sequential(path)


def test_a_batch_crosses_to_a_worker_with_every_frame_as_it_was(tmp_path):
    """FrameBatch pickles its plain records as one string: frames with repairs, failed frames, offsets and
    positions in the file come back exactly as they were, in order."""
    import pickle

    from lienthong.parse import iso2709_batches

    records = [book(f"R{i}", f"Sách {i}") for i in range(5)]
    path = write_marc(tmp_path / "odd.mrc", records)
    raw = path.read_bytes()
    first = raw.index(b"\x1d") + 1
    path.write_bytes(b"\xef\xbb\xbf" + raw[:first] + b"\r\n" + raw[first:] + b"00999garbage without an end")
    batches = list(iso2709_batches(path, size=4))
    frames = [frame for batch in batches for _, frame in batch.frames]
    assert frames[0].repairs == ["stripped-bom"] and frames[1].repairs == ["stripped-line-separator"]
    assert frames[-1].data is None and "truncated" in frames[-1].problem
    for batch in batches:
        again = pickle.loads(pickle.dumps(batch))
        assert again == batch
        assert [index for index, _ in again.frames] == [index for index, _ in batch.frames]


def test_forced_encoding_travels_to_the_workers():
    path = FIXTURES / "unimarc" / "qa-catalogue__short.bnr.1993.mrc"
    parallel = workers.canonical_records(path, encoding="cp1252", library_code=LIBRARY, item_field="952",
                                         workers=2, batch_records=2)
    assert list(parallel) == _sequential(path, "cp1252")


@pytest.mark.parametrize("batch_records", [1, 1000])  # 30 batches (more than either window), one
def test_meanwhile_runs_once_before_the_first_record(batch_records, monkeypatch):
    """With more batches than the window and with a single batch, the ingesting process's own work runs once,
    after the workers have their batches and before any record is handed over."""
    monkeypatch.setattr(workers, "IN_FLIGHT_WHILE_MEANWHILE", 6)
    monkeypatch.setattr(workers, "IN_FLIGHT_PER_WORKER", 3)
    path = FIXTURES / "real_bulk" / "traject_test_data.utf8.mrc"
    events: list[str] = []
    records = workers.canonical_records(path, encoding=None, library_code=LIBRARY, item_field="952", workers=2,
                                        batch_records=batch_records, meanwhile=lambda: events.append("meanwhile"))
    for _ in records:
        events.append("record")
    assert events[0] == "meanwhile" and events.count("meanwhile") == 1
    assert events.count("record") == len(_sequential(path))


def test_workers_have_a_deep_queue_while_meanwhile_runs(monkeypatch):
    """The workers get IN_FLIGHT_WHILE_MEANWHILE batches each before the ingesting process turns to its own work
    (importing GX), so they do not run dry meanwhile; every record still comes back, in order."""
    from lienthong.parse import iso2709_batches

    monkeypatch.setattr(workers, "IN_FLIGHT_WHILE_MEANWHILE", 6)
    monkeypatch.setattr(workers, "IN_FLIGHT_PER_WORKER", 2)
    path = FIXTURES / "real_bulk" / "traject_test_data.utf8.mrc"
    framed: list[int] = []

    def counted():
        for batch in iso2709_batches(path, size=1):
            framed.append(1)
            yield batch

    submitted_before_meanwhile = []
    records = list(workers._in_order(counted(), LIBRARY, "952", 2,
                                     meanwhile=lambda: submitted_before_meanwhile.append(len(framed))))
    assert submitted_before_meanwhile == [2 * 6]
    assert records == _sequential(path)


def test_workers_run_below_the_ingesting_process():
    """The ingesting process is the critical path (validate, stage, load): its workers are niced under it."""
    import multiprocessing
    import os
    import time

    path = FIXTURES / "real_bulk" / "traject_test_data.utf8.mrc"
    own = os.getpriority(os.PRIO_PROCESS, 0)
    expected = min(19, own + workers.WORKER_NICENESS)
    niceness: list[int] = []
    for _ in workers.canonical_records(path, encoding=None, library_code=LIBRARY, item_field="952", workers=2,
                                       batch_records=1):
        if niceness:
            continue
        deadline = time.monotonic() + 30  # each worker lowers itself as it starts, before its first batch
        while time.monotonic() < deadline:
            children = multiprocessing.active_children()
            niceness = [os.getpriority(os.PRIO_PROCESS, child.pid) for child in children]
            if len(children) == 2 and niceness == [expected] * 2:
                break
            time.sleep(0.05)
    assert niceness == [expected] * 2
    assert os.getpriority(os.PRIO_PROCESS, 0) == own


def test_marcxml_is_left_to_the_sequential_reader():
    path = FIXTURES / "marcxml" / "marc4j__sample1a.xml"
    assert workers.canonical_records(path, encoding=None, library_code=LIBRARY, item_field="952",
                                     workers=2) is None


def _from_a_daemon(queue) -> None:
    path = FIXTURES / "real_bulk" / "traject_test_data.utf8.mrc"
    queue.put(workers.canonical_records(path, encoding=None, library_code=LIBRARY, item_field="952", workers=2))


def test_a_daemonic_process_reads_sequentially():
    """A multiprocessing pool's worker may not start processes: it gets None and reads the file itself."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    daemon = context.Process(target=_from_a_daemon, args=(queue,), daemon=True)
    daemon.start()
    assert queue.get(timeout=60) is None
    daemon.join(timeout=60)
    assert daemon.exitcode == 0


def test_worker_count_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("LIENTHONG_INGEST_WORKERS", "3")
    assert workers.ingest_workers() == 3
    monkeypatch.setenv("LIENTHONG_INGEST_WORKERS", "many")
    with pytest.raises(ValueError, match="LIENTHONG_INGEST_WORKERS"):
        workers.ingest_workers()
    monkeypatch.delenv("LIENTHONG_INGEST_WORKERS")
    assert workers.ingest_workers() >= 1


def _warehouse_state(engine) -> dict:
    with engine.connect() as conn:
        records = conn.execute(sa.text(
            "SELECT local_id, record_hash, title, author, pub_place, publisher, pub_year, isbns, language, keywords, "
            "subjects, call_number, quantity, encoding, repairs, is_complete, has_warnings FROM core.record "
            "WHERE library_code = :l AND valid_to IS NULL ORDER BY local_id"), {"l": LIBRARY}).all()
        items = conn.execute(sa.text(
            "SELECT r.local_id, i.item_seq, i.accession_number, i.call_number, i.barcode, i.collection, i.item_type, "
            "i.location, i.status FROM core.item i JOIN core.record r USING (record_id) "
            "WHERE r.library_code = :l AND r.valid_to IS NULL ORDER BY 1, 2"), {"l": LIBRARY}).all()
        quarantine = conn.execute(sa.text(
            "SELECT local_id, reasons FROM quality.quarantine ORDER BY local_id")).all()
        failures = conn.execute(sa.text(
            "SELECT local_id, rule, severity FROM quality.check_failure ORDER BY 1, 2")).all()
    return {"records": records, "items": items, "quarantine": quarantine, "failures": failures}


def test_parallel_ingest_equals_sequential_ingest(clean_warehouse, tmp_path, monkeypatch):
    """Chunks smaller than a batch and an ĐKCB repeated across chunks: the cross-chunk checks still hold."""
    records = [book(f"R{i:03d}", f"Sách số {i}", items=((f"STK.{i:06d}", "510 T406"),)) for i in range(60)]
    records[45] = book("R045", "Sách số 45", items=(("STK.000003", "510 T406"),))  # ĐKCB of R003
    records[50] = book("R003", "Trùng số kiểm soát")  # local id of record 3
    records[20] = book("R020", None, items=(("STK.000020", "510 T406"),))  # no title: quarantined
    path = write_marc(tmp_path / "export.mrc", records)
    with path.open("ab") as handle:
        handle.write(b"00042nam  2200025   4500\x1e\x1d")  # an unreadable record at the end

    results, states = [], []
    monkeypatch.setattr(workers, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(workers, "BATCH_RECORDS", 7)
    for count in (1, 2):
        empty_warehouse(clean_warehouse)
        result = ingest_library(LIBRARY, path, chunk_size=16, decode_workers=count).to_dict()
        results.append(result)
        states.append(_warehouse_state(clean_warehouse))

    assert results[0] == results[1]
    assert states[0] == states[1]
    assert results[1]["status"] == "applied" and results[1]["unreadable"] == 1
    assert results[1]["quarantine_reasons"]["duplicate_accession_number"] >= 1
    assert results[1]["quarantine_reasons"]["missing_title"] == 1
