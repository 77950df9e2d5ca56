"""`lienthong report` (period reports in XLSX, CSV and HTML), `lienthong submissions` and `lienthong remind`."""
from __future__ import annotations

from datetime import date, datetime

from lienthong.commands import print_json


def _period(args):
    from lienthong import periods

    return periods.parse(args.period) if args.period else periods.current()


def cmd_report(args) -> int:
    from lienthong import report

    levels = (args.level,) if args.level else report.LEVELS
    as_of = datetime.fromisoformat(args.as_of) if args.as_of else None
    if as_of is not None and as_of.tzinfo is None:
        from lienthong.periods import TIMEZONE

        as_of = as_of.replace(tzinfo=TIMEZONE)
    built = report.run_report(_period(args).code, args.out, levels=levels, as_of=as_of)
    data = built.to_dict(levels)
    if args.json:
        print_json(data)
    else:
        totals = built.totals
        print(f"{built.period.name_vi} ({built.period.code}), số liệu tại {built.as_of.isoformat()}"
              + (" — tạm tính" if built.provisional else ""))
        print(f"  {totals['libraries']} thư viện, {totals['titles']} đầu sách, {totals['copies']} bản sách")
        counts = data["submissions"]["counts"]
        print(f"  nộp dữ liệu: {counts['on_time']} đúng hạn, {counts['late']} muộn, {counts['missing']} chưa nộp")
        for path in built.files:
            print(f"  {path}")
    return 0


def cmd_submissions(args) -> int:
    from lienthong import submissions, warehouse

    period = _period(args)
    rows = submissions.track(warehouse.engine(), period)
    summary = submissions.summary(rows)
    if args.json:
        print_json({**period.to_dict(), **summary, "libraries": [s.to_dict() for s in rows]})
    else:
        print(f"{period.name_vi}: hạn {period.due:%d/%m/%Y}")
        for status in ("on_time", "late", "missing"):
            print(f"  {submissions.STATUS_VI[status]}: {summary['counts'][status]}")
        for sub in rows:
            if sub.status != "on_time":
                print(f"    {sub.library_code:<24} {submissions.STATUS_VI[sub.status]}")
    return 0


def cmd_remind(args) -> int:
    from lienthong import periods, submissions, warehouse

    period = _period(args)
    today = date.fromisoformat(args.today) if args.today else periods.local_day(datetime.now(periods.TIMEZONE))
    engine = warehouse.engine()
    if args.dry_run:
        planned = submissions.plan_reminders(engine, period, today)
        result = {"period": period.code, "today": today.isoformat(), "days_to_due": periods.days_to_due(period, today),
                  "planned": [{"role": r.role, "to": r.recipient, "group": r.group_code or None,
                               "libraries": [s.library_code for s in r.libraries]} for r in planned]}
    else:
        result = submissions.send_reminders(engine, period, today)
    if args.json:
        print_json(result)
    else:
        items = result.get("planned", result.get("sent", []))
        print(f"{period.code}: {result['days_to_due']} ngày đến hạn; {len(items)} thư nhắc"
              + (" (chạy thử, không gửi)" if args.dry_run else ""))
        for item in items:
            print(f"  {item['to']}")
    return 0


def register(commands) -> None:
    p = commands.add_parser("report", help="a period's report (XLSX, CSV, HTML with charts) from the warehouse "
                                           "history as of the period's end")
    p.add_argument("--period", help="e.g. 2026-2027/HK1 or 2026-2027/NAM (default: the next one due)")
    p.add_argument("--level", choices=("province", "group", "district", "library"),
                   help="only this level (default: all four)")
    p.add_argument("--out", required=True, help="folder for the files")
    p.add_argument("--as-of", help="read the warehouse at this instant instead of the period's end (ISO 8601)")
    p.add_argument("--json", action="store_true", help="print the figures and the files as JSON")
    p.set_defaults(func=cmd_report)

    p = commands.add_parser("submissions", help="which libraries delivered an accepted export for a period: "
                                                "on time, late, missing")
    p.add_argument("--period", help="e.g. 2026-2027/HK1 (default: the next one due)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_submissions)

    p = commands.add_parser("remind", help="e-mail today's reminders (lead libraries, education office) before "
                                           "a deadline, through the SMTP connection of the registry")
    p.add_argument("--period", help="e.g. 2026-2027/HK1 (default: the next one due)")
    p.add_argument("--today", help="the day to check as (YYYY-MM-DD; default today in Vietnam)")
    p.add_argument("--dry-run", action="store_true", help="list the reminders without sending them")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_remind)
