"""Landing: content-addressed raw bytes with a manifest row; hostile names never choose where bytes go."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import sqlalchemy as sa

from lienthong import config, landing

pytestmark = pytest.mark.integration

# Names a library's software, a server's Content-Disposition or an SFTP listing may hand us.
HOSTILE_NAMES = {
    "traversal": "../../../../etc/cron.d/evil.mrc",
    "windows traversal": "..\\..\\Windows\\System32\\evil.mrc",
    "absolute": "/etc/passwd",
    "dot-dot alone": "..",
    "control characters": "xuat\x1b[2J\rban\n\t2026.mrc",
    "NUL": "export.mrc\x00.sh",
    "very long": "Thư viện " * 60 + ".mrc",
    "windows reserved": "CON",
    "windows reserved with extension": "lpt1.xml",
    "windows forbidden characters": 'a<b>c:d"e|f?g*h.mrc',
    "trailing dots and spaces": "export.mrc. . ",
    "hidden": ".bashrc",
    "empty": "",
}


def _manifest(engine, library: str) -> list:
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT library_code, source, original_name, size_bytes, sha256, stored_path, fetched_at "
            "FROM landing.delivery WHERE library_code = :l ORDER BY delivery_id"), {"l": library}).all()


def test_same_content_again_is_a_no_op(clean_warehouse, tmp_path):
    export = tmp_path / "THPT-CHVT-20261120.mrc"
    export.write_bytes(b"00026nam a2200025 a 4500\x1e\x1d" * 10)
    first = landing.land(clean_warehouse, "THPT-CHVT", export, "local:THPT-CHVT")
    copy = tmp_path / "renamed copy.mrc"
    copy.write_bytes(export.read_bytes())
    second = landing.land(clean_warehouse, "THPT-CHVT", copy, "local:THPT-CHVT")

    assert first.is_new and not second.is_new
    assert second.delivery_id == first.delivery_id
    assert first.sha256 == hashlib.sha256(export.read_bytes()).hexdigest()
    rows = _manifest(clean_warehouse, "THPT-CHVT")
    assert len(rows) == 1
    row = rows[0]
    assert (row.source, row.original_name, row.size_bytes) == ("local:THPT-CHVT", export.name, 260)
    assert row.fetched_at is not None
    stored = config.landing_root() / row.stored_path
    assert stored == first.stored_path and stored.read_bytes() == export.read_bytes()
    assert oct(stored.stat().st_mode & 0o777) == "0o444"
    # Another library delivering the same bytes gets its own manifest row, sharing the stored copy.
    other = landing.land(clean_warehouse, "PTDTNT-TINH", export, "local:PTDTNT-TINH")
    assert other.is_new and other.stored_path == first.stored_path
    assert not list(config.landing_root().glob(".incoming-*"))


@pytest.mark.parametrize("case", sorted(HOSTILE_NAMES))
def test_hostile_name_never_leaves_the_landing_folder(clean_warehouse, tmp_path, case):
    name = HOSTILE_NAMES[case]
    root = config.landing_root().resolve()

    safe = landing.safe_file_name(name)
    assert safe and "/" not in safe and "\\" not in safe and "\x00" not in safe
    assert not safe.startswith(".") and safe == safe.strip(" .")
    assert len(safe.encode("utf-8")) <= landing.MAX_FILE_NAME_BYTES
    assert all(ch.isprintable() for ch in safe)
    assert safe.split(".")[0].upper() not in {"CON", "PRN", "AUX", "NUL", "COM1", "LPT1"}

    target = landing.download_path("THPT-CHVT", name)
    target.write_bytes(name.encode("utf-8", "surrogatepass"))  # the name is really creatable on disk
    assert target.resolve().parent == (root / "sources" / "THPT-CHVT" / "download")

    label = landing.clean_name(name)
    assert label and all(ch.isprintable() for ch in label) and len(label) <= landing.MAX_NAME_CHARS

    # Through land(): the file as it arrives under its safe name, manifest label cleaned, bytes by digest.
    delivery = landing.land(clean_warehouse, "THPT-CHVT", target, "http:https://thuvien.example.vn/e")
    assert delivery.stored_path.resolve().parent.parent == root
    assert delivery.stored_path.name == delivery.sha256
    row = _manifest(clean_warehouse, "THPT-CHVT")[-1]
    assert row.original_name == landing.clean_name(target.name)
    assert (root / row.stored_path).resolve() == delivery.stored_path.resolve()


def test_land_a_file_whose_own_name_is_hostile(clean_warehouse, tmp_path):
    """Names Linux allows but that are hostile as labels: control characters, a terminal escape, a long name."""
    for name in ("ban\x1b]0;owned\x07\nxuat.mrc", "CON", "Sach-" * 50 + ".mrc"):
        path = tmp_path / name
        path.write_bytes(f"content of {name!r}".encode())
        delivery = landing.land(clean_warehouse, "THPT-CHVT", path, "local:THPT-CHVT")
        assert delivery.is_new
        assert all(ch.isprintable() for ch in delivery.original_name)
        assert len(delivery.original_name) <= landing.MAX_NAME_CHARS
        assert delivery.stored_path.parent.parent.resolve() == config.landing_root().resolve()
    names = [r.original_name for r in _manifest(clean_warehouse, "THPT-CHVT")]
    assert names[0] == "ban]0;ownedxuat.mrc" and names[1] == "CON"
    assert names[2].endswith("….mrc") and len(names[2]) == landing.MAX_NAME_CHARS


@pytest.mark.parametrize("code", ["../escape", "..", "a/b", "", "NUL"])
def test_workspace_of_a_hostile_code_stays_one_folder_under_sources(state_dir, code):
    root = (config.landing_root() / "sources").resolve()
    folder = landing.workspace(code)
    assert folder.parent == root and folder.is_dir()
    assert folder.name == landing.safe_file_name(code)


def test_long_name_keeps_its_extension():
    name = "Danh mục sách giáo khoa " * 20 + ".xlsx"
    assert landing.safe_file_name(name).endswith(".xlsx")
    assert landing.clean_name(name).endswith(".xlsx")
    assert Path(landing.safe_file_name("x" * 400 + ".mrc")).suffix == ".mrc"
