"""YAML config files that remember where each value was written.

`load_yaml(path)` returns the data and a `LineMap` from value paths (`("routes", 0, "body")`) to
line numbers, so that every problem is reported as `file:line path: message`, the way a compiler
would: `mappings/rules/lead.yaml:14 routes[0].body.phone: unknown function 'phone_bz'`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar, get_args

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

Loc = tuple[str | int, ...]


class LineMap:
    """Line numbers (1-based) of every mapping key and sequence item of a YAML document."""

    def __init__(self) -> None:
        self.lines: dict[Loc, int] = {}

    def line(self, loc: Sequence[str | int]) -> int:
        """The line of `loc`, or of its nearest ancestor that has one (1 at worst)."""
        path = tuple(loc)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), 1)

    def _walk(self, node: yaml.Node, path: Loc) -> None:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                name = key.value if isinstance(key, yaml.ScalarNode) else str(key.value)
                child = (*path, name)
                self.lines[child] = key.start_mark.line + 1
                self._walk(value, child)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._walk(item, (*path, index))


class YamlProblem(Exception):
    """A file that is not valid YAML; `message` is formatted `file:line: reason`."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def load_yaml(path: Path) -> tuple[Any, LineMap]:
    """Parse `path`; YamlProblem (with the line) when it is not readable YAML."""
    shown = display_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise YamlProblem(f"{shown}:1: cannot read ({exc})") from exc
    lines = LineMap()
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise YamlProblem(f"{shown}:{line}: invalid YAML ({exc.problem or exc})") from exc
    except yaml.YAMLError as exc:
        raise YamlProblem(f"{shown}:1: invalid YAML ({exc})") from exc
    if node is not None:
        lines._walk(node, ())
    return data, lines


def format_loc(loc: Iterable[str | int]) -> str:
    """`("routes", 0, "body", "phone")` → `routes[0].body.phone`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top)"


def problem(path: Path, lines: LineMap, loc: Sequence[str | int], message: str) -> str:
    return f"{display_path(path)}:{lines.line(loc)} {format_loc(loc)}: {message}"


def _clean_loc(loc: Sequence[str | int], lines: LineMap, base: Loc) -> Loc:
    """Drop pydantic's internal loc parts (union tags, validator names) that are not in the file."""
    kept: list[str | int] = []
    for part in loc:
        candidate = (*base, *kept, part)
        if candidate in lines.lines or isinstance(part, int):
            kept.append(part)
        elif not any(ch in str(part) for ch in "[]()-,") and " " not in str(part):
            kept.append(part)  # a key that is missing from the file: still worth naming
    return tuple(kept)


def validation_problems(
    path: Path, lines: LineMap, error: ValidationError, base: Loc = ()
) -> list[str]:
    """One `file:line path: message` per pydantic error; `base` prefixes every loc."""
    out = []
    for err in error.errors():
        loc = (*base, *_clean_loc(err["loc"], lines, base))
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown key" + _did_you_mean(loc[-1] if loc else "", error.title)
        elif message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        elif message.startswith("Assertion failed, "):
            message = message[len("Assertion failed, ") :]
        out.append(problem(path, lines, loc, message))
    return out


class ConfigModel(BaseModel):
    """Base of every model read from a config file: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _CONFIG_MODELS[cls.__name__] = cls


_CONFIG_MODELS: dict[str, type[BaseModel]] = {}


def _known_keys(model: type[BaseModel], seen: set[type[BaseModel]] | None = None) -> set[str]:
    """Every key `model` and the models nested in it accept (for 'did you mean')."""
    seen = set() if seen is None else seen
    if model in seen:
        return set()
    seen.add(model)
    keys: set[str] = set()
    for name, info in model.model_fields.items():
        keys.add(info.alias or name)
        todo: list[Any] = [info.annotation]
        while todo:
            current = todo.pop()
            if isinstance(current, type) and issubclass(current, BaseModel):
                keys |= _known_keys(current, seen)
            todo.extend(get_args(current))
    return keys


def _did_you_mean(key: str | int, model_name: str) -> str:
    model = _CONFIG_MODELS.get(model_name)
    if model is None or not isinstance(key, str):
        return ""
    close = difflib.get_close_matches(key, sorted(_known_keys(model)), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


M = TypeVar("M", bound=BaseModel)
NAME_RE = r"^[a-z0-9][a-z0-9_-]{0,63}$"


def load_named_section(path: Path, section: str, model: type[M]) -> tuple[dict[str, M], list[str]]:
    """Read `section:` of `path`, a mapping of names to `model`; returns (items, problems)."""
    try:
        data, lines = load_yaml(path)
    except YamlProblem as exc:
        return {}, [exc.message]
    if data is None:
        return {}, []
    if not isinstance(data, dict):
        return {}, [problem(path, lines, (), f"expected a mapping with a '{section}' key")]
    problems = [problem(path, lines, (key,), "unknown key") for key in data if key != section]
    body = data.get(section) or {}
    if not isinstance(body, dict):
        return {}, [*problems, problem(path, lines, (section,), "expected a mapping of names")]
    items: dict[str, M] = {}
    for name, raw in body.items():
        if not isinstance(name, str) or not re.match(NAME_RE, name):
            problems.append(
                problem(
                    path,
                    lines,
                    (section, str(name)),
                    "names are lower-case letters, digits, '-' and '_' (at most 64)",
                )
            )
            continue
        try:
            items[name] = model.model_validate(raw if raw is not None else {})
        except ValidationError as exc:
            problems.extend(validation_problems(path, lines, exc, base=(section, name)))
    return items, problems
