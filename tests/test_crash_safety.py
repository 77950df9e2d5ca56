"""Crash safety against the real warehouse: kill -9 of `lienthong ingest` at several points converges on a
re-run; the warehouse going away mid-run fails the run with core untouched; two runs of one library are
serialised by the advisory lock.

The child process is this file run as a script: it installs a fault hook (SIGKILL itself, or pause for the
test, at a named point of the run) and then runs the real ``lienthong ingest`` command line.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

CHUNK = 10
LIBRARY = "THPT-LUONGSON"


# ---------------------------------------------------------------- the child: fault hooks around a real run
def _child(argv: list[str]) -> int:
    point, control = argv[0], Path(argv[1])
    ingest_args = argv[2:]

    from lienthong import ingest, landing, load
    from lienthong.cli import main

    ingest.ingest_library.__kwdefaults__["chunk_size"] = CHUNK

    def fault(name: str) -> None:
        if point == f"kill:{name}":
            os.kill(os.getpid(), signal.SIGKILL)
        if point == f"pause:{name}":
            (control / "ready").touch()
            deadline = time.monotonic() + 60
            while not (control / "go").exists() and time.monotonic() < deadline:
                time.sleep(0.05)

    def after(module, attribute: str, name_of) -> None:
        original = getattr(module, attribute)
        calls = {"n": 0}

        def wrapper(*args, **kwargs):
            value = original(*args, **kwargs)
            calls["n"] += 1
            fault(name_of(calls["n"]))
            return value

        setattr(module, attribute, wrapper)

    after(landing, "land", lambda n: "land")
    after(load, "stage_records", lambda n: f"chunk{n}")
    after(load, "copy_core_rows", lambda n: f"chunk{n}")  # a first load COPYs into core itself
    after(load, "apply_snapshot", lambda n: "apply")
    after(load, "clear_staging", lambda n: "cleared")  # the last write before the run's commit
    original_info = ingest.log.info

    def info(message, *args, **kwargs):  # the run's last line, after its transaction committed
        original_info(message, *args, **kwargs)
        fault("committed")

    ingest.log.info = info
    return main(["ingest", *ingest_args])


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))


# ---------------------------------------------------------------- the tests
import pytest  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from lienthong import dimensions, migrations, warehouse  # noqa: E402
from lienthong.ingest import ingest_library  # noqa: E402
from tests.marc_builders import book, write_marc  # noqa: E402

CONTENT_HASH = sa.text(
    """SELECT md5(coalesce(string_agg(line, E'\\n' ORDER BY line), '')) FROM (
           SELECT ((to_jsonb(r) - 'record_id' - 'valid_from' - 'valid_to' - 'loaded_by_batch' - 'closed_by_batch')
                   || jsonb_build_object('current', r.valid_to IS NULL,
                                         'items', (SELECT coalesce(jsonb_agg(to_jsonb(i) - 'item_id' - 'record_id'
                                                                             ORDER BY i.item_seq), '[]')
                                                   FROM core.item i WHERE i.record_id = r.record_id)))::text AS line
           FROM core.record r WHERE r.library_code = :l) lines"""
)


def content_hash(engine) -> str:
    """core.record and core.item of the library, without ids and timestamps: what a re-run must reproduce."""
    with engine.connect() as conn:
        return conn.execute(CONTENT_HASH, {"l": LIBRARY}).scalar_one()


def _exports(folder: Path) -> tuple[Path, Path]:
    v1 = [book(f"C-{n:04d}", title=f"Sách {n}", items=((f"STK.{n:06d}", "510"),)) for n in range(24)]
    v1 += [book(f"C-BAD-{n}", title=None) for n in range(2)]
    v2 = [book(f"C-{n:04d}", title=f"Sách {n}" + (" (tái bản)" if n % 5 == 0 else ""),
               items=((f"STK.{n:06d}", "510"), (f"STK.{n + 5000:06d}", "510")) if n % 4 == 0
               else ((f"STK.{n:06d}", "510"),)) for n in range(4, 28)]
    v2 += [book(f"C-BAD-{n}", title=None) for n in range(1)]
    return write_marc(folder / "v1.mrc", v1), write_marc(folder / "v2.mrc", v2)


def _counts(result) -> tuple:
    return result.read, result.loaded, result.quarantined, result.unreadable, result.items


def _admin() -> sa.Engine:
    return sa.create_engine(warehouse.sqlalchemy_url("postgres"), isolation_level="AUTOCOMMIT",
                            poolclass=sa.pool.NullPool)


def _clone(template: str, name: str) -> sa.Engine:
    """A database copied from ``template`` (file-level copy: far cheaper than ingesting again)."""
    admin = _admin()
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    admin.dispose()
    return sa.create_engine(warehouse.sqlalchemy_url(name), poolclass=sa.pool.NullPool)


def _drop(name: str) -> None:
    admin = _admin()
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    return _exports(tmp_path_factory.mktemp("crash-exports"))


@pytest.fixture(scope="module")
def expected(warehouse_engine, exports):
    """A template database holding v1 as ingested uninterrupted, and core after v1 then v2, uninterrupted."""
    template = f"{warehouse_engine.url.database}_crash_v1"
    _drop(template)
    admin = _admin()
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{template}"'))
    admin.dispose()
    engine = sa.create_engine(warehouse.sqlalchemy_url(template), poolclass=sa.pool.NullPool)
    migrations.upgrade(engine)
    dimensions.load_registry_dimensions(engine)
    v1, v2 = exports
    ingest_library(LIBRARY, v1, engine=engine, chunk_size=CHUNK)
    after_v1 = content_hash(engine)
    engine.dispose()
    engine = _clone(template, f"{template}_expected")
    final = ingest_library(LIBRARY, v2, engine=engine, chunk_size=CHUNK)
    assert final.status == "applied" and final.records_closed > 0 and final.records_inserted > 0
    result = {"template": template, "v1": after_v1, "v2": content_hash(engine), "counts": _counts(final),
              "clones": [f"{template}_expected"]}
    engine.dispose()
    yield result
    # Each DROP DATABASE forces a checkpoint: done back to back at the end, they are cheap.
    for name in [*result["clones"], template]:
        _drop(name)


@pytest.fixture
def after_v1(expected, tmp_path):
    """A fresh database at the v1 state; the child runs against it (LIENTHONG_WAREHOUSE_DB)."""
    name = f"{expected['template']}_{tmp_path.name[-12:].lower().replace('-', '_')}"
    engine = _clone(expected["template"], name)
    expected["clones"].append(name)
    assert content_hash(engine) == expected["v1"]
    engine.lienthong_db = name
    yield engine
    engine.dispose()


def _spawn(engine, point: str, control: Path, export: Path, env_extra: dict | None = None) -> subprocess.Popen:
    env = {**os.environ, "PGAPPNAME": f"lt-crash-{control.name}", "LIENTHONG_WAREHOUSE_DB": engine.lienthong_db,
           **(env_extra or {})}
    return subprocess.Popen(
        [sys.executable, __file__, point, str(control), "--library", LIBRARY, "--file", str(export), "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent)


def _wait_for(path: Path, child: subprocess.Popen, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if child.poll() is not None:
            raise AssertionError(f"child ended before {path.name}: {child.communicate()}")
        assert time.monotonic() < deadline, f"child never reached {path.name}"
        time.sleep(0.05)


@pytest.mark.parametrize("point", ["kill:land", "kill:chunk2", "kill:apply", "kill:committed"])
def test_kill_9_at_any_point_then_rerun_converges(after_v1, exports, expected, point, tmp_path):
    engine = after_v1
    child = _spawn(engine, point, tmp_path, exports[1])
    out, err = child.communicate(timeout=240)
    assert child.returncode == -signal.SIGKILL, (out[-2000:], err[-2000:])
    # Killed before its one committing transaction, a run leaves core as it was; killed after, as it will be.
    assert content_hash(engine) == (expected["v2"] if point == "kill:committed" else expected["v1"])
    with engine.connect() as conn:
        assert conn.execute(sa.text(
            """SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 7426
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())""")).scalar_one() == 0

    rerun = ingest_library(LIBRARY, exports[1], engine=engine, chunk_size=CHUNK)
    assert content_hash(engine) == expected["v2"]
    if point == "kill:committed":
        assert rerun.status == "unchanged"
    else:
        assert rerun.status == "applied" and _counts(rerun) == expected["counts"]
    with engine.connect() as conn:
        last = conn.execute(sa.text("SELECT status, records_read FROM marts.library_last_batch "
                                    "WHERE library_code = :l"), {"l": LIBRARY}).one()
    assert last.status == "applied" and last.records_read == expected["counts"][0]


@pytest.fixture
def empty_library(expected, tmp_path):
    """A fresh database at the v1 state with the library's records and batches gone: its next run is a first load."""
    name = f"{expected['template']}_first_{tmp_path.name[-12:].lower().replace('-', '_')}"
    engine = _clone(expected["template"], name)
    expected["clones"].append(name)
    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE core.batch, landing.delivery RESTART IDENTITY CASCADE"))
    engine.lienthong_db = name
    yield engine
    engine.dispose()


@pytest.mark.parametrize("point", ["kill:chunk2", "kill:cleared"])
def test_kill_9_during_a_first_load_leaves_core_empty_then_rerun_converges(empty_library, exports, expected,
                                                                        point, tmp_path):
    """A first load inserts chunks as it goes (load.FirstSnapshot), all in one uncommitted transaction: killed
    after two chunks or just before its commit (a first load has no apply step), nothing of it is left, and a re-run gives the uninterrupted state."""
    engine = empty_library
    nothing = content_hash(engine)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM core.record")).scalar_one() == 0
    child = _spawn(engine, point, tmp_path, exports[0])
    out, err = child.communicate(timeout=240)
    assert child.returncode == -signal.SIGKILL, (out[-2000:], err[-2000:])
    assert content_hash(engine) == nothing
    rerun = ingest_library(LIBRARY, exports[0], engine=engine, chunk_size=CHUNK)
    assert rerun.status == "applied" and rerun.records_inserted == rerun.loaded
    assert content_hash(engine) == expected["v1"]


def test_two_runs_of_one_library_are_serialised(after_v1, exports, expected, tmp_path):
    engine = after_v1
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first_dir.mkdir(), second_dir.mkdir()
    first = _spawn(engine, "pause:chunk1", first_dir, exports[1])
    _wait_for(first_dir / "ready", first)
    second = _spawn(engine, "none", second_dir, exports[1])
    deadline = time.monotonic() + 90
    with engine.connect() as conn:
        while True:  # the second run waits on the library's advisory lock while the first holds it
            waiting = conn.execute(sa.text(
                """SELECT count(*) FROM pg_stat_activity
                   WHERE application_name = :a AND wait_event_type = 'Lock' AND wait_event = 'advisory'"""),
                {"a": f"lt-crash-{second_dir.name}"}).scalar_one()
            conn.rollback()
            if waiting:
                break
            assert second.poll() is None, second.communicate()
            assert time.monotonic() < deadline, "the second run never waited on the lock"
            time.sleep(0.1)
    (first_dir / "go").touch()
    out1, err1 = first.communicate(timeout=240)
    out2, err2 = second.communicate(timeout=240)
    assert first.returncode == 0 and second.returncode == 0, (err1, err2)
    import json

    statuses = sorted([json.loads(out1)["status"], json.loads(out2)["status"]])
    assert statuses == ["applied", "unchanged"]
    assert content_hash(engine) == expected["v2"]


class _SocketProxy:
    """A unix-socket proxy in front of the warehouse: stopping it is the warehouse going away."""

    def __init__(self, upstream: str):
        self.upstream = upstream
        self.dir = tempfile.mkdtemp(prefix="lt-wh-")
        self.path = os.path.join(self.dir, os.path.basename(upstream))
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(16)
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.connect(self.upstream)
            self.sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, target):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        self.listener.close()
        os.unlink(self.path)
        for s in self.sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        os.rmdir(self.dir)


@pytest.mark.skipif(not warehouse.is_embedded(), reason="the proxy fronts the embedded server's socket")
def test_warehouse_going_away_mid_run_fails_clearly_and_leaves_core_untouched(after_v1, exports, expected,
                                                                              tmp_path):
    engine = after_v1
    url = engine.url
    upstream = os.path.join(url.query["host"], f".s.PGSQL.{url.port or 5432}")
    proxy = _SocketProxy(upstream)
    via_proxy = url.set(drivername="postgresql", query={"host": proxy.dir}).render_as_string(hide_password=False)
    child = _spawn(engine, "pause:chunk1", tmp_path, exports[1], {"LIENTHONG_WAREHOUSE_URL": via_proxy})
    try:
        _wait_for(tmp_path / "ready", child)
    finally:
        proxy.stop()
    (tmp_path / "go").touch()
    out, err = child.communicate(timeout=240)
    assert child.returncode == 1, (out, err)  # a clean failure, not a crash or a hang
    assert "lienthong: error:" in err and "connection" in err.lower() and "Traceback" not in err
    assert content_hash(engine) == expected["v1"]  # no partial state in core
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM core.batch WHERE library_code = :l AND status = 'applied'"),
                            {"l": LIBRARY}).scalar_one() == 1

    rerun = ingest_library(LIBRARY, exports[1], engine=engine, chunk_size=CHUNK)
    assert rerun.status == "applied" and content_hash(engine) == expected["v2"]


def test_backends_terminated_mid_run_never_leave_a_partial_snapshot(after_v1, exports, expected, tmp_path):
    engine = after_v1
    child = _spawn(engine, "pause:chunk2", tmp_path, exports[1])
    _wait_for(tmp_path / "ready", child)
    with engine.connect() as conn:
        killed = conn.execute(sa.text("SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                                      "WHERE application_name = :a"), {"a": f"lt-crash-{tmp_path.name}"}).scalar_one()
    assert killed >= 1
    (tmp_path / "go").touch()
    out, err = child.communicate(timeout=240)
    assert content_hash(engine) in (expected["v1"], expected["v2"])  # all or nothing, never half
    rerun = ingest_library(LIBRARY, exports[1], engine=engine, chunk_size=CHUNK)
    assert rerun.status in ("applied", "unchanged") and content_hash(engine) == expected["v2"]
    assert child.returncode in (0, 1), (out, err)
