"""JSONPath, fast: simple paths become plain key and index lookups.

`$.a.b[0].c`, `$['first name']` and `$` compile to closures doing dict/list indexing (about 30 times
faster than jsonpath-ng); anything else (`*`, `..`, filters, slices, unions) falls back to
jsonpath-ng, parsed once per distinct path. `$` is the event's payload; `@` is the current item
inside an `each`. A path that leads nowhere gives None (JSON null), never an error.

A real JSONPath that can match several values (wildcards, `..`, filters, slices, unions) gives the
list of its matches, or None when there are none; any other path gives one value or None.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

# (root, item) -> value; the item is the current element of an `each` (the root elsewhere)
Getter = Callable[[Any, Any], Any]

_SEGMENT = re.compile(
    r"""\.(?P<name>[A-Za-z_][A-Za-z0-9_-]*)
      | \[(?P<index>-?\d+)\]
      | \[\s*'(?P<single>[^'\\]*)'\s*\]
      | \[\s*"(?P<double>[^"\\]*)"\s*\]""",
    re.VERBOSE,
)
_MULTI = re.compile(r"\*|\.\.|\[\s*\?|:|,")


class PathError(ValueError):
    """A path that is not valid JSONPath."""


def is_path(value: object) -> bool:
    """Whether a string in a rule is a path (`$…` or `@…`) rather than a literal."""
    return isinstance(value, str) and value[:1] in ("$", "@") and value[1:2] in ("", ".", "[")


def simple_steps(path: str) -> list[str | int] | None:
    """The keys and indexes of a simple path, or None when it needs real JSONPath."""
    steps: list[str | int] = []
    pos = 1
    while pos < len(path):
        match = _SEGMENT.match(path, pos)
        if match is None:
            return None
        if match.group("name") is not None:
            steps.append(match.group("name"))
        elif match.group("index") is not None:
            steps.append(int(match.group("index")))
        else:
            steps.append(match.group("single") or match.group("double") or "")
        pos = match.end()
    return steps


def _lookup_keys(keys: tuple[str, ...], use_item: bool) -> Getter:
    """Only string keys: nested dict lookups; a missing key or a non-object gives None."""
    if len(keys) == 1:
        (a,) = keys

        def get1(root: Any, item: Any) -> Any:
            doc = item if use_item else root
            return doc.get(a) if type(doc) is dict else None

        return get1
    if len(keys) == 2:
        a, b = keys

        def get2(root: Any, item: Any) -> Any:
            doc = item if use_item else root
            if type(doc) is dict:
                inner = doc.get(a)
                if type(inner) is dict:
                    return inner.get(b)
            return None

        return get2

    def getn(root: Any, item: Any) -> Any:
        value = item if use_item else root
        for key in keys:
            if type(value) is not dict:
                return None
            value = value.get(key)
        return value

    return getn


def _lookup_steps(steps: tuple[str | int, ...], use_item: bool) -> Getter:
    def get(root: Any, item: Any) -> Any:
        value = item if use_item else root
        for step in steps:
            if type(step) is int:
                if type(value) is not list or not -len(value) <= step < len(value):
                    return None
                value = value[step]
            else:
                if type(value) is not dict:
                    return None
                value = value.get(step)
        return value

    return get


@functools.lru_cache(maxsize=1024)
def _parse_jsonpath(path: str) -> Any:
    from jsonpath_ng.exceptions import JsonPathParserError
    from jsonpath_ng.ext import parse

    try:
        return parse(path)
    except (JsonPathParserError, Exception) as exc:  # jsonpath-ng raises several kinds
        raise PathError(f"invalid JSONPath {path!r}: {exc}") from exc


def compile_path(path: str) -> Getter:
    """A getter for `path`; PathError when it is not valid JSONPath."""
    if not is_path(path):
        raise PathError(f"a path starts with '$' (the payload) or '@' (the item): {path!r}")
    use_item = path[0] == "@"
    steps = simple_steps(path)
    if steps is not None:
        if not steps:
            return (lambda _root, item: item) if use_item else (lambda root, _item: root)
        if all(type(s) is str for s in steps):
            return _lookup_keys(tuple(str(s) for s in steps), use_item)
        return _lookup_steps(tuple(steps), use_item)
    parsed = _parse_jsonpath("$" + path[1:])
    multi = _MULTI.search(path) is not None

    def find(root: Any, item: Any) -> Any:
        matches = parsed.find(item if use_item else root)
        if not matches:
            return None
        if multi:
            return [m.value for m in matches]
        return matches[0].value

    return find
