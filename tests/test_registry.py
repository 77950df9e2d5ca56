"""Registry: the packaged province data follows the guidance, and every kind of mistake is reported with its line."""
from __future__ import annotations

import json
import pickle
import sys
import unicodedata
from datetime import date
from pathlib import Path

import pytest

try:
    import lienthong  # noqa: F401
except ImportError:  # not installed: run against the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "include"))

from lienthong.registry import (  # noqa: E402
    PACKAGED_REGISTRY,
    REGISTRY_ENV,
    Registry,
    RegistryError,
    load_registry,
)

# §V.1 of the guidance: the lead school of each district's THPT/PTDTNT group.
LEADS = {
    "Thành phố Hòa Bình": "Trường THPT Chuyên Hoàng Văn Thụ",
    "Lương Sơn": "Trường THPT Lương Sơn",
    "Đà Bắc": "Trường THPT Đà Bắc",
    "Cao Phong": "Trường THPT Cao Phong",
    "Kim Bôi": "Trường THPT Kim Bôi",
    "Lạc Thủy": "Trường THPT Lạc Thủy",
    "Tân Lạc": "Trường THPT Tân Lạc",
    "Mai Châu": "Trường THPT Mai Châu",
    "Lạc Sơn": "Trường THPT Lạc Sơn",
    "Yên Thủy": "Trường THPT Yên Thủy",
}
UPPER_SECONDARY = {"THPT", "PTDTNT THCS", "PTDTNT THCS&THPT"}
LOWER_LEVELS = {"MN", "TH", "TH&THCS", "THCS"}
START = date(2023, 9, 5)


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_registry(PACKAGED_REGISTRY)


# ---------------------------------------------------------------- the packaged registry

def test_packaged_registry_is_the_default(monkeypatch):
    monkeypatch.delenv(REGISTRY_ENV, raising=False)
    loaded = load_registry()
    assert loaded.path == PACKAGED_REGISTRY
    assert PACKAGED_REGISTRY.name == "registry.yaml" and PACKAGED_REGISTRY.parent.name == "data"
    assert 70 <= len(loaded.libraries) <= 90


def test_environment_variable_selects_the_file(monkeypatch, tmp_path):
    path = tmp_path / "other.yaml"
    path.write_text(MINIMAL, encoding="utf-8")
    monkeypatch.setenv(REGISTRY_ENV, str(path))
    loaded = load_registry()
    assert loaded.path == path
    assert list(loaded.libraries) == ["THPT-LS", "THPT-NT"]


def test_ten_thpt_groups_with_the_leads_of_the_guidance(registry):
    thpt_groups = [g for g in registry.groups.values()
                   if all(registry.libraries[m.library].type in UPPER_SECONDARY for m in g.members)]
    assert len(thpt_groups) == 10
    leads = {}
    for group in thpt_groups:
        lead = registry.libraries[group.lead_library]
        assert group.linking_mode == "same_function"
        assert group.valid_from == START and not group.sample
        assert lead.type == "THPT" and not lead.sample
        assert 2 <= len(group.members) <= 4, group.code
        assert {registry.libraries[m.library].admin_unit for m in group.members} == {lead.admin_unit}
        assert all(m.valid_from == START for m in group.members)
        leads[lead.admin_unit] = lead.name
    assert leads == LEADS
    # every other THPT/PTDTNT school is an invention and says so
    lead_codes = {g.lead_library for g in thpt_groups}
    others = [lib for lib in registry.libraries.values() if lib.type in UPPER_SECONDARY and lib.code not in lead_codes]
    assert others and all(lib.sample for lib in others)


def test_every_district_has_a_kindergarten_primary_lower_secondary_group(registry):
    districts = [u.name for u in registry.administrative_units.values() if u.level == "district"]
    assert sorted(districts) == sorted(LEADS)
    for district in districts:
        groups = [g for g in registry.groups.values()
                  if g.linking_mode == "geographic"
                  and all(registry.libraries[m.library].type in LOWER_LEVELS
                          and registry.libraries[m.library].admin_unit == district for m in g.members)]
        assert groups, district
        for group in groups:
            assert group.sample
            assert 3 <= len(group.member_codes(START)) <= 4, group.code
            assert group.lead_library in group.member_codes(START)
            assert all(registry.libraries[m.library].sample for m in group.members)


def test_provincial_and_district_libraries(registry):
    provincial = [lib for lib in registry.libraries.values() if lib.type == "provincial library"]
    assert [lib.name for lib in provincial] == ["Thư viện tỉnh Hòa Bình"]
    district_libs = [lib for lib in registry.libraries.values() if lib.type == "district library"]
    assert len(district_libs) == 10
    assert {lib.admin_unit for lib in district_libs} == set(LEADS)
    assert "Thư viện huyện Lương Sơn" in {lib.name for lib in district_libs}
    assert "Thư viện thành phố Hòa Bình" in {lib.name for lib in district_libs}
    assert not any(lib.sample for lib in provincial + district_libs)
    with_public = [g for g in registry.groups.values() if g.linking_mode == "with_public_library"]
    assert with_public and with_public[0].lead_library == "TV-TINH"


def test_administrative_units_record_the_2025_reform(registry):
    units = registry.administrative_units
    districts = [u for u in units.values() if u.level == "district"]
    assert len(districts) == 10
    assert all(u.valid_to == date(2025, 6, 30) and u.parent == "HB" for u in districts)
    assert units["HB"].level == "province" and units["HB"].valid_to == date(2025, 6, 30)
    assert units["PT"].name == "Phú Thọ" and units["PT"].valid_from == date(2025, 7, 1)
    assert units["HB"].active_on(date(2025, 6, 30)) and not units["HB"].active_on(date(2025, 7, 1))
    assert units["PT"].active_on(date(2025, 7, 1)) and not units["PT"].active_on(date(2025, 6, 30))


def test_codes_names_and_defaults(registry):
    for lib in registry.libraries.values():
        assert unicodedata.is_normalized("NFC", lib.name)
        assert lib.source.location == lib.code  # the drop folder convention of docs/architecture.md
        assert lib.lending_policy.loan_days > 0 and lib.lending_policy.max_items > 0
    tinh = registry.libraries["TV-TINH"]
    assert (tinh.lending_policy.loan_days, tinh.lending_policy.max_items) == (15, 5)
    school = registry.libraries["THPT-LUONGSON"]
    assert (school.lending_policy.loan_days, school.lending_policy.max_items) == (14, 3)
    assert (school.source.transport, school.source.format, school.source.item_field, school.source.schedule) == (
        "local", "auto", "952", "@daily")
    assert school.call_number_scheme == "DDC" and school.call_number_pattern is None
    assert registry.libraries["MN-HOAMAI-HB"].type == "MN"


def test_to_dict_is_json_safe(registry):
    data = registry.to_dict()
    text = json.dumps(data, ensure_ascii=False)
    assert json.loads(text) == data
    assert set(data) == {"libraries", "groups", "administrative_units"}
    assert [lib["code"] for lib in data["libraries"]] == list(registry.libraries)
    assert all("code" in entry for part in data.values() for entry in part)
    group = data["groups"][0]
    assert {"code", "lead_library", "members", "linking_mode", "valid_from"} <= set(group)
    assert group["members"][0] == {"library": group["lead_library"], "valid_from": "2023-09-05", "valid_to": None}
    assert data["libraries"][0]["source"]["item_field"] == "952"


def test_active_libraries_respect_valid_to(registry):
    before = {lib.code for lib in registry.active_libraries(date(2024, 8, 31))}
    after = {lib.code for lib in registry.active_libraries(date(2024, 9, 1))}
    assert {"TH-TULY-DB", "THCS-TULY-DB"} <= before and "THTHCS-TULY-DB" not in before
    assert "THTHCS-TULY-DB" in after and not {"TH-TULY-DB", "THCS-TULY-DB"} & after
    assert registry.active_libraries(date(2023, 9, 4)) == []
    today = {lib.code for lib in registry.active_libraries()}
    assert "TH-TULY-DB" not in today and "THPT-CHVT" in today
    assert [lib.code for lib in registry.active_libraries(date(2024, 1, 1))] == [
        code for code in registry.libraries if code != "THTHCS-TULY-DB"]  # file order


def test_groups_of(registry):
    assert {g.code for g in registry.groups_of("THPT-CHVT", date(2024, 1, 1))} == {"NLT-THPT-TPHB", "NLT-TVTINH"}
    assert [g.code for g in registry.groups_of("TH-TULY-DB", date(2024, 8, 31))] == ["NLT-MNTHCS-DABAC"]
    assert registry.groups_of("TH-TULY-DB", date(2024, 9, 1)) == []
    assert [g.code for g in registry.groups_of("THTHCS-TULY-DB", date(2024, 9, 1))] == ["NLT-MNTHCS-DABAC"]
    assert registry.groups_of("THPT-CHVT", date(2023, 9, 4)) == []
    assert registry.groups_of("TV-LUONGSON", date(2024, 1, 1)) == []
    with pytest.raises(KeyError):
        registry.groups_of("THPT-XX")


# ---------------------------------------------------------------- broken registries

MINIMAL = """\
administrative_units:
  - {code: HB, name: Hòa Bình, level: province, valid_from: 1991-10-01}
  - {code: HB-LS, name: Lương Sơn, level: district, parent: HB, valid_from: 2020-02-01, valid_to: 2025-06-30}
libraries:
  - code: THPT-LS
    name: Trường THPT Lương Sơn
    type: THPT
    admin_unit: Lương Sơn
    valid_from: 2023-09-05
  - code: THPT-NT
    name: Trường THPT Nguyễn Trãi
    type: THPT
    admin_unit: Lương Sơn
    valid_from: 2023-09-05
    valid_to: 2024-05-31
groups:
  - code: NLT-LS
    name: Nhóm liên thông Lương Sơn
    linking_mode: same_function
    lead_library: THPT-LS
    valid_from: 2023-09-05
    members:
      - {library: THPT-LS, valid_from: 2023-09-05}
      - {library: THPT-NT, valid_from: 2023-09-05, valid_to: 2024-05-31}
"""
FIRST_LIBRARY_END = "    valid_from: 2023-09-05\n  - code: THPT-NT"  # to add keys to the first library (line 10)


def _write(tmp_path: Path, text: str, name: str = "broken.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _replace(old: str, new: str):
    def change(text: str) -> str:
        assert old in text, old
        return text.replace(old, new, 1)
    return change


def _add_to_first_library(line: str):
    return _replace(FIRST_LIBRARY_END, f"    valid_from: 2023-09-05\n    {line}\n  - code: THPT-NT")


BROKEN = {  # name: (change, line, key path, words of the message)
    "unknown lead": (_replace("lead_library: THPT-LS", "lead_library: THPT-XX"),
                     20, "groups[0].lead_library", "'THPT-XX' is not a library code"),
    "lead not a member": (_replace("      - {library: THPT-LS, valid_from: 2023-09-05}\n", ""),
                          20, "groups[0].lead_library", "not among the group's members"),
    "duplicate code": (_replace("code: THPT-NT", "code: THPT-LS"),
                       10, "libraries[1].code", "duplicate library code 'THPT-LS' (first at line 5)"),
    "bad type": (_replace("type: THPT", "type: High school"),
                 7, "libraries[0].type", "'High school' is not one of"),
    "bad date": (_replace("valid_from: 2023-09-05", "valid_from: 2023-02-30"),
                 9, "libraries[0].valid_from", "'2023-02-30' is not a valid date"),
    "not a date": (_replace("valid_from: 2023-09-05", "valid_from: 5/9/2023"),
                   9, "libraries[0].valid_from", "is not a valid date (write YYYY-MM-DD)"),
    "period reversed": (_replace("    valid_to: 2024-05-31\n", "    valid_to: 2022-05-31\n"),
                        15, "libraries[1].valid_to", "2022-05-31 is before valid_from 2023-09-05"),
    "unknown key": (_replace("    lead_library: THPT-LS", "    lead_libary: THPT-LS"),
                    20, "groups[0].lead_libary", "unknown key (did you mean 'lead_library'?)"),
    "missing key": (_replace("    admin_unit: Lương Sơn\n    valid_from: 2023-09-05\n  - code: THPT-NT",
                             "    valid_from: 2023-09-05\n  - code: THPT-NT"),
                    5, "libraries[0].admin_unit", "is required"),
    "duplicate key": (_replace("    type: THPT\n", "    type: THPT\n    type: THCS\n"),
                      8, "libraries[0].type", "duplicate key 'type'"),
    "bad code": (_replace("code: NLT-LS", "code: nlt ls"),
                 17, "groups[0].code", "'nlt ls' is not a valid code"),
    "unknown admin unit": (_replace("admin_unit: Lương Sơn", "admin_unit: Luong Son"),
                           8, "libraries[0].admin_unit", "did you mean 'Lương Sơn'?"),
    "unknown member": (_replace("{library: THPT-NT,", "{library: THPT-NX,"),
                       24, "groups[0].members[1].library", "'THPT-NX' is not a library code"),
    "membership outside library": (_replace("{library: THPT-NT, valid_from: 2023-09-05, valid_to: 2024-05-31}",
                                            "{library: THPT-NT, valid_from: 2023-09-05}"),
                                   24, "groups[0].members[1]", "outside the validity of library THPT-NT"),
    "bad linking mode": (_replace("linking_mode: same_function", "linking_mode: by_district"),
                         19, "groups[0].linking_mode", "'by_district' is not one of"),
    "zero loan days": (_add_to_first_library("lending_policy: {loan_days: 0}"),
                       10, "libraries[0].lending_policy.loan_days", "must be a whole number above 0"),
    "bad schedule": (_add_to_first_library("source: {schedule: '0 25 * * *'}"),
                     10, "libraries[0].source.schedule", "hour field '25'"),
    "bad preset": (_add_to_first_library("source: {schedule: '@dayly'}"),
                   10, "libraries[0].source.schedule", "did you mean '@daily'?"),
    "bad regex": (_add_to_first_library("call_number_scheme: 'pattern:[0-9'"),
                  10, "libraries[0].call_number_scheme", "does not compile"),
    "bad transport": (_add_to_first_library("source: {transport: ftp}"),
                      10, "libraries[0].source.transport", "'ftp' is not one of: local, http, sftp, oai-pmh"),
    "bad encoding": (_add_to_first_library("source: {encoding: tcvn-3}"),
                     10, "libraries[0].source.encoding", "unknown encoding 'tcvn-3'"),
    "control field for items": (_add_to_first_library("source: {item_field: '008'}"),
                                10, "libraries[0].source.item_field", "not a MARC data field tag"),
    "drop folder escapes": (_add_to_first_library("source: {location: ../THPT-NT}"),
                            10, "libraries[0].source.location", "must be a folder inside the drop root"),
    "remote without location": (_add_to_first_library("source: {transport: oai-pmh}"),
                                10, "libraries[0].source.location", "is required for transport 'oai-pmh'"),
    "sample not boolean": (_add_to_first_library("sample: maybe"),
                           10, "libraries[0].sample", "must be true or false"),
    "unit parent unknown": (_replace("parent: HB,", "parent: HN,"),
                            3, "administrative_units[1].parent", "'HN' is not an administrative unit code"),
    "invalid YAML": (_replace("    linking_mode: same_function", "    linking_mode: same_function: x"),
                     19, "", "invalid YAML: mapping values are not allowed here"),
    "invalid YAML, unclosed": (_replace("{library: THPT-LS, valid_from: 2023-09-05}",
                                        "{library: THPT-LS, valid_from: 2023-09-05"),
                               24, "", "invalid YAML"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_registry_names_file_line_and_key(tmp_path, case):
    change, line, key_path, words = BROKEN[case]
    path = _write(tmp_path, change(MINIMAL))
    with pytest.raises(RegistryError) as caught:
        load_registry(path)
    where = f"broken.yaml:{line}: {key_path}: " if key_path else f"broken.yaml:{line}: "
    matching = [p for p in caught.value.problems if p.startswith(where) and words in p]
    assert matching, f"no problem starting {where!r} containing {words!r} in {caught.value.problems}"
    assert matching[0] in str(caught.value)
    assert caught.value.path == path


def test_minimal_registry_is_valid(tmp_path):
    loaded = load_registry(_write(tmp_path, MINIMAL, "ok.yaml"))
    assert list(loaded.groups) == ["NLT-LS"]
    assert loaded.libraries["THPT-NT"].active_on(date(2024, 5, 31))
    assert not loaded.libraries["THPT-NT"].active_on(date(2024, 6, 1))
    assert [lib.code for lib in loaded.active_libraries(date(2024, 6, 1))] == ["THPT-LS"]
    assert loaded.groups["NLT-LS"].member_codes(date(2024, 6, 1)) == ["THPT-LS"]


def test_all_problems_are_reported_together(tmp_path):
    text = MINIMAL
    for change in (BROKEN["bad type"][0], BROKEN["bad date"][0], BROKEN["unknown key"][0],
                   BROKEN["unknown member"][0], BROKEN["bad code"][0]):
        text = change(text)
    path = _write(tmp_path, text)
    with pytest.raises(RegistryError) as caught:
        load_registry(path)
    problems = caught.value.problems
    for expected in ("broken.yaml:7: libraries[0].type:", "broken.yaml:9: libraries[0].valid_from:",
                     "broken.yaml:17: groups[0].code:", "broken.yaml:20: groups[0].lead_libary:",
                     "broken.yaml:24: groups[0].members[1].library:"):
        assert any(p.startswith(expected) for p in problems), (expected, problems)
    lines = [int(p.split(":")[1]) for p in problems]
    assert lines == sorted(lines)  # in file order, easy to work through
    assert str(caught.value).startswith(f"{len(problems)} problems in registry {path}")


def test_library_in_two_groups_of_the_same_mode_at_once(tmp_path):
    second = """\
  - code: NLT-LS-2
    name: Nhóm thứ hai
    linking_mode: {mode}
    lead_library: THPT-LS
    valid_from: {start}
    members:
      - {{library: THPT-LS}}
"""
    overlapping = MINIMAL + second.format(mode="same_function", start="2024-01-01")
    with pytest.raises(RegistryError) as caught:
        load_registry(_write(tmp_path, overlapping))
    assert any(p.startswith("broken.yaml:31: groups[1].members[0]: library 'THPT-LS' is also in group 'NLT-LS'")
               for p in caught.value.problems), caught.value.problems
    # another linking mode, or one group after the other, is fine
    load_registry(_write(tmp_path, MINIMAL + second.format(mode="geographic", start="2024-01-01"), "a.yaml"))
    sequential = MINIMAL.replace("valid_from: 2023-09-05\n    members:",
                                 "valid_from: 2023-09-05\n    valid_to: 2023-12-31\n    members:")
    sequential = sequential.replace("{library: THPT-LS, valid_from: 2023-09-05}",
                                    "{library: THPT-LS, valid_from: 2023-09-05, valid_to: 2023-12-31}")
    sequential = sequential.replace("valid_from: 2023-09-05, valid_to: 2024-05-31}",
                                    "valid_from: 2023-09-05, valid_to: 2023-12-31}")
    loaded = load_registry(_write(tmp_path, sequential + second.format(mode="same_function", start="2024-01-01"),
                                  "b.yaml"))
    assert [g.code for g in loaded.groups_of("THPT-LS", date(2024, 2, 1))] == ["NLT-LS-2"]


def test_not_utf8_and_not_yaml(tmp_path):
    binary = tmp_path / "export.mrc"
    binary.write_bytes(b"libraries:\n  - code: X\n\xff\xfe\x00\x1d")
    with pytest.raises(RegistryError, match=r"^export\.mrc:3: not UTF-8 text"):
        load_registry(binary)
    text = _write(tmp_path, "just some words\n", "notes.txt")
    with pytest.raises(RegistryError, match=r"^notes\.txt:1: expected a mapping"):
        load_registry(text)
    with pytest.raises(RegistryError, match=r"^empty\.yaml:1: the file is empty"):
        load_registry(_write(tmp_path, "", "empty.yaml"))
    with pytest.raises(RegistryError, match=r"^missing\.yaml: cannot read"):
        load_registry(tmp_path / "missing.yaml")


def test_overrides_and_normalisation(tmp_path):
    decomposed = unicodedata.normalize("NFD", "Trường THPT Lương Sơn")
    text = MINIMAL.replace("name: Trường THPT Lương Sơn", f"name: {decomposed}")
    text = text.replace("admin_unit: Lương Sơn", "admin_unit: " + unicodedata.normalize("NFD", "Lương Sơn"), 1)
    text = text.replace(FIRST_LIBRARY_END, """\
    valid_from: 2023-09-05
    call_number_scheme: 'pattern:^[0-9]{3}'
    lending_policy: {loan_days: 7}
    source:
      transport: http
      location: https://opac.example.edu.vn/export
      format: xlsx
      encoding: TCVN3
      item_field: 852
      schedule: 30 2 * * mon-fri
      field_mapping: {"Nhan đề": title, "Số ĐKCB": accession_number}
  - code: THPT-NT""")
    text = "defaults:\n  lending_policy: {loan_days: 21, max_items: 2}\n  source: {format: marc21}\n" + text
    lib = load_registry(_write(tmp_path, text, "ok.yaml")).libraries["THPT-LS"]
    assert lib.name == "Trường THPT Lương Sơn" and unicodedata.is_normalized("NFC", lib.name)
    assert lib.admin_unit == "Lương Sơn"
    assert (lib.lending_policy.loan_days, lib.lending_policy.max_items) == (7, 2)
    assert lib.source.transport == "http" and lib.source.location.startswith("https://")
    assert (lib.source.format, lib.source.encoding, lib.source.item_field) == ("xlsx", "tcvn3", "852")
    assert lib.source.schedule == "30 2 * * mon-fri"
    assert dict(lib.source.field_mapping) == {"Nhan đề": "title", "Số ĐKCB": "accession_number"}
    assert lib.call_number_pattern.match("895.9")
    other = load_registry(tmp_path / "ok.yaml").libraries["THPT-NT"]
    assert other.source.format == "marc21" and other.source.location == "THPT-NT"
    assert (other.lending_policy.loan_days, other.lending_policy.max_items) == (21, 2)


def test_registry_error_survives_pickling():
    error = RegistryError(["a.yaml:1: x: one", "a.yaml:2: y: two"], Path("a.yaml"))
    copy = pickle.loads(pickle.dumps(error))
    assert copy.problems == error.problems and str(copy) == str(error)
    assert isinstance(copy, ValueError)
