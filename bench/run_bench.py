"""lienthong benchmark suite: `make bench` (not part of the tests).

Prints, on the same input, in one run:
  * one large UTF-8 export (``--big-records``, default 100,000): bare pymarc parse speed (the reference),
    lienthong's reader, and end-to-end ingest of that same file with its ratio and peak RSS, once as a fresh
    process runs it (importing Great Expectations on the clock) and once with it imported first, as pymarc is;
  * the sample province (``--scale``): bare pymarc and lienthong's reader on the same MARC files;
  * end-to-end ingest (landing, parse, normalise, validate with GX, load) sequential and with one worker
    process per core, and its ratio to the reference (GX imported and the registry read before the clock, as
    pymarc is imported before the reference's; the seconds that took are in the JSON as warm_up_seconds);
  * a no-change re-run of the whole province (every export skipped by checksum), imports on the clock;
  * union-catalogue build time (when the catalogue stage is installed);
  * peak memory (RSS) of an ingest worker on a small and a large export (flat = streaming works);
  * the parse time of every DAG file, as the DAG processor measures it;
and writes everything as JSON with the machine's description to bench/results/.

Each measured phase runs in its own process so its peak RSS is its own. The warehouse is a separate
database (``lienthong_bench``) on the embedded server or on LIENTHONG_WAREHOUSE_URL.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(phase: str, *args: str) -> dict:
    """Run one phase in a fresh interpreter and return its JSON result."""
    out = subprocess.run([sys.executable, __file__, "--phase", phase, *args], check=True, capture_output=True,
                         text=True, env=os.environ.copy())
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ phases (run in child processes)
def phase_pymarc(files: list[str]) -> dict:
    import pymarc

    records = 0
    started = time.perf_counter()
    for name in files:
        with open(name, "rb") as fh:
            for record in pymarc.MARCReader(fh, to_unicode=True, force_utf8=False, utf8_handling="replace"):
                if record is not None:
                    records += 1
    seconds = time.perf_counter() - started
    return {"records": records, "seconds": seconds, "peak_rss_mb": _peak_rss_mb()}


def phase_reader(files: list[str]) -> dict:
    from lienthong.normalise import to_canonical
    from lienthong.parse import ParsedRecord, read_records

    records = 0
    started = time.perf_counter()
    for name in files:
        for entry in read_records(name, light=True):  # as the ingest reads them
            if isinstance(entry, ParsedRecord):
                to_canonical(entry, "BENCH")
                records += 1
    seconds = time.perf_counter() - started
    return {"records": records, "seconds": seconds, "peak_rss_mb": _peak_rss_mb()}


def _ingest_one(code: str) -> dict:
    from lienthong.ingest import ingest_library

    return ingest_library(code).to_dict()


def _warm_up() -> float:
    """Seconds spent importing Great Expectations and reading the registry, before the clock starts.

    pymarc's import is outside the reference's clock too. Both are paid once per process (GX's import is
    1.6 s of CPU on a normal day; the province's registry 0.4 s); workers forked afterwards inherit them, so
    the clock measures what the ingest does per record and per export.
    """
    started = time.perf_counter()
    from lienthong import validate
    from lienthong.registry import load_registry

    validate.load_suite(validate.DEFAULT_SUITE)  # imports great_expectations (no context: nothing to fork)
    load_registry()
    return time.perf_counter() - started


def phase_ingest(codes: list[str], workers: int, warm: bool = True) -> dict:
    """Ingest ``codes`` with ``workers`` processes; ``warm``: imports and registry first (see _warm_up)."""
    from lienthong import warehouse

    warehouse.engine()  # start the embedded server before forking workers
    warm_up = _warm_up() if warm else None
    started = time.perf_counter()
    if workers <= 1:
        results = [_ingest_one(code) for code in codes]
    else:
        warehouse.dispose_engines()
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_ingest_one, codes))
    seconds = time.perf_counter() - started
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    statuses: dict[str, int] = {}
    for result in results:
        statuses[result["status"]] = statuses.get(result["status"], 0) + 1
    return {"libraries": len(codes), "records": sum(r["read"] for r in results),
            "loaded": sum(r["loaded"] for r in results), "statuses": statuses, "seconds": seconds,
            "warm_up_seconds": warm_up, "peak_rss_mb": max(_peak_rss_mb(), children)}


def phase_catalog() -> dict:
    import importlib.util

    if importlib.util.find_spec("lienthong.catalog") is None:
        return {"skipped": "the union-catalogue stage (lienthong.catalog) is not installed"}
    from lienthong import catalog, warehouse

    started = time.perf_counter()
    summary = catalog.build(warehouse.engine())
    return {"seconds": time.perf_counter() - started, "summary": summary, "peak_rss_mb": _peak_rss_mb()}


def phase_reset() -> dict:
    """Fresh bench database with migrations and the registry."""
    import sqlalchemy as sa

    from lienthong import config, dimensions, migrations, warehouse

    if warehouse.is_embedded():
        admin = sa.create_engine(warehouse.sqlalchemy_url("postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{config.embedded_database()}" WITH (FORCE)'))
        admin.dispose()
        warehouse.dispose_engines()
    engine = warehouse.engine()
    migrations.upgrade(engine)
    return {"registry": dimensions.load_registry_dimensions(engine)}


def phase_generate(scale: float, seed: int, extra_copies: int = 0) -> dict:
    from lienthong import config
    from lienthong.demo import generate_province
    from lienthong.demo_run import library_specs
    from lienthong.registry import load_registry

    started = time.perf_counter()
    truth = generate_province(library_specs(load_registry()), config.drop_root(), scale=scale, seed=seed,
                              extra_copies=extra_copies, circulation=False)  # no phase reads loans
    files = [str(config.drop_root() / entry["file"]) for entry in truth["libraries"].values()]
    return {"seconds": time.perf_counter() - started, "totals": truth["totals"], "files": files,
            "libraries": sorted(truth["libraries"]),
            "sizes": {code: entry["records"] for code, entry in truth["libraries"].items()},
            "utf8_marc": {code: str(config.drop_root() / entry["file"]) for code, entry in truth["libraries"].items()
                          if entry["encoding"] in ("utf-8", "utf-8-nfd") and entry["file"].endswith(".mrc")}}


def phase_big_file(records: int, seed: int) -> dict:
    """One library's export of about ``records`` records in UTF-8: the same input for pymarc and for ingest."""
    from lienthong import config
    from lienthong.demo import LibrarySpec, generate_province

    root = config.var_dir() / "big"
    spec = LibrarySpec(code=BIG_LIBRARY, type="provincial library", name="Thư viện tỉnh (bench)",
                       drop_folder=root / BIG_LIBRARY)
    per_scale = generate_province([spec], root, scale=1.0, seed=seed, legacy_encodings=False)
    scale = records / per_scale["libraries"][BIG_LIBRARY]["records"]
    started = time.perf_counter()
    truth = generate_province([spec], root, scale=scale, seed=seed, legacy_encodings=False)
    entry = truth["libraries"][BIG_LIBRARY]
    path = root / entry["file"]
    return {"file": str(path), "records": entry["records"], "items": entry["items"],
            "bytes": path.stat().st_size, "seconds": time.perf_counter() - started}


def phase_ingest_file(code: str, path: str, imports: str = "timed") -> dict:
    """``imports`` "first": Great Expectations is imported before the clock starts, as pymarc is for the reference
    (the decode workers then fork with it, so their RSS counts its pages); "timed": ingest imports it while its
    decode workers start, as a fresh task process does."""
    from lienthong import validate, workers
    from lienthong.ingest import ingest_library

    importing = time.perf_counter()
    if imports == "first":
        validate.get_context()
    started = time.perf_counter()
    result = ingest_library(code, path).to_dict()
    return {"records": result["read"], "loaded": result["loaded"], "status": result["status"],
            "seconds": time.perf_counter() - started, "imports_seconds": started - importing,
            "imports": imports, "peak_rss_mb": _peak_rss_mb(),
            "decode_workers": workers.ingest_workers(),
            "worker_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


BIG_LIBRARY = "TV-TINH"
#: The school types the province has hundreds of (the registry names a few of each); --libraries clones these.
NUMEROUS_TYPES = ("MN", "TH", "THCS", "TH&THCS")


def province_registry(libraries: int) -> Path:
    """The packaged registry with its MN, TH, THCS and TH&THCS libraries cloned round-robin (code suffix -K<n>,
    same groups) until it holds ``libraries``: the province's shape, several hundred small exports, which the
    85 libraries the guidance names do not have. Written to var/bench/registry-<libraries>.yaml."""
    import yaml

    from lienthong import config
    from lienthong.registry import PACKAGED_REGISTRY, load_registry

    data = yaml.safe_load(Path(PACKAGED_REGISTRY).read_text(encoding="utf-8"))
    originals = [lib for lib in data["libraries"] if lib["type"] in NUMEROUS_TYPES]
    groups_of: dict[str, list[tuple[dict, dict]]] = {}
    for group in data["groups"]:
        for member in group["members"]:
            groups_of.setdefault(member["library"], []).append((group, member))
    copy = 0
    while len(data["libraries"]) < libraries:
        original = originals[copy % len(originals)]
        clone = {**original, "code": f"{original['code']}-K{copy // len(originals) + 1}",
                 "name": f"{original['name']} ({copy // len(originals) + 1})"}
        data["libraries"].append(clone)
        for group, member in groups_of.get(original["code"], []):
            group["members"].append({**member, "library": clone["code"]})
        copy += 1
    path = config.var_dir() / f"registry-{libraries}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    load_registry(path)  # refuses the file with every problem named, as for any registry
    return path


def phase_dag_parse() -> dict:
    """How long the scheduler's DAG processor spends on each DAG file (the goal: well under a second)."""
    os.environ.setdefault("AIRFLOW_HOME", str(ROOT / "var" / "bench" / "airflow"))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    return {"import_errors": {str(k): str(v) for k, v in bag.import_errors.items()},
            "files": {stat.file: stat.duration.total_seconds() for stat in bag.dagbag_stats}}


# ------------------------------------------------------------------ orchestration
def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"python": platform.python_version(), "platform": platform.platform(), "cpu": cpu,
            "cores": os.cpu_count(), "memory_gib": round(memory, 1)}


def _rate(records: int, seconds: float) -> float:
    return records / seconds if seconds else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=5.0, help="sample province scale (1 ≈ 8,000 records)")
    parser.add_argument("--seed", type=int, default=20261125)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--big-records", type=int, default=100_000,
                        help="records in the single large UTF-8 export (0 skips that part)")
    parser.add_argument("--extra-copies", type=int, default=0,
                        help="copies added to each generated record (1 to 4, 2 on average); make bench-province "
                             "uses 1: 3 copies per record, the issue's 3 million for 1 million records")
    parser.add_argument("--libraries", type=int, default=0,
                        help="clone the registry's MN, TH, THCS and TH&THCS libraries until it holds this many "
                             "(the province has about 600; 0 keeps the packaged 85): many small exports")
    parser.add_argument("--refresh-only", action="store_true",
                        help="only the full province refresh: pymarc reference, ingest of every export with "
                             "--workers processes, the no-change re-run and the union-catalogue build "
                             "(make bench-province)")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    options = parser.parse_args()

    os.environ.setdefault("LIENTHONG_VAR", str(ROOT / "var" / "bench"))
    os.environ.setdefault("LIENTHONG_WAREHOUSE_DB", "lienthong_bench")
    os.environ.setdefault("LIENTHONG_PGDATA", str(ROOT / "var" / "pgdata"))
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

    if options.phase:
        handlers = {
            "pymarc": lambda: phase_pymarc(options.args), "reader": lambda: phase_reader(options.args),
            "ingest": lambda: phase_ingest(options.args[1:], int(options.args[0])),
            "ingest_cold": lambda: phase_ingest(options.args[1:], int(options.args[0]), warm=False),
            "catalog": phase_catalog, "reset": phase_reset,
            "generate": lambda: phase_generate(float(options.args[0]), int(options.args[1]), int(options.args[2])),
            "dag_parse": phase_dag_parse,
            "big_file": lambda: phase_big_file(int(options.args[0]), int(options.args[1])),
            "ingest_file": lambda: phase_ingest_file(*options.args),
        }
        print(json.dumps(handlers[options.phase](), default=str))
        return 0

    if options.libraries:
        os.environ["LIENTHONG_REGISTRY"] = str(province_registry(options.libraries))  # children inherit it
    report: dict = {"started": datetime.now(timezone.utc).isoformat(), "machine": machine(),
                    "scale": options.scale, "seed": options.seed, "extra_copies": options.extra_copies,
                    "libraries": options.libraries or None}
    say = lambda text: print(text, flush=True)  # noqa: E731
    say(f"lienthong bench — {report['machine']['cpu']}, {report['machine']['cores']} cores, scale {options.scale}")

    if options.big_records:
        big = _child("big_file", str(options.big_records), str(options.seed))
        say(f"one large UTF-8 export: {big['records']:,} records, {big['items']:,} copies, "
            f"{big['bytes'] / 2**20:.0f} MiB")
        big_ref = _child("pymarc", big["file"])
        big_ref_rate = _rate(big_ref["records"], big_ref["seconds"])
        big_reader = _child("reader", big["file"])
        big_reader_rate = _rate(big_reader["records"], big_reader["seconds"])
        _child("reset")
        big_ingest = _child("ingest_file", BIG_LIBRARY, big["file"])
        big_rate = _rate(big_ingest["records"], big_ingest["seconds"])
        _child("reset")
        warm = _child("ingest_file", BIG_LIBRARY, big["file"], "first")
        warm_rate = _rate(warm["records"], warm["seconds"])
        say(f"  bare pymarc parse        : {big_ref_rate:10,.0f} records/s  (reference)")
        say(f"  lienthong parse+normalise: {big_reader_rate:10,.0f} records/s  ratio {big_reader_rate / big_ref_rate:.2f}×")
        say(f"  end-to-end ingest        : {big_rate:10,.0f} records/s  ratio {big_rate / big_ref_rate:.2f}×  "
            f"({big_ingest['seconds']:.1f} s, {big_ingest['status']}, peak RSS {big_ingest['peak_rss_mb']:.0f} MB, "
            f"{big_ingest['decode_workers']} decode workers, largest {big_ingest['worker_peak_rss_mb']:.0f} MB)")
        say(f"    GX imported beforehand : {warm_rate:10,.0f} records/s  ratio {warm_rate / big_ref_rate:.2f}×  "
            f"({warm['seconds']:.1f} s; as pymarc, imported before its clock starts; the import took "
            f"{warm['imports_seconds']:.1f} s)")
        report["large_file"] = {
            "input": big, "pymarc_parse": {**big_ref, "records_per_s": big_ref_rate},
            "lienthong_parse_normalise": {**big_reader, "records_per_s": big_reader_rate,
                                          "ratio": big_reader_rate / big_ref_rate},
            "ingest": {**big_ingest, "records_per_s": big_rate, "ratio": big_rate / big_ref_rate},
            "ingest_imported_first": {**warm, "records_per_s": warm_rate, "ratio": warm_rate / big_ref_rate},
        }

    generated = _child("generate", str(options.scale), str(options.seed), str(options.extra_copies))
    files, codes, sizes = generated["files"], generated["libraries"], generated["sizes"]
    marc_files = [name for name in files if name.endswith((".mrc", ".marc"))]  # spreadsheets are not pymarc's
    report["input"] = {"libraries": len(codes), **generated["totals"], "generate_seconds": generated["seconds"]}
    say(f"input: {len(codes)} exports, {generated['totals']['records']:,} records, "
        f"{generated['totals']['items']:,} copies (generated in {generated['seconds']:.1f} s)")

    if options.refresh_only:
        return _province_refresh(report, options, files, marc_files, codes, say, generated["utf8_marc"])

    reference = _child("pymarc", *marc_files)
    ref_rate = _rate(reference["records"], reference["seconds"])
    reader = _child("reader", *marc_files)
    reader_rate = _rate(reader["records"], reader["seconds"])
    say(f"the province ({len(marc_files)} MARC exports of {len(files)}; some in legacy encodings):")
    say(f"bare pymarc parse          : {ref_rate:10,.0f} records/s  (reference, MARC exports only)")
    say(f"lienthong parse+normalise  : {reader_rate:10,.0f} records/s  ratio {reader_rate / ref_rate:.2f}×")

    _child("reset")
    sequential = _child("ingest", "1", *codes)
    seq_rate = _rate(sequential["records"], sequential["seconds"])
    say(f"end-to-end ingest, 1 proc  : {seq_rate:10,.0f} records/s  ratio {seq_rate / ref_rate:.2f}×  "
        f"({sequential['seconds']:.1f} s, peak RSS {sequential['peak_rss_mb']:.0f} MB)")
    _child("reset")
    parallel = _child("ingest", str(options.workers), *codes)
    par_rate = _rate(parallel["records"], parallel["seconds"])
    say(f"end-to-end ingest, {options.workers} procs : {par_rate:10,.0f} records/s  ratio {par_rate / ref_rate:.2f}×  "
        f"({parallel['seconds']:.1f} s)")
    rerun = _child("ingest_cold", str(options.workers), *codes)
    say(f"no-change re-run           : {rerun['seconds']:10.2f} s for {rerun['libraries']} libraries "
        f"({rerun['statuses']})")
    catalog = _child("catalog")
    if "skipped" in catalog:
        say(f"union catalogue build      : skipped ({catalog['skipped']})")
    else:
        say(f"union catalogue build      : {catalog['seconds']:10.2f} s")

    biggest = max(codes, key=lambda code: sizes[code])
    smallest = min(codes, key=lambda code: sizes[code])
    _child("reset")
    small = _child("ingest", "1", smallest)
    large = _child("ingest", "1", biggest)
    say(f"peak RSS, one ingest       : {small['peak_rss_mb']:.0f} MB for {small['records']:,} records, "
        f"{large['peak_rss_mb']:.0f} MB for {large['records']:,} records")

    dag_parse = _child("dag_parse")
    slowest = max(dag_parse["files"].items(), key=lambda kv: kv[1])
    say(f"DAG files parse            : {len(dag_parse['files'])} files, slowest {slowest[0]} "
        f"{slowest[1] * 1000:.0f} ms (import errors: {len(dag_parse['import_errors'])})")

    report["results"] = {
        "dag_parse": dag_parse,
        "pymarc_parse": {**reference, "records_per_s": ref_rate},
        "lienthong_parse_normalise": {**reader, "records_per_s": reader_rate, "ratio": reader_rate / ref_rate},
        "ingest_sequential": {**sequential, "records_per_s": seq_rate, "ratio": seq_rate / ref_rate},
        "ingest_parallel": {**parallel, "workers": options.workers, "records_per_s": par_rate,
                            "ratio": par_rate / ref_rate},
        "rerun_no_change": rerun, "catalog_build": catalog,
        "memory": {"small": {"library": smallest, **small}, "large": {"library": biggest, **large}},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"bench-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str))
    say(f"results: {out}")
    return 0


def _province_refresh(report: dict, options, files: list[str], marc_files: list[str], codes: list[str], say,
                      utf8_marc: dict[str, str]) -> int:
    """The province from scratch: every export ingested, then the union catalogue; then a no-change re-run;
    then, from scratch again, only the UTF-8 MARC exports against pymarc on the same files (the goal's "same
    UTF-8 input": pymarc reads a legacy export on its slow MARC-8 path, which flatters the whole-province
    ratio)."""
    reference = _child("pymarc", *marc_files)
    ref_rate = _rate(reference["records"], reference["seconds"])
    say(f"bare pymarc parse          : {ref_rate:10,.0f} records/s  (reference, {len(marc_files)} MARC exports "
        f"of {len(files)})")
    _child("reset")
    # The libraries already fill the cores (as mapped tasks do in Airflow): one decoding process per library.
    os.environ.setdefault("LIENTHONG_INGEST_WORKERS", "1")
    ingest = _child("ingest", str(options.workers), *codes)
    rate = _rate(ingest["records"], ingest["seconds"])
    say(f"ingest every export, {options.workers} procs: {ingest['seconds']:8.1f} s  {rate:10,.0f} records/s  "
        f"ratio {rate / ref_rate:.2f}×  peak RSS {ingest['peak_rss_mb']:.0f} MB  ({ingest['statuses']}; "
        f"imports and registry before the clock: {ingest['warm_up_seconds']:.1f} s)")
    catalog = _child("catalog")
    say(f"union catalogue build      : {catalog.get('seconds', 0):8.1f} s  peak RSS "
        f"{catalog.get('peak_rss_mb', 0):.0f} MB")
    refresh = ingest["seconds"] + catalog.get("seconds", 0)
    say(f"full refresh (ingest + catalogue): {refresh:8.1f} s  (goal: under 300 s)")
    rerun = _child("ingest_cold", str(options.workers), *codes)
    say(f"no-change re-run           : {rerun['seconds']:8.2f} s  ({rerun['statuses']}; imports included)")
    utf8_codes = sorted(utf8_marc)
    utf8_reference = _child("pymarc", *(utf8_marc[code] for code in utf8_codes))
    utf8_ref_rate = _rate(utf8_reference["records"], utf8_reference["seconds"])
    _child("reset")
    utf8_ingest = _child("ingest", str(options.workers), *utf8_codes)
    utf8_rate = _rate(utf8_ingest["records"], utf8_ingest["seconds"])
    say(f"UTF-8 MARC exports only ({len(utf8_codes)}, {utf8_ingest['records']:,} records): pymarc "
        f"{utf8_ref_rate:,.0f} records/s, ingest {utf8_rate:,.0f} records/s, ratio {utf8_rate / utf8_ref_rate:.2f}×")
    report["results"] = {"pymarc_parse": {**reference, "records_per_s": ref_rate},
                         "ingest": {**ingest, "workers": options.workers, "records_per_s": rate,
                                    "ratio": rate / ref_rate},
                         "catalog_build": catalog, "refresh_seconds": refresh, "rerun_no_change": rerun,
                         "utf8_only": {"libraries": len(utf8_codes),
                                       "pymarc_parse": {**utf8_reference, "records_per_s": utf8_ref_rate},
                                       "ingest": {**utf8_ingest, "records_per_s": utf8_rate,
                                                  "ratio": utf8_rate / utf8_ref_rate}}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"province-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str))
    say(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
