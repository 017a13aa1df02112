"""`hub mappings test`: examples run, mismatches come back as readable field-level diffs."""

from __future__ import annotations

import shutil
from pathlib import Path

from hub.mapping.config import load_mappings
from hub.mapping.examples import diff, run_examples

SHIPPED = Path(__file__).resolve().parents[2] / "mappings"


def test_every_shipped_example_passes() -> None:
    results = run_examples(load_mappings(SHIPPED))
    assert len(results) >= 9
    assert [(r.rule, r.name, r.problems) for r in results if not r.ok] == []


def test_diff_lists_each_differing_field() -> None:
    expected = {"a": 1, "b": {"c": "x", "d": [1, 2]}, "gone": True, "t": True}
    actual = {"a": 2, "b": {"c": "x", "d": [1, 3, 4]}, "new": None, "t": 1}
    assert diff(expected, actual) == [
        ".a: expected 1, got 2",
        ".b.d[1]: expected 2, got 3",
        ".b.d: expected 2 items, got 3",
        ".gone: missing (expected True)",
        ".t: expected True, got 1",
        ".new: unexpected field, got None",
    ]
    assert diff({"a": [1]}, {"a": [1]}) == []


def test_mismatches_are_reported_per_example(tmp_path: Path) -> None:
    target = tmp_path / "mappings"
    shutil.copytree(SHIPPED, target)
    rule = target / "rules" / "lead_created.yaml"
    text = rule.read_text()
    text = text.replace("email: ana@example.com", "email: ANA@example.com", 1)
    text = text.replace(
        "expect: {crm: null, auto-reply: null, marketing: null}", "expect: {crm: {}}"
    )
    text = text.replace('error: "routes[0].body.phone: phone_br', 'error: "routes[0].body.name', 1)
    rule.write_text(text)
    results = {r.name: r for r in run_examples(load_mappings(target))}
    site = results["a lead from the site form"]
    assert site.problems == ["crm.email: expected 'ANA@example.com', got 'ana@example.com'"]
    own = results["our own outgoing message is not a lead"]
    assert own.problems == [
        "crm: expected a delivery, but none (when: expected not $.fromMe equals True)"
    ]
    bad = results["a phone that is not Brazilian fails the event, naming the field"]
    assert bad.problems[0].startswith("expected an error containing 'routes[0].body.name: not")
    assert "phone_br: not a Brazilian phone number" in bad.problems[0]
