"""Conditions: when a rule (or one route) applies.

```yaml
when: {exists: $.phone}                          # the value is present and not null
when: {path: $.status, equals: paid}
when: {path: $.origin, in: [site, whatsapp]}
when: {path: $.email, matches: "@example\\.com$"}   # a regex search
when: {path: $.total, gte: 100, lt: 1000}        # numbers (numeric text counts); all must hold
when: {path: $.phone, exists: false}
when: {all: [...]} | {any: [...]} | {not: {...}}
```
A condition is compiled once into a `Condition` whose `test(root, item)` is fast and whose
`why_not(root, item)` says in words which part failed (for simulate and `hub mappings test`).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Any

from hub.mapping.paths import Getter, PathError, compile_path, is_path

Loc = tuple[str | int, ...]
Problems = list[tuple[Loc, str]]

_COMPARISONS: dict[str, tuple[Callable[[Any, Any], bool], str]] = {
    "gt": (operator.gt, ">"),
    "gte": (operator.ge, ">="),
    "lt": (operator.lt, "<"),
    "lte": (operator.le, "<="),
}
_LEAF_OPERATORS = ("exists", "equals", "in", "matches", *_COMPARISONS)
_KEYS = ("path", *_LEAF_OPERATORS, "all", "any", "not")


class Condition:
    """A compiled condition."""

    def test(self, root: Any, item: Any) -> bool:
        raise NotImplementedError

    def why_not(self, root: Any, item: Any) -> str | None:
        """None when the condition holds, else the reason it does not."""
        return None if self.test(root, item) else f"expected {self.text()}"

    def text(self) -> str:
        """What the condition says, in words."""
        raise NotImplementedError


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _same(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1, 1 equals 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


class Leaf(Condition):
    """Every operator given on one path must hold."""

    def __init__(self, path: str, getter: Getter, checks: list[tuple[str, Any]]) -> None:
        self.path = path
        self.getter = getter
        self.checks = checks
        tests: list[Callable[[Any], bool]] = []
        for name, expected in checks:
            tests.append(self._check(name, expected))
        self.tests = tests

    @staticmethod
    def _check(name: str, expected: Any) -> Callable[[Any], bool]:
        if name == "exists":
            return (lambda v: v is not None) if expected else (lambda v: v is None)
        if name == "equals":
            return lambda v: _same(v, expected)
        if name == "in":
            options = list(expected)
            return lambda v: any(_same(v, o) for o in options)
        if name == "matches":
            regex = re.compile(expected)
            return lambda v: isinstance(v, str | int | float) and bool(regex.search(str(v)))
        compare, _ = _COMPARISONS[name]
        bound = float(expected)

        def numeric(value: Any) -> bool:
            number = _number(value)
            return number is not None and compare(number, bound)

        return numeric

    def test(self, root: Any, item: Any) -> bool:
        value = self.getter(root, item)
        for check in self.tests:
            if not check(value):
                return False
        return True

    def why_not(self, root: Any, item: Any) -> str | None:
        value = self.getter(root, item)
        for (name, expected), check in zip(self.checks, self.tests, strict=True):
            if not check(value):
                return f"expected {_text_one(self.path, name, expected)}"
        return None

    def text(self) -> str:
        return " and ".join(_text_one(self.path, n, e) for n, e in self.checks)


def _text_one(path: str, name: str, expected: Any) -> str:
    if name == "exists":
        return f"{path} {'exists' if expected else 'is absent'}"
    if name == "equals":
        return f"{path} equals {expected!r}"
    if name == "in":
        return f"{path} in {list(expected)!r}"
    if name == "matches":
        return f"{path} matches /{expected}/"
    return f"{path} {_COMPARISONS[name][1]} {expected}"


class All(Condition):
    def __init__(self, parts: list[Condition]) -> None:
        self.parts = parts

    def test(self, root: Any, item: Any) -> bool:
        return all(p.test(root, item) for p in self.parts)

    def why_not(self, root: Any, item: Any) -> str | None:
        for part in self.parts:
            reason = part.why_not(root, item)
            if reason is not None:
                return reason
        return None

    def text(self) -> str:
        return "(" + " and ".join(p.text() for p in self.parts) + ")"


class AnyOf(Condition):
    def __init__(self, parts: list[Condition]) -> None:
        self.parts = parts

    def test(self, root: Any, item: Any) -> bool:
        return any(p.test(root, item) for p in self.parts)

    def why_not(self, root: Any, item: Any) -> str | None:
        if self.test(root, item):
            return None
        reasons = [p.why_not(root, item) or p.text() for p in self.parts]
        return "none of: " + "; ".join(reasons)

    def text(self) -> str:
        return "(" + " or ".join(p.text() for p in self.parts) + ")"


class Not(Condition):
    def __init__(self, part: Condition) -> None:
        self.part = part

    def test(self, root: Any, item: Any) -> bool:
        return not self.part.test(root, item)

    def text(self) -> str:
        return f"not {self.part.text()}"


def compile_condition(raw: Any, loc: Loc, problems: Problems) -> Condition | None:
    """Compile `raw`; every problem is appended to `problems` with its location."""
    if not isinstance(raw, dict) or not raw:
        problems.append((loc, "a condition is a mapping such as {exists: $.phone}"))
        return None
    unknown = [k for k in raw if k not in _KEYS]
    for key in unknown:
        problems.append(((*loc, str(key)), f"unknown condition key (known: {', '.join(_KEYS)})"))
    if unknown:
        return None
    groups = [k for k in ("all", "any", "not") if k in raw]
    if groups:
        if len(raw) != 1:
            problems.append((loc, f"'{groups[0]}' stands alone in its mapping"))
            return None
        key = groups[0]
        if key == "not":
            inner = compile_condition(raw["not"], (*loc, "not"), problems)
            return Not(inner) if inner is not None else None
        items = raw[key]
        if not isinstance(items, list) or not items:
            problems.append(((*loc, key), f"'{key}' takes a non-empty list of conditions"))
            return None
        parts = [compile_condition(c, (*loc, key, i), problems) for i, c in enumerate(items)]
        if any(p is None for p in parts):
            return None
        compiled = [p for p in parts if p is not None]
        return All(compiled) if key == "all" else AnyOf(compiled)
    return _compile_leaf(raw, loc, problems)


def _compile_leaf(raw: dict[str, Any], loc: Loc, problems: Problems) -> Condition | None:
    path = raw.get("path")
    operators = [k for k in _LEAF_OPERATORS if k in raw]
    if path is None:
        if operators == ["exists"] and is_path(raw["exists"]):
            path, checks = raw["exists"], [("exists", True)]  # {exists: $.phone}
        else:
            problems.append((loc, "give a 'path' and an operator, or {exists: $.path}"))
            return None
    else:
        if not operators:
            problems.append((loc, f"give an operator: {', '.join(_LEAF_OPERATORS)}"))
            return None
        checks = []
        for name in operators:
            problem = _operand_problem(name, raw[name])
            if problem is not None:
                problems.append(((*loc, name), problem))
            else:
                checks.append((name, raw[name]))
        if len(checks) != len(operators):
            return None
    where = (*loc, "path") if "path" in raw else (*loc, "exists")
    if not isinstance(path, str):
        problems.append((where, "a path is text such as $.phone"))
        return None
    try:
        getter = compile_path(path)
    except PathError as exc:
        problems.append((where, str(exc)))
        return None
    return Leaf(path, getter, checks)


def _operand_problem(name: str, value: Any) -> str | None:
    if name == "exists":
        return None if isinstance(value, bool) else "exists takes true or false with a path"
    if name == "in":
        return None if isinstance(value, list) else "'in' takes a list of values"
    if name == "matches":
        if not isinstance(value, str):
            return "'matches' takes a regular expression"
        try:
            re.compile(value)
        except re.error as exc:
            return f"invalid regular expression: {exc}"
        return None
    if name in _COMPARISONS:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok else f"'{name}' takes a number"
    return None
