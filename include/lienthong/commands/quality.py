"""`lienthong quality …`: the steward workflow (list, fix list, accept) and the scorecards and Data Docs."""
from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from lienthong.commands import print_json

EXIT_OK, EXIT_FAILED = 0, 1


def _context(args):
    from lienthong import quality, warehouse
    from lienthong.registry import load_registry

    registry = load_registry()
    codes = quality.library_codes(registry, getattr(args, "library", None), getattr(args, "group", None))
    return warehouse.engine(), registry, codes


def _fail(args, exc) -> int:
    if getattr(args, "json", False):
        print_json({"ok": False, "error": str(exc)})
    else:
        print(f"lỗi: {exc}", file=sys.stderr)
    return EXIT_FAILED


def cmd_list(args) -> int:
    from lienthong import quality

    try:
        engine, _, codes = _context(args)
    except quality.QualityError as exc:
        return _fail(args, exc)
    rows = quality.problems(engine, codes, include_accepted=args.all)
    batch_checks = quality.failing_batch_checks(engine, codes)
    if args.json:
        print_json({"problems": len(rows), "by_rule": dict(Counter(r["rule"] for r in rows).most_common()),
                    "rows": rows, "batch_checks": batch_checks})
        return EXIT_OK
    for c in batch_checks:
        print(f"{c['library_code']}	{c['severity']}	{c['rule']}	{c['field']}	{c['message_vi']}")
    if not rows:
        print("Không có lỗi nào trong lần nhận dữ liệu gần nhất.")
        return EXIT_OK
    for r in rows:
        mark = " [đã chấp nhận]" if r["accepted"] else ""
        print(f"{r['library_code']}:{r['local_id']}\t{r['severity']}\t{r['rule']}\t"
              f"{quality.FIELD_LABELS_VI.get(r['field'], r['field'])}\t{r['title'] or '(không nhan đề)'}{mark}")
    print(f"{len(rows)} lỗi; theo quy tắc: " + ", ".join(f"{k} {v}" for k, v in
                                                     Counter(r["rule"] for r in rows).most_common()))
    return EXIT_OK


def cmd_fixlist(args) -> int:
    from lienthong import quality

    try:
        engine, registry, codes = _context(args)
    except quality.QualityError as exc:
        return _fail(args, exc)
    rows = quality.problems(engine, codes)
    library = registry.libraries[args.library]
    path = quality.write_fixlist({args.library: quality.fix_rows(rows)}, Path(args.out),
                                 note=f"Danh sách biểu ghi cần sửa của {library.name}")
    result = {"library": args.library, "file": str(path), "problems": len(rows)}
    if args.json:
        print_json(result)
    else:
        print(f"{path}: {len(rows)} lỗi cần sửa của {library.name}")
    return EXIT_OK


def cmd_accept(args) -> int:
    from lienthong import quality, warehouse
    from lienthong.registry import load_registry

    try:
        result = quality.accept(warehouse.engine(), load_registry(), args.record, args.rule, args.reason, args.by)
    except quality.QualityError as exc:
        return _fail(args, exc)
    if args.json:
        print_json(result)
    elif result["already_accepted"]:
        print(f"{args.record} {args.rule}: đã được chấp nhận trước đó ({result['accepted_by']}, "
              f"{result['accepted_at']})")
    else:
        print(f"{args.record} {args.rule}: đã chấp nhận ngoại lệ #{result['exception_id']} "
              f"({result['accepted_by']}); có hiệu lực từ lần nhận dữ liệu tiếp theo")
    return EXIT_OK


def cmd_exceptions(args) -> int:
    from lienthong import quality

    try:
        engine, _, codes = _context(args)
    except quality.QualityError as exc:
        return _fail(args, exc)
    rows = quality.exceptions(engine, codes)
    if args.json:
        print_json({"exceptions": rows})
    else:
        for r in rows:
            print(f"#{r['exception_id']}\t{r['library_code']}:{r['local_id']}\t{r['rule']}\t{r['status']}\t"
                  f"{r['accepted_by']}\t{r['accepted_at']:%Y-%m-%d %H:%M}\t{r['reason']}")
    return EXIT_OK


def cmd_scorecard(args) -> int:
    from lienthong import quality, scorecard

    try:
        engine, registry, codes = _context(args)
    except quality.QualityError as exc:
        return _fail(args, exc)
    refreshed = scorecard.refresh(engine, registry) if args.refresh else None
    cards = scorecard.library_scorecards(engine, codes)
    if args.json:
        print_json({"scorecards": cards, "refresh": refreshed,
                    "tiers": [{"tier": t, "completeness_min": c, "validity_min": v} for t, c, v in scorecard.TIERS]})
        return EXIT_OK
    for card in cards:
        elements = " ".join(f"{k}={card[k]:.0%}" for k in scorecard.ELEMENT_VI if card.get(k) is not None)
        print(f"{card['library_code']}\thạng {card['tier']}\t{card['records']} biểu ghi\t"
              f"hợp lệ {card['validity']:.0%}\t{elements}")
    if refreshed:
        print(f"tỉnh: hạng {refreshed['province']['tier']}; tụt hạng: {len(refreshed['tier_drops'])}")
    return EXIT_OK


def cmd_docs(args) -> int:
    from lienthong import scorecard, warehouse

    result = scorecard.build_docs(warehouse.engine(), Path(args.out) if args.out else None,
                                  batches_per_library=args.batches)
    if args.json:
        print_json(result)
    else:
        print(f"Data Docs: {result['index']} ({result['batches']} batches); bảng điểm: {result['scorecards']}")
    return EXIT_OK


def register(commands) -> None:
    parser = commands.add_parser("quality", help="record quality: problems, fix lists, exceptions, scorecards")
    sub = parser.add_subparsers(dest="quality_command", required=True)

    p = sub.add_parser("list", help="failing checks of each library's newest batch")
    p.add_argument("--library")
    p.add_argument("--group")
    p.add_argument("--all", action="store_true", help="include failures covered by an accepted exception")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("fixlist", help="the library's fix list as .xlsx (Vietnamese, one row per problem)")
    p.add_argument("--library", required=True)
    p.add_argument("--out", required=True, help="FILE.xlsx")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_fixlist)

    p = sub.add_parser("accept", help="accept one rule of one record as a justified exception (audited)")
    p.add_argument("--record", required=True, help="LIBRARY:LOCAL_ID")
    p.add_argument("--rule", required=True)
    p.add_argument("--reason", required=True)
    p.add_argument("--by", help="who accepts (default: the OS user)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_accept)

    p = sub.add_parser("exceptions", help="accepted exceptions with their audit trail")
    p.add_argument("--library")
    p.add_argument("--group")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_exceptions)

    p = sub.add_parser("scorecard", help="each library's newest scorecard (completeness, validity, tier)")
    p.add_argument("--library")
    p.add_argument("--group")
    p.add_argument("--refresh", action="store_true", help="also write group and province roll-ups")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_scorecard)

    p = sub.add_parser("docs", help="build GX Data Docs and the scorecard page into a folder")
    p.add_argument("--out", help="folder (default var/quality/data_docs)")
    p.add_argument("--batches", type=int, default=1, help="newest batches per library to include")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_docs)
