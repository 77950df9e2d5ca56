"""Deterministic sample catalogue exports of the province's libraries, with a ground truth of injected defects.

:func:`generate_province` writes one MARC21 (ISO 2709) export per library into its drop folder and a
manifest ``ground_truth.json`` listing, per library, the records that carry a known defect. Tests and the demo
compare what the pipeline finds with that manifest.

How the sample is built:

* One pool of editions (bibliographic works) is drawn from the seed alone: 2018-curriculum textbooks of the
  three series with their teacher's books and workbooks, study aids, Vietnamese and translated literature,
  children's books and comics, history, science, reference, agriculture, local (Hòa Bình, Mường) documents
  and professional books for teachers and librarians. Every library samples its records from that pool by
  its type (a kindergarten holds children's and preschool professional books, an upper-secondary school
  grade 10-12 textbooks and study aids, a public library general collections), so the same edition, with the
  same ISBN, turns up in many libraries: the raw material of the union catalogue.
* Each library has its own random stream ``random.Random(seed + stable_int(code))`` (never ``hash()``), its
  own cataloguing habits (author headings in direct order "Nguyễn Nhật Ánh" or inverted "Nguyễn, Nhật Ánh",
  ISBD punctuation or not, 260 or 264, prefixed or plain 001, hyphenated ISBNs) and its own numbering of
  accession numbers (ĐKCB, 952$p, e.g. "STK.000123": STK reference, SGK textbook, SNV professional, TN
  children's). A library's file depends only on (its code and type, scale, seed): not on the other libraries.
* About 6 % of the records (index 0 never) get exactly one defect from :data:`DEFECT_RULES`; the defect types
  rotate through a per-library shuffled order so every rule occurs across a province.
* Like real school software, some libraries' MARC exports are not UTF-8 (:func:`export_encoding`, decided by
  the library code alone): TCVN3 ("ABC") under a blank leader/09 (pymarc reads it as MARC-8: "Hà Nội" →
  "Hæ Nǐ") or under one that claims UTF-8, VNI-Windows, Windows-1258 with combining tones, and UTF-8 in NFD.
  The ground truth names each library's ``encoding``; ingest must recover the same NFC text as from UTF-8.
  Characters an encoding lacks lose their diacritic, as they did on those PCs (:func:`legacy_text`).
* Public libraries hold a few **near-miss** editions in place of ordinary records (:data:`_NEAR_MISS`): books
  that differ only by a tone mark in the title ("Ma" / "Mà" / "Má"), by author (An / Anh), volume or edition
  year, each library one of a group; and write them in one of :data:`NEAR_MISS_RENDERINGS` ("hoà" for
  "hòa", without ISBN, "T. 1"), besides their own style (inverted names, ISBD, NFD exports). The ground truth lists the ``near_miss_pairs`` the union catalogue must never
  merge and the ``equivalent_pairs`` it should.
* Output is byte-identical across runs: the export date in the file names, 005 and 008 comes from the seed
  (``20261125`` → 2026-11-25), never from the clock. Records are streamed to the file as they are built; an
  unchanged export is not rewritten (its mtime stays, so the newest-export rule is not disturbed).
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import hashlib
import json
import os
import random
import re
import unicodedata
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from pymarc import Field, Indicators, MARCWriter, Record, Subfield

from lienthong.vietnamese import encode_legacy

__all__ = [
    "DEFECT_RATE",
    "DEFECT_RULES",
    "INCOMPLETE_RULES",
    "EXPORT_ENCODINGS",
    "LibrarySpec",
    "RECORDS_BY_TYPE",
    "export_date",
    "export_encoding",
    "legacy_text",
    "marc_bytes",
    "generate_province",
    "records_for",
]

DEFAULT_SEED = 20261125
DEFECT_RATE = 0.06

#: Every injected defect. A defect record carries exactly one of them.
DEFECT_RULES = (
    "missing_title",  # no 245
    "missing_author",  # no 100/110/700/710
    "missing_publication",  # no 260/264 (and 008 dates unknown, so no year either)
    "missing_keywords",  # no 653
    "missing_subject",  # no 650
    "missing_accession_number",  # 952 without $p, or no 952 at all
    "missing_call_number",  # no 082 and no 952$o
    "bad_isbn_checksum",  # 020$a ISBN-13 with a wrong check digit
    "duplicate_accession_number",  # an ĐKCB already used by an earlier record of the same library
)
#: The defects that make a record incomplete (one of the seven mandatory elements missing).
INCOMPLETE_RULES = DEFECT_RULES[:7]

#: How the sample's MARC exports are encoded: (encoding, what leader/09 claims) by bucket of a library's code.
EXPORT_ENCODINGS = (
    ("tcvn3", " "),  # the trap: a blank leader/09 says MARC-8
    ("tcvn3", "a"),  # an in-house tool that sets leader/09 to UTF-8 whatever it writes
    ("vni", " "),
    ("cp1258", " "),
    ("utf-8-nfd", "a"),
)
_ENCODING_BUCKETS = 20  # 1 in 20 libraries per entry above; the rest write UTF-8

#: Records per library at scale 1.0, by library type.
RECORDS_BY_TYPE = {
    "MN": 40,
    "TH": 60,
    "TH&THCS": 80,
    "THCS": 80,
    "PTDTNT THCS": 120,
    "THPT": 120,
    "PTDTNT THCS&THPT": 120,
    "district library": 150,
    "provincial library": 300,
}

# Which part of the pool a library type holds: levels of the editions it may sample and its mix of kinds.
_LEVELS_BY_TYPE = {
    "MN": {"MN"},
    "TH": {"TH"},
    "TH&THCS": {"TH", "THCS"},
    "THCS": {"THCS"},
    "PTDTNT THCS": {"THCS"},
    "THPT": {"THPT"},
    "PTDTNT THCS&THPT": {"THCS", "THPT"},
    "district library": {"PUB"},
    "provincial library": {"PUB"},
}
_KIND_MIX = {
    "MN": (("TN", 0.65), ("SNV", 0.35)),
    "TH": (("SGK", 0.35), ("STK", 0.25), ("TN", 0.30), ("SNV", 0.10)),
    "TH&THCS": (("SGK", 0.35), ("STK", 0.30), ("TN", 0.20), ("SNV", 0.15)),
    "THCS": (("SGK", 0.35), ("STK", 0.35), ("TN", 0.15), ("SNV", 0.15)),
    "PTDTNT THCS": (("SGK", 0.35), ("STK", 0.35), ("TN", 0.15), ("SNV", 0.15)),
    "THPT": (("SGK", 0.35), ("STK", 0.45), ("SNV", 0.15), ("TN", 0.05)),
    "PTDTNT THCS&THPT": (("SGK", 0.35), ("STK", 0.45), ("SNV", 0.15), ("TN", 0.05)),
    "district library": (("STK", 0.70), ("TN", 0.30)),
    "provincial library": (("STK", 0.80), ("TN", 0.15), ("SNV", 0.05)),
}
_PUBLIC_TYPES = {"district library", "provincial library"}
_COLLECTIONS_SCHOOL = {
    "SGK": "Kho sách giáo khoa", "STK": "Kho sách tham khảo", "SNV": "Kho sách nghiệp vụ",
    "TN": "Kho sách thiếu nhi",
}
_SHELVES_SCHOOL = ("Phòng đọc học sinh", "Phòng đọc giáo viên", "Kho mở", "Góc thư viện lớp học")
_SHELVES_PUBLIC = ("Phòng đọc tổng hợp", "Phòng mượn", "Phòng thiếu nhi", "Kho lưu")


@dataclass(frozen=True)
class LibrarySpec:
    code: str  # e.g. "THPT-LUONGSON"
    type: str  # one of RECORDS_BY_TYPE's keys (case-insensitive; close variants are recognised)
    name: str
    drop_folder: Path  # where this library's export goes (created by the generator)


# ----------------------------------------------------------------------------------------------- helpers
def _stable_int(text: str) -> int:
    """A process-independent integer of a string (``hash()`` is salted per process)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def _fold(text: str) -> str:
    """ASCII letters of a Vietnamese string: "Nguyễn" → "Nguyen", "Đà" → "Da"."""
    text = text.replace("đ", "d").replace("Đ", "D")
    return "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))


def _isbn13_check(first12: str) -> str:
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(first12))
    return str((10 - total % 10) % 10)


def export_date(seed: int) -> _dt.date:
    """The fixed export date of a seed: the seed itself when it reads as a date YYYYMMDD in 2025-2099
    (the default 20261125 → 2026-11-25), else a day in 2025-2029 derived from it."""
    text = str(seed)
    if len(text) == 8 and text.isdigit() and 2025 <= int(text[:4]) <= 2099:
        try:
            return _dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))
        except ValueError:
            pass
    return _dt.date(2025, 1, 1) + _dt.timedelta(days=seed % 1826)


def _profile(library_type: str) -> str:
    """The RECORDS_BY_TYPE key of a registry type ("THPT", "Thư viện huyện", "provincial library", ...)."""
    canonical = {key.casefold(): key for key in RECORDS_BY_TYPE}
    compact = " ".join(library_type.replace(" & ", "&").split()).casefold()
    if compact in canonical:
        return canonical[compact]
    folded = _fold(compact)
    if "tinh" in folded.split() or "province" in folded or "provincial" in folded:
        return "provincial library"
    if "library" in folded or "thu vien" in folded or "huyen" in folded or "district" in folded:
        return "district library"
    if "thcs" in folded and "thpt" in folded:
        return "PTDTNT THCS&THPT"
    if "thpt" in folded:
        return "THPT"
    if "th&thcs" in folded or ("tieu hoc" in folded and "thcs" in folded):
        return "TH&THCS"
    if "thcs" in folded:
        return "THCS"
    if folded.startswith("th") or "tieu hoc" in folded:
        return "TH"
    if "mn" in folded.split() or "mam non" in folded or "kindergarten" in folded:
        return "MN"
    raise ValueError(f"unknown library type {library_type!r}; expected one of {sorted(RECORDS_BY_TYPE)}")


def records_for(library_type: str, scale: float = 1.0) -> int:
    """Number of records a library of this type gets at this scale (at least 1)."""
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    return max(1, round(RECORDS_BY_TYPE[_profile(library_type)] * scale))


# ------------------------------------------------------------------------------------------- the pool
@dataclass(frozen=True)
class _Name:
    direct: str  # "Nguyễn Nhật Ánh"
    inverted: str | None  # "Nguyễn, Nhật Ánh"; None for pen names kept in direct order ("Tô Hoài")

    def heading(self, inverted: bool) -> tuple[str, str]:
        """(first indicator, heading) in the library's style."""
        if inverted and self.inverted:
            return "1", self.inverted
        return "0", self.direct


@dataclass(frozen=True)
class _Edition:
    kind: str  # SGK, STK, SNV, TN
    levels: frozenset
    title: str  # 245$a
    part: str | None  # 245$n ("Tập 1")
    subtitle: str | None  # 245$b
    main: _Name | None  # 100
    corporate: str | None  # 110 (when there is no personal main entry)
    added: tuple  # ((_Name, role), ...) → 700
    responsibility: str  # 245$c
    place: str
    publisher: str
    year: int
    edition: str | None  # 250
    isbn: str | None  # 13 digits
    isbn_split: tuple  # hyphenation groups of the ISBN
    price: int
    pages: int
    size: int
    illustrated: bool
    series: str | None  # 490
    ddc: str  # 082$a
    mark: str  # author/title mark, 082$b and the second part of 952$o
    keywords: tuple
    subjects: tuple  # ((650$a, 650$z or None, 650$v or None), ...)
    orig_lang: str | None  # 041$h of translations
    lit_form: str  # 008/33
    audience: str  # 008/22


_PUBLISHERS = {
    "gd": ("H.", "Nxb. Giáo dục Việt Nam", "0"),
    "kd": ("H.", "Nxb. Kim Đồng", "2"),
    "tre": ("Tp. Hồ Chí Minh", "Nxb. Trẻ", "1"),
    "vh": ("H.", "Nxb. Văn học", "69"),
    "qg": ("H.", "Nxb. Đại học Quốc gia Hà Nội", "62"),
    "hnv": ("H.", "Nxb. Hội Nhà văn", "53"),
    "dn": ("Đà Nẵng", "Nxb. Đà Nẵng", "84"),
    "sp": ("H.", "Nxb. Đại học Sư phạm", "54"),
    "ctqg": ("H.", "Nxb. Chính trị quốc gia Sự thật", "57"),
    "th": ("Tp. Hồ Chí Minh", "Nxb. Tổng hợp Thành phố Hồ Chí Minh", "58"),
    "vhdt": ("H.", "Nxb. Văn hóa dân tộc", "70"),
    "nn": ("H.", "Nxb. Nông nghiệp", "60"),
    "tn": ("H.", "Nxb. Thanh niên", "64"),
    "dt": ("H.", "Nxb. Dân trí", "88"),
    "tg": ("H.", "Nxb. Thế giới", "77"),
    "khxh": ("H.", "Nxb. Khoa học xã hội", "956"),
    "yh": ("H.", "Nxb. Y học", "66"),
    "hn": ("H.", "Nxb. Hà Nội", "55"),
}

_LV = {
    "M": frozenset({"MN", "TH", "PUB"}),  # picture books, preschool
    "m": frozenset({"MN"}),  # preschool professional
    "C": frozenset({"TH", "THCS", "PUB"}),  # children
    "A": frozenset({"TH", "THCS", "THPT", "PUB"}),  # every school and public libraries
    "S": frozenset({"THCS", "THPT", "PUB"}),  # teenagers and adults
    "H": frozenset({"THPT", "PUB"}),
    "P": frozenset({"PUB"}),
    "T": frozenset({"TH", "THCS", "THPT", "PUB"}),  # professional books for school teachers
    "t": frozenset({"TH", "PUB"}),  # ... for primary teachers
    "s": frozenset({"THCS", "THPT", "PUB"}),  # ... for secondary teachers
    "L": frozenset({"MN", "TH", "THCS", "THPT", "PUB"}),  # local documents: everyone
}

# Persons: key → (direct form, inverted form or None for pen names kept direct).
_PEOPLE = {
    "nna": ("Nguyễn Nhật Ánh", "Nguyễn, Nhật Ánh"), "toh": ("Tô Hoài", None),
    "vtp": ("Vũ Trọng Phụng", "Vũ, Trọng Phụng"), "ndu": ("Nguyễn Du", "Nguyễn, Du"),
    "hcm": ("Hồ Chí Minh", None), "nca": ("Nam Cao", None), "ntt": ("Ngô Tất Tố", "Ngô, Tất Tố"),
    "kla": ("Kim Lân", None), "nho": ("Nguyên Hồng", None), "tla": ("Thạch Lam", None),
    "ntu": ("Nguyễn Tuân", "Nguyễn, Tuân"), "dgi": ("Đoàn Giỏi", "Đoàn, Giỏi"),
    "pqu": ("Phùng Quán", "Phùng, Quán"), "vqu": ("Võ Quảng", "Võ, Quảng"),
    "tdk": ("Trần Đăng Khoa", "Trần, Đăng Khoa"), "bni": ("Bảo Ninh", None),
    "mvk": ("Ma Văn Kháng", "Ma, Văn Kháng"), "llu": ("Lê Lựu", "Lê, Lựu"),
    "dhu": ("Dương Hướng", "Dương, Hướng"), "nnt": ("Nguyễn Ngọc Tư", "Nguyễn, Ngọc Tư"),
    "nmc": ("Nguyễn Minh Châu", "Nguyễn, Minh Châu"), "nth": ("Nguyễn Thi", None),
    "ntt2": ("Nguyễn Trung Thành", None), "ngn": ("Nguyên Ngọc", None),
    "dtt": ("Đặng Thùy Trâm", "Đặng, Thùy Trâm"), "nvt": ("Nguyễn Văn Thạc", "Nguyễn, Văn Thạc"),
    "xdi": ("Xuân Diệu", None), "hca": ("Huy Cận", None), "thu": ("Tố Hữu", None),
    "clv": ("Chế Lan Viên", None), "qdu": ("Quang Dũng", None), "xqu": ("Xuân Quỳnh", None),
    "ndy": ("Nguyễn Duy", "Nguyễn, Duy"), "nkd": ("Nguyễn Khoa Điềm", "Nguyễn, Khoa Điềm"),
    "ntr": ("Nguyễn Trãi", "Nguyễn, Trãi"), "dtc": ("Đặng Trần Côn", "Đặng, Trần Côn"),
    "hxh": ("Hồ Xuân Hương", "Hồ, Xuân Hương"), "ndc": ("Nguyễn Đình Chiểu", "Nguyễn, Đình Chiểu"),
    "pdh": ("Phạm Đình Hổ", "Phạm, Đình Hổ"), "ndư": ("Nguyễn Dữ", "Nguyễn, Dữ"),
    "lht": ("Lê Hữu Trác", "Lê, Hữu Trác"), "nht": ("Nguyễn Huy Thiệp", "Nguyễn, Huy Thiệp"),
    "nhtu": ("Nguyễn Huy Tưởng", "Nguyễn, Huy Tưởng"), "lqv": ("Lưu Quang Vũ", "Lưu, Quang Vũ"),
    "stu": ("Sơn Tùng", None), "dkh": ("Duy Khán", None), "ndch": ("Nguyễn Đổng Chi", "Nguyễn, Đổng Chi"),
    "tbd": ("Trần Bạch Đằng", "Trần, Bạch Đằng"), "ttk": ("Trần Trọng Kim", "Trần, Trọng Kim"),
    "nsl": ("Ngô Sĩ Liên", "Ngô, Sĩ Liên"), "dda": ("Đào Duy Anh", "Đào, Duy Anh"),
    "vng": ("Võ Nguyên Giáp", "Võ, Nguyên Giáp"), "pkb": ("Phan Kế Bính", "Phan, Kế Bính"),
    "thq": ("Trương Hữu Quýnh", "Trương, Hữu Quýnh"), "hph": ("Hoàng Phê", "Hoàng, Phê"),
    "dtl": ("Đỗ Tất Lợi", "Đỗ, Tất Lợi"), "lvh": ("Lê Văn Hồng", "Lê, Văn Hồng"),
    "pvv": ("Phạm Viết Vượng", "Phạm, Viết Vượng"), "nck": ("Nguyễn Công Khanh", "Nguyễn, Công Khanh"),
    "nvk": ("Nguyễn Văn Khang", "Nguyễn, Văn Khang"), "lli": ("Lê Linh", "Lê, Linh"),
    "rng": ("Rosie Nguyễn", None), "tbs": ("Tony Buổi Sáng", None),
    "hugo": ("Victor Hugo", "Hugo, Victor"), "ste": ("Antoine de Saint-Exupéry", "Saint-Exupéry, Antoine de"),
    "coe": ("Paulo Coelho", "Coelho, Paulo"), "hem": ("Ernest Hemingway", "Hemingway, Ernest"),
    "mal": ("Hector Malot", "Malot, Hector"), "car": ("Dale Carnegie", "Carnegie, Dale"),
    "row": ("J. K. Rowling", "Rowling, J. K."), "ost": ("Nikolai Ostrovsky", "Ostrovsky, Nikolai"),
    "twa": ("Mark Twain", "Twain, Mark"), "def": ("Daniel Defoe", "Defoe, Daniel"),
    "ver": ("Jules Verne", "Verne, Jules"), "tol": ("Lev Tolstoy", "Tolstoy, Lev"),
    "kur": ("Kuroyanagi Tetsuko", "Kuroyanagi, Tetsuko"), "sep": ("Luis Sepúlveda", "Sepúlveda, Luis"),
    "ami": ("Edmondo De Amicis", "De Amicis, Edmondo"), "and": ("Hans Christian Andersen", "Andersen, Hans Christian"),
    "gri": ("Jacob Grimm", "Grimm, Jacob"), "col": ("Carlo Collodi", "Collodi, Carlo"),
    "lca": ("Lewis Carroll", "Carroll, Lewis"), "fuj": ("Fujiko F. Fujio", None),
    "haw": ("Stephen Hawking", "Hawking, Stephen"), "har": ("Yuval Noah Harari", "Harari, Yuval Noah"),
    "dia": ("Jared Diamond", "Diamond, Jared"), "sag": ("Carl Sagan", "Sagan, Carl"),
    "mur": ("Murakami Haruki", "Murakami, Haruki"), "sto": ("Harriet Beecher Stowe", "Stowe, Harriet Beecher"),
    "bro": ("Emily Brontë", "Brontë, Emily"), "mit": ("Margaret Mitchell", "Mitchell, Margaret"),
}

# Literature and general works: (title, person key, DDC, 008/33, kind, levels, publishers, first year,
# keywords, subject, subject geography, original language).
_WORKS = (
    ("Dế mèn phiêu lưu ký", "toh", "895.9223", "1", "TN", "C", "kd", 1941, "Truyện dài;Thiếu nhi;Loài vật", "Văn học thiếu nhi", "Việt Nam", None),
    ("Tôi thấy hoa vàng trên cỏ xanh", "nna", "895.9223", "f", "STK", "S", "tre", 2010, "Tiểu thuyết;Tuổi thơ;Làng quê", "Văn học hiện đại", "Việt Nam", None),
    ("Mắt biếc", "nna", "895.9223", "f", "STK", "S", "tre", 1990, "Tiểu thuyết;Tình yêu;Tuổi học trò", "Văn học hiện đại", "Việt Nam", None),
    ("Cho tôi xin một vé đi tuổi thơ", "nna", "895.9223", "f", "STK", "S", "tre", 2008, "Truyện dài;Tuổi thơ", "Văn học hiện đại", "Việt Nam", None),
    ("Cô gái đến từ hôm qua", "nna", "895.9223", "f", "STK", "S", "tre", 1989, "Truyện dài;Tuổi học trò", "Văn học hiện đại", "Việt Nam", None),
    ("Ngồi khóc trên cây", "nna", "895.9223", "f", "STK", "S", "tre", 2013, "Truyện dài;Tuổi học trò", "Văn học hiện đại", "Việt Nam", None),
    ("Tôi là Bêtô", "nna", "895.9223", "1", "TN", "C", "tre", 2007, "Truyện dài;Loài vật;Thiếu nhi", "Văn học thiếu nhi", "Việt Nam", None),
    ("Cây chuối non đi giày xanh", "nna", "895.9223", "f", "STK", "S", "tre", 2018, "Truyện dài;Tuổi thơ", "Văn học hiện đại", "Việt Nam", None),
    ("Số đỏ", "vtp", "895.9223", "f", "STK", "S", "vh;hnv;th", 1936, "Tiểu thuyết;Trào phúng", "Văn học hiện đại", "Việt Nam", None),
    ("Giông tố", "vtp", "895.9223", "f", "STK", "H", "vh;hnv", 1936, "Tiểu thuyết;Hiện thực phê phán", "Văn học hiện đại", "Việt Nam", None),
    ("Truyện Kiều", "ndu", "895.9221", "p", "STK", "S", "vh;gd;kd;hnv", 1820, "Truyện thơ;Thơ lục bát;Văn học trung đại", "Văn học trung đại", "Việt Nam", None),
    ("Nhật ký trong tù", "hcm", "895.9221", "p", "STK", "S", "vh;ctqg;kd", 1960, "Thơ;Hồ Chí Minh", "Thơ", "Việt Nam", None),
    ("Chí Phèo", "nca", "895.9223", "j", "STK", "S", "vh;hnv;kd", 1941, "Truyện ngắn;Hiện thực phê phán", "Văn học hiện đại", "Việt Nam", None),
    ("Sống mòn", "nca", "895.9223", "f", "STK", "H", "vh;hnv", 1956, "Tiểu thuyết;Trí thức tiểu tư sản", "Văn học hiện đại", "Việt Nam", None),
    ("Tắt đèn", "ntt", "895.9223", "f", "STK", "S", "vh;kd;hnv", 1939, "Tiểu thuyết;Nông thôn;Hiện thực phê phán", "Văn học hiện đại", "Việt Nam", None),
    ("Vợ nhặt", "kla", "895.9223", "j", "STK", "S", "vh;kd", 1962, "Truyện ngắn;Nạn đói 1945", "Văn học hiện đại", "Việt Nam", None),
    ("Những ngày thơ ấu", "nho", "895.9228", "m", "STK", "S", "kd;vh", 1940, "Hồi ký;Tuổi thơ", "Văn học hiện đại", "Việt Nam", None),
    ("Bỉ vỏ", "nho", "895.9223", "f", "STK", "H", "vh;hnv", 1938, "Tiểu thuyết;Hiện thực", "Văn học hiện đại", "Việt Nam", None),
    ("Gió đầu mùa", "tla", "895.9223", "j", "STK", "S", "kd;vh", 1937, "Truyện ngắn;Tự lực văn đoàn", "Văn học hiện đại", "Việt Nam", None),
    ("Hà Nội băm sáu phố phường", "tla", "895.9228", "e", "STK", "H", "vh;hn", 1943, "Tùy bút;Hà Nội;Ẩm thực", "Tùy bút", "Việt Nam", None),
    ("Vang bóng một thời", "ntu", "895.9223", "j", "STK", "H", "vh;hnv", 1940, "Truyện ngắn;Tùy bút", "Văn học hiện đại", "Việt Nam", None),
    ("Sông Đà", "ntu", "895.9228", "e", "STK", "S", "vh;hnv", 1960, "Tùy bút;Sông Đà;Tây Bắc", "Tùy bút", "Việt Nam", None),
    ("Đất rừng phương Nam", "dgi", "895.9223", "f", "TN", "C", "kd", 1957, "Truyện dài;Nam Bộ;Thiếu nhi", "Văn học thiếu nhi", "Việt Nam", None),
    ("Tuổi thơ dữ dội", "pqu", "895.9223", "f", "STK", "S", "kd", 1988, "Tiểu thuyết;Kháng chiến chống Pháp", "Văn học hiện đại", "Việt Nam", None),
    ("Quê nội", "vqu", "895.9223", "f", "TN", "C", "kd", 1974, "Truyện dài;Thiếu nhi;Làng quê", "Văn học thiếu nhi", "Việt Nam", None),
    ("Góc sân và khoảng trời", "tdk", "895.9221", "p", "TN", "C", "kd;gd", 1968, "Thơ;Thiếu nhi", "Thơ thiếu nhi", "Việt Nam", None),
    ("Nỗi buồn chiến tranh", "bni", "895.9223", "f", "STK", "H", "tre;hnv", 1990, "Tiểu thuyết;Chiến tranh", "Văn học hiện đại", "Việt Nam", None),
    ("Mùa lá rụng trong vườn", "mvk", "895.9223", "f", "STK", "H", "vh;hnv", 1985, "Tiểu thuyết;Gia đình", "Văn học hiện đại", "Việt Nam", None),
    ("Thời xa vắng", "llu", "895.9223", "f", "STK", "H", "vh;hnv", 1986, "Tiểu thuyết;Nông thôn", "Văn học hiện đại", "Việt Nam", None),
    ("Bến không chồng", "dhu", "895.9223", "f", "STK", "H", "vh;hnv", 1990, "Tiểu thuyết;Hậu chiến", "Văn học hiện đại", "Việt Nam", None),
    ("Cánh đồng bất tận", "nnt", "895.9223", "j", "STK", "H", "tre", 2005, "Truyện ngắn;Nam Bộ", "Văn học hiện đại", "Việt Nam", None),
    ("Chiếc thuyền ngoài xa", "nmc", "895.9223", "j", "STK", "S", "vh;hnv", 1983, "Truyện ngắn;Đổi mới", "Văn học hiện đại", "Việt Nam", None),
    ("Những đứa con trong gia đình", "nth", "895.9223", "j", "STK", "S", "vh;kd", 1966, "Truyện ngắn;Kháng chiến chống Mỹ", "Văn học hiện đại", "Việt Nam", None),
    ("Rừng xà nu", "ntt2", "895.9223", "j", "STK", "S", "vh;kd", 1965, "Truyện ngắn;Tây Nguyên", "Văn học hiện đại", "Việt Nam", None),
    ("Đất nước đứng lên", "ngn", "895.9223", "f", "STK", "S", "vh;kd", 1955, "Tiểu thuyết;Tây Nguyên", "Văn học hiện đại", "Việt Nam", None),
    ("Vợ chồng A Phủ", "toh", "895.9223", "j", "STK", "S", "vh;kd", 1952, "Truyện ngắn;Tây Bắc;Dân tộc thiểu số", "Văn học hiện đại", "Việt Nam", None),
    ("Nhật ký Đặng Thùy Trâm", "dtt", "895.9228", "m", "STK", "S", "hnv;tn", 2005, "Nhật ký;Chiến tranh", "Văn học hiện đại", "Việt Nam", None),
    ("Mãi mãi tuổi hai mươi", "nvt", "895.9228", "m", "STK", "S", "tn;hnv", 2005, "Nhật ký;Chiến tranh", "Văn học hiện đại", "Việt Nam", None),
    ("Thơ thơ", "xdi", "895.9221", "p", "STK", "H", "vh;hnv", 1938, "Thơ mới;Thơ tình", "Thơ", "Việt Nam", None),
    ("Lửa thiêng", "hca", "895.9221", "p", "STK", "H", "vh;hnv", 1940, "Thơ mới", "Thơ", "Việt Nam", None),
    ("Từ ấy", "thu", "895.9221", "p", "STK", "S", "vh;gd", 1946, "Thơ cách mạng", "Thơ", "Việt Nam", None),
    ("Việt Bắc", "thu", "895.9221", "p", "STK", "S", "vh;gd", 1954, "Thơ cách mạng;Kháng chiến chống Pháp", "Thơ", "Việt Nam", None),
    ("Điêu tàn", "clv", "895.9221", "p", "STK", "H", "vh;hnv", 1937, "Thơ mới", "Thơ", "Việt Nam", None),
    ("Mây đầu ô", "qdu", "895.9221", "p", "STK", "H", "vh;hnv", 1986, "Thơ;Tây Tiến", "Thơ", "Việt Nam", None),
    ("Gió Lào cát trắng", "xqu", "895.9221", "p", "STK", "H", "vh;hnv", 1974, "Thơ;Thơ tình", "Thơ", "Việt Nam", None),
    ("Ánh trăng", "ndy", "895.9221", "p", "STK", "S", "vh;hnv", 1984, "Thơ", "Thơ", "Việt Nam", None),
    ("Mặt đường khát vọng", "nkd", "895.9221", "p", "STK", "H", "vh;hnv", 1974, "Trường ca;Kháng chiến chống Mỹ", "Thơ", "Việt Nam", None),
    ("Quốc âm thi tập", "ntr", "895.9221", "p", "STK", "H", "vh;khxh", 1480, "Thơ Nôm;Văn học trung đại", "Văn học trung đại", "Việt Nam", None),
    ("Chinh phụ ngâm", "dtc", "895.9221", "p", "STK", "H", "vh;gd", 1741, "Ngâm khúc;Văn học trung đại", "Văn học trung đại", "Việt Nam", None),
    ("Thơ Hồ Xuân Hương", "hxh", "895.9221", "p", "STK", "H", "vh;hnv", 1800, "Thơ Nôm;Văn học trung đại", "Văn học trung đại", "Việt Nam", None),
    ("Lục Vân Tiên", "ndc", "895.9221", "p", "STK", "S", "vh;gd;kd", 1850, "Truyện thơ;Nam Bộ", "Văn học trung đại", "Việt Nam", None),
    ("Vũ trung tùy bút", "pdh", "895.9228", "e", "STK", "H", "vh;tre", 1810, "Tùy bút;Văn học trung đại", "Văn học trung đại", "Việt Nam", None),
    ("Truyền kỳ mạn lục", "ndư", "895.9223", "j", "STK", "H", "vh;tre", 1547, "Truyền kỳ;Văn học trung đại", "Văn học trung đại", "Việt Nam", None),
    ("Thượng kinh ký sự", "lht", "895.9228", "m", "STK", "H", "vh;tre", 1783, "Ký sự;Văn học trung đại", "Văn học trung đại", "Việt Nam", None),
    ("Tướng về hưu", "nht", "895.9223", "j", "STK", "H", "vh;hnv;tre", 1987, "Truyện ngắn;Đổi mới", "Văn học hiện đại", "Việt Nam", None),
    ("Vũ Như Tô", "nhtu", "895.9222", "d", "STK", "H", "vh;kd", 1941, "Kịch;Lịch sử", "Kịch", "Việt Nam", None),
    ("Lá cờ thêu sáu chữ vàng", "nhtu", "895.9223", "f", "TN", "C", "kd", 1960, "Truyện lịch sử;Thiếu nhi;Nhà Trần", "Văn học thiếu nhi", "Việt Nam", None),
    ("Hồn Trương Ba, da hàng thịt", "lqv", "895.9222", "d", "STK", "H", "vh;hnv", 1981, "Kịch", "Kịch", "Việt Nam", None),
    ("Búp sen xanh", "stu", "895.9223", "f", "STK", "A", "kd;gd", 1982, "Tiểu thuyết lịch sử;Hồ Chí Minh", "Văn học hiện đại", "Việt Nam", None),
    ("Tuổi thơ im lặng", "dkh", "895.9223", "f", "TN", "C", "kd", 1986, "Hồi ức;Tuổi thơ", "Văn học thiếu nhi", "Việt Nam", None),
    ("Kim Đồng", "toh", "895.9223", "f", "TN", "C", "kd", 1973, "Truyện;Thiếu nhi;Anh hùng", "Văn học thiếu nhi", "Việt Nam", None),
    ("Tuổi trẻ đáng giá bao nhiêu", "rng", "158.1", "0", "STK", "S", "hnv", 2016, "Kỹ năng sống;Thanh niên", "Kỹ năng sống", None, None),
    ("Cà phê cùng Tony", "tbs", "158.1", "0", "STK", "S", "tre", 2013, "Kỹ năng sống;Thanh niên", "Kỹ năng sống", None, None),
    ("Những người khốn khổ", "hugo", "843", "f", "STK", "H", "vh;hnv", 1862, "Tiểu thuyết;Văn học Pháp", "Văn học nước ngoài", "Pháp", "fre"),
    ("Hoàng tử bé", "ste", "843", "1", "TN", "A", "kd;hnv", 1943, "Truyện;Văn học Pháp", "Văn học thiếu nhi", "Pháp", "fre"),
    ("Nhà giả kim", "coe", "869.3", "f", "STK", "S", "hnv", 1988, "Tiểu thuyết;Văn học Braxin", "Văn học nước ngoài", "Braxin", "por"),
    ("Ông già và biển cả", "hem", "813", "f", "STK", "S", "vh;tre", 1952, "Tiểu thuyết;Văn học Mỹ", "Văn học nước ngoài", "Mỹ", "eng"),
    ("Không gia đình", "mal", "843", "f", "TN", "C", "kd;vh", 1878, "Tiểu thuyết;Văn học Pháp", "Văn học thiếu nhi", "Pháp", "fre"),
    ("Đắc nhân tâm", "car", "158.2", "0", "STK", "S", "th;tre", 1936, "Kỹ năng giao tiếp;Ứng xử", "Kỹ năng sống", None, "eng"),
    ("Harry Potter và hòn đá phù thủy", "row", "823", "f", "TN", "C", "tre", 1997, "Tiểu thuyết;Phép thuật;Văn học Anh", "Văn học thiếu nhi", "Anh", "eng"),
    ("Thép đã tôi thế đấy", "ost", "891.73", "f", "STK", "S", "vh;tn", 1934, "Tiểu thuyết;Văn học Nga", "Văn học nước ngoài", "Nga", "rus"),
    ("Những cuộc phiêu lưu của Tom Sawyer", "twa", "813", "f", "TN", "C", "kd;vh", 1876, "Tiểu thuyết;Văn học Mỹ", "Văn học thiếu nhi", "Mỹ", "eng"),
    ("Robinson Crusoe", "def", "823", "f", "TN", "C", "kd;vh", 1719, "Tiểu thuyết;Phiêu lưu;Văn học Anh", "Văn học thiếu nhi", "Anh", "eng"),
    ("Hai vạn dặm dưới đáy biển", "ver", "843", "f", "TN", "C", "kd;vh", 1870, "Khoa học viễn tưởng;Văn học Pháp", "Văn học thiếu nhi", "Pháp", "fre"),
    ("Chiến tranh và hòa bình", "tol", "891.73", "f", "STK", "P", "vh", 1869, "Tiểu thuyết;Văn học Nga", "Văn học nước ngoài", "Nga", "rus"),
    ("Totto-chan bên cửa sổ", "kur", "895.63", "1", "TN", "C", "hnv;kd", 1981, "Hồi ký;Giáo dục;Văn học Nhật Bản", "Văn học thiếu nhi", "Nhật Bản", "jpn"),
    ("Chuyện con mèo dạy hải âu bay", "sep", "863", "1", "TN", "C", "hnv", 1996, "Truyện;Loài vật;Văn học Chilê", "Văn học thiếu nhi", "Chilê", "spa"),
    ("Những tấm lòng cao cả", "ami", "853", "1", "TN", "C", "kd;vh", 1886, "Truyện;Giáo dục;Văn học Italia", "Văn học thiếu nhi", "Italia", "ita"),
    ("Truyện cổ Andersen", "and", "839.8136", "j", "TN", "M", "kd;vh", 1835, "Truyện cổ tích;Văn học Đan Mạch", "Văn học thiếu nhi", "Đan Mạch", "dan"),
    ("Truyện cổ Grimm", "gri", "398.20943", "j", "TN", "M", "kd;vh", 1812, "Truyện cổ tích;Văn học Đức", "Văn học thiếu nhi", "Đức", "ger"),
    ("Những cuộc phiêu lưu của Pinocchio", "col", "853", "1", "TN", "C", "kd", 1883, "Truyện;Văn học Italia", "Văn học thiếu nhi", "Italia", "ita"),
    ("Alice ở xứ sở thần tiên", "lca", "823", "1", "TN", "C", "kd;vh", 1865, "Truyện;Văn học Anh", "Văn học thiếu nhi", "Anh", "eng"),
    ("Túp lều bác Tôm", "sto", "813", "f", "STK", "H", "vh", 1852, "Tiểu thuyết;Văn học Mỹ", "Văn học nước ngoài", "Mỹ", "eng"),
    ("Đồi gió hú", "bro", "823", "f", "STK", "P", "vh;hnv", 1847, "Tiểu thuyết;Văn học Anh", "Văn học nước ngoài", "Anh", "eng"),
    ("Cuốn theo chiều gió", "mit", "813", "f", "STK", "P", "vh", 1936, "Tiểu thuyết;Văn học Mỹ", "Văn học nước ngoài", "Mỹ", "eng"),
    ("Rừng Na Uy", "mur", "895.63", "f", "STK", "P", "hnv", 1987, "Tiểu thuyết;Văn học Nhật Bản", "Văn học nước ngoài", "Nhật Bản", "jpn"),
    ("Việt Nam sử lược", "ttk", "959.7", "0", "STK", "S", "vh;tre;kd", 1920, "Lịch sử Việt Nam;Thông sử", "Lịch sử", "Việt Nam", None),
    ("Đại Việt sử ký toàn thư", "nsl", "959.7", "0", "STK", "H", "khxh;vh", 1479, "Lịch sử Việt Nam;Chính sử", "Lịch sử", "Việt Nam", None),
    ("Việt Nam văn hóa sử cương", "dda", "306.09597", "0", "STK", "H", "vh;th", 1938, "Văn hóa;Lịch sử văn hóa", "Văn hóa", "Việt Nam", None),
    ("Đất nước Việt Nam qua các đời", "dda", "911.597", "0", "STK", "P", "khxh;vh", 1964, "Địa lí lịch sử", "Địa lí lịch sử", "Việt Nam", None),
    ("Điện Biên Phủ - điểm hẹn lịch sử", "vng", "959.7041", "0", "STK", "S", "ctqg;qg", 2000, "Chiến dịch Điện Biên Phủ;Kháng chiến chống Pháp", "Lịch sử", "Việt Nam", None),
    ("Việt Nam phong tục", "pkb", "390.09597", "0", "STK", "S", "vh;th", 1915, "Phong tục tập quán", "Phong tục", "Việt Nam", None),
    ("Đại cương lịch sử Việt Nam", "thq", "959.7", "0", "STK", "H", "gd", 1998, "Lịch sử Việt Nam;Giáo trình", "Lịch sử", "Việt Nam", None),
    ("Từ điển tiếng Việt", "hph", "495.9223", "0", "STK", "A", "dn", 1988, "Từ điển;Tiếng Việt", "Tiếng Việt", None, None),
    ("Từ điển chính tả", "hph", "495.92281", "0", "STK", "A", "dn", 2003, "Từ điển;Chính tả;Tiếng Việt", "Tiếng Việt", None, None),
    ("Từ điển Hán Việt", "dda", "495.17", "0", "STK", "S", "khxh;vh", 1932, "Từ điển;Hán Việt", "Tiếng Việt", None, None),
    ("Từ điển Mường - Việt", "nvk", "495.9223", "0", "STK", "L", "vhdt", 2002, "Từ điển;Tiếng Mường;Dân tộc Mường", "Tiếng Mường", None, None),
    ("Những cây thuốc và vị thuốc Việt Nam", "dtl", "615.3", "0", "STK", "P", "yh", 1962, "Cây thuốc;Y học cổ truyền", "Dược liệu", "Việt Nam", None),
    ("Tâm lí học lứa tuổi và tâm lí học sư phạm", "lvh", "370.15", "0", "SNV", "T", "qg;sp", 1995, "Tâm lí học;Sư phạm", "Tâm lí học giáo dục", None, None),
    ("Giáo dục học", "pvv", "370", "0", "SNV", "T", "sp;qg", 2000, "Giáo dục học;Giáo trình", "Giáo dục học", None, None),
    ("Kiểm tra, đánh giá trong giáo dục", "nck", "371.26", "0", "SNV", "T", "sp", 2014, "Kiểm tra;Đánh giá;Giáo dục", "Đánh giá giáo dục", None, None),
    ("Lược sử thời gian", "haw", "523.1", "0", "STK", "H", "tre", 1988, "Vũ trụ học;Vật lí", "Vũ trụ học", None, "eng"),
    ("Sapiens: lược sử loài người", "har", "909", "0", "STK", "P", "tg", 2011, "Lịch sử loài người;Nhân loại học", "Lịch sử thế giới", None, "eng"),
    ("Súng, vi trùng và thép", "dia", "303.4", "0", "STK", "P", "tg", 1997, "Lịch sử xã hội;Nhân loại học", "Lịch sử thế giới", None, "eng"),
    ("Vũ trụ", "sag", "520", "0", "STK", "H", "tre;tg", 1980, "Thiên văn học;Vũ trụ", "Thiên văn học", None, "eng"),
    ("Kho tàng truyện cổ tích Việt Nam", "ndch", "398.209597", "j", "STK", "A", "gd;khxh", 1958, "Truyện cổ tích;Văn học dân gian", "Văn học dân gian", "Việt Nam", None),
)

# Textbooks of the 2018 curriculum: subject → (DDC, subject heading, grades, volumes for the grades).
_TEXTBOOK_SUBJECTS = (
    ("Tiếng Việt", "495.922", "Tiếng Việt", range(1, 6), 2),
    ("Toán", "510", "Toán học", range(1, 10), 2),
    ("Toán", "510", "Toán học", range(10, 13), 1),
    ("Đạo đức", "170", "Đạo đức", range(1, 6), 1),
    ("Tự nhiên và Xã hội", "372.35", "Tự nhiên và xã hội", range(1, 4), 1),
    ("Khoa học", "500", "Khoa học", range(4, 6), 1),
    ("Lịch sử và Địa lí", "900", "Lịch sử", range(4, 10), 1),
    ("Tin học", "004", "Tin học", range(3, 13), 1),
    ("Công nghệ", "600", "Công nghệ", range(3, 13), 1),
    ("Tiếng Anh", "428", "Tiếng Anh", range(3, 13), 1),
    ("Âm nhạc", "780", "Âm nhạc", range(1, 13), 1),
    ("Mĩ thuật", "741", "Mĩ thuật", range(1, 13), 1),
    ("Giáo dục thể chất", "796", "Giáo dục thể chất", range(1, 13), 1),
    ("Hoạt động trải nghiệm", "373.1", "Hoạt động trải nghiệm", range(1, 6), 1),
    ("Hoạt động trải nghiệm, hướng nghiệp", "373.1", "Hoạt động trải nghiệm", range(6, 13), 1),
    ("Ngữ văn", "807", "Ngữ văn", range(6, 13), 2),
    ("Khoa học tự nhiên", "500", "Khoa học tự nhiên", range(6, 10), 1),
    ("Giáo dục công dân", "170", "Giáo dục công dân", range(6, 10), 1),
    ("Vật lí", "530", "Vật lí", range(10, 13), 1),
    ("Hoá học", "540", "Hoá học", range(10, 13), 1),
    ("Sinh học", "570", "Sinh học", range(10, 13), 1),
    ("Lịch sử", "959.7", "Lịch sử", range(10, 13), 1),
    ("Địa lí", "910", "Địa lí", range(10, 13), 1),
    ("Giáo dục kinh tế và pháp luật", "340", "Giáo dục kinh tế và pháp luật", range(10, 13), 1),
    ("Giáo dục quốc phòng và an ninh", "355", "Giáo dục quốc phòng và an ninh", range(10, 13), 1),
)
_CORE_SUBJECTS = {"Tiếng Việt", "Toán", "Ngữ văn", "Tiếng Anh", "Khoa học tự nhiên", "Vật lí", "Hoá học",
                  "Sinh học", "Lịch sử", "Địa lí", "Lịch sử và Địa lí", "Tin học", "Khoa học"}
_SERIES = (("Kết nối tri thức với cuộc sống", "gd"), ("Chân trời sáng tạo", "gd"), ("Cánh diều", "sp"))
# The year each grade's new textbooks came into use.
_ROLLOUT = {1: 2020, 2: 2021, 6: 2021, 3: 2022, 7: 2022, 10: 2022, 4: 2023, 8: 2023, 11: 2023, 5: 2024, 9: 2024,
            12: 2024}

_FOLK_TALES = (
    "Sự tích Hồ Gươm", "Thánh Gióng", "Sơn Tinh, Thủy Tinh", "Tấm Cám", "Thạch Sanh", "Cây khế",
    "Sự tích trầu cau", "Sự tích dưa hấu", "Con Rồng cháu Tiên", "Sọ Dừa", "Cây tre trăm đốt",
    "Chú Cuội cung trăng", "Sự tích bánh chưng, bánh giầy", "Sự tích chú Cuội", "Ai mua hành tôi",
    "Sự tích con muỗi", "Thầy bói xem voi", "Đeo nhạc cho mèo",
)
_PRESCHOOL_PREFIXES = ("Bé khám phá", "Bé tập tô màu", "Bé kể chuyện", "Bé học nói", "Bé làm quen")
_PRESCHOOL_TOPICS = (
    "Con vật nuôi trong gia đình", "Rau, củ, quả", "Các loài hoa", "Phương tiện giao thông", "Mùa xuân",
    "Gia đình của bé", "Trường mầm non", "Nghề nghiệp", "Nước và hiện tượng tự nhiên", "Động vật sống trong rừng",
    "Quê hương, đất nước, Bác Hồ", "Côn trùng và chim", "Chữ cái", "Con số", "Hình và màu sắc",
)
_COMIC_SERIES = (  # (title, person key, DDC, volumes, publisher, original language, keywords, levels)
    ("Thần đồng Đất Việt", "lli", "741.59597", 40, "tre", None, "Truyện tranh;Trạng nguyên;Thiếu nhi", "C"),
    ("Doraemon", "fuj", "741.5952", 45, "kd", "jpn", "Truyện tranh;Văn học Nhật Bản;Thiếu nhi", "C"),
    ("Lịch sử Việt Nam bằng tranh", "tbd", "959.7", 20, "tre", None, "Truyện tranh;Lịch sử Việt Nam", "A"),
)
_WHY_TOPICS = ("Động vật", "Thực vật", "Vũ trụ", "Cơ thể người", "Trái Đất", "Khoa học kỹ thuật", "Môi trường",
               "Toán học")
_PRACTICAL = (  # (title, DDC, keywords, subject, publisher) written by generated authors; public libraries
    ("Kỹ thuật trồng và chăm sóc cây cam", "634.31", "Cây cam;Cam Cao Phong;Trồng trọt", "Cây ăn quả", "nn"),
    ("Kỹ thuật nuôi cá lồng trên hồ chứa", "639.31", "Nuôi cá lồng;Hồ thủy điện;Thủy sản", "Thủy sản", "nn"),
    ("Kỹ thuật trồng mía", "633.61", "Cây mía;Trồng trọt", "Cây công nghiệp", "nn"),
    ("Kỹ thuật chăn nuôi lợn", "636.4", "Chăn nuôi;Lợn", "Chăn nuôi", "nn"),
    ("Phòng trừ sâu bệnh hại cây trồng", "632", "Sâu bệnh;Bảo vệ thực vật", "Bảo vệ thực vật", "nn"),
    ("Kỹ thuật trồng rừng keo", "634.9", "Trồng rừng;Cây keo;Lâm nghiệp", "Lâm nghiệp", "nn"),
    ("Chăn nuôi gà thả vườn", "636.5", "Chăn nuôi;Gà", "Chăn nuôi", "nn"),
    ("Trồng rau an toàn", "635", "Rau sạch;Trồng trọt", "Rau", "nn"),
    ("Sơ cứu và cấp cứu ban đầu", "616.0252", "Sơ cứu;Cấp cứu", "Y học", "yh"),
    ("Chăm sóc sức khỏe trẻ em", "618.92", "Sức khỏe;Trẻ em;Dinh dưỡng", "Y học", "yh"),
    ("Hỏi đáp pháp luật về đất đai", "346.04", "Pháp luật;Đất đai;Hỏi đáp", "Pháp luật", "ctqg"),
    ("Tìm hiểu Luật Giao thông đường bộ", "343.09", "Pháp luật;Giao thông", "Pháp luật", "ctqg"),
    ("Hỏi đáp về phòng, chống ma túy", "362.29", "Ma túy;Phòng chống tệ nạn", "Tệ nạn xã hội", "ctqg"),
    ("Nghề dệt thổ cẩm truyền thống", "746.1", "Thổ cẩm;Nghề thủ công;Dân tộc thiểu số", "Nghề thủ công", "vhdt"),
    ("Du lịch cộng đồng ở miền núi phía Bắc", "338.4791", "Du lịch cộng đồng;Miền núi", "Du lịch", "tg"),
)
_LOCAL = (  # (title, DDC, keywords, subject, publisher, corporate author or None, levels)
    ("Địa chí Hòa Bình", "915.9719", "Địa chí;Hòa Bình", "Địa chí", "ctqg", "Tỉnh ủy Hòa Bình", "P"),
    ("Lịch sử Đảng bộ tỉnh Hòa Bình", "324.2597075", "Lịch sử Đảng bộ;Hòa Bình", "Lịch sử Đảng", "ctqg",
     "Ban Chấp hành Đảng bộ tỉnh Hòa Bình", "L"),
    ("Mo Mường", "398.209597", "Mo Mường;Văn học dân gian;Dân tộc Mường", "Văn học dân gian", "vhdt", None, "P"),
    ("Đẻ đất đẻ nước", "398.209597", "Sử thi;Dân tộc Mường;Văn học dân gian", "Văn học dân gian", "vhdt", None, "L"),
    ("Văn hóa truyền thống dân tộc Mường", "305.89592", "Văn hóa;Dân tộc Mường", "Văn hóa dân tộc", "vhdt", None, "L"),
    ("Truyện cổ dân tộc Mường", "398.209597", "Truyện cổ;Dân tộc Mường", "Văn học dân gian", "vhdt", None, "L"),
    ("Lễ hội truyền thống các dân tộc tỉnh Hòa Bình", "394.2609597", "Lễ hội;Hòa Bình", "Lễ hội", "vhdt", None, "P"),
    ("Thủy điện Hòa Bình - công trình thế kỷ", "621.312134", "Thủy điện;Sông Đà;Hòa Bình", "Thủy điện", "ctqg",
     None, "L"),
    ("Văn hóa Hòa Bình", "930.1", "Khảo cổ học;Văn hóa Hòa Bình;Thời đại đồ đá", "Khảo cổ học", "khxh", None, "S"),
    ("Danh nhân Hòa Bình", "920.0597", "Danh nhân;Hòa Bình", "Tiểu sử", "vhdt", None, "L"),
)
_PROFESSIONAL = (  # (title, DDC, keywords, subject, publisher, corporate author or None, levels)
    ("Chương trình giáo dục phổ thông tổng thể", "375", "Chương trình giáo dục;Giáo dục phổ thông",
     "Chương trình giáo dục", "gd", "Bộ Giáo dục và Đào tạo", "T"),
    ("Dạy học tích cực: một số phương pháp và kĩ thuật dạy học", "371.3", "Phương pháp dạy học;Dạy học tích cực",
     "Phương pháp dạy học", "sp", "Bộ Giáo dục và Đào tạo", "T"),
    ("Hướng dẫn nghiệp vụ thư viện trường học", "027.8", "Thư viện trường học;Nghiệp vụ thư viện",
     "Thư viện học", "gd", None, "L"),
    ("Giáo dục kĩ năng sống cho học sinh tiểu học", "372.37", "Kĩ năng sống;Tiểu học", "Giáo dục tiểu học", "gd",
     None, "t"),
    ("Phương pháp dạy học môn Toán ở tiểu học", "372.7", "Phương pháp dạy học;Toán;Tiểu học", "Giáo dục tiểu học",
     "sp", None, "t"),
    ("Dạy học phát triển năng lực môn Ngữ văn", "807.12", "Phương pháp dạy học;Ngữ văn;Năng lực",
     "Phương pháp dạy học", "sp", None, "s"),
    ("Công tác chủ nhiệm lớp ở trường phổ thông", "371.102", "Giáo viên chủ nhiệm;Quản lí lớp học",
     "Quản lí giáo dục", "gd", None, "T"),
    ("Ứng dụng công nghệ thông tin trong dạy học", "371.334", "Công nghệ thông tin;Dạy học", "Phương pháp dạy học",
     "qg", None, "T"),
    ("Giáo dục hòa nhập cho học sinh khuyết tật", "371.9", "Giáo dục hòa nhập;Học sinh khuyết tật",
     "Giáo dục đặc biệt", "gd", None, "T"),
    ("Chương trình giáo dục mầm non", "372.21", "Chương trình giáo dục;Mầm non", "Giáo dục mầm non", "gd",
     "Bộ Giáo dục và Đào tạo", "m"),
    ("Hướng dẫn tổ chức thực hiện chương trình giáo dục mầm non", "372.21", "Mầm non;Chương trình giáo dục",
     "Giáo dục mầm non", "gd", None, "m"),
    ("Tổ chức hoạt động vui chơi cho trẻ mầm non", "372.21", "Mầm non;Hoạt động vui chơi", "Giáo dục mầm non", "gd",
     None, "m"),
    ("Dinh dưỡng và vệ sinh an toàn thực phẩm cho trẻ mầm non", "613.2083", "Dinh dưỡng;Mầm non;Vệ sinh an toàn thực phẩm",
     "Giáo dục mầm non", "gd", None, "m"),
    ("Phát triển ngôn ngữ cho trẻ mầm non", "372.6", "Ngôn ngữ;Mầm non", "Giáo dục mầm non", "sp", None, "m"),
    ("Giáo dục âm nhạc cho trẻ mầm non", "372.87", "Âm nhạc;Mầm non", "Giáo dục mầm non", "sp", None, "m"),
    ("Trò chơi dân gian cho trẻ mầm non", "372.21", "Trò chơi dân gian;Mầm non", "Giáo dục mầm non", "gd", None,
     "m"),
    ("Tăng cường tiếng Việt cho trẻ em vùng dân tộc thiểu số", "372.6", "Tiếng Việt;Dân tộc thiểu số;Mầm non",
     "Giáo dục mầm non", "gd", None, "m"),
    ("Tạo hình cho trẻ mầm non", "372.52", "Tạo hình;Mĩ thuật;Mầm non", "Giáo dục mầm non", "sp", None, "m"),
    ("Giáo dục phát triển vận động cho trẻ mầm non", "372.86", "Vận động;Mầm non", "Giáo dục mầm non", "sp", None,
     "m"),
    ("Đánh giá sự phát triển của trẻ mầm non", "372.21", "Đánh giá;Mầm non", "Giáo dục mầm non", "gd", None, "m"),
    ("Làm đồ dùng, đồ chơi từ nguyên vật liệu tái chế", "372.5", "Đồ chơi;Tái chế;Mầm non", "Giáo dục mầm non",
     "gd", None, "m"),
)

_SURNAMES = ("Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Phan", "Vũ", "Đặng", "Bùi", "Đỗ", "Hồ", "Ngô", "Dương",
             "Đinh", "Quách", "Hà", "Lương", "Trịnh", "Đào", "Cao")
_MIDDLES = ("Văn", "Thị", "Đức", "Minh", "Thanh", "Ngọc", "Hữu", "Quang", "Thu", "Hồng", "Xuân", "Mạnh", "Thị Thu",
            "Thị Hồng", "Đình", "Kim")
_GIVENS = ("Anh", "Bình", "Cường", "Dũng", "Giang", "Hà", "Hải", "Hạnh", "Hoa", "Hùng", "Hương", "Khoa", "Lan",
           "Linh", "Long", "Mai", "Nam", "Nga", "Phương", "Quân", "Sơn", "Tâm", "Thảo", "Thắng", "Thủy", "Trang",
           "Trung", "Tuấn", "Tùng", "Yến", "Khải", "Ngân", "Huyền", "Việt")


def _gen_name(rng: random.Random) -> _Name:
    surname, middle, given = rng.choice(_SURNAMES), rng.choice(_MIDDLES), rng.choice(_GIVENS)
    return _Name(f"{surname} {middle} {given}", f"{surname}, {middle} {given}")


def _mark(heading: str) -> str:
    """A Vietnamese-style author/title mark ("Nguyễn Nhật Ánh" → "NG…A"): initial consonant cluster of the first
    word, three digits from that word, first letter of the last word."""
    words = [w for w in _fold(heading).upper().replace(",", " ").replace("-", " ").split() if w[0].isalnum()]
    first = words[0] if words else "X"
    cluster = next((c for c in ("NGH", "NG", "NH", "CH", "GH", "GI", "KH", "PH", "QU", "TH", "TR")
                    if first.startswith(c)), first[0])
    number = 100 + zlib.crc32(first.encode("ascii")) % 900
    lettered = [w for w in words[1:] if w[0].isalpha()]
    tail = lettered[-1][0] if lettered else ""
    return f"{cluster}{number}{tail}"


class _PoolBuilder:
    def __init__(self, seed: int):
        self.rng = random.Random(seed + _stable_int("lienthong.demo pool"))
        self.isbns: set[str] = set()
        self.editions: list[_Edition] = []

    def year(self, first: int, low: int = 1990) -> int:
        low = max(low, first)
        if low >= 2025:
            return 2025
        return 2025 - int(self.rng.random() ** 2 * (2025 - low + 1))

    def isbn(self, publisher: str, year: int) -> tuple[str | None, tuple]:
        """A unique ISBN-13 978-604-… for most books published since 2008 (none for older ones, as in Vietnam)."""
        if year < 2008 or self.rng.random() < 0.04:
            return None, ()
        registrant = _PUBLISHERS[publisher][2]
        while True:
            title_digits = "".join(self.rng.choice("0123456789") for _ in range(6 - len(registrant)))
            first12 = "978604" + registrant + title_digits
            if first12 not in self.isbns:
                self.isbns.add(first12)
                return first12 + _isbn13_check(first12), ("978", "604", registrant, title_digits)

    def add(self, *, kind, levels, title, publisher, year, ddc, keywords, subjects, main=None, corporate=None,
            added=(), responsibility="", part=None, subtitle=None, edition=None, series=None, orig_lang=None,
            lit_form="0", audience=" ", pages=(60, 400), size=(19, 24), illustrated=None):
        place, publisher_name, _ = _PUBLISHERS[publisher]
        isbn, split = self.isbn(publisher, year)
        heading = main.direct if main else corporate or title  # the main entry the mark is made from
        rng = self.rng
        self.editions.append(_Edition(
            kind=kind, levels=_LV[levels] if isinstance(levels, str) else frozenset(levels), title=title, part=part,
            subtitle=subtitle, main=main, corporate=corporate, added=tuple(added), responsibility=responsibility,
            place=place, publisher=publisher_name, year=year, edition=edition, isbn=isbn, isbn_split=split,
            price=rng.randrange(15, 250) * 1000, pages=rng.randrange(*pages), size=rng.randrange(*size) if
            isinstance(size, tuple) else size,
            illustrated=rng.random() < 0.5 if illustrated is None else illustrated, series=series, ddc=ddc,
            mark=_mark(heading), keywords=tuple(keywords), subjects=tuple(subjects), orig_lang=orig_lang,
            lit_form=lit_form, audience=audience,
        ))


def _reprint(rng: random.Random) -> str | None:
    n = rng.choice((0, 0, 0, 1, 2, 3, 5))
    return f"Tái bản lần thứ {n}" if n else None


@functools.lru_cache(maxsize=4)
def _pool(seed: int) -> tuple[_Edition, ...]:
    """Every edition any library may hold, drawn from the seed alone (so shared across libraries)."""
    b = _PoolBuilder(seed)
    rng = b.rng
    people = {key: _Name(d, i) for key, (d, i) in _PEOPLE.items()}

    # Textbooks, teacher's books and workbooks of the three series.
    for series, publisher in _SERIES:
        teams: dict[str, tuple[_Name, _Name]] = {}
        for subject, ddc, heading, grades, volumes in _TEXTBOOK_SUBJECTS:
            team = teams.setdefault(subject, (_gen_name(rng), _gen_name(rng)))
            for grade in grades:
                level = "TH" if grade <= 5 else "THCS" if grade <= 9 else "THPT"
                audience = "b" if grade <= 5 else "c" if grade <= 9 else "d"
                title = f"{subject} {grade}"
                resp = f"{team[0].direct} (tổng ch.b.), {team[1].direct} (ch.b.)"
                added = ((team[0], "tổng chủ biên"), (team[1], "chủ biên"))
                parts = [f"Tập {v}" for v in range(1, volumes + 1)] if volumes > 1 else [None]
                for part in parts:
                    common = dict(levels={level}, title=title, part=part, publisher=publisher, ddc=ddc,
                                  added=added, responsibility=resp, series=series, audience=audience)
                    b.add(kind="SGK", year=b.year(_ROLLOUT[grade], _ROLLOUT[grade]),
                          keywords=(subject, f"Lớp {grade}", "Sách giáo khoa"),
                          subjects=((heading, None, "Sách giáo khoa"),), pages=(60, 200), size=(26, 28),
                          illustrated=True, **common)
                    if subject in _CORE_SUBJECTS:
                        b.add(kind="SNV", year=b.year(_ROLLOUT[grade], _ROLLOUT[grade]), subtitle="sách giáo viên",
                              keywords=(subject, f"Lớp {grade}", "Sách giáo viên"),
                              subjects=((heading, None, "Sách giáo viên"),), pages=(80, 260), size=(24, 28),
                              **common)
                        wb = dict(common, title=f"Bài tập {subject} {grade}")
                        b.add(kind="STK", year=b.year(_ROLLOUT[grade], _ROLLOUT[grade]),
                              keywords=(subject, f"Lớp {grade}", "Bài tập"),
                              subjects=((heading, None, "Sách đọc thêm"),), pages=(60, 180), size=(24, 28), **wb)

    # Study aids from other publishers.
    for subject, ddc, heading, grades, _ in _TEXTBOOK_SUBJECTS:
        if subject not in _CORE_SUBJECTS:
            continue
        for grade in grades:
            level = "TH" if grade <= 5 else "THCS" if grade <= 9 else "THPT"
            author = _gen_name(rng)
            publisher = rng.choice(("qg", "sp", "dt", "tn", "hn"))
            b.add(kind="STK", levels={level} if grade <= 5 else {level, "PUB"},
                  title=f"Để học tốt {subject} {grade}", publisher=publisher,
                  year=b.year(_ROLLOUT[grade], _ROLLOUT[grade]), ddc=ddc, main=author,
                  responsibility=author.direct, keywords=(subject, f"Lớp {grade}", "Sách tham khảo"),
                  subjects=((heading, None, "Sách đọc thêm"),))
            if grade in (5, 9, 11, 12):
                author = _gen_name(rng)
                b.add(kind="STK", levels={level, "PUB"}, title=f"Bồi dưỡng học sinh giỏi {subject} {grade}",
                      publisher=rng.choice(("qg", "sp", "dt")), year=b.year(2015, 2015), ddc=ddc, main=author,
                      responsibility=author.direct, edition=_reprint(rng),
                      keywords=(subject, f"Lớp {grade}", "Học sinh giỏi"),
                      subjects=((heading, None, "Sách đọc thêm"),))
            if grade == 12:
                author = _gen_name(rng)
                b.add(kind="STK", levels={"THPT", "PUB"},
                      title=f"Ôn luyện thi tốt nghiệp trung học phổ thông môn {subject}",
                      publisher=rng.choice(("qg", "sp", "gd")), year=b.year(2017, 2017), ddc=ddc, main=author,
                      responsibility=author.direct, edition=_reprint(rng),
                      keywords=(subject, "Thi tốt nghiệp", "Trung học phổ thông"),
                      subjects=((heading, None, "Sách luyện thi"),))

    # Literature and general works, one to three editions each.
    for (title, key, ddc, lit_form, kind, levels, publishers, first, keywords, subject, geo, lang) in _WORKS:
        person = people[key]
        publisher_codes = publishers.split(";")
        for edition_no in range(rng.choice((1, 1, 2, 2, 3))):
            publisher = publisher_codes[edition_no % len(publisher_codes)]
            added, resp = (), person.direct
            if lang:
                translator = _gen_name(rng)
                added = ((translator, "dịch"),)
                resp = f"{person.direct} ; {translator.direct} dịch"
            b.add(kind=kind, levels=levels, title=title, publisher=publisher, year=b.year(first), ddc=ddc,
                  main=person, added=added, responsibility=resp, edition=_reprint(rng), orig_lang=lang,
                  lit_form=lit_form, audience="j" if kind == "TN" else " ", keywords=keywords.split(";"),
                  subjects=((subject, geo, None),))

    # Children: comics and illustrated series in volumes, folk tales, "why" books, preschool picture books.
    for title, key, ddc, volumes, publisher, lang, keywords, levels in _COMIC_SERIES:
        person = people[key]
        for volume in range(1, volumes + 1):
            added, resp = (), person.direct
            if lang:
                translator = _gen_name(rng)
                added, resp = ((translator, "dịch"),), f"{person.direct} ; {translator.direct} dịch"
            b.add(kind="TN", levels=levels, title=title, part=f"Tập {volume}", publisher=publisher, year=b.year(2005),
                  ddc=ddc, main=person, added=added, responsibility=resp, orig_lang=lang, lit_form="c",
                  audience="j", keywords=keywords.split(";"), subjects=(("Truyện tranh", None, None),),
                  pages=(60, 200), size=(17, 21), illustrated=True)
    for tale in _FOLK_TALES:
        for _ in range(rng.choice((1, 2))):
            teller = _gen_name(rng)
            b.add(kind="TN", levels="M", title=tale, publisher=rng.choice(("kd", "gd", "dt", "hn")),
                  year=b.year(2008), ddc="398.209597", main=None, added=((teller, "kể"),),
                  responsibility=f"{teller.direct} kể", series="Truyện cổ tích Việt Nam", lit_form="j",
                  audience="j", keywords=("Truyện cổ tích", "Văn học dân gian", "Thiếu nhi"),
                  subjects=(("Văn học dân gian", "Việt Nam", "Truyện tranh"),), pages=(16, 40), size=(20, 25),
                  illustrated=True)
    for topic in _WHY_TOPICS:
        translator = _gen_name(rng)
        b.add(kind="TN", levels="C", title="Mười vạn câu hỏi vì sao", subtitle=topic, publisher="kd",
              year=b.year(2008), ddc="030", main=None, added=((translator, "dịch"),),
              responsibility=f"{translator.direct} dịch", orig_lang="chi", audience="j",
              keywords=("Khoa học thường thức", topic, "Thiếu nhi"), subjects=(("Khoa học thường thức", None, None),))
    for prefix in _PRESCHOOL_PREFIXES:
        for topic in _PRESCHOOL_TOPICS:
            if rng.random() < 0.35:
                continue
            author = _gen_name(rng)
            b.add(kind="TN", levels="M" if prefix == "Bé khám phá" else {"MN", "PUB"}, title=prefix,
                  subtitle=topic,
                  publisher=rng.choice(("gd", "kd", "dt")), year=b.year(2012), ddc="372.21", main=author,
                  responsibility=f"{author.direct} biên soạn", series="Tủ sách mầm non", audience="a",
                  keywords=("Mầm non", topic, "Sách tranh"), subjects=(("Giáo dục mầm non", None, "Sách tranh"),),
                  pages=(12, 32), size=(24, 28), illustrated=True)

    # Practical, local and professional books by generated authors or corporate bodies.
    for title, ddc, keywords, subject, publisher in _PRACTICAL:
        for _ in range(rng.choice((1, 2))):
            author = _gen_name(rng)
            b.add(kind="STK", levels="P", title=title, publisher=publisher, year=b.year(2000), ddc=ddc, main=author,
                  responsibility=f"{author.direct} biên soạn", keywords=keywords.split(";"),
                  subjects=((subject, "Việt Nam", None),))
    for professional, (title, ddc, keywords, subject, publisher, corporate, levels) in (
            [(False, row) for row in _LOCAL] + [(True, row) for row in _PROFESSIONAL]):
        for _ in range(rng.choice((1, 2))):
            author = None if corporate else _gen_name(rng)
            b.add(kind="SNV" if professional else "STK", levels=levels, title=title, publisher=publisher,
                  year=b.year(2005), ddc=ddc, main=author, corporate=corporate,
                  responsibility=corporate or f"{author.direct} (ch.b.)", keywords=keywords.split(";"),
                  subjects=((subject, None if professional else "Hòa Bình", None),))
    return tuple(b.editions)



# ------------------------------------------------------------------------------------ near-miss editions
# Editions that are NOT the same book as their neighbours in a group, though naive keys would fold them
# together: titles that differ only in a tone mark ("Ma" / "Mà" / "Má"), authors An / Anh, another volume,
# another edition year (same title, author, publisher). Public libraries hold one edition of a group each (or
# none), so different libraries hold different members: the ``near_miss_pairs`` of the ground truth.
# (group, rule, [(title, part, author, publisher, year, ISBN kept?), ...]); equal fields are equal on purpose.
_NEAR_MISS = (
    ("ma", "tone_title", [("Ma", None, "Phạm Văn Thịnh", "tre", 2006, False),
                          ("Mà", None, "Phạm Văn Thịnh", "tre", 2006, False),
                          ("Má", None, "Phạm Văn Thịnh", "tre", 2006, False)]),
    ("ba-toi", "tone_title", [("Bà tôi", None, "Lê Thị Thu Hằng", "kd", 2005, False),
                              ("Ba tôi", None, "Lê Thị Thu Hằng", "kd", 2005, False)]),
    ("ben-song", "tone_title", [("Bến sông quê", None, "Đinh Văn Thủy", "hnv", 2007, False),
                                ("Bên sông quê", None, "Đinh Văn Thủy", "hnv", 2007, False)]),
    ("hoa-ca", "tone_title", [("Khúc hòa ca Mường", None, "Bùi Thị Hòa", "vhdt", 2004, False),
                              ("Khúc hoa ca Mường", None, "Bùi Thị Hòa", "vhdt", 2004, False)]),
    ("an-anh", "author", [("Kỹ năng sống cho học sinh trung học", None, "Nguyễn Văn An", "tn", 2007, False),
                          ("Kỹ năng sống cho học sinh trung học", None, "Nguyễn Văn Anh", "tn", 2007, False)]),
    ("hoa-hoa", "author", [("Nấu ăn ngon cho gia đình", None, "Trần Thị Hoa", "th", 2006, False),
                           ("Nấu ăn ngon cho gia đình", None, "Trần Thị Hòa", "th", 2006, False)]),
    ("truyen-co", "volume", [("Truyện cổ dân tộc Mường", "Tập 1", "Bùi Thiện", "vhdt", 2006, False),
                             ("Truyện cổ dân tộc Mường", "Tập 2", "Bùi Thiện", "vhdt", 2006, False),
                             ("Truyện cổ dân tộc Mường", "Tập 3", "Bùi Thiện", "vhdt", 2006, False)]),
    ("thuy-loi", "edition_year", [("Sổ tay thủy lợi nội đồng", None, "Hà Văn Thủy", "nn", 2012, True),
                                  ("Sổ tay thủy lợi nội đồng", None, "Hà Văn Thủy", "nn", 2016, True)]),
    ("suc-khoe", "edition_year", [("Chăm sóc sức khỏe người cao tuổi", None, "Vũ Đức Hòa", "yh", 2003, False),
                                  ("Chăm sóc sức khỏe người cao tuổi", None, "Vũ Đức Hòa", "yh", 2006, False)]),
)
#: How a library writes its copy of a near-miss edition, besides its own style (inverted names, ISBD): the
#: same book in another form, which the matcher must still recognise. NFD text comes from the libraries whose
#: export is UTF-8 in NFD (the manifest's ``encoding``), not from a rendering.
NEAR_MISS_RENDERINGS = ("plain", "new_tone_placement", "without_isbn", "volume_abbreviated")
_NEAR_MISS_SHARE = 5  # at most one record in five of a library is a near-miss edition


@functools.lru_cache(maxsize=4)
def _near_miss_pool(seed: int) -> tuple[tuple[str, str, int, _Edition], ...]:
    """(group, rule, variant, edition) of every near-miss edition; keys follow the main pool's ("E02345").
    Members of a "edition_year" group share their ISBN (a reprint under the same number, as happens)."""
    pool = _pool(seed)
    b = _PoolBuilder(seed + _stable_int("lienthong.demo near-miss"))
    b.isbns.update(e.isbn[:12] for e in pool if e.isbn)
    out = []
    for group, rule, variants in _NEAR_MISS:
        shared_isbn = None
        for variant, (title, part, author, publisher, year, with_isbn) in enumerate(variants):
            surname, rest = author.split(" ", 1)
            name = _Name(author, f"{surname}, {rest}")
            b.add(kind="STK", levels="P", title=title, part=part, publisher=publisher, year=year, ddc="895.922",
                  main=name, responsibility=name.direct, keywords=(title,), subjects=(("Văn học", None, None),))
            edition = b.editions[-1]
            if with_isbn:
                if shared_isbn is None or rule != "edition_year":
                    shared_isbn = (edition.isbn, edition.isbn_split)
                    while shared_isbn[0] is None:
                        shared_isbn = b.isbn(publisher, year)
                edition = dataclasses.replace(edition, isbn=shared_isbn[0], isbn_split=shared_isbn[1])
            else:
                edition = dataclasses.replace(edition, isbn=None, isbn_split=())
            out.append((group, rule, variant, edition))
    return tuple(out)


def near_miss_key(seed: int, index: int) -> str:
    """The edition key of the index-th near-miss edition: numbered after the main pool."""
    return f"E{len(_pool(seed)) + index:05d}"


def _near_miss_holdings(code: str, profile: str, seed: int) -> list[tuple[int, str]]:
    """(index in the near-miss pool, rendering) of the editions this library holds; from its code alone."""
    if profile not in _PUBLIC_TYPES:
        return []
    pool = _near_miss_pool(seed)
    held = []
    for group, _rule, variants in _NEAR_MISS:
        pick = _stable_int(f"near-miss:{seed}:{group}:{code}") % (len(variants) + 1)
        if pick < len(variants):
            index = next(i for i, (g, _, v, _) in enumerate(pool) if g == group and v == pick)
            rendering = NEAR_MISS_RENDERINGS[_stable_int(f"rendering:{seed}:{group}:{code}") % len(NEAR_MISS_RENDERINGS)]
            held.append((index, rendering))
    return held


_OLD_TONE_PAIRS = re.compile(r"(?<![qQ])([òóỏõọÒÓỎÕỌ])([aeAE])(?!\w)|(?<![qQ])([ùúủũụÙÚỦŨỤ])([yY])(?!\w)")


def new_tone_placement(text: str) -> str:
    """"hòa" → "hoà", "thủy" → "thuỷ": the tone on the second vowel, as newer keyboards and schools write."""
    def move(match: re.Match) -> str:
        first, second = (match.group(1), match.group(2)) if match.group(1) else (match.group(3), match.group(4))
        base, *marks = unicodedata.normalize("NFD", first)
        return _nfc(base + second + "".join(marks))

    return _OLD_TONE_PAIRS.sub(move, _nfc(text))


def _render(record: Record, rendering: str) -> Record:
    """The same record written another way (see NEAR_MISS_RENDERINGS)."""
    if rendering == "without_isbn":
        record.remove_fields("020")
        return record
    for field in record.fields:
        if field.is_control_field():
            continue
        for k, sub in enumerate(field.subfields):
            value = sub.value
            if rendering == "new_tone_placement":
                value = new_tone_placement(value)
            elif rendering == "volume_abbreviated" and field.tag == "245" and sub.code == "n":
                value = re.sub(r"^Tập\s*", "T. ", value)
            field.subfields[k] = Subfield(code=sub.code, value=value)
    return record


def _near_miss_pairs(libraries: dict) -> tuple[list, list]:
    """(near-miss pairs: records of different editions of one group, held by different libraries;
    equivalent pairs: records of the same near-miss edition in different libraries, written differently)."""
    by_group: dict[str, list[tuple[str, str]]] = {}
    for code, entry in sorted(libraries.items()):
        for local_id, held in entry.get("near_miss", {}).items():
            by_group.setdefault(held["group"], []).append((f"{code}:{local_id}", entry["editions"][local_id]))
    near, same = [], []
    for refs in by_group.values():
        for i, (a, ea) in enumerate(refs):
            for b_, eb in refs[i + 1:]:
                if a.split(":", 1)[0] != b_.split(":", 1)[0]:
                    (near if ea != eb else same).append([a, b_])
    return sorted(near), sorted(same)


# --------------------------------------------------------------------------------------- one library
@dataclass(frozen=True)
class _Style:
    inverted: bool  # personal headings "Nguyễn, Nhật Ánh" (else "Nguyễn Nhật Ánh")
    isbd: bool  # ISBD punctuation at the end of subfields
    rda: bool  # 264 _1 (else 260)
    prefixed_ids: bool  # 001 "<code>-000123" (else "123")
    hyphenated_isbn: bool


def _select(pool: tuple[_Edition, ...], profile: str, n: int, rng: random.Random) -> list[int]:
    """n pool indexes for one library: its mix of kinds among the editions of its levels, no repeats until the
    eligible editions run out (very large scales), then cycling through them again."""
    levels = _LEVELS_BY_TYPE[profile]
    eligible = [i for i, e in enumerate(pool) if e.levels & levels]
    if not eligible:
        raise ValueError(f"no sample editions for library type {profile!r}")
    chosen: list[int] = []
    taken: set[int] = set()
    for kind, share in _KIND_MIX[profile]:
        candidates = [i for i in eligible if pool[i].kind == kind]
        picked = rng.sample(candidates, min(round(n * share), len(candidates)))
        chosen += picked
        taken.update(picked)
    rng.shuffle(chosen)
    chosen = chosen[:n]
    rest = [i for i in eligible if i not in taken]
    rng.shuffle(rest)
    chosen += rest[: n - len(chosen)]
    cycle = list(eligible)
    rng.shuffle(cycle)
    while len(chosen) < n:
        chosen += cycle[: n - len(chosen)]
    return chosen


def _plan_defects(works: list[_Edition], rng: random.Random) -> dict[int, str]:
    """Record index → its single defect. About DEFECT_RATE of the records, never the first one (a duplicated
    ĐKCB needs an earlier record); the rules rotate through a shuffled order so each occurs."""
    n = len(works)
    count = min(round(n * DEFECT_RATE), n - 1)
    if count <= 0:
        return {}
    order = list(DEFECT_RULES)
    rng.shuffle(order)
    available = list(range(1, n))
    rng.shuffle(available)
    plan: dict[int, str] = {}
    for k in range(count):
        rule = order[k % len(order)]
        if rule == "bad_isbn_checksum":
            index = next((i for i in available if works[i].isbn), None)
            if index is None:
                rule, index = "missing_subject", available[0]
        else:
            index = available[0]
        available.remove(index)
        plan[index] = rule
    return plan


def _punct(subfields: list[tuple[str, str]], isbd: bool, final: str = ".") -> list[Subfield]:
    """Subfields with ISBD punctuation before the next element (" :" before $b, " /" before $c, "." before
    $n/$p, `final` after the last one) when the library writes it."""
    out = []
    for k, (code, value) in enumerate(subfields):
        if isbd:
            nxt = subfields[k + 1][0] if k + 1 < len(subfields) else None
            sep = {"b": " :", "c": " /", "n": ".", "p": "."}.get(nxt, "") if nxt else final
            if sep and not value.endswith(sep.strip()):
                value += sep
        out.append(Subfield(code=code, value=_nfc(value)))
    return out


def _field(tag: str, ind: str, subfields: Iterable[tuple[str, str]]) -> Field:
    return Field(tag=tag, indicators=Indicators(ind[0], ind[1]),
                 subfields=[Subfield(code=c, value=_nfc(v)) for c, v in subfields])


def _build_record(lib: LibrarySpec, profile: str, style: _Style, work: _Edition, local_id: str, acquired: _dt.date,
                  items: list[dict], defect: str | None, exported: _dt.date, rng: random.Random) -> Record:
    # leader/09 "a" (UTF-8), /18 "a" with ISBD punctuation, "c" without it; lengths are set by as_marc()
    record = Record(leader="00000nam a2200000 " + ("a" if style.isbd else "c") + " 4500", force_utf8=True)
    record.add_field(Field(tag="001", data=local_id))
    record.add_field(Field(tag="003", data=lib.code))
    record.add_field(Field(tag="005", data=exported.strftime("%Y%m%d") + "083000.0"))
    dates = "nuuuuuuuu" if defect == "missing_publication" else f"s{work.year}    "
    illus = "a   " if work.illustrated else "    "
    record.add_field(Field(tag="008", data=(
        f"{acquired:%y%m%d}{dates}vm {illus}{work.audience} {'    '} 000 {work.lit_form} vie d")))
    if work.isbn:
        isbn = work.isbn
        if defect == "bad_isbn_checksum":
            isbn = isbn[:12] + str((int(isbn[12]) + rng.randrange(1, 10)) % 10)
        if style.hyphenated_isbn:
            isbn = "-".join((*work.isbn_split, isbn[12]))
        record.add_field(_field("020", "  ", (("a", isbn), ("c", f"{work.price}đ"))))
    record.add_field(_field("040", "  ", (("a", lib.code), ("b", "vie"), ("c", lib.code))))
    record.add_field(_field("041", "1 " if work.orig_lang else "0 ",
                            (("a", "vie"), ("h", work.orig_lang)) if work.orig_lang else (("a", "vie"),)))
    if defect != "missing_call_number":
        record.add_field(_field("082", "04", (("a", work.ddc), ("b", work.mark), ("2", "23"))))
    with_author = defect != "missing_author"
    if with_author and work.main is not None:
        ind, heading = work.main.heading(style.inverted)
        record.add_field(_field("100", ind + " ", (("a", heading),)))
    elif with_author and work.corporate is not None:
        record.add_field(_field("110", "2 ", (("a", work.corporate),)))
    if defect != "missing_title":
        parts = [("a", work.title)]
        if work.part:
            parts.append(("n", work.part))
        if work.subtitle:
            parts.append(("b", work.subtitle))
        if work.responsibility:
            parts.append(("c", work.responsibility))
        main_entry = with_author and (work.main is not None or work.corporate is not None)
        record.add_field(Field(tag="245", indicators=Indicators("1" if main_entry else "0", "0"),
                               subfields=_punct(parts, style.isbd)))
    if work.edition:
        record.add_field(_field("250", "  ", (("a", work.edition + ("." if style.isbd else "")),)))
    if defect != "missing_publication":
        pub = [("a", work.place), ("b", work.publisher), ("c", str(work.year))]
        if style.isbd:
            pub = [("a", work.place + " :"), ("b", work.publisher + ","), ("c", str(work.year))]
        record.add_field(_field("264", " 1", pub) if style.rda else _field("260", "  ", pub))
    physical = [("a", f"{work.pages} tr.")] + ([("b", "minh họa")] if work.illustrated else [])
    physical.append(("c", f"{work.size} cm"))
    if style.isbd:
        physical = [(c, v + (" ;" if physical[k + 1][0] == "c" else " :") if k + 1 < len(physical) else v)
                    for k, (c, v) in enumerate(physical)]
    record.add_field(_field("300", "  ", physical))
    if work.series:
        record.add_field(_field("490", "0 ", (("a", work.series),)))
    if defect != "missing_subject":
        for heading, geo, form in work.subjects:
            subfields = [("a", heading)] + ([("z", geo)] if geo else []) + ([("v", form)] if form else [])
            record.add_field(_field("650", " 7", [*subfields, ("2", "Bộ TK TVQG")]))
    if defect != "missing_keywords":
        for keyword in work.keywords:
            record.add_field(_field("653", "  ", (("a", keyword),)))
    if with_author:
        for name, role in work.added:
            ind, heading = name.heading(style.inverted)
            record.add_field(_field("700", ind + " ", (("a", heading + ("," if style.isbd else "")), ("e", role))))
    for item in items:
        subfields = [(code, item[code]) for code in ("0", "1", "4") if code in item]
        subfields += [("8", item["8"]), ("a", lib.code), ("b", lib.code), ("c", item["c"]), ("d", item["d"]),
                      ("g", str(work.price))]
        if defect != "missing_call_number":
            subfields.append(("o", f"{work.ddc} {work.mark}"))
        if item.get("p"):
            subfields.append(("p", item["p"]))
        subfields += [("t", str(item["t"])), ("y", work.kind)]
        record.add_field(_field("952", "  ", subfields))
    return record


def export_encoding(code: str) -> tuple[str, str]:
    """(encoding, leader/09) of a library's MARC export: "utf-8" or one of EXPORT_ENCODINGS, from its code only."""
    bucket = _stable_int(f"encoding:{code}") % _ENCODING_BUCKETS
    return EXPORT_ENCODINGS[bucket] if bucket < len(EXPORT_ENCODINGS) else ("utf-8", "a")


def legacy_text(text: str, encoding: str) -> str:
    """The NFC text an export in `encoding` can hold: letters it lacks lose their diacritic ("Brontë" → "Bronte"
    in TCVN3), other characters become "?". UTF-8 (composed or not) holds everything."""
    text = _nfc(text)
    if encoding in ("utf-8", "utf-8-nfd"):
        return text
    kept = []
    for char in text:
        for candidate in (char, _fold(char), "?"):
            try:
                encode_legacy(candidate, encoding)
            except (UnicodeEncodeError, ValueError):
                continue
            kept.append(candidate)
            break
    return "".join(kept)


def _encode_text(text: str, encoding: str) -> bytes:
    if encoding == "utf-8":
        return _nfc(text).encode("utf-8")
    if encoding == "utf-8-nfd":
        return unicodedata.normalize("NFD", text).encode("utf-8")
    return encode_legacy(legacy_text(text, encoding), encoding)


def marc_bytes(record: Record, encoding: str, leader09: str = " ") -> bytes:
    """One ISO 2709 record with its text in `encoding` (utf-8, utf-8-nfd, tcvn3, vni, cp1258) and leader/09 as
    given, whatever the text really is: how legacy library software writes (pymarc only writes UTF-8)."""
    fields = []
    for field in record.fields:
        if field.is_control_field():
            data = field.data.encode("ascii")
        else:
            data = (field.indicator1 + field.indicator2).encode("ascii") + b"".join(
                b"\x1f" + subfield.code.encode("ascii") + _encode_text(subfield.value, encoding)
                for subfield in field.subfields)
        fields.append((field.tag, data + b"\x1e"))
    directory, offset = [], 0
    for tag, data in fields:
        directory.append(f"{tag}{len(data):04d}{offset:05d}".encode("ascii"))
        offset += len(data)
    base = 24 + 12 * len(fields) + 1
    leader = str(record.leader)
    leader = f"{base + offset + 1:05d}{leader[5:9]}{leader09}{leader[10:12]}{base:05d}{leader[17:]}"
    return leader.encode("ascii") + b"".join(directory) + b"\x1e" + b"".join(d for _, d in fields) + b"\x1d"


class _EncodedMARCWriter:
    """MARCWriter's interface, writing the library's own encoding (see marc_bytes)."""

    def __init__(self, sink, encoding: str, leader09: str):
        self.sink, self.encoding, self.leader09 = sink, encoding, leader09

    def write(self, record: Record) -> None:
        self.sink.write(marc_bytes(record, self.encoding, self.leader09))

    def close(self, close_fh: bool = True) -> None:
        if close_fh:
            self.sink.close()


class _HashingFile:
    """What MARCWriter writes to: the file, and a running sha256 of its bytes."""

    def __init__(self, handle):
        self.handle = handle
        self.sha256 = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        return self.handle.write(data)

    def close(self) -> None:
        self.handle.close()


def _place_near_misses(code: str, profile: str, seed: int, works: list, edition_keys: list, dates: list,
                       plan: dict) -> dict[int, tuple[str, str]]:
    """Put the library's near-miss editions in place of some of its records (never one with a planned defect,
    nor one acquired before the edition appeared), so its record count stays what its type says.
    Returns record index → (group, rendering)."""
    held = _near_miss_holdings(code, profile, seed)
    if not held:
        return {}
    pool = _near_miss_pool(seed)
    rng = random.Random(seed + _stable_int(f"near-miss:{code}"))
    free = [k for k in range(1, len(works)) if k not in plan]
    rng.shuffle(free)
    placed: dict[int, tuple[str, str]] = {}
    for index, rendering in held[: len(works) // _NEAR_MISS_SHARE]:
        group, _rule, _variant, edition = pool[index]
        k = next((k for k in free if dates[k].year >= edition.year), None)
        if k is None:
            continue
        free.remove(k)
        works[k], edition_keys[k] = edition, near_miss_key(seed, index)
        placed[k] = (group, rendering)
    return placed


def _library_export(lib: LibrarySpec, scale: float, seed: int, exported: _dt.date,
                    legacy_encodings: bool = True, extra_copies: int = 0) -> tuple[Path, dict]:
    profile = _profile(lib.type)
    if not lib.code or any(c in lib.code for c in '/\\:*?"<>|') or lib.code.startswith("."):
        raise ValueError(f"library code {lib.code!r} cannot name a file")
    rng = random.Random(seed + _stable_int(lib.code))
    style = _Style(inverted=rng.random() < 0.5, isbd=rng.random() < 0.6, rda=rng.random() < 0.3,
                   prefixed_ids=rng.random() < 0.5, hyphenated_isbn=rng.random() < 0.3)
    pool = _pool(seed)
    n = records_for(lib.type, scale)
    chosen = _select(pool, profile, n, rng)
    # Acquisition order: accession numbers and control numbers grow with the acquisition date.
    acquired = []
    for index in chosen:
        start = _dt.date(max(pool[index].year, 2000), 1, 1).toordinal()
        acquired.append(_dt.date.fromordinal(rng.randrange(start, exported.toordinal() + 1)))
    order = sorted(range(n), key=lambda k: (acquired[k], k))
    works = [pool[chosen[k]] for k in order]
    edition_keys = [f"E{chosen[k]:05d}" for k in order]  # ground truth of the union catalogue
    dates = [acquired[k] for k in order]
    plan = _plan_defects(works, rng)
    near_miss = _place_near_misses(lib.code, profile, seed, works, edition_keys, dates, plan)

    public = profile in _PUBLIC_TYPES
    shelves = _SHELVES_PUBLIC if public else _SHELVES_SCHOOL
    counters: dict[str, int] = {}
    issued: dict[str, list[str]] = {}
    defects: dict[str, list[str]] = {rule: [] for rule in DEFECT_RULES}
    items_total = 0
    editions: dict[str, str] = {}
    near_miss_records: dict[str, dict] = {}
    control = rng.randrange(1, 500)

    lib.drop_folder.mkdir(parents=True, exist_ok=True)
    from lienthong import demo_tabular  # a library whose registry source is csv/xlsx exports a spreadsheet

    spreadsheet = demo_tabular.export_format(lib.code)
    suffix = spreadsheet if spreadsheet in ("csv", "xlsx") else "mrc"
    path = lib.drop_folder / f"{lib.code}-{exported:%Y%m%d}.{suffix}"
    part = lib.drop_folder / f".{path.name}.part"
    with open(part, "wb") as handle:
        sink = _HashingFile(handle)
        encoding, leader09 = (export_encoding(lib.code) if legacy_encodings else ("utf-8", "a")) \
            if suffix == "mrc" else (None, None)
        if suffix == "mrc":
            writer = MARCWriter(sink) if encoding == "utf-8" else _EncodedMARCWriter(sink, encoding, leader09)
        else:
            writer = demo_tabular.TabularWriter(sink, fmt=suffix, library_name=lib.name, library_type=profile,
                                                exported=exported)
        for k, (work, acquired_on) in enumerate(zip(works, dates)):
            control += rng.choice((1, 1, 1, 2, 3))
            local_id = f"{lib.code}-{control:06d}" if style.prefixed_ids else str(control)
            defect = plan.get(k)
            copies = rng.choices((1, 2, 3, 4), weights=(40, 30, 20, 10))[0] + extra_copies
            if defect == "missing_accession_number" and rng.random() < 0.5:
                copies = 0  # no 952 at all
            prefix = work.kind
            items = []
            for copy in range(1, copies + 1):
                item = {"8": ("Kho thiếu nhi" if work.kind == "TN" else rng.choice(("Kho đọc", "Kho mượn")))
                        if public else _COLLECTIONS_SCHOOL[work.kind],
                        "c": rng.choice(shelves), "d": acquired_on.isoformat(), "t": copy}
                roll = rng.random()
                if roll < 0.01:
                    item["1"] = "1"  # lost
                elif roll < 0.02:
                    item["4"] = "1"  # damaged
                elif roll < 0.025:
                    item["0"] = "1"  # withdrawn
                if defect == "missing_accession_number":
                    pass
                elif defect == "duplicate_accession_number" and copy == 1:
                    earlier = issued.get(prefix) or [a for values in issued.values() for a in values]
                    item["p"] = rng.choice(earlier)
                else:
                    counters[prefix] = counters.get(prefix, 0) + 1
                    item["p"] = f"{prefix}.{counters[prefix]:06d}"
                    issued.setdefault(prefix, []).append(item["p"])
                items.append(item)
            record = _build_record(lib, profile, style, work, local_id, acquired_on, items, defect, exported, rng)
            if k in near_miss:
                group, rendering = near_miss[k]
                record = _render(record, rendering)
                near_miss_records[local_id] = {"group": group, "rendering": rendering}
            writer.write(record)
            items_total += len(items)
            if defect:
                defects[defect].append(local_id)
            editions[local_id] = edition_keys[k]
        writer.close(close_fh=False)
    if suffix != "mrc":
        items_total = writer.items  # textbook lines carry a quantity, not copies
        encoding = getattr(writer, "encoding", "utf-8" if suffix == "xlsx" else None)
    digest = sink.sha256.hexdigest()
    if path.is_file() and _file_sha256(path) == digest:
        part.unlink()  # unchanged: keep the existing file and its mtime
    else:
        os.replace(part, path)
    incomplete = sum(len(defects[rule]) for rule in INCOMPLETE_RULES)
    return path, {
        "type": lib.type,
        "encoding": encoding,
        "sha256": digest,
        "records": n,
        "items": items_total,
        "complete_records": n - incomplete,
        "defects": defects,
        "editions": editions,
        "near_miss": near_miss_records,
    }


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------ province
def _remove_stale_exports(lib: LibrarySpec, exported: _dt.date) -> None:
    """Drop sample exports of an earlier seed (another export date) so they never pass for the newest one.

    Only files named like the generator's own (``<CODE>-YYYYMMDD.ext`` and, under ``circulation/``,
    ``<CODE>-<kind>-YYYYMMDD.ext``) are touched.
    """
    stamp = exported.strftime("%Y%m%d")
    code = re.escape(lib.code)
    patterns = [(Path(lib.drop_folder), re.compile(rf"^{code}-(\d{{8}})\.(mrc|xml|csv|xlsx)$")),
                (Path(lib.drop_folder) / "circulation", re.compile(rf"^{code}-[a-z-]+-(\d{{8}})\.(csv|xlsx)$"))]
    for folder, pattern in patterns:
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            match = pattern.match(path.name)
            if match and match.group(1) != stamp and path.is_file():
                path.unlink()


def generate_province(libraries: list[LibrarySpec], out_root: Path, *, scale: float = 1.0,
                      seed: int = DEFAULT_SEED, legacy_encodings: bool = True, extra_copies: int = 0,
                      circulation: bool = True) -> dict:
    """Write one MARC21 export per library into its drop folder and ``out_root/ground_truth.json``.

    Returns the ground truth (JSON-safe, the same as the file)::

        {"seed", "scale", "export_date",
         "libraries": {code: {"file": path relative to out_root, "type", "encoding" (of the export's text:
                              utf-8, utf-8-nfd, tcvn3, vni, cp1258), "sha256", "records", "items",
                              "complete_records", "defects": {rule: [local_id, ...] for every rule},
                              "editions": {local_id: edition key "E00042" (the pool edition it describes)},
                              "near_miss": {local_id: {"group", "rendering"}} (its near-miss records)}},
         "totals": {"records", "items", "complete_records", "defects": {rule: count}},
         "near_miss_pairs": [["LIB:001", "LIB:001"], ...] (different books that look alike: never one cluster),
         "equivalent_pairs": [...] (one near-miss edition in two libraries, written differently: one cluster)}

    The same (libraries, scale, seed) give byte-identical files and manifest. ``legacy_encodings=False``
    writes every MARC export in UTF-8: the twin a legacy export must decode to.
    A record has 1 to 4 copies (2 on average); ``extra_copies`` adds that many to each (1 gives the 3 copies per
    record of the issue's province, 3 million for 1 million records). ``circulation=False`` leaves out the loans,
    ILL, reader cards and rotations (and ``truth["circulation"]``): the catalogue benchmarks read none of them.
    """
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    if extra_copies < 0:
        raise ValueError(f"extra_copies must be 0 or more, got {extra_copies}")
    scale = float(scale)
    codes = [lib.code for lib in libraries]
    duplicated = sorted({code for code in codes if codes.count(code) > 1})
    if duplicated:
        raise ValueError(f"duplicate library codes: {duplicated}")
    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    exported = export_date(seed)
    truth: dict = {"seed": seed, "scale": scale, "export_date": exported.isoformat(), "libraries": {}}
    if extra_copies:
        truth["extra_copies"] = extra_copies
    totals = {"records": 0, "items": 0, "complete_records": 0, "defects": {rule: 0 for rule in DEFECT_RULES}}
    for lib in libraries:
        path, entry = _library_export(lib, scale, seed, exported, legacy_encodings, extra_copies)
        relative = Path(os.path.relpath(path.resolve(), out_root.resolve())).as_posix()
        truth["libraries"][lib.code] = {"file": relative, **entry}
        totals["records"] += entry["records"]
        totals["items"] += entry["items"]
        totals["complete_records"] += entry["complete_records"]
        for rule, ids in entry["defects"].items():
            totals["defects"][rule] += len(ids)
    truth["totals"] = totals
    truth["near_miss_pairs"], truth["equivalent_pairs"] = _near_miss_pairs(truth["libraries"])
    if circulation:
        from lienthong.demo_circulation import generate_circulation  # loans, ILL, cards, rotation: <drop>/circulation/

        truth["circulation"] = generate_circulation(libraries, out_root, truth["libraries"], scale=scale, seed=seed,
                                                    exported=exported)
    for lib in libraries:
        _remove_stale_exports(lib, exported)
    manifest = out_root / "ground_truth.json"
    part = out_root / ".ground_truth.json.part"
    part.write_text(json.dumps(truth, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    os.replace(part, manifest)
    return truth
