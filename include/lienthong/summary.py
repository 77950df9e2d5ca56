"""The province at a glance, read from the marts views (what `make demo` prints)."""
from __future__ import annotations

import sqlalchemy as sa


def province_summary(engine: sa.Engine) -> dict:
    with engine.connect() as conn:
        totals = dict(conn.execute(sa.text("SELECT * FROM marts.province_summary")).mappings().one())
        batches = conn.execute(
            sa.text("SELECT status, count(*) AS n FROM marts.library_last_batch GROUP BY status ORDER BY status")
        ).all()
        by_type = conn.execute(
            sa.text(
                """SELECT library_type, count(*) AS libraries, sum(records) AS records, sum(items) AS items
                   FROM marts.library_holdings GROUP BY library_type ORDER BY sum(records) DESC, library_type"""
            )
        ).mappings().all()
    records = totals["records"] or 0
    totals = {key: int(value or 0) for key, value in totals.items()}
    totals["complete_share"] = round(totals["complete_records"] / records, 4) if records else 0.0
    totals["last_batch_status"] = {status: int(n) for status, n in batches}
    totals["by_library_type"] = [
        {"library_type": row["library_type"], "libraries": int(row["libraries"]),
         "records": int(row["records"] or 0), "items": int(row["items"] or 0)}
        for row in by_type
    ]
    return totals


def format_summary(summary: dict) -> str:
    lines = [
        "Province summary (current state of the warehouse)",
        f"  libraries in registry : {summary['libraries']}",
        f"  libraries with records: {summary['libraries_with_records']}",
        f"  records               : {summary['records']}",
        f"  items (copies)        : {summary['items']}",
        f"  complete records      : {summary['complete_records']} "
        f"({summary['complete_share']:.1%} have all seven mandatory elements)",
        f"  quarantined records   : {summary['quarantined_records']}",
        "  newest batch per library: "
        + (", ".join(f"{k} {v}" for k, v in summary["last_batch_status"].items()) or "none yet"),
    ]
    if summary["by_library_type"]:
        lines.append("  by library type:")
        for row in summary["by_library_type"]:
            lines.append(f"    {row['library_type']:<22} {row['libraries']:>4} libraries "
                         f"{row['records']:>7} records {row['items']:>8} items")
    return "\n".join(lines)
