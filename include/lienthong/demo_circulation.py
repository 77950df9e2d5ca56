"""Deterministic sample circulation of the province: loans, ILL, reader cards and rotation, with ground truth.

:func:`generate_circulation` runs after the catalogue exports are written (``demo.generate_province`` calls
it) and writes, into each library's drop folder under ``circulation/``, the exports a library would send:

* ``cards``: the reader-card register (Vietnamese headers, with the names, birth dates, classes, addresses and
  phones a real register holds, which the pipeline must drop);
* ``loans``: schools keep a loan register (one line per loan: Ngày mượn, Ngày gia hạn, Ngày trả; CSV or XLSX,
  dates written dd/mm/yyyy hh:mm), public libraries a Koha statistics report (one row per issue/renew/return);
* ``ill``: the ILL requests placed by the library's readers, with every lifecycle date and the channel;
* ``rotation``: the batches a public library sends to the schools of its district.

Items are the copies of the catalogue exports just written (ĐKCB read back from the MARC files). Readers are
invented with random names; every number the marts must show is simulated here, in plain Python, and
written to the ground truth, so tests compare the warehouse with an independent computation. A few rows carry
a known error (return before checkout, an unknown library code, a card expiring before it is issued): they
must end in quarantine. Output is byte-identical across runs for the same (libraries, scale, seed).
"""
from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import io
import json
import os
import random
import re
import zipfile
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from statistics import median

__all__ = ["generate_circulation", "school_year_window"]

READERS_BY_PROFILE = {"MN": 15, "TH": 40, "TH&THCS": 45, "THCS": 50, "PTDTNT THCS": 50, "THPT": 60,
                      "PTDTNT THCS&THPT": 60, "district library": 40, "provincial library": 80}
_SURNAMES = ("Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Bùi", "Đinh", "Quách", "Xa", "Hà", "Đặng", "Vũ")
_MIDDLE = ("Văn", "Thị", "Đức", "Minh", "Thu", "Ngọc", "Hữu", "Thanh", "Bảo", "Gia")
_GIVEN = ("An", "Bình", "Chi", "Dũng", "Giang", "Hà", "Hạnh", "Hiếu", "Khánh", "Lan", "Linh", "Mai", "Nam",
          "Ngân", "Phúc", "Quân", "Sơn", "Tâm", "Thảo", "Trang", "Tuấn", "Vy", "Yến")
_STREETS = ("Tổ 3, phường Tân Thịnh", "Xóm Mường Khến", "Thôn Đồng Bến", "Xóm Bãi Nai", "Tổ 7, phường Phương Lâm",
            "Xóm Tày Măng", "Thôn Ao Luông", "Xóm Chiềng Châu")
CATEGORY_VI = {"pupil": "Học sinh", "teacher": "Giáo viên", "staff": "Nhân viên", "other": "Bạn đọc khác"}
CATEGORY_KOHA = {"pupil": "HS", "teacher": "GV", "staff": "NV", "other": "KH"}
CHANNEL_VI = {"home_library": "Qua thư viện cấp thẻ", "at_owner": "Tại thư viện sở hữu", "post": "Qua bưu điện",
              "online": "Trực tuyến"}
_PUBLIC = {"district library", "provincial library"}
NOT_LENDABLE_CHANNELS = {"metadata_only": {"home_library", "at_owner", "post", "online"},
                         "read_on_site": {"home_library", "post", "online"}}


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def school_year_window(exported: _dt.date) -> tuple[_dt.date, _dt.date]:
    """The circulation the sample covers: from the school year's start (5 September) to the day before export."""
    start = _dt.date(exported.year if exported.month >= 9 else exported.year - 1, 9, 5)
    end = exported - _dt.timedelta(days=1)
    if (end - start).days < 45:
        start = end - _dt.timedelta(days=75)
    return start, end


def _half_up(value: float | None) -> str | None:
    return None if value is None else str(Decimal(repr(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def _days(a: _dt.datetime, b: _dt.datetime) -> float:
    return (b - a).total_seconds() / 86400


def _decode(data: bytes, encoding: str | None) -> str:
    import unicodedata

    from lienthong.vietnamese import decode_legacy

    try:
        if encoding in ("tcvn3", "vni"):
            text = decode_legacy(data, encoding)
        else:
            text = data.decode("cp1258" if encoding == "cp1258" else "utf-8")
    except (UnicodeDecodeError, ValueError):
        text = data.decode("utf-8", "replace")
    return unicodedata.normalize("NFC", text)


def _catalogue_items(path: Path, encoding: str | None = None) -> list[tuple[str, str | None]]:
    """(ĐKCB, collection) of every lendable copy (952 with $p, not lost/damaged/withdrawn) in a MARC file."""
    seen: dict[str, str | None] = {}
    for chunk in path.read_bytes().split(b"\x1e"):
        if b"\x1fp" not in chunk or b"\x1fy" not in chunk:
            continue
        subfields = {}
        for part in chunk.split(b"\x1f")[1:]:
            if part:
                subfields.setdefault(part[:1].decode("latin-1"), part[1:])
        if any(code in subfields for code in "014") or "p" not in subfields:
            continue
        collection = subfields.get("8")
        seen.setdefault(subfields["p"].decode("ascii", "replace").strip(),
                        None if collection is None else _decode(collection, encoding))
    return list(seen.items())


class _Reader:
    __slots__ = ("card", "koha_id", "name", "birth", "klass", "address", "phone", "category", "library",
                 "issued", "expires", "valid_at", "valid_libraries")


def _profile(kind: str) -> str:
    from lienthong.demo import _profile as profile

    return profile(kind)


# ------------------------------------------------------------------------------------------ file writers
def _write_if_changed(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file() and path.read_bytes() == data:
        return  # unchanged: keep the mtime
    part = path.parent / f".{path.name}.part"
    part.write_bytes(data)
    os.replace(part, path)


def _csv_bytes(banner: list[str], header: list[str], rows: list[list]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for line in banner:
        writer.writerow([line])
    writer.writerow(header)
    writer.writerows([["" if v is None else v for v in row] for row in rows])
    return b"\xef\xbb\xbf" + out.getvalue().encode("utf-8")


def _xlsx_bytes(banner: list[str], header: list[str], rows: list[list], fixed: _dt.date) -> bytes:
    """An XLSX whose bytes depend only on its content (openpyxl stamps the clock; the ZIP is re-packed)."""
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "Sổ mượn trả"
    for line in banner:
        sheet.append([line])
    sheet.append(header)
    for row in rows:
        sheet.append(row)
    moment = _dt.datetime(fixed.year, fixed.month, fixed.day)
    book.properties.created = moment
    raw = io.BytesIO()
    book.save(raw)
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    packed = io.BytesIO()
    with zipfile.ZipFile(raw) as source, zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename == "docProps/core.xml":
                data = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*", rb"\g<1>" + stamp.encode(), data)
            target.writestr(zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0)), data,
                            compress_type=zipfile.ZIP_DEFLATED)
    return packed.getvalue()


def _vn(moment: _dt.datetime | _dt.date | None) -> str | None:
    if moment is None:
        return None
    if isinstance(moment, _dt.datetime):
        return moment.strftime("%d/%m/%Y %H:%M")
    return moment.strftime("%d/%m/%Y")


# ------------------------------------------------------------------------------------------ the province
class _Province:
    def __init__(self, libraries, out_root: Path, library_truth: dict, scale: float, seed: int,
                 exported: _dt.date):
        from lienthong.registry import AccessPolicy, LendingPolicy, RegistryError, load_registry

        self.libraries = list(libraries)
        self.by_code = {lib.code: lib for lib in self.libraries}
        self.out_root = out_root
        self.scale, self.seed, self.exported = scale, seed, exported
        self.start, self.end = school_year_window(exported)
        self.until = _dt.datetime.combine(self.end, _dt.time(17, 0))
        try:
            self.registry = load_registry()
        except RegistryError:
            self.registry = None
        reg = self.registry.libraries if self.registry else {}
        self.policy = {c: (reg[c].lending_policy if c in reg else LendingPolicy()) for c in self.by_code}
        self.access = {c: (getattr(reg[c], "access", None) if c in reg else None) or AccessPolicy()
                       for c in self.by_code}  # the pipeline's rule: lienthong.circulation.FORBIDDEN_CHANNELS
        self.profile = {lib.code: _profile(lib.type) for lib in self.libraries}
        self.items = {code: _catalogue_items(out_root / entry["file"], entry.get("encoding"))
                      for code, entry in library_truth.items()
                      if code in self.by_code}
        self.readers: dict[str, list[_Reader]] = {}
        self.loans: list[dict] = []  # every simulated loan (including rotated items)
        self.ill: list[dict] = []
        self.rotation: list[dict] = []
        self.quarantined: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.files: dict[str, dict[str, str]] = defaultdict(dict)
        self.rows: dict[str, dict[str, int]] = defaultdict(dict)

    def rng(self, code: str, what: str) -> random.Random:
        return random.Random(self.seed * 31 + _stable_int(f"circulation:{what}:{code}"))

    def moment(self, rng: random.Random, low: _dt.date, high: _dt.date) -> _dt.datetime:
        """A working hour on a school day (Monday-Saturday) between low and high."""
        for _ in range(50):
            day = low + _dt.timedelta(days=rng.randrange(max(1, (high - low).days + 1)))
            if day.weekday() < 6:
                break
        return _dt.datetime.combine(day, _dt.time(rng.randrange(7, 17), rng.choice((0, 15, 30, 45))))

    # -- partners
    def groups_of(self, code: str) -> list:
        if self.registry is None or code not in self.registry.libraries:
            return []
        return [g for g in self.registry.groups_of(code, self.end)]

    def partners(self, code: str) -> list[str]:
        """Libraries a reader of ``code`` may borrow from by ILL: the members of its groups, its district's
        public library and the provincial library (only those in this sample)."""
        found: list[str] = []
        for group in self.groups_of(code):
            found += [m for m in group.member_codes(self.end) if m != code]
        if self.registry is not None and code in self.registry.libraries:
            unit = self.registry.libraries[code].admin_unit
            found += [c for c, lib in self.registry.libraries.items()
                      if lib.type in _PUBLIC and (lib.admin_unit == unit or lib.type == "provincial library")
                      and c != code]
        else:
            found += [c for c in self.by_code if c != code and self.profile[c] in _PUBLIC]
        return sorted({c for c in found if c in self.by_code and self.items.get(c)})

    # -- readers and cards
    def make_readers(self) -> None:
        for lib in self.libraries:
            code, profile = lib.code, self.profile[lib.code]
            rng = self.rng(code, "readers")
            n = max(3, round(READERS_BY_PROFILE[profile] * self.scale))
            public = profile in _PUBLIC
            groups = [g.code for g in self.groups_of(code)]
            valid = {code}
            for group in self.groups_of(code):
                valid.update(m for m in group.member_codes(self.end))
            out = []
            for k in range(1, n + 1):
                r = _Reader()
                r.library = code
                r.card = f"{code}-{k:05d}"
                r.koha_id = str(4_000_000 + _stable_int(f"{code}:{k}") % 1_000_000 * 10 + k % 10)
                r.category = rng.choices(("pupil", "teacher", "staff", "other"),
                                         weights=(35, 15, 0, 50) if public else (85, 12, 3, 0))[0]
                r.name = f"{rng.choice(_SURNAMES)} {rng.choice(_MIDDLE)} {rng.choice(_GIVEN)}"
                age = rng.randrange(6, 18) if r.category == "pupil" else rng.randrange(22, 60)
                r.birth = _dt.date(self.exported.year - age, rng.randrange(1, 13), rng.randrange(1, 29))
                r.klass = f"{rng.randrange(1, 13)}A{rng.randrange(1, 6)}" if r.category == "pupil" else None
                r.address = f"{rng.choice(_STREETS)}, {lib.name}"
                r.phone = f"09{rng.randrange(10_000_000, 99_999_999)}"
                new_this_year = rng.random() < 0.6
                r.issued = (self.start + _dt.timedelta(days=rng.randrange(0, 20)) if new_this_year
                            else _dt.date(self.start.year - rng.randrange(1, 3), 9, rng.randrange(5, 25)))
                r.expires = _dt.date(r.issued.year + (1 if r.category == "pupil" else 3), 8, 31)
                r.valid_at = groups
                r.valid_libraries = sorted(valid)
                out.append(r)
            self.readers[code] = out

    def write_cards(self) -> None:
        header = ["STT", "Số thẻ", "Họ và tên", "Ngày sinh", "Lớp", "Địa chỉ", "Số điện thoại", "Đối tượng",
                  "Ngày cấp", "Ngày hết hạn", "Nơi sử dụng"]
        for index, lib in enumerate(self.libraries):
            rows = [[k, r.card, r.name, _vn(r.birth), r.klass, r.address, r.phone, CATEGORY_VI[r.category],
                     _vn(r.issued), _vn(r.expires), "; ".join(r.valid_at)]
                    for k, r in enumerate(self.readers[lib.code], 1)]
            if index % 5 == 2:  # an injected error: a card that expires before it is issued
                rng = self.rng(lib.code, "bad-card")
                rows.append([len(rows) + 1, f"{lib.code}-X{rng.randrange(1000, 9999)}", "Lò Văn Lỗi", "01/01/2012",
                             "6A1", "Xóm Lỗi", "0911111111", "Học sinh", _vn(self.end), _vn(self.start), ""])
                self.quarantined[lib.code]["cards"] += 1
            self.emit(lib, "cards", ["DANH SÁCH THẺ BẠN ĐỌC", lib.name], header, rows, "csv")

    def emit(self, lib, kind: str, banner, header, rows, fmt: str) -> None:
        folder = lib.drop_folder / "circulation"
        name = {"cards": "the-ban-doc", "loans": "muon-tra", "ill": "muon-lien-thu-vien",
                "rotation": "luan-chuyen"}[kind]
        path = folder / f"{lib.code}-{name}-{self.exported:%Y%m%d}.{fmt}"
        data = _xlsx_bytes(banner, header, rows, self.exported) if fmt == "xlsx" else _csv_bytes(banner, header, rows)
        _write_if_changed(path, data)
        self.files[lib.code][kind] = Path(os.path.relpath(path.resolve(), self.out_root.resolve())).as_posix()
        self.rows[lib.code][kind] = len(rows)

    # -- rotation (before loans: rotated copies leave the sender's shelves)
    def make_rotation(self) -> dict[str, set[str]]:
        away: dict[str, set[str]] = defaultdict(set)
        if self.registry is None:
            return away
        for lib in self.libraries:
            if self.profile[lib.code] not in _PUBLIC or lib.code not in self.registry.libraries:
                continue
            rng = self.rng(lib.code, "rotation")
            unit = self.registry.libraries[lib.code].admin_unit
            schools = sorted(c for c, l in self.registry.libraries.items()
                             if l.admin_unit == unit and c in self.by_code and self.profile[c] not in _PUBLIC
                             and self.profile[c] != "MN")
            pool = [a for a, _ in self.items.get(lib.code, [])]
            rng.shuffle(pool)
            for b, receiver in enumerate(rng.sample(schools, min(2, len(schools)))):
                size = min(len(pool), max(3, round(rng.randrange(10, 30) * self.scale)))
                batch, pool = pool[:size], pool[size:]
                sent = self.start + _dt.timedelta(days=rng.randrange(3, 20))
                received = sent + _dt.timedelta(days=rng.randrange(1, 4))
                returned = received + _dt.timedelta(days=rng.randrange(30, 60))
                returned = returned if returned <= self.end else None
                ref = f"LC-{lib.code}-{self.start.year}-{b + 1:02d}"
                for item in batch:
                    away[lib.code].add(item)
                    self.rotation.append({"ref": ref, "from": lib.code, "to": receiver, "item": item, "sent": sent,
                                          "received": received, "returned": returned})
        return away

    def write_rotation(self) -> None:
        header = ["STT", "Mã đợt", "Thư viện gửi", "Thư viện nhận", "Số ĐKCB", "Ngày gửi", "Ngày nhận", "Ngày trả"]
        for lib in self.libraries:
            mine = [r for r in self.rotation if r["from"] == lib.code]
            if mine:
                rows = [[k, r["ref"], r["from"], r["to"], r["item"], _vn(r["sent"]), _vn(r["received"]),
                         _vn(r["returned"])] for k, r in enumerate(mine, 1)]
                self.emit(lib, "rotation", ["PHIẾU LUÂN CHUYỂN TÀI LIỆU", lib.name], header, rows, "csv")

    # -- loans
    def make_loans(self, away: dict[str, set[str]]) -> None:
        for lib in self.libraries:
            code = lib.code
            rng = self.rng(code, "loans")
            own = [(a, code, None, None) for a, _ in self.items.get(code, []) if a not in away[code]]
            rotated = [(r["item"], r["from"], _dt.datetime.combine(r["received"], _dt.time(7, 0)),
                        _dt.datetime.combine(r["returned"], _dt.time(7, 0)) if r["returned"] else None)
                       for r in self.rotation if r["to"] == code]
            if not own and not rotated:
                continue
            borrowers = list(self.readers[code])
            for other in self.libraries:  # visitors whose shared card is valid here
                if other.code != code:
                    borrowers += [r for r in self.readers[other.code] if code in r.valid_libraries and
                                  rng.random() < 0.15]
            plans = []
            for reader in borrowers:
                count = rng.choices((0, 1, 2, 3, 4, 5, 6), weights=(20, 20, 20, 15, 10, 8, 7))[0]
                plans += [(self.moment(rng, self.start, self.end), reader) for _ in range(count)]
            for rot in rotated:  # rotated copies are popular while they are here
                for _ in range(rng.randrange(0, 3)):
                    until = (rot[3] - _dt.timedelta(days=1)).date() if rot[3] else self.end
                    if rot[2].date() < until:
                        plans.append((self.moment(rng, rot[2].date() + _dt.timedelta(days=1), until),
                                      rng.choice(self.readers[code]), rot))
            plans.sort(key=lambda p: (p[0], p[1].card))
            busy: dict[tuple, _dt.datetime | None] = {}
            taken: set[tuple] = set()
            loan_days = {o: self.policy[o].loan_days for o in self.policy}
            for plan in plans:
                at, reader = plan[0], plan[1]
                if (reader.card, at) in taken:
                    continue
                if len(plan) == 3:
                    item, owner, back_by = plan[2][0], plan[2][1], plan[2][3]
                    if (owner, item) in busy and (busy[(owner, item)] is None or busy[(owner, item)] >= at):
                        continue
                else:
                    if not own:
                        continue
                    for _ in range(20):  # a copy on the shelf at that moment
                        candidate = rng.choice(own)[0]
                        back_then = busy.get((code, candidate), at)
                        if back_then is not None and ((code, candidate) not in busy or back_then < at):
                            break
                    else:
                        continue
                    item, owner, back_by = candidate, code, None
                days = loan_days.get(owner, 14)
                roll = rng.random()
                renewed = at + _dt.timedelta(days=rng.randrange(5, days), hours=1) if roll < 0.1 else None
                base = renewed or at
                if roll < 0.8:
                    back = base + _dt.timedelta(days=rng.randrange(1, days + 1), hours=rng.randrange(0, 3))
                elif roll < 0.9:
                    back = base + _dt.timedelta(days=days + rng.randrange(1, 20), hours=1)
                else:
                    back = None
                if back is not None and back > self.until:
                    back = None
                if renewed is not None and renewed > self.until:
                    renewed = None
                if back_by is not None and (back is None or back >= back_by):
                    back = back_by - _dt.timedelta(hours=2)
                    renewed = renewed if renewed is not None and renewed < back else None
                if back is not None and back <= at:
                    continue
                taken.add((reader.card, at))
                busy[(owner, item)] = back
                self.loans.append({"library": code, "owner": owner, "item": item, "reader": reader,
                                   "checkout": at, "renewed": renewed, "returned": back})

    def write_loans(self) -> None:
        for index, lib in enumerate(self.libraries):
            mine = sorted((l for l in self.loans if l["library"] == lib.code), key=lambda l: (l["checkout"], l["item"]))
            if not mine:
                continue
            rng = self.rng(lib.code, "loan-file")
            if self.profile[lib.code] in _PUBLIC:
                header = ["datetime", "branch", "type", "value", "other", "itemnumber", "itemtype", "location",
                          "borrowernumber", "ccode", "categorycode", "barcode", "cardnumber"]
                events = []
                for l in mine:
                    r = l["reader"]
                    for kind, at in (("issue", l["checkout"]), ("renew", l["renewed"]), ("return", l["returned"])):
                        if at is not None:
                            events.append((at, kind, l["item"], r))
                events.sort(key=lambda e: (e[0], e[2], e[1]))
                rows = [[at.strftime("%Y-%m-%d %H:%M:%S"), lib.code, kind, "0", "",
                         str(100000 + _stable_int(item) % 900000), "STK", "Phòng mượn", r.koha_id, "", 
                         CATEGORY_KOHA[r.category], item, r.card] for at, kind, item, r in events]
                self.emit(lib, "loans", [], header, rows, "csv")
                continue
            header = ["STT", "Họ và tên", "Lớp", "Mã bạn đọc", "Đối tượng", "Ngày sinh", "Số ĐKCB",
                      "Thư viện sở hữu", "Ngày mượn", "Hạn trả", "Ngày gia hạn", "Ngày trả", "Ghi chú"]
            rows = []
            for l in mine:
                r = l["reader"]
                due = (l["renewed"] or l["checkout"]).date() + _dt.timedelta(days=self.policy[l["owner"]].loan_days)
                rows.append([len(rows) + 1, r.name, r.klass, r.card, CATEGORY_VI[r.category], _vn(r.birth), l["item"],
                             l["owner"] if l["owner"] != lib.code else None, _vn(l["checkout"]), _vn(due),
                             _vn(l["renewed"]), _vn(l["returned"]), None])
            if index % 4 == 1 and mine:  # an injected error: returned before it was lent
                at = self.moment(rng, self.start + _dt.timedelta(days=5), self.end)
                rows.append([len(rows) + 1, "Đinh Thị Sai", "7A2", f"{lib.code}-Y{rng.randrange(1000, 9999)}",
                             "Học sinh", "02/02/2013", mine[0]["item"], None, _vn(at), None, None,
                             _vn(at - _dt.timedelta(days=3)), "nhập nhầm"])
                self.quarantined[lib.code]["loans"] += 1
            fmt = "xlsx" if index % 12 == 3 else "csv"
            banner = ["SỔ MƯỢN TRẢ TÀI LIỆU", lib.name, f"Năm học {self.start.year}-{self.start.year + 1}"]
            self.emit(lib, "loans", banner, header, rows, fmt)

    # -- ILL
    def make_ill(self) -> None:
        collections = {code: dict(items) for code, items in self.items.items()}
        for lib in self.libraries:
            code = lib.code
            partners = self.partners(code)
            if not partners:
                continue
            rng = self.rng(code, "ill")
            n = max(1, round(len(self.readers[code]) * 0.2))
            for k in range(n):
                reader = rng.choice(self.readers[code])
                owner = rng.choice(partners)
                item = rng.choice(self.items[owner])[0]
                level = self.access[owner].level_of(collections[owner].get(item), item)
                forbidden = NOT_LENDABLE_CHANNELS.get(level, set())
                allowed = [c for c in ("home_library", "at_owner", "post", "online") if c not in forbidden]
                weights = {"home_library": 50, "at_owner": 20, "post": 15, "online": 15}
                if allowed and rng.random() > 0.05:
                    channel = rng.choices(allowed, weights=[weights[c] for c in allowed])[0]
                else:  # the occasional request that ignores the owner's access level
                    channel = rng.choice(("home_library", "post"))
                requested = self.moment(rng, self.start, self.end)
                req = {"ref": f"YC-{code}-{k + 1:04d}", "library": code, "owner": owner, "item": item,
                       "reader": reader, "channel": channel, "requested": requested, "approved": None,
                       "shipped": None, "received": None, "returned": None, "closed": None, "status": None,
                       "reason": None, "forbidden": channel in forbidden}
                roll = rng.random()
                if roll < 0.08:
                    req.update(closed=requested + _dt.timedelta(days=1, hours=rng.randrange(0, 5)), status="Từ chối",
                               reason="Tài liệu đang được mượn")
                elif roll < 0.13:
                    req.update(closed=requested + _dt.timedelta(hours=rng.randrange(2, 30)), status="Hủy",
                               reason="Bạn đọc hủy yêu cầu")
                else:
                    t = requested + _dt.timedelta(hours=rng.randrange(2, 48))
                    req["approved"] = t
                    if channel in ("home_library", "post"):
                        t = t + _dt.timedelta(hours=rng.randrange(4, 72))
                        req["shipped"] = t
                    delay = {"home_library": (24, 96), "post": (72, 168), "at_owner": (4, 48),
                             "online": (1, 6)}[channel]
                    t = t + _dt.timedelta(hours=rng.randrange(*delay))
                    req["received"] = t
                    if rng.random() < 0.85:
                        days = self.policy[owner].loan_days
                        late = rng.random() < 0.1
                        req["returned"] = t + _dt.timedelta(days=(days + rng.randrange(2, 10)) if late
                                                            else rng.randrange(2, days + 1), hours=1)
                for step in ("approved", "shipped", "received", "returned", "closed"):
                    if req[step] is not None and req[step] > self.until:
                        for later in ("approved", "shipped", "received", "returned", "closed")[
                                ("approved", "shipped", "received", "returned", "closed").index(step):]:
                            req[later] = None
                        if step == "closed":
                            req.update(status=None, reason=None)
                        break
                req["forbidden"] = req["forbidden"] and req["status"] is None  # a refusal respects the level
                self.ill.append(req)

    def write_ill(self) -> None:
        header = ["STT", "Mã yêu cầu", "Thư viện yêu cầu", "Thư viện sở hữu", "Số ĐKCB", "Mã bạn đọc", "Họ và tên",
                  "Số điện thoại", "Đối tượng", "Ngày yêu cầu", "Ngày duyệt", "Ngày gửi", "Ngày nhận", "Ngày trả",
                  "Ngày hủy/từ chối", "Trạng thái", "Lý do", "Hình thức nhận"]
        for index, lib in enumerate(self.libraries):
            mine = [r for r in self.ill if r["library"] == lib.code]
            if not mine:
                continue
            rows = [[k, r["ref"], r["library"], r["owner"], r["item"], r["reader"].card, r["reader"].name,
                     r["reader"].phone, CATEGORY_VI[r["reader"].category], _vn(r["requested"]), _vn(r["approved"]),
                     _vn(r["shipped"]), _vn(r["received"]), _vn(r["returned"]), _vn(r["closed"]), r["status"],
                     r["reason"], CHANNEL_VI[r["channel"]]] for k, r in enumerate(mine, 1)]
            if index % 3 == 0:  # an injected error: an owning library that is not in the registry
                r = mine[0]
                rows.append([len(rows) + 1, f"YC-{lib.code}-9999", lib.code, "TV-KHONGCO", r["item"], r["reader"].card,
                             r["reader"].name, r["reader"].phone, "Học sinh", _vn(r["requested"]), None, None, None,
                             None, None, None, None, CHANNEL_VI["post"]])
                self.quarantined[lib.code]["ill"] += 1
            self.emit(lib, "ill", ["DANH SÁCH YÊU CẦU MƯỢN LIÊN THƯ VIỆN", lib.name], header, rows, "csv")

    # -- truth: the marts' figures computed here, independently of the SQL
    def truth(self) -> dict:
        month = lambda moment: moment.strftime("%Y-%m")  # noqa: E731
        observed = {}
        for l in self.loans:
            for at in (l["checkout"], l["renewed"], l["returned"]):
                if at is not None:
                    observed[l["library"]] = max(observed.get(l["library"], at), at)
        by_patron = defaultdict(list)
        for l in sorted(self.loans, key=lambda l: (l["checkout"], l["library"], l["item"])):
            policy = self.policy[l["owner"]]
            due = (l["renewed"] or l["checkout"]).date() + _dt.timedelta(days=policy.loan_days)
            l["overdue"] = (l["returned"] or observed[l["library"]]).date() > due
            earlier = by_patron[(l["reader"].card, l["owner"])]
            held = sum(1 for b in earlier if b["returned"] is None or b["returned"] > l["checkout"])
            l["over_limit"] = held >= policy.max_items
            earlier.append(l)
        ill_observed = {}
        for r in self.ill:
            for step in ("requested", "approved", "shipped", "received", "returned", "closed"):
                if r[step] is not None:
                    ill_observed[r["library"]] = max(ill_observed.get(r["library"], r[step]), r[step])
        ill_by_patron = defaultdict(list)
        for r in sorted((r for r in self.ill if r["received"] is not None), key=lambda r: r["received"]):
            policy = self.policy[r["owner"]]
            r["overdue"] = (r["returned"] or ill_observed[r["library"]]).date() > r["received"].date() + \
                _dt.timedelta(days=policy.loan_days)
            earlier = ill_by_patron[(r["reader"].card, r["owner"])]
            r["over_limit"] = sum(1 for b in earlier if b["returned"] is None or b["returned"] > r["received"]) \
                >= policy.max_items
            earlier.append(r)

        libraries = {}
        for lib in self.libraries:
            code = lib.code
            loans = [l for l in self.loans if l["library"] == code]
            ill = [r for r in self.ill if r["library"] == code]
            cards = self.readers[code]
            rotated = [r for r in self.rotation if r["to"] == code]
            months = sorted({month(l["checkout"]) for l in loans} | {month(r["requested"]) for r in ill}
                            | {c.issued.strftime("%Y-%m") for c in cards if self.start <= c.issued <= self.end}
                            | {r["received"].strftime("%Y-%m") for r in rotated if r["received"]})

            def figures(keep) -> dict:
                my_loans = [l for l in loans if keep(l["checkout"].date())]
                my_ill = [r for r in ill if keep(r["requested"].date())]
                filled = [r for r in my_ill if r["received"] is not None]
                turnaround = [_days(r["requested"], r["received"]) for r in filled]
                return {"loans": len(my_loans), "active_readers": len({l["reader"].card for l in my_loans}),
                        "ill_requests": len(my_ill), "ill_filled": len(filled),
                        "ill_median_turnaround_days": _half_up(median(turnaround)) if turnaround else None,
                        "cards_issued": sum(1 for c in cards if keep(c.issued)),
                        "rotated_items": sum(1 for r in rotated if r["received"] and keep(r["received"]))}

            entry = figures(lambda day: self.start <= day <= self.end)
            entry["by_month"] = {m: figures(lambda day, m=m: day.strftime("%Y-%m") == m) for m in months}
            entry.update(
                renewals=sum(1 for l in loans if l["renewed"]), returned=sum(1 for l in loans if l["returned"]),
                overdue_loans=sum(l["overdue"] for l in loans), over_limit_loans=sum(l["over_limit"] for l in loans),
                loans_of_rotated_items=sum(1 for l in loans if l["owner"] != code),
                ill_overdue=sum(1 for r in ill if r.get("overdue")),
                ill_over_limit=sum(1 for r in ill if r.get("over_limit")),
                ill_access_forbidden=sum(1 for r in ill if r["forbidden"]),
                cards=len(cards), files=dict(self.files.get(code, {})), rows=dict(self.rows.get(code, {})),
                quarantined=dict(self.quarantined.get(code, {})))
            libraries[code] = entry

        def ill_group(key) -> dict:
            groups = defaultdict(list)
            for r in self.ill:
                groups[key(r)].append(r)
            out = {}
            for name, reqs in sorted(groups.items()):
                filled = [r for r in reqs if r["received"] is not None]
                turnaround = [_days(r["requested"], r["received"]) for r in filled]
                out[name] = {"requests": len(reqs), "filled": len(filled),
                             "refused": sum(1 for r in reqs if r["status"] == "Từ chối"),
                             "cancelled": sum(1 for r in reqs if r["status"] == "Hủy"),
                             "median_turnaround_days": _half_up(median(turnaround)) if turnaround else None}
            return out

        card_use = defaultdict(lambda: {"readers": set(), "loans": 0})
        for l in self.loans:
            use = card_use[f"{l['reader'].library}>{l['library']}"]
            use["readers"].add(l["reader"].card)
            use["loans"] += 1
        loans_of_item = defaultdict(int)
        for l in self.loans:
            loans_of_item[(l["library"], l["owner"], l["item"])] += 1
        rotation = {}
        for r in self.rotation:
            entry = rotation.setdefault(r["ref"], {"from": r["from"], "to": r["to"], "items_sent": 0,
                                                   "items_received": 0, "items_returned": 0, "loans_at_receiver": 0})
            entry["items_sent"] += 1
            entry["items_received"] += r["received"] is not None
            entry["items_returned"] += r["returned"] is not None
            entry["loans_at_receiver"] += loans_of_item[(r["to"], r["from"], r["item"])]
        totals = {key: sum(e[key] for e in libraries.values())
                  for key in ("loans", "ill_requests", "ill_filled", "cards_issued", "rotated_items", "renewals",
                              "returned", "overdue_loans", "over_limit_loans")}
        totals.update(ill_overdue=sum(1 for r in self.ill if r.get("overdue")),
                      ill_over_limit=sum(1 for r in self.ill if r.get("over_limit")),
                      ill_access_forbidden=sum(1 for r in self.ill if r["forbidden"]),
                      quarantined=sum(sum(q.values()) for q in self.quarantined.values()))
        return {"window": {"start": self.start.isoformat(), "end": self.end.isoformat()},
                "libraries": libraries, "ill_by_channel": ill_group(lambda r: r["channel"]),
                "ill_pairs": ill_group(lambda r: f"{r['library']}>{r['owner']}"),
                "card_use": {k: {"readers": len(v["readers"]), "loans": v["loans"]}
                             for k, v in sorted(card_use.items())},
                "rotation": rotation, "totals": totals}


def generate_circulation(libraries, out_root: Path, library_truth: dict, *, scale: float, seed: int,
                         exported: _dt.date) -> dict:
    """Write every library's circulation exports under ``<drop folder>/circulation/``; return the ground truth."""
    province = _Province(libraries, Path(out_root), library_truth, scale, seed, exported)
    province.make_readers()
    away = province.make_rotation()
    province.make_loans(away)
    province.make_ill()
    province.write_cards()
    province.write_rotation()
    province.write_loans()
    province.write_ill()
    truth = province.truth()
    json.dumps(truth)  # JSON-safe by construction; fail here rather than in the manifest
    return truth
