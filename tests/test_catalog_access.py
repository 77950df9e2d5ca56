"""Access levels of §III.2b in the registry: validated on load with file:line:key, resolved item > collection >
library > default."""
from __future__ import annotations

import pytest
import yaml

from lienthong.registry import ACCESS_LEVELS, PACKAGED_REGISTRY, RegistryError, load_registry


def _registry_with(tmp_path, defaults_access=None, **by_code):
    data = yaml.safe_load(PACKAGED_REGISTRY.read_text(encoding="utf-8"))
    if defaults_access is not None:
        data["defaults"]["access"] = defaults_access
    for lib in data["libraries"]:
        if lib["code"] in by_code:
            lib["access"] = by_code[lib["code"]]
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def test_packaged_registry_sets_levels():
    registry = load_registry()
    assert {lib.access.level for lib in registry.libraries.values()} <= set(ACCESS_LEVELS)
    tinh = registry.libraries["TV-TINH"].access
    assert tinh.level_of("Kho mượn") == "defined_use" and tinh.level_of("Kho đọc") == "read_on_site"


def test_levels_resolve_item_then_collection_then_library_then_default(tmp_path):
    path = _registry_with(tmp_path, {"level": "metadata_only"},
                          **{"TV-DABAC": {"level": "paid_service", "collections": {"Kho đọc": "read_on_site"},
                                          "items": {"STK.000001": "metadata_only"}}})
    registry = load_registry(path)
    access = registry.libraries["TV-DABAC"].access
    assert access.level_of() == "paid_service"
    assert access.level_of("Kho đọc") == "read_on_site"
    assert access.level_of("Kho đọc", "STK.000001") == "metadata_only"
    assert registry.libraries["TV-LUONGSON"].access.level == "metadata_only"  # the default
    assert registry.to_dict()["libraries"][0]["access"]["level"] in ACCESS_LEVELS


def test_bad_levels_are_reported_with_line_and_key(tmp_path):
    path = _registry_with(tmp_path, **{"TV-DABAC": {"level": "read-on-site", "collections": {"Kho đọc": "free"},
                                                    "items": ["STK.1"], "scope": "all"}})
    with pytest.raises(RegistryError) as caught:
        load_registry(path)
    problems = "\n".join(caught.value.problems)
    assert "registry.yaml:" in problems
    assert "access.level: 'read-on-site' is not one of" in problems and "did you mean 'read_on_site'" in problems
    assert "access.collections['Kho đọc']" in problems and "'free' is not one of" in problems
    assert "access.items: expected a mapping" in problems
    assert "access.scope: unknown key" in problems
