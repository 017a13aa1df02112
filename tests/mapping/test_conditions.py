"""Conditions: exists, equals, in, matches, numeric comparisons, all/any/not, with reasons."""

from __future__ import annotations

from typing import Any

import pytest

from hub.mapping.conditions import Condition, Problems, compile_condition

DOC = {
    "phone": "(11) 91234-5678",
    "status": "paid",
    "total": "150.5",
    "qty": 3,
    "flag": True,
    "email": "ana@example.com",
    "nothing": None,
}


def cond(raw: Any) -> Condition:
    problems: Problems = []
    compiled = compile_condition(raw, ("when",), problems)
    assert problems == []
    assert compiled is not None
    return compiled


@pytest.mark.parametrize(
    ("raw", "holds"),
    [
        ({"exists": "$.phone"}, True),
        ({"exists": "$.missing"}, False),
        ({"exists": "$.nothing"}, False),
        ({"path": "$.missing", "exists": False}, True),
        ({"path": "$.status", "equals": "paid"}, True),
        ({"path": "$.status", "equals": "open"}, False),
        ({"path": "$.flag", "equals": 1}, False),  # true is not 1
        ({"path": "$.qty", "equals": 3.0}, True),
        ({"path": "$.status", "in": ["paid", "refunded"]}, True),
        ({"path": "$.status", "in": ["open"]}, False),
        ({"path": "$.email", "matches": "@example\\.com$"}, True),
        ({"path": "$.email", "matches": "^bob"}, False),
        ({"path": "$.missing", "matches": ".*"}, False),
        ({"path": "$.total", "gt": 100}, True),
        ({"path": "$.total", "gte": 150.5, "lt": 151}, True),
        ({"path": "$.total", "lte": 150}, False),
        ({"path": "$.status", "gt": 1}, False),  # text that is not a number never compares
        ({"path": "$.flag", "gt": 0}, False),
        ({"all": [{"exists": "$.phone"}, {"path": "$.qty", "gt": 2}]}, True),
        ({"all": [{"exists": "$.phone"}, {"path": "$.qty", "gt": 5}]}, False),
        ({"any": [{"exists": "$.missing"}, {"path": "$.qty", "gt": 2}]}, True),
        ({"any": [{"exists": "$.missing"}, {"path": "$.qty", "gt": 5}]}, False),
        ({"not": {"path": "$.flag", "equals": False}}, True),
        ({"not": {"exists": "$.phone"}}, False),
    ],
)
def test_conditions(raw: Any, holds: bool) -> None:
    assert cond(raw).test(DOC, DOC) is holds


def test_why_not_names_the_part_that_failed() -> None:
    check = cond({"all": [{"exists": "$.phone"}, {"path": "$.status", "in": ["open", "new"]}]})
    assert check.why_not(DOC, DOC) == "expected $.status in ['open', 'new']"
    assert cond({"exists": "$.phone"}).why_not(DOC, DOC) is None
    assert cond({"not": {"exists": "$.phone"}}).why_not(DOC, DOC) == "expected not $.phone exists"
    reason = cond({"any": [{"exists": "$.a"}, {"exists": "$.b"}]}).why_not(DOC, DOC)
    assert reason == "none of: expected $.a exists; expected $.b exists"


@pytest.mark.parametrize(
    ("raw", "loc", "message"),
    [
        ({"exist": "$.phone"}, ("when", "exist"), "unknown condition key"),
        ({"path": "$.a"}, ("when",), "give an operator"),
        ({"equals": 1}, ("when",), "give a 'path'"),
        ({"path": "$.a", "gt": "ten"}, ("when", "gt"), "'gt' takes a number"),
        ({"path": "$.a", "matches": "("}, ("when", "matches"), "invalid regular expression"),
        ({"path": "$.a", "in": "x"}, ("when", "in"), "'in' takes a list"),
        ({"path": "phone", "exists": True}, ("when", "path"), "a path starts with '$'"),
        ({"all": []}, ("when", "all"), "non-empty list"),
        ({"all": [{"exists": "$.a"}, {"nope": 1}]}, ("when", "all", 1, "nope"), "unknown"),
        ({"not": {"exists": "$.a"}, "path": "$.b"}, ("when",), "stands alone"),
        ("$.a", ("when",), "a condition is a mapping"),
    ],
)
def test_problems_carry_their_location(raw: Any, loc: tuple[Any, ...], message: str) -> None:
    problems: Problems = []
    assert compile_condition(raw, ("when",), problems) is None
    assert any(p_loc == loc and message in text for p_loc, text in problems), problems
