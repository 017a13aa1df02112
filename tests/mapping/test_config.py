"""Loading mappings/: every problem at once, as `file:line path: message`, cross-references too."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hub.core.errors import MappingsError
from hub.mapping.config import load_mappings

SHIPPED = Path(__file__).resolve().parents[2] / "mappings"


@pytest.fixture
def mappings(tmp_path: Path) -> Path:
    target = tmp_path / "mappings"
    shutil.copytree(SHIPPED, target)
    return target


def problems(directory: Path) -> list[str]:
    with pytest.raises(MappingsError) as caught:
        load_mappings(directory)
    return caught.value.problems


def test_the_shipped_mappings_load() -> None:
    config = load_mappings(SHIPPED)
    assert sorted(config.rules) == [
        "appointment",
        "client-registered",
        "lead-created",
        "service-completed",
    ]
    assert {"crm", "whatsapp", "email", "financeiro", "marketing"} <= set(config.endpoints)
    assert {"site", "zapi", "crm", "operacao"} <= set(config.sources)
    assert [r.name for r in config.ruleset.rules] == sorted(config.rules)


def test_every_problem_of_a_rule_file_is_reported_with_file_line_and_path(
    mappings: Path,
) -> None:
    rule = mappings / "rules" / "lead.yaml"
    rule.write_text(
        """\
rule: lead-bad
sources: [site, sitte]
events: [lead.created]
when: {exist: $.phone}
routes:
  - to: crm
    path: /leads
    body:
      name: $.name
      phone: {fn: phone_bz, args: [$.phone]}
  - to: crmm
    body: {a: {path: $.a, defualt: 1}}
examples:
  - input: {}
    expect: {nope: {}}
"""
    )
    found = [p for p in problems(mappings) if "lead.yaml" in p]
    shown = str(rule.relative_to(Path.cwd())) if rule.is_relative_to(Path.cwd()) else str(rule)
    expected = [
        f"{shown}:2 sources[1]: unknown source 'sitte' (did you mean 'site'?)",
        f"{shown}:4 when.exist: unknown condition key",
        f"{shown}:10 routes[0].body.phone.fn: unknown function 'phone_bz' "
        "(did you mean 'phone_br'?)",
        f"{shown}:11 routes[1].to: unknown endpoint 'crmm' (did you mean 'crm'?)",
        f"{shown}:12 routes[1].body.a.defualt: unknown key beside 'path'",
        f"{shown}:15 examples[0].expect.nope: unknown route key 'nope'",
    ]
    for line in expected:
        assert any(p.startswith(line) for p in found), (line, found)
    assert len(found) == len(expected)


def test_shape_problems_and_unknown_top_level_keys(mappings: Path) -> None:
    (mappings / "rules" / "shape.yaml").write_text(
        """\
rule: Bad Name
sources: []
events: ["lead.cre*"]
route: []
routes:
  - to: crm
    delay: soon
    queue: fast
    method: FETCH
    path: leads
"""
    )
    found = " | ".join(p for p in problems(mappings) if "shape.yaml" in p)
    for part in (
        ":1 rule:",
        ":2 sources:",
        ":3 events:",
        ":4 route: unknown key",
        ":7 routes[0].delay: not a duration",
        ":8 routes[0].queue:",
        ":9 routes[0].method: method is one of",
        ":10 routes[0].path: a path starts with '/'",
    ):
        assert part in found, part


def test_duplicate_rule_names_and_route_keys(mappings: Path) -> None:
    (mappings / "rules" / "zz_copy.yaml").write_text(
        """\
rule: lead-created
sources: [site]
events: [lead.created]
routes:
  - {to: whatsapp, key: whatsapp-2, body: {}}
  - {to: whatsapp, body: {}}
  - {to: whatsapp, body: {}}
"""
    )
    found = " | ".join(p for p in problems(mappings) if "zz_copy.yaml" in p)
    assert ":1 rule: rule 'lead-created' is also defined in" in found
    assert "lead_created.yaml" in found
    assert ":7 routes[2]: routes[0] has the same key 'whatsapp-2'" in found


def test_problems_in_every_file_are_reported_together(mappings: Path) -> None:
    (mappings / "sources.yaml").write_text("sources:\n  site:\n    queue: fastest\n")
    (mappings / "endpoints.yaml").write_text(
        "endpoints:\n  crm: {kind: webhook, url: x, colour: red}\n"
    )
    (mappings / "rules" / "broken.yaml").write_text("rule: [unclosed\n")
    found = problems(mappings)
    assert any("sources.yaml:3 sources.site.queue" in p for p in found)
    assert any("endpoints.yaml:2 endpoints.crm.colour: unknown key" in p for p in found)
    assert any("broken.yaml:" in p and "invalid YAML" in p for p in found)


def test_a_missing_directory_is_one_problem(tmp_path: Path) -> None:
    assert problems(tmp_path / "nowhere") == [f"{tmp_path / 'nowhere'}: not a directory"]


def test_several_routes_to_one_endpoint_are_numbered(mappings: Path) -> None:
    (mappings / "rules" / "fanout.yaml").write_text(
        """\
rule: fanout
sources: [site]
events: ["lead.*"]
routes:
  - {to: crm, path: /a, body: {}}
  - {to: whatsapp, body: {}}
  - {to: crm, path: /b, body: {}}
  - {to: crm, key: audit, body: {}}
"""
    )
    config = load_mappings(mappings)
    assert config.rules["fanout"].route_keys() == ["crm-1", "whatsapp", "crm-2", "audit"]
    assert [r.key for r in config.ruleset.by_name["fanout"].routes] == [
        "crm-1", "whatsapp", "crm-2", "audit",
    ]  # fmt: skip


def test_a_keyed_route_does_not_rename_the_keyless_one(mappings: Path) -> None:
    (mappings / "rules" / "keyed.yaml").write_text(
        """\
rule: keyed
sources: [site]
events: ["lead.*"]
routes:
  - {to: crm, path: /a, body: {}}
  - {to: crm, key: audit, path: /audit, body: {}}
"""
    )
    # adding the keyed route must leave the first one's key (and so its deliveries) as they were
    assert load_mappings(mappings).rules["keyed"].route_keys() == ["crm", "audit"]
