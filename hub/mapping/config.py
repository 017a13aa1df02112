"""The whole mappings/ directory, loaded and compiled, with every problem reported at once.

`load_mappings(dir)` reads sources.yaml, endpoints.yaml and rules/*.yaml, validates their shape,
compiles every expression and condition, and checks cross-references (a rule naming an unknown
source, a route to an unknown endpoint, two rules with one name, two routes with one key). It
raises one MappingsError listing each problem as `file:line path: message`; nothing is half-loaded.

`ruleset_from_definitions` rebuilds the compiled rules from what `apply` stored in the database
(what workers and the web process use, so they never read files at run time).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from hub.core.errors import MappingsError
from hub.core.models import EndpointKind
from hub.core.yamlfile import YamlProblem, display_path, load_yaml, problem, validation_problems
from hub.delivery.endpoints import EndpointConfig, read_endpoints
from hub.ingress.sources import SourceConfig, read_sources
from hub.mapping.conditions import Problems
from hub.mapping.engine import CompiledRule, RuleSet, compile_rule
from hub.mapping.rules import RuleConfig

RULES_DIR = "rules"


@dataclass
class MappingsConfig:
    """A valid mappings directory."""

    directory: Path
    sources: dict[str, SourceConfig]
    endpoints: dict[str, EndpointConfig]
    rules: dict[str, RuleConfig]
    rule_files: dict[str, Path] = field(default_factory=dict)
    ruleset: RuleSet = field(default_factory=lambda: RuleSet([]))


def _unknown(kind: str, name: str, known: Iterable[str]) -> str:
    names = sorted(known)
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    if close:
        return f"unknown {kind} '{name}' (did you mean '{close[0]}'?)"
    return f"unknown {kind} '{name}' (known: {', '.join(names) or 'none'})"


def endpoint_signatures(
    endpoints: Mapping[str, EndpointConfig],
) -> dict[str, tuple[EndpointKind, str]]:
    return {name: (cfg.kind, cfg.method) for name, cfg in endpoints.items()}


def load_mappings(directory: Path) -> MappingsConfig:
    """Load and compile `directory`; MappingsError lists every problem found."""
    if not directory.is_dir():
        raise MappingsError([f"{display_path(directory)}: not a directory"])
    problems: list[str] = []
    sources, source_problems = read_sources(directory)
    endpoints, endpoint_problems = read_endpoints(directory)
    problems += source_problems + endpoint_problems
    signatures = endpoint_signatures(endpoints)

    rules: dict[str, RuleConfig] = {}
    files: dict[str, Path] = {}
    compiled: list[CompiledRule] = []
    rules_dir = directory / RULES_DIR
    paths = (
        sorted([*rules_dir.glob("*.yaml"), *rules_dir.glob("*.yml")]) if rules_dir.is_dir() else []
    )
    for path in paths:
        try:
            data, lines = load_yaml(path)
        except YamlProblem as exc:
            problems.append(exc.message)
            continue
        if not isinstance(data, dict):
            problems.append(
                problem(path, lines, (), "a rule file is a mapping starting with 'rule:'")
            )
            continue
        try:
            rule = RuleConfig.model_validate(data)
        except ValidationError as exc:
            problems.extend(validation_problems(path, lines, exc))
            continue
        found: Problems = []
        _cross_references(rule, sources, endpoints, source_problems, endpoint_problems, found)
        if rule.rule in files:
            where = display_path(files[rule.rule])
            found.append((("rule",), f"rule '{rule.rule}' is also defined in {where}"))
        compiled_rule = compile_rule(rule, signatures, found)
        found.sort(key=lambda item: lines.line(item[0]))
        problems.extend(problem(path, lines, loc, message) for loc, message in found)
        if not found:
            rules[rule.rule] = rule
            files[rule.rule] = path
            compiled.append(compiled_rule)
    if problems:
        raise MappingsError(problems)
    return MappingsConfig(directory, sources, endpoints, rules, files, RuleSet(compiled))


def _cross_references(
    rule: RuleConfig,
    sources: Mapping[str, SourceConfig],
    endpoints: Mapping[str, EndpointConfig],
    source_problems: list[str],
    endpoint_problems: list[str],
    found: Problems,
) -> None:
    for index, name in enumerate(rule.sources):
        if name not in sources and not source_problems:
            found.append((("sources", index), _unknown("source", name, sources)))
    keys: dict[str, int] = {}
    for index, (route, key) in enumerate(zip(rule.routes, rule.route_keys(), strict=True)):
        if route.to not in endpoints and not endpoint_problems:
            found.append((("routes", index, "to"), _unknown("endpoint", route.to, endpoints)))
        if key in keys:
            found.append(
                (
                    ("routes", index),
                    f"routes[{keys[key]}] has the same key '{key}': give each route a distinct "
                    "'key'",
                )
            )
        keys.setdefault(key, index)
    for index, example in enumerate(rule.examples):
        if example.source is not None and example.source not in rule.sources:
            found.append(
                (
                    ("examples", index, "source"),
                    _unknown("source of this rule", example.source, rule.sources),
                )
            )
        for key in example.expect:
            if key not in keys:
                found.append((("examples", index, "expect", key), _unknown("route key", key, keys)))


def ruleset_from_definitions(
    definitions: Iterable[dict[str, Any]],
    endpoints: Mapping[str, tuple[EndpointKind, str]],
    version: int,
) -> RuleSet:
    """Compile rules stored by `apply`; MappingsError if one no longer compiles."""
    compiled = []
    problems: list[str] = []
    for definition in definitions:
        name = definition.get("rule", "?")
        try:
            rule = RuleConfig.model_validate(definition)
        except ValidationError as exc:
            problems.append(f"rule {name} (version {version}): {exc}")
            continue
        found: Problems = []
        compiled_rule = compile_rule(rule, endpoints, found)
        if found:
            problems.extend(f"rule {name}: {loc}: {message}" for loc, message in found)
        else:
            compiled.append(compiled_rule)
    if problems:
        raise MappingsError(problems)
    return RuleSet(sorted(compiled, key=lambda r: r.name), version)
