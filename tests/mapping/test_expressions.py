"""Value expressions: paths, constants, templates, functions, defaults, required, each."""

from __future__ import annotations

from typing import Any

import pytest

from hub.core.errors import TransformError
from hub.mapping.conditions import Problems
from hub.mapping.expressions import compile_value

PAYLOAD = {
    "name": "Ana",
    "phone": "(11) 91234-5678",
    "client": {"id": 7, "email": "Ana@Example.com"},
    "items": [
        {"sku": "A", "price": "10,50", "qty": 2},
        {"sku": "B", "price": 3, "qty": 0},
    ],
    "flag": False,
}


def build(raw: Any, payload: Any = PAYLOAD) -> Any:
    problems: Problems = []
    getter = compile_value(raw, ("body",), problems)
    assert problems == []
    return getter(payload, payload)


def problems_of(raw: Any) -> Problems:
    problems: Problems = []
    compile_value(raw, ("routes", 0, "body"), problems)
    return problems


def test_a_body_from_paths_constants_templates_and_functions() -> None:
    body = build(
        {
            "name": "$.name",
            "origin": "site",
            "count": 3,
            "ok": True,
            "none": None,
            "literal": {"const": "$not-a-path"},
            "list_const": {"const": [1, {"a": "$.x"}]},
            "phone": {"fn": "phone_br", "args": ["$.phone"]},
            "email": {"fn": "lower", "args": ["$.client.email"]},
            "greeting": {"template": "Olá {{ $.name }} ({{$.client.id}})"},
            "inline": "Oi {{ $.name }}{{ $.missing }}!",
            "nested": {"client": {"id": "$.client.id", "flag": "$.flag"}},
            "pair": ["$.name", "$.client.id"],
            "missing": "$.nope",
        }
    )
    assert body == {
        "name": "Ana",
        "origin": "site",
        "count": 3,
        "ok": True,
        "none": None,
        "literal": "$not-a-path",
        "list_const": [1, {"a": "$.x"}],
        "phone": "+5511912345678",
        "email": "ana@example.com",
        "greeting": "Olá Ana (7)",
        "inline": "Oi Ana!",
        "nested": {"client": {"id": 7, "flag": False}},
        "pair": ["Ana", 7],
        "missing": None,
    }


def test_functions_nest_and_take_constant_arguments() -> None:
    raw = {"fn": "digits", "args": [{"fn": "phone_br", "args": ["$.phone"]}]}
    assert build(raw) == "5511912345678"
    assert build({"fn": "cpf", "args": ["52998224725", "mask"]}) == "***.982.247-**"
    assert build({"fn": "concat", "args": ["$.name", " #", "$.client.id"]}) == "Ana #7"


def test_default_replaces_null_only() -> None:
    assert build({"path": "$.missing", "default": "basic"}) == "basic"
    assert build({"path": "$.flag", "default": True}) is False
    assert build({"fn": "lower", "args": ["$.missing"], "default": "x"}) == "x"


def test_required_names_the_field_and_the_path() -> None:
    problems: Problems = []
    getter = compile_value(
        {"phone": {"path": "$.contact.phone", "required": True}}, ("routes", 1, "body"), problems
    )
    with pytest.raises(TransformError) as caught:
        getter({}, {})
    assert caught.value.message == (
        "routes[1].body.phone: required value is missing ($.contact.phone)"
    )


def test_a_function_that_rejects_a_value_names_the_field() -> None:
    problems: Problems = []
    getter = compile_value({"doc": {"fn": "cpf", "args": ["$.cpf"]}}, ("body",), problems)
    with pytest.raises(TransformError, match=r"^body\.doc: cpf: not a valid CPF$"):
        getter({"cpf": "123"}, {"cpf": "123"})


def test_each_builds_a_list_from_items_with_a_filter() -> None:
    raw = {
        "each": "$.items",
        "when": {"path": "@.qty", "gt": 0},
        "body": {"sku": "@.sku", "cents": {"fn": "money", "args": ["@.price"]}, "who": "$.name"},
    }
    assert build(raw) == [{"sku": "A", "cents": 1050, "who": "Ana"}]
    assert build({"each": "$.items", "body": "@.sku"}) == ["A", "B"]
    assert build({"each": "$.none", "body": "@.sku"}) is None
    with pytest.raises(TransformError, match="required value is missing"):
        build({"each": "$.none", "body": "@.sku", "required": True})
    with pytest.raises(TransformError, match=r"\$\.name is not a list"):
        build({"each": "$.name", "body": "@"})


def test_constants_are_fresh_copies() -> None:
    problems: Problems = []
    getter = compile_value({"const": {"a": [1]}}, ("body",), problems)
    first = getter({}, {})
    first["a"].append(2)
    assert getter({}, {}) == {"a": [1]}


@pytest.mark.parametrize(
    ("raw", "loc", "message"),
    [
        (
            {"phone": {"fn": "phone_bz", "args": ["$.phone"]}},
            ("routes", 0, "body", "phone", "fn"),
            "unknown function 'phone_bz' (did you mean 'phone_br'?)",
        ),
        (
            {"x": {"fn": "lower", "args": ["$.a", "$.b"]}},
            ("routes", 0, "body", "x", "args"),
            "lower takes 1 argument(s), got 2",
        ),
        (
            {"x": {"fn": "cpf", "args": ["$.a", "pretty"]}},
            ("routes", 0, "body", "x", "args", 1),
            "cpf: argument 2 is one of format, digits, mask, validate",
        ),
        (
            {"x": {"fn": "datetime", "args": ["$.a", "iso", "Mars/Olympus"]}},
            ("routes", 0, "body", "x", "args", 2),
            "unknown time zone",
        ),
        (
            {"x": {"path": "$.a", "defualt": 1}},
            ("routes", 0, "body", "x", "defualt"),
            "unknown key beside 'path'",
        ),
        ({"x": {"path": "$.a", "const": 1}}, ("routes", 0, "body", "x"), "not several"),
        ({"x": "$..["}, ("routes", 0, "body", "x"), "invalid JSONPath"),
        ({"x": "Oi {{ name }}"}, ("routes", 0, "body", "x"), "a placeholder holds a path"),
        ({"x": {"each": "items", "body": "@"}}, ("routes", 0, "body", "x", "each"), "a path"),
        ({"x": {"each": "$.items"}}, ("routes", 0, "body", "x"), "needs a 'body'"),
        ({"x": {"path": "$.a", "required": "yes"}}, ("routes", 0, "body", "x", "required"), ""),
    ],
)
def test_compile_problems_carry_their_location(
    raw: Any, loc: tuple[Any, ...], message: str
) -> None:
    problems = problems_of(raw)
    assert any(p_loc == loc and message in text for p_loc, text in problems), problems


def test_every_problem_is_collected_in_one_pass() -> None:
    problems = problems_of(
        {"a": {"fn": "nope"}, "b": {"path": "$.x", "extra": 1}, "c": "$..[", "d": "$.fine"}
    )
    assert len(problems) == 3
