"""Paths: simple ones are plain lookups, real JSONPath uses jsonpath-ng; missing is null."""

from __future__ import annotations

import pytest

from hub.mapping.paths import PathError, compile_path, is_path, simple_steps

DOC = {
    "name": "Ana",
    "client": {"address": {"city": "Recife"}, "tags": ["vip", "new"]},
    "items": [{"sku": "A", "qty": 2}, {"sku": "B", "qty": 0}],
    "first name": "Ana Maria",
    "nothing": None,
    "text": "abc",
}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("$", DOC),
        ("$.name", "Ana"),
        ("$.client.address.city", "Recife"),
        ("$.client.tags[1]", "new"),
        ("$.items[-1].sku", "B"),
        ("$['first name']", "Ana Maria"),
        ('$["client"]["address"].city', "Recife"),
        ("$.missing", None),
        ("$.client.missing.deeper", None),
        ("$.items[9].sku", None),
        ("$.nothing.below", None),
        ("$.text.length", None),  # no attribute access on Python objects
        ("$.text[0]", None),  # strings are not lists
        ("$.name.upper", None),
        ("$.items.sku", None),
    ],
)
def test_simple_paths(path: str, value: object) -> None:
    assert simple_steps(path) is not None
    assert compile_path(path)(DOC, DOC) == value


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("$.items[*].sku", ["A", "B"]),
        ("$..sku", ["A", "B"]),
        ("$.items[?(@.qty > 0)].sku", ["A"]),
        ("$.items[?(@.qty > 5)].sku", None),
        ("$.items[0:1].sku", ["A"]),
    ],
)
def test_real_jsonpath_gives_the_list_of_matches(path: str, value: object) -> None:
    assert simple_steps(path) is None
    assert compile_path(path)(DOC, DOC) == value


def test_at_is_the_current_item() -> None:
    item = {"sku": "Z"}
    assert compile_path("@.sku")(DOC, item) == "Z"
    assert compile_path("@")(DOC, item) == item
    assert compile_path("$.name")(DOC, item) == "Ana"


def test_paths_and_literals_are_told_apart() -> None:
    assert is_path("$.a") and is_path("$") and is_path("@.x") and is_path("$[0]")
    assert not is_path("$5 off") and not is_path("site") and not is_path("a@b.com")


@pytest.mark.parametrize("bad", ["$.items[?(@.qty >", "name", "$..[", "$.a[?(]"])
def test_an_invalid_path_is_an_error(bad: str) -> None:
    with pytest.raises(PathError):
        compile_path(bad)
