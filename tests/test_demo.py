"""demo.py: the sample province's exports are real MARC files whose injected defects match the ground truth.

Some exports are in legacy encodings (TCVN3, VNI, Windows-1258, NFD) as real school software writes them, so
files are read back with lienthong's own parser (pymarc would mis-decode them) and checked for their bytes.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import unicodedata
from collections import Counter
from pathlib import Path

import pytest
from stdnum import isbn as stdisbn
from stdnum.exceptions import InvalidChecksum

from lienthong.demo import (
    DEFECT_RULES,
    EXPORT_ENCODINGS,
    INCOMPLETE_RULES,
    RECORDS_BY_TYPE,
    LibrarySpec,
    export_date,
    export_encoding,
    generate_province,
    legacy_text,
    records_for,
)
from lienthong.parse import ParsedRecord
from lienthong.parse import read_records as parse_records
from lienthong.vietnamese import decode_legacy, detect_vietnamese_encoding

DISTRICTS = {
    "TPHOABINH": "thành phố Hòa Bình", "LUONGSON": "huyện Lương Sơn", "KIMBOI": "huyện Kim Bôi",
    "CAOPHONG": "huyện Cao Phong", "TANLAC": "huyện Tân Lạc", "MAICHAU": "huyện Mai Châu",
    "LACSON": "huyện Lạc Sơn", "YENTHUY": "huyện Yên Thủy", "LACTHUY": "huyện Lạc Thủy", "DABAC": "huyện Đà Bắc",
}
VIETNAMESE_LETTERS = set("ăâđêôơưĂÂĐÊÔƠƯàảãáạằẳẵắặầẩẫấậèẻẽéẹềểễếệìỉĩíịòỏõóọồổỗốộờởỡớợùủũúụừửữứựỳỷỹýỵ")


def province_specs(drop_root: Path) -> list[LibrarySpec]:
    """A province of 82 libraries: the provincial library and boarding school, then per district a public
    library and seven schools from kindergarten to upper secondary."""
    rows = [("TV-TINH", "provincial library", "Thư viện tỉnh Hòa Bình"),
            ("PTDTNT-TINH", "PTDTNT THCS&THPT", "Trường PTDTNT THCS và THPT tỉnh Hòa Bình")]
    for slug, district in DISTRICTS.items():
        rows += [
            (f"TV-{slug}", "district library", f"Thư viện {district}"),
            (f"THPT-{slug}", "THPT", f"Trường THPT {district}"),
            (f"PTDTNT-{slug}", "PTDTNT THCS", f"Trường PTDTNT THCS {district}"),
            (f"THCS-{slug}", "THCS", f"Trường THCS thị trấn, {district}"),
            (f"THTHCS-{slug}", "TH&THCS", f"Trường TH&THCS xã, {district}"),
            (f"TH1-{slug}", "TH", f"Trường Tiểu học số 1, {district}"),
            (f"TH2-{slug}", "TH", f"Trường Tiểu học số 2, {district}"),
            (f"MN-{slug}", "MN", f"Trường Mầm non Hoa Ban, {district}"),
        ]
    return [LibrarySpec(code=code, type=kind, name=name, drop_folder=drop_root / code) for code, kind, name in rows]


def one_of_each(drop_root: Path) -> list[LibrarySpec]:
    return [LibrarySpec(code=f"LIB-{i}", type=kind, name=kind, drop_folder=drop_root / f"LIB-{i}")
            for i, kind in enumerate(RECORDS_BY_TYPE)]


def read_records(path: Path) -> list:
    results = list(parse_records(path))
    assert all(isinstance(result, ParsedRecord) for result in results), f"{path}: unreadable record"
    return [result.record for result in results]


def subfields(record, tags: tuple[str, ...], code: str) -> list[str]:
    return [value for field in record.get_fields(*tags) for value in field.get_subfields(code) if value.strip()]


def elements(record) -> dict[str, bool]:
    """Which of the seven mandatory elements the record has, read straight from the MARC fields."""
    publication = [f for f in record.get_fields("260", "264")
                   if all(f.get_subfields(code) for code in ("a", "b", "c"))]
    return {
        "missing_title": bool(subfields(record, ("245",), "a")),
        "missing_author": bool(subfields(record, ("100", "110", "111", "700", "710"), "a")),
        "missing_publication": bool(publication),
        "missing_keywords": bool(subfields(record, ("653",), "a")),
        "missing_subject": bool(subfields(record, ("650",), "a")),
        "missing_accession_number": bool(subfields(record, ("952",), "p")),
        "missing_call_number": bool(subfields(record, ("082",), "a") or subfields(record, ("952",), "o")),
    }


@pytest.fixture(scope="module")
def province(tmp_path_factory):
    """The ~80-library province at scale 1 with the default seed: (out_root, ground truth, records by code)."""
    root = tmp_path_factory.mktemp("province")
    truth = generate_province(province_specs(root / "drop"), root)
    records = {code: read_records(root / entry["file"]) for code, entry in truth["libraries"].items()}
    return root, truth, records


def test_counts_by_library_type(province):
    root, truth, records = province
    specs = {spec.code: spec for spec in province_specs(root / "drop")}
    assert list(truth["libraries"]) == list(specs)
    assert truth["seed"] == 20261125 and truth["scale"] == 1.0 and truth["export_date"] == "2026-11-25"
    for code, entry in truth["libraries"].items():
        assert entry["records"] == RECORDS_BY_TYPE[specs[code].type] == len(records[code])
        assert entry["file"] == f"drop/{code}/{code}-20261125.mrc"
        assert entry["records"] <= entry["items"] + len(entry["defects"]["missing_accession_number"])
        assert entry["items"] <= 4 * entry["records"]
    totals = truth["totals"]
    assert totals["records"] == sum(e["records"] for e in truth["libraries"].values())
    assert totals["items"] == sum(e["items"] for e in truth["libraries"].values())
    assert totals["defects"] == {rule: sum(len(e["defects"][rule]) for e in truth["libraries"].values())
                                 for rule in DEFECT_RULES}
    assert 7000 <= totals["records"] <= 8000
    assert json.loads((root / "ground_truth.json").read_text(encoding="utf-8")) == truth


def test_byte_identical_across_runs(province, tmp_path):
    root, truth, _ = province
    again = generate_province(province_specs(tmp_path / "drop"), tmp_path)
    assert again == truth
    assert (tmp_path / "ground_truth.json").read_bytes() == (root / "ground_truth.json").read_bytes()
    for code, entry in truth["libraries"].items():
        data = (root / entry["file"]).read_bytes()
        assert data == (tmp_path / entry["file"]).read_bytes(), code
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], code


def test_byte_identical_in_a_fresh_process_with_another_hash_seed(province, tmp_path):
    """The pool is cached per process: a new interpreter (with other str hashing) must give the same bytes."""
    root, truth, _ = province
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "sys.path.insert(0, sys.argv[2])\n"
        "from test_demo import province_specs\n"
        "from lienthong.demo import generate_province\n"
        "out = Path(sys.argv[1])\n"
        "specs = [s for s in province_specs(out / 'drop') if s.code.endswith('DABAC') or s.code.endswith('TINH')]\n"
        "generate_province(specs, out)\n"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")
    subprocess.run([sys.executable, "-c", script, str(tmp_path), str(Path(__file__).parent)], check=True, env=env)
    fresh = json.loads((tmp_path / "ground_truth.json").read_text(encoding="utf-8"))
    assert len(fresh["libraries"]) == 10
    for code, entry in fresh["libraries"].items():
        assert entry == truth["libraries"][code]
        assert (tmp_path / entry["file"]).read_bytes() == (root / entry["file"]).read_bytes()


def test_a_library_does_not_depend_on_the_others(province, tmp_path):
    root, truth, _ = province
    subset = [spec for spec in province_specs(tmp_path / "drop") if "LACSON" in spec.code][::-1]
    alone = generate_province(subset, tmp_path)
    assert set(alone["libraries"]) == {spec.code for spec in subset}
    for code, entry in alone["libraries"].items():
        assert entry == truth["libraries"][code]


def test_seed_changes_the_sample_and_the_date(tmp_path):
    specs = one_of_each(tmp_path / "a" / "drop")[:3]
    first = generate_province(specs, tmp_path / "a", scale=0.5, seed=1)
    other = generate_province(one_of_each(tmp_path / "b" / "drop")[:3], tmp_path / "b", scale=0.5, seed=2)
    assert first["export_date"] != other["export_date"]
    assert all(first["libraries"][code]["sha256"] != other["libraries"][code]["sha256"] for code in first["libraries"])
    assert export_date(20261125).isoformat() == "2026-11-25"
    assert export_date(1) == export_date(1) and 2025 <= export_date(1).year <= 2029


def test_files_read_back_with_manifest_counts(province):
    root, truth, records = province
    for code, entry in truth["libraries"].items():
        assert len(records[code]) == entry["records"]
        assert sum(len(r.get_fields("952")) for r in records[code]) == entry["items"]
        local_ids = [r["001"].data for r in records[code]]
        assert len(set(local_ids)) == len(local_ids), code
        for record in records[code]:
            assert record.leader[9] == export_encoding(code)[1]
            assert len(record["008"].data) == 40
            assert record["008"].data[35:38] == "vie"
            assert subfields(record, ("041",), "a") == ["vie"]
            items = record.get_fields("952")
            assert len(items) <= 4
            for item in items:
                assert item.get_subfields("a") == [code] and item.get_subfields("b") == [code]
                (kind,) = item.get_subfields("y")
                assert kind in {"SGK", "STK", "SNV", "TN"}
                assert item.get_subfields("8")
                for accession in item.get_subfields("p"):
                    assert re.fullmatch(rf"{kind}\.\d{{6}}", accession), accession
                for call_number in item.get_subfields("o"):
                    assert call_number == " ".join(record["082"].get_subfields("a", "b"))


def test_text_is_vietnamese_in_the_encoding_the_manifest_names(province):
    root, truth, records = province
    for code, entry in truth["libraries"].items():
        data = (root / entry["file"]).read_bytes()
        assert entry["encoding"] == export_encoding(code)[0], code
        if entry["encoding"] == "utf-8":
            text = data.decode("utf-8")
            assert unicodedata.is_normalized("NFC", text), code
        elif entry["encoding"] == "utf-8-nfd":
            text = data.decode("utf-8")
            assert not unicodedata.is_normalized("NFC", text), code
            assert unicodedata.is_normalized("NFD", text), code
        else:
            with pytest.raises(UnicodeDecodeError):
                data.decode("utf-8")
            text = decode_legacy(data, entry["encoding"])
        assert VIETNAMESE_LETTERS & set(unicodedata.normalize("NFC", text)), code
        detected, confidence = detect_vietnamese_encoding(data)
        assert detected == entry["encoding"] and confidence >= 0.5, (code, detected, confidence)
    used = Counter(entry["encoding"] for entry in truth["libraries"].values())
    assert {name for name, _ in EXPORT_ENCODINGS} <= set(used) and used["utf-8"] > len(truth["libraries"]) / 2
    titles = Counter(f["a"].rstrip(" /:.") for recs in records.values() for r in recs for f in r.get_fields("245"))
    assert titles["Hà Nội"] == 0 and not any("Hæ" in title for title in titles)
    for expected in ("Toán 10", "Ngữ văn 11", "Tiếng Việt 3", "Từ điển tiếng Việt", "Dế mèn phiêu lưu ký",
                     "Tôi thấy hoa vàng trên cỏ xanh", "Số đỏ", "Truyện Kiều", "Nhật ký trong tù"):
        assert titles[expected] > 0, expected
    authors = {a for recs in records.values() for r in recs for a in subfields(r, ("100",), "a")}
    assert {"Nguyễn, Nhật Ánh", "Nguyễn Nhật Ánh", "Tô Hoài"} <= authors
    publishers = {p.rstrip(",") for recs in records.values() for r in recs for p in subfields(r, ("260", "264"), "b")}
    assert {"Nxb. Giáo dục Việt Nam", "Nxb. Kim Đồng", "Nxb. Trẻ", "Nxb. Văn học"} <= publishers


def test_injected_defects_are_in_the_files(province):
    root, truth, records = province
    for code, entry in truth["libraries"].items():
        by_id = {r["001"].data: r for r in records[code]}
        listed = [local_id for ids in entry["defects"].values() for local_id in ids]
        assert len(listed) == len(set(listed)), f"{code}: a record carries two defects"
        assert set(listed) <= set(by_id)
        assert records[code][0]["001"].data not in listed
        for rule in INCOMPLETE_RULES:
            for local_id in entry["defects"][rule]:
                present = elements(by_id[local_id])
                assert not present[rule], (code, local_id, rule)
                assert all(ok for other, ok in present.items() if other != rule), (code, local_id, rule)
        for local_id in entry["defects"]["missing_publication"]:
            assert not by_id[local_id].get_fields("260", "264")
            assert by_id[local_id]["008"].data[6:11] == "nuuuu"  # no year to fall back on either
        for local_id in entry["defects"]["missing_author"]:
            assert not by_id[local_id].get_fields("100", "110", "111", "700", "710")
        for local_id in entry["defects"]["missing_call_number"]:
            assert not by_id[local_id].get_fields("082") and not subfields(by_id[local_id], ("952",), "o")
        complete = [r for local_id, r in by_id.items()
                    if not any(local_id in entry["defects"][rule] for rule in INCOMPLETE_RULES)]
        assert len(complete) == entry["complete_records"]
        for record in complete:
            assert all(elements(record).values()), (code, record["001"].data)
    totals = truth["totals"]
    assert all(totals["defects"][rule] >= 20 for rule in DEFECT_RULES), totals["defects"]
    assert 0.04 <= sum(totals["defects"].values()) / totals["records"] <= 0.08
    assert totals["complete_records"] == totals["records"] - sum(totals["defects"][r] for r in INCOMPLETE_RULES)


def test_isbns_valid_except_the_injected_bad_checksums(province):
    root, truth, records = province
    with_isbn = 0
    for code, entry in truth["libraries"].items():
        bad = set(entry["defects"]["bad_isbn_checksum"])
        for record in records[code]:
            numbers = subfields(record, ("020",), "a")
            with_isbn += bool(numbers)
            for number in numbers:
                assert stdisbn.compact(number).startswith("978604"), number
                if record["001"].data in bad:
                    with pytest.raises(InvalidChecksum):
                        stdisbn.validate(number)
                else:
                    assert stdisbn.is_valid(number), (code, record["001"].data, number)
            if record["001"].data in bad:
                assert len(numbers) == 1
    assert with_isbn / truth["totals"]["records"] > 0.8


def test_accession_numbers_unique_except_injected_duplicates(province):
    root, truth, records = province
    for code, entry in truth["libraries"].items():
        duplicates = set(entry["defects"]["duplicate_accession_number"])
        first_owner: dict[str, str] = {}
        reused = set()
        for record in records[code]:
            local_id = record["001"].data
            for accession in subfields(record, ("952",), "p"):
                if accession in first_owner:
                    assert local_id in duplicates, (code, local_id, accession)
                    assert first_owner[accession] != local_id
                    reused.add(local_id)
                else:
                    first_owner[accession] = local_id
        assert reused == duplicates, code


def test_same_editions_appear_in_several_libraries(province):
    root, truth, records = province
    holders: dict[str, set[str]] = {}
    for code, recs in records.items():
        for record in recs:
            for number in subfields(record, ("020",), "a"):
                holders.setdefault(stdisbn.compact(number), set()).add(code)
    shared = [isbn for isbn, codes in holders.items() if len(codes) >= 3]
    assert len(shared) > 200
    assert max(len(codes) for codes in holders.values()) >= 10


@pytest.mark.parametrize("scale", [0.001, 0.5, 2.0])
def test_scale_changes_the_counts(tmp_path, scale):
    specs = one_of_each(tmp_path / "drop")
    truth = generate_province(specs, tmp_path, scale=scale)
    for spec in specs:
        entry = truth["libraries"][spec.code]
        assert entry["records"] == records_for(spec.type, scale) == max(1, round(RECORDS_BY_TYPE[spec.type] * scale))
        assert len(read_records(tmp_path / entry["file"])) == entry["records"]
    assert truth["totals"]["records"] == sum(max(1, round(n * scale)) for n in RECORDS_BY_TYPE.values())
    if scale < 0.01:
        assert truth["totals"]["records"] == len(specs)
        assert sum(truth["totals"]["defects"].values()) == 0


def test_unchanged_export_keeps_its_mtime(tmp_path):
    specs = one_of_each(tmp_path / "drop")[:2]
    truth = generate_province(specs, tmp_path, scale=0.3)
    path = tmp_path / truth["libraries"][specs[0].code]["file"]
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    assert generate_province(specs, tmp_path, scale=0.3) == truth
    assert path.stat().st_mtime_ns == 1_000_000_000
    assert not list(tmp_path.rglob("*.part"))
    generate_province(specs, tmp_path, scale=0.4)  # a different export replaces it
    assert path.stat().st_mtime_ns != 1_000_000_000


def test_extra_copies_give_the_issues_three_copies_per_record(tmp_path):
    """make bench-province adds one copy to each record: 1 M records then carry about 3 M copies."""
    spec = [LibrarySpec("TV-X", "provincial library", "x", tmp_path / "drop" / "TV-X")]
    plain = generate_province(spec, tmp_path / "plain", scale=0.2)["libraries"]["TV-X"]
    more = generate_province(spec, tmp_path / "more", scale=0.2, extra_copies=1)
    entry = more["libraries"]["TV-X"]
    assert more["extra_copies"] == 1 and entry["records"] == plain["records"]
    assert 2.8 < entry["items"] / entry["records"] < 3.2 and 1.8 < plain["items"] / plain["records"] < 2.2
    copies = [len(record.get_fields("952")) for record in read_records(tmp_path / "more" / entry["file"])]
    assert sum(copies) == entry["items"] and max(copies) == 5
    assert "circulation" in more
    bare = generate_province(spec, tmp_path / "bare", scale=0.2, circulation=False)
    assert "circulation" not in bare and bare["libraries"]["TV-X"]["sha256"] == plain["sha256"]


def test_bad_input_is_refused(tmp_path):
    spec = LibrarySpec("X", "THPT", "x", tmp_path / "X")
    with pytest.raises(ValueError, match="duplicate"):
        generate_province([spec, spec], tmp_path)
    with pytest.raises(ValueError, match="unknown library type"):
        generate_province([LibrarySpec("Y", "university", "y", tmp_path / "Y")], tmp_path)
    with pytest.raises(ValueError, match="scale"):
        generate_province([spec], tmp_path, scale=0)
    with pytest.raises(ValueError, match="extra_copies"):
        generate_province([spec], tmp_path, extra_copies=-1)
    assert records_for("Thư viện huyện") == RECORDS_BY_TYPE["district library"]
    assert records_for("PTDTNT THCS & THPT") == RECORDS_BY_TYPE["PTDTNT THCS&THPT"]


def test_exports_of_another_seed_are_removed(tmp_path):
    spec = LibrarySpec(code="THPT-STALE", type="THPT", name="THPT Stale", drop_folder=tmp_path / "THPT-STALE")
    spec.drop_folder.mkdir(parents=True)
    stale = spec.drop_folder / "THPT-STALE-20250108.mrc"
    stale.write_bytes(b"old")
    foreign = spec.drop_folder / "export-from-the-library.mrc"
    foreign.write_bytes(b"keep")
    truth = generate_province([spec], tmp_path, scale=0.1, seed=20261125)
    assert not stale.exists()
    assert foreign.exists()
    assert (tmp_path / truth["libraries"]["THPT-STALE"]["file"]).is_file()
