"""Period reports on the sample province: figures equal an independent count from the generator's ground truth and
the raw export files; the XLSX reads in Vietnamese with openpyxl and holds no formula; CSV and JSON agree."""
from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from lienthong import config, periods, report
from lienthong.demo import DEFECT_RULES, INCOMPLETE_RULES
from lienthong.ingest import ingest_library
from lienthong.registry import load_registry
from tests.conftest import ROOT, empty_warehouse



def _quarantining_rules() -> set[str]:
    """The generator's defects whose records are quarantined: severity error in the GX suites' JSON."""
    rules = set()
    for suite in (ROOT / "expectations").glob("*.json"):
        for expectation in json.loads(suite.read_text(encoding="utf-8")).get("expectations", []):
            if expectation.get("meta", {}).get("severity") == "error":
                rules.add(expectation["meta"].get("rule"))
    return rules & set(DEFECT_RULES)


QUARANTINING = _quarantining_rules()


def _ids_and_item_kinds(data: bytes):
    """(001, [952$y, ...]) of each ISO 2709 record, read from the bytes: both are ASCII in every encoding the
    generator writes, so no decoding (and none of the pipeline's code) is involved."""
    pos = 0
    while pos + 24 <= len(data):
        length = int(data[pos:pos + 5])  # walked by the leader's record length: legacy text may hold 0x1D bytes
        raw, pos = data[pos:pos + length], pos + length
        base = int(raw[12:17])
        directory = raw[24:base - 1]
        local_id, kinds = None, []
        for k in range(0, len(directory), 12):
            tag, length, start = directory[k:k + 3], int(directory[k + 3:k + 7]), int(directory[k + 7:k + 12])
            body = raw[base + start: base + start + length].rstrip(b"\x1e")
            if tag == b"001":
                local_id = body.decode("ascii")
            elif tag == b"952":
                kinds += [sub[1:].decode("ascii") for sub in body.split(b"\x1f")[1:] if sub[:1] == b"y"]
        yield local_id, kinds


def expected_from_truth(truth: dict) -> dict[str, dict]:
    """Per library, from the ground truth and the raw export read with pymarc (not the pipeline)."""
    out = {}
    for code, entry in truth["libraries"].items():
        quarantined = {local_id for rule in QUARANTINING for local_id in entry["defects"][rule]}
        complete = entry["complete_records"] - sum(len(entry["defects"][rule]) for rule in QUARANTINING
                                                   if rule not in INCOMPLETE_RULES)
        if not entry["file"].endswith(".mrc"):  # a spreadsheet register: counts from the ground truth alone
            out[code] = {"titles": entry["records"] - len(quarantined), "complete_titles": complete}
            if not quarantined:
                out[code]["copies"] = entry["items"]
            continue
        titles = Counter()
        copies = Counter()
        records = 0
        for local_id, kinds in _ids_and_item_kinds((config.drop_root() / entry["file"]).read_bytes()):
            if local_id in quarantined:
                continue
            records += 1
            titles[kinds[0] if kinds else "KHAC"] += 1
            copies.update(kinds)
        assert records == entry["records"] - len(quarantined)
        out[code] = {"titles": records, "copies": sum(copies.values()), "complete_titles": complete,
                     **{f"titles_{k.lower()}": titles[k] for k in ("SGK", "STK", "SNV", "TN")},
                     **{f"copies_{k.lower()}": copies[k] for k in ("SGK", "STK", "SNV", "TN")}}
    return out


@pytest.fixture(scope="module")
def province(warehouse_engine, demo_province, tmp_path_factory):
    """The sample province ingested library by library, and the current period's report written to files."""
    empty_warehouse(warehouse_engine)
    registry = load_registry()
    for code in demo_province["libraries"]:
        result = ingest_library(code, registry=registry, engine=warehouse_engine)
        assert result.status == "applied", result.to_dict()
    period = periods.current()
    built = report.build_report(period, engine=warehouse_engine, registry=registry)
    out = tmp_path_factory.mktemp("report")
    report.write_report(built, out)
    report.record_run(warehouse_engine, built, out)
    yield {"truth": demo_province, "report": built, "out": out, "registry": registry}
    empty_warehouse(warehouse_engine)


def test_library_figures_equal_the_ground_truth(province):
    built, truth = province["report"], province["truth"]
    expected = expected_from_truth(truth)
    rows = {row["key"]: row for row in built.levels["library"]}
    assert set(expected) <= set(rows)
    for code, figures in expected.items():
        for key, value in figures.items():
            assert rows[code][key] == value, (code, key, rows[code][key], value)
    # every registry library without an export is reported with nothing rather than left out
    for code in set(rows) - set(expected):
        assert rows[code]["titles"] == 0 and rows[code]["submission_vi"] == "Chưa nộp"
    # SGK + STK + SNV + TN covers every copy of the MARC exports: the demo's 952$y always carries the kind
    assert all(rows[code]["copies_other"] == 0 for code, e in expected.items() if "copies_sgk" in e)


def test_levels_add_up_to_the_province(province):
    built, truth = province["report"], province["truth"]
    expected = expected_from_truth(truth)
    library_rows = built.levels["library"]
    province_row = built.totals
    assert province_row["titles"] == sum(e["titles"] for e in expected.values())
    assert province_row["copies"] == sum(r["copies"] for r in library_rows)
    assert sum(r["copies"] for r in library_rows if "copies" in expected.get(r["key"], {})) == sum(
        e["copies"] for e in expected.values() if "copies" in e)
    assert sum("copies_sgk" in e for e in expected.values()) >= len(expected) - 5  # most exports are MARC
    assert province_row["complete_titles"] == sum(e["complete_titles"] for e in expected.values())
    assert province_row["libraries"] == len(library_rows)
    for level in ("district", "group"):
        assert built.levels[level], level
    districts = {row["name"]: row for row in built.levels["district"]}
    registry = province["registry"]
    by_district = Counter()
    for code, figures in expected.items():
        by_district[registry.libraries[code].admin_unit] += figures["titles"]
    for name, titles in by_district.items():
        assert districts[name]["titles"] == titles, name
    assert sum(d["titles"] for d in districts.values()) == province_row["titles"]
    # the former districts stay a dimension after their abolition (2025-07-01)
    assert "Lương Sơn" in districts and "Đà Bắc" in districts
    for group in registry.active_groups(built.period.end):
        row = next(r for r in built.levels["group"] if r["key"] == group.code)
        members = set(group.member_codes(built.period.end))
        assert row["titles"] == sum(expected[c]["titles"] for c in members if c in expected)
        assert row["lead_library"] == group.lead_library
    share = province_row["complete_titles"] / province_row["titles"]
    assert province_row["complete_share"] == round(share, 4)
    assert province_row["quality_tier"] == next(t for limit, t in report.TIERS if share >= limit)


def test_first_export_is_no_acquisition_and_submissions_are_on_time(province):
    built, truth = province["report"], province["truth"]
    rows = {row["key"]: row for row in built.levels["library"]}
    for code in truth["libraries"]:
        assert rows[code]["new_titles"] is None and rows[code]["new_copies"] is None  # baseline, not acquisitions
        assert rows[code]["submission_vi"] == "Đúng hạn"
    statuses = {s.library_code: s.status for s in built.submissions}
    assert {c for c, s in statuses.items() if s == "on_time"} == set(truth["libraries"])
    assert built.provisional is True  # the current period has not ended


def test_workbook_reads_in_vietnamese(province):
    built, out = province["report"], province["out"]
    path = out / f"bao-cao-{built.period.code.replace('/', '-')}.xlsx"
    workbook = load_workbook(path)
    assert workbook.sheetnames == ["Tỉnh", "Huyện (cũ)", "Nhóm liên thông", "Thư viện", "Tình hình nộp dữ liệu",
                                   "Ghi chú"]
    sheet = workbook["Thư viện"]
    assert sheet["A1"].value.startswith("Báo cáo liên thông thư viện — Sơ kết học kỳ I")
    headers = [c.value for c in sheet[4]]
    assert headers[:2] == ["Mã thư viện", "Tên thư viện"] and "Số đầu sách (biểu ghi)" in headers
    assert "Bản sách giáo khoa (SGK)" in headers and "Tỷ lệ biểu ghi đầy đủ" in headers
    code_col, titles_col = 0, headers.index("Số đầu sách (biểu ghi)")
    rows = {r[code_col].value: r for r in sheet.iter_rows(min_row=5)}
    expected = expected_from_truth(province["truth"])
    copies_col = headers.index("Số bản sách")
    for code, figures in expected.items():
        assert rows[code][titles_col].value == figures["titles"]
        assert rows[code][copies_col].value == figures.get("copies", rows[code][copies_col].value)
        assert rows[code][titles_col].number_format == "#,##0"
    names = {r[1].value for r in sheet.iter_rows(min_row=5)}
    assert "Trường THPT Chuyên Hoàng Văn Thụ" in names  # NFC Vietnamese survives the round trip
    assert sheet.freeze_panes == "C5"
    assert workbook["Tỉnh"].cell(5, 2).value == built.totals["name"]
    for ws in workbook.worksheets:
        for row in ws.iter_rows():
            assert all(cell.data_type != "f" for cell in row), ws.title


def test_csv_and_json_agree_with_the_workbook(province):
    built, out = province["report"], province["out"]
    stem = f"bao-cao-{built.period.code.replace('/', '-')}"
    with open(out / f"{stem}-district.csv", encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["Huyện (cũ)"] for r in rows} == {d["name"] for d in built.levels["district"]}
    assert sum(int(r["Số đầu sách (biểu ghi)"]) for r in rows) == built.totals["titles"]
    data = json.loads((out / f"{stem}.json").read_text(encoding="utf-8"))
    assert data["period"] == built.period.code and data["figures_sha256"] == built.figures_sha256()
    assert data["totals"]["copies"] == built.totals["copies"]
    assert sorted(Path(f).name for f in data["files"]) == sorted(p.name for p in out.iterdir())


def test_formula_injection_is_neutralised(province, warehouse_engine, tmp_path):
    built = province["report"]
    hostile = "=HYPERLINK(\"http://evil.example\",\"x\")"
    built.levels["library"][0]["name"] = hostile
    built.levels["library"][1]["name"] = "+cmd|' /C calc'!A0"
    try:
        report.write_report(built, tmp_path, ("library",))
    finally:
        for row in built.levels["library"][:2]:
            row["name"] = province["registry"].libraries[row["key"]].name
    stem = f"bao-cao-{built.period.code.replace('/', '-')}"
    sheet = load_workbook(tmp_path / f"{stem}.xlsx")["Thư viện"]
    cell = sheet.cell(5, 2)
    assert cell.value == hostile and cell.data_type == "s" and cell.quotePrefix
    with open(tmp_path / f"{stem}-library.csv", encoding="utf-8-sig", newline="") as handle:
        names = [r["Tên thư viện"] for r in csv.DictReader(handle)]
    assert names[0] == "'" + hostile and names[1].startswith("'+cmd")


def test_cli_report_json(province, tmp_path, capsys):
    from lienthong.cli import main

    code = main(["report", "--period", province["report"].period.code, "--level", "district", "--out",
                 str(tmp_path), "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert list(data["levels"]) == ["district"]
    assert data["totals"]["titles"] == province["report"].totals["titles"]
    assert data["figures_sha256"] == province["report"].figures_sha256()
    assert {Path(f).suffix for f in data["files"]} == {".xlsx", ".csv", ".html", ".json"}
    assert main(["report", "--period", "2026-2027/HK3", "--out", str(tmp_path)]) != 0


def test_quarantining_rules_are_read_from_the_suites():
    assert {"missing_title", "missing_accession_number", "missing_call_number"} <= QUARANTINING


# ---------------------------------------------------------------- the HTML in a real headless browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--no-first-run", "--virtual-time-budget=5000"]


def _png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and unfiltered RGBA/RGB rows of a PNG (8-bit, non-interlaced): enough to tell blank pages."""
    import struct
    import zlib

    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and color in (2, 6)
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows, previous = [], bytearray(stride)
    for y in range(height):
        line = raw[y * (stride + 1):(y + 1) * (stride + 1)]
        kind, row = line[0], bytearray(line[1:])
        for x in range(stride):
            left = row[x - channels] if x >= channels else 0
            up, up_left = previous[x], previous[x - channels] if x >= channels else 0
            if kind == 1:
                row[x] = (row[x] + left) & 0xFF
            elif kind == 2:
                row[x] = (row[x] + up) & 0xFF
            elif kind == 3:
                row[x] = (row[x] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - up_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                row[x] = (row[x] + (left if pa <= pb and pa <= pc else up if pb <= pc else up_left)) & 0xFF
        rows.append(bytes(row))
        previous = row
    return width, height, [r[i:i + 3] for r in rows[::8] for i in range(0, len(r), channels * 8)]


def test_html_renders_its_charts_in_headless_chromium(province, tmp_path):
    import re
    import subprocess

    assert Path(CHROMIUM).exists(), "Debian's chromium is needed (.ci/run installs it)"
    built = province["report"]
    page = province["out"] / f"bao-cao-{built.period.code.replace('/', '-')}.html"
    text = page.read_text(encoding="utf-8")
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in text
    url = page.resolve().as_uri()
    dom = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    charts = re.findall(r'<svg class="chart" id="([a-z-]+)"[^>]*data-rendered="(\d+)"', dom)
    assert [c for c, _ in charts] == ["chart-holdings", "chart-kinds", "chart-complete", "chart-submissions"]
    districts = len(built.levels["district"])
    bars = dict(charts)
    assert int(bars["chart-holdings"]) == 2 * districts  # titles and copies of every former district
    assert int(bars["chart-kinds"]) >= districts
    assert f"charts=4 drawn=4" in dom
    assert "Đầu sách và bản sách theo huyện (cũ)" in dom and "Lương Sơn" in dom

    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,1600",
                    f"--screenshot={shot}", url], capture_output=True, timeout=120, check=True)
    width, height, samples = _png_pixels(shot.read_bytes())
    assert (width, height) == (1200, 1600)
    colours = set(samples)
    assert len(colours) > 20  # text, bars in several colours: not a blank page
    assert any(abs(c[0] - 0x1F) < 8 and abs(c[1] - 0x77) < 8 and abs(c[2] - 0xB4) < 8 for c in colours)  # bars


def test_current_period_report_for_make_demo(province, tmp_path):
    result = report.current_period_report(tmp_path)
    assert result["period"] == periods.current().code
    assert Path(result["html"]).is_file() and Path(result["html"]).suffix == ".html"
    assert result["titles"] == province["report"].totals["titles"]
    assert result["submissions"]["on_time"] == len(province["truth"]["libraries"])

