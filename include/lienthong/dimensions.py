"""The registry, loaded into warehouse dimensions (library, group, membership with validity).

The registry file is the truth: groups and memberships are replaced as a whole in one transaction;
libraries are upserted, and one that left the registry is removed only when no data refers to it (no batch, which
every record version references, and no accepted quality exception).
"""
from __future__ import annotations

import json

import sqlalchemy as sa

from lienthong.registry import Registry, load_registry


def load_registry_dimensions(engine: sa.Engine, registry: Registry | None = None) -> dict:
    data = (registry or load_registry()).to_dict()
    libraries = data["libraries"]
    groups = data["groups"]
    units = data.get("administrative_units", [])
    memberships = [
        {"group": g["code"], "library": m["library"], "valid_from": m["valid_from"], "valid_to": m.get("valid_to")}
        for g in groups for m in g["members"]
    ]
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM core.administrative_unit"))
        if units:
            conn.execute(
                sa.text("""INSERT INTO core.administrative_unit (unit_code, name, level, parent_code, valid_from,
                                                                 valid_to)
                           VALUES (:code, :name, :level, :parent, :valid_from, :valid_to)"""),
                [{"code": u["code"], "name": u["name"], "level": u["level"], "parent": u.get("parent"),
                  "valid_from": u["valid_from"], "valid_to": u.get("valid_to")} for u in units],
            )
        conn.execute(
            sa.text(
                """INSERT INTO core.library (library_code, name, library_type, admin_unit, commune, valid_from,
                                             valid_to, is_sample, export_source, lending_policy,
                                             call_number_scheme, registry_loaded_at)
                   VALUES (:code, :name, :type, :admin_unit, :commune, :valid_from, :valid_to, :sample,
                           CAST(:source AS jsonb), CAST(:policy AS jsonb), :scheme, now())
                   ON CONFLICT (library_code) DO UPDATE SET
                       name = EXCLUDED.name, library_type = EXCLUDED.library_type,
                       admin_unit = EXCLUDED.admin_unit, commune = EXCLUDED.commune,
                       valid_from = EXCLUDED.valid_from, valid_to = EXCLUDED.valid_to,
                       is_sample = EXCLUDED.is_sample, export_source = EXCLUDED.export_source,
                       lending_policy = EXCLUDED.lending_policy, call_number_scheme = EXCLUDED.call_number_scheme,
                       registry_loaded_at = EXCLUDED.registry_loaded_at"""
            ),
            [
                {"code": lib["code"], "name": lib["name"], "type": lib["type"], "admin_unit": lib.get("admin_unit"),
                 "commune": lib.get("commune"), "valid_from": lib["valid_from"], "valid_to": lib.get("valid_to"),
                 "sample": bool(lib.get("sample", False)),
                 "source": json.dumps(lib.get("source") or {}, ensure_ascii=False),
                 "policy": json.dumps(lib.get("lending_policy") or {}, ensure_ascii=False),
                 "scheme": lib.get("call_number_scheme")}
                for lib in libraries
            ],
        )
        conn.execute(sa.text("DELETE FROM core.group_membership"))
        conn.execute(sa.text("DELETE FROM core.library_group"))
        if groups:
            conn.execute(
                sa.text(
                    """INSERT INTO core.library_group (group_code, name, linking_mode, lead_library, valid_from,
                                                       valid_to, rules)
                       VALUES (:code, :name, :mode, :lead, :valid_from, :valid_to, CAST(:rules AS jsonb))"""
                ),
                [{"code": g["code"], "name": g["name"], "mode": g["linking_mode"], "lead": g["lead_library"],
                  "valid_from": g["valid_from"], "valid_to": g.get("valid_to"),
                  "rules": json.dumps(g.get("rules") or {}, ensure_ascii=False)} for g in groups],
            )
        if memberships:
            conn.execute(
                sa.text("""INSERT INTO core.group_membership (group_code, library_code, valid_from, valid_to)
                           VALUES (:group, :library, :valid_from, :valid_to)"""),
                memberships,
            )
        codes = [lib["code"] for lib in libraries]
        removed = conn.execute(
            sa.text(
                """DELETE FROM core.library l
                   WHERE NOT (l.library_code = ANY(:codes))
                     AND NOT EXISTS (SELECT 1 FROM core.batch b WHERE b.library_code = l.library_code)
                     AND NOT EXISTS (SELECT 1 FROM quality.exception e WHERE e.library_code = l.library_code)
                   RETURNING library_code"""
            ),
            {"codes": codes},
        ).all()
    return {"libraries": len(libraries), "groups": len(groups), "memberships": len(memberships),
            "administrative_units": len(units), "libraries_removed": len(removed)}
