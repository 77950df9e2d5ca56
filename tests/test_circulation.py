"""Circulation exports end to end on the real warehouse: parsing, GX checks, conservation, windows, policy flags."""
from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from lienthong import circulation, cli
from lienthong.circulation import CirculationError, classify, ingest_circulation, map_header, parse_timestamp
from lienthong.privacy import Pseudonymiser
from lienthong.registry import load_registry
from tests.marc_builders import book, write_marc

pytestmark = pytest.mark.integration

KEY = b"test-key-for-circulation-0123456789"
SCHOOL = "THPT-CHVT"  # registry policy: 14 days, 3 items
PUBLIC = "TV-TINH"  # registry policy: 15 days, 5 items; access read_on_site, collection "Kho mượn" defined_use

REGISTER = ["STT", "Họ và tên", "Ngày sinh", "Lớp", "Điện thoại", "Mã bạn đọc", "Đối tượng", "Số ĐKCB",
            "Thư viện sở hữu", "Ngày mượn", "Ngày gia hạn", "Ngày trả"]
ILL = ["STT", "Mã yêu cầu", "Thư viện yêu cầu", "Thư viện sở hữu", "Số ĐKCB", "Mã bạn đọc", "Họ và tên",
       "Đối tượng", "Ngày yêu cầu", "Ngày duyệt", "Ngày gửi", "Ngày nhận", "Ngày trả", "Ngày hủy/từ chối",
       "Trạng thái", "Lý do", "Hình thức nhận"]


@pytest.fixture(scope="module")
def registry():
    return load_registry()


@pytest.fixture(scope="module")
def pseudonymiser():
    return Pseudonymiser(KEY)


def write_csv(path: Path, header: list[str], rows: list[list], banner: tuple[str, ...] = ("SỔ MƯỢN TRẢ",)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        for line in banner:
            writer.writerow([line])
        writer.writerow(header)
        writer.writerows(rows)
    return path


def ingest(path, library, registry, pseudonymiser, engine, kind=None):
    (result,) = ingest_circulation(library, path, kind, registry=registry, engine=engine, pseudonymiser=pseudonymiser)
    assert result.conserved, result
    return result


def rows(engine, sql, **params):
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).mappings().all()


# ------------------------------------------------------------------------------------------------ reading
def test_dates_in_the_spellings_of_exports():
    assert parse_timestamp("05/10/2026") == "2026-10-05T00:00:00"
    assert parse_timestamp("5/10/2026 8:30") == "2026-10-05T08:30:00"
    assert parse_timestamp("2026-10-05 08:30:15") == "2026-10-05T08:30:15"
    assert parse_timestamp("2026-10-05T08:30:00") == "2026-10-05T08:30:00"
    assert parse_timestamp("31/02/2026") == "31/02/2026"  # left as written: the suite reports it
    assert parse_timestamp("  ") is None and parse_timestamp(None) is None


def test_headers_tell_the_kind_and_personal_columns_are_not_read():
    assert classify(REGISTER) == "loans"
    assert classify(ILL) == "ill"
    assert classify(["Số thẻ", "Họ và tên", "Ngày cấp", "Ngày hết hạn", "Nơi sử dụng"]) == "cards"
    assert classify(["Mã đợt", "Thư viện gửi", "Thư viện nhận", "Số ĐKCB", "Ngày gửi"]) == "rotation"
    assert classify(["Nhan đề", "Tác giả", "ISBN"]) is None
    koha = ["datetime", "branch", "type", "itemnumber", "borrowernumber", "categorycode", "barcode", "cardnumber"]
    assert classify(koha) == "loans"
    header = map_header(koha, "loans")
    assert header.layout == "koha"
    assert header.columns["patron"] == koha.index("cardnumber")  # the shared card, not Koha's internal number
    assert header.columns["item_ref"] == koha.index("barcode")
    register = map_header(REGISTER, "loans")
    assert register.layout == "vi"
    assert register.dropped_personal == ["birth_date", "class", "name", "phone"]
    assert not {"Họ và tên", "Ngày sinh", "Lớp", "Điện thoại"} & {REGISTER[p] for p in register.columns.values()}


# ------------------------------------------------------------------------------------------------ loans
def test_loan_register_conservation_quarantine_and_policy(clean_warehouse, tmp_path, registry, pseudonymiser):
    patron = ["Nguyễn Văn Bình", "01/02/2010", "10A1", "0912345678", "HS-0001", "Học sinh"]
    other = ["Trần Thị Lan", "03/04/2010", "10A2", "0987654321", "HS-0002", "Học sinh"]
    data = [
        [1, *patron, "STK.000001", "", "01/10/2026 08:00", "", "10/10/2026 09:00"],
        [2, *patron, "STK.000002", "", "02/10/2026 08:00", "", ""],
        [3, *patron, "STK.000003", "", "03/10/2026 08:00", "10/10/2026 08:00", "20/10/2026 10:00"],
        [4, *patron, "STK.000004", "", "04/10/2026 08:00", "", "30/10/2026 08:00"],  # 4th held: over the limit
        [5, *other, "STK.000005", "", "05/10/2026 08:00", "", "25/10/2026 08:00"],  # 20 days: overdue
        [6, *other, "STK.000006", "", "06/10/2026 08:00", "", "01/10/2026 08:00"],  # returned before lent
        [7, *other, "STK.000007", "", "31/02/2026", "", ""],  # no such day
        [8, *other, "STK.000008", "", "07/10/2026 08:00", "", "", "lệch cột"],  # one cell too many
    ]
    path = write_csv(tmp_path / "muon-tra.csv", REGISTER, data)
    engine = clean_warehouse
    result = ingest(path, SCHOOL, registry, pseudonymiser, engine)
    assert (result.kind, result.status, result.layout) == ("loans", "applied", "vi")
    assert (result.read, result.loaded, result.quarantined, result.unreadable) == (8, 5, 2, 1)
    assert result.quarantine_reasons == {"loan_return_before_checkout": 1, "loan_date_unreadable": 1}
    assert result.dropped_personal_columns == ["birth_date", "class", "name", "phone"]

    failures = rows(engine, "SELECT row_number, rule, value, message_vi FROM circulation.row_failure "
                            "ORDER BY row_number")
    # file rows: a banner, the header, then the data (row 3 is the first loan)
    assert [(f["row_number"], f["rule"]) for f in failures] == [(8, "loan_return_before_checkout"),
                                                                  (9, "loan_date_unreadable")]
    assert failures[1]["value"] == "31/02/2026" and "không đọc được là ngày" in failures[1]["message_vi"]
    unreadable = rows(engine, "SELECT row_number, reason FROM circulation.unreadable")
    assert [(u["row_number"], "lệch cột" in u["reason"]) for u in unreadable] == [(10, True)]
    quarantined = rows(engine, "SELECT row FROM circulation.quarantine ORDER BY row_number")
    assert all(q["row"]["patron_hash"] == pseudonymiser.pseudonym("HS-0002") for q in quarantined)

    loans = rows(engine, "SELECT item_ref, renewals, due_on, returned_at, overdue, over_limit FROM circulation.loan "
                         "ORDER BY item_ref")
    by_item = {loan["item_ref"]: loan for loan in loans}
    assert list(by_item) == ["STK.000001", "STK.000002", "STK.000003", "STK.000004", "STK.000005"]
    assert by_item["STK.000003"]["renewals"] == 1
    assert by_item["STK.000003"]["due_on"] == dt.date(2026, 10, 24)  # renewed 10/10 + 14 days
    assert [k for k, v in by_item.items() if v["over_limit"]] == ["STK.000004"]
    # 000004: out 26 days; 000005: 20 days; 000002 still out at the last event (30/10): 28 days
    assert sorted(k for k, v in by_item.items() if v["overdue"]) == ["STK.000002", "STK.000004", "STK.000005"]
    batch = rows(engine, "SELECT window_start, window_end, dropped_columns, key_id FROM circulation.batch")[0]
    assert (batch["window_start"], batch["window_end"]) == (dt.datetime(2026, 10, 1, 8), dt.datetime(2026, 10, 30, 8))
    assert batch["key_id"] == pseudonymiser.key_id

    again = ingest(path, SCHOOL, registry, pseudonymiser, engine)
    assert again.status == "unchanged" and again.batch_id == result.batch_id and again.read == 8

    # The same window with one line: held, the five loans stay.
    short = write_csv(tmp_path / "short.csv", REGISTER,
                      [[1, *patron, "STK.000001", "", "01/10/2026 08:00", "", "30/10/2026 08:00"]])
    held = ingest(short, SCHOOL, registry, pseudonymiser, engine)
    assert held.status == "held" and "held" in held.message
    assert rows(engine, "SELECT count(*) AS n FROM circulation.loan")[0]["n"] == 5

    # November's register replaces nothing of October.
    november = write_csv(tmp_path / "thang-11.csv", REGISTER,
                         [[1, *other, "STK.000009", "", "03/11/2026 08:00", "", "05/11/2026 08:00"]])
    assert ingest(november, SCHOOL, registry, pseudonymiser, engine).status == "applied"
    assert rows(engine, "SELECT count(*) AS n FROM circulation.loan")[0]["n"] == 6
    monthly = rows(engine, "SELECT month, loans, active_readers FROM marts.circulation_loans "
                           "WHERE library_code = :l ORDER BY month", l=SCHOOL)
    assert [(m["month"], m["loans"], m["active_readers"]) for m in monthly] == [
        (dt.date(2026, 10, 1), 5, 2), (dt.date(2026, 11, 1), 1, 1)]


def test_koha_statistics_report(clean_warehouse, tmp_path, registry, pseudonymiser):
    header = ["datetime", "branch", "type", "value", "other", "itemnumber", "itemtype", "location",
              "borrowernumber", "ccode", "categorycode", "barcode", "cardnumber"]
    data = [
        ["2026-10-01 09:00:00", PUBLIC, "issue", "0", "", "101", "STK", "", "4001", "", "GV", "STK.000101", "TV-1"],
        ["2026-10-10 09:00:00", PUBLIC, "renew", "0", "", "101", "STK", "", "4001", "", "GV", "STK.000101", "TV-1"],
        ["2026-10-28 09:00:00", PUBLIC, "return", "0", "", "101", "STK", "", "4001", "", "GV", "STK.000101", "TV-1"],
        ["2026-10-02 09:00:00", PUBLIC, "issue", "0", "", "102", "STK", "", "4002", "", "HS", "STK.000102", "TV-2"],
        ["2026-10-03 09:00:00", PUBLIC, "localuse", "0", "", "103", "STK", "", "", "", "", "STK.000103", ""],
        ["2026-10-04 09:00:00", "TV-DABAC", "issue", "0", "", "104", "STK", "", "4003", "", "HS", "STK.000104", "T3"],
    ]
    path = write_csv(tmp_path / "statistics.csv", header, data, banner=())
    result = ingest(path, PUBLIC, registry, pseudonymiser, clean_warehouse)
    assert (result.layout, result.read, result.loaded, result.quarantined) == ("koha", 6, 4, 2)
    assert result.quarantine_reasons == {"loan_event_type": 1, "loan_missing_patron": 1, "loan_other_library": 1}
    loans = rows(clean_warehouse, "SELECT item_ref, patron_hash, patron_category, renewals, due_on, overdue "
                                  "FROM circulation.loan ORDER BY item_ref")
    assert [(l["item_ref"], l["renewals"], l["due_on"], l["overdue"]) for l in loans] == [
        ("STK.000101", 1, dt.date(2026, 10, 25), True),  # renewed 10/10 + 15 days, back 28/10
        ("STK.000102", 0, dt.date(2026, 10, 17), True)]  # still out at the last event (28/10)
    assert loans[0]["patron_hash"] == pseudonymiser.pseudonym("tv-1 ")
    assert loans[0]["patron_category"] == "teacher" and loans[1]["patron_category"] == "pupil"


def test_xlsx_register_with_banner_rows(clean_warehouse, tmp_path, registry, pseudonymiser):
    from openpyxl import Workbook

    book_ = Workbook()
    sheet = book_.active
    sheet.append(["SỔ MƯỢN TRẢ TÀI LIỆU"])
    sheet.append(["Năm học 2026-2027"])
    sheet.append(REGISTER)
    sheet.append([1, "Lê Minh An", dt.datetime(2010, 5, 6), "11A3", "0911000111", "HS-0100", "Học sinh",
                  "SGK.000010", None, dt.datetime(2026, 9, 15, 10, 0), None, dt.datetime(2026, 9, 20, 10, 0)])
    path = tmp_path / "so-muon.xlsx"
    book_.save(path)
    result = ingest(path, SCHOOL, registry, pseudonymiser, clean_warehouse)
    assert (result.kind, result.status, result.loaded) == ("loans", "applied", 1)
    (loan,) = rows(clean_warehouse, "SELECT checkout_at, returned_at FROM circulation.loan")
    assert (loan["checkout_at"], loan["returned_at"]) == (dt.datetime(2026, 9, 15, 10), dt.datetime(2026, 9, 20, 10))


# ------------------------------------------------------------------------------------------------ ILL
def _load_public_catalogue(tmp_path: Path) -> None:
    """TV-TINH holds STK.000901 in "Kho mượn" (registry: defined_use) and STK.000902 in its reading room."""
    from lienthong.ingest import ingest_library

    lending = book("TT-1", items=(("STK.000901", "510 T406"),))
    lending.get_fields("952")[0].add_subfield("8", "Kho mượn")
    reading = book("TT-2", title="Toán 11", items=(("STK.000902", "510 T406"),))
    reading.get_fields("952")[0].add_subfield("8", "Kho đọc")
    result = ingest_library(PUBLIC, write_marc(tmp_path / "tv-tinh.mrc", [lending, reading]))
    assert result.status == "applied" and result.items == 2


def test_ill_lifecycle_channels_and_policy_flags(clean_warehouse, tmp_path, registry, pseudonymiser):
    _load_public_catalogue(tmp_path)
    reader = ["HS-0200", "Phạm Thu Hà", "Học sinh"]
    data = [  # requested, approved, shipped, received, returned, closed, status, reason, channel
        [1, "YC-1", SCHOOL, PUBLIC, "STK.000901", *reader, "01/10/2026 08:00", "01/10/2026 14:00", "02/10/2026 08:00",
         "04/10/2026 08:00", "10/10/2026 08:00", "", "", "", "Qua thư viện cấp thẻ"],  # Kho mượn: may travel
        [2, "YC-2", SCHOOL, PUBLIC, "STK.000902", *reader, "02/10/2026 08:00", "02/10/2026 10:00", "03/10/2026 08:00",
         "05/10/2026 08:00", "30/10/2026 08:00", "", "", "", "Qua bưu điện"],  # read on site sent by post; 25 days
        [3, "YC-3", SCHOOL, PUBLIC, "STK.000902", *reader, "03/10/2026 08:00", "03/10/2026 09:00", "",
         "03/10/2026 15:00", "", "", "", "", "Tại thư viện sở hữu"],  # read at the owner: allowed
        [4, "YC-4", SCHOOL, PUBLIC, "STK.000903", *reader, "04/10/2026 08:00", "", "", "", "", "05/10/2026 08:00",
         "Từ chối", "Tài liệu đang được mượn", "Qua thư viện cấp thẻ"],
        [5, "YC-5", SCHOOL, PUBLIC, "STK.000904", *reader, "05/10/2026 08:00", "", "", "", "", "05/10/2026 12:00",
         "Hủy", "", "Trực tuyến"],  # cancelled without a reason: a warning
        [6, "YC-6", SCHOOL, SCHOOL, "STK.000001", *reader, "06/10/2026 08:00", "", "", "", "", "", "", "",
         "Qua thư viện cấp thẻ"],  # its own library: not an ILL
        [7, "YC-7", SCHOOL, PUBLIC, "STK.000905", *reader, "07/10/2026 08:00", "06/10/2026 08:00", "", "", "", "",
         "", "", "Qua bưu điện"],  # approved before requested
    ]
    result = ingest(write_csv(tmp_path / "ill.csv", ILL, data), SCHOOL, registry, pseudonymiser, clean_warehouse)
    assert (result.kind, result.read, result.loaded, result.quarantined) == ("ill", 7, 5, 2)
    assert result.quarantine_reasons == {"ill_owner_is_requester": 1, "ill_approved_before_requested": 1}
    assert result.warning_reasons == {"ill_closed_without_reason": 1}
    requests = {r["request_ref"]: r for r in rows(clean_warehouse, "SELECT * FROM circulation.ill_request")}
    assert {ref: r["outcome"] for ref, r in requests.items()} == {
        "YC-1": "returned", "YC-2": "returned", "YC-3": "received", "YC-4": "refused", "YC-5": "cancelled"}
    assert {ref: r["access_level"] for ref, r in requests.items()}["YC-1"] == "defined_use"
    # YC-4 and YC-5 asked for read-on-site copies to travel too, but were refused or cancelled: no flag
    assert sorted(ref for ref, r in requests.items() if r["access_forbidden"]) == ["YC-2"]
    # YC-2 back after 25 days; YC-3 still out at the last recorded date (30/10), 27 days after receipt
    assert sorted(ref for ref, r in requests.items() if r["overdue"]) == ["YC-2", "YC-3"]
    assert requests["YC-4"]["reason"] == "Tài liệu đang được mượn"

    pairs = rows(clean_warehouse, "SELECT * FROM marts.ill_requests ORDER BY channel")
    assert [(p["channel"], p["requests"], p["filled"], p["refused"], p["cancelled"]) for p in pairs] == [
        ("at_owner", 1, 1, 0, 0), ("home_library", 2, 1, 1, 0), ("online", 1, 0, 0, 1), ("post", 1, 1, 0, 0)]
    home = pairs[1]
    assert home["fill_rate"] == pytest.approx(0.5) and float(home["median_turnaround_days"]) == 3.0
    assert float(pairs[0]["median_turnaround_days"]) == 0.29  # 7 hours
    (summary,) = rows(clean_warehouse, "SELECT * FROM marts.circulation_summary('2026-10-01', '2026-10-31') "
                                       "WHERE library_code = :l", l=SCHOOL)
    assert (summary["ill_requests"], summary["ill_filled"]) == (5, 3)
    assert float(summary["ill_median_turnaround_days"]) == 3.0  # 0.29, 3.00, 3.00


def test_ill_over_the_owners_limit(clean_warehouse, tmp_path, registry, pseudonymiser):
    max_items = registry.libraries[PUBLIC].lending_policy.max_items
    data = [[k, f"YC-{k}", SCHOOL, PUBLIC, f"STK.0009{k:02d}", "HS-0300", "Vũ Gia Bảo", "Học sinh",
             f"0{k}/10/2026 08:00", f"0{k}/10/2026 09:00", "", f"0{k}/10/2026 15:00", "", "", "", "",
             "Tại thư viện sở hữu"] for k in range(1, max_items + 2)]
    ingest(write_csv(tmp_path / "ill.csv", ILL, data), SCHOOL, registry, pseudonymiser, clean_warehouse)
    flagged = rows(clean_warehouse, "SELECT request_ref FROM circulation.ill_request WHERE over_limit")
    assert [r["request_ref"] for r in flagged] == [f"YC-{max_items + 1}"]


# ------------------------------------------------------------------------------------------------ cards, rotation
def test_cards_rotation_and_where_cards_are_used(clean_warehouse, tmp_path, registry, pseudonymiser):
    group = registry.groups_of(SCHOOL)[0]
    cards = ["STT", "Số thẻ", "Họ và tên", "Ngày sinh", "Địa chỉ", "Đối tượng", "Ngày cấp", "Ngày hết hạn",
             "Nơi sử dụng"]
    card_rows = [
        [1, "HS-0400", "Hà Văn Sơn", "01/01/2009", "Xóm Mới", "Học sinh", "06/09/2026", "31/08/2027",
         f"{group.code}; {PUBLIC}"],
        [2, "GV-0010", "Bùi Thị Mai", "01/01/1985", "Tổ 2", "Giáo viên", "06/09/2026", "31/08/2029", ""],
        [3, "HS-0401", "Đinh Văn Tú", "01/01/2009", "Xóm Mới", "Học sinh", "06/09/2026", "31/08/2027", "NHOM-KHONGCO"],
    ]
    result = ingest(write_csv(tmp_path / "the.csv", cards, card_rows), SCHOOL, registry, pseudonymiser,
                    clean_warehouse)
    assert (result.kind, result.loaded, result.quarantine_reasons) == ("cards", 2, {"card_unknown_valid_at": 1})
    (card,) = rows(clean_warehouse, "SELECT valid_at, valid_libraries FROM circulation.reader_card "
                                    "WHERE patron_category = 'pupil'")
    assert card["valid_at"] == [group.code, PUBLIC]
    assert set(card["valid_libraries"]) == set(group.member_codes()) | {SCHOOL, PUBLIC}

    rotation = ["STT", "Mã đợt", "Thư viện gửi", "Thư viện nhận", "Số ĐKCB", "Ngày gửi", "Ngày nhận", "Ngày trả"]
    rot_rows = [[k, "LC-01", PUBLIC, SCHOOL, f"STK.00050{k}", "10/09/2026", "12/09/2026", "" if k < 3 else "20/10/2026"]
                for k in range(1, 4)]
    assert ingest(write_csv(tmp_path / "lc.csv", rotation, rot_rows), PUBLIC, registry, pseudonymiser,
                  clean_warehouse).kind == "rotation"

    school_loans = [[1, "Hà Văn Sơn", "", "", "", "HS-0400", "Học sinh", "STK.000501", PUBLIC, "15/09/2026 08:00", "",
                     "20/09/2026 08:00"],
                    [2, "Hà Văn Sơn", "", "", "", "HS-0400", "Học sinh", "STK.000501", PUBLIC, "01/10/2026 08:00", "",
                     ""]]
    ingest(write_csv(tmp_path / "muon.csv", REGISTER, school_loans), SCHOOL, registry, pseudonymiser, clean_warehouse)
    koha = ["datetime", "branch", "type", "barcode", "cardnumber", "categorycode"]
    public_loans = [["2026-09-20 10:00:00", PUBLIC, "issue", "STK.000777", "HS-0400", "HS"]]
    ingest(write_csv(tmp_path / "koha.csv", koha, public_loans, banner=()), PUBLIC, registry, pseudonymiser,
           clean_warehouse)

    (batch,) = rows(clean_warehouse, "SELECT * FROM marts.rotation")
    assert (batch["items_sent"], batch["items_received"], batch["items_returned"], batch["loans_at_receiver"]) == (
        3, 3, 1, 2)
    use = {(u["issuing_library"], u["using_library"]): u for u in rows(clean_warehouse, "SELECT * FROM marts.card_use")}
    assert {k: (u["readers"], u["loans"], u["all_within_validity"]) for k, u in use.items()} == {
        (SCHOOL, SCHOOL): (1, 2, True), (SCHOOL, PUBLIC): (1, 1, True)}
    loans = rows(clean_warehouse, "SELECT * FROM marts.circulation_loans WHERE library_code = :l", l=SCHOOL)
    assert sum(m["loans_of_rotated_items"] for m in loans) == 2
    summary = {r["library_code"]: r for r in rows(
        clean_warehouse, "SELECT * FROM marts.circulation_summary('2026-09-01', '2026-09-30')")}
    assert len(summary) == len(registry.libraries)
    assert (summary[SCHOOL]["loans"], summary[SCHOOL]["active_readers"], summary[SCHOOL]["cards_issued"],
            summary[SCHOOL]["rotated_items"]) == (1, 1, 2, 3)
    assert (summary[PUBLIC]["loans"], summary[PUBLIC]["rotated_items"]) == (1, 0)


# ------------------------------------------------------------------------------------------------ refusals
def test_unusable_files_fail_with_the_file_named(clean_warehouse, tmp_path, registry, pseudonymiser):
    catalogue_like = write_csv(tmp_path / "sach.csv", ["Nhan đề", "Tác giả", "Số ĐKCB"], [["Toán 10", "A", "1"]])
    (result,) = ingest_circulation(SCHOOL, catalogue_like, registry=registry, engine=clean_warehouse,
                                   pseudonymiser=pseudonymiser)
    assert result.status == "failed" and "sach.csv" in result.message
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    (result,) = ingest_circulation(SCHOOL, empty, "loans", registry=registry, engine=clean_warehouse,
                                   pseudonymiser=pseudonymiser)
    assert result.status == "failed" and "empty.csv" in result.message
    garbage = tmp_path / "garbage.csv"
    garbage.write_bytes(b"\x00\x01Nguyen Van Secret\x00" * 4)
    (result,) = ingest_circulation(SCHOOL, garbage, "loans", registry=registry, engine=clean_warehouse,
                                   pseudonymiser=pseudonymiser)
    assert result.status == "failed" and "garbage.csv" in result.message and "Secret" not in result.message
    with pytest.raises(CirculationError, match="not in the registry"):
        ingest_circulation("KHONG-CO", catalogue_like, registry=registry, pseudonymiser=pseudonymiser)
    with pytest.raises(CirculationError, match="does not exist"):
        ingest_circulation(SCHOOL, tmp_path / "missing.csv", registry=registry, pseudonymiser=pseudonymiser)
    with pytest.raises(CirculationError, match="unknown circulation kind"):
        ingest_circulation(SCHOOL, catalogue_like, "books", registry=registry, pseudonymiser=pseudonymiser)
    batches = rows(clean_warehouse, "SELECT status, status_reason FROM circulation.batch")
    assert batches == [] and rows(clean_warehouse, "SELECT count(*) AS n FROM circulation.loan_event")[0]["n"] == 0


def test_cli_ingest_and_summary(clean_warehouse, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LIENTHONG_PATRON_KEY", KEY.decode())
    data = [[1, "Lò Văn Thắng", "", "", "", "HS-0500", "Học sinh", "STK.000001", "", "01/10/2026 08:00", "",
             "05/10/2026 08:00"]]
    path = write_csv(tmp_path / "muon-tra.csv", REGISTER, data)
    assert cli.main(["circulation", "ingest", "--library", SCHOOL, "--file", str(path), "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert (result["kind"], result["status"], result["read"], result["loaded"], result["conserved"]) == (
        "loans", "applied", 1, 1, True)
    assert "Lò Văn Thắng" not in json.dumps(result, ensure_ascii=False)
    assert cli.main(["circulation", "summary", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["totals"]["loans"] == 1 and summary["libraries"][0]["library_code"] == SCHOOL
    assert cli.main(["circulation", "summary", "--start", "2026-11-01", "--end", "2026-11-30"]) == 0
    assert "Circulation: 0 loans" in capsys.readouterr().out

    monkeypatch.delenv("LIENTHONG_PATRON_KEY")
    monkeypatch.delenv("AIRFLOW_CONN_LIENTHONG_PATRON_KEY", raising=False)
    assert cli.main(["circulation", "ingest", "--library", SCHOOL, "--file", str(path)]) == 1
    assert "LIENTHONG_PATRON_KEY" in capsys.readouterr().err


def test_find_exports_takes_the_newest_of_each_kind(tmp_path, monkeypatch, registry):
    monkeypatch.setenv("LIENTHONG_DROP_ROOT", str(tmp_path))
    folder = circulation.circulation_folder(SCHOOL, registry.libraries[SCHOOL].source.location)
    old = write_csv(folder / "a-old.csv", REGISTER, [])
    new = write_csv(folder / "b-new.csv", REGISTER, [])
    cards = write_csv(folder / "the.csv", ["Số thẻ", "Ngày cấp", "Đối tượng"], [])
    write_csv(folder / "notes.csv", ["Ghi chú", "Nội dung"], [])
    (folder / "readme.pdf").write_bytes(b"%PDF")
    import os

    os.utime(old, ns=(1_000_000_000, 1_000_000_000))
    assert circulation.find_exports(SCHOOL, registry.libraries[SCHOOL].source.location) == {
        "loans": new, "cards": cards}
