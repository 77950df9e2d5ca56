"""`lienthong catalog …`: build, explain, decide, search and export the union catalogue."""
from __future__ import annotations

import sys

from lienthong.commands import print_json


def _engine():
    from lienthong import warehouse

    return warehouse.engine()


def _fail(args, exc) -> int:
    if getattr(args, "json", False):
        print_json({"error": str(exc)})
    else:
        print(f"lỗi: {exc}", file=sys.stderr)
    return 1


def cmd_build(args) -> int:
    from lienthong import catalog, migrations

    engine = _engine()
    migrations.upgrade(engine)  # a fresh warehouse gets the catalogue schema first
    stats = catalog.build(engine)
    if args.json:
        print_json(stats)
    else:
        print(f"mục lục liên hợp: {stats['records']} biểu ghi → {stats['clusters']} cụm "
              f"({stats['shared_clusters']} cụm có từ 2 biểu ghi); so sánh {stats['pairs_compared']} cặp, "
              f"thêm {stats['links_added']} liên kết; {stats['match_seconds'] + stats['cluster_seconds']:.1f} s")
    return 0


def cmd_explain(args) -> int:
    from lienthong import catalog

    try:
        result = catalog.explain(_engine(), args.record)
    except catalog.CatalogError as exc:
        return _fail(args, exc)
    if args.json:
        print_json(result)
        return 0
    print(f"{result['record']} → cụm {result['cluster_id']} ({result['rule']})")
    print(result["message_vi"])
    print(f"  biểu ghi ưu tiên: {result['cluster']['preferred_record']}; mức truy cập: "
          f"{catalog.ACCESS_LABELS_VI[result['cluster']['access_level']]}")
    for link in result["links"]:
        print(f"  {link['status']:<10} {link['other']:<32} {link['rule']:<22} {link['score']:>5}"
              f"{'  ' + link['reason'] if link['reason'] else ''}")
    for d in result["decisions"]:
        print(f"  quyết định {d['decision_id']}: {d['kind']} {d['a']} {d['b']} — {d['reason']}")
    return 0


def cmd_decide(args) -> int:
    from lienthong import catalog

    kind = "merge" if args.merge else "split"
    try:
        result = catalog.decide(_engine(), kind, args.a, args.b, args.reason)
    except catalog.CatalogError as exc:
        return _fail(args, exc)
    if args.json:
        print_json(result)
    else:
        verb = "gộp" if kind == "merge" else "tách"
        print(f"đã ghi quyết định {result['decision_id']} ({verb}) {args.a} và {args.b}: cụm "
              + ", ".join(f"{ref} → {cid}" for ref, cid in result["cluster_ids"].items()))
    return 0


def cmd_search(args) -> int:
    from lienthong import catalog

    try:
        results = catalog.search(_engine(), args.text, group=args.group, library=args.library, limit=args.limit)
    except catalog.CatalogError as exc:
        return _fail(args, exc)
    if args.json:
        print_json({"query": args.text, "results": results})
        return 0
    if not results:
        print("không tìm thấy")
    for r in results:
        volume = f" (tập {r['volume']})" if r["volume"] else ""
        print(f"[{r['cluster_id']}] {r['title']}{volume} / {r['author'] or '—'} — {r['publisher'] or '—'}, "
              f"{r['pub_year'] or '—'}; {r['libraries']} thư viện")
        for h in r.get("holdings", []):
            print(f"    {h['library_code']:<22} {h['accession_number'] or '—':<14} {h['call_number'] or '—':<22} "
                  f"{h['access_level']}{' · ' + h['availability'] if h['availability'] else ''}")
    return 0


def cmd_export(args) -> int:
    from lienthong import catalog

    try:
        result = catalog.export(_engine(), args.out, cluster_id=args.cluster, query=args.query, group=args.group,
                                fmt=args.format)
    except catalog.CatalogError as exc:
        return _fail(args, exc)
    if args.json:
        print_json(result)
    else:
        print(f"đã ghi {result['records']} biểu ghi ({result['items']} bản) vào {result['file']} ({result['format']})")
    return 0


def register(commands) -> None:
    parser = commands.add_parser("catalog", help="union catalogue: build, explain, decide, search, export")
    sub = parser.add_subparsers(dest="catalog_command", required=True)

    p = sub.add_parser("build", help="match new records and rebuild the clusters (what the DAG runs)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("explain", help="the cluster of LIBRARY:LOCAL_ID (001) and why it sits there")
    p.add_argument("record", metavar="LIBRARY:LOCAL_ID")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("decide", help="a steward's merge or split of two records; survives rebuilds")
    kind = p.add_mutually_exclusive_group(required=True)
    kind.add_argument("--merge", action="store_true")
    kind.add_argument("--split", action="store_true")
    p.add_argument("a", metavar="LIBRARY:LOCAL_ID")
    p.add_argument("b", metavar="LIBRARY:LOCAL_ID")
    p.add_argument("--reason", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_decide)

    p = sub.add_parser("search", help="search with or without diacritics, ranked, with holdings")
    p.add_argument("text")
    p.add_argument("--group")
    p.add_argument("--library")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("export", help="preferred records as MARC for copy cataloguing")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--cluster", type=int)
    which.add_argument("--query")
    which.add_argument("--group")
    p.add_argument("--out", required=True)
    p.add_argument("--format", choices=("marc21", "marcxml"), default="marc21")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_export)
