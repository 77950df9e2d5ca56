"""Vietnamese-aware match keys: what must match, and RecordManager's mistakes that must not happen."""
from __future__ import annotations

import unicodedata

import pytest

from lienthong import matchkeys
from lienthong.matchkeys import author_key, block_keys, compare, fold, record_keys, title_parts, vn


def isbn(first12: str) -> str:
    """A valid ISBN-13 of 12 digits (the check digit computed, as a publisher would)."""
    from stdnum import ean

    return first12 + ean.calc_check_digit(first12)


def keys(title, author=None, publisher=None, year=None, isbns=()):
    return record_keys(title, author, publisher, year, list(isbns))


# ---------------------------------------------------------------- normalisation
def test_nfd_and_tone_placement_give_one_key():
    nfd = unicodedata.normalize("NFD", "Hòa Bình quê hương")
    assert vn(nfd) == vn("Hoà Bình quê hương") == vn("HÒA BÌNH QUÊ HƯƠNG") == "hòa bình quê hương"
    assert title_parts("Thuỷ Hử")[0] == title_parts("Thủy Hử")[0]


def test_tone_marks_kept_for_matching_and_dropped_only_for_search():
    assert vn("Mà") != vn("Ma") != vn("Má")
    assert fold("Mà") == fold("Ma") == fold("Má") == "ma"
    assert fold("Đất rừng phương Nam") == "dat rung phuong nam"


def test_d_stroke_is_its_own_letter_and_lookalikes_are_mapped():
    assert vn("Đà Nẵng") != vn("Da Nẵng")
    assert vn("ÐÀ NẴNG") == vn("Đà Nẵng")  # U+00D0 (Icelandic eth) typed for Đ
    assert vn("ðà nẵng") == "đà nẵng"


def test_isbd_punctuation_is_stripped():
    with_isbd = title_parts("Toán 1. Tập 1 : sách giáo viên /")
    without = title_parts("Toán 1 Tập 1 sách giáo viên")
    assert with_isbd == without == ("toán 1 sách giáo viên", "1")


@pytest.mark.parametrize("title", ["Toán 1. Tập 2", "Toán 1, tập 2", "Toán 1 T.2", "Toán 1. T. 2", "Toán 1 Tập II",
                                   "Toán 1 - Quyển 2", "Toán 1 Q.2", "Toán 1 tập hai", "Toán 1 T2"])
def test_volume_designations_are_read(title):
    assert title_parts(title) == ("toán 1", "2")


def test_no_volume_is_not_volume_one():
    assert title_parts("Toán 1")[1] == ""
    assert title_parts("Số đỏ") == ("số đỏ", "")
    assert title_parts("Phần mềm cho trẻ")[1] == ""


def test_direct_and_inverted_author_forms_are_unified():
    assert author_key("Nguyễn Nhật Ánh") == author_key("Nguyễn, Nhật Ánh") == author_key("NGUYỄN, NHẬT ÁNH,")
    assert author_key("Hugo, Victor") == author_key("Victor Hugo")
    assert author_key("Hồ Chí Minh, 1890-1969") == author_key("Hồ Chí Minh")
    assert author_key("Nguyễn Văn An") != author_key("Nguyễn Văn Anh")


def test_isbn10_and_hyphens_normalised_to_isbn13_and_bad_checksums_dropped():
    assert matchkeys.isbn13s(["0-471-87569-4", "978-0-471-87569-7"]) == ["9780471875697"]
    assert matchkeys.isbn13s(["9786040000001", "not an isbn"]) == []


def test_publisher_prefixes_are_dropped():
    expected = matchkeys.publisher_key("Nhà xuất bản Giáo dục Việt Nam")
    assert matchkeys.publisher_key("Nxb. Giáo dục Việt Nam") == expected == "giáo dục việt nam"


# ---------------------------------------------------------------- comparisons
def test_same_book_in_two_cataloguing_styles_links():
    a = keys("Tôi thấy hoa vàng trên cỏ xanh /", "Nguyễn, Nhật Ánh", "Nxb. Trẻ,", "2018")
    b = keys(unicodedata.normalize("NFD", "Tôi thấy hoa vàng trên cỏ xanh"), "Nguyễn Nhật Ánh", "Nhà xuất bản Trẻ",
             "2018")
    result = compare(a, b)
    assert result.linked and result.rule == "title_author"
    assert result.scores["title"] == 100.0 and result.score == 100.0


def test_shared_isbn_links_with_evidence():
    number = isbn("978604031234")
    hyphenated = f"978-604-0-31234-{number[-1]}"
    a = keys("Toán 10", "Hà Huy Khoái", "Nxb. Giáo dục Việt Nam", "2022", [hyphenated])
    b = keys("Toán 10 /", None, None, "2022", [number])
    result = compare(a, b)
    assert result.linked and result.rule == "isbn" and result.scores["isbn"] == number
    assert result.scores["title"] == 100.0 and result.scores["author"] is None
    wrong_check = number[:12] + str((int(number[12]) + 1) % 10)
    assert matchkeys.isbn13s([wrong_check]) == []
    assert compare(a, keys("Toán 10", None, None, "2022", [wrong_check])).rule != "isbn"


def test_isbn_reused_for_another_title_does_not_link():
    a = keys("Toán 10", None, None, "2022", [isbn("978604000000")])
    b = keys("Những cây thuốc và vị thuốc Việt Nam", None, None, "2022", [isbn("978604000000")])
    assert compare(a, b).rule == "isbn_title_differs"


@pytest.mark.parametrize("title_a,title_b", [("Ma", "Mà"), ("Ma", "Má"), ("Mà", "Má"),
                                             ("Bài ca về ma", "Bài ca về mà")])
def test_tone_only_differences_stay_different(title_a, title_b):
    result = compare(keys(title_a, "Nguyễn Văn Hùng", "Nxb. Trẻ", "2019"),
                     keys(title_b, "Nguyễn Văn Hùng", "Nxb. Trẻ", "2019"))
    assert not result.linked
    assert result.rule in ("title_tone_differs", "title_differs")


def test_an_is_not_anh():
    result = compare(keys("Truyện cổ tích chọn lọc", "Nguyễn Văn An", "Nxb. Kim Đồng", "2020"),
                     keys("Truyện cổ tích chọn lọc", "Nguyễn Văn Anh", "Nxb. Kim Đồng", "2020"))
    assert not result.linked and result.rule == "author_differs"


def test_other_volume_other_year_other_isbn_never_link():
    base = keys("Thần đồng Đất Việt. Tập 1", "Lê Linh", "Nxb. Trẻ", "2019", [isbn("978604100000")])
    assert compare(base, keys("Thần đồng Đất Việt. Tập 2", "Lê Linh", "Nxb. Trẻ", "2019")).rule == "volume_differs"
    assert compare(base, keys("Thần đồng Đất Việt T.1", "Lê Linh", "Nxb. Trẻ", "2021")).rule == "year_differs"
    assert compare(base, keys("Thần đồng Đất Việt", "Lê Linh", "Nxb. Trẻ", "2019")).rule == "volume_differs"
    other = keys("Thần đồng Đất Việt. T.1", "Lê Linh", "Nxb. Trẻ", "2019", [isbn("978604100001")])
    assert compare(base, other).rule == "isbn_differs"
    hyphenated = "978-604-1-00000-" + isbn("978604100000")[-1]
    same = keys("THẦN ĐỒNG ĐẤT VIỆT, Tập I", "Lê, Linh", "Nxb. Trẻ", "2019", [hyphenated])
    assert compare(base, same).linked


def test_isbn_is_overruled_by_volume_or_year():
    a = keys("Toán 2. Tập 1", None, None, "2021", [isbn("978604000000")])
    assert compare(a, keys("Toán 2. Tập 2", None, None, "2021", [isbn("978604000000")])).rule == "volume_differs"
    assert compare(a, keys("Toán 2. Tập 1", None, None, "2023", [isbn("978604000000")])).rule == "year_differs"


def test_numbers_in_titles_must_agree():
    result = compare(keys("Bồi dưỡng học sinh giỏi Toán 11", "Trần Văn Tùng", "Nxb. Dân trí", "2020"),
                     keys("Bồi dưỡng học sinh giỏi Toán 12", "Trần Văn Tùng", "Nxb. Dân trí", "2020"))
    assert not result.linked and result.rule == "title_number_differs"


def test_missing_author_needs_publisher_and_year():
    assert not compare(keys("Sổ tay thư viện"), keys("Sổ tay thư viện")).linked
    linked = compare(keys("Sổ tay thư viện", None, "Nxb. Giáo dục", "2020"),
                     keys("Sổ tay thư viện", "Nguyễn Thị Lan", "Nxb. Giáo dục", "2020"))
    assert linked.linked and linked.rule == "title_publisher_year"


def test_block_keys_are_tone_kept_and_never_all_pairs():
    blocks_ma = set(block_keys(keys("Ma", "Nguyễn Văn Hùng")))
    blocks_mà = set(block_keys(keys("Mà", "Nguyễn Văn Hùng")))
    assert not blocks_ma & blocks_mà
    same = block_keys(keys("Mắt biếc", "Nguyễn, Nhật Ánh", isbns=[isbn("978604100000")]))
    assert "i:" + isbn("978604100000") in same and "t:mắt biếc|" in same


def test_non_vietnamese_marks_are_dropped_vietnamese_ones_kept():
    assert author_key("Brontë, Emily") == author_key("Emily Bronte")
    assert vn("Sepúlveda") == "sepúlveda"  # ú is a Vietnamese letter too: kept
    assert vn("Dvořák") == "dvorák"  # the caron goes, the acute (a Vietnamese tone) stays
    assert vn("ư ơ ă â ê ô") == "ư ơ ă â ê ô"


def test_weak_records_are_those_that_cannot_tell_editions_apart():
    assert keys("Truyện Kiều", "Nguyễn Du").weak  # no ISBN, no year
    assert keys("Truyện Kiều", None, "Nxb. Văn học", "2019").weak  # no ISBN, no author
    assert not keys("Truyện Kiều", "Nguyễn Du", "Nxb. Văn học", "2019").weak
    assert not keys("Truyện Kiều", isbns=[isbn("978604690000")]).weak


def test_signature_identifies_identical_keys_only():
    a = keys("Mắt biếc /", "Nguyễn, Nhật Ánh", "Nxb. Trẻ", "2019")
    b = keys(unicodedata.normalize("NFD", "Mắt biếc"), "Nguyễn Nhật Ánh", "Nhà xuất bản Trẻ", "2019")
    assert matchkeys.signature(a, 1) == matchkeys.signature(b, 2)
    assert matchkeys.signature(a, 1) != matchkeys.signature(keys("Mắt biếc", "Nguyễn Nhật Ánh", "Nxb. Trẻ", "2020"), 3)
    assert matchkeys.signature(keys(None), 4) != matchkeys.signature(keys(None), 5)  # no title proves nothing


def test_the_generators_near_miss_editions_never_link_and_their_renderings_do():
    """Every pair of the sample's near-miss editions (tone-only titles, An/Anh, volumes, edition years) is kept
    apart by compare(); each edition written another way (new tone placement, NFD, inverted heading, ISBD,
    "T. 1", no ISBN) keeps its keys."""
    from lienthong import demo

    def as_keys(edition, *, inverted=False, isbd=False, rendering="plain", nfd=False):
        title = edition.title + (". " + edition.part if edition.part else "")
        if rendering == "volume_abbreviated" and edition.part:
            title = edition.title + ". " + edition.part.replace("Tập ", "T. ")
        author = edition.main.inverted if inverted else edition.main.direct
        if isbd:
            title += " /"  # 245 $a ending before $c, as ISBD writes it
        if rendering == "new_tone_placement":
            title, author = demo.new_tone_placement(title), demo.new_tone_placement(author)
        if nfd:
            title, author = unicodedata.normalize("NFD", title), unicodedata.normalize("NFD", author)
        isbns = [edition.isbn] if edition.isbn and rendering != "without_isbn" else []
        return record_keys(title, author, edition.publisher, str(edition.year), isbns)

    pool = demo._near_miss_pool(7)
    groups: dict[str, list] = {}
    for group, _rule, _variant, edition in pool:
        groups.setdefault(group, []).append(edition)
    assert len(groups) >= 8 and {rule for _, rule, _, _ in pool} == {"tone_title", "author", "volume",
                                                                      "edition_year"}
    for group, editions in groups.items():
        for i, a in enumerate(editions):
            for b in editions[i + 1:]:
                for style in ({}, {"inverted": True, "isbd": True, "rendering": "without_isbn"}):
                    assert not compare(as_keys(a), as_keys(b, **style)).linked, (group, a.title, b.title)
            plain = as_keys(a)
            for rendering in demo.NEAR_MISS_RENDERINGS:
                other = as_keys(a, inverted=True, isbd=True, rendering=rendering, nfd=True)
                assert compare(plain, other).linked, (group, a.title, rendering)
    assert demo.new_tone_placement("Khúc hòa ca, thủy lợi, quý") == "Khúc hoà ca, thuỷ lợi, quý"
