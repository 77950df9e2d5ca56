"""The files of a period report: an XLSX workbook (a sheet per level), CSV files and a self-contained HTML page.

Text from the registry or the libraries never becomes a formula: a cell starting with = + - @ or a tab is stored
as a string with Excel's quote prefix in the workbook and prefixed with an apostrophe in CSV (OWASP's advice for
CSV injection). The HTML page carries its own CSS and SVG charts drawn here: no CDN, no network.
"""
from __future__ import annotations

import csv
import html
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from lienthong import periods, submissions

if TYPE_CHECKING:
    from lienthong.report import PeriodReport

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\n")
NAME_HEADERS = {"province": "Tỉnh", "district": "Huyện (cũ)", "group": "Nhóm liên thông", "library": "Thư viện"}
KEY_HEADERS = {"province": "Mã", "district": "Huyện (cũ)", "group": "Mã nhóm", "library": "Mã thư viện"}
SUBMISSION_HEADERS = [("library", "Mã thư viện"), ("name", "Tên thư viện"), ("status_vi", "Tình trạng nộp"),
                      ("accepted_at", "Thời điểm nhận dữ liệu hợp lệ"), ("last_delivery_status", "Lần gửi gần nhất"),
                      ("groups", "Nhóm liên thông")]
KIND_COLORS = {"sgk": "#1f77b4", "stk": "#2ca02c", "snv": "#9467bd", "tn": "#ff7f0e", "other": "#7f7f7f"}
STATUS_COLORS = {"on_time": "#2ca02c", "late": "#ff7f0e", "missing": "#d62728"}


def safe_text(value: str) -> str:
    """CSV: neutralise a leading formula character with an apostrophe."""
    return "'" + value if value.startswith(FORMULA_PREFIXES) else value


def _local(moment: datetime) -> str:
    return moment.astimezone(periods.TIMEZONE).strftime("%H:%M ngày %d/%m/%Y")


def _title(report: PeriodReport) -> str:
    return f"Báo cáo liên thông thư viện — {report.period.name_vi}"


def _subtitle(report: PeriodReport) -> str:
    text = (f"Số liệu tại thời điểm {_local(report.as_of)} (hết ngày {report.period.end:%d/%m/%Y}); "
            f"hạn nộp {report.period.due:%d/%m/%Y}.")
    if report.provisional:
        text += " Kỳ báo cáo chưa kết thúc: số liệu tạm tính."
    return text


def _level_table(report: PeriodReport, level: str) -> tuple[list[str], list[list], list[str]]:
    """Headers, rows of values and the format of each column for one level."""
    columns = [c for c in report.columns]
    extra: list[tuple[str, str, str]] = []
    if level == "library":
        extra = [("library_type", "Loại hình", "text"), ("district", "Huyện (cũ)", "text")]
        columns = columns + [("submission_vi", "Nộp dữ liệu kỳ này", "text")]
    elif level == "group":
        extra = [("lead_library", "Thư viện chủ trì", "text"), ("libraries", "Số thư viện", "int")]
    else:
        extra = [("libraries", "Số thư viện", "int")]
    heads = [(level == "district" and ("name", NAME_HEADERS[level], "text")) or ("key", KEY_HEADERS[level], "text")]
    if level != "district":
        heads.append(("name", NAME_HEADERS[level] if level != "library" else "Tên thư viện", "text"))
    all_columns = heads + extra + columns
    rows = [[row.get(key) for key, _, _ in all_columns] for row in report.levels[level]]
    return [h for _, h, _ in all_columns], rows, [f for _, _, f in all_columns]


def _submission_rows(report: PeriodReport) -> list[list]:
    rows = []
    for sub in report.submissions:
        data = sub.to_dict()
        if sub.accepted_at:
            data["accepted_at"] = sub.accepted_at.astimezone(periods.TIMEZONE).strftime("%d/%m/%Y %H:%M")
        data["groups"] = ", ".join(sub.groups)
        rows.append([data[key] for key, _ in SUBMISSION_HEADERS])
    return rows


# ---------------------------------------------------------------- XLSX

def write_xlsx(report: PeriodReport, path: Path, levels) -> Path:
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
    from openpyxl.utils import get_column_letter

    workbook = Workbook()
    workbook.remove(workbook.active)
    header_font = Font(bold=True, color="FFFFFF")
    header_fill = PatternFill("solid", fgColor="1F4E79")
    thin = Side(style="thin", color="BFBFBF")
    border = Border(left=thin, right=thin, top=thin, bottom=thin)
    formats = {"int": "#,##0", "pct": "0.0%", "num": "0.0", "text": "@"}

    def sheet(title: str, headers: list[str], rows: list[list], kinds: list[str]) -> None:
        ws = workbook.create_sheet(title[:31])
        ws.cell(1, 1, _title(report)).font = Font(bold=True, size=14)
        ws.cell(2, 1, _subtitle(report)).font = Font(italic=True)
        for col, head in enumerate(headers, 1):
            cell = ws.cell(4, col, head)
            cell.font, cell.fill, cell.border = header_font, header_fill, border
            cell.alignment = Alignment(wrap_text=True, vertical="center", horizontal="center")
        for r, values in enumerate(rows, 5):
            for col, (value, kind) in enumerate(zip(values, kinds), 1):
                if isinstance(value, (list, tuple)):
                    value = ", ".join(map(str, value))
                cell = ws.cell(r, col)
                cell.value = value
                if isinstance(value, str):
                    cell.data_type = "s"  # never a formula, whatever the text starts with
                    if value.startswith(FORMULA_PREFIXES):
                        cell.quotePrefix = True
                elif value is not None:
                    cell.number_format = formats[kind]
                cell.border = border
        ws.row_dimensions[4].height = 48
        for col, head in enumerate(headers, 1):
            longest = max([len(str(v[col - 1] or "")) for v in rows] + [min(len(head), 18)])
            ws.column_dimensions[get_column_letter(col)].width = min(max(10, longest + 2), 48)
        ws.freeze_panes = ws.cell(5, 3 if len(headers) > 2 else 2)
        if rows:
            ws.auto_filter.ref = f"A4:{get_column_letter(len(headers))}{len(rows) + 4}"

    for level in levels:
        headers, rows, kinds = _level_table(report, level)
        sheet(NAME_HEADERS[level] if level != "district" else "Huyện (cũ)", headers, rows, kinds)
    sheet("Tình hình nộp dữ liệu", [h for _, h in SUBMISSION_HEADERS], _submission_rows(report),
          ["text"] * len(SUBMISSION_HEADERS))
    notes = workbook.create_sheet("Ghi chú")
    for r, (label, value) in enumerate([
            ("Kỳ báo cáo", report.period.code), ("Tên kỳ", report.period.name_vi),
            ("Từ ngày", report.period.start.strftime("%d/%m/%Y")), ("Đến ngày", report.period.end.strftime("%d/%m/%Y")),
            ("Hạn nộp", report.period.due.strftime("%d/%m/%Y")), ("Số liệu tại thời điểm", _local(report.as_of)),
            ("Tạm tính", "Có" if report.provisional else "Không"), ("Lập lúc", _local(report.generated_at)),
            ("Mã kiểm tra số liệu (sha256)", report.figures_sha256()),
            ("Kỳ trước để so sánh", report.sources.get("previous_period")),
            ("Phân loại sách", "SGK/STK/SNV/TN theo mã loại tài liệu (952$y), tiền tố số ĐKCB, hoặc tên kho (952$8)"),
            ("Bổ sung trong kỳ", "Đầu/bản sách mới xuất hiện trong dữ liệu từ đầu kỳ; để trống nếu thư viện chưa có "
                                 "dữ liệu trước kỳ"),
            ("Xếp hạng chất lượng", "A ≥ 95%, B ≥ 80%, C ≥ 60%, D dưới 60% biểu ghi đủ 7 yếu tố bắt buộc")], 1):
        notes.cell(r, 1, label).font = Font(bold=True)
        cell = notes.cell(r, 2, value)
        cell.data_type = "s"
    notes.column_dimensions["A"].width = 30
    notes.column_dimensions["B"].width = 90
    workbook.save(path)
    return path


# ---------------------------------------------------------------- CSV

def write_csv(report: PeriodReport, out: Path, stem: str, levels) -> list[Path]:
    """UTF-8 with a byte-order mark, so Excel shows the Vietnamese text right."""
    files = []

    def write(path: Path, headers: list[str], rows: list[list]) -> None:
        with open(path, "w", encoding="utf-8-sig", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(headers)
            for values in rows:
                writer.writerow(["" if v is None else safe_text(", ".join(map(str, v)) if isinstance(v, list)
                                                                else str(v)) for v in values])
        files.append(path)

    for level in levels:
        headers, rows, _ = _level_table(report, level)
        write(out / f"{stem}-{level}.csv", headers, rows)
    write(out / f"{stem}-nop-du-lieu.csv", [h for _, h in SUBMISSION_HEADERS], _submission_rows(report))
    return files


# ---------------------------------------------------------------- HTML with SVG charts

def _esc(value) -> str:
    return html.escape("" if value is None else str(value))


def _num(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.1f}".replace(",", "\u202f")
    return f"{value:,}".replace(",", "\u202f")


def _cell(value, kind: str) -> str:
    if kind == "pct":
        return "—" if value is None else f"{value * 100:.1f}%"
    if kind in ("int", "num"):
        return _num(value)
    if isinstance(value, list):
        return _esc(", ".join(value))
    return _esc(value)


def bar_chart(chart_id: str, title: str, labels: list[str], series: list[tuple[str, str, list[float]]],
              *, stacked: bool = False, percent: bool = False) -> str:
    """A horizontal bar chart as inline SVG: one row per label, grouped or stacked series."""
    row_h = 26 if stacked or len(series) == 1 else 14 * len(series) + 10
    left, width, top = 190, 640, 34
    height = top + row_h * len(labels) + 40 + 18 * (sum(30 + 7 * len(name) for name, _, _ in series) // (width - left))
    totals = [sum(s[2][i] or 0 for s in series) if stacked else max((s[2][i] or 0) for s in series)
              for i in range(len(labels))]
    top_value = max(totals + [1e-9]) if not percent else 1.0
    scale = (width - left - 70) / top_value
    parts = [f'<svg class="chart" id="{chart_id}" role="img" aria-label="{_esc(title)}" '
             f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
             f'<title>{_esc(title)}</title>',
             f'<text x="0" y="18" class="chart-title">{_esc(title)}</text>']
    for i, label in enumerate(labels):
        y = top + i * row_h
        parts.append(f'<text x="{left - 6}" y="{y + row_h / 2 + 4:.1f}" text-anchor="end" class="label">'
                     f'{_esc(label[:30])}</text>')
        x = left
        for j, (_, color, values) in enumerate(series):
            value = values[i] or 0
            w = value * scale
            if stacked:
                parts.append(f'<rect class="bar" x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" '
                             f'fill="{color}"><title>{_esc(label)}: {_num(value)}</title></rect>')
                x += w
            else:
                bar_h = (row_h - 10) / len(series)
                by = y + 5 + j * bar_h
                shown = f"{value * 100:.1f}%" if percent else _num(value)
                parts.append(f'<rect class="bar" x="{left}" y="{by:.1f}" width="{w:.1f}" height="{bar_h - 1:.1f}" '
                             f'fill="{color}"><title>{_esc(label)}: {shown}</title></rect>')
                parts.append(f'<text x="{left + w + 4:.1f}" y="{by + bar_h - 3:.1f}" class="value">{shown}</text>')
        if stacked:
            parts.append(f'<text x="{x + 4:.1f}" y="{y + row_h / 2 + 4:.1f}" class="value">{_num(totals[i])}</text>')
    legend_y = top + row_h * len(labels) + 20
    x = left
    for name, color, _ in series:
        step = 30 + 7 * len(name)
        if x + step > width:
            x, legend_y = left, legend_y + 18
        parts.append(f'<rect x="{x}" y="{legend_y - 10}" width="12" height="12" fill="{color}"/>'
                     f'<text x="{x + 16}" y="{legend_y}" class="legend">{_esc(name)}</text>')
        x += step
    parts.append("</svg>")
    return "".join(parts)


_CSS = """
body{font-family:'Noto Sans','DejaVu Sans',Arial,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px;margin-bottom:4px} h2{font-size:18px;margin-top:32px;border-bottom:2px solid #1f4e79}
.sub{color:#555;margin-top:0} .provisional{color:#b35900;font-weight:bold}
table{border-collapse:collapse;font-size:12px;margin:8px 0} th,td{border:1px solid #ccc;padding:3px 6px}
th{background:#1f4e79;color:#fff;font-weight:600} td.n{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;gap:12px;flex-wrap:wrap} .card{border:1px solid #ccc;border-radius:6px;padding:8px 14px}
.card b{display:block;font-size:20px} .chart{display:block;margin:12px 0}
.chart-title{font-weight:bold;font-size:14px} .label,.value,.legend{font-size:11px}
.wrap{overflow-x:auto} .st-missing{color:#d62728;font-weight:bold} .st-late{color:#b35900;font-weight:bold}
"""

_RENDER_CHECK = """
document.addEventListener('DOMContentLoaded', function () {
  var charts = document.querySelectorAll('svg.chart'), drawn = 0, bars = 0;
  charts.forEach(function (svg) {
    var box = svg.getBoundingClientRect(), wide = 0;
    svg.querySelectorAll('rect.bar').forEach(function (r) { if (r.getBBox().width > 0) { wide++; } });
    if (box.width > 0 && box.height > 0 && wide > 0) { drawn++; svg.setAttribute('data-rendered', wide); }
    bars += wide;
  });
  var out = document.getElementById('render-check');
  out.textContent = 'charts=' + charts.length + ' drawn=' + drawn + ' bars=' + bars;
  out.setAttribute('data-drawn', drawn);
});
"""


def _table_html(headers: list[str], rows: list[list], kinds: list[str]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = []
    for values in rows:
        cells = "".join(f'<td class="{"n" if k in ("int", "num", "pct") else "t"}">{_cell(v, k)}</td>'
                        for v, k in zip(values, kinds))
        body.append(f"<tr>{cells}</tr>")
    return f'<div class="wrap"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def write_html(report: PeriodReport, path: Path, levels) -> Path:
    from lienthong.report import KINDS, LEVELS

    totals = report.totals
    districts = report.levels["district"]
    labels = [d["name"] or "—" for d in districts]
    sub = submissions.summary(report.submissions)
    charts = [
        bar_chart("chart-holdings", "Đầu sách và bản sách theo huyện (cũ)", labels,
                  [("Đầu sách", "#1f77b4", [d.get("titles") or 0 for d in districts]),
                   ("Bản sách", "#aec7e8", [d.get("copies") or 0 for d in districts])]),
        bar_chart("chart-kinds", "Bản sách theo loại (SGK, STK, SNV, thiếu nhi) theo huyện (cũ)", labels,
                  [(name, KIND_COLORS[key], [d.get(f"copies_{key}") or 0 for d in districts])
                   for key, _, name in KINDS], stacked=True),
        bar_chart("chart-complete", "Tỷ lệ biểu ghi đủ 7 yếu tố bắt buộc theo huyện (cũ)", labels,
                  [("Tỷ lệ đầy đủ", "#2ca02c", [d.get("complete_share") or 0 for d in districts])], percent=True),
        bar_chart("chart-submissions", "Tình hình nộp dữ liệu kỳ này", [submissions.STATUS_VI[s] for s in STATUS_COLORS],
                  [("Số thư viện", "#1f4e79", [sub["counts"][s] for s in STATUS_COLORS])]),
    ]
    cards = [("Thư viện", totals.get("libraries")), ("Đầu sách", totals.get("titles")),
             ("Bản sách", totals.get("copies")), ("Tỷ lệ biểu ghi đầy đủ",
                                                  None if totals.get("complete_share") is None
                                                  else f"{totals['complete_share'] * 100:.1f}%"),
             ("Nộp đúng hạn", sub["counts"]["on_time"]), ("Nộp muộn", sub["counts"]["late"]),
             ("Chưa nộp", sub["counts"]["missing"])]
    for key, label in (("loans", "Lượt mượn"), ("catalog_records", "Biểu ghi trong mục lục liên hợp")):
        if totals.get(key) is not None:
            cards.append((label, totals[key]))
    sections = []
    for level in [lv for lv in LEVELS if lv in levels]:
        headers, rows, kinds = _level_table(report, level)
        sections.append(f'<h2 id="level-{level}">{_esc(NAME_HEADERS[level])}</h2>' + _table_html(headers, rows, kinds))
    late_missing = [s for s in report.submissions if s.status != "on_time"]
    sub_rows = "".join(
        f'<tr><td>{_esc(s.library_code)}</td><td>{_esc(s.library_name)}</td>'
        f'<td class="st-{s.status}">{_esc(submissions.STATUS_VI[s.status])}</td>'
        f'<td>{_esc(s.accepted_at.astimezone(periods.TIMEZONE).strftime("%d/%m/%Y") if s.accepted_at else "")}</td></tr>'
        for s in late_missing)
    page = f"""<!DOCTYPE html>
<html lang="vi"><head><meta charset="utf-8"><title>{_esc(_title(report))}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>
<body>
<h1>{_esc(_title(report))}</h1>
<p class="sub">{_esc(_subtitle(report))}</p>
{'<p class="provisional">Số liệu tạm tính</p>' if report.provisional else ''}
<div class="cards">{''.join(f'<div class="card">{_esc(k)}<b>{_cell(v, "int") if isinstance(v, int) else _esc(v)}</b></div>'
                            for k, v in cards)}</div>
<h2>Biểu đồ</h2>
{''.join(charts)}
<p id="render-check" data-drawn="0">charts=not-rendered</p>
<h2>Thư viện nộp muộn hoặc chưa nộp dữ liệu</h2>
<div class="wrap"><table><thead><tr><th>Mã thư viện</th><th>Tên thư viện</th><th>Tình trạng</th>
<th>Ngày nhận</th></tr></thead><tbody>{sub_rows}</tbody></table></div>
{''.join(sections)}
<p class="sub">Mã kiểm tra số liệu (sha256): <code>{report.figures_sha256()}</code>. Lập lúc {_esc(_local(report.generated_at))}.</p>
<script>{_RENDER_CHECK}</script>
</body></html>
"""
    path.write_text(page, encoding="utf-8")
    return path
