"""The union catalogue on the real warehouse: ingest part of the sample province, build, and check matching
against the generator's ground truth, stable ids, stewards' decisions, search, access levels and export."""
from __future__ import annotations

import json
from collections import Counter, defaultdict

import pymarc
import pytest
import sqlalchemy as sa
import yaml

from lienthong import catalog, matchkeys
from lienthong.cli import main
from tests.conftest import empty_warehouse

pytestmark = pytest.mark.integration

# The public libraries (provincial and district) hold general collections, so the same editions turn up in
# many of them (the shared part of the catalogue); plus the upper-secondary schools of Mai Châu for a group.
SCHOOLS = ("THPT-MAICHAU", "THPT-MAICHAU-B", "PTDTNT-MAICHAU")


@pytest.fixture(scope="module")
def province(warehouse_engine, demo_province):
    """The ingested libraries of two districts and the province, and the union catalogue built once."""
    from lienthong.ingest import ingest_library
    from lienthong.registry import PUBLIC_LIBRARY_TYPES, load_registry

    empty_warehouse(warehouse_engine)
    registry = load_registry()
    codes = [lib.code for lib in registry.active_libraries()
             if lib.type in PUBLIC_LIBRARY_TYPES or lib.code in SCHOOLS]
    for code in codes:
        assert ingest_library(code).status == "applied"
    stats = catalog.build(warehouse_engine)
    yield {"engine": warehouse_engine, "truth": demo_province, "codes": codes, "stats": stats}
    empty_warehouse(warehouse_engine)


def _members(engine) -> dict[tuple[str, str], int]:
    with engine.connect() as conn:
        return {(r[0], r[1]): r[2] for r in conn.execute(sa.text(
            "SELECT library_code, local_id, cluster_id FROM catalog.cluster_member"))}


def _pairs(groups) -> int:
    return sum(len(g) * (len(g) - 1) // 2 for g in groups)


def test_pairwise_precision_and_recall_against_the_ground_truth(province):
    members = _members(province["engine"])
    edition = {(lib, local): key for lib in province["codes"]
               for local, key in province["truth"]["libraries"][lib]["editions"].items()}
    in_catalogue = {ref: cid for ref, cid in members.items() if ref in edition}
    assert len(in_catalogue) == len(members)  # every catalogued record is a generated one
    by_cluster, by_edition = defaultdict(list), defaultdict(list)
    for ref, cid in in_catalogue.items():
        by_cluster[cid].append(ref)
        by_edition[edition[ref]].append(ref)
    predicted, true = _pairs(by_cluster.values()), _pairs(by_edition.values())
    correct = sum(_pairs([[1] * n for n in Counter(edition[r] for r in refs).values()])
                  for refs in by_cluster.values())
    precision, recall = correct / predicted, correct / true
    print(f"\nunion catalogue on {len(province['codes'])} libraries, {len(in_catalogue)} records: "
          f"pairwise precision {precision:.4f}, recall {recall:.4f} ({correct}/{predicted} predicted, {true} true)")
    assert true > 100  # the sample really shares editions across libraries
    assert precision >= 0.99
    assert recall >= 0.95


def test_near_miss_pairs_never_share_a_cluster_and_their_variants_do(province):
    """Books told apart only by a tone mark, An/Anh, the volume or the edition year stay apart; the same book
    written in NFD, with "hoà" for "hòa", without ISBN, "T. 1" or an inverted heading is found as one."""
    members = _members(province["engine"])
    held = set(province["codes"])

    def ingested(pairs):
        return [(tuple(a.split(":", 1)), tuple(b.split(":", 1))) for a, b in pairs
                if a.split(":", 1)[0] in held and b.split(":", 1)[0] in held]

    near, same = ingested(province["truth"]["near_miss_pairs"]), ingested(province["truth"]["equivalent_pairs"])
    assert len(near) >= 20 and len(same) >= 20  # the sample really holds them in several libraries
    merged = [(a, b) for a, b in near if members[a] == members[b]]
    found = sum(members[a] == members[b] for a, b in same)
    print(f"\nnear-miss pairs: {len(near)}, merged {len(merged)}; equivalent pairs: {found}/{len(same)} together")
    assert merged == []
    assert found / len(same) >= 0.95


def test_every_link_keeps_its_evidence(province):
    with province["engine"].connect() as conn:
        links = conn.execute(sa.text("SELECT rule, score, scores, status FROM catalog.link")).all()
        members = conn.execute(sa.text("SELECT rule, evidence FROM catalog.cluster_member")).all()
    assert links and all(l.status != "new" for l in links)
    assert {l.rule for l in links} <= {"same_keys", "isbn", "title_author", "title_publisher_year"}
    assert {"same_keys", "isbn"} <= {l.rule for l in links}
    assert all(set(l.scores) >= {"title", "author", "publisher", "year"} for l in links)
    assert all(l.scores["isbn"] for l in links if l.rule == "isbn")
    joined = [m for m in members if m.rule != "alone"]
    assert joined and all("linked_to" in m.evidence and "scores" in m.evidence for m in joined)


def test_rebuild_is_incremental_and_keeps_cluster_ids(province):
    engine = province["engine"]
    before = _members(engine)
    stats = catalog.build(engine)
    assert stats["keys_added"] == 0 and stats["pairs_compared"] == 0
    assert _members(engine) == before


def test_explain_shows_cluster_and_why(province, capsys):
    engine = province["engine"]
    with engine.connect() as conn:
        lib, local, cid = conn.execute(sa.text(
            """SELECT m.library_code, m.local_id, m.cluster_id FROM catalog.cluster_member m
               JOIN catalog.cluster c USING (cluster_id) WHERE m.rule = 'isbn' ORDER BY c.members DESC,
               m.record_id LIMIT 1""")).one()
    assert main(["catalog", "explain", f"{lib}:{local}", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["cluster_id"] == cid and result["rule"] == "isbn"
    assert any(l["status"] == "joined" and l["other_cluster_id"] == cid for l in result["links"])
    assert result["keys"]["isbn13"] and "cụm" in result["message_vi"]
    assert main(["catalog", "explain", f"{lib}:no-such-001", "--json"]) == 1
    assert "no such record" in json.loads(capsys.readouterr().out)["error"]


def test_steward_decisions_survive_rebuilds(province, capsys):
    engine = province["engine"]
    with engine.connect() as conn:
        big = conn.execute(sa.text(
            """SELECT cluster_id FROM catalog.cluster WHERE members >= 3 ORDER BY members DESC, cluster_id
               LIMIT 1""")).scalar_one()
        refs = [f"{r[0]}:{r[1]}" for r in conn.execute(sa.text(
            "SELECT library_code, local_id FROM catalog.cluster_member WHERE cluster_id = :c ORDER BY record_id"),
            {"c": big})]
        lonely = [f"{r[0]}:{r[1]}" for r in conn.execute(sa.text(
            """SELECT m.library_code, m.local_id FROM catalog.cluster_member m JOIN catalog.cluster c USING (cluster_id)
               WHERE c.members = 1 ORDER BY m.record_id LIMIT 2"""))]
    before = _members(engine)

    assert main(["catalog", "decide", "--split", refs[0], refs[1], "--reason", "hai lần in khác nhau", "--json"]) == 0
    split = json.loads(capsys.readouterr().out)
    assert split["cluster_ids"][refs[0]] != split["cluster_ids"][refs[1]]
    assert main(["catalog", "decide", "--merge", lonely[0], lonely[1], "--reason", "cùng một sách", "--json"]) == 0
    merged = json.loads(capsys.readouterr().out)
    assert merged["cluster_ids"][lonely[0]] == merged["cluster_ids"][lonely[1]]

    catalog.build(engine)
    after = _members(engine)
    key = lambda ref: tuple(ref.split(":", 1))  # noqa: E731
    assert after[key(refs[0])] != after[key(refs[1])]
    assert after[key(lonely[0])] == after[key(lonely[1])]
    assert after[key(refs[0])] == before[key(refs[0])]  # the larger part keeps the id
    explained = catalog.explain(engine, lonely[1])
    assert explained["rule"] == "steward_merge" and explained["decisions"][0]["reason"] == "cùng một sách"

    # Reversible: the opposite decision replaces the earlier one.
    catalog.decide(engine, "merge", refs[0], refs[1], "nhầm, là cùng một bản")
    catalog.decide(engine, "split", lonely[0], lonely[1], "nhầm, khác sách")
    restored = _members(engine)
    assert restored[key(refs[0])] == restored[key(refs[1])]
    assert restored[key(lonely[0])] != restored[key(lonely[1])]
    with pytest.raises(catalog.CatalogError, match="lý do"):
        catalog.decide(engine, "merge", refs[0], refs[1], " ")


def test_search_without_diacritics_finds_every_title(province, capsys):
    from lienthong.matchkeys import fold

    engine = province["engine"]
    with engine.connect() as conn:
        clusters = conn.execute(sa.text(
            "SELECT cluster_id, title FROM catalog.cluster WHERE title IS NOT NULL ORDER BY cluster_id")).all()
    for cluster_id, title in clusters[:: max(1, len(clusters) // 40)]:
        plain = catalog.search(engine, fold(title), limit=200, with_holdings=False)
        assert cluster_id in [r["cluster_id"] for r in plain], title
        accented = catalog.search(engine, title, limit=200, with_holdings=False)
        assert cluster_id in [r["cluster_id"] for r in accented], title

    assert main(["catalog", "search", "tieng viet", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["results"]
    first = result["results"][0]
    assert "tiếng việt" in (first["title"] or "").lower() or first["holdings"]
    assert all({"library_code", "accession_number", "call_number", "access_level", "availability"}
               <= set(h) for r in result["results"] for h in r["holdings"])


def _add_record(conn, library, local_id, title, author, publisher="Nxb. Kim Đồng", year="2021"):
    batch = conn.execute(sa.text("SELECT max(batch_id) FROM core.batch WHERE library_code = :l"),
                         {"l": library}).scalar_one()
    conn.execute(sa.text(
        """INSERT INTO core.record (library_code, local_id, record_hash, title, author, publisher, pub_year,
                                    encoding, valid_from, loaded_by_batch)
           VALUES (:l, :i, repeat('e', 64), :t, :a, :p, :y, 'utf-8', now(), :b)"""),
        {"l": library, "i": local_id, "t": title, "a": author, "p": publisher, "y": year, "b": batch})


def test_near_misses_stay_apart_and_exact_diacritics_rank_first(province):
    """RecordManager's mistakes, on the warehouse: "Ma"/"Mà"/"Má" and "Nguyễn Văn An"/"Nguyễn Văn Anh" are
    other books; the same book catalogued twice (inverted name, NFD) is one cluster."""
    import unicodedata

    engine = province["engine"]
    with engine.begin() as conn:
        _add_record(conn, "TV-TINH", "nm-1", "Ma", "Nguyễn Văn Hùng")
        _add_record(conn, "TV-MAICHAU", "nm-2", "Mà", "Nguyễn, Văn Hùng")
        _add_record(conn, "TV-TANLAC", "nm-3", "Má", "Nguyễn Văn Hùng")
        _add_record(conn, "TV-TINH", "nm-4", "Chuyện làng Mường", "Nguyễn Văn An")
        _add_record(conn, "TV-MAICHAU", "nm-5", "Chuyện làng Mường", "Nguyễn Văn Anh")
        _add_record(conn, "TV-TANLAC", "nm-6", unicodedata.normalize("NFD", "Chuyện làng Mường /"),
                    "Nguyễn, Văn An")
    catalog.build(engine)
    members = _members(engine)
    ma = {members[(lib, f"nm-{n}")] for lib, n in (("TV-TINH", 1), ("TV-MAICHAU", 2), ("TV-TANLAC", 3))}
    assert len(ma) == 3
    assert members[("TV-TINH", "nm-4")] == members[("TV-TANLAC", "nm-6")] != members[("TV-MAICHAU", "nm-5")]

    ranked = catalog.search(engine, "Mà", limit=20, with_holdings=False)
    ids = [r["cluster_id"] for r in ranked]
    exact = [matchkeys.title_parts(r["title"])[0] == "mà" for r in ranked]  # the sample holds a "Mà" too
    assert exact[0] and exact == sorted(exact, reverse=True)
    nm = {n: ids.index(members[(lib, f"nm-{n}")]) for lib, n in (("TV-TINH", 1), ("TV-MAICHAU", 2), ("TV-TANLAC", 3))}
    assert nm[2] < nm[1] and nm[2] < nm[3]
    plain = {r["cluster_id"] for r in catalog.search(engine, "ma nguyen van hung", limit=10, with_holdings=False)}
    assert ma <= plain


def test_group_and_library_filters(province):
    engine = province["engine"]
    results = catalog.search(engine, "toan", library="TV-TINH", limit=50)
    assert all(h["library_code"] == "TV-TINH" for r in results for h in r["holdings"])
    with engine.connect() as conn:
        group = conn.execute(sa.text(
            "SELECT group_code FROM core.group_membership WHERE library_code = 'THPT-MAICHAU' LIMIT 1")).scalar_one()
        members = set(conn.execute(sa.text(
            "SELECT library_code FROM core.group_membership WHERE group_code = :g"), {"g": group}).scalars())
    for r in catalog.search(engine, "lop", group=group, limit=50):
        assert r["holdings"] and {h["library_code"] for h in r["holdings"]} <= members


def test_marts_views(province):
    with province["engine"].connect() as conn:
        union = conn.execute(sa.text("SELECT count(*), sum(records) FROM marts.union_catalog")).one()
        clusters = conn.execute(sa.text("SELECT count(*) FROM catalog.cluster")).scalar_one()
        records = conn.execute(sa.text("SELECT count(*) FROM core.record WHERE valid_to IS NULL")).scalar_one()
        items = conn.execute(sa.text(
            "SELECT count(*) FROM core.item i JOIN core.record r USING (record_id) WHERE r.valid_to IS NULL"
        )).scalar_one()
        holdings = conn.execute(sa.text("SELECT count(*), count(DISTINCT access_level) FROM marts.holdings")).one()
        groups = conn.execute(sa.text(
            "SELECT group_code, clusters, shared_clusters FROM marts.clusters_per_group")).all()
        comment = conn.execute(sa.text("SELECT obj_description('marts.holdings'::regclass)")).scalar_one()
    assert union[0] == clusters and union[1] == records
    assert holdings[0] == items
    assert groups and all(g.clusters >= g.shared_clusters for g in groups)
    assert "ĐKCB" in comment


def test_export_reads_back(province, tmp_path, capsys):
    engine = province["engine"]
    with engine.connect() as conn:
        cid = conn.execute(sa.text(
            "SELECT cluster_id FROM catalog.cluster WHERE libraries >= 2 ORDER BY members DESC, cluster_id LIMIT 1"
        )).scalar_one()
        copies = conn.execute(sa.text("SELECT count(*) FROM marts.holdings WHERE cluster_id = :c"),
                              {"c": cid}).scalar_one()
    out = tmp_path / "one.mrc"
    assert main(["catalog", "export", "--cluster", str(cid), "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["records"] == 1 and summary["items"] == copies
    with open(out, "rb") as handle:
        records = [r for r in pymarc.MARCReader(handle, to_unicode=True, force_utf8=True)]
    assert len(records) == 1 and records[0] is not None
    assert records[0]["001"].data == f"LT{cid:09d}" and len(records[0].get_fields("952")) == copies

    xml = tmp_path / "query.xml"
    assert main(["catalog", "export", "--query", "toan", "--out", str(xml), "--format", "marcxml", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    parsed = pymarc.parse_xml_to_array(str(xml))
    assert summary["records"] == len(parsed) > 0
    assert all(r.title for r in parsed)


def test_access_levels_from_the_registry(province, tmp_path, monkeypatch):
    """A library that shares metadata only: its records form their own clusters (never merged with another
    level), show the level, and export without holdings; a collection exception reaches the items."""
    from lienthong.registry import PACKAGED_REGISTRY

    engine = province["engine"]
    data = yaml.safe_load(PACKAGED_REGISTRY.read_text(encoding="utf-8"))
    for lib in data["libraries"]:
        if lib["code"] == "TV-MAICHAU":
            lib["access"] = {"level": "metadata_only"}
        if lib["code"] == "TV-TANLAC":
            lib["access"] = {"level": "read_on_site", "collections": {"Kho mượn": "defined_use"}}
    changed = tmp_path / "registry.yaml"
    changed.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    monkeypatch.setenv("LIENTHONG_REGISTRY", str(changed))
    try:
        stats = catalog.build(engine)
        assert stats["pairs_compared"] == 0  # links are kept; only the clustering changes
        with engine.connect() as conn:
            mixed = conn.execute(sa.text(
                """SELECT count(*) FROM catalog.cluster_member m JOIN catalog.cluster c USING (cluster_id)
                   WHERE m.library_code = 'TV-MAICHAU' AND (c.access_level <> 'metadata_only' OR c.libraries > 1)"""
            )).scalar_one()
            refused = conn.execute(sa.text(
                "SELECT count(*) FROM catalog.link WHERE status_reason = 'access_level_differs'")).scalar_one()
            cid = conn.execute(sa.text(
                """SELECT cluster_id FROM catalog.cluster_member m JOIN core.item i USING (record_id)
                   WHERE m.library_code = 'TV-MAICHAU' LIMIT 1""")).scalar_one()
            levels = dict(conn.execute(sa.text(
                """SELECT collection, access_level FROM marts.holdings WHERE library_code = 'TV-TANLAC'
                   GROUP BY 1, 2""")).all())
        assert mixed == 0 and refused > 0
        assert levels.get("Kho mượn") == "defined_use" and levels.get("Kho đọc", "read_on_site") == "read_on_site"
        out = tmp_path / "metadata.mrc"
        summary = catalog.export(engine, out, cluster_id=cid)
        assert summary == {"file": str(out), "format": "marc21", "records": 1, "items": 0,
                           "metadata_only_records": 1}
        record = next(pymarc.MARCReader(out.read_bytes(), to_unicode=True, force_utf8=True))
        assert not record.get_fields("952") and record["506"]["f"] == "metadata_only"
    finally:
        monkeypatch.delenv("LIENTHONG_REGISTRY")
        catalog.build(engine)


def test_changed_record_is_matched_again(province):
    """A new version of a record (the library corrected it) gets fresh keys and comparisons."""
    engine = province["engine"]
    with engine.begin() as conn:
        old = conn.execute(sa.text(
            """SELECT r.* FROM core.record r JOIN catalog.cluster_member m USING (record_id)
               JOIN catalog.cluster c USING (cluster_id) WHERE c.members >= 2 ORDER BY r.record_id LIMIT 1""")).one()
        conn.execute(sa.text("UPDATE core.record SET valid_to = now() WHERE record_id = :r"), {"r": old.record_id})
        new_id = conn.execute(sa.text(
            """INSERT INTO core.record (library_code, local_id, record_hash, title, author, pub_place, publisher,
                                        pub_year, isbns, language, keywords, subjects, call_number, encoding,
                                        valid_from, loaded_by_batch)
               SELECT library_code, local_id, repeat('f', 64), title || ' /', author, pub_place, publisher,
                      pub_year, isbns, language, keywords, subjects, call_number, encoding, now(), loaded_by_batch
               FROM core.record WHERE record_id = :r RETURNING record_id"""), {"r": old.record_id}).scalar_one()
    before = _members(engine)[(old.library_code, old.local_id)]
    stats = catalog.build(engine)
    assert stats["keys_removed"] == 1 and stats["keys_added"] == 1 and stats["links_added"] > 0
    with engine.connect() as conn:
        member = conn.execute(sa.text(
            "SELECT record_id, cluster_id, rule FROM catalog.cluster_member WHERE library_code = :l AND local_id = :i"),
            {"l": old.library_code, "i": old.local_id}).one()
        orphans = conn.execute(sa.text(
            """SELECT count(*) FROM catalog.record_key k WHERE NOT k.is_rep AND NOT EXISTS (
                   SELECT 1 FROM catalog.link l JOIN catalog.record_key r ON r.record_id = l.record_a
                   WHERE l.record_b = k.record_id AND r.is_rep AND r.signature = k.signature)""")).scalar_one()
    assert member.record_id == new_id and member.cluster_id == before and member.rule != "alone"
    assert orphans == 0  # every record with the keys of an older one is linked to it
