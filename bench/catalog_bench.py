"""Union-catalogue benchmark: `make bench-catalog` (RECORDS=1000000); not part of the tests.

Generates RECORDS synthetic canonical records held by ~600 libraries with realistic duplication: the demo
pool's editions (textbooks, literature, children's books, held by many libraries) plus synthetic editions with
Vietnamese titles and authors drawn from the demo's vocabulary and name pools, most held by one to a few
libraries. Each library writes its copies in its own style (inverted "Nguyễn, Nhật Ánh", ISBD " : " and " /",
hyphenated ISBNs, no ISBN, NFD, "hoà" for "hòa"). The records are COPYed straight into core.record and core.item
of a separate database (``lienthong_bench_catalog``), BYPASSING INGEST (no parsing, GX or loading is measured),
then ``lienthong.catalog.build`` runs in a fresh process: the time, records/s, peak RSS and cluster counts are
printed and written as JSON to bench/results/.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import resource
import subprocess
import sys
import time
import unicodedata
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DATABASE = "lienthong_bench_catalog"
LIBRARIES = 600
COPY_CHUNK = 50_000


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(phase: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--phase", phase, *args], check=True, capture_output=True,
                         text=True, env=os.environ.copy())
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ synthetic editions
def _editions(n_records: int, seed: int) -> list[dict]:
    """The demo pool's editions first (the widely shared head), then synthetic ones: about one edition per four
    records overall."""
    from lienthong import demo

    rng = random.Random(seed)
    pool = demo._pool(demo.DEFAULT_SEED)
    editions = []
    for e in pool:
        editions.append({"title": e.title + (f". {e.part}" if e.part else ""), "subtitle": e.subtitle,
                         "author": e.main, "corporate": e.corporate, "publisher": e.publisher, "place": e.place,
                         "year": str(e.year), "isbn": e.isbn, "split": e.isbn_split, "keywords": list(e.keywords),
                         "subjects": [s[0] for s in e.subjects], "call": f"{e.ddc} {e.mark}"})
    vocabulary = sorted({w for e in pool for w in (e.title + " " + (e.subtitle or "")).split()
                         if w.isalpha() and len(w) > 1})
    publishers = list(demo._PUBLISHERS.values())
    isbns = {e["isbn"] for e in editions if e["isbn"]}
    target = max(len(editions), n_records // 4)
    while len(editions) < target:
        words = rng.sample(vocabulary, rng.randint(2, 6))
        title = " ".join(words).capitalize()
        if rng.random() < 0.08:
            title += f". Tập {rng.randint(1, 4)}"
        place, publisher, registrant = rng.choice(publishers)
        year = 2025 - int(rng.random() ** 2 * 36)
        isbn = split = None
        if year >= 2008 and rng.random() < 0.85:
            while True:
                digits = "".join(rng.choice("0123456789") for _ in range(9 - len(registrant)))
                first12 = "978604" + registrant + digits
                isbn = first12 + demo._isbn13_check(first12)
                if isbn not in isbns:
                    isbns.add(isbn)
                    split = ("978", "604", registrant, digits)
                    break
        name = demo._gen_name(rng)
        editions.append({"title": title, "subtitle": None, "author": name, "corporate": None,
                         "publisher": publisher, "place": place, "year": str(year), "isbn": isbn, "split": split,
                         "keywords": rng.sample(vocabulary, 2), "subjects": [rng.choice(vocabulary)],
                         "call": f"{rng.randint(100, 999)} {demo._mark(name.direct)}"})
    return editions


def _copy_text(rows) -> io.StringIO:
    escapes = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})

    def value(v) -> str:
        if v is None:
            return "\\N"
        if isinstance(v, list):
            return "{" + ",".join('"' + str(x).replace("\\", "\\\\").replace('"', '\\"') + '"' for x in v) + "}"
        return str(v).translate(escapes)

    buffer = io.StringIO()
    for row in rows:
        buffer.write("\t".join(value(v) for v in row) + "\n")
    buffer.seek(0)
    return buffer


_RECORD_COLUMNS = ("record_id", "library_code", "local_id", "record_hash", "title", "author", "pub_place",
                   "publisher", "pub_year", "isbns", "language", "keywords", "subjects", "call_number", "encoding",
                   "is_complete", "valid_from", "loaded_by_batch")
_ITEM_COLUMNS = ("record_id", "library_code", "item_seq", "accession_number", "call_number", "collection",
                 "item_type", "location", "status")


def phase_load(n_records: int, seed: int) -> dict:
    """Fresh database, ~600 libraries, N records and their copies COPYed into core (no ingest)."""
    import sqlalchemy as sa

    from lienthong import config, demo, dimensions, migrations, warehouse

    started = time.perf_counter()
    if warehouse.is_embedded():
        admin = sa.create_engine(warehouse.sqlalchemy_url("postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{config.embedded_database()}" WITH (FORCE)'))
        admin.dispose()
        warehouse.dispose_engines()
    engine = warehouse.engine()
    migrations.upgrade(engine)
    dimensions.load_registry_dimensions(engine)
    reset_seconds = time.perf_counter() - started

    rng = random.Random(seed)
    editions = _editions(n_records, seed)
    head = min(len(demo._pool(demo.DEFAULT_SEED)), len(editions))
    codes = [f"BENCH-{i:04d}" for i in range(1, LIBRARIES + 1)]
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO core.library (library_code, name, library_type, valid_from, is_sample) "
            "SELECT c, 'Thư viện thử ' || c, 'THCS', DATE '2020-01-01', true FROM unnest(CAST(:c AS text[])) c"),
            {"c": codes})
        batches = dict(conn.execute(sa.text(
            "INSERT INTO core.batch (library_code, status, file_format) "
            "SELECT c, 'applied', 'bench' FROM unnest(CAST(:c AS text[])) c RETURNING library_code, batch_id"),
            {"c": codes}).all())
    styles = {code: (rng.random() < 0.5, rng.random() < 0.6, rng.random() < 0.3, rng.random() < 0.05,
                     rng.random() < 0.05) for code in codes}  # inverted, ISBD, hyphens, NFD, new tone placement
    now = datetime.now(timezone.utc).isoformat()
    generate_seconds = copy_seconds = 0.0
    items = 0
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        records, copies = [], []
        per_library = n_records // len(codes) + 1
        record_id = 0
        t = time.perf_counter()
        for index in range(n_records):
            code = codes[index // per_library]
            inverted, isbd, hyphens, nfd, new_tones = styles[code]
            if rng.random() < 0.35:  # the shared head: textbooks and classics in most libraries
                e = editions[int(rng.random() ** 1.5 * head)]
            else:
                e = editions[head + int(rng.random() ** 3 * (len(editions) - head))]
            name = e["author"]
            author = (name.inverted if inverted and name.inverted else name.direct) if name else e["corporate"]
            title = e["title"] + ((" : " if isbd else " ") + e["subtitle"] if e["subtitle"] else "")
            if isbd and author:
                title += " / " + (name.direct if name else author)
            isbns = []
            if e["isbn"] and rng.random() > 0.1:
                isbns = ["-".join((*e["split"], e["isbn"][12]))] if hyphens else [e["isbn"]]
            if new_tones:
                title = demo.new_tone_placement(title)
            if nfd:
                title, author = unicodedata.normalize("NFD", title), author and unicodedata.normalize("NFD", author)
            record_id += 1
            local_id = str(100 + index)
            digest = hashlib.sha1(f"{code}:{local_id}".encode()).hexdigest().ljust(64, "0")
            records.append((record_id, code, local_id, digest, title, author, e["place"], e["publisher"], e["year"],
                            isbns, "vie", e["keywords"], e["subjects"], e["call"], "utf-8", True, now,
                            batches[code]))
            for seq in range(1, 1 + (record_id % 3) + 1):
                copies.append((record_id, code, seq, f"STK.{record_id:07d}{seq}", e["call"], "Kho đọc", "STK",
                               "Phòng đọc", None))
            if len(records) >= COPY_CHUNK or index == n_records - 1:
                generate_seconds += time.perf_counter() - t
                t = time.perf_counter()
                cursor.copy_expert(f"COPY core.record ({', '.join(_RECORD_COLUMNS)}) FROM STDIN", _copy_text(records))
                cursor.copy_expert(f"COPY core.item ({', '.join(_ITEM_COLUMNS)}) FROM STDIN", _copy_text(copies))
                items += len(copies)
                records.clear()
                copies.clear()
                copy_seconds += time.perf_counter() - t
                t = time.perf_counter()
        cursor.execute("SELECT setval('core.record_record_id_seq', %s)", (record_id,))
        raw.commit()
        cursor.execute("ANALYZE core.record")
        raw.commit()
    finally:
        raw.close()
    return {"records": n_records, "items": items, "libraries": len(codes), "editions": len(editions),
            "shared_head_editions": head, "reset_seconds": reset_seconds, "generate_seconds": generate_seconds,
            "copy_seconds": copy_seconds, "peak_rss_mb": _peak_rss_mb()}


def phase_build(profile: str) -> dict:
    """The build on the loaded records, then a rebuild without changes (what a nightly run without new records
    costs). Peak RSS of the build process and, separately, of its largest key worker (forked processes)."""
    from lienthong import catalog, warehouse

    engine = warehouse.engine()
    load_before = os.getloadavg()
    started = time.perf_counter()
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        summary = profiler.runcall(catalog.build, engine)
        profiler.dump_stats(profile)
    else:
        summary = catalog.build(engine)
    seconds = time.perf_counter() - started
    load_after = os.getloadavg()
    started = time.perf_counter()
    rebuild = catalog.build(engine)
    return {"seconds": seconds, "summary": summary, "peak_rss_mb": _peak_rss_mb(),
            "workers_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            "load_average": {"before": load_before, "after": load_after},
            "rebuild_without_changes": {"seconds": time.perf_counter() - started,
                                        "match_seconds": rebuild["match_seconds"],
                                        "cluster_seconds": rebuild["cluster_seconds"],
                                        "clusters_written": rebuild["clusters_written"],
                                        "members_written": rebuild["members_written"]}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20261126)
    parser.add_argument("--profile", default="", help="write a cProfile of the build to this file (key workers "
                        "are forked and not profiled: LIENTHONG_INGEST_WORKERS=1 keeps them in-process)")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    options = parser.parse_args()

    os.environ.setdefault("LIENTHONG_VAR", str(ROOT / "var" / "bench"))
    os.environ["LIENTHONG_WAREHOUSE_DB"] = DATABASE
    os.environ.setdefault("LIENTHONG_PGDATA", str(ROOT / "var" / "pgdata"))
    if options.phase:
        handlers = {"load": lambda: phase_load(int(options.args[0]), int(options.args[1])),
                    "build": lambda: phase_build(options.args[0] if options.args else "")}
        print(json.dumps(handlers[options.phase](), default=str))
        return 0

    from run_bench import machine  # noqa: E402  (bench/ is the script's folder)

    say = lambda text: print(text, flush=True)  # noqa: E731
    report = {"started": datetime.now(timezone.utc).isoformat(), "machine": machine(), "records": options.records,
              "seed": options.seed, "database": DATABASE}
    say(f"union-catalogue bench — {report['machine']['cpu']}, {report['machine']['cores']} cores, "
        f"{options.records:,} records, database {DATABASE}")
    load = _child("load", str(options.records), str(options.seed))
    say(f"  loaded {load['records']:,} records and {load['items']:,} copies of {load['libraries']} libraries "
        f"({load['editions']:,} editions) straight into core.record/core.item with COPY — ingest BYPASSED "
        f"(generate {load['generate_seconds']:.1f} s, COPY {load['copy_seconds']:.1f} s)")
    build = _child("build", *([options.profile] if options.profile else []))
    s = build["summary"]
    rate = options.records / build["seconds"]
    say(f"  catalog build            : {build['seconds']:8.1f} s  {rate:10,.0f} records/s  "
        f"peak RSS {build['peak_rss_mb']:.0f} MB (goal: 1,000,000 records under 120 s)")
    say(f"    match {s['match_seconds']:.1f} s (keys, {s['pairs_compared']:,} pairs compared, "
        f"{s['same_keys_links']:,} same-keys links), cluster {s['cluster_seconds']:.1f} s; "
        f"key workers {s.get('key_workers', 0)} (peak RSS {build['workers_peak_rss_mb']:.0f} MB); "
        f"load average {build['load_average']['before'][0]:.2f} → {build['load_average']['after'][0]:.2f}")
    say(f"    steps: match {s.get('match_steps')}, cluster {s.get('cluster_steps')}")
    say(f"    {s['clusters']:,} clusters, {s['shared_clusters']:,} held by 2+ records, largest {s['largest_cluster']:,}; "
        f"links {s['links']}")
    again = build["rebuild_without_changes"]
    say(f"  rebuild without changes  : {again['seconds']:8.1f} s  (match {again['match_seconds']:.1f} s, cluster "
        f"{again['cluster_seconds']:.1f} s, {again['clusters_written']} clusters and {again['members_written']} "
        f"members written)")
    report.update(load=load, build={**build, "records_per_s": rate})
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"catalog-{options.records}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(report, indent=2, default=str, ensure_ascii=False) + "\n", encoding="utf-8")
    say(f"  results: {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
